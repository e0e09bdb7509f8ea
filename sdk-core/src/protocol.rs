//! The Tether wire protocol (docs/protocol.md): a small, versioned JSON envelope.
//!
//! Every frame is one JSON object `{"v":1,"type":…, …}`. This module owns the envelope and
//! the two typed message sets, [`ClientMessage`] (client → server) and [`ServerMessage`]
//! (server → client), each with `encode` and `decode`, so the engine and the reference relay
//! share one definition and cannot drift apart. Decoding is total: any input gives a message
//! or a [`DecodeError`] that says what was wrong. Unknown fields are ignored so that newer
//! servers can add fields without breaking older clients.
//!
//! The codec is written by hand on `crate::json` (no serde derives: their generic code was
//! the largest part of the engine's wasm). Decoding reads the envelope straight from the
//! parser, field by field; encoding writes a message's fields from borrowed data, in the
//! envelope's field order, without copying the payload.

#[cfg(feature = "documents")]
use crate::json;
use crate::json::{ErrorKind, JsonError, ObjectWriter, Parser};
use serde_json::Value;
#[cfg(feature = "documents")]
use serde_json::{Map, Number};

/// The protocol version this crate speaks, sent as `v` in every envelope.
pub const PROTOCOL_VERSION: u32 = 1;

/// The name of the event with which a Tether server's event stream (SSE) says where it
/// starts: `event: position`, the `id:` to resume from, and as `data:` the
/// [`ServerMessage::Subscribed`] a WebSocket subscribe from the same position would get — so
/// that a client whose stream drops before any message arrives comes back with that id
/// instead of as a new stream, which would miss what was published meanwhile, and learns
/// whether a resume was complete (`recovered`). The engine in Tether mode takes the id and
/// reports the `subscribed` as [`Event::Subscribed`](crate::Event::Subscribed) (an empty data
/// line, from an older server, is only the id; so is one over `max_message_bytes`, which a
/// limit under about 100 bytes plus the channel's name makes it, reported as too large). A
/// browser driver listens for this name:
/// `EventSource` hands a page only the named events it listens for. Clients that do not
/// listen for the name (a plain `EventSource`'s `onmessage`) see nothing, though their own
/// last event id is set.
pub const SSE_POSITION_EVENT: &str = "position";

/// The flat wire form shared by every message type. Fields not used by a type are omitted;
/// they are written in the order declared here. On decoding, `null` reads as absent, unknown
/// fields are ignored, and a field given twice or of the wrong type makes the frame malformed.
///
/// Non-exhaustive: build one from `Envelope::default()` and set its fields, so that code
/// written without the `documents` feature (which adds the document fields) still compiles
/// with it.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Envelope {
    /// Protocol version; a missing `v` is read as 1.
    pub v: Option<u32>,
    /// Message type, e.g. `"publish"`.
    pub kind: String,
    /// Correlation id (publish/ack, request/reply, ping/pong, error).
    pub id: Option<String>,
    /// Channel name.
    pub channel: Option<String>,
    /// Application payload: any JSON value.
    pub payload: Option<Value>,
    /// Sender's wall-clock time in Unix milliseconds (set by servers; clients may omit it).
    /// Decoded as absent when it is not a non-negative integer (a float, say).
    pub ts: Option<u64>,
    /// Position of a message in its channel's history.
    pub offset: Option<u64>,
    /// Resume point on subscribe: the last offset the client has seen.
    pub since: Option<u64>,
    /// The history generation of a channel: offsets are only comparable within one epoch
    /// (a server that lost its history, e.g. by restarting, starts a new epoch).
    pub epoch: Option<String>,
    /// On `subscribed`: whether everything after `since` was replayed.
    pub recovered: Option<bool>,
    /// On `publish`: whether the client wants an `ack`.
    pub ack: Option<bool>,
    /// On `presence`: the full member list, replacing what the client had.
    pub snapshot: Option<Vec<String>>,
    /// On `presence`: a member who joined.
    pub join: Option<String>,
    /// On `presence`: a member who left.
    pub leave: Option<String>,
    /// On `error`: a machine-readable code such as `"too_large"`.
    pub code: Option<String>,
    /// On `error`: a human-readable explanation.
    pub message: Option<String>,
    /// On `hello`: the client's stable identity (presence member name). On a server's
    /// `doc_change`: the author of the change (its `hello.client_id`).
    pub client_id: Option<String>,
    /// On `hello`: the credential, when the token goes in the first message.
    pub token: Option<String>,
    /// On `hello`: this client instance (one engine), the same on each of its connections, so
    /// a server can end the instance's older connections, which the client gave up on.
    pub instance: Option<String>,
    #[cfg(feature = "documents")]
    /// Documents: a document version (`doc_sync`, `doc_snapshot`, `doc_change`).
    pub version: Option<u64>,
    #[cfg(feature = "documents")]
    /// Documents: the version a client's change was made on.
    pub base: Option<u64>,
    #[cfg(feature = "documents")]
    /// Documents: the operations of one change.
    pub ops: Option<Vec<Op>>,
    #[cfg(feature = "documents")]
    /// Documents: a full document state (`doc_snapshot`).
    pub state: Option<Map<String, Value>>,
    #[cfg(feature = "documents")]
    /// Documents: ids of the changes a snapshot already contains (the server's recent log), so
    /// a client can tell which of its unacknowledged changes were applied.
    pub applied: Option<Vec<String>>,
    #[cfg(feature = "documents")]
    /// Documents: the authors (`client_id`s) of the changes in `applied`, index by index, so
    /// a client recognises its own changes by author and id, not by the id alone.
    pub applied_by: Option<Vec<String>>,
    #[cfg(feature = "documents")]
    /// Documents: on `doc_sync`, the ids of the client's changes to the document still
    /// awaiting the server's answer, so that a snapshot answering it can say which of them it
    /// contains (in `applied`) even when they are older than the server's log.
    pub pending: Option<Vec<String>>,
}

#[cfg(feature = "documents")]
/// One operation on a shared document (a JSON map of keys to values). See `tether_core::sync`.
///
/// On the wire an object tagged by `op`: `{"op":"set","key":"k","value":1}`,
/// `{"op":"delete","key":"k"}`, `{"op":"increment","key":"n","by":2}`, `{"op":"insert",…}`.
// `Hash`: a document server keeps a digest of each change's ops to tell a resend from an
// id reused for another change.
#[derive(Debug, Clone, PartialEq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// Sets `key` to `value` (last writer in server order wins).
    Set {
        /// The key.
        key: String,
        /// The new value.
        value: Value,
    },
    /// Removes `key`.
    Delete {
        /// The key.
        key: String,
    },
    /// Adds `by` to the number at `key` (a missing key counts as 0). Increments commute.
    Increment {
        /// The key.
        key: String,
        /// The amount (integer or float).
        by: Number,
    },
    /// Sets `key` to `value` only if it is absent; otherwise the whole change is rejected
    /// with `conflict` (e.g. claiming a seat, creating a unique item).
    Insert {
        /// The key.
        key: String,
        /// The value.
        value: Value,
    },
}

