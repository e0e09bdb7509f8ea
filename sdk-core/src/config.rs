//! Engine configuration: every knob, its documented default, and validation in one place.
//!
//! A [`Config`] is only ever made by [`ConfigBuilder::build`], which checks each field once
//! and names the offending field in a [`ConfigError`]. The engine can then trust its config
//! and never re-validate it on the hot path.

use crate::close_policy::ClosePolicy;
use crate::errors::Quoted;
use std::time::Duration;

/// Which wire protocol the engine speaks over the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// Frames pass through untouched: works with any WebSocket or SSE server.
    /// Channels, presence, acks and requests are unavailable.
    #[default]
    Raw,
    /// Tether's versioned JSON envelope (docs/protocol.md): channels with resume, presence,
    /// acknowledged publishes and request/reply.
    Tether,
}

/// Which transport a URL selects: `ws(s)://` is WebSocket, `http(s)://` is Server-Sent Events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportKind {
    /// A full-duplex WebSocket.
    WebSocket,
    /// A receive-only Server-Sent Events stream: sends are refused
    /// ([`SendError::ReceiveOnly`](crate::SendError::ReceiveOnly)).
    Sse,
}

impl TransportKind {
    /// The transport `url` selects, by the rule [`ConfigBuilder::build`] applies (scheme,
    /// case-insensitive; a host, an IPv6 one in brackets; a port, if any, from 1 to 65535),
    /// so a tool can ask before building a config.
    ///
    /// ```
    /// use tether_core::TransportKind;
    /// assert_eq!(TransportKind::for_url("HTTPS://example.com/sse"), Ok(TransportKind::Sse));
    /// assert_eq!(TransportKind::for_url("ws://127.0.0.1:9000/"), Ok(TransportKind::WebSocket));
    /// assert!(TransportKind::for_url("ftp://example.com/").is_err());
    /// ```
    pub fn for_url(url: &str) -> Result<TransportKind, ConfigError> {
        transport_for_url(url)
    }
}

/// How the reconnect delay is randomised around the capped exponential curve.
///
/// With `base = min(max, initial × factor^(attempt-1))`:
/// - `None`: exactly `base` (every client retries in lock-step; for tests and comparisons).
/// - `Full`: uniform in `[0, base]` (the default: spreads a crowd of clients the most).
/// - `Equal`: uniform in `[base/2, base]`.
/// - `Decorrelated`: uniform in `[initial, min(max, previous × 3)]` (AWS's decorrelated jitter).
///
/// Jitter is applied *after* the cap, so it never collapses to a constant at the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// No randomisation.
    None,
    /// Uniform in `[0, base]`.
    #[default]
    Full,
    /// Uniform in `[base/2, base]`.
    Equal,
    /// Uniform in `[initial, min(max, previous × 3)]`.
    Decorrelated,
}

/// Reconnect delays and when to give up.
#[derive(Debug, Clone, PartialEq)]
pub struct BackoffConfig {
    /// Delay scale of the first retry. Default 500 ms (so the median reconnect after a 2 s outage is under 1 s; see docs/performance.md).
    pub initial: Duration,
    /// Cap on the un-jittered delay. Default 30 s.
    pub max: Duration,
    /// Growth per attempt. Default 2.0.
    pub factor: f64,
    /// Randomisation. Default [`Jitter::Full`].
    pub jitter: Jitter,
    /// Give up (state `Closed { GaveUp }`) after this many failed attempts in a row.
    /// Attempts that fail while the app reports the network offline
    /// ([`Engine::network_changed`](crate::Engine::network_changed)) are not counted, nor is an
    /// event stream that dispatched an event before it ended, however short (a server ending
    /// its stream after each batch, as SSE allows).
    /// Default `None`: never give up.
    pub max_attempts: Option<u32>,
    /// A connection must stay open this long before the attempt counter and the backoff are
    /// reset, so a server that accepts and then drops cannot cause a hot loop. Default 5 s.
    pub min_uptime: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            factor: 2.0,
            jitter: Jitter::Full,
            max_attempts: None,
            min_uptime: Duration::from_secs(5),
        }
    }
}

/// How liveness of an open connection is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HeartbeatMode {
    /// Pick for the transport: WebSocket ping frames where the driver can send them, else
    /// application pings in Tether protocol mode, else server-driven (any inbound traffic or
    /// the server's pings) where the driver sees the server's ping frames, else off (a
    /// browser's raw WebSocket: the browser answers pings itself and never shows them).
    /// On SSE: server-driven where the driver sees the server's comment keep-alives, else off.
    #[default]
    Auto,
    /// WebSocket ping/pong control frames (native drivers only; browsers cannot send them).
    PingFrame,
    /// Application-level ping messages: `{"type":"ping"}` in Tether mode; in raw mode the
    /// configured [`HeartbeatConfig::raw_ping`] text, answered by [`HeartbeatConfig::raw_pong`].
    AppMessage,
    /// The client sends nothing; the server must show life (any frame or a ping) at least once
    /// every `interval × (max_missed + 1)`. With a driver that does not see ping frames or
    /// SSE comments (a browser), only frames and events count: choose it only for a server
    /// that sends data that often.
    ServerDriven,
    /// No dead-connection detection beyond what the transport reports.
    Off,
}

const DEFAULT_RAW_PING: &str = "ping";
const DEFAULT_RAW_PONG: &str = "pong";

/// Dead-connection detection.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatConfig {
    /// Mode. Default [`HeartbeatMode::Auto`].
    pub mode: HeartbeatMode,
    /// Time between pings. Default 25 s.
    pub interval: Duration,
    /// The connection is declared dead when this many pings in a row went unanswered.
    /// Default 2, so a black hole is detected within `interval × (max_missed + 1)`.
    pub max_missed: u32,
    /// Optional per-ping deadline: if set, one unanswered ping older than this is fatal,
    /// independently of `max_missed`. Each ping has its own: a pong ends the deadlines of the
    /// ping it names and of earlier ones, not of later ones (with `any_frame_is_liveness`, any
    /// inbound frame ends them all). At most 16 are kept, the
    /// earliest (with a timeout over 16 intervals, the latest pings may go without one;
    /// `max_missed` still judges them). Default `None`.
    pub pong_timeout: Option<Duration>,
    /// Whether any inbound frame (or bytes of one still arriving) proves the connection
    /// alive: it answers every ping awaited, resetting the missed count and ending their
    /// deadlines. If `false`, only a pong does: one naming a ping answers it and the earlier
    /// ones, one without a number the latest, and one naming no ping awaited (a number above
    /// the last ping sent, or of a ping answered already) answers nothing. Default `true`.
    pub any_frame_is_liveness: bool,
    /// Deadline for the probe ping sent when the network changes or the app returns to the
    /// foreground while a connection is open. It is the probe's own: without
    /// `any_frame_is_liveness`, a pong to a ping sent before the probe does not meet it.
    /// Default 5 s.
    pub probe_timeout: Duration,
    /// Ping text for [`HeartbeatMode::AppMessage`] in raw mode. Default `"ping"`. Another
    /// text with any other mode or protocol is refused (`heartbeat.raw_ping`): it would not
    /// be sent.
    pub raw_ping: String,
    /// Pong text for [`HeartbeatMode::AppMessage`] in raw mode; such frames are consumed, not
    /// delivered. Default `"pong"`; refused as `raw_ping` is with another mode or protocol.
    pub raw_pong: String,
}

impl HeartbeatConfig {
    /// How long a connection may go without a sign of life before it is declared dead:
    /// `interval × (max_missed + 1)` (75 s by default).
    pub fn silence_limit(&self) -> Duration {
        self.interval
            .saturating_mul(self.max_missed.saturating_add(1))
    }
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            mode: HeartbeatMode::Auto,
            interval: Duration::from_secs(25),
            max_missed: 2,
            pong_timeout: None,
            any_frame_is_liveness: true,
            probe_timeout: Duration::from_secs(5),
            raw_ping: DEFAULT_RAW_PING.to_owned(),
            raw_pong: DEFAULT_RAW_PONG.to_owned(),
        }
    }
}

