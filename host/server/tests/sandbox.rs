//! The sandbox against a component that misbehaves on purpose (plugins/sandbox-probe):
//! every limit holds, the error names the limit, and the host keeps serving.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{billing_api, TestHost};

const SECRET: &str = "sk_live_probe_93be27d1c0aa4f";

async fn probe_host(limits: airlock_runtime::Limits) -> (TestHost, String) {
    let t = TestHost::start_with(limits).await;
    let token = t.agent("prober").await;
    for tool in ["echo", "spin", "hog", "chatty", "huge-output", "env", "fetch", "check"] {
        t.grant(&[("agent:prober", "can_use", &format!("tool:probe.{tool}"))]).await;
    }
    (t, token)
}

async fn still_serving(t: &TestHost, token: &str) {
    let (status, body) = t.call(token, "probe.echo", json!({ "n": 1 })).await;
    assert_eq!((status, &body["result"]), (200, &json!({ "n": 1 })), "{body}");
}

fn limit_message(body: &Value) -> &str {
    assert_eq!(body["code"], "limit_exceeded", "{body}");
    body["message"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_is_stopped_by_the_deadline() {
    // Fuel high enough that only the wall clock can stop it.
    let limits = airlock_runtime::Limits { fuel: u64::MAX / 2, ..support::test_limits() };
    let (t, token) = probe_host(limits).await;
    let started = Instant::now();
    let (status, body) = t.call(&token, "probe.spin", json!({})).await;
    assert_eq!(status, 422, "{body}");
    assert!(limit_message(&body).contains("deadline of 1.5s exceeded"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(5), "stopped near the deadline, took {:?}", started.elapsed());
    still_serving(&t, &token).await;

    // The deadline's clock sleeps while no call runs: the first call after an idle spell
    // wakes it, and is stopped on time all the same.
    tokio::time::sleep(airlock_runtime::EPOCH_IDLE_AFTER + Duration::from_millis(500)).await;
    let started = Instant::now();
    let (status, body) = tokio::time::timeout(Duration::from_secs(20), t.call(&token, "probe.spin", json!({})))
        .await
        .expect("a loop started after an idle spell was never stopped: the epoch clock did not wake");
    assert_eq!(status, 422, "{body}");
    assert!(limit_message(&body).contains("deadline of 1.5s exceeded"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(5), "stopped near the deadline, took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_is_stopped_by_the_cpu_budget() {
    let limits =
        airlock_runtime::Limits { fuel: 50_000_000, deadline: Duration::from_secs(30), ..support::test_limits() };
    let (t, token) = probe_host(limits).await;
    let (status, body) = t.call(&token, "probe.spin", json!({})).await;
    assert_eq!(status, 422, "{body}");
    assert!(limit_message(&body).contains("CPU budget of 50000000 fuel exhausted"), "{body}");
    still_serving(&t, &token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_hog_is_stopped_by_the_cap() {
    let (t, token) = probe_host(support::test_limits()).await;
    let (status, body) = t.call(&token, "probe.hog", json!({})).await;
    assert_eq!(status, 422, "{body}");
    assert!(limit_message(&body).contains(&format!("memory cap of {} bytes exceeded", 32 << 20)), "{body}");
    still_serving(&t, &token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_and_log_are_capped() {
    let limits = airlock_runtime::Limits { output_bytes: 4096, log_bytes: 8192, ..support::test_limits() };
    let (t, token) = probe_host(limits).await;
    let (status, body) = t.call(&token, "probe.huge-output", json!({ "bytes": 10_000 })).await;
    assert_eq!(status, 422, "{body}");
    assert!(limit_message(&body).contains("output larger than 4096 bytes"), "{body}");

    let (status, body) = t.call(&token, "probe.chatty", json!({ "bytes": 4096 })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["log"].as_str().unwrap().len(), 4096, "stdout is captured into the call's log");

    // A flood is truncated, not fatal: the tool still answers.
    let (status, body) = t.call(&token, "probe.chatty", json!({ "bytes": 100_000 })).await;
    assert_eq!(status, 200, "{body}");
    let log = body["log"].as_str().unwrap();
    assert!(
        log.starts_with(&"x".repeat(1023)) && log.ends_with("[airlock: stdout truncated at 8192 bytes]\n"),
        "{log}"
    );
    assert!(log.len() < 8192 + 100);
    still_serving(&t, &token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_gives_no_environment_and_no_files() {
    std::env::set_var("AIRLOCK_TEST_LEAK", "host-environment-value");
    let (t, token) = probe_host(support::test_limits()).await;
    let (status, body) = t.call(&token, "probe.env", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["env"], json!([]));
    assert_eq!(body["result"]["root_readable"], false);
    assert_eq!(body["result"]["etc_passwd"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vault_secret_never_enters_guest_memory_or_output() {
    let (t, token) = probe_host(support::test_limits()).await;
    let (api, seen) = billing_api(SECRET).await;
    let body = json!({ "kind": "bearer", "allowed_hosts": [api.to_string()], "secret": SECRET, "allow_private_network": true });
    let (status, _) = t.request(reqwest::Method::PUT, "/v1/connections/billing-api", &t.admin, Some(body)).await;
    assert_eq!(status, 200);
    t.grant(&[("agent:prober", "can_use", "connection:billing-api")]).await;

    let (status, body) = t
        .call(
            &token,
            "probe.fetch",
            json!({ "connection": "billing-api", "url": format!("http://{api}/customers/7"), "dump_memory": true }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["status"], 200, "the API accepted the host-injected credential");
    assert_eq!(seen.requests.lock().unwrap()[0].1.as_deref(), Some(format!("Bearer {SECRET}").as_str()));
    let memory = hex_decode(body["result"]["memory_hex"].as_str().unwrap());
    assert!(memory.len() > 64 * 1024, "a real dump of linear memory: {} bytes", memory.len());
    assert!(memory.windows(12).any(|w| w == b"/customers/7"), "the dump is real: it holds the request path");
    assert!(!memory.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()), "the secret is not in guest memory");
    assert!(!body.to_string().contains(SECRET));

    // Egress outside the connection's hosts is refused, and audited.
    let (status, body) = t
        .call(&token, "probe.fetch", json!({ "connection": "billing-api", "url": "http://127.0.0.1:1/customers/7" }))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("egress refused"), "{body}");
    let events = t.audit().await;
    assert!(events.iter().any(|e| e["kind"] == "vault.fetch" && e["outcome"] == "denied"));
    assert!(!serde_json::to_string(&events).unwrap().contains(SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_with_forbidden_imports_or_garbage_are_refused_with_reasons() {
    let t = TestHost::start().await;
    let token = t.agent("prober").await;
    let http = reqwest::Client::new();
    let add = |name: &'static str, bytes: Vec<u8>| {
        let req = http.post(format!("{}/v1/components/{name}", t.url)).bearer_auth(&t.operator).body(bytes);
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let sneaky = wat::parse_str(
        r#"(component
             (import "wasi:sockets/tcp@0.2.0" (instance))
             (import "wasi:http/outgoing-handler@0.2.0" (instance))
             (import "airlock:tool/vault@0.1.0" (instance)))"#,
    )
    .unwrap();
    let (status, body) = add("sneaky", sneaky).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("forbidden_imports")), "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("`wasi:sockets/tcp@0.2.0`") && message.contains("`wasi:http/outgoing-handler@0.2.0`"),
        "{message}"
    );
    assert!(!message.contains("`airlock:tool/vault@0.1.0`"), "allowed imports are not named: {message}");

    let (status, body) = add("garbage", b"\0asm not really".to_vec()).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_component")), "{body}");

    let core_module = wat::parse_str("(module)").unwrap();
    let (status, body) = add("core", core_module).await;
    assert_eq!(status, 422, "{body}");

    let no_export = wat::parse_str("(component)").unwrap();
    let (status, body) = add("empty", no_export).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["message"].as_str().unwrap().contains("does not export `airlock:tool/tools@0.1.0`"), "{body}");

    let (_, list) = t.request(reqwest::Method::GET, "/v1/components", &t.operator, None).await;
    let names: Vec<&str> = list["components"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["billing", "hello", "probe"], "nothing refused was registered");
    t.grant(&[("agent:prober", "can_use", "tool:probe.echo")]).await;
    still_serving(&t, &token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_recheck_authority_as_the_calling_agent() {
    let (t, token) = probe_host(support::test_limits()).await;
    let (_, body) = t.call(&token, "probe.check", json!({ "relation": "viewer", "object": "doc:1" })).await;
    assert_eq!(body["result"], json!({ "allowed": false }));
    t.grant(&[("agent:prober", "viewer", "doc:1")]).await;
    let (_, body) = t.call(&token, "probe.check", json!({ "relation": "viewer", "object": "doc:1" })).await;
    assert_eq!(body["result"], json!({ "allowed": true }));
    // Another agent with the same tool gets its own answer.
    let other = t.agent("other").await;
    t.grant(&[("agent:other", "can_use", "tool:probe.check")]).await;
    let (_, body) = t.call(&other, "probe.check", json!({ "relation": "viewer", "object": "doc:1" })).await;
    assert_eq!(body["result"], json!({ "allowed": false }));
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect()
}
