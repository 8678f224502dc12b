//! A real host on loopback for the integration tests, and stand-ins for the outside world.

#![allow(dead_code)]

pub mod browser;
pub mod catalog;
pub mod op;
pub mod serve;
pub mod standins;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock::{Airlock, Config};
use airlock_runtime::Limits;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// A running host: its API at `url`, its state in `dir`.
pub struct TestHost {
    pub host: Arc<Airlock>,
    pub url: String,
    /// The `default` tenant's first admin (`DATA_DIR/default-admin.token`).
    pub admin: String,
    /// The operator's bootstrap token (`DATA_DIR/admin.token`): host-wide work only.
    pub operator: String,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    http: reqwest::Client,
    /// Member tokens made by [`TestHost::member_token`], by `tenant/subject`.
    members: Mutex<std::collections::HashMap<String, String>>,
    /// Software passkeys of members, by `tenant/subject` ([`TestHost::passkey`]).
    passkeys: Mutex<std::collections::HashMap<String, Passkey>>,
}

/// A member's software passkey: a real authenticator implementation (webauthn-authenticator-rs),
/// in memory, that verifies its user.
pub type Passkey =
    webauthn_authenticator_rs::WebauthnAuthenticator<webauthn_authenticator_rs::softpasskey::SoftPasskey>;

/// Limits for tests: a short deadline so loops end fast, room for memory dumps.
pub fn test_limits() -> Limits {
    Limits {
        deadline: Duration::from_millis(1500),
        output_bytes: 16 << 20,
        memory_bytes: 32 << 20,
        pool_slots: 32,
        ..Limits::default()
    }
}

/// The host's default limits (room for the catalog's packages, whose limits must fit under
/// them), with a small pool for tests.
pub fn catalog_limits() -> Limits {
    Limits { pool_slots: 32, ..Limits::default() }
}

impl TestHost {
    /// A fresh host on SQLite in a temporary directory, with the sandbox probe added.
    pub async fn start() -> TestHost {
        Self::start_with(test_limits()).await
    }

    /// Like [`TestHost::start`] with other limits.
    pub async fn start_with(limits: Limits) -> TestHost {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut t = Self::start_in(dir, None, limits).await;
        t._tmp = Some(tmp);
        t
    }

    /// A host over `dir` (and `database_url`, when given).
    pub async fn start_in(dir: PathBuf, database_url: Option<String>, limits: Limits) -> TestHost {
        Self::start_configured(dir, |c| {
            c.database_url = database_url;
            c.limits = limits;
        })
        .await
    }

    /// A host over `dir` with `configure` applied to its config.
    pub async fn start_configured(dir: PathBuf, configure: impl FnOnce(&mut Config)) -> TestHost {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        Self::serve_on(listener, url, dir, configure).await
    }

