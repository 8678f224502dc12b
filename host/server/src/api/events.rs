//! `GET /v1/events`: a tenant's decisions as they happen, as Server-Sent Events.
//!
//! The stream reads the audit trail, not a side channel: an event is sent once it is
//! committed (so nothing is shown that the trail does not hold), each with its sequence
//! number as the SSE `id`. A client that reconnects with `Last-Event-ID` (or `?after=N`)
//! resumes exactly where it stopped; without either it starts with what happens next.
//! The reader wakes when this host commits a batch and polls every second for commits of
//! other hosts sharing a PostgreSQL database.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde::Deserialize;

use super::auth::TenantReader;
use super::ApiError;
use crate::Airlock;

const PAGE: i64 = 200;
const POLL: Duration = Duration::from_secs(1);

#[derive(Deserialize, schemars::JsonSchema)]
pub(super) struct EventsQuery {
    /// Start after this sequence number (overridden by `Last-Event-ID`).
    after: Option<i64>,
    /// Comma-separated event kinds to keep (`tool.call,approval.request`); all when absent.
    kinds: Option<String>,
}

struct Reader {
    host: Arc<Airlock>,
    tenant: String,
    after: i64,
    kinds: Option<Vec<String>>,
    committed: tokio::sync::watch::Receiver<u64>,
    pending: std::collections::VecDeque<Event>,
}

pub(super) async fn stream_events(
    State(host): State<Arc<Airlock>>,
    TenantReader(m): TenantReader,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(q) = query?;
    let tenant = m.tenant;
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let after = match (resume, q.after) {
        (Some(id), _) => id
            .trim()
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("`Last-Event-ID` `{id}` is not an event sequence number")))?,
        (None, Some(after)) => after,
        (None, None) => host.audit.head(&tenant).await.map_err(|e| ApiError::internal("audit", e))?,
    };
    let kinds = q.kinds.map(|k| k.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect());
    let committed = host.audit.committed();
    let reader = Reader { host, tenant, after, kinds, committed, pending: Default::default() };
    let events = stream::unfold(reader, |mut r| async move {
        loop {
            if let Some(event) = r.pending.pop_front() {
                return Some((Ok(event), r));
            }
            match r.host.audit.list(&r.tenant, r.after, PAGE).await {
                Ok(page) if !page.is_empty() => {
                    for stored in page {
                        r.after = stored.seq;
                        if r.kinds.as_ref().is_some_and(|k| !k.contains(&stored.event.kind)) {
                            continue;
                        }
                        let data = serde_json::to_string(&stored).unwrap_or_default();
                        r.pending
                            .push_back(Event::default().id(stored.seq.to_string()).event(stored.event.kind).data(data));
                    }
                    continue;
                }
                Ok(_) => {}
                // A failed read ends the stream; the client reconnects with its Last-Event-ID.
                Err(e) => {
                    tracing::warn!("events stream: {e}");
                    return None;
                }
            }
            if let Ok(Err(_)) = tokio::time::timeout(POLL, r.committed.changed()).await {
                // The writer is gone (shutting down): keep polling slowly rather than spin.
                tokio::time::sleep(POLL).await;
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
