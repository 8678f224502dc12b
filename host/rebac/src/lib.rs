//! Relationship-based authorization: "may `subject` hold `relation` on `object`?"
//!
//! This is the engine behind the `authz` host interface and the host's own
//! gate ("may this agent use this tool"). It knows nothing of wasm or HTTP.
//!
//! A tenant with an authorization model (OpenFGA DSL, [`model`]) gets OpenFGA
//! schema 1.1 semantics from [`engine`]: type restrictions, computed
//! relations, tuple-to-userset, union, intersection, exclusion, conditions.
//! A tenant without one gets plain tuple semantics: direct tuples, type-bound
//! wildcards (`agent:*`) and usersets (`group:eng#member`) resolved
//! recursively, with the same resolution limit.
//!
//! Tuples are persisted through [`airlock_store::Db`] and mirrored in an
//! in-memory index that is updated in the same call that changes the
//! database, so a delete is visible to the very next check in this process.

pub mod conditions;
pub mod engine;
mod index;
pub mod model;
pub mod remote;
pub mod stores;
mod tuple;
pub mod ulid;
pub mod writes;

use std::collections::HashMap;
use std::sync::Arc;

use airlock_store::{now_millis, Db};
use parking_lot::RwLock;

use index::TenantIndex;
pub use tuple::{Tuple, TupleError};

/// How deep userset chains may go before a check gives up (OpenFGA's default).
pub const RESOLUTION_DEPTH_LIMIT: u32 = 25;

