//! [`ClientBuilder`]: the engine's configuration (forwarded to `tether_core::ConfigBuilder`,
//! which validates it) plus what only the native driver needs: the token provider, TLS roots,
//! the proxy, WebSocket buffer sizes and the event queue's capacity.

use crate::client::{Client, Events};
use crate::token::{BoxTokenProvider, TokenProvider};
use crate::transport::proxy::{Proxy, ProxyRule};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tether_core::{
    BackoffConfig, ClosePolicy, Config, ConfigBuilder, ConfigError, HeartbeatConfig, HeartbeatMode,
    Jitter, OutboxConfig, Protocol, TokenPlacement,
};

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A setting is invalid; the error names the field.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A CA file could not be read or holds no certificate.
    #[error("TLS roots: {0}")]
    Tls(String),
    /// A proxy URL, given to [`ClientBuilder::proxy`] or found in the environment, is not an
    /// `http://` proxy this client can use. The text never repeats the URL (it may hold a
    /// password).
    #[error("proxy from {setting}: {reason}")]
    Proxy {
        /// Where the URL came from: `ClientBuilder::proxy`, or the environment variable.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// `build`/`connect` was called outside a tokio runtime.
    #[error("a tether client must be built inside a tokio runtime")]
    NoRuntime,
    /// The tokio runtime lacks what the client's task needs: its timers or its I/O driver
    /// (build the runtime with `enable_all()`, as `#[tokio::main]` does). The client would
    /// otherwise start, and its task die at its first timer or socket.
    #[error("the tokio runtime has {0} disabled: build it with enable_all()")]
    RuntimeFeatures(&'static str),
}

/// Options of the native driver itself.
#[derive(Clone)]
pub(crate) struct NativeOptions {
    pub(crate) token_provider: Option<BoxTokenProvider>,
    pub(crate) ca_files: Vec<PathBuf>,
    pub(crate) ca_pems: Vec<Vec<u8>>,
    pub(crate) proxy: Proxy,
    pub(crate) read_buffer_size: usize,
    pub(crate) write_buffer_size: usize,
    pub(crate) event_capacity: usize,
}

impl std::fmt::Debug for NativeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeOptions")
            .field("token_provider", &self.token_provider.is_some())
            .field("ca_files", &self.ca_files)
            .field("proxy", &self.proxy)
            .field("read_buffer_size", &self.read_buffer_size)
            .field("write_buffer_size", &self.write_buffer_size)
            .field("event_capacity", &self.event_capacity)
            .finish()
    }
}

impl Default for NativeOptions {
    fn default() -> Self {
        NativeOptions {
            token_provider: None,
            ca_files: Vec::new(),
            ca_pems: Vec::new(),
            proxy: Proxy::FromEnvironment,
            read_buffer_size: 4 * 1024,
            write_buffer_size: 8 * 1024,
            event_capacity: 1024,
        }
    }
}

/// Builds a [`Client`]. Engine settings are validated by `tether_core` and documented on
/// [`ConfigBuilder`]; the driver's own settings are documented here.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use tether::{Client, Protocol};
///
/// let (client, mut events) = Client::builder("wss://relay.example.com/ws")
///     .protocol(Protocol::Tether)
///     .heartbeat_interval(Duration::from_secs(15))
///     .token_provider(|_refresh| async { Ok::<_, std::io::Error>("secret".to_owned()) })
///     .connect()?;
/// client.subscribe("room")?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ClientBuilder {
    core: ConfigBuilder,
    native: NativeOptions,
    token_placement: Option<TokenPlacement>,
}

