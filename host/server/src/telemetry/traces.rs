//! OpenTelemetry traces over OTLP/HTTP (JSON): one trace per request, one span per stage of a
//! call (see [`super`]), and the W3C `traceparent` carried both ways: an incoming one makes
//! the request a child of the caller's trace, and every vault request the host sends on a
//! tool's behalf carries the trace on to the external API.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{MatchedPath, Request};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::TelemetryOptions;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Where traces go: `Some(Some(url))` from `--otlp-endpoint`, `Some(None)` when only the
/// standard `OTEL_EXPORTER_OTLP_*` variables name it (the exporter reads them), `None`: off.
pub(super) fn endpoint(options: &TelemetryOptions) -> Option<Option<String>> {
    if let Some(base) = options.otlp_endpoint.as_deref().filter(|u| !u.is_empty()) {
        let base = base.trim_end_matches('/');
        let url = if base.ends_with("/v1/traces") { base.to_string() } else { format!("{base}/v1/traces") };
        return Some(Some(url));
    }
    let named = |var: &str| std::env::var(var).is_ok_and(|v| !v.is_empty());
    (named("OTEL_EXPORTER_OTLP_ENDPOINT") || named("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")).then_some(None)
}

/// The tracer provider exporting in batches (`OTEL_BSP_*` tune the batching) to `endpoint`.
pub(super) fn provider(endpoint: Option<&str>) -> Result<SdkTracerProvider, String> {
    let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_http().with_protocol(Protocol::HttpJson);
    if let Some(url) = endpoint {
        exporter = exporter.with_endpoint(url);
    }
    let exporter = exporter.build().map_err(|e| format!("cannot set up the OTLP trace exporter: {e}"))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("airlock");
    }
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build();
    ENABLED.store(true, Ordering::Relaxed);
    airlock_runtime::set_trace_header(current_traceparent);
    eprintln!("airlock: exporting traces over OTLP to {}", endpoint.unwrap_or("the OTEL_EXPORTER_OTLP_* endpoint"));
    Ok(provider)
}

/// The `tracing` layer that turns stage spans into OpenTelemetry spans.
pub(super) fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::Layer;
    // The audit writer's commits serve many calls at once and belong to none: metrics only.
    let not_commits = tracing_subscriber::filter::filter_fn(|meta| meta.name() != "audit_commit");
    tracing_opentelemetry::layer().with_tracer(provider.tracer("airlock")).with_filter(not_commits)
}

/// Whether traces are exported (then requests read and spans carry `traceparent`).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The request's own span, for handlers that run the call elsewhere (MCP): instrument the
/// call with it to keep the call in the request's trace.
#[derive(Clone)]
pub struct RequestSpan(pub tracing::Span);

/// The `request` span `req` runs in (a child of the caller's `traceparent`, when it sent one and
/// traces are on), put in its extensions as a [`RequestSpan`]. `route` is the matched route.
/// Nothing is allocated when no layer records stage spans (the default).
pub(crate) fn request_span(req: &mut Request, route: Option<&MatchedPath>) -> tracing::Span {
    let route = route.map_or("", |p| p.as_str());
    let span = crate::stage!("request", http.method = %req.method(), http.route = route);
    if span.is_disabled() {
        return span;
    }
    if enabled() {
        let carrier: HashMap<String, String> = ["traceparent", "tracestate"]
            .into_iter()
            .filter_map(|name| Some((name.to_string(), req.headers().get(name)?.to_str().ok()?.to_string())))
            .collect();
        if carrier.contains_key("traceparent") {
            let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
        }
    }
    req.extensions_mut().insert(RequestSpan(span.clone()));
    span
}

/// The W3C `traceparent` of the current span, if it belongs to an exported trace.
fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}
