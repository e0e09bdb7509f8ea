//! What the engine tells the app: the connection [`State`] and [`Event`]s, drained with
//! `Engine::poll_event`.
//!
//! Events are plain data named for what happened. Each variant documents when it is emitted.
//! They are `Clone + PartialEq` so tests can compare them and drivers can fan them out.

use crate::action::Frame;
use crate::protocol::DecodeError;
#[cfg(feature = "documents")]
use crate::sync::{ChangeOrigin, KeyChange};
use crate::time::Instant;
use serde_json::Value;
use std::fmt;
use std::time::Duration;

/// Local id of a message accepted by `Engine::send`/`publish`. Unique per engine, increasing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub(crate) u64);

impl MessageId {
    /// The raw number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m{}", self.0)
    }
}

/// Local id of a request made with `Engine::request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub(crate) u64);

impl RequestId {
    /// The raw number.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The id whose [`get`](Self::get) is `raw`: for a driver that handed an id to another
    /// language and has it back (the browser's aborted requests). An id the engine does not
    /// know is not pending, and [`Engine::cancel_request`](crate::Engine::cancel_request)
    /// says so.
    pub fn from_raw(raw: u64) -> Self {
        RequestId(raw)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// The connection lifecycle. Every change is reported as [`Event::StateChanged`].
///
/// ```text
///  Idle ──connect──▶ Connecting ──opened──▶ Open ──close()──▶ Closing ──▶ Closed{App}
///                      │   ▲                  │
///              failure │   │ timer / online   │ dropped, dead, server close
///                      ▼   │                  ▼
///                     Waiting ◀───────────────┘
///                      │
///                      └─ attempts exhausted / terminal code ─▶ Closed{GaveUp|Refused|Unauthorized}
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum State {
    /// Created, `connect` not called yet.
    Idle,
    /// Attempt number `attempt` (1-based since the last stable connection) is under way:
    /// fetching a token and/or performing the handshake.
    Connecting {
        /// Attempt number.
        attempt: u32,
    },
    /// The transport is open and messages flow.
    Open,
    /// The app asked to close; waiting for the close handshake.
    Closing,
    /// Backing off before attempt number `attempt`, which starts at `until`. A wait cut
    /// short while the server's minimum has not passed (network back, foreground, `connect`)
    /// moves `until` earlier, to that minimum: a change from `Waiting` to `Waiting`.
    Waiting {
        /// The next attempt's number.
        attempt: u32,
        /// When it starts (engine time).
        until: Instant,
    },
    /// Terminal until the app calls `connect` again.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

impl State {
    /// Lower-case name: `idle`, `connecting`, `open`, `closing`, `waiting`, `closed`.
    pub fn name(&self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Connecting { .. } => "connecting",
            State::Open => "open",
            State::Closing => "closing",
            State::Waiting { .. } => "waiting",
            State::Closed { .. } => "closed",
        }
    }

    /// Whether this is [`State::Open`].
    pub fn is_open(&self) -> bool {
        matches!(self, State::Open)
    }

    /// Whether this is [`State::Closed`].
    pub fn is_closed(&self) -> bool {
        matches!(self, State::Closed { .. })
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Connecting { attempt } => write!(f, "connecting (attempt {attempt})"),
            State::Waiting { attempt, until } => {
                write!(f, "waiting (attempt {attempt} at {until})")
            }
            State::Closed { reason } => write!(f, "closed ({reason})"),
            other => f.write_str(other.name()),
        }
    }
}

/// Why the engine reached [`State::Closed`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The app called `close`; or, with code 1001 ("going away"), its driver stopped running
    /// the engine without one (`Engine::abandon`: the task or runtime ended).
    App {
        /// The code the app closed with (1001 when abandoned).
        code: u16,
    },
    /// `max_attempts` consecutive attempts failed (not counting those made while the app
    /// reported the network offline).
    GaveUp {
        /// How many failed in a row, those made while the app reported the network offline
        /// and event streams that delivered events before they ended included (they do not
        /// count against `max_attempts`, so this may be more).
        attempts: u32,
    },
    /// The close policy classified the server's close code or HTTP status as terminal; or,
    /// with neither, the server completed the WebSocket handshake without one of the
    /// subprotocols offered (`TransportFailure::Subprotocol`; the reason names the offer and
    /// the server's choice), or the platform refuses to open the URL from where the client
    /// runs (`TransportFailure::Blocked`, e.g. a browser's mixed content; the reason is the
    /// platform's message).
    Refused {
        /// The WebSocket close code, if any.
        code: Option<u16>,
        /// The HTTP status, if any.
        status: Option<u16>,
        /// The server's reason text, or the failure's own words.
        reason: String,
    },
    /// The credentials were refused even after a fresh token.
    Unauthorized {
        /// The close code, if the refusal was a close.
        code: Option<u16>,
        /// The HTTP status, if the refusal was an HTTP response.
        status: Option<u16>,
    },
}

