//! [`ClientError`]: the one error type of the bindings, with only the variants a Kotlin or
//! Swift caller would branch on. The `tether` crate's per-operation errors (`SendError`,
//! `AckError`, `RequestError`, `SubscribeError`, `SyncError`, `CloseError`, `BuildError`) all
//! map into it.

use crate::event::{DropReason, Payload};

/// Why a call failed. Each variant says what the caller can do about it.
///
/// Its text is the Rust `Display` below, exported: Kotlin's `toString()` (what `"$e"`, logs and
/// stack traces print) and Swift's `description` return it. UniFFI 0.32 builds Kotlin's
/// `message` and Python's `str()` from the fields instead (`field=url, reason=…`) and has no way
/// to override that without patching its output; a variant without fields would have an empty
/// one. So every variant has a field: those with no data of their own carry their text as
/// `reason` (`reason=the client is closed`), built by the constructors below.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
#[uniffi::export(Display)]
pub enum ClientError {
    /// A `ClientConfig` setting is invalid; `field` names it. Fix the configuration.
    #[error("invalid config `{field}`: {reason}")]
    InvalidConfig {
        /// The setting, e.g. `backoff.initial`.
        field: String,
        /// What is wrong and what would be accepted.
        reason: String,
    },
    /// An argument is invalid (channel name, JSON text, close code…); `argument` names it.
    #[error("invalid {argument}: {reason}")]
    InvalidArgument {
        /// Which argument.
        argument: String,
        /// What is wrong.
        reason: String,
    },
    /// Channels, acks, requests and presence need `WireProtocol.TETHER`.
    #[error("{reason}")]
    NeedsTetherProtocol {
        /// Always `this needs the Tether protocol (the client is in raw mode)`:
        /// the text Python's `str(e)` and Kotlin's `message` show.
        reason: String,
    },
    /// The outbox is full and its overflow policy is `REJECT_NEW`: retry later.
    #[error("{reason}")]
    OutboxFull {
        /// Always `the outbox is full`: the text Python's `str(e)` and Kotlin's `message` show.
        reason: String,
    },
    /// The message is larger than a limit: `maxMessageBytes`, or the whole outbox
    /// (`outboxMaxBytes`, when that is the smaller); `limit` says which.
    #[error("message of {size} bytes exceeds the limit of {max} bytes ({limit})")]
    TooLarge {
        /// Its size in bytes.
        size: u64,
        /// The limit's value, in bytes.
        max: u64,
        /// The setting whose limit it exceeds.
        limit: SizeLimit,
    },
    /// The client is closed: call `connect()` to start again (after `shutdown()`: create a
    /// new client).
    #[error("{reason}")]
    Closed {
        /// Always `the client is closed`: the text Python's `str(e)` and Kotlin's `message` show.
        reason: String,
    },
    /// The client is draining its outbox before closing and takes no new messages.
    #[error("{reason}")]
    Closing {
        /// Always `the client is closing`: the text Python's `str(e)` and Kotlin's `message` show.
        reason: String,
    },
    /// The URL is an event stream (SSE), which only receives: nothing can be sent on it, and
    /// it carries only the channel its URL names (no subscribe, unsubscribe or document).
    #[error("{reason}")]
    ReceiveOnly {
        /// Always `an event stream (SSE) is receive-only: nothing can be sent on it`:
        /// the text Python's `str(e)` and Kotlin's `message` show.
        reason: String,
    },
    /// An acknowledged message left the outbox without an ack (it may have been delivered if
    /// the reason is not `Rejected`, but the server never confirmed it).
    #[error("dropped before acknowledgement: {reason:?}")]
    Dropped {
        /// Why.
        reason: DropReason,
    },
    /// A request's reply did not arrive within its timeout.
    #[error("{reason}")]
    TimedOut {
        /// Always `timed out`: the text Python's `str(e)` and Kotlin's `message` show.
        reason: String,
    },
    /// An acknowledged send's ack did not arrive within its timeout, which was also the
    /// message's TTL, so it is never sent after this. `status` says what became of it:
    /// `Expired` (it was not written: dropped, with a `Dropped` event, reason `Expired`) or
    /// `AwaitingAck` (written: an `Acked` event means the server has it; a `Dropped` event
    /// only that its ack was never seen, so the outcome is unknown and sending it again
    /// creates a new message id the server cannot de-duplicate against this one).
    #[error("not acknowledged in time: message {message_id} {status:?}")]
    AckTimedOut {
        /// The message's id, which its later `Acked` or `Dropped` event carries.
        message_id: u64,
        /// What became of it.
        status: Unacked,
    },
    /// The connection dropped after the request was sent; its reply is lost. Retry it.
    #[error("{reason}")]
    ConnectionLost {
        /// Always `the connection was lost before the reply`:
        /// the text Python's `str(e)` and Kotlin's `message` show.
        reason: String,
    },
    /// The document was closed (`Document.closeDocument()`, on this handle or another one on
    /// the same channel), so it takes no changes: open it again with `Client.document`.
    #[error("document {channel:?} is closed")]
    DocumentClosed {
        /// The document's channel.
        channel: String,
    },
    /// Refused: the server answered the request with an error, or a document change cannot
    /// apply to the document as this client sees it (`conflict`: `insert` of a key that
    /// exists; `type_mismatch`: `increment` of a non-number; `out_of_range`: an increment past the JSON integers), so it was not sent.
    #[error("refused: {code}: {reason}")]
    Rejected {
        /// The server's error code, or `conflict` / `type_mismatch` / `out_of_range` for a document change.
        code: String,
        /// Its explanation. (Not `message`: that is every exception's own property.)
        reason: String,
    },
}

