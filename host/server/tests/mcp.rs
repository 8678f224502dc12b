//! MCP, driven by the official MCP Python SDK client (PyPI `mcp`) over Streamable HTTP, and
//! the protocol's edges checked over raw HTTP.

mod support;

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use support::{billing_api, wait_for_pending, TestHost};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const SECRET: &str = "sk_live_mcp_4e11a5";

/// The Python with the `mcp` SDK (scripts/test installs it); `None` outside CI when absent.
fn python() -> Option<String> {
    support::peer("AIRLOCK_PYTHON", "the MCP Python SDK")
}

struct Peer {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Peer {
    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
            .await
            .expect("the MCP client answers in time")
            .unwrap()
            .expect("the MCP client ended early (its stderr is above)");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON from the client: {line}: {e}"))
    }

    async fn go_on(&mut self) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").await.unwrap();
        stdin.flush().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_sdk_lists_calls_is_denied_waits_for_approval_and_sees_a_revoke() {
    let Some(python) = python() else { return };
    let t = TestHost::start().await;
    let (api, seen) = billing_api(SECRET).await;
    t.billing_connection(api, SECRET).await;
    let token = t.agent("assistant").await;
    t.grant(&[
        ("agent:assistant", "can_use", "tool:hello.greet"),
        ("agent:assistant", "can_use", "tool:billing.refund"),
        ("agent:assistant", "refunder", "customer:42"),
        ("agent:assistant", "can_use", "connection:billing-api"),
        ("user:carol", "cfo", "tenant:default"),
    ])
    .await;

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/mcp_client.py");
    let mut child = tokio::process::Command::new(&python)
        .arg(script)
        .arg(format!("{}/mcp", t.url))
        .arg(&token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python starts");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut peer = Peer { child, lines };

    let init = peer.next().await;
    assert_eq!(init["step"], "initialize");
    assert_eq!(init["server"], "airlock");
    assert!(init["protocol"].as_str().unwrap().starts_with("20"), "{init}");

    let list = peer.next().await;
    assert_eq!(list["tools"], json!(["billing.refund", "hello.greet"]), "only what authz allows: {list}");
    assert_eq!(list["schemas"]["billing.refund"]["required"], json!(["customer_id", "amount", "currency"]));
    // `hello.greet` declares its output; the SDK checks the call's structured result against it.
    assert_eq!(list["outputs"]["hello.greet"]["required"], json!(["greeting"]), "{list}");
    assert_eq!(list["outputs"]["billing.refund"], Value::Null, "{list}");

    let allowed = peer.next().await;
    assert_eq!(allowed["is_error"], false, "{allowed}");
    assert!(allowed["structured"]["greeting"].as_str().unwrap().contains("Ada"), "{allowed}");

    let forbidden = peer.next().await;
    assert_eq!(forbidden["is_error"], true, "{forbidden}");
    assert_eq!(forbidden["structured"]["code"], "forbidden");
    assert!(forbidden["structured"]["next_step"].as_str().unwrap().contains("airlock tuple write agent:assistant"));

    // The refund waits for the CFO; the MCP client gets progress meanwhile.
    assert_eq!(peer.next().await["step"], "refund-started");
    let pending = wait_for_pending(&t).await;
    tokio::time::sleep(Duration::from_millis(1200)).await; // at least two progress ticks
    assert!(seen.paths().is_empty(), "nothing refunded before approval");
    let id = pending["id"].as_str().unwrap();
    let (status, body) = t.decide(id, "user:carol", true).await;
    assert_eq!(status, 200, "{body}");
    peer.go_on().await;
    let refund = peer.next().await;
    assert_eq!(refund["is_error"], false, "{refund}");
    assert_eq!(refund["structured"]["refund"]["status"], "succeeded");
    let progress: Vec<&str> = refund["progress"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(!progress.is_empty(), "progress while waiting: {refund}");
    assert!(progress[0].contains(id) && progress[0].contains("`cfo`"), "names the approval and role: {progress:?}");
    assert!(progress[0].contains(&format!("{}/console/approvals#{id}", t.url)), "and its link: {progress:?}");
    assert_eq!(seen.paths(), vec!["/refunds".to_string()]);

    // Revoking the tuple hides the tool from the next listing and refuses the call.
    assert_eq!(peer.next().await["step"], "before-revoke");
    let (status, _) = t
        .request(
            reqwest::Method::POST,
            "/v1/tuples",
            &t.admin,
            Some(json!({ "deletes": [{ "user": "agent:assistant", "relation": "can_use", "object": "tool:hello.greet" }] })),
        )
        .await;
    assert_eq!(status, 200);
    peer.go_on().await;
    let after = peer.next().await;
    assert_eq!(after["tools"], json!(["billing.refund"]), "{after}");
    let revoked = peer.next().await;
    assert_eq!(
        (revoked["is_error"].as_bool(), revoked["structured"]["code"].as_str()),
        (Some(true), Some("forbidden"))
    );

    let status = tokio::time::timeout(Duration::from_secs(10), peer.child.wait()).await.unwrap().unwrap();
    assert!(status.success());
    // Every MCP call went through the gate and into the audit trail.
    let events = t.audit().await;
    let calls: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["kind"] == "tool.call")
        .map(|e| (e["tool"].as_str().unwrap(), e["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        calls,
        [
            ("hello.greet", "allowed"),
            ("billing.lookup-customer", "denied"),
            ("billing.refund", "allowed"),
            ("hello.greet", "denied")
        ]
    );
}

async fn post_mcp(t: &TestHost, token: Option<&str>, body: Value) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("{}/mcp", t.url))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .json(&body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_protocol_edges_auth_versions_and_unknown_tools() {
    let t = TestHost::start().await;
    let token = t.agent("raw").await;
    t.grant(&[("agent:raw", "can_use", "tool:hello.greet")]).await;
    let init = |version: &str| {
        json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": {}, "clientInfo": { "name": "raw", "version": "0" } } })
    };

    // No token, a bad token: 401 before MCP, with a challenge, and audited.
    let resp = post_mcp(&t, None, init("2025-06-18")).await;
    assert_eq!(resp.status(), 401);
    assert!(resp.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    assert_eq!(post_mcp(&t, Some("not-a-token"), init("2025-06-18")).await.status(), 401);
    let events = t.audit().await;
    assert_eq!(events.iter().filter(|e| e["kind"] == "auth" && e["outcome"] == "denied").count(), 2);

    // Older protocol versions a client asks for are answered with themselves.
    for version in ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"] {
        let resp = post_mcp(&t, Some(&token), init(version)).await;
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["result"]["protocolVersion"], version, "{body}");
        assert_eq!(body["result"]["capabilities"]["tools"].is_object(), true);
    }

    // tools/call on a tool that does not exist: a tool error saying what to do, not a crash.
    let call = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call",
                       "params": { "name": "nope", "arguments": {} } });
    let resp = post_mcp(&t, Some(&token), call).await;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["isError"], true, "{body}");
    assert_eq!(body["result"]["structuredContent"]["code"], "not_found");

