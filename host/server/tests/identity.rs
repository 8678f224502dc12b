//! Agent identity over HTTP: client credentials, JWTs on the tool API, every bad token refused
//! with 401 and audited, RFC 8693 delegation with the chain in the audit, and Auth0 Token
//! Vault's federated-connection exchange.

mod support;

use base64::Engine as _;
use serde_json::{json, Value};
use support::TestHost;

async fn form(t: &TestHost, fields: &[(&str, &str)]) -> (u16, Value, reqwest::header::HeaderMap) {
    let resp = reqwest::Client::new().post(format!("{}/oauth/token", t.url)).form(fields).send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.json().await.unwrap(), headers)
}

async fn agent_jwt(t: &TestHost, name: &str, secret: &str) -> String {
    let (status, body, headers) =
        form(t, &[("grant_type", "client_credentials"), ("client_id", name), ("client_secret", secret)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["token_type"], "Bearer");
    body["access_token"].as_str().unwrap().to_string()
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_jwts_work_and_every_bad_token_is_refused_and_audited() {
    let t = TestHost::start().await;
    let secret = t.agent("greeter").await;
    t.grant(&[("agent:greeter", "can_use", "tool:hello.greet")]).await;

    let jwt = agent_jwt(&t, "greeter", &secret).await;
    let claims = claims_of(&jwt);
    assert_eq!((claims["sub"].as_str(), claims["tenant"].as_str()), (Some("agent:greeter"), Some("default")));
    let (status, body) = t.call(&jwt, "hello.greet", json!({ "name": "Ada" })).await;
    assert_eq!(status, 200, "{body}");

    // The JWKS names the signing key.
    let (status, jwks) = t.request(reqwest::Method::GET, "/.well-known/jwks.json", "", None).await;
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(jwt.split('.').next().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == header["kid"]), "{jwks}");

    // Wrong secret, or another agent's name with this secret: invalid_client.
    let (status, body, _) =
        form(&t, &[("grant_type", "client_credentials"), ("client_id", "greeter"), ("client_secret", "nope")]).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
    let (status, _, _) =
        form(&t, &[("grant_type", "client_credentials"), ("client_id", "other"), ("client_secret", &secret)]).await;
    assert_eq!(status, 401);
    let (status, body, _) = form(&t, &[("grant_type", "password")]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("unsupported_grant_type")));

    // Bad tokens: each refused with 401, and each refusal audited with its reason.
    let issuer = t.host.identity.issuer().to_string();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let base = json!({ "iss": issuer, "aud": issuer, "sub": "agent:greeter", "tenant": "default",
                       "agent": "greeter", "jti": "j1", "iat": now, "nbf": now, "exp": now + 300 });
    let signed = |changes: Value| {
        let mut c = base.clone();
        for (k, v) in changes.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let alg_none = format!("{}.{}.", b64(&json!({ "alg": "none", "typ": "JWT" })), b64(&base));
    let expired = t
        .host
        .identity
        .sign_claims_for_tests(&signed(json!({ "exp": now - 600, "iat": now - 900, "nbf": now - 900 })))
        .await
        .unwrap();
    let wrong_aud =
        t.host.identity.sign_claims_for_tests(&signed(json!({ "aud": "https://elsewhere.example" }))).await.unwrap();
    let wrong_iss =
        t.host.identity.sign_claims_for_tests(&signed(json!({ "iss": "https://evil.example" }))).await.unwrap();
    let mut bad_sig = jwt.clone().into_bytes();
    let last = bad_sig.len() - 3;
    bad_sig[last] = if bad_sig[last] == b'A' { b'B' } else { b'A' };
    let bad_sig = String::from_utf8(bad_sig).unwrap();
    let cases = [
        ("alg none", alg_none, "none"),
        ("expired", expired, "expired"),
        ("wrong audience", wrong_aud, "audience"),
        ("wrong issuer", wrong_iss, "issuer"),
        ("bad signature", bad_sig, "signature"),
    ];
    for (what, token, reason) in &cases {
        let (status, body) = t.call(token, "hello.greet", json!({ "name": "Ada" })).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(body["message"].as_str().unwrap().to_lowercase().contains(reason), "{what}: {body}");
    }
    // A revoked agent's still-unexpired token is refused from that moment.
    let (status, _) = t.request(reqwest::Method::DELETE, "/v1/agents/greeter", &t.admin, None).await;
    assert_eq!(status, 200);
    let (status, body) = t.call(&jwt, "hello.greet", json!({ "name": "Ada" })).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["message"].as_str().unwrap().contains("revoked"), "{body}");
    // Re-creating the name does not revive the old incarnation's tokens, even within the
    // same second (tokens carry their issue time to the millisecond).
    let _new_secret = t.agent("greeter").await;
    let (status, body) = t.call(&jwt, "hello.greet", json!({ "name": "Ada" })).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["message"].as_str().unwrap().contains("predates"), "{body}");

    let events = t.audit().await;
    let refusals: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "auth" && e["outcome"] == "denied")
        .map(|e| e["detail"]["reason"].as_str().unwrap())
        .collect();
    assert_eq!(refusals.len(), cases.len() + 2, "{refusals:?}");
    for ((what, _, reason), logged) in cases.iter().zip(&refusals) {
        assert!(logged.to_lowercase().contains(reason), "{what}: {logged}");
    }
    assert!(refusals[cases.len()].contains("revoked"));
}