impl CloseReason {
    /// The close code of a client whose driver stopped running it without a close (1001,
    /// "going away"). Never an app's own: `close` accepts 1000 and 3000-4999.
    const STOPPED_RUNNING: u16 = 1001;

    /// The reason of a client whose driver stopped running it without a close (its task or
    /// runtime ended, or it panicked): what [`Engine::abandon`](crate::Engine::abandon)
    /// reports, and what a driver reports itself when the engine can no longer say.
    pub const fn stopped_running() -> Self {
        CloseReason::App {
            code: Self::STOPPED_RUNNING,
        }
    }

    /// Short machine name: `app`, `gave_up`, `refused`, `unauthorized`.
    pub fn name(&self) -> &'static str {
        match self {
            CloseReason::App { .. } => "app",
            CloseReason::GaveUp { .. } => "gave_up",
            CloseReason::Refused { .. } => "refused",
            CloseReason::Unauthorized { .. } => "unauthorized",
        }
    }

    /// Whether the engine stopped on its own (gave up or was refused), as opposed to the app
    /// closing it. The CLI exits with status 2 for these.
    pub fn is_failure(&self) -> bool {
        !matches!(self, CloseReason::App { .. })
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::App {
                code: Self::STOPPED_RUNNING,
            } => f.write_str("closed: the client stopped running"),
            CloseReason::App { code } => write!(f, "closed by the app with code {code}"),
            CloseReason::GaveUp { attempts: 1 } => f.write_str("gave up after 1 attempt"),
            CloseReason::GaveUp { attempts } => write!(f, "gave up after {attempts} attempts"),
            CloseReason::Refused {
                code,
                status,
                reason,
            } => {
                // "By the server" only when it said so: without a code or status the reason
                // says who refused (a subprotocol the server chose, or the platform).
                f.write_str("refused")?;
                if code.is_some() || status.is_some() {
                    f.write_str(" by the server")?;
                }
                write_code_and_status(f, *code, *status)?;
                if !reason.is_empty() {
                    write!(f, ": {reason}")?;
                }
                Ok(())
            }
            // Said without "token": a client without a token provider ends so too (its one
            // retry, where a provider would be asked for a fresh token, carries the same
            // credentials).
            CloseReason::Unauthorized { code, status } => {
                f.write_str("unauthorized by the server")?;
                write_code_and_status(f, *code, *status)?;
                f.write_str(", on two attempts in a row")
            }
        }
    }
}

/// " with close code C" and/or " with HTTP status S", as a refusal carried them.
fn write_code_and_status(
    f: &mut fmt::Formatter<'_>,
    code: Option<u16>,
    status: Option<u16>,
) -> fmt::Result {
    if let Some(code) = code {
        write!(f, " with close code {code}")?;
    }
    if let Some(status) = status {
        write!(f, " with HTTP status {status}")?;
    }
    Ok(())
}

/// Why a connection ended or an attempt failed; carried by [`Event::ReconnectScheduled`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectCause {
    /// The server (or the network) closed the transport.
    Closed {
        /// Close code, if there was a close frame.
        code: Option<u16>,
        /// Close reason.
        reason: String,
    },
    /// The handshake or the stream failed with an HTTP status. A 2xx here means the server
    /// answered with something other than a WebSocket upgrade or an event stream (e.g. a
    /// `200 text/html` page: a wrong URL, or a captive portal's login page); the default close
    /// policy retries it with the backoff and reports it on every attempt (204, SSE's "do not
    /// reconnect", stops), and `with_status(200..=299, Terminal)` stops on all of them.
    Http {
        /// The status.
        status: u16,
    },
    /// The HTTP proxy on the way answered with this status instead of opening the way to
    /// the server (`TransportFailure::Proxy`): the server was never reached.
    Proxy {
        /// The proxy's status.
        status: u16,
    },
    /// The transport failed (refused, reset, TLS, DNS…).
    Failed {
        /// The driver's description.
        message: String,
    },
    /// No pong (or other sign of life) in time.
    HeartbeatTimeout,
    /// The attempt's token fetch, or its handshake once the request was sent, took longer
    /// than the connect timeout (an event stream's head: see `Config::open_timeout`).
    ConnectTimeout,
    /// The token provider failed.
    TokenUnavailable {
        /// The provider's error.
        message: String,
    },
    /// The engine ended an open event stream to open it again at once, from its position
    /// (`Last-Event-ID`), after a network change or the app's return to the foreground: a
    /// stream cannot send a ping to find out whether its socket survived. Only a stream that
    /// has a position and has been up `min_uptime` is restarted, and after a return to the
    /// foreground only if it was open for at least the heartbeat interval while the app was
    /// away (see `Engine::network_changed`, `Engine::set_foreground`). The
    /// attempt starts at once: its `ReconnectScheduled` has a zero delay. It loses nothing
    /// only from a server that resumes from the position; `ConfigBuilder::restart_streams`
    /// turns it off.
    StreamRestarted,
}