/// Forwards setters to `tether_core::ConfigBuilder`, keeping their documentation in one place.
macro_rules! forward {
    ($($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        $(#[$doc])*
        #[doc = concat!("\n\nSee [`ConfigBuilder::", stringify!($name), "`] for the default.")]
        pub fn $name(mut self, $($arg: $ty),*) -> Self {
            self.core = self.core.$name($($arg),*);
            self
        }
    )*};
}

impl ClientBuilder {
    pub(crate) fn new(url: impl Into<String>) -> Self {
        ClientBuilder {
            // The WebSocket link reports the bytes its socket took (`LinkInput::Progress`), so
            // what waits in its own queue is re-sent, not lost, if the connection ends first.
            core: Config::builder(url).driver_reports_progress(true),
            native: NativeOptions::default(),
            token_placement: None,
        }
    }

    forward! {
        /// Wire protocol: raw frames or the Tether envelope.
        protocol(protocol: Protocol);
        /// Adds a handshake header. One the handshake sets itself (`Host`, `Upgrade`,
        /// `Sec-WebSocket-*`, `Last-Event-ID`, …) is refused by `build()`.
        header(name: impl Into<String>, value: impl Into<String>);
        /// Offers a WebSocket subprotocol (in the order added). A server must choose one of
        /// those offered: if it chooses none (as the reference relay does), or one not
        /// offered, the client stops at once with `CloseReason::Refused` (no code, no status)
        /// whose reason names what was offered and what the server chose
        /// (`subprotocol mismatch: offered "v2"; the server chose none`; a name not offered
        /// is not kept by tungstenite, so it reads `one not offered`); it is the
        /// deployment's configuration, which no retry changes. A server that chooses one when
        /// none was offered stops the client the same way.
        subprotocol(name: impl Into<String>);
        /// An event stream's position to resume from on the first attempt, sent as its
        /// `Last-Event-ID`: typically the `last_event_id` of the last message the app handled
        /// before it stopped ([`InboundMessage::last_event_id`](crate::InboundMessage)).
        /// Refused by `build()` on a WebSocket URL, or when no header could carry it.
        last_event_id(id: impl Into<String>);
        /// Replaces all backoff settings.
        backoff(backoff: BackoffConfig);
        /// First retry delay scale.
        backoff_initial(d: Duration);
        /// Cap of the un-jittered delay.
        backoff_max(d: Duration);
        /// Growth factor per attempt.
        backoff_factor(factor: f64);
        /// Jitter strategy.
        jitter(jitter: Jitter);
        /// Give up after this many consecutive failed attempts (not counting those made while
        /// offline, nor an event stream that delivered events before it ended).
        max_attempts(attempts: Option<u32>);
        /// Uptime after which backoff resets.
        min_uptime(d: Duration);
        /// Replaces all heartbeat settings.
        heartbeat(heartbeat: HeartbeatConfig);
        /// Heartbeat mode.
        heartbeat_mode(mode: HeartbeatMode);
        /// Ping interval.
        heartbeat_interval(d: Duration);
        /// Unanswered pings before the connection is declared dead.
        max_missed_pongs(n: u32);
        /// Per-ping deadline.
        pong_timeout(d: Option<Duration>);
        /// Replaces all outbox settings.
        outbox(outbox: OutboxConfig);
        /// Outbox bound in messages.
        outbox_max_messages(n: usize);
        /// Outbox bound in bytes.
        outbox_max_bytes(n: usize);
        /// Default per-message TTL.
        message_ttl(ttl: Option<Duration>);
        /// Close-code and HTTP-status policy.
        close_policy(policy: ClosePolicy);
        /// Time allowed for the token fetch, and again for the handshake once the request is
        /// sent.
        connect_timeout(d: Duration);
        /// Time allowed for the close handshake.
        close_timeout(d: Duration);
        /// Largest message in either direction: a larger send is refused, a larger incoming
        /// message is discarded with an error event (the connection stays up), and an SSE
        /// event is buffered only up to it. The WebSocket library gets a memory ceiling of its
        /// own, 4 times this or 1 MiB, whichever is larger: a message over that fails the
        /// connection.
        max_message_bytes(n: usize);
        /// Default request timeout.
        request_timeout(d: Duration);
        /// Whether sent requests fail when the connection drops.
        fail_requests_on_disconnect(fail: bool);
        /// Whether an open event stream is restarted from its position after an online report
        /// or a return to the foreground (default `true`); off for a server that sends `id:`
        /// fields but does not resume from `Last-Event-ID`.
        restart_streams(restart: bool);
        /// Stable identity for presence.
        client_id(id: impl Into<String>);
        /// Fixes the PRNG seed (reproducible jitter).
        seed(seed: u64);
    }

    /// Asks `provider` for a token before every connection attempt (with `refresh = true`
    /// after the server refused the previous one). The token goes into
    /// `Authorization: Bearer <token>` unless [`token_placement`](Self::token_placement)
    /// says otherwise. Default: no provider.
    ///
    /// The client keeps the provider for as long as it runs. A provider that holds a
    /// [`Client`] handle of its own client keeps that client running after the app drops
    /// every other handle (a cycle): keep the client out of its own provider, or end it with
    /// [`Client::shutdown`].
    pub fn token_provider<P: TokenProvider>(mut self, provider: P) -> Self {
        self.native.token_provider = Some(Arc::new(provider));
        self
    }

    /// Where the provider's token goes. Default `Authorization: Bearer <token>`. Without a
    /// [`token_provider`](Self::token_provider), [`build`](Self::build) refuses it.
    pub fn token_placement(mut self, placement: TokenPlacement) -> Self {
        self.token_placement = Some(placement);
        self
    }

    /// Trusts the CA certificates in this PEM file for `wss://` and `https://`, in addition
    /// to the built-in web PKI roots (for self-hosted servers). Default: web PKI roots only.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.native.ca_files.push(path.into());
        self
    }

    /// Trusts the CA certificates in this PEM text, like [`ca_file`](Self::ca_file).
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.native.ca_pems.push(pem.into());
        self
    }

    /// Which HTTP proxy the client's connections go through, WebSocket and event stream
    /// alike. Default [`Proxy::FromEnvironment`]: `HTTP_PROXY` for `ws://` and `http://`,
    /// `HTTPS_PROXY` for `wss://` and `https://`, either falling back to `ALL_PROXY`, minus the
    /// targets `NO_PROXY` names and loopback targets (`localhost`, 127.0.0.0/8, `::1`: a proxy
    /// elsewhere cannot reach this machine's loopback), read when the client is built.
    ///
    /// A WebSocket goes through the proxy with `CONNECT host:port` (a `wss://` one stays
    /// encrypted end to end), sending `Proxy-Authorization: Basic …` when the proxy URL has a
    /// user name or password. A proxy that refuses (`407 Proxy Authentication Required`, a
    /// `502` when it cannot reach the server…) is reported as the proxy's answer, not the
    /// server's: `DisconnectCause::Proxy { status }`, classified by the close policy as the
    /// same status from the server except that no new token is fetched (the default stops on
    /// a 407 or 403, retries a 5xx; see `ClosePolicy::classify_proxy`). An event stream goes
    /// through the same proxy by reqwest, which reports a 407 the same way but another
    /// refusal of an `https://` stream's `CONNECT` only as a transport failure (retried); a
    /// plain `http://` stream's request is answered by the proxy itself, so a 403 or 502 from
    /// it is taken for the server's.
    ///
    /// Only `http://` proxies: [`build`](Self::build) refuses an `https://` proxy URL (TLS to
    /// the proxy itself), a SOCKS one or one that does not parse, with
    /// [`BuildError::Proxy`]: given here, or in the environment variable this client's URL
    /// would go through (one it would not, say `ALL_PROXY=socks5://…` for a loopback relay
    /// or a `NO_PROXY` host, is left out).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use tether::{Client, Proxy};
    ///
    /// // Through the corporate proxy, whatever the environment says.
    /// let (client, events) = Client::builder("wss://relay.example.com/ws")
    ///     .proxy(Proxy::url("http://alice:s3cret@proxy.corp.example:3128"))
    ///     .connect()?;
    /// // Directly, whatever the environment says.
    /// let (direct, _) = Client::builder("wss://relay.example.com/ws")
    ///     .proxy(Proxy::Direct)
    ///     .connect()?;
    /// # Ok(()) }
    /// ```
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.native.proxy = proxy;
        self
    }

    /// WebSocket read buffer, allocated per connection. Default 4 KiB: thousands of idle
    /// connections stay cheap (tungstenite's own default is 128 KiB), and one read still takes
    /// dozens of small messages at once. At most 64 MiB (`build` refuses more: it is allocated
    /// up front, and a larger read per call gains nothing). Sizes under 256 B are raised to
    /// 256 B (a read needs room for at least a frame header); below 4 KiB the size saves no
    /// memory, as the connection keeps its 4 KiB handshake buffer.
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.native.read_buffer_size = bytes.max(256);
        self
    }

    /// WebSocket write buffer target before a write is issued (frames are flushed after every
    /// batch regardless). Default 8 KiB, at most 64 MiB (`build` refuses more).
    pub fn write_buffer_size(mut self, bytes: usize) -> Self {
        self.native.write_buffer_size = bytes;
        self
    }

    /// Events the client buffers for a slow consumer before it stops reading the socket (so
    /// a slow app applies TCP backpressure instead of growing memory). Default 1,024; `0` is
    /// refused by [`build`](Self::build) (a client that may hold no event could never deliver
    /// one).
    ///
    /// One exception: while a close the app asked for is under way (`close`, `close_with`,
    /// and `close_after_drain` until its timeout), the client keeps running so the close can
    /// finish, and events can exceed this; the close's own timeout bounds how long.
    pub fn event_capacity(mut self, events: usize) -> Self {
        self.native.event_capacity = events;
        self
    }

    /// Validates everything and starts the client task in `Idle`; call [`Client::connect`].
    pub fn build(mut self) -> Result<(Client, Events), BuildError> {
        if self.native.event_capacity == 0 {
            return Err(BuildError::Config(ConfigError {
                field: "event_capacity",
                reason: "must be at least 1".to_owned(),
            }));
        }
        for (field, bytes) in [
            ("read_buffer_size", self.native.read_buffer_size),
            ("write_buffer_size", self.native.write_buffer_size),
        ] {
            // tungstenite allocates the read buffer up front, and asserts that its write
            // buffer's ceiling exceeds the target: past these, a connection attempt would
            // abort or panic the client task instead of failing here.
            if bytes > MAX_BUFFER_BYTES {
                return Err(BuildError::Config(ConfigError {
                    field,
                    reason: format!(
                        "must be at most {MAX_BUFFER_BYTES} bytes (64 MiB), got {bytes}"
                    ),
                }));
            }
        }
        if self.native.token_provider.is_none() && self.token_placement.is_some() {
            // Dropped silently, the client would connect with no token at all, and the app
            // would learn of it from the server's refusal.
            return Err(BuildError::Config(ConfigError {
                field: "token_placement",
                reason: "set without a token_provider: no token would ever be sent".to_owned(),
            }));
        }
        if self.native.token_provider.is_some() {
            let placement = self
                .token_placement
                .take()
                .unwrap_or_else(TokenPlacement::bearer_header);
            self.core = self.core.token(placement);
        }
        let config = self.core.build().map_err(|mut e| {
            // The engine's builder method is `token`; this one's is `token_placement` (so is
            // the refusal of a placement without a provider, above).
            if e.field == "token" {
                e.field = "token_placement";
            }
            e
        })?;
        let tls = crate::transport::tls::TlsRoots::load(&self.native)?;
        let proxy = ProxyRule::new(&self.native.proxy, config.url())?;
        Client::start(config, self.native, tls, proxy)
    }

    /// [`build`](Self::build), then start connecting.
    pub fn connect(self) -> Result<(Client, Events), BuildError> {
        let (client, events) = self.build()?;
        client.connect();
        Ok((client, events))
    }
}

