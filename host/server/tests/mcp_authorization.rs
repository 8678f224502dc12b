//! MCP authorization as the specification asks: an MCP client finds, from a bare 401, that
//! Airlock is its authorization server, registers itself, sends the person to consent, and
//! calls tools with a delegated token (`sub` the person, `act` the agent they chose). The
//! first test is the whole dance by a client nobody here wrote (the official MCP Python
//! SDK's OAuth support); the second, what the server refuses along the way.

mod support;

use std::process::Stdio;

use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::{Browser, TestHost};

const REDIRECT: &str = "http://127.0.0.1:53682/callback";

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn pkce() -> (String, String) {
    let verifier = format!("v{}", hex::encode(rand::random::<[u8; 24]>()));
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// A member of the default tenant signed in with a passkey (invited by the admin).
async fn signed_in(t: &TestHost, subject: &str) -> Browser {
    let (status, inv) = t.admin_post("/v1/invitations", json!({ "member": subject })).await;
    assert_eq!(status, 201, "{inv}");
    t.register_from(inv["invitation"]["code"].as_str().unwrap(), "default", subject).await
}

async fn post_json(t: &TestHost, path: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new().post(format!("{}{path}", t.url)).json(&body).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

async fn token(t: &TestHost, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = reqwest::Client::new().post(format!("{}/oauth/token", t.url)).form(form).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// A `tools/call` over `/mcp` (protocol 2026-07-28: no session to set up).
async fn mcp_call(t: &TestHost, bearer: &str, tool: &str) -> (u16, Value) {
    let meta = json!({ "io.modelcontextprotocol/clientInfo": { "name": "raw", "version": "0" },
                       "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                       "io.modelcontextprotocol/clientCapabilities": {} });
    let resp = reqwest::Client::new()
        .post(format!("{}/mcp", t.url))
        .bearer_auth(bearer)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": { "name": tool, "arguments": { "name": "Ada" }, "_meta": meta } }))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_connects_from_a_bare_401_to_an_audited_delegated_call() {
    let Some(python) = support::peer("AIRLOCK_PYTHON", "the MCP Python SDK") else { return };
    let t = TestHost::start().await;
    t.agent("assistant").await;
    t.grant(&[
        ("user:carol", "admin", "tenant:default"),
        ("user:carol", "can_use", "tool:hello.greet"),
        ("agent:assistant", "can_use", "tool:hello.greet"),
        // The agent may look customers up; Carol may not: the call needs both.
        ("agent:assistant", "can_use", "tool:billing.lookup-customer"),
    ])
    .await;
    let carol = signed_in(&t, "user:carol").await;

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/mcp_oauth_client.py");
    let out = tokio::process::Command::new(&python)
        .args([script, &format!("{}/mcp", t.url), &carol.cookie, "assistant"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out =
        tokio::time::timeout(std::time::Duration::from_secs(120), out).await.expect("the client finishes").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let steps: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let step = |name: &str| steps.iter().find(|s| s["step"] == name).unwrap_or_else(|| panic!("{name}: {stdout}"));

    // Discovery led it to this host's authorization endpoint, with PKCE and the resource.
    let redirect = step("redirect")["url"].as_str().unwrap();
    assert!(redirect.starts_with(&format!("{}/oauth/authorize?", t.url)), "{redirect}");
    let resource = format!("{}/mcp", t.url);
    let asked: std::collections::HashMap<String, String> =
        url::Url::parse(redirect).unwrap().query_pairs().into_owned().collect();
    assert_eq!(asked["code_challenge_method"], "S256");
    assert_eq!(asked["resource"], resource);
    // Carol, an admin, may pick an existing agent or a new one.
    assert_eq!(step("consent-page")["agents"], json!(["new", "assistant"]), "{stdout}");
    assert_eq!(step("callback")["params"], json!(["code", "iss", "state"]));

    // The token is delegated: Carol, acting through the assistant, for the MCP resource only.
    let connected = step("connected");
    let access = connected["access_token"].as_str().unwrap();
    let c = claims(access);
    assert_eq!((c["sub"].as_str(), c["act"]["sub"].as_str()), (Some("user:carol"), Some("agent:assistant")), "{c}");
    assert_eq!(c["aud"], resource.as_str());
    assert!(c["scope"].as_str().unwrap().split(' ').any(|s| s == "mcp"), "{c}");
    assert!(connected["refresh_token"].as_str().unwrap().starts_with("mcpr_"));

    // Only what both may use is listed and runs; the rest is refused for Carol.
    assert_eq!(step("list")["tools"], json!(["hello.greet"]), "{stdout}");
    let allowed = step("allowed");
    assert_eq!(allowed["is_error"], false, "{allowed}");
    assert!(allowed["structured"]["greeting"].as_str().unwrap().contains("Ada"), "{allowed}");
    let refused = step("person-not-allowed");
    assert_eq!(refused["is_error"], true, "{refused}");
    assert_eq!(refused["structured"]["code"], "forbidden", "{refused}");

    // The audit shows who consented, and every call with its chain.
    t.host.flush().await;
    let events = t.audit().await;
    let consent = events.iter().find(|e| e["kind"] == "oauth.consent").expect("the consent is audited");
    assert_eq!((consent["agent"].as_str(), consent["outcome"].as_str()), (Some("user:carol"), Some("ok")));
    assert_eq!(consent["detail"]["agent"], "agent:assistant");
    assert_eq!(consent["detail"]["client_name"], "Inspector <b>test</b>");
    assert!(events.iter().any(|e| e["kind"] == "oauth.token" && e["outcome"] == "ok"));
    let call = events.iter().find(|e| e["kind"] == "tool.call" && e["outcome"] == "allowed").unwrap();
    assert_eq!(call["detail"]["chain"], json!(["user:carol", "agent:assistant", "tool:hello.greet"]), "{call}");

    // The token's audience is `/mcp`: the HTTP API refuses it (RFC 8707).
    let (status, body) = t.call(access, "hello.greet", json!({ "name": "Ada" })).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["message"].as_str().unwrap().contains("aud"), "{body}");

    // The refresh token rotates; the one replaced, shown again, revokes the grant.
    let client_id = connected["client_id"].as_str().unwrap();
    let first = connected["refresh_token"].as_str().unwrap();
    let (status, renewed) =
        token(&t, &[("grant_type", "refresh_token"), ("client_id", client_id), ("refresh_token", first)]).await;
    assert_eq!(status, 200, "{renewed}");
    let second = renewed["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    assert_eq!(claims(renewed["access_token"].as_str().unwrap())["act"]["sub"], "agent:assistant");
    let (status, replay) =
        token(&t, &[("grant_type", "refresh_token"), ("client_id", client_id), ("refresh_token", first)]).await;
    assert_eq!((status, replay["error"].as_str()), (400, Some("invalid_grant")), "{replay}");
    let (status, after) =
        token(&t, &[("grant_type", "refresh_token"), ("client_id", client_id), ("refresh_token", &second)]).await;
    assert_eq!(status, 400, "the whole grant is revoked: {after}");
    // ... and with it every access token issued under it, at once, not when they expire.
    let (status, body) = mcp_call(&t, renewed["access_token"].as_str().unwrap(), "hello.greet").await;
    assert_eq!(status, 401, "{body}");
    assert!(body["message"].as_str().unwrap().contains("OAuth grant ended"), "{body}");

    // Revoking the agent ends the delegated token at once (the agent is checked first).
    let (status, _) = t.request(Method::DELETE, "/v1/agents/assistant", &t.admin, None).await;
    assert_eq!(status, 200);
    let (status, body) = mcp_call(&t, access, "hello.greet").await;
    assert_eq!(status, 401, "{body}");
    assert!(body["message"].as_str().unwrap().contains("agent `assistant` is revoked"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorization_server_refuses_what_would_leak_or_widen_a_grant() {
    let t = TestHost::start().await;
    let http = no_redirects();

    // Discovery: the resource and its authorization server.
    let prm: Value = http
        .get(format!("{}/.well-known/oauth-protected-resource/mcp", t.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["resource"], format!("{}/mcp", t.url));
    assert_eq!(prm["authorization_servers"], json!([t.url]));
    let asm: Value = http
        .get(format!("{}/.well-known/oauth-authorization-server", t.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(asm["issuer"], t.url.as_str());
    assert_eq!(asm["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(asm["registration_endpoint"], format!("{}/oauth/register", t.url));

    // Registration refuses redirect URIs a code could leak through.
    for (uris, why) in [
        (json!(["http://evil.example/cb"]), "plain http"),
        (json!(["javascript:alert(1)"]), "scheme"),
        (json!(["https://app.example/cb#x"]), "fragment"),
        (json!([]), "1 to 10"),
    ] {
        let (status, body) = post_json(&t, "/oauth/register", json!({ "redirect_uris": uris })).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_redirect_uri")), "{body}");
        assert!(body["error_description"].as_str().unwrap().contains(why), "{why}: {body}");
    }
    let (status, body) =
        post_json(&t, "/oauth/register", json!({ "redirect_uris": [REDIRECT], "grant_types": ["client_credentials"] }))
            .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_client_metadata")), "{body}");
    let (status, public) = post_json(
        &t,
        "/oauth/register",
        json!({ "redirect_uris": [REDIRECT], "client_name": "Raw", "token_endpoint_auth_method": "none" }),
    )
    .await;
    assert_eq!(status, 201, "{public}");
    assert!(public.get("client_secret").is_none(), "a public client has no secret: {public}");
    let client_id = public["client_id"].as_str().unwrap().to_string();
    let (status, confidential) = post_json(&t, "/oauth/register", json!({ "redirect_uris": [REDIRECT] })).await;
    assert_eq!(status, 201);
    assert_eq!(confidential["token_endpoint_auth_method"], "client_secret_basic", "RFC 7591's default");
    assert!(confidential["client_secret"].as_str().unwrap().starts_with("mcps_"));

    t.agent("assistant").await;
    t.grant(&[("user:dave", "can_use", "tool:hello.greet")]).await;
    let dave = signed_in(&t, "user:dave").await; // a member, not an admin
    let (verifier, challenge) = pkce();
    let params = |challenge: &str, method: &str, resource: &str, redirect: &str| {
        vec![
            ("response_type".to_string(), "code".to_string()),
            ("client_id".into(), client_id.clone()),
            ("redirect_uri".into(), redirect.to_string()),
            ("state".into(), "st4te".into()),
            ("code_challenge".into(), challenge.to_string()),
            ("code_challenge_method".into(), method.to_string()),
            ("resource".into(), resource.to_string()),
        ]
    };
    let resource = format!("{}/mcp", t.url);
    let authorize = |q: Vec<(String, String)>, cookie: Option<String>| {
        let mut req = http.get(format!("{}/oauth/authorize", t.url)).query(&q);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        req.send()
    };

    // Errors that cannot go back to the client are shown to the person, never redirected.
    let mut unknown = params(&challenge, "S256", &resource, REDIRECT);
    unknown[1].1 = "mcp_nobody".into();
    let resp = authorize(unknown, Some(dave.cookie.clone())).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get("location").is_none());
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    let resp = authorize(params(&challenge, "S256", &resource, "http://127.0.0.1:9/elsewhere"), None).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("not one this application registered"));
    // The rest go back to the client with `error`, `state` and `iss`.
    let back = |resp: reqwest::Response| {
        assert_eq!(resp.status(), 303);
        let to = resp.headers()["location"].to_str().unwrap().to_string();
        assert!(to.starts_with("http://127.0.0.1:") && to.contains("/callback?"), "{to}");
        url::Url::parse(&to).unwrap().query_pairs().into_owned().collect::<std::collections::HashMap<String, String>>()
    };
    let q = back(authorize(params(&verifier, "plain", &resource, REDIRECT), None).await.unwrap());
    assert_eq!(
        (q["error"].as_str(), q["state"].as_str(), q["iss"].as_str()),
        ("invalid_request", "st4te", t.url.as_str())
    );
    let q = back(authorize(params(&challenge, "S256", "https://other.example/mcp", REDIRECT), None).await.unwrap());
    assert_eq!(q["error"], "invalid_target", "{q:?}");
    // A loopback redirect may change port (RFC 8252).
    let moved = "http://127.0.0.1:40001/callback";
    // Without a session: sign in first, and come back here.
    let page = authorize(params(&challenge, "S256", &resource, moved), None).await.unwrap().text().await.unwrap();
    assert!(page.contains("Sign in to connect Raw") && page.contains("/signin?next=%2Foauth%2Fauthorize%3F"), "{page}");

    // Dave (no admin) is offered only a new agent; choosing an existing one is refused.
    let page = authorize(params(&challenge, "S256", &resource, moved), Some(dave.cookie.clone()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("value=\"new\"") && !page.contains("value=\"assistant\""), "{page}");
    let consent = |agent: &str, csrf: &str, redirect: &str, challenge: &str| {
        let mut form = params(challenge, "S256", &resource, redirect);
        form.extend([
            ("scope".into(), "mcp".into()),
            ("csrf".into(), csrf.to_string()),
            ("agent".into(), agent.to_string()),
            ("decision".into(), "allow".into()),
        ]);
        http.post(format!("{}/oauth/authorize", t.url)).header("cookie", &dave.cookie).form(&form).send()
    };
    let resp = consent("new", "forged", moved, &challenge).await.unwrap();
    assert_eq!(resp.status(), 403, "a page of another site cannot consent for Dave");
    let resp = consent("assistant", &dave.csrf, moved, &challenge).await.unwrap();
    assert_eq!(resp.status(), 403);
    let q = back(consent("new", &dave.csrf, moved, &challenge).await.unwrap());
    let code = q["code"].clone();

    // The code needs the verifier, the same redirect URI, and only once.
    let redeem = |code: String, verifier: String, redirect: &'static str| {
        let client_id = client_id.clone();
        let t = &t;
        async move {
            token(
                t,
                &[
                    ("grant_type", "authorization_code"),
                    ("client_id", &client_id),
                    ("code", &code),
                    ("code_verifier", &verifier),
                    ("redirect_uri", redirect),
                ],
            )
            .await
        }
    };
    let (status, body) = redeem(code.clone(), pkce().0, moved).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("PKCE"), "{body}");
    let (status, body) = redeem(code, verifier.clone(), moved).await;
    assert!(status == 400 && body["error_description"].as_str().unwrap().contains("already used"), "{body}");

    let (verifier, challenge) = pkce();
    let code = back(consent("new", &dave.csrf, moved, &challenge).await.unwrap())["code"].clone();
    let (status, body) = redeem(code.clone(), verifier.clone(), REDIRECT).await;
    assert_eq!(status, 400, "another redirect URI than authorized: {body}");
    let (verifier, challenge) = pkce();
    let code = back(consent("new", &dave.csrf, moved, &challenge).await.unwrap())["code"].clone();
    let (status, issued) = redeem(code.clone(), verifier.clone(), moved).await;
    assert_eq!(status, 200, "{issued}");
    let access = issued["access_token"].as_str().unwrap().to_string();
    let agent = claims(&access)["act"]["sub"].as_str().unwrap().to_string();
    assert!(agent.starts_with("agent:mcp-raw-"), "a new agent named for the client: {agent}");

    // The new agent has no rights: Dave may greet, the agent may not, so the call is refused.
    let (status, body) = mcp_call(&t, &access, "hello.greet").await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["isError"], true, "{body}");
    t.grant(&[(agent.as_str(), "can_use", "tool:hello.greet")]).await;
    let (_, body) = mcp_call(&t, &access, "hello.greet").await;
    assert_eq!(body["result"]["structuredContent"]["greeting"], "hello, Ada", "{body}");

    // Dave sees his grant and may revoke it; a replayed code would have revoked it too.
    let (status, grants) = dave.send(Method::GET, "/v1/oauth/grants", None, false).await;
    assert_eq!(status, 200, "{grants}");
    assert_eq!(grants["grants"].as_array().unwrap().len(), 1, "{grants}");
    let grant_id = grants["grants"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(grants["grants"][0]["agent"], agent.trim_start_matches("agent:"));
    // Another member can neither see nor revoke it.
    let erin = t.member_token("user:erin").await;
    let (_, theirs) = t.request(Method::GET, "/v1/oauth/grants", &erin, None).await;
    assert_eq!(theirs["grants"], json!([]), "{theirs}");
    let (status, _) = t.request(Method::DELETE, &format!("/v1/oauth/grants/{grant_id}"), &erin, None).await;
    assert_eq!(status, 404);
    let (status, body) = redeem(code, verifier, moved).await;
    assert_eq!(status, 400, "{body}");
    let (_, grants) = dave.send(Method::GET, "/v1/oauth/grants", None, false).await;
    assert_eq!(grants["grants"], json!([]), "the replay revoked the grant: {grants}");
    // The access token the grant gave, which worked a moment ago, ends with it.
    let (status, body) = mcp_call(&t, &access, "hello.greet").await;
    assert_eq!(status, 401, "a revoked grant's access token is refused at once: {body}");
    assert!(body["message"].as_str().unwrap().contains("authorize it again"), "{body}");
    assert_eq!(claims(&access)["grant"], grant_id.as_str(), "the token names its grant");
    let (status, body) = token(
        &t,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("refresh_token", issued["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // A confidential client must authenticate at the token endpoint.
    let (status, body) = token(
        &t,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", confidential["client_id"].as_str().unwrap()),
            ("refresh_token", "mcpr_x"),
        ],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");
}
