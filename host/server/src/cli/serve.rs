//! `airlock serve`: open the host and serve its API until interrupted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::serve::ListenerExt;

use crate::{Airlock, Config};

/// What `serve` is told about the audit trail beyond the defaults.
pub(super) struct AuditOptions {
    /// An append-only file every signed checkpoint is also appended to.
    pub witness: Option<PathBuf>,
    /// How long the writer may hold a commit for the calls in flight ([`airlock_audit::GATHER`]).
    pub gather: std::time::Duration,
}

pub(super) async fn run(
    listen: SocketAddr,
    data_dir: PathBuf,
    database_url: Option<String>,
    openfga: Option<airlock_rebac::remote::RemoteConfig>,
    public_url: Option<String>,
    audit: AuditOptions,
) -> Result<(), String> {
    let mut config = Config::new(data_dir);
    if let Some(witness) = &audit.witness {
        eprintln!("airlock: audit checkpoints are also appended to {}", witness.display());
    }
    config.audit_witness = audit.witness;
    config.audit_gather = audit.gather;
    config.listen = listen;
    config.public_url = public_url.map(|u| u.trim_end_matches('/').to_string());
    config.database_url = database_url;
    if let Some(remote) = &openfga {
        eprintln!("airlock: checks go to the external OpenFGA server at {} (fail closed)", remote.url);
    }
    config.openfga = openfga;
    eprintln!("airlock: opening {}", config.data_dir.display());
    let started = std::time::Instant::now();
    let host = Arc::new(Airlock::open(&config).await.map_err(|e| e.to_string())?);
    let (compiled, cached) = host.runtime.compile_counts();
    eprintln!(
        "airlock: opened in {:.1} s: compiled {compiled} components, loaded {cached} from the cache ({})",
        started.elapsed().as_secs_f64(),
        config.data_dir.join("cache").display()
    );
    let listener = bind(listen)
        .map_err(|e| format!("cannot listen on {listen}: {e} (is another airlock running? use --listen)"))?
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    let token_source = if std::env::var("AIRLOCK_ADMIN_TOKEN").is_ok() {
        "AIRLOCK_ADMIN_TOKEN".to_string()
    } else {
        config.data_dir.join("admin.token").display().to_string()
    };
    eprintln!("airlock: listening on http://{listen}  (admin token: {token_source})");
    for c in host.runtime.components() {
        let tools: Vec<&str> = c.tools.iter().map(|t| t.name.as_str()).collect();
        eprintln!("airlock: component `{}` with tools {}", c.name, tools.join(", "));
    }
    let catalog: Vec<&str> = crate::marketplace::catalog::CATALOG.iter().map(|e| e.name).collect();
    eprintln!("airlock: marketplace catalog: {} (`airlock install NAME`)", catalog.join(", "));
    // The catalog's tools (and what they declare they do) for the admins' review: its
    // components compile once, in the background, so the first look at the catalog is quick.
    let describing = host.clone();
    tokio::spawn(async move {
        crate::marketplace::catalog::described(&describing).await;
    });
    crate::memory::spawn_reclaimer();
    // `into_make_service` readies the routes once and each connection shares them. Served as a
    // plain `Router`, axum 0.8 rebuilds the route table for every connection it accepts (about
    // 74 KB with this API's routes, held as long as the connection: 740 MB for 10,000 calls
    // waiting for approval, measured with heaptrack).
    let app = crate::api::router(host.clone()).into_make_service();
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("airlock: shutting down");
        })
        .await
        .map_err(|e| format!("server error: {e}"))?;
    host.flush().await;
    Ok(())
}

/// How many connections may wait to be accepted (the kernel caps it at `net.core.somaxconn`).
/// Thousands of agents connect at once when calls pile up behind approvals; tokio's default
/// of 1,024 made the kernel drop their handshakes, and each retried a second later.
const LISTEN_BACKLOG: u32 = 8192;

/// A listening socket on `addr` with [`LISTEN_BACKLOG`].
fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// `airlock mcp`: open the host's state beside a possibly running `airlock serve` and serve
/// MCP on stdio as `agent`.
pub(super) async fn mcp_stdio(
    agent: crate::agents::Agent,
    data_dir: PathBuf,
    database_url: Option<String>,
) -> Result<(), String> {
    let mut config = Config::new(data_dir);
    config.database_url = database_url;
    config.shared_sqlite = true;
    let host = Arc::new(Airlock::open(&config).await.map_err(|e| e.to_string())?);
    let served = crate::mcp::stdio::serve(host.clone(), agent).await;
    host.flush().await;
    served
}
