//! Connect for OAuth2 connections end to end against a real, certified OpenID provider
//! (`../shared/ciba-op` with `LOGIN=1`): an admin stores an `oauth2_refresh` connection with
//! only its client secret, presses Connect (here from a signed-in browser session), signs in
//! and consents at the provider's own forms, and the callback leaves the vault holding a
//! refresh token; the host's ordinary refresh path then gets access tokens the provider's
//! userinfo endpoint accepts. A replayed, forged or expired state, or the provider's refusal,
//! stores nothing; a member who is not an admin cannot start Connect.

mod support;

use std::time::Duration;

use airlock_store::sqlx;
use airlock_vault::{FetchLimits, MasterKey, Vault};
use reqwest::Method;
use serde_json::{json, Value};
use support::op::{start_op, through_the_provider};
use support::TestHost;

/// The metadata of connection `name` as `GET /v1/connections` lists it.
async fn listed(t: &TestHost, name: &str) -> Value {
    let (status, body) = t.admin_get("/v1/connections").await;
    assert_eq!(status, 200, "{body}");
    body["connections"].as_array().unwrap().iter().find(|c| c["name"] == name).cloned().unwrap_or(Value::Null)
}

/// The sealed secret of connection `name` as stored.
async fn sealed(t: &TestHost, name: &str) -> Vec<u8> {
    let (sealed,): (Vec<u8>,) =
        sqlx::query_as("SELECT sealed_secret FROM connections WHERE tenant = 'default' AND name = $1")
            .bind(name)
            .fetch_one(t.host.db.pool())
            .await
            .unwrap();
    sealed
}

