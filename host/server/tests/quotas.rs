//! Fairness between tenants: one tenant's agents waiting on humans cannot starve another's,
//! and an agent asking for approvals in a loop is refused, not passed on to approvers. Bodies
//! are capped per route before anyone is authenticated.

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{billing_api, TestHost};

const SECRET: &str = "sk_live_billing_quota";

/// An agent of the tenant of `admin` with `can_use` on `tools`; returns its token.
async fn agent_in(t: &TestHost, admin: &str, name: &str, tools: &[&str]) -> String {
    let (status, body) = t.request(reqwest::Method::POST, "/v1/agents", admin, Some(json!({ "name": name }))).await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    let writes: Vec<Value> = tools
        .iter()
        .map(|object| json!({ "user": format!("agent:{name}"), "relation": "can_use", "object": object }))
        .collect();
    let (status, body) = t.request(reqwest::Method::POST, "/v1/tuples", admin, Some(json!({ "writes": writes }))).await;
    assert_eq!(status, 200, "{body}");
    token
}

/// Calls `tool` in the background; the answer comes when the call ends.
fn spawn_call(
    url: &str,
    token: &str,
    tool: &str,
    input: Value,
) -> tokio::task::JoinHandle<(u16, Option<String>, Value)> {
    let (url, token, tool) = (url.to_string(), token.to_string(), tool.to_string());
    tokio::spawn(async move {
        let resp = reqwest::Client::new()
            .post(format!("{url}/v1/tools/{tool}/call"))
            .bearer_auth(token)
            .json(&input)
            .send()
            .await
            .unwrap();
        let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
        (resp.status().as_u16(), retry, resp.json::<Value>().await.unwrap_or(Value::Null))
    })
}

/// Waits until the default tenant has `n` pending approvals; returns them all, paging.
async fn pending(t: &TestHost, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut all = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let path = match &next {
                None => "/v1/approvals?status=pending&limit=100".to_string(),
                Some(id) => format!("/v1/approvals?status=pending&limit=100&before={id}"),
            };
            let (status, body) = t.admin_get(&path).await;
            assert_eq!(status, 200, "{body}");
            let page = body["approvals"].as_array().unwrap();
            assert!(page.len() <= 100, "a page holds at most its limit");
            all.extend(page.iter().cloned());
            match body["next"].as_str() {
                Some(id) => next = Some(id.to_string()),
                None => break,
            }
        }
        if all.len() >= n || Instant::now() > deadline {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_with_256_calls_waiting_on_approval_gets_429_for_the_next_and_another_tenant_is_served() {
    let t = TestHost::start().await;
    let clerk = agent_in(&t, &t.admin, "clerk", &["tool:probe.echo"]).await;
    t.policy("probe.echo", "cfo", 900).await;
    let globex = t.tenant_admin("globex").await;
    let other = agent_in(&t, &globex, "reader", &["tool:probe.echo"]).await;
    let (status, body) = t.call(&other, "probe.echo", json!({ "n": 0 })).await;
    assert_eq!(status, 200, "before: {body}");

    // 256 calls wait for the CFO, each its own request: none holds a sandbox while it waits.
    let waiting: Vec<_> = (0..256).map(|i| spawn_call(&t.url, &clerk, "probe.echo", json!({ "n": i }))).collect();
    let listed = pending(&t, 256).await;
    assert_eq!(listed.len(), 256, "every waiting call has its request, listed over three pages");
    let ids: std::collections::HashSet<&str> = listed.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 256, "pages do not overlap");
    assert!(waiting.iter().all(|w| !w.is_finished()), "they all still wait");

    // The 257th is refused before anyone is asked, and says when to come back.
    let (status, retry, body) = spawn_call(&t.url, &clerk, "probe.echo", json!({ "n": 256 })).await.unwrap();
    assert_eq!((status, body["code"].as_str()), (429, Some("too_many_requests")), "{body}");
    assert!(retry.is_some(), "429 carries Retry-After");
    assert!(body["message"].as_str().unwrap().contains("`agent:clerk` already has 256 approvals waiting"), "{body}");
    assert_eq!(pending(&t, 256).await.len(), 256, "no approver was asked a 257th time");

    // Another tenant's agent is served as before, while the 256 wait.
    for n in 1..=20 {
        let started = Instant::now();
        let (status, body) = t.call(&other, "probe.echo", json!({ "n": n })).await;
        assert_eq!(status, 200, "{body}");
        assert!(started.elapsed() < Duration::from_secs(5), "served, not starved: {:?}", started.elapsed());
    }
    for w in waiting {
        w.abort();
    }
}

