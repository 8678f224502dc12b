//! The `airlock` binary. See `airlock --help`.

use clap::Parser;

/// jemalloc instead of glibc's allocator: a gated call allocates and frees a few hundred
/// blocks on the async worker while SQLite's worker thread frees others, and glibc's arenas
/// spent a tenth of the host's CPU on it (`scripts/profile-call`: `malloc`, `_int_free`,
/// `malloc_consolidate`, arena lock waits; 10.8% of the samples), jemalloc 2.9%. Its
/// background thread (started in `main`) hands freed pages back to the system after a burst.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let cli = airlock::cli::Cli::parse();
    // Without it jemalloc purges only while the process allocates: an idle host would keep a
    // burst's pages. It sleeps while there is nothing to purge. A one-shot command exits first.
    let purging = if cli.serves() { tikv_jemalloc_ctl::background_thread::write(true) } else { Ok(()) };
    if let Err(e) = purging {
        eprintln!(
            "airlock: jemalloc's purging thread did not start ({e}): freed memory returns only as the host allocates"
        );
    }
    // Before the async runtime: the OTLP exporter's blocking HTTP client must not be made or
    // dropped inside it.
    let telemetry = match airlock::telemetry::init(&cli.telemetry()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(airlock::cli::run(cli));
    drop(runtime);
    telemetry.shutdown();
    std::process::exit(code);
}
