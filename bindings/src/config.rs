//! [`ClientConfig`]: every option of `tether::ClientBuilder`, as a chainable builder object
//! (`self: Arc<Self> -> Arc<Self>`), plus the bindings' own listener queue size. Durations
//! are milliseconds. Validation happens once, in `Client(config)`, by the core, which names
//! the bad field in `ClientError.InvalidConfig`.

use std::sync::Arc;
use std::time::Duration;

use crate::error::ClientError;
use crate::token::{ForeignTokens, TokenProvider, TokenSlot};

/// Wire protocol. (Not `Protocol`: in Swift `X.Protocol` is metatype syntax, and
/// Objective-C has a `Protocol` class.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum WireProtocol {
    /// Frames pass through untouched; works with any WebSocket or SSE server.
    Raw,
    /// Tether's JSON envelope: channels with resume, presence, acks, requests.
    Tether,
}

/// How reconnect delays are randomised (applied after the cap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Jitter {
    /// Exactly the capped exponential delay.
    None,
    /// Uniform in `[0, delay]` (default).
    Full,
    /// Uniform in `[delay/2, delay]`.
    Equal,
    /// Uniform in `[initial, min(max, previous × 3)]`.
    Decorrelated,
}

/// How a dead connection is detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum HeartbeatMode {
    /// Ping frames on WebSocket, server-driven on SSE (default).
    Auto,
    /// WebSocket ping/pong frames.
    PingFrame,
    /// Application ping messages: `{"type":"ping"}` in Tether mode; in raw mode the text
    /// frame `rawPing` (default `ping`), answered by the text frame `rawPong` (default
    /// `pong`), which is consumed: a data message with exactly that text never reaches the
    /// app.
    AppMessage,
    /// The server must show life within `interval × (maxMissedPongs + 1)`.
    ServerDriven,
    /// No detection beyond what the transport reports.
    Off,
}

/// What a full outbox does with a new message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum OverflowPolicy {
    /// Drop the oldest messages, reported in a `Dropped` event (default).
    DropOldest,
    /// Refuse the new one with `ClientError.OutboxFull`.
    RejectNew,
}

/// Where the token provider's token goes.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum TokenPlacement {
    /// A handshake header `name: {prefix}{token}`. Default `Authorization: Bearer …`.
    Header {
        /// Header name.
        name: String,
        /// Prepended to the token.
        prefix: String,
    },
    /// A query parameter on the URL.
    Query {
        /// Parameter name.
        param: String,
    },
    /// The first frame after open (Tether protocol).
    FirstMessage,
}

/// What a close code or HTTP status means for reconnecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Disposition {
    /// Reconnect with backoff.
    Retry,
    /// Fetch a fresh token, try once more, then stop as `Unauthorized`.
    Reauth,
    /// Stop (`Closed(Refused)`).
    Terminal,
}

/// Every option, `None` meaning "the core's documented default".
#[derive(Clone, Default)]
struct Options {
    protocol: Option<WireProtocol>,
    headers: Vec<(String, String)>,
    subprotocols: Vec<String>,
    last_event_id: Option<String>,
    backoff_initial_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    backoff_factor: Option<f64>,
    jitter: Option<Jitter>,
    max_attempts: Option<Option<u32>>,
    min_uptime_ms: Option<u64>,
    heartbeat_mode: Option<HeartbeatMode>,
    heartbeat_interval_ms: Option<u64>,
    max_missed_pongs: Option<u32>,
    pong_timeout_ms: Option<Option<u64>>,
    raw_ping: Option<String>,
    raw_pong: Option<String>,
    outbox_max_messages: Option<u32>,
    outbox_max_bytes: Option<u64>,
    overflow: Option<OverflowPolicy>,
    message_ttl_ms: Option<Option<u64>>,
    code_policy: Vec<(u16, u16, Disposition)>,
    status_policy: Vec<(u16, u16, Disposition)>,
    connect_timeout_ms: Option<u64>,
    close_timeout_ms: Option<u64>,
    max_message_bytes: Option<u64>,
    request_timeout_ms: Option<u64>,
    fail_requests_on_disconnect: Option<bool>,
    restart_streams: Option<bool>,
    client_id: Option<String>,
    seed: Option<u64>,
    token_provider: Option<Arc<dyn TokenProvider>>,
    token_placement: Option<TokenPlacement>,
    ca_pems: Vec<String>,
    proxy: Option<String>,
    event_capacity: Option<u32>,
    listener_queue_capacity: Option<u32>,
}