/// The largest WebSocket read or write buffer `build` accepts.
const MAX_BUFFER_BYTES: usize = 64 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn buffers_past_64_mib_are_refused_at_build_instead_of_killing_the_connection() {
        for (which, builder) in [
            (
                "read_buffer_size",
                Client::builder("ws://127.0.0.1:9/").read_buffer_size(usize::MAX),
            ),
            (
                "write_buffer_size",
                Client::builder("ws://127.0.0.1:9/").write_buffer_size(usize::MAX),
            ),
        ] {
            let result = builder.build();
            assert!(
                matches!(&result, Err(BuildError::Config(ConfigError { field, .. })) if *field == which),
                "{which}: {result:?}"
            );
        }
        assert!(Client::builder("ws://127.0.0.1:9/")
            .read_buffer_size(MAX_BUFFER_BYTES)
            .write_buffer_size(MAX_BUFFER_BYTES)
            .build()
            .is_ok());
    }

    #[tokio::test]
    async fn a_token_placement_without_a_provider_is_a_config_error_not_ignored() {
        // Without a provider the placement was dropped: the client connected with no token
        // at all, and the app learnt of its slip from the server's refusal.
        let result = Client::builder("ws://127.0.0.1:9/")
            .token_placement(TokenPlacement::Query {
                param: "token".to_owned(),
            })
            .build();
        assert!(
            matches!(
                result,
                Err(BuildError::Config(ConfigError {
                    field: "token_placement",
                    ..
                }))
            ),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_refused_token_placement_is_named_as_the_method_that_set_it() {
        // The engine's builder calls the setting `token`; here it is `token_placement`, which
        // is also what a placement without a provider is refused as: one name for one setting.
        for placement in [
            TokenPlacement::Header {
                name: "bad name".to_owned(),
                prefix: String::new(),
            },
            TokenPlacement::Query {
                param: String::new(),
            },
            TokenPlacement::FirstMessage,
        ] {
            let result = Client::builder("ws://127.0.0.1:9/")
                .token_provider(|_refresh: bool| async { Ok::<_, String>("t".to_owned()) })
                .token_placement(placement.clone())
                .build();
            assert!(
                matches!(
                    &result,
                    Err(BuildError::Config(ConfigError {
                        field: "token_placement",
                        ..
                    }))
                ),
                "{placement:?}: {result:?}"
            );
        }
    }

    #[test]
    fn a_zero_event_capacity_is_a_config_error_not_raised_to_one() {
        let result = Client::builder("ws://127.0.0.1:9/")
            .event_capacity(0)
            .build();
        assert!(
            matches!(
                result,
                Err(BuildError::Config(ConfigError {
                    field: "event_capacity",
                    ..
                }))
            ),
            "{result:?}"
        );
    }
}
