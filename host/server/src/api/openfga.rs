//! The OpenFGA HTTP API (`/stores/...`), same paths, JSON shapes and error
//! bodies, so that OpenFGA's own SDKs and tools work against Airlock unchanged.
//! Each store is a tenant (creating one creates the tenant). Authentication is OpenFGA's
//! pre-shared key, a bearer token: the operator's to list, create and delete stores; a
//! member's of that store's tenant for everything inside it (an admin writes, an admin or
//! auditor reads and checks). Another tenant's store is `store_id_not_found`.

use std::sync::Arc;

use airlock_rebac::engine::{EngineError, TupleCondition};
use airlock_rebac::model::json as model_json;
use airlock_rebac::writes::{ReadFilter, WriteOptions};
use airlock_rebac::{ActiveModel, RebacError, Tuple};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::auth::{Member, Operator, TenantMember};
use crate::Airlock;

type Host = State<Arc<Airlock>>;

/// The `/stores` routes.
pub(super) fn routes(r: super::Routes) -> super::Routes {
    use super::Scope::{Operator, Tenant};
    use axum::http::Method as M;
    r.at(Operator, M::GET, "/stores", list_stores)
        .at(Operator, M::POST, "/stores", create_store)
        .at(Tenant, M::GET, "/stores/{store}", get_store)
        .at(Operator, M::DELETE, "/stores/{store}", delete_store)
        .at(Tenant, M::GET, "/stores/{store}/authorization-models", read_models)
        .at(Tenant, M::POST, "/stores/{store}/authorization-models", write_model)
        .at(Tenant, M::GET, "/stores/{store}/authorization-models/{model}", read_model)
        .at(Tenant, M::POST, "/stores/{store}/write", write)
        .at(Tenant, M::POST, "/stores/{store}/read", read)
        .at(Tenant, M::GET, "/stores/{store}/changes", changes)
        .at(Tenant, M::POST, "/stores/{store}/check", check)
        .at(Tenant, M::POST, "/stores/{store}/batch-check", batch_check)
        .at(Tenant, M::POST, "/stores/{store}/list-objects", list_objects)
        .at(Tenant, M::POST, "/stores/{store}/list-users", list_users)
        .at(Tenant, M::POST, "/stores/{store}/expand", expand)
}

/// An OpenFGA error: status, string code, message.
struct FgaError(StatusCode, &'static str, String);

impl IntoResponse for FgaError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "code": self.1, "message": self.2 }))).into_response()
    }
}

type Result<T> = std::result::Result<T, FgaError>;

fn invalid(message: impl Into<String>) -> FgaError {
    FgaError(StatusCode::BAD_REQUEST, "validation_error", message.into())
}

fn engine_error(e: &EngineError) -> FgaError {
    let code = match e {
        EngineError::Validation(_) => "validation_error",
        EngineError::ResolutionTooComplex => "authorization_model_resolution_too_complex",
        EngineError::TypeNotFound(_) => "type_not_found",
        EngineError::RelationNotFound(_) => "relation_not_found",
        EngineError::InvalidTuple(_) => "invalid_tuple",
    };
    FgaError(StatusCode::BAD_REQUEST, code, e.to_string())
}

fn rebac_error(e: RebacError) -> FgaError {
    match e {
        RebacError::Engine(e) => engine_error(&e),
        RebacError::InvalidTuple(e) => FgaError(StatusCode::BAD_REQUEST, "invalid_tuple", e.to_string()),
        RebacError::InvalidModel(e) => FgaError(StatusCode::BAD_REQUEST, "invalid_authorization_model", e.to_string()),
        RebacError::InvalidModelJson(e) => FgaError(StatusCode::BAD_REQUEST, "invalid_authorization_model", e),
        RebacError::Duplicate(_) | RebacError::Missing(_) => {
            FgaError(StatusCode::BAD_REQUEST, "write_failed_due_to_invalid_input", e.to_string())
        }
        RebacError::ResolutionTooComplex => {
            FgaError(StatusCode::BAD_REQUEST, "authorization_model_resolution_too_complex", e.to_string())
        }
        other => {
            tracing::error!("openfga api: {other}");
            FgaError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "the host could not complete this; see its log".into(),
            )
        }
    }
}