/// Default number of events a listener may fall behind before the oldest are skipped.
pub(crate) const DEFAULT_LISTENER_QUEUE: u32 = 1024;

/// Largest `listenerQueueCapacity`. The queue is a `tokio::sync::broadcast` ring, which
/// allocates all its slots (rounded up to a power of two, a few tens of bytes each) when the
/// client is created and cannot grow later: 65,536 slots cost a few MiB per client, while the
/// 2^31 an app may pass aborted the process (out of memory) inside `Client(config)`. An app that
/// needs more should make its listener quicker (hand each event to its own queue).
pub(crate) const MAX_LISTENER_QUEUE: u32 = 65_536;

/// Configuration of a [`Client`](crate::Client): `ClientConfig(url)` then chained setters.
/// Each setter returns a new config, so a base config can be shared and varied.
///
/// `url`: `ws://`/`wss://` for WebSocket, `http://`/`https://` for Server-Sent Events.
#[derive(Clone, uniffi::Object)]
pub struct ClientConfig {
    url: String,
    options: Options,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    fn with(self: Arc<Self>, f: impl FnOnce(&mut Options)) -> Arc<Self> {
        let mut config = Arc::unwrap_or_clone(self);
        f(&mut config.options);
        Arc::new(config)
    }

    /// `listenerQueueCapacity`, the one setting the bindings own: a listener that may fall
    /// behind by no event at all could be given none, so 0 is refused like any invalid
    /// setting of the client (whose `eventCapacity(0)` `tether` refuses), and so is more than
    /// [`MAX_LISTENER_QUEUE`], whose memory is allocated up front.
    pub(crate) fn listener_queue(&self) -> Result<usize, ClientError> {
        let invalid = |reason: String| ClientError::InvalidConfig {
            field: "listener_queue_capacity".to_owned(),
            reason,
        };
        match self
            .options
            .listener_queue_capacity
            .unwrap_or(DEFAULT_LISTENER_QUEUE)
        {
            0 => Err(invalid("must be at least 1".to_owned())),
            n if n > MAX_LISTENER_QUEUE => Err(invalid(format!(
                "{n} is more than the largest queue, {MAX_LISTENER_QUEUE} events"
            ))),
            n => Ok(n as usize),
        }
    }

    /// The wire protocol the client speaks (raw unless set).
    pub(crate) fn protocol(&self) -> tether::Protocol {
        self.options
            .protocol
            .map_or(tether::Protocol::Raw, Into::into)
    }