/// What happens when a message arrives at a full outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Drop the oldest queued messages (reported with `Dropped { reason: Overflow }`).
    #[default]
    DropOldest,
    /// Refuse the new message with `SendError::OutboxFull`.
    RejectNew,
}

/// The bounded queue of messages waiting for (or awaiting acknowledgement from) the server.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxConfig {
    /// Most messages held (queued + in flight). Default 1,000.
    pub max_messages: usize,
    /// Most payload bytes held (queued + in flight). Default 1 MiB.
    pub max_bytes: usize,
    /// Default [`OverflowPolicy::DropOldest`].
    pub overflow: OverflowPolicy,
    /// Messages not sent within this time are dropped with reason `Expired` and never sent
    /// later. Per-message TTLs override it. Default `None` (no expiry).
    pub default_ttl: Option<Duration>,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            max_messages: 1_000,
            max_bytes: 1 << 20,
            overflow: OverflowPolicy::DropOldest,
            default_ttl: None,
        }
    }
}

/// Where the token from the app's token provider goes on each attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenPlacement {
    /// An HTTP header on the handshake, `name: {prefix}{token}`
    /// (default `Authorization: Bearer …`). Native drivers only: browsers cannot set headers.
    Header {
        /// Header name.
        name: String,
        /// Prepended to the token.
        prefix: String,
    },
    /// A query parameter appended to the URL (browsers, SSE).
    Query {
        /// Parameter name.
        param: String,
    },
    /// In the first frame after open, `{"type":"hello","client_id":…,"token":…}` (Tether mode).
    /// The choice for browsers: they can set no headers, and a token refused in the URL is an
    /// HTTP 401 the page never sees, while a refused `hello` closes with 4001, which the close
    /// policy understands.
    FirstMessage,
}

impl TokenPlacement {
    /// `Authorization: Bearer <token>`.
    pub fn bearer_header() -> Self {
        TokenPlacement::Header {
            name: "Authorization".to_owned(),
            prefix: "Bearer ".to_owned(),
        }
    }
}

/// The engine's full configuration. Build it with [`Config::builder`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub(crate) url: String,
    pub(crate) transport: TransportKind,
    pub(crate) protocol: Protocol,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) subprotocols: Vec<String>,
    /// An event stream's position to resume from on the first attempt (`last_event_id`).
    pub(crate) resume_from: Option<String>,
    pub(crate) backoff: BackoffConfig,
    pub(crate) heartbeat: HeartbeatConfig,
    pub(crate) outbox: OutboxConfig,
    pub(crate) close_policy: ClosePolicy,
    pub(crate) token: Option<TokenPlacement>,
    pub(crate) connect_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) max_message_bytes: usize,
    pub(crate) write_batch_bytes: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) fail_requests_on_disconnect: bool,
    pub(crate) restart_streams: bool,
    pub(crate) client_id: Option<String>,
    pub(crate) seed: Option<u64>,
    pub(crate) can_send_ping_frames: bool,
    pub(crate) sees_ping_frames: bool,
    pub(crate) sees_sse_comments: bool,
    pub(crate) reports_progress: bool,
}

impl Config {
    /// Starts a builder for `url` (`ws://`, `wss://`, `http://` or `https://`).
    pub fn builder(url: impl Into<String>) -> ConfigBuilder {
        ConfigBuilder::new(url)
    }

    /// The server URL (without any token query parameter).
    pub fn url(&self) -> &str {
        &self.url
    }
    /// The transport the URL selected.
    pub fn transport(&self) -> TransportKind {
        self.transport
    }
    /// The wire protocol.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }
    /// Backoff settings.
    pub fn backoff(&self) -> &BackoffConfig {
        &self.backoff
    }
    /// Heartbeat settings (mode as configured; see [`Config::effective_heartbeat_mode`]).
    pub fn heartbeat(&self) -> &HeartbeatConfig {
        &self.heartbeat
    }
    /// Outbox bounds.
    pub fn outbox(&self) -> &OutboxConfig {
        &self.outbox
    }
    /// Close-code and HTTP-status policy.
    pub fn close_policy(&self) -> &ClosePolicy {
        &self.close_policy
    }
    /// Where tokens go, if a token provider is used.
    pub fn token_placement(&self) -> Option<&TokenPlacement> {
        self.token.as_ref()
    }
    /// Time allowed for an attempt's token fetch, and again for its handshake. Default 10 s.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
    /// The position an event stream resumes from on its first attempt, if the app gave one
    /// ([`ConfigBuilder::last_event_id`]).
    pub fn last_event_id(&self) -> Option<&str> {
        self.resume_from.as_deref()
    }
    /// Time the engine gives an attempt to open once its request goes out (the token fetch
    /// before it has `connect_timeout`): `connect_timeout`, or on an event stream (SSE) the
    /// heartbeat's [silence limit](HeartbeatConfig::silence_limit) when that is longer. The
    /// connection itself (TCP, a proxy's tunnel, TLS) still has `connect_timeout` in the
    /// native driver: only the wait for the response head is longer. Many SSE servers send
    /// their response head only with the first event (WSGI servers such as Flask and Django
    /// must; Node's `writeHead` without a flush does), so a quiet stream is silent before its
    /// head as after it, and a browser's `EventSource` waits for it: cut off at the connect
    /// timeout, such a stream never opened while it had nothing to say, and the events it
    /// sent between attempts were lost.
    pub fn open_timeout(&self) -> Duration {
        match self.transport {
            TransportKind::Sse => self.connect_timeout.max(self.heartbeat.silence_limit()),
            TransportKind::WebSocket => self.connect_timeout,
        }
    }
    /// Largest message accepted in either direction, in bytes. Default 1 MiB.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }
    /// The fixed seed, if one was configured (tests, `--seed`).
    pub fn seed(&self) -> Option<u64> {
        self.seed
    }

    /// The heartbeat mode after resolving [`HeartbeatMode::Auto`] for this transport.
    pub fn effective_heartbeat_mode(&self) -> HeartbeatMode {
        match (self.heartbeat.mode, self.transport) {
            // Server keep-alives on an event stream are comments; a driver that never sees
            // them (a browser's EventSource) would declare every quiet stream dead.
            (HeartbeatMode::Auto, TransportKind::Sse) if self.sees_sse_comments => {
                HeartbeatMode::ServerDriven
            }
            (HeartbeatMode::Auto, TransportKind::Sse) => HeartbeatMode::Off,
            (HeartbeatMode::Auto, TransportKind::WebSocket) if self.can_send_ping_frames => {
                HeartbeatMode::PingFrame
            }
            (HeartbeatMode::Auto, TransportKind::WebSocket) => match self.protocol {
                Protocol::Tether => HeartbeatMode::AppMessage,
                // A raw server's keep-alives are ping frames; a driver that never sees them
                // (a browser answers them itself) would declare every quiet socket dead.
                Protocol::Raw if self.sees_ping_frames => HeartbeatMode::ServerDriven,
                Protocol::Raw => HeartbeatMode::Off,
            },
            (mode, _) => mode,
        }
    }
}

/// A field of the configuration is invalid. `field` names it as the builder method does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config `{field}`: {reason}")]
pub struct ConfigError {
    /// The builder method / field at fault, e.g. `"backoff.initial"`.
    pub field: &'static str,
    /// What is wrong and what would be accepted.
    pub reason: String,
}

impl ConfigError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        ConfigError {
            field,
            reason: reason.into(),
        }
    }
}

