//! The soak: a real `airlock serve` under steady load for a long time, and under many calls
//! waiting for people at once. `scripts/soak` runs it (it is `#[ignore]`d: not part of
//! `scripts/test`); it prints its figures and fails if they drift.
//!
//! Phase 1, `AIRLOCK_SOAK_MINUTES` (default 60) of mixed load at `AIRLOCK_SOAK_RATE` operations
//! per second (default 100), open loop (a slow answer does not slow the load): gated calls that
//! reach a stand-in API through the vault, calls held by an approval policy and approved by the
//! CFO with her passkey, tool lists and audit pages read. Every 10 s one row: operations and
//! errors in the window, p50 and p99 latency (held calls, which wait for a person, excluded), the
//! server's RSS and open file descriptors. Fails when the last window's RSS is more than 1.5x
//! the first's (plus 32 MiB) or the descriptors grew by more than 64.
//!
//! Phase 2, `AIRLOCK_SOAK_WAITERS` (default 10,000) calls held for approval at once. The default
//! quotas let an agent have 256 approvals waiting and a tenant 1,024, so they are spread over
//! tenants of four agents (250 each): 10 tenants for 10,000. Half call over HTTP, half over MCP
//! with a progress token (their answer streams progress while they wait). Reported: the
//! server's RSS while they wait, its CPU over `AIRLOCK_SOAK_QUIET_SECONDS` (default 60: whole
//! cycles of the MCP calls' progress reports, every 30 s, and lookups, every 60 s) quiet
//! seconds, then the time from the last approval to the last answer, and what the kernel
//! dropped meanwhile. Every waiter must be answered, and the MCP ones without an error.
//!
//! `cold_start` (also `#[ignore]`d; `scripts/cold-start`): a host holding 50 agents installed
//! from the marketplace (the catalog's five in each of 10 tenants, their components compiled
//! in the cache) is killed and restarted `AIRLOCK_COLD_RESTARTS` times (default 5); each
//! restart reports the time to `/healthz`, to the answer of its first tool call (a gated
//! `hello.greet`), and then of an installed agent's tool list. Fails past 1 second.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_store::sqlx;
use reqwest::Method;
use serde_json::{json, Value};
use support::serve::{proc_cpu_ticks, proc_fds, proc_rss_kib, Serve};
use support::{Passkey, TestHost};

const SECRET: &str = "sk_billing_soak_91b2";
const HELD: &str = "offboarding.issue-refund";
const DIRECT: &str = "payouts.issue-refund";
const AGENTS_PER_TENANT: usize = 4;
const WAITERS_PER_AGENT: usize = 250;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One tenant as the load sees it: its admin, agents and approver.
struct Tenant {
    name: String,
    admin: String,
    agents: Vec<String>,
    carol: String,
    carol_key: Mutex<Passkey>,
}

#[test]
#[ignore = "long: run by scripts/soak"]
fn soak() {
    let minutes = env_or("AIRLOCK_SOAK_MINUTES", 60);
    let rate = env_or("AIRLOCK_SOAK_RATE", 100);
    let waiters = env_or("AIRLOCK_SOAK_WAITERS", 10_000) as usize;
    let per_tenant = AGENTS_PER_TENANT * WAITERS_PER_AGENT;
    let tenants = waiters.div_ceil(per_tenant).max(1);
    let tmp = tempfile::tempdir().unwrap();
    let outside = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (api, reached) = outside.block_on(counting_api());
    let world = Arc::new(setup(tmp.path(), api, tenants));
    outside.block_on(async {
        let mut serve = Serve::new(support::op::free_port());
        serve.start(tmp.path(), None).await;
        let pid = serve.pid();
        eprintln!(
            "soak: {minutes} min at {rate} ops/s, then {waiters} waiters over {tenants} tenant(s); server pid {pid}"
        );
        steady(&serve.url(), &world, pid, Duration::from_secs(minutes * 60), rate).await;
        waiting(&serve.url(), &world, pid, waiters, tmp.path()).await;
        eprintln!("soak: the stand-in API received {} requests", reached.load(Ordering::Relaxed));
        serve.kill().await;
    });
    outside.shutdown_timeout(Duration::from_secs(5));
}