    /// The `tether` builder these options describe (validated later by its `build`), and the
    /// slot holding the token provider it asks, which the `Client` releases when it is dropped.
    pub(crate) fn to_builder(&self) -> (tether::ClientBuilder, TokenSlot) {
        let mut tokens = TokenSlot::default();
        let o = &self.options;
        let mut b = tether::Client::builder(self.url.clone());
        let ms = Duration::from_millis;
        if let Some(p) = o.protocol {
            b = b.protocol(p.into());
        }
        for (name, value) in &o.headers {
            b = b.header(name.clone(), value.clone());
        }
        for name in &o.subprotocols {
            b = b.subprotocol(name.clone());
        }
        if let Some(id) = &o.last_event_id {
            b = b.last_event_id(id.clone());
        }
        if let Some(v) = o.backoff_initial_ms {
            b = b.backoff_initial(ms(v));
        }
        if let Some(v) = o.backoff_max_ms {
            b = b.backoff_max(ms(v));
        }
        if let Some(v) = o.backoff_factor {
            b = b.backoff_factor(v);
        }
        if let Some(v) = o.jitter {
            b = b.jitter(v.into());
        }
        if let Some(v) = o.max_attempts {
            b = b.max_attempts(v);
        }
        if let Some(v) = o.min_uptime_ms {
            b = b.min_uptime(ms(v));
        }
        // All heartbeat settings at once, so first: the single setters below apply on top.
        if o.raw_ping.is_some() || o.raw_pong.is_some() {
            let mut heartbeat = tether::HeartbeatConfig::default();
            if let Some(text) = &o.raw_ping {
                heartbeat.raw_ping = text.clone();
            }
            if let Some(text) = &o.raw_pong {
                heartbeat.raw_pong = text.clone();
            }
            b = b.heartbeat(heartbeat);
        }
        if let Some(v) = o.heartbeat_mode {
            b = b.heartbeat_mode(v.into());
        }
        if let Some(v) = o.heartbeat_interval_ms {
            b = b.heartbeat_interval(ms(v));
        }
        if let Some(v) = o.max_missed_pongs {
            b = b.max_missed_pongs(v);
        }
        if let Some(v) = o.pong_timeout_ms {
            b = b.pong_timeout(v.map(ms));
        }
        if let Some(v) = o.outbox_max_messages {
            b = b.outbox_max_messages(v as usize);
        }
        if let Some(v) = o.outbox_max_bytes {
            b = b.outbox_max_bytes(usize::try_from(v).unwrap_or(usize::MAX));
        }
        if let Some(v) = o.message_ttl_ms {
            b = b.message_ttl(v.map(ms));
        }
        if o.overflow.is_some() {
            let mut outbox = tether::OutboxConfig::default();
            if let Some(v) = o.outbox_max_messages {
                outbox.max_messages = v as usize;
            }
            if let Some(v) = o.outbox_max_bytes {
                outbox.max_bytes = usize::try_from(v).unwrap_or(usize::MAX);
            }
            if let Some(v) = o.message_ttl_ms {
                outbox.default_ttl = v.map(ms);
            }
            if let Some(v) = o.overflow {
                outbox.overflow = v.into();
            }
            b = b.outbox(outbox);
        }
        if !o.code_policy.is_empty() || !o.status_policy.is_empty() {
            let mut policy = tether::ClosePolicy::default();
            for &(first, last, d) in &o.code_policy {
                policy = policy.with_code(first..=last, d.into());
            }
            for &(first, last, d) in &o.status_policy {
                policy = policy.with_status(first..=last, d.into());
            }
            b = b.close_policy(policy);
        }
        if let Some(v) = o.connect_timeout_ms {
            b = b.connect_timeout(ms(v));
        }
        if let Some(v) = o.close_timeout_ms {
            b = b.close_timeout(ms(v));
        }
        if let Some(v) = o.max_message_bytes {
            b = b.max_message_bytes(usize::try_from(v).unwrap_or(usize::MAX));
        }
        if let Some(v) = o.request_timeout_ms {
            b = b.request_timeout(ms(v));
        }
        if let Some(v) = o.fail_requests_on_disconnect {
            b = b.fail_requests_on_disconnect(v);
        }
        if let Some(v) = o.restart_streams {
            b = b.restart_streams(v);
        }
        if let Some(v) = &o.client_id {
            b = b.client_id(v.clone());
        }
        if let Some(v) = o.seed {
            b = b.seed(v);
        }
        if let Some(p) = &o.token_provider {
            tokens = TokenSlot::new(p.clone());
            b = b.token_provider(ForeignTokens(tokens.clone()));
        }
        if let Some(p) = &o.token_placement {
            b = b.token_placement(p.clone().into());
        }
        for pem in &o.ca_pems {
            b = b.ca_pem(pem.clone().into_bytes());
        }
        match o.proxy.as_deref() {
            None => {}
            Some("") => b = b.proxy(tether::Proxy::Direct),
            Some(url) => b = b.proxy(tether::Proxy::url(url)),
        }
        if let Some(v) = o.event_capacity {
            b = b.event_capacity(v as usize);
        }
        (b, tokens)
    }
}

#[uniffi::export]
impl ClientConfig {
    /// A configuration for `url` with every default.
    #[uniffi::constructor]
    pub fn new(url: String) -> Arc<Self> {
        Arc::new(ClientConfig {
            url,
            options: Options::default(),
        })
    }