    // Malformed JSON-RPC gets a JSON-RPC error or a 4xx, never a 5xx.
    let resp = reqwest::Client::new()
        .post(format!("{}/mcp", t.url))
        .bearer_auth(&token)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    match status {
        // As JSON-RPC: a parse error (-32700), in JSON or one SSE frame.
        200 => assert!(text.contains("\"error\"") && text.contains("-32700"), "a parse error, not a result: {text}"),
        // As HTTP: the API's error shape, saying what was wrong.
        400..=499 => {
            let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} not JSON ({e}): {text}"));
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{status}: {body}");
        }
        other => panic!("malformed JSON-RPC answered {other}: {text}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn airlock_mcp_serves_one_agent_over_stdio_beside_a_running_host() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let t = TestHost::start_in(dir.path().to_path_buf(), None, support::test_limits()).await;
    let _token = t.agent("local").await;
    t.grant(&[("agent:local", "can_use", "tool:hello.greet")]).await;

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/mcp_stdio_client.py");
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(&python)
            .arg(script)
            .arg(env!("CARGO_BIN_EXE_airlock"))
            .arg(dir.path())
            .arg("local")
            .output(),
    )
    .await
    .expect("the stdio session ends in time")
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["tools"], json!(["hello.greet"]), "{result}");
    assert!(result["greet"]["greeting"].as_str().unwrap().contains("Grace"), "{result}");
    assert_eq!(result["denied"]["is_error"], true);
    assert_eq!(result["denied"]["structured"]["code"], "forbidden");

    // The stdio process wrote to the same audit trail, and the chain still verifies.
    let events = t.audit().await;
    assert!(events
        .iter()
        .any(|e| e["kind"] == "tool.call" && e["agent"] == "agent:local" && e["outcome"] == "allowed"));
    let (_, verify) = t.admin_get("/v1/audit/verify").await;
    assert_eq!(verify["broken_at"], Value::Null, "{verify}");

    // An unknown agent is refused with what to do.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["mcp", "--agent", "ghost", "--data-dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("airlock agent create ghost"));
}