impl DisconnectCause {
    /// A stable machine-readable name: `closed`, `http`, `proxy`, `failed`,
    /// `heartbeat_timeout`, `connect_timeout`, `token_unavailable` or `stream_restarted`.
    pub fn name(&self) -> &'static str {
        match self {
            DisconnectCause::Closed { .. } => "closed",
            DisconnectCause::Http { .. } => "http",
            DisconnectCause::Proxy { .. } => "proxy",
            DisconnectCause::Failed { .. } => "failed",
            DisconnectCause::HeartbeatTimeout => "heartbeat_timeout",
            DisconnectCause::ConnectTimeout => "connect_timeout",
            DisconnectCause::TokenUnavailable { .. } => "token_unavailable",
            DisconnectCause::StreamRestarted => "stream_restarted",
        }
    }
}

impl fmt::Display for DisconnectCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectCause::Closed {
                code: Some(c),
                reason,
            } if !reason.is_empty() => {
                write!(f, "closed with code {c}: {reason}")
            }
            DisconnectCause::Closed { code: Some(c), .. } => write!(f, "closed with code {c}"),
            DisconnectCause::Closed { code: None, .. } => f.write_str("connection lost"),
            DisconnectCause::Http { status } => crate::errors::HttpStatus(*status).fmt(f),
            DisconnectCause::Proxy { status } => crate::errors::ProxyStatus(*status).fmt(f),
            DisconnectCause::Failed { message } => write!(f, "transport failed: {message}"),
            DisconnectCause::HeartbeatTimeout => f.write_str("heartbeat timeout"),
            DisconnectCause::ConnectTimeout => f.write_str("connect timeout"),
            DisconnectCause::TokenUnavailable { message } => {
                write!(f, "token unavailable: {message}")
            }
            DisconnectCause::StreamRestarted => {
                f.write_str("event stream restarted to check its connection")
            }
        }
    }
}

/// Why accepted messages left the outbox without being delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// The outbox was full and these were the oldest.
    Overflow,
    /// Their TTL passed before they could be sent (or re-sent).
    Expired,
    /// The engine closed (app close or terminal state) while they were pending.
    Closed,
    /// The server refused them with an `error` naming their id.
    Rejected {
        /// The server's error code.
        code: String,
    },
}

impl DropReason {
    /// Short machine name: `overflow`, `expired`, `closed`, `rejected`.
    pub fn name(&self) -> &'static str {
        match self {
            DropReason::Overflow => "overflow",
            DropReason::Expired => "expired",
            DropReason::Closed => "closed",
            DropReason::Rejected { .. } => "rejected",
        }
    }
}

/// Why a request got no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestFailure {
    /// No reply within its timeout.
    TimedOut,
    /// The connection dropped after it was sent (with `fail_requests_on_disconnect`).
    ConnectionLost,
    /// The engine closed.
    Closed,
    /// The outbox overflowed and evicted it: still queued, or written and awaiting its reply
    /// (an outbox full of unanswered requests evicts the oldest as the overflow policy says).
    Overflow,
    /// The server answered with an error.
    Rejected {
        /// Error code.
        code: String,
        /// Explanation.
        message: String,
    },
    /// The app gave it up (`Engine::cancel_request`).
    Cancelled,
}

