//! Shared documents in the engine: the app's document commands, and what document messages,
//! acks and drops do to them. The document logic itself is in `crate::sync`.

use super::Engine;
use crate::action::Frame;
use crate::config::Protocol;
use crate::errors::SyncError;
use crate::event::{DropReason, Event, MessageId};
use crate::outbox::Awaiting;
use crate::protocol::{ClientMessage, Op};
use crate::sync::{ChangeOrigin, Document, KeyChange, Undelivered, MAX_VALUE_DEPTH};
use crate::time::Instant;
use serde_json::{Map, Value};

impl Engine {
    /// Starts syncing the shared document on `channel` (Tether mode). Synced again on every
    /// open: the server replays the changes after the last known version, or sends a snapshot.
    /// Opening twice is a no-op. Each document opened gets a new
    /// [`generation`](Document::generation), which its events carry: one closed and opened
    /// again is a new document, and the old one's events still queued are told apart by it.
    /// Returns the generation of the document open on `channel` (the existing one's, when
    /// it was open already), for a handle that must follow that opening only.
    pub fn open_document(&mut self, now: Instant, channel: &str) -> Result<u64, SyncError> {
        if self.config.protocol != Protocol::Tether {
            return Err(SyncError::NeedsTetherProtocol);
        }
        // A document syncs by writing to the server, which an event stream cannot carry: it
        // would stay unsynced for ever (and every change be refused as `receive_only`).
        if !self.can_write_frames() {
            return Err(SyncError::Send(crate::SendError::ReceiveOnly));
        }
        crate::validate_channel(channel).map_err(SyncError::InvalidChannel)?;
        let _ = self.observe(now);
        if let Some(doc) = self.documents.get(channel) {
            return Ok(doc.generation());
        }
        self.doc_opens += 1;
        self.documents
            .insert(channel.to_owned(), Document::opened(self.doc_opens));
        if self.state.is_open() {
            self.send_doc_sync(channel);
        }
        Ok(self.doc_opens)
    }

    /// Stops syncing the document on `channel` and forgets it; whether it was open.
    ///
    /// On an open connection the server is told (`doc_close`), so that it stops sending the
    /// document's changes to a client that no longer reads them. What it sent before reading
    /// that is dropped here without a word, as for any document that is not open. A later
    /// connection needs nothing: only open documents are synced when a connection opens.
    ///
    /// Pending changes stay in the outbox and are still delivered: the server applies a
    /// change whether or not its author syncs the document, and the app was promised each
    /// one's outcome. That outcome comes as for any message, `Event::Acked` or `Event::Dropped`
    /// (a refusal: reason `Rejected` with the server's code), but no longer as document
    /// events (`DocumentChanged`, `ChangeRejected`): there is no view left to update.
    ///
    /// A server older than `doc_close` answers it with an `error` (`bad_frame`) that names no
    /// message: reported as one `Event::Error`, it changes nothing else, and that server keeps
    /// sending the document until the connection ends, its frames dropped here as above.
    pub fn close_document(&mut self, channel: &str) -> bool {
        if self.documents.remove(channel).is_none() {
            return false;
        }
        if self.state.is_open() {
            self.send_control(&ClientMessage::DocClose {
                channel: channel.to_owned(),
            });
        }
        true
    }

    /// The document on `channel`, if open.
    pub fn document(&self, channel: &str) -> Option<&Document> {
        self.documents.get(channel)
    }

    /// Changes the document on `channel`: applied to the local view at once
    /// (`DocumentChanged { origin: LocalPending }`), queued, and sent through the acknowledged
    /// path (re-sent after a reconnect until the server acknowledges or rejects it). A change
    /// that cannot apply to the current view, or with a value no frame could carry (nested
    /// deeper than [`MAX_VALUE_DEPTH`]), is refused here and never sent.
    pub fn change_document(
        &mut self,
        now: Instant,
        channel: &str,
        ops: Vec<Op>,
    ) -> Result<MessageId, SyncError> {
        if ops.is_empty() {
            return Err(SyncError::EmptyChange);
        }
        if ops.iter().any(|op| match op {
            Op::Set { value, .. } | Op::Insert { value, .. } => deeper_than(value, MAX_VALUE_DEPTH),
            _ => false,
        }) {
            return Err(SyncError::TooDeep);
        }
        let doc = self
            .documents
            .get(channel)
            .ok_or_else(|| SyncError::NotOpen(channel.to_owned()))?;
        doc.check(&ops)?;
        let wire = self.next_wire_id();
        let frame = Frame::Text(
            ClientMessage::DocChange {
                id: wire.clone(),
                channel: channel.to_owned(),
                base: doc.base(),
                ops: ops.clone(),
            }
            .encode(),
        );
        let id = self.accept(now, frame, Awaiting::Ack(wire.clone()), None, None)?;
        self.remember_doc_change(wire.clone(), channel);
        if let Some(doc) = self.documents.get_mut(channel) {
            let changes = doc.local(id, wire, ops);
            self.emit_doc_changes(channel, ChangeOrigin::LocalPending, changes);
        }
        Ok(id)
    }

