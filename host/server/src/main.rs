//! The `airlock` binary. See `airlock --help`.

use clap::Parser;

fn main() {
    let cli = airlock::cli::Cli::parse();
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
