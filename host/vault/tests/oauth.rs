//! OAuth2 connections against a local token endpoint that rotates refresh tokens
//! (as HubSpot's does) and a stand-in API that accepts only the current access token.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_store::{sqlx, testing};
use airlock_vault::{
    Connection, ConnectionKind, ConnectionState, FetchLimits, MasterKey, OAuthConfig, OutboundRequest, Vault,
    VaultError,
};
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use zeroize::Zeroizing;

#[derive(Default)]
struct Provider {
    refresh_token: String,
    access_token: String,
    issued: u32,
    refuse: bool,
    seen_grants: Vec<String>,
}

type Shared = Arc<Mutex<Provider>>;

async fn token(
    State(p): State<Shared>,
    Form(form): Form<std::collections::HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let mut p = p.lock().unwrap();
    let grant = form.get("grant_type").cloned().unwrap_or_default();
    p.seen_grants.push(grant.clone());
    let ok = match grant.as_str() {
        "refresh_token" => !p.refuse && form.get("refresh_token") == Some(&p.refresh_token),
        "client_credentials" => {
            form.get("client_secret").map(String::as_str) == Some("cs_live")
                && form.get("client_id").map(String::as_str) == Some("airlock")
        }
        // Connect: the code this provider issued, with the PKCE verifier and the redirect URI.
        "authorization_code" => {
            form.get("code").map(String::as_str) == Some("code_ok")
                && form.get("code_verifier").map(String::as_str) == Some("verifier")
                && form.get("redirect_uri").map(String::as_str) == Some("http://127.0.0.1:8080/oauth/connect/callback")
                && form.get("client_secret").map(String::as_str) == Some("cs_live")
        }
        _ => false,
    };
    if !ok {
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": "invalid_grant" })));
    }
    p.issued += 1;
    p.access_token = format!("at_{}", p.issued);
    p.refresh_token = format!("rt_{}", p.issued + 1);
    (
        StatusCode::OK,
        Json(
            json!({ "access_token": p.access_token, "expires_in": 1800, "refresh_token": p.refresh_token, "token_type": "bearer" }),
        ),
    )
}

async fn me(State(p): State<Shared>, headers: HeaderMap) -> StatusCode {
    let want = format!("Bearer {}", p.lock().unwrap().access_token);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(want.as_str()) {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    }
}

async fn provider() -> (SocketAddr, Shared) {
    let shared: Shared = Arc::new(Mutex::new(Provider { refresh_token: "rt_1".into(), ..Default::default() }));
    let app =
        Router::new().route("/oauth/v1/token", post(token)).route("/crm/v3/me", get(me)).with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, shared)
}

fn key() -> MasterKey {
    MasterKey::from_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap()
}

fn conn(addr: SocketAddr, kind: ConnectionKind) -> Connection {
    Connection {
        name: "hubspot".into(),
        kind,
        placement: None,
        base_url: Some(format!("http://{addr}")),
        allowed_hosts: vec![addr.to_string()],
        requires_grant: false,
        oauth: Some(OAuthConfig {
            token_url: format!("http://{addr}/oauth/v1/token"),
            client_id: "airlock".into(),
            scope: None,
            authorize_url: None,
        }),
        allow_private_network: true, // the stand-in listens on loopback
        expose_token: false,
        state: None,
    }
}

fn me_req() -> OutboundRequest {
    OutboundRequest { method: "GET".into(), url: "/crm/v3/me".into(), headers: vec![], body: None }
}