#[cfg(feature = "documents")]
impl Op {
    /// `set key = value`.
    pub fn set(key: &str, value: impl Into<Value>) -> Op {
        Op::Set {
            key: key.to_owned(),
            value: value.into(),
        }
    }

    /// `delete key`.
    pub fn delete(key: &str) -> Op {
        Op::Delete {
            key: key.to_owned(),
        }
    }

    /// `increment key by`.
    pub fn increment(key: &str, by: impl Into<serde_json::Number>) -> Op {
        Op::Increment {
            key: key.to_owned(),
            by: by.into(),
        }
    }

    /// `insert key = value` (only if absent).
    pub fn insert(key: &str, value: impl Into<Value>) -> Op {
        Op::Insert {
            key: key.to_owned(),
            value: value.into(),
        }
    }

    /// The key this operation touches.
    pub fn key(&self) -> &str {
        match self {
            Op::Set { key, .. }
            | Op::Delete { key }
            | Op::Increment { key, .. }
            | Op::Insert { key, .. } => key,
        }
    }
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not a JSON object of the envelope's shape.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The envelope's `v` is newer than this client understands.
    #[error("unsupported protocol version {0} (this client speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion(u32),
    /// A `type` this side does not know.
    #[error("unknown message type {}", crate::errors::Quoted(.0))]
    UnknownType(String),
    /// A field the type requires is absent.
    #[error("`{kind}` message without required field `{field}`")]
    MissingField {
        /// The message type.
        kind: &'static str,
        /// The missing field.
        field: &'static str,
    },
}

/// Messages a client sends.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClientMessage {
    /// First frame after open: identity (and the token with `FirstMessage` placement).
    Hello {
        /// Stable client identity.
        client_id: String,
        /// Credential, if placed in the first message.
        token: Option<String>,
        /// This client instance, the same on each of its connections (see
        /// [`Envelope::instance`]).
        instance: Option<String>,
    },
    /// Join a channel, resuming after offset `since` if given.
    Subscribe {
        /// Channel.
        channel: String,
        /// Last offset seen.
        since: Option<u64>,
        /// The epoch `since` belongs to.
        epoch: Option<String>,
    },
    /// Leave a channel.
    Unsubscribe {
        /// Channel.
        channel: String,
    },
    /// Publish to a channel (or, without a channel, send to the server itself).
    Publish {
        /// Client-chosen unique id; the server deduplicates resends by it.
        id: String,
        /// Channel; `None` sends the payload to the server (the relay echoes it back).
        channel: Option<String>,
        /// Payload.
        payload: Value,
        /// Whether an `ack` is wanted.
        ack: bool,
    },
    /// A request expecting one `reply` with the same id.
    Request {
        /// Correlation id.
        id: String,
        /// Optional channel the request concerns.
        channel: Option<String>,
        /// Payload.
        payload: Value,
    },
    /// Application-level heartbeat.
    Ping {
        /// Correlation id echoed in the pong.
        id: String,
    },
    /// Answer to a server ping.
    Pong {
        /// The server ping's id, if it had one.
        id: Option<String>,
    },
    #[cfg(feature = "documents")]
    /// Start (or resume) syncing a document: replay the changes after `version` of `epoch`, or
    /// send a snapshot when that is not possible (or no version is given).
    DocSync {
        /// The document's channel.
        channel: String,
        /// The last version the client has.
        version: Option<u64>,
        /// The epoch `version` belongs to.
        epoch: Option<String>,
        /// The ids of this client's changes to the document that await the server's answer
        /// (sent, or about to be re-sent, unacknowledged). A snapshot answering this lists in
        /// its `applied` those it contains, however old (on the wire only when not empty).
        pending: Vec<String>,
    },
    #[cfg(feature = "documents")]
    /// Stop syncing a document: the server sends this connection no more of its changes or
    /// snapshots. Not answered (the client drops frames of documents it does not hold
    /// anyway); closing a document not synced is a no-op.
    DocClose {
        /// The document's channel.
        channel: String,
    },
    #[cfg(feature = "documents")]
    /// A change to a document; acknowledged with `ack{id, offset: new version}` or refused with
    /// `error{id, code}` (followed by a `doc_snapshot`).
    DocChange {
        /// Unique change id (resends reuse it; the server applies it at most once).
        id: String,
        /// The document's channel.
        channel: String,
        /// The version the change was made on.
        base: u64,
        /// The operations, applied atomically.
        ops: Vec<Op>,
    },
}

/// Messages a server sends.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ServerMessage {
    /// A subscription is active; `recovered` says whether everything after `since` was replayed.
    Subscribed {
        /// Channel.
        channel: String,
        /// The channel's current last offset.
        offset: u64,
        /// The channel's history epoch.
        epoch: Option<String>,
        /// Whether the gap since the client's `since` was fully replayed.
        recovered: bool,
    },
    /// A subscription ended (reply to unsubscribe, or the server removed the client).
    Unsubscribed {
        /// Channel.
        channel: String,
    },
    /// A message: on a channel (with its offset) or directly to this client.
    Message {
        /// Channel, if any.
        channel: Option<String>,
        /// Offset in the channel's history, if any.
        offset: Option<u64>,
        /// The publisher's message id, if known.
        id: Option<String>,
        /// Payload.
        payload: Value,
        /// Server time in Unix ms.
        ts: Option<u64>,
    },
    /// A publish was accepted.
    Ack {
        /// The publish id.
        id: String,
        /// The offset it was stored at, if on a channel.
        offset: Option<u64>,
    },
    /// The answer to a request.
    Reply {
        /// The request id.
        id: String,
        /// Payload.
        payload: Value,
    },
    /// Presence on a channel: a full snapshot, a join or a leave.
    Presence {
        /// Channel.
        channel: String,
        /// What changed.
        change: PresenceChange,
    },
    /// The server reports a problem, possibly about one of the client's messages.
    Error {
        /// Machine-readable code.
        code: String,
        /// Explanation.
        message: String,
        /// The id of the client message it concerns, if any.
        id: Option<String>,
    },
    /// Server-driven heartbeat; the client answers with a pong.
    Ping {
        /// Correlation id, if any.
        id: Option<String>,
    },
    /// Answer to a client ping.
    Pong {
        /// The client ping's id.
        id: Option<String>,
    },
    #[cfg(feature = "documents")]
    /// A document's full state at `version` (after `doc_sync`, or after a rejected change).
    DocSnapshot {
        /// The document's channel.
        channel: String,
        /// Its version.
        version: u64,
        /// Its epoch (a server that lost its document history starts a new one).
        epoch: Option<String>,
        /// The whole map.
        state: Map<String, Value>,
        /// Ids of recent changes included in `state` (the server's log), then, in the answer
        /// to a `doc_sync` listing `pending` ids, those of the requester's it holds too.
        applied: Vec<String>,
        /// Their authors' `client_id`s, index by index (`None` from a server that does not
        /// send them: the client then recognises its changes by id alone).
        applied_by: Option<Vec<String>>,
    },
    #[cfg(feature = "documents")]
    /// One accepted change, in server order (live, or replayed after `doc_sync`).
    DocChange {
        /// The document's channel.
        channel: String,
        /// The version this change produced.
        version: u64,
        /// The change id, unique only within its author.
        id: String,
        /// The author's `client_id` (`None` from a server that does not send it: the client
        /// then recognises its own changes by `id` alone). Ids are unique only within their
        /// author, so a client takes a change as its own only if both match.
        client_id: Option<String>,
        /// The operations.
        ops: Vec<Op>,
    },
}

