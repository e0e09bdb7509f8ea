//! The Tether wire protocol (docs/protocol.md): a small, versioned JSON envelope.
//!
//! Every frame is one JSON object `{"v":1,"type":…, …}`. This module owns the envelope and
//! the two typed message sets, [`ClientMessage`] (client → server) and [`ServerMessage`]
//! (server → client), each with `encode` and `decode`, so the engine and the reference relay
//! share one definition and cannot drift apart. Decoding is total: any input gives a message
//! or a [`DecodeError`] that says what was wrong. Unknown fields are ignored so that newer
//! servers can add fields without breaking older clients.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this crate speaks, sent as `v` in every envelope.
pub const PROTOCOL_VERSION: u32 = 1;

/// The flat wire form shared by every message type. Fields not used by a type are omitted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Envelope {
    /// Protocol version; a missing `v` is read as 1.
    pub v: Option<u32>,
    /// Message type, e.g. `"publish"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Correlation id (publish/ack, request/reply, ping/pong, error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Channel name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Application payload: any JSON value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// Sender's wall-clock time in Unix milliseconds (set by servers; clients may omit it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ts: Option<u64>,
    /// Position of a message in its channel's history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Resume point on subscribe: the last offset the client has seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// The history generation of a channel: offsets are only comparable within one epoch
    /// (a server that lost its history, e.g. by restarting, starts a new epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// On `subscribed`: whether everything after `since` was replayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// On `publish`: whether the client wants an `ack`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack: Option<bool>,
    /// On `presence`: the full member list, replacing what the client had.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Vec<String>>,
    /// On `presence`: a member who joined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join: Option<String>,
    /// On `presence`: a member who left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leave: Option<String>,
    /// On `error`: a machine-readable code such as `"too_large"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// On `error`: a human-readable explanation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// On `hello`: the client's stable identity (presence member name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// On `hello`: the credential, when the token goes in the first message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Documents: a document version (`doc_sync`, `doc_snapshot`, `doc_change`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Documents: the version a client's change was made on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<u64>,
    /// Documents: the operations of one change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ops: Option<Vec<Op>>,
    /// Documents: a full document state (`doc_snapshot`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<serde_json::Map<String, Value>>,
    /// Documents: ids of the changes a snapshot already contains (the server's recent log), so
    /// a client can tell which of its unacknowledged changes were applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<Vec<String>>,
}

/// One operation on a shared document (a JSON map of keys to values). See `tether_core::sync`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
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
        by: serde_json::Number,
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