/// The `state` parameter of an authorization URL.
fn state_of(authorize_url: &str) -> String {
    let url = url::Url::parse(authorize_url).unwrap();
    let state = url.query_pairs().find(|(k, _)| k == "state").map(|(_, v)| v.into_owned());
    state.expect("a state in the authorization URL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_connects_an_oauth2_connection_through_the_provider() {
    let t = TestHost::start().await;
    let redirect = format!("{}/oauth/connect/callback", t.url);
    // The vault's token requests authenticate the client in the form (client_secret_post).
    let clients = json!([{
        "client_id": "airlock-connect", "client_secret": "connect-secret",
        "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
        "redirect_uris": [redirect], "token_endpoint_auth_method": "client_secret_post",
    }]);
    let Some(op) = start_op(clients, true).await else { return };
    let discovery: Value =
        reqwest::get(format!("{}/.well-known/openid-configuration", op.base)).await.unwrap().json().await.unwrap();
    let endpoint = |name: &str| discovery[name].as_str().unwrap().to_string();
    let op_host = op.base.trim_start_matches("http://").to_string();
    let oauth = json!({
        "token_url": endpoint("token_endpoint"), "client_id": "airlock-connect",
        "scope": "openid offline_access", "authorize_url": endpoint("authorization_endpoint"),
    });

    // Only the client secret: the connection waits for Connect.
    let secret = json!({ "client_secret": "connect-secret" }).to_string();
    let put = |agent: Option<&str>| {
        json!({ "kind": "oauth2_refresh", "allowed_hosts": [op_host], "base_url": op.base, "oauth": oauth, "allow_private_network": true,
                "expose_token": true, "secret": secret, "agent": agent })
    };
    let (status, body) = t.request(Method::PUT, "/v1/connections/idp", &t.admin, Some(put(None))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(listed(&t, "idp").await["state"], "needs_connect");
    let (status, body) = t.request(Method::PUT, "/v1/connections/idp", &t.admin, Some(put(Some("crm")))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(listed(&t, "crm/idp").await["state"], "needs_connect");
    let not_yet = t.host.vault.token("default", "idp").await.unwrap_err();
    assert!(not_yet.to_string().contains("not connected yet"), "{not_yet}");
    // Without an authorization URL, a refresh token is still required.
    let mut bare = put(None);
    bare["oauth"].as_object_mut().unwrap().remove("authorize_url");
    let (status, body) = t.request(Method::PUT, "/v1/connections/bare", &t.admin, Some(bare)).await;
    assert_eq!(status, 400, "{body}");

    // A member who is not an admin cannot start Connect.
    let bob = t.member_token("user:bob").await;
    let (status, body) = t.request(Method::POST, "/v1/connections/idp/connect", &bob, None).await;
    assert_eq!(status, 403, "{body}");

    // Ada, an admin signed in with her passkey, presses Connect (her session and CSRF token).
    let (status, inv) = t.admin_post("/v1/invitations", json!({ "member": "user:ada", "role": "admin" })).await;
    assert_eq!(status, 201, "{inv}");
    let ada = t.register_from(inv["invitation"]["code"].as_str().unwrap(), "default", "user:ada").await;
    let (status, _) = ada.send(Method::POST, "/v1/connections/idp/connect", None, false).await;
    assert_eq!(status, 403, "no CSRF token, no Connect");
    let (status, started) = ada.send(Method::POST, "/v1/connections/idp/connect", None, true).await;
    assert_eq!(status, 200, "{started}");
    let authorize = started["authorize_url"].as_str().unwrap().to_string();
    assert!(authorize.starts_with(&endpoint("authorization_endpoint")), "{authorize}");
    let redirect_param =
        format!("redirect_uri={}", url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>());
    for param in [
        "response_type=code",
        "client_id=airlock-connect",
        redirect_param.as_str(),
        "scope=openid+offline_access",
        "prompt=consent",
        "state=",
        "code_challenge=",
        "code_challenge_method=S256",
    ] {
        assert!(authorize.contains(param), "{param} in {authorize}");
    }

    // Dora signs in at the provider and consents; its callback connects the connection.
    let back = through_the_provider(&authorize, &op.base, &redirect, "dora").await;
    assert!(back.contains("code=") && back.contains("state="), "{back}");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let done = http.get(&back).send().await.unwrap();
    assert_eq!(done.status().as_u16(), 303, "{}", done.text().await.unwrap());
    assert_eq!(done.headers()["location"], "/console/connections#connected=idp");
    let meta = listed(&t, "idp").await;
    assert_eq!(meta["state"], "connected", "{meta}");
    assert!(!meta.to_string().contains("refresh_token"), "metadata only: {meta}");

    // The same callback again (a replayed state and code): refused, nothing changes.
    let before = sealed(&t, "idp").await;
    let replay = http.get(&back).send().await.unwrap();
    assert_eq!(replay.status().as_u16(), 400);
    let said: Value = replay.json().await.unwrap();
    assert_eq!(said["code"], "invalid_state", "{said}");
    // A state this host never issued: refused.
    let forged = back.replace("state=", "state=x");
    assert_eq!(http.get(&forged).send().await.unwrap().status().as_u16(), 400);
    // An expired one: refused too.
    let (_, again) = ada.send(Method::POST, "/v1/connections/idp/connect", None, true).await;
    sqlx::query("UPDATE authorization_flows SET expires_at = 0").execute(t.host.db.pool()).await.unwrap();
    let expired = format!("{redirect}?code=whatever&state={}", state_of(again["authorize_url"].as_str().unwrap()));
    assert_eq!(http.get(&expired).send().await.unwrap().status().as_u16(), 400);
    assert_eq!(sealed(&t, "idp").await, before, "nothing stored by a refused callback");

    // The host's own refresh path: a vault over the same database that refreshes at every use
    // trades the stored refresh token for a new access token, which the provider accepts as Dora's.
    let (first, _) = t.host.vault.token("default", "idp").await.unwrap();
    let limits = FetchLimits { refresh_margin: Duration::from_secs(365 * 86_400), ..FetchLimits::default() };
    let eager = Vault::open(t.host.db.clone(), MasterKey::load_or_create(&t.dir).unwrap(), limits).await.unwrap();
    let (refreshed, _) = eager.token("default", "idp").await.unwrap();
    assert_ne!(*first, *refreshed, "a new access token, from the refresh token");
    let me = http.get(endpoint("userinfo_endpoint")).bearer_auth(refreshed.as_str()).send().await.unwrap();
    assert_eq!(me.status().as_u16(), 200);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["sub"], "dora", "{me}");

    // The provider's refusal (an agent's connection this time): said, nothing stored, state spent.
    let (status, started) = t.request(Method::POST, "/v1/connections/idp/connect?agent=crm", &t.admin, None).await;
    assert_eq!(status, 200, "{started}");
    let state = state_of(started["authorize_url"].as_str().unwrap());
    let denied = http.get(format!("{redirect}?error=access_denied&state={state}")).send().await.unwrap();
    assert_eq!(denied.status().as_u16(), 303);
    assert_eq!(denied.headers()["location"], "/console/connections#refused=crm%2Fidp&error=access_denied");
    assert_eq!(listed(&t, "crm/idp").await["state"], "needs_connect");
    let late = http.get(format!("{redirect}?code=x&state={state}")).send().await.unwrap();
    assert_eq!(late.status().as_u16(), 400, "the refused flow's state is spent");
    assert_eq!(listed(&t, "crm/idp").await["state"], "needs_connect");
    // An admin who loses the role while at the provider: the callback stores nothing.
    let (status, started) = ada.send(Method::POST, "/v1/connections/idp/connect?agent=crm", None, true).await;
    assert_eq!(status, 200, "{started}");
    let demote = json!({ "deletes": [{ "user": "user:ada", "relation": "admin", "object": "tenant:default" }] });
    let (status, body) = t.admin_post("/v1/tuples", demote).await;
    assert_eq!(status, 200, "{body}");
    let back = through_the_provider(started["authorize_url"].as_str().unwrap(), &op.base, &redirect, "dora").await;
    let refused = http.get(&back).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 403, "{}", refused.text().await.unwrap());
    assert_eq!(listed(&t, "crm/idp").await["state"], "needs_connect");

    // Connect needs an oauth2_refresh connection with an authorization URL.
    let (api, _) = support::billing_api("s3cret").await;
    t.connection("static", api, "s3cret").await;
    let (status, body) = t.request(Method::POST, "/v1/connections/static/connect", &t.admin, None).await;
    assert_eq!(status, 400, "{body}");

    t.host.flush().await;
    let events = t.audit().await;
    let connected: Vec<&Value> = events.iter().filter(|e| e["kind"] == "connection.connected").collect();
    assert_eq!(connected.len(), 1, "{connected:?}");
    assert_eq!(
        (connected[0]["agent"].as_str(), &connected[0]["detail"]["connection"]),
        (Some("user:ada"), &json!("idp"))
    );
    assert!(events.iter().any(|e| e["kind"] == "connection.connect" && e["outcome"] == "refused"));
    let trail = serde_json::to_string(&events).unwrap();
    for secret in [first.as_str(), refreshed.as_str(), "connect-secret"] {
        assert!(!trail.contains(secret), "no token or secret in the audit trail");
    }
}