/// Builds and validates a [`Config`]. Every setter documents its default.
///
/// Durations that must not be zero (timeouts, TTLs, heartbeat and backoff times, the close
/// policy's windows) must be at least one microsecond, the engine's clock resolution: a
/// shorter one would be zero on that clock and end what it times as soon as it starts.
///
/// ```
/// use std::time::Duration;
/// use tether_core::{Config, Jitter, Protocol};
///
/// let config = Config::builder("wss://example.com/socket")
///     .protocol(Protocol::Tether)
///     .backoff_initial(Duration::from_millis(500))
///     .jitter(Jitter::Equal)
///     .build()
///     .expect("valid config");
/// assert_eq!(config.backoff().max, Duration::from_secs(30));
///
/// let err = Config::builder("ftp://example.com").build().unwrap_err();
/// assert_eq!(err.field, "url");
/// ```
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    config: Config,
    /// The first header [`header`](Self::header) refused, for `build` to return. Checked as
    /// it is added, so a driver that never adds one (a browser's) links none of the checks.
    refused_header: Option<ConfigError>,
}

impl ConfigBuilder {
    fn new(url: impl Into<String>) -> Self {
        ConfigBuilder {
            refused_header: None,
            config: Config {
                url: url.into(),
                transport: TransportKind::WebSocket,
                protocol: Protocol::Raw,
                headers: Vec::new(),
                subprotocols: Vec::new(),
                resume_from: None,
                backoff: BackoffConfig::default(),
                heartbeat: HeartbeatConfig::default(),
                outbox: OutboxConfig::default(),
                close_policy: ClosePolicy::default(),
                token: None,
                connect_timeout: Duration::from_secs(10),
                close_timeout: Duration::from_secs(2),
                max_message_bytes: 1 << 20,
                write_batch_bytes: 1 << 20,
                request_timeout: Duration::from_secs(10),
                fail_requests_on_disconnect: true,
                restart_streams: true,
                client_id: None,
                seed: None,
                can_send_ping_frames: true,
                sees_ping_frames: true,
                reports_progress: false,
                sees_sse_comments: true,
            },
        }
    }

