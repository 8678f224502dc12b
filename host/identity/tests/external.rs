//! Tokens of external issuers (RS256, ES256) verified through a JWKS served on loopback, on both backends.

// Test helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use airlock_identity::{ExternalIssuer, IdentityError, TokenError};
use airlock_store::testing;
use common::*;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

const EXT_ISS: &str = "https://acme.eu.auth0.test/";
const EXT_AUD: &str = "https://airlock.test/api";

fn ext_claims(sub: &str) -> Value {
    let now = now();
    json!({ "iss": EXT_ISS, "sub": sub, "aud": [EXT_AUD, "https://acme.eu.auth0.test/userinfo"],
            "iat": now, "exp": now + 300, "azp": "m2m-client", "gty": "client-credentials" })
}

async fn configure(id: &airlock_identity::Identity, server: &JwksServer) {
    id.put_external_issuer(&ExternalIssuer::new("acme", EXT_ISS, EXT_AUD, &server.url())).await.unwrap();
    id.map_external_subject("acme", EXT_ISS, "m2m-client@clients", "crm-bot").await.unwrap();
    id.map_external_subject("acme", EXT_ISS, "ec-client@clients", "ec-bot").await.unwrap();
}

#[tokio::test]
async fn rs256_and_es256_tokens_map_to_agents() {
    for t in testing::all().await {
        let server = JwksServer::start(vec![jwk("rsa1"), jwk("ec1")]).await;
        let id = open(&t.db).await;
        configure(&id, &server).await;

        let rs = sign_external("rsa1", Algorithm::RS256, "test-rsa1", &ext_claims("m2m-client@clients"));
        let v = id.verify(&rs, AUD).await.unwrap();
        assert_eq!(v.tenant, "acme");
        assert_eq!(v.subject, "agent:crm-bot");
        assert_eq!(v.agent.as_deref(), Some("crm-bot"));
        assert_eq!(v.user, None);
        assert_eq!(v.issuer, EXT_ISS);
        assert_eq!(v.jti, None);

        let es = sign_external("ec1", Algorithm::ES256, "test-ec1", &ext_claims("ec-client@clients"));
        let v = id.verify(&es, AUD).await.unwrap();
        assert_eq!(v.agent.as_deref(), Some("ec-bot"));
        // The key set was fetched once and then served from the cache.
        assert_eq!(server.hits(), 1);
    }
}

#[tokio::test]
async fn unknown_kid_refetches_once_then_is_rate_limited() {
    for t in testing::all().await {
        let server = JwksServer::start(vec![jwk("rsa1")]).await;
        let id = open(&t.db).await;
        configure(&id, &server).await;
        let first = sign_external("rsa1", Algorithm::RS256, "test-rsa1", &ext_claims("m2m-client@clients"));
        assert!(id.verify(&first, AUD).await.is_ok());
        assert_eq!(server.hits(), 1);

        // The provider rotates: the new kid is not cached, so the set is fetched again, once.
        server.set_keys(vec![jwk("rsa1"), jwk("rsa2")]);
        let rotated = sign_external("rsa2", Algorithm::RS256, "test-rsa2", &ext_claims("m2m-client@clients"));
        assert_eq!(id.verify(&rotated, AUD).await.unwrap().agent.as_deref(), Some("crm-bot"));
        assert_eq!(server.hits(), 2);
        assert!(id.verify(&rotated, AUD).await.is_ok());
        assert_eq!(server.hits(), 2);

        // A made-up kid right after: refused without another fetch.
        let bogus = sign_external("rsa1", Algorithm::RS256, "made-up", &ext_claims("m2m-client@clients"));
        let err = id.verify(&bogus, AUD).await.unwrap_err();
        assert!(matches!(err, TokenError::UnknownKid(ref k) if k == "made-up"), "{err}");
        assert_eq!(server.hits(), 2);
    }
}

