//! Shared documents (docs/protocol.md, "Documents"): per channel one
//! `tether_core::sync::DocumentServer` — the same ordering rules the clients are tested
//! against — and the connections syncing it. A change is acknowledged to its author and
//! broadcast to everyone else syncing the document; a rejected change gets the author an
//! `error` naming it and a fresh snapshot. Changes are deduplicated by the author's
//! `client_id` and the change id (with a digest of the ops), like publishes: see
//! [`Author`]. Every change goes out naming that author (`doc_change.client_id`, a
//! snapshot's `applied_by`), so a client takes a change for its own only when both the
//! author and the id are its own.
//!
//! Documents live in memory like everything else here: a restarted relay starts every
//! document empty in a new epoch, and clients resync from a snapshot.
//!
//! Limits (see [`RelayConfig`]): at most `max_documents` documents; a document nobody syncs
//! that was never changed is dropped (recreating it later is indistinguishable); a change
//! that would take the state past `max_document_bytes`, or its snapshot or broadcast past
//! `max_message_size`, is refused with `too_large`. The relay keeps the change log itself as
//! encoded `doc_change` frames and caches the snapshot frame of the current version, so
//! replays and snapshots share one buffer instead of re-encoding under the lock, and a
//! connection has at most one snapshot of a document queued at a time.

use crate::config::RelayConfig;
use crate::hub::frame;
use crate::peer::{Outbound, Peer, PeerId, Ticket};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tether_core::protocol::{Op, ServerMessage};
use tether_core::sync::{apply_change, ChangeOutcome, DocumentServer, Rejection};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::session::code::{DUPLICATE_ID, TOO_LARGE, TOO_MANY_DOCUMENTS};

/// The snapshots of documents a connection has queued and not yet sent, by document; kept
/// by its session, so it lives and dies with the connection.
pub(crate) type QueuedSnapshots = HashMap<String, Ticket>;

/// One accepted change still in the log.
#[derive(Debug)]
struct Logged {
    version: u64,
    id: String,
    /// Its author's `client_id`.
    client_id: String,
    /// Its `doc_change` frame, shared by the broadcast and every replay.
    frame: Utf8Bytes,
}

#[derive(Debug)]
struct Doc {
    /// Orders, applies and deduplicates. Its own change log is emptied after every change:
    /// `log` below holds the same changes, encoded once.
    server: DocumentServer,
    syncers: HashMap<PeerId, Peer>,
    log: VecDeque<Logged>,
    /// Upper bound of the state's JSON length, kept up to date change by change.
    state_bytes: usize,
    /// Upper bound of the JSON length of the ids and authors in `log` (a snapshot's
    /// `applied` and `applied_by`).
    applied_bytes: usize,
    /// The `doc_snapshot` frame of the current version, once someone asked for it.
    snapshot: Option<Utf8Bytes>,
}

impl Doc {
    fn new(epoch: &str, log_capacity: usize) -> Doc {
        Doc {
            server: DocumentServer::new(epoch, log_capacity),
            syncers: HashMap::new(),
            log: VecDeque::new(),
            state_bytes: EMPTY_MAP_BYTES,
            applied_bytes: 0,
            snapshot: None,
        }
    }

    /// Nobody syncs it and it was never changed: dropping it loses nothing.
    fn is_idle(&self) -> bool {
        self.syncers.is_empty() && self.server.version() == 0
    }

    /// The frames a client at `version` of `epoch` is missing, if the log still has them
    /// all; `None` means it needs a snapshot. The rule is `DocumentServer::replay_after`,
    /// the one `DocumentServer::sync` follows, applied to this log.
    fn missing(&self, version: Option<u64>, epoch: Option<&str>) -> Option<Vec<Utf8Bytes>> {
        let oldest_logged = self.log.front().map(|c| c.version);
        let after = self.server.replay_after(version, epoch, oldest_logged)?;
        Some(
            self.log
                .iter()
                .filter(|c| c.version > after)
                .map(|c| c.frame.clone())
                .collect(),
        )
    }

