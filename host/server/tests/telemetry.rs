//! What operators see: `/metrics` (parsed by the Prometheus project's own OpenMetrics parser,
//! the Python `prometheus_client`) moves when calls run, and a real `airlock serve` exports
//! one OTLP trace per call, with a span per stage, to a collector, continuing the caller's
//! `traceparent` and carrying it on to the external API the tool reached.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use serde_json::{json, Value};
use support::serve::{proc_thread_names, Serve};
use support::TestHost;

/// The caller's trace (W3C example ids): the host's spans must continue it.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const MCP_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

/// A stand-in billing API that remembers each request's `traceparent`.
async fn billing_api() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/customers/{id}",
        axum::routing::get(move |headers: HeaderMap| async move {
            let parent = headers.get("traceparent").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            record.lock().unwrap().push(parent);
            axum::Json(json!({ "id": "42", "plan": "pro" }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

/// A minimal OTLP/HTTP collector: keeps every span of every `POST /v1/traces` (OTLP JSON).
async fn collector() -> (String, Arc<Mutex<Vec<Value>>>) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let keep = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| async move {
            let export: Value = serde_json::from_slice(&body).expect("an OTLP JSON export");
            for resource in export["resourceSpans"].as_array().into_iter().flatten() {
                assert_eq!(service_name(resource), Some("airlock"), "{resource}");
                for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                    keep.lock().unwrap().extend(scope["spans"].as_array().into_iter().flatten().cloned());
                }
            }
            axum::Json(json!({}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, spans)
}

fn service_name(resource: &Value) -> Option<&str> {
    let attributes = resource["resource"]["attributes"].as_array()?;
    let name = attributes.iter().find(|a| a["key"] == "service.name")?;
    name["value"]["stringValue"].as_str()
}

/// Prepares `dir` with the in-process host: an agent allowed to look customers up through
/// `billing-api` (at `api`), and to call nothing else. Returns its token.
fn setup(dir: &Path, api: std::net::SocketAddr) -> String {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let token = rt.block_on(async {
        let t = TestHost::start_in(dir.to_path_buf(), None, support::test_limits()).await;
        t.billing_connection(api, "sk_billing_telemetry").await;
        let token = t.agent("support-bot").await;
        t.grant(&[
            ("agent:support-bot", "can_use", "tool:billing.lookup-customer"),
            ("agent:support-bot", "viewer", "customer:42"),
            ("agent:support-bot", "can_use", "connection:billing-api"),
        ])
        .await;
        t.host.flush().await;
        token
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    token
}

/// `/metrics`, parsed by `prometheus_client`'s OpenMetrics parser: value by `name{labels}`
/// (labels sorted), or the parser's complaint.
async fn scrape(python: &str, url: &str, token: &str) -> HashMap<String, f64> {
    let resp = reqwest::Client::new().get(format!("{url}/metrics")).bearer_auth(token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let kind = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    let text = resp.text().await.unwrap();
    let parse = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(out))
"#;
    let mut child = std::process::Command::new(python)
        .args(["-c", parse])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn value(samples: &HashMap<String, f64>, key: &str) -> f64 {
    samples.get(key).copied().unwrap_or(0.0)
}

/// How many times stage `stage` was timed.
fn stage_count(samples: &HashMap<String, f64>, stage: &str) -> f64 {
    value(samples, &format!("airlock_stage_duration_seconds_count{{stage={stage}}}"))
}

#[test]
fn metrics_move_with_calls_and_each_call_is_one_trace_carried_to_the_external_api() {
    let Some(python) = support::peer("AIRLOCK_PYTHON", "prometheus_client") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (api, parents) = rt.block_on(billing_api());
    let token = setup(tmp.path(), api);
    rt.block_on(async {
        let (otlp, spans) = collector().await;
        let mut serve = Serve::new(support::op::free_port());
        let flags = ["--metrics", "--metrics-token", "scrape-me", "--otlp-endpoint", &otlp];
        serve.start_with(tmp.path(), None, &flags, &[("OTEL_BSP_SCHEDULE_DELAY", "50")]).await;
        let url = serve.url();
        // A serving host returns a burst's freed memory while idle: jemalloc's purging thread runs.
        let threads = proc_thread_names(serve.pid());
        assert!(threads.iter().any(|t| t == "jemalloc_bg_thd"), "no purging thread among {threads:?}");
        let http = reqwest::Client::new();

        // Without the metrics token: refused, and told how.
        let resp = http.get(format!("{url}/metrics")).send().await.unwrap();
        assert_eq!(resp.status(), 401);
        assert!(resp.text().await.unwrap().contains("--metrics-token"));
        let before = scrape(&python, &url, "scrape-me").await;
        let ok = "airlock_tool_calls_total{outcome=ok,tenant=default,tool=billing.lookup-customer}";
        assert_eq!(value(&before, ok), 0.0);

        // A call over HTTP, inside the agent's own trace.
        let call = |tool: &str, traceparent: Option<String>| {
            let mut req = http
                .post(format!("{url}/v1/tools/{tool}/call"))
                .bearer_auth(&token)
                .json(&json!({ "customer_id": "42" }));
            if let Some(parent) = traceparent {
                req = req.header("traceparent", parent);
            }
            req.send()
        };
        let resp = call("billing.lookup-customer", Some(format!("00-{TRACE}-{CALLER_SPAN}-01"))).await.unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
        // Refused: a tool that exists but is not granted, and one that does not exist.
        assert_eq!(call("billing.refund", None).await.unwrap().status(), 403);
        assert_eq!(call("made-up.tool-4711", None).await.unwrap().status(), 403);
        // The same call over MCP, in another trace.
        let mcp = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": { "name": "billing.lookup-customer", "arguments": { "customer_id": "42" } } });
        let resp = http
            .post(format!("{url}/mcp"))
            .bearer_auth(&token)
            .header("accept", "application/json, text/event-stream")
            .header("traceparent", format!("00-{MCP_TRACE}-{CALLER_SPAN}-01"))
            .json(&mcp)
            .send()
            .await
            .unwrap();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["result"]["isError"], false, "{body}");

        let after = scrape(&python, &url, "scrape-me").await;
        assert_eq!(value(&after, ok), 2.0, "{after:?}");
        let refused = "airlock_tool_calls_total{outcome=forbidden,tenant=default,tool=billing.refund}";
        assert_eq!(value(&after, refused), 1.0, "{after:?}");
        // A made-up name counts under `-`: agents cannot grow the registry.
        let unknown = "airlock_tool_calls_total{outcome=forbidden,tenant=default,tool=-}";
        assert_eq!(value(&after, unknown), 1.0, "{after:?}");
        assert!(!after.keys().any(|k| k.contains("made-up")), "{after:?}");
        for (stage, at_least) in [
            ("call", 4.0),
            ("auth", 4.0),
            ("authz", 4.0),
            ("sandbox", 2.0),
            ("vault_request", 2.0),
            ("audit_durable", 2.0),
            ("audit_commit", 1.0),
        ] {
            let moved = stage_count(&after, stage) - stage_count(&before, stage);
            assert!(moved >= at_least, "stage `{stage}` timed {moved} times, expected {at_least}: {after:?}");
        }
        assert_eq!(stage_count(&after, "approval_wait"), 0.0, "nothing waited for a person");
        assert!(value(&after, "airlock_audit_commits_total{}") >= 1.0, "{after:?}");
        assert_eq!(value(&after, "airlock_audit_queue_depth{}"), 0.0, "{after:?}");
        assert_eq!(value(&after, "airlock_sandboxes_in_use{}"), 0.0, "{after:?}");
        assert_eq!(value(&after, "airlock_sandbox_slots{}"), f64::from(airlock_runtime::Limits::default().pool_slots));

        // The traces: each call's stages arrive at the collector within a few export rounds.
        let stages = ["request", "auth", "call", "authz", "sandbox", "vault_request", "audit_durable"];
        let of_trace = |trace: &str| -> Vec<Value> {
            spans.lock().unwrap().iter().filter(|s| s["traceId"] == trace).cloned().collect()
        };
        let mut waited = 0;
        while stages.iter().any(|name| !of_trace(TRACE).iter().any(|s| s["name"] == *name))
            || !of_trace(MCP_TRACE).iter().any(|s| s["name"] == "vault_request")
        {
            waited += 1;
            let names: Vec<Value> = spans.lock().unwrap().iter().map(|s| s["name"].clone()).collect();
            assert!(waited < 200, "the collector did not get every stage of the call within 10 s: {names:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let trace = of_trace(TRACE);
        let span = |name: &str| trace.iter().find(|s| s["name"] == name).unwrap().clone();
        // One tree: the request continues the caller's span, the stages nest under the call.
        assert_eq!(span("request")["parentSpanId"], CALLER_SPAN);
        let request_id = span("request")["spanId"].clone();
        assert_eq!(span("auth")["parentSpanId"], request_id);
        assert_eq!(span("call")["parentSpanId"], request_id);
        let call_id = span("call")["spanId"].clone();
        for stage in ["authz", "sandbox", "audit_durable"] {
            assert_eq!(span(stage)["parentSpanId"], call_id, "{stage}: {trace:?}");
        }
        assert_eq!(span("vault_request")["parentSpanId"], span("sandbox")["spanId"]);
        let attribute = |s: &Value, key: &str| {
            s["attributes"].as_array().unwrap().iter().find(|a| a["key"] == key).map(|a| a["value"].clone())
        };
        assert_eq!(attribute(&span("call"), "tool").unwrap()["stringValue"], "billing.lookup-customer");
        assert_eq!(attribute(&span("call"), "outcome").unwrap()["stringValue"], "ok");
        assert_eq!(attribute(&span("call"), "tenant").unwrap()["stringValue"], "default");
        // The MCP call is in its own trace, the call under its request.
        let mcp_trace = of_trace(MCP_TRACE);
        let mcp_span = |name: &str| mcp_trace.iter().find(|s| s["name"] == name).unwrap().clone();
        assert_eq!(mcp_span("call")["parentSpanId"], mcp_span("request")["spanId"]);

        // The external API saw both traces, as children of the host's vault requests.
        let parents = parents.lock().unwrap().clone();
        let vault_span = span("vault_request")["spanId"].as_str().unwrap().to_string();
        assert_eq!(parents[0], format!("00-{TRACE}-{vault_span}-01"), "{parents:?}");
        assert!(parents[1].starts_with(&format!("00-{MCP_TRACE}-")), "{parents:?}");
        serve.kill().await;
    });
}