/// MCP 2026-07-28 (no session, no `initialize`: `server/discover` and self-contained requests)
/// beside the older versions, and the `Origin` check against DNS rebinding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_protocol_needs_no_initialize_and_foreign_origins_are_refused() {
    let t = TestHost::start().await;
    let token = t.agent("newest").await;
    t.grant(&[("agent:newest", "can_use", "tool:hello.greet")]).await;
    let meta = json!({ "io.modelcontextprotocol/clientInfo": { "name": "raw", "version": "0" },
                       "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                       "io.modelcontextprotocol/clientCapabilities": {} });
    let post = |method: &str, params: Value, origin: Option<&str>| {
        let mut req = reqwest::Client::new()
            .post(format!("{}/mcp", t.url))
            .bearer_auth(&token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method)
            .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }));
        if method == "tools/call" {
            req = req.header("mcp-name", "hello.greet");
        }
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        req.send()
    };

    let resp = post("server/discover", json!({ "_meta": meta }), None).await.unwrap();
    let body: Value = resp.json().await.unwrap();
    let versions = body["result"]["supportedVersions"].as_array().unwrap();
    for version in ["2024-11-05", "2025-06-18", "2025-11-25", "2026-07-28"] {
        assert!(versions.contains(&json!(version)), "{body}");
    }
    let call = json!({ "name": "hello.greet", "arguments": { "name": "new" }, "_meta": meta });
    let resp = post("tools/call", call.clone(), None).await.unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["result"]["structuredContent"]["greeting"], "hello, new", "{body}");

    // A page on another site cannot make the person's browser call the host (DNS rebinding):
    // refused before the call runs. Loopback web clients and the host's own console may.
    let calls_before = t.audit().await.iter().filter(|e| e["kind"] == "tool.call").count();
    let resp = post("tools/call", call.clone(), Some("http://evil.example")).await.unwrap();
    assert_eq!(resp.status(), 403);
    t.host.flush().await;
    assert_eq!(t.audit().await.iter().filter(|e| e["kind"] == "tool.call").count(), calls_before, "nothing ran");
    for origin in ["http://localhost:6274", t.host.people.passkeys.origin()] {
        let resp = post("tools/call", call.clone(), Some(origin)).await.unwrap();
        assert_eq!(resp.status(), 200, "{origin}");
    }
}

/// A client that takes URL elicitations (protocol 2026-07-28) is sent the held call's approval
/// as a link, not kept waiting blind; it calls again and the call, re-attached, runs once
/// when the approver (not the caller) approves. Another agent cannot re-attach to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_call_reaches_an_eliciting_client_as_the_approvals_link_and_resumes_once() {
    let Some(python) = python() else { return };
    let t = TestHost::start().await;
    let token = t.agent("assistant").await;
    t.grant(&[("agent:assistant", "can_use", "tool:hello.greet"), ("user:carol", "cfo", "tenant:default")]).await;
    t.policy("hello.greet", "cfo", 600).await;

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/mcp_elicitation_client.py");
    let mut child = tokio::process::Command::new(&python)
        .args([script, &format!("{}/mcp", t.url), &token, "hello.greet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python starts");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut peer = Peer { child, lines };
    assert_eq!(peer.next().await["protocol"], "2026-07-28");

    let asked = peer.next().await;
    assert_eq!((asked["step"].as_str(), asked["mode"].as_str()), (Some("elicitation"), Some("url")), "{asked}");
    let pending = wait_for_pending(&t).await;
    let id = pending["id"].as_str().unwrap();
    assert_eq!(asked["url"], format!("{}/console/approvals#{id}", t.url), "{asked}");
    let message = asked["message"].as_str().unwrap();
    assert!(message.contains("`cfo`") && message.contains(id), "{message}");

    // The call was let go while the client shows the link: held, not run, and not resumable
    // by another agent.
    t.host.flush().await;
    let ran =
        |events: &[Value]| events.iter().filter(|e| e["kind"] == "tool.call" && e["outcome"] == "allowed").count();
    assert_eq!(ran(&t.audit().await), 0);
    let held: (String,) = airlock_store::sqlx::query_as("SELECT call_id FROM policy_calls WHERE approval_id = $1")
        .bind(id)
        .fetch_one(t.host.db.pool())
        .await
        .unwrap();
    let intruder = t.agent("intruder").await;
    t.grant(&[("agent:intruder", "can_use", "tool:hello.greet")]).await;
    let (status, body) =
        t.request(reqwest::Method::POST, &format!("/v1/calls/{}/resume", held.0), &intruder, None).await;
    assert_eq!(status, 404, "{body}");

    // The CFO approves; the client, having shown the link, calls again and gets the result.
    let (status, body) = t.decide(id, "user:carol", true).await;
    assert_eq!(status, 200, "{body}");
    peer.go_on().await;
    let result = peer.next().await;
    assert_eq!(result["is_error"], false, "{result}");
    assert_eq!(result["structured"]["greeting"], "hello, Ada", "{result}");
    let status = tokio::time::timeout(Duration::from_secs(10), peer.child.wait()).await.unwrap().unwrap();
    assert!(status.success());
    t.host.flush().await;
    assert_eq!(ran(&t.audit().await), 1, "ran once");
}

