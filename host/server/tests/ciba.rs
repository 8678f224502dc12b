//! OpenID CIBA over real HTTP on loopback: Airlock's provider driven by a raw OAuth client
//! (backchannel at both paths, the token endpoint's answers, decisions through the approvals
//! API, pings, discovery), and a tenant whose approvals go to the real external OP of
//! ../shared/ciba-op (prepared by scripts/ciba-op.sh), its approver's phone driven over its
//! admin port.

// Test helpers outside #[test] functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_approvals::ciba::Decision;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use support::op::start_op;
use support::{billing_api, TestHost};

const GRANT: &str = "urn:openid:params:grant-type:ciba";
const SECRET: &str = "sk_live_billing_6c1f0e9a2b7d4";

/// A raw OAuth answer: status, the headers that matter, JSON body.
struct Answer {
    status: u16,
    cache_control: Option<String>,
    www_authenticate: Option<String>,
    body: Value,
}

async fn answer(resp: reqwest::Response) -> Answer {
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (cache_control, www_authenticate) = (header("cache-control"), header("www-authenticate"));
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap();
    Answer { status, cache_control, www_authenticate, body }
}

async fn form_post(url: &str, basic: Option<(&str, &str)>, form: &[(&str, &str)]) -> Answer {
    let mut req = reqwest::Client::new().post(url).form(form);
    if let Some((id, secret)) = basic {
        // RFC 6749 2.3.1: both parts form-encoded first (the client id has a colon).
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        req = req.basic_auth(enc(id), Some(enc(secret)));
    }
    answer(req.send().await.unwrap()).await
}