fn body<T>(b: std::result::Result<Json<T>, JsonRejection>) -> Result<T> {
    b.map(|Json(v)| v).map_err(|r| invalid(format!("request body: {}", r.body_text())))
}

/// What a store request needs of its member.
#[derive(Clone, Copy)]
enum Need {
    Read,
    Write,
}

/// The prologue of every store request: the member's own store (another tenant's is 404),
/// the role, a live (synced) store, the parsed body.
async fn open<T>(
    host: &Airlock,
    m: &Member,
    store: &str,
    need: Need,
    b: std::result::Result<Json<T>, JsonRejection>,
) -> Result<T> {
    authorize(host, m, store, need).await?;
    live_store(host, store).await?;
    body(b)
}

async fn authorize(host: &Airlock, m: &Member, store: &str, need: Need) -> Result<()> {
    if m.tenant != store {
        return Err(FgaError(StatusCode::NOT_FOUND, "store_id_not_found", format!("store `{store}` not found")));
    }
    let allowed = match need {
        Need::Write => m.holds(host, "admin").await,
        Need::Read => m.reads_all(host).await,
    };
    if allowed {
        Ok(())
    } else {
        let e = match need {
            Need::Write => m.refuse(host, "an admin", "admin"),
            Need::Read => m.refuse(host, "an admin or auditor", "auditor"),
        };
        Err(FgaError(StatusCode::FORBIDDEN, "forbidden", e.message))
    }
}

fn rfc3339(millis: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn store_json(s: &airlock_rebac::stores::Store) -> Value {
    json!({ "id": s.id, "name": s.name, "created_at": rfc3339(s.created_at), "updated_at": rfc3339(s.updated_at) })
}

/// The store named in the path, synced with the database, or OpenFGA's 404.
async fn live_store(host: &Airlock, store: &str) -> Result<()> {
    // Sync first: the store may have been deleted (or created) through another host.
    host.rebac.sync(store).await.map_err(rebac_error)?;
    if host.rebac.store_live(store).await.map_err(rebac_error)? {
        Ok(())
    } else {
        Err(FgaError(StatusCode::NOT_FOUND, "store_id_not_found", format!("store `{store}` not found")))
    }
}

/// The model a request names, or the store's latest.
async fn model_for(host: &Airlock, store: &str, id: Option<&str>) -> Result<ActiveModel> {
    match id.filter(|i| !i.is_empty()) {
        Some(id) => host.rebac.model_by_id(store, id).await.map_err(rebac_error)?.ok_or_else(|| {
            FgaError(
                StatusCode::BAD_REQUEST,
                "authorization_model_not_found",
                format!("authorization model `{id}` not found"),
            )
        }),
        None => host.rebac.model(store).ok_or_else(|| {
            FgaError(
                StatusCode::BAD_REQUEST,
                "latest_authorization_model_not_found",
                "the store has no authorization model".into(),
            )
        }),
    }
}

// ---- request shapes ----------------------------------------------------------------

#[derive(Deserialize, Clone)]
struct TupleKey {
    #[serde(default)]
    user: String,
    #[serde(default)]
    relation: String,
    #[serde(default)]
    object: String,
    #[serde(default)]
    condition: Option<ConditionJson>,
}

#[derive(Deserialize, Clone)]
struct ConditionJson {
    name: String,
    #[serde(default)]
    context: Option<Map<String, Value>>,
}

#[derive(Deserialize, Clone, Default)]
struct TupleKeys {
    #[serde(default, deserialize_with = "null_as_empty")]
    tuple_keys: Vec<TupleKey>,
}

/// Protobuf's JSON mapping lets a client send `null` for a repeated field, meaning empty: the
/// `fga` CLI sends `"contextual_tuples": {"tuple_keys": null}` with every check.
fn null_as_empty<'de, D, T>(d: D) -> std::result::Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

impl TupleKey {
    fn tuple(&self) -> Tuple {
        Tuple::new(&self.object, &self.relation, &self.user)
    }

    fn with_condition(&self) -> (Tuple, Option<TupleCondition>) {
        let c = self
            .condition
            .as_ref()
            .map(|c| TupleCondition { name: c.name.clone(), context: c.context.clone().unwrap_or_default() });
        (self.tuple(), c)
    }

    fn to_json(t: &Tuple, c: Option<&TupleCondition>) -> Value {
        let mut v = json!({ "user": t.subject, "relation": t.relation, "object": t.object });
        if let Some(c) = c {
            v["condition"] = json!({ "name": c.name, "context": c.context });
        }
        v
    }
}

fn contextual(t: &Option<TupleKeys>) -> Vec<(Tuple, Option<TupleCondition>)> {
    t.as_ref().map(|k| k.tuple_keys.iter().map(TupleKey::with_condition).collect()).unwrap_or_default()
}

#[derive(Deserialize)]
struct Page {
    page_size: Option<i64>,
    continuation_token: Option<String>,
    #[serde(rename = "type")]
    object_type: Option<String>,
}

fn page_of(p: &Page) -> Result<(i64, i64)> {
    let size = p.page_size.unwrap_or(50).clamp(1, 100);
    let offset = match p.continuation_token.as_deref().filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => t
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| invalid(format!("invalid continuation token `{t}`")))?,
    };
    Ok((offset, size))
}

