//! RFC 8693 token exchange: delegation from users to agents with a nested `act` chain.

// Test helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use airlock_identity::{ExchangeError, ExternalIssuer, TokenError, TOKEN_TYPE_ACCESS_TOKEN};
use airlock_store::testing;
use common::*;
use jsonwebtoken::Algorithm;
use serde_json::json;

#[tokio::test]
async fn exchange_produces_act_and_nests_on_the_second_hop() {
    for t in testing::all().await {
        let id = open(&t.db).await;
        let alice = id.issue_user_token("acme", "alice", AUD, None).await.unwrap().access_token;
        let agent_a = id.issue_agent_token("acme", "planner", AUD, None).await.unwrap().access_token;
        let agent_b = id.issue_agent_token("acme", "mailer", AUD, None).await.unwrap().access_token;

        let first = id.exchange(&alice, &agent_a, AUD, None).await.unwrap();
        assert_eq!(first.token_type, "Bearer");
        assert_eq!(first.issued_token_type.as_deref(), Some(TOKEN_TYPE_ACCESS_TOKEN));
        let claims = payload(&first.access_token);
        assert_eq!(claims["sub"], "user:alice");
        assert_eq!(claims["tenant"], "acme");
        assert_eq!(claims["act"], json!({"sub": "agent:planner"}));
        let v = id.verify(&first.access_token, AUD).await.unwrap();
        assert_eq!(v.subject, "user:alice");
        assert_eq!(v.user.as_deref(), Some("alice"));
        assert_eq!(v.agent.as_deref(), Some("planner"));
        assert_eq!(v.act, vec!["agent:planner"]);

        // The planner hands the delegated token on to the mailer.
        let second = id.exchange(&first.access_token, &agent_b, AUD, None).await.unwrap();
        let claims = payload(&second.access_token);
        assert_eq!(claims["sub"], "user:alice");
        assert_eq!(claims["act"], json!({"sub": "agent:mailer", "act": {"sub": "agent:planner"}}));
        let v = id.verify(&second.access_token, AUD).await.unwrap();
        assert_eq!(v.act, vec!["agent:mailer", "agent:planner"]);
        assert_eq!(v.agent.as_deref(), Some("mailer"));
        assert_eq!(v.user.as_deref(), Some("alice"));
    }
}

#[tokio::test]
async fn cross_tenant_exchange_is_refused() {
    for t in testing::all().await {
        let id = open(&t.db).await;
        let alice = id.issue_user_token("acme", "alice", AUD, None).await.unwrap().access_token;
        let foreign = id.issue_agent_token("globex", "planner", AUD, None).await.unwrap().access_token;
        let err = id.exchange(&alice, &foreign, AUD, None).await.unwrap_err();
        assert!(
            matches!(err, ExchangeError::CrossTenant { ref subject, ref actor } if subject == "acme" && actor == "globex"),
            "{err}"
        );
        assert!(err.to_string().contains("`acme`") && err.to_string().contains("`globex`"), "{err}");
    }
}

#[tokio::test]
async fn expired_inputs_are_refused() {
    let t = testing::sqlite().await;
    let id = open(&t.db).await;
    let agent = id.issue_agent_token("acme", "planner", AUD, None).await.unwrap().access_token;
    let alice = id.issue_user_token("acme", "alice", AUD, None).await.unwrap().access_token;
    let mut claims = payload(&alice);
    claims["exp"] = json!(now() - 600);
    let expired_user = id.sign_claims_for_tests(&claims).await.unwrap();
    let err = id.exchange(&expired_user, &agent, AUD, None).await.unwrap_err();
    assert!(matches!(err, ExchangeError::SubjectToken(TokenError::Expired)), "{err}");

    let mut claims = payload(&agent);
    claims["exp"] = json!(now() - 600);
    let expired_agent = id.sign_claims_for_tests(&claims).await.unwrap();
    let err = id.exchange(&alice, &expired_agent, AUD, None).await.unwrap_err();
    assert!(matches!(err, ExchangeError::ActorToken(TokenError::Expired)), "{err}");
}

#[tokio::test]
async fn the_result_never_outlives_its_inputs() {
    let t = testing::sqlite().await;
    let id = open(&t.db).await;
    let alice = id.issue_user_token("acme", "alice", AUD, Some(Duration::from_secs(120))).await.unwrap();
    let agent = id.issue_agent_token("acme", "planner", AUD, None).await.unwrap().access_token;
    let out = id.exchange(&alice.access_token, &agent, AUD, Some(Duration::from_secs(3600))).await.unwrap();
    assert!(out.expires_in <= 120, "{}", out.expires_in);
    assert!(
        payload(&out.access_token)["exp"].as_i64().unwrap() <= payload(&alice.access_token)["exp"].as_i64().unwrap()
    );

    // Nor the actor's own token.
    let alice = id.issue_user_token("acme", "alice", AUD, None).await.unwrap().access_token;
    let agent = id.issue_agent_token("acme", "planner", AUD, Some(Duration::from_secs(60))).await.unwrap();
    let out = id.exchange(&alice, &agent.access_token, AUD, None).await.unwrap();
    assert!(out.expires_in <= 60, "{}", out.expires_in);
}

