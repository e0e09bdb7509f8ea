//! The client's copy of one shared document: the confirmed state at a version, the pending
//! local changes, and the view the app sees (confirmed + pending, replayed in order).
//!
//! Every method returns the [`KeyChange`]s of the view it caused, so the engine can tell the
//! app exactly what moved and why.

use super::{apply_change, Op};
use crate::event::MessageId;
use crate::sorted::SortedSet;
use serde_json::{Map, Value};

/// At most this many pending change ids go in one `doc_sync` (`pending`), so that the
/// request stays a small frame whatever the outbox holds. The oldest are listed, the ones
/// most likely written (and applied) before a connection was lost; a pending change beyond
/// them that a snapshot contains without listing it is replayed on top until its ack comes.
pub const MAX_SYNC_PENDING: usize = 64;

/// Why the view of a document changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChangeOrigin {
    /// A local change, applied at once, not yet acknowledged by the server.
    LocalPending,
    /// The server accepted a local change (the view usually does not move; the keys are
    /// listed so the app can mark them as saved). Also one reported dropped after it was
    /// written (`ChangeRejected` with a drop reason) that the server's replay shows it applied
    /// after all: the view then moves back to it.
    Confirmed,
    /// Another client's change, or a resync from a snapshot.
    Remote,
    /// A local change was rejected (or dropped) and its effect removed.
    RolledBack,
}

impl ChangeOrigin {
    /// A stable machine-readable name: `local_pending`, `confirmed`, `remote` or
    /// `rolled_back`.
    pub fn name(self) -> &'static str {
        match self {
            ChangeOrigin::LocalPending => "local_pending",
            ChangeOrigin::Confirmed => "confirmed",
            ChangeOrigin::Remote => "remote",
            ChangeOrigin::RolledBack => "rolled_back",
        }
    }
}

/// One key of the view that changed.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyChange {
    /// The key.
    pub key: String,
    /// Its new value (`None`: deleted).
    pub value: Option<Value>,
    /// A remote change replaced a value this client had written: it lost the race.
    pub overwrote_local: bool,
}

#[derive(Debug, Clone)]
struct Pending {
    id: MessageId,
    wire: String,
    ops: Vec<Op>,
    /// Its ack came, past a gap in our versions: the server applied it (its message has left
    /// the outbox), and only the replay or snapshot that fills the gap is awaited.
    acked: bool,
}

/// One of our changes taken as applied before its ack came: confirmed by a broadcast (or a
/// replay) naming our author and its id, or left out of the pending ones because a snapshot
/// listed it. Author and id are only what the sender declares, so it may have been another
/// client's change sent under ours; the server's verdict on our own message tells. Either way
/// `confirmed` holds what the server applied (the broadcast's ops, or the snapshot), so only
/// the verdict is left to report.
#[derive(Debug, Clone)]
struct Unacked {
    id: MessageId,
    wire: String,
}

/// What became of one of our changes whose message left the outbox without an ack.
#[derive(Debug, PartialEq)]
pub(crate) enum Undelivered {
    /// It was pending: rolled back, with what that changed in the view.
    RolledBack(Vec<KeyChange>),
    /// It was taken as applied already (see `Unacked`): nothing to roll back.
    TakenAsApplied,
}

/// One shared document as this client knows it.
#[derive(Debug, Clone)]
pub struct Document {
    confirmed: Map<String, Value>,
    version: Option<u64>,
    epoch: Option<String>,
    /// In the order they were made (a `Vec`: there are few, and a `VecDeque` costs the
    /// browser build more code).
    pending: Vec<Pending>,
    view: Map<String, Value>,
    /// Keys whose confirmed value this client wrote (to tell when it lost a race).
    mine: SortedSet<String>,
    /// A `doc_sync` sent on this connection because the document fell behind, not yet
    /// answered: the version it resumes from (see `behind` for when it counts as answered).
    resync_from: Option<Option<u64>>,
    /// The confirmed state is known to be wrong (a change the server applied does not apply to
    /// it): syncs ask for a snapshot, not for the changes after `version`, until one arrives.
    needs_snapshot: bool,
    /// Our changes taken as applied whose ack has not come yet. Each left `pending` for here,
    /// and leaves on its ack or when its message leaves the outbox otherwise
    /// (`unacked_dropped`), so there are never more than the outbox holds.
    unacked: Vec<Unacked>,
    /// Which opening this is (see `generation`).
    generation: u64,
}