#[tokio::test]
async fn refresh_tokens_are_used_rotated_kept_and_a_refusal_asks_for_a_reconnect() {
    let (addr, p) = provider().await;
    for t in testing::all().await {
        *p.lock().unwrap() = Provider { refresh_token: "rt_1".into(), ..Default::default() };
        let vault = Vault::open(t.db.clone(), key(), FetchLimits::default()).await.unwrap();
        let secret = Zeroizing::new(json!({ "refresh_token": "rt_1", "client_secret": "cs_live" }).to_string());
        vault.put("acme", &conn(addr, ConnectionKind::Oauth2Refresh), secret).await.unwrap();

        assert_eq!(vault.fetch("acme", "hubspot", me_req(), false).await.unwrap().status, 200, "{:?}", t.backend);
        assert_eq!(vault.fetch("acme", "hubspot", me_req(), false).await.unwrap().status, 200);
        assert_eq!(p.lock().unwrap().issued, 1, "the access token is reused until it nears expiry");

        // A vault that refreshes every time: the rotated refresh token must have been kept.
        let eager = Vault::open(
            t.db.clone(),
            key(),
            FetchLimits { refresh_margin: Duration::from_secs(3600), ..Default::default() },
        )
        .await
        .unwrap();
        assert_eq!(eager.fetch("acme", "hubspot", me_req(), false).await.unwrap().status, 200);
        assert_eq!(eager.fetch("acme", "hubspot", me_req(), false).await.unwrap().status, 200);
        assert_eq!(p.lock().unwrap().issued, 3);

        // The whole SQLite file (WAL included) holds no token or secret in clear.
        if let Some(dir) = t.dir() {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let bytes = std::fs::read(entry.path()).unwrap();
                for needle in [b"rt_".as_slice(), b"at_1".as_slice(), b"cs_live".as_slice()] {
                    assert!(
                        !bytes.windows(needle.len()).any(|w| w == needle),
                        "{} holds a secret",
                        entry.path().display()
                    );
                }
            }
        }
        // Nothing in the table is readable: no refresh or access token in clear.
        let rows: Vec<(Vec<u8>,)> =
            sqlx::query_as("SELECT sealed_secret FROM connections").fetch_all(t.db.pool()).await.unwrap();
        for (blob,) in rows {
            for needle in [b"rt_".as_slice(), b"at_".as_slice(), b"cs_live".as_slice()] {
                assert!(!blob.windows(needle.len()).any(|w| w == needle));
            }
        }

        // The provider revokes the grant: the error says to reconnect, and nothing is sent.
        p.lock().unwrap().refuse = true;
        let err = eager.fetch("acme", "hubspot", me_req(), false).await.unwrap_err();
        assert!(matches!(err, VaultError::ReconnectNeeded { .. }), "{err}");
        assert!(err.to_string().contains("needs to be reconnected"), "{err}");
        assert!(err.to_string().contains("invalid_grant"), "{err}");
        // ... and the connection's metadata says so, before the next tool trips over it.
        assert_eq!(eager.get("acme", "hubspot").await.unwrap().state, Some(ConnectionState::NeedsReconnect));
    }
}

