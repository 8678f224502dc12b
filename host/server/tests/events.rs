//! The live events stream (`GET /v1/events`, Server-Sent Events) over real HTTP.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::TestHost;

/// Reads SSE frames from `resp` until `n` events arrived; fails after 10 s.
async fn read_events(resp: &mut reqwest::Response, buf: &mut String, n: usize) -> Vec<(String, String, Value)> {
    let events = support::sse_frames(resp, buf, n, Duration::from_secs(10)).await;
    assert_eq!(events.len(), n, "events arrive in time: {events:?}");
    events
}

async fn open(t: &TestHost, query: &str, last_event_id: Option<&str>) -> reqwest::Response {
    open_as(t, &t.admin, query, last_event_id).await
}

async fn open_as(t: &TestHost, token: &str, query: &str, last_event_id: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("{}/v1/events{query}", t.url)).bearer_auth(token);
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_and_decisions_stream_live_and_resume_from_the_last_event_id() {
    let t = TestHost::start().await;
    let token = t.agent("greeter").await; // before the stream opens: not shown
    t.host.audit.flush().await.unwrap();
    let mut live = open(&t, "", None).await;

    let (status, _) = t.call(&token, "hello.greet", json!({ "name": "Ada" })).await;
    assert_eq!(status, 403, "no tuple yet");
    t.grant(&[("agent:greeter", "can_use", "tool:hello.greet")]).await;
    let (status, _) = t.call(&token, "hello.greet", json!({ "name": "Ada" })).await;
    assert_eq!(status, 200);

    let mut buf = String::new();
    let events = read_events(&mut live, &mut buf, 3).await;
    let kinds: Vec<(&str, &str)> =
        events.iter().map(|(_, kind, e)| (kind.as_str(), e["outcome"].as_str().unwrap())).collect();
    assert_eq!(kinds, [("tool.call", "denied"), ("tuples.write", "ok"), ("tool.call", "allowed")]);
    assert!(events.iter().all(|(id, _, e)| e["seq"].to_string() == *id && e["hash"].is_string()));
    assert_eq!(events[2].2["detail"]["chain"], json!(["agent:greeter", "tool:hello.greet"]));
    assert!(!events.iter().any(|(_, k, _)| k == "agent.create"), "the stream starts with what happens next");

    // Reconnecting with Last-Event-ID resumes right after it; a kind filter keeps only calls.
    let mut resumed = open(&t, "?kinds=tool.call", Some(&events[0].0)).await;
    let again = read_events(&mut resumed, &mut String::new(), 1).await;
    assert_eq!((again[0].0.as_str(), again[0].1.as_str()), (events[2].0.as_str(), "tool.call"));

    // Other tenants' events never appear in this tenant's stream.
    let globex = t.tenant_admin("globex").await;
    let mut other = open_as(&t, &globex, "?tenant=globex&after=0", None).await;
    // Nor can this tenant's admin open globex's stream: 404, as if it did not exist.
    let (status, _) = t.request(reqwest::Method::GET, "/v1/events?tenant=globex", &t.admin, None).await;
    assert_eq!(status, 404);
    let (status, _) = t.call(&token, "hello.greet", json!({ "name": "Grace" })).await;
    assert_eq!(status, 200);
    let next = read_events(&mut live, &mut buf, 1).await;
    assert_eq!(next[0].2["tenant"], "default");
    let mut globex_events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Ok(chunk) = tokio::time::timeout_at(deadline, other.chunk()).await {
        globex_events.push(String::from_utf8_lossy(&chunk.unwrap().unwrap_or_default()).to_string());
    }
    // Its own trail (its admin's invitation) only; nothing of default's. The stream is not
    // silent for being broken: globex's own events came through it.
    let globex_events = globex_events.concat();
    assert!(globex_events.contains("\"tenant\":\"globex\""), "globex's stream shows globex's events: {globex_events}");
    assert!(!globex_events.contains("tool.call") && !globex_events.contains("\"default\""), "{globex_events}");

    // Bad input and no token are refused with what was wrong.
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/events", t.url))
        .bearer_auth(&t.admin)
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("yesterday"));
    let resp = reqwest::Client::new().get(format!("{}/v1/events", t.url)).send().await.unwrap();
    assert_eq!(resp.status(), 401);
}