    /// Wire protocol. Default [`Protocol::Raw`].
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.config.protocol = protocol;
        self
    }
    /// Adds a handshake header (native drivers). Default none. The name must be an HTTP
    /// token (RFC 7230: letters, digits, ``!#$%&'*+-.^_`|~``), not one the handshake sets
    /// itself (`Host`, `Connection`, `Upgrade`, `Sec-WebSocket-*`, `Content-Length`,
    /// `Transfer-Encoding`, `Last-Event-ID`, `Accept-Encoding`), nor the token provider's
    /// header, and the value free of control characters, or [`build`](Self::build) refuses it
    /// (field `header`). On an event stream an app's `Accept` or `Cache-Control` replaces the
    /// driver's own (`text/event-stream`, `no-cache`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        if self.refused_header.is_none() {
            self.refused_header = check_header(&name, &value).err();
        }
        self.config.headers.push((name, value));
        self
    }
    /// An event stream's position to resume from on the first attempt, sent as its
    /// `Last-Event-ID` (a browser's `EventSource` cannot send the header: there it goes in the
    /// URL, as every resume does): typically one the app saved from
    /// `Engine::last_event_id` before it stopped. Default none; an empty id is none. After
    /// that, the engine keeps the position from the stream's `id:` fields as usual. `build`
    /// refuses it (field `last_event_id`) on a WebSocket URL, and when it is longer than
    /// [`MAX_EVENT_ID_LEN`](crate::sse::MAX_EVENT_ID_LEN) or holds a control character, which
    /// no header could carry.
    pub fn last_event_id(mut self, id: impl Into<String>) -> Self {
        let id = id.into();
        self.config.resume_from = (!id.is_empty()).then_some(id);
        self
    }
    /// Adds a WebSocket subprotocol to offer. Default none. Like a header name it must be
    /// an HTTP token, and offered once; an event stream (`http`/`https` URL) has none, so
    /// `build` refuses one there. A server that completes the handshake without one of them
    /// (a driver's [`TransportFailure::Subprotocol`](crate::TransportFailure::Subprotocol))
    /// stops the client with `CloseReason::Refused`, whose reason names the offer and the
    /// server's choice.
    pub fn subprotocol(mut self, name: impl Into<String>) -> Self {
        self.config.subprotocols.push(name.into());
        self
    }
    /// Replaces all backoff settings at once. Default [`BackoffConfig::default`].
    pub fn backoff(mut self, backoff: BackoffConfig) -> Self {
        self.config.backoff = backoff;
        self
    }
    /// First retry delay scale. Default 500 ms.
    pub fn backoff_initial(mut self, d: Duration) -> Self {
        self.config.backoff.initial = d;
        self
    }
    /// Cap of the un-jittered delay. Default 30 s.
    pub fn backoff_max(mut self, d: Duration) -> Self {
        self.config.backoff.max = d;
        self
    }
    /// Growth factor per attempt. Default 2.0.
    pub fn backoff_factor(mut self, factor: f64) -> Self {
        self.config.backoff.factor = factor;
        self
    }
    /// Jitter strategy. Default [`Jitter::Full`].
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.config.backoff.jitter = jitter;
        self
    }
    /// Give up after this many consecutive failed attempts, not counting those that fail
    /// while the app reports the network offline, nor an event stream that dispatched an
    /// event before it ended (a server ending its stream after each batch). Default unlimited.
    pub fn max_attempts(mut self, attempts: Option<u32>) -> Self {
        self.config.backoff.max_attempts = attempts;
        self
    }
    /// Uptime after which backoff resets. Default 5 s.
    pub fn min_uptime(mut self, d: Duration) -> Self {
        self.config.backoff.min_uptime = d;
        self
    }
    /// Replaces all heartbeat settings at once. Default [`HeartbeatConfig::default`].
    pub fn heartbeat(mut self, heartbeat: HeartbeatConfig) -> Self {
        self.config.heartbeat = heartbeat;
        self
    }
    /// Heartbeat mode. Default [`HeartbeatMode::Auto`].
    pub fn heartbeat_mode(mut self, mode: HeartbeatMode) -> Self {
        self.config.heartbeat.mode = mode;
        self
    }
    /// Ping interval. Default 25 s.
    pub fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.config.heartbeat.interval = d;
        self
    }
    /// Unanswered pings in a row before the connection is declared dead. Default 2.
    pub fn max_missed_pongs(mut self, n: u32) -> Self {
        self.config.heartbeat.max_missed = n;
        self
    }
    /// Per-ping deadline. Default none.
    pub fn pong_timeout(mut self, d: Option<Duration>) -> Self {
        self.config.heartbeat.pong_timeout = d;
        self
    }
    /// Replaces all outbox settings at once. Default [`OutboxConfig::default`].
    pub fn outbox(mut self, outbox: OutboxConfig) -> Self {
        self.config.outbox = outbox;
        self
    }
    /// Outbox bound in messages. Default 1,000. Messages handed to a driver that reports
    /// progress ([`driver_reports_progress`](Self::driver_reports_progress)) but not yet taken
    /// by its socket are outside the bounds (they are handed over; at most this many and about
    /// [`write_batch_bytes`](Self::write_batch_bytes)), though `outbox_len` counts them.
    pub fn outbox_max_messages(mut self, n: usize) -> Self {
        self.config.outbox.max_messages = n;
        self
    }
    /// Outbox bound in bytes. Default 1 MiB.
    pub fn outbox_max_bytes(mut self, n: usize) -> Self {
        self.config.outbox.max_bytes = n;
        self
    }
    /// Default per-message TTL. Default none.
    pub fn message_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.config.outbox.default_ttl = ttl;
        self
    }
    /// Close-code / HTTP-status policy. Default [`ClosePolicy::default`].
    pub fn close_policy(mut self, policy: ClosePolicy) -> Self {
        self.config.close_policy = policy;
        self
    }
    /// Ask the driver's token provider before every attempt and place the token here.
    /// Default: no token provider.
    pub fn token(mut self, placement: TokenPlacement) -> Self {
        self.config.token = Some(placement);
        self
    }
    /// Time allowed for an attempt's token fetch, and again for its handshake once the
    /// request is sent (so an attempt with a token provider may take up to twice this).
    /// Default 10 s. An event stream (SSE), once its request is sent, is given its
    /// heartbeat's silence limit when that is longer (see [`Config::open_timeout`]).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.config.connect_timeout = d;
        self
    }
    /// Time allowed for the close handshake before the transport is dropped. Default 2 s.
    pub fn close_timeout(mut self, d: Duration) -> Self {
        self.config.close_timeout = d;
        self
    }
    /// Largest message in either direction. Default 1 MiB.
    pub fn max_message_bytes(mut self, n: usize) -> Self {
        self.config.max_message_bytes = n;
        self
    }
    /// The most bytes of queued messages handed to the transport in one go (an outbox
    /// flushed when a connection opens, or when backpressure lifts): past it (plus the message
    /// that crossed it), the engine gives the driver a turn, a deadline at once, so that it can
    /// report backpressure (`transport_writable(false)`) before the rest is handed over. A
    /// browser driver sets it to its `bufferedAmount` high-water mark. With a driver that
    /// reports progress ([`driver_reports_progress`](Self::driver_reports_progress)) it is
    /// also how many bytes of messages may be handed over and not yet taken by the socket:
    /// the next ones wait for its report (control frames, and the message that crosses the
    /// mark, go past it). Default 1 MiB.
    pub fn write_batch_bytes(mut self, n: usize) -> Self {
        self.config.write_batch_bytes = n;
        self
    }
    /// Default request timeout. Default 10 s.
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.config.request_timeout = d;
        self
    }
    /// Whether requests already sent fail at once (`ConnectionLost`) when the connection
    /// drops, rather than being re-sent after the reconnect. Default `true`.
    pub fn fail_requests_on_disconnect(mut self, fail: bool) -> Self {
        self.config.fail_requests_on_disconnect = fail;
        self
    }
    /// Whether an open event stream is restarted from its position after an online report or
    /// a return to the foreground ([`DisconnectCause::StreamRestarted`](crate::DisconnectCause::StreamRestarted)),
    /// as a stream cannot be probed with a ping. Default `true`. Turn it off for a server that
    /// sends `id:` fields but does not resume from them (natively the `Last-Event-ID` header,
    /// in a browser the `lastEventId` query parameter, which an `EventSource` must use): a
    /// restart there loses or repeats what the server sent meanwhile. Off, a stream whose
    /// socket died with the old network is found at the heartbeat's silence limit.
    pub fn restart_streams(mut self, restart: bool) -> Self {
        self.config.restart_streams = restart;
        self
    }
    /// Stable identity for presence, sent in `hello` (Tether mode). Default: random per engine.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.config.client_id = Some(id.into());
        self
    }
    /// Fixes the PRNG seed (tests, reproducing a run). Default: the driver's entropy.
    ///
    /// A seed reproduces timing (the backoff jitter), not identity: the default client id
    /// and the prefix of publish ids still come from the driver's entropy, so two processes
    /// run with the same seed are two senders, and a server does not take the second one's
    /// publishes for resends of the first one's. Fix [`client_id`](Self::client_id) for a
    /// stable presence identity.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }
    /// Declares whether the driver can send WebSocket ping frames (browsers cannot).
    /// Used to resolve [`HeartbeatMode::Auto`]. Default `true`; the wasm driver sets `false`.
    pub fn driver_can_send_ping_frames(mut self, can: bool) -> Self {
        self.config.can_send_ping_frames = can;
        self
    }

    /// Declares whether the driver reports the server's WebSocket ping frames
    /// ([`Engine::ping_received`](crate::Engine::ping_received)). Used to resolve
    /// [`HeartbeatMode::Auto`] for a raw WebSocket whose driver cannot send ping frames
    /// either: without the server's pings a quiet but healthy connection cannot be told from a
    /// dead one, so Auto turns heartbeats off and relies on the transport reporting the drop
    /// (configure [`HeartbeatMode::AppMessage`] for a server that answers `raw_ping`). An
    /// explicit [`HeartbeatMode::ServerDriven`] is kept: data frames still count. Default
    /// `true`; the wasm driver sets `false` (browsers answer pings and never show them).
    pub fn driver_sees_ping_frames(mut self, sees: bool) -> Self {
        self.config.sees_ping_frames = sees;
        self
    }

    /// Declares whether the driver reports SSE comment lines (a server's `:keepalive`) as
    /// liveness. Used to resolve [`HeartbeatMode::Auto`] on SSE: without them a quiet but
    /// healthy stream cannot be told from a dead one, so Auto turns heartbeats off and relies
    /// on the transport reporting the drop. Default `true`; the wasm driver sets `false`
    /// (`EventSource` hides comments).
    pub fn driver_sees_sse_comments(mut self, sees: bool) -> Self {
        self.config.sees_sse_comments = sees;
        self
    }

    /// Declares that the driver reports, with
    /// [`Engine::transport_progress`](crate::Engine::transport_progress), the bytes of frames
    /// its socket has taken. The engine then keeps a message that awaits nothing from the
    /// server in the outbox until the socket took it, re-sends it on the next connection if the
    /// transport ends first (a driver's own queue would otherwise lose it unreported), and
    /// hands over at most [`write_batch_bytes`](Self::write_batch_bytes) not yet taken. Default
    /// `false` (a message leaves the outbox when handed over); the native driver sets `true`,
    /// and so does the browser's, from the bytes `bufferedAmount` says it still holds.
    pub fn driver_reports_progress(mut self, reports: bool) -> Self {
        self.config.reports_progress = reports;
        self
    }

    /// Validates every field and returns the config, or the first invalid field.
    pub fn build(self) -> Result<Config, ConfigError> {
        let mut c = self.config;
        c.transport = transport_for_url(&c.url)?;
        validate_backoff(&c.backoff)?;
        validate_heartbeat(&c)?;
        if c.outbox.max_messages == 0 {
            return Err(ConfigError::new(
                "outbox.max_messages",
                "must be at least 1",
            ));
        }
        if c.outbox.max_bytes == 0 {
            return Err(ConfigError::new("outbox.max_bytes", "must be at least 1"));
        }
        if let Some(ttl) = c.outbox.default_ttl {
            at_least_a_microsecond("outbox.default_ttl", ttl)?;
        }
        if c.max_message_bytes == 0 {
            return Err(ConfigError::new("max_message_bytes", "must be at least 1"));
        }
        if c.write_batch_bytes == 0 {
            return Err(ConfigError::new("write_batch_bytes", "must be at least 1"));
        }
        at_least_a_microsecond("connect_timeout", c.connect_timeout)?;
        at_least_a_microsecond("close_timeout", c.close_timeout)?;
        at_least_a_microsecond("request_timeout", c.request_timeout)?;
        if c.token == Some(TokenPlacement::FirstMessage) && c.protocol != Protocol::Tether {
            return Err(ConfigError::new(
                "token",
                "a first-message token needs the tether protocol (a raw server would not know it)",
            ));
        }
        if c.token == Some(TokenPlacement::FirstMessage) && c.transport == TransportKind::Sse {
            // The stream is receive-only: the `hello` would never be written, and every
            // token fetched would go nowhere while the server refuses the stream.
            return Err(ConfigError::new(
                "token",
                "an event stream (http/https URL) sends nothing, so it cannot carry a \
                 first-message token: use a header or query placement",
            ));
        }
        match &c.token {
            Some(TokenPlacement::Header { name, .. }) if !is_token(name) => {
                return Err(ConfigError::new(
                    "token",
                    format!("invalid header name {}: {TOKEN_RULE}", Quoted(name)),
                ));
            }
            // `?=<token>`: no server reads a parameter without a name.
            Some(TokenPlacement::Query { param }) if param.is_empty() => {
                return Err(ConfigError::new("token", "query parameter name is empty"));
            }
            _ => {}
        }
        if let Some(refused) = self.refused_header {
            return Err(refused);
        }
        for (name, _) in &c.headers {
            // Two of them on every handshake, the app's and the provider's token: which one a
            // server reads is its own choice, so a stale credential could win.
            if let Some(TokenPlacement::Header { name: token, .. }) = &c.token {
                if token.eq_ignore_ascii_case(name) {
                    return Err(ConfigError::new(
                        "header",
                        format!(
                            "{} is where the token provider's token goes: set one or the other",
                            Quoted(name)
                        ),
                    ));
                }
            }
        }
        // Same failure mode (tungstenite cannot build the header; a browser's `WebSocket`
        // throws a SyntaxError for a non-token or a repeated protocol).
        for (i, name) in c.subprotocols.iter().enumerate() {
            if !is_token(name) {
                return Err(ConfigError::new(
                    "subprotocol",
                    format!("invalid subprotocol {}: {TOKEN_RULE}", Quoted(name)),
                ));
            }
            if c.subprotocols[..i].contains(name) {
                return Err(ConfigError::new(
                    "subprotocol",
                    format!("{} is offered twice", Quoted(name)),
                ));
            }
        }
        if !c.subprotocols.is_empty() && c.transport == TransportKind::Sse {
            // An event stream has no subprotocol negotiation: the offer would be dropped
            // without a word, and a server that requires it refuses for reasons the app
            // cannot see.
            return Err(ConfigError::new(
                "subprotocol",
                "an event stream (http/https URL) has no subprotocols: they are WebSocket only",
            ));
        }
        if let Some(id) = &c.resume_from {
            if c.transport != TransportKind::Sse {
                return Err(ConfigError::new(
                    "last_event_id",
                    "a WebSocket has no event ids: a resume position is for an event stream \
                     (http/https URL)",
                ));
            }
            if !crate::sse::is_resumable_id(id) {
                return Err(ConfigError::new(
                    "last_event_id",
                    format!(
                        "must be at most {} bytes with no control characters, as a header \
                         must carry it",
                        crate::sse::MAX_EVENT_ID_LEN
                    ),
                ));
            }
        }
        if let Some(id) = &c.client_id {
            validate_client_id(id).map_err(|reason| ConfigError::new("client_id", reason))?;
        }
        c.close_policy.validate()?;
        Ok(c)
    }
}