/// A tool whose connection nobody has connected yet: a client that takes URL elicitations is
/// sent to the console's Connect for it and may call again (once); any other gets the tool
/// error, with the same next step in words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_not_connected_yet_sends_an_eliciting_client_to_connect() {
    let t = TestHost::start().await;
    let token = t.agent("assistant").await;
    t.grant(&[
        ("agent:assistant", "can_use", "tool:billing.lookup-customer"),
        ("agent:assistant", "viewer", "customer:42"),
        ("agent:assistant", "can_use", "connection:billing-api"),
    ])
    .await;
    let oauth = json!({ "token_url": "http://127.0.0.1:9/token", "client_id": "airlock",
                        "authorize_url": "http://127.0.0.1:9/authorize", "scope": "billing" });
    let connection = json!({ "kind": "oauth2_refresh", "base_url": "http://127.0.0.1:9", "allowed_hosts": ["127.0.0.1:9"],
                             "allow_private_network": true, "oauth": oauth,
                             "secret": json!({ "client_secret": "s" }).to_string() });
    let (status, body) =
        t.request(reqwest::Method::PUT, "/v1/connections/billing-api", &t.admin, Some(connection)).await;
    assert_eq!(status, 200, "{body}");

    let call = |capabilities: Value, state: Option<&str>| {
        let meta = json!({ "io.modelcontextprotocol/clientInfo": { "name": "raw", "version": "0" },
                           "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                           "io.modelcontextprotocol/clientCapabilities": capabilities });
        let mut params =
            json!({ "name": "billing.lookup-customer", "arguments": { "customer_id": "42" }, "_meta": meta });
        if let Some(state) = state {
            params["requestState"] = json!(state);
            params["inputResponses"] = json!({ "connect-billing-api": { "action": "accept" } });
        }
        let req = reqwest::Client::new()
            .post(format!("{}/mcp", t.url))
            .bearer_auth(&token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "billing.lookup-customer")
            .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params }));
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };

    let asked = call(json!({ "elicitation": { "url": {} } }), None).await;
    let result = &asked["result"];
    assert_eq!(result["resultType"], "input_required", "{asked}");
    assert_eq!(result["requestState"], "retry");
    let elicit = &result["inputRequests"]["connect-billing-api"];
    assert_eq!(elicit["method"], "elicitation/create", "{asked}");
    assert_eq!(elicit["params"]["mode"], "url");
    assert_eq!(elicit["params"]["url"], format!("{}/console/connections#billing-api", t.url));
    assert!(elicit["params"]["message"].as_str().unwrap().contains("`billing-api`"), "{asked}");

    // Called again and still not connected: the tool error, not another round.
    let again = call(json!({ "elicitation": { "url": {} } }), Some("retry")).await;
    assert_eq!(again["result"]["isError"], true, "{again}");
    assert!(again["result"]["structuredContent"]["message"].as_str().unwrap().contains("not connected yet"), "{again}");
    // A state this server never issued is refused as such.
    let forged = call(json!({ "elicitation": { "url": {} } }), Some("call:someone-elses")).await;
    assert_eq!(forged["result"]["isError"], true, "{forged}");
    let forged = call(json!({ "elicitation": { "url": {} } }), Some("whatever")).await;
    assert!(forged["error"]["message"].as_str().unwrap().contains("requestState"), "{forged}");
    // A client without URL elicitation gets the tool error at once.
    let plain = call(json!({}), None).await;
    assert_eq!(plain["result"]["isError"], true, "{plain}");
}