    /// Wire protocol. Default `RAW`.
    pub fn wire_protocol(self: Arc<Self>, protocol: WireProtocol) -> Arc<Self> {
        self.with(|o| o.protocol = Some(protocol))
    }
    /// Adds a handshake header. Default none. One the handshake sets itself (`Host`,
    /// `Upgrade`, `Sec-WebSocket-*`, `Last-Event-ID`, …) or the token's own header is refused
    /// by `Client(config)` with `InvalidConfig`.
    pub fn header(self: Arc<Self>, name: String, value: String) -> Arc<Self> {
        self.with(|o| o.headers.push((name, value)))
    }
    /// Offers a WebSocket subprotocol. Default none. An event-stream (`http(s)`) URL has none:
    /// `Client(config)` refuses one there with `InvalidConfig`.
    pub fn subprotocol(self: Arc<Self>, name: String) -> Arc<Self> {
        self.with(|o| o.subprotocols.push(name))
    }
    /// An event stream's position to resume from on the first attempt (its `Last-Event-ID`):
    /// the `lastEventId` of the last message the app handled before it stopped. Default none.
    /// `Client(config)` refuses one on a WebSocket URL with `InvalidConfig`.
    pub fn last_event_id(self: Arc<Self>, id: String) -> Arc<Self> {
        self.with(|o| o.last_event_id = Some(id))
    }
    /// Scale of the first retry delay. Default 500 ms.
    pub fn backoff_initial_ms(self: Arc<Self>, ms: u64) -> Arc<Self> {
        self.with(|o| o.backoff_initial_ms = Some(ms))
    }
    /// Cap of the un-jittered delay. Default 30,000 ms.
    pub fn backoff_max_ms(self: Arc<Self>, ms: u64) -> Arc<Self> {
        self.with(|o| o.backoff_max_ms = Some(ms))
    }
    /// Growth per attempt. Default 2.0.
    pub fn backoff_factor(self: Arc<Self>, factor: f64) -> Arc<Self> {
        self.with(|o| o.backoff_factor = Some(factor))
    }
    /// Jitter strategy. Default `FULL`.
    pub fn jitter(self: Arc<Self>, jitter: Jitter) -> Arc<Self> {
        self.with(|o| o.jitter = Some(jitter))
    }
    /// Give up (`Closed(GaveUp)`) after this many failed attempts in a row (not counting
    /// those made offline, nor an event stream that delivered events before it ended); `null`
    /// never gives up. Default `null`.
    pub fn max_attempts(self: Arc<Self>, attempts: Option<u32>) -> Arc<Self> {
        self.with(|o| o.max_attempts = Some(attempts))
    }
    /// How long a connection must stay open before backoff resets. Default 5,000 ms.
    pub fn min_uptime_ms(self: Arc<Self>, ms: u64) -> Arc<Self> {
        self.with(|o| o.min_uptime_ms = Some(ms))
    }
    /// Heartbeat mode. Default `AUTO`.
    pub fn heartbeat_mode(self: Arc<Self>, mode: HeartbeatMode) -> Arc<Self> {
        self.with(|o| o.heartbeat_mode = Some(mode))
    }
    /// Ping interval. Default 25,000 ms.
    pub fn heartbeat_interval_ms(self: Arc<Self>, ms: u64) -> Arc<Self> {
        self.with(|o| o.heartbeat_interval_ms = Some(ms))
    }
    /// Unanswered pings in a row before the connection is declared dead. Default 2.
    pub fn max_missed_pongs(self: Arc<Self>, n: u32) -> Arc<Self> {
        self.with(|o| o.max_missed_pongs = Some(n))
    }
    /// Deadline for each ping. Default `null` (none).
    pub fn pong_timeout_ms(self: Arc<Self>, ms: Option<u64>) -> Arc<Self> {
        self.with(|o| o.pong_timeout_ms = Some(ms))
    }
    /// The text frame a raw-mode client sends as an application ping
    /// (`heartbeatMode(APP_MESSAGE)`). Default `ping`. Not used in Tether mode, whose pings
    /// are protocol messages. Empty is `InvalidConfig` (`heartbeat.raw_ping`), and so is
    /// another text with any mode but `APP_MESSAGE` on the raw protocol: it would not be sent.
    pub fn raw_ping(self: Arc<Self>, text: String) -> Arc<Self> {
        self.with(|o| o.raw_ping = Some(text))
    }
    /// The text frame a raw-mode client takes as the answer to its application ping
    /// (`heartbeatMode(APP_MESSAGE)`): such frames are consumed, never delivered as
    /// `Message`s, so choose a text that no data message can be. Default `pong`. Another
    /// text with any mode but `APP_MESSAGE` on the raw protocol is `InvalidConfig`
    /// (`heartbeat.raw_pong`).
    pub fn raw_pong(self: Arc<Self>, text: String) -> Arc<Self> {
        self.with(|o| o.raw_pong = Some(text))
    }
    /// Outbox bound in messages. Default 1,000.
    pub fn outbox_max_messages(self: Arc<Self>, n: u32) -> Arc<Self> {
        self.with(|o| o.outbox_max_messages = Some(n))
    }
    /// Outbox bound in bytes. Default 1 MiB.
    pub fn outbox_max_bytes(self: Arc<Self>, n: u64) -> Arc<Self> {
        self.with(|o| o.outbox_max_bytes = Some(n))
    }
    /// What a full outbox does. Default `DROP_OLDEST`.
    pub fn overflow_policy(self: Arc<Self>, policy: OverflowPolicy) -> Arc<Self> {
        self.with(|o| o.overflow = Some(policy))
    }
    /// Messages not sent within this time are dropped (`Expired`), never sent late.
    /// Default `null` (no expiry).
    pub fn message_ttl_ms(self: Arc<Self>, ms: Option<u64>) -> Arc<Self> {
        self.with(|o| o.message_ttl_ms = Some(ms))
    }
    /// Overrides what WebSocket close codes `first..=last` mean. Later calls win.
    pub fn close_code_policy(
        self: Arc<Self>,
        first: u16,
        last: u16,
        disposition: Disposition,
    ) -> Arc<Self> {
        self.with(|o| o.code_policy.push((first, last, disposition)))
    }
    /// Overrides what HTTP statuses `first..=last` mean. Later calls win.
    pub fn http_status_policy(
        self: Arc<Self>,
        first: u16,
        last: u16,
        disposition: Disposition,
    ) -> Arc<Self> {
        self.with(|o| o.status_policy.push((first, last, disposition)))
    }
    /// Time allowed for the token fetch, and again for the handshake once the request is
    /// sent. Default 10,000 ms. An event stream waits for
    /// its response head up to the heartbeat's silence limit (75 s by default) when that is
    /// longer: many SSE servers send it only with their first event.
    pub fn connect_timeout_ms(self: Arc<Self>, ms: u64) -> Arc<Self> {
        self.with(|o| o.connect_timeout_ms = Some(ms))
    }
    /// Time allowed for the close handshake. Default 2,000 ms.
    pub fn close_timeout_ms(self: Arc<Self>, ms: u64) -> Arc<Self> {
        self.with(|o| o.close_timeout_ms = Some(ms))
    }
    /// Largest message in either direction, in bytes. Default 1 MiB.
    pub fn max_message_bytes(self: Arc<Self>, n: u64) -> Arc<Self> {
        self.with(|o| o.max_message_bytes = Some(n))
    }
    /// Default timeout of `request`. Default 10,000 ms.
    pub fn request_timeout_ms(self: Arc<Self>, ms: u64) -> Arc<Self> {
        self.with(|o| o.request_timeout_ms = Some(ms))
    }
    /// Whether sent requests fail (`ConnectionLost`) when the connection drops, instead of
    /// being re-sent after the reconnect. Default `true`.
    pub fn fail_requests_on_disconnect(self: Arc<Self>, fail: bool) -> Arc<Self> {
        self.with(|o| o.fail_requests_on_disconnect = Some(fail))
    }
    /// Whether an open event stream is restarted from its position after
    /// `networkChanged(true)` or a return to the foreground (`DisconnectCause.StreamRestarted`),
    /// as a stream cannot be probed with a ping. Default `true`. Turn it off for a server that
    /// sends `id:` fields but does not resume from the `Last-Event-ID` header: a restart there
    /// loses or repeats what it sent meanwhile.
    pub fn restart_streams(self: Arc<Self>, restart: bool) -> Arc<Self> {
        self.with(|o| o.restart_streams = Some(restart))
    }
    /// Stable identity for presence (1–128 bytes). Default: random per client.
    pub fn client_id(self: Arc<Self>, id: String) -> Arc<Self> {
        self.with(|o| o.client_id = Some(id))
    }
    /// Fixes the random seed (reproducible jitter, tests). Default: OS entropy.
    pub fn seed(self: Arc<Self>, seed: u64) -> Arc<Self> {
        self.with(|o| o.seed = Some(seed))
    }
    /// Asks `provider` for a token before every connection attempt. Default none.
    pub fn token_provider(self: Arc<Self>, provider: Arc<dyn TokenProvider>) -> Arc<Self> {
        self.with(|o| o.token_provider = Some(provider))
    }
    /// Where the token goes. Default `Authorization: Bearer <token>`.
    pub fn token_placement(self: Arc<Self>, placement: TokenPlacement) -> Arc<Self> {
        self.with(|o| o.token_placement = Some(placement))
    }
    /// Also trusts the CA certificates in this PEM text (self-hosted servers). Default: the
    /// web PKI roots only.
    pub fn ca_pem(self: Arc<Self>, pem: String) -> Arc<Self> {
        self.with(|o| o.ca_pems.push(pem))
    }
    /// The HTTP proxy for WebSockets and event streams alike:
    /// `http://[user:password@]host[:port]`, or `""` to connect directly. Default (never
    /// set): the `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY`/`NO_PROXY` environment variables, read
    /// when the client is created (mobile apps rarely have them: they connect directly). An
    /// `https://`, SOCKS or unparsable URL makes `Client(config)` fail with `InvalidConfig`
    /// naming `proxy`; its text never repeats the URL (it may hold a password).
    pub fn proxy(self: Arc<Self>, proxy: String) -> Arc<Self> {
        self.with(|o| o.proxy = Some(proxy))
    }
    /// Events the client itself buffers (Rust side). Default 1,024; 0 is `InvalidConfig`.
    pub fn event_capacity(self: Arc<Self>, events: u32) -> Arc<Self> {
        self.with(|o| o.event_capacity = Some(events))
    }
    /// How many events a listener may fall behind before the oldest are skipped for it
    /// (it then gets `Lagged` and a state snapshot). Default 1,024; at least 1 and at most
    /// 65,536 (the queue's memory is allocated when the client is created), otherwise
    /// `Client(config)` fails with `InvalidConfig` naming `listener_queue_capacity`.
    pub fn listener_queue_capacity(self: Arc<Self>, events: u32) -> Arc<Self> {
        self.with(|o| o.listener_queue_capacity = Some(events))
    }
    /// The URL.
    pub fn url(&self) -> String {
        self.url.clone()
    }
}

