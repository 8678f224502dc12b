//! Airlock as a CIBA client of a real OpenID Provider: the certified `oidc-provider` of
//! ../shared/ciba-op (prepared by scripts/ciba-op.sh), its approver's phone driven over its
//! admin port. Also the client against Airlock's own provider behind a loopback HTTP server,
//! for `slow_down`, which the real OP never sends.

// Test helpers outside #[test] functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use airlock_approvals::ciba::{
    Approver, AuthRequest, CibaClient, CibaClientError, CibaConfig, CibaProvider, Decision, DeliveryMode, ExternalOp,
    NewClient, OpEndpoints, BACKCHANNEL_PATH, TOKEN_PATH,
};
use airlock_approvals::Approvals;
use airlock_store::testing;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running `node op.mjs`, killed on drop.
struct Op {
    _child: Child,
    base: String,
    admin: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts the real OP, or `None` (after saying why) when scripts/ciba-op.sh has not prepared it.
/// `clients` replaces its default poll client; with it comes the loopback ping shim
/// (tests/ciba-op-loopback-ping.mjs), since the OP pings only https on public addresses.
async fn start_op(clients: Option<Value>) -> Option<Op> {
    let Some(dir) = std::env::var_os("AIRLOCK_CIBA_OP_DIR").filter(|d| !d.is_empty()) else {
        let on_ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
        assert!(!on_ci, "AIRLOCK_CIBA_OP_DIR is not set under CI: run the tests through scripts/test");
        eprintln!("notice: AIRLOCK_CIBA_OP_DIR not set, CIBA client test against the real OP skipped (source scripts/ciba-op.sh)");
        return None;
    };
    let (port, admin) = (free_port(), free_port());
    let mut cmd = Command::new("node");
    if clients.is_some() {
        let shim = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ciba-op-loopback-ping.mjs");
        cmd.arg("--import").arg(url::Url::from_file_path(shim).unwrap().as_str());
    }
    cmd.arg("op.mjs")
        .current_dir(dir)
        .env("PORT", port.to_string())
        .env("ADMIN_PORT", admin.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(c) = clients {
        cmd.env("CLIENTS", c.to_string());
    }
    let mut child = cmd.spawn().expect("node runs op.mjs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("READY") {
                return;
            }
        }
        panic!("op.mjs exited before READY");
    });
    ready.await.expect("op.mjs READY within 30 s");
    // Keep draining its output so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let op = Op { _child: child, base: format!("http://127.0.0.1:{port}"), admin: format!("http://127.0.0.1:{admin}") };
    // READY is printed as listening starts, not when it is done: wait for both ports to answer.
    for url in [format!("{}/.well-known/openid-configuration", op.base), format!("{}/pending", op.admin)] {
        let t0 = Instant::now();
        while reqwest::get(&url).await.is_err() {
            assert!(t0.elapsed() < Duration::from_secs(20), "{url} does not answer");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Some(op)
}

impl Op {
    fn external(&self, client_id: &str, secret: &str, mode: DeliveryMode) -> ExternalOp {
        ExternalOp {
            discovery_url: Some(format!("{}/.well-known/openid-configuration", self.base)),
            endpoints: None,
            client_id: client_id.into(),
            client_secret: secret.into(),
            delivery_mode: mode,
            scope: "openid".into(),
        }
    }

    async fn pending(&self) -> Vec<Value> {
        reqwest::get(format!("{}/pending", self.admin)).await.unwrap().json().await.unwrap()
    }

    /// The approver's phone: `approve` or `deny`.
    async fn answer(&self, verb: &str, id: &str) {
        let resp = reqwest::get(format!("{}/{verb}?id={id}", self.admin)).await.unwrap();
        assert!(resp.status().is_success(), "{verb}: {}", resp.text().await.unwrap());
    }
}

fn id_token_sub(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["sub"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn approval_on_the_phone_yields_tokens_after_the_default_interval() {
    let Some(op) = start_op(None).await else { return };
    let client = CibaClient::discover(op.external("agent", "agent-secret", DeliveryMode::Poll)).await.unwrap();
    assert_eq!(client.endpoints().token_endpoint, format!("{}/token", op.base));
    let t0 = Instant::now();
    let started = client.start("alice", Some("refund 120 EUR to #42"), None).await.unwrap();
    assert_eq!(started.interval, None, "this OP sends no interval: the client must use 5 s");
    let pending = op.pending().await;
    let mine = pending.iter().find(|p| p["auth_req_id"] == started.auth_req_id.as_str()).unwrap();
    assert_eq!(
        (mine["sub"].as_str(), mine["binding_message"].as_str()),
        (Some("alice"), Some("refund 120 EUR to #42"))
    );
    op.answer("approve", &started.auth_req_id).await;

    let Decision::Approved(tokens) = client.poll_until_decided(&started).await.unwrap() else {
        panic!("approved on the phone")
    };
    assert!(t0.elapsed() >= Duration::from_secs(5), "waited the 5 s default before polling: {:?}", t0.elapsed());
    assert_eq!(tokens.token_type, "Bearer");
    assert!(!tokens.access_token.is_empty());
    assert_eq!(id_token_sub(tokens.id_token.as_deref().unwrap()), "alice");

    // The auth_req_id is spent.
    match client.poll_until_decided(&started).await {
        Err(CibaClientError::Op { code, status: 400, .. }) => assert_eq!(code, "invalid_grant"),
        other => panic!("reuse must be invalid_grant, got {other:?}"),
    }
}

#[tokio::test]
async fn denial_on_the_phone_is_denied_and_auth0_hints_reach_the_op() {
    let Some(op) = start_op(None).await else { return };
    let client = CibaClient::discover(op.external("agent", "agent-secret", DeliveryMode::Poll)).await.unwrap();
    let hint = r#"{"format":"iss_sub","iss":"https://acme.eu.auth0.com/","sub":"auth0|c4r0l"}"#;
    let started = client.start(hint, Some("delete 3 users"), Some(60)).await.unwrap();
    assert_eq!(started.expires_in, 60);
    let pending = op.pending().await;
    let mine = pending.iter().find(|p| p["auth_req_id"] == started.auth_req_id.as_str()).unwrap();
    assert_eq!(mine["sub"], "auth0|c4r0l", "the OP resolved the iss_sub hint sent form-encoded");
    op.answer("deny", &started.auth_req_id).await;
    assert_eq!(client.poll_until_decided(&started).await.unwrap(), Decision::Denied);
}

#[tokio::test]
async fn nobody_answering_expires() {
    let Some(op) = start_op(None).await else { return };
    let client = CibaClient::discover(op.external("agent", "agent-secret", DeliveryMode::Poll)).await.unwrap();
    let started = client.start("alice", None, Some(2)).await.unwrap();
    assert_eq!(started.expires_in, 2);
    assert_eq!(client.poll_until_decided(&started).await.unwrap(), Decision::Expired);
}

#[tokio::test]
async fn bad_credentials_and_configuration_are_errors() {
    let Some(op) = start_op(None).await else { return };
    let client = CibaClient::discover(op.external("agent", "wrong-secret", DeliveryMode::Poll)).await.unwrap();
    match client.start("alice", None, None).await {
        Err(CibaClientError::Op { code, status, .. }) => assert_eq!((code.as_str(), status), ("invalid_client", 401)),
        other => panic!("expected invalid_client, got {other:?}"),
    }
    let no_openid = ExternalOp { scope: "profile".into(), ..op.external("agent", "agent-secret", DeliveryMode::Poll) };
    assert!(matches!(CibaClient::discover(no_openid).await, Err(CibaClientError::Config(_))));
    let wrong_issuer = ExternalOp {
        discovery_url: Some(format!("{}/.well-known/openid-configuration", op.base.replace("127.0.0.1", "localhost"))),
        ..op.external("agent", "agent-secret", DeliveryMode::Poll)
    };
    assert!(matches!(CibaClient::discover(wrong_issuer).await, Err(CibaClientError::Discovery { .. })));
}

type Slot = Arc<OnceLock<Arc<CibaClient>>>;

/// The client's notification endpoint, as the server will have it: bearer + body to `ping_received`.
async fn ping_endpoint(slot: Slot) -> SocketAddr {
    async fn ping(State(slot): State<Slot>, headers: HeaderMap, Json(body): Json<Value>) -> StatusCode {
        let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        let (Some(client), Some(bearer), Some(id)) = (slot.get(), bearer, body["auth_req_id"].as_str()) else {
            return StatusCode::BAD_REQUEST;
        };
        match client.ping_received(id, bearer) {
            Ok(()) => StatusCode::NO_CONTENT,
            Err(_) => StatusCode::UNAUTHORIZED,
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/ciba/ping", post(ping)).with_state(slot);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn ping_mode_wakes_the_waiter_at_once() {
    let slot: Slot = Arc::default();
    let addr = ping_endpoint(slot.clone()).await;
    let clients = json!([{
        "client_id": "pinger", "client_secret": "pinger-secret",
        "grant_types": ["urn:openid:params:grant-type:ciba"], "response_types": [], "redirect_uris": [],
        "token_endpoint_auth_method": "client_secret_basic",
        "backchannel_token_delivery_mode": "ping",
        "backchannel_client_notification_endpoint": format!("https://{addr}/ciba/ping"),
    }]);
    let Some(op) = start_op(Some(clients)).await else { return };
    let client =
        Arc::new(CibaClient::discover(op.external("pinger", "pinger-secret", DeliveryMode::Ping)).await.unwrap());
    assert!(slot.set(client.clone()).is_ok());

    let t0 = Instant::now();
    let started = client.start("alice", Some("approve deploy"), None).await.unwrap();
    assert!(matches!(
        client.ping_received(&started.auth_req_id, "forged"),
        Err(CibaClientError::BadNotificationToken(_))
    ));
    assert!(matches!(client.ping_received("unknown", "x"), Err(CibaClientError::UnknownRequest(_))));
    let phone = tokio::spawn({
        let (admin, id) = (op.admin.clone(), started.auth_req_id.clone());
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            reqwest::get(format!("{admin}/approve?id={id}")).await.unwrap().error_for_status().unwrap();
        }
    });
    let decision = client.poll_until_decided(&started).await.unwrap();
    phone.await.unwrap();
    assert!(matches!(decision, Decision::Approved(_)), "{decision:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "the ping, not the 5 s interval or the 30 s fallback, ended the wait: {:?}",
        t0.elapsed()
    );
}

/// Airlock's provider behind thin handlers, as host/server will serve it.
async fn serve_provider(provider: Arc<CibaProvider>) -> String {
    fn client_of(headers: &HeaderMap) -> Option<(String, String)> {
        let raw = headers.get("authorization")?.to_str().ok()?.strip_prefix("Basic ")?;
        let pair = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(raw).ok()?).ok()?;
        let (id, secret) = pair.split_once(':')?;
        let dec =
            |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
        Some((dec(id)?, dec(secret)?))
    }
    fn reply(r: Result<Value, airlock_approvals::ciba::CibaError>) -> (StatusCode, Json<Value>) {
        match r {
            Ok(v) => (StatusCode::OK, Json(v)),
            Err(e) => (StatusCode::from_u16(e.status()).unwrap(), Json(e.to_json())),
        }
    }
    async fn backchannel(
        State(p): State<Arc<CibaProvider>>,
        headers: HeaderMap,
        Form(req): Form<AuthRequest>,
    ) -> (StatusCode, Json<Value>) {
        reply(
            async {
                let (id, secret) = client_of(&headers).ok_or(airlock_approvals::ciba::CibaError::InvalidClient)?;
                let client = p.authenticate_client("acme", &id, &secret).await?;
                Ok(serde_json::to_value(p.backchannel_authorize("acme", &client, req).await?).unwrap())
            }
            .await,
        )
    }
    async fn token(
        State(p): State<Arc<CibaProvider>>,
        headers: HeaderMap,
        Form(form): Form<std::collections::HashMap<String, String>>,
    ) -> (StatusCode, Json<Value>) {
        reply(
            async {
                let (id, secret) = client_of(&headers).ok_or(airlock_approvals::ciba::CibaError::InvalidClient)?;
                let client = p.authenticate_client("acme", &id, &secret).await?;
                CibaProvider::check_grant_type(form.get("grant_type").map(String::as_str).unwrap_or_default())?;
                let id = form.get("auth_req_id").cloned().unwrap_or_default();
                Ok(serde_json::to_value(p.poll("acme", &client, &id).await?).unwrap())
            }
            .await,
        )
    }
    let app =
        Router::new().route(BACKCHANNEL_PATH, post(backchannel)).route(TOKEN_PATH, post(token)).with_state(provider);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_slows_down_when_our_provider_says_so() {
    let t = testing::sqlite().await;
    let key = airlock_vault::MasterKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
    let provider = CibaProvider::new(t.db.clone(), Arc::new(Approvals::new(t.db.clone())), Arc::new(key))
        .unwrap()
        .with_config(CibaConfig { interval: 1, ..CibaConfig::default() })
        .unwrap();
    let provider = Arc::new(provider);
    provider
        .put_approver("acme", &Approver { name: "carol".into(), iss: None, sub: None, device_webhook: None })
        .await
        .unwrap();
    let new =
        NewClient { client_id: "agent:ops".into(), delivery_mode: DeliveryMode::Poll, notification_endpoint: None };
    let (reg, secret) = provider.register_client("acme", &new).await.unwrap();
    let base = serve_provider(provider.clone()).await;
    let client = CibaClient::discover(ExternalOp {
        discovery_url: None,
        endpoints: Some(OpEndpoints {
            backchannel_authentication_endpoint: format!("{base}{BACKCHANNEL_PATH}"),
            token_endpoint: format!("{base}{TOKEN_PATH}"),
        }),
        client_id: "agent:ops".into(),
        client_secret: secret,
        delivery_mode: DeliveryMode::Poll,
        scope: "openid".into(),
    })
    .await
    .unwrap();
    let client = Arc::new(client);

    let t0 = Instant::now();
    let started = client.start("carol", Some("restart prod"), None).await.unwrap();
    assert_eq!(started.interval, Some(1));
    let waiter = tokio::spawn({
        let (client, started) = (client.clone(), started.clone());
        async move { client.poll_until_decided(&started).await }
    });
    let approval_id = provider.approvals().list("acme", None).await.unwrap()[0].id.clone();
    // Another poll with the same credentials just before the client's first (at 1 s): the
    // client's poll comes too soon, gets `slow_down`, and must wait 1 + 5 s before the next.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(provider.poll("acme", &reg, &started.auth_req_id).await.unwrap_err().code(), "authorization_pending");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    provider.decide("acme", &approval_id, "carol", true, None).await.unwrap();
    let decision = waiter.await.unwrap().unwrap();
    assert!(matches!(decision, Decision::Approved(ref t) if t.id_token.is_some()), "{decision:?}");
    assert!(t0.elapsed() >= Duration::from_secs(6), "slowed down to 6 s: {:?}", t0.elapsed());
}
