//! `tether-relay [OPTIONS]`: runs the reference relay until Ctrl-C or SIGTERM, then shuts
//! down gracefully (clients are told when to come back). The options are
//! [`tether_relay::RelayOptions`], the same as `tether relay`'s (`--help` lists them). Logs
//! go to stderr (`RUST_LOG` filters them); stdout gets one line, `listening on ws://ADDR`,
//! once the port is bound, so scripts can wait for it. Exit status: 0 after a shutdown, 1 if
//! the relay cannot start, 2 for a usage error.

use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;
use tether_relay::{cli, Relay, RelayOptions};
use tracing_subscriber::EnvFilter;

/// The Tether reference relay: channels, presence, history, acks, SSE and shared documents.
#[derive(Debug, Parser)]
#[command(name = "tether-relay", version, about)]
struct Args {
    #[command(flatten)]
    relay: RelayOptions,
}

#[tokio::main]
async fn main() -> ExitCode {
    // Usage errors exit with 2, `--help` with 0.
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only help a person at a terminal; in files and CI logs they are noise.
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let listen = args.relay.listen.as_str();
    let config = match args.relay.config() {
        Ok(config) => config,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the relay");
            return ExitCode::FAILURE;
        }
    };
    let relay = match Relay::bind(listen, config).await {
        Ok(relay) => relay,
        Err(e) => {
            tracing::error!(%listen, error = %e, "cannot start the relay");
            return ExitCode::FAILURE;
        }
    };
    cli::announce_and_wait(&relay).await;
    tracing::info!("shutting down");
    relay.shutdown().await;
    ExitCode::SUCCESS
}
