//! The tenant's authorization data: tuples and the model (admins write, auditors read).
//!
//! - `GET /v1/tuples?object=`, `POST /v1/tuples` `{writes, deletes}` (one transaction);
//! - `GET /v1/authorization-model`, `PUT /v1/authorization-model` (OpenFGA DSL as the body).

use std::sync::Arc;

use airlock_rebac::Tuple;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::auth::{TenantAdmin, TenantReader};
use super::ApiError;
use crate::Airlock;

type Host = State<Arc<Airlock>>;

#[derive(Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TupleBody {
    pub(crate) tenant: Option<String>,
    #[serde(default)]
    pub(crate) writes: Vec<TupleJson>,
    #[serde(default)]
    pub(crate) deletes: Vec<TupleJson>,
}

/// A tuple in OpenFGA's field names.
#[derive(Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TupleJson {
    pub(crate) user: String,
    pub(crate) relation: String,
    pub(crate) object: String,
}

/// With an external OpenFGA server, local tuples and models would be written but never read.
fn refuse_when_remote(host: &Airlock) -> Result<(), ApiError> {
    if host.rebac.is_remote() {
        return Err(ApiError::conflict(
            "checks go to the external OpenFGA server: write tuples and models there, not here",
        ));
    }
    Ok(())
}

/// `PUT /v1/authorization-model`: the id of the model now active.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct AuthorizationModelWritten {
    authorization_model_id: String,
}

/// `PUT /v1/authorization-model`: the body is a model in the OpenFGA DSL; it becomes the tenant's active model.
pub(super) async fn write_model(
    State(host): Host,
    TenantAdmin(m): TenantAdmin,
    body: Bytes,
) -> Result<Json<AuthorizationModelWritten>, ApiError> {
    refuse_when_remote(&host)?;
    let dsl = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the model must be UTF-8 DSL text"))?;
    let active = host.rebac.write_model(&m.tenant, dsl).await?;
    host.audit.record(m.event("model.write", "ok", "", json!({ "model_id": active.id })));
    Ok(Json(AuthorizationModelWritten { authorization_model_id: active.id }))
}

/// `GET /v1/authorization-model`: the tenant's active model.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct AuthorizationModel {
    authorization_model_id: String,
    /// The model in canonical OpenFGA DSL.
    dsl: String,
}

/// `GET /v1/authorization-model`: the tenant's active model, in canonical DSL.
pub(super) async fn read_model(
    State(host): Host,
    TenantReader(m): TenantReader,
) -> Result<Json<AuthorizationModel>, ApiError> {
    let active = host.rebac.model(&m.tenant).ok_or_else(|| {
        ApiError::not_found(
            "this tenant has no authorization model: tuples are checked as written (PUT one to use OpenFGA semantics)",
        )
    })?;
    Ok(Json(AuthorizationModel { dsl: active.model.to_string(), authorization_model_id: active.id }))
}

/// `POST /v1/tuples`: how many tuples were written and deleted.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct TuplesWritten {
    written: usize,
    deleted: usize,
    /// A grant on a tool that does not exist (yet), kept and said; absent when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<Vec<String>>,
}

pub(super) async fn write_tuples(
    State(host): Host,
    TenantAdmin(m): TenantAdmin,
    body: Result<Json<TupleBody>, JsonRejection>,
) -> Result<Json<TuplesWritten>, ApiError> {
    let Json(body) = body?;
    refuse_when_remote(&host)?;
    let tenant = m.scope(body.tenant.as_deref())?;
    let convert = |ts: &[TupleJson]| ts.iter().map(|t| Tuple::new(&t.object, &t.relation, &t.user)).collect::<Vec<_>>();
    let (writes, deletes) = (convert(&body.writes), convert(&body.deletes));
    if writes.is_empty() && deletes.is_empty() {
        return Err(ApiError::bad_request("nothing to do: give `writes` and/or `deletes`"));
    }
    for t in writes.iter().chain(&deletes) {
        t.validate().map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    // One transaction: a refused write leaves the deletes undone too.
    let with_conditions: Vec<_> = writes.iter().map(|t| (t.clone(), None)).collect();
    let options = airlock_rebac::writes::WriteOptions { ignore_duplicates: true, ignore_missing: true };
    host.rebac.write_tuples(tenant, &with_conditions, &deletes, options).await?;
    host.audit.record(m.event("tuples.write", "ok", "", json!({ "writes": writes, "deletes": deletes })));
    // A grant on a tool that does not exist is kept (it may be installed later), and said.
    let mut warnings = Vec::new();
    for t in &writes {
        let Some((component, tool)) = t.object.strip_prefix("tool:").and_then(|id| id.split_once('.')) else {
            continue;
        };
        if let Some(missing) = host.missing_tool(tenant, component, tool).await {
            warnings.push(format!("`{}` grants nothing yet: {missing}", t.object));
        }
    }
    let warnings = (!warnings.is_empty()).then_some(warnings);
    Ok(Json(TuplesWritten { written: writes.len(), deleted: deletes.len(), warnings }))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(super) struct ReadTuplesQuery {
    object: Option<String>,
}

/// `GET /v1/tuples`: the tenant's relationship tuples (of `object` when given).
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct TupleList {
    tuples: Vec<TupleJson>,
}

pub(super) async fn read_tuples(
    State(host): Host,
    TenantReader(m): TenantReader,
    query: Result<Query<ReadTuplesQuery>, QueryRejection>,
) -> Result<Json<TupleList>, ApiError> {
    let Query(q) = query?;
    let tuples = host.rebac.read(&m.tenant, q.object.as_deref()).await?;
    let tuples: Vec<TupleJson> =
        tuples.into_iter().map(|t| TupleJson { user: t.subject, relation: t.relation, object: t.object }).collect();
    Ok(Json(TupleList { tuples }))
}
