//! Prometheus metrics at `/metrics` (OpenMetrics text, `prometheus-client`).
//!
//! - `airlock_tool_calls_total{tenant, tool, outcome}`: every call the gate answered;
//! - `airlock_stage_duration_seconds{stage}`: how long each stage of a call took (the stage
//!   spans, see [`super`]): `call` is the whole call, `approval_wait` the time a person took;
//! - scraped from the host when asked: pending approvals by tenant, the audit queue's depth
//!   and commits, sandboxes in use and the pool's size.
//!
//! Labels are bounded: `tool` is the tool's id only once the gate found the agent may use it
//! (a refused or malformed id counts under `-`), so an agent cannot grow the registry by
//! calling made-up names.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tracing::span;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::Airlock;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    tenant: String,
    tool: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

/// 10 us to about 7 minutes, each bucket 3x the one before: a check and a person's decision
/// land in the same histogram family.
fn stage_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1e-5, 3.0, 17))
}

/// The host's metrics, once `--metrics` turned them on.
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    stages: Family<StageLabels, Histogram, fn() -> Histogram>,
    pending_approvals: Family<TenantLabels, Gauge>,
    audit_queue: Gauge,
    audit_commits: Counter,
    sandboxes_in_use: Gauge,
    sandbox_slots: Gauge,
    /// What `/metrics` demands as a bearer token, if anything.
    token: Option<String>,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The metrics, when turned on.
pub fn get() -> Option<&'static Metrics> {
    METRICS.get()
}

/// Turns metrics on for this process (`/metrics` answers from now on).
pub(super) fn enable(token: Option<String>) {
    METRICS.get_or_init(|| Metrics::new(token));
}

impl Metrics {
    fn new(token: Option<String>) -> Metrics {
        let mut registry = Registry::default();
        let calls = Family::<CallLabels, Counter>::default();
        let stages = Family::<StageLabels, Histogram, fn() -> Histogram>::new_with_constructor(stage_histogram);
        let pending_approvals = Family::<TenantLabels, Gauge>::default();
        let (audit_queue, audit_commits) = (Gauge::default(), Counter::default());
        let (sandboxes_in_use, sandbox_slots) = (Gauge::default(), Gauge::default());
        registry.register("airlock_tool_calls", "Tool calls the gate answered, by outcome", calls.clone());
        registry.register(
            "airlock_stage_duration_seconds",
            "Time spent in each stage of a call (call: the whole call)",
            stages.clone(),
        );
        registry.register("airlock_approvals_pending", "Approvals waiting for a decision", pending_approvals.clone());
        registry.register("airlock_audit_queue_depth", "Audit events not yet committed", audit_queue.clone());
        registry.register("airlock_audit_commits", "Audit commits (each one fsync)", audit_commits.clone());
        registry.register("airlock_sandboxes_in_use", "Sandboxes running a call now", sandboxes_in_use.clone());
        registry.register("airlock_sandbox_slots", "Sandboxes the instance pool holds", sandbox_slots.clone());
        Metrics {
            registry,
            calls,
            stages,
            pending_approvals,
            audit_queue,
            audit_commits,
            sandboxes_in_use,
            sandbox_slots,
            token,
        }
    }

    /// Counts one call the gate answered.
    pub fn call(&self, tenant: &str, tool: &str, outcome: &str) {
        let labels = CallLabels { tenant: tenant.to_string(), tool: tool.to_string(), outcome: outcome.to_string() };
        self.calls.get_or_create(&labels).inc();
    }

    fn stage(&self, stage: &str, seconds: f64) {
        self.stages.get_or_create(&StageLabels { stage: stage.to_string() }).observe(seconds);
    }

    /// Reads the host's gauges now, then encodes everything.
    async fn scrape(&self, host: &Airlock) -> Result<String, String> {
        let pending = host.approvals.pending_by_tenant().await.map_err(|e| e.to_string())?;
        self.pending_approvals.clear();
        for (tenant, n) in pending {
            self.pending_approvals.get_or_create(&TenantLabels { tenant }).set(n);
        }
        self.audit_queue.set(host.audit.backlog() as i64);
        let commits = host.audit.commits();
        self.audit_commits.inc_by(commits.saturating_sub(self.audit_commits.get()));
        self.sandboxes_in_use.set(i64::from(host.quotas.held()));
        self.sandbox_slots.set(i64::from(host.runtime.limits().pool_slots));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).map_err(|e| e.to_string())?;
        Ok(text)
    }
}

/// `GET /metrics`: 404 while metrics are off, 401 without the configured token.
pub(crate) async fn serve(State(host): State<std::sync::Arc<Airlock>>, headers: HeaderMap) -> Response {
    let Some(metrics) = get() else {
        return (StatusCode::NOT_FOUND, "metrics are off: start `airlock serve --metrics` to serve them\n")
            .into_response();
    };
    if let Some(token) = &metrics.token {
        let sent =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        let matches = sent.is_some_and(|s| subtle::ConstantTimeEq::ct_eq(s.as_bytes(), token.as_bytes()).into());
        if !matches {
            let mut resp =
                (StatusCode::UNAUTHORIZED, "send `Authorization: Bearer <metrics token>` (--metrics-token)\n")
                    .into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer realm=\"airlock metrics\"".parse().unwrap_or_else(|_| unreachable!()),
            );
            return resp;
        }
    }
    match metrics.scrape(&host).await {
        Ok(text) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("metrics could not be read: {e}\n")).into_response(),
    }
}

/// The `tracing` layer that times stage spans into [`Metrics`]: the clock starts when the
/// span is created and stops when it closes (for an async stage, when its future is done).
pub struct StageTimer;

struct Started(Instant);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for StageTimer {
    fn on_new_span(&self, _: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Started(Instant::now()));
        }
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        let (Some(metrics), Some(span)) = (get(), ctx.span(&id)) else { return };
        let started = span.extensions().get::<Started>().map(|Started(at)| at.elapsed());
        if let Some(took) = started {
            metrics.stage(span.name(), took.as_secs_f64());
        }
    }
}
