//! Errors returned by the engine's commands, one enum per operation, and the failure reports
//! drivers feed in. (Problems the engine handles by itself are `Event::Error`s instead.)

use std::fmt::{self, Write as _};
use std::time::Duration;

/// Displays a name or value in an error message in double quotes, with quotes, backslashes,
/// control characters and whitespace other than the space escaped (`"a\tb"`, `"\u{a0}"`),
/// so what was wrong stays visible. Written out rather than `{:?}`, whose escaping links
/// Unicode tables the browser build otherwise does without.
pub(crate) struct Quoted<'a>(pub(crate) &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                    write!(f, "\\u{{{:x}}}", u32::from(c))?
                }
                c => f.write_char(c)?,
            }
        }
        f.write_str("\"")
    }
}

/// Why `send`, `publish` or `request` refused a message. A refused message was not accepted,
/// so it is not in the outbox and no event will mention it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The message is larger than a limit: `max_message_bytes`, or the whole outbox
    /// (`outbox.max_bytes`, when that is the smaller); `limit` says which.
    #[error("message of {size} bytes exceeds the limit of {max} bytes ({limit})")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// The limit's value.
        max: usize,
        /// The setting whose limit it exceeds.
        limit: SizeLimit,
    },
    /// The outbox is full and its policy is `RejectNew`.
    #[error("the outbox is full")]
    OutboxFull,
    /// The engine is closed; call `connect` to start again.
    #[error("the client is closed")]
    Closed,
    /// The engine is draining its outbox before closing and takes no new messages.
    #[error("the client is closing")]
    Closing,
    /// This needs `Protocol::Tether` (channels, acks, requests).
    #[error("{0} needs the Tether protocol (raw mode passes frames through)")]
    NeedsTetherProtocol(&'static str),
    /// Binary payloads cannot be carried in the JSON envelope.
    #[error("binary payloads are not supported in Tether protocol mode")]
    BinaryInTetherMode,
    /// The channel name is empty or too long.
    #[error("invalid channel name: {0}")]
    InvalidChannel(String),
    /// The send options contradict each other (for example a timeout on an unacknowledged
    /// send).
    #[error("invalid send options: {0}")]
    InvalidOptions(&'static str),
    /// The transport is a Server-Sent Events stream, which only receives: nothing sent could
    /// ever be written (an acknowledged send would wait forever).
    #[error("an event stream (SSE) is receive-only: nothing can be sent on it")]
    ReceiveOnly,
}

impl SendError {
    /// A stable machine-readable name for the refusal, the one every SDK reports (the browser
    /// package's `TetherError.code`): `too_large`, `outbox_full`, `closed`, `closing`,
    /// `needs_tether_protocol`, `binary_in_tether_mode`, `invalid_channel`, `invalid_options`,
    /// `receive_only`.
    pub fn code(&self) -> &'static str {
        match self {
            SendError::TooLarge { .. } => "too_large",
            SendError::OutboxFull => "outbox_full",
            SendError::Closed => "closed",
            SendError::Closing => "closing",
            SendError::NeedsTetherProtocol(_) => "needs_tether_protocol",
            SendError::BinaryInTetherMode => "binary_in_tether_mode",
            SendError::InvalidOptions(_) => "invalid_options",
            SendError::InvalidChannel(_) => "invalid_channel",
            SendError::ReceiveOnly => "receive_only",
        }
    }
}

/// Which setting refused a message as [`SendError::TooLarge`]. Displayed, and named by
/// [`SizeLimit::field`], as the setting is in a [`ConfigError`](crate::ConfigError): a
/// message is checked against `max_message_bytes` first, then against the outbox's byte
/// bound, which alone refuses it only when it is the smaller of the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SizeLimit {
    /// `max_message_bytes`: the largest message the client sends (default 1 MiB).
    MaxMessageBytes,
    /// `outbox.max_bytes`: the bytes the outbox holds (default 1 MiB).
    OutboxMaxBytes,
}