#[tokio::test]
async fn unmapped_subject_is_refused() {
    for t in testing::all().await {
        let server = JwksServer::start(vec![jwk("rsa1")]).await;
        let id = open(&t.db).await;
        configure(&id, &server).await;
        let token = sign_external("rsa1", Algorithm::RS256, "test-rsa1", &ext_claims("stranger@clients"));
        let err = id.verify(&token, AUD).await.unwrap_err();
        assert!(
            matches!(err, TokenError::UnmappedSubject { ref subject, .. } if subject == "stranger@clients"),
            "{err}"
        );
        assert!(err.to_string().contains("`stranger@clients`"), "{err}");

        // Unmapping a subject refuses its tokens from then on.
        let mapped = sign_external("rsa1", Algorithm::RS256, "test-rsa1", &ext_claims("m2m-client@clients"));
        assert!(id.verify(&mapped, AUD).await.is_ok());
        assert!(id.unmap_external_subject("acme", EXT_ISS, "m2m-client@clients").await.unwrap());
        assert!(matches!(id.verify(&mapped, AUD).await.unwrap_err(), TokenError::UnmappedSubject { .. }));
    }
}

#[tokio::test]
async fn external_refusals() {
    let t = testing::sqlite().await;
    let server = JwksServer::start(vec![jwk("rsa1"), jwk("ec1")]).await;
    let id = open(&t.db).await;
    configure(&id, &server).await;

    // Signed by a key the provider never published.
    let mut claims = ext_claims("m2m-client@clients");
    let wrong_key = sign_external("rsa2", Algorithm::RS256, "test-rsa1", &claims);
    assert!(matches!(id.verify(&wrong_key, AUD).await.unwrap_err(), TokenError::BadSignature));

    // The header claims RS256 for the EC key: the key decides the algorithm, not the header.
    let confused = sign_external("rsa1", Algorithm::RS256, "test-ec1", &claims);
    let err = id.verify(&confused, AUD).await.unwrap_err();
    assert!(matches!(err, TokenError::KeyAlgMismatch { .. }), "{err}");

    // Audience not configured for this issuer.
    claims["aud"] = json!("https://someone-else.test");
    let token = sign_external("rsa1", Algorithm::RS256, "test-rsa1", &claims);
    assert!(matches!(id.verify(&token, AUD).await.unwrap_err(), TokenError::WrongAudience(_)));

    // Expired.
    let mut claims = ext_claims("m2m-client@clients");
    claims["exp"] = json!(now() - 3600);
    let token = sign_external("rsa1", Algorithm::RS256, "test-rsa1", &claims);
    assert!(matches!(id.verify(&token, AUD).await.unwrap_err(), TokenError::Expired));

    // Not yet valid.
    let mut claims = ext_claims("m2m-client@clients");
    claims["nbf"] = json!(now() + 3600);
    let token = sign_external("rsa1", Algorithm::RS256, "test-rsa1", &claims);
    assert!(matches!(id.verify(&token, AUD).await.unwrap_err(), TokenError::NotYetValid));

    // An issuer nobody configured.
    let mut claims = ext_claims("m2m-client@clients");
    claims["iss"] = json!("https://unknown-idp.test/");
    let token = sign_external("rsa1", Algorithm::RS256, "test-rsa1", &claims);
    assert!(matches!(id.verify(&token, AUD).await.unwrap_err(), TokenError::WrongIssuer(_)));

    // An issuer whose key set cannot be fetched.
    id.put_external_issuer(&ExternalIssuer::new("acme", "https://down.test/", EXT_AUD, "http://127.0.0.1:9/jwks"))
        .await
        .unwrap();
    let mut claims = ext_claims("x");
    claims["iss"] = json!("https://down.test/");
    let token = sign_external("rsa1", Algorithm::RS256, "test-rsa1", &claims);
    assert!(matches!(id.verify(&token, AUD).await.unwrap_err(), TokenError::JwksUnavailable { .. }));
}