/// The plain `tools/call` (a name and arguments, nothing else) is answered without rmcp's
/// per-request service: it gets the answer rmcp gives the same call with `_meta`, a call held
/// for approval is answered once decided, and whatever rmcp would refuse (headers, hosts,
/// origins, versions) it still refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_call_is_answered_as_rmcp_answers_it_and_refused_as_rmcp_refuses_it() {
    let t = TestHost::start().await;
    let token = t.agent("plain").await;
    t.grant(&[("agent:plain", "can_use", "tool:hello.greet")]).await;
    let call = |tool: &str, meta: bool| {
        let mut params = json!({ "name": tool, "arguments": { "name": "Ada" } });
        if meta {
            params["_meta"] = json!({ "progressToken": "p1" });
        }
        json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params })
    };
    // The same answer both ways: a result, and a refusal.
    for tool in ["hello.greet", "billing.refund"] {
        let plain = post_mcp(&t, Some(&token), call(tool, false)).await;
        assert_eq!(plain.status(), 200);
        assert_eq!(plain.headers()["content-type"], "application/json");
        let plain: Value = plain.json().await.unwrap();
        let via_rmcp: Value = post_mcp(&t, Some(&token), call(tool, true)).await.json().await.unwrap();
        assert_eq!(plain, via_rmcp, "{tool}");
    }
    let plain: Value = post_mcp(&t, Some(&token), call("hello.greet", false)).await.json().await.unwrap();
    assert_eq!((plain["id"].clone(), plain["jsonrpc"].clone()), (json!(7), json!("2.0")), "{plain}");
    assert_eq!(plain["result"]["structuredContent"]["greeting"], "hello, Ada", "{plain}");
    let refused: Value = post_mcp(&t, Some(&token), call("billing.refund", false)).await.json().await.unwrap();
    assert_eq!(refused["result"]["structuredContent"]["code"], "forbidden", "{refused}");

    // What rmcp refuses is still refused, and nothing runs.
    t.host.flush().await;
    let ran = |events: &[Value]| events.iter().filter(|e| e["kind"] == "tool.call").count();
    let calls_before = ran(&t.audit().await);
    let send = |headers: &[(&str, &str)]| {
        let mut req = reqwest::Client::new()
            .post(format!("{}/mcp", t.url))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .json(&call("hello.greet", false));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.send()
    };
    let both = ("accept", "application/json, text/event-stream");
    for (headers, status) in [
        (vec![("accept", "application/json")], 406),
        (vec![both, ("host", "evil.example")], 403),
        (vec![both, ("origin", "http://evil.example")], 403),
        (vec![both, ("mcp-protocol-version", "1999-01-01")], 400),
    ] {
        let resp = send(&headers).await.unwrap();
        assert_eq!(resp.status(), status, "{headers:?}: {}", resp.text().await.unwrap());
    }
    t.host.flush().await;
    assert_eq!(ran(&t.audit().await), calls_before, "nothing ran");

    // A call held for a person: answered with JSON once the CFO decides.
    t.grant(&[("user:carol", "cfo", "tenant:default")]).await;
    t.policy("hello.greet", "cfo", 600).await;
    let held = tokio::spawn({
        let (url, token) = (t.url.clone(), token.clone());
        async move {
            reqwest::Client::new()
                .post(format!("{url}/mcp"))
                .bearer_auth(token)
                .header("accept", "application/json, text/event-stream")
                .json(&call("hello.greet", false))
                .send()
                .await
        }
    });
    let pending = wait_for_pending(&t).await;
    let (status, body) = t.decide(pending["id"].as_str().unwrap(), "user:carol", true).await;
    assert_eq!(status, 200, "{body}");
    let resp = tokio::time::timeout(Duration::from_secs(30), held).await.unwrap().unwrap().unwrap();
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["result"]["structuredContent"]["greeting"], "hello, Ada", "{body}");
}