    /// The snapshot frame of the current version for `member`, whose `doc_sync` listed
    /// `pending` (the changes it awaits an answer for): the shared one, unless the state holds
    /// some of those that the log no longer lists. Then a frame of its own lists them too,
    /// after the log's (the client would otherwise replay them on top, counting them twice
    /// until their acks came), if it fits in a message; else the shared one.
    fn snapshot_for(
        &mut self,
        channel: &str,
        member: &str,
        pending: &[String],
        max_message_size: usize,
    ) -> Utf8Bytes {
        let log = &self.log;
        let in_log = |id: &str| log.iter().any(|c| c.id == id && c.client_id == member);
        let unlisted = self.server.pending_applied(member, pending, in_log);
        if unlisted.is_empty() {
            return self.snapshot(channel);
        }
        let (mut applied, mut applied_by): (Vec<String>, Vec<String>) = log
            .iter()
            .map(|c| (c.id.clone(), c.client_id.clone()))
            .unzip();
        applied.extend(unlisted.iter().map(|id| (*id).to_owned()));
        applied_by.extend(unlisted.iter().map(|_| member.to_owned()));
        let own = frame(&ServerMessage::DocSnapshot {
            channel: channel.to_owned(),
            version: self.server.version(),
            epoch: Some(self.server.epoch().to_owned()),
            state: self.server.state().clone(),
            applied,
            applied_by: Some(applied_by),
        });
        if own.len() <= max_message_size {
            own
        } else {
            self.snapshot(channel)
        }
    }

    /// The snapshot frame of the current version, encoded once per version.
    fn snapshot(&mut self, channel: &str) -> Utf8Bytes {
        let server = &self.server;
        let log = &self.log;
        self.snapshot
            .get_or_insert_with(|| {
                frame(&ServerMessage::DocSnapshot {
                    channel: channel.to_owned(),
                    version: server.version(),
                    epoch: Some(server.epoch().to_owned()),
                    state: server.state().clone(),
                    applied: log.iter().map(|c| c.id.clone()).collect(),
                    applied_by: Some(log.iter().map(|c| c.client_id.clone()).collect()),
                })
            })
            .clone()
    }

    /// Queues the current snapshot on `peer` unless one of this document is still queued
    /// there (then that one, and what follows it, is what the peer will get).
    fn push_snapshot(&mut self, peer: &Peer, channel: &str, queued: &mut QueuedSnapshots) {
        if queued.get(channel).is_some_and(|t| peer.is_queued(*t)) {
            return;
        }
        let snapshot = self.snapshot(channel);
        self.push_snapshot_frame(peer, channel, queued, snapshot);
    }

    fn push_snapshot_frame(
        &mut self,
        peer: &Peer,
        channel: &str,
        queued: &mut QueuedSnapshots,
        snapshot: Utf8Bytes,
    ) {
        match peer.push_tracked(Outbound::Frame(snapshot)) {
            Some(ticket) => queued.insert(channel.to_owned(), ticket),
            None => queued.remove(channel),
        };
    }
}

/// A `doc_sync`: from whom (`hello.client_id`, under which the changes it awaits are
/// remembered), from which version of which epoch, and the ids of the changes it awaits an
/// answer for (`pending`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SyncRequest<'a> {
    pub(crate) member: &'a str,
    pub(crate) version: Option<u64>,
    pub(crate) epoch: Option<&'a str>,
    pub(crate) pending: &'a [String],
}

/// Who sent a `doc_change`: the connection, and the client (`hello.client_id`) whose change
/// ids are remembered, as for publishes, since ids are unique only within a client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Author<'a> {
    pub(crate) peer: &'a Peer,
    pub(crate) member: &'a str,
}

#[derive(Debug)]
pub(crate) struct Docs {
    epoch: Arc<str>,
    log_capacity: usize,
    max_documents: usize,
    max_document_bytes: usize,
    max_message_size: usize,
    docs: Mutex<HashMap<String, Doc>>,
}

impl Docs {
    pub(crate) fn new(epoch: Arc<str>, config: &RelayConfig) -> Self {
        Docs {
            epoch,
            log_capacity: config.document_log_capacity,
            max_documents: config.max_documents,
            max_document_bytes: config.max_document_bytes,
            max_message_size: config.max_message_size,
            docs: Mutex::new(HashMap::new()),
        }
    }