impl From<WireProtocol> for tether::Protocol {
    fn from(p: WireProtocol) -> Self {
        match p {
            WireProtocol::Raw => tether::Protocol::Raw,
            WireProtocol::Tether => tether::Protocol::Tether,
        }
    }
}

impl From<Jitter> for tether::Jitter {
    fn from(j: Jitter) -> Self {
        match j {
            Jitter::None => tether::Jitter::None,
            Jitter::Full => tether::Jitter::Full,
            Jitter::Equal => tether::Jitter::Equal,
            Jitter::Decorrelated => tether::Jitter::Decorrelated,
        }
    }
}

impl From<HeartbeatMode> for tether::HeartbeatMode {
    fn from(m: HeartbeatMode) -> Self {
        match m {
            HeartbeatMode::Auto => tether::HeartbeatMode::Auto,
            HeartbeatMode::PingFrame => tether::HeartbeatMode::PingFrame,
            HeartbeatMode::AppMessage => tether::HeartbeatMode::AppMessage,
            HeartbeatMode::ServerDriven => tether::HeartbeatMode::ServerDriven,
            HeartbeatMode::Off => tether::HeartbeatMode::Off,
        }
    }
}

impl From<OverflowPolicy> for tether::OverflowPolicy {
    fn from(p: OverflowPolicy) -> Self {
        match p {
            OverflowPolicy::DropOldest => tether::OverflowPolicy::DropOldest,
            OverflowPolicy::RejectNew => tether::OverflowPolicy::RejectNew,
        }
    }
}

impl From<Disposition> for tether::Disposition {
    fn from(d: Disposition) -> Self {
        match d {
            Disposition::Retry => tether::Disposition::Retry,
            Disposition::Reauth => tether::Disposition::Reauth,
            Disposition::Terminal => tether::Disposition::Terminal,
        }
    }
}

impl From<TokenPlacement> for tether::TokenPlacement {
    fn from(p: TokenPlacement) -> Self {
        match p {
            TokenPlacement::Header { name, prefix } => {
                tether::TokenPlacement::Header { name, prefix }
            }
            TokenPlacement::Query { param } => tether::TokenPlacement::Query { param },
            TokenPlacement::FirstMessage => tether::TokenPlacement::FirstMessage,
        }
    }
}