/// One presence update.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PresenceChange {
    /// The complete member list; replaces whatever the client held.
    Snapshot(Vec<String>),
    /// One member arrived.
    Join(String),
    /// One member left.
    Leave(String),
}

impl Envelope {
    /// Parses one frame's text into an envelope, checking the version.
    pub fn decode(text: &str) -> Result<Envelope, DecodeError> {
        let env = Envelope::parse(text).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        match env.v {
            Some(v) if v > PROTOCOL_VERSION => Err(DecodeError::UnsupportedVersion(v)),
            _ => Ok(env),
        }
    }

    fn parse(text: &str) -> Result<Envelope, JsonError> {
        let mut p = Parser::new(text);
        let mut env = Envelope::default();
        let mut seen = 0u32;
        p.object(&mut |p, key| {
            let Some(&(name, field)) = FIELDS.iter().find(|(name, _)| *name == key) else {
                p.value()?; // unknown fields are read and ignored
                return Ok(());
            };
            let bit = 1 << field as u32;
            if seen & bit != 0 {
                return Err(p.error(ErrorKind::DuplicateField(name)));
            }
            seen |= bit;
            #[cfg(feature = "documents")]
            if let Field::Ops = field {
                env.ops = ops(p)?;
                return Ok(());
            }
            let at = p.mark();
            let value = p.value()?;
            env.set(field, value)
                .map_err(|expected| p.error_at(at, invalid(name, expected)))
        })?;
        p.finish()?;
        Ok(env)
    }

    /// Stores a decoded field; `null` means absent (except for `type`, which must be a
    /// string). The error names what the field must be.
    fn set(&mut self, field: Field, value: Value) -> Result<(), &'static str> {
        if value.is_null() {
            return match field {
                Field::Type => Err("a string"),
                _ => Ok(()),
            };
        }
        match field {
            Field::V => self.v = Some(version(value)?),
            Field::Type => self.kind = string(value)?,
            Field::Id => self.id = Some(string(value)?),
            Field::Channel => self.channel = Some(string(value)?),
            Field::Payload => self.payload = Some(value),
            // Unused by the engine, and "a number" to other servers (a float, say): of
            // another form it is read as absent rather than losing the message it stamps.
            Field::Ts => self.ts = uint(value).ok(),
            Field::Offset => self.offset = Some(uint(value)?),
            Field::Since => self.since = Some(uint(value)?),
            Field::Epoch => self.epoch = Some(string(value)?),
            Field::Recovered => self.recovered = Some(boolean(value)?),
            Field::Ack => self.ack = Some(boolean(value)?),
            Field::Snapshot => self.snapshot = Some(strings(value)?),
            Field::Join => self.join = Some(string(value)?),
            Field::Leave => self.leave = Some(string(value)?),
            Field::Code => self.code = Some(string(value)?),
            Field::Message => self.message = Some(string(value)?),
            Field::ClientId => self.client_id = Some(string(value)?),
            Field::Token => self.token = Some(string(value)?),
            // Optional and newer than the rest: of another type it is read as absent, as an
            // unknown field would be, so a peer that sends something else there is not cut off.
            Field::Instance => self.instance = string(value).ok(),
            #[cfg(feature = "documents")]
            Field::Version => self.version = Some(uint(value)?),
            #[cfg(feature = "documents")]
            Field::Base => self.base = Some(uint(value)?),
            #[cfg(feature = "documents")]
            Field::Ops => {} // read from the parser by `ops`
            #[cfg(feature = "documents")]
            Field::State => self.state = Some(object(value)?),
            #[cfg(feature = "documents")]
            Field::Applied => self.applied = Some(strings(value)?),
            #[cfg(feature = "documents")]
            Field::AppliedBy => self.applied_by = Some(strings(value)?),
            #[cfg(feature = "documents")]
            Field::Pending => self.pending = Some(strings(value)?),
        }
        Ok(())
    }

    /// Serialises the envelope to its JSON text.
    pub fn encode(&self) -> String {
        self.fields().encode()
    }

    fn fields(&self) -> Fields<'_> {
        Fields {
            v: self.v,
            kind: &self.kind,
            id: self.id.as_ref(),
            channel: self.channel.as_ref(),
            payload: self.payload.as_ref(),
            ts: self.ts,
            offset: self.offset,
            since: self.since,
            epoch: self.epoch.as_ref(),
            recovered: self.recovered,
            ack: self.ack,
            snapshot: self.snapshot.as_ref(),
            join: self.join.as_ref(),
            leave: self.leave.as_ref(),
            code: self.code.as_ref(),
            message: self.message.as_ref(),
            client_id: self.client_id.as_ref(),
            token: self.token.as_ref(),
            instance: self.instance.as_ref(),
            #[cfg(feature = "documents")]
            version: self.version,
            #[cfg(feature = "documents")]
            base: self.base,
            #[cfg(feature = "documents")]
            ops: self.ops.as_ref(),
            #[cfg(feature = "documents")]
            state: self.state.as_ref(),
            #[cfg(feature = "documents")]
            applied: self.applied.as_ref(),
            #[cfg(feature = "documents")]
            applied_by: self.applied_by.as_ref(),
            #[cfg(feature = "documents")]
            pending: self.pending.as_ref(),
        }
    }

    fn take_channel(&mut self, kind: &'static str) -> Result<String, DecodeError> {
        required(kind, "channel", self.channel.take())
    }

    fn take_id(&mut self, kind: &'static str) -> Result<String, DecodeError> {
        required(kind, "id", self.id.take())
    }
}

impl ClientMessage {
    /// Decodes a client frame (used by servers, such as the reference relay).
    pub fn decode(text: &str) -> Result<ClientMessage, DecodeError> {
        let mut env = Envelope::decode(text)?;
        let payload = env.payload.take().unwrap_or(Value::Null);
        Ok(match env.kind.as_str() {
            "hello" => ClientMessage::Hello {
                client_id: required("hello", "client_id", env.client_id.take())?,
                token: env.token.take(),
                instance: env.instance.take(),
            },
            "subscribe" => ClientMessage::Subscribe {
                channel: env.take_channel("subscribe")?,
                since: env.since,
                epoch: env.epoch.take(),
            },
            "unsubscribe" => ClientMessage::Unsubscribe {
                channel: env.take_channel("unsubscribe")?,
            },
            "publish" => ClientMessage::Publish {
                id: env.take_id("publish")?,
                channel: env.channel.take(),
                payload,
                ack: env.ack.unwrap_or(false),
            },
            "request" => ClientMessage::Request {
                id: env.take_id("request")?,
                channel: env.channel.take(),
                payload,
            },
            "ping" => ClientMessage::Ping {
                id: env.id.take().unwrap_or_default(),
            },
            "pong" => ClientMessage::Pong { id: env.id.take() },
            #[cfg(feature = "documents")]
            "doc_sync" => ClientMessage::DocSync {
                channel: env.take_channel("doc_sync")?,
                version: env.version,
                epoch: env.epoch.take(),
                pending: env.pending.take().unwrap_or_default(),
            },
            #[cfg(feature = "documents")]
            "doc_close" => ClientMessage::DocClose {
                channel: env.take_channel("doc_close")?,
            },
            #[cfg(feature = "documents")]
            "doc_change" => ClientMessage::DocChange {
                id: env.take_id("doc_change")?,
                channel: env.take_channel("doc_change")?,
                base: env.base.unwrap_or(0),
                ops: required("doc_change", "ops", env.ops.take())?,
            },
            _ => return Err(DecodeError::UnknownType(env.kind)),
        })
    }