    fn docs(&self) -> MutexGuard<'_, HashMap<String, Doc>> {
        self.docs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The document `channel`, created if there is room for one more.
    fn doc<'d>(&self, docs: &'d mut HashMap<String, Doc>, channel: &str) -> Option<&'d mut Doc> {
        if !docs.contains_key(channel) {
            if docs.len() >= self.max_documents {
                return None;
            }
            docs.insert(channel.to_owned(), Doc::new(&self.epoch, self.log_capacity));
        }
        docs.get_mut(channel)
    }

    fn too_many(&self, peer: &Peer, channel: &str, id: Option<String>) {
        let message = format!(
            "this relay holds at most {} documents; {channel:?} is not one of them",
            self.max_documents
        );
        refuse(peer, TOO_MANY_DOCUMENTS, message, id);
    }

    /// `doc_sync`: registers `peer` and queues what it needs — the changes after `version`, or
    /// a snapshot — under the lock, so no live change can slip in before them. Returns
    /// whether `peer` now syncs the document (not when there is no room for another one).
    /// A snapshot also lists which of the changes the request awaits it holds (see
    /// `Doc::snapshot_for`).
    pub(crate) fn sync(
        &self,
        peer: &Peer,
        queued: &mut QueuedSnapshots,
        channel: &str,
        request: SyncRequest<'_>,
    ) -> bool {
        let mut docs = self.docs();
        let Some(doc) = self.doc(&mut docs, channel) else {
            self.too_many(peer, channel, None);
            return false;
        };
        let syncing = doc.syncers.contains_key(&peer.id());
        if syncing && queued.get(channel).is_some_and(|t| peer.is_queued(*t)) {
            // A snapshot is on its way, followed by every change since: that answers this
            // request too, without queuing another copy of the document. (Of the changes this
            // request awaits, those the queued one holds were answered before it on this
            // connection, or listed by the request it answers.)
            return true;
        }
        match doc.missing(request.version, request.epoch) {
            Some(changes) => {
                for change in changes {
                    peer.push(Outbound::Frame(change));
                }
            }
            None => {
                queued.remove(channel);
                let snapshot = doc.snapshot_for(
                    channel,
                    request.member,
                    request.pending,
                    self.max_message_size,
                );
                doc.push_snapshot_frame(peer, channel, queued, snapshot);
            }
        }
        doc.syncers.insert(peer.id(), peer.clone());
        true
    }

    /// `doc_change` from `author`: apply, acknowledge, broadcast — or reject (with a
    /// snapshot when the author's view was wrong). Returns whether the change was one the
    /// document remembers (a resend, acknowledged again, or a reuse of its id, refused):
    /// answered without applying anything.
    pub(crate) fn change(
        &self,
        author: Author<'_>,
        queued: &mut QueuedSnapshots,
        channel: &str,
        id: String,
        ops: Vec<Op>,
    ) -> bool {
        let mut docs = self.docs();
        let Some(doc) = self.doc(&mut docs, channel) else {
            self.too_many(author.peer, channel, Some(id));
            return false;
        };
        let held = match doc.server.earlier_change(author.member, &id, &ops) {
            // A resend: acknowledged again, whatever the limits say now.
            Some(ChangeOutcome::Duplicate { version }) => {
                ack(author.peer, id, version);
                true
            }
            Some(ChangeOutcome::IdReused { version }) => {
                id_reused(author.peer, id, version);
                true
            }
            _ => {
                self.apply(doc, author, queued, channel, id, ops);
                false
            }
        };
        if doc.is_idle() {
            docs.remove(channel);
        }
        held
    }

    /// Whether the document `channel` remembers `member`'s change `id` (see
    /// [`change`](Self::change)).
    pub(crate) fn holds(&self, channel: &str, member: &str, id: &str) -> bool {
        self.docs()
            .get(channel)
            .is_some_and(|doc| doc.server.remembers(member, id))
    }

    fn apply(
        &self,
        doc: &mut Doc,
        Author {
            peer: author,
            member,
        }: Author<'_>,
        queued: &mut QueuedSnapshots,
        channel: &str,
        id: String,
        ops: Vec<Op>,
    ) {
        // Checked before applying: the size of the state after the change (from the keys it
        // touches), and of the frames it would take to send it.
        let state_bytes = match state_bytes_after(doc, &ops) {
            Ok(bytes) => bytes,
            Err(rejection) => return self.reject(doc, author, queued, channel, id, rejection),
        };
        let change = frame(&ServerMessage::DocChange {
            channel: channel.to_owned(),
            version: doc.server.version() + 1,
            id: id.clone(),
            client_id: Some(member.to_owned()),
            ops: ops.clone(),
        });
        let logged_bytes = applied_entry_bytes(&id, member);
        if let Some(why) = self.over_limit(doc, channel, logged_bytes, state_bytes, change.len()) {
            return refuse(author, TOO_LARGE, why, Some(id));
        }
        match doc.server.apply(member, &id, &ops) {
            ChangeOutcome::Applied { version } => {
                doc.server.trim_log();
                doc.state_bytes = state_bytes;
                doc.snapshot = None;
                doc.applied_bytes += logged_bytes;
                doc.log.push_back(Logged {
                    version,
                    id: id.clone(),
                    client_id: member.to_owned(),
                    frame: change.clone(),
                });
                while doc.log.len() > self.log_capacity {
                    if let Some(old) = doc.log.pop_front() {
                        doc.applied_bytes -= applied_entry_bytes(&old.id, &old.client_id);
                    }
                }
                ack(author, id, version);
                for peer in doc.syncers.values().filter(|p| p.id() != author.id()) {
                    peer.offer(Outbound::Frame(change.clone()));
                }
            }
            ChangeOutcome::Duplicate { version } => ack(author, id, version),
            ChangeOutcome::IdReused { version } => id_reused(author, id, version),
            ChangeOutcome::Rejected(rejection) => {
                self.reject(doc, author, queued, channel, id, rejection)
            }
        }
    }

    /// The author's view of the document was wrong: it gets the error and, if it syncs the
    /// document, a snapshot. One that does not (it sent `doc_close`, and this was a change
    /// still pending then) holds no view to correct and was promised none of the document's
    /// snapshots: the error alone tells it the outcome.
    fn reject(
        &self,
        doc: &mut Doc,
        author: &Peer,
        queued: &mut QueuedSnapshots,
        channel: &str,
        id: String,
        rejection: Rejection,
    ) {
        refuse(author, rejection.code, rejection.message, Some(id));
        if doc.syncers.contains_key(&author.id()) {
            doc.push_snapshot(author, channel, queued);
        }
    }

    /// Why a change adding `logged_bytes` to a snapshot's `applied` and `applied_by`, leaving
    /// `state_bytes` of state and broadcast as a `change_len`-byte frame cannot be accepted,
    /// if it cannot.
    fn over_limit(
        &self,
        doc: &Doc,
        channel: &str,
        logged_bytes: usize,
        state_bytes: usize,
        change_len: usize,
    ) -> Option<String> {
        if state_bytes > self.max_document_bytes {
            return Some(format!(
                "the document would hold about {state_bytes} bytes; this relay keeps at most {}",
                self.max_document_bytes
            ));
        }
        let max = self.max_message_size;
        if change_len > max {
            return Some(format!(
                "the change would be a {change_len}-byte frame; this relay sends at most {max}"
            ));
        }
        let mut applied_bytes = doc.applied_bytes + logged_bytes;
        if doc.log.len() >= self.log_capacity {
            applied_bytes -= doc
                .log
                .front()
                .map_or(logged_bytes, |c| applied_entry_bytes(&c.id, &c.client_id));
        }
        let snapshot = snapshot_overhead(channel, doc.server.epoch()) + state_bytes + applied_bytes;
        (snapshot > max).then(|| {
            format!(
                "the document's snapshot would be about {snapshot} bytes; this relay sends \
                 at most {max}"
            )
        })
    }

    /// `doc_close`: `peer` no longer hears about the document (frames already queued there
    /// still go out; the client drops them), and the document is dropped if it was never
    /// changed and nobody else syncs it. The record of a snapshot queued there is forgotten
    /// with it: it was the connection's only use.
    pub(crate) fn close(&self, peer: &Peer, queued: &mut QueuedSnapshots, channel: &str) {
        queued.remove(channel);
        self.disconnect(peer.id(), [channel]);
    }

    /// A connection went away: it no longer hears about these documents, and those that
    /// were never changed and have nobody else syncing them are dropped.
    pub(crate) fn disconnect<'a>(&self, peer: PeerId, channels: impl IntoIterator<Item = &'a str>) {
        let mut docs = self.docs();
        for channel in channels {
            if let Some(doc) = docs.get_mut(channel) {
                doc.syncers.remove(&peer);
                if doc.is_idle() {
                    docs.remove(channel);
                }
            }
        }
    }

    /// Documents currently held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.docs().len()
    }

    /// The version and state of the document `channel`, if held.
    #[cfg(test)]
    pub(crate) fn snapshot_of(&self, channel: &str) -> Option<(u64, Value)> {
        let docs = self.docs();
        let doc = docs.get(channel)?;
        Some((
            doc.server.version(),
            Value::Object(doc.server.state().clone()),
        ))
    }
}

