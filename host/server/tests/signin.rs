//! People in a browser: a passkey registered from an invitation signs them in; sessions are
//! cookies with a CSRF token, end on sign-out, idleness, age, or the member's removal; the
//! approver's pages are served by the host under a strict policy.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use support::{Browser, TestHost};

/// Carol, invited as the cfo, registers her passkey from the invitation: she is signed in.
async fn carol(t: &TestHost) -> Browser {
    let (status, inv) = t.admin_post("/v1/invitations", json!({ "member": "user:carol", "role": "cfo" })).await;
    assert_eq!(status, 201, "{inv}");
    let link = inv["invitation"]["register_passkey"].as_str().unwrap();
    assert!(link.contains("/signin/register#inv_"), "the code rides in the fragment: {link}");
    t.register_from(inv["invitation"]["code"].as_str().unwrap(), "default", "user:carol").await
}

/// A passkey sign-in as the sign-in page makes it.
async fn sign_in(t: &TestHost, tenant: &str, member: &str, signer: &str) -> reqwest::Response {
    let (status, started) =
        t.request(Method::POST, "/v1/signin/passkey", "", Some(json!({ "tenant": tenant, "member": member }))).await;
    assert_eq!(status, 200, "{started}");
    let credential = t.sign(&started, tenant, signer);
    reqwest::Client::new()
        .post(format!("{}/v1/signin/passkey/finish", t.url))
        .json(&json!({ "ceremony": started["ceremony"], "credential": credential }))
        .send()
        .await
        .unwrap()
}

