//! [`DocumentEvent`] and the data it carries ([`ChangeOrigin`], [`KeyChange`]), mirrored from
//! `tether::DocumentEvent` and `tether_core::sync` through `From` impls. Values cross the FFI
//! as JSON text, like message payloads (`Payload.Json`): the app parses them with its own JSON
//! library (`org.json`, kotlinx.serialization, `JSONDecoder`, `json.loads`).

use std::collections::HashMap;

/// Something that happened to one shared document, delivered in order to each
/// [`DocumentListener`](crate::DocumentListener).
///
/// `Changed` carries each key's new value, not a delta: applying the events in order to the
/// first `Snapshot` (or to the one after `Lagged`) always ends at the document's current view.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum DocumentEvent {
    /// The whole document as this client sees it. A listener receives it first, and again
    /// right after [`DocumentEvent::Lagged`]; it is not a change.
    Snapshot {
        /// Every key with its value as JSON text.
        values: HashMap<String, String>,
        /// The server's version this client last confirmed (`null` before the first sync).
        version: Option<u64>,
        /// Local changes not yet confirmed by the server.
        pending: u32,
    },
    /// Keys of the view changed: a local change (shown at once), its confirmation, another
    /// client's change, or a rollback.
    Changed {
        /// Why.
        origin: ChangeOrigin,
        /// Which keys, with their new values.
        changes: Vec<KeyChange>,
    },
    /// A local change was rejected by the server (`conflict`, `type_mismatch`) or dropped
    /// before it was accepted (the drop reason, e.g. `closed`), and its effect removed.
    Rejected {
        /// The id the change returned (`set`, `insert`, …, `change`).
        change: u64,
        /// The server's code, or the drop reason.
        code: String,
    },
    /// The document was replaced by a server snapshot (first sync, a gap, a restarted server);
    /// pending local changes were replayed on top. `Changed` events with the moved keys follow.
    Resynced {
        /// The snapshot's version.
        version: u64,
    },
    /// This listener fell `missed` events behind (its callbacks were too slow) and they were
    /// skipped. A `Snapshot` follows, so the listener's view is complete again.
    Lagged {
        /// How many events this listener did not receive.
        missed: u64,
    },
}

/// Why the view of a document changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ChangeOrigin {
    /// A local change, applied at once, not yet acknowledged by the server.
    LocalPending,
    /// The server accepted a local change (the view usually does not move; the keys are
    /// listed so the app can mark them as saved).
    Confirmed,
    /// Another client's change, or a resync from a snapshot.
    Remote,
    /// A local change was rejected (or dropped) and its effect removed.
    RolledBack,
}

/// One key of the view that changed.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct KeyChange {
    /// The key.
    pub key: String,
    /// Its new value as JSON text; `null`/`nil`/`None` if the key was deleted (a JSON `null`
    /// value is the text `"null"`).
    pub value: Option<String>,
    /// Another client's change replaced a value this client had written: it lost the race.
    pub overwrote_local: bool,
}

impl DocumentEvent {
    /// Converts a `tether` document event. `None` for `Lagged`, which the dispatcher handles
    /// itself (it follows it with a snapshot), and for kinds a newer `tether` may add.
    pub(crate) fn from_core(event: tether::DocumentEvent) -> Option<Self> {
        Some(match event {
            tether::DocumentEvent::Changed { origin, changes } => DocumentEvent::Changed {
                origin: origin.into(),
                changes: changes.into_iter().map(Into::into).collect(),
            },
            tether::DocumentEvent::Rejected { change, code } => DocumentEvent::Rejected {
                change: change.get(),
                code,
            },
            tether::DocumentEvent::Resynced { version } => DocumentEvent::Resynced { version },
            _ => return None,
        })
    }

    /// The `Snapshot` of `doc` as it is now.
    pub(crate) fn snapshot_of(doc: &tether::Document) -> Self {
        DocumentEvent::Snapshot {
            values: json_map(doc.snapshot()),
            version: doc.version(),
            pending: saturating_u32(doc.pending()),
        }
    }
}

impl From<tether::ChangeOrigin> for ChangeOrigin {
    fn from(origin: tether::ChangeOrigin) -> Self {
        match origin {
            tether::ChangeOrigin::LocalPending => ChangeOrigin::LocalPending,
            tether::ChangeOrigin::Confirmed => ChangeOrigin::Confirmed,
            tether::ChangeOrigin::RolledBack => ChangeOrigin::RolledBack,
            // `Remote`, and any origin a newer core adds: the view moved for a reason that
            // is not this client's own change.
            _ => ChangeOrigin::Remote,
        }
    }
}

impl From<tether::KeyChange> for KeyChange {
    fn from(change: tether::KeyChange) -> Self {
        KeyChange {
            key: change.key,
            value: change.value.map(|v| v.to_string()),
            overwrote_local: change.overwrote_local,
        }
    }
}

/// A document's keys with their values as JSON text.
pub(crate) fn json_map(
    map: tether::serde_json::Map<String, tether::serde_json::Value>,
) -> HashMap<String, String> {
    map.into_iter().map(|(k, v)| (k, v.to_string())).collect()
}

pub(crate) fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether::serde_json::json;

    #[test]
    fn key_changes_carry_json_text_and_deletion_is_none() {
        let set = KeyChange::from(tether::KeyChange {
            key: "todo".to_owned(),
            value: Some(json!({"done": false})),
            overwrote_local: true,
        });
        assert_eq!(set.value.as_deref(), Some(r#"{"done":false}"#));
        assert!(set.overwrote_local);
        let null = KeyChange::from(tether::KeyChange {
            key: "n".to_owned(),
            value: Some(json!(null)),
            overwrote_local: false,
        });
        assert_eq!(
            null.value.as_deref(),
            Some("null"),
            "JSON null is not deletion"
        );
        let gone = KeyChange::from(tether::KeyChange {
            key: "n".to_owned(),
            value: None,
            overwrote_local: false,
        });
        assert_eq!(gone.value, None);
    }

    #[test]
    fn lagged_is_left_to_the_dispatcher() {
        assert_eq!(
            DocumentEvent::from_core(tether::DocumentEvent::Lagged { missed: 3 }),
            None
        );
        assert_eq!(
            DocumentEvent::from_core(tether::DocumentEvent::Resynced { version: 7 }),
            Some(DocumentEvent::Resynced { version: 7 })
        );
    }
}