    /// Encodes the message as one JSON frame.
    pub fn encode(&self) -> String {
        self.fields().encode()
    }

    /// The envelope form of this message.
    pub fn to_envelope(&self) -> Envelope {
        self.fields().to_envelope()
    }

    /// The message's fields, borrowed.
    fn fields(&self) -> Fields<'_> {
        match self {
            ClientMessage::Hello {
                client_id,
                token,
                instance,
            } => Fields {
                client_id: Some(client_id),
                token: token.as_ref(),
                instance: instance.as_ref(),
                ..Fields::new("hello")
            },
            ClientMessage::Subscribe {
                channel,
                since,
                epoch,
            } => Fields {
                channel: Some(channel),
                since: *since,
                epoch: epoch.as_ref(),
                ..Fields::new("subscribe")
            },
            ClientMessage::Unsubscribe { channel } => Fields {
                channel: Some(channel),
                ..Fields::new("unsubscribe")
            },
            ClientMessage::Publish {
                id,
                channel,
                payload,
                ack,
            } => Fields {
                id: Some(id),
                channel: channel.as_ref(),
                payload: Some(payload),
                ack: ack.then_some(true),
                ..Fields::new("publish")
            },
            ClientMessage::Request {
                id,
                channel,
                payload,
            } => Fields {
                id: Some(id),
                channel: channel.as_ref(),
                payload: Some(payload),
                ..Fields::new("request")
            },
            ClientMessage::Ping { id } => Fields {
                id: Some(id),
                ..Fields::new("ping")
            },
            ClientMessage::Pong { id } => Fields {
                id: id.as_ref(),
                ..Fields::new("pong")
            },
            #[cfg(feature = "documents")]
            ClientMessage::DocSync {
                channel,
                version,
                epoch,
                pending,
            } => Fields {
                channel: Some(channel),
                version: *version,
                epoch: epoch.as_ref(),
                pending: (!pending.is_empty()).then_some(pending),
                ..Fields::new("doc_sync")
            },
            #[cfg(feature = "documents")]
            ClientMessage::DocClose { channel } => Fields {
                channel: Some(channel),
                ..Fields::new("doc_close")
            },
            #[cfg(feature = "documents")]
            ClientMessage::DocChange {
                id,
                channel,
                base,
                ops,
            } => Fields {
                id: Some(id),
                channel: Some(channel),
                base: Some(*base),
                ops: Some(ops),
                ..Fields::new("doc_change")
            },
        }
    }
}

impl ServerMessage {
    /// Decodes a server frame.
    pub fn decode(text: &str) -> Result<ServerMessage, DecodeError> {
        Self::from_envelope(Envelope::decode(text)?)
    }

    /// Interprets an already parsed envelope.
    pub fn from_envelope(mut env: Envelope) -> Result<ServerMessage, DecodeError> {
        let payload = env.payload.take().unwrap_or(Value::Null);
        Ok(match env.kind.as_str() {
            "subscribed" => ServerMessage::Subscribed {
                channel: env.take_channel("subscribed")?,
                offset: env.offset.unwrap_or(0),
                epoch: env.epoch.take(),
                recovered: env.recovered.unwrap_or(false),
            },
            "unsubscribed" => ServerMessage::Unsubscribed {
                channel: env.take_channel("unsubscribed")?,
            },
            "message" => ServerMessage::Message {
                channel: env.channel.take(),
                offset: env.offset,
                id: env.id.take(),
                payload,
                ts: env.ts,
            },
            "ack" => ServerMessage::Ack {
                id: env.take_id("ack")?,
                offset: env.offset,
            },
            "reply" => ServerMessage::Reply {
                id: env.take_id("reply")?,
                payload,
            },
            "presence" => {
                let channel = env.take_channel("presence")?;
                let change = if let Some(members) = env.snapshot.take() {
                    PresenceChange::Snapshot(members)
                } else if let Some(member) = env.join.take() {
                    PresenceChange::Join(member)
                } else if let Some(member) = env.leave.take() {
                    PresenceChange::Leave(member)
                } else {
                    return Err(DecodeError::MissingField {
                        kind: "presence",
                        field: "snapshot|join|leave",
                    });
                };
                ServerMessage::Presence { channel, change }
            }
            "error" => ServerMessage::Error {
                code: env.code.take().unwrap_or_else(|| "unknown".to_owned()),
                message: env.message.take().unwrap_or_default(),
                id: env.id.take(),
            },
            "ping" => ServerMessage::Ping { id: env.id.take() },
            "pong" => ServerMessage::Pong { id: env.id.take() },
            // A snapshot replaces the whole document and a change is applied for good: a
            // missing field must not read as "version 0, empty" and wipe what the client has.
            #[cfg(feature = "documents")]
            "doc_snapshot" => {
                let applied = env.applied.take().unwrap_or_default();
                let applied_by = env.applied_by.take();
                // Authors are matched to ids by position: a list of another length would
                // attribute changes to the wrong client, or to none.
                if applied_by
                    .as_ref()
                    .is_some_and(|by| by.len() != applied.len())
                {
                    return Err(DecodeError::Malformed(
                        "`applied_by` must name one author per `applied` change".into(),
                    ));
                }
                ServerMessage::DocSnapshot {
                    channel: env.take_channel("doc_snapshot")?,
                    version: required("doc_snapshot", "version", env.version)?,
                    epoch: env.epoch.take(),
                    state: required("doc_snapshot", "state", env.state.take())?,
                    applied,
                    applied_by,
                }
            }
            #[cfg(feature = "documents")]
            "doc_change" => ServerMessage::DocChange {
                channel: env.take_channel("doc_change")?,
                version: required("doc_change", "version", env.version)?,
                id: env.take_id("doc_change")?,
                client_id: env.client_id.take(),
                ops: required("doc_change", "ops", env.ops.take())?,
            },
            _ => return Err(DecodeError::UnknownType(env.kind)),
        })
    }

    /// Encodes the message as one JSON frame.
    pub fn encode(&self) -> String {
        self.fields().encode()
    }

