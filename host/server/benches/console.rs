//! Console page loads: server time of each page's shell and the API reads its script makes,
//! over a tenant with 10,000 audit events and 200 pending approvals.
//!
//! The host is a real one (SQLite, a 2-worker tokio runtime as `airlock serve`) serving on
//! loopback; the client is one keep-alive reqwest client authenticated as the tenant's admin
//! (a bearer token: the same authentication door as the console's session cookie). Two
//! catalog agents are installed so the agents and permissions pages have rows to build.
//!
//! For each page the bench times, per round, the shell (`/console/{page}`) and the page's
//! reads issued together as the browser does (`Promise.all`), from the first request to the
//! last body read: "page" is that wall time. "slowest read" is the slowest single request of
//! the round. Static assets are left out: they are compiled in and cached immutable by
//! their versioned URL, so a page load after the first does not fetch them.
//!
//! Every response must be 200 with the expected content (a bench that times errors is
//! worthless): the queue must hold the 200 pending approvals, the search its page of events.
//!
//! Run: `cargo bench -p airlock --bench console` (AIRLOCK_BENCH_ROUNDS, default 50;
//! AIRLOCK_BENCH_EVENTS, default 10000; AIRLOCK_BENCH_PENDING, default 200).

use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock::marketplace::{InstallOptions, PackageSource};
use airlock::{Airlock, Config};
use airlock_approvals::NewApproval;
use airlock_audit::AuditEvent;
use serde_json::{json, Value};

const TENANT: &str = "default";

/// Each console page and the reads its script makes on load (see `console/assets/*.js`).
const PAGES: &[(&str, &[&str])] = &[
    (
        "overview",
        &[
            "/v1/me",
            "/v1/audit/summary?minutes=60",
            "/v1/approvals?status=pending",
            "/v1/marketplace/installed",
            "/v1/audit/search?limit=10",
        ],
    ),
    ("approvals", &["/v1/me", "/v1/approvals?status=pending", "/v1/approvals"]),
    ("audit", &["/v1/me", "/v1/audit/search?limit=50"]),
    (
        "agents",
        &[
            "/v1/me",
            "/v1/agents",
            "/v1/tuples",
            "/v1/policies",
            "/v1/audit/search?agent=agent%3Aoffboarding&kind=tool.call&limit=5",
            "/v1/audit/search?agent=agent%3Acrm&kind=tool.call&limit=5",
        ],
    ),
    ("permissions", &["/v1/me", "/v1/tuples", "/v1/agents"]),
    ("marketplace", &["/v1/me", "/v1/marketplace/catalog"]),
    ("connections", &["/v1/me", "/v1/connections", "/v1/marketplace/installed"]),
];

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn percentile(xs: &mut [Duration], p: f64) -> Duration {
    xs.sort();
    xs[((xs.len() - 1) as f64 * p).round() as usize]
}

/// Fills the tenant's trail: tool calls (one in ten denied) through the two agents, each with
/// its delegation chain, as the gate and the sandbox write them.
async fn seed_audit(host: &Airlock, events: usize) {
    for i in 0..events {
        let (agent, tool) = if i % 2 == 0 {
            ("agent:offboarding", "offboarding.issue-refund")
        } else {
            ("agent:crm", "crm.update-contact")
        };
        let outcome = if i % 10 == 0 { "denied" } else { "allowed" };
        host.audit.record(AuditEvent {
            tenant: TENANT.into(),
            kind: "tool.call".into(),
            outcome: outcome.into(),
            agent: agent.into(),
            tool: tool.into(),
            detail: json!({ "call_id": format!("bench-{i}"), "elapsed_ms": 3,
                            "chain": ["user:olivia", agent, format!("tool:{tool}"), "https://api.example.com"] }),
        });
    }
    host.audit.flush().await.expect("audit flush");
}