impl SizeLimit {
    /// The setting's name, as [`ConfigError::field`](crate::ConfigError::field) gives it:
    /// `max_message_bytes` or `outbox.max_bytes`.
    pub fn field(self) -> &'static str {
        match self {
            SizeLimit::MaxMessageBytes => "max_message_bytes",
            SizeLimit::OutboxMaxBytes => "outbox.max_bytes",
        }
    }
}

impl fmt::Display for SizeLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.field())
    }
}

/// Why `subscribe` or `unsubscribe` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// Channels need `Protocol::Tether`.
    #[error("channels need the Tether protocol")]
    NeedsTetherProtocol,
    /// The channel name is empty or longer than 256 bytes.
    #[error("invalid channel name: {0}")]
    InvalidChannel(String),
    /// The engine is closed.
    #[error("the client is closed")]
    Closed,
    /// The transport is a Server-Sent Events stream: it carries the one channel its URL names
    /// and cannot carry a subscribe (the command would be accepted and never happen).
    #[error("an event stream (SSE) is receive-only: its channel is the one in its URL")]
    ReceiveOnly,
}

impl SubscribeError {
    /// A stable machine-readable name (see [`SendError::code`]): `needs_tether_protocol`,
    /// `invalid_channel`, `closed`, `receive_only`.
    pub fn code(&self) -> &'static str {
        match self {
            SubscribeError::NeedsTetherProtocol => "needs_tether_protocol",
            SubscribeError::InvalidChannel(_) => "invalid_channel",
            SubscribeError::Closed => "closed",
            SubscribeError::ReceiveOnly => "receive_only",
        }
    }
}

/// Why a document command was refused.
#[cfg(feature = "documents")]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// Documents need `Protocol::Tether`.
    #[error("documents need the Tether protocol")]
    NeedsTetherProtocol,
    /// `open_document` was not called for this channel.
    #[error("document {} is not open", Quoted(.0))]
    NotOpen(String),
    /// The channel name is empty or too long.
    #[error("invalid channel name: {0}")]
    InvalidChannel(String),
    /// A change with no operations.
    #[error("a change needs at least one operation")]
    EmptyChange,
    /// The change cannot apply to the current view (e.g. `insert` of an existing key,
    /// `increment` of a non-number or past the integer range); it was not sent.
    #[error(transparent)]
    Rejected(#[from] crate::sync::Rejection),
    /// A `set` or `insert` value nests arrays and objects deeper than
    /// [`MAX_VALUE_DEPTH`](crate::sync::MAX_VALUE_DEPTH): no frame could carry it. Not sent.
    #[error(
        "a value nests deeper than {} arrays and objects",
        crate::sync::MAX_VALUE_DEPTH
    )]
    TooDeep,
    /// The outbox refused it.
    #[error(transparent)]
    Send(#[from] SendError),
}

#[cfg(feature = "documents")]
impl SyncError {
    /// A stable machine-readable name (see [`SendError::code`]): `needs_tether_protocol`,
    /// `not_open`, `invalid_channel`, `empty_change`, `too_deep`, the rejection's own code
    /// (`conflict`, `type_mismatch`, `out_of_range`), or the outbox's refusal.
    pub fn code(&self) -> &'static str {
        match self {
            SyncError::NeedsTetherProtocol => "needs_tether_protocol",
            SyncError::NotOpen(_) => "not_open",
            SyncError::InvalidChannel(_) => "invalid_channel",
            SyncError::EmptyChange => "empty_change",
            SyncError::TooDeep => "too_deep",
            SyncError::Rejected(r) => r.code,
            SyncError::Send(e) => e.code(),
        }
    }
}

/// Why `close` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseError {
    /// Apps may close with 1000 or a code in 3000–4999 (RFC 6455 §7.4).
    #[error("close code {0} is not allowed: use 1000 or 3000-4999")]
    InvalidCode(u16),
}

