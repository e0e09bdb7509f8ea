//! The relay's command line, shared by its two front ends: the `tether-relay` binary and the
//! `tether relay` subcommand. Both flatten [`RelayOptions`] into their clap parser, so they
//! take the same flags with the same defaults and help, print the same ready line and stop
//! on the same signals; only logging and exit statuses are each program's own.

use crate::{ConfigError, RelayConfig, RelayHandle};
use std::time::Duration;

/// The relay's command-line options. Every default is [`RelayConfig::default()`]'s.
///
/// ```
/// use clap::Parser;
/// use tether_relay::RelayOptions;
///
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     relay: RelayOptions,
/// }
///
/// let cli = Cli::parse_from(["my-relay", "--listen", "127.0.0.1:0", "--history", "64"]);
/// assert_eq!(cli.relay.config()?.history_capacity, 64);
/// # Ok::<(), tether_relay::ConfigError>(())
/// ```
#[derive(Debug, Clone, clap::Args)]
pub struct RelayOptions {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9000")]
    pub listen: String,
    /// Require this token from every client (Bearer header, ?token= or hello). Default: the
    /// TETHER_RELAY_TOKEN environment variable if set and not empty, else an open relay.
    #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub token: Option<String>,
    /// Presence grace period in ms (a member who reconnects within it never appears to leave).
    #[arg(long, value_name = "MS", default_value_t = default_ms(|c| c.presence_grace))]
    pub presence_grace: u64,
    /// Messages kept per channel for resume.
    #[arg(long, value_name = "N", default_value_t = RelayConfig::default().history_capacity)]
    pub history: usize,
    /// Largest accepted message in bytes (at most 1 GiB).
    #[arg(long, value_name = "N", value_parser = at_least_one,
          default_value_t = RelayConfig::default().max_message_size)]
    pub max_message_bytes: usize,
    /// Shared documents held at most (0 disables documents).
    #[arg(long, value_name = "N", default_value_t = RelayConfig::default().max_documents)]
    pub max_documents: usize,
    /// Largest state of one shared document, in bytes of JSON.
    #[arg(long, value_name = "N",
          default_value_t = RelayConfig::default().max_document_bytes)]
    pub max_document_bytes: usize,
    /// WebSocket liveness interval in ms: the relay pings every interval and closes (4000) a
    /// connection silent for two. 0 turns both off.
    #[arg(long, value_name = "MS",
          default_value_t = default_ms(|c| c.ping_interval.unwrap_or_default()))]
    pub ping_interval: u64,
    /// Reconnect window advised to clients on graceful shutdown, in ms.
    #[arg(long, value_name = "MS", default_value_t = default_ms(|c| c.reconnect_window))]
    pub reconnect_window: u64,
    /// Expected downtime after a graceful shutdown, in ms: clients are told not to come back
    /// before it (they spread over this..window).
    #[arg(long, value_name = "MS", default_value_t = default_ms(|c| c.reconnect_after))]
    pub reconnect_after: u64,
}

/// The environment variable that gives the token when `--token` is not: kept out of the
/// process list, unlike a flag.
pub const TOKEN_ENV: &str = "TETHER_RELAY_TOKEN";

impl RelayOptions {
    /// The relay configuration these options describe (the rest at its defaults). Without
    /// `--token`, [`TOKEN_ENV`] gives the token; set but empty, it means none (an empty
    /// `--token` is a usage error: no client could present it); set but not valid UTF-8, it
    /// is [`ConfigError::TokenNotUnicode`], never read as none. The configuration is validated
    /// ([`RelayConfig::validate`]).
    pub fn config(&self) -> Result<RelayConfig, ConfigError> {
        self.config_from_env(std::env::var(TOKEN_ENV))
    }

    /// [`RelayOptions::config`] with the environment variable's value given.
    fn config_from_env(
        &self,
        env: Result<String, std::env::VarError>,
    ) -> Result<RelayConfig, ConfigError> {
        let config = match env {
            Ok(token) => self.config_with_env(Some(token)),
            Err(std::env::VarError::NotPresent) => self.config_with_env(None),
            // The flag wins, so the variable does not matter.
            Err(std::env::VarError::NotUnicode(_)) if self.token.is_some() => {
                self.config_with_env(None)
            }
            Err(std::env::VarError::NotUnicode(_)) => return Err(ConfigError::TokenNotUnicode),
        };
        // Checked here, not only in `Relay::bind`: there the error comes out as the listener's
        // ("cannot listen on 127.0.0.1:9000: reconnect_after must be ..."), which sends the
        // user looking for a port conflict.
        config.validate()?;
        Ok(config)
    }

