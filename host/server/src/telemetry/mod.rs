//! Observability for operators, off unless configured: Prometheus metrics at `/metrics`
//! ([`metrics`]) and OpenTelemetry traces over OTLP ([`traces`]).
//!
//! Both read the same thing: the *stage spans* the call path opens, `tracing` spans with the
//! target [`STAGE_TARGET`] (`call`, `auth`, `authz`, `approval_wait`, `sandbox`,
//! `vault_request`, `audit_durable`, and the audit writer's `audit_commit`). The metrics layer
//! turns their durations into one histogram per stage; the OpenTelemetry layer exports them as
//! spans of one trace per call. The spans are at `trace` level and only these two layers ask
//! for them, so with both off a stage span is a disabled callsite: one branch, no allocation.

pub mod metrics;
pub mod traces;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The `tracing` target of the stage spans (the runtime and audit crates use the same literal).
pub const STAGE_TARGET: &str = "airlock::stage";

/// What `airlock serve` is told about metrics and traces.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TelemetryOptions {
    /// Serve Prometheus metrics (OpenMetrics text) at `/metrics`.
    #[arg(long, env = "AIRLOCK_METRICS")]
    pub metrics: bool,
    /// A bearer token `/metrics` demands (`Authorization: Bearer TOKEN`); without one it is
    /// open to whoever reaches the listener.
    #[arg(long, env = "AIRLOCK_METRICS_TOKEN", requires = "metrics")]
    pub metrics_token: Option<String>,
    /// Export traces over OTLP/HTTP (JSON) to this collector, e.g. `http://127.0.0.1:4318`
    /// (`/v1/traces` is appended). The standard `OTEL_EXPORTER_OTLP_ENDPOINT` and
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` also turn traces on.
    #[arg(long, env = "AIRLOCK_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

/// The installed telemetry; [`Telemetry::shutdown`] flushes the spans not yet exported.
pub struct Telemetry {
    tracer: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    pub fn shutdown(self) {
        if let Some(provider) = self.tracer {
            if let Err(e) = provider.shutdown() {
                eprintln!("airlock: the last traces were not exported: {e}");
            }
        }
    }
}

/// Installs the process's `tracing` subscriber: the log on stderr (`RUST_LOG`, default
/// `airlock=info,warn`), plus the metrics and trace layers `options` turn on. Call it once,
/// outside any async runtime (the OTLP exporter's blocking HTTP client owns its own).
pub fn init(options: &TelemetryOptions) -> Result<Telemetry, String> {
    let log_filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "airlock=info,warn".into());
    let log = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(log_filter);
    let metrics_layer = if options.metrics {
        metrics::enable(options.metrics_token.clone());
        Some(metrics::StageTimer.with_filter(stage_spans()))
    } else {
        None
    };
    let (tracer, trace_layer) = match traces::endpoint(options) {
        Some(endpoint) => {
            let provider = traces::provider(endpoint.as_deref())?;
            let layer = traces::layer(&provider).with_filter(stage_spans());
            (Some(provider), Some(layer))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(log)
        .with(metrics_layer)
        .with(trace_layer)
        .try_init()
        .map_err(|e| format!("cannot install the log and telemetry subscriber: {e}"))?;
    Ok(Telemetry { tracer })
}

/// Only the stage spans (and nothing else: the log keeps its own filter).
fn stage_spans() -> tracing_subscriber::filter::Targets {
    tracing_subscriber::filter::Targets::new().with_target(STAGE_TARGET, tracing::Level::TRACE)
}

/// Opens a stage span: `stage!("authz")`, or with fields `stage!("call", tool = %tool)`.
#[macro_export]
macro_rules! stage {
    ($name:literal $(, $($fields:tt)*)?) => {
        ::tracing::trace_span!(target: "airlock::stage", $name $(, $($fields)*)?)
    };
}