    /// Sets `key` (last writer in server order wins).
    pub fn doc_set(
        &mut self,
        now: Instant,
        channel: &str,
        key: &str,
        value: Value,
    ) -> Result<MessageId, SyncError> {
        self.change_document(now, channel, vec![Op::set(key, value)])
    }

    /// Deletes `key`.
    pub fn doc_delete(
        &mut self,
        now: Instant,
        channel: &str,
        key: &str,
    ) -> Result<MessageId, SyncError> {
        self.change_document(now, channel, vec![Op::delete(key)])
    }

    /// Adds `by` to the counter at `key` (increments from many clients sum exactly).
    pub fn doc_increment(
        &mut self,
        now: Instant,
        channel: &str,
        key: &str,
        by: impl Into<serde_json::Number>,
    ) -> Result<MessageId, SyncError> {
        self.change_document(now, channel, vec![Op::increment(key, by)])
    }

    /// Sets `key` only if absent; rejected with `conflict` if another client got there first.
    pub fn doc_insert(
        &mut self,
        now: Instant,
        channel: &str,
        key: &str,
        value: Value,
    ) -> Result<MessageId, SyncError> {
        self.change_document(now, channel, vec![Op::insert(key, value)])
    }

    // ---- inputs ------------------------------------------------------------------------

    /// On every open: each document resumes from its version.
    pub(super) fn send_doc_syncs(&mut self) {
        let channels: Vec<String> = self.documents.keys().cloned().collect();
        for channel in channels {
            if let Some(doc) = self.documents.get_mut(&channel) {
                doc.reconnected();
            }
            self.send_doc_sync(&channel);
        }
    }

    fn send_doc_sync(&mut self, channel: &str) {
        let Some(doc) = self.documents.get(channel) else {
            return;
        };
        let (version, epoch) = doc.sync_from();
        let pending = doc.awaiting_answer();
        self.send_control(&ClientMessage::DocSync {
            channel: channel.to_owned(),
            version,
            epoch,
            pending,
        });
    }

    /// Whether a change by `author` is this client's. Change ids are unique only within their
    /// author, so one of ours is recognised by both; a server that does not name authors
    /// (`None`) leaves the id alone to go by.
    pub(super) fn is_own_change(&self, author: Option<&str>) -> bool {
        author.is_none_or(|a| a == self.client_id)
    }

    /// The ids in a snapshot's `applied` that are this client's changes (all of them when the
    /// server does not name the authors).
    pub(super) fn own_changes(
        &self,
        applied: Vec<String>,
        applied_by: Option<Vec<String>>,
    ) -> Vec<String> {
        let Some(authors) = applied_by else {
            return applied;
        };
        applied
            .into_iter()
            .zip(authors)
            .filter(|(_, author)| self.is_own_change(Some(author)))
            .map(|(id, _)| id)
            .collect()
    }

    /// A snapshot; `ours`: the ids of this client's changes it contains.
    pub(super) fn on_doc_snapshot(
        &mut self,
        channel: String,
        version: u64,
        epoch: Option<String>,
        state: Map<String, Value>,
        ours: Vec<String>,
    ) {
        let Some(doc) = self.documents.get_mut(&channel) else {
            return;
        };
        let generation = doc.generation();
        let reaction = doc.snapshot(version, epoch, state, &ours);
        self.events.push_back(Event::DocumentResynced {
            channel: channel.clone(),
            generation,
            version,
        });
        self.react(&channel, reaction);
    }

    pub(super) fn on_doc_change(
        &mut self,
        channel: String,
        version: u64,
        id: String,
        ours: bool,
        ops: Vec<Op>,
    ) {
        let Some(doc) = self.documents.get_mut(&channel) else {
            return;
        };
        let reaction = doc.remote(version, &id, ours, ops);
        self.react(&channel, reaction);
    }

    /// An ack for `wire`: if it is one of our document changes, the server applied it as
    /// version `offset`, and its document (open now on its channel, whether or not it still
    /// holds the change) learns it.
    pub(super) fn on_doc_ack(&mut self, wire: &str, offset: Option<u64>) {
        let Some(channel) = self.take_doc_change(wire) else {
            return;
        };
        let Some(doc) = self.documents.get_mut(&channel) else {
            return;
        };
        let reaction = doc.acked(wire, offset);
        self.react(&channel, reaction);
    }

    /// Remembers the channel of document change `wire` for its ack. Changes dropped before
    /// they were written are otherwise kept until the connection ends: past twice the outbox's
    /// size, those no longer in the outbox go (a long-lived connection under backpressure
    /// that keeps dropping edits must not grow this for ever).
    fn remember_doc_change(&mut self, wire: String, channel: &str) {
        let bound = 2 * self.config.outbox.max_messages.max(64);
        if self.doc_changes.len() >= bound {
            let outbox = &self.outbox;
            self.doc_changes
                .retain(|(wire, _)| outbox.id_for_wire(wire).is_some());
        }
        self.doc_changes.push((wire, channel.to_owned()));
    }