/// A stand-in API that answers every request 200 and counts them (nothing kept per request).
async fn counting_api() -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let reached = Arc::new(AtomicU64::new(0));
    let counter = reached.clone();
    let app = axum::Router::new().fallback(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        async { axum::Json(json!({ "ok": true })) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, reached)
}

/// Provisions `tenants` tenants (the first is `default`) with an in-process host that then
/// stops: the components, a connection to the stand-in, four agents with their grants, the
/// policy holding refunds for a CFO, and carol, the CFO, with her passkey.
fn setup(dir: &Path, api: std::net::SocketAddr, tenants: usize) -> Vec<Tenant> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let made = rt.block_on(async {
        let t = TestHost::start_in(dir.to_path_buf(), None, support::test_limits()).await;
        t.host.add_component("offboarding", airlock::bundled::OFFBOARDING, "test").await.unwrap();
        t.host.add_component("payouts", airlock::bundled::OFFBOARDING, "test").await.unwrap();
        let mut made = Vec::new();
        for i in 0..tenants {
            let (name, admin) =
                if i == 0 { ("default".to_string(), t.admin.clone()) } else { (format!("soak{i}"), t.tenant_admin(&format!("soak{i}")).await) };
            let conn = json!({ "kind": "bearer", "base_url": format!("http://{api}"), "allowed_hosts": [api.to_string()],
                               "allow_private_network": true, "secret": SECRET });
            let (status, body) = t.request(Method::PUT, "/v1/connections/billing-api", &admin, Some(conn)).await;
            assert_eq!(status, 200, "{body}");
            let mut agents = Vec::new();
            let mut writes = vec![json!({ "user": "user:carol", "relation": "cfo", "object": format!("tenant:{name}") })];
            for a in 0..AGENTS_PER_TENANT {
                let agent = format!("clerk{a}");
                let (status, body) = t.request(Method::POST, "/v1/agents", &admin, Some(json!({ "name": agent }))).await;
                assert_eq!(status, 201, "{body}");
                agents.push(body["token"].as_str().unwrap().to_string());
                for (relation, object) in [
                    ("can_use", format!("tool:{HELD}")),
                    ("can_use", format!("tool:{DIRECT}")),
                    ("can_use", "connection:billing-api".to_string()),
                    ("offboard", "customer:c-7".to_string()),
                ] {
                    writes.push(json!({ "user": format!("agent:{agent}"), "relation": relation, "object": object }));
                }
            }
            let (status, body) = t.request(Method::POST, "/v1/tuples", &admin, Some(json!({ "writes": writes }))).await;
            assert_eq!(status, 200, "{body}");
            let policy = json!({ "tool": HELD, "role": "cfo", "ttl_seconds": 3600 });
            let (status, body) = t.request(Method::POST, "/v1/policies", &admin, Some(policy)).await;
            assert_eq!(status, 200, "{body}");
            let carol = t.member_token_in(&admin, "user:carol").await;
            t.passkey_in(&admin, &name, "user:carol").await;
            let key = Mutex::new(t.take_passkey(&name, "user:carol"));
            made.push(Tenant { name, admin, agents, carol, carol_key: key });
        }
        t.host.flush().await;
        made
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    made
}

fn refund(amount: u64) -> Value {
    json!({ "customer_id": "c-7", "amount": format!("{amount}.00"), "currency": "EUR" })
}

/// One request; status and JSON body, or `None` when it failed on the way.
async fn send(
    http: &reqwest::Client,
    url: &str,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let mut req = http.request(method, format!("{url}{path}")).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.json().await.unwrap_or(Value::Null)))
}

/// Approves pending approval `id` of `tenant` as carol, signing the step-up with her passkey.
async fn approve(http: &reqwest::Client, url: &str, tenant: &Tenant, id: &str) -> bool {
    let Some((200, started)) =
        send(http, url, Method::POST, &format!("/v1/approvals/{id}/step-up"), &tenant.carol, None).await
    else {
        return false;
    };
    let credential = tenant
        .carol_key
        .lock()
        .unwrap()
        .do_authentication(
            started["origin"].as_str().unwrap().parse().unwrap(),
            serde_json::from_value(started["options"].clone()).unwrap(),
        )
        .expect("the soft passkey signs");
    let body = json!({ "approve": true, "step_up": { "ceremony": started["ceremony"], "credential": credential } });
    matches!(
        send(http, url, Method::POST, &format!("/v1/approvals/{id}/decision"), &tenant.carol, Some(body)).await,
        Some((200, _))
    )
}