/// The variants that have no data of their own carry their text as `reason`, built here: UniFFI
/// makes Python's `str(e)` and Kotlin's `message` from an error's fields, so without one they
/// were empty (`f"send failed: {e}"` printed nothing after the colon).
impl ClientError {
    /// `NeedsTetherProtocol`: this needs the Tether protocol (the client is in raw mode).
    pub(crate) fn needs_tether_protocol() -> Self {
        ClientError::NeedsTetherProtocol {
            reason: "this needs the Tether protocol (the client is in raw mode)".to_owned(),
        }
    }

    /// `OutboxFull`: the outbox is full.
    pub(crate) fn outbox_full() -> Self {
        ClientError::OutboxFull {
            reason: "the outbox is full".to_owned(),
        }
    }

    /// `Closed`: the client is closed.
    pub(crate) fn closed() -> Self {
        ClientError::Closed {
            reason: "the client is closed".to_owned(),
        }
    }

    /// `Closing`: the client is closing.
    pub(crate) fn closing() -> Self {
        ClientError::Closing {
            reason: "the client is closing".to_owned(),
        }
    }

    /// `ReceiveOnly`: an event stream (SSE) is receive-only: nothing can be sent on it.
    pub(crate) fn receive_only() -> Self {
        ClientError::ReceiveOnly {
            reason: "an event stream (SSE) is receive-only: nothing can be sent on it".to_owned(),
        }
    }

    /// `TimedOut`: timed out.
    pub(crate) fn timed_out() -> Self {
        ClientError::TimedOut {
            reason: "timed out".to_owned(),
        }
    }

    /// `ConnectionLost`: the connection was lost before the reply.
    pub(crate) fn connection_lost() -> Self {
        ClientError::ConnectionLost {
            reason: "the connection was lost before the reply".to_owned(),
        }
    }
}

/// Which setting refused a message as `ClientError.TooLarge`. Its text is the setting's name
/// as `ClientError.InvalidConfig` gives it: `max_message_bytes` or `outbox.max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SizeLimit {
    /// `ClientConfig.maxMessageBytes`: the largest message the client sends.
    MaxMessageBytes,
    /// `ClientConfig.outboxMaxBytes`: the bytes the outbox holds.
    OutboxMaxBytes,
}

impl std::fmt::Display for SizeLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SizeLimit::MaxMessageBytes => tether::SizeLimit::MaxMessageBytes.field(),
            SizeLimit::OutboxMaxBytes => tether::SizeLimit::OutboxMaxBytes.field(),
        })
    }
}

impl From<tether::SizeLimit> for SizeLimit {
    fn from(limit: tether::SizeLimit) -> Self {
        match limit {
            tether::SizeLimit::OutboxMaxBytes => SizeLimit::OutboxMaxBytes,
            // MaxMessageBytes, and any later limit: the message's own.
            _ => SizeLimit::MaxMessageBytes,
        }
    }
}

