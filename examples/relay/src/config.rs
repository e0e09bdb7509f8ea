//! Relay configuration: every limit and timing the relay applies, with documented defaults,
//! checked once by [`RelayConfig::validate`] when the relay binds.

use std::time::Duration;

/// The largest [`RelayConfig::max_message_size`] accepted: 1 GiB. A relay holds messages whole
/// (history, queues, the write buffer takes two more), so a larger "unlimited" value only
/// overflows the sizes computed from it.
pub const MAX_MESSAGE_SIZE_LIMIT: usize = 1 << 30;

/// How a [`Relay`](crate::Relay) behaves. Every field has a documented default; start from
/// [`RelayConfig::default()`] and change what you need:
///
/// ```
/// use std::time::Duration;
/// use tether_relay::RelayConfig;
///
/// let config = RelayConfig {
///     presence_grace: Duration::from_millis(200),
///     token: Some("s3cret".to_owned()),
///     ..RelayConfig::default()
/// };
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone)]
pub struct RelayConfig {
    /// Largest inbound WebSocket message (and frame) in bytes, at most
    /// [`MAX_MESSAGE_SIZE_LIMIT`] (1 GiB). A larger one closes the connection with 1009.
    /// Default: 1 MiB.
    pub max_message_size: usize,
    /// Per-connection inbound message rate; `None` disables the limit. Over the limit, a
    /// message that names an `id` (`publish`, `request`, `doc_change`) is answered
    /// with `error{code:"rate_limited", id}` and not processed; a `ping` is still answered
    /// with its `pong`, taking nothing (so a heartbeat counting only pongs survives a burst). One without an `id` (`hello`,
    /// `subscribe`, `unsubscribe`, `doc_sync`, `doc_close`), which such an error could not
    /// name, is not refused but delayed: the relay stops reading the connection until the rate allows it
    /// (the client's frames wait in the socket), so a client that subscribes to more
    /// channels than the burst on every reconnect gets every `subscribed`, the later ones at
    /// the sustained rate. (With `per_second: 0` nothing could be waited for: those are
    /// refused too, with an error naming nothing.) A resend of a publish or a document
    /// change the relay holds (same `client_id` and `id`) is not counted, up to
    /// `dedupe_capacity` per connection: it is acknowledged even over the limit.
    /// Default: 1,000 messages/s with a burst of 2,000.
    pub rate_limit: Option<RateLimit>,
    /// Messages kept per channel for resume (`since`) and SSE `Last-Event-ID` replay.
    /// Memory: up to this many times `max_message_size` per channel with traffic.
    /// Default: 1,024.
    pub history_capacity: usize,
    /// Publish ids remembered per channel to acknowledge resends without storing them
    /// twice (an id is at most 128 bytes, so this costs at most about 1 MiB per channel).
    /// Also the channel-less publishes (echoed to their sender) remembered by the whole
    /// relay, so that a resend is not echoed twice. Default: 4,096.
    pub dedupe_capacity: usize,
    /// Changes kept per shared document so a reconnecting client gets the changes it missed
    /// instead of a snapshot. Default: 1,024.
    pub document_log_capacity: usize,
    /// Shared documents held at most. A `doc_sync` or `doc_change` that would create one
    /// more is refused with `error{code:"too_many_documents"}`. A document nobody syncs that
    /// was never changed is dropped, so only documents with content, or with clients syncing
    /// them, count. 0 disables documents. Default: 4,096.
    pub max_documents: usize,
    /// Largest state of one shared document, in bytes of JSON. A change that would take it
    /// further is refused with `error{id, code:"too_large"}`, and so is one whose
    /// `doc_snapshot` (state plus the ids of the logged changes) or `doc_change` frame would
    /// exceed `max_message_size`, so every document can always be sent. Memory per document:
    /// this, plus up to `document_log_capacity` changes of at most `max_message_size` each.
    /// Default: 512 KiB.
    pub max_document_bytes: usize,
    /// How long a member whose last connection to a channel went away stays present before
    /// `leave` is broadcast, so that a quick reconnect is invisible to others. A client that
    /// closed with 1000 (the app closed) is not coming back: it leaves at once. Default: 5 s.
    pub presence_grace: Duration,
    /// A token every client must present (`Authorization: Bearer`, `?token=`, or
    /// `hello.token`). Default: `None` (open relay).
    pub token: Option<String>,
    /// The `retry:` hint sent at the start of every SSE stream. Default: 1,000 ms.
    pub sse_retry: Duration,
    /// How often an idle SSE stream gets a `:keepalive` comment, so proxies and clients
    /// see it is alive. A stream whose socket accepts no bytes for two of these intervals
    /// (a reader that stopped reading or vanished) is ended. Default: 15 s.
    pub sse_keepalive: Duration,
    /// Liveness of WebSocket connections: every interval the relay sends a WebSocket ping
    /// frame, and to a client that said `hello` also an application `ping` (a raw WebSocket
    /// client, which never says hello, would read it as data; its stack answers the frame
    /// without it). A connection from which
    /// nothing at all has arrived for two intervals (no message, pong, ping of either kind, no
    /// byte of one: a large message arriving slowly is not silence) is
    /// closed with 4000 `heartbeat timeout`, so a client whose network vanished without a FIN
    /// or RST stops holding its subscriptions and presence. When its last bytes were part of a
    /// frame, that takes up to twice as long (four intervals): the bytes are noted by a flag,
    /// looked at only when the limit passes, so those seen there may be that old. `None` does
    /// neither.
    /// Default: 25 s (the SDK's own heartbeat interval).
    pub ping_interval: Option<Duration>,
    /// The window advised to clients on graceful shutdown (close 1012 with
    /// `{"reconnect_within_ms": N}`), over which they spread their reconnects.
    /// Default: 5,000 ms.
    pub reconnect_window: Duration,
    /// How long the relay expects to be away after a graceful shutdown (a restart): when
    /// non-zero the close reason also says `"reconnect_after_ms": A`, and clients spread their
    /// returns over A..window instead of 0..window, so none wastes an attempt on a closed port.
    /// Default: 0.
    pub reconnect_after: Duration,
    /// Frames a connection may have queued for sending (broadcasts, and answers such as
    /// `ack`, `pong` or `error`) before it is treated as a slow consumer and closed with 1013
    /// (it can reconnect and resume from history).
    ///
    /// Replies the connection asked for (a subscribe's replay and the frames around it, a
    /// document's changes or snapshot) do not count against it, so a client resuming many
    /// busy channels at once is not cut off, nor by the next broadcast after its replays.
    /// They have a bound of their own, this same number: while that many are queued, the
    /// relay reads no further message from the connection until they are sent (its frames
    /// wait in the socket: TCP backpressure), so a client that keeps subscribing without
    /// reading holds at most this many plus one request's replies. A client that reads none
    /// of them for two ping intervals is closed with 4000 like a silent one.
    /// Default: 4,096.
    pub max_queued_frames: usize,
    /// Bytes of broadcast frames a connection may have queued for sending before it is
    /// treated as a slow consumer, like `max_queued_frames` (whichever is reached first). A
    /// queued frame is shared with the channel's history and with other subscribers, but a
    /// reader that stops keeps its frames alive after the history has let them go, so
    /// without this one slow reader of large messages could hold `max_queued_frames` ×
    /// `max_message_size` (4 GiB with the defaults). A connection with no broadcast frame
    /// queued is always sent the next one, however large. Replies it asked for (a
    /// subscribe's replay, a document's) do not count, as for `max_queued_frames`.
    /// Default: 64 MiB.
    pub max_queued_bytes: usize,
    /// Time allowed for the HTTP request head and, when the token must come in `hello`,
    /// for that `hello`. Default: 10 s.
    pub handshake_timeout: Duration,
}

