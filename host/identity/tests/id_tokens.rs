//! ID tokens of a tenant's single sign-on provider: verified against the provider's JWKS
//! (served on loopback), issuer, audience, expiry, nonce and, for a step-up, `auth_time`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use airlock_identity::{ExternalIssuer, TokenError};
use airlock_store::testing;
use common::*;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

const ISS: &str = "https://login.acme.test";
const CLIENT: &str = "airlock-web";
const NONCE: &str = "n-0S6_WzA2Mj";

fn claims() -> Value {
    let now = now();
    json!({ "iss": ISS, "sub": "carol", "aud": CLIENT, "iat": now, "exp": now + 300, "nonce": NONCE,
            "auth_time": now - 5, "email": "carol@acme.test", "email_verified": true })
}

fn with(mut c: Value, key: &str, value: Value) -> Value {
    c[key] = value;
    c
}

#[tokio::test]
async fn an_id_token_is_checked_for_key_issuer_audience_expiry_and_nonce() {
    let t = testing::sqlite().await;
    let server = JwksServer::start(vec![jwk("rsa1")]).await;
    let id = open(&t.db).await;
    let provider = ExternalIssuer::new("acme", ISS, CLIENT, &server.url());
    let sign = |c: &Value| sign_external("rsa1", Algorithm::RS256, "test-rsa1", c);

    let ok = id.verify_id_token(&sign(&claims()), &provider, NONCE, None).await.unwrap();
    assert_eq!((ok.subject.as_str(), ok.email.as_deref(), ok.email_verified), ("carol", Some("carol@acme.test"), true));

    let refused = |c: Value| {
        let (id, provider) = (&id, &provider);
        async move { id.verify_id_token(&sign(&c), provider, NONCE, None).await.unwrap_err() }
    };
    assert!(matches!(refused(with(claims(), "nonce", json!("replayed"))).await, TokenError::WrongNonce));
    assert!(matches!(refused(with(claims(), "nonce", Value::Null)).await, TokenError::WrongNonce));
    assert!(matches!(refused(with(claims(), "aud", json!("another-client"))).await, TokenError::WrongAudience(_)));
    // Several audiences: `azp` must be this client.
    let shared = with(claims(), "aud", json!([CLIENT, "another-client"]));
    assert!(matches!(refused(shared.clone()).await, TokenError::WrongAudience(_)));
    assert!(id.verify_id_token(&sign(&with(shared, "azp", json!(CLIENT))), &provider, NONCE, None).await.is_ok());
    assert!(matches!(refused(with(claims(), "exp", json!(now() - 3600))).await, TokenError::Expired));
    assert!(matches!(refused(with(claims(), "iss", json!("https://evil.test"))).await, TokenError::WrongIssuer(_)));
    // A key the provider does not publish.
    let foreign = sign_external("rsa2", Algorithm::RS256, "test-rsa1", &claims());
    assert!(matches!(
        id.verify_id_token(&foreign, &provider, NONCE, None).await.unwrap_err(),
        TokenError::BadSignature
    ));
    // An unsigned token.
    let none = format!("{}.{}.", b64(&json!({ "alg": "none" })), b64(&claims()));
    assert!(matches!(id.verify_id_token(&none, &provider, NONCE, None).await.unwrap_err(), TokenError::AlgNone));

    // A step-up asks for an authentication after it started: an older `auth_time` is refused.
    let asked_at = now();
    let stale = with(claims(), "auth_time", json!(asked_at - 600));
    assert!(matches!(
        id.verify_id_token(&sign(&stale), &provider, NONCE, Some(asked_at)).await.unwrap_err(),
        TokenError::StaleAuthentication
    ));
    let fresh = with(claims(), "auth_time", json!(asked_at + 1));
    assert!(id.verify_id_token(&sign(&fresh), &provider, NONCE, Some(asked_at)).await.is_ok());
}
