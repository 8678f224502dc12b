//! Issuing and verifying the host's own tokens, and every refusal, on both backends.

// Test helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use airlock_identity::{TokenError, DEFAULT_TTL, MAX_TTL};
use airlock_store::testing;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use serde_json::json;

#[tokio::test]
async fn agent_token_round_trip() {
    for t in testing::all().await {
        let id = open(&t.db).await;
        let issued = id.issue_agent_token("acme", "billing-bot", AUD, None).await.unwrap();
        assert_eq!(issued.token_type, "Bearer");
        assert_eq!(issued.expires_in, DEFAULT_TTL.as_secs());
        assert_eq!(header(&issued.access_token)["alg"], "EdDSA");
        assert_eq!(header(&issued.access_token)["kid"], id.active_kid());

        let v = id.verify(&issued.access_token, AUD).await.unwrap();
        assert_eq!(v.tenant, "acme");
        assert_eq!(v.subject, "agent:billing-bot");
        assert_eq!(v.agent.as_deref(), Some("billing-bot"));
        assert_eq!(v.user, None);
        assert!(v.act.is_empty());
        assert_eq!(v.issuer, ISSUER);
        let claims = payload(&issued.access_token);
        assert_eq!(v.jti.as_deref(), claims["jti"].as_str());
        assert_eq!(v.exp, claims["exp"].as_i64().unwrap());
        for claim in ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "tenant", "agent"] {
            assert!(claims.get(claim).is_some(), "claim `{claim}` missing from {claims}");
        }
        // Two tokens never share a jti.
        let again = id.issue_agent_token("acme", "billing-bot", AUD, None).await.unwrap();
        assert_ne!(payload(&again.access_token)["jti"], claims["jti"]);
    }
}

#[tokio::test]
async fn lifetime_is_defaulted_and_capped() {
    let t = testing::sqlite().await;
    let id = open(&t.db).await;
    let short = id.issue_agent_token("acme", "a", AUD, Some(Duration::from_secs(90))).await.unwrap();
    assert_eq!(short.expires_in, 90);
    let long = id.issue_agent_token("acme", "a", AUD, Some(Duration::from_secs(24 * 3600))).await.unwrap();
    assert_eq!(long.expires_in, MAX_TTL.as_secs());
    let c = payload(&long.access_token);
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), MAX_TTL.as_secs() as i64);
    assert!(id.issue_agent_token("acme", "a", AUD, Some(Duration::ZERO)).await.is_err());
    assert!(id.issue_agent_token("", "a", AUD, None).await.is_err());
    assert!(id.issue_agent_token("acme", "", AUD, None).await.is_err());
}

#[tokio::test]
async fn user_token_round_trip() {
    let t = testing::sqlite().await;
    let id = open(&t.db).await;
    let issued = id.issue_user_token("acme", "alice@acme.test", AUD, None).await.unwrap();
    let v = id.verify(&issued.access_token, AUD).await.unwrap();
    assert_eq!(v.subject, "user:alice@acme.test");
    assert_eq!(v.user.as_deref(), Some("alice@acme.test"));
    assert_eq!(v.agent, None);
}

#[tokio::test]
async fn refuses_alg_none() {
    let t = testing::sqlite().await;
    let id = open(&t.db).await;
    for alg in ["none", "None", "NONE"] {
        let token = format!("{}.{}.", b64(&json!({"alg": alg, "typ": "JWT"})), b64(&agent_claims("acme", "a")));
        let err = id.verify(&token, AUD).await.unwrap_err();
        assert!(matches!(err, TokenError::AlgNone), "{alg}: {err}");
        assert!(err.to_string().contains("`none`"), "{err}");
    }
}

#[tokio::test]
async fn refuses_unlisted_alg() {
    let t = testing::sqlite().await;
    let id = open(&t.db).await;
    // HS256 with the public key as the secret is the classic key-confusion attack.
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = Some(id.active_kid());
    let key = jsonwebtoken::EncodingKey::from_secret(b"anything");
    let token = jsonwebtoken::encode(&h, &agent_claims("acme", "a"), &key).unwrap();
    let err = id.verify(&token, AUD).await.unwrap_err();
    assert!(matches!(err, TokenError::UnsupportedAlg(ref a) if a == "HS256"), "{err}");
    assert!(err.to_string().contains("`HS256`"), "{err}");

    // RS256 is allowed for external issuers but never for this host's own tokens.
    let mut rs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    rs.kid = Some(id.active_kid());
    let token = jsonwebtoken::encode(
        &rs,
        &agent_claims("acme", "a"),
        &jsonwebtoken::EncodingKey::from_rsa_pem(&pem("rsa1")).unwrap(),
    )
    .unwrap();
    let err = id.verify(&token, AUD).await.unwrap_err();
    assert!(matches!(err, TokenError::UnsupportedAlg(_)), "{err}");
}

