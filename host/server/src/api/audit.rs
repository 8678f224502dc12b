//! The audit trail, for admins and auditors of a tenant, and the operator's own chain of
//! host-wide work.
//!
//! - `GET /v1/audit?after=&limit=`, `GET /v1/audit/verify`: the tenant's trail;
//! - `GET /v1/audit/search?agent=&tool=&outcome=&kind=&since=&until=&before=&limit=`:
//!   `{"events": [StoredEvent...], "next_before": seq | null}`, newest first ([`search`]);
//! - `GET /v1/audit/summary?minutes=60`: tool calls and denials per minute ([`summary`]);
//! - `GET /v1/audit/export?agent=&tool=&outcome=&kind=&since=&until=&after=&before=`: the
//!   matching trail, oldest first, as a JSON Lines download ([`export`]);
//! - `GET /v1/host/audit`, `GET /v1/host/audit/verify`: the host's (operator);
//! - signed checkpoints ([`airlock_audit::checkpoint`]): `POST /v1/audit/checkpoints` (admin)
//!   signs the tenant's head now, `GET /v1/audit/checkpoints` lists them,
//!   `GET /v1/audit/checkpoint-key` is the public key, `GET /v1/audit/export/signed` the whole
//!   trail with its checkpoints for `airlock audit verify` (offline); the operator's
//!   `POST /v1/host/audit/checkpoints` signs every chain, `GET /v1/host/audit/checkpoint-key` and
//!   `GET /v1/host/audit/export/signed` are the host chain's.
//!
//! Every read flushes the audit queue first, so it includes everything recorded before the
//! request. A query parameter the route does not know, or a number that is not one, is a 400.

use std::sync::Arc;

use airlock_audit::checkpoint::{self, CheckpointError, ExportLine, Signed};
use airlock_audit::{SearchFilter, StoredEvent};
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt as _;
use serde::Deserialize;

use super::auth::{Operator, TenantAdmin, TenantReader};
use super::ApiError;
use crate::tenancy::HOST_CHAIN;
use crate::Airlock;

// What the verify and checkpoint routes answer: the audit log's own types.
pub(crate) use airlock_audit::{Checkpoint, Verification};

type Host = State<Arc<Airlock>>;

#[derive(Deserialize, schemars::JsonSchema)]
pub(super) struct AuditQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

/// `GET /v1/audit`, `GET /v1/host/audit`: a page of the chain's events, oldest first
/// (`seq` above `after`, at most `limit`).
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct AuditEvents {
    events: Vec<StoredEvent>,
}

async fn read(host: &Airlock, chain: &str, q: AuditQuery) -> Result<Json<AuditEvents>, ApiError> {
    // Include everything recorded up to this request.
    host.flush().await;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let events =
        host.audit.list(chain, q.after.unwrap_or(0), limit).await.map_err(|e| ApiError::internal("audit store", e))?;
    Ok(Json(AuditEvents { events }))
}

async fn verify(host: &Airlock, chain: &str) -> Result<Json<Verification>, ApiError> {
    host.flush().await;
    let v = host.audit.verify(chain).await.map_err(|e| ApiError::internal("audit store", e))?;
    Ok(Json(v))
}

