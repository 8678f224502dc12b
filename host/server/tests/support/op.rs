//! The shared CIBA/OpenID test peer (`../shared/ciba-op`, the certified oidc-provider), run
//! as a child process for one test.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running `node op.mjs`, killed on drop.
pub struct Op {
    _child: Child,
    pub base: String,
    pub admin: String,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts the real OP with `clients`, through the loopback ping shim of the approvals crate's
/// tests (the OP pings only https on public addresses); `None` when scripts/ciba-op.sh has
/// not prepared it (a failure under CI). With `login`, it is also a browser sign-in OP
/// (`LOGIN=1`: authorization code flow and its development login form).
pub async fn start_op(clients: Value, login: bool) -> Option<Op> {
    let Some(dir) = std::env::var_os("AIRLOCK_CIBA_OP_DIR").filter(|d| !d.is_empty()) else {
        let on_ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
        assert!(!on_ci, "AIRLOCK_CIBA_OP_DIR is not set under CI: run the tests through scripts/test");
        eprintln!("notice: AIRLOCK_CIBA_OP_DIR not set, external OP test skipped (source scripts/ciba-op.sh)");
        return None;
    };
    let (port, admin) = (free_port(), free_port());
    let shim = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../approvals/tests/ciba-op-loopback-ping.mjs");
    let shim = url::Url::from_file_path(shim.canonicalize().unwrap()).unwrap();
    let mut child = Command::new("node")
        .arg("--import")
        .arg(shim.as_str())
        .arg("op.mjs")
        .current_dir(dir)
        .env("PORT", port.to_string())
        .env("ADMIN_PORT", admin.to_string())
        .env("CLIENTS", clients.to_string())
        .env("LOGIN", if login { "1" } else { "0" })
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs op.mjs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("READY") {
                return;
            }
        }
        panic!("op.mjs exited before READY");
    });
    ready.await.expect("op.mjs READY within 30 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let op = Op { _child: child, base: format!("http://127.0.0.1:{port}"), admin: format!("http://127.0.0.1:{admin}") };
    for url in [format!("{}/.well-known/openid-configuration", op.base), format!("{}/pending", op.admin)] {
        let t0 = Instant::now();
        while reqwest::get(&url).await.is_err() {
            assert!(t0.elapsed() < Duration::from_secs(20), "{url} does not answer");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Some(op)
}

impl Op {
    /// Waits until the OP shows a request for `sub`; returns it.
    pub async fn pending_for(&self, sub: &str) -> Value {
        let t0 = Instant::now();
        loop {
            let list: Vec<Value> = reqwest::get(format!("{}/pending", self.admin)).await.unwrap().json().await.unwrap();
            if let Some(p) = list.into_iter().find(|p| p["sub"] == sub) {
                return p;
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "no request for `{sub}` reached the OP");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The approver's phone: `approve` or `deny`.
    pub async fn answer(&self, verb: &str, id: &str) {
        let resp = reqwest::get(format!("{}/{verb}?id={id}", self.admin)).await.unwrap();
        assert!(resp.status().is_success(), "{verb}: {}", resp.text().await.unwrap());
    }
}

// ---- a person at the OP's own login and consent forms (LOGIN=1) ----------------------------

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
pub async fn through_the_provider(start: &str, op_base: &str, callback_prefix: &str, login: &str) -> String {
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