#[tokio::test]
async fn refuses_unknown_kid() {
    let t = testing::sqlite().await;
    let id = open(&t.db).await;
    let token = id.issue_agent_token("acme", "a", AUD, None).await.unwrap().access_token;
    let mut h = header(&token);
    h["kid"] = json!("no-such-key");
    let rest = token.split_once('.').unwrap().1;
    let forged = format!("{}.{rest}", b64(&h));
    let err = id.verify(&forged, AUD).await.unwrap_err();
    assert!(matches!(err, TokenError::UnknownKid(ref k) if k == "no-such-key"), "{err}");
    assert!(err.to_string().contains("`no-such-key`"), "{err}");
}

#[tokio::test]
async fn refuses_tampered_signature_and_payload() {
    let t = testing::sqlite().await;
    let id = open(&t.db).await;
    let token = id.issue_agent_token("acme", "a", AUD, None).await.unwrap().access_token;
    let (signed, sig) = token.rsplit_once('.').unwrap();
    let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
    raw[10] ^= 0x01;
    let tampered = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&raw));
    let err = id.verify(&tampered, AUD).await.unwrap_err();
    assert!(matches!(err, TokenError::BadSignature), "{err}");
    assert_eq!(err.to_string(), "token signature does not verify");

    // A changed claim under the original signature.
    let mut claims = payload(&token);
    claims["tenant"] = json!("other-tenant");
    let mut parts = token.split('.');
    let forged = format!("{}.{}.{}", parts.next().unwrap(), b64(&claims), {
        parts.next();
        parts.next().unwrap()
    });
    assert!(matches!(id.verify(&forged, AUD).await.unwrap_err(), TokenError::BadSignature));
}

#[tokio::test]
async fn refuses_expired_and_not_yet_valid() {
    let t = testing::sqlite().await;
    let id = open(&t.db).await;
    let mut claims = agent_claims("acme", "a");
    claims["iat"] = json!(now() - 600);
    claims["nbf"] = json!(now() - 600);
    claims["exp"] = json!(now() - 120);
    let expired = id.sign_claims_for_tests(&claims).await.unwrap();
    let err = id.verify(&expired, AUD).await.unwrap_err();
    assert!(matches!(err, TokenError::Expired), "{err}");
    assert!(err.to_string().contains("expired"), "{err}");

    // Within the leeway it still verifies (clock skew between hosts).
    claims["exp"] = json!(now() - 5);
    let barely = id.sign_claims_for_tests(&claims).await.unwrap();
    assert!(id.verify(&barely, AUD).await.is_ok());

    let mut claims = agent_claims("acme", "a");
    claims["nbf"] = json!(now() + 600);
    claims["exp"] = json!(now() + 900);
    let early = id.sign_claims_for_tests(&claims).await.unwrap();
    let err = id.verify(&early, AUD).await.unwrap_err();
    assert!(matches!(err, TokenError::NotYetValid), "{err}");
    assert!(err.to_string().contains("`nbf`"), "{err}");
}

#[tokio::test]
async fn refuses_wrong_issuer() {
    let t = testing::sqlite().await;
    let id = open(&t.db).await;
    let mut claims = agent_claims("acme", "a");
    claims["iss"] = json!("https://evil.example");
    let token = id.sign_claims_for_tests(&claims).await.unwrap();
    let err = id.verify(&token, AUD).await.unwrap_err();
    assert!(matches!(err, TokenError::WrongIssuer(ref i) if i == "https://evil.example"), "{err}");
    assert!(err.to_string().contains("`https://evil.example`"), "{err}");
}

#[tokio::test]
async fn refuses_wrong_audience() {
    let t = testing::sqlite().await;
    let id = open(&t.db).await;
    let token = id.issue_agent_token("acme", "a", "another-service", None).await.unwrap().access_token;
    let err = id.verify(&token, AUD).await.unwrap_err();
    assert!(matches!(err, TokenError::WrongAudience(ref a) if a == AUD), "{err}");
    assert!(err.to_string().contains(&format!("`{AUD}`")), "{err}");
    assert!(id.verify(&token, "another-service").await.is_ok());
}

#[tokio::test]
async fn refuses_missing_tenant() {
    let t = testing::sqlite().await;
    let id = open(&t.db).await;
    let mut claims = agent_claims("acme", "a");
    claims.as_object_mut().unwrap().remove("tenant");
    let token = id.sign_claims_for_tests(&claims).await.unwrap();
    let err = id.verify(&token, AUD).await.unwrap_err();
    assert!(matches!(err, TokenError::MissingTenant), "{err}");
    assert!(err.to_string().contains("`tenant`"), "{err}");
}

#[tokio::test]
async fn refuses_malformed() {
    let t = testing::sqlite().await;
    let id = open(&t.db).await;
    for junk in ["", "abc", "a.b", "a.b.c.d", "!!!.???.x", &format!("{}.{}.x", b64(&json!([1])), b64(&json!({})))] {
        let err = id.verify(junk, AUD).await.unwrap_err();
        assert!(matches!(err, TokenError::Malformed(_)), "`{junk}`: {err}");
        assert!(err.to_string().starts_with("malformed token"), "{err}");
    }
    // A subject that is neither an agent nor a user.
    let mut claims = agent_claims("acme", "a");
    claims["sub"] = json!("robot");
    let token = id.sign_claims_for_tests(&claims).await.unwrap();
    assert!(matches!(id.verify(&token, AUD).await.unwrap_err(), TokenError::Malformed(_)));
}