pub(super) async fn read_tenant(
    State(host): Host,
    TenantReader(m): TenantReader,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditEvents>, ApiError> {
    read(&host, &m.tenant, query?.0).await
}

pub(super) async fn verify_tenant(
    State(host): Host,
    TenantReader(m): TenantReader,
) -> Result<Json<Verification>, ApiError> {
    verify(&host, &m.tenant).await
}

pub(super) async fn read_host(
    State(host): Host,
    _: Operator,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditEvents>, ApiError> {
    read(&host, HOST_CHAIN, query?.0).await
}

pub(super) async fn verify_host(State(host): Host, _: Operator) -> Result<Json<Verification>, ApiError> {
    verify(&host, HOST_CHAIN).await
}

// ---- search, summary, export ----------------------------------------------------------------

/// The filters of `GET /v1/audit/search` and `/v1/audit/export`: each given field must match
/// exactly; an empty text value is the same as leaving it out.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SearchQuery {
    /// Checked by the tenant door (it must be the caller's own); allowed here for that.
    #[allow(dead_code)]
    tenant: Option<String>,
    /// The acting subject, as recorded: `agent:NAME`, `user:NAME`, `token:NAME`.
    agent: Option<String>,
    /// `component.tool`.
    tool: Option<String>,
    /// `allowed`, `denied`, `failed`, `approved`, `ok`, ...
    outcome: Option<String>,
    /// `tool.call`, `approval.request`, ...
    kind: Option<String>,
    /// Recorded at or after (ms since the epoch).
    since: Option<i64>,
    /// Recorded before (ms since the epoch, exclusive).
    until: Option<i64>,
    /// Sequence numbers below this one (exclusive): the previous page's `next_before`.
    before: Option<i64>,
    /// Export only: sequence numbers above this one (exclusive).
    after: Option<i64>,
    /// Search only: events per page, 1 to 500 (50 when absent).
    limit: Option<i64>,
}

impl SearchQuery {
    fn filter(&self) -> SearchFilter {
        let text = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        SearchFilter {
            agent: text(&self.agent),
            tool: text(&self.tool),
            outcome: text(&self.outcome),
            kind: text(&self.kind),
            since: self.since,
            until: self.until,
            before: self.before,
            after: self.after,
        }
    }
}

/// `GET /v1/audit/search`: a page of the matching events, newest first.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct AuditSearch {
    events: Vec<StoredEvent>,
    /// The `seq` of the page's last event when more match (pass it as `before` for the next,
    /// older page), else null.
    next_before: Option<i64>,
}