#[tokio::test]
async fn custom_subject_claim() {
    let t = testing::sqlite().await;
    let server = JwksServer::start(vec![jwk("ec1")]).await;
    let id = open(&t.db).await;
    let mut cfg = ExternalIssuer::new("acme", EXT_ISS, EXT_AUD, &server.url());
    cfg.subject_claim = "azp".into();
    id.put_external_issuer(&cfg).await.unwrap();
    id.map_external_subject("acme", EXT_ISS, "m2m-client", "crm-bot").await.unwrap();
    let token = sign_external("ec1", Algorithm::ES256, "test-ec1", &ext_claims("ignored@clients"));
    assert_eq!(id.verify(&token, AUD).await.unwrap().agent.as_deref(), Some("crm-bot"));
}

#[tokio::test]
async fn configuration_crud() {
    for t in testing::all().await {
        let id = open(&t.db).await;
        let cfg = ExternalIssuer::new("acme", EXT_ISS, EXT_AUD, "https://acme.eu.auth0.test/.well-known/jwks.json");
        id.put_external_issuer(&cfg).await.unwrap();
        assert_eq!(id.get_external_issuer("acme", EXT_ISS).await.unwrap(), Some(cfg.clone()));
        assert_eq!(id.list_external_issuers("acme").await.unwrap(), vec![cfg.clone()]);
        assert!(id.list_external_issuers("globex").await.unwrap().is_empty());

        // Updating replaces.
        let mut changed = cfg.clone();
        changed.subject_claim = "client_id".into();
        id.put_external_issuer(&changed).await.unwrap();
        assert_eq!(id.get_external_issuer("acme", EXT_ISS).await.unwrap(), Some(changed));

        // Another tenant cannot claim the same issuer and audience.
        let mut theirs = cfg.clone();
        theirs.tenant = "globex".into();
        let err = id.put_external_issuer(&theirs).await.unwrap_err();
        assert!(matches!(err, IdentityError::IssuerTaken { .. }), "{err}");

        // Bad configurations.
        let mut bad = cfg.clone();
        bad.jwks_url = "file:///etc/passwd".into();
        assert!(matches!(id.put_external_issuer(&bad).await.unwrap_err(), IdentityError::BadExternalIssuer(_)));
        let mut own = cfg.clone();
        own.issuer = ISSUER.into();
        assert!(matches!(id.put_external_issuer(&own).await.unwrap_err(), IdentityError::BadExternalIssuer(_)));

        // Mappings.
        let err = id.map_external_subject("acme", "https://nope.test/", "s", "a").await.unwrap_err();
        assert!(matches!(err, IdentityError::IssuerNotConfigured { .. }), "{err}");
        id.map_external_subject("acme", EXT_ISS, "client-b", "bot-b").await.unwrap();
        id.map_external_subject("acme", EXT_ISS, "client-a", "bot-a").await.unwrap();
        id.map_external_subject("acme", EXT_ISS, "client-a", "bot-a2").await.unwrap();
        let maps = id.list_external_subjects("acme", EXT_ISS).await.unwrap();
        let pairs: Vec<(&str, &str)> = maps.iter().map(|m| (m.external_subject.as_str(), m.agent.as_str())).collect();
        assert_eq!(pairs, vec![("client-a", "bot-a2"), ("client-b", "bot-b")]);
        assert!(id.unmap_external_subject("acme", EXT_ISS, "client-b").await.unwrap());
        assert!(!id.unmap_external_subject("acme", EXT_ISS, "client-b").await.unwrap());

        // Deleting the issuer deletes its mappings.
        assert!(id.delete_external_issuer("acme", EXT_ISS).await.unwrap());
        assert!(!id.delete_external_issuer("acme", EXT_ISS).await.unwrap());
        assert_eq!(id.get_external_issuer("acme", EXT_ISS).await.unwrap(), None);
        id.put_external_issuer(&cfg).await.unwrap();
        assert!(id.list_external_subjects("acme", EXT_ISS).await.unwrap().is_empty());
    }
}