impl Default for Document {
    fn default() -> Self {
        Document::new()
    }
}

/// What the engine must do after feeding the document a server message.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Reaction {
    /// View changes to report, with their origin.
    pub(crate) changes: Vec<(ChangeOrigin, Vec<KeyChange>)>,
    /// The document fell behind (a version gap, or a change it cannot apply): send a
    /// `doc_sync` (`Document::sync_from`: from the confirmed version, or for a snapshot).
    pub(crate) resync: bool,
}

impl Document {
    /// An empty document, not yet synced.
    pub fn new() -> Self {
        Document {
            confirmed: Map::new(),
            version: None,
            epoch: None,
            pending: Vec::new(),
            view: Map::new(),
            mine: SortedSet::default(),
            resync_from: None,
            needs_snapshot: false,
            unacked: Vec::new(),
            generation: 0,
        }
    }

    /// An empty document, opened as the engine's `generation`th document.
    pub(crate) fn opened(generation: u64) -> Self {
        Document {
            generation,
            ..Document::new()
        }
    }

    /// Which opening of a document this is: the engine numbers each `open_document` that
    /// opens one (1, 2, 3 … over all channels; 0 for a `Document` made by hand), and its
    /// document events carry the number (`Event::DocumentChanged`, `ChangeRejected`,
    /// `DocumentResynced`). A document closed and opened again on the same channel is a new
    /// one with a new number, so a driver can tell the closed one's events that were still
    /// queued from the new one's.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The value the app sees for `key` (local changes included).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.view.get(key)
    }

    /// The whole view.
    pub fn view(&self) -> &Map<String, Value> {
        &self.view
    }

    /// The server's state as last confirmed.
    pub fn confirmed(&self) -> &Map<String, Value> {
        &self.confirmed
    }

    /// The confirmed version, once synced.
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// The epoch of `version`.
    pub fn epoch(&self) -> Option<&str> {
        self.epoch.as_deref()
    }

    /// Keys a pending local change touches: their shown value may still change (exact, unlike
    /// comparing the view with the confirmed state, which misses a pending write of the value
    /// the server already has).
    pub fn pending_keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self
            .pending
            .iter()
            .flat_map(|p| p.ops.iter().map(|op| op.key()))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// Local changes not yet confirmed.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether a change would apply to the current view (what the engine checks before
    /// accepting it, so a change already known to fail is never sent).
    pub(crate) fn check(&self, ops: &[Op]) -> Result<(), super::Rejection> {
        // A change reads only its own keys: copy those, not the whole document.
        let mut scratch = copy_of(ops.iter().map(|op| op.key()), &self.view);
        apply_change(&mut scratch, ops)
    }

    /// The `doc_sync` to send: resume after the confirmed version of this epoch, or no version
    /// (which the server answers with a snapshot) when the confirmed state is known wrong.
    pub(crate) fn sync_from(&self) -> (Option<u64>, Option<String>) {
        let version = if self.needs_snapshot {
            None
        } else {
            self.version
        };
        (version, self.epoch.clone())
    }

    /// The ids of our changes that await the server's answer, the oldest first, at most
    /// [`MAX_SYNC_PENDING`]: what a `doc_sync` lists in `pending`, so that a snapshot
    /// answering it can say which of them it contains even when the server's log no longer
    /// holds them (see `snapshot`). Those acked past a gap are known applied already.
    pub(crate) fn awaiting_answer(&self) -> Vec<String> {
        self.pending
            .iter()
            .filter(|p| !p.acked)
            .take(MAX_SYNC_PENDING)
            .map(|p| p.wire.clone())
            .collect()
    }

    /// A new connection (its resume is about to be sent): a sync asked for on the old one will
    /// never be answered, so it no longer holds back a new request.
    pub(crate) fn reconnected(&mut self) {
        self.resync_from = None;
    }

    /// A local change, accepted by the engine: it shows at once. What it touched is
    /// reported even when the view already showed it (a set to the shown value), so every
    /// change has its `LocalPending` before its `Confirmed`.
    pub(crate) fn local(&mut self, id: MessageId, wire: String, ops: Vec<Op>) -> Vec<KeyChange> {
        let keys = keys_of(&ops);
        self.pending.push(Pending {
            id,
            wire,
            ops,
            acked: false,
        });
        let changes = self.refresh(&keys, |_| false);
        self.or_unmoved(changes, &keys)
    }

    /// `changes`, or when the view did not move, each of `keys` with the value it shows.
    fn or_unmoved(&self, changes: Vec<KeyChange>, keys: &SortedSet<String>) -> Vec<KeyChange> {
        if !changes.is_empty() {
            return changes;
        }
        keys.iter()
            .map(|k| KeyChange {
                key: k.clone(),
                value: self.view.get(k).cloned(),
                overwrote_local: false,
            })
            .collect()
    }

    /// The base version for a new change.
    pub(crate) fn base(&self) -> u64 {
        self.version.unwrap_or(0)
    }

    /// A snapshot: the confirmed state is replaced; pending changes the snapshot already
    /// contains (`applied`: the ids of this client's changes in it — the engine leaves out
    /// those of other authors, as ids are unique only within their author) are dropped; the
    /// rest are replayed on top.
    ///
    /// A snapshot's `applied` is the server's recent log, plus the changes of ours it
    /// contains among those our `doc_sync` listed as awaiting an answer (`pending`, see
    /// `awaiting_answer`), however old. Without that (a server older than `pending`, or a
    /// change past [`MAX_SYNC_PENDING`]), a change applied before the log's start, whose
    /// ack was lost with its connection, cannot be told from one not applied yet: it is
    /// replayed on top, counting twice (an increment) until its ack comes.
    pub(crate) fn snapshot(
        &mut self,
        version: u64,
        epoch: Option<String>,
        state: Map<String, Value>,
        applied: &[String],
    ) -> Reaction {
        let mut keys: SortedSet<String> = self.view.keys().cloned().collect();
        keys.extend(state.keys().cloned());
        // Acked past a gap: the snapshot holds them even when its `applied` (the server's
        // recent log) no longer lists them, or they went with the server's old epoch like
        // every other applied change. Replayed on top, they would count twice for ever.
        // Those it lists are taken as applied too. Either way their keys are reported saved.
        let mut saved = SortedSet::default();
        let mut i = 0;
        while i < self.pending.len() {
            let p = &self.pending[i];
            if p.acked || applied.contains(&p.wire) {
                let p = self.pending.remove(i);
                saved.extend(p.ops.iter().map(|op| op.key().to_owned()));
                if !p.acked {
                    self.unacked.push(Unacked {
                        id: p.id,
                        wire: p.wire,
                    });
                }
            } else {
                i += 1;
            }
        }
        self.confirmed = state;
        self.version = Some(version);
        self.epoch = epoch;
        self.mine.clear();
        self.resync_from = None;
        self.needs_snapshot = false;
        let changes = self.refresh(&keys, |_| false);
        let saved = self.or_unmoved(Vec::new(), &saved);
        Reaction {
            changes: vec![
                (ChangeOrigin::Remote, changes),
                (ChangeOrigin::Confirmed, saved),
            ],
            resync: false,
        }
    }

    /// A change from the server at `version`: another client's, or ours replayed. `ours`: its
    /// author is this client (or the server does not say) and its id one this engine makes.
    /// Only then can it confirm the pending change with id `wire`: ids are unique only within
    /// their author, so another client's change under our next id is a remote change like any
    /// other. One of ours no longer pending (dropped unacknowledged) is reported `Confirmed`.
    pub(crate) fn remote(
        &mut self,
        version: u64,
        wire: &str,
        ours: bool,
        ops: Vec<Op>,
    ) -> Reaction {
        let Some(current) = self.version else {
            return self.behind();
        };
        if version <= current {
            return Reaction::default(); // already have it
        }
        if version > current + 1 {
            return self.behind();
        }
        if let Some(pos) = self.pending.iter().position(|p| ours && p.wire == wire) {
            // Its verdict is still to come, unless its ack already came (past a gap).
            if !self.pending[pos].acked {
                let unacked = Unacked {
                    id: self.pending[pos].id,
                    wire: self.pending[pos].wire.clone(),
                };
                self.unacked.push(unacked);
            }
            return self.confirm_at(pos, version, Some(ops));
        }
        let keys = keys_of(&ops);
        if apply_change(&mut self.confirmed, &ops).is_err() {
            // The server applied it, so our confirmed state must be wrong: start over.
            return self.cannot_apply();
        }
        self.advance(version);
        // Ours yet not pending: written, then dropped from the outbox before its ack (closed,
        // expired, overflow) and reported so, as its outcome was unknown. The server applied
        // it after all: confirmed, not a race this client lost to itself.
        let mut lost = SortedSet::default();
        for op in ops.iter().filter(|op| !matches!(op, Op::Increment { .. })) {
            let key = op.key().to_owned();
            if ours {
                self.mine.insert(key);
            } else if self.mine.remove(&key) {
                lost.insert(key);
            }
        }
        let changes = self.refresh(&keys, |k| lost.contains(k));
        let (origin, changes) = if ours {
            (ChangeOrigin::Confirmed, self.or_unmoved(changes, &keys))
        } else {
            (ChangeOrigin::Remote, changes)
        };
        Reaction {
            changes: vec![(origin, changes)],
            resync: false,
        }
    }

    /// The server acknowledged our change `wire` at `version`.
    pub(crate) fn acked(&mut self, wire: &str, version: Option<u64>) -> Reaction {
        // Taken as applied already, rightly: the server applied it as ours.
        self.unacked.retain(|u| u.wire != wire);
        let Some(pos) = self.pending.iter().position(|p| p.wire == wire) else {
            // Not (or no longer) held here: dropped after it was written, made before this
            // document was reopened, or taken as applied before the server's state was reset.
            // Applied past our version, it is missing from the view: fetch it. (Never synced
            // yet, the first sync's answer will hold it.)
            return match (self.version, version) {
                (Some(current), Some(v)) if v > current => self.behind(),
                _ => Reaction::default(),
            };
        };
        match (self.version, version) {
            (Some(current), Some(v)) if current.checked_add(1) == Some(v) => {
                self.confirm_at(pos, v, None)
            }
            (Some(current), Some(v)) if v <= current => {
                // Applied before our current version (a resend's ack after a snapshot that
                // already contained it): its effect is in `confirmed`; stop replaying it.
                let Some(p) = self.take_pending(pos) else {
                    return Reaction::default();
                };
                let keys = keys_of(&p.ops);
                let changes = self.refresh(&keys, |_| false);
                Reaction {
                    changes: vec![(ChangeOrigin::Confirmed, self.or_unmoved(changes, &keys))],
                    resync: false,
                }
            }
            // A gap: keep it pending (the view stays right) and fetch what we missed; the
            // replay will confirm it (by its id and author), or a snapshot will hold it.
            _ => {
                self.pending[pos].acked = true;
                self.behind()
            }
        }
    }

    /// Our change was rejected or dropped: remove it; the view rolls back.
    pub(crate) fn discard(&mut self, id: MessageId) -> Option<Undelivered> {
        if let Some(pos) = self.pending.iter().position(|p| p.id == id) {
            let p = self.pending.remove(pos);
            return Some(Undelivered::RolledBack(
                self.refresh(&keys_of(&p.ops), |_| false),
            ));
        }
        let pos = self.unacked.iter().position(|u| u.id == id)?;
        self.unacked.remove(pos);
        Some(Undelivered::TakenAsApplied)
    }

    fn take_pending(&mut self, pos: usize) -> Option<Pending> {
        (pos < self.pending.len()).then(|| self.pending.remove(pos))
    }

    /// Our pending change at `pos` was applied at `version`: acknowledged (`served` is `None`),
    /// or seen in a broadcast under our author and id carrying `served`, what the server
    /// applied: our ops, unless another client sent under our id first (then the server
    /// refuses ours, and the view must show theirs, as the server holds it).
    fn confirm_at(&mut self, pos: usize, version: u64, served: Option<Vec<Op>>) -> Reaction {
        let Some(p) = self.take_pending(pos) else {
            return Reaction::default();
        };
        let mut keys = keys_of(&p.ops);
        let applied = match served {
            Some(ops) => {
                keys.extend(ops.iter().map(|op| op.key().to_owned()));
                ops
            }
            None => p.ops,
        };
        if apply_change(&mut self.confirmed, &applied).is_err() {
            // The server applied it, so it is in the snapshot this asks for; the view is left
            // as it was until then (the snapshot's refresh covers every key).
            return self.cannot_apply();
        }
        self.advance(version);
        for op in &applied {
            if !matches!(op, Op::Increment { .. }) {
                self.mine.insert(op.key().to_owned());
            }
        }
        // The view did not move (it already showed the change): say what was saved.
        let changes = self.refresh(&keys, |_| false);
        let changes = self.or_unmoved(changes, &keys);
        Reaction {
            changes: vec![(ChangeOrigin::Confirmed, changes)],
            resync: false,
        }
    }

    /// A change applied: the confirmed version moves on, which answers any outstanding sync
    /// (its first replayed change is the one that applies here, or it was overtaken).
    fn advance(&mut self, version: u64) {
        self.version = Some(version);
        self.resync_from = None;
    }

    /// The document missed something: ask for a `doc_sync` from the confirmed version, unless
    /// one asked for earlier on this connection from this very version is still unanswered.
    ///
    /// When does a sync count as answered? The server answers `doc_sync` with the changes after
    /// the version (none at all when there are none: there is no end marker) or a snapshot, and
    /// queues that answer before any live change that follows on the connection. Hence:
    ///
    /// - The resume sent on every open never holds back a gap (`reconnected`, and `sync_from`
    ///   records nothing): nothing live reaches the new connection before its answer, so a gap
    ///   seen while the version has not moved means the answer was empty and something was
    ///   missed since. (Recording it froze the document until the next reconnect: every later
    ///   change hit "already asked" at that same version.)
    /// - A sync asked for here, mid-connection, can be overtaken by live changes the server sent
    ///   before it read the request; they show the same gap and are ignored while it is
    ///   outstanding. Its answer is never empty, as the server has the change that showed the
    ///   gap: it is a snapshot, or starts with the very next version, which applies — either one
    ///   clears `resync_from` (`snapshot`, `advance`). A change that does not apply asks for a
    ///   snapshot instead (`cannot_apply`), so replaying it cannot keep the sync outstanding.
    ///
    /// So at most one such sync is outstanding, and the next one needs an answer (or a new
    /// connection) first: however many changes show a gap, it costs one `doc_sync`.
    fn behind(&mut self) -> Reaction {
        let from = self.version;
        if self.resync_from == Some(from) {
            return Reaction::default();
        }
        self.resync_from = Some(from);
        Reaction {
            changes: Vec::new(),
            resync: true,
        }
    }

    /// A change the server applied does not apply to our confirmed state, so that state is
    /// wrong and replaying changes on it cannot help: ask for a snapshot, even if a resume from
    /// this version is outstanding (its answer would replay this same change). Once asked,
    /// further failures wait for the snapshot like any gap.
    fn cannot_apply(&mut self) -> Reaction {
        if !self.needs_snapshot {
            self.needs_snapshot = true;
            self.resync_from = None;
        }
        self.behind()
    }

    /// Recomputes the view for `keys` (confirmed + pending in order; a pending change that
    /// would fail is left out, as the server will reject it) and returns what moved.
    ///
    /// `keys` must name every key whose confirmed value changed (or whose pending change was
    /// added or removed) since the last refresh: any other key not touched by a pending change
    /// shows its confirmed value, unchanged. So only the candidates are recomputed, on a
    /// scratch copy of their confirmed values — not a clone of the whole document per change
    /// (20 ms per incoming change at 100,000 keys).
    fn refresh(
        &mut self,
        keys: &SortedSet<String>,
        lost: impl Fn(&String) -> bool,
    ) -> Vec<KeyChange> {
        // Every pending change's keys are candidates too: a change underneath can make an
        // atomic pending change stop (or start) applying, moving keys nobody named. A change
        // reads and writes only its own keys, so replaying them on the candidates alone is exact.
        let mut candidates = keys.clone();
        for p in &self.pending {
            candidates.extend(p.ops.iter().map(|op| op.key().to_owned()));
        }
        let mut next = copy_of(candidates.iter().map(String::as_str), &self.confirmed);
        for p in &self.pending {
            let _ = apply_change(&mut next, &p.ops);
        }
        let mut changes = Vec::new();
        for key in &candidates {
            let new = next.remove(key.as_str());
            if self.view.get(key) == new.as_ref() {
                continue;
            }
            changes.push(KeyChange {
                key: key.clone(),
                value: new.clone(),
                overwrote_local: lost(key),
            });
            match new {
                Some(v) => self.view.insert(key.clone(), v),
                None => self.view.remove(key.as_str()),
            };
        }
        changes
    }
}