/// A token bucket: `per_second` tokens are added each second up to `burst`; every inbound
/// message takes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained messages per second.
    pub per_second: u32,
    /// Messages that may arrive at once after a quiet period.
    pub burst: u32,
}

/// A configuration field that cannot work, found by [`RelayConfig::validate`], or a token
/// that cannot be read, found by [`RelayOptions::config`](crate::RelayOptions::config).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `max_message_size` is 0: no message could ever be received.
    #[error("max_message_size must be at least 1 byte")]
    MaxMessageSize,
    /// `max_message_size` is over [`MAX_MESSAGE_SIZE_LIMIT`].
    #[error("max_message_size (--max-message-bytes) must be at most 1 GiB (1073741824 bytes)")]
    MaxMessageSizeTooLarge,
    /// `rate_limit.burst` is 0: every message would be refused.
    #[error("rate_limit.burst must be at least 1 (use rate_limit: None for no limit)")]
    RateLimitBurst,
    /// `max_queued_frames` is 0: every connection would be a slow consumer.
    #[error("max_queued_frames must be at least 1")]
    MaxQueuedFrames,
    /// `max_queued_bytes` is 0: every connection with anything queued would be a slow
    /// consumer.
    #[error("max_queued_bytes must be at least 1")]
    MaxQueuedBytes,
    /// A timing that must be positive is zero.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// `token` is set but empty, which no client could present.
    #[error("token must not be empty (use token: None for an open relay)")]
    EmptyToken,
    /// `reconnect_after` is longer than `reconnect_window`: clients could not both wait that
    /// long and come back within the window.
    #[error(
        "reconnect_after (--reconnect-after) must be at most reconnect_window (--reconnect-window)"
    )]
    ReconnectAfterBeyondWindow,
    /// `TETHER_RELAY_TOKEN` is set but not valid UTF-8, and no `--token` overrides it. Not
    /// read as "no token": a relay meant to be protected must not start open.
    #[error("TETHER_RELAY_TOKEN is not valid UTF-8 (set it to a UTF-8 token, or pass --token)")]
    TokenNotUnicode,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            max_message_size: 1024 * 1024,
            rate_limit: Some(RateLimit {
                per_second: 1_000,
                burst: 2_000,
            }),
            history_capacity: 1_024,
            dedupe_capacity: 4_096,
            document_log_capacity: 1_024,
            max_documents: 4_096,
            max_document_bytes: 512 * 1024,
            presence_grace: Duration::from_secs(5),
            token: None,
            sse_retry: Duration::from_millis(1_000),
            sse_keepalive: Duration::from_secs(15),
            ping_interval: Some(Duration::from_secs(25)),
            reconnect_window: Duration::from_millis(5_000),
            reconnect_after: Duration::ZERO,
            max_queued_frames: 4_096,
            max_queued_bytes: 64 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl RelayConfig {
    /// The most replies one request queues: one subscribe's replay or one document's change
    /// replay, plus the frames around it. Replies may queue this far past
    /// `max_queued_frames`, where the reader stops.
    pub(crate) fn reply_burst(&self) -> usize {
        self.history_capacity
            .max(self.document_log_capacity)
            .saturating_add(16)
    }

    /// The queue limits of one connection that may be sent frames of at most `max_frame`
    /// bytes.
    pub(crate) fn queue_limits(&self, max_frame: usize) -> crate::peer::QueueLimits {
        crate::peer::QueueLimits {
            frames: self.max_queued_frames,
            burst: self.reply_burst(),
            bytes: self.max_queued_bytes,
            max_frame,
        }
    }

    /// Checks that every field can work; [`Relay::bind`](crate::Relay::bind) calls it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_message_size == 0 {
            return Err(ConfigError::MaxMessageSize);
        }
        if self.max_message_size > MAX_MESSAGE_SIZE_LIMIT {
            return Err(ConfigError::MaxMessageSizeTooLarge);
        }
        if matches!(self.rate_limit, Some(RateLimit { burst: 0, .. })) {
            return Err(ConfigError::RateLimitBurst);
        }
        if self.max_queued_frames == 0 {
            return Err(ConfigError::MaxQueuedFrames);
        }
        if self.max_queued_bytes == 0 {
            return Err(ConfigError::MaxQueuedBytes);
        }

        if self.token.as_deref() == Some("") {
            return Err(ConfigError::EmptyToken);
        }
        if self.reconnect_after > self.reconnect_window {
            return Err(ConfigError::ReconnectAfterBeyondWindow);
        }
        let positive = [
            ("sse_keepalive", Some(self.sse_keepalive)),
            ("handshake_timeout", Some(self.handshake_timeout)),
            ("ping_interval", self.ping_interval),
        ];
        for (name, value) in positive {
            if value == Some(Duration::ZERO) {
                return Err(ConfigError::ZeroDuration(name));
            }
        }
        Ok(())
    }
}

