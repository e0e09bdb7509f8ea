//! `tether connect URL`: connect and stay connected. Stdin lines are sent (or published with
//! `--publish`), received messages are printed. With `--listen`, or an http(s) URL (SSE is
//! receive-only), stdin is not read at all. At the end of stdin the outbox is drained
//! (bounded by `--drain-timeout`) and the connection closed cleanly; if a message was not
//! delivered after all, the exit status is [`EXIT_UNDELIVERED`].
//!
//! Stdin is read only as fast as the outbox empties: a line the full outbox refuses is held,
//! and stdin not read, until the outbox takes it ([`Held`]). A file piped in faster than the
//! network takes it is delivered whole; before, the outbox's default policy dropped the oldest
//! lines to make room for each new one.
//!
//! Ctrl-C (SIGINT) or SIGTERM does the same as the end of stdin: reading stops, what was
//! accepted is delivered within `--drain-timeout` (or reported as dropped) and the client
//! closes cleanly (1000); the exit status is then the signal's ([`Signal::exit_status`]:
//! 130, 143) unless a message was lost ([`EXIT_UNDELIVERED`]) or the client gave up
//! ([`EXIT_GAVE_UP`]). A second signal while that close runs exits at once: the
//! connection is dropped, and whatever was still pending counts as not delivered.
//!
//! Blank lines (empty, or nothing but whitespace) are skipped unless `--send-blank` asks for
//! them; each was sent as an empty message. Lines are sent at most `--rate` a second
//! ([`Pacer`]), stdin not read faster.
//!
//! Stdin is read as bytes: a line that is not UTF-8, or longer than the largest message
//! (`--max-message-bytes`; such a line is not kept in memory while it is read), is reported
//! (an `error` event, kind `stdin`, naming the line) and skipped, and reading goes on. A scripting user piping a
//! file wants the other lines delivered, not the rest of the input silently discarded as
//! before; the skipped line still makes the exit status [`EXIT_UNDELIVERED`], so a script
//! that only checks `$?` learns that something did not get through.

