//! [`ClientEvent`] and the data it carries, mirrored from `tether::Event` through `From`
//! impls. Durations cross the FFI as whole milliseconds (RTT as fractional milliseconds:
//! loopback and LAN round trips are far below one).

use crate::document_event::{ChangeOrigin, KeyChange};
use crate::error::Unacked;
use crate::state::{ConnectionState, EngineClock};

/// Something that happened to the client, delivered in order to each
/// [`ClientListener`](crate::ClientListener).
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum ClientEvent {
    /// The lifecycle state changed. `previous` is `null`/`nil` for the snapshot a listener
    /// receives first (and after [`ClientEvent::Lagged`]): it is the state at that point of
    /// the event sequence, not a transition.
    StateChanged {
        /// The state before, or none for a snapshot.
        previous: Option<ConnectionState>,
        /// The state now.
        current: ConnectionState,
    },
    /// The connection ended (or an attempt failed) because of `cause`; attempt `attempt`
    /// starts in `delay_ms`.
    ReconnectScheduled {
        /// The attempt number.
        attempt: u32,
        /// Backoff with jitter, or the server's hint, in milliseconds.
        delay_ms: u64,
        /// What ended the connection or attempt.
        cause: DisconnectCause,
    },
    /// A message arrived (channel duplicates already removed).
    Message {
        /// The message.
        message: InboundMessage,
    },
    /// Accepted messages left the outbox undelivered. Never silent.
    Dropped {
        /// The ids `send`/`publish` returned.
        ids: Vec<u64>,
        /// Why.
        reason: DropReason,
    },
    /// The server acknowledged an acked publish (`publish` on a channel is acked by default).
    Acked {
        /// The id `publish`/`send` returned.
        id: u64,
        /// Where it was stored, if on a channel.
        offset: Option<u64>,
    },
    /// An acknowledged message's `timeoutMs` passed without its ack. `status` says whether it
    /// was dropped unsent (a `Dropped` event follows at once) or still awaits its ack (an
    /// `Acked` or `Dropped` event follows later).
    AckTimedOut {
        /// The id `publishWith`/`sendWith` returned.
        id: u64,
        /// What became of it.
        status: Unacked,
    },
    /// A channel subscription became active (on every open, for every channel, and after the
    /// engine resubscribed a channel whose messages skipped offsets). An event
    /// stream (an `http(s)://` URL, Tether protocol) gets one for its channel at the start of
    /// every stream from a server that says where it starts (the reference relay does).
    Subscribed {
        /// The channel.
        channel: String,
        /// Where the stream resumes: the messages that follow have greater offsets.
        offset: u64,
        /// Whether everything missed since the last seen offset was replayed. `false` after a
        /// reconnect (or such a resubscribe) means there may be a gap: resync this channel
        /// from your own source.
        recovered: bool,
    },
    /// A subscription ended (by `unsubscribe` or by the server).
    Unsubscribed {
        /// The channel.
        channel: String,
    },
    /// A channel's presence set changed; `members` is the whole current set.
    Presence {
        /// The channel.
        channel: String,
        /// Current members, sorted.
        members: Vec<String>,
        /// Members added by this update.
        joined: Vec<String>,
        /// Members removed by this update.
        left: Vec<String>,
    },
    /// A round trip was measured from a ping and its pong.
    Rtt {
        /// Milliseconds (fractional).
        rtt_ms: f64,
    },
    /// A problem the client already handled (bad frame, server error, transport failure).
    /// Informational: the client keeps going per its policy.
    Error {
        /// What happened.
        issue: EngineIssue,
    },
    /// This listener fell `missed` events behind (its queue was full because its callbacks
    /// were too slow), and they were skipped. A `StateChanged` snapshot follows, so the
    /// listener's view of the state is correct again.
    Lagged {
        /// How many events this listener did not receive.
        missed: u64,
    },
    /// Keys of an open shared document changed (the same as its `DocumentEvent.Changed`, here
    /// in order with the connection's events).
    DocumentChanged {
        /// The document's channel.
        channel: String,
        /// Which opening of the document on `channel` this is about (`Document.generation()`
        /// while it is open): a document closed and opened again is a new one, with a greater
        /// number, and events of the closed one may still arrive after the new one is opened.
        generation: u64,
        /// Why.
        origin: ChangeOrigin,
        /// Which keys, with their new values as JSON text.
        changes: Vec<KeyChange>,
    },
    /// A local document change was rejected by the server or dropped, and rolled back.
    ChangeRejected {
        /// The document's channel.
        channel: String,
        /// Which opening of the document on `channel` this is about (see `DocumentChanged`).
        generation: u64,
        /// The id the change returned.
        change: u64,
        /// The server's code (`conflict`, `type_mismatch`) or the drop reason.
        code: String,
    },
    /// A document was replaced by a server snapshot; pending local changes were replayed.
    DocumentResynced {
        /// The document's channel.
        channel: String,
        /// Which opening of the document on `channel` this is about (see `DocumentChanged`).
        generation: u64,
        /// The snapshot's version.
        version: u64,
    },
}