/// Calls that wait inside their component (`approval.request`) do hold a sandbox: a tenant
/// holds at most half the pool and an agent a quarter, so another tenant always finds room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_waiting_inside_components_hold_no_more_than_their_share_of_the_pool() {
    let t = TestHost::start().await; // 32 slots: 16 per tenant, 8 per agent
    assert_eq!(t.host.quotas.limits().sandboxes_per_tenant, 16);
    let (api, seen) = billing_api(SECRET).await;
    t.billing_connection(api, SECRET).await;
    t.grant(&[("user:carol", "cfo", "tenant:default")]).await;
    let refund = |n: usize| json!({ "customer_id": "42", "amount": format!("{n}.00"), "currency": "EUR" });
    let mut waiting = Vec::new();
    for name in ["refunder-a", "refunder-b", "refunder-c"] {
        let token = agent_in(&t, &t.admin, name, &["tool:billing.refund", "connection:billing-api"]).await;
        t.grant(&[(&format!("agent:{name}"), "refunder", "customer:42")]).await;
        waiting.push((name, token));
    }
    let mut calls = Vec::new();
    for (i, (_, token)) in waiting.iter().take(2).enumerate() {
        for n in 0..8 {
            calls.push(spawn_call(&t.url, token, "billing.refund", refund(i * 100 + n)));
        }
    }
    assert_eq!(pending(&t, 16).await.len(), 16, "16 refunds wait inside their sandboxes");
    assert_eq!(t.host.quotas.held_by("default"), 16);

    // A ninth call of the first agent: its agent's share is full.
    let (status, retry, body) = spawn_call(&t.url, &waiting[0].1, "billing.refund", refund(999)).await.unwrap();
    assert_eq!((status, body["code"].as_str()), (429, Some("too_many_requests")), "{body}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(body["message"].as_str().unwrap().contains("`agent:refunder-a` already has 8 calls running"), "{body}");
    // A third agent of the same tenant: the tenant's share is full.
    let (status, _, body) = spawn_call(&t.url, &waiting[2].1, "billing.refund", refund(998)).await.unwrap();
    assert_eq!(status, 429, "{body}");
    assert!(body["message"].as_str().unwrap().contains("tenant `default` already has 16 calls running"), "{body}");

    // Another tenant still runs its calls: half the pool is beyond the first tenant's reach.
    let globex = t.tenant_admin("globex").await;
    let other = agent_in(&t, &globex, "reader", &["tool:probe.echo"]).await;
    for n in 0..10 {
        let (status, body) = t.call(&other, "probe.echo", json!({ "n": n })).await;
        assert_eq!(status, 200, "{body}");
    }
    assert!(seen.paths().is_empty(), "no refund went out: nobody approved");

    // The refused calls left nothing behind: denying the waiting ones frees the tenant's share.
    for a in pending(&t, 16).await {
        let (status, body) = t.decide(a["id"].as_str().unwrap(), "user:carol", false).await;
        assert_eq!(status, 200, "{body}");
    }
    for c in calls {
        let (status, _, body) = tokio::time::timeout(Duration::from_secs(10), c).await.unwrap().unwrap();
        assert_eq!(status, 403, "{body}");
    }
    assert_eq!(t.host.quotas.held_by("default"), 0, "every slot came back");
}

