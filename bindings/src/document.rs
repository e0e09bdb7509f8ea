//! [`Document`]: a shared document on a channel, as an object the app holds, and
//! [`DocumentOp`], one operation of an atomic change.
//!
//! Every method takes the client's lock for one engine call and returns: safe on a UI thread.
//! All the document logic (optimistic local changes, rebase, rollback, resync) lives in
//! `tether_core::sync`; this is a mirror of `tether::Document` with values as JSON text.

use std::collections::HashMap;
use std::sync::Arc;

use crate::dispatch::Hub;
use crate::document_event::{json_map, saturating_u32};
use crate::error::{parse_json, ClientError};
use crate::listener::{DocumentListener, ListenerHandle};

/// A shared document (Tether mode): a JSON map that every client edits locally at once and
/// that converges to the server's order for every client, through drops and reconnects.
/// From `Client.document(channel)`.
///
/// Values are JSON text (`"\"milk\""`, `"{\"done\":false}"`, `"3"`). Each change returns its
/// id; an edit the server refuses later arrives as `DocumentEvent.Rejected` with that id.
///
/// `closeDocument()` stops syncing it (in Kotlin `close()` is `AutoCloseable.close`, which
/// only releases this handle: syncing goes on). Once closed, on this handle or another one on
/// the same channel, reads see an empty document (`get` and `version` and `epoch` are `null`,
/// `snapshot` and `confirmed` empty, `pending` 0) and changes fail with
/// `ClientError.DocumentClosed`; `Client.document(channel)` opens it again, for the handles
/// it returns: those of the closed opening stay closed.
#[derive(Debug, uniffi::Object)]
pub struct Document {
    inner: tether::Document,
    hub: Arc<Hub>,
}

impl Document {
    pub(crate) fn new(inner: tether::Document, hub: Arc<Hub>) -> Self {
        Document { inner, hub }
    }
}

/// One operation of an atomic [`Document::change`].
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum DocumentOp {
    /// Sets `key` to the JSON value `json` (per key, the last writer in server order wins).
    Set {
        /// The key.
        key: String,
        /// The value, as JSON text.
        json: String,
    },
    /// Removes `key`.
    Delete {
        /// The key.
        key: String,
    },
    /// Adds `by` to the number at `key` (a missing key counts as 0). Increments from every
    /// client sum exactly.
    Increment {
        /// The key.
        key: String,
        /// The amount.
        by: i64,
    },
    /// Sets `key` only if it is absent; otherwise the whole change is rejected (`conflict`).
    Insert {
        /// The key.
        key: String,
        /// The value, as JSON text.
        json: String,
    },
}

impl TryFrom<DocumentOp> for tether::Op {
    type Error = ClientError;

    fn try_from(op: DocumentOp) -> Result<Self, ClientError> {
        Ok(match op {
            DocumentOp::Set { key, json } => tether::Op::Set {
                key,
                value: parse_json("json", &json)?,
            },
            DocumentOp::Delete { key } => tether::Op::Delete { key },
            DocumentOp::Increment { key, by } => tether::Op::Increment { key, by: by.into() },
            DocumentOp::Insert { key, json } => tether::Op::Insert {
                key,
                value: parse_json("json", &json)?,
            },
        })
    }
}

#[uniffi::export]
impl Document {
    /// The document's channel.
    pub fn channel(&self) -> String {
        self.inner.channel().to_owned()
    }

    /// The value of `key` as JSON text, as this client sees it (its own pending changes
    /// included), or `null` if absent.
    pub fn get(&self, key: String) -> Option<String> {
        self.inner.get(&key).map(|v| v.to_string())
    }

    /// The whole document as this client sees it: each key with its value as JSON text.
    pub fn snapshot(&self) -> HashMap<String, String> {
        json_map(self.inner.snapshot())
    }

    /// The whole document as one JSON object text, e.g. to decode into a data class.
    pub fn snapshot_json(&self) -> String {
        tether::serde_json::Value::Object(self.inner.snapshot()).to_string()
    }

    /// The server's version this client last confirmed (`null` before the first sync).
    pub fn version(&self) -> Option<u64> {
        self.inner.version()
    }

    /// Local changes not yet confirmed by the server.
    pub fn pending(&self) -> u32 {
        saturating_u32(self.inner.pending())
    }

    /// The document as the server last confirmed it, without this client's pending changes:
    /// each key with its value as JSON text.
    pub fn confirmed(&self) -> HashMap<String, String> {
        json_map(self.inner.confirmed())
    }