use crate::lines::{Line, LineReader};
use crate::output::Output;
use crate::signals::{Signal, Signals};
use crate::{EXIT_GAVE_UP, EXIT_STDOUT_LOST, EXIT_UNDELIVERED, EXIT_USAGE};
use clap::{Args, ValueEnum};
use serde_json::Value;
use std::process::ExitCode;
use std::time::Duration;
use tether::{
    Client, ClientBuilder, HeartbeatMode, Jitter, OutboxConfig, OverflowPolicy, Payload, Protocol,
    SendError, SendOptions, SyncError, TransportKind,
};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ProtocolArg {
    Raw,
    Tether,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum JitterArg {
    None,
    Full,
    Equal,
    Decorrelated,
}

impl From<JitterArg> for Jitter {
    fn from(j: JitterArg) -> Jitter {
        match j {
            JitterArg::None => Jitter::None,
            JitterArg::Full => Jitter::Full,
            JitterArg::Equal => Jitter::Equal,
            JitterArg::Decorrelated => Jitter::Decorrelated,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum PingModeArg {
    /// WebSocket ping frames.
    Frame,
    /// Application ping messages.
    Message,
    /// Expect the server to show life.
    Server,
    /// No heartbeat.
    Off,
}

/// Options of `tether connect`. Every option defaults to the SDK's default.
#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// ws://, wss:// (WebSocket) or http://, https:// (Server-Sent Events: receive-only, so
    /// stdin is not read and --publish, --ack-timeout, --document and --subscribe are refused;
    /// use --protocol tether for the relay's /sse/CHANNEL stream).
    pub url: String,
    /// Wire protocol. Default: tether when --subscribe, --publish or --document is given,
    /// else raw.
    #[arg(long, value_enum)]
    pub protocol: Option<ProtocolArg>,
    /// Subscribe to CHANNEL (repeatable; Tether protocol).
    #[arg(long, value_name = "CHANNEL")]
    pub subscribe: Vec<String>,
    /// Publish stdin lines to CHANNEL (Tether protocol). A line that is valid JSON is sent as
    /// that JSON value, any other line as a string.
    #[arg(long, value_name = "CHANNEL")]
    pub publish: Option<String>,
    /// With --publish: stop waiting for each line's acknowledgement after MS. An
    /// `ack_timed_out` event then says whether the line was dropped unsent (`expired`) or
    /// still awaits its ack (`awaiting_ack`); it is never sent after that.
    #[arg(long, value_name = "MS", requires = "publish", value_parser = clap::value_parser!(u64).range(1..))]
    pub ack_timeout: Option<u64>,
    /// Edit the shared document on CHANNEL (Tether protocol) and print it as it converges.
    /// Stdin lines are commands: `set KEY JSON`, `insert KEY JSON`, `delete KEY`,
    /// `inc KEY NUMBER`. One that is not a command, or that the client refuses (an `insert`
    /// of a key it sees), is reported and skipped (exit status 3).
    #[arg(long, value_name = "CHANNEL", conflicts_with = "publish")]
    pub document: Option<String>,
    /// Extra handshake header 'Name: value' (repeatable).
    #[arg(long = "header", value_name = "'K: V'")]
    pub headers: Vec<String>,
    /// SSE: resume the stream from this event id (sent as `Last-Event-ID` on the first
    /// attempt), e.g. the `last_event_id` of the last message a `--json` run printed.
    #[arg(long, value_name = "ID")]
    pub last_event_id: Option<String>,
    /// Token sent as `Authorization: Bearer T` on every attempt.
    #[arg(long)]
    pub token: Option<String>,
    /// Trust the CA certificates in this PEM file (self-hosted wss:// or https://).
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<String>,
    /// Heartbeat interval in ms (default 25000).
    #[arg(long, value_name = "MS")]
    pub heartbeat_interval: Option<u64>,
    /// Unanswered pings before the connection is declared dead (default 2).
    #[arg(long, value_name = "N")]
    pub max_missed_pongs: Option<u32>,
    /// Heartbeat mode (default: frame for WebSocket, server for SSE).
    #[arg(long, value_enum)]
    pub ping_mode: Option<PingModeArg>,
    /// First backoff delay scale in ms (default 500).
    #[arg(long, value_name = "MS")]
    pub backoff_initial: Option<u64>,
    /// Backoff cap in ms (default 30000).
    #[arg(long, value_name = "MS")]
    pub backoff_max: Option<u64>,
    /// Jitter strategy (default full).
    #[arg(long, value_enum)]
    pub jitter: Option<JitterArg>,
    /// Give up after N consecutive failed attempts (default: never).
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,
    /// Uptime in ms after which the backoff resets (default 5000).
    #[arg(long, value_name = "MS")]
    pub min_uptime: Option<u64>,
    /// Outbox bound in messages (default 1000). While it is full, stdin is not read.
    #[arg(long, value_name = "N")]
    pub outbox_messages: Option<usize>,
    /// Outbox bound in bytes (default 1 MiB). While it is full, stdin is not read.
    #[arg(long, value_name = "N")]
    pub outbox_bytes: Option<usize>,
    /// Largest message in either direction, in bytes (default 1 MiB).
    #[arg(long, value_name = "N")]
    pub max_message_bytes: Option<usize>,
    /// Connect timeout in ms (default 10000). An SSE URL waits for its response head up to
    /// the heartbeat's silence limit (75 s by default) when that is longer.
    #[arg(long, value_name = "MS")]
    pub connect_timeout: Option<u64>,
    /// Seed for the jitter PRNG (reproducible delays).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Stable client id (presence member name).
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
    /// At the end of stdin, or on Ctrl-C or SIGTERM, wait at most this long (ms) for pending
    /// messages (default 10000). Messages still pending then are dropped, and the exit status
    /// is 3.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub drain_timeout: u64,
    /// Send stdin lines at most this many a second (messages, or document edits), in bursts
    /// of at most a tenth of that; stdin is not read faster. 0: no limit. The default is the
    /// reference relay's sustained limit (it refuses a connection's messages past it once
    /// its burst of 2,000 is spent: `rate_limited`); a server with a stricter one needs less.
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    pub rate: u32,
    /// Send blank stdin lines (empty, or nothing but whitespace) as messages too. By default
    /// they are skipped (still counted as lines, as error messages number them). Not with
    /// --document or --listen.
    #[arg(long, conflicts_with_all = ["document", "listen"])]
    pub send_blank: bool,
    /// Print one JSON object per line on stdout.
    #[arg(long)]
    pub json: bool,
    /// Only listen: never read stdin, and stay connected until the connection closes for
    /// good (gave up, refused by the server) or Ctrl-C or SIGTERM closes it cleanly. Without
    /// it, a stdin already at its end (`</dev/null`, cron, `docker run` without -i) closes the
    /// connection at once.
    #[arg(long, conflicts_with = "publish")]
    pub listen: bool,
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

impl ConnectArgs {
    /// An http(s) URL: Server-Sent Events, which carry nothing from the client.
    fn is_sse(&self) -> bool {
        TransportKind::for_url(&self.url) == Ok(TransportKind::Sse)
    }

    /// Whether stdin is read at all.
    fn reads_stdin(&self) -> bool {
        !self.listen && !self.is_sse()
    }

    /// Refuses options that could never work together, before connecting: otherwise each
    /// line would be queued and dropped (or refused) one by one and the run would still
    /// look like a success.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.is_sse() {
            let sending = [
                ("--publish", self.publish.is_some()),
                ("--ack-timeout", self.ack_timeout.is_some()),
                ("--document", self.document.is_some()),
            ];
            if let Some((option, _)) = sending.iter().find(|(_, given)| *given) {
                return Err(format!(
                    "{option}: an http(s) URL is Server-Sent Events, which is receive-only; \
                     use a ws:// or wss:// URL to send"
                ));
            }
            if !self.subscribe.is_empty() {
                // The subscribe message could not be sent either: it would do nothing.
                return Err("--subscribe: an event stream's channel is in its URL \
                     (the relay's is http://HOST/sse/CHANNEL); use a ws:// or wss:// URL \
                     to subscribe"
                    .into());
            }
        }
        if self.publish.is_some() && matches!(self.protocol, Some(ProtocolArg::Raw)) {
            return Err("--publish: channels need the Tether protocol, not --protocol raw".into());
        }
        // As --subscribe and --document are: a name the client refuses would make every line
        // a refused send (exit 3) instead of one clear error.
        if let Some(channel) = &self.publish {
            tether_core::validate_channel(channel)
                .map_err(|e| format!("--publish {channel:?}: invalid channel name: {e}"))?;
        }
        Ok(())
    }

    fn protocol(&self) -> Protocol {
        match self.protocol {
            Some(ProtocolArg::Tether) => Protocol::Tether,
            Some(ProtocolArg::Raw) => Protocol::Raw,
            None if !self.subscribe.is_empty()
                || self.publish.is_some()
                || self.document.is_some() =>
            {
                Protocol::Tether
            }
            None => Protocol::Raw,
        }
    }

    /// The client builder these options describe; errors name the option.
    pub(crate) fn builder(&self) -> Result<ClientBuilder, String> {
        // A full outbox refuses the next line instead of dropping the oldest: the line is
        // then held, and stdin not read, until there is room (see `Held`). Set before the
        // bounds below, which it would otherwise reset.
        let outbox = OutboxConfig {
            overflow: OverflowPolicy::RejectNew,
            ..OutboxConfig::default()
        };
        let mut b = Client::builder(&self.url)
            .protocol(self.protocol())
            .outbox(outbox);
        for header in &self.headers {
            let (name, value) = header
                .split_once(':')
                .ok_or_else(|| format!("--header {header:?}: expected 'Name: value'"))?;
            b = b.header(name.trim(), value.trim());
        }
        if let Some(id) = &self.last_event_id {
            b = b.last_event_id(id.clone());
        }
        if let Some(token) = self.token.clone() {
            b = b.token_provider(move |_refresh| {
                let token = token.clone();
                async move { Ok::<_, std::convert::Infallible>(token) }
            });
        }
        if let Some(path) = &self.ca_file {
            b = b.ca_file(path);
        }
        if let Some(v) = self.heartbeat_interval {
            b = b.heartbeat_interval(ms(v));
        }
        if let Some(v) = self.max_missed_pongs {
            b = b.max_missed_pongs(v);
        }
        if let Some(mode) = self.ping_mode {
            b = b.heartbeat_mode(match mode {
                PingModeArg::Frame => HeartbeatMode::PingFrame,
                PingModeArg::Message => HeartbeatMode::AppMessage,
                PingModeArg::Server => HeartbeatMode::ServerDriven,
                PingModeArg::Off => HeartbeatMode::Off,
            });
        }
        if let Some(v) = self.backoff_initial {
            b = b.backoff_initial(ms(v));
        }
        if let Some(v) = self.backoff_max {
            b = b.backoff_max(ms(v));
        }
        if let Some(j) = self.jitter {
            b = b.jitter(j.into());
        }
        if self.max_attempts.is_some() {
            b = b.max_attempts(self.max_attempts);
        }
        if let Some(v) = self.min_uptime {
            b = b.min_uptime(ms(v));
        }
        if let Some(v) = self.outbox_messages {
            b = b.outbox_max_messages(v);
        }
        if let Some(v) = self.outbox_bytes {
            b = b.outbox_max_bytes(v);
        }
        if let Some(v) = self.max_message_bytes {
            b = b.max_message_bytes(v);
        }
        if let Some(v) = self.connect_timeout {
            b = b.connect_timeout(ms(v));
        }
        if let Some(v) = self.seed {
            b = b.seed(v);
        }
        if let Some(id) = &self.client_id {
            b = b.client_id(id.clone());
        }
        Ok(b)
    }
}

/// A config error in the CLI's terms: the option that sets the field, and, where the SDK's
/// reason speaks of its own names (fields, enum variants, `None`), what to type instead.
fn config_error(args: &ConnectArgs, field: &str, reason: &str) -> String {
    match field {
        // Also when only --backoff-initial was given, over the default cap: it named
        // --backoff-max alone, and `backoff.initial`, which no option is called.
        "backoff.max" if reason.contains("backoff.initial") => format!(
            "--backoff-max ({} ms) must be at least --backoff-initial ({} ms)",
            args.backoff_max.unwrap_or(30_000),
            args.backoff_initial.unwrap_or(500)
        ),
        "backoff.max_attempts" => {
            "--max-attempts: must be at least 1 (leave it out to retry for ever)".to_owned()
        }
        "heartbeat.mode" if reason.contains("receive-only") => {
            "--ping-mode: an event stream (http/https URL) is receive-only: use --ping-mode \
             server or off"
                .to_owned()
        }
        "heartbeat.mode" if reason.contains("ping frames") => {
            "--ping-mode: this client cannot send ping frames: use --ping-mode message".to_owned()
        }
        // These options take milliseconds: the smallest a zero can become is 1 (ms).
        _ if reason.starts_with("must be more than zero") => {
            format!("{}: must be at least 1 (ms)", option_for_field(field))
        }
        _ => format!("{}: {reason}", option_for_field(field)),
    }
}

/// Maps a config error's field to the option that sets it, so the message names what to fix.
fn option_for_field(field: &str) -> &'static str {
    match field {
        "url" => "URL",
        "backoff.initial" => "--backoff-initial",
        "backoff.max" => "--backoff-max",
        "backoff.max_attempts" => "--max-attempts",
        "heartbeat.interval" => "--heartbeat-interval",
        "heartbeat.max_missed" => "--max-missed-pongs",
        "heartbeat.mode" => "--ping-mode",
        "outbox.max_messages" => "--outbox-messages",
        "outbox.max_bytes" => "--outbox-bytes",
        "max_message_bytes" => "--max-message-bytes",
        "connect_timeout" => "--connect-timeout",
        "header" => "--header",
        "last_event_id" => "--last-event-id",
        "client_id" => "--client-id",
        "token" => "--token",
        _ => "an option",
    }
}

pub(crate) async fn run(args: ConnectArgs) -> ExitCode {
    let out = Output::new(args.json);
    if let Err(message) = args.check() {
        eprintln!("tether connect: {message}");
        return ExitCode::from(EXIT_USAGE);
    }
    // Before the client exists: from now on a signal closes it cleanly instead of killing
    // the process.
    let mut signals = Signals::install();
    let built = args.builder().and_then(|b| {
        b.connect().map_err(|e| match e {
            tether::BuildError::Config(c) => config_error(&args, c.field, &c.reason),
            // It names the file, not the option; without --ca-file it is no fault of one.
            tether::BuildError::Tls(reason) if args.ca_file.is_some() => {
                format!("--ca-file: {reason}")
            }
            other => other.to_string(),
        })
    });
    let (client, mut events) = match built {
        Ok(pair) => pair,
        Err(message) => {
            eprintln!("tether connect: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    for channel in &args.subscribe {
        if let Err(e) = client.subscribe(channel) {
            eprintln!("tether connect: --subscribe {channel:?}: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    }
    let document = match args.document.as_deref().map(|c| client.document(c)) {
        None => None,
        Some(Ok(doc)) => Some(doc),
        Some(Err(e)) => {
            eprintln!("tether connect: --document: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };

    // A line can be at most the largest message plus its line ending: anything longer could
    // never be sent, so it is not kept in memory while it is read (see `lines`).
    let line_cap = client.max_message_bytes().saturating_add(2);
    let mut stdin = LineReader::new(tokio::io::BufReader::new(tokio::io::stdin()), line_cap);
    let mut input = Input::default();
    let mut stdin_open = args.reads_stdin();
    let mut closing = false;
    let mut interrupted: Option<Signal> = None;
    // A line the outbox had no room for: stdin is not read until it is taken.
    let mut held: Option<Held> = None;
    // Stdout can no longer be written: whatever arrives would be printed for nobody.
    let mut stdout_lost = false;
    let mut pacer = Pacer::new(args.rate, tokio::time::Instant::now());
    loop {
        // Found when something was printed (an event, an error about a line): the run ends as
        // at the first signal. It went on for ever, printing into a closed pipe.
        if let (false, Some(kind)) = (stdout_lost, out.stdout_lost()) {
            stdout_lost = true;
            out.stderr_line(format_args!(
                "tether connect: cannot write to stdout ({kind}): closing once what was \
                 accepted is delivered"
            ));
            stdin_open = false;
            give_up_held(held.take(), &mut input, &out, "stdout was lost");
            if !closing {
                closing = true;
                drain_and_close(&client, &args);
            }
        }
        // Stdin is read only when the next line may be sent at once: `--rate` allows it, and
        // no line waits for room.
        let reading = stdin_open && held.is_none();
        let pace = match &mut pacer {
            Some(pacer) if reading => pacer.wait(tokio::time::Instant::now()),
            _ => None,
        };
        tokio::select! {
            // `next_line` is cancel safe: a line half read when another branch wins is kept.
            read = stdin.next_line(), if reading && pace.is_none() => {
                let at_end = match read {
                    Ok(None) => true,
                    Ok(Some(line)) => {
                        let offered = input.offered;
                        held = take_line(line, &mut input, document.as_ref(), &client, &args, &out);
                        if let (Some(pacer), true) = (&mut pacer, input.offered > offered) {
                            pacer.take(tokio::time::Instant::now());
                        }
                        false
                    }
                    Err(e) => {
                        input.read_failed = true;
                        out.error("stdin", &format!("cannot read after line {}: {e}; input ends here", input.lines));
                        true
                    }
                };
                if at_end {
                    stdin_open = false;
                    closing = true;
                    drain_and_close(&client, &args);
                }
            },
            () = tokio::time::sleep(pace.unwrap_or_default()), if pace.is_some() => {},
            // Room comes back as the outbox empties, which an event does not always say (a
            // message the socket took): the held line is offered again now and then.
            () = tokio::time::sleep(held.as_ref().map_or(ROOM_RETRY, Held::retry_in)), if held.is_some() => {
                held = offer_again(held, &mut input, document.as_ref(), &client, &args, &out);
            },
            signal = signals.recv() => {
                if interrupted.is_some() {
                    // Asked twice: no more waiting for the close. What is still pending is
                    // lost with the process, and said so.
                    give_up_held(held.take(), &mut input, &out, "the process exits");
                    let stats = client.stats();
                    out.exited(signal, &stats, stats.undelivered(), input.skipped);
                    let stop = Stop::signal(Some(signal), stdout_lost);
                    return ExitCode::from(exit_status(None, &stats, &input, stop));
                }
                interrupted = Some(signal);
                // As at the end of input: a line half read is dropped with the rest, and a
                // line still waiting for room cannot be taken by a closing client.
                stdin_open = false;
                give_up_held(held.take(), &mut input, &out, "reading stopped");
                out.interrupted(signal, client.outbox_len(), ms(args.drain_timeout));
                if !closing {
                    closing = true;
                    drain_and_close(&client, &args);
                }
            },
            event = events.recv() => match event {
                Some(event) => {
                    out.event(&event);
                    if let (Some(doc), tether::Event::DocumentChanged { origin, .. }) = (&document, &event) {
                        out.document(doc, *origin);
                    }
                    if let tether::Event::StateChanged { to: tether::State::Closed { reason }, .. } = &event {
                        give_up_held(held.take(), &mut input, &out, "the client closed");
                        let stats = client.stats();
                        out.closed(reason, &stats, stats.undelivered(), input.skipped);
                        let stop = Stop::signal(interrupted, stdout_lost);
                        return ExitCode::from(exit_status(Some(reason), &stats, &input, stop));
                    }
                    // An event often means the outbox has room again (an ack, a drop).
                    if held.is_some() {
                        held = offer_again(held, &mut input, document.as_ref(), &client, &args, &out);
                    }
                }
                None => return ExitCode::SUCCESS,
            },
        }
    }
}

/// Delivers what is pending (at most `--drain-timeout`), then closes: the end of stdin, or a
/// signal. The client's `Closed` event ends the run; the task only drives the close, and ends
/// with it.
fn drain_and_close(client: &Client, args: &ConnectArgs) {
    let client = client.clone();
    let timeout = ms(args.drain_timeout);
    tokio::spawn(async move { client.close_after_drain(timeout).await });
}

/// What became of stdin.
#[derive(Debug, Default)]
struct Input {
    /// Lines read.
    lines: u64,
    /// Lines offered to the client as a message or a document edit (each once, however
    /// often a full outbox refused it): what `--rate` paces.
    offered: u64,
    /// Lines that never became a message: not UTF-8, refused by `send`/`publish`, or still
    /// waiting for room in the outbox when the run ended ([`Held`]).
    skipped: u64,
    /// Reading failed (not the end of input): lines after it may be lost.
    read_failed: bool,
}

/// A line read from stdin, without its `\n` or `\r\n`, as text if it is UTF-8.
fn decode_line(mut bytes: Vec<u8>) -> Result<String, std::string::FromUtf8Error> {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    String::from_utf8(bytes)
}

/// Paces stdin to `--rate` lines a second: a token bucket holding at most a tenth of a
/// second's worth, refilled continuously, one token per line offered to the client. The run
/// reads the next line only once a token is there, so a long input waits in its pipe
/// (memory stays bounded) instead of going out as fast as the outbox empties: the reference
/// relay refused every message past its burst of 2,000 (`rate_limited`), which dropped
/// nearly every line of a long file after the first few thousand.
///
/// Small bursts leave the server's own burst for what a reconnect re-sends at once (what is
/// pending: at most `--outbox-messages`).
#[derive(Debug)]
struct Pacer {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: tokio::time::Instant,
}

impl Pacer {
    /// `None` for a rate of 0: no limit.
    fn new(per_second: u32, now: tokio::time::Instant) -> Option<Pacer> {
        let per_second = f64::from(per_second);
        let burst = (per_second / 10.0).max(1.0);
        (per_second > 0.0).then_some(Pacer {
            per_second,
            burst,
            tokens: burst,
            last: now,
        })
    }

    fn refill(&mut self, now: tokio::time::Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.last = now.max(self.last);
    }

    /// How long until a line may be sent: `None` if one may be now.
    fn wait(&mut self, now: tokio::time::Instant) -> Option<Duration> {
        self.refill(now);
        let missing = 1.0 - self.tokens;
        (missing > 0.0).then(|| Duration::from_secs_f64(missing / self.per_second))
    }

    /// A line was sent.
    fn take(&mut self, now: tokio::time::Instant) {
        self.refill(now);
        self.tokens -= 1.0;
    }
}

/// How soon a line held for want of room is first offered again, besides after every event;
/// each refusal doubles the wait, up to [`ROOM_RETRY_MAX`] (a server away for long).
const ROOM_RETRY: Duration = Duration::from_millis(10);
const ROOM_RETRY_MAX: Duration = Duration::from_millis(250);

/// A stdin line the outbox had no room for. It is offered again until the outbox takes it,
/// and stdin is not read meanwhile: a pipe then waits for the network, as a pipe into a slow
/// reader does, instead of the outbox dropping lines to make room (its default policy,
/// `DropOldest`, dropped nearly every line of a file piped in faster than the relay
/// acknowledged).
#[derive(Debug)]
struct Held {
    /// Its line number.
    line: u64,
    text: String,
    /// Times it was refused for want of room.
    refused: u32,
}

impl Held {
    /// How long to wait before offering it again.
    fn retry_in(&self) -> Duration {
        ROOM_RETRY
            .saturating_mul(1 << self.refused.min(8))
            .min(ROOM_RETRY_MAX)
    }
}

/// What became of a line offered to the client.
#[derive(Debug, PartialEq, Eq)]
enum Offer {
    /// Accepted.
    Taken,
    /// Refused by `send`, or a document command that is not one or that the client refused
    /// (reported): a skipped line. (A change the server rejects later was taken: it is
    /// reported as its own event.)
    Refused,
    /// The outbox is full: to be offered again.
    Full,
}

/// One line of stdin, as bytes with its line ending: a document command or a message. A line
/// that is too long, not UTF-8, or that `send` refuses is reported, skipped and counted. One
/// the outbox has no room for yet is returned, to be held.
fn take_line(
    line: Line,
    input: &mut Input,
    document: Option<&tether::Document>,
    client: &Client,
    args: &ConnectArgs,
    out: &Output,
) -> Option<Held> {
    input.lines += 1;
    let bytes = match line {
        Line::Complete(bytes) => bytes,
        Line::TooLong { bytes } => {
            input.skipped += 1;
            let (line, limit) = (input.lines, client.max_message_bytes());
            out.error(
                "stdin",
                &format!(
                    "line {line} is {bytes} bytes long, more than the largest message \
                     (--max-message-bytes {limit}); skipped"
                ),
            );
            return None;
        }
    };
    let line = match decode_line(bytes) {
        Ok(line) => line,
        Err(e) => {
            input.skipped += 1;
            let at = e.utf8_error().valid_up_to() + 1;
            let line = input.lines;
            out.error(
                "stdin",
                &format!("line {line} is not valid UTF-8 (byte {at}); skipped"),
            );
            return None;
        }
    };
    // A blank line is no message anyone meant: a file's last empty line, a paragraph break.
    // It was sent as an empty message. Whitespace is what `str::trim` strips, so a `\r`
    // left by a CRLF file is blank too.
    if line.trim().is_empty() && (document.is_some() || !args.send_blank) {
        return None;
    }
    input.offered += 1;
    let held = Held {
        line: input.lines,
        text: line,
        refused: 0,
    };
    offer_again(Some(held), input, document, client, args, out)
}

/// Offers a held line to the client again: `None` once it was taken (or refused, and
/// counted), else the line, still held.
fn offer_again(
    held: Option<Held>,
    input: &mut Input,
    document: Option<&tether::Document>,
    client: &Client,
    args: &ConnectArgs,
    out: &Output,
) -> Option<Held> {
    let mut held = held?;
    let offer = match document {
        Some(doc) => edit_document(doc, out, &held.text),
        None => send_line(client, args, out, &held.text),
    };
    match offer {
        Offer::Taken => None,
        Offer::Refused => {
            input.skipped += 1;
            None
        }
        Offer::Full => {
            held.refused = held.refused.saturating_add(1);
            Some(held)
        }
    }
}

/// A held line that will never be taken (`why`): reported and counted as skipped.
fn give_up_held(held: Option<Held>, input: &mut Input, out: &Output, why: &str) {
    if let Some(held) = held {
        input.skipped += 1;
        out.error(
            "stdin",
            &format!(
                "line {} was still waiting for room in the outbox when {why}; skipped",
                held.line
            ),
        );
    }
}

/// What stopped the run before the end of its input, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Neither: it ran to the end of stdin (or, listening, to a close).
    No,
    /// A signal.
    Signal(Signal),
    /// Stdout could no longer be written (and no signal came).
    StdoutLost,
}

impl Stop {
    /// A signal, if one came, says what stopped the run (the user's act); else a lost stdout.
    fn signal(signal: Option<Signal>, stdout_lost: bool) -> Stop {
        match (signal, stdout_lost) {
            (Some(signal), _) => Stop::Signal(signal),
            (None, true) => Stop::StdoutLost,
            (None, false) => Stop::No,
        }
    }
}

/// The exit status once closed (`reason`), or exiting unclosed on a second signal (`None`):
/// giving up or being refused is [`EXIT_GAVE_UP`] (whatever was lost with it); a message left
/// undelivered, or input that never became a message, is [`EXIT_UNDELIVERED`]; otherwise a
/// run a signal stopped says so with the signal's status, and one stopped by a lost stdout
/// with [`EXIT_STDOUT_LOST`], as stdin may not have been read to its end (the statuses that
/// report a loss keep their meaning, whatever ended the run).
fn exit_status(
    reason: Option<&tether::CloseReason>,
    stats: &tether::Stats,
    input: &Input,
    stop: Stop,
) -> u8 {
    if reason.is_some_and(tether::CloseReason::is_failure) {
        EXIT_GAVE_UP
    } else if stats.undelivered() > 0 || input.skipped > 0 || input.read_failed {
        EXIT_UNDELIVERED
    } else {
        match stop {
            Stop::Signal(signal) => signal.exit_status(),
            Stop::StdoutLost => EXIT_STDOUT_LOST,
            Stop::No => 0,
        }
    }
}

/// One document command from stdin: `set KEY JSON`, `insert KEY JSON`, `delete KEY`,
/// `inc KEY NUMBER`. A JSON argument that does not parse is taken as a string.
fn edit_document(doc: &tether::Document, out: &Output, line: &str) -> Offer {
    // Words apart by any run of whitespace: split at each single space, `set  milk 1` (two
    // spaces) set the key "" to the text "milk 1", and exited 0.
    let (verb, rest) = first_word(line);
    let (key, arg) = match rest.map(first_word) {
        Some((key, arg)) => (Some(key), arg),
        None => (None, None),
    };
    let (verb, arg) = (Some(verb).filter(|v| !v.is_empty()), arg.map(str::trim));
    let json =
        |arg: &str| serde_json::from_str(arg).unwrap_or_else(|_| Value::String(arg.to_owned()));
    let result = match (verb, key, arg) {
        (Some("set"), Some(key), Some(arg)) => doc.set(key, json(arg)),
        (Some("insert"), Some(key), Some(arg)) => doc.insert(key, json(arg)),
        (Some("delete" | "del"), Some(key), None) => doc.delete(key),
        (Some("inc" | "increment"), Some(key), by) => {
            match serde_json::from_str::<serde_json::Number>(by.unwrap_or("1")) {
                Ok(n) => doc.increment(key, n),
                Err(_) => {
                    out.error("document", &format!("not a number: {line:?}"));
                    return Offer::Refused;
                }
            }
        }
        _ => {
            out.error(
                "document",
                &format!("expected `set KEY JSON`, `insert KEY JSON`, `delete KEY` or `inc KEY N`, got {line:?}"),
            );
            return Offer::Refused;
        }
    };
    // A command with a typo, or one the client refuses (an `insert` of a key it sees), is a
    // line that never became a change: skipped, and the exit status says so (3), as for a
    // message `send` refuses. It exited 0, and a script of commands looked applied.
    match result {
        Ok(_) => Offer::Taken,
        Err(SyncError::Send(SendError::OutboxFull)) => Offer::Full,
        Err(e) => {
            out.error("document", &e.to_string());
            Offer::Refused
        }
    }
}

/// The first word of `text` and what follows it, if anything: words are apart by any run of
/// whitespace.
fn first_word(text: &str) -> (&str, Option<&str>) {
    let text = text.trim_start();
    match text.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, Some(rest.trim_start()).filter(|r| !r.is_empty())),
        None => (text, None),
    }
}

/// Sends (or publishes) one stdin line; a refusal is reported, but for a full outbox, which
/// the caller waits out.
fn send_line(client: &Client, args: &ConnectArgs, out: &Output, line: &str) -> Offer {
    let result = match &args.publish {
        Some(channel) => {
            let value: Value =
                serde_json::from_str(line).unwrap_or_else(|_| Value::String(line.to_owned()));
            let options = match args.ack_timeout {
                Some(t) => SendOptions::acked().with_timeout(ms(t)),
                None => SendOptions::default(),
            };
            client.publish_with(channel, Payload::Json(value), options)
        }
        None => client.send(line.to_owned()),
    };
    match result {
        Ok(_) => Offer::Taken,
        Err(SendError::OutboxFull) => Offer::Full,
        Err(e) => {
            out.error("send", &e.to_string());
            Offer::Refused
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(accepted: u64, settled: u64, dropped_closed: u64) -> tether::Stats {
        let mut stats = tether::Stats::default();
        stats.messages_accepted = accepted;
        stats.messages_settled = settled;
        stats.dropped_closed = dropped_closed;
        stats
    }

    #[test]
    fn a_clean_close_that_lost_a_message_is_not_a_success() {
        let app = tether::CloseReason::App { code: 1000 };
        let app = Some(&app);
        let clean = Input::default();
        let none = Stop::No;
        assert_eq!(exit_status(app, &stats(2, 2, 0), &clean, none), 0);
        assert_eq!(
            exit_status(app, &stats(2, 1, 1), &clean, none),
            EXIT_UNDELIVERED
        );
        // Still pending (not yet reported dropped) counts as undelivered too.
        assert_eq!(
            exit_status(app, &stats(2, 1, 0), &clean, none),
            EXIT_UNDELIVERED
        );
        let gave_up = tether::CloseReason::GaveUp { attempts: 3 };
        assert_eq!(
            exit_status(Some(&gave_up), &stats(2, 0, 2), &clean, none),
            EXIT_GAVE_UP
        );
        let skipped = Input {
            lines: 3,
            skipped: 1,
            ..Input::default()
        };
        assert_eq!(
            exit_status(app, &stats(2, 2, 0), &skipped, none),
            EXIT_UNDELIVERED
        );
    }

    #[test]
    fn a_signal_sets_the_status_only_when_nothing_was_lost() {
        let app = tether::CloseReason::App { code: 1000 };
        let app = Some(&app);
        let clean = Input::default();
        let int = Stop::Signal(Signal::Interrupt);
        let term = Stop::Signal(Signal::Terminate);
        assert_eq!(exit_status(app, &stats(2, 2, 0), &clean, int), 130);
        assert_eq!(exit_status(app, &stats(0, 0, 0), &clean, term), 143);
        assert_eq!(
            exit_status(app, &stats(2, 1, 1), &clean, int),
            EXIT_UNDELIVERED,
            "a loss is reported whatever ended the run"
        );
        let gave_up = tether::CloseReason::GaveUp { attempts: 3 };
        assert_eq!(
            exit_status(Some(&gave_up), &stats(0, 0, 0), &clean, term),
            EXIT_GAVE_UP
        );
        // Exited on a second signal, unclosed: what was pending is lost.
        assert_eq!(
            exit_status(None, &stats(2, 1, 0), &clean, int),
            EXIT_UNDELIVERED
        );
        assert_eq!(exit_status(None, &stats(2, 2, 0), &clean, int), 130);
        // Stopped by a lost stdout: SIGPIPE's status, unless a loss or a signal says more.
        let lost = Stop::StdoutLost;
        assert_eq!(exit_status(app, &stats(2, 2, 0), &clean, lost), 141);
        assert_eq!(
            exit_status(app, &stats(2, 1, 1), &clean, lost),
            EXIT_UNDELIVERED
        );
        assert_eq!(Stop::signal(Some(Signal::Interrupt), true), int);
    }

    #[test]
    fn the_pacer_allows_a_tenth_of_a_second_at_once_then_the_rate() {
        let t0 = tokio::time::Instant::now();
        assert!(Pacer::new(0, t0).is_none(), "0: no limit");
        let mut pacer = Pacer::new(100, t0).unwrap();
        for _ in 0..10 {
            assert_eq!(pacer.wait(t0), None);
            pacer.take(t0);
        }
        let wait = pacer.wait(t0).unwrap();
        assert!(
            wait > Duration::from_millis(9) && wait <= Duration::from_millis(10),
            "{wait:?}"
        );
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(pacer.wait(t1), None);
        pacer.take(t1);
        assert!(pacer.wait(t1).is_some());
        // A long pause saves no more than the burst.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..10 {
            assert_eq!(pacer.wait(t2), None);
            pacer.take(t2);
        }
        assert!(pacer.wait(t2).is_some());
        // Below 10 a second, one at a time.
        let mut slow = Pacer::new(2, t0).unwrap();
        slow.take(t0);
        assert_eq!(slow.wait(t0), Some(Duration::from_millis(500)));
    }

    #[test]
    fn stdin_lines_lose_their_ending_and_must_be_utf8() {
        assert_eq!(decode_line(b"a b\r\n".to_vec()).unwrap(), "a b");
        assert_eq!(decode_line(b"last".to_vec()).unwrap(), "last");
        assert_eq!(decode_line(b"\n".to_vec()).unwrap(), "");
        let bad = decode_line(b"ok\xff\n".to_vec()).unwrap_err();
        assert_eq!(bad.utf8_error().valid_up_to(), 2);
    }
}