/// Why a connection ended or an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum DisconnectCause {
    /// The server (or the network) closed the connection.
    Closed {
        /// Close code, if there was a close frame.
        code: Option<u16>,
        /// Close reason.
        reason: String,
    },
    /// The handshake (or the SSE stream) failed with an HTTP status.
    Http {
        /// The status.
        status: u16,
    },
    /// The HTTP proxy on the way (`ClientConfig.proxy`, or the environment's) answered with
    /// this status instead of opening the way: the server was never reached. A 407 or 403
    /// stops the client; a 502, 503 or 504 is retried. Any refusal of a WebSocket's tunnel;
    /// for an event stream, a 407 only (its other refusals are `Failed` for `https://`, and
    /// the server's `Http` for a plain `http://` stream, whose request the proxy answers).
    Proxy {
        /// The proxy's status.
        status: u16,
    },
    /// The transport failed (refused, reset, TLS, DNS…).
    Failed {
        /// What the transport said.
        message: String,
    },
    /// No pong (or other sign of life) in time.
    HeartbeatTimeout,
    /// The attempt took longer than the connect timeout.
    ConnectTimeout,
    /// The token provider failed.
    TokenUnavailable {
        /// The provider's error.
        message: String,
    },
    /// The client ended an open event stream to open it again at once from its position,
    /// after `networkChanged(true)` or a return to the foreground: a stream cannot send a
    /// ping to find out whether its socket survived.
    StreamRestarted,
}

/// Why accepted messages were dropped.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum DropReason {
    /// The outbox was full and these were the oldest.
    Overflow,
    /// Their TTL passed before they could be sent.
    Expired,
    /// The client closed while they were pending.
    Closed,
    /// The server refused them.
    Rejected {
        /// The server's error code.
        code: String,
    },
}

/// The content of a message. Received in Tether mode, it is always `Json`: a `Text` sent in
/// Tether mode is a JSON string, and arrives as `Json` with that string's JSON text
/// (`"\"hi\""`). `Text` and `Binary` arrive only in raw mode (`Text` also on a raw event
/// stream).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum Payload {
    /// A text frame (raw mode) or SSE data (raw mode). Sent in Tether mode: a JSON string.
    Text {
        /// The text.
        text: String,
    },
    /// A binary frame (raw mode only).
    Binary {
        /// The bytes.
        data: PayloadBytes,
    },
    /// A JSON value (Tether mode), as JSON text.
    Json {
        /// JSON text, e.g. `{"text":"hi"}`.
        json: String,
    },
}

/// The bytes of a binary payload: `ByteArray` in Kotlin, `Data` in Swift, `bytes` in Python.
///
/// Its own type, not `Vec<u8>`, only so that uniffi.toml can say how Python lowers it: UniFFI's
/// Python converter for bytes copies them with `ctypes.memmove`, which takes a `bytes` and
/// nothing else, so a `bytearray` or `memoryview` (what a Python app that builds or slices a
/// buffer has) failed with `ctypes.ArgumentError` although the type check had let it through.
/// Python now copies any bytes-like object into a `bytes` first (see uniffi.toml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadBytes(pub Vec<u8>);