    /// Which opening of the channel's document this handle is bound to. A document closed and
    /// opened again (`Client.document(channel)`) is a new opening with a greater number, whose
    /// handles this one is not. The client listener's `DocumentChanged`, `ChangeRejected` and
    /// `DocumentResynced` carry the number of the opening they are about: an app that follows
    /// documents through the client listener tells the closed one's late events from the new
    /// one's by it. (A `DocumentListener` needs none of this: it gets the events of its
    /// handle's opening, and ends with it.)
    pub fn generation(&self) -> u64 {
        self.inner.generation()
    }

    /// The epoch of `version()` (`null` before the first sync). A server that lost its
    /// change log (an in-memory relay restarting) starts a new epoch, and versions start over
    /// in it: compare versions only within one epoch.
    pub fn epoch(&self) -> Option<String> {
        self.inner.epoch()
    }

    /// Stops syncing this document: the server is told to send no more of it, it is no
    /// longer re-synced after reconnects, remote changes no longer reach it, and its
    /// listeners get no more events (their threads end). Changes already made stay in the
    /// outbox and are still delivered: their outcome reaches the client's listener as
    /// `Acked` or `Dropped` events, no longer the document's listeners. Every handle on the
    /// same channel is closed; `Client.document(channel)` opens it again (a new opening,
    /// which this handle does not reach). Closing a closed document does nothing, also after
    /// it was opened again.
    ///
    /// Named `closeDocument` because in Kotlin `close()` is `AutoCloseable.close`, which
    /// releases the handle object itself.
    pub fn close_document(&self) {
        self.inner.close();
    }

    /// Sets `key` to the JSON value `json`; shown at once. Returns the change's id.
    pub fn set(&self, key: String, json: String) -> Result<u64, ClientError> {
        self.change(vec![DocumentOp::Set { key, json }])
    }

    /// Deletes `key`; shown at once. Returns the change's id.
    pub fn delete(&self, key: String) -> Result<u64, ClientError> {
        self.change(vec![DocumentOp::Delete { key }])
    }

    /// Adds `by` to the counter at `key` (a missing key counts as 0); shown at once.
    /// Increments from every client sum exactly, also those made offline. Refused with
    /// `Rejected("type_mismatch")` if the key holds something else than a number, and
    /// `Rejected("out_of_range")` if the sum would leave the integers (never rounded).
    pub fn increment(&self, key: String, by: i64) -> Result<u64, ClientError> {
        self.change(vec![DocumentOp::Increment { key, by }])
    }

    /// Sets `key` only if absent (claiming a seat, creating a unique item). Refused at once
    /// with `Rejected("conflict")` if this client already sees the key; if another client got
    /// there first unseen, the server rejects it: a `Rejected` event, and the view rolls back.
    pub fn insert(&self, key: String, json: String) -> Result<u64, ClientError> {
        self.change(vec![DocumentOp::Insert { key, json }])
    }

    /// Applies `ops` atomically (all or nothing), shown at once. Returns the change's id.
    pub fn change(&self, ops: Vec<DocumentOp>) -> Result<u64, ClientError> {
        let ops = ops
            .into_iter()
            .map(tether::Op::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.inner.change(ops)?.get())
    }

    /// Subscribes `listener` to this document's events: it first receives a `Snapshot`, then
    /// every event, on a thread of its own, until the returned handle's `cancel()`,
    /// `closeDocument()` or the client's end (`shutdown()` or release). Releasing the handle
    /// does not stop the listener.
    pub fn add_listener(&self, listener: Arc<dyn DocumentListener>) -> Arc<ListenerHandle> {
        Arc::new(ListenerHandle::new(
            self.hub.attach_document(self.inner.clone(), listener),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether::serde_json::json;

    #[test]
    fn ops_parse_their_json_and_increments_stay_integers() {
        let set = tether::Op::try_from(DocumentOp::Set {
            key: "k".to_owned(),
            json: r#"{"done":true}"#.to_owned(),
        });
        assert_eq!(
            set,
            Ok(tether::Op::Set {
                key: "k".to_owned(),
                value: json!({"done": true}),
            })
        );
        let Ok(tether::Op::Increment { by, .. }) = tether::Op::try_from(DocumentOp::Increment {
            key: "n".to_owned(),
            by: -3,
        }) else {
            panic!("an increment");
        };
        assert_eq!(by.as_i64(), Some(-3));
        let bad = tether::Op::try_from(DocumentOp::Insert {
            key: "k".to_owned(),
            json: "milk".to_owned(),
        });
        assert!(matches!(
            bad,
            Err(ClientError::InvalidArgument { ref argument, .. }) if argument == "json"
        ));
    }
}