    /// The envelope form of this message.
    pub fn to_envelope(&self) -> Envelope {
        self.fields().to_envelope()
    }

    /// The message's fields, borrowed.
    fn fields(&self) -> Fields<'_> {
        match self {
            ServerMessage::Subscribed {
                channel,
                offset,
                epoch,
                recovered,
            } => Fields {
                channel: Some(channel),
                offset: Some(*offset),
                epoch: epoch.as_ref(),
                recovered: Some(*recovered),
                ..Fields::new("subscribed")
            },
            ServerMessage::Unsubscribed { channel } => Fields {
                channel: Some(channel),
                ..Fields::new("unsubscribed")
            },
            ServerMessage::Message {
                channel,
                offset,
                id,
                payload,
                ts,
            } => Fields {
                channel: channel.as_ref(),
                offset: *offset,
                id: id.as_ref(),
                payload: Some(payload),
                ts: *ts,
                ..Fields::new("message")
            },
            ServerMessage::Ack { id, offset } => Fields {
                id: Some(id),
                offset: *offset,
                ..Fields::new("ack")
            },
            ServerMessage::Reply { id, payload } => Fields {
                id: Some(id),
                payload: Some(payload),
                ..Fields::new("reply")
            },
            ServerMessage::Presence { channel, change } => {
                let mut env = Fields {
                    channel: Some(channel),
                    ..Fields::new("presence")
                };
                match change {
                    PresenceChange::Snapshot(m) => env.snapshot = Some(m),
                    PresenceChange::Join(m) => env.join = Some(m),
                    PresenceChange::Leave(m) => env.leave = Some(m),
                }
                env
            }
            ServerMessage::Error { code, message, id } => Fields {
                code: Some(code),
                message: Some(message),
                id: id.as_ref(),
                ..Fields::new("error")
            },
            ServerMessage::Ping { id } => Fields {
                id: id.as_ref(),
                ..Fields::new("ping")
            },
            ServerMessage::Pong { id } => Fields {
                id: id.as_ref(),
                ..Fields::new("pong")
            },
            #[cfg(feature = "documents")]
            ServerMessage::DocSnapshot {
                channel,
                version,
                epoch,
                state,
                applied,
                applied_by,
            } => Fields {
                channel: Some(channel),
                version: Some(*version),
                epoch: epoch.as_ref(),
                state: Some(state),
                applied: Some(applied),
                applied_by: applied_by.as_ref(),
                ..Fields::new("doc_snapshot")
            },
            #[cfg(feature = "documents")]
            ServerMessage::DocChange {
                channel,
                version,
                id,
                client_id,
                ops,
            } => Fields {
                channel: Some(channel),
                version: Some(*version),
                id: Some(id),
                client_id: client_id.as_ref(),
                ops: Some(ops),
                ..Fields::new("doc_change")
            },
        }
    }
}

/// The envelope's fields, for decoding.
#[derive(Debug, Clone, Copy)]
enum Field {
    V,
    Type,
    Id,
    Channel,
    Payload,
    Ts,
    Offset,
    Since,
    Epoch,
    Recovered,
    Ack,
    Snapshot,
    Join,
    Leave,
    Code,
    Message,
    ClientId,
    Token,
    Instance,
    #[cfg(feature = "documents")]
    Version,
    #[cfg(feature = "documents")]
    Base,
    #[cfg(feature = "documents")]
    Ops,
    #[cfg(feature = "documents")]
    State,
    #[cfg(feature = "documents")]
    Applied,
    #[cfg(feature = "documents")]
    AppliedBy,
    #[cfg(feature = "documents")]
    Pending,
}

/// Wire names of the envelope's fields.
const FIELDS: &[(&str, Field)] = &[
    ("v", Field::V),
    ("type", Field::Type),
    ("id", Field::Id),
    ("channel", Field::Channel),
    ("payload", Field::Payload),
    ("ts", Field::Ts),
    ("offset", Field::Offset),
    ("since", Field::Since),
    ("epoch", Field::Epoch),
    ("recovered", Field::Recovered),
    ("ack", Field::Ack),
    ("snapshot", Field::Snapshot),
    ("join", Field::Join),
    ("leave", Field::Leave),
    ("code", Field::Code),
    ("message", Field::Message),
    ("client_id", Field::ClientId),
    ("token", Field::Token),
    ("instance", Field::Instance),
    #[cfg(feature = "documents")]
    ("version", Field::Version),
    #[cfg(feature = "documents")]
    ("base", Field::Base),
    #[cfg(feature = "documents")]
    ("ops", Field::Ops),
    #[cfg(feature = "documents")]
    ("state", Field::State),
    #[cfg(feature = "documents")]
    ("applied", Field::Applied),
    #[cfg(feature = "documents")]
    ("applied_by", Field::AppliedBy),
    #[cfg(feature = "documents")]
    ("pending", Field::Pending),
];

/// An envelope borrowed from a message or an [`Envelope`]: what `encode` writes.
#[derive(Debug, Default)]
struct Fields<'a> {
    v: Option<u32>,
    kind: &'a str,
    id: Option<&'a String>,
    channel: Option<&'a String>,
    payload: Option<&'a Value>,
    ts: Option<u64>,
    offset: Option<u64>,
    since: Option<u64>,
    epoch: Option<&'a String>,
    recovered: Option<bool>,
    ack: Option<bool>,
    snapshot: Option<&'a Vec<String>>,
    join: Option<&'a String>,
    leave: Option<&'a String>,
    code: Option<&'a String>,
    message: Option<&'a String>,
    client_id: Option<&'a String>,
    token: Option<&'a String>,
    instance: Option<&'a String>,
    #[cfg(feature = "documents")]
    version: Option<u64>,
    #[cfg(feature = "documents")]
    base: Option<u64>,
    #[cfg(feature = "documents")]
    ops: Option<&'a Vec<Op>>,
    #[cfg(feature = "documents")]
    state: Option<&'a Map<String, Value>>,
    #[cfg(feature = "documents")]
    applied: Option<&'a Vec<String>>,
    #[cfg(feature = "documents")]
    applied_by: Option<&'a Vec<String>>,
    #[cfg(feature = "documents")]
    pending: Option<&'a Vec<String>>,
}

impl<'a> Fields<'a> {
    fn new(kind: &'a str) -> Self {
        Fields {
            v: Some(PROTOCOL_VERSION),
            kind,
            ..Fields::default()
        }
    }