// Hand-written so that the token never ends up in logs.
impl std::fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayConfig")
            .field("max_message_size", &self.max_message_size)
            .field("rate_limit", &self.rate_limit)
            .field("history_capacity", &self.history_capacity)
            .field("dedupe_capacity", &self.dedupe_capacity)
            .field("document_log_capacity", &self.document_log_capacity)
            .field("max_documents", &self.max_documents)
            .field("max_document_bytes", &self.max_document_bytes)
            .field("presence_grace", &self.presence_grace)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("sse_retry", &self.sse_retry)
            .field("sse_keepalive", &self.sse_keepalive)
            .field("ping_interval", &self.ping_interval)
            .field("reconnect_window", &self.reconnect_window)
            .field("reconnect_after", &self.reconnect_after)
            .field("max_queued_frames", &self.max_queued_frames)
            .field("max_queued_bytes", &self.max_queued_bytes)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones_and_valid() {
        let c = RelayConfig::default();
        assert_eq!(c.max_message_size, 1 << 20);
        assert_eq!(
            c.rate_limit,
            Some(RateLimit {
                per_second: 1000,
                burst: 2000
            })
        );
        assert_eq!(c.presence_grace, Duration::from_secs(5));
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn unusable_fields_are_named() {
        let bad = RelayConfig {
            ping_interval: Some(Duration::ZERO),
            ..RelayConfig::default()
        };
        assert_eq!(
            bad.validate(),
            Err(ConfigError::ZeroDuration("ping_interval"))
        );
        let bad = RelayConfig {
            token: Some(String::new()),
            ..RelayConfig::default()
        };
        assert_eq!(bad.validate(), Err(ConfigError::EmptyToken));
    }

    #[test]
    fn debug_output_hides_the_token() {
        let c = RelayConfig {
            token: Some("hunter2".into()),
            ..RelayConfig::default()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