#[tokio::test]
async fn client_credentials_and_malformed_oauth_secrets() {
    let (addr, p) = provider().await;
    let t = testing::sqlite().await;
    let vault = Vault::open(t.db.clone(), key(), FetchLimits::default()).await.unwrap();
    let secret = Zeroizing::new(json!({ "client_secret": "cs_live" }).to_string());
    vault.put("acme", &conn(addr, ConnectionKind::Oauth2ClientCredentials), secret).await.unwrap();
    assert_eq!(vault.fetch("acme", "hubspot", me_req(), false).await.unwrap().status, 200);
    assert_eq!(p.lock().unwrap().seen_grants, vec!["client_credentials".to_string()]);

    let err = vault
        .put("acme", &conn(addr, ConnectionKind::Oauth2Refresh), Zeroizing::new("rt_plain".into()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is JSON"), "{err}");
    let err =
        vault.put("acme", &conn(addr, ConnectionKind::Oauth2Refresh), Zeroizing::new("{}".into())).await.unwrap_err();
    assert!(err.to_string().contains("needs `refresh_token`"), "{err}");
    let mut no_oauth = conn(addr, ConnectionKind::Oauth2Refresh);
    no_oauth.oauth = None;
    let err =
        vault.put("acme", &no_oauth, Zeroizing::new(json!({ "refresh_token": "x" }).to_string())).await.unwrap_err();
    assert!(err.to_string().contains("needs `oauth`"), "{err}");
}

#[tokio::test]
async fn only_an_exposing_oauth_connection_hands_out_its_short_lived_token() {
    let (addr, p) = provider().await;
    for t in testing::all().await {
        *p.lock().unwrap() = Provider { refresh_token: "rt_1".into(), ..Default::default() };
        let vault = Vault::open(t.db.clone(), key(), FetchLimits::default()).await.unwrap();
        let secret = || Zeroizing::new(json!({ "refresh_token": "rt_1", "client_secret": "cs_live" }).to_string());
        vault.put("acme", &conn(addr, ConnectionKind::Oauth2Refresh), secret()).await.unwrap();
        let err = vault.token("acme", "hubspot").await.unwrap_err();
        assert!(matches!(err, VaultError::NotExposable(_)), "{err}");
        assert_eq!(p.lock().unwrap().issued, 0, "a refused exposure asks the provider for nothing");

        // A token handed out could be used without an approval: the two settings exclude each other.
        let both = Connection { expose_token: true, requires_grant: true, ..conn(addr, ConnectionKind::Oauth2Refresh) };
        assert!(matches!(vault.put("acme", &both, secret()).await, Err(VaultError::InvalidConnection(_))));
        let exposing = Connection { expose_token: true, ..conn(addr, ConnectionKind::Oauth2Refresh) };
        vault.put("acme", &exposing, secret()).await.unwrap();
        let (token, expires_at) = vault.token("acme", "hubspot").await.unwrap();
        assert_eq!(token.as_str(), p.lock().unwrap().access_token, "the provider's current access token");
        let left = expires_at - airlock_store::now_millis();
        assert!((1_700_000..=1_800_000).contains(&left), "expires with the provider's 1800 s: {left}");
        // The refresh token is never what comes out.
        assert!(!token.starts_with("rt_"));
        assert_eq!(vault.get("acme", "hubspot").await.unwrap().expose_token, true);
    }
}

#[tokio::test]
async fn connect_redeems_a_code_and_keeps_the_refresh_token_it_brings() {
    let (addr, p) = provider().await;
    for t in testing::all().await {
        *p.lock().unwrap() = Provider::default();
        let vault = Vault::open(t.db.clone(), key(), FetchLimits::default()).await.unwrap();
        let mut conn = conn(addr, ConnectionKind::Oauth2Refresh);
        conn.oauth.as_mut().unwrap().authorize_url = Some(format!("http://{addr}/authorize"));
        // Only the client secret: waiting for Connect, and nothing is asked of the provider.
        let secret = Zeroizing::new(json!({ "client_secret": "cs_live" }).to_string());
        vault.put("acme", &conn, secret).await.unwrap();
        assert_eq!(vault.get("acme", "hubspot").await.unwrap().state, Some(ConnectionState::NeedsConnect));
        let err = vault.fetch("acme", "hubspot", me_req(), false).await.unwrap_err();
        assert!(matches!(err, VaultError::NotConnected(_)), "{err}");
        assert!(p.lock().unwrap().seen_grants.is_empty());

        // A code the provider refuses stores nothing.
        let redirect = "http://127.0.0.1:8080/oauth/connect/callback";
        let err = vault.redeem_code("acme", "hubspot", "code_bad", redirect, "verifier").await.unwrap_err();
        assert!(matches!(err, VaultError::InvalidRequest(_)), "{err}");
        assert_eq!(vault.get("acme", "hubspot").await.unwrap().state, Some(ConnectionState::NeedsConnect));

        // The code, with its verifier and redirect URI: connected, and the API answers.
        vault.redeem_code("acme", "hubspot", "code_ok", redirect, "verifier").await.unwrap();
        assert_eq!(vault.get("acme", "hubspot").await.unwrap().state, Some(ConnectionState::Connected));
        assert_eq!(vault.fetch("acme", "hubspot", me_req(), false).await.unwrap().status, 200, "{:?}", t.backend);
        // The refresh token it brought is the one the next refresh uses.
        let eager = Vault::open(
            t.db.clone(),
            key(),
            FetchLimits { refresh_margin: Duration::from_secs(3600), ..FetchLimits::default() },
        )
        .await
        .unwrap();
        assert_eq!(eager.fetch("acme", "hubspot", me_req(), false).await.unwrap().status, 200);
        assert_eq!(p.lock().unwrap().seen_grants, ["authorization_code", "authorization_code", "refresh_token"]);
    }
    // Only oauth2_refresh connects.
    let t = testing::sqlite().await;
    let vault = Vault::open(t.db.clone(), key(), FetchLimits::default()).await.unwrap();
    let mut cc = conn(addr, ConnectionKind::Oauth2ClientCredentials);
    cc.oauth.as_mut().unwrap().authorize_url = Some(format!("http://{addr}/authorize"));
    let secret = Zeroizing::new(json!({ "client_secret": "cs_live" }).to_string());
    assert!(matches!(vault.put("acme", &cc, secret).await, Err(VaultError::InvalidConnection(_))));
}