// ---- stores --------------------------------------------------------------------------

#[derive(Deserialize)]
struct CreateStore {
    name: String,
}

async fn create_store(
    State(host): Host,
    operator: Operator,
    b: std::result::Result<Json<CreateStore>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>)> {
    let req = body(b)?;
    if req.name.trim().is_empty() {
        return Err(invalid("`name` must not be empty"));
    }
    let store = host.rebac.create_store(&req.name).await.map_err(rebac_error)?;
    // The store is a tenant: members are invited into it (`POST /v1/tenants/{id}/invitations`).
    host.people.tenants.ensure(&store.id).await.map_err(|e| {
        tracing::error!("registering store tenant: {e}");
        FgaError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the host could not complete this; see its log".into(),
        )
    })?;
    host.audit.record(operator.event(
        "tenant.create",
        "ok",
        "",
        json!({ "tenant": store.id, "store_name": store.name }),
    ));
    Ok((StatusCode::CREATED, Json(store_json(&store))))
}

async fn list_stores(State(host): Host, _: Operator, Query(p): Query<Page>) -> Result<Json<Value>> {
    let (offset, size) = page_of(&p)?;
    let stores = host.rebac.stores(offset, size).await.map_err(rebac_error)?;
    let token = if stores.len() as i64 == size { (offset + size).to_string() } else { String::new() };
    Ok(Json(json!({ "stores": stores.iter().map(store_json).collect::<Vec<_>>(), "continuation_token": token })))
}

async fn get_store(State(host): Host, TenantMember(m): TenantMember, Path(store): Path<String>) -> Result<Json<Value>> {
    authorize(&host, &m, &store, Need::Read).await?;
    match host.rebac.store(&store).await.map_err(rebac_error)? {
        Some(s) => Ok(Json(store_json(&s))),
        None => Err(FgaError(StatusCode::NOT_FOUND, "store_id_not_found", format!("store `{store}` not found"))),
    }
}

async fn delete_store(State(host): Host, operator: Operator, Path(store): Path<String>) -> Result<StatusCode> {
    // Deleting a store deletes its tenant (all but the audit trail).
    let by = format!("operator:{}", operator.0);
    let live = host.rebac.store(&store).await.map_err(rebac_error)?.is_some();
    if live
        && host.delete_tenant(&store, &by).await.map_err(|e| {
            tracing::error!("deleting store tenant: {e}");
            FgaError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "the host could not complete this; see its log".into(),
            )
        })?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(FgaError(StatusCode::NOT_FOUND, "store_id_not_found", format!("store `{store}` not found")))
    }
}

// ---- models --------------------------------------------------------------------------

fn model_json(m: &ActiveModel) -> Value {
    let mut v = model_json::to_json(&m.model);
    v["id"] = json!(m.id);
    v
}