fn ack(author: &Peer, id: String, version: u64) {
    author.offer(Outbound::Frame(frame(&ServerMessage::Ack {
        id,
        offset: Some(version),
    })));
}

/// The author already used `id` for another change, applied as `version`: refused without a
/// snapshot, as the author's view of the document was not wrong.
fn id_reused(author: &Peer, id: String, version: u64) {
    let message =
        format!("this client already made another change under this id (version {version})");
    refuse(author, DUPLICATE_ID, message, Some(id));
}

fn refuse(peer: &Peer, code: &str, message: String, id: Option<String>) {
    peer.offer(Outbound::Frame(frame(&ServerMessage::Error {
        code: code.to_owned(),
        message,
        id,
    })));
}

/// `{}`.
const EMPTY_MAP_BYTES: usize = 2;

/// The JSON length of one state entry, `"key":value`, plus its separating comma.
fn entry_bytes(key: &str, value: &Value) -> usize {
    let mut out = String::new();
    tether_core::json::write_str(&mut out, key);
    out.push(':');
    tether_core::json::write_value(&mut out, value);
    out.len() + 1
}

/// The JSON length of a change's entries in a snapshot's `applied` (its id) and `applied_by`
/// (its author), with their commas.
fn applied_entry_bytes(id: &str, client_id: &str) -> usize {
    let mut out = String::new();
    tether_core::json::write_str(&mut out, id);
    tether_core::json::write_str(&mut out, client_id);
    out.len() + 2
}