async fn pending_greet(t: &TestHost) -> String {
    let agent = t.agent("asker").await;
    t.grant(&[("agent:asker", "can_use", "tool:hello.greet")]).await;
    t.policy("hello.greet", "cfo", 600).await;
    let body = json!({ "tool": "hello.greet", "input": { "name": "ada" } });
    let (status, a) = t.request(Method::POST, "/v1/approvals", &agent, Some(body)).await;
    assert_eq!(status, 201, "{a}");
    a["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_a_strict_cookie_and_every_change_needs_its_csrf_token() {
    let t = TestHost::start().await;
    let id = pending_greet(&t).await;
    let browser = carol(&t).await;
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(browser.set_cookie.contains(flag), "{flag} in {}", browser.set_cookie);
    }
    assert!(!browser.set_cookie.contains("Secure"), "plain http on loopback: no Secure flag");
    assert_eq!(
        (browser.body["member"].as_str(), browser.body["registered"].as_bool()),
        (Some("user:carol"), Some(true))
    );

    // Reading needs only the cookie; the session says who it is.
    let (status, me) = browser.send(Method::GET, "/v1/me", None, false).await;
    assert_eq!((status, me["subject"].as_str(), &me["roles"]), (200, Some("user:carol"), &json!(["cfo"])), "{me}");
    let (status, s) = browser.send(Method::GET, "/v1/session", None, false).await;
    assert_eq!((status, s["csrf"].as_str()), (200, Some(browser.csrf.as_str())), "{s}");

    // A change without the CSRF token (what another site's form could make the browser send)
    // is refused and changes nothing; with it, it goes through.
    let decision = format!("/v1/approvals/{id}/decision");
    let deny = json!({ "approve": false, "reason": "no" });
    let (status, body) = browser.send(Method::POST, &decision, Some(deny.clone()), false).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("X-CSRF-Token"), "{body}");
    let (_, a) = t.admin_get(&format!("/v1/approvals/{id}")).await;
    assert_eq!(a["status"], "pending");

    // Approving from the session: the page's step-up, signed by carol's passkey.
    let (status, started) = browser.send(Method::POST, &format!("/v1/approvals/{id}/step-up"), None, true).await;
    assert_eq!(status, 200, "{started}");
    let credential = t.sign(&started, "default", "user:carol");
    let approve = json!({ "approve": true, "step_up": { "ceremony": started["ceremony"], "credential": credential } });
    let (status, body) = browser.send(Method::POST, &decision, Some(approve), true).await;
    assert_eq!((status, body["approver"].as_str()), (200, Some("user:carol")), "{body}");

    // A session is no operator and no admin: host-wide and admin routes refuse it.
    let (status, _) = browser.send(Method::GET, "/v1/tenants", None, false).await;
    assert_eq!(status, 403);
    let (status, _) = browser.send(Method::POST, "/v1/agents", Some(json!({ "name": "x" })), true).await;
    assert_eq!(status, 403);

    // Signing out ends it: the cookie is cleared and no longer works.
    let (status, _) = browser.send(Method::POST, "/v1/signout", None, true).await;
    assert_eq!(status, 200);
    let (status, body) = browser.send(Method::GET, "/v1/me", None, false).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["message"].as_str().unwrap().contains("sign in again"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_signs_in_and_sessions_end_idle_old_or_with_the_member() {
    let t = TestHost::start().await;
    carol(&t).await;
    t.grant(&[("user:dave", "cfo", "tenant:default")]).await;
    t.passkey("user:dave").await;

    // Carol signs in with her passkey; dave's passkey cannot sign in as carol.
    let resp = sign_in(&t, "default", "carol", "user:carol").await;
    let browser = Browser::from_response(&t.url, resp).await;
    assert_eq!(browser.send(Method::GET, "/v1/me", None, false).await.0, 200);
    let (status, started) = t
        .request(Method::POST, "/v1/signin/passkey", "", Some(json!({ "tenant": "default", "member": "carol" })))
        .await;
    assert_eq!(status, 200);
    let daves = t.sign_instead(&started, "default", "user:dave").await;
    let (status, body) = t
        .request(
            Method::POST,
            "/v1/signin/passkey/finish",
            "",
            Some(json!({ "ceremony": started["ceremony"], "credential": daves })),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    // Nobody without a passkey signs in; a malformed request says what is wrong.
    let (status, body) =
        t.request(Method::POST, "/v1/signin/passkey", "", Some(json!({ "tenant": "default", "member": "eve" }))).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = t.request(Method::POST, "/v1/signin/passkey", "", Some(json!({ "tenant": "default" }))).await;
    assert_eq!(status, 400, "{body}");

    // Idle for longer than the idle timeout: over.
    let pool = t.host.db.pool();
    let idle = airlock::signin::sessions::IDLE_MS + 1000;
    airlock_store::sqlx::query("UPDATE sessions SET last_seen_at = last_seen_at - $1 WHERE member = 'user:carol'")
        .bind(idle)
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(browser.send(Method::GET, "/v1/me", None, false).await.0, 401, "idle too long");
    // Busy but past its absolute end: over.
    let busy = Browser::from_response(&t.url, sign_in(&t, "default", "carol", "user:carol").await).await;
    assert_eq!(busy.send(Method::GET, "/v1/me", None, false).await.0, 200);
    airlock_store::sqlx::query("UPDATE sessions SET expires_at = $1 WHERE member = 'user:carol'")
        .bind(airlock_store::now_millis() - 1)
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(busy.send(Method::GET, "/v1/me", None, false).await.0, 401, "past the absolute timeout");

    // Removing carol from the tenant ends her sessions, tokens, passkeys and relations at once.
    let live = Browser::from_response(&t.url, sign_in(&t, "default", "carol", "user:carol").await).await;
    let token = t.member_token("user:carol").await;
    assert_eq!(t.request(Method::GET, "/v1/me", &token, None).await.0, 200);
    let (status, removed) = t.request(Method::DELETE, "/v1/members/carol", &t.admin, None).await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!((removed["relations"].clone(), removed["passkeys"].as_u64()), (json!(["cfo"]), Some(1)), "{removed}");
    assert_eq!(live.send(Method::GET, "/v1/me", None, false).await.0, 401, "her session ended");
    assert_eq!(t.request(Method::GET, "/v1/me", &token, None).await.0, 401, "her token was revoked");
    let (status, _) = t
        .request(Method::POST, "/v1/signin/passkey", "", Some(json!({ "tenant": "default", "member": "carol" })))
        .await;
    assert_eq!(status, 409, "her passkey is gone");
    let (_, tuples) = t.admin_get("/v1/tuples").await;
    assert!(!tuples.to_string().contains("user:carol"), "{tuples}");
    // Only an admin removes; removing nobody is 404.
    let daves_token = t.member_token("user:dave").await;
    assert_eq!(t.request(Method::DELETE, "/v1/members/carol", &daves_token, None).await.0, 403);
    assert_eq!(t.request(Method::DELETE, "/v1/members/carol", &t.admin, None).await.0, 404);
    t.host.flush().await;
    let kinds: Vec<Value> = t.audit().await.iter().map(|e| e["kind"].clone()).collect();
    for k in ["passkey.register", "session.start", "member.remove"] {
        assert!(kinds.contains(&json!(k)), "{k} in {kinds:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_are_served_by_the_host_under_a_strict_policy() {
    let t = TestHost::start().await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let home = http.get(format!("{}/", t.url)).send().await.unwrap();
    assert_eq!((home.status().as_u16(), home.headers()["location"].to_str().unwrap()), (303, "/console"));
    // The shell names its assets under a version (a hash of their bytes): cached for a year,
    // never stale after an upgrade.
    let shell = http.get(format!("{}/console", t.url)).send().await.unwrap().text().await.unwrap();
    let at = shell.find("/console/assets/").expect("the shell links its assets");
    let assets = &shell[at..at + "/console/assets/".len() + 16];
    let (script, core, style) =
        (format!("{assets}/app.js"), format!("{assets}/core.js"), format!("{assets}/style.css"));
    for (path, kind, must_contain) in [
        ("/console", "text/html", "Approvals waiting for you"),
        ("/console/audit", "text/html", "Audit trail"),
        ("/signin", "text/html", "Sign in with your passkey"),
        ("/signin/register", "text/html", "Register a passkey"),
        (script.as_str(), "text/javascript", "import"),
        (core.as_str(), "text/javascript", "navigator.credentials.get"),
        (style.as_str(), "text/css", ".approve"),
    ] {
        let resp = http.get(format!("{}{path}", t.url)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        let h = resp.headers().clone();
        assert!(h["content-type"].to_str().unwrap().starts_with(kind), "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        let cache = h["cache-control"].to_str().unwrap();
        assert_eq!(cache.contains("immutable"), path.starts_with("/console/assets/"), "{path}: {cache}");
        let text = resp.text().await.unwrap();
        assert!(text.contains(must_contain), "{path}");
        if kind == "text/html" {
            assert!(!text.contains("<script>") && !text.contains(" style="), "no inline script or style: {path}");
        }
    }
    // Another build's assets, an unknown asset or page: 404, never this build's bytes.
    for path in ["/console/assets/0000000000000000/app.js", &format!("{assets}/nope.js"), "/console/nope"] {
        assert_eq!(http.get(format!("{}{path}", t.url)).send().await.unwrap().status(), 404, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn airlock_login_is_confirmed_by_the_person_signed_in_in_a_browser() {
    use std::io::{BufRead, BufReader};
    let t = TestHost::start().await;
    let browser = carol(&t).await;
    let cli_dir = tempfile::tempdir().unwrap();
    let mut login = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["login", "--server", &t.url, "--data-dir"])
        .arg(cli_dir.path())
        .env_remove("AIRLOCK_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The CLI shows the code and the URL, then waits.
    let mut stderr = BufReader::new(login.stderr.take().unwrap());
    let mut shown = String::new();
    while !shown.contains("waiting") {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "the CLI ended early: {shown}");
        shown.push_str(&line);
    }
    let code = shown.split("confirm the code ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    assert!(shown.contains("/console/device#"), "{shown}");
    assert_eq!(code.len(), 9, "XXXX-XXXX: {code}");

    // A token cannot confirm it (it would mint itself another); a wrong code is 404.
    let token = t.member_token("user:carol").await;
    let (status, body) =
        t.request(Method::POST, "/v1/device/confirm", &token, Some(json!({ "user_code": code }))).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) =
        browser.send(Method::POST, "/v1/device/confirm", Some(json!({ "user_code": "BBBB-BBBB" })), true).await;
    assert_eq!(status, 404);
    // Carol confirms it in her browser (typed in lower case, as people do).
    let (status, body) =
        browser.send(Method::POST, "/v1/device/confirm", Some(json!({ "user_code": code.to_lowercase() })), true).await;
    assert_eq!((status, body["login"].as_str()), (200, Some("confirmed")), "{body}");

    let out = tokio::task::block_in_place(|| login.wait_with_output()).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((answer["member"].as_str(), answer["expires_in"].as_i64()), (Some("user:carol"), Some(12 * 3600)));
    let file = cli_dir.path().join("login-default.token");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    // The CLI now acts as carol, with her relations.
    let whoami = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["whoami", "--server", &t.url, "--data-dir"])
        .arg(cli_dir.path())
        .env_remove("AIRLOCK_TOKEN")
        .output()
        .unwrap();
    let me: Value = serde_json::from_slice(&whoami.stdout).unwrap();
    assert_eq!((me["subject"].as_str(), &me["roles"]), (Some("user:carol"), &json!(["cfo"])), "{me}");

    // RFC 8628 answers, over the wire: pending, slow_down when polled too fast, one token per grant.
    let http = reqwest::Client::new();
    let started: Value = http
        .post(format!("{}/oauth/device_authorization", t.url))
        .form(&[("client_id", "airlock-cli")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let device_code = started["device_code"].as_str().unwrap();
    let poll = || async {
        let form = [("grant_type", "urn:ietf:params:oauth:grant-type:device_code"), ("device_code", device_code)];
        let resp = http.post(format!("{}/oauth/token", t.url)).form(&form).send().await.unwrap();
        resp.json::<Value>().await.unwrap()
    };
    assert_eq!(poll().await["error"], "authorization_pending");
    assert_eq!(poll().await["error"], "slow_down");
    let user_code = started["user_code"].as_str().unwrap();
    let (status, _) = browser
        .send(Method::POST, "/v1/device/confirm", Some(json!({ "user_code": user_code, "confirm": false })), true)
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(poll().await["error"], "access_denied");
    let unknown = http
        .post(format!("{}/oauth/device_authorization", t.url))
        .form(&[("client_id", "someone-else")])
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 401);
}
