//! `tether relay`: runs the reference relay until Ctrl-C or SIGTERM, then shuts down
//! gracefully (close 1012 with a reconnect window, so clients come back spread out).

use crate::EXIT_USAGE;
use clap::Args;
use std::process::ExitCode;
use std::time::Duration;
use tether_relay::{Relay, RelayConfig};

/// Options of `tether relay`.
#[derive(Debug, Args)]
pub(crate) struct RelayArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: String,
    /// Require this token from every client (Bearer header, ?token= or hello).
    #[arg(long)]
    pub token: Option<String>,
    /// Presence grace period in ms (a member who reconnects within it never appears to leave).
    #[arg(long, value_name = "MS", default_value_t = 5_000)]
    pub presence_grace: u64,
    /// Messages kept per channel for resume.
    #[arg(long, value_name = "N", default_value_t = 1_024)]
    pub history: usize,
    /// Largest accepted message in bytes.
    #[arg(long, value_name = "N", default_value_t = 1 << 20)]
    pub max_message_bytes: usize,
    /// Reconnect window advised to clients on graceful shutdown, in ms.
    #[arg(long, value_name = "MS", default_value_t = 5_000)]
    pub reconnect_window: u64,
    /// Expected downtime after a graceful shutdown, in ms: clients are told not to come back
    /// before it (they spread over this..window). Default 0.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub reconnect_after: u64,
}

pub(crate) async fn run(args: RelayArgs) -> ExitCode {
    let config = RelayConfig {
        token: args.token,
        presence_grace: Duration::from_millis(args.presence_grace),
        history_capacity: args.history,
        max_message_size: args.max_message_bytes,
        reconnect_window: Duration::from_millis(args.reconnect_window),
        reconnect_after: Duration::from_millis(args.reconnect_after),
        ..RelayConfig::default()
    };
    let relay = match Relay::bind(args.listen.as_str(), config).await {
        Ok(relay) => relay,
        Err(e) => {
            eprintln!("tether relay: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    println!("listening on {}", relay.ws_url());
    shutdown_signal().await;
    eprintln!("tether relay: shutting down (close 1012, clients reconnect within the window)");
    relay.shutdown().await;
    ExitCode::SUCCESS
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