/// A snapshot frame's length besides its state and its `applied` ids and authors, at the
/// longest version.
fn snapshot_overhead(channel: &str, epoch: &str) -> usize {
    frame(&ServerMessage::DocSnapshot {
        channel: channel.to_owned(),
        version: u64::MAX,
        epoch: Some(epoch.to_owned()),
        state: Map::new(),
        applied: Vec::new(),
        applied_by: Some(Vec::new()),
    })
    .len()
        + r#","applied":[]"#.len()
}

/// The state's JSON length bound after `ops`, or why they are rejected. Works on
/// copies of the keys the change touches only (the only ones `apply_change` reads), so the
/// cost is that of the change, not of the document.
fn state_bytes_after(doc: &Doc, ops: &[Op]) -> Result<usize, Rejection> {
    let state = doc.server.state();
    let touched: HashSet<&str> = ops.iter().map(Op::key).collect();
    let mut scratch = Map::new();
    let mut before = 0;
    for key in touched {
        if let Some(value) = state.get(key) {
            before += entry_bytes(key, value);
            scratch.insert(key.to_owned(), value.clone());
        }
    }
    apply_change(&mut scratch, ops)?;
    let after: usize = scratch.iter().map(|(k, v)| entry_bytes(k, v)).sum();
    Ok(doc.state_bytes - before + after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn docs(config: RelayConfig) -> Docs {
        Docs::new(Arc::from("e1"), &config)
    }

    /// A first `doc_sync` from "a", awaiting nothing.
    const FIRST_SYNC: SyncRequest<'static> = SyncRequest {
        member: "a",
        version: None,
        epoch: None,
        pending: &[],
    };

    fn author(peer: &Peer) -> Author<'_> {
        Author { peer, member: "a" }
    }

    fn set(key: &str, value: Value) -> Vec<Op> {
        vec![Op::Set {
            key: key.into(),
            value,
        }]
    }

    #[test]
    fn the_state_size_bound_follows_every_change() {
        let docs = docs(RelayConfig::default());
        let (a, mut qa) = Peer::new(1, 1000, 0);
        let mut queued = QueuedSnapshots::new();
        let changes = [
            set("a", json!("x".repeat(100))),
            set("b\u{7}", json!({"n": [1, 2.5, null]})),
            vec![Op::Increment {
                key: "n".into(),
                by: 3.into(),
            }],
            set("a", json!(1)),
            vec![Op::Delete {
                key: "b\u{7}".into(),
            }],
            vec![Op::Insert {
                key: "c".into(),
                value: json!(true),
            }],
        ];
        for (i, ops) in changes.into_iter().enumerate() {
            docs.change(author(&a), &mut queued, "d", format!("c{i}"), ops);
            let d = docs.docs();
            let exact = tether_core::json::to_string(&Value::Object(d["d"].server.state().clone()));
            let bound = d["d"].state_bytes;
            assert!(
                bound >= exact.len() && bound <= exact.len() + 1,
                "{bound} vs {exact}"
            );
        }
        assert_eq!(qa.drain_messages().len(), 6, "six acks");
        // The snapshot's size bound covers its `applied` ids and their authors.
        let mut d = docs.docs();
        let doc = d.get_mut("d").unwrap();
        let bound = snapshot_overhead("d", "e1") + doc.state_bytes + doc.applied_bytes;
        let snapshot = doc.snapshot("d");
        assert!(
            snapshot.contains(r#""applied_by":["a","a","a","a","a","a"]"#),
            "{snapshot}"
        );
        assert!(bound >= snapshot.len(), "{bound} < {}", snapshot.len());
    }

    #[test]
    fn documents_nobody_syncs_and_nobody_changed_are_dropped() {
        let docs = docs(RelayConfig::default());
        let (a, _qa) = Peer::new(1, 1000, 0);
        let mut queued = QueuedSnapshots::new();
        assert!(docs.sync(&a, &mut queued, "empty", FIRST_SYNC));
        assert!(docs.sync(&a, &mut queued, "kept", FIRST_SYNC));
        docs.change(
            author(&a),
            &mut queued,
            "kept",
            "c1".into(),
            set("k", json!(1)),
        );
        docs.disconnect(1, ["empty", "kept"]);
        assert_eq!(docs.len(), 1);
    }

    #[test]
    fn a_closed_document_reaches_its_closer_no_more_and_is_dropped_if_idle() {
        let docs = docs(RelayConfig::default());
        let (a, mut qa) = Peer::new(1, 1000, 0);
        let (b, mut qb) = Peer::new(2, 1000, 0);
        let mut queued = QueuedSnapshots::new();
        assert!(docs.sync(&a, &mut queued, "empty", FIRST_SYNC));
        assert!(docs.sync(&a, &mut queued, "d", FIRST_SYNC));
        docs.close(&a, &mut queued, "empty");
        assert_eq!(docs.len(), 1, "never changed, nobody syncs it: dropped");
        docs.close(&a, &mut queued, "d");
        assert!(queued.is_empty());
        qa.drain_messages();
        docs.change(
            author(&b),
            &mut QueuedSnapshots::new(),
            "d",
            "c1".into(),
            set("k", json!(1)),
        );
        assert!(
            qa.drain_messages().is_empty(),
            "not broadcast to the closer"
        );
        assert_eq!(qb.drain_messages().len(), 1, "the author's ack");
    }

    // doc_close promises no more of the document's snapshots: a change of the closer's that
    // is refused after it (one still pending when the app closed the document) gets the
    // error naming it, not a copy of the whole document the client no longer holds.
    #[test]
    fn a_refused_change_of_a_closer_gets_no_snapshot() {
        let docs = docs(RelayConfig::default());
        let (a, mut qa) = Peer::new(1, 1000, 0);
        let (b, _qb) = Peer::new(2, 1000, 0);
        let mut queued = QueuedSnapshots::new();
        assert!(docs.sync(&a, &mut queued, "d", FIRST_SYNC));
        let insert = || {
            vec![Op::Insert {
                key: "seat".into(),
                value: json!(1),
            }]
        };
        let b_author = Author {
            peer: &b,
            member: "b",
        };
        docs.change(
            b_author,
            &mut QueuedSnapshots::new(),
            "d",
            "c1".into(),
            insert(),
        );
        docs.close(&a, &mut queued, "d");
        qa.drain_messages();
        docs.change(author(&a), &mut queued, "d", "c2".into(), insert());
        let got = qa.drain_messages();
        assert!(
            matches!(got.as_slice(), [ServerMessage::Error { code, id: Some(id), .. }]
                if code == "conflict" && id == "c2"),
            "{got:?}"
        );
        assert!(queued.is_empty());
        // A syncer's view was wrong: it still gets the snapshot.
        assert!(docs.sync(&a, &mut queued, "d", FIRST_SYNC));
        qa.drain_messages();
        docs.change(author(&a), &mut queued, "d", "c3".into(), insert());
        let got = qa.drain_messages();
        assert!(
            matches!(
                got.as_slice(),
                [
                    ServerMessage::Error { .. },
                    ServerMessage::DocSnapshot { .. }
                ]
            ),
            "{got:?}"
        );
    }

    // A change applied, its ack lost with its connection, then pushed out of the log by
    // others: a snapshot listed only the log, so its author, which still awaited the change,
    // replayed it on top and counted it twice until the resend's ack. Its `doc_sync` now
    // names the changes it awaits, and the snapshot answering it lists those it holds.
    #[test]
    fn a_snapshot_lists_the_changes_its_requester_awaits_that_it_holds() {
        let docs = docs(RelayConfig {
            document_log_capacity: 2,
            ..RelayConfig::default()
        });
        let (a, _qa) = Peer::new(1, 1000, 0);
        let (b, _qb) = Peer::new(2, 1000, 0);
        let mut queued = QueuedSnapshots::new();
        let inc = || {
            vec![Op::Increment {
                key: "n".into(),
                by: 1.into(),
            }]
        };
        docs.change(author(&a), &mut queued, "d", "a1".into(), inc());
        let b_author = Author {
            peer: &b,
            member: "b",
        };
        for i in 0..3 {
            let mut none = QueuedSnapshots::new();
            docs.change(b_author, &mut none, "d", format!("b{i}"), inc());
        }
        let (a2, mut qa2) = Peer::new(3, 1000, 0);
        let pending = ["a1".to_owned(), "a-unsent".to_owned()];
        let request = SyncRequest {
            pending: &pending,
            ..FIRST_SYNC
        };
        assert!(docs.sync(&a2, &mut QueuedSnapshots::new(), "d", request));
        let got = qa2.drain_messages();
        assert!(
            matches!(got.as_slice(), [ServerMessage::DocSnapshot { version: 4, applied, applied_by: Some(by), .. }]
                if applied == &["b1", "b2", "a1"] && by == &["b", "b", "a"]),
            "{got:?}"
        );
        // Another client's sync naming the same ids gets the shared snapshot: they are not its.
        let (c, mut qc) = Peer::new(4, 1000, 0);
        let request = SyncRequest {
            member: "c",
            pending: &pending,
            ..FIRST_SYNC
        };
        assert!(docs.sync(&c, &mut QueuedSnapshots::new(), "d", request));
        let got = qc.drain_messages();
        assert!(
            matches!(got.as_slice(), [ServerMessage::DocSnapshot { applied, .. }]
                if applied == &["b1", "b2"]),
            "{got:?}"
        );
    }

    #[test]
    fn at_most_one_snapshot_per_document_is_queued_on_a_connection() {
        let docs = docs(RelayConfig::default());
        let (a, mut qa) = Peer::new(1, 1000, 0);
        let mut queued = QueuedSnapshots::new();
        docs.change(
            author(&a),
            &mut queued,
            "d",
            "c1".into(),
            set("k", json!(1)),
        );
        qa.drain_messages();
        for _ in 0..10 {
            docs.sync(&a, &mut queued, "d", FIRST_SYNC);
        }
        let got = qa.drain_messages();
        assert_eq!(got.len(), 1, "{got:?}");
        // Sent: the next request gets a snapshot again.
        docs.sync(&a, &mut queued, "d", FIRST_SYNC);
        assert!(matches!(
            qa.drain_messages().as_slice(),
            [ServerMessage::DocSnapshot { version: 1, .. }]
        ));
    }
}
