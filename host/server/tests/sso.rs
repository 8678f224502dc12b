//! Single sign-on end to end against a real, certified OpenID provider (`../shared/ciba-op`
//! with `LOGIN=1`): the browser is driven through the provider's own login and consent forms,
//! and comes back signed in to Airlock as the member the provider names, with the roles the
//! tenant's tuples give. A replayed or forged callback is refused.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use support::op::{start_op, through_the_provider};
use support::{Browser, TestHost};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_through_the_tenants_provider() {
    let t = TestHost::start().await;
    let redirect = format!("{}/signin/sso/callback", t.url);
    let clients = json!([{
        "client_id": "airlock-web", "client_secret": "web-secret",
        "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
        "redirect_uris": [redirect], "token_endpoint_auth_method": "client_secret_basic",
    }]);
    let Some(op) = start_op(clients, true).await else { return };

    // Before any provider is set, SSO says what to do.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let none = http.get(format!("{}/signin/sso?tenant=default", t.url)).send().await.unwrap();
    assert_eq!(none.status().as_u16(), 404);
    assert!(none.text().await.unwrap().contains("airlock tenant sso set"));

    // The admin sets the provider with the CLI (the secret from the environment).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["tenant", "sso", "set", "--issuer", &op.base, "--client-id", "airlock-web", "--server", &t.url])
        .env("AIRLOCK_TOKEN", &t.admin)
        .env("AIRLOCK_SECRET", "web-secret")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["redirect_uri"], redirect.as_str(), "{shown}");
    let (_, read) = t.admin_get("/v1/sso").await;
    assert!(!read.to_string().contains("web-secret"), "the client secret is write-only: {read}");
    // A provider whose discovery names another issuer is refused.
    let (status, body) = t
        .request(
            Method::PUT,
            "/v1/sso",
            &t.admin,
            Some(json!({ "issuer": format!("{}/", op.base), "client_id": "x", "client_secret": "y" })),
        )
        .await;
    assert_eq!(status, 502, "{body}");
    t.grant(&[("user:carol", "cfo", "tenant:default")]).await;

    // Carol signs in at the provider; Airlock's callback starts her session.
    let start = http.get(format!("{}/signin/sso?tenant=default", t.url)).send().await.unwrap();
    assert_eq!(start.status().as_u16(), 303);
    let authorize = start.headers()["location"].to_str().unwrap().to_string();
    assert!(authorize.starts_with(&op.base), "{authorize}");
    for param in ["code_challenge_method=S256", "state=", "nonce=", "response_type=code", "client_id=airlock-web"] {
        assert!(authorize.contains(param), "{param} in {authorize}");
    }
    let back = through_the_provider(&authorize, &op.base, &redirect, "carol").await;
    assert!(back.contains("code=") && back.contains("state="), "{back}");
    let at_airlock = back;
    let done = http.get(&at_airlock).send().await.unwrap();
    assert_eq!(done.status().as_u16(), 303, "{}", done.text().await.unwrap());
    assert_eq!(done.headers()["location"], "/console");
    let set_cookie = done.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let session: Value =
        http.get(format!("{}/v1/session", t.url)).header("cookie", &cookie).send().await.unwrap().json().await.unwrap();
    let browser = Browser::with_cookie(&t.url, &cookie, session["csrf"].as_str().unwrap());
    let (status, me) = browser.send(Method::GET, "/v1/me", None, false).await;
    assert_eq!((status, me["subject"].as_str(), &me["roles"]), (200, Some("user:carol"), &json!(["cfo"])), "{me}");

    // The same callback again (a replayed code and state): refused, no session.
    let replay = http.get(&at_airlock).send().await.unwrap();
    assert_eq!(replay.status().as_u16(), 401);
    assert!(replay.headers().get("set-cookie").is_none());
    // A state this host never issued: refused.
    let forged = at_airlock.replace("state=", "state=x");
    assert_eq!(http.get(&forged).send().await.unwrap().status().as_u16(), 401);
    // The provider's refusal is said.
    let denied = http
        .get(format!("{}/signin/sso/callback?error=access_denied&error_description=nope", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status().as_u16(), 401);

    t.host.flush().await;
    let events = t.audit().await;
    assert!(events.iter().any(|e| e["kind"] == "session.start" && e["detail"]["via"] == "sso"), "audited");
    assert!(events.iter().any(|e| e["kind"] == "sso.put"), "audited");
}