impl RequestFailure {
    /// A stable machine-readable code: `timeout`, `connection_lost`, `closed`,
    /// `outbox_full`, `rejected` (the server's own code is in `Rejected`) or `cancelled`.
    pub fn code(&self) -> &'static str {
        match self {
            RequestFailure::TimedOut => "timeout",
            RequestFailure::ConnectionLost => "connection_lost",
            RequestFailure::Closed => "closed",
            RequestFailure::Overflow => "outbox_full",
            RequestFailure::Rejected { .. } => "rejected",
            RequestFailure::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for RequestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestFailure::TimedOut => f.write_str("no reply in time"),
            RequestFailure::ConnectionLost => f.write_str("the connection dropped"),
            RequestFailure::Closed => f.write_str("the client closed"),
            RequestFailure::Overflow => f.write_str("dropped from a full outbox"),
            RequestFailure::Rejected { code, message } if message.is_empty() => f.write_str(code),
            RequestFailure::Rejected { code, message } => write!(f, "{code}: {message}"),
            RequestFailure::Cancelled => f.write_str("cancelled by the app"),
        }
    }
}

/// The content of a received message.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Payload {
    /// A raw text frame (raw mode) or SSE data.
    Text(String),
    /// A raw binary frame (raw mode).
    Binary(Vec<u8>),
    /// The `payload` of a Tether protocol message.
    Json(Value),
}

impl Payload {
    /// The payload for JSON an app gave as text (a browser's `JSON.stringify`, a mobile app's
    /// string), checked to be JSON either way. In the raw protocol it is the text itself, so a
    /// server gets it as the app wrote it: read into a value and printed again, its keys came
    /// out sorted and its numbers re-printed (a server checking a signature over the body, or
    /// reading `type` first, saw another text). In the Tether protocol it is the parsed value,
    /// which the message's envelope embeds.
    pub fn from_json_text(
        text: String,
        protocol: crate::config::Protocol,
    ) -> Result<Payload, crate::json::JsonError> {
        let value = crate::json::parse(&text)?;
        Ok(match protocol {
            crate::config::Protocol::Raw => Payload::Text(text),
            _ => Payload::Json(value),
        })
    }
}

impl From<Frame> for Payload {
    fn from(frame: Frame) -> Self {
        match frame {
            Frame::Text(t) => Payload::Text(t),
            Frame::Binary(b) => Payload::Binary(b),
        }
    }
}

/// A message delivered to the app.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundMessage {
    /// The channel, in Tether mode when the message came from one.
    pub channel: Option<String>,
    /// The channel offset (Tether mode), or a raw SSE event's id when it is a decimal number
    /// written with digits only and no leading zero (`+5`, `05`, ` 5` or `5.0` are none).
    pub offset: Option<u64>,
    /// The content.
    pub payload: Payload,
    /// A named Server-Sent Event's type (its `event:` field), so that an app listening to
    /// several can tell them apart; `None` for an unnamed (`message`) event and for every
    /// WebSocket message.
    pub event: Option<String>,
    /// An event stream's position once this message is handled: its `id:`, or the last one
    /// the stream sent before it (the one the app resumed from, `ConfigBuilder::last_event_id`,
    /// until the stream sends one). An app that saves it after handling the message resumes
    /// from there after a restart: from a server that honours `Last-Event-ID` and gives every
    /// event an id, it misses nothing and gets nothing twice (messages without an id of their
    /// own after the last id come again). `None` on a WebSocket, and on a stream with no
    /// position (no id yet, or one reset by an empty `id:`).
    pub last_event_id: Option<String>,
}

/// Something went wrong that the app may want to see; the engine has already handled it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// An inbound frame exceeded `max_message_bytes`; it was discarded.
    #[error("inbound frame of {size} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// An inbound frame could not be decoded as a protocol message; it was discarded.
    #[error("undecodable frame: {0}")]
    Decode(#[from] DecodeError),
    /// A frame the protocol does not allow here (e.g. binary in Tether mode, or a channel
    /// message past a gap in its offsets, which the resubscribe's replay brings again in
    /// order); discarded.
    #[error("unexpected frame: {0}")]
    UnexpectedFrame(String),
    /// The server sent an `error` message.
    #[error("server error {code}: {message}")]
    Server {
        /// Error code.
        code: String,
        /// Explanation.
        message: String,
    },
    /// The transport failed; the engine will reconnect per policy.
    #[error("transport error: {0}")]
    Transport(String),
    /// The token provider failed; the attempt was abandoned.
    #[error("token provider failed: {0}")]
    Token(String),
    /// An SSE `id:`, `event:` or `retry:` line was longer than the limit and was ignored;
    /// the stream goes on. For `id`, the resume position stays what it was (an id that long
    /// would be refused by servers when sent back as `Last-Event-ID`).
    #[error("SSE {field} line of {size} bytes exceeds the limit of {max}; it was ignored")]
    SseLineTooLong {
        /// The field name.
        field: &'static str,
        /// The line's length in bytes, against the line limit (the message limit plus a
        /// field name); for an `id` line within that but with a value over
        /// `MAX_EVENT_ID_LEN`, the value's length, against that.
        size: usize,
        /// The limit `size` exceeds.
        max: usize,
    },
}