/// `GET /v1/audit/search`: the tenant's events matching the filters, newest first, a page of
/// `limit` (default 50, at most 500). `next_before` is the `seq` of the page's last event when
/// more match (pass it as `before` for the next, older page), else `null`.
pub(super) async fn search(
    State(host): Host,
    TenantReader(m): TenantReader,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Json<AuditSearch>, ApiError> {
    let Query(q) = query?;
    if q.after.is_some() {
        return Err(ApiError::bad_request(
            "query string: `after` pages the export (oldest first); a search pages backwards with `before`",
        ));
    }
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    host.flush().await;
    // One more than asked for says whether another page follows.
    let mut events =
        host.audit.search(&m.tenant, &q.filter(), limit + 1).await.map_err(|e| ApiError::internal("audit store", e))?;
    let more = events.len() as i64 > limit;
    events.truncate(limit as usize);
    let next_before = if more { events.last().map(|e| e.seq) } else { None };
    Ok(Json(AuditSearch { events, next_before }))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SummaryQuery {
    #[allow(dead_code)]
    tenant: Option<String>,
    /// How many minutes back, 1 to 1440 (60 when absent).
    minutes: Option<i64>,
}

/// `GET /v1/audit/summary`: the tenant's tool calls and denials per minute.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct AuditSummary {
    /// The start of the first bucket (ms since the epoch).
    since: i64,
    /// The width of a bucket: 60000 (a minute).
    bucket_ms: i64,
    /// Every minute, zeros too, oldest first; the last is the minute now under way.
    buckets: Vec<SummaryBucket>,
    /// The sums over every bucket.
    totals: SummaryTotals,
}

/// A minute of [`AuditSummary`].
#[derive(serde::Serialize, schemars::JsonSchema)]
#[schemars(rename = "AuditSummaryBucket")]
pub(crate) struct SummaryBucket {
    /// The minute's first millisecond (ms since the epoch).
    start: i64,
    /// Tool calls (`tool.call` events, whatever their outcome).
    calls: i64,
    /// Of those, the ones denied.
    denials: i64,
}

/// The totals of [`AuditSummary`].
#[derive(serde::Serialize, schemars::JsonSchema)]
#[schemars(rename = "AuditSummaryTotals")]
pub(crate) struct SummaryTotals {
    calls: i64,
    denials: i64,
}

/// The audit kind of an agent's tool call: every call an agent makes (over `/v1/tools/.../call`
/// or MCP's `tools/call`) is recorded once as `tool.call`, whether it ran (`allowed`, or
/// `failed` at the external API) or was refused (`denied`: no tuple, a policy's approval
/// refused or expired, a bad grant, the authorization engine unavailable).
const TOOL_CALL: &str = "tool.call";
/// The outcome of a refused tool call.
const DENIED: &str = "denied";
const MINUTE_MS: i64 = 60_000;

/// `GET /v1/audit/summary?minutes=60`: the tenant's tool calls and denials per minute over the
/// last `minutes` (1 to 1440):
/// `{"since": ms, "bucket_ms": 60000, "buckets": [{"start", "calls", "denials"}], "totals":
/// {"calls", "denials"}}`, every minute present (zeros too), oldest first; the last bucket is
/// the minute now under way, `since` the start of the first.
///
/// A call is an audit event of kind `tool.call`, whatever its outcome (`allowed`, `failed`,
/// `denied`): the gate records exactly one per call an authenticated agent makes, including
/// those held for an approval (the approval's own `approval.*` events are not calls). A
/// denial is a `tool.call` whose outcome is `denied`. Requests refused before an agent is
/// known (`auth` events: no or a bad token) are not calls of any agent and are not counted.
/// The database groups the events (by `ts / 60000`), so the answer costs one row per minute.
pub(super) async fn summary(
    State(host): Host,
    TenantReader(m): TenantReader,
    query: Result<Query<SummaryQuery>, QueryRejection>,
) -> Result<Json<AuditSummary>, ApiError> {
    let Query(q) = query?;
    let minutes = q.minutes.unwrap_or(60).clamp(1, 1440);
    host.flush().await;
    let now = airlock_store::now_millis();
    let until = (now / MINUTE_MS + 1) * MINUTE_MS;
    let since = until - minutes * MINUTE_MS;
    let counted = host
        .audit
        .tally(&m.tenant, TOOL_CALL, DENIED, since, until, MINUTE_MS)
        .await
        .map_err(|e| ApiError::internal("audit store", e))?;
    let mut counted = counted.into_iter().peekable();
    let (mut calls, mut denials) = (0, 0);
    let buckets: Vec<SummaryBucket> = (0..minutes)
        .map(|i| {
            let start = since + i * MINUTE_MS;
            let (c, d) = match counted.next_if(|t| t.start == start) {
                Some(t) => (t.events, t.with_outcome),
                None => (0, 0),
            };
            calls += c;
            denials += d;
            SummaryBucket { start, calls: c, denials: d }
        })
        .collect();
    Ok(Json(AuditSummary { since, bucket_ms: MINUTE_MS, buckets, totals: SummaryTotals { calls, denials } }))
}

/// Events per page the export reads.
const EXPORT_PAGE: i64 = 1000;

/// `GET /v1/audit/export`: the tenant's events matching the filters (as for search, without
/// `limit`; `after` and `before` bound the `seq`), oldest first, as `application/x-ndjson`, one
/// stored event (the JSON the search returns) per line, with
/// `Content-Disposition: attachment; filename="audit-TENANT.jsonl"`. The trail is read page by
/// page while the body streams, up to the head as it stood when the export began: events
/// recorded meanwhile belong to the next export. A failed read mid-way aborts the body, so a
/// download is never silently short.
pub(super) async fn export(
    State(host): Host,
    TenantReader(m): TenantReader,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    if q.limit.is_some() {
        return Err(ApiError::bad_request("query string: an export has no `limit`: it is the whole matching trail"));
    }
    host.flush().await;
    let head = host.audit.head(&m.tenant).await.map_err(|e| ApiError::internal("audit store", e))?;
    let mut filter = q.filter();
    filter.before = Some(filter.before.map_or(head + 1, |b| b.min(head + 1)));
    let filename = format!("attachment; filename=\"audit-{}.jsonl\"", m.tenant);
    let tenant = m.tenant;
    let pages = futures_util::stream::unfold(Some((host, tenant, filter)), |state| async move {
        let (host, tenant, mut filter) = state?;
        match host.audit.search_oldest_first(&tenant, &filter, EXPORT_PAGE).await {
            Ok(page) if page.is_empty() => None,
            Ok(page) => {
                let mut lines = Vec::with_capacity(page.len() * 512);
                for event in &page {
                    // A stored event always serializes.
                    serde_json::to_writer(&mut lines, event).unwrap_or_default();
                    lines.push(b'\n');
                }
                filter.after = page.last().map(|e| e.seq);
                let next = (page.len() as i64 == EXPORT_PAGE).then_some((host, tenant, filter));
                Some((Ok(Bytes::from(lines)), next))
            }
            Err(e) => {
                tracing::error!("audit export of `{tenant}`: {e}");
                Some((Err(std::io::Error::other("the audit store failed mid-export")), None))
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson".to_string()), (header::CONTENT_DISPOSITION, filename)],
        Body::from_stream(pages),
    )
        .into_response())
}

// ---- signed checkpoints and the verifiable export ---------------------------------------------

/// The query of the checkpoint routes: only the tenant (checked by the door).
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ChainQuery {
    #[allow(dead_code)]
    tenant: Option<String>,
}

/// Signs `chain`'s head now (after a flush, so it covers everything recorded so far).
async fn sign_now(host: &Airlock, chain: &str) -> Result<Json<Checkpoint>, ApiError> {
    host.flush().await;
    match host.checkpoints.sign(chain).await {
        Ok(Signed::New(c) | Signed::Unchanged(c)) => Ok(Json(c)),
        Ok(Signed::Empty) => Err(ApiError::conflict(format!("the trail of `{chain}` is empty: no head to sign"))),
        Err(e @ CheckpointError::Tampered { .. }) => {
            Err(ApiError::new(StatusCode::CONFLICT, "audit_tampered", e.to_string()))
        }
        Err(CheckpointError::Store(e)) => Err(ApiError::internal("audit store", e)),
    }
}

/// `POST /v1/audit/checkpoints` (admin): the host signs the tenant's chain head now and
/// returns the checkpoint `{tenant, seq, hash, ts, kid, signature}` (the newest one when the
/// head has not moved since). `409 audit_tampered` when the chain no longer extends the last
/// checkpoint: the host signs no rewritten trail.
pub(super) async fn checkpoint_tenant(
    State(host): Host,
    TenantAdmin(m): TenantAdmin,
) -> Result<Json<Checkpoint>, ApiError> {
    sign_now(&host, &m.tenant).await
}

/// `POST /v1/host/audit/checkpoints`: the checkpoints signed (or already covering a head that
/// had not moved), and the chains refused.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct CheckpointsSigned {
    checkpoints: Vec<Checkpoint>,
    refused: Vec<RefusedChain>,
}

/// A chain whose head the host did not sign.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct RefusedChain {
    /// The chain: a tenant, or the host's own.
    tenant: String,
    /// Why (a chain that no longer extends its last checkpoint).
    reason: String,
}

/// `POST /v1/host/audit/checkpoints` (operator): signs every chain whose head moved (every
/// tenant's and the host's) now: `{"checkpoints": [...], "refused": [{"tenant", "reason"}]}`.
pub(super) async fn checkpoint_all(State(host): Host, _: Operator) -> Result<Json<CheckpointsSigned>, ApiError> {
    host.flush().await;
    let mut checkpoints = Vec::new();
    let mut refused = Vec::new();
    for (chain, signed) in host.checkpoints.sign_all().await {
        match signed {
            Ok(s) => checkpoints.extend(s.checkpoint().cloned()),
            Err(CheckpointError::Store(e)) => return Err(ApiError::internal("audit store", e)),
            Err(e) => refused.push(RefusedChain { tenant: chain, reason: e.to_string() }),
        }
    }
    Ok(Json(CheckpointsSigned { checkpoints, refused }))
}

/// `GET /v1/audit/checkpoints`: the tenant chain's signed checkpoints, oldest first.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct CheckpointList {
    checkpoints: Vec<Checkpoint>,
}