    /// Forgets document change `wire` (acked, or refused by the server); its channel.
    pub(super) fn take_doc_change(&mut self, wire: &str) -> Option<String> {
        let pos = self.doc_changes.iter().position(|(w, _)| w == wire)?;
        Some(self.doc_changes.swap_remove(pos).1)
    }

    /// Reports what a document message changed, and fetches what it showed was missed.
    fn react(&mut self, channel: &str, reaction: crate::sync::Reaction) {
        for (origin, changes) in reaction.changes {
            self.emit_doc_changes(channel, origin, changes);
        }
        if reaction.resync {
            self.send_doc_sync(channel);
        }
    }

    /// A message left the outbox undelivered: if it was a pending document change, roll it
    /// back and report it. If it was one already taken as applied (a broadcast under our author
    /// and its id confirmed it, or a snapshot listed it), only a refusal by the server is news:
    /// the change taken for ours was another client's under our `client_id` and id (the
    /// confirmed state already holds theirs, as the server does). Dropped here instead
    /// (expired, overflow, closing), it was most likely applied as ours.
    pub(super) fn on_doc_discarded(&mut self, id: MessageId, reason: &DropReason) {
        let Some((channel, generation, undelivered)) = self
            .documents
            .iter_mut()
            .find_map(|(c, d)| Some((c.clone(), d.generation(), d.discard(id)?)))
        else {
            return;
        };
        let code = match reason {
            DropReason::Rejected { code } => code.clone(),
            _ if undelivered == Undelivered::TakenAsApplied => return,
            other => other.name().to_owned(),
        };
        self.events.push_back(Event::ChangeRejected {
            channel: channel.clone(),
            generation,
            change: id,
            code,
        });
        if let Undelivered::RolledBack(changes) = undelivered {
            self.emit_doc_changes(&channel, ChangeOrigin::RolledBack, changes);
        }
    }

    /// Reports `changes` of the document open on `channel`, if any.
    fn emit_doc_changes(&mut self, channel: &str, origin: ChangeOrigin, changes: Vec<KeyChange>) {
        if changes.is_empty() {
            return;
        }
        let Some(generation) = self.documents.get(channel).map(Document::generation) else {
            return;
        };
        self.events.push_back(Event::DocumentChanged {
            channel: channel.to_owned(),
            generation,
            origin,
            changes,
        });
    }
}

/// Whether `value` nests more than `levels` arrays and objects (recursing at most that deep).
fn deeper_than(value: &Value, levels: usize) -> bool {
    match value {
        Value::Array(items) => levels == 0 || items.iter().any(|v| deeper_than(v, levels - 1)),
        Value::Object(map) => levels == 0 || map.values().any(|v| deeper_than(v, levels - 1)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, Engine, Instant, Protocol};
    use serde_json::json;

    #[test]
    fn opening_a_document_says_which_opening_it_is() {
        let config = Config::builder("ws://relay/")
            .protocol(Protocol::Tether)
            .build()
            .unwrap();
        let mut engine = Engine::new(config, 1);
        let first = engine.open_document(Instant::ZERO, "d").unwrap();
        assert_eq!(
            engine.open_document(Instant::ZERO, "d"),
            Ok(first),
            "the same one"
        );
        assert_eq!(engine.document("d").map(|d| d.generation()), Some(first));
        let other = engine.open_document(Instant::ZERO, "e").unwrap();
        assert!(engine.close_document("d"));
        let again = engine.open_document(Instant::ZERO, "d").unwrap();
        assert!(again > first && again != other, "{first} {other} {again}");
    }

    #[test]
    fn changes_dropped_unwritten_are_not_remembered_for_ever() {
        // Never connected: every change waits in an outbox of 4, the oldest dropped by each
        // new one. Their channels were kept for acks that cannot come, without bound.
        let config = Config::builder("ws://relay/")
            .protocol(Protocol::Tether)
            .outbox_max_messages(4)
            .build()
            .unwrap();
        let mut engine = Engine::new(config, 1);
        engine.open_document(Instant::ZERO, "d").unwrap();
        for n in 0..1_000 {
            engine.doc_set(Instant::ZERO, "d", "k", json!(n)).unwrap();
        }
        assert_eq!(engine.outbox_len(), 4);
        assert!(
            engine.doc_changes.len() <= 128,
            "{}",
            engine.doc_changes.len()
        );
        // The ones still in the outbox are all remembered.
        let outbox = &engine.outbox;
        let kept = engine
            .doc_changes
            .iter()
            .filter(|(wire, _)| outbox.id_for_wire(wire).is_some())
            .count();
        assert_eq!(kept, 4);
    }
}