/// A body too large for its route is refused before the route's door looks at the caller:
/// 64 KiB for routes anyone may call, 1 MiB for an admin's, 4 MiB for an agent's; uploads keep
/// 32 MiB. Declared (`content-length`) and streamed (chunked) bodies alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_capped_per_route_before_authentication() {
    let t = TestHost::start().await;
    let http = reqwest::Client::new();
    let send = |method: reqwest::Method, path: &str, token: &str, body: Vec<u8>, chunked: bool| {
        let mut req =
            http.request(method.clone(), format!("{}{path}", t.url)).header("content-type", "application/json");
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        let raw = chunked
            .then(|| (t.url.trim_start_matches("http://").to_string(), format!("{method} {path}"), token.to_string()));
        let req = req.body(body.clone());
        async move {
            if let Some((addr, line, token)) = raw {
                return chunked_request(&addr, &line, &token, &body).await;
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let json_of = |n: usize| format!("{{\"code\": \"{}\"}}", "a".repeat(n)).into_bytes();
    // A declared length over the cap is answered before the body is read, and the connection
    // closed: an HTTP client still writing the body would see a broken pipe, so these go raw.
    let addr = t.url.trim_start_matches("http://").to_string();

    // Anyone's route: 64 KiB, whether the length is declared or streamed.
    for chunked in [false, true] {
        let (status, body) = if chunked {
            send(reqwest::Method::POST, "/v1/invitations/accept", "", json_of(100 << 10), true).await
        } else {
            declared_request(&addr, "POST /v1/invitations/accept", "", 100 << 10).await
        };
        assert_eq!(status, 413, "chunked={chunked}: {body}");
        assert_eq!(body["code"], "payload_too_large", "{body}");
        if !chunked {
            assert!(
                body["message"].as_str().unwrap().contains("`POST /v1/invitations/accept` accepts at most 65536"),
                "{body}"
            );
        }
    }
    // Under the cap, the route answers for itself (an unknown code).
    let (status, body) = send(reqwest::Method::POST, "/v1/invitations/accept", "", json_of(1000), false).await;
    assert_ne!(status, 413, "{body}");

    // An agent's route with a bad token: refused for its size before the token is looked at.
    let (status, body) = declared_request(&addr, "POST /v1/tools/probe.echo/call", "alk_not-a-token", 5 << 20).await;
    assert_eq!((status, body["code"].as_str()), (413, Some("payload_too_large")), "{body}");
    let (status, body) = declared_request(&addr, "POST /mcp", "alk_not-a-token", 5 << 20).await;
    assert_eq!(status, 413, "{body}");
    // 2 MiB is within an agent's cap: the door answers (401), not the cap.
    let (status, body) =
        send(reqwest::Method::POST, "/v1/tools/probe.echo/call", "alk_not-a-token", json_of(2 << 20), false).await;
    assert_eq!(status, 401, "{body}");

    // An admin's route: 1 MiB, with or without a valid token.
    for token in [t.admin.as_str(), ""] {
        let (status, body) = declared_request(&addr, "POST /v1/tuples", token, 2 << 20).await;
        assert_eq!(status, 413, "{body}");
    }
    // An upload keeps its room: 5 MiB of non-wasm reaches the handler, which says what is wrong.
    let (status, body) =
        send(reqwest::Method::POST, "/v1/components/junk", &t.operator, vec![0u8; 5 << 20], false).await;
    assert!(status == 400 || status == 422, "{status} {body}");
}

/// Sends `body` with `Transfer-Encoding: chunked` (no declared length) over a raw connection,
/// as a client streaming an upload does; the status and JSON body of the answer. The host may
/// answer and close before all of it is written.
async fn chunked_request(addr: &str, line: &str, token: &str, body: &[u8]) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut from, mut conn) = tokio::net::TcpStream::connect(addr).await.unwrap().into_split();
    // Read while writing: the answer may come (and the connection close) before the end.
    let reader = tokio::spawn(async move {
        let mut answer = Vec::new();
        let _ = from.read_to_end(&mut answer).await;
        answer
    });
    let auth = if token.is_empty() { String::new() } else { format!("authorization: Bearer {token}\r\n") };
    let head = format!(
        "{line} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n{auth}transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    let _ = conn.write_all(head.as_bytes()).await;
    for chunk in body.chunks(16 << 10) {
        let framed = [format!("{:x}\r\n", chunk.len()).into_bytes(), chunk.to_vec(), b"\r\n".to_vec()].concat();
        if conn.write_all(&framed).await.is_err() {
            break; // answered and closed: the rest was never read
        }
    }
    let _ = conn.write_all(b"0\r\n\r\n").await;
    let answer = reader.await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let json = text.find('{').map(|i| &text[i..text.rfind('}').map(|j| j + 1).unwrap_or(text.len())]);
    (status, json.and_then(|j| serde_json::from_str(j).ok()).unwrap_or(Value::Null))
}

/// Declares a `len`-byte JSON body and sends none of it: a host that waited for the body before
/// refusing it would never answer. The status and JSON body of the answer.
async fn declared_request(addr: &str, line: &str, token: &str, len: usize) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = if token.is_empty() { String::new() } else { format!("authorization: Bearer {token}\r\n") };
    let head = format!(
        "{line} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n{auth}content-length: {len}\r\nconnection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), conn.read_to_end(&mut answer))
        .await
        .expect("the host waited for a body it should have refused by its declared length")
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}
