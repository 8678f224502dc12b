//! The `airlock` binary. See `airlock --help`.

use clap::Parser;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "airlock=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = airlock::cli::Cli::parse();
    std::process::exit(airlock::cli::run(cli).await);
}