/// The entries of `from` for `keys` (those it has).
fn copy_of<'k>(
    keys: impl Iterator<Item = &'k str>,
    from: &Map<String, Value>,
) -> Map<String, Value> {
    // Inserted one by one: `collect` into a map links the B-tree's sort-and-bulk-build
    // (about 2 KB gzipped in the browser module) for copies of a few keys.
    let mut copy = Map::new();
    for k in keys {
        if let Some(v) = from.get(k) {
            copy.insert(k.to_owned(), v.clone());
        }
    }
    copy
}

fn keys_of(ops: &[Op]) -> SortedSet<String> {
    ops.iter().map(|op| op.key().to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(key: &str, v: Value) -> Vec<Op> {
        vec![Op::Set {
            key: key.into(),
            value: v,
        }]
    }

    fn inc(key: &str, by: i64) -> Vec<Op> {
        vec![Op::Increment {
            key: key.into(),
            by: by.into(),
        }]
    }

    fn synced() -> Document {
        let mut d = Document::new();
        d.snapshot(0, Some("e".into()), Map::new(), &[]);
        d
    }

    #[test]
    fn a_local_change_shows_at_once_and_is_confirmed_by_its_ack() {
        let mut d = synced();
        let changes = d.local(MessageId(1), "w1".into(), set("a", json!(1)));
        assert_eq!(changes[0].value, Some(json!(1)));
        assert_eq!(d.get("a"), Some(&json!(1)));
        assert!(d.confirmed().is_empty());
        let r = d.acked("w1", Some(1));
        assert_eq!(r.changes[0].0, ChangeOrigin::Confirmed);
        assert_eq!(d.confirmed().get("a"), Some(&json!(1)));
        assert_eq!((d.version(), d.pending()), (Some(1), 0));
    }

    #[test]
    fn a_change_acked_past_a_gap_is_settled_by_the_replay_or_by_a_snapshot() {
        // The replay: confirmed, and no verdict left to wait for (its ack came).
        let mut d = synced();
        d.local(MessageId(1), "w1".into(), inc("n", 1));
        assert!(
            d.acked("w1", Some(3)).resync,
            "a gap asks for what was missed"
        );
        assert_eq!(d.pending(), 1, "the view keeps it until the gap is filled");
        d.remote(1, "x1", false, inc("n", 5));
        d.remote(2, "x2", false, inc("n", 5));
        d.remote(3, "w1", true, inc("n", 1));
        assert_eq!(
            (d.version(), d.pending(), d.get("n")),
            (Some(3), 0, Some(&json!(11)))
        );
        assert!(d.unacked.is_empty(), "its ack came: nothing left to report");

        // A snapshot that no longer lists it (the server's log moved on) holds it anyway.
        let mut d = synced();
        d.local(MessageId(1), "w1".into(), inc("n", 1));
        d.acked("w1", Some(3));
        let state: Map<String, Value> = [("n".to_owned(), json!(11))].into_iter().collect();
        d.snapshot(3000, Some("e".into()), state, &[]);
        assert_eq!(
            (d.pending(), d.get("n")),
            (0, Some(&json!(11))),
            "not counted twice"
        );
    }

    #[test]
    fn an_ack_after_the_largest_version_does_not_overflow() {
        let mut d = Document::new();
        d.snapshot(u64::MAX, Some("e".into()), Map::new(), &[]);
        d.local(MessageId(1), "w1".into(), set("a", json!(1)));
        let _ = d.acked("w1", Some(u64::MAX)); // already applied: no panic, no wrap
        assert_eq!(d.version(), Some(u64::MAX));
    }

    #[test]
    fn pending_changes_are_rebased_over_remote_ones() {
        let mut d = synced();
        d.local(MessageId(1), "w1".into(), inc("n", 5));
        d.local(MessageId(2), "w2".into(), set("k", json!("mine")));
        d.remote(1, "other", false, inc("n", 10));
        d.remote(2, "other2", false, set("k", json!("theirs")));
        assert_eq!(d.get("n"), Some(&json!(15)), "increments commute");
        assert_eq!(
            d.get("k"),
            Some(&json!("mine")),
            "our pending set is later in server order"
        );
        d.acked("w1", Some(3));
        d.acked("w2", Some(4));
        assert_eq!(d.confirmed().get("k"), Some(&json!("mine")));
    }

    #[test]
    fn losing_a_race_is_reported() {
        let mut d = synced();
        d.local(MessageId(1), "w1".into(), set("k", json!("mine")));
        d.acked("w1", Some(1));
        let r = d.remote(2, "other", false, set("k", json!("theirs")));
        let (origin, changes) = &r.changes[0];
        assert_eq!(*origin, ChangeOrigin::Remote);
        assert!(changes[0].overwrote_local);
        assert_eq!(d.get("k"), Some(&json!("theirs")));
    }

    #[test]
    fn a_rejected_change_rolls_back_and_the_rest_replays() {
        let mut d = synced();
        d.local(
            MessageId(1),
            "w1".into(),
            vec![Op::Insert {
                key: "seat".into(),
                value: json!("me"),
            }],
        );
        d.local(MessageId(2), "w2".into(), set("x", json!(2)));
        // Someone else took the seat first.
        d.remote(1, "other", false, set("seat", json!("them")));
        assert_eq!(
            d.get("seat"),
            Some(&json!("them")),
            "our insert would fail: not shown"
        );
        assert!(matches!(
            d.discard(MessageId(1)),
            Some(Undelivered::RolledBack(_))
        ));
        assert_eq!(d.get("x"), Some(&json!(2)));
        assert_eq!(d.pending(), 1);
    }

    #[test]
    fn a_remote_change_that_voids_an_atomic_pending_change_reports_all_its_keys() {
        let mut d = synced();
        let claim = vec![
            Op::Insert {
                key: "seat".into(),
                value: json!("bob"),
            },
            Op::Increment {
                key: "bookings".into(),
                by: 1.into(),
            },
        ];
        d.local(MessageId(1), "w1".into(), claim);
        assert_eq!(d.get("bookings"), Some(&json!(1)));
        let r = d.remote(1, "alice", false, set("seat", json!("alice")));
        let keys: Vec<&str> = r.changes[0].1.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(
            keys,
            ["bookings", "seat"],
            "the voided increment is reported too"
        );
        assert_eq!(d.get("bookings"), None);
    }

    #[test]
    fn gaps_ask_for_a_resync_once_and_replays_confirm_by_id() {
        let mut d = synced();
        d.local(MessageId(1), "w1".into(), inc("n", 1));
        let r = d.remote(3, "x", false, inc("n", 1));
        assert!(r.resync);
        assert_eq!(
            d.sync_from().0,
            Some(0),
            "resumes after the confirmed version"
        );
        assert!(
            !d.remote(4, "y", false, inc("n", 1)).resync,
            "asked already"
        );
        d.remote(1, "w1", true, inc("n", 1)); // our change, replayed
        assert_eq!(d.pending(), 0);
        d.remote(2, "z", false, inc("n", 1));
        d.remote(3, "x", false, inc("n", 1));
        assert_eq!(d.get("n"), Some(&json!(3)));
    }

    #[test]
    fn a_change_that_does_not_apply_asks_for_a_snapshot_once() {
        let mut d = Document::new();
        let state = json!({"s": "text"}).as_object().cloned().unwrap();
        d.snapshot(5, Some("e".into()), state, &[]);
        assert!(d.remote(7, "b", false, inc("n", 1)).resync, "a gap");
        assert_eq!(d.sync_from(), (Some(5), Some("e".into())));
        // The answer starts with a change our state cannot take: resuming would replay it.
        assert!(
            d.remote(6, "a", false, inc("s", 1)).resync,
            "asks again, for a snapshot"
        );
        assert_eq!(d.sync_from(), (None, Some("e".into())));
        assert!(
            !d.remote(6, "a", false, inc("s", 1)).resync,
            "asked already"
        );
        assert!(!d.remote(7, "b", false, inc("n", 1)).resync);
        let state = json!({"s": 1, "n": 1}).as_object().cloned().unwrap();
        d.snapshot(7, Some("e".into()), state, &[]);
        assert_eq!(d.sync_from(), (Some(7), Some("e".into())), "resumes again");
    }

    /// The view is refreshed key by key; it must always equal the confirmed state with every
    /// pending change replayed on it, as recomputed from scratch.
    #[test]
    fn the_view_is_always_confirmed_plus_pending() {
        let mut rng = crate::Prng::seed_from_u64(11);
        let mut d = synced();
        let mut next_id = 0u64;
        let mut version = 0u64;
        for _ in 0..1_000 {
            let key = format!("k{}", rng.next_u64() % 6);
            let ops = match rng.next_u64() % 4 {
                0 => set(&key, json!(rng.next_u64() % 3)),
                1 => vec![Op::Delete { key: key.clone() }],
                2 => inc(&key, 1),
                _ => vec![
                    Op::Insert {
                        key: key.clone(),
                        value: json!("x"),
                    },
                    Op::Increment {
                        key: "total".into(),
                        by: 1.into(),
                    },
                ],
            };
            match rng.next_u64() % 5 {
                0 | 1 => {
                    next_id += 1;
                    let _ = d.local(MessageId(next_id), format!("w{next_id}"), ops);
                }
                2 => {
                    version += 1;
                    if d.remote(version, "other", false, ops).resync {
                        // Our state cannot take it: start over from the "server's" (ours).
                        let state = d.confirmed().clone();
                        d.snapshot(version, Some("e".into()), state, &[]);
                    }
                }
                3 if d.pending() > 0 => {
                    let wire = d.pending[0].wire.clone();
                    version += 1;
                    let _ = d.acked(&wire, Some(version));
                }
                _ if d.pending() > 0 => {
                    let id = d.pending[d.pending.len() - 1].id;
                    let _ = d.discard(id);
                }
                _ => {}
            }
            let mut expected = d.confirmed().clone();
            for p in &d.pending {
                let _ = apply_change(&mut expected, &p.ops);
            }
            assert_eq!(d.view(), &expected);
        }
    }

    #[test]
    fn a_broadcast_under_our_author_and_id_is_confirmed_as_served_and_remembered_until_its_ack() {
        let mut d = synced();
        d.local(MessageId(1), "w1".into(), inc("n", 1));
        d.local(MessageId(2), "w2".into(), inc("n", 1));
        // "Ours" by author and id, but carrying other ops: someone sent under our id first.
        d.remote(1, "w1", true, inc("m", 1));
        d.remote(2, "w2", true, inc("n", 1));
        assert_eq!(d.pending(), 0);
        let server = json!({"m": 1, "n": 1}).as_object().cloned().unwrap();
        assert_eq!(
            (d.confirmed(), d.view()),
            (&server, &server),
            "what the server applied, not our w1"
        );
        assert!(
            d.acked("w2", Some(2)).changes.is_empty(),
            "already confirmed"
        );
        assert_eq!(d.discard(MessageId(2)), None, "the ack settled it");
        assert_eq!(d.discard(MessageId(1)), Some(Undelivered::TakenAsApplied));
        assert_eq!(d.discard(MessageId(1)), None, "once");
        // One listed by a snapshot is remembered the same way.
        d.local(MessageId(3), "w3".into(), inc("n", 1));
        d.snapshot(3, Some("e".into()), Map::new(), &["w3".into()]);
        assert_eq!(d.discard(MessageId(3)), Some(Undelivered::TakenAsApplied));
        assert!(d.unacked.is_empty());
    }

    #[test]
    fn a_snapshot_drops_pending_changes_it_contains() {
        let mut d = synced();
        d.local(MessageId(1), "w1".into(), inc("n", 1));
        d.local(MessageId(2), "w2".into(), inc("n", 1));
        let state = json!({"n": 1}).as_object().cloned().unwrap();
        d.snapshot(7, Some("e2".into()), state, &["w1".into()]);
        assert_eq!(
            d.get("n"),
            Some(&json!(2)),
            "w1 counted once, w2 still pending"
        );
        assert_eq!(d.pending(), 1);
    }
}