/// The longest `client_id`, in bytes.
pub const MAX_CLIENT_ID_LEN: usize = 128;

/// Why `id` cannot be a client id (the presence identity sent in `hello`), if it cannot: it
/// must be 1 to [`MAX_CLIENT_ID_LEN`] bytes without control characters. The client's builder
/// and the reference relay both check with this, so neither accepts an id the other refuses.
///
/// ```
/// assert!(tether_core::validate_client_id("alice").is_ok());
/// assert!(tether_core::validate_client_id("").is_err());
/// assert!(tether_core::validate_client_id("a\nb").is_err());
/// ```
pub fn validate_client_id(id: &str) -> Result<(), String> {
    crate::channels::check_name(id, MAX_CLIENT_ID_LEN)
}

fn transport_for_url(url: &str) -> Result<TransportKind, ConfigError> {
    let shown = without_credentials(url);
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let (kind, rest) = if lower.starts_with("ws://") {
        (TransportKind::WebSocket, &url[5..])
    } else if lower.starts_with("wss://") {
        (TransportKind::WebSocket, &url[6..])
    } else if lower.starts_with("http://") {
        (TransportKind::Sse, &url[7..])
    } else if lower.starts_with("https://") {
        (TransportKind::Sse, &url[8..])
    } else {
        return Err(ConfigError::new(
            "url",
            format!(
                "{} must start with ws://, wss://, http:// or https://",
                Quoted(&shown)
            ),
        ));
    };
    if url.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
        return Err(ConfigError::new(
            "url",
            format!("{} contains whitespace", Quoted(&shown)),
        ));
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if !is_authority(&rest[..authority_end]) {
        return Err(ConfigError::new(
            "url",
            format!(
                "{} needs a host (an IPv6 address in [brackets]) and, if it names a port, \
                 a port from 1 to 65535",
                Quoted(&shown)
            ),
        ));
    }
    Ok(kind)
}

/// `url` as an error shows it: a `user:password@` as `…@`, and the query and fragment, where
/// tokens go (`?token=`), as `?…` and `#…`, as drivers show a proxy's URL or a redirect's
/// `Location`: an error's text reaches logs and crash reports. Only refused URLs come here,
/// malformed ones included (`wss:/bob:pw@h`, a password with an unencoded `/` or `#`), so it
/// over-redacts rather than parse: everything after the scheme up to the last `@` anywhere
/// goes, even an `@` in a query (`?mail=a@b` shows as `…@b`).
fn without_credentials(url: &str) -> String {
    // Byte searches over ASCII marks (so every cut is a char boundary): `str::find` with a
    // `&str` or a char set links searchers that cost the browser package ~1.5 KB gzipped.
    let bytes = url.as_bytes();
    // A scheme, if there is one (RFC 3986: letters, digits, `+`, `-`, `.`), then `://`.
    let scheme = bytes
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || b"+-.".contains(b))
        .count();
    let start = match bytes[scheme..].starts_with(b"://") {
        true => scheme + 3,
        false => 0,
    };
    let host = bytes[start..]
        .iter()
        .rposition(|b| *b == b'@')
        .map_or(start, |at| start + at + 1);
    let end = bytes[host..]
        .iter()
        .position(|b| b"?#".contains(b))
        .map_or(bytes.len(), |i| host + i);
    let mut shown = String::with_capacity(end + 8);
    shown.push_str(&url[..start]);
    if host > start {
        shown.push_str("…@");
    }
    shown.push_str(&url[host..end]);
    if end < bytes.len() {
        shown.push_str(if bytes[end] == b'?' { "?…" } else { "#…" });
    }
    shown
}

/// Whether a URL's `[userinfo@]host[:port]` has a host (an IPv6 literal in balanced
/// brackets) and, if a `:` follows it, a port of 1 to 65535. Not a full RFC 3986 parser (the
/// engine carries no URL crate: its wasm build has a size budget); enough that a URL no driver
/// could connect to is refused here rather than failing every attempt. One verdict and one
/// message for every way it can be wrong: each message cost the browser module its bytes.
fn is_authority(authority: &str) -> bool {
    // Byte positions rather than `split_once`/`parse::<u16>`: each of those is another
    // generic instantiation in the browser module.
    let bytes = authority.as_bytes();
    // The userinfo may hold any of `[]:`; the host starts after its last `@`.
    let start = bytes
        .iter()
        .rposition(|&b| b == b'@')
        .map_or(0, |at| at + 1);
    let host_port = &bytes[start..];
    let (host, port) = if host_port.first() == Some(&b'[') {
        let Some(close) = host_port.iter().position(|&b| b == b']') else {
            return false;
        };
        let inside = &host_port[1..close];
        if inside.contains(&b'[') {
            return false;
        }
        match &host_port[close + 1..] {
            [] => (inside, None),
            [b':', port @ ..] => (inside, Some(port)),
            _ => return false,
        }
    } else {
        if host_port.iter().any(|&b| b == b'[' || b == b']') {
            return false;
        }
        match host_port.iter().position(|&b| b == b':') {
            Some(colon) => (&host_port[..colon], Some(&host_port[colon + 1..])),
            None => (host_port, None),
        }
    };
    !host.is_empty() && port.is_none_or(is_port)
}

/// Whether `digits` is a TCP port, 1 to 65535, written with ASCII digits only (leading
/// zeros allowed, as URLs allow them).
fn is_port(digits: &[u8]) -> bool {
    let mut port: u32 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return false;
        }
        port = port * 10 + u32::from(b - b'0');
        if port > 65_535 {
            return false;
        }
    }
    !digits.is_empty() && port != 0
}

