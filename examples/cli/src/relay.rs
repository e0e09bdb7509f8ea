//! `tether relay`: runs the reference relay until Ctrl-C or SIGTERM, then shuts down
//! gracefully (close 1012 with a reconnect window, so clients come back spread out). Its
//! options are the relay binary's own ([`RelayOptions`]), so both take the same flags.

use crate::EXIT_USAGE;
use std::process::ExitCode;
use tether_relay::{cli, Relay, RelayOptions};

pub(crate) async fn run(options: RelayOptions) -> ExitCode {
    let config = match options.config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("tether relay: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let relay = match Relay::bind(options.listen.as_str(), config).await {
        Ok(relay) => relay,
        Err(e) => {
            eprintln!("tether relay: cannot listen on {}: {e}", options.listen);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    cli::announce_and_wait(&relay).await;
    eprintln!("tether relay: shutting down (close 1012, clients reconnect within the window)");
    relay.shutdown().await;
    ExitCode::SUCCESS
}