impl Op {
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
    #[error("unknown message type {0:?}")]
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
    /// Start (or resume) syncing a document: replay the changes after `version` of `epoch`, or
    /// send a snapshot when that is not possible (or no version is given).
    DocSync {
        /// The document's channel.
        channel: String,
        /// The last version the client has.
        version: Option<u64>,
        /// The epoch `version` belongs to.
        epoch: Option<String>,
    },
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
    /// A document's full state at `version` (after `doc_sync`, or after a rejected change).
    DocSnapshot {
        /// The document's channel.
        channel: String,
        /// Its version.
        version: u64,
        /// Its epoch (a server that lost its document history starts a new one).
        epoch: Option<String>,
        /// The whole map.
        state: serde_json::Map<String, Value>,
        /// Ids of recent changes included in `state`.
        applied: Vec<String>,
    },
    /// One accepted change, in server order (live, or replayed after `doc_sync`).
    DocChange {
        /// The document's channel.
        channel: String,
        /// The version this change produced.
        version: u64,
        /// The change id (a client recognises its own changes by it).
        id: String,
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
    fn new(kind: &str) -> Self {
        Envelope {
            v: Some(PROTOCOL_VERSION),
            kind: kind.to_owned(),
            ..Envelope::default()
        }
    }

    /// Parses one frame's text into an envelope, checking the version.
    pub fn decode(text: &str) -> Result<Envelope, DecodeError> {
        let env: Envelope =
            serde_json::from_str(text).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        match env.v {
            Some(v) if v > PROTOCOL_VERSION => Err(DecodeError::UnsupportedVersion(v)),
            _ => Ok(env),
        }
    }

    /// Serialises the envelope to its JSON text.
    pub fn encode(&self) -> String {
        // Serialising a struct of strings, numbers and `Value`s cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    fn take_channel(&mut self, kind: &'static str) -> Result<String, DecodeError> {
        self.channel.take().ok_or(DecodeError::MissingField {
            kind,
            field: "channel",
        })
    }

    fn take_id(&mut self, kind: &'static str) -> Result<String, DecodeError> {
        self.id
            .take()
            .ok_or(DecodeError::MissingField { kind, field: "id" })
    }
}

impl ClientMessage {
    /// Decodes a client frame (used by servers, such as the reference relay).
    pub fn decode(text: &str) -> Result<ClientMessage, DecodeError> {
        let mut env = Envelope::decode(text)?;
        let payload = env.payload.take().unwrap_or(Value::Null);
        Ok(match env.kind.as_str() {
            "hello" => ClientMessage::Hello {
                client_id: env.client_id.take().ok_or(DecodeError::MissingField {
                    kind: "hello",
                    field: "client_id",
                })?,
                token: env.token.take(),
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
            "doc_sync" => ClientMessage::DocSync {
                channel: env.take_channel("doc_sync")?,
                version: env.version,
                epoch: env.epoch.take(),
            },
            "doc_change" => ClientMessage::DocChange {
                id: env.take_id("doc_change")?,
                channel: env.take_channel("doc_change")?,
                base: env.base.unwrap_or(0),
                ops: env.ops.take().ok_or(DecodeError::MissingField {
                    kind: "doc_change",
                    field: "ops",
                })?,
            },
            _ => return Err(DecodeError::UnknownType(env.kind)),
        })
    }

    /// Encodes the message as one JSON frame.
    pub fn encode(&self) -> String {
        self.to_envelope().encode()
    }

    /// The envelope form of this message.
    pub fn to_envelope(&self) -> Envelope {
        match self {
            ClientMessage::Hello { client_id, token } => Envelope {
                client_id: Some(client_id.clone()),
                token: token.clone(),
                ..Envelope::new("hello")
            },
            ClientMessage::Subscribe {
                channel,
                since,
                epoch,
            } => Envelope {
                channel: Some(channel.clone()),
                since: *since,
                epoch: epoch.clone(),
                ..Envelope::new("subscribe")
            },
            ClientMessage::Unsubscribe { channel } => Envelope {
                channel: Some(channel.clone()),
                ..Envelope::new("unsubscribe")
            },
            ClientMessage::Publish {
                id,
                channel,
                payload,
                ack,
            } => Envelope {
                id: Some(id.clone()),
                channel: channel.clone(),
                payload: Some(payload.clone()),
                ack: ack.then_some(true),
                ..Envelope::new("publish")
            },
            ClientMessage::Request {
                id,
                channel,
                payload,
            } => Envelope {
                id: Some(id.clone()),
                channel: channel.clone(),
                payload: Some(payload.clone()),
                ..Envelope::new("request")
            },
            ClientMessage::Ping { id } => Envelope {
                id: Some(id.clone()),
                ..Envelope::new("ping")
            },
            ClientMessage::Pong { id } => Envelope {
                id: id.clone(),
                ..Envelope::new("pong")
            },
            ClientMessage::DocSync {
                channel,
                version,
                epoch,
            } => Envelope {
                channel: Some(channel.clone()),
                version: *version,
                epoch: epoch.clone(),
                ..Envelope::new("doc_sync")
            },
            ClientMessage::DocChange {
                id,
                channel,
                base,
                ops,
            } => Envelope {
                id: Some(id.clone()),
                channel: Some(channel.clone()),
                base: Some(*base),
                ops: Some(ops.clone()),
                ..Envelope::new("doc_change")
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
            "doc_snapshot" => ServerMessage::DocSnapshot {
                channel: env.take_channel("doc_snapshot")?,
                version: env.version.unwrap_or(0),
                epoch: env.epoch.take(),
                state: env.state.take().unwrap_or_default(),
                applied: env.applied.take().unwrap_or_default(),
            },
            "doc_change" => ServerMessage::DocChange {
                channel: env.take_channel("doc_change")?,
                version: env.version.ok_or(DecodeError::MissingField {
                    kind: "doc_change",
                    field: "version",
                })?,
                id: env.id.take().unwrap_or_default(),
                ops: env.ops.take().unwrap_or_default(),
            },
            _ => return Err(DecodeError::UnknownType(env.kind)),
        })
    }

    /// Encodes the message as one JSON frame, stamped with `ts` if given.
    pub fn encode(&self) -> String {
        self.to_envelope().encode()
    }

    /// The envelope form of this message.
    pub fn to_envelope(&self) -> Envelope {
        match self {
            ServerMessage::Subscribed {
                channel,
                offset,
                epoch,
                recovered,
            } => Envelope {
                channel: Some(channel.clone()),
                offset: Some(*offset),
                epoch: epoch.clone(),
                recovered: Some(*recovered),
                ..Envelope::new("subscribed")
            },
            ServerMessage::Unsubscribed { channel } => Envelope {
                channel: Some(channel.clone()),
                ..Envelope::new("unsubscribed")
            },
            ServerMessage::Message {
                channel,
                offset,
                id,
                payload,
                ts,
            } => Envelope {
                channel: channel.clone(),
                offset: *offset,
                id: id.clone(),
                payload: Some(payload.clone()),
                ts: *ts,
                ..Envelope::new("message")
            },
            ServerMessage::Ack { id, offset } => Envelope {
                id: Some(id.clone()),
                offset: *offset,
                ..Envelope::new("ack")
            },
            ServerMessage::Reply { id, payload } => Envelope {
                id: Some(id.clone()),
                payload: Some(payload.clone()),
                ..Envelope::new("reply")
            },
            ServerMessage::Presence { channel, change } => {
                let mut env = Envelope {
                    channel: Some(channel.clone()),
                    ..Envelope::new("presence")
                };
                match change {
                    PresenceChange::Snapshot(m) => env.snapshot = Some(m.clone()),
                    PresenceChange::Join(m) => env.join = Some(m.clone()),
                    PresenceChange::Leave(m) => env.leave = Some(m.clone()),
                }
                env
            }
            ServerMessage::Error { code, message, id } => Envelope {
                code: Some(code.clone()),
                message: Some(message.clone()),
                id: id.clone(),
                ..Envelope::new("error")
            },
            ServerMessage::Ping { id } => Envelope {
                id: id.clone(),
                ..Envelope::new("ping")
            },
            ServerMessage::Pong { id } => Envelope {
                id: id.clone(),
                ..Envelope::new("pong")
            },
            ServerMessage::DocSnapshot {
                channel,
                version,
                epoch,
                state,
                applied,
            } => Envelope {
                channel: Some(channel.clone()),
                version: Some(*version),
                epoch: epoch.clone(),
                state: Some(state.clone()),
                applied: Some(applied.clone()),
                ..Envelope::new("doc_snapshot")
            },
            ServerMessage::DocChange {
                channel,
                version,
                id,
                ops,
            } => Envelope {
                channel: Some(channel.clone()),
                version: Some(*version),
                id: Some(id.clone()),
                ops: Some(ops.clone()),
                ..Envelope::new("doc_change")
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn client_messages_round_trip() {
        let msgs = vec![
            ClientMessage::Hello {
                client_id: "c1".into(),
                token: Some("t".into()),
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
            ClientMessage::DocSync {
                channel: "todo".into(),
                version: Some(3),
                epoch: Some("e".into()),
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
        ];
        for m in msgs {
            assert_eq!(ClientMessage::decode(&m.encode()).unwrap(), m);
        }
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
        // Unknown fields are ignored (forward compatibility).
        assert!(ServerMessage::decode(r#"{"v":1,"type":"pong","future":true}"#).is_ok());
    }
}