/// What became of an acked message whose acknowledgement did not come in time
/// (`ClientError.AckTimedOut`, the `AckTimedOut` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Unacked {
    /// It was never written (or not re-sent after a reconnect) before its TTL, the timeout:
    /// it was dropped (a `Dropped` event, reason `Expired`) and will never be sent.
    Expired,
    /// It was written and awaits the server's answer: an `Acked` event means the server has
    /// it, a `Dropped` event that its ack was never seen (the outcome is unknown).
    AwaitingAck,
}

impl From<tether::Unacked> for Unacked {
    fn from(status: tether::Unacked) -> Self {
        match status {
            tether::Unacked::Expired => Unacked::Expired,
            // AwaitingAck, and any later status: the message is not known to be gone.
            _ => Unacked::AwaitingAck,
        }
    }
}

impl From<tether::SendError> for ClientError {
    fn from(e: tether::SendError) -> Self {
        match e {
            tether::SendError::TooLarge { size, max, limit } => ClientError::TooLarge {
                size: size as u64,
                max: max as u64,
                limit: limit.into(),
            },
            tether::SendError::OutboxFull => ClientError::outbox_full(),
            tether::SendError::Closed => ClientError::closed(),
            tether::SendError::Closing => ClientError::closing(),
            tether::SendError::ReceiveOnly => ClientError::receive_only(),
            tether::SendError::NeedsTetherProtocol(_) => ClientError::needs_tether_protocol(),
            tether::SendError::BinaryInTetherMode => ClientError::InvalidArgument {
                argument: "payload".to_owned(),
                reason: "binary payloads need the raw protocol".to_owned(),
            },
            tether::SendError::InvalidChannel(name) => invalid_channel(name),
            tether::SendError::InvalidOptions(reason) => ClientError::InvalidArgument {
                argument: "options".to_owned(),
                reason: reason.to_owned(),
            },
            other => ClientError::InvalidArgument {
                argument: "message".to_owned(),
                reason: other.to_string(),
            },
        }
    }
}

impl From<tether::SubscribeError> for ClientError {
    fn from(e: tether::SubscribeError) -> Self {
        match e {
            tether::SubscribeError::NeedsTetherProtocol => ClientError::needs_tether_protocol(),
            tether::SubscribeError::InvalidChannel(name) => invalid_channel(name),
            tether::SubscribeError::Closed => ClientError::closed(),
            tether::SubscribeError::ReceiveOnly => ClientError::receive_only(),
            other => ClientError::InvalidArgument {
                argument: "channel".to_owned(),
                reason: other.to_string(),
            },
        }
    }
}

impl From<tether::AckError> for ClientError {
    fn from(e: tether::AckError) -> Self {
        match e {
            tether::AckError::Send(e) => e.into(),
            tether::AckError::Dropped(reason) => ClientError::Dropped {
                reason: reason.into(),
            },
            tether::AckError::TimedOut { id, status } => ClientError::AckTimedOut {
                message_id: id.get(),
                status: status.into(),
            },
            // The client task stopped: for the app that is a closed client.
            _ => ClientError::closed(),
        }
    }
}

impl From<tether::RequestError> for ClientError {
    fn from(e: tether::RequestError) -> Self {
        match e {
            tether::RequestError::Send(e) => e.into(),
            tether::RequestError::Failed(failure) => failure.into(),
            _ => ClientError::closed(),
        }
    }
}

impl From<tether::RequestFailure> for ClientError {
    fn from(failure: tether::RequestFailure) -> Self {
        match failure {
            tether::RequestFailure::TimedOut => ClientError::timed_out(),
            tether::RequestFailure::ConnectionLost => ClientError::connection_lost(),
            tether::RequestFailure::Closed => ClientError::closed(),
            tether::RequestFailure::Overflow => ClientError::Dropped {
                reason: DropReason::Overflow,
            },
            tether::RequestFailure::Rejected { code, message } => ClientError::Rejected {
                code,
                reason: message,
            },
            // Only this library cancels a request, when the call awaiting it was itself
            // cancelled (and its caller is gone): no app ever sees this one.
            tether::RequestFailure::Cancelled => ClientError::closed(),
            _ => ClientError::connection_lost(),
        }
    }
}

