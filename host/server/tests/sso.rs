//! Single sign-on end to end against a real, certified OpenID provider (`../shared/ciba-op`
//! with `LOGIN=1`): the browser is driven through the provider's own login and consent forms,
//! and comes back signed in to Airlock as the member the provider names, with the roles the
//! tenant's tuples give. A replayed or forged callback is refused.

mod support;

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{json, Value};
use support::op::start_op;
use support::{Browser, TestHost};

/// A browser's cookie jar, by name (the provider's cookies are all on its one host).
#[derive(Default)]
struct Jar(BTreeMap<String, String>);

impl Jar {
    fn keep(&mut self, resp: &reqwest::Response) {
        for v in resp.headers().get_all(reqwest::header::SET_COOKIE) {
            let pair = v.to_str().unwrap().split(';').next().unwrap();
            if let Some((k, v)) = pair.split_once('=') {
                self.0.insert(k.trim().to_string(), v.to_string());
            }
        }
    }

    fn header(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }
}

/// The `action` of the first form of an HTML page.
fn form_action(html: &str) -> Option<String> {
    let at = html.find("<form")?;
    let rest = &html[at..];
    let a = rest.find("action=\"")? + 8;
    Some(rest[a..a + rest[a..].find('"')?].replace("&amp;", "&"))
}

/// The named inputs of the first form, with their values (a hidden `prompt`, say).
fn form_fields(html: &str) -> Vec<(String, String)> {
    let form = &html[html.find("<form").unwrap_or(0)..];
    let form = &form[..form.find("</form>").unwrap_or(form.len())];
    let attr = |tag: &str, name: &str| {
        let at = tag.find(&format!("{name}=\""))? + name.len() + 2;
        Some(tag[at..at + tag[at..].find('"')?].to_string())
    };
    form.split("<input")
        .skip(1)
        .filter_map(|tag| {
            let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
            Some((attr(tag, "name")?, attr(tag, "value").unwrap_or_default()))
        })
        .collect()
}

/// Drives the provider from `start` (its authorization URL) as a person typing `login`:
/// follows redirects, fills the login form, presses the consent button, and returns the URL
/// the provider finally sends the browser to (Airlock's callback).
async fn through_the_provider(start: &str, op_base: &str, callback_prefix: &str, login: &str) -> String {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut jar = Jar::default();
    let mut next = (Method::GET, start.to_string(), None::<Vec<(String, String)>>);
    for _ in 0..20 {
        let (method, url, form) = next.clone();
        if url.starts_with(callback_prefix) {
            return url;
        }
        let mut req = http.request(method, &url).header(reqwest::header::COOKIE, jar.header());
        if let Some(f) = &form {
            req = req.form(f);
        }
        let resp = req.send().await.unwrap();
        jar.keep(&resp);
        if let Some(to) = resp.headers().get(reqwest::header::LOCATION) {
            let to = to.to_str().unwrap();
            let to = if to.starts_with('/') { format!("{op_base}{to}") } else { to.to_string() };
            next = (Method::GET, to, None);
            continue;
        }
        let status = resp.status();
        let html = resp.text().await.unwrap();
        assert!(status.is_success(), "{url}: {status}: {html}");
        let action = form_action(&html).unwrap_or_else(|| panic!("no form at {url}: {html}"));
        let action = if action.starts_with('/') { format!("{op_base}{action}") } else { action };
        // What a person fills in: the login form's name and password; the rest as the page has it.
        let fields = form_fields(&html)
            .into_iter()
            .map(|(k, v)| match k.as_str() {
                "login" => (k, login.to_string()),
                "password" => (k, "any".to_string()),
                _ => (k, v),
            })
            .collect();
        next = (Method::POST, action, Some(fields));
    }
    panic!("the provider never sent the browser back");
}

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