/// Runs the `airlock` CLI against the test host; returns stdout, failing on a non-zero exit.
fn cli(t: &TestHost, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .args(["--server", &t.url, "--data-dir"])
        .arg(&t.dir)
        .env_remove("AIRLOCK_ADMIN_TOKEN")
        .env_remove("AIRLOCK_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The one pending CIBA approval of the tenant whose admin holds `admin`.
async fn pending_ciba_approval(t: &TestHost, admin: &str) -> String {
    let (status, body) = t.request(reqwest::Method::GET, "/v1/approvals?status=pending", admin, None).await;
    assert_eq!(status, 200, "{body}");
    let list = body["approvals"].as_array().unwrap();
    let mine: Vec<&Value> = list.iter().filter(|a| a["tool"] == "ciba").collect();
    assert_eq!(mine.len(), 1, "{body}");
    mine[0]["id"].as_str().unwrap().to_string()
}

/// Decides as `approver`, with that person's own token in the tenant whose admin holds `admin`.
async fn decide(t: &TestHost, admin: &str, id: &str, approver: &str, approve: bool) -> (u16, Value) {
    let (status, me) = t.request(reqwest::Method::GET, "/v1/me", admin, None).await;
    assert_eq!(status, 200, "{me}");
    t.decide_in(admin, me["tenant"].as_str().unwrap(), id, approver, approve).await
}

fn kinds(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| (e["kind"].as_str().unwrap().to_string(), e["outcome"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_provider_over_http_from_discovery_to_tokens() {
    let t = TestHost::start().await;
    // Registered with the CLI, as an administrator would.
    cli(&t, &["ciba", "approver", "put", "carol"]);
    let registered: Value = serde_json::from_str(&cli(&t, &["ciba", "client", "register", "agent:ops"])).unwrap();
    let secret = registered["client_secret"].as_str().unwrap().to_string();
    assert_eq!(registered["client"]["delivery_mode"], "poll");
    assert!(cli(&t, &["ciba", "client", "list"]).contains("agent:ops"));
    assert!(!cli(&t, &["ciba", "client", "list"]).contains(&secret), "the secret is shown once only");
    let creds = Some(("agent:ops", secret.as_str()));

    // Discovery: the issuer is the URL the request came to.
    let meta: Value =
        reqwest::get(format!("{}/.well-known/openid-configuration", t.url)).await.unwrap().json().await.unwrap();
    assert_eq!(meta["issuer"], t.url.as_str());
    assert_eq!(meta["backchannel_token_delivery_modes_supported"], json!(["poll", "ping"]));
    assert_eq!(meta["grant_types_supported"], json!([GRANT]));
    let backchannel = meta["backchannel_authentication_endpoint"].as_str().unwrap().to_string();
    let token = meta["token_endpoint"].as_str().unwrap().to_string();
    assert_eq!(
        (backchannel.clone(), token.clone()),
        (format!("{}/ciba/backchannel", t.url), format!("{}/oauth/token", t.url))
    );

    // Wrong secret: 401 invalid_client, with WWW-Authenticate; an unknown approver: unknown_user_id.
    let bad =
        form_post(&backchannel, Some(("agent:ops", "wrong")), &[("scope", "openid"), ("login_hint", "carol")]).await;
    assert_eq!((bad.status, bad.body["error"].as_str()), (401, Some("invalid_client")), "{}", bad.body);
    assert!(bad.www_authenticate.unwrap().starts_with("Basic"));
    let unknown = form_post(&backchannel, creds, &[("scope", "openid"), ("login_hint", "mallory")]).await;
    assert_eq!((unknown.status, unknown.body["error"].as_str()), (400, Some("unknown_user_id")), "{}", unknown.body);

    // Approved: pending, too fast, then the tokens once.
    let started = form_post(
        &backchannel,
        creds,
        &[("scope", "openid"), ("login_hint", "carol"), ("binding_message", "restart prod")],
    )
    .await;
    assert_eq!(started.status, 200, "{}", started.body);
    assert_eq!((started.body["expires_in"].as_u64(), started.body["interval"].as_u64()), (Some(600), Some(5)));
    assert!(started.body.get("approval_id").is_none(), "the approval id is not the client's business");
    let auth_req_id = started.body["auth_req_id"].as_str().unwrap().to_string();
    let poll = [("grant_type", GRANT), ("auth_req_id", auth_req_id.as_str())];
    let first = form_post(&token, creds, &poll).await;
    assert_eq!((first.status, first.body["error"].as_str()), (400, Some("authorization_pending")), "{}", first.body);
    assert_eq!(first.cache_control.as_deref(), Some("no-store"));
    let second = form_post(&token, creds, &poll).await;
    assert_eq!(second.body["error"], "slow_down", "{}", second.body);
    let other_grant = form_post(&token, creds, &[("grant_type", "password")]).await;
    assert_eq!((other_grant.status, other_grant.body["error"].as_str()), (400, Some("unsupported_grant_type")));

    let id = pending_ciba_approval(&t, &t.admin).await;
    let (_, approval) = t.admin_get(&format!("/v1/approvals/{id}")).await;
    assert_eq!((approval["note"].as_str(), approval["role"].as_str()), (Some("restart prod"), Some("carol")));
    assert!(approval["summary"].as_str().unwrap().contains(r#"binding_message "restart prod""#), "{approval}");
    // Holding the role the generic path would check is not enough: only carol decides.
    t.grant(&[("user:mallory", "carol", "tenant:default")]).await;
    let (status, body) = decide(&t, &t.admin, &id, "user:mallory", true).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("only `user:carol`"), "{body}");
    let (status, body) = decide(&t, &t.admin, &id, "user:carol", true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "approved");

    let tokens = form_post(&token, creds, &poll).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    assert_eq!(tokens.cache_control.as_deref(), Some("no-store"));
    assert_eq!(tokens.body["token_type"], "Bearer");
    assert!(!tokens.body["access_token"].as_str().unwrap().is_empty());
    assert!(!tokens.body["id_token"].as_str().unwrap().is_empty());
    assert_eq!(tokens.body["scope"], "openid");
    let again = form_post(&token, creds, &poll).await;
    assert_eq!((again.status, again.body["error"].as_str()), (400, Some("invalid_grant")), "{}", again.body);
    let (_, approval) = t.admin_get(&format!("/v1/approvals/{id}")).await;
    assert_eq!(approval["status"], "consumed");

    // Denied, asked at Auth0's path with client_secret_post and the tenant in the query.
    let started = form_post(
        &format!("{}/bc-authorize?tenant=default", t.url),
        None,
        &[("client_id", "agent:ops"), ("client_secret", &secret), ("scope", "openid email"), ("login_hint", "carol")],
    )
    .await;
    assert_eq!(started.status, 200, "{}", started.body);
    let denied_id = started.body["auth_req_id"].as_str().unwrap().to_string();
    let id = pending_ciba_approval(&t, &t.admin).await;
    let carol = t.member_token("user:carol").await;
    let (status, body) = t
        .request(
            reqwest::Method::POST,
            &format!("/v1/approvals/{id}/decision"),
            &carol,
            Some(json!({ "approve": false, "reason": "not now" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let denied = form_post(
        &token,
        None,
        &[("grant_type", GRANT), ("auth_req_id", &denied_id), ("client_id", "agent:ops"), ("client_secret", &secret)],
    )
    .await;
    assert_eq!((denied.status, denied.body["error"].as_str()), (400, Some("access_denied")), "{}", denied.body);

    // Nobody decides within the requested second: expired_token.
    let started =
        form_post(&backchannel, creds, &[("scope", "openid"), ("login_hint", "carol"), ("requested_expiry", "1")])
            .await;
    assert_eq!(started.body["expires_in"], 1, "{}", started.body);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let expired = form_post(
        &token,
        creds,
        &[("grant_type", GRANT), ("auth_req_id", started.body["auth_req_id"].as_str().unwrap())],
    )
    .await;
    assert_eq!((expired.status, expired.body["error"].as_str()), (400, Some("expired_token")), "{}", expired.body);

    // Repeated parameters are refused (CIBA Core 7.1).
    let repeated = reqwest::Client::new()
        .post(&backchannel)
        .basic_auth("agent%3Aops", Some(&secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("scope=openid&login_hint=carol&login_hint=dave")
        .send()
        .await
        .unwrap();
    let repeated = answer(repeated).await;
    assert_eq!((repeated.status, repeated.body["error"].as_str()), (400, Some("invalid_request")));

    let k = kinds(&t.audit().await);
    for expected in [
        ("ciba.approver.put", "ok"),
        ("ciba.client.register", "ok"),
        ("ciba.backchannel", "pending"),
        ("ciba.backchannel", "refused"),
        ("approval.decision", "refused"),
        ("approval.decision", "approved"),
        ("approval.decision", "denied"),
        ("ciba.token", "issued"),
        ("ciba.token", "refused"),
    ] {
        assert!(k.contains(&(expected.0.into(), expected.1.into())), "{expected:?} in {k:?}");
    }
    assert_eq!(k.iter().filter(|e| e.0 == "ciba.backchannel" && e.1 == "pending").count(), 3, "{k:?}");
    assert!(!serde_json::to_string(&t.audit().await).unwrap().contains(&secret), "no client secret in the trail");
}

type Pings = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// A client's notification endpoint: records each ping's authorization header and body.
async fn ping_endpoint() -> (SocketAddr, Pings) {
    let pings: Pings = Arc::default();
    let seen = pings.clone();
    let app = Router::new().route(
        "/cb",
        post(move |headers: HeaderMap, Json(body): Json<Value>| async move {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
            seen.lock().unwrap().push((auth, body));
            axum::http::StatusCode::NO_CONTENT
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, pings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_mode_client_of_another_tenant_is_pinged_when_the_approver_decides() {
    let t = TestHost::start().await;
    let (addr, pings) = ping_endpoint().await;
    let acme = t.tenant_admin("acme").await;
    let (status, body) =
        t.request(reqwest::Method::PUT, "/v1/ciba/approvers/dave", &acme, Some(json!({ "tenant": "acme" }))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = t
        .request(
            reqwest::Method::POST,
            "/v1/ciba/clients",
            &acme,
            Some(json!({ "tenant": "acme", "client_id": "pinger", "notification_endpoint": format!("http://{addr}/cb") })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["client"]["delivery_mode"], "ping");
    let secret = body["client_secret"].as_str().unwrap().to_string();
    let creds = Some(("pinger", secret.as_str()));

    // Not in the default tenant.
    let elsewhere =
        form_post(&format!("{}/ciba/backchannel", t.url), creds, &[("scope", "openid"), ("login_hint", "dave")]).await;
    assert_eq!(elsewhere.body["error"], "invalid_client", "{}", elsewhere.body);
    // A ping-mode client must send its notification token.
    let form = [("tenant", "acme"), ("scope", "openid"), ("login_hint", "dave")];
    let missing = form_post(&format!("{}/ciba/backchannel", t.url), creds, &form).await;
    assert_eq!(missing.body["error"], "invalid_request", "{}", missing.body);

    let mut form = form.to_vec();
    form.push(("client_notification_token", "note-7f3a"));
    let started = form_post(&format!("{}/ciba/backchannel", t.url), creds, &form).await;
    assert_eq!(started.status, 200, "{}", started.body);
    let auth_req_id = started.body["auth_req_id"].as_str().unwrap().to_string();
    let id = pending_ciba_approval(&t, &acme).await;
    assert!(pings.lock().unwrap().is_empty());
    let (status, body) = decide(&t, &acme, &id, "user:dave", true).await;
    assert_eq!(status, 200, "{body}");

    let t0 = Instant::now();
    while pings.lock().unwrap().is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(10), "no ping arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (auth, body) = pings.lock().unwrap()[0].clone();
    assert_eq!(auth.as_deref(), Some("Bearer note-7f3a"));
    assert_eq!(body, json!({ "auth_req_id": auth_req_id }));

    // The ping says "come and get it": one token request, with the tenant in the query this time.
    let tokens = form_post(
        &format!("{}/oauth/token?tenant=acme", t.url),
        creds,
        &[("grant_type", GRANT), ("auth_req_id", &auth_req_id)],
    )
    .await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    assert_eq!(pings.lock().unwrap().len(), 1, "one ping per decision");
}

// ---- the external OP ------------------------------------------------------------------

async fn refund_setup(t: &TestHost) -> (String, support::Seen) {
    let (api, seen) = billing_api(SECRET).await;
    t.billing_connection(api, SECRET).await;
    let token = t.agent("offboarder").await;
    t.grant(&[
        ("agent:offboarder", "can_use", "tool:billing.refund"),
        ("agent:offboarder", "refunder", "customer:42"),
        ("agent:offboarder", "can_use", "connection:billing-api"),
    ])
    .await;
    (token, seen)
}

fn spawn_refund(t: &TestHost, token: &str, amount: &str) -> tokio::task::JoinHandle<(u16, Value)> {
    let (url, token) = (t.url.clone(), token.to_string());
    let input = json!({ "customer_id": "42", "amount": amount, "currency": "EUR" });
    tokio::spawn(async move {
        let resp = reqwest::Client::new()
            .post(format!("{url}/v1/tools/billing.refund/call"))
            .bearer_auth(token)
            .json(&input)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_with_an_external_op_has_refunds_decided_on_the_cfos_phone() {
    let t = TestHost::start().await;
    let addr = t.url.trim_start_matches("http://").to_string();
    // Airlock is the OP's ping-mode client; its notification endpoint is the host's callback.
    let clients = json!([{
        "client_id": "airlock", "client_secret": "airlock-secret",
        "grant_types": [GRANT], "response_types": [], "redirect_uris": [],
        "token_endpoint_auth_method": "client_secret_basic",
        "backchannel_token_delivery_mode": "ping",
        "backchannel_client_notification_endpoint": format!("https://{addr}/ciba/callback/default"),
    }]);
    let Some(op) = start_op(clients, false).await else { return };
    let (token, seen) = refund_setup(&t).await;

    // Configured with the CLI; the secret comes from the environment.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["ciba", "external-op", "set", "--discovery-url"])
        .arg(format!("{}/.well-known/openid-configuration", op.base))
        .args([
            "--client-id",
            "airlock",
            "--mode",
            "ping",
            "--login-hint",
            "cfo=carol",
            "--server",
            &t.url,
            "--data-dir",
        ])
        .arg(&t.dir)
        .env_remove("AIRLOCK_ADMIN_TOKEN")
        .env("AIRLOCK_SECRET", "airlock-secret")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, shown) = t.admin_get("/v1/ciba/external-op").await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["external_op"]["login_hints"], json!({ "cfo": "carol" }));
    assert!(!shown.to_string().contains("airlock-secret"), "the client secret is write-only");

    // Approved on the phone: the call completes, without the 5 s polling interval.
    let call = spawn_refund(&t, &token, "120.00");
    let asked = op.pending_for("carol").await;
    // The phone shows the host's text from the bound arguments, not the tool's own words.
    assert_eq!(
        asked["binding_message"],
        r#"refund with billing.refund by agent:offboarder: amount "120.00", currency "EUR", customer_id "42""#
    );
    let t0 = Instant::now();
    op.answer("approve", asked["auth_req_id"].as_str().unwrap()).await;
    let (status, body) = tokio::time::timeout(Duration::from_secs(20), call).await.unwrap().unwrap();
    assert_eq!(status, 200, "{body}");
    // Ping mode's fallback poll is 30 s: well under that, only the ping can have ended the wait
    // (the margin is for a loaded CI machine).
    assert!(t0.elapsed() < Duration::from_secs(20), "the OP's ping ended the wait: {:?}", t0.elapsed());
    assert_eq!(body["result"]["approved_by"], "ciba:carol");
    assert_eq!(body["result"]["refund"]["status"], "succeeded");
    assert_eq!(seen.paths(), vec!["/refunds".to_string()]);

    // Denied on the phone: the call fails with the denial and nothing is refunded.
    let call = spawn_refund(&t, &token, "999.00");
    let t1 = Instant::now();
    let asked = loop {
        let list: Vec<Value> = reqwest::get(format!("{}/pending", op.admin)).await.unwrap().json().await.unwrap();
        if let Some(p) =
            list.into_iter().find(|p| p["binding_message"].as_str().is_some_and(|m| m.contains(r#"amount "999.00""#)))
        {
            break p;
        }
        assert!(t1.elapsed() < Duration::from_secs(20), "the second refund did not reach the OP");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    op.answer("deny", asked["auth_req_id"].as_str().unwrap()).await;
    let (status, body) = tokio::time::timeout(Duration::from_secs(20), call).await.unwrap().unwrap();
    assert_eq!((status, body["code"].as_str()), (403, Some("tool_refused")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("denied at the external OpenID Provider"), "{body}");
    assert_eq!(seen.paths().len(), 1, "the denied refund never reached the billing API");

    // Nobody answers: the OP's request expires (asked directly, with a 2 s expiry).
    let decision = t.host.ask_external_op("default", "alice", Some("rotate keys"), Some(2)).await.unwrap();
    assert_eq!(decision, Decision::Expired);

    // A forged ping is refused.
    let forged = reqwest::Client::new()
        .post(format!("{}/ciba/callback/default", t.url))
        .bearer_auth("forged")
        .json(&json!({ "auth_req_id": "nope" }))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401, "same answer as a wrong token: no id oracle");

    let k = kinds(&t.audit().await);
    for expected in [
        ("ciba.external_op.put", "ok"),
        ("ciba.external", "started"),
        ("approval.decision", "approved"),
        ("approval.decision", "denied"),
    ] {
        assert!(k.contains(&(expected.0.into(), expected.1.into())), "{expected:?} in {k:?}");
    }
}
