//! `tether`: a reconnecting WebSocket/SSE client for the terminal (think wscat, but it survives
//! the network), the reference relay, a live demo of what the engine does when the network
//! misbehaves, and a reconnect-storm simulator.
//!
//! Exit status: 0 after a clean close, 1 for usage or configuration errors (the message names
//! the bad option), 2 when the client gave up or the server refused it (terminal close code,
//! unauthorized after a token refresh, max attempts reached), 3 when `tether connect` closed
//! cleanly but not everything it was given got through: a message was dropped (the drain
//! timeout passed with messages pending, a TTL passed, the server rejected it), or a stdin
//! line was skipped (not UTF-8, refused by send, or still waiting for room in a full outbox
//! when the run ended). 2 wins over 3:
//! a client that gave up may have lost messages too. `tether connect` stopped by Ctrl-C or
//! SIGTERM closes cleanly and exits with 130 (SIGINT) or 143 (SIGTERM), 128 + the signal as
//! a shell reports a process the signal killed, unless 2 or 3 applies: those report a loss
//! whatever ended the run. Likewise, stopped because its stdout could no longer be written
//! (its reader went away, `| head`), it closes cleanly and exits with 141 (128 + SIGPIPE);
//! `tether demo` exits with 141 at once then. `tether demo` has statuses of its own
//! ([`DEMO_EXIT_STATUS`]): 2 when a message was lost or delivered twice, 1 when it could not
//! run.

// Printing to stdout/stderr is this program's job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod connect;
mod demo;
mod lines;
mod output;
mod relay;
mod signals;
mod storm;

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "tether", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the reference relay (channels, presence, history, acks, SSE): the same options as
    /// the tether-relay binary.
    Relay(tether_relay::RelayOptions),
    /// Connect to a WebSocket or SSE URL and stay connected: stdin lines are sent (blank ones
    /// skipped, at most --rate a second), received messages are printed. With --listen (or an
    /// SSE URL) stdin is not read.
    #[command(after_help = CONNECT_EXIT_STATUS)]
    Connect(Box<connect::ConnectArgs>),
    /// Watch the engine survive a relay restart, a black hole and an outbox overflow.
    #[command(after_help = DEMO_EXIT_STATUS)]
    Demo(demo::DemoArgs),
    /// Simulate N clients reconnecting after an outage, in virtual time, per jitter strategy.
    Storm(storm::StormArgs),
}

/// The end of `tether demo --help`: its exit status, which is the demo's verdict.
const DEMO_EXIT_STATUS: &str = "\
Exit status:
  0    every message sent was delivered once or reported dropped
  1    the demo could not run (its relay or proxy could not start or restart)
  2    a message was lost (neither delivered nor reported dropped) or delivered twice
  141  stopped because stdout's reader went away (`| head`)";

/// The end of `tether connect --help`: what its exit status means, and what a signal does.
const CONNECT_EXIT_STATUS: &str = "\
Ctrl-C or SIGTERM stops reading stdin, delivers what is pending (at most --drain-timeout),
then closes cleanly; a second one exits at once without closing. A stdout that can no
longer be written (its reader went away) ends the run as the first signal does.

Exit status:
  0    closed cleanly, every message delivered
  1    a bad option
  2    gave up, or refused by the server
  3    not everything got through: a message dropped or still pending at the close, or a
       stdin line skipped
  130  stopped by Ctrl-C (SIGINT), nothing lost (stdin may not have been read to its end)
  141  stopped because stdout's reader went away (`| head`), nothing sent lost (likewise)
  143  stopped by SIGTERM, nothing lost (likewise)";

/// Exit status for usage and configuration errors.
pub(crate) const EXIT_USAGE: u8 = 1;
/// Exit status when the client gave up or the server refused it.
pub(crate) const EXIT_GAVE_UP: u8 = 2;
/// Exit status of `tether connect` when it closed cleanly but a message was not delivered:
/// without it a script could not tell that a line it piped in was lost.
pub(crate) const EXIT_UNDELIVERED: u8 = 3;
/// Exit status of `tether connect` stopped because its stdout could no longer be written (its
/// reader went away: `| head`): 128 + SIGPIPE, what a shell reports for a program that
/// SIGPIPE ended, as it ends most programs in a pipeline whose reader left.
pub(crate) const EXIT_STDOUT_LOST: u8 = 141;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(EXIT_USAGE),
            };
        }
    };
    // The demo narrates on stdout; its library logs would only repeat the story. `connect`
    // prints every event itself (drops, errors, the close), so the SDK's own warnings about
    // them would say each thing twice.
    init_logging(match cli.command {
        Command::Demo(_) => "error",
        Command::Connect(_) => "warn,tether=error",
        _ => "warn",
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tether: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let status = runtime.block_on(async move {
        match cli.command {
            Command::Relay(args) => relay::run(args).await,
            Command::Connect(args) => connect::run(*args).await,
            Command::Demo(args) => demo::run(args).await,
            // Pure computation in virtual time; no I/O to wait for.
            Command::Storm(args) => storm::run(args),
        }
    });
    // Not a plain drop: that waits for every blocking thread, and tokio reads stdin with a
    // blocking read that cannot be cancelled. `tether connect` that ended while stdin stayed
    // open (a terminal nobody types in, a pipe whose writer lingers) would hang there until
    // the next line or the end of input. Everything the command had to say is written by now.
    runtime.shutdown_background();
    status
}

/// Diagnostics go to stderr; `RUST_LOG` selects what (default: `default`).
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // No colour codes in a log file or a pipe.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, CommandFactory};
    use tether_relay::RelayOptions;

    #[test]
    fn tether_relay_takes_exactly_the_relay_binarys_flags() {
        // Both parse into the one `RelayOptions`, so the values cannot differ; what can is a
        // flag added to one command and not the other.
        let names = |cmd: &clap::Command| -> Vec<String> {
            let mut names: Vec<String> = cmd
                .get_arguments()
                .filter_map(|a| a.get_long().map(str::to_owned))
                .collect();
            names.sort();
            names
        };
        let cli = Cli::command();
        let subcommand = cli.find_subcommand("relay").expect("relay subcommand");
        let shared = RelayOptions::augment_args(clap::Command::new("tether-relay"));
        assert_eq!(names(subcommand), names(&shared), "no flag of its own");
    }

    #[test]
    fn storm_and_connect_name_the_backoff_flags_alike() {
        for flag in ["--backoff-initial", "--backoff-max"] {
            for command in ["connect", "storm"] {
                let mut args = vec!["tether", command, flag, "500"];
                if command == "connect" {
                    args.insert(2, "ws://127.0.0.1:1/");
                }
                assert!(Cli::try_parse_from(&args).is_ok(), "{command} {flag}");
            }
            // The names storm had first still work.
            let old = format!("{flag}-ms");
            assert!(
                Cli::try_parse_from(["tether", "storm", &old, "500"]).is_ok(),
                "{old}"
            );
        }
    }
}