uniffi::custom_newtype!(PayloadBytes, Vec<u8>);

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct InboundMessage {
    /// The channel, in Tether mode, when it came from one.
    pub channel: Option<String>,
    /// The channel offset (Tether mode) or the SSE event id, when numeric.
    pub offset: Option<u64>,
    /// The content: in Tether mode always `Json`.
    pub payload: Payload,
    /// A named Server-Sent Event's type (`event:`); null for unnamed events and WebSocket
    /// messages.
    pub event: Option<String>,
    /// An event stream's position once this message is handled (its `id:`, or the last one
    /// before it): save it after handling the message and give it to
    /// `ClientConfig.lastEventId` to resume there after a restart. Null on a WebSocket.
    pub last_event_id: Option<String>,
}

/// A problem the client reports and has already handled.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum EngineIssue {
    /// An inbound frame exceeded `maxMessageBytes` and was discarded.
    FrameTooLarge {
        /// Its size in bytes.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// An inbound frame was not a valid protocol message and was discarded.
    Undecodable {
        /// Why.
        message: String,
    },
    /// A frame the protocol does not allow here was discarded (e.g. binary in Tether mode).
    UnexpectedFrame {
        /// Which.
        message: String,
    },
    /// The server sent an error.
    Server {
        /// Its code, e.g. `rate_limited`.
        code: String,
        /// Its explanation.
        message: String,
    },
    /// The transport failed; the client reconnects per its policy.
    Transport {
        /// What the transport said.
        message: String,
    },
    /// The token provider failed; the attempt was abandoned.
    Token {
        /// The provider's error.
        message: String,
    },
    /// An SSE `id:`, `event:` or `retry:` line was over the limit and was ignored (an id that
    /// long is not resumed from); the stream goes on.
    SseLineTooLong {
        /// The field name.
        field: String,
        /// Its length in bytes.
        size: u64,
        /// The limit it exceeds.
        max: u64,
    },
}

impl ClientEvent {
    /// Converts a core event. `None` for events the FFI resolves elsewhere (request replies
    /// complete `request()`), or that a newer core added and this layer does not know yet.
    pub(crate) fn from_core(event: tether::Event, clock: &EngineClock) -> Option<Self> {
        Some(match event {
            tether::Event::StateChanged { from, to } => ClientEvent::StateChanged {
                previous: Some(clock.state(from)),
                current: clock.state(to),
            },
            tether::Event::ReconnectScheduled {
                attempt,
                delay,
                cause,
            } => ClientEvent::ReconnectScheduled {
                attempt,
                delay_ms: millis(delay),
                cause: cause.into(),
            },
            tether::Event::Message(m) => ClientEvent::Message { message: m.into() },
            tether::Event::Dropped { ids, reason } => ClientEvent::Dropped {
                ids: ids.into_iter().map(tether::MessageId::get).collect(),
                reason: reason.into(),
            },
            tether::Event::Acked { id, offset } => ClientEvent::Acked {
                id: id.get(),
                offset,
            },
            tether::Event::AckTimedOut { id, status } => ClientEvent::AckTimedOut {
                id: id.get(),
                status: status.into(),
            },
            tether::Event::Subscribed {
                channel,
                offset,
                recovered,
            } => ClientEvent::Subscribed {
                channel,
                offset,
                recovered,
            },
            tether::Event::Unsubscribed { channel } => ClientEvent::Unsubscribed { channel },
            tether::Event::Presence {
                channel,
                members,
                joined,
                left,
            } => ClientEvent::Presence {
                channel,
                members,
                joined,
                left,
            },
            tether::Event::Rtt { rtt } => ClientEvent::Rtt {
                rtt_ms: rtt.as_secs_f64() * 1000.0,
            },
            tether::Event::Error(e) => ClientEvent::Error { issue: e.into() },
            tether::Event::DocumentChanged {
                channel,
                generation,
                origin,
                changes,
            } => ClientEvent::DocumentChanged {
                channel,
                generation,
                origin: origin.into(),
                changes: changes.into_iter().map(Into::into).collect(),
            },
            tether::Event::ChangeRejected {
                channel,
                generation,
                change,
                code,
            } => ClientEvent::ChangeRejected {
                channel,
                generation,
                change: change.get(),
                code,
            },
            tether::Event::DocumentResynced {
                channel,
                generation,
                version,
            } => ClientEvent::DocumentResynced {
                channel,
                generation,
                version,
            },
            _ => return None,
        })
    }
}

