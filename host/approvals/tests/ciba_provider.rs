//! Airlock as a CIBA OpenID Provider, on both databases: every spec error in its situation,
//! pacing, single redemption, pings and device webhooks over real loopback HTTP.

// Test helpers outside #[test] functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use airlock_approvals::ciba::{
    Approver, AuthRequest, CibaConfig, CibaError, CibaProvider, ClientReg, DeliveryMode, NewClient, GRANT_TYPE,
};
use airlock_approvals::{Approvals, Status};
use airlock_store::{sqlx, testing, Db};
use airlock_vault::MasterKey;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;
use tokio::sync::mpsc;

const TENANT: &str = "acme";

fn provider(db: &Db) -> CibaProvider {
    let key = MasterKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
    let config = CibaConfig { interval: 1, ..CibaConfig::default() };
    CibaProvider::new(db.clone(), Arc::new(Approvals::new(db.clone())), Arc::new(key))
        .unwrap()
        .with_config(config)
        .unwrap()
}

async fn with_approvers(p: &CibaProvider, webhook: Option<String>) {
    let carol = Approver {
        name: "carol".into(),
        iss: Some("https://acme.eu.auth0.com/".into()),
        sub: Some("auth0|c4r0l".into()),
        device_webhook: webhook,
    };
    p.put_approver(TENANT, &carol).await.unwrap();
    p.put_approver(TENANT, &Approver { name: "dave".into(), iss: None, sub: None, device_webhook: None })
        .await
        .unwrap();
}

async fn poll_client(p: &CibaProvider, id: &str) -> ClientReg {
    let new = NewClient { client_id: id.into(), delivery_mode: DeliveryMode::Poll, notification_endpoint: None };
    p.register_client(TENANT, &new).await.unwrap().0
}

fn ask(hint: &str, message: &str) -> AuthRequest {
    AuthRequest {
        scope: Some("openid".into()),
        login_hint: Some(hint.into()),
        binding_message: Some(message.into()),
        ..AuthRequest::default()
    }
}

/// A loopback HTTP endpoint that records (path, authorization header, JSON body) of each POST.
async fn recorder() -> (SocketAddr, mpsc::UnboundedReceiver<(String, Option<String>, Value)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    async fn record(
        State(tx): State<mpsc::UnboundedSender<(String, Option<String>, Value)>>,
        uri: axum::http::Uri,
        headers: HeaderMap,
        Json(body): Json<Value>,
    ) -> axum::http::StatusCode {
        let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_string());
        tx.send((uri.path().to_string(), auth, body)).unwrap();
        axum::http::StatusCode::NO_CONTENT
    }
    let app = Router::new().route("/ping", post(record)).route("/device", post(record)).with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<(String, Option<String>, Value)>) -> (String, Option<String>, Value) {
    tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("a notification in time").unwrap()
}

#[tokio::test]
async fn clients_register_authenticate_and_rotate() {
    for t in testing::all().await {
        let p = provider(&t.db);
        let (reg, secret) = p
            .register_client(
                TENANT,
                &NewClient {
                    client_id: "agent".into(),
                    delivery_mode: DeliveryMode::Poll,
                    notification_endpoint: None,
                },
            )
            .await
            .unwrap();
        assert!(reg.enabled);
        assert_eq!(p.authenticate_client(TENANT, "agent", &secret).await.unwrap().client_id, "agent");
        for (id, s) in [("agent", "wrong"), ("nobody", secret.as_str())] {
            let e = p.authenticate_client(TENANT, id, s).await.unwrap_err();
            assert_eq!((e.code(), e.status(), e.wants_authenticate_header()), ("invalid_client", 401, true));
        }
        assert!(p.authenticate_client("globex", "agent", &secret).await.is_err(), "tenants are separate");
        let stored: (String,) = sqlx::query_as("SELECT secret_hash FROM ciba_clients WHERE client_id = 'agent'")
            .fetch_one(t.db.pool())
            .await
            .unwrap();
        assert_ne!(stored.0, secret, "only a hash is stored");

        let fresh = p.rotate_client_secret(TENANT, "agent").await.unwrap();
        assert!(p.authenticate_client(TENANT, "agent", &secret).await.is_err(), "the old secret stops working");
        p.authenticate_client(TENANT, "agent", &fresh).await.unwrap();

        let bad = [
            NewClient { client_id: "pinger".into(), delivery_mode: DeliveryMode::Ping, notification_endpoint: None },
            NewClient {
                client_id: "pinger".into(),
                delivery_mode: DeliveryMode::Ping,
                notification_endpoint: Some("http://example.com/cb".into()),
            },
            NewClient { client_id: "agent".into(), delivery_mode: DeliveryMode::Poll, notification_endpoint: None },
        ];
        for new in bad {
            let e = p.register_client(TENANT, &new).await.unwrap_err();
            assert!(matches!(e, CibaError::InvalidRegistration(_)), "{new:?}: {e}");
        }
        let update = NewClient {
            client_id: "agent".into(),
            delivery_mode: DeliveryMode::Ping,
            notification_endpoint: Some("https://agent.example/cb".into()),
        };
        let updated = p.update_client(TENANT, &update, false).await.unwrap();
        assert_eq!((updated.delivery_mode, updated.enabled), (DeliveryMode::Ping, false));
        assert_eq!(p.clients(TENANT).await.unwrap().len(), 1);
        assert!(p.delete_client(TENANT, "agent").await.unwrap());
        assert!(!p.delete_client(TENANT, "agent").await.unwrap());
    }
}