/// A transport failure, as reported by a driver with `Engine::transport_failed`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportFailure {
    /// The server answered the handshake (or the SSE request) with an HTTP response that is
    /// not the protocol asked for: an error status, or a success status without a WebSocket
    /// upgrade or, for SSE, without a `text/event-stream` body.
    Http {
        /// The status code.
        status: u16,
        /// The parsed `Retry-After`, if the response had one.
        retry_after: Option<Duration>,
        /// The `Location` of a redirect (3xx) the driver did not follow, so the error can
        /// say where the server pointed. The error shows it as given: a driver leaves out
        /// what may be a credential (the query, the fragment, a `user:password@`) and bounds
        /// its length, as the native driver does.
        location: Option<String>,
    },
    /// The HTTP proxy between the client and the server answered with this status instead of
    /// opening the way (a `CONNECT` refused; a `407 Proxy Authentication Required`, whatever
    /// the request): the server was never reached. Classified like [`TransportFailure::Http`]
    /// (same table, same overrides), except that it never asks for a new token: the token is
    /// the server's, and a proxy cannot judge it (see `ClosePolicy::classify_proxy`). An
    /// [`TransportFailure::Http`] with status 407 is taken as this: only proxies send 407,
    /// so a driver reports the status it saw and the engine tells whose it is.
    Proxy {
        /// The proxy's status code.
        status: u16,
        /// The parsed `Retry-After`, if the proxy sent one.
        retry_after: Option<Duration>,
    },
    /// The server accepted the WebSocket handshake without one of the subprotocols offered
    /// (`Sec-WebSocket-Protocol`): it chose none of them, or one that was not offered, or one
    /// when none was offered. RFC 6455 §4.1 has the client fail such a connection, and no
    /// retry changes the server's choice, so the engine stops with `CloseReason::Refused`
    /// naming what was offered (from its config) and this.
    Subprotocol {
        /// The server's choice: `None` if it named none; an empty string if it named one
        /// that the driver could not read (tungstenite does not say which).
        chosen: Option<String>,
    },
    /// The platform refuses to open this URL from here, before any connection is made: a
    /// browser's `SecurityError` (an insecure `ws://` URL from an `https://` page, which mixed
    /// content rules block) or any other exception its `WebSocket` or `EventSource`
    /// constructor throws (a URL its parser refuses), or a WebSocket the browser made closed,
    /// or an EventSource that failed after the page's `securitypolicyviolation` event named its URL (a URL the page's
    /// Content-Security-Policy blocks, in Chromium). Every attempt would fail the same way, so
    /// the engine stops with `CloseReason::Refused` (no code, no status) whose reason is the
    /// platform's message.
    Blocked(String),
    /// Anything else: refused, reset, DNS, TLS, protocol violation.
    Io(String),
}

impl std::fmt::Display for TransportFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportFailure::Http {
                status, location, ..
            } => {
                HttpStatus(*status).fmt(f)?;
                match location {
                    Some(location) => {
                        write!(f, " redirecting to {}, not followed", Quoted(location))
                    }
                    None => Ok(()),
                }
            }
            TransportFailure::Proxy { status, .. } => ProxyStatus(*status).fmt(f),
            TransportFailure::Subprotocol { chosen } => SubprotocolMismatch(None, chosen).fmt(f),
            TransportFailure::Blocked(msg) | TransportFailure::Io(msg) => f.write_str(msg),
        }
    }
}

/// `subprotocol mismatch: offered "a", "b"; the server chose "c"` (or `none`, or `one not
/// offered` for a name the driver could not read); without the offer when it is not known.
pub(crate) struct SubprotocolMismatch<'a>(
    pub(crate) Option<&'a [String]>,
    pub(crate) &'a Option<String>,
);

impl fmt::Display for SubprotocolMismatch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("subprotocol mismatch: ")?;
        if let Some(offered) = self.0 {
            f.write_str("offered ")?;
            if offered.is_empty() {
                f.write_str("none")?;
            }
            for (i, name) in offered.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                Quoted(name).fmt(f)?;
            }
            f.write_str("; ")?;
        }
        f.write_str("the server chose ")?;
        match self.1.as_deref() {
            None => f.write_str("none"),
            Some("") => f.write_str("one not offered"),
            Some(name) => Quoted(name).fmt(f),
        }
    }
}

/// `proxy answered HTTP status N`: what the proxy said, never the server.
pub(crate) struct ProxyStatus(pub(crate) u16);

impl fmt::Display for ProxyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "proxy answered HTTP status {}", self.0)
    }
}