pub(crate) fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl From<tether::DisconnectCause> for DisconnectCause {
    fn from(cause: tether::DisconnectCause) -> Self {
        match cause {
            tether::DisconnectCause::Closed { code, reason } => {
                DisconnectCause::Closed { code, reason }
            }
            tether::DisconnectCause::Http { status } => DisconnectCause::Http { status },
            tether::DisconnectCause::Proxy { status } => DisconnectCause::Proxy { status },
            tether::DisconnectCause::Failed { message } => DisconnectCause::Failed { message },
            tether::DisconnectCause::HeartbeatTimeout => DisconnectCause::HeartbeatTimeout,
            tether::DisconnectCause::ConnectTimeout => DisconnectCause::ConnectTimeout,
            tether::DisconnectCause::TokenUnavailable { message } => {
                DisconnectCause::TokenUnavailable { message }
            }
            tether::DisconnectCause::StreamRestarted => DisconnectCause::StreamRestarted,
            other => DisconnectCause::Failed {
                message: other.to_string(),
            },
        }
    }
}

impl From<tether::DropReason> for DropReason {
    fn from(reason: tether::DropReason) -> Self {
        match reason {
            tether::DropReason::Overflow => DropReason::Overflow,
            tether::DropReason::Expired => DropReason::Expired,
            tether::DropReason::Closed => DropReason::Closed,
            tether::DropReason::Rejected { code } => DropReason::Rejected { code },
            other => DropReason::Rejected {
                code: other.name().to_owned(),
            },
        }
    }
}

impl From<tether::Payload> for Payload {
    fn from(payload: tether::Payload) -> Self {
        match payload {
            tether::Payload::Text(text) => Payload::Text { text },
            tether::Payload::Binary(data) => Payload::Binary {
                data: PayloadBytes(data),
            },
            tether::Payload::Json(value) => Payload::Json {
                json: value.to_string(),
            },
            other => Payload::Text {
                text: format!("{other:?}"),
            },
        }
    }
}

impl From<tether::InboundMessage> for InboundMessage {
    fn from(m: tether::InboundMessage) -> Self {
        InboundMessage {
            channel: m.channel,
            offset: m.offset,
            payload: m.payload.into(),
            event: m.event,
            last_event_id: m.last_event_id,
        }
    }
}

impl From<tether::EngineError> for EngineIssue {
    fn from(e: tether::EngineError) -> Self {
        let message = e.to_string();
        match e {
            tether::EngineError::FrameTooLarge { size, max } => EngineIssue::FrameTooLarge {
                size: size as u64,
                max: max as u64,
            },
            tether::EngineError::Decode(_) => EngineIssue::Undecodable { message },
            tether::EngineError::UnexpectedFrame(what) => {
                EngineIssue::UnexpectedFrame { message: what }
            }
            tether::EngineError::Server { code, message } => EngineIssue::Server { code, message },
            tether::EngineError::Transport(message) => EngineIssue::Transport { message },
            tether::EngineError::Token(message) => EngineIssue::Token { message },
            tether::EngineError::SseLineTooLong { field, size, max } => {
                EngineIssue::SseLineTooLong {
                    field: field.to_owned(),
                    size: size as u64,
                    max: max as u64,
                }
            }
            _ => EngineIssue::Transport { message },
        }
    }
}