#[tokio::test]
async fn who_may_be_subject_and_actor() {
    let t = testing::sqlite().await;
    let id = open(&t.db).await;
    let alice = id.issue_user_token("acme", "alice", AUD, None).await.unwrap().access_token;
    let bob = id.issue_user_token("acme", "bob", AUD, None).await.unwrap().access_token;
    let planner = id.issue_agent_token("acme", "planner", AUD, None).await.unwrap().access_token;
    let mailer = id.issue_agent_token("acme", "mailer", AUD, None).await.unwrap().access_token;

    // An agent token is not a user to delegate from.
    let err = id.exchange(&planner, &mailer, AUD, None).await.unwrap_err();
    assert!(matches!(err, ExchangeError::SubjectNotUser(ref s) if s == "agent:planner"), "{err}");
    // A user cannot be the actor.
    let err = id.exchange(&alice, &bob, AUD, None).await.unwrap_err();
    assert!(matches!(err, ExchangeError::ActorNotAgent(ref s) if s == "user:bob"), "{err}");
    // A delegated token cannot be the actor: the mailer would smuggle bob's delegation into alice's.
    let bob_via_mailer = id.exchange(&bob, &mailer, AUD, None).await.unwrap().access_token;
    let err = id.exchange(&alice, &bob_via_mailer, AUD, None).await.unwrap_err();
    assert!(matches!(err, ExchangeError::ActorDelegated(ref s) if s == "user:bob"), "{err}");
    // A token addressed to another service cannot be exchanged here.
    let elsewhere = id.issue_user_token("acme", "alice", "https://other.test", None).await.unwrap().access_token;
    let err = id.exchange(&elsewhere, &planner, AUD, None).await.unwrap_err();
    assert!(matches!(err, ExchangeError::SubjectToken(TokenError::WrongAudience(_))), "{err}");
    // A subject token addressed to the host itself (the token endpoint) is accepted for any target audience.
    let to_sts = id.issue_user_token("acme", "alice", ISSUER, None).await.unwrap().access_token;
    let agent_for_target = id.issue_agent_token("acme", "planner", "https://other.test", None).await.unwrap();
    let out = id.exchange(&to_sts, &agent_for_target.access_token, "https://other.test", None).await.unwrap();
    assert_eq!(payload(&out.access_token)["aud"], "https://other.test");
    // Tampered inputs.
    let err = id.exchange("not-a-token", &planner, AUD, None).await.unwrap_err();
    assert!(matches!(err, ExchangeError::SubjectToken(TokenError::Malformed(_))), "{err}");
}

#[tokio::test]
async fn chains_are_bounded() {
    let t = testing::sqlite().await;
    let id = open(&t.db).await;
    let mut token = id.issue_user_token("acme", "alice", AUD, None).await.unwrap().access_token;
    let agent = id.issue_agent_token("acme", "relay", AUD, None).await.unwrap().access_token;
    for _ in 0..airlock_identity::MAX_CHAIN {
        token = id.exchange(&token, &agent, AUD, None).await.unwrap().access_token;
    }
    assert_eq!(id.verify(&token, AUD).await.unwrap().act.len(), airlock_identity::MAX_CHAIN);
    let err = id.exchange(&token, &agent, AUD, None).await.unwrap_err();
    assert!(matches!(err, ExchangeError::ChainTooLong(_)), "{err}");
}

#[tokio::test]
async fn external_user_token_as_subject() {
    for t in testing::all().await {
        let server = JwksServer::start(vec![jwk("rsa1")]).await;
        let id = open(&t.db).await;
        let ext_iss = "https://acme.eu.auth0.test/";
        id.put_external_issuer(&ExternalIssuer::new("acme", ext_iss, AUD, &server.url())).await.unwrap();
        let now = now();
        let user_claims = json!({"iss": ext_iss, "sub": "auth0|alice", "aud": AUD, "iat": now, "exp": now + 200});
        let user = sign_external("rsa1", Algorithm::RS256, "test-rsa1", &user_claims);
        // Not mapped, so not an agent: as a bearer token it is refused...
        assert!(matches!(id.verify(&user, AUD).await.unwrap_err(), TokenError::UnmappedSubject { .. }));
        // ...but as the subject of a delegation it stands for the user.
        let agent = id.issue_agent_token("acme", "planner", AUD, None).await.unwrap().access_token;
        let out = id.exchange(&user, &agent, AUD, None).await.unwrap();
        assert!(out.expires_in <= 200);
        let v = id.verify(&out.access_token, AUD).await.unwrap();
        assert_eq!(v.subject, "user:auth0|alice");
        assert_eq!(v.tenant, "acme");
        assert_eq!(v.issuer, ISSUER);
        assert_eq!(v.act, vec!["agent:planner"]);

        // A globex agent cannot act for acme's external user.
        let foreign = id.issue_agent_token("globex", "planner", AUD, None).await.unwrap().access_token;
        assert!(matches!(
            id.exchange(&user, &foreign, AUD, None).await.unwrap_err(),
            ExchangeError::CrossTenant { .. }
        ));
    }
}
