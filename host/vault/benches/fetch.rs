//! The cost of `Vault::fetch` over a plain reqwest call to the same local server.
//!
//! Both send `GET /contacts` with `Authorization: Bearer ...` to an axum server on
//! loopback, one request at a time; the vault also loads the connection from
//! SQLite, opens the sealed secret, checks egress and caps the response.
//!
//! Run: `cargo bench -p airlock-vault --bench fetch` (AIRLOCK_BENCH_SECS, default 3).

use std::time::{Duration, Instant};

use airlock_store::Db;
use airlock_vault::{Connection, ConnectionKind, FetchLimits, MasterKey, OutboundRequest, Vault};
use axum::routing::get;
use zeroize::Zeroizing;

fn pct(mut v: Vec<Duration>, p: f64) -> f64 {
    v.sort();
    v[((v.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6
}

fn main() {
    let secs: f64 = std::env::var("AIRLOCK_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let app = axum::Router::new().route("/contacts", get(|| async { "{\"results\":[]}" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });

        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::connect(&Db::sqlite_url(dir.path())).await.expect("db");
        let key = MasterKey::from_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").expect("key");
        let vault = Vault::open(db, key, FetchLimits::default()).await.expect("vault");
        let conn = Connection {
            name: "hubspot".into(),
            kind: ConnectionKind::Bearer,
            placement: None,
            base_url: Some(format!("http://{addr}")),
            allowed_hosts: vec![addr.to_string()],
            requires_grant: false,
            oauth: None,
            allow_private_network: true, // the stand-in listens on loopback
            expose_token: false,
            state: None,
        };
        vault.put("acme", &conn, Zeroizing::new("pat_bench_secret".into())).await.expect("put");
        let plain = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let url = format!("http://{addr}/contacts");

        println!("{:<14} {:>10} {:>9} {:>9}", "case", "calls/s", "p50 us", "p99 us");
        let mut results = Vec::new();
        for case in ["plain reqwest", "vault.fetch"] {
            for _ in 0..200 {
                let _ = plain.get(&url).bearer_auth("pat_bench_secret").send().await.expect("warm").bytes().await;
            }
            let mut lat = Vec::new();
            let until = Instant::now() + Duration::from_secs_f64(secs);
            while Instant::now() < until {
                let t = Instant::now();
                if case == "plain reqwest" {
                    let resp = plain.get(&url).bearer_auth("pat_bench_secret").send().await.expect("send");
                    assert_eq!(resp.status(), 200);
                    let _ = resp.bytes().await.expect("body");
                } else {
                    let req =
                        OutboundRequest { method: "GET".into(), url: "/contacts".into(), headers: vec![], body: None };
                    assert_eq!(vault.fetch("acme", "hubspot", req, false).await.expect("fetch").status, 200);
                }
                lat.push(t.elapsed());
            }
            let rate = lat.len() as f64 / secs;
            let (p50, p99) = (pct(lat.clone(), 0.5), pct(lat, 0.99));
            println!("{case:<14} {rate:>10.0} {p50:>9.1} {p99:>9.1}");
            results.push(p50);
        }
        println!("vault.fetch overhead at p50: {:.1} us ({:.2}x)", results[1] - results[0], results[1] / results[0]);
    });
}