/// Why a question could not be answered. Callers treat every error as "no".
#[derive(Debug, thiserror::Error)]
pub enum RebacError {
    #[error(transparent)]
    InvalidTuple(#[from] TupleError),
    #[error("resolution too complex: more than {RESOLUTION_DEPTH_LIMIT} nested usersets")]
    ResolutionTooComplex,
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    #[error("invalid model: {0}")]
    InvalidModel(#[from] model::dsl::DslError),
    #[error("invalid model: {0}")]
    InvalidModelJson(String),
    #[error("{0}")]
    Remote(String),
    #[error("cannot write a tuple which already exists: `{0}`")]
    Duplicate(String),
    #[error("cannot delete a tuple which does not exist: `{0}`")]
    Missing(String),
    #[error("stored model `{0}` no longer parses: {1}")]
    StoredModel(String, model::dsl::DslError),
    #[error("authorization store unavailable: {0}")]
    Store(#[from] airlock_store::sqlx::Error),
}

/// A tenant's active model.
#[derive(Debug, Clone)]
pub struct ActiveModel {
    pub id: String,
    pub model: Arc<model::Model>,
}

/// The authorization engine for every tenant.
pub struct Rebac {
    db: Db,
    tenants: RwLock<HashMap<String, TenantIndex>>,
    models: RwLock<HashMap<String, ActiveModel>>,
    /// Ids of live OpenFGA stores, so API requests need no query to find theirs.
    stores: RwLock<std::collections::HashSet<String>>,
    /// Per tenant, the revision the in-memory mirror reflects (see [`Rebac::sync`]).
    applied: parking_lot::Mutex<HashMap<String, i64>>,
    /// When set, request-path checks go to this external OpenFGA server instead.
    remote: Option<remote::RemoteFga>,
    /// Another process writes this SQLite file too (`airlock mcp` beside `airlock serve`):
    /// sync before answering, as on PostgreSQL.
    shared_file: std::sync::atomic::AtomicBool,
    /// On PostgreSQL, the tenants whose mirror holds every change another host made
    /// (`airlock_store::Changes`): checks on them need no query.
    fresh: airlock_store::FreshTenants,
}

/// The change-feed topic of tuple and model writes (see `airlock_store::Changes`).
pub const CHANGE_TOPIC: &str = "tuples";

impl Rebac {
    /// Loads every stored tuple into memory.
    pub async fn open(db: Db) -> Result<Rebac, RebacError> {
        // Revisions first: a write that lands while the tuples load has a newer revision
        // and is applied (again, harmlessly) by the next sync.
        let revs: Vec<(String, i64)> =
            airlock_store::sqlx::query_as("SELECT tenant, rev FROM tuple_revisions").fetch_all(db.pool()).await?;
        let applied = parking_lot::Mutex::new(revs.into_iter().collect());
        let rows: Vec<(String, String, String, String, Option<String>, Option<String>)> =
            airlock_store::sqlx::query_as(
                "SELECT tenant, object, relation, subject, condition_name, condition_context FROM tuples",
            )
            .fetch_all(db.pool())
            .await?;
        let mut tenants: HashMap<String, TenantIndex> = HashMap::new();
        for (tenant, object, relation, subject, cname, cctx) in rows {
            let condition = writes::condition_from_columns(cname, cctx);
            tenants.entry(tenant).or_default().insert(&object, &relation, &subject, condition);
        }
        let rows: Vec<(String, String, String)> = airlock_store::sqlx::query_as(
            "SELECT tenant, id, dsl FROM authorization_models ORDER BY tenant, created_at, id",
        )
        .fetch_all(db.pool())
        .await?;
        let mut models = HashMap::new();
        for (tenant, id, dsl) in rows {
            let model = model::dsl::parse(&dsl).map_err(|e| RebacError::StoredModel(id.clone(), e))?;
            models.insert(tenant, ActiveModel { id, model: Arc::new(model) });
        }
        let live: Vec<(String,)> = airlock_store::sqlx::query_as("SELECT id FROM stores WHERE deleted_at IS NULL")
            .fetch_all(db.pool())
            .await?;
        let stores = RwLock::new(live.into_iter().map(|(id,)| id).collect());
        let fresh = airlock_store::FreshTenants::new(db.changes(), CHANGE_TOPIC);
        Ok(Rebac {
            fresh,
            db,
            tenants: RwLock::new(tenants),
            models: RwLock::new(models),
            stores,
            applied,
            remote: None,
            shared_file: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Whether checks go to an external OpenFGA server (local tuples and models are then not consulted).
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// Sends request-path checks ([`Rebac::check_now`], [`Rebac::list_objects_now`]) to an external OpenFGA server.
    pub fn with_remote(mut self, config: remote::RemoteConfig) -> Result<Rebac, RebacError> {
        self.remote = Some(remote::RemoteFga::new(config)?);
        Ok(self)
    }

    /// Parses, stores and activates a model for `tenant`; returns its id.
    pub async fn write_model(&self, tenant: &str, dsl: &str) -> Result<ActiveModel, RebacError> {
        let parsed = Arc::new(model::dsl::parse(dsl)?);
        let mut tx = self.db.pool().begin().await?;
        let rev = writes::bump_revision(&mut tx, self.db.changes(), tenant).await?;
        let id = writes::insert_model(&mut tx, tenant, rev, dsl, now_millis()).await?;
        tx.commit().await?;
        let active = ActiveModel { id, model: parsed };
        self.models.write().insert(tenant.to_string(), active.clone());
        self.db.changes().settle().await;
        Ok(active)
    }

    /// Stores and activates a model given in OpenFGA's JSON form.
    pub async fn write_model_json(&self, tenant: &str, json: &serde_json::Value) -> Result<ActiveModel, RebacError> {
        let parsed = model::json::from_json(json).map_err(RebacError::InvalidModelJson)?;
        self.write_model(tenant, &parsed.to_string()).await
    }

    /// Declares that another process writes this SQLite database too, so request-path
    /// answers sync with it first (a revoke by `airlock serve` reaches `airlock mcp`).
    pub fn share_sqlite_file(&self) {
        self.shared_file.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Brings the in-memory mirror of `tenant` up to the database's revision.
    ///
    /// On PostgreSQL several hosts share the tuples; a host calls this before
    /// answering, so that a tuple revoked through another host is never
    /// answered "allowed" here. It returns at once while the change feed says
    /// nothing changed for the tenant (`airlock_store::Changes`: a revoke
    /// returns only once every host applied it), else costs one primary-key
    /// read when nothing changed. On SQLite one host owns the file and this
    /// returns at once (processes sharing a file always read).
    pub async fn sync(&self, tenant: &str) -> Result<(), RebacError> {
        if self.db.backend() != airlock_store::Backend::Postgres
            && !self.shared_file.load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(());
        }
        if self.fresh.is_fresh(tenant) {
            return Ok(());
        }
        self.fresh.reading(tenant);
        self.refresh(tenant).await.inspect_err(|_| self.fresh.forget(tenant))
    }

    /// Puts back into the in-memory mirror those of `tuples` (hidden with [`Rebac::hide`] for a
    /// transaction that then failed) that the database still holds, as a failed
    /// [`Rebac::write_tuples`] does; then catches up with anything else committed meanwhile.
    pub async fn unhide(&self, tenant: &str, tuples: &[Tuple]) -> Result<(), RebacError> {
        for t in tuples {
            let row: Option<(Option<String>, Option<String>)> = airlock_store::sqlx::query_as(
                "SELECT condition_name, condition_context FROM tuples WHERE tenant = $1 AND object = $2 AND relation = $3 AND subject = $4",
            )
            .bind(tenant)
            .bind(&t.object)
            .bind(&t.relation)
            .bind(&t.subject)
            .fetch_optional(self.db.pool())
            .await?;
            if let Some((cname, cctx)) = row {
                self.tenants.write().entry(tenant.to_string()).or_default().insert(
                    &t.object,
                    &t.relation,
                    &t.subject,
                    writes::condition_from_columns(cname, cctx),
                );
            }
        }
        self.refresh(tenant).await
    }

    /// Brings the in-memory mirror of `tenant` up to the database's revision whatever the
    /// backend: after a transaction written through [`Rebac::stage_in`].
    pub async fn refresh(&self, tenant: &str) -> Result<(), RebacError> {
        let current: Option<(i64,)> =
            airlock_store::sqlx::query_as("SELECT rev FROM tuple_revisions WHERE tenant = $1")
                .bind(tenant)
                .fetch_optional(self.db.pool())
                .await?;
        let current = current.map(|(r,)| r).unwrap_or(0);
        let applied = self.applied.lock().get(tenant).copied().unwrap_or(0);
        if current <= applied {
            return Ok(());
        }
        let changed: Vec<(String, String, String, String)> = airlock_store::sqlx::query_as(
            "SELECT DISTINCT object, relation, subject, operation FROM tuple_changes WHERE tenant = $1 AND rev > $2 AND rev <= $3",
        )
        .bind(tenant)
        .bind(applied)
        .bind(current)
        .fetch_all(self.db.pool())
        .await?;
        if changed.iter().any(|c| c.3 == stores::STORE_DELETED) {
            self.forget_tenant(tenant);
            self.applied.lock().insert(tenant.to_string(), current);
            return Ok(());
        }
        let mut model_changed = false;
        for (object, relation, subject, operation) in changed {
            if operation == "model" {
                model_changed = true;
                continue;
            }
            // The tuple's state now, whatever the sequence of changes was.
            let row: Option<(Option<String>, Option<String>)> = airlock_store::sqlx::query_as(
                "SELECT condition_name, condition_context FROM tuples WHERE tenant = $1 AND object = $2 AND relation = $3 AND subject = $4",
            )
            .bind(tenant)
            .bind(&object)
            .bind(&relation)
            .bind(&subject)
            .fetch_optional(self.db.pool())
            .await?;
            let mut tenants = self.tenants.write();
            let index = tenants.entry(tenant.to_string()).or_default();
            match row {
                Some((cname, cctx)) => {
                    index.insert(&object, &relation, &subject, writes::condition_from_columns(cname, cctx))
                }
                None => {
                    index.remove(&object, &relation, &subject);
                }
            }
        }
        if model_changed {
            let latest: Option<(String, String)> = airlock_store::sqlx::query_as(
                "SELECT id, dsl FROM authorization_models WHERE tenant = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
            )
            .bind(tenant)
            .fetch_optional(self.db.pool())
            .await?;
            if let Some((id, dsl)) = latest {
                let model = model::dsl::parse(&dsl).map_err(|e| RebacError::StoredModel(id.clone(), e))?;
                self.models.write().insert(tenant.to_string(), ActiveModel { id, model: Arc::new(model) });
            }
        }
        let mut applied_map = self.applied.lock();
        let entry = applied_map.entry(tenant.to_string()).or_insert(0);
        *entry = (*entry).max(current);
        Ok(())
    }

    /// The call for request paths: [`Rebac::check`] after [`Rebac::sync`], or the
    /// external OpenFGA server's answer when one is configured.
    pub async fn check_now(
        &self,
        tenant: &str,
        subject: &str,
        relation: &str,
        object: &str,
    ) -> Result<bool, RebacError> {
        if let Some(remote) = &self.remote {
            return remote.check(tenant, subject, relation, object).await;
        }
        self.sync(tenant).await?;
        self.check(tenant, subject, relation, object)
    }

    /// [`Rebac::list_objects`] for request paths, like [`Rebac::check_now`].
    pub async fn list_objects_now(
        &self,
        tenant: &str,
        subject: &str,
        relation: &str,
        object_type: &str,
    ) -> Result<Vec<String>, RebacError> {
        if let Some(remote) = &self.remote {
            return remote.list_objects(tenant, subject, relation, object_type).await;
        }
        self.sync(tenant).await?;
        self.list_objects(tenant, subject, relation, object_type)
    }

    /// The tenant's active model, if it has one.
    pub fn model(&self, tenant: &str) -> Option<ActiveModel> {
        self.models.read().get(tenant).cloned()
    }

    /// A model of the tenant by id (the active one, or an older version from storage).
    pub async fn model_by_id(&self, tenant: &str, id: &str) -> Result<Option<ActiveModel>, RebacError> {
        if let Some(active) = self.model(tenant).filter(|a| a.id == id) {
            return Ok(Some(active));
        }
        let row: Option<(String,)> =
            airlock_store::sqlx::query_as("SELECT dsl FROM authorization_models WHERE tenant = $1 AND id = $2")
                .bind(tenant)
                .bind(id)
                .fetch_optional(self.db.pool())
                .await?;
        match row {
            None => Ok(None),
            Some((dsl,)) => {
                let model = model::dsl::parse(&dsl).map_err(|e| RebacError::StoredModel(id.to_string(), e))?;
                Ok(Some(ActiveModel { id: id.to_string(), model: Arc::new(model) }))
            }
        }
    }

    /// Every model version of the tenant, newest first: (id, model).
    pub async fn models(&self, tenant: &str) -> Result<Vec<ActiveModel>, RebacError> {
        let rows: Vec<(String, String)> = airlock_store::sqlx::query_as(
            "SELECT id, dsl FROM authorization_models WHERE tenant = $1 ORDER BY created_at DESC, id DESC",
        )
        .bind(tenant)
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter()
            .map(|(id, dsl)| {
                let model = model::dsl::parse(&dsl).map_err(|e| RebacError::StoredModel(id.clone(), e))?;
                Ok(ActiveModel { id, model: Arc::new(model) })
            })
            .collect()
    }

    /// Runs `f` with an engine over the tenant's stored tuples, `model` and the request's extras.
    pub fn with_engine<T>(
        &self,
        tenant: &str,
        model: &model::Model,
        contextual: &[(Tuple, Option<engine::TupleCondition>)],
        context: Option<&serde_json::Map<String, serde_json::Value>>,
        f: impl FnOnce(&engine::Engine<'_>) -> Result<T, engine::EngineError>,
    ) -> Result<T, RebacError> {
        let tenants = self.tenants.read();
        let empty = TenantIndex::default();
        let index = tenants.get(tenant).unwrap_or(&empty);
        let engine = engine::Engine::new(model, index, contextual, context)?;
        Ok(f(&engine)?)
    }

    /// Does `subject` hold `relation` on `object` in `tenant`?
    pub fn check(&self, tenant: &str, subject: &str, relation: &str, object: &str) -> Result<bool, RebacError> {
        Tuple::validate_object(object)?;
        Tuple::validate_relation(relation)?;
        Tuple::validate_subject(subject)?;
        if let Some(active) = self.model(tenant) {
            return self.with_engine(tenant, &active.model, &[], None, |e| e.check(object, relation, subject));
        }
        let tenants = self.tenants.read();
        let Some(index) = tenants.get(tenant) else { return Ok(false) };
        index.check(subject, relation, object, 0)
    }

    /// Every object of `object_type` on which `subject` holds `relation`, sorted.
    pub fn list_objects(
        &self,
        tenant: &str,
        subject: &str,
        relation: &str,
        object_type: &str,
    ) -> Result<Vec<String>, RebacError> {
        Tuple::validate_relation(relation)?;
        Tuple::validate_subject(subject)?;
        Tuple::validate_type(object_type)?;
        if let Some(active) = self.model(tenant) {
            return self
                .with_engine(tenant, &active.model, &[], None, |e| e.list_objects(object_type, relation, subject));
        }
        let tenants = self.tenants.read();
        let Some(index) = tenants.get(tenant) else { return Ok(Vec::new()) };
        let mut found = Vec::new();
        for object in index.objects_of_type(object_type) {
            if index.check(subject, relation, object, 0)? {
                found.push(object.to_string());
            }
        }
        found.sort();
        Ok(found)
    }

    /// Writes tuples (idempotent: an existing tuple is left as it is).
    ///
    /// With a model, each tuple must be admitted by it (OpenFGA's `invalid_tuple` otherwise).
    pub async fn write(&self, tenant: &str, tuples: &[Tuple]) -> Result<(), RebacError> {
        let writes: Vec<_> = tuples.iter().map(|t| (t.clone(), None)).collect();
        self.write_tuples(tenant, &writes, &[], writes::WriteOptions { ignore_duplicates: true, ignore_missing: true })
            .await?;
        Ok(())
    }

    /// Deletes tuples; returns how many existed. Takes effect for the next check.
    pub async fn delete(&self, tenant: &str, tuples: &[Tuple]) -> Result<u64, RebacError> {
        self.write_tuples(tenant, &[], tuples, writes::WriteOptions { ignore_duplicates: true, ignore_missing: true })
            .await
    }

    /// Stored tuples of a tenant, optionally only those on `object`, sorted.
    pub async fn read(&self, tenant: &str, object: Option<&str>) -> Result<Vec<Tuple>, RebacError> {
        let rows: Vec<(String, String, String)> = airlock_store::sqlx::query_as(
            "SELECT object, relation, subject FROM tuples WHERE tenant = $1 AND ($2 = '' OR object = $2) \
             ORDER BY object, relation, subject",
        )
        .bind(tenant)
        .bind(object.unwrap_or(""))
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.into_iter().map(|(object, relation, subject)| Tuple { object, relation, subject }).collect())
    }
}
