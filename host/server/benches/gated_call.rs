//! Bare wasmtime vs Airlock's gated call, on 1 and 2 threads.
//!
//! Both run the same component (plugins/sandbox-probe, tool `echo`) on the same
//! engine, with the same tuned pooling allocator, a fresh store per call:
//!
//! - bare:  instantiate the cached `InstancePre` + call `tools.call("echo")`;
//! - gated: `Airlock::call_tool`: the `can_use` authz check, a fresh sandboxed
//!   store with fuel, epoch deadline and memory cap, the call, and the audit
//!   record (hash-chained, written to SQLite by the background writer).
//!
//! Gated throughput counts the time the audit writer needs to catch up after
//! the run, so a backlog cannot flatter it.
//!
//! Run: `cargo bench -p airlock --bench gated_call` (AIRLOCK_BENCH_SECS=3 per case by default).

use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock::agents::Agent;
use airlock::{Airlock, Config};
use airlock_runtime::bindings::ToolPre;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

struct Bare {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

const INPUT: &str = r#"{"n":1}"#;

fn bare_pre(engine: &Engine) -> ToolPre<Bare> {
    let component = Component::new(engine, airlock::bundled::SANDBOX_PROBE).expect("compile probe");
    let mut linker = Linker::<Bare>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("wasi");
    linker.define_unknown_imports_as_traps(&component).expect("stub airlock imports");
    ToolPre::new(linker.instantiate_pre(&component).expect("instantiate_pre")).expect("tool exports")
}

async fn bare_call(engine: &Engine, pre: &ToolPre<Bare>) {
    let mut store = Store::new(engine, Bare { wasi: WasiCtxBuilder::new().build(), table: ResourceTable::new() });
    store.set_fuel(u64::MAX).expect("fuel");
    store.set_epoch_deadline(u64::MAX / 2);
    let tool = pre.instantiate_async(&mut store).await.expect("instantiate");
    let out = tool.airlock_tool_tools().call_call(&mut store, "echo", INPUT).await.expect("call");
    assert!(matches!(out.as_deref(), Ok(INPUT)));
}

async fn gated_call(host: &Airlock, agent: &Agent) {
    let report = host.call_tool(agent, "probe.echo", INPUT).await.expect("gate");
    assert!(report.outcome.result.is_ok(), "{:?}", report.outcome.result);
}

/// Runs `threads` OS threads, each with its own current-thread runtime, calling `f` for `secs`.
/// Returns (calls, elapsed, per-call latencies of thread 0).
fn run<F, Fut>(threads: usize, secs: f64, f: F) -> (u64, Duration, Vec<Duration>)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let f = Arc::new(f);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let f = f.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(async {
                    // Warm up: first instantiations fault in the pool's pages.
                    for _ in 0..200 {
                        f().await;
                    }
                    let mut lat = Vec::new();
                    let mut n = 0u64;
                    let until = Instant::now() + Duration::from_secs_f64(secs);
                    while Instant::now() < until {
                        let t = Instant::now();
                        f().await;
                        if i == 0 {
                            lat.push(t.elapsed());
                        }
                        n += 1;
                    }
                    (n, lat)
                })
            })
        })
        .collect();
    let mut total = 0;
    let mut lat0 = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        let (n, lat) = h.join().expect("bench thread");
        total += n;
        if i == 0 {
            lat0 = lat;
        }
    }
    (total, start.elapsed(), lat0)
}

fn pct(lat: &mut [Duration], p: f64) -> f64 {
    lat.sort();
    let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
    lat.get(i).map(|d| d.as_secs_f64() * 1e6).unwrap_or(f64::NAN)
}

fn main() {
    let secs: f64 = std::env::var("AIRLOCK_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let background =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (host, agent) = background.block_on(async {
        let mut config = Config::new(dir.path().to_path_buf());
        config.register_bundled = false;
        let host = Arc::new(Airlock::open(&config).await.expect("open host"));
        host.add_component("probe", airlock::bundled::SANDBOX_PROBE, "bench").await.expect("add probe");
        host.agents.create("default", "bench").await.expect("agent");
        host.rebac
            .write("default", &[airlock_rebac::Tuple::new("tool:probe.echo", "can_use", "agent:bench")])
            .await
            .expect("tuple");
        (host, Agent { tenant: "default".into(), name: "bench".into(), on_behalf_of: vec![] })
    });
    let engine = host.runtime.engine().clone();
    let pre = Arc::new(bare_pre(&engine));

    println!("gated_call bench: {secs}s per case, component sandbox-probe `echo`, fresh store per call");
    println!("{:<8} {:>7} {:>12} {:>10} {:>10} {:>10}", "case", "threads", "calls/s", "mean us", "p50 us", "p99 us");
    let mut results = std::collections::HashMap::new();
    for threads in [1usize, 2] {
        let (e, p) = (engine.clone(), pre.clone());
        let (n, elapsed, mut lat) = run(threads, secs, move || {
            let (e, p) = (e.clone(), p.clone());
            async move { bare_call(&e, &p).await }
        });
        let rate = n as f64 / elapsed.as_secs_f64();
        println!(
            "{:<8} {:>7} {:>12.0} {:>10.2} {:>10.2} {:>10.2}",
            "bare",
            threads,
            rate,
            threads as f64 * 1e6 / rate,
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.99)
        );
        results.insert(("bare", threads), rate);

        let (h, a) = (host.clone(), agent.clone());
        let (n, elapsed, mut lat) = run(threads, secs, move || {
            let (h, a) = (h.clone(), a.clone());
            async move { gated_call(&h, &a).await }
        });
        let catch_up = Instant::now();
        background.block_on(host.flush());
        let elapsed = elapsed + catch_up.elapsed();
        let rate = n as f64 / elapsed.as_secs_f64();
        println!(
            "{:<8} {:>7} {:>12.0} {:>10.2} {:>10.2} {:>10.2}   (audit catch-up {:?})",
            "gated",
            threads,
            rate,
            threads as f64 * 1e6 / rate,
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.99),
            catch_up.elapsed()
        );
        results.insert(("gated", threads), rate);
    }
    let r = |k: &'static str, t: usize| results.get(&(k, t)).copied().unwrap_or(f64::NAN);
    println!("gated cost / bare cost, 1 thread : {:.2}x", r("bare", 1) / r("gated", 1));
    println!("gated cost / bare cost, 2 threads: {:.2}x", r("bare", 2) / r("gated", 2));
    println!("2-thread scaling, bare : {:.2}x", r("bare", 2) / r("bare", 1));
    println!("2-thread scaling, gated: {:.2}x", r("gated", 2) / r("gated", 1));
    let audited = background.block_on(host.audit.list("default", 0, i64::MAX)).map(|e| e.len()).unwrap_or(0);
    println!("audit events stored: {audited}");
}