async fn seed_approvals(host: &Airlock, pending: usize) {
    for i in 0..pending {
        let details = json!({ "customer_id": format!("c-{i}"), "amount": "49.90", "currency": "EUR" }).to_string();
        host.approvals
            .create(
                TENANT,
                NewApproval {
                    agent: "agent:offboarding".into(),
                    tool: "offboarding.issue-refund".into(),
                    call_id: Some(format!("bench-call-{i}")),
                    action: "billing.refund".into(),
                    note: "refund after offboarding".into(),
                    role: Some("cfo".into()),
                    details,
                    ttl: Some(Duration::from_secs(3600)),
                },
            )
            .await
            .expect("approval");
    }
}

/// GETs `path`; panics unless it answers 200 (JSON reads must parse).
async fn get(http: &reqwest::Client, base: &str, token: &str, path: &str) -> (Duration, Value) {
    let started = Instant::now();
    let resp = http.get(format!("{base}{path}")).bearer_auth(token).send().await.expect("request");
    let status = resp.status();
    let body = resp.text().await.expect("body");
    let took = started.elapsed();
    assert_eq!(status, 200, "{path}: {body}");
    let value = if path.starts_with("/console/") {
        assert!(body.contains("<main"), "{path} is not the console shell");
        Value::Null
    } else {
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path} is not JSON ({e}): {body}"))
    };
    (took, value)
}

/// Checks what a page's reads must show with the seeded data.
fn check(path: &str, v: &Value, pending: usize) {
    match path {
        "/v1/approvals?status=pending" => {
            assert_eq!(v["approvals"].as_array().map(Vec::len), Some(pending), "the queue holds every pending approval")
        }
        "/v1/audit/search?limit=50" => assert_eq!(v["events"].as_array().map(Vec::len), Some(50), "a page of events"),
        "/v1/agents" => assert!(v["agents"].as_array().is_some_and(|a| a.len() >= 2), "{v}"),
        _ => {}
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds = env_or("AIRLOCK_BENCH_ROUNDS", 50);
    let events = env_or("AIRLOCK_BENCH_EVENTS", 10_000);
    let pending = env_or("AIRLOCK_BENCH_PENDING", 200);

    let dir = tempfile::tempdir().expect("tmp");
    let host = Arc::new(Airlock::open(&Config::new(dir.path().to_path_buf())).await.expect("open"));
    for agent in ["offboarding", "crm"] {
        host.install(TENANT, &PackageSource::Catalog(agent.into()), &InstallOptions::default(), &|_| {})
            .await
            .expect("install");
    }
    let seeding = Instant::now();
    seed_audit(&host, events).await;
    seed_approvals(&host, pending).await;
    eprintln!("seeded {events} audit events and {pending} pending approvals in {}", ms(seeding.elapsed()));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = airlock::api::router(host.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    let token = std::fs::read_to_string(dir.path().join(airlock::tenancy::DEFAULT_ADMIN_TOKEN_FILE))
        .expect("the default tenant's admin token")
        .trim()
        .to_string();
    let http = reqwest::Client::new();

    println!(
        "console page loads, {rounds} rounds, SQLite, {events} audit events, {pending} pending approvals (2 server workers)"
    );
    println!("{:<12} {:>6} {:>12} {:>12} {:>14}", "page", "reads", "page p50", "page p95", "slowest read p95");
    for (page, reads) in PAGES {
        let shell = format!("/console/{page}");
        let (mut walls, mut slowest) = (Vec::new(), Vec::new());
        for round in 0..rounds + 3 {
            let started = Instant::now();
            let (shell_took, _) = get(&http, &base, &token, &shell).await;
            let answers = futures_util::future::join_all(reads.iter().map(|p| get(&http, &base, &token, p))).await;
            let wall = started.elapsed();
            for (path, (_, v)) in reads.iter().zip(&answers) {
                check(path, v, pending);
            }
            let slowest_read = answers.iter().map(|(d, _)| *d).chain([shell_took]).max().unwrap_or_default();
            if round >= 3 {
                // The first rounds warm connections and SQLite's page cache.
                walls.push(wall);
                slowest.push(slowest_read);
            }
        }
        println!(
            "{:<12} {:>6} {:>12} {:>12} {:>14}",
            page,
            reads.len() + 1,
            ms(percentile(&mut walls, 0.5)),
            ms(percentile(&mut walls, 0.95)),
            ms(percentile(&mut slowest, 0.95))
        );
    }
}
