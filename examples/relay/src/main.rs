//! `tether-relay [--listen ADDR] [--token TOKEN]`: runs the reference relay until Ctrl-C or
//! SIGTERM, then shuts down gracefully (clients are told when to come back). Logs go to
//! stderr (`RUST_LOG` filters them); stdout gets one line, `listening on ws://ADDR`, once
//! the port is bound, so scripts can wait for it.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use tether_relay::{Relay, RelayConfig};
use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage: tether-relay [--listen ADDR] [--token TOKEN]

  --listen ADDR   address to bind (default 127.0.0.1:9000)
  --token TOKEN   require this token from every client (default: open relay;
                  the TETHER_RELAY_TOKEN environment variable works too)";

struct Args {
    listen: String,
    token: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:9000".to_owned(),
        token: std::env::var("TETHER_RELAY_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--listen" => args.listen = it.next().ok_or("--listen needs an address")?,
            "--token" => args.token = Some(it.next().ok_or("--token needs a value")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only help a person at a terminal; in files and CI logs they are noise.
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let args = match parse_args() {
        Ok(args) => args,
        Err(problem) => {
            // Usage goes to stderr: printing it is this branch's whole job.
            #[allow(clippy::print_stderr)]
            {
                if !problem.is_empty() {
                    eprintln!("tether-relay: {problem}");
                }
                eprintln!("{USAGE}");
            }
            return ExitCode::from(if problem.is_empty() { 0 } else { 2 });
        }
    };

    let config = RelayConfig {
        token: args.token,
        ..RelayConfig::default()
    };
    let relay = match Relay::bind(args.listen.as_str(), config).await {
        Ok(relay) => relay,
        Err(e) => {
            tracing::error!(listen = %args.listen, error = %e, "cannot start the relay");
            return ExitCode::FAILURE;
        }
    };
    {
        // The ready line is the binary's contract with scripts, so it goes to stdout.
        #[allow(clippy::print_stdout)]
        {
            println!("listening on {}", relay.ws_url().trim_end_matches('/'));
        }
        let _ = std::io::stdout().flush();
    }

    wait_for_signal().await;
    tracing::info!("shutting down");
    relay.shutdown().await;
    ExitCode::SUCCESS
}

/// Ctrl-C, or SIGTERM (how service managers and `docker stop` ask politely).
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                return;
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for SIGTERM"),
        }
    }
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::warn!(error = %e, "cannot listen for Ctrl-C; stopping now");
    }
}