impl From<tether::SyncError> for ClientError {
    fn from(e: tether::SyncError) -> Self {
        match e {
            tether::SyncError::NeedsTetherProtocol => ClientError::needs_tether_protocol(),
            tether::SyncError::InvalidChannel(name) => invalid_channel(name),
            tether::SyncError::EmptyChange => ClientError::InvalidArgument {
                argument: "ops".to_owned(),
                reason: "a change needs at least one operation".to_owned(),
            },
            tether::SyncError::TooDeep => ClientError::InvalidArgument {
                argument: "value".to_owned(),
                reason: e.to_string(),
            },
            tether::SyncError::Rejected(rejection) => ClientError::Rejected {
                code: rejection.code.to_owned(),
                reason: rejection.message,
            },
            tether::SyncError::Send(e) => e.into(),
            // A `Document` handle exists only once opened: not open means closed since.
            tether::SyncError::NotOpen(channel) => ClientError::DocumentClosed { channel },
            // Kinds a newer core may add.
            other => ClientError::InvalidArgument {
                argument: "document".to_owned(),
                reason: other.to_string(),
            },
        }
    }
}

impl From<tether::CloseError> for ClientError {
    fn from(e: tether::CloseError) -> Self {
        ClientError::InvalidArgument {
            argument: "code".to_owned(),
            reason: e.to_string(),
        }
    }
}

impl From<tether::BuildError> for ClientError {
    fn from(e: tether::BuildError) -> Self {
        match e {
            tether::BuildError::Config(c) => ClientError::InvalidConfig {
                field: c.field.to_owned(),
                reason: c.reason,
            },
            tether::BuildError::Tls(reason) => ClientError::InvalidConfig {
                field: "ca_pem".to_owned(),
                reason,
            },
            // The text names the variable when the URL came from the environment.
            e @ tether::BuildError::Proxy { .. } => ClientError::InvalidConfig {
                field: "proxy".to_owned(),
                reason: e.to_string(),
            },
            other => ClientError::InvalidConfig {
                field: "runtime".to_owned(),
                reason: other.to_string(),
            },
        }
    }
}

fn invalid_channel(reason: String) -> ClientError {
    ClientError::InvalidArgument {
        argument: "channel".to_owned(),
        reason,
    }
}

/// Parses JSON text given as `argument`.
pub(crate) fn parse_json(
    argument: &str,
    json: &str,
) -> Result<tether::serde_json::Value, ClientError> {
    tether::serde_json::from_str(json).map_err(|e| ClientError::InvalidArgument {
        argument: argument.to_owned(),
        reason: format!("not JSON: {e}"),
    })
}