    fn config_with_env(&self, env_token: Option<String>) -> RelayConfig {
        let token = match &self.token {
            Some(flag) => Some(flag.clone()),
            None => env_token.filter(|t| !t.is_empty()),
        };
        RelayConfig {
            token,
            presence_grace: Duration::from_millis(self.presence_grace),
            history_capacity: self.history,
            max_message_size: self.max_message_bytes,
            max_documents: self.max_documents,
            max_document_bytes: self.max_document_bytes,
            ping_interval: (self.ping_interval > 0)
                .then(|| Duration::from_millis(self.ping_interval)),
            reconnect_window: Duration::from_millis(self.reconnect_window),
            reconnect_after: Duration::from_millis(self.reconnect_after),
            ..RelayConfig::default()
        }
    }
}

/// What a front end does once the relay is bound: prints `listening on ws://ADDR` on stdout
/// (scripts and tests wait for it), then waits for Ctrl-C or SIGTERM. The signal handlers are
/// installed before the line, so a signal sent as soon as it appears still ends in a graceful
/// shutdown, which the caller then runs.
pub async fn announce_and_wait(relay: &RelayHandle) {
    let signal = ShutdownSignal::install();
    let line = format!("listening on {}\n", relay.ws_url().trim_end_matches('/'));
    let mut stdout = std::io::stdout().lock();
    let _ = std::io::Write::write_all(&mut stdout, line.as_bytes());
    let _ = std::io::Write::flush(&mut stdout);
    drop(stdout);
    signal.recv().await;
}

/// Ctrl-C or SIGTERM (how service managers and `docker stop` ask politely), listened for from
/// the moment it is installed, before the ready line: a signal sent as soon as that line
/// appears must stop the relay gracefully, not kill it with the default action (which is what
/// happened when the handlers were registered only once awaited). On Unix; elsewhere only
/// Ctrl-C, listened for from the first `recv` on.
#[derive(Debug)]
struct ShutdownSignal {
    #[cfg(unix)]
    handlers: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl ShutdownSignal {
    /// Registers the handlers now (needs a tokio runtime).
    fn install() -> ShutdownSignal {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let handlers = match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                (Ok(int), Ok(term)) => Some((int, term)),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "cannot listen for SIGINT/SIGTERM; Ctrl-C only");
                    None
                }
            };
            ShutdownSignal { handlers }
        }
        #[cfg(not(unix))]
        ShutdownSignal {}
    }

    /// Resolves on the first Ctrl-C or SIGTERM.
    async fn recv(self) {
        #[cfg(unix)]
        if let Some((mut int, mut term)) = self.handlers {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C; stopping now");
        }
    }
}