    /// The JSON text: fields in declaration order, absent ones omitted (but `v` always).
    fn encode(&self) -> String {
        // Most frames fit: one allocation.
        let mut out = String::with_capacity(128);
        let mut w = ObjectWriter::new(&mut out);
        match self.v {
            Some(v) => w.u64("v", u64::from(v)),
            None => w.null("v"),
        }
        w.str("type", self.kind);
        w.opt_str("id", self.id);
        w.opt_str("channel", self.channel);
        if let Some(payload) = self.payload {
            w.value("payload", payload);
        }
        w.opt_u64("ts", self.ts);
        w.opt_u64("offset", self.offset);
        w.opt_u64("since", self.since);
        w.opt_str("epoch", self.epoch);
        w.opt_bool("recovered", self.recovered);
        w.opt_bool("ack", self.ack);
        w.opt_strings("snapshot", self.snapshot);
        w.opt_str("join", self.join);
        w.opt_str("leave", self.leave);
        w.opt_str("code", self.code);
        w.opt_str("message", self.message);
        w.opt_str("client_id", self.client_id);
        w.opt_str("token", self.token);
        w.opt_str("instance", self.instance);
        #[cfg(feature = "documents")]
        {
            w.opt_u64("version", self.version);
            w.opt_u64("base", self.base);
            if let Some(ops) = self.ops {
                json::write_array(w.key("ops"), ops, write_op);
            }
            if let Some(state) = self.state {
                json::write_map(w.key("state"), state);
            }
            w.opt_strings("applied", self.applied);
            w.opt_strings("applied_by", self.applied_by);
            w.opt_strings("pending", self.pending);
        }
        w.finish();
        out
    }

    fn to_envelope(&self) -> Envelope {
        Envelope {
            v: self.v,
            kind: self.kind.to_owned(),
            id: self.id.cloned(),
            channel: self.channel.cloned(),
            payload: self.payload.cloned(),
            ts: self.ts,
            offset: self.offset,
            since: self.since,
            epoch: self.epoch.cloned(),
            recovered: self.recovered,
            ack: self.ack,
            snapshot: self.snapshot.cloned(),
            join: self.join.cloned(),
            leave: self.leave.cloned(),
            code: self.code.cloned(),
            message: self.message.cloned(),
            client_id: self.client_id.cloned(),
            token: self.token.cloned(),
            instance: self.instance.cloned(),
            #[cfg(feature = "documents")]
            version: self.version,
            #[cfg(feature = "documents")]
            base: self.base,
            #[cfg(feature = "documents")]
            ops: self.ops.cloned(),
            #[cfg(feature = "documents")]
            state: self.state.cloned(),
            #[cfg(feature = "documents")]
            applied: self.applied.cloned(),
            #[cfg(feature = "documents")]
            applied_by: self.applied_by.cloned(),
            #[cfg(feature = "documents")]
            pending: self.pending.cloned(),
        }
    }
}

#[cfg(feature = "documents")]
fn write_op(out: &mut String, op: &Op) {
    let mut w = ObjectWriter::new(out);
    let (name, key) = match op {
        Op::Set { key, .. } => ("set", key),
        Op::Delete { key } => ("delete", key),
        Op::Increment { key, .. } => ("increment", key),
        Op::Insert { key, .. } => ("insert", key),
    };
    w.str("op", name);
    w.str("key", key);
    match op {
        Op::Set { value, .. } | Op::Insert { value, .. } => {
            w.value("value", value);
        }
        Op::Increment { by, .. } => {
            json::write_number(w.key("by"), by);
        }
        Op::Delete { .. } => {}
    }
    w.finish();
}

/// A field a message type cannot do without.
fn required<T>(kind: &'static str, field: &'static str, v: Option<T>) -> Result<T, DecodeError> {
    v.ok_or(DecodeError::MissingField { kind, field })
}

// ---- decoding: one envelope field at a time, straight from the parser --------------------

fn version(value: Value) -> Result<u32, &'static str> {
    const EXPECTED: &str = "a protocol version (an unsigned 32-bit integer)";
    let n = uint(value).map_err(|_| EXPECTED)?;
    u32::try_from(n).map_err(|_| EXPECTED)
}

/// `text` as a number written one way only: decimal digits, no sign, no leading zero (but
/// `0` itself). `u64::from_str` also takes `+5` and `05`, which are not the id `5` to a peer
/// that compares ids as text.
pub(crate) fn canonical_u64(text: &str) -> Option<u64> {
    let canonical =
        text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
    if canonical {
        text.parse().ok()
    } else {
        None
    }
}

fn uint(value: Value) -> Result<u64, &'static str> {
    value.as_u64().ok_or("a non-negative integer")
}

fn boolean(value: Value) -> Result<bool, &'static str> {
    value.as_bool().ok_or("a boolean")
}

fn string(value: Value) -> Result<String, &'static str> {
    match value {
        Value::String(s) => Ok(s),
        _ => Err("a string"),
    }
}

fn strings(value: Value) -> Result<Vec<String>, &'static str> {
    const EXPECTED: &str = "an array of strings";
    let Value::Array(items) = value else {
        return Err(EXPECTED);
    };
    items
        .into_iter()
        .map(|v| string(v).map_err(|_| EXPECTED))
        .collect()
}

#[cfg(feature = "documents")]
fn object(value: Value) -> Result<Map<String, Value>, &'static str> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err("an object"),
    }
}

/// A document change's operations from JSON text, an array of them in their wire form
/// (`{"op":"set","key":"k","value":1}`…): the decoder of the `ops` field, for drivers that take
/// changes as JSON (the browser package). `null` or an empty array is no operations.
#[cfg(feature = "documents")]
pub fn parse_ops(text: &str) -> Result<Vec<Op>, JsonError> {
    let mut p = Parser::new(text);
    let parsed = ops(&mut p)?;
    p.finish()?;
    Ok(parsed.unwrap_or_default())
}

#[cfg(feature = "documents")]
/// The `ops` field: `null`, or an array of operations.
fn ops(p: &mut Parser<'_>) -> Result<Option<Vec<Op>>, JsonError> {
    let at = p.mark();
    if p.peek_token() != Some(b'[') {
        return match p.value()? {
            Value::Null => Ok(None),
            _ => Err(p.error_at(
                at,
                ErrorKind::InvalidField {
                    field: "ops",
                    expected: "an array of operations",
                },
            )),
        };
    }
    let mut ops = Vec::new();
    p.array(&mut |p| {
        ops.push(op(p)?);
        Ok(())
    })?;
    Ok(Some(ops))
}