impl Payload {
    /// The core payload this is for a client speaking `protocol`: JSON text is checked here,
    /// and becomes what the engine says (`tether::Payload::from_json_text`: in the raw
    /// protocol the text as the app wrote it, in the Tether protocol the parsed value).
    pub(crate) fn into_core(
        self,
        protocol: tether::Protocol,
    ) -> Result<tether::Payload, ClientError> {
        Ok(match self {
            Payload::Text { text } => tether::Payload::Text(text),
            Payload::Binary { data } => tether::Payload::Binary(data.0),
            Payload::Json { json } => {
                tether::Payload::from_json_text(json, protocol).map_err(|e| {
                    ClientError::InvalidArgument {
                        argument: "payload".to_owned(),
                        reason: format!("not JSON: {e}"),
                    }
                })?
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_errors_map_to_what_the_caller_acts_on() {
        for (core, limit, text) in [
            (
                tether::SizeLimit::MaxMessageBytes,
                SizeLimit::MaxMessageBytes,
                "message of 10 bytes exceeds the limit of 5 bytes (max_message_bytes)",
            ),
            (
                tether::SizeLimit::OutboxMaxBytes,
                SizeLimit::OutboxMaxBytes,
                "message of 10 bytes exceeds the limit of 5 bytes (outbox.max_bytes)",
            ),
        ] {
            let e = ClientError::from(tether::SendError::TooLarge {
                size: 10,
                max: 5,
                limit: core,
            });
            assert_eq!(
                e,
                ClientError::TooLarge {
                    size: 10,
                    max: 5,
                    limit
                }
            );
            assert_eq!(e.to_string(), text);
        }
        assert_eq!(
            ClientError::from(tether::SendError::Closed),
            ClientError::closed()
        );
        let ClientError::InvalidArgument { argument, .. } =
            ClientError::from(tether::SendError::BinaryInTetherMode)
        else {
            panic!("binary in Tether mode is an invalid argument");
        };
        assert_eq!(argument, "payload");
    }

    #[test]
    fn variants_without_data_carry_their_text_as_reason() {
        // UniFFI builds Python's str(e) and Kotlin's message from the fields: `reason` is what
        // they show, and it is the Display text.
        for (e, text) in [
            (
                ClientError::needs_tether_protocol(),
                "this needs the Tether protocol (the client is in raw mode)",
            ),
            (ClientError::outbox_full(), "the outbox is full"),
            (ClientError::closed(), "the client is closed"),
            (ClientError::closing(), "the client is closing"),
            (
                ClientError::receive_only(),
                "an event stream (SSE) is receive-only: nothing can be sent on it",
            ),
            (ClientError::timed_out(), "timed out"),
            (
                ClientError::connection_lost(),
                "the connection was lost before the reply",
            ),
        ] {
            assert_eq!(e.to_string(), text);
            let (ClientError::NeedsTetherProtocol { reason }
            | ClientError::OutboxFull { reason }
            | ClientError::Closed { reason }
            | ClientError::Closing { reason }
            | ClientError::ReceiveOnly { reason }
            | ClientError::TimedOut { reason }
            | ClientError::ConnectionLost { reason }) = e
            else {
                panic!("{e:?} has data of its own");
            };
            assert_eq!(reason, text);
        }
    }

    #[test]
    fn an_event_stream_refuses_subscribe_as_it_refuses_sends_and_documents() {
        // One condition (the URL is an SSE stream), one error the app can match on, whichever
        // command it tried: not an "invalid channel" argument for a valid channel name.
        for e in [
            ClientError::from(tether::SendError::ReceiveOnly),
            ClientError::from(tether::SubscribeError::ReceiveOnly),
            ClientError::from(tether::SyncError::Send(tether::SendError::ReceiveOnly)),
        ] {
            assert_eq!(e, ClientError::receive_only());
        }
    }

    #[test]
    fn request_failures_and_drops_keep_their_reason() {
        assert_eq!(
            ClientError::from(tether::RequestFailure::Rejected {
                code: "bad".to_owned(),
                message: "no".to_owned(),
            }),
            ClientError::Rejected {
                code: "bad".to_owned(),
                reason: "no".to_owned(),
            }
        );
        assert_eq!(
            ClientError::from(tether::AckError::Dropped(tether::DropReason::Expired)),
            ClientError::Dropped {
                reason: DropReason::Expired
            }
        );
    }

    #[test]
    fn sync_errors_map_to_what_the_caller_acts_on() {
        assert_eq!(
            ClientError::from(tether::SyncError::NeedsTetherProtocol),
            ClientError::needs_tether_protocol()
        );
        assert!(matches!(
            ClientError::from(tether::SyncError::EmptyChange),
            ClientError::InvalidArgument { ref argument, .. } if argument == "ops"
        ));
        assert_eq!(
            ClientError::from(tether::SyncError::Send(tether::SendError::OutboxFull)),
            ClientError::outbox_full()
        );
        assert_eq!(
            ClientError::from(tether::SyncError::NotOpen("todo".to_owned())),
            ClientError::DocumentClosed {
                channel: "todo".to_owned()
            }
        );
        assert!(matches!(
            ClientError::from(tether::SyncError::InvalidChannel(String::new())),
            ClientError::InvalidArgument { ref argument, .. } if argument == "channel"
        ));
    }

    #[test]
    fn json_payloads_are_checked_at_the_edge_and_kept_as_written_in_the_raw_protocol() {
        let json = |text: &str| Payload::Json {
            json: text.to_owned(),
        };
        let written = r#"{"type":"order","b":1.50,"a":2}"#;
        assert_eq!(
            json(written).into_core(tether::Protocol::Tether),
            Ok(tether::Payload::Json(
                tether::serde_json::json!({"type": "order", "b": 1.5, "a": 2})
            ))
        );
        // A raw server gets the app's text: its key order and its numbers as written.
        assert_eq!(
            json(written).into_core(tether::Protocol::Raw),
            Ok(tether::Payload::Text(written.to_owned()))
        );
        for protocol in [tether::Protocol::Raw, tether::Protocol::Tether] {
            assert!(matches!(
                json("{not json").into_core(protocol),
                Err(ClientError::InvalidArgument { ref argument, .. }) if argument == "payload"
            ));
        }
    }
}