/// `HTTP status N`; for a 2xx, which failed the attempt by answering with something other
/// than a WebSocket upgrade or an event stream, also what that usually means.
pub(crate) struct HttpStatus(pub(crate) u16);

impl HttpStatus {
    /// What `status` usually means where its number alone does not say it: a 2xx that failed
    /// the attempt. Not for 204: that is a server's deliberate "do not reconnect" to an event
    /// stream.
    pub(crate) fn advice(status: u16) -> Option<&'static str> {
        ((200..300).contains(&status) && status != 204)
            .then_some("instead of a WebSocket upgrade or an event stream (is the URL right?)")
    }
}

impl fmt::Display for HttpStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP status {}", self.0)?;
        if let Some(advice) = Self::advice(self.0) {
            write!(f, " {advice}")?;
        }
        Ok(())
    }
}

/// One Server-Sent Event, as reported with `Engine::sse_event_received`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The stream's last event id when this event was dispatched (set by this or an earlier
    /// `id:` line; an empty id resets `Last-Event-ID`), if there has been one.
    pub id: Option<String>,
    /// The `event:` field (`"message"` when absent). Empty for what is not a dispatched
    /// event: an `id:` or `retry:` on its own, which only changes the resume position or the
    /// reconnection time (then `data` is empty too).
    pub event: String,
    /// The `data:` lines, joined with newlines.
    pub data: String,
    /// The `retry:` field: the server's reconnection time.
    pub retry: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_names_read_like_debug_and_show_invisible_characters() {
        for s in [
            "room",
            "é ☃ 😀",
            "a\"b\\c",
            "line\nbreak\ttab\r",
            "\u{1}\u{7f}",
            "",
        ] {
            assert_eq!(Quoted(s).to_string(), format!("{s:?}"), "{s:?}");
        }
        assert_eq!(Quoted("ws://a\u{a0}b").to_string(), r#""ws://a\u{a0}b""#);
        assert_eq!(Quoted("x\u{2028}").to_string(), r#""x\u{2028}""#);
    }

    #[test]
    fn a_success_status_that_failed_an_attempt_says_what_it_means() {
        let http = |status| TransportFailure::Http {
            status,
            retry_after: None,
            location: None,
        };
        assert_eq!(http(503).to_string(), "HTTP status 503");
        assert_eq!(
            http(200).to_string(),
            "HTTP status 200 instead of a WebSocket upgrade or an event stream (is the URL right?)"
        );
    }

    #[test]
    fn a_proxy_refusal_says_it_came_from_the_proxy() {
        let failure = TransportFailure::Proxy {
            status: 407,
            retry_after: None,
        };
        assert_eq!(failure.to_string(), "proxy answered HTTP status 407");
    }

    #[test]
    fn a_subprotocol_mismatch_says_what_was_offered_and_chosen() {
        let chose = |chosen: Option<&str>| TransportFailure::Subprotocol {
            chosen: chosen.map(str::to_owned),
        };
        assert_eq!(
            chose(None).to_string(),
            "subprotocol mismatch: the server chose none"
        );
        let offered = ["a".to_owned(), "b c".to_owned()];
        let full = |chosen: Option<&str>| {
            let chosen = chosen.map(str::to_owned);
            SubprotocolMismatch(Some(&offered), &chosen).to_string()
        };
        assert_eq!(
            full(Some("x")),
            r#"subprotocol mismatch: offered "a", "b c"; the server chose "x""#
        );
        assert_eq!(
            full(Some("")),
            r#"subprotocol mismatch: offered "a", "b c"; the server chose one not offered"#
        );
        assert_eq!(
            SubprotocolMismatch(Some(&[]), &Some("x".to_owned())).to_string(),
            r#"subprotocol mismatch: offered none; the server chose "x""#
        );
    }

    #[test]
    fn an_unfollowed_redirect_says_where_it_pointed() {
        let failure = TransportFailure::Http {
            status: 301,
            retry_after: None,
            location: Some("wss://example.com/ws".to_owned()),
        };
        assert_eq!(
            failure.to_string(),
            r#"HTTP status 301 redirecting to "wss://example.com/ws", not followed"#
        );
    }
}