async fn write_model(
    State(host): Host,
    TenantMember(m): TenantMember,
    Path(store): Path<String>,
    b: std::result::Result<Json<Value>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>)> {
    authorize(&host, &m, &store, Need::Write).await?;
    live_store(&host, &store).await?;
    let model = body(b)?;
    let active = host.rebac.write_model_json(&store, &model).await.map_err(rebac_error)?;
    Ok((StatusCode::CREATED, Json(json!({ "authorization_model_id": active.id }))))
}

async fn read_models(
    State(host): Host,
    TenantMember(m): TenantMember,
    Path(store): Path<String>,
) -> Result<Json<Value>> {
    authorize(&host, &m, &store, Need::Read).await?;
    live_store(&host, &store).await?;
    let models = host.rebac.models(&store).await.map_err(rebac_error)?;
    Ok(Json(
        json!({ "authorization_models": models.iter().map(model_json).collect::<Vec<_>>(), "continuation_token": "" }),
    ))
}

async fn read_model(
    State(host): Host,
    TenantMember(m): TenantMember,
    Path((store, id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    authorize(&host, &m, &store, Need::Read).await?;
    live_store(&host, &store).await?;
    match host.rebac.model_by_id(&store, &id).await.map_err(rebac_error)? {
        Some(m) => Ok(Json(json!({ "authorization_model": model_json(&m) }))),
        None => Err(FgaError(
            StatusCode::NOT_FOUND,
            "authorization_model_not_found",
            format!("authorization model `{id}` not found"),
        )),
    }
}

// ---- tuples --------------------------------------------------------------------------

#[derive(Deserialize)]
struct WriteBody {
    #[serde(default)]
    writes: Option<WriteSide>,
    #[serde(default)]
    deletes: Option<WriteSide>,
}

#[derive(Deserialize, Default)]
struct WriteSide {
    #[serde(default, deserialize_with = "null_as_empty")]
    tuple_keys: Vec<TupleKey>,
    #[serde(default)]
    on_duplicate: Option<String>,
    #[serde(default)]
    on_missing: Option<String>,
}

async fn write(
    State(host): Host,
    TenantMember(m): TenantMember,
    Path(store): Path<String>,
    b: std::result::Result<Json<WriteBody>, JsonRejection>,
) -> Result<Json<Value>> {
    let req = open(&host, &m, &store, Need::Write, b).await?;
    let (w, d) = (req.writes.unwrap_or_default(), req.deletes.unwrap_or_default());
    if w.tuple_keys.is_empty() && d.tuple_keys.is_empty() {
        return Err(invalid("invalid WriteRequest: no tuples to write or delete"));
    }
    let writes: Vec<_> = w.tuple_keys.iter().map(TupleKey::with_condition).collect();
    let deletes: Vec<_> = d.tuple_keys.iter().map(TupleKey::tuple).collect();
    let options = WriteOptions {
        ignore_duplicates: w.on_duplicate.as_deref() == Some("ignore"),
        ignore_missing: d.on_missing.as_deref() == Some("ignore"),
    };
    host.rebac.write_tuples(&store, &writes, &deletes, options).await.map_err(rebac_error)?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct ReadBody {
    #[serde(default)]
    tuple_key: Option<TupleKey>,
    page_size: Option<i64>,
    continuation_token: Option<String>,
}

async fn read(
    State(host): Host,
    TenantMember(m): TenantMember,
    Path(store): Path<String>,
    b: std::result::Result<Json<ReadBody>, JsonRejection>,
) -> Result<Json<Value>> {
    let req = open(&host, &m, &store, Need::Read, b).await?;
    let (offset, size) =
        page_of(&Page { page_size: req.page_size, continuation_token: req.continuation_token, object_type: None })?;
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let filter = req
        .tuple_key
        .map(|k| ReadFilter { object: nonempty(&k.object), relation: nonempty(&k.relation), user: nonempty(&k.user) })
        .unwrap_or_default();
    let tuples = host.rebac.read_tuples(&store, &filter, offset, size).await.map_err(rebac_error)?;
    let token = if tuples.len() as i64 == size { (offset + size).to_string() } else { String::new() };
    let tuples: Vec<Value> = tuples
        .iter()
        .map(
            |t| json!({ "key": TupleKey::to_json(&t.tuple, t.condition.as_ref()), "timestamp": rfc3339(t.written_at) }),
        )
        .collect();
    Ok(Json(json!({ "tuples": tuples, "continuation_token": token })))
}

async fn changes(
    State(host): Host,
    TenantMember(m): TenantMember,
    Path(store): Path<String>,
    Query(p): Query<Page>,
) -> Result<Json<Value>> {
    authorize(&host, &m, &store, Need::Read).await?;
    live_store(&host, &store).await?;
    let (after, size) = page_of(&p)?;
    let changes = host
        .rebac
        .read_changes(&store, p.object_type.as_deref().filter(|t| !t.is_empty()), after, size)
        .await
        .map_err(rebac_error)?;
    let token = changes.last().map(|c| c.seq.to_string()).unwrap_or_else(|| after.to_string());
    let list: Vec<Value> = changes
        .iter()
        .map(|c| {
            let op = if c.operation == "delete" { "TUPLE_OPERATION_DELETE" } else { "TUPLE_OPERATION_WRITE" };
            json!({ "tuple_key": TupleKey::to_json(&c.tuple, None), "operation": op, "timestamp": rfc3339(c.at) })
        })
        .collect();
    Ok(Json(json!({ "changes": list, "continuation_token": token })))
}

// ---- queries -------------------------------------------------------------------------

#[derive(Deserialize)]
struct CheckBody {
    tuple_key: TupleKey,
    #[serde(default)]
    contextual_tuples: Option<TupleKeys>,
    #[serde(default)]
    context: Option<Map<String, Value>>,
    #[serde(default)]
    authorization_model_id: Option<String>,
}

async fn run_check(
    host: &Airlock,
    store: &str,
    model: &ActiveModel,
    req: &CheckBody,
) -> std::result::Result<bool, FgaError> {
    let k = &req.tuple_key;
    host.rebac
        .with_engine(store, &model.model, &contextual(&req.contextual_tuples), req.context.as_ref(), |e| {
            e.check(&k.object, &k.relation, &k.user)
        })
        .map_err(rebac_error)
}

async fn check(
    State(host): Host,
    TenantMember(m): TenantMember,
    Path(store): Path<String>,
    b: std::result::Result<Json<CheckBody>, JsonRejection>,
) -> Result<Json<Value>> {
    let req = open(&host, &m, &store, Need::Read, b).await?;
    let model = model_for(&host, &store, req.authorization_model_id.as_deref()).await?;
    let allowed = run_check(&host, &store, &model, &req).await?;
    Ok(Json(json!({ "allowed": allowed, "resolution": "" })))
}

#[derive(Deserialize)]
struct BatchCheckItem {
    tuple_key: TupleKey,
    #[serde(default)]
    contextual_tuples: Option<TupleKeys>,
    #[serde(default)]
    context: Option<Map<String, Value>>,
    correlation_id: String,
}

#[derive(Deserialize)]
struct BatchCheckBody {
    checks: Vec<BatchCheckItem>,
    #[serde(default)]
    authorization_model_id: Option<String>,
}

async fn batch_check(
    State(host): Host,
    TenantMember(m): TenantMember,
    Path(store): Path<String>,
    b: std::result::Result<Json<BatchCheckBody>, JsonRejection>,
) -> Result<Json<Value>> {
    let req = open(&host, &m, &store, Need::Read, b).await?;
    let model = model_for(&host, &store, req.authorization_model_id.as_deref()).await?;
    let mut result = Map::new();
    for item in req.checks {
        let one = CheckBody {
            tuple_key: item.tuple_key,
            contextual_tuples: item.contextual_tuples,
            context: item.context,
            authorization_model_id: None,
        };
        let answer = match run_check(&host, &store, &model, &one).await {
            Ok(allowed) => json!({ "allowed": allowed }),
            Err(FgaError(_, code, message)) => {
                json!({ "allowed": false, "error": { "input_error": code, "message": message } })
            }
        };
        result.insert(item.correlation_id, answer);
    }
    Ok(Json(json!({ "result": result })))
}

#[derive(Deserialize)]
struct ListObjectsBody {
    #[serde(rename = "type")]
    object_type: String,
    relation: String,
    user: String,
    #[serde(default)]
    contextual_tuples: Option<TupleKeys>,
    #[serde(default)]
    context: Option<Map<String, Value>>,
    #[serde(default)]
    authorization_model_id: Option<String>,
}

async fn list_objects(
    State(host): Host,
    TenantMember(m): TenantMember,
    Path(store): Path<String>,
    b: std::result::Result<Json<ListObjectsBody>, JsonRejection>,
) -> Result<Json<Value>> {
    let req = open(&host, &m, &store, Need::Read, b).await?;
    let model = model_for(&host, &store, req.authorization_model_id.as_deref()).await?;
    let objects = host
        .rebac
        .with_engine(&store, &model.model, &contextual(&req.contextual_tuples), req.context.as_ref(), |e| {
            e.list_objects(&req.object_type, &req.relation, &req.user)
        })
        .map_err(rebac_error)?;
    Ok(Json(json!({ "objects": objects })))
}

#[derive(Deserialize)]
struct ObjectRef {
    #[serde(rename = "type")]
    object_type: String,
    id: String,
}

#[derive(Deserialize)]
struct UserFilter {
    #[serde(rename = "type")]
    user_type: String,
    #[serde(default)]
    relation: Option<String>,
}

#[derive(Deserialize)]
struct ListUsersBody {
    object: ObjectRef,
    relation: String,
    user_filters: Vec<UserFilter>,
    #[serde(default)]
    contextual_tuples: Option<Vec<TupleKey>>,
    #[serde(default)]
    context: Option<Map<String, Value>>,
    #[serde(default)]
    authorization_model_id: Option<String>,
}

async fn list_users(
    State(host): Host,
    TenantMember(m): TenantMember,
    Path(store): Path<String>,
    b: std::result::Result<Json<ListUsersBody>, JsonRejection>,
) -> Result<Json<Value>> {
    let req = open(&host, &m, &store, Need::Read, b).await?;
    let model = model_for(&host, &store, req.authorization_model_id.as_deref()).await?;
    let object = format!("{}:{}", req.object.object_type, req.object.id);
    let filters: Vec<String> = req
        .user_filters
        .iter()
        .map(|f| match f.relation.as_deref().filter(|r| !r.is_empty()) {
            Some(r) => format!("{}#{r}", f.user_type),
            None => f.user_type.clone(),
        })
        .collect();
    let ctx: Vec<_> = req.contextual_tuples.unwrap_or_default().iter().map(TupleKey::with_condition).collect();
    let users = host
        .rebac
        .with_engine(&store, &model.model, &ctx, req.context.as_ref(), |e| {
            e.list_users(&object, &req.relation, &filters)
        })
        .map_err(rebac_error)?;
    let users: Vec<Value> = users
        .iter()
        .map(|u| {
            let (obj, rel) = match u.split_once('#') {
                Some((o, r)) => (o, Some(r)),
                None => (u.as_str(), None),
            };
            let (ty, id) = obj.split_once(':').unwrap_or((obj, ""));
            match (id, rel) {
                ("*", _) => json!({ "wildcard": { "type": ty } }),
                (_, Some(r)) => json!({ "userset": { "type": ty, "id": id, "relation": r } }),
                _ => json!({ "object": { "type": ty, "id": id } }),
            }
        })
        .collect();
    Ok(Json(json!({ "users": users })))
}

#[derive(Deserialize)]
struct ExpandBody {
    tuple_key: TupleKey,
    #[serde(default)]
    contextual_tuples: Option<TupleKeys>,
    #[serde(default)]
    authorization_model_id: Option<String>,
}

async fn expand(
    State(host): Host,
    TenantMember(m): TenantMember,
    Path(store): Path<String>,
    b: std::result::Result<Json<ExpandBody>, JsonRejection>,
) -> Result<Json<Value>> {
    let req = open(&host, &m, &store, Need::Read, b).await?;
    let model = model_for(&host, &store, req.authorization_model_id.as_deref()).await?;
    let k = &req.tuple_key;
    let tree = host
        .rebac
        .with_engine(&store, &model.model, &contextual(&req.contextual_tuples), None, |e| {
            e.expand(&k.object, &k.relation)
        })
        .map_err(rebac_error)?;
    Ok(Json(json!({ "tree": tree })))
}