    /// Opens a host over `dir` (`configure` applied to its config) and serves it on
    /// `listener`, which clients reach at `url`.
    pub(crate) async fn serve_on(
        listener: tokio::net::TcpListener,
        url: String,
        dir: PathBuf,
        configure: impl FnOnce(&mut Config),
    ) -> TestHost {
        let mut config = Config::new(dir.clone());
        config.limits = test_limits();
        configure(&mut config);
        let host = Arc::new(Airlock::open(&config).await.unwrap());
        if host.runtime.component("probe").is_none() {
            host.add_component("probe", airlock::bundled::SANDBOX_PROBE, "test").await.unwrap();
        }
        let app = airlock::api::router(host.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let operator = host.admin_token.clone();
        let admin =
            std::fs::read_to_string(dir.join(airlock::tenancy::DEFAULT_ADMIN_TOKEN_FILE)).unwrap().trim().to_string();
        TestHost {
            host,
            url,
            admin,
            operator,
            dir,
            _tmp: None,
            http: reqwest::Client::new(),
            members: Mutex::default(),
            passkeys: Mutex::default(),
        }
    }

    /// Creates tenant `name` as the operator and returns the token of its first admin
    /// (`user:NAME-admin`, through the invitation, as a person would).
    pub async fn tenant_admin(&self, name: &str) -> String {
        let admin = format!("user:{name}-admin");
        let (status, body) = self
            .request(
                reqwest::Method::POST,
                "/v1/tenants",
                &self.operator,
                Some(json!({ "name": name, "admin": admin })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        self.accept_invitation(body["invitation"]["code"].as_str().unwrap()).await
    }

    /// The token of an admin of `tenant` (a store made through the OpenFGA API, say), invited
    /// by the operator as an operator who must act inside a tenant does.
    pub async fn invited_admin(&self, tenant: &str) -> String {
        let body = json!({ "member": format!("user:{}-admin", tenant.to_lowercase()), "role": "admin" });
        let (status, body) = self
            .request(reqwest::Method::POST, &format!("/v1/tenants/{tenant}/invitations"), &self.operator, Some(body))
            .await;
        assert_eq!(status, 201, "{body}");
        self.accept_invitation(body["invitation"]["code"].as_str().unwrap()).await
    }

    /// Redeems an invitation code as its invitee would; returns their token.
    pub async fn accept_invitation(&self, code: &str) -> String {
        let (status, body) =
            self.request(reqwest::Method::POST, "/v1/invitations/accept", "", Some(json!({ "code": code }))).await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().unwrap().to_string()
    }

    /// A token of the default tenant carrying `subject`'s relations (made once, by its admin).
    pub async fn member_token(&self, subject: &str) -> String {
        self.member_token_in(&self.admin, subject).await
    }

    /// A token carrying `subject`'s relations in the tenant of `admin_token`.
    pub async fn member_token_in(&self, admin_token: &str, subject: &str) -> String {
        let key = format!("{admin_token}/{subject}");
        if let Some(t) = self.members.lock().unwrap().get(&key) {
            return t.clone();
        }
        let name: String = subject
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
            .chain(format!("-{}", self.members.lock().unwrap().len()).chars())
            .collect();
        let body = json!({ "name": name, "as_member": subject });
        let (status, body) = self.request(reqwest::Method::POST, "/v1/tokens", admin_token, Some(body)).await;
        assert_eq!(status, 201, "{body}");
        let token = body["token"].as_str().unwrap().to_string();
        self.members.lock().unwrap().insert(key, token.clone());
        token
    }

    /// Sends a request with `token`; returns status and JSON body (a success answer checked
    /// against its route's declared response type: [`TestHost::check_answer`]).
    pub async fn request(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let method_name = method.as_str().to_string();
        let mut req = self.http.request(method, format!("{}{}", self.url, path));
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if (200..300).contains(&status) {
            self.check_answer(&method_name, path, &body);
        }
        (status, body)
    }

    /// Panics when a success answer does not fit the response type its route declares in the
    /// OpenAPI document (`.returns::<T>()`): every test that goes through [`TestHost::request`]
    /// checks the document against what the handlers really send.
    pub fn check_answer(&self, method: &str, path: &str, body: &Value) {
        static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
        let doc =
            DOCUMENT.get_or_init(|| airlock::api::openapi::document(&airlock::api::route_table(self.host.clone())));
        if let Some(schema) = airlock::api::openapi::validate::response_schema(doc, method, path) {
            let wrong = airlock::api::openapi::validate::violations(doc, schema, body);
            assert!(
                wrong.is_empty(),
                "{method} {path} answered what its declared response type does not allow:\n{}\n{body}",
                wrong.join("\n")
            );
        }
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> (u16, Value) {
        self.request(reqwest::Method::POST, path, &self.admin, Some(body)).await
    }

    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        self.request(reqwest::Method::GET, path, &self.admin, None).await
    }

    /// Creates an agent and returns its token.
    pub async fn agent(&self, name: &str) -> String {
        let (status, body) = self.admin_post("/v1/agents", json!({ "name": name })).await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().unwrap().to_string()
    }

    /// Writes tuples `(user, relation, object)`.
    pub async fn grant(&self, tuples: &[(&str, &str, &str)]) {
        let writes: Vec<Value> =
            tuples.iter().map(|(u, r, o)| json!({ "user": u, "relation": r, "object": o })).collect();
        let (status, body) = self.admin_post("/v1/tuples", json!({ "writes": writes })).await;
        assert_eq!(status, 200, "{body}");
    }

    /// Calls a tool as the agent with `token`.
    pub async fn call(&self, token: &str, tool: &str, input: Value) -> (u16, Value) {
        self.request(reqwest::Method::POST, &format!("/v1/tools/{tool}/call"), token, Some(input)).await
    }

    /// The tenant's audit events.
    pub async fn audit(&self) -> Vec<Value> {
        let (status, body) = self.admin_get("/v1/audit?limit=1000").await;
        assert_eq!(status, 200, "{body}");
        body["events"].as_array().unwrap().clone()
    }

    /// Stores the `billing-api` connection pointing at a stand-in.
    pub async fn billing_connection(&self, api: SocketAddr, secret: &str) {
        let body = json!({ "kind": "bearer", "base_url": format!("http://{api}"), "allowed_hosts": [api.to_string()], "allow_private_network": true,
                           "secret": secret });
        let (status, body) =
            self.request(reqwest::Method::PUT, "/v1/connections/billing-api", &self.admin, Some(body)).await;
        assert_eq!(status, 200, "{body}");
    }
}

/// What the billing stand-in saw: (path, authorization header).
#[derive(Default, Clone)]
pub struct Seen {
    pub requests: Arc<Mutex<Vec<(String, Option<String>)>>>,
}

impl Seen {
    fn record(&self, path: &str, headers: &HeaderMap, secret: &str) -> bool {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
        self.requests.lock().unwrap().push((path.to_string(), auth.clone()));
        auth == Some(format!("Bearer {secret}"))
    }

    pub fn paths(&self) -> Vec<String> {
        self.requests.lock().unwrap().iter().map(|(p, _)| p.clone()).collect()
    }
}

/// A stand-in billing API that demands `Bearer {secret}`.
pub async fn billing_api(secret: &'static str) -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let (on_get, on_post) = (seen.clone(), seen.clone());
    let app = Router::new()
        .route(
            "/customers/{id}",
            get(move |axum::extract::Path(id): axum::extract::Path<String>, headers: HeaderMap| async move {
                if !on_get.record(&format!("/customers/{id}"), &headers, secret) {
                    return (axum::http::StatusCode::UNAUTHORIZED, Json(json!({ "error": "bad credential" })));
                }
                (axum::http::StatusCode::OK, Json(json!({ "id": id, "plan": "pro", "balance": "120.00" })))
            }),
        )
        .route(
            "/refunds",
            post(move |headers: HeaderMap, Json(body): Json<Value>| async move {
                if !on_post.record("/refunds", &headers, secret) {
                    return (axum::http::StatusCode::UNAUTHORIZED, Json(json!({ "error": "bad credential" })));
                }
                (
                    axum::http::StatusCode::OK,
                    Json(json!({ "refund_id": "re_1", "amount": body["amount"], "status": "succeeded" })),
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

/// Calls `tool` as the agent with `token` in the background (a call that may wait for a
/// person): the task answers `(status, body)`.
pub fn spawn_call(t: &TestHost, token: &str, tool: &str, input: Value) -> tokio::task::JoinHandle<(u16, Value)> {
    let (url, token, tool) = (t.url.clone(), token.to_string(), tool.to_string());
    tokio::spawn(async move {
        let resp = reqwest::Client::new()
            .post(format!("{url}/v1/tools/{tool}/call"))
            .bearer_auth(token)
            .json(&input)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    })
}

/// A test peer's location from `var`, which scripts/test sets once it installed the peer
/// (`what` says which): `None` with a notice outside CI when unset, a failure under CI=true.
pub fn peer(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) => Some(value),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{var} is not set under CI: run the tests through scripts/test, which installs {what}")
        }
        Err(_) => {
            eprintln!("skipping: {var} is not set (scripts/test installs {what})");
            None
        }
    }
}

/// Polls until the tenant has a pending approval; returns it.
pub async fn wait_for_pending(t: &TestHost) -> Value {
    for _ in 0..400 {
        let (_, body) = t.admin_get("/v1/approvals?status=pending").await;
        if let Some(first) = body["approvals"].as_array().and_then(|a| a.first()) {
            return first.clone();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no approval request appeared");
}

/// What a recording stand-in API saw: (method, path, body).
#[derive(Default, Clone)]
pub struct Recorded {
    pub requests: Arc<Mutex<Vec<(String, String, String)>>>,
}

impl Recorded {
    /// `METHOD /path` of every request, in order.
    pub fn lines(&self) -> Vec<String> {
        self.requests.lock().unwrap().iter().map(|(m, p, _)| format!("{m} {p}")).collect()
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

/// A stand-in API that records every request and answers 200 with `{"ok": true, "path": ...}`
/// when it carries `Bearer {secret}` (401 otherwise).
pub async fn recorder(secret: &'static str) -> (SocketAddr, Recorded) {
    let seen = Recorded::default();
    let rec = seen.clone();
    let app = Router::new().fallback(
        move |method: axum::http::Method, uri: axum::http::Uri, headers: HeaderMap, body: String| {
            let rec = rec.clone();
            async move {
                rec.requests.lock().unwrap().push((method.to_string(), uri.path().to_string(), body));
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                if auth != format!("Bearer {secret}") {
                    return (axum::http::StatusCode::UNAUTHORIZED, Json(json!({ "error": "bad credential" })));
                }
                (axum::http::StatusCode::OK, Json(json!({ "ok": true, "path": uri.path() })))
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

impl TestHost {
    /// Stores a bearer connection `name` pointing at a stand-in.
    pub async fn connection(&self, name: &str, api: SocketAddr, secret: &str) {
        let body = json!({ "kind": "bearer", "base_url": format!("http://{api}"), "allowed_hosts": [api.to_string()], "allow_private_network": true,
                           "secret": secret });
        let (status, body) =
            self.request(reqwest::Method::PUT, &format!("/v1/connections/{name}"), &self.admin, Some(body)).await;
        assert_eq!(status, 200, "{body}");
    }

    /// Calls a tool as an agent with extra headers (`Airlock-Grant`, `Airlock-Run`).
    pub async fn call_with(&self, token: &str, tool: &str, input: Value, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut req = self.http.post(format!("{}/v1/tools/{tool}/call", self.url)).bearer_auth(token).json(&input);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Puts an approval policy through the admin API.
    pub async fn policy(&self, tool: &str, role: &str, ttl_seconds: u64) {
        let (status, body) =
            self.admin_post("/v1/policies", json!({ "tool": tool, "role": role, "ttl_seconds": ttl_seconds })).await;
        assert_eq!(status, 200, "{body}");
    }

    /// Decides an approval as `approver`, with that person's own token.
    pub async fn decide(&self, id: &str, approver: &str, approve: bool) -> (u16, Value) {
        self.decide_in(&self.admin, "default", id, approver, approve).await
    }

    /// Decides as `approver` of the tenant `admin_token` administers, with their own token;
    /// approving signs the step-up with their passkey (registered on first use).
    pub async fn decide_in(
        &self,
        admin_token: &str,
        tenant: &str,
        id: &str,
        approver: &str,
        approve: bool,
    ) -> (u16, Value) {
        let token = self.member_token_in(admin_token, approver).await;
        let mut body = json!({ "approve": approve });
        if approve {
            self.passkey_in(admin_token, tenant, approver).await;
            let (status, started) =
                self.request(reqwest::Method::POST, &format!("/v1/approvals/{id}/step-up"), &token, None).await;
            if status != 200 {
                return (status, started);
            }
            body["step_up"] =
                json!({ "ceremony": started["ceremony"], "credential": self.sign(&started, tenant, approver) });
        }
        self.request(reqwest::Method::POST, &format!("/v1/approvals/{id}/decision"), &token, Some(body)).await
    }

    /// Gives `subject` (of the default tenant) a software passkey, registered as a person
    /// would: from an invitation its admin makes, redeemed on the passkey route. Once.
    pub async fn passkey(&self, subject: &str) {
        self.passkey_in(&self.admin, "default", subject).await
    }

    /// [`TestHost::passkey`] in the tenant of `admin_token`.
    pub async fn passkey_in(&self, admin_token: &str, tenant: &str, subject: &str) {
        let key = format!("{tenant}/{subject}");
        if self.passkeys.lock().unwrap().contains_key(&key) {
            return;
        }
        let (status, inv) = self
            .request(reqwest::Method::POST, "/v1/invitations", admin_token, Some(json!({ "member": subject })))
            .await;
        assert_eq!(status, 201, "{inv}");
        let code = inv["invitation"]["code"].as_str().unwrap();
        self.register_from(code, tenant, subject).await;
    }

    /// Registers a software passkey for `subject` of `tenant` from invitation `code`, as the
    /// register page does; returns the browser session that registration starts.
    pub async fn register_from(&self, code: &str, tenant: &str, subject: &str) -> Browser {
        let (status, started) =
            self.request(reqwest::Method::POST, "/v1/passkeys/register", "", Some(json!({ "code": code }))).await;
        assert_eq!(status, 200, "{started}");
        let mut passkey = Passkey::new(webauthn_authenticator_rs::softpasskey::SoftPasskey::new(true));
        let credential = passkey
            .do_registration(
                started["origin"].as_str().unwrap().parse().unwrap(),
                serde_json::from_value(started["options"].clone()).unwrap(),
            )
            .expect("the soft passkey registers");
        let body = json!({ "ceremony": started["ceremony"], "credential": credential });
        let resp =
            self.http.post(format!("{}/v1/passkeys/register/finish", self.url)).json(&body).send().await.unwrap();
        let browser = Browser::from_response(&self.url, resp).await;
        self.passkeys.lock().unwrap().insert(format!("{tenant}/{subject}"), passkey);
        browser
    }

    /// What a forger holding `signer`'s passkey sends for options started for someone else:
    /// `signer`'s assertion over the same challenge (its own credential put in the allow list).
    pub async fn sign_instead(&self, started: &Value, tenant: &str, signer: &str) -> Value {
        use base64::Engine;
        let (cred_id,): (String,) =
            airlock_store::sqlx::query_as("SELECT cred_id FROM passkeys WHERE tenant = $1 AND member = $2")
                .bind(tenant)
                .bind(signer)
                .fetch_one(self.host.db.pool())
                .await
                .unwrap();
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hex::decode(cred_id).unwrap());
        let mut options = started["options"].clone();
        options["publicKey"]["allowCredentials"] = json!([{ "type": "public-key", "id": id }]);
        self.sign(&json!({ "origin": started["origin"], "options": options }), tenant, signer)
    }

    /// Hands out `subject`'s (of `tenant`) software passkey, for a test that signs with it
    /// after this host is gone (the crash suite's approver, against `airlock serve` processes).
    pub fn take_passkey(&self, tenant: &str, subject: &str) -> Passkey {
        self.passkeys
            .lock()
            .unwrap()
            .remove(&format!("{tenant}/{subject}"))
            .unwrap_or_else(|| panic!("`{subject}` has no passkey: call TestHost::passkey first"))
    }

    /// `subject`'s (of `tenant`) passkey's assertion over started step-up options.
    pub fn sign(&self, started: &Value, tenant: &str, subject: &str) -> Value {
        let mut passkeys = self.passkeys.lock().unwrap();
        let passkey = passkeys
            .get_mut(&format!("{tenant}/{subject}"))
            .unwrap_or_else(|| panic!("`{subject}` has no passkey: call TestHost::passkey first"));
        let credential = passkey
            .do_authentication(
                started["origin"].as_str().unwrap().parse().unwrap(),
                serde_json::from_value(started["options"].clone()).unwrap(),
            )
            .expect("the soft passkey signs");
        json!(credential)
    }
}

/// Polls until the tenant has a pending approval of `tool`; returns it.
pub async fn wait_for_pending_of(t: &TestHost, tool: &str) -> Value {
    for _ in 0..400 {
        let (_, body) = t.admin_get("/v1/approvals?status=pending").await;
        if let Some(found) = body["approvals"].as_array().and_then(|a| a.iter().find(|x| x["tool"] == tool)) {
            return found.clone();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no approval request of `{tool}` appeared");
}

/// A signed-in browser: the session cookie and the CSRF token its sign-in returned.
pub struct Browser {
    pub url: String,
    pub cookie: String,
    pub csrf: String,
    /// The `Set-Cookie` header as the host sent it.
    pub set_cookie: String,
    pub body: Value,
    http: reqwest::Client,
}

impl Browser {
    /// The session a sign-in (or passkey registration) response starts.
    pub async fn from_response(url: &str, resp: reqwest::Response) -> Browser {
        let status = resp.status().as_u16();
        let set_cookie = resp
            .headers()
            .get(reqwest::header::SET_COOKIE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        let cookie = set_cookie.split(';').next().unwrap().to_string();
        assert!(cookie.starts_with("airlock_session="), "a session cookie: {set_cookie}");
        let csrf = body["csrf"].as_str().expect("the CSRF token").to_string();
        Browser { url: url.into(), cookie, csrf, set_cookie, body, http: reqwest::Client::new() }
    }

    /// A session whose cookie and CSRF token are already known.
    pub fn with_cookie(url: &str, cookie: &str, csrf: &str) -> Browser {
        Browser {
            url: url.into(),
            cookie: cookie.into(),
            csrf: csrf.into(),
            set_cookie: String::new(),
            body: Value::Null,
            http: reqwest::Client::new(),
        }
    }

    /// A request as the page makes it: the cookie, and the CSRF header when `with_csrf`.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        with_csrf: bool,
    ) -> (u16, Value) {
        let mut req =
            self.http.request(method, format!("{}{path}", self.url)).header(reqwest::header::COOKIE, &self.cookie);
        if with_csrf {
            req = req.header("x-csrf-token", &self.csrf);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

/// The next Server-Sent Events frames of `resp` that have an `id`, an `event` and a `data`
/// (parsed as JSON), up to `n`, arriving within `wait`; frames past the `n`th stay in `buf`
/// for the next read.
pub async fn sse_frames(
    resp: &mut reqwest::Response,
    buf: &mut String,
    n: usize,
    wait: Duration,
) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while out.len() < n {
        while let Some(end) = buf.find("\n\n") {
            if out.len() >= n {
                break;
            }
            let frame: String = buf.drain(..end + 2).collect();
            let field = |name: &str| {
                frame.lines().find_map(|l| l.strip_prefix(&format!("{name}:")).map(|v| v.trim_start().to_string()))
            };
            if let (Some(id), Some(kind), Some(data)) = (field("id"), field("event"), field("data")) {
                out.push((id, kind, serde_json::from_str(&data).unwrap()));
            }
        }
        if out.len() >= n {
            break;
        }
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => buf.push_str(std::str::from_utf8(&chunk).unwrap()),
            _ => break, // the wait is over, or the stream ended
        }
    }
    out
}
