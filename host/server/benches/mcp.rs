//! MCP `tools/call` per second through `/mcp` (rmcp, stateless, JSON responses), on loopback.
//!
//! The server is a real host on a 2-worker tokio runtime (as `airlock serve`), its listener
//! with TCP_NODELAY. Every call takes the whole gate: the bearer token is authenticated, the
//! `can_use` tuple checked, `hello.greet` runs in a fresh sandbox, and the call is audited.
//!
//! The load client is one agent (one token, one MCP "session"): it sends `initialize`, then
//! keeps 1, 8 and 32 `tools/call` requests in flight, each in-flight slot its own keep-alive
//! TCP connection with TCP_NODELAY. To leave the 2 cores to the server it is cheap: one
//! current-thread runtime on the main thread, request bytes built once per slot with only the
//! JSON-RPC id changing, a minimal HTTP/1.1 reader. Every response is parsed and must be a
//! successful tool result for the id sent (a benchmark that measures errors is worthless).
//! `AIRLOCK_BENCH_CLIENT=reqwest` uses reqwest instead, to show what a heavier client costs.
//!
//! Throughput counts the time the audit writer needs to catch up after each level, so a
//! backlog cannot flatter it.
//!
//! Run: `cargo bench -p airlock --bench mcp` (AIRLOCK_BENCH_SECS per level, default 3;
//! AIRLOCK_BENCH_WARMUP, default 1).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock::{Airlock, Config};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PROTOCOL: &str = "2025-06-18";
const TOOL: &str = "hello.greet";

/// One keep-alive HTTP/1.1 connection speaking just enough HTTP for this bench.
struct Conn {
    tcp: TcpStream,
    buf: Vec<u8>,
    head: String,
}

impl Conn {
    async fn open(addr: std::net::SocketAddr) -> Conn {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        Conn { tcp, buf: Vec::with_capacity(4096), head: String::new() }
    }

    /// POSTs `body` to /mcp; returns the status and the response body.
    async fn post(&mut self, headers: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut req = Vec::with_capacity(headers.len() + body.len() + 32);
        req.extend_from_slice(headers.as_bytes());
        req.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
        req.extend_from_slice(body);
        self.tcp.write_all(&req).await.expect("write");
        self.read_response().await
    }

    async fn read_response(&mut self) -> (u16, Vec<u8>) {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                self.head.clear();
                self.head.push_str(std::str::from_utf8(&self.buf[..end]).expect("utf-8 head"));
                let status: u16 = self.head.get(9..12).and_then(|s| s.parse().ok()).expect("status line");
                let len = self
                    .head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or_else(|| panic!("no content-length (chunked or SSE?): {}", self.head));
                let start = end + 4;
                while self.buf.len() < start + len {
                    self.fill().await;
                }
                let body = self.buf[start..start + len].to_vec();
                self.buf.drain(..start + len);
                return (status, body);
            }
            self.fill().await;
        }
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 8192];
        let n = self.tcp.read(&mut chunk).await.expect("read");
        assert!(n > 0, "server closed the connection");
        self.buf.extend_from_slice(&chunk[..n]);
    }
}

/// A `tools/call` body for `id`: pre-serialized halves around the id.
struct CallBody {
    before: Vec<u8>,
    after: Vec<u8>,
}

impl CallBody {
    fn new() -> CallBody {
        let full = json!({ "jsonrpc": "2.0", "id": 999_999_999u64, "method": "tools/call",
                           "params": { "name": TOOL, "arguments": { "name": "bench" } } })
        .to_string();
        let (before, after) = full.split_once("999999999").expect("id placeholder");
        CallBody { before: before.as_bytes().to_vec(), after: after.as_bytes().to_vec() }
    }

    fn with_id(&self, id: u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.before);
        out.extend_from_slice(id.to_string().as_bytes());
        out.extend_from_slice(&self.after);
    }
}