/// Revoking an agent and re-creating its name within the same second as a token was minted
/// does not revive the token, by construction: the token is minted at the start of a second
/// and the agent re-created before that second ends (checked, and tried again if the machine
/// was too slow), where a whole-second `iat` cannot tell the two apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_minted_in_the_second_its_agent_is_re_created_stays_dead() {
    let t = TestHost::start().await;
    let mut secret = t.agent("greeter").await;
    t.grant(&[("agent:greeter", "can_use", "tool:hello.greet")]).await;
    let now_ms = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    for attempt in 1..=5 {
        tokio::time::sleep(std::time::Duration::from_millis(1000 - now_ms() % 1000 + 5)).await;
        let jwt = agent_jwt(&t, "greeter", &secret).await;
        let (status, _) = t.request(reqwest::Method::DELETE, "/v1/agents/greeter", &t.admin, None).await;
        assert_eq!(status, 200);
        secret = t.agent("greeter").await;
        let (_, agents) = t.admin_get("/v1/agents").await;
        let created = agents["agents"].as_array().unwrap().iter().find(|a| a["name"] == "greeter").unwrap()
            ["created_at"]
            .as_i64()
            .unwrap();
        let iat = claims_of(&jwt)["iat"].as_i64().unwrap();
        if created / 1000 != iat {
            eprintln!("attempt {attempt}: the re-creation fell in the next second; again");
            continue;
        }
        let (status, body) = t.call(&jwt, "hello.greet", json!({ "name": "Ada" })).await;
        assert_eq!(status, 401, "a token of the revoked incarnation, same second: {body}");
        assert!(body["message"].as_str().unwrap().contains("predates"), "{body}");
        return;
    }
    panic!("could not mint and re-create within one second in 5 attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_delegates_to_an_agent_and_the_chain_reaches_the_gate_and_the_audit() {
    let t = TestHost::start().await;
    let secret = t.agent("assistant").await;
    let helper_secret = t.agent("helper").await;
    t.grant(&[("agent:assistant", "can_use", "tool:hello.greet"), ("agent:helper", "can_use", "tool:hello.greet")])
        .await;
    let issuer = t.host.identity.issuer().to_string();
    let alice = t.host.identity.issue_user_token("default", "alice", &issuer, None).await.unwrap().access_token;
    let agent = agent_jwt(&t, "assistant", &secret).await;

    let exchange = |subject: String, actor: String| {
        let t = &t;
        async move {
            form(
                t,
                &[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
                    ("subject_token", &subject),
                    ("subject_token_type", "urn:ietf:params:oauth:token-type:access_token"),
                    ("actor_token", &actor),
                    ("actor_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                ],
            )
            .await
        }
    };
    let (status, body, _) = exchange(alice.clone(), agent.clone()).await;
    assert_eq!(status, 200, "{body}");
    let delegated = body["access_token"].as_str().unwrap().to_string();
    let claims = claims_of(&delegated);
    assert_eq!(claims["sub"], "user:alice");
    assert_eq!(claims["act"], json!({ "sub": "agent:assistant" }));

    // The user is not allowed the tool: a delegated call cannot do more than the user may.
    let (status, body) = t.call(&delegated, "hello.greet", json!({ "name": "Ada" })).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("for user:alice"), "{body}");
    t.grant(&[("user:alice", "can_use", "tool:hello.greet")]).await;
    let (status, body) = t.call(&delegated, "hello.greet", json!({ "name": "Ada" })).await;
    assert_eq!(status, 200, "{body}");

    // A second hop nests the chain; the audit shows all of it.
    let helper = agent_jwt(&t, "helper", &helper_secret).await;
    let (status, body, _) = exchange(delegated.clone(), helper).await;
    assert_eq!(status, 200, "{body}");
    let nested = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(claims_of(&nested)["act"], json!({ "sub": "agent:helper", "act": { "sub": "agent:assistant" } }));
    let (status, body) = t.call(&nested, "hello.greet", json!({ "name": "Ada" })).await;
    assert_eq!(status, 200, "{body}");

    let events = t.audit().await;
    let chains: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "tool.call" && e["outcome"] == "allowed")
        .map(|e| &e["detail"]["chain"])
        .collect();
    assert_eq!(chains[0], &json!(["user:alice", "agent:assistant", "tool:hello.greet"]));
    assert_eq!(chains[1], &json!(["user:alice", "agent:assistant", "agent:helper", "tool:hello.greet"]));

    // Revoking the first agent ends the nested token too, though the helper acts.
    let (status, _) = t.request(reqwest::Method::DELETE, "/v1/agents/assistant", &t.admin, None).await;
    assert_eq!(status, 200);
    let (status, body) = t.call(&nested, "hello.greet", json!({ "name": "Ada" })).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["message"].as_str().unwrap().contains("assistant"), "{body}");
    let _ = t.agent("assistant").await;

    // An agent token as the subject (not a user's) is refused.
    let (status, body, _) = exchange(agent.clone(), agent.clone()).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_vault_exchange_hands_out_an_exposing_connections_token_to_an_allowed_agent() {
    use axum::routing::post;
    let t = TestHost::start().await;
    let secret = t.agent("reviewer").await;
    let provider = {
        let app = axum::Router::new().route(
            "/oauth/token",
            post(|| async { axum::Json(json!({ "access_token": "ghu_exchanged", "expires_in": 600 })) }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    };
    let conn = |expose: bool| {
        json!({ "kind": "oauth2_refresh", "allowed_hosts": ["api.github.com"], "expose_token": expose,
                "oauth": { "token_url": format!("http://{provider}/oauth/token"), "client_id": "Iv1.airlock" },
                "secret": json!({ "refresh_token": "rt", "client_secret": "cs" }).to_string() })
    };
    let put = |body: Value| t.request(reqwest::Method::PUT, "/v1/connections/github", &t.admin, Some(body));
    assert_eq!(put(conn(true)).await.0, 200);
    let jwt = agent_jwt(&t, "reviewer", &secret).await;
    let fields = [
        ("grant_type", "urn:auth0:params:oauth:grant-type:token-exchange:federated-connection-access-token"),
        ("subject_token", jwt.as_str()),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:access_token"),
        ("connection", "github"),
        ("requested_token_type", "http://auth0.com/oauth/token-type/federated-connection-access-token"),
    ];
    let ask = || form(&t, &fields);
    let (status, body, _) = ask().await;
    assert_eq!((status, body["error"].as_str()), (403, Some("access_denied")), "no can_use yet: {body}");
    t.grant(&[("agent:reviewer", "can_use", "connection:github")]).await;
    let (status, body, _) = ask().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["access_token"], "ghu_exchanged");
    assert_eq!(body["issued_token_type"], "http://auth0.com/oauth/token-type/federated-connection-access-token");
    assert!((590..=600).contains(&body["expires_in"].as_u64().unwrap()));

    assert_eq!(put(conn(false)).await.0, 200);
    let (status, body, _) = ask().await;
    assert_eq!(status, 403, "not exposable any more: {body}");
    assert!(body["error_description"].as_str().unwrap().contains("expose_token"), "{body}");

    let events = t.audit().await;
    let outcomes: Vec<&str> =
        events.iter().filter(|e| e["kind"] == "vault.token").map(|e| e["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["denied", "allowed", "denied"]);
    assert!(!serde_json::to_string(&events).unwrap().contains("ghu_exchanged"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_issuers_token_acts_as_the_mapped_agent_and_nothing_else() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../identity/tests/fixtures");
    let mut jwk: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{fixtures}/rsa1.jwk.json")).unwrap()).unwrap();
    jwk["kid"] = json!("auth0-key-1");
    jwk["alg"] = json!("RS256");
    let jwks = json!({ "keys": [jwk] });
    let app = axum::Router::new()
        .route("/.well-known/jwks.json", axum::routing::get(move || async move { axum::Json(jwks) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let t = TestHost::start().await;
    let _ = t.agent("crm-bot").await;
    t.grant(&[("agent:crm-bot", "can_use", "tool:hello.greet")]).await;
    let issuer = "https://acme.eu.auth0.test/";
    let body = json!({ "issuer": issuer, "audience": "https://airlock.acme.test",
                       "jwks_url": format!("http://{jwks_addr}/.well-known/jwks.json") });
    let (status, resp) = t.request(reqwest::Method::PUT, "/v1/identity/issuers", &t.admin, Some(body)).await;
    assert_eq!(status, 200, "{resp}");
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(format!("{fixtures}/rsa1.pem")).unwrap()).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let sign = |sub: &str| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some("auth0-key-1".into());
        let claims = json!({ "iss": issuer, "aud": "https://airlock.acme.test", "sub": sub, "iat": now,
                             "exp": now + 300, "gty": "client-credentials" });
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    let m2m = sign("k3Xq9@clients");

    // Unmapped: refused. Mapped to an installed agent: it acts as that agent.
    let (status, body) = t.call(&m2m, "hello.greet", json!({ "name": "Ada" })).await;
    assert_eq!(status, 401, "{body}");
    let map = json!({ "issuer": issuer, "subject": "k3Xq9@clients", "agent": "crm-bot" });
    let (status, body) = t.request(reqwest::Method::PUT, "/v1/identity/subjects", &t.admin, Some(map)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = t.call(&m2m, "hello.greet", json!({ "name": "Ada" })).await;
    assert_eq!(status, 200, "{body}");
    // Mapping to an agent that does not exist is refused.
    let bad = json!({ "issuer": issuer, "subject": "other@clients", "agent": "ghost" });
    assert_eq!(t.request(reqwest::Method::PUT, "/v1/identity/subjects", &t.admin, Some(bad)).await.0, 404);

    // Revoking the agent refuses the external token too; so does deleting the issuer.
    let (status, _) = t.request(reqwest::Method::DELETE, "/v1/agents/crm-bot", &t.admin, None).await;
    assert_eq!(status, 200);
    assert_eq!(t.call(&m2m, "hello.greet", json!({})).await.0, 401);
    let path = format!("/v1/identity/issuers?issuer={}", url_encode(issuer));
    assert_eq!(t.request(reqwest::Method::DELETE, &path, &t.admin, None).await.0, 200);

    // Key rotation: tokens signed before it keep working.
    let secret = t.agent("after").await;
    t.grant(&[("agent:after", "can_use", "tool:hello.greet")]).await;
    let before = agent_jwt(&t, "after", &secret).await;
    let (status, body) =
        t.request(reqwest::Method::POST, "/v1/identity/rotate-key", &t.operator, Some(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(t.call(&before, "hello.greet", json!({ "name": "x" })).await.0, 200);
    let after = agent_jwt(&t, "after", &secret).await;
    assert_ne!(before.split('.').next(), after.split('.').next(), "a new kid signs new tokens");
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