/// `GET /v1/audit/checkpoints` (reader): the tenant's stored checkpoints, oldest first.
pub(super) async fn list_checkpoints(
    State(host): Host,
    TenantReader(m): TenantReader,
    query: Result<Query<ChainQuery>, QueryRejection>,
) -> Result<Json<CheckpointList>, ApiError> {
    query?;
    let checkpoints = host.audit.checkpoints(&m.tenant).await.map_err(|e| ApiError::internal("audit store", e))?;
    Ok(Json(CheckpointList { checkpoints }))
}

/// `GET /v1/audit/checkpoint-key`, `GET /v1/host/audit/checkpoint-key`: the public key that
/// verifies the checkpoints.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct CheckpointPublicKey {
    /// `Ed25519`.
    algorithm: &'static str,
    /// The key's id: the first 16 hex digits of its SHA-256 (each checkpoint's `kid`).
    kid: String,
    /// The public key, hex (64 digits).
    public_key: String,
}

impl CheckpointPublicKey {
    /// The host's key, as `PublicKey::to_json` publishes it.
    fn of(host: &Airlock) -> CheckpointPublicKey {
        let key = host.checkpoints.public_key();
        CheckpointPublicKey { algorithm: checkpoint::ALGORITHM, kid: key.kid(), public_key: key.to_hex() }
    }
}

