//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use airlock_identity::Identity;
use airlock_store::Db;
use airlock_vault::MasterKey;
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

pub const ISSUER: &str = "https://airlock.test";
pub const AUD: &str = "airlock-api";

pub fn master() -> Arc<MasterKey> {
    Arc::new(MasterKey::from_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap())
}

pub async fn open(db: &Db) -> Identity {
    Identity::open(db.clone(), master(), ISSUER.to_string()).await.unwrap()
}

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The decoded payload of a JWT, without verifying it (to look at claim shapes).
pub fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// The decoded header of a JWT.
pub fn header(token: &str) -> Value {
    let part = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

pub fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// Claims of a valid agent token of this host, for tests that change one thing.
pub fn agent_claims(tenant: &str, agent: &str) -> Value {
    let now = now();
    json!({
        "iss": ISSUER, "sub": format!("agent:{agent}"), "aud": AUD, "iat": now, "nbf": now, "exp": now + 300,
        "jti": "test-jti", "tenant": tenant, "agent": agent,
    })
}

/// A JWKS endpoint on loopback whose document the test can change, counting the fetches.
pub struct JwksServer {
    pub addr: SocketAddr,
    pub doc: Arc<parking_lot::Mutex<Value>>,
    pub hits: Arc<AtomicUsize>,
}

impl JwksServer {
    pub async fn start(keys: Vec<Value>) -> JwksServer {
        let doc = Arc::new(parking_lot::Mutex::new(json!({ "keys": keys })));
        let hits = Arc::new(AtomicUsize::new(0));
        let (d, h) = (doc.clone(), hits.clone());
        let app = Router::new().route(
            "/.well-known/jwks.json",
            get(move || {
                let (d, h) = (d.clone(), h.clone());
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    axum::Json(d.lock().clone())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        JwksServer { addr, doc, hits }
    }

    pub fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn set_keys(&self, keys: Vec<Value>) {
        *self.doc.lock() = json!({ "keys": keys });
    }
}

/// A public JWK fixture (generated once with openssl, converted by PyJWT).
pub fn jwk(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}.jwk.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The private PEM fixture matching [`jwk`].
pub fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{name}.pem", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Signs `claims` with a fixture key through jsonwebtoken's encoder (independent of the crate's signer).
pub fn sign_external(name: &str, alg: jsonwebtoken::Algorithm, kid: &str, claims: &Value) -> String {
    let key = match alg {
        jsonwebtoken::Algorithm::RS256 => jsonwebtoken::EncodingKey::from_rsa_pem(&pem(name)).unwrap(),
        jsonwebtoken::Algorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(&pem(name)).unwrap(),
        other => panic!("no fixture for {other:?}"),
    };
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}
