//! The marketplace API: a tenant admin installs into their tenant (auditors read what is
//! installed); trusted publishers are the operator's, host-wide.
//!
//! - `GET /v1/marketplace/catalog`: the agents this host ships, and which are installed;
//! - `GET /v1/marketplace/installed`: the tenant's installed agents and their connection slots;
//! - `POST /v1/marketplace/install`: `{"catalog": "NAME"}`, or a package `.tar` as the body
//!   (`Content-Type: application/x-tar`; `airlock install DIR` packs a directory). The API never
//!   reads paths of the host's file system;
//! - `POST /v1/marketplace/upgrade`: the same, with `consent` / `dry_run` (JSON fields, or
//!   query parameters with a `.tar` body);
//! - `DELETE /v1/marketplace/installed/{agent}`: uninstall;
//! - `GET|POST /v1/marketplace/publishers`, `DELETE /v1/marketplace/publishers/{publisher}/{key_id}`.
//!
//! Install and upgrade answer one JSON document, or, with `Accept: application/x-ndjson`, a
//! line per step as it happens (`{"progress": {...}}`) and a last line `{"result": ...}` or
//! `{"error": {...}}`: the CLI draws its progress bar from those lines.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{Operator, TenantAdmin, TenantReader};
use super::ApiError;
use crate::marketplace::catalog::{self, Listing};
use crate::marketplace::trust::{self, PublisherKey};
use crate::marketplace::{InstallOptions, InstalledAgent, PackageSource, Progress};
use crate::Airlock;

// What install, upgrade and uninstall answer: the engine's own reports.
pub(crate) use crate::marketplace::{InstallReport, UninstallReport, UpgradeReport};

type Host = State<Arc<Airlock>>;

/// The install / upgrade request, when it is JSON.
#[derive(Deserialize, Default, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PackageRequest {
    pub(crate) catalog: Option<String>,
    #[serde(default)]
    pub(crate) consent: bool,
    #[serde(default)]
    pub(crate) dry_run: bool,
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
pub(super) struct UpgradeQuery {
    #[serde(default)]
    consent: bool,
    #[serde(default)]
    dry_run: bool,
}

fn package_request(headers: &HeaderMap, body: Bytes) -> Result<(PackageSource, PackageRequest), ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type.starts_with("application/x-tar") {
        return Ok((PackageSource::Archive(body.to_vec()), PackageRequest::default()));
    }
    let req: PackageRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "request body: {e}: send `{{\"catalog\": \"NAME\"}}` or a package .tar with `Content-Type: application/x-tar`"
        ))
    })?;
    let Some(name) = &req.catalog else {
        return Err(ApiError::bad_request("name the catalog agent in `catalog`, or send a package .tar"));
    };
    let source = PackageSource::Catalog(name.clone());
    Ok((source, req))
}

fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.contains("application/x-ndjson"))
        .unwrap_or(false)
}

/// Runs `work` (install or upgrade) and answers its report as JSON, or as NDJSON progress lines.
async fn run_with_progress<F, Fut, T>(host: Arc<Airlock>, headers: &HeaderMap, work: F) -> Response
where
    F: FnOnce(Arc<Airlock>, Box<dyn Fn(Progress) + Send + Sync>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
    T: serde::Serialize + Send + 'static,
{
    if !wants_stream(headers) {
        // Spawned: a client that disconnects must not cut the work between its commit and the
        // host's memory catching up.
        return match tokio::spawn(work(host, Box::new(|_| {}))).await {
            Ok(Ok(v)) => Json(v).into_response(),
            Ok(Err(e)) => e.into_response(),
            Err(e) => ApiError::internal("marketplace", e).into_response(),
        };
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let progress_tx = tx.clone();
    tokio::spawn(async move {
        let sink = Box::new(move |p: Progress| {
            let _ = progress_tx.send(json!({ "progress": p }));
        });
        let last = match work(host, sink).await {
            Ok(v) => json!({ "result": serde_json::to_value(v).unwrap_or_default() }),
            Err(e) => {
                let mut body = json!({ "code": e.code, "message": e.message, "status": e.status.as_u16() });
                if let (Some(map), Some(Value::Object(extra))) = (body.as_object_mut(), e.extra) {
                    map.extend(extra);
                }
                json!({ "error": body })
            }
        };
        let _ = tx.send(last);
    });
    let lines = futures_util::stream::unfold(rx, |mut rx| async move {
        let v = rx.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(format!("{v}\n"))), rx))
    });
    ([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(lines)).into_response()
}

/// `GET /v1/marketplace/catalog`: the agents this host ships (each with its permissions and
/// tools' effects), and the tenant's installations.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct MarketplaceCatalog {
    catalog: Vec<Listing>,
    installed: Vec<InstalledAgent>,
}

pub(super) async fn catalog_list(
    State(host): Host,
    TenantReader(m): TenantReader,
) -> Result<Json<MarketplaceCatalog>, ApiError> {
    let installed = host.installations(&m.tenant).await.map_err(ApiError::from)?;
    let described = catalog::described(&host).await;
    let mut listings = catalog::listings();
    for listing in &mut listings {
        listing.tools = described.get(listing.name.as_str()).cloned().unwrap_or_default();
    }
    Ok(Json(MarketplaceCatalog { catalog: listings, installed }))
}