/// Panics unless `body` is a successful `hello.greet` result for `id`.
fn check_result(id: u64, status: u16, body: &[u8]) {
    let v: Value =
        serde_json::from_slice(body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)));
    assert!(
        status == 200
            && v["id"] == id
            && v["result"]["isError"] != true
            && v["result"]["structuredContent"]["greeting"] == "hello, bench",
        "not a successful tool result for id {id}: {status} {v}"
    );
}

/// The level's numbers: calls, elapsed (measured phase), latencies.
type Level = (u64, Duration, Vec<Duration>);

/// Keeps `inflight` raw-HTTP calls going: `warmup`, then `secs` measured.
async fn run_raw(addr: std::net::SocketAddr, headers: Arc<str>, inflight: usize, warmup: f64, secs: f64) -> Level {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for slot in 0..inflight {
        let (headers, measuring, stop) = (headers.clone(), measuring.clone(), stop.clone());
        let mut conn = Conn::open(addr).await;
        tasks.push(tokio::spawn(async move {
            let call = CallBody::new();
            let mut body = Vec::with_capacity(256);
            let mut lat = Vec::with_capacity(1 << 16);
            let mut id = (slot as u64 + 1) << 32;
            while !stop.load(Ordering::Relaxed) {
                id += 1;
                call.with_id(id, &mut body);
                let t = Instant::now();
                let (status, resp) = conn.post(&headers, &body).await;
                let took = t.elapsed();
                check_result(id, status, &resp);
                if measuring.load(Ordering::Relaxed) {
                    lat.push(took);
                }
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(warmup)).await;
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    measuring.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    (all.len() as u64, elapsed, all)
}

/// The same load through reqwest 0.12 (keep-alive pool, TCP_NODELAY).
async fn run_reqwest(url: &str, token: &str, inflight: usize, warmup: f64, secs: f64) -> Level {
    let client = reqwest::Client::builder().tcp_nodelay(true).pool_max_idle_per_host(256).build().expect("client");
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for slot in 0..inflight {
        let (client, url, token, measuring, stop) =
            (client.clone(), url.to_string(), token.to_string(), measuring.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let call = CallBody::new();
            let mut lat = Vec::with_capacity(1 << 16);
            let mut id = (slot as u64 + 1) << 32;
            while !stop.load(Ordering::Relaxed) {
                id += 1;
                let mut body = Vec::with_capacity(256);
                call.with_id(id, &mut body);
                let t = Instant::now();
                let resp = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("accept", "application/json, text/event-stream")
                    .header("content-type", "application/json")
                    .header("mcp-protocol-version", PROTOCOL)
                    .body(body)
                    .send()
                    .await
                    .expect("send");
                let status = resp.status().as_u16();
                let bytes = resp.bytes().await.expect("body");
                let took = t.elapsed();
                check_result(id, status, &bytes);
                if measuring.load(Ordering::Relaxed) {
                    lat.push(took);
                }
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(warmup)).await;
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    measuring.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    (all.len() as u64, elapsed, all)
}

/// CPU time (ns) this process's threads have run: (main thread = the client, all threads).
/// Under contention from other processes this is steadier than wall-clock rates.
fn cpu_ns() -> (u64, u64) {
    let read = |path: &std::path::Path| -> u64 {
        std::fs::read_to_string(path).ok().and_then(|s| s.split_whitespace().next()?.parse().ok()).unwrap_or(0)
    };
    let me = std::process::id().to_string();
    let mut client = 0;
    let mut all = 0;
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let ns = read(&task.path().join("schedstat"));
        if task.file_name().to_str() == Some(me.as_str()) {
            client = ns;
        }
        all += ns;
    }
    (client, all)
}

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn main() {
    let secs = env_f64("AIRLOCK_BENCH_SECS", 3.0);
    let warmup = env_f64("AIRLOCK_BENCH_WARMUP", 1.0);
    let use_reqwest = std::env::var("AIRLOCK_BENCH_CLIENT").as_deref() == Ok("reqwest");
    let levels: Vec<usize> = std::env::var("AIRLOCK_BENCH_LEVELS")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 8, 32]);

    // Logging as `airlock serve` sets it up, so disabled callsites cost what they cost there.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "airlock=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    // The server, as `airlock serve` runs it: the default multi-thread runtime (one worker per core).
    let server_rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (host, addr, token) = server_rt.block_on(async {
        let mut config = Config::new(dir.path().to_path_buf());
        config.register_bundled = false;
        let host = Arc::new(Airlock::open(&config).await.expect("open host"));
        host.add_component("hello", airlock::bundled::HELLO, "bench").await.expect("add hello");
        let token = host.agents.create("default", "bench").await.expect("agent");
        host.rebac
            .write("default", &[airlock_rebac::Tuple::new("tool:hello.greet", "can_use", "agent:bench")])
            .await
            .expect("tuple");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = airlock::api::router(host.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (host, addr, token)
    });
    let url = format!("http://{addr}/mcp");

    let client_rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let base = format!(
        "POST /mcp HTTP/1.1\r\nhost: {addr}\r\naccept: application/json, text/event-stream\r\n\
         content-type: application/json\r\nauthorization: Bearer {token}\r\n"
    );
    // initialize (no protocol-version header yet), then the initialized notification.
    client_rt.block_on(async {
        let mut conn = Conn::open(addr).await;
        let init = json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": { "name": "mcp-bench", "version": "0" } } });
        let (status, body) = conn.post(&base, init.to_string().as_bytes()).await;
        let v: Value = serde_json::from_slice(&body).expect("initialize answer is JSON");
        assert!(status == 200 && v["result"]["protocolVersion"] == PROTOCOL, "initialize: {status} {v}");
        let headers = format!("{base}mcp-protocol-version: {PROTOCOL}\r\n");
        let note = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
        let (status, _) = conn.post(&headers, note.to_string().as_bytes()).await;
        assert!(status == 202 || status == 200, "notifications/initialized: {status}");
    });
    let headers: Arc<str> = format!("{base}mcp-protocol-version: {PROTOCOL}\r\n").into();

    println!(
        "mcp bench: {secs}s per level after {warmup}s warm-up, tools/call `{TOOL}` (authz + sandbox + audit), \
         one agent, {} client",
        if use_reqwest { "reqwest" } else { "raw HTTP/1.1" }
    );
    println!(
        "{:>8} {:>10} {:>9} {:>9} {:>9} {:>14} {:>14}   audit catch-up",
        "inflight", "calls/s", "p50 us", "p99 us", "max us", "server cpu us", "client cpu us"
    );
    for inflight in levels {
        let cpu_before = cpu_ns();
        let (n, elapsed, mut lat) = client_rt.block_on(async {
            if use_reqwest {
                run_reqwest(&url, &token, inflight, warmup, secs).await
            } else {
                run_raw(addr, headers.clone(), inflight, warmup, secs).await
            }
        });
        let catch_up = Instant::now();
        server_rt.block_on(host.flush());
        let catch_up = catch_up.elapsed();
        let cpu_after = cpu_ns();
        // CPU per call over warm-up and measured phases alike (both ran the same load).
        let calls_all = n as f64 * (warmup + secs) / secs;
        let client_cpu = (cpu_after.0 - cpu_before.0) as f64 / 1e3 / calls_all;
        let server_cpu = (cpu_after.1 - cpu_before.1) as f64 / 1e3 / calls_all - client_cpu;
        // Calls that completed while measuring, over the measured time plus the audit catch-up.
        let rate = n as f64 / (elapsed + catch_up).as_secs_f64();
        lat.sort();
        let at = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e6;
        println!(
            "{inflight:>8} {rate:>10.0} {:>9.1} {:>9.1} {:>9.1} {server_cpu:>14.1} {client_cpu:>14.1}   {catch_up:?}",
            at(0.5),
            at(0.99),
            at(1.0)
        );
    }
    let audited = server_rt.block_on(host.audit.list("default", 0, i64::MAX)).map(|e| e.len()).unwrap_or(0);
    println!("audit events stored: {audited}");
}