/// The pending approvals of `tenant`, every page.
async fn pending(http: &reqwest::Client, url: &str, tenant: &Tenant) -> Vec<String> {
    let mut ids = Vec::new();
    let mut before = String::new();
    loop {
        let path = format!("/v1/approvals?status=pending&limit=500{before}");
        let Some((200, page)) = send(http, url, Method::GET, &path, &tenant.admin, None).await else { return ids };
        ids.extend(page["approvals"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_string()));
        match page["next"].as_str() {
            Some(next) => before = format!("&before={next}"),
            None => return ids,
        }
    }
}

/// Latencies and errors of one window.
#[derive(Default)]
struct Window {
    micros: Vec<u64>,
    ops: u64,
    errors: HashMap<String, u64>,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Phase 1: the steady mixed load, one row per 10 s.
async fn steady(url: &str, world: &Arc<Vec<Tenant>>, pid: u32, length: Duration, rate: u64) {
    let http = reqwest::Client::new();
    let window = Arc::new(Mutex::new(Window::default()));
    let amounts = Arc::new(AtomicU64::new(1_000_000));
    let stop = Arc::new(AtomicBool::new(false));
    // The CFO of the default tenant decides what the held calls wait for.
    let approver = {
        let (http, url, world, stop) = (http.clone(), url.to_string(), world.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for id in pending(&http, &url, &world[0]).await {
                    approve(&http, &url, &world[0], &id).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let begun = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut rows: Vec<(u64, u64)> = Vec::new(); // (RSS KiB, fds) per window
    let mut next_row = begun + Duration::from_secs(10);
    let mut n: u64 = 0;
    eprintln!("soak: elapsed_s ops errors p50_us p99_us rss_mib fds");
    while begun.elapsed() < length {
        ticker.tick().await;
        n += 1;
        let (http, url, counted, amounts) = (http.clone(), url.to_string(), window.clone(), amounts.clone());
        let tenant_token = world[0].agents[(n % AGENTS_PER_TENANT as u64) as usize].clone();
        let admin = world[0].admin.clone();
        tokio::spawn(async move {
            let began = Instant::now();
            let (what, answer, timed) = match n % 10 {
                0 => {
                    let input = refund(amounts.fetch_add(1, Ordering::Relaxed));
                    (
                        "held",
                        send(&http, &url, Method::POST, &format!("/v1/tools/{HELD}/call"), &tenant_token, Some(input))
                            .await,
                        false,
                    )
                }
                1 => ("tools", send(&http, &url, Method::GET, "/v1/tools", &tenant_token, None).await, true),
                2 => ("audit", send(&http, &url, Method::GET, "/v1/audit?limit=50", &admin, None).await, true),
                _ => {
                    let input = refund(amounts.fetch_add(1, Ordering::Relaxed));
                    (
                        "call",
                        send(
                            &http,
                            &url,
                            Method::POST,
                            &format!("/v1/tools/{DIRECT}/call"),
                            &tenant_token,
                            Some(input),
                        )
                        .await,
                        true,
                    )
                }
            };
            let mut w = counted.lock().unwrap();
            w.ops += 1;
            match answer {
                Some((200, _)) if timed => w.micros.push(began.elapsed().as_micros() as u64),
                Some((200, _)) => {}
                Some((status, body)) => *w.errors.entry(format!("{what} {status} {}", body["code"])).or_default() += 1,
                None => *w.errors.entry(format!("{what} no answer")).or_default() += 1,
            }
        });
        if Instant::now() >= next_row {
            next_row += Duration::from_secs(10);
            let w = std::mem::take(&mut *window.lock().unwrap());
            let mut micros = w.micros;
            micros.sort_unstable();
            let (rss, fds) = (proc_rss_kib(pid), proc_fds(pid));
            rows.push((rss, fds));
            eprintln!(
                "soak: {:>6} {:>6} {:>4} {:>6} {:>7} {:>7.1} {:>5} {:?}",
                begun.elapsed().as_secs(),
                w.ops,
                w.errors.values().sum::<u64>(),
                percentile(&micros, 0.50),
                percentile(&micros, 0.99),
                rss as f64 / 1024.0,
                fds,
                w.errors
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    approver.await.unwrap();
    if let (Some(first), Some(last)) = (rows.get(1).or(rows.first()), rows.last()) {
        eprintln!(
            "soak: RSS {} -> {} MiB, fds {} -> {} (second window to last)",
            first.0 / 1024,
            last.0 / 1024,
            first.1,
            last.1
        );
        assert!(last.0 <= first.0 * 3 / 2 + 32 * 1024, "RSS grew from {} to {} KiB", first.0, last.0);
        assert!(last.1 <= first.1 + 64, "open descriptors grew from {} to {}", first.1, last.1);
    }
}

/// What the kernel counted on this machine that explains lost connections: packets dropped
/// because a CPU's backlog was full (`/proc/net/softnet_stat`, loopback traffic included) and
/// handshakes dropped because a listener's accept queue was full (`ListenOverflows`).
fn kernel_drops() -> (u64, u64) {
    let softnet = std::fs::read_to_string("/proc/net/softnet_stat").unwrap_or_default();
    let backlog =
        softnet.lines().filter_map(|l| l.split_whitespace().nth(1).and_then(|d| u64::from_str_radix(d, 16).ok())).sum();
    let netstat = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let lines: Vec<&str> = netstat.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    let overflows = match lines.as_slice() {
        [names, values, ..] => names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == "ListenOverflows")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0),
        _ => 0,
    };
    (backlog, overflows)
}

/// The causes of a client error, innermost last: they say what happened to the connection.
fn why(e: &reqwest::Error) -> String {
    let mut why = Vec::new();
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cause {
        why.push(c.to_string());
        cause = c.source();
    }
    why.join(": ")
}

/// One held call over HTTP: 200, or what went wrong.
async fn held_over_http(http: &reqwest::Client, url: &str, token: &str, i: usize) -> Result<(), String> {
    let resp = http
        .post(format!("{url}/v1/tools/{HELD}/call"))
        .bearer_auth(token)
        .json(&refund(i as u64))
        .send()
        .await
        .map_err(|e| why(&e))?;
    match resp.status().as_u16() {
        200 => Ok(()),
        status => Err(format!("http {status}")),
    }
}

/// One held call over MCP (Streamable HTTP, protocol 2026-07-28, a progress token): the
/// answer streams as Server-Sent Events, progress while it waits, then the result. Ok with
/// the progress notifications seen, or what went wrong.
async fn held_over_mcp(http: &reqwest::Client, url: &str, token: &str, i: usize) -> Result<usize, String> {
    let meta = json!({ "io.modelcontextprotocol/clientInfo": { "name": "soak", "version": "0" },
                       "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                       "io.modelcontextprotocol/clientCapabilities": {},
                       "progressToken": i });
    let resp = http
        .post(format!("{url}/mcp"))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", HELD)
        .json(&json!({ "jsonrpc": "2.0", "id": i, "method": "tools/call",
                       "params": { "name": HELD, "arguments": refund(i as u64), "_meta": meta } }))
        .send()
        .await
        .map_err(|e| why(&e))?;
    if resp.status() != 200 {
        return Err(format!("mcp {}", resp.status()));
    }
    let body = resp.text().await.map_err(|e| why(&e))?;
    let messages: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .chain(serde_json::from_str::<Value>(&body).ok())
        .collect();
    let progress = messages.iter().filter(|m| m["method"] == "notifications/progress").count();
    match messages.iter().find(|m| m["id"] == i) {
        Some(m) if m["result"].is_object() && m["result"]["isError"] != true => Ok(progress),
        Some(m) => Err(format!("mcp result {}", m["result"]["structuredContent"]["code"])),
        None => Err("mcp stream ended without the result".into()),
    }
}

/// Whether waiter `i` calls over MCP: every other one, or as `AIRLOCK_SOAK_MCP` says (`none`,
/// `all`), to tell what each kind costs.
fn mcp_waiter(i: usize) -> bool {
    match std::env::var("AIRLOCK_SOAK_MCP").unwrap_or_default().as_str() {
        "none" => false,
        "all" => true,
        _ => i % 2 == 1,
    }
}

/// Phase 2: `count` calls waiting for approval at once, half over HTTP and half over MCP,
/// then all approved.
async fn waiting(url: &str, world: &Arc<Vec<Tenant>>, pid: u32, count: usize, dir: &Path) {
    // The waiting calls' connections are idle for a minute or more. reqwest probes idle
    // connections (TCP keepalive, every 15 s, three misses and the connection is dropped with
    // ETIMEDOUT); 10,000 connections opened within seconds probe in step, and on one machine
    // all those probes and their answers go through loopback, whose per-CPU backlog (1,000
    // packets) overflows: without this, hundreds of waiters failed with "Connection timed out",
    // and the kernel counted as many dropped packets (printed below). Agents on other machines
    // do not share a backlog; here the waiters do not probe.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).tcp_keepalive(None).build().unwrap();
    let before = proc_rss_kib(pid);
    let drops_before = kernel_drops();
    let mut calls = Vec::with_capacity(count);
    let started = Instant::now();
    for i in 0..count {
        let tenant = &world[i / (AGENTS_PER_TENANT * WAITERS_PER_AGENT)];
        let token = tenant.agents[(i / WAITERS_PER_AGENT) % AGENTS_PER_TENANT].clone();
        let (http, url) = (http.clone(), url.to_string());
        calls.push(tokio::spawn(async move {
            let answer = if !mcp_waiter(i) {
                held_over_http(&http, &url, &token, i).await.map(|()| 0)
            } else {
                held_over_mcp(&http, &url, &token, i).await
            };
            (answer, Instant::now())
        }));
    }
    // Until every call is held (its approval committed).
    let db = airlock_store::Db::connect_without_migrations(&airlock::Config::new(dir.to_path_buf()).database_url())
        .await
        .unwrap();
    loop {
        let (held,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM approvals WHERE status = 'pending'")
            .fetch_one(db.pool())
            .await
            .unwrap();
        if held as usize >= count {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "only {held} of {count} calls held after 10 min");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let held_after = started.elapsed();
    let rss = proc_rss_kib(pid);
    let cpu_before = proc_cpu_ticks(pid);
    let quiet = env_or("AIRLOCK_SOAK_QUIET_SECONDS", 60);
    tokio::time::sleep(Duration::from_secs(quiet)).await;
    let ticks = proc_cpu_ticks(pid).saturating_sub(cpu_before);
    let cpu = ticks as f64 / quiet as f64; // % of one core (100 ticks/s)
    eprintln!(
        "soak: {count} calls held after {:.1} s ({} over MCP); server RSS {} -> {} MiB while they wait; \
         {cpu:.1}% of one core over {quiet} quiet seconds ({ticks} ticks)",
        held_after.as_secs_f64(),
        (0..count).filter(|i| mcp_waiter(*i)).count(),
        before / 1024,
        rss / 1024
    );

    // Approve every one, eight at a time per tenant.
    let decided_from = Instant::now();
    let mut approvers = Vec::new();
    for t in 0..world.len() {
        let (http, url, world) = (http.clone(), url.to_string(), world.clone());
        approvers.push(tokio::spawn(async move {
            let tenant = &world[t];
            let ids = pending(&http, &url, tenant).await;
            let mut ok = 0;
            for chunk in ids.chunks(8) {
                let done =
                    futures_util::future::join_all(chunk.iter().map(|id| approve(&http, &url, tenant, id))).await;
                ok += done.into_iter().filter(|d| *d).count();
            }
            (tenant.name.clone(), ok)
        }));
    }
    let mut approved = 0;
    for a in approvers {
        approved += a.await.unwrap().1;
    }
    let last_decision = Instant::now();
    let mut answered_ok = 0;
    let mut progress = 0;
    let mut last_answer = last_decision;
    let mut other: HashMap<String, usize> = HashMap::new();
    for c in calls {
        let (answer, at) = c.await.unwrap();
        match answer {
            Ok(reports) => {
                answered_ok += 1;
                progress += reports;
            }
            Err(why) => *other.entry(why).or_default() += 1,
        }
        last_answer = last_answer.max(at);
    }
    if !other.is_empty() {
        eprintln!("soak: calls not answered, by what went wrong: {other:?}");
    }
    let drops_after = kernel_drops();
    eprintln!(
        "soak: {approved} approved in {:.1} s; {answered_ok} of {count} calls answered (the MCP ones with {progress} \
         progress notifications); the last answer {} ms after the last approval; the kernel dropped {} packets \
         (full backlog) and {} handshakes (full accept queue) meanwhile",
        (last_decision - decided_from).as_secs_f64(),
        last_answer.saturating_duration_since(last_decision).as_millis(),
        drops_after.0 - drops_before.0,
        drops_after.1 - drops_before.1,
    );
    assert_eq!(answered_ok, count, "every held call runs once approved");
}

/// How many times `cold_start` restarts the host.
fn restarts() -> usize {
    env_or("AIRLOCK_COLD_RESTARTS", 5) as usize
}

#[test]
#[ignore = "a measurement: scripts/cold-start"]
fn cold_start() {
    const TENANTS: usize = 10;
    const CATALOG: [&str; 5] = ["offboarding", "crm", "code-review", "contentbot", "incident"];
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // Provisioned in-process: 10 tenants, each with the five catalog agents installed, and an
    // agent `first` allowed hello.greet in the default tenant.
    let (first, installed) = rt.block_on(async {
        let t = TestHost::start_in(tmp.path().to_path_buf(), None, support::catalog_limits()).await;
        let mut installed = String::new();
        for i in 0..TENANTS {
            let admin = if i == 0 { t.admin.clone() } else { t.tenant_admin(&format!("cold{i}")).await };
            for agent in CATALOG {
                let (status, report) =
                    t.request(Method::POST, "/v1/marketplace/install", &admin, Some(json!({ "catalog": agent }))).await;
                assert_eq!(status, 200, "installing {agent} in tenant {i}: {report}");
                if i == 0 && agent == "offboarding" {
                    installed = report["client_secret"].as_str().unwrap().to_string();
                }
            }
        }
        let (status, made) = t.request(Method::POST, "/v1/agents", &t.admin, Some(json!({ "name": "first" }))).await;
        assert_eq!(status, 201, "{made}");
        let writes =
            json!({ "writes": [{ "user": "agent:first", "relation": "can_use", "object": "tool:hello.greet" }] });
        let (status, body) = t.request(Method::POST, "/v1/tuples", &t.admin, Some(writes)).await;
        assert_eq!(status, 200, "{body}");
        let (_, list) = t.request(Method::GET, "/v1/marketplace/installed", &t.admin, None).await;
        assert_eq!(list["installed"].as_array().map(Vec::len), Some(CATALOG.len()), "{list}");
        t.host.flush().await;
        (made["token"].as_str().unwrap().to_string(), installed)
    });
    rt.block_on(async {
        let http = reqwest::Client::new();
        let mut serve = Serve::new(support::op::free_port());
        // The first start after provisioning; then the measured restarts.
        serve.start(tmp.path(), None).await;
        serve.kill().await;
        eprintln!("cold start: {} agents installed in {TENANTS} tenants", TENANTS * CATALOG.len());
        eprintln!("cold start: restart healthz_ms first_call_ms installed_agent_tool_list_ms");
        let mut slowest = Duration::ZERO;
        for n in 1..=restarts() {
            let begun = Instant::now();
            let healthz = serve.start(tmp.path(), None).await;
            let call = send(
                &http,
                &serve.url(),
                Method::POST,
                "/v1/tools/hello.greet/call",
                &first,
                Some(json!({ "name": "cold" })),
            )
            .await
            .expect("the first call is answered");
            let first_call = begun.elapsed();
            assert_eq!(call.0, 200, "{}", call.1);
            let begun_own = Instant::now();
            let own = send(&http, &serve.url(), Method::GET, "/v1/tools", &installed, None).await.expect("answered");
            let own_call = begun_own.elapsed();
            assert_eq!(own.0, 200, "{}", own.1);
            eprintln!(
                "cold start: {n:7} {:10} {:13} {:26}",
                healthz.as_millis(),
                first_call.as_millis(),
                own_call.as_millis()
            );
            slowest = slowest.max(first_call);
            serve.kill().await;
        }
        assert!(slowest < Duration::from_secs(1), "a restart took {slowest:?} to answer its first call");
    });
}