impl EngineError {
    /// Short machine name for logs and JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            EngineError::FrameTooLarge { .. } => "frame_too_large",
            EngineError::Decode(_) => "decode",
            EngineError::UnexpectedFrame(_) => "unexpected_frame",
            EngineError::Server { .. } => "server",
            EngineError::Transport(_) => "transport",
            EngineError::Token(_) => "token",
            EngineError::SseLineTooLong { .. } => "sse_line_too_long",
        }
    }
}

/// What became of a message whose acknowledgement timeout passed: the status in
/// [`Event::AckTimedOut`]. It is never lost silently: either it has been reported dropped, or
/// an event will report how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unacked {
    /// Its TTL (the timeout) passed before it could be written, or re-sent after a reconnect:
    /// it has left the outbox, reported in the `Event::Dropped` (reason `Expired`) that
    /// follows, and
    /// nothing more will come of it. (If it was written on an earlier connection, the server
    /// may have it.)
    Expired,
    /// It was written on the current connection and the server has not acknowledged it yet:
    /// it stays in the outbox until an `Event::Acked` (the server has it) or `Event::Dropped`
    /// names it. It is not re-sent: if the connection drops first, it expires (`Dropped`,
    /// reason `Expired`). A `Dropped` then does not mean the server lacks it, only that its
    /// ack was never seen: the outcome is unknown, as the ack may have been lost with the
    /// connection after the server stored it. Sending the payload again creates a new
    /// message id, which the server cannot de-duplicate against this one.
    AwaitingAck,
}

impl Unacked {
    /// A stable machine-readable name, the one every SDK reports: `expired`, `awaiting_ack`.
    pub fn name(self) -> &'static str {
        match self {
            Unacked::Expired => "expired",
            Unacked::AwaitingAck => "awaiting_ack",
        }
    }
}

impl std::fmt::Display for Unacked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unacked::Expired => "expired and was dropped",
            Unacked::AwaitingAck => "was written and still awaits its acknowledgement",
        })
    }
}

