//! The crash suite: real `airlock serve` processes under concurrent load are killed with SIGKILL
//! at random moments and restarted, and what Airlock promises is checked after it all.
//!
//! The load, all the time, against whichever host is up:
//! - direct calls of a gated tool that posts a refund to a stand-in billing API (each with its
//!   own amount, so a request seen twice at the stand-in is a call executed twice);
//! - calls held by an approval policy, re-attached (`/v1/calls/{id}/resume`) after a crash;
//! - an approver deciding every pending approval with her passkey (approving, or denying one
//!   in five);
//! - grants asked ahead, approved, presented with `Airlock-Grant`, presented again after a crash
//!   until the answer is final, then replayed once more;
//! - installs and uninstalls of a catalog agent;
//! - calls through an OAuth2 connection whose provider rotates its refresh token on every
//!   refresh, each call making the host refresh.
//!
//! The checks: no refund reached the stand-in twice; every acknowledged call reached it and is
//! in the audit trail as allowed; a replayed grant never ran; every approval acknowledged as
//! decided is decided that way, and none is decided or spent twice; the chain verifies online,
//! and offline against checkpoints signed after the last restart; the catalog agent is either
//! whole (installation, agent, component) or wholly absent, and is as the last acknowledged
//! install or uninstall left it; the host never showed the OAuth2 provider a refresh token
//! older than the one it had just replaced (a rotation lost), never showed the API a token the
//! provider did not issue, and the connection still works after the last kill.
//!
//! Run on SQLite, on PostgreSQL, and with two hosts on one PostgreSQL database of which only one
//! is killed. `AIRLOCK_CRASH_KILLS` sets the kills per run (default 5; `scripts/crash` runs
//! 100), `AIRLOCK_CRASH_SEED` replays a run's random moments.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_store::sqlx;
use reqwest::Method;
use serde_json::{json, Value};
use support::serve::Serve;
use support::{recorder, Passkey, Recorded, TestHost};

const BILLING: &str = "sk_billing_crash_5d1c";
const DIRECTORY: &str = "sk_directory_crash_77a";
/// The tool held by a policy (a CFO approves); `payouts` is the same component without one.
const HELD: &str = "offboarding.issue-refund";
const DIRECT: &str = "payouts.issue-refund";
/// The catalog agent installed and uninstalled under the kills.
const CATALOG_AGENT: &str = "contentbot";

#[test]
fn sqlite_survives_kills() {
    crash_suite("sqlite", None, 1);
}

#[test]
fn postgresql_survives_kills() {
    let Some(url) = fresh_postgres_database() else { return };
    crash_suite("postgresql", Some(url), 1);
}

#[test]
fn two_hosts_on_postgresql_survive_kills_of_one() {
    let Some(url) = fresh_postgres_database() else { return };
    crash_suite("postgresql, two hosts", Some(url), 2);
}

/// A new database on the test PostgreSQL server (`None` when there is none, outside CI).
fn fresh_postgres_database() -> Option<String> {
    let server = airlock_store::testing::postgres_server_url()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let name = format!("airlock_crash_{}", uuid::Uuid::new_v4().simple());
    rt.block_on(async {
        let admin = airlock_store::Db::connect_without_migrations(&server).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(admin.pool()).await.unwrap();
    });
    Some(airlock_store::testing::with_database(&server, &name))
}