/// A count that must be at least 1, refused by clap as a usage error naming the flag (rather
/// than by `RelayConfig::validate` after parsing, with the config field's name).
fn at_least_one(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A default duration of [`RelayConfig`] in whole milliseconds.
fn default_ms(field: fn(&RelayConfig) -> Duration) -> u64 {
    u64::try_from(field(&RelayConfig::default()).as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The front ends' shape: the options flattened into a parser of their own.
    #[derive(Debug, Parser)]
    struct Front {
        #[command(flatten)]
        relay: RelayOptions,
    }

    fn parse(args: &[&str]) -> Result<RelayOptions, clap::Error> {
        let argv = std::iter::once("relay").chain(args.iter().copied());
        Front::try_parse_from(argv).map(|f| f.relay)
    }

    /// Validated as they are read, so a front end reports a bad value as itself, not as the
    /// listener's failure when `Relay::bind` finds it.
    #[test]
    fn options_the_relay_refuses_are_refused_by_config() {
        let late = parse(&["--reconnect-after", "6000", "--reconnect-window", "5000"]).unwrap();
        assert!(matches!(
            late.config_from_env(Err(std::env::VarError::NotPresent)),
            Err(ConfigError::ReconnectAfterBeyondWindow)
        ));
        let huge = parse(&["--max-message-bytes", &usize::MAX.to_string()]).unwrap();
        assert!(matches!(
            huge.config_from_env(Err(std::env::VarError::NotPresent)),
            Err(ConfigError::MaxMessageSizeTooLarge)
        ));
        let limit = crate::MAX_MESSAGE_SIZE_LIMIT.to_string();
        let largest = parse(&["--max-message-bytes", &limit]).unwrap();
        assert!(largest
            .config_from_env(Err(std::env::VarError::NotPresent))
            .is_ok());
    }

    #[test]
    fn the_defaults_are_the_relay_configs() {
        let options = parse(&[]).expect("no flags needed");
        assert_eq!(options.listen, "127.0.0.1:9000");
        let (got, want) = (options.config_with_env(None), RelayConfig::default());
        assert_eq!(got.token, want.token);
        assert_eq!(got.presence_grace, want.presence_grace);
        assert_eq!(got.history_capacity, want.history_capacity);
        assert_eq!(got.max_message_size, want.max_message_size);
        assert_eq!(got.max_documents, want.max_documents);
        assert_eq!(got.max_document_bytes, want.max_document_bytes);
        assert_eq!(got.reconnect_window, want.reconnect_window);
        assert_eq!(got.reconnect_after, want.reconnect_after);
        assert_eq!(got.ping_interval, want.ping_interval);
    }

    #[test]
    fn every_flag_reaches_the_config() {
        let options = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--token",
            "s3cret",
            "--presence-grace",
            "250",
            "--history",
            "64",
            "--max-message-bytes",
            "4096",
            "--max-documents",
            "10",
            "--max-document-bytes",
            "2048",
            "--reconnect-window",
            "10000",
            "--reconnect-after",
            "2000",
            "--ping-interval",
            "500",
        ])
        .expect("every flag is known");
        assert_eq!(options.listen, "127.0.0.1:0");
        let config = options.config_with_env(Some("from-env".to_owned()));
        assert_eq!(config.token.as_deref(), Some("s3cret"));
        assert_eq!(config.presence_grace, Duration::from_millis(250));
        assert_eq!(config.history_capacity, 64);
        assert_eq!(config.max_message_size, 4096);
        assert_eq!(config.max_documents, 10);
        assert_eq!(config.max_document_bytes, 2048);
        assert_eq!(config.reconnect_window, Duration::from_millis(10_000));
        assert_eq!(config.reconnect_after, Duration::from_millis(2_000));
        assert_eq!(config.ping_interval, Some(Duration::from_millis(500)));
        assert!(config.validate().is_ok());
        let off = parse(&["--ping-interval", "0"]).expect("0 is allowed");
        assert_eq!(off.config_with_env(None).ping_interval, None, "0 = off");
    }

    #[test]
    fn the_token_comes_from_the_flag_else_a_non_empty_environment_variable() {
        let open = parse(&[]).unwrap();
        let env = |t: &str| Some(t.to_owned());
        assert_eq!(open.config_with_env(env("e")).token.as_deref(), Some("e"));
        assert_eq!(
            open.config_with_env(env("")).token,
            None,
            "empty: an open relay"
        );
        let flag = parse(&["--token", "f"]).unwrap();
        assert_eq!(flag.config_with_env(env("e")).token.as_deref(), Some("f"));
        // Refused as a usage error naming the flag, not started open.
        let err = parse(&["--token", ""]).expect_err("an empty token");
        assert!(err.to_string().contains("--token"), "{err}");
    }

    #[test]
    #[cfg(unix)]
    fn a_token_variable_that_is_not_utf8_is_refused_not_read_as_none() {
        let bytes = std::os::unix::ffi::OsStringExt::from_vec(vec![0xff, 0xfe]);
        let open = parse(&[]).unwrap();
        let err = open
            .config_from_env(Err(std::env::VarError::NotUnicode(bytes)))
            .expect_err("it must not start open");
        assert_eq!(err, ConfigError::TokenNotUnicode);
        let message = err.to_string();
        assert!(
            message.contains(TOKEN_ENV) && message.contains("not valid UTF-8"),
            "{message}"
        );
        let flag = parse(&["--token", "f"]).unwrap();
        let bytes = std::os::unix::ffi::OsStringExt::from_vec(vec![0xff]);
        let config = flag
            .config_from_env(Err(std::env::VarError::NotUnicode(bytes)))
            .expect("the flag wins");
        assert_eq!(config.token.as_deref(), Some("f"));
    }

    #[test]
    fn reconnect_after_beyond_the_window_is_refused() {
        let options = parse(&["--reconnect-after", "6000", "--reconnect-window", "5000"]).unwrap();
        assert!(options.config_with_env(None).validate().is_err());
    }

    #[test]
    fn unknown_flags_and_bad_values_are_refused_by_name() {
        let err = parse(&["--port", "9000"]).expect_err("unknown");
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
        let err = parse(&["--history", "many"]).expect_err("not a number");
        assert!(err.to_string().contains("--history"), "{err}");
        let err = parse(&["--listen"]).expect_err("needs a value");
        assert!(err.to_string().contains("--listen"), "{err}");
        let err = parse(&["--max-message-bytes", "0"]).expect_err("zero");
        let message = err.to_string();
        assert!(
            message.contains("--max-message-bytes") && message.contains("at least 1"),
            "{err}"
        );
    }

    #[test]
    fn the_help_lists_every_flag_and_the_listen_default() {
        let help = Front::try_parse_from(["relay", "--help"]).expect_err("help");
        let help = help.to_string();
        assert!(help.contains("at most 1 GiB"), "{help}");
        for flag in [
            "--listen <ADDR>",
            "--token <TOKEN>",
            "--presence-grace <MS>",
            "--history <N>",
            "--max-message-bytes <N>",
            "--max-documents <N>",
            "--max-document-bytes <N>",
            "--reconnect-window <MS>",
            "--reconnect-after <MS>",
            "--ping-interval <MS>",
            "[default: 127.0.0.1:9000]",
            TOKEN_ENV,
        ] {
            assert!(help.contains(flag), "{flag} in {help}");
        }
    }
}