/// `GET /v1/audit/checkpoint-key` (reader), `GET /v1/host/audit/checkpoint-key` (operator):
/// the public key that verifies the checkpoints, `{"algorithm": "Ed25519", "kid", "public_key"}`
/// (hex). Compare it out of band before trusting a verification with it.
pub(super) async fn checkpoint_key(State(host): Host, TenantReader(_): TenantReader) -> Json<CheckpointPublicKey> {
    Json(CheckpointPublicKey::of(&host))
}

pub(super) async fn host_checkpoint_key(State(host): Host, _: Operator) -> Json<CheckpointPublicKey> {
    Json(CheckpointPublicKey::of(&host))
}

/// `GET /v1/audit/export/signed` (reader): the tenant's whole trail with its signed
/// checkpoints, for `airlock audit verify` (offline): `application/x-ndjson`, a header line
/// `{"export": {format, tenant, head, exported_at}}`, then `{"event": {...}}` for events
/// `1..=head` (`detail` exactly as stored, the text its hash covers), then
/// `{"checkpoint": {...}}` lines. The checkpoints are read before the head, so each one is
/// within the events; events recorded meanwhile belong to the next export.
pub(super) async fn export_signed(
    State(host): Host,
    TenantReader(m): TenantReader,
    query: Result<Query<ChainQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    query?;
    signed_export(host, m.tenant).await
}

/// `GET /v1/host/audit/export/signed` (operator): the same, of the host's own chain.
pub(super) async fn export_signed_host(State(host): Host, _: Operator) -> Result<Response, ApiError> {
    signed_export(host, HOST_CHAIN.to_string()).await
}

async fn signed_export(host: Arc<Airlock>, chain: String) -> Result<Response, ApiError> {
    host.flush().await;
    let checkpoints = host.audit.checkpoints(&chain).await.map_err(|e| ApiError::internal("audit store", e))?;
    let (head, _) = host.audit.head_hash(&chain).await.map_err(|e| ApiError::internal("audit store", e))?;
    let mut header = Vec::new();
    checkpoint::export_header(&chain, head).write_to(&mut header);
    let mut tail = Vec::new();
    for c in checkpoints {
        ExportLine::Checkpoint(c).write_to(&mut tail);
    }
    let filename = format!("attachment; filename=\"audit-{chain}.signed.jsonl\"");
    let events = futures_util::stream::unfold(Some((host, chain, 0)), move |state| async move {
        let (host, chain, after) = state?;
        if after >= head {
            return None;
        }
        match host.audit.export_page(&chain, after, EXPORT_PAGE.min(head - after)).await {
            Ok(page) => {
                let last = page.last()?.seq;
                let mut lines = Vec::with_capacity(page.len() * 512);
                for event in page {
                    ExportLine::Event(event).write_to(&mut lines);
                }
                Some((Ok(Bytes::from(lines)), Some((host, chain, last))))
            }
            Err(e) => {
                tracing::error!("signed audit export of `{chain}`: {e}");
                Some((Err(std::io::Error::other("the audit store failed mid-export")), None))
            }
        }
    });
    let body = futures_util::stream::once(async { Ok::<_, std::io::Error>(Bytes::from(header)) })
        .chain(events)
        .chain(futures_util::stream::once(async { Ok(Bytes::from(tail)) }));
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson".to_string()), (header::CONTENT_DISPOSITION, filename)],
        Body::from_stream(body),
    )
        .into_response())
}