fn kills() -> usize {
    std::env::var("AIRLOCK_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(5)
}

/// What the setup hands to the load: tokens, the approver's passkey, the stand-ins.
struct World {
    dir: PathBuf,
    database_url: Option<String>,
    admin: String,
    clerk: String,
    carol: String,
    carol_key: Mutex<Passkey>,
    billed: Recorded,
    provider: Arc<Mutex<Provider>>,
    provider_addr: std::net::SocketAddr,
}

fn crash_suite(label: &str, database_url: Option<String>, hosts: usize) {
    let seed = std::env::var("AIRLOCK_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("crash suite ({label}): seed {seed} (AIRLOCK_CRASH_SEED={seed} replays it)");
    let tmp = tempfile::tempdir().unwrap();
    // The stand-ins and the load live on this runtime, across every host.
    let outside = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (billing, billed) = outside.block_on(recorder(BILLING));
    let (directory, _) = outside.block_on(recorder(DIRECTORY));
    let provider = outside.block_on(oauth_provider());
    let world = Arc::new(setup(tmp.path(), database_url, billing, directory, billed, provider));
    outside.block_on(run(label, world, hosts, seed));
    outside.shutdown_timeout(Duration::from_secs(5));
}

/// Provisions the tenant with an in-process host, which then stops: the components, the
/// connections to the stand-ins, the agent and its grants, the policy, the CFO's passkey.
fn setup(
    dir: &Path,
    database_url: Option<String>,
    billing: std::net::SocketAddr,
    directory: std::net::SocketAddr,
    billed: Recorded,
    (provider_addr, provider): (std::net::SocketAddr, Arc<Mutex<Provider>>),
) -> World {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let world = rt.block_on(async {
        let t = TestHost::start_in(dir.to_path_buf(), database_url.clone(), support::test_limits()).await;
        t.host.add_component("offboarding", airlock::bundled::OFFBOARDING, "test").await.unwrap();
        t.host.add_component("payouts", airlock::bundled::OFFBOARDING, "test").await.unwrap();
        t.connection("billing-api", billing, BILLING).await;
        t.connection("directory-api", directory, DIRECTORY).await;
        let oauth = json!({ "kind": "oauth2_refresh", "allowed_hosts": [provider_addr.to_string()],
                            "allow_private_network": true,
                            "oauth": { "token_url": format!("http://{provider_addr}/oauth/token"), "client_id": "Iv1.crash" },
                            "secret": json!({ "refresh_token": "rt_0", "client_secret": "crash-secret" }).to_string() });
        let (status, body) =
            t.request(Method::PUT, &format!("/v1/connections/{OAUTH_CONNECTION}"), &t.admin, Some(oauth)).await;
        assert_eq!(status, 200, "{body}");
        let clerk = t.agent("clerk").await;
        t.grant(&[
            ("agent:clerk", "can_use", "tool:offboarding.issue-refund"),
            ("agent:clerk", "can_use", "tool:payouts.issue-refund"),
            ("agent:clerk", "can_use", "connection:billing-api"),
            ("agent:clerk", "can_use", "tool:probe.fetch"),
            ("agent:clerk", "can_use", &format!("connection:{OAUTH_CONNECTION}")),
            ("agent:clerk", "offboard", "customer:c-7"),
            ("user:carol", "cfo", "tenant:default"),
        ])
        .await;
        t.policy(HELD, "cfo", 900).await;
        let carol = t.member_token("user:carol").await;
        t.passkey("user:carol").await;
        t.host.flush().await;
        World {
            dir: dir.to_path_buf(),
            database_url,
            admin: t.admin.clone(),
            clerk,
            carol,
            carol_key: Mutex::new(t.take_passkey("default", "user:carol")),
            billed,
            provider,
            provider_addr,
        }
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    world
}

/// What the hosts acknowledged, for the checks.
#[derive(Default)]
struct Acks {
    /// (call id, amount) of every call answered 200.
    calls: Vec<(String, u64)>,
    /// (approval id, approved) of every decision answered 200.
    decisions: Vec<(String, bool)>,
    /// Grants that ran again when presented after their 200.
    replays_run: Vec<String>,
    /// Install (`true`) or uninstall answered 200, in order, and whether an attempt came after
    /// the last one acknowledged (which may or may not have taken effect).
    catalog: Vec<bool>,
    catalog_unsettled: bool,
    /// Call ids of the calls through the OAuth2 connection answered 200 with the API's 200.
    oauth_calls: Vec<String>,
    /// Held calls re-attached after a crash, and refusals seen (status, code) by kind.
    resumed: usize,
    refused: HashMap<String, usize>,
}

struct Load {
    world: Arc<World>,
    urls: Vec<String>,
    http: reqwest::Client,
    /// Set to stop the load; the approver stops after it (`stop_approver`), so that what
    /// waits on a decision gets one while the load drains.
    stop: AtomicBool,
    stop_approver: AtomicBool,
    amounts: AtomicU64,
    acks: Mutex<Acks>,
}

impl Load {
    fn url(&self, worker: usize) -> &str {
        &self.urls[worker % self.urls.len()]
    }

    fn next_amount(&self) -> u64 {
        self.amounts.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn refused(&self, what: &str, status: u16, body: &Value) {
        let code = body["error"].as_str().or(body["code"].as_str()).unwrap_or("-");
        *self.acks.lock().unwrap().refused.entry(format!("{what} {status} {code}")).or_default() += 1;
    }

    /// One request; `None` when no host answered (it is down) or the answer was cut.
    async fn send(
        &self,
        url: &str,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Option<(u16, Value)> {
        let mut req = self.http.request(method, format!("{url}{path}")).bearer_auth(token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.ok()?;
        let status = resp.status().as_u16();
        let text = resp.text().await.ok()?;
        Some((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }
}

fn refund(amount: u64) -> Value {
    json!({ "customer_id": "c-7", "amount": format!("{amount}.00"), "currency": "EUR" })
}

/// The connection whose OAuth2 access tokens the host refreshes under the kills.
const OAUTH_CONNECTION: &str = "github";

/// A stand-in OAuth2 provider and the API its tokens open, shaped like GitHub's: every refresh
/// rotates the refresh token; the one just replaced is still taken (a reuse interval, as Auth0
/// and Okta offer, so a host killed between the provider's answer and its own commit is not
/// locked out); anything older is refused and recorded. Access tokens live 60 s, the host's
/// refresh margin, so every use refreshes. The API records every bearer it was shown that the
/// provider never issued.
#[derive(Default)]
struct Provider {
    /// The current refresh token is `rt_{generation}`.
    generation: u64,
    refreshes: u64,
    refused: Vec<String>,
    issued: HashSet<String>,
    api_calls: u64,
    foreign_bearers: Vec<String>,
}

async fn oauth_provider() -> (std::net::SocketAddr, Arc<Mutex<Provider>>) {
    use axum::routing::{get, post};
    let provider = Arc::new(Mutex::new(Provider::default()));
    let (at_token, at_api) = (provider.clone(), provider.clone());
    let app = axum::Router::new()
        .route(
            "/oauth/token",
            post(move |axum::extract::Form(form): axum::extract::Form<HashMap<String, String>>| {
                let p = at_token.clone();
                async move {
                    let mut p = p.lock().unwrap();
                    let shown = form.get("refresh_token").cloned().unwrap_or_default();
                    let g = p.generation;
                    let taken = shown == format!("rt_{g}") || (g > 0 && shown == format!("rt_{}", g - 1));
                    if form.get("grant_type").map(String::as_str) != Some("refresh_token") || !taken {
                        p.refused.push(shown);
                        return (axum::http::StatusCode::BAD_REQUEST, axum::Json(json!({ "error": "invalid_grant" })));
                    }
                    p.generation += 1;
                    p.refreshes += 1;
                    let access = format!("gho_{}", p.generation);
                    p.issued.insert(access.clone());
                    let body = json!({ "access_token": access, "refresh_token": format!("rt_{}", p.generation),
                                       "expires_in": 60, "token_type": "bearer" });
                    (axum::http::StatusCode::OK, axum::Json(body))
                }
            }),
        )
        .route(
            "/user",
            get(move |headers: axum::http::HeaderMap| {
                let p = at_api.clone();
                async move {
                    let mut p = p.lock().unwrap();
                    p.api_calls += 1;
                    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
                    match auth.strip_prefix("Bearer ") {
                        Some(t) if p.issued.contains(t) => {
                            (axum::http::StatusCode::OK, axum::Json(json!({ "login": "airlock-crash" })))
                        }
                        _ => {
                            p.foreign_bearers.push(auth.to_string());
                            (axum::http::StatusCode::UNAUTHORIZED, axum::Json(json!({ "message": "Bad credentials" })))
                        }
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, provider)
}

/// Calls that reach the API through the OAuth2 connection, each making the host refresh.
async fn oauth_calls(load: Arc<Load>, worker: usize) {
    let input = json!({ "connection": OAUTH_CONNECTION, "url": format!("http://{}/user", load.world.provider_addr) });
    while !load.stop.load(Ordering::Relaxed) {
        match load
            .send(load.url(worker), Method::POST, "/v1/tools/probe.fetch/call", &load.world.clerk, Some(&input), &[])
            .await
        {
            Some((200, body)) if body["result"]["status"] == 200 => {
                load.acks.lock().unwrap().oauth_calls.push(body["call_id"].as_str().unwrap().to_string())
            }
            Some((200, body)) => {
                load.refused("oauth api", body["result"]["status"].as_u64().unwrap_or(0) as u16, &body)
            }
            Some((status, body)) => load.refused("oauth", status, &body),
            None => pause().await,
        }
    }
}

/// Whether a host is down or restarting: try again shortly.
async fn pause() {
    tokio::time::sleep(Duration::from_millis(40)).await;
}

/// Gated calls that run at once.
async fn direct_calls(load: Arc<Load>, worker: usize) {
    while !load.stop.load(Ordering::Relaxed) {
        let amount = load.next_amount();
        let path = format!("/v1/tools/{DIRECT}/call");
        match load.send(load.url(worker), Method::POST, &path, &load.world.clerk, Some(&refund(amount)), &[]).await {
            Some((200, body)) => {
                load.acks.lock().unwrap().calls.push((body["call_id"].as_str().unwrap().to_string(), amount))
            }
            Some((status, body)) => load.refused("direct", status, &body),
            None => pause().await,
        }
    }
}

/// Calls held by the policy; after a crash, re-attached by their call id until answered.
async fn held_calls(load: Arc<Load>, worker: usize) {
    while !load.stop.load(Ordering::Relaxed) {
        let amount = load.next_amount();
        let path = format!("/v1/tools/{HELD}/call");
        let url = load.url(worker).to_string();
        match load.send(&url, Method::POST, &path, &load.world.clerk, Some(&refund(amount)), &[]).await {
            Some((200, body)) => {
                load.acks.lock().unwrap().calls.push((body["call_id"].as_str().unwrap().to_string(), amount));
                continue;
            }
            Some((status, body)) => {
                load.refused("held", status, &body);
                continue;
            }
            None => {}
        }
        // Cut by a crash: find the call the approval holds (if the host had committed it) and
        // re-attach to it, as a client that lost its connection does.
        let Some(call_id) = held_call_of(&load, &url, amount).await else { continue };
        load.acks.lock().unwrap().resumed += 1;
        while !load.stop.load(Ordering::Relaxed) {
            let path = format!("/v1/calls/{call_id}/resume");
            match load.send(&url, Method::POST, &path, &load.world.clerk, None, &[]).await {
                Some((200, body)) => {
                    assert_eq!(body["call_id"], call_id.as_str());
                    load.acks.lock().unwrap().calls.push((call_id, amount));
                    break;
                }
                Some((status, body)) if status < 500 => {
                    load.refused("resume", status, &body);
                    break;
                }
                _ => pause().await,
            }
        }
    }
}

/// The call id of the held call for `amount`, from the tenant's newest approvals.
async fn held_call_of(load: &Load, url: &str, amount: u64) -> Option<String> {
    let wanted = format!("\"amount\":\"{amount}.00\"");
    while !load.stop.load(Ordering::Relaxed) {
        match load.send(url, Method::GET, "/v1/approvals?limit=500", &load.world.admin, None, &[]).await {
            Some((200, body)) => {
                let found = body["approvals"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|a| a["tool"] == HELD && a["details"].as_str().is_some_and(|d| d.contains(&wanted)));
                return found.and_then(|a| a["call_id"].as_str()).map(str::to_string);
            }
            _ => pause().await,
        }
    }
    None
}

/// The CFO decides what is pending: approves with her passkey, or denies one in five.
async fn approver(load: Arc<Load>, worker: usize) {
    let mut n = 0u64;
    while !load.stop_approver.load(Ordering::Relaxed) {
        let url = load.url(worker).to_string();
        let listed =
            load.send(&url, Method::GET, "/v1/approvals?status=pending&limit=20", &load.world.carol, None, &[]);
        let Some((200, body)) = listed.await else {
            pause().await;
            continue;
        };
        let pending = body["approvals"].as_array().unwrap().clone();
        if pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for a in pending {
            let id = a["id"].as_str().unwrap().to_string();
            n += 1;
            let approve = n % 5 != 0;
            let mut decision = json!({ "approve": approve });
            if approve {
                let path = format!("/v1/approvals/{id}/step-up");
                let Some((200, started)) = load.send(&url, Method::POST, &path, &load.world.carol, None, &[]).await
                else {
                    continue;
                };
                let credential = load
                    .world
                    .carol_key
                    .lock()
                    .unwrap()
                    .do_authentication(
                        started["origin"].as_str().unwrap().parse().unwrap(),
                        serde_json::from_value(started["options"].clone()).unwrap(),
                    )
                    .expect("the soft passkey signs");
                decision["step_up"] = json!({ "ceremony": started["ceremony"], "credential": credential });
            }
            let path = format!("/v1/approvals/{id}/decision");
            match load.send(&url, Method::POST, &path, &load.world.carol, Some(&decision), &[]).await {
                Some((200, _)) => load.acks.lock().unwrap().decisions.push((id, approve)),
                Some((status, body)) => load.refused("decide", status, &body),
                None => {}
            }
        }
    }
}

/// Grants asked ahead, then presented until the answer is final (a crash in between is a
/// retry with the same grant), then replayed once: a grant runs its action once.
async fn presenter(load: Arc<Load>, worker: usize) {
    while !load.stop.load(Ordering::Relaxed) {
        let url = load.url(worker).to_string();
        let amount = load.next_amount();
        let ask = json!({ "tool": HELD, "input": refund(amount) });
        let Some((201, asked)) =
            load.send(&url, Method::POST, "/v1/approvals", &load.world.clerk, Some(&ask), &[]).await
        else {
            pause().await;
            continue;
        };
        let id = asked["id"].as_str().unwrap().to_string();
        let path = format!("/v1/tools/{HELD}/call");
        let mut ran = false;
        while !load.stop.load(Ordering::Relaxed) {
            // Wait for the CFO's decision, then present.
            let got = load.send(&url, Method::GET, &format!("/v1/approvals/{id}"), &load.world.admin, None, &[]).await;
            match got {
                Some((200, a)) if a["status"] == "pending" => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Some((200, _)) => {}
                Some((404, _)) => break, // the ask itself was lost in a crash before it committed
                _ => {
                    pause().await;
                    continue;
                }
            }
            let headers = [("Airlock-Grant", id.as_str())];
            match load.send(&url, Method::POST, &path, &load.world.clerk, Some(&refund(amount)), &headers).await {
                Some((200, body)) => {
                    load.acks.lock().unwrap().calls.push((body["call_id"].as_str().unwrap().to_string(), amount));
                    ran = true;
                    break;
                }
                Some((status, body)) if status < 500 && status != 429 => {
                    load.refused("present", status, &body);
                    break;
                }
                _ => pause().await,
            }
        }
        if ran {
            let headers = [("Airlock-Grant", id.as_str())];
            if let Some((200, _)) =
                load.send(&url, Method::POST, &path, &load.world.clerk, Some(&refund(amount)), &headers).await
            {
                load.acks.lock().unwrap().replays_run.push(id);
            }
        }
    }
}

/// Installs and uninstalls the catalog agent, one at a time.
async fn installer(load: Arc<Load>, worker: usize) {
    let mut install = true;
    while !load.stop.load(Ordering::Relaxed) {
        let url = load.url(worker).to_string();
        load.acks.lock().unwrap().catalog_unsettled = true;
        let answer = if install {
            let body = json!({ "catalog": CATALOG_AGENT });
            load.send(&url, Method::POST, "/v1/marketplace/install", &load.world.admin, Some(&body), &[]).await
        } else {
            let path = format!("/v1/marketplace/installed/{CATALOG_AGENT}");
            load.send(&url, Method::DELETE, &path, &load.world.admin, None, &[]).await
        };
        match answer {
            Some((200, _)) => {
                let mut acks = load.acks.lock().unwrap();
                acks.catalog.push(install);
                acks.catalog_unsettled = false;
                install = !install;
            }
            // Already in that state (the unacknowledged attempt before took effect): flip.
            Some((status, body)) if status == 409 || status == 404 => {
                load.refused(if install { "install" } else { "uninstall" }, status, &body);
                install = !install;
            }
            Some((status, body)) => {
                load.refused(if install { "install" } else { "uninstall" }, status, &body);
                pause().await;
            }
            None => pause().await,
        }
    }
}

/// A small deterministic generator for the kill moments (xorshift64*).
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

async fn run(label: &str, world: Arc<World>, hosts: usize, seed: u64) {
    let mut fleet: Vec<Serve> = (0..hosts).map(|_| Serve::new(support::op::free_port())).collect();
    // A second host gets its own data directory holding the shared master key.
    let dirs: Vec<PathBuf> = (0..hosts)
        .map(|i| {
            if i == 0 {
                return world.dir.clone();
            }
            let d = world.dir.join(format!("host-{i}"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::copy(world.dir.join("master.key"), d.join("master.key")).unwrap();
            d
        })
        .collect();
    let database_url = world.database_url.as_deref();
    for (h, d) in fleet.iter_mut().zip(&dirs) {
        h.start(d, database_url).await;
    }
    let load = Arc::new(Load {
        world: world.clone(),
        urls: fleet.iter().map(Serve::url).collect(),
        http: reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap(),
        stop: AtomicBool::new(false),
        stop_approver: AtomicBool::new(false),
        amounts: AtomicU64::new(0),
        acks: Mutex::default(),
    });
    let approving = tokio::spawn(approver(load.clone(), 0));
    let mut workers = Vec::new();
    for w in 0..3 {
        workers.push(tokio::spawn(direct_calls(load.clone(), w)));
    }
    for w in 0..2 {
        workers.push(tokio::spawn(held_calls(load.clone(), w)));
    }
    workers.push(tokio::spawn(presenter(load.clone(), 1)));
    workers.push(tokio::spawn(installer(load.clone(), 1)));
    workers.push(tokio::spawn(oauth_calls(load.clone(), 1)));

    // The kills: always the last host (with two, the first keeps serving throughout).
    let mut dice = Dice(seed | 1);
    let victim = hosts - 1;
    let mut restarts = Vec::new();
    for _ in 0..kills() {
        tokio::time::sleep(Duration::from_millis(dice.below(1200))).await;
        fleet[victim].kill().await;
        restarts.push(fleet[victim].start(&dirs[victim], database_url).await);
    }
    // Let the last life run, then stop the load and let the workers finish what they hold.
    tokio::time::sleep(Duration::from_millis(800)).await;
    load.stop.store(true, Ordering::Relaxed);
    for w in workers {
        tokio::time::timeout(Duration::from_secs(30), w).await.expect("a worker ends").unwrap();
    }
    load.stop_approver.store(true, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(30), approving).await.expect("the approver ends").unwrap();

    let report = check(&world, &load, &fleet[0].url(), &dirs[0]).await;
    let slowest = restarts.iter().max().copied().unwrap_or_default();
    eprintln!(
        "crash suite ({label}): {} kills, {report}; slowest restart to /healthz {} ms",
        restarts.len(),
        slowest.as_millis()
    );
    for mut h in fleet {
        h.kill().await;
    }
}

/// Checks everything the hosts acknowledged against the stand-in, the database and the audit.
async fn check(world: &World, load: &Load, url: &str, dir: &Path) -> String {
    let acks = std::mem::take(&mut *load.acks.lock().unwrap());
    let database_url =
        world.database_url.clone().unwrap_or_else(|| airlock::Config::new(dir.to_path_buf()).database_url());
    let db = airlock_store::Db::connect_without_migrations(&database_url).await.unwrap();

    // 1. No refund reached the stand-in twice; every acknowledged call reached it.
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for (method, path, body) in world.billed.requests.lock().unwrap().iter() {
        assert_eq!((method.as_str(), path.as_str()), ("POST", "/refunds"));
        let body: Value = serde_json::from_str(body).unwrap();
        let amount: u64 = body["amount"].as_str().unwrap().trim_end_matches(".00").parse().unwrap();
        *seen.entry(amount).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "refunds executed more than once (amount, times): {twice:?}");
    let unseen: Vec<_> = acks.calls.iter().filter(|(_, a)| !seen.contains_key(a)).collect();
    assert!(unseen.is_empty(), "acknowledged calls the stand-in never saw: {unseen:?}");
    assert!(acks.replays_run.is_empty(), "spent grants that ran again: {:?}", acks.replays_run);

    // 2. Every acknowledged call is in the audit trail, allowed, once.
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT outcome, detail FROM audit_events WHERE tenant = 'default' AND kind = 'tool.call'")
            .fetch_all(db.pool())
            .await
            .unwrap();
    let mut audited: HashMap<String, Vec<String>> = HashMap::new();
    for (outcome, detail) in rows {
        let detail: Value = serde_json::from_str(&detail).unwrap();
        if let Some(id) = detail["call_id"].as_str() {
            audited.entry(id.to_string()).or_default().push(format!("{outcome}/{}", detail["result"]));
        }
    }
    let mut missing = Vec::new();
    for call_id in acks.calls.iter().map(|(id, _)| id).chain(&acks.oauth_calls) {
        match audited.get(call_id).map(Vec::as_slice) {
            Some([one]) if one == "allowed/\"ok\"" => {}
            other => missing.push((call_id.clone(), other.map(<[String]>::to_vec))),
        }
    }
    assert!(missing.is_empty(), "acknowledged calls not audited as allowed exactly once: {missing:?}");

    // 3. Decisions: as acknowledged, and none made or spent twice.
    let approvals: Vec<(String, String)> =
        sqlx::query_as("SELECT id, status FROM approvals WHERE tenant = 'default'").fetch_all(db.pool()).await.unwrap();
    let status: HashMap<String, String> = approvals.into_iter().collect();
    for (id, approved) in &acks.decisions {
        let s = status.get(id).map(String::as_str);
        let expected: &[&str] = if *approved { &["approved", "consumed"] } else { &["denied"] };
        assert!(s.is_some_and(|s| expected.contains(&s)), "approval {id} acknowledged as approved={approved} is {s:?}");
    }
    let moves: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT grant_id, event, COUNT(*) FROM ledger_events WHERE tenant = 'default' \
         AND event IN ('issue', 'deny', 'consume') GROUP BY grant_id, event",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    let doubled: Vec<_> = moves.iter().filter(|(_, _, n)| *n > 1).collect();
    assert!(doubled.is_empty(), "grants decided or spent more than once: {doubled:?}");
    let decided: HashSet<&str> = acks.decisions.iter().map(|(id, _)| id.as_str()).collect();
    let granted: HashSet<&str> = moves.iter().map(|(id, _, _)| id.as_str()).collect();
    assert!(decided.is_subset(&granted), "an acknowledged decision left no grant");

    // 4. The chain verifies online, and offline against checkpoints signed now.
    let http = reqwest::Client::new();
    let verify: Value = http
        .get(format!("{url}/v1/audit/verify"))
        .bearer_auth(&world.admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(verify["broken_at"], Value::Null, "{verify}");
    let signed = http.post(format!("{url}/v1/audit/checkpoints")).bearer_auth(&world.admin).send().await.unwrap();
    assert!(signed.status().is_success(), "{}", signed.text().await.unwrap());
    let key: Value = http
        .get(format!("{url}/v1/audit/checkpoint-key"))
        .bearer_auth(&world.admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let export = dir.join("crash-export.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["audit", "export", "--out", export.to_str().unwrap(), "--server", url, "--data-dir"])
        .arg(dir)
        .env_remove("AIRLOCK_ADMIN_TOKEN")
        .env_remove("AIRLOCK_TOKEN")
        .env_remove("AIRLOCK_TENANT")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["audit", "verify", "--export", export.to_str().unwrap(), "--key", key["public_key"].as_str().unwrap()])
        .args(["--server", "http://127.0.0.1:9", "--data-dir", "/nonexistent"])
        .output()
        .unwrap();
    assert!(out.status.success(), "offline verify: {}", String::from_utf8_lossy(&out.stderr));

    // 5. The catalog agent is whole or absent, and as the last acknowledged step left it.
    let installed: Vec<(String,)> =
        sqlx::query_as("SELECT agent FROM installations WHERE tenant = 'default' AND agent = $1")
            .bind(CATALOG_AGENT)
            .fetch_all(db.pool())
            .await
            .unwrap();
    let agents: Vec<(String,)> =
        sqlx::query_as("SELECT name FROM agents WHERE tenant = 'default' AND name = $1 AND revoked_at IS NULL")
            .bind(CATALOG_AGENT)
            .fetch_all(db.pool())
            .await
            .unwrap();
    let components: Vec<(String,)> =
        sqlx::query_as("SELECT agent FROM installed_components WHERE tenant = 'default' AND agent = $1")
            .bind(CATALOG_AGENT)
            .fetch_all(db.pool())
            .await
            .unwrap();
    let whole = !installed.is_empty() && !agents.is_empty() && !components.is_empty();
    let absent = installed.is_empty() && agents.is_empty() && components.is_empty();
    assert!(
        whole || absent,
        "half an install: installation {}, agent {}, components {}",
        installed.len(),
        agents.len(),
        components.len()
    );
    if let (Some(last), false) = (acks.catalog.last(), acks.catalog_unsettled) {
        assert_eq!(whole, *last, "the last acknowledged {} did not hold", if *last { "install" } else { "uninstall" });
    }
    db.pool().close().await;

    // 6. The OAuth2 connection came through every kill: no rotation lost or spent twice, no
    // token the provider never issued shown to the API, and it still works.
    let input = json!({ "connection": OAUTH_CONNECTION, "url": format!("http://{}/user", world.provider_addr) });
    let last = http
        .post(format!("{url}/v1/tools/probe.fetch/call"))
        .bearer_auth(&world.clerk)
        .json(&input)
        .send()
        .await
        .unwrap();
    let last: Value = last.json().await.unwrap();
    assert_eq!(last["result"]["status"], 200, "the connection works after the kills: {last}");
    let connections: Value =
        http.get(format!("{url}/v1/connections")).bearer_auth(&world.admin).send().await.unwrap().json().await.unwrap();
    let state = connections["connections"].as_array().unwrap().iter().find(|c| c["name"] == OAUTH_CONNECTION).unwrap()
        ["state"]
        .clone();
    assert_eq!(state, "connected", "{connections}");
    let provider = world.provider.lock().unwrap();
    assert!(
        provider.refused.is_empty(),
        "refresh tokens refused by the provider (a rotation lost): {:?}",
        provider.refused
    );
    assert!(provider.foreign_bearers.is_empty(), "tokens the provider never issued: {:?}", provider.foreign_bearers);
    assert!(provider.refreshes as usize > acks.oauth_calls.len(), "every call refreshed");

    let mut refused: Vec<_> = acks.refused.iter().collect();
    refused.sort();
    format!(
        "{} calls acknowledged ({} re-attached after a crash), {} refunds at the stand-in, duplicates 0, \
         missing audit 0, {} decisions, {} catalog steps acknowledged, {} OAuth2 calls acknowledged over {} \
         refreshes (0 refused); refusals {refused:?}",
        acks.calls.len(),
        acks.resumed,
        seen.len(),
        acks.decisions.len(),
        acks.catalog.len(),
        acks.oauth_calls.len(),
        provider.refreshes
    )
}