#[cfg(feature = "documents")]
/// One operation: an object tagged by `op`. Fields the operation does not use are ignored
/// (even when given twice, as serde's derived decoder ignored them).
fn op(p: &mut Parser<'_>) -> Result<Op, JsonError> {
    const OP: usize = 0;
    const KEY: usize = 1;
    const VALUE: usize = 2;
    const BY: usize = 3;
    const NAMES: [&str; 4] = ["op", "key", "value", "by"];
    let mut fields: [Option<Value>; 4] = Default::default();
    let mut twice = [false; 4];
    p.object(&mut |p, name| {
        let Some(i) = NAMES.iter().position(|n| *n == name) else {
            p.value()?;
            return Ok(());
        };
        twice[i] |= fields[i].is_some();
        fields[i] = Some(p.value()?);
        Ok(())
    })?;
    let error = |kind| p.error(kind);
    let uses = |used: &[usize]| match used.iter().find(|&&i| twice[i]) {
        Some(&i) => Err(error(ErrorKind::DuplicateField(NAMES[i]))),
        None => Ok(()),
    };
    uses(&[OP])?;
    let [tag, key, value, by] = fields;
    let tag = match tag {
        Some(Value::String(tag)) => tag,
        Some(_) => return Err(error(invalid("op", "a string"))),
        None => return Err(error(ErrorKind::MissingField("op"))),
    };
    let key = match key {
        Some(Value::String(key)) => Ok(key),
        Some(_) => Err(error(invalid("key", "a string"))),
        None => Err(error(ErrorKind::MissingField("key"))),
    };
    let value = value.ok_or_else(|| error(ErrorKind::MissingField("value")));
    Ok(match tag.as_str() {
        "set" | "insert" => {
            uses(&[KEY, VALUE])?;
            let (key, value) = (key?, value?);
            if tag == "set" {
                Op::Set { key, value }
            } else {
                Op::Insert { key, value }
            }
        }
        "delete" => {
            uses(&[KEY])?;
            Op::Delete { key: key? }
        }
        "increment" => {
            uses(&[KEY, BY])?;
            let key = key?;
            match by {
                Some(Value::Number(by)) => Op::Increment { key, by },
                Some(_) => return Err(error(invalid("by", "a number"))),
                None => return Err(error(ErrorKind::MissingField("by"))),
            }
        }
        _ => {
            return Err(error(invalid(
                "op",
                "one of `set`, `delete`, `increment`, `insert`",
            )))
        }
    })
}