fn validate_backoff(b: &BackoffConfig) -> Result<(), ConfigError> {
    at_least_a_microsecond("backoff.initial", b.initial)?;
    if b.max < b.initial {
        return Err(ConfigError::new(
            "backoff.max",
            "must be at least backoff.initial",
        ));
    }
    if !b.factor.is_finite() || b.factor < 1.0 {
        return Err(ConfigError::new(
            "backoff.factor",
            "must be a finite number >= 1.0",
        ));
    }
    if b.max_attempts == Some(0) {
        return Err(ConfigError::new(
            "backoff.max_attempts",
            "must be at least 1 (unset, attempts are unlimited)",
        ));
    }
    Ok(())
}

fn validate_heartbeat(c: &Config) -> Result<(), ConfigError> {
    let h = &c.heartbeat;
    let mode = c.effective_heartbeat_mode();
    // Texts of the app's own would be ignored, and its server's pings never sent, with no
    // sign: refused where no raw application ping is sent (`Auto` is ping frames, or off in
    // a browser; the Tether protocol's pings are its own messages).
    let uses_raw_texts = mode == HeartbeatMode::AppMessage && c.protocol == Protocol::Raw;
    if !uses_raw_texts {
        let unsent = |field| {
            ConfigError::new(
                field,
                "used only by the app-message heartbeat mode on the raw protocol",
            )
        };
        if h.raw_ping != DEFAULT_RAW_PING {
            return Err(unsent("heartbeat.raw_ping"));
        }
        if h.raw_pong != DEFAULT_RAW_PONG {
            return Err(unsent("heartbeat.raw_pong"));
        }
    }
    if mode == HeartbeatMode::Off {
        return Ok(());
    }
    at_least_a_microsecond("heartbeat.interval", h.interval)?;
    at_least_a_microsecond("heartbeat.probe_timeout", h.probe_timeout)?;
    if h.max_missed == 0 {
        return Err(ConfigError::new(
            "heartbeat.max_missed",
            "must be at least 1",
        ));
    }
    if let Some(timeout) = h.pong_timeout {
        at_least_a_microsecond("heartbeat.pong_timeout", timeout)?;
    }
    match (mode, c.transport) {
        (HeartbeatMode::PingFrame | HeartbeatMode::AppMessage, TransportKind::Sse) => {
            Err(ConfigError::new(
                "heartbeat.mode",
                "an event stream (http/https URL) is receive-only: use the server-driven mode or off",
            ))
        }
        (HeartbeatMode::PingFrame, _) if !c.can_send_ping_frames => Err(ConfigError::new(
            "heartbeat.mode",
            "this driver cannot send ping frames: use the app-message mode",
        )),
        (HeartbeatMode::AppMessage, _) if c.protocol == Protocol::Raw && h.raw_ping.is_empty() => {
            Err(ConfigError::new("heartbeat.raw_ping", "must not be empty"))
        }
        _ => Ok(()),
    }
}

/// What [`is_token`] accepts, for error messages.
const TOKEN_RULE: &str =
    "a header name is one or more letters, digits or !#$%&'*+-.^_`|~ (RFC 7230 token)";

/// Whether `name` is an HTTP token (RFC 7230 §3.2.6), as a header name must be: one or more
/// ASCII letters, digits or ``!#$%&'*+-.^_`|~``.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header the app may add to the handshake. Refused here, once: on the handshake every
/// attempt would fail with a transport error (or a server's 400), retried for ever.
fn check_header(name: &str, value: &str) -> Result<(), ConfigError> {
    if !is_token(name) {
        return Err(ConfigError::new(
            "header",
            format!("invalid header name {}: {TOKEN_RULE}", Quoted(name)),
        ));
    }
    // A second Host, Upgrade or Sec-WebSocket-Key makes a server refuse every handshake
    // (400), an offered extension the driver cannot speak breaks the connection once
    // accepted, and a Last-Event-ID of the app's would fight the engine's resume.
    if let Some(owner) = handshake_owned(name) {
        return Err(ConfigError::new(
            "header",
            format!("{} is set by {owner}, not by the app", Quoted(name)),
        ));
    }
    // A control character (a stray newline) would make every handshake fail locally,
    // attempt after attempt, without ever reaching the server.
    if !is_header_value(value) {
        return Err(ConfigError::new(
            "header",
            format!("the value of {} contains control characters", Quoted(name)),
        ));
    }
    Ok(())
}

/// Who sets header `name` on a handshake when it is not the app: the HTTP request line
/// (`Host` and the framing headers), the WebSocket handshake (`Connection`, `Upgrade`,
/// `Sec-WebSocket-*`; subprotocols have their own option), the engine's SSE resume position,
/// or the driver (`Accept-Encoding`: an event stream's body goes to the parser as it comes).
fn handshake_owned(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "host" | "content-length" | "transfer-encoding" | "connection" | "upgrade" => {
            Some("the handshake")
        }
        "sec-websocket-protocol" => Some("the subprotocol option"),
        "last-event-id" => Some("the engine's resume position"),
        // An event stream is read as it comes: a compressed one is refused.
        "accept-encoding" => Some("the driver (it reads the stream uncompressed)"),
        _ if lower.starts_with("sec-websocket-") => Some("the handshake"),
        _ => None,
    }
}

/// Whether `value` can be sent as an HTTP header value: no control characters but tab.
pub(crate) fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| (b >= 0x20 || b == b'\t') && b != 0x7f)
}

