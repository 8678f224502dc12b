//! Checks per second through the OpenFGA HTTP API (`POST /stores/{id}/check`),
//! server and load client in one process on loopback, 2 cores shared.
//!
//! The server runs on its own 2-worker tokio runtime; the client keeps
//! `CONCURRENCY` requests in flight over keep-alive connections for the
//! duration, then reports checks/s and latency percentiles.
//!
//! Run: `cargo bench -p airlock --bench openfga_http` (AIRLOCK_BENCH_SECS, default 5).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock::{Airlock, Config};
use serde_json::json;

const MODEL: &str = "model\n  schema 1.1\ntype user\ntype group\n  relations\n    define member: [user]\ntype document\n  relations\n    define viewer: [user, group#member]\n";

fn main() {
    let secs: f64 = std::env::var("AIRLOCK_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let server_rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, token, store) = server_rt.block_on(async {
        let mut config = Config::new(dir.path().to_path_buf());
        config.register_bundled = false;
        let host = Arc::new(Airlock::open(&config).await.expect("open"));
        let store = host.rebac.create_store("bench").await.expect("store");
        host.rebac.write_model(&store.id, MODEL).await.expect("model");
        let tuples: Vec<_> = (0..10_000)
            .map(|i| airlock_rebac::Tuple::new(format!("document:d{}", i % 1000), "viewer", format!("user:u{i}")))
            .chain([
                airlock_rebac::Tuple::new("document:target", "viewer", "group:eng#member"),
                airlock_rebac::Tuple::new("group:eng", "member", "user:anne"),
            ])
            .collect();
        host.rebac.write(&store.id, &tuples).await.expect("tuples");
        // The store is a tenant; an auditor-role token of it asks the checks.
        host.people.tenants.ensure(&store.id).await.expect("tenant");
        let reader = airlock::tenancy::NewToken {
            name: "bench".into(),
            member: None,
            role: Some("auditor".into()),
            expires_at: None,
            created_by: "bench".into(),
        };
        let (token, _) = host.people.tokens.create(Some(&store.id), &reader).await.expect("token");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = airlock::api::router(host.clone());
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), token, store.id)
    });

    println!("openfga_http bench: {secs}s per case, POST /stores/{{id}}/check (userset chain, allowed)");
    println!("{:>8} {:>12} {:>9} {:>9}", "inflight", "checks/s", "p50 us", "p99 us");
    let client_rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    for concurrency in [1usize, 8, 32, 64] {
        let (n, elapsed, mut lat) = client_rt.block_on(async {
            let client =
                reqwest::Client::builder().tcp_nodelay(true).pool_max_idle_per_host(256).build().expect("client");
            let check_url = format!("{url}/stores/{store}/check");
            let body =
                json!({ "tuple_key": { "user": "user:anne", "relation": "viewer", "object": "document:target" } })
                    .to_string();
            let stop = Arc::new(AtomicBool::new(false));
            let start = Instant::now();
            let tasks: Vec<_> = (0..concurrency)
                .map(|_| {
                    let (client, check_url, body, token, stop) =
                        (client.clone(), check_url.clone(), body.clone(), token.clone(), stop.clone());
                    tokio::spawn(async move {
                        let mut lat = Vec::new();
                        while !stop.load(Ordering::Relaxed) {
                            let t = Instant::now();
                            let resp = client
                                .post(&check_url)
                                .bearer_auth(&token)
                                .header("content-type", "application/json")
                                .body(body.clone())
                                .send()
                                .await
                                .expect("send");
                            let text = resp.text().await.expect("body");
                            assert!(text.contains("\"allowed\":true"), "{text}");
                            lat.push(t.elapsed());
                        }
                        lat
                    })
                })
                .collect();
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            stop.store(true, Ordering::Relaxed);
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.expect("task"));
            }
            (all.len(), start.elapsed(), all)
        });
        lat.sort();
        let at = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
        println!("{concurrency:>8} {:>12.0} {:>9.1} {:>9.1}", n as f64 / elapsed.as_secs_f64(), at(0.5), at(0.99));
    }
}