/// `GET /v1/marketplace/installed`: the tenant's installed agents and their connection slots.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct InstalledAgents {
    installed: Vec<InstalledAgent>,
}

pub(super) async fn installed(
    State(host): Host,
    TenantReader(m): TenantReader,
) -> Result<Json<InstalledAgents>, ApiError> {
    let installed = host.installations(&m.tenant).await.map_err(ApiError::from)?;
    Ok(Json(InstalledAgents { installed }))
}

/// `?allow_private_network=NAME[,NAME]`: the package's connections allowed to list internal
/// addresses (see [`crate::marketplace::install::refuse_internal_hosts`]).
#[derive(serde::Deserialize, Default, schemars::JsonSchema)]
pub(super) struct InstallQuery {
    allow_private_network: Option<String>,
}

pub(super) async fn install(
    State(host): Host,
    TenantAdmin(m): TenantAdmin,
    query: Result<axum::extract::Query<InstallQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let tenant = m.tenant;
    let options = match query {
        Ok(axum::extract::Query(q)) => InstallOptions {
            allow_private_network: q
                .allow_private_network
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect(),
            ..InstallOptions::default()
        },
        Err(e) => return ApiError::from(e).into_response(),
    };
    let (source, _) = match package_request(&headers, body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    run_with_progress(host, &headers, move |host, progress| async move {
        let report: InstallReport =
            host.install(&tenant, &source, &options, &*progress).await.map_err(ApiError::from)?;
        Ok(report)
    })
    .await
}

pub(super) async fn upgrade(
    State(host): Host,
    TenantAdmin(m): TenantAdmin,
    Query(q): Query<UpgradeQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let tenant = m.tenant;
    let (source, req) = match package_request(&headers, body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let (consent, dry_run) = (req.consent || q.consent, req.dry_run || q.dry_run);
    run_with_progress(host, &headers, move |host, progress| async move {
        let report: UpgradeReport =
            host.upgrade(&tenant, &source, consent, dry_run, &*progress).await.map_err(ApiError::from)?;
        Ok(report)
    })
    .await
}

pub(super) async fn uninstall(
    State(host): Host,
    TenantAdmin(m): TenantAdmin,
    Path(agent): Path<String>,
) -> Result<Json<UninstallReport>, ApiError> {
    let tenant = m.tenant;
    // Spawned, like install: a disconnect must not stop it half-way through.
    let report = tokio::spawn(async move { host.uninstall(&tenant, &agent).await })
        .await
        .map_err(|e| ApiError::internal("marketplace", e))?
        .map_err(ApiError::from)?;
    Ok(Json(report))
}

#[derive(Deserialize, schemars::JsonSchema, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrustRequest {
    pub(crate) publisher: String,
    /// Base64 of the 32-byte Ed25519 public key (a line of a `NAME.pub` file).
    pub(crate) public_key: String,
}

/// `GET /v1/marketplace/publishers`: the publisher keys this host trusts, shipped and added.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct PublisherList {
    publishers: Vec<PublisherKey>,
}

pub(super) async fn publishers(State(host): Host, _: Operator) -> Result<Json<PublisherList>, ApiError> {
    let keys = trust::list(&host.db).await.map_err(ApiError::from)?;
    Ok(Json(PublisherList { publishers: keys }))
}

/// `POST /v1/marketplace/publishers`: the publisher key now trusted.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct PublisherTrusted {
    publisher: String,
    /// The key's id (what `DELETE /v1/marketplace/publishers/{publisher}/{key_id}` names).
    key_id: String,
}

pub(super) async fn trust_publisher(
    State(host): Host,
    operator: Operator,
    body: Result<Json<TrustRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<PublisherTrusted>, ApiError> {
    let Json(req) = body?;
    let key_id = trust::add(&host.db, &req.publisher, &req.public_key).await.map_err(ApiError::from)?;
    host.audit.record(operator.event(
        "marketplace.trust",
        "ok",
        &req.publisher,
        json!({ "publisher": req.publisher, "key_id": key_id }),
    ));
    Ok(Json(PublisherTrusted { publisher: req.publisher, key_id }))
}

/// `DELETE /v1/marketplace/publishers/{publisher}/{key_id}`: the publisher key no longer trusted.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct PublisherDistrusted {
    publisher: String,
    key_id: String,
    /// Always `true`: the key was removed (an unknown key is a 404).
    removed: bool,
}

pub(super) async fn distrust_publisher(
    State(host): Host,
    operator: Operator,
    Path((publisher, key_id)): Path<(String, String)>,
) -> Result<Json<PublisherDistrusted>, ApiError> {
    if !trust::remove(&host.db, &publisher, &key_id).await.map_err(ApiError::from)? {
        return Err(ApiError::not_found(format!("no admin-added key `{key_id}` for publisher `{publisher}`")));
    }
    host.audit.record(operator.event(
        "marketplace.distrust",
        "ok",
        &publisher,
        json!({ "publisher": publisher, "key_id": key_id }),
    ));
    Ok(Json(PublisherDistrusted { publisher, key_id, removed: true }))
}