/// A duration the engine must be able to wait for: under a microsecond it is zero on the
/// engine's clock, so a TTL would expire every message inside `send`, a heartbeat interval
/// would declare every connection dead as it opens, a timeout would fire at once. Fields that
/// may be zero (`backoff.min_uptime`) do not use it.
pub(crate) fn at_least_a_microsecond(field: &'static str, d: Duration) -> Result<(), ConfigError> {
    if crate::time::under_a_microsecond(d) {
        Err(ConfigError::new(
            field,
            // Not `{d:?}`: Duration's Debug brings its own number formatting into the
            // browser module (~2 KB gzipped) for one message.
            // Said without a unit of its own: the SDKs take milliseconds, a Rust app a
            // `Duration`, and "at least 1 µs" is a value a milliseconds option cannot take.
            "must be more than zero (the engine's clock counts whole microseconds)",
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_ping_texts_are_refused_where_no_raw_ping_is_sent() {
        let with_texts = |url: &str, protocol, mode, ping: &str, pong: &str| {
            let mut b = Config::builder(url).protocol(protocol);
            let mut hb = HeartbeatConfig {
                mode,
                ..HeartbeatConfig::default()
            };
            hb.raw_ping = ping.to_owned();
            hb.raw_pong = pong.to_owned();
            b = b.heartbeat(hb);
            b.build().map(|_| ()).map_err(|e| e.field)
        };
        let (raw, tether) = (Protocol::Raw, Protocol::Tether);
        use HeartbeatMode::*;
        assert_eq!(with_texts("ws://x", raw, AppMessage, "hb", "hb!"), Ok(()));
        // Auto is ping frames natively (off in a browser): the texts would never be sent.
        for (url, protocol, mode, ping, pong, refused) in [
            ("ws://x", raw, Auto, "hb", "pong", "heartbeat.raw_ping"),
            ("ws://x", raw, Auto, "ping", "hb!", "heartbeat.raw_pong"),
            ("ws://x", raw, PingFrame, "hb", "pong", "heartbeat.raw_ping"),
            ("ws://x", raw, Off, "hb", "pong", "heartbeat.raw_ping"),
            (
                "ws://x",
                tether,
                AppMessage,
                "hb",
                "pong",
                "heartbeat.raw_ping",
            ),
            ("http://x", raw, Auto, "ping", "hb!", "heartbeat.raw_pong"),
        ] {
            let got = with_texts(url, protocol, mode, ping, pong);
            assert_eq!(got, Err(refused), "{url} {protocol:?} {mode:?}");
        }
        // The defaults, named or not, are not the app's texts.
        assert_eq!(with_texts("ws://x", tether, Auto, "ping", "pong"), Ok(()));
    }

    #[test]
    fn token_names_must_not_be_empty() {
        let query = Config::builder("ws://x").token(TokenPlacement::Query {
            param: String::new(),
        });
        assert_eq!(query.build().unwrap_err().field, "token");
        let named = Config::builder("ws://x").token(TokenPlacement::Query {
            param: "t".to_owned(),
        });
        assert!(named.build().is_ok());
    }

    #[test]
    fn a_refused_url_is_shown_without_its_credentials() {
        // Error texts reach logs and crash reports: a `user:password@` and a query (often
        // `?token=`) are left out, as the proxy's and a redirect's are; the rest is shown.
        for (url, shown) in [
            ("ws://bob:s3cret@host:99999/x", "\"ws://…@host:99999/x\""),
            ("wss://bob:s3cret@ho st/", "\"wss://…@ho st/\""),
            ("wss://h/feed?token=s3cret&x=1 2", "\"wss://h/feed?…\""),
            ("ws://:s3cret@/x#s3cret", "\"ws://…@/x#…\""),
            ("ftp://bob:s3cret@h/?token=s3cret", "\"ftp://…@h/?…\""),
            ("bob:s3cret@h", "\"…@h\""),
            ("bob:s3cret@h?next=ws://x", "\"…@h?…\""),
            // Malformed, as refused URLs often are: the secret still goes.
            ("wss:/bob:s3cret@h/x", "\"…@h/x\""),
            ("wss//bob:s3cret@h", "\"…@h\""),
            ("wss:///bob:s3cret@h", "\"wss://…@h\""),
            ("//bob:s3cret@h", "\"…@h\""),
            ("ws+unix://bob:s3cret@h", "\"ws+unix://…@h\""),
            ("wss://bob:s3/cret@host/x y", "\"wss://…@host/x y\""),
            ("wss://bob:s3#cret@h/ x", "\"wss://…@h/ x\""),
            ("wss://bob:s3?cret@h/ x", "\"wss://…@h/ x\""),
        ] {
            let e = Config::builder(url).build().unwrap_err();
            assert_eq!(e.field, "url");
            assert!(!e.reason.contains("s3cret"), "{url}: {}", e.reason);
            assert!(e.reason.starts_with(shown), "{url}: {}", e.reason);
        }
        // Without credentials the URL is shown as it is.
        let e = Config::builder("ws://h:0/a").build().unwrap_err();
        assert!(e.reason.starts_with("\"ws://h:0/a\""), "{}", e.reason);
    }

    #[test]
    fn url_scheme_selects_transport() {
        let ws = Config::builder("ws://127.0.0.1:9000/ws").build().unwrap();
        assert_eq!(ws.transport(), TransportKind::WebSocket);
        let sse = Config::builder("HTTPS://example.com/sse").build().unwrap();
        assert_eq!(sse.transport(), TransportKind::Sse);
        assert_eq!(sse.effective_heartbeat_mode(), HeartbeatMode::ServerDriven);
    }

    #[test]
    fn bad_fields_are_named() {
        let cases: Vec<(ConfigBuilder, &str)> = vec![
            (Config::builder("example.com"), "url"),
            (Config::builder("ws://"), "url"),
            (Config::builder("ws://a b"), "url"),
            (
                Config::builder("ws://h").backoff_initial(Duration::ZERO),
                "backoff.initial",
            ),
            (
                Config::builder("ws://h")
                    .backoff_initial(Duration::from_secs(5))
                    .backoff_max(Duration::from_secs(1)),
                "backoff.max",
            ),
            (
                Config::builder("ws://h").backoff_factor(f64::NAN),
                "backoff.factor",
            ),
            (
                Config::builder("ws://h").max_attempts(Some(0)),
                "backoff.max_attempts",
            ),
            (
                Config::builder("ws://h").max_missed_pongs(0),
                "heartbeat.max_missed",
            ),
            (
                Config::builder("ws://h").outbox_max_messages(0),
                "outbox.max_messages",
            ),
            (
                Config::builder("ws://h").max_message_bytes(0),
                "max_message_bytes",
            ),
            (
                Config::builder("http://h").heartbeat_mode(HeartbeatMode::PingFrame),
                "heartbeat.mode",
            ),
            (
                Config::builder("ws://h").token(TokenPlacement::FirstMessage),
                "token",
            ),
            (Config::builder("ws://h").header("Bad:Name", "v"), "header"),
        ];
        for (builder, field) in cases {
            let err = builder.build().unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
    }

    #[test]
    fn a_first_message_token_needs_a_transport_that_sends() {
        let sse = Config::builder("http://relay/sse/room")
            .protocol(Protocol::Tether)
            .token(TokenPlacement::FirstMessage)
            .build()
            .unwrap_err();
        assert_eq!(sse.field, "token");
        assert!(sse.reason.contains("header or query"), "{sse}");
        assert!(Config::builder("ws://relay/ws")
            .protocol(Protocol::Tether)
            .token(TokenPlacement::FirstMessage)
            .build()
            .is_ok());
    }

    #[test]
    fn header_names_must_be_tokens() {
        // `bad name` used to be accepted, then failed every handshake locally, forever.
        for bad in [
            "bad name", "", "Bad:Name", "a\nb", "x(y)", "a,b", "\"q\"", "a/b", "é", "a\tb",
        ] {
            let err = Config::builder("ws://h")
                .header(bad, "v")
                .build()
                .unwrap_err();
            assert_eq!(err.field, "header", "{bad:?}");
            assert!(err.reason.contains("RFC 7230"), "{err}");
            let token = Config::builder("ws://h").token(TokenPlacement::Header {
                name: bad.to_owned(),
                prefix: String::new(),
            });
            assert_eq!(token.build().unwrap_err().field, "token", "{bad:?}");
        }
        for good in ["X-Api-Key", "authorization", "x!#$%&'*+-.^_`|~1"] {
            assert!(
                Config::builder("ws://h").header(good, "v").build().is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn a_header_where_the_token_goes_is_refused_not_sent_twice() {
        let err = Config::builder("ws://h")
            .header("authorization", "Basic c3RhbGU=")
            .token(TokenPlacement::bearer_header())
            .build()
            .unwrap_err();
        assert_eq!(err.field, "header");
        assert!(err.reason.contains("token provider"), "{err}");
        // Without a provider, or with its token elsewhere, the header is the app's to set.
        for token in [None, Some(TokenPlacement::Query { param: "t".into() })] {
            let mut builder = Config::builder("ws://h").header("Authorization", "Basic eA==");
            if let Some(token) = token {
                builder = builder.token(token);
            }
            assert!(builder.build().is_ok());
        }
    }

    #[test]
    fn headers_the_handshake_sets_itself_are_refused() {
        for (name, owner) in [
            ("Host", "the handshake"),
            ("connection", "the handshake"),
            ("Upgrade", "the handshake"),
            ("Sec-WebSocket-Key", "the handshake"),
            ("sec-websocket-extensions", "the handshake"),
            ("Sec-WebSocket-Protocol", "the subprotocol option"),
            ("Last-Event-ID", "the engine's resume position"),
            ("accept-encoding", "uncompressed"),
            ("Content-Length", "the handshake"),
        ] {
            let err = Config::builder("ws://h")
                .header(name, "x")
                .build()
                .unwrap_err();
            assert_eq!(err.field, "header", "{name}");
            assert!(err.reason.contains(owner), "{name}: {err}");
            assert!(err.reason.contains(name), "{name}: {err}");
        }
        // Names that only look like them stay the app's.
        for name in [
            "X-Host",
            "Hosts",
            "Sec-Fetch-Mode",
            "Origin",
            "User-Agent",
            "Accept",
        ] {
            assert!(
                Config::builder("ws://h").header(name, "v").build().is_ok(),
                "{name}"
            );
        }
    }

    #[test]
    fn a_resume_position_is_for_an_event_stream_and_must_fit_a_header() {
        let sse = |id: &str| {
            Config::builder("https://example.com/events")
                .last_event_id(id)
                .build()
        };
        assert_eq!(sse("e1-42").unwrap().last_event_id(), Some("e1-42"));
        assert_eq!(sse("").unwrap().last_event_id(), None);
        for bad in ["a\nb", "\0", &"9".repeat(crate::sse::MAX_EVENT_ID_LEN + 1)] {
            assert_eq!(sse(bad).unwrap_err().field, "last_event_id", "{bad:?}");
        }
        let ws = Config::builder("ws://h").last_event_id("7").build();
        assert_eq!(ws.unwrap_err().field, "last_event_id");
    }

    #[test]
    fn subprotocols_are_refused_on_an_event_stream() {
        let err = Config::builder("https://example.com/events")
            .subprotocol("v1")
            .build()
            .unwrap_err();
        assert_eq!(err.field, "subprotocol");
        assert!(err.reason.contains("WebSocket only"), "{err}");
    }

    #[test]
    fn subprotocols_must_be_distinct_tokens() {
        for bad in ["", "chat v2", "a,b"] {
            let err = Config::builder("ws://h")
                .subprotocol(bad)
                .build()
                .unwrap_err();
            assert_eq!(err.field, "subprotocol", "{bad:?}");
        }
        let twice = Config::builder("ws://h")
            .subprotocol("v1")
            .subprotocol("v1");
        assert_eq!(twice.build().unwrap_err().field, "subprotocol");
        let fine = Config::builder("ws://h")
            .subprotocol("v1")
            .subprotocol("tether.v2");
        assert!(fine.build().is_ok());
    }

    #[test]
    fn urls_need_a_host_and_a_valid_port() {
        for bad in [
            "ws://:80/",
            "ws://[::1/",
            "ws://::1]/",
            "ws://[]/",
            "ws://[::1]x/",
            "ws://127.0.0.1:99999/",
            "ws://127.0.0.1:0/",
            "ws://h:/",
            "ws://h:+80/",
            "ws://h:8a/",
            "ws://::1/",
            "wss://user@:443/",
            "http://h:65536/sse",
        ] {
            let err = Config::builder(bad).build().unwrap_err();
            assert_eq!(err.field, "url", "{bad}");
            assert!(TransportKind::for_url(bad).is_err(), "{bad}");
        }
        for good in [
            "ws://127.0.0.1:9000/ws",
            "ws://[::1]:9000/",
            "ws://[::1]",
            "wss://example.com",
            "wss://example.com?x=1",
            "ws://h:1#frag",
            "wss://user:p[a]ss@example.com:65535/",
            "http://h:080/sse",
        ] {
            assert!(Config::builder(good).build().is_ok(), "{good}");
        }
        let err = Config::builder("ws://127.0.0.1:99999/")
            .build()
            .unwrap_err();
        assert!(err.reason.contains("1 to 65535"), "{err}");
    }

    #[test]
    fn durations_under_a_microsecond_are_refused() {
        // Zero on the engine's clock: a 1 ns TTL expired every send inside the call, a 1 ns
        // heartbeat interval killed every connection as it opened.
        let short = Duration::from_nanos(999);
        type Setter = fn(ConfigBuilder, Duration) -> ConfigBuilder;
        let with = |f: Setter, d| f(Config::builder("ws://h"), d).build();
        let fields: Vec<(&str, Setter)> = vec![
            ("outbox.default_ttl", |b, d| b.message_ttl(Some(d))),
            ("heartbeat.interval", |b, d| b.heartbeat_interval(d)),
            ("heartbeat.pong_timeout", |b, d| b.pong_timeout(Some(d))),
            ("heartbeat.probe_timeout", |b, d| {
                b.heartbeat(HeartbeatConfig {
                    probe_timeout: d,
                    ..HeartbeatConfig::default()
                })
            }),
            ("connect_timeout", |b, d| b.connect_timeout(d)),
            ("close_timeout", |b, d| b.close_timeout(d)),
            ("request_timeout", |b, d| b.request_timeout(d)),
            ("backoff.initial", |b, d| {
                b.backoff_initial(d).backoff_max(d)
            }),
            ("close_policy.service_restart_window", |b, d| {
                b.close_policy(ClosePolicy::default().with_service_restart_window(d))
            }),
            ("close_policy.try_again_later_delay", |b, d| {
                b.close_policy(ClosePolicy::default().with_try_again_later_delay(d))
            }),
            ("close_policy.max_server_delay", |b, d| {
                b.close_policy(ClosePolicy::default().with_max_server_delay(d))
            }),
        ];
        for (field, set) in fields {
            for d in [Duration::ZERO, Duration::from_nanos(1), short] {
                let err = with(set, d).unwrap_err();
                assert_eq!(err.field, field, "{d:?}: {err}");
                assert!(err.reason.contains("more than zero"), "{err}");
            }
            assert!(with(set, Duration::from_micros(1)).is_ok(), "{field}");
        }
        // Fields where zero means something keep accepting it.
        let zero_uptime = Config::builder("ws://h").min_uptime(Duration::from_nanos(1));
        assert!(zero_uptime.build().is_ok());
    }

    #[test]
    fn auto_heartbeat_follows_driver_capability() {
        let raw = |sends, sees| {
            Config::builder("ws://h")
                .driver_can_send_ping_frames(sends)
                .driver_sees_ping_frames(sees)
                .build()
                .unwrap()
                .effective_heartbeat_mode()
        };
        assert_eq!(raw(true, true), HeartbeatMode::PingFrame);
        assert_eq!(raw(true, false), HeartbeatMode::PingFrame);
        // Native without ping sending: the server's pings are its liveness.
        assert_eq!(raw(false, true), HeartbeatMode::ServerDriven);
        // A browser: the server's pings never reach the driver, so a quiet healthy
        // connection would be declared dead every interval × (max_missed + 1).
        assert_eq!(raw(false, false), HeartbeatMode::Off);
        let browser_tether = Config::builder("ws://h")
            .protocol(Protocol::Tether)
            .driver_can_send_ping_frames(false)
            .build()
            .unwrap();
        assert_eq!(
            browser_tether.effective_heartbeat_mode(),
            HeartbeatMode::AppMessage
        );
        let sse = |sees| {
            Config::builder("http://h/sse")
                .driver_sees_sse_comments(sees)
                .build()
                .unwrap()
                .effective_heartbeat_mode()
        };
        assert_eq!(sse(true), HeartbeatMode::ServerDriven);
        assert_eq!(sse(false), HeartbeatMode::Off);
        // Not seeing pings changes neither Tether mode (app pings) nor SSE.
        let blind = |url| {
            Config::builder(url)
                .protocol(Protocol::Tether)
                .driver_can_send_ping_frames(false)
                .driver_sees_ping_frames(false)
                .build()
                .unwrap()
                .effective_heartbeat_mode()
        };
        assert_eq!(blind("ws://h"), HeartbeatMode::AppMessage);
        assert_eq!(blind("http://h/sse"), HeartbeatMode::ServerDriven);
    }

    #[test]
    fn explicit_modes_are_kept_when_the_driver_sees_no_pings() {
        // Chosen by the app: a server that sends data often enough keeps ServerDriven alive
        // (data frames are liveness whatever the driver sees), and raw app pings need no
        // ping frames.
        for mode in [HeartbeatMode::ServerDriven, HeartbeatMode::AppMessage] {
            let config = Config::builder("ws://h")
                .driver_can_send_ping_frames(false)
                .driver_sees_ping_frames(false)
                .heartbeat_mode(mode)
                .build()
                .unwrap();
            assert_eq!(config.effective_heartbeat_mode(), mode);
        }
    }
}