/// Something that happened, for the app. Drain with `Engine::poll_event`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The lifecycle state changed. Emitted for every transition, with both ends.
    StateChanged {
        /// Previous state.
        from: State,
        /// New state.
        to: State,
    },
    /// A reconnect was scheduled after `cause`: attempt `attempt` starts after `delay`.
    ReconnectScheduled {
        /// The attempt number.
        attempt: u32,
        /// The delay (backoff with jitter, or the server's hint).
        delay: Duration,
        /// What ended the connection or attempt.
        cause: DisconnectCause,
    },
    /// A message arrived (duplicates by offset are already removed).
    Message(InboundMessage),
    /// Accepted messages left the outbox undelivered. Never silent. A drop for the same reason
    /// as a `Dropped` event still waiting in the engine's queue (the last one queued) is added
    /// to it, its ids in order, so a driver that stops taking events while the app keeps
    /// sending into a full outbox holds one growing event, not one event per send. Do not
    /// count on one event per drop, nor on one per run of drops (a driver that takes events
    /// in between gets several).
    Dropped {
        /// Which.
        ids: Vec<MessageId>,
        /// Why.
        reason: DropReason,
    },
    /// The server acknowledged an acked publish.
    Acked {
        /// Which message.
        id: MessageId,
        /// Where it was stored, if on a channel.
        offset: Option<u64>,
    },
    /// An acknowledged message's timeout ([`SendOptions::timeout`](crate::SendOptions))
    /// passed without its ack. Emitted once, never for a message already acknowledged or
    /// dropped; `status` says whether it has left the outbox (a `Dropped` follows at once) or
    /// still awaits its ack (an `Acked` or `Dropped` follows later).
    AckTimedOut {
        /// Which message.
        id: MessageId,
        /// What became of it.
        status: Unacked,
    },
    /// A request got its reply.
    Replied {
        /// Which request.
        id: RequestId,
        /// The reply payload.
        payload: Value,
    },
    /// A request failed.
    RequestFailed {
        /// Which request.
        id: RequestId,
        /// Why.
        reason: RequestFailure,
    },
    /// A subscription became active (on every open, for every channel; and again after the
    /// engine resubscribed a channel whose messages skipped offsets).
    Subscribed {
        /// Channel.
        channel: String,
        /// Where the stream resumes: the messages that follow have greater offsets.
        offset: u64,
        /// Whether the messages missed since the last seen offset were replayed. `false`
        /// after a reconnect, or after a resubscribe for skipped offsets, means there may be
        /// a gap: resync from your own source. A server's `recovered: true` from another
        /// epoch than the one resumed is reported `false` (it recovered nothing of ours). An
        /// event stream (SSE, Tether mode) reports one at the start of every stream whose
        /// server says where it starts (the reference relay does:
        /// [`SSE_POSITION_EVENT`](crate::protocol::SSE_POSITION_EVENT)).
        recovered: bool,
    },
    /// A subscription ended by the server or by `unsubscribe`.
    Unsubscribed {
        /// Channel.
        channel: String,
    },
    /// The presence set of a channel changed. `members` is the whole current set; a snapshot
    /// replaces the previous set entirely, so members that vanished during a disconnect are
    /// listed in `left`.
    Presence {
        /// Channel.
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
        /// The round-trip time.
        rtt: Duration,
    },
    /// A problem the engine handled (bad frame, server error, transport failure).
    Error(EngineError),
    /// A shared document's view changed (see `tether_core::sync`).
    #[cfg(feature = "documents")]
    DocumentChanged {
        /// The document's channel.
        channel: String,
        /// Which opening of the document on `channel` this is about
        /// ([`Document::generation`](crate::sync::Document::generation)): a document closed
        /// and opened again is a new one, and the closed one's events still queued name the
        /// old number.
        generation: u64,
        /// Why: a local change, its confirmation, another client, or a rollback.
        origin: ChangeOrigin,
        /// The keys that changed, with their new values.
        changes: Vec<KeyChange>,
    },
    /// A local document change was rejected by the server (or dropped before it was
    /// accepted) and rolled back; a `DocumentChanged { origin: RolledBack }` shows the effect.
    /// Also a change a broadcast had already confirmed, then refused (`duplicate_id`: that
    /// broadcast was another client's under this `client_id` and id): nothing rolls back, as
    /// the document already shows the broadcast's change, the one the server applied.
    ///
    /// A change dropped after it was written (`closed`, `expired`, `overflow`) may have been
    /// applied all the same, its ack lost: the server's replay on the next sync then brings it
    /// back as `DocumentChanged { origin: Confirmed }` (in a snapshot instead, when the server's
    /// log no longer reaches back, as part of its `Remote` changes).
    #[cfg(feature = "documents")]
    ChangeRejected {
        /// The document's channel.
        channel: String,
        /// Which opening of the document on `channel` this is about (see `DocumentChanged`).
        generation: u64,
        /// The change (the id `change_document` returned).
        change: MessageId,
        /// The server's code (`conflict`, `type_mismatch`, `out_of_range`) or the drop reason.
        code: String,
    },
    /// A document was replaced by a server snapshot (first sync, resync after a gap or a
    /// restart); pending local changes were replayed on top.
    #[cfg(feature = "documents")]
    DocumentResynced {
        /// The document's channel.
        channel: String,
        /// Which opening of the document on `channel` this is about (see `DocumentChanged`).
        generation: u64,
        /// The snapshot's version.
        version: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Protocol;

    #[test]
    fn json_text_is_kept_as_written_in_the_raw_protocol_and_parsed_in_the_tethers() {
        let written = r#"{"type":"order","b":1.50,"a":2}"#;
        assert_eq!(
            Payload::from_json_text(written.to_owned(), Protocol::Raw),
            Ok(Payload::Text(written.to_owned()))
        );
        assert_eq!(
            Payload::from_json_text(written.to_owned(), Protocol::Tether),
            Ok(Payload::Json(
                serde_json::json!({"type": "order", "b": 1.5, "a": 2})
            ))
        );
        for protocol in [Protocol::Raw, Protocol::Tether] {
            assert!(Payload::from_json_text("{\"a\":".to_owned(), protocol).is_err());
        }
    }
}