fn invalid(field: &'static str, expected: &'static str) -> ErrorKind {
    ErrorKind::InvalidField { field, expected }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_instance_of_another_type_is_read_as_absent_not_refused() {
        let hello = ClientMessage::decode(r#"{"type":"hello","client_id":"c","instance":7}"#);
        assert_eq!(
            hello,
            Ok(ClientMessage::Hello {
                client_id: "c".into(),
                token: None,
                instance: None,
            })
        );
        let publish = r#"{"type":"publish","id":"p","payload":1,"instance":{"x":1}}"#;
        assert!(ClientMessage::decode(publish).is_ok());
    }

    #[test]
    fn client_messages_round_trip() {
        #[cfg_attr(not(feature = "documents"), allow(unused_mut))]
        let mut msgs = vec![
            ClientMessage::Hello {
                client_id: "c1".into(),
                token: Some("t".into()),
                instance: Some("0123456789abcdef".into()),
            },
            ClientMessage::Subscribe {
                channel: "room".into(),
                since: Some(41),
                epoch: Some("e1".into()),
            },
            ClientMessage::Unsubscribe {
                channel: "room".into(),
            },
            ClientMessage::Publish {
                id: "a-1".into(),
                channel: Some("room".into()),
                payload: json!({"text": "hi"}),
                ack: true,
            },
            ClientMessage::Request {
                id: "r-1".into(),
                channel: None,
                payload: json!([1, 2]),
            },
            ClientMessage::Ping { id: "7".into() },
            ClientMessage::Pong { id: None },
        ];
        #[cfg(feature = "documents")]
        msgs.extend([
            ClientMessage::DocSync {
                channel: "todo".into(),
                version: Some(3),
                epoch: Some("e".into()),
                pending: Vec::new(),
            },
            ClientMessage::DocSync {
                channel: "todo".into(),
                version: None,
                epoch: Some("e".into()),
                pending: vec!["c-1".into(), "c-2".into()],
            },
            ClientMessage::DocClose {
                channel: "todo".into(),
            },
            ClientMessage::DocChange {
                id: "c-1".into(),
                channel: "todo".into(),
                base: 3,
                ops: vec![
                    Op::Set {
                        key: "a".into(),
                        value: json!({"done": false}),
                    },
                    Op::Increment {
                        key: "n".into(),
                        by: 2.into(),
                    },
                    Op::Delete { key: "b".into() },
                    Op::Insert {
                        key: "seat-1".into(),
                        value: json!("me"),
                    },
                ],
            },
        ]);
        for m in msgs {
            assert_eq!(ClientMessage::decode(&m.encode()).unwrap(), m);
        }
    }

    // `doc_close` is as small as `unsubscribe`: its channel, required like every document
    // message's (a close of no document in particular must not be read as a close of "").
    #[cfg(feature = "documents")]
    #[test]
    fn doc_close_is_its_channel_and_nothing_else() {
        let close = ClientMessage::DocClose {
            channel: "todo".into(),
        };
        assert_eq!(
            close.encode(),
            r#"{"v":1,"type":"doc_close","channel":"todo"}"#
        );
        assert_eq!(
            ClientMessage::decode(r#"{"type":"doc_close"}"#),
            Err(DecodeError::MissingField {
                kind: "doc_close",
                field: "channel"
            })
        );
    }

    #[test]
    fn server_messages_round_trip() {
        let msgs = vec![
            ServerMessage::Subscribed {
                channel: "room".into(),
                offset: 9,
                epoch: Some("e1".into()),
                recovered: true,
            },
            ServerMessage::Message {
                channel: Some("room".into()),
                offset: Some(10),
                id: Some("a-1".into()),
                payload: json!("hello"),
                ts: Some(1_700_000_000_000),
            },
            ServerMessage::Ack {
                id: "a-1".into(),
                offset: Some(10),
            },
            ServerMessage::Reply {
                id: "r-1".into(),
                payload: json!(null),
            },
            ServerMessage::Presence {
                channel: "room".into(),
                change: PresenceChange::Snapshot(vec!["a".into(), "b".into()]),
            },
            ServerMessage::Presence {
                channel: "room".into(),
                change: PresenceChange::Leave("a".into()),
            },
            ServerMessage::Error {
                code: "too_large".into(),
                message: "frame of 2000000 bytes exceeds 1048576".into(),
                id: None,
            },
            ServerMessage::Pong {
                id: Some("7".into()),
            },
        ];
        for m in msgs {
            assert_eq!(ServerMessage::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn the_wire_form_is_the_documented_one() {
        let m = ClientMessage::Publish {
            id: "x".into(),
            channel: Some("c".into()),
            payload: json!(1),
            ack: true,
        };
        let v: Value = serde_json::from_str(&m.encode()).unwrap();
        assert_eq!(
            v,
            json!({"v":1,"type":"publish","id":"x","channel":"c","payload":1,"ack":true})
        );
    }

    /// A server's document messages name the author of each change (`client_id` on
    /// `doc_change`, `applied_by` beside a snapshot's `applied`), and decode without them
    /// from a server that does not send them.
    #[test]
    #[cfg(feature = "documents")]
    fn document_changes_name_their_author() {
        let change = ServerMessage::DocChange {
            channel: "d".into(),
            version: 2,
            id: "c-1".into(),
            client_id: Some("alice".into()),
            ops: vec![Op::increment("n", 1)],
        };
        let snapshot = ServerMessage::DocSnapshot {
            channel: "d".into(),
            version: 2,
            epoch: Some("e".into()),
            state: Map::new(),
            applied: vec!["c-1".into(), "c-1".into()],
            applied_by: Some(vec!["mallory".into(), "alice".into()]),
        };
        let wire = |m: &ServerMessage| serde_json::from_str::<Value>(&m.encode()).unwrap();
        assert_eq!(
            wire(&change),
            json!({"v":1,"type":"doc_change","channel":"d","client_id":"alice","version":2,
                   "ops":[{"op":"increment","key":"n","by":1}],"id":"c-1"})
        );
        assert_eq!(
            wire(&snapshot),
            json!({"v":1,"type":"doc_snapshot","channel":"d","epoch":"e","version":2,
                   "state":{},"applied":["c-1","c-1"],"applied_by":["mallory","alice"]})
        );
        for m in [change, snapshot] {
            assert_eq!(ServerMessage::decode(&m.encode()).unwrap(), m);
        }
        let older = [
            r#"{"type":"doc_change","channel":"d","version":2,"id":"c-1","ops":[]}"#,
            r#"{"type":"doc_snapshot","channel":"d","version":2,"state":{},"applied":["c-1"]}"#,
        ];
        assert!(matches!(
            ServerMessage::decode(older[0]),
            Ok(ServerMessage::DocChange {
                client_id: None,
                ..
            })
        ));
        assert!(matches!(
            ServerMessage::decode(older[1]),
            Ok(ServerMessage::DocSnapshot {
                applied_by: None,
                ..
            })
        ));
        // Authors go with ids by position: another count is refused, not mis-attributed.
        for by in [r#"["alice"]"#, r#"["alice","bob","carol"]"#, "[]"] {
            let frame = format!(
                r#"{{"type":"doc_snapshot","channel":"d","version":2,"state":{{}},"applied":["c-1","c-2"],"applied_by":{by}}}"#
            );
            assert!(
                matches!(
                    ServerMessage::decode(&frame),
                    Err(DecodeError::Malformed(_))
                ),
                "{by}"
            );
        }
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        assert!(matches!(
            ServerMessage::decode("not json"),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            ServerMessage::decode("[1,2]"),
            Err(DecodeError::Malformed(_))
        ));
        assert_eq!(
            ServerMessage::decode(r#"{"v":2,"type":"message"}"#),
            Err(DecodeError::UnsupportedVersion(2))
        );
        assert_eq!(
            ServerMessage::decode(r#"{"type":"teleport"}"#),
            Err(DecodeError::UnknownType("teleport".into()))
        );
        assert_eq!(
            ServerMessage::decode(r#"{"type":"ack"}"#),
            Err(DecodeError::MissingField {
                kind: "ack",
                field: "id"
            })
        );
        assert!(matches!(
            ServerMessage::decode(r#"{"type":"message","offset":"seven"}"#),
            Err(DecodeError::Malformed(_))
        ));
        // Document messages a client applies for good name everything they change: a snapshot
        // without a version or state, a change without its id or ops, is refused rather than
        // read as "version 0, empty" (which would wipe the client's document).
        #[cfg(feature = "documents")]
        for (text, kind, field) in [
            (
                r#"{"type":"doc_snapshot","channel":"d","state":{}}"#,
                "doc_snapshot",
                "version",
            ),
            (
                r#"{"type":"doc_snapshot","channel":"d","version":3}"#,
                "doc_snapshot",
                "state",
            ),
            (
                r#"{"type":"doc_change","channel":"d","version":3,"ops":[]}"#,
                "doc_change",
                "id",
            ),
            (
                r#"{"type":"doc_change","channel":"d","version":3,"id":"x"}"#,
                "doc_change",
                "ops",
            ),
        ] {
            assert_eq!(
                ServerMessage::decode(text),
                Err(DecodeError::MissingField { kind, field }),
                "{text}"
            );
        }
        // Without shared documents their messages are of an unknown type, and their fields
        // unknown fields (ignored).
        #[cfg(not(feature = "documents"))]
        {
            assert_eq!(
                ServerMessage::decode(
                    r#"{"type":"doc_change","channel":"d","version":3,"id":"x"}"#
                ),
                Err(DecodeError::UnknownType("doc_change".into()))
            );
            assert!(ServerMessage::decode(r#"{"type":"pong","ops":7,"state":[]}"#).is_ok());
        }
        // Unknown fields are ignored (forward compatibility).
        assert!(ServerMessage::decode(r#"{"v":1,"type":"pong","future":true}"#).is_ok());
    }

    #[test]
    #[cfg(feature = "documents")]
    fn parse_ops_reads_the_wire_form_and_names_what_is_wrong() {
        assert_eq!(
            parse_ops(
                r#"[{"op":"set","key":"a","value":[1]},{"op":"increment","key":"n","by":2}]"#
            ),
            Ok(vec![Op::set("a", json!([1])), Op::increment("n", 2)])
        );
        let err = |text: &str| parse_ops(text).unwrap_err().to_string();
        assert_eq!(
            err(r#"[{"op":"set","key":"k"}]"#),
            "missing field `value` at line 1 column 24"
        );
        assert!(err(r#"{"op":"set"}"#).contains("an array of operations"));
        assert!(err(r#"[{"op":"delete","key":"k"}] x"#).contains("trailing"));
    }

    #[test]
    fn malformed_frames_say_what_and_where() {
        let err = |text: &str| match Envelope::decode(text) {
            Err(DecodeError::Malformed(why)) => why,
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(
            err(r#"{"type":"message","offset":"seven"}"#),
            "invalid `offset`: expected a non-negative integer at line 1 column 28"
        );
        assert_eq!(
            err(r#"{"type":null}"#),
            "invalid `type`: expected a string at line 1 column 9"
        );
        assert_eq!(err("{not json"), "expected a string key at line 1 column 2");
        assert_eq!(err("[1,2]"), "expected an object at line 1 column 1");
        #[cfg(feature = "documents")]
        assert_eq!(
            err(r#"{"type":"doc_change","ops":[{"op":"move","key":"k"}]}"#),
            "invalid `op`: expected one of `set`, `delete`, `increment`, `insert` at line 1 \
             column 52"
        );
        #[cfg(feature = "documents")]
        assert_eq!(
            err(r#"{"type":"doc_change","ops":[{"op":"set","key":"k"}]}"#),
            "missing field `value` at line 1 column 51"
        );
        // Every field is refused when given twice, even as `null`.
        for field in [
            "v",
            "id",
            "channel",
            "payload",
            "ts",
            "offset",
            "since",
            "epoch",
            "recovered",
            "ack",
            "snapshot",
            "join",
            "leave",
            "code",
            "message",
            "client_id",
            "token",
            "instance",
            #[cfg(feature = "documents")]
            "version",
            #[cfg(feature = "documents")]
            "base",
            #[cfg(feature = "documents")]
            "ops",
            #[cfg(feature = "documents")]
            "state",
            #[cfg(feature = "documents")]
            "applied",
            #[cfg(feature = "documents")]
            "applied_by",
            #[cfg(feature = "documents")]
            "pending",
        ] {
            let text = format!(r#"{{"type":"pong","{field}":null,"{field}":null}}"#);
            assert!(
                err(&text).starts_with(&format!("duplicate field `{field}`")),
                "{text}"
            );
        }
        assert!(err(r#"{"type":"pong","type":"ping"}"#).starts_with("duplicate field `type`"));
    }
}