#[tokio::test]
async fn each_backchannel_error_in_its_situation() {
    for t in testing::all().await {
        let p = provider(&t.db);
        with_approvers(&p, None).await;
        let client = poll_client(&p, "agent").await;
        let both = AuthRequest { id_token_hint: Some("eyJ...".into()), ..ask("carol", "hi") };
        let cases: Vec<(&str, AuthRequest, &str)> = vec![
            ("no hint", AuthRequest { login_hint: None, ..ask("carol", "hi") }, "invalid_request"),
            ("two hints", both, "invalid_request"),
            ("no scope", AuthRequest { scope: None, ..ask("carol", "hi") }, "invalid_request"),
            ("no openid", AuthRequest { scope: Some("profile".into()), ..ask("carol", "hi") }, "invalid_scope"),
            ("unknown name", ask("mallory", "hi"), "unknown_user_id"),
            (
                "unknown iss_sub",
                ask(r#"{"format":"iss_sub","iss":"https://acme.eu.auth0.com/","sub":"auth0|nobody"}"#, "hi"),
                "unknown_user_id",
            ),
            ("malformed structured hint", ask(r#"{"format":"email","email":"c@acme"}"#, "hi"), "invalid_request"),
            ("long binding message", ask("carol", &"x".repeat(257)), "invalid_binding_message"),
            ("control characters", ask("carol", "approve\u{1b}[2J"), "invalid_binding_message"),
            ("blank binding message", ask("carol", "  "), "invalid_binding_message"),
            (
                "zero expiry",
                AuthRequest { requested_expiry: Some("0".into()), ..ask("carol", "hi") },
                "invalid_request",
            ),
            (
                "expiry not a number",
                AuthRequest { requested_expiry: Some("soon".into()), ..ask("carol", "hi") },
                "invalid_request",
            ),
            (
                "expiry too long",
                AuthRequest { requested_expiry: Some("86401".into()), ..ask("carol", "hi") },
                "invalid_request",
            ),
            (
                "login_hint_token",
                AuthRequest { login_hint: None, login_hint_token: Some("tok".into()), ..ask("carol", "hi") },
                "invalid_request",
            ),
            (
                "id_token_hint the minter does not know",
                AuthRequest { login_hint: None, id_token_hint: Some("eyJ...".into()), ..ask("carol", "hi") },
                "unknown_user_id",
            ),
        ];
        for (what, req, code) in cases {
            let e = p.backchannel_authorize(TENANT, &client, req).await.unwrap_err();
            assert_eq!((e.code(), e.status()), (code, 400), "{what}: {e}");
            assert_eq!(e.to_json()["error"], code);
        }
        assert!(p.approvals().list(TENANT, None).await.unwrap().is_empty(), "no refused request left an approval");

        // A disabled client authenticates but may not use CIBA.
        let upd =
            NewClient { client_id: "agent".into(), delivery_mode: DeliveryMode::Poll, notification_endpoint: None };
        let disabled = p.update_client(TENANT, &upd, false).await.unwrap();
        let e = p.backchannel_authorize(TENANT, &disabled, ask("carol", "hi")).await.unwrap_err();
        assert_eq!(e.code(), "unauthorized_client");

        // A ping client must send its notification token.
        let (addr, _rx) = recorder().await;
        let ping = NewClient {
            client_id: "pinger".into(),
            delivery_mode: DeliveryMode::Ping,
            notification_endpoint: Some(format!("http://{addr}/ping")),
        };
        let pinger = p.register_client(TENANT, &ping).await.unwrap().0;
        let e = p.backchannel_authorize(TENANT, &pinger, ask("carol", "hi")).await.unwrap_err();
        assert_eq!(e.code(), "invalid_request", "{e}");
        let e = CibaProvider::check_grant_type("authorization_code").unwrap_err();
        assert_eq!(e.code(), "unsupported_grant_type");
        CibaProvider::check_grant_type(GRANT_TYPE).unwrap();
    }
}

#[tokio::test]
async fn approval_issues_tokens_once_to_the_client_that_asked() {
    for t in testing::all().await {
        let p = provider(&t.db);
        with_approvers(&p, None).await;
        let agent = poll_client(&p, "agent").await;
        let other = poll_client(&p, "other").await;
        let started = p.backchannel_authorize(TENANT, &agent, ask("carol", "refund 120 EUR to #42")).await.unwrap();
        assert_eq!((started.expires_in, started.interval), (600, 1));
        let wire = serde_json::to_value(&started).unwrap();
        assert_eq!(wire.as_object().unwrap().len(), 3, "auth_req_id, expires_in, interval only: {wire}");

        let approval = p.approvals().get(TENANT, &started.approval_id).await.unwrap();
        // The approver reads the host's text, in which the client's binding message is one
        // quoted argument; the client's words are also the request's labelled note.
        assert!(approval.summary.contains(r#"binding_message "refund 120 EUR to #42""#), "{}", approval.summary);
        assert_eq!(approval.note, "refund 120 EUR to #42");
        assert_eq!((approval.role.as_deref(), approval.status), (Some("carol"), Status::Pending));

        // The database holds only a hash of the auth_req_id.
        let leaked: Vec<(String,)> = sqlx::query_as("SELECT id_hash FROM ciba_requests WHERE id_hash = $1")
            .bind(&started.auth_req_id)
            .fetch_all(t.db.pool())
            .await
            .unwrap();
        assert!(leaked.is_empty());

        let e = p.poll(TENANT, &agent, &started.auth_req_id).await.unwrap_err();
        assert_eq!((e.code(), e.status()), ("authorization_pending", 400));

        let e = p.decide(TENANT, &started.approval_id, "dave", true, None).await.unwrap_err();
        assert_eq!((e.code(), e.status()), ("forbidden", 403), "only the named approver decides");
        assert_eq!(p.approver_for(TENANT, &started.approval_id).await.unwrap().as_deref(), Some("carol"));
        p.decide(TENANT, &started.approval_id, "carol", true, None).await.unwrap();

        for (client, id) in [(&other, started.auth_req_id.as_str()), (&agent, "not-an-id")] {
            let e = p.poll(TENANT, client, id).await.unwrap_err();
            assert_eq!(e.code(), "invalid_grant", "another client's or an unknown id");
        }
        let tokens = p.poll(TENANT, &agent, &started.auth_req_id).await.unwrap();
        assert_eq!(tokens.token_type, "Bearer");
        assert!(tokens.access_token.len() >= 40 && tokens.id_token.is_some());
        assert_eq!(tokens.scope.as_deref(), Some("openid"));
        let e = p.poll(TENANT, &agent, &started.auth_req_id).await.unwrap_err();
        assert_eq!(e.code(), "invalid_grant", "a second redemption");
        assert_eq!(p.approvals().get(TENANT, &started.approval_id).await.unwrap().status, Status::Consumed);
    }
}

#[tokio::test]
async fn denial_and_expiry_end_the_request() {
    for t in testing::all().await {
        let p = provider(&t.db);
        with_approvers(&p, None).await;
        let agent = poll_client(&p, "agent").await;

        let denied = p.backchannel_authorize(TENANT, &agent, ask("dave", "rotate keys")).await.unwrap();
        p.decide(TENANT, &denied.approval_id, "dave", false, Some("not now")).await.unwrap();
        let e = p.poll(TENANT, &agent, &denied.auth_req_id).await.unwrap_err();
        assert_eq!((e.code(), e.status()), ("access_denied", 400));

        let short = AuthRequest { requested_expiry: Some("1".into()), ..ask("dave", "quick") };
        let short = p.backchannel_authorize(TENANT, &agent, short).await.unwrap();
        assert_eq!(short.expires_in, 1);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let e = p.poll(TENANT, &agent, &short.auth_req_id).await.unwrap_err();
        assert_eq!(e.code(), "expired_token");
        let late = p.decide(TENANT, &short.approval_id, "dave", true, None).await.unwrap_err();
        assert_eq!(late.status(), 409, "an expired request cannot be approved: {late}");
        let e = p.poll(TENANT, &agent, &short.auth_req_id).await.unwrap_err();
        assert_eq!(e.code(), "expired_token");
    }
}

#[tokio::test]
async fn polling_faster_than_the_interval_slows_the_client_down() {
    for t in testing::all().await {
        let p = provider(&t.db);
        with_approvers(&p, None).await;
        let agent = poll_client(&p, "agent").await;

        // Well paced (interval 1 s): always authorization_pending.
        let paced = p.backchannel_authorize(TENANT, &agent, ask("carol", "paced")).await.unwrap();
        for _ in 0..2 {
            assert_eq!(p.poll(TENANT, &agent, &paced.auth_req_id).await.unwrap_err().code(), "authorization_pending");
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }

        let hasty = p.backchannel_authorize(TENANT, &agent, ask("carol", "hasty")).await.unwrap();
        assert_eq!(p.poll(TENANT, &agent, &hasty.auth_req_id).await.unwrap_err().code(), "authorization_pending");
        let e = p.poll(TENANT, &agent, &hasty.auth_req_id).await.unwrap_err();
        assert!(matches!(e, CibaError::SlowDown { interval: 6 }), "{e}");
        assert_eq!((e.code(), e.status()), ("slow_down", 400));
        // The interval grew by 5 s for good: a poll after the old 1 s is still too soon.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let e = p.poll(TENANT, &agent, &hasty.auth_req_id).await.unwrap_err();
        assert!(matches!(e, CibaError::SlowDown { interval: 11 }), "{e}");

        // Once decided, the result is not held back by pacing.
        p.decide(TENANT, &hasty.approval_id, "carol", true, None).await.unwrap();
        p.poll(TENANT, &agent, &hasty.auth_req_id).await.unwrap();
    }
}

#[tokio::test]
async fn ping_mode_and_the_device_webhook_deliver_over_http() {
    for t in testing::all().await {
        let (addr, mut rx) = recorder().await;
        let p = provider(&t.db);
        with_approvers(&p, Some(format!("http://{addr}/device"))).await;
        let ping = NewClient {
            client_id: "pinger".into(),
            delivery_mode: DeliveryMode::Ping,
            notification_endpoint: Some(format!("http://{addr}/ping")),
        };
        let pinger = p.register_client(TENANT, &ping).await.unwrap().0;
        let req = AuthRequest { client_notification_token: Some("cnt-8d1f0a".into()), ..ask("carol", "wire 5k") };
        let started = p.backchannel_authorize(TENANT, &pinger, req).await.unwrap();

        // The approver's device hears of the request, without anything that redeems it.
        let (path, auth, body) = next(&mut rx).await;
        assert_eq!((path.as_str(), auth), ("/device", None));
        assert_eq!(body["approval_id"], started.approval_id.as_str());
        assert_eq!(body["binding_message"], "wire 5k");
        assert_eq!((body["tool"].as_str(), body["action"].as_str()), (Some("ciba"), Some("authenticate")));
        assert!(body["expires_at"].as_i64().unwrap() > 0);
        assert!(!body.to_string().contains(&started.auth_req_id), "no auth_req_id in the device notice");
        assert!(!body.to_string().contains("cnt-8d1f0a"), "no notification token in the device notice");

        // The sealed ping secret does not show the id or the token.
        let sealed: (Vec<u8>,) = sqlx::query_as("SELECT ping_sealed FROM ciba_requests WHERE approval_id = $1")
            .bind(&started.approval_id)
            .fetch_one(t.db.pool())
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&sealed.0);
        assert!(!text.contains(&started.auth_req_id) && !text.contains("cnt-8d1f0a"));

        assert!(!p.notify_decided(TENANT, &started.approval_id).await.unwrap(), "nothing to ping while pending");
        p.decide(TENANT, &started.approval_id, "carol", true, None).await.unwrap();
        let (path, auth, body) = next(&mut rx).await;
        assert_eq!(path, "/ping");
        assert_eq!(auth.as_deref(), Some("Bearer cnt-8d1f0a"));
        assert_eq!(body, serde_json::json!({ "auth_req_id": started.auth_req_id }));
        assert!(!p.notify_decided(TENANT, &started.approval_id).await.unwrap(), "one ping per request");
        p.poll(TENANT, &pinger, &started.auth_req_id).await.unwrap();

        // Denial pings too; a poll client is never pinged.
        let req = AuthRequest { client_notification_token: Some("cnt-2".into()), ..ask("dave", "no") };
        let denied = p.backchannel_authorize(TENANT, &pinger, req).await.unwrap();
        p.decide(TENANT, &denied.approval_id, "dave", false, None).await.unwrap();
        let (path, auth, body) = next(&mut rx).await;
        assert_eq!((path.as_str(), auth.as_deref()), ("/ping", Some("Bearer cnt-2")));
        assert_eq!(body["auth_req_id"], denied.auth_req_id.as_str());
        assert_eq!(p.poll(TENANT, &pinger, &denied.auth_req_id).await.unwrap_err().code(), "access_denied");

        let poller = poll_client(&p, "agent").await;
        let polled = p.backchannel_authorize(TENANT, &poller, ask("dave", "poll me")).await.unwrap();
        p.decide(TENANT, &polled.approval_id, "dave", true, None).await.unwrap();
        assert!(!p.notify_decided(TENANT, &polled.approval_id).await.unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(rx.try_recv().is_err(), "no ping for a poll client, no webhook for dave");
    }
}

#[tokio::test]
async fn auth0_iss_sub_login_hints_find_the_approver() {
    for t in testing::all().await {
        let p = provider(&t.db);
        with_approvers(&p, None).await;
        let agent = poll_client(&p, "agent").await;
        let hint = r#"{"format":"iss_sub","iss":"https://acme.eu.auth0.com/","sub":"auth0|c4r0l"}"#;
        let started = p.backchannel_authorize(TENANT, &agent, ask(hint, "sign in")).await.unwrap();
        let approval = p.approvals().get(TENANT, &started.approval_id).await.unwrap();
        assert_eq!(approval.role.as_deref(), Some("carol"));

        // The same external identity cannot name two approvers.
        let twin = Approver {
            name: "carol2".into(),
            iss: Some("https://acme.eu.auth0.com/".into()),
            sub: Some("auth0|c4r0l".into()),
            device_webhook: None,
        };
        assert!(matches!(p.put_approver(TENANT, &twin).await.unwrap_err(), CibaError::InvalidRegistration(_)));
        let half = Approver { name: "erin".into(), iss: Some("https://x/".into()), sub: None, device_webhook: None };
        assert!(p.put_approver(TENANT, &half).await.is_err(), "iss without sub");
        assert_eq!(p.approvers(TENANT).await.unwrap().len(), 2);
        assert!(p.delete_approver(TENANT, "dave").await.unwrap());
        assert_eq!(p.approver(TENANT, "dave").await.unwrap_err().status(), 404);
    }
}

#[test]
fn discovery_announces_ciba() {
    let meta = CibaProvider::discovery("https://airlock.example/t/acme/");
    assert_eq!(meta["issuer"], "https://airlock.example/t/acme");
    assert_eq!(meta["backchannel_authentication_endpoint"], "https://airlock.example/t/acme/ciba/backchannel");
    assert_eq!(meta["token_endpoint"], "https://airlock.example/t/acme/oauth/token");
    assert_eq!(meta["backchannel_token_delivery_modes_supported"], serde_json::json!(["poll", "ping"]));
    assert_eq!(meta["backchannel_user_code_parameter_supported"], false);
    assert_eq!(meta["grant_types_supported"], serde_json::json!([GRANT_TYPE]));
    assert!(meta["token_endpoint_auth_methods_supported"].as_array().unwrap().contains(&"client_secret_basic".into()));
}
