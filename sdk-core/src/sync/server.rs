//! The authoritative side of a shared document: orders changes, assigns versions, keeps a
//! bounded change log for resume, and answers `doc_sync` with the missed changes or a snapshot.
//!
//! Pure data, no I/O: the reference relay serves it over sockets and the tests drive it in
//! virtual time, so both use the very same rules.
//!
//! Change ids are unique only within their author (the engine's are a random per-client
//! prefix and a counter), and every syncing client sees them in broadcasts and snapshots. So
//! applied changes are remembered by (author, id), with a digest of their ops: keyed on the id
//! alone, anyone could send another client's next id first and have that client's change
//! acknowledged as a duplicate but never applied. The same id from the same author with other
//! ops is not a resend either; it is refused ([`ChangeOutcome::IdReused`]).
//!
//! The author goes out with every change too ([`LoggedChange::client_id`], a snapshot's
//! `applied_by`), because the client's side of the same rule is to take a change as its own
//! only when both the author and the id are its own: matched on the id alone, another
//! client's change sent under its next id would be confirmed in place of its own.
//!
//! Both protect a client only as far as the author given to [`DocumentServer::apply`] is
//! authenticated: with a self-declared `hello.client_id`, another client can send as this one
//! under its next id. Its change is then applied as this client's, whose real change is refused
//! as `duplicate_id`; the client's engine, which took the broadcast for its own, already
//! shows the broadcast's ops (what the server applied) and reports the refusal.

use super::{apply_change, Op, Rejection};
use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};

/// What became of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeOutcome {
    /// Applied as `version`; tell the other clients.
    Applied {
        /// The new version.
        version: u64,
    },
    /// Already applied (a resend) as `version`: acknowledge again, do not apply or broadcast.
    Duplicate {
        /// The version it was applied as.
        version: u64,
    },
    /// Its author already used this id for other ops, applied as `version`: not a resend, so
    /// neither applied nor acknowledged; the author is told `duplicate_id` (its view was not
    /// wrong, so no snapshot is needed).
    IdReused {
        /// The version the author's earlier change under this id was applied as.
        version: u64,
    },
    /// Refused; the author gets the error and a snapshot.
    Rejected(Rejection),
}

/// The answer to `doc_sync`.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncReply {
    /// The changes after the client's version, in order.
    Changes(Vec<LoggedChange>),
    /// The whole state (the log no longer reaches back, another epoch, or a first sync).
    Snapshot {
        /// The version.
        version: u64,
        /// The state.
        state: Map<String, Value>,
        /// Ids of the changes in the log (all included in `state`), then, from
        /// [`sync_for`](DocumentServer::sync_for), those of the requester's pending changes
        /// it holds that the log does not.
        applied: Vec<String>,
        /// Their authors, index by index.
        applied_by: Vec<String>,
    },
}

/// One applied change, as the log keeps it and a `doc_change` carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedChange {
    /// The version it produced.
    pub version: u64,
    /// Its author (the name given to [`DocumentServer::apply`], such as `hello.client_id`).
    pub client_id: String,
    /// Its id, unique only within its author.
    pub id: String,
    /// Its operations.
    pub ops: Vec<Op>,
}

/// One document, authoritative.
#[derive(Debug, Clone)]
pub struct DocumentServer {
    epoch: String,
    version: u64,
    state: Map<String, Value>,
    log: VecDeque<LoggedChange>,
    log_capacity: usize,
    /// Applied changes by (author, id) → version and digest of the ops, kept longer than the
    /// log (and through `trim_log`): a resend must never be applied twice just because the
    /// log was cut.
    ids: HashMap<ChangeKey, Seen>,
    id_order: VecDeque<ChangeKey>,
    id_capacity: usize,
}

/// Who made a change, and under which id: ids are unique only within their author.
type ChangeKey = (String, String);

/// What is remembered of an applied change.
#[derive(Debug, Clone, Copy)]
struct Seen {
    version: u64,
    /// Of its ops, to tell a resend from a reuse of the id.
    digest: u64,
}

impl DocumentServer {
    /// An empty document in `epoch`, keeping the last `log_capacity` changes for resume and
    /// the (author, id) of the last `max(4 × log_capacity, 4096)` changes for duplicate
    /// detection.
    pub fn new(epoch: impl Into<String>, log_capacity: usize) -> Self {
        DocumentServer {
            epoch: epoch.into(),
            version: 0,
            state: Map::new(),
            log: VecDeque::new(),
            log_capacity,
            ids: HashMap::new(),
            id_order: VecDeque::new(),
            id_capacity: log_capacity.saturating_mul(4).max(4096),
        }
    }

    /// The epoch.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The current version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The current state.
    pub fn state(&self) -> &Map<String, Value> {
        &self.state
    }

    /// What [`apply`](Self::apply) answers without applying anything when `author` already
    /// made a change `id` (while that is remembered): [`ChangeOutcome::Duplicate`] for the
    /// same `ops` (a resend), [`ChangeOutcome::IdReused`] for others; `None` for a new change.
    /// A server that checks a change (say, against a size limit) before applying it asks this
    /// first, so a resend is acknowledged rather than checked again.
    pub fn earlier_change(&self, author: &str, id: &str, ops: &[Op]) -> Option<ChangeOutcome> {
        let seen = self.ids.get(&(author.to_owned(), id.to_owned()))?;
        let version = seen.version;
        Some(if seen.digest == digest(ops) {
            ChangeOutcome::Duplicate { version }
        } else {
            ChangeOutcome::IdReused { version }
        })
    }

    /// Whether `author`'s change `id` is remembered: [`apply`](Self::apply) would answer it
    /// from memory ([`ChangeOutcome::Duplicate`] or [`ChangeOutcome::IdReused`]), applying
    /// nothing. What a server that has not read a change's ops yet can tell (the relay lets
    /// such resends through its rate limit, as they cost it nothing).
    pub fn remembers(&self, author: &str, id: &str) -> bool {
        self.ids.contains_key(&(author.to_owned(), id.to_owned()))
    }

    /// Orders and applies change `id` made by `author` (any stable name of the client, such
    /// as its `client_id`). A resend of a change still remembered is recognised by the pair
    /// and not applied again; see [`earlier_change`](Self::earlier_change).
    pub fn apply(&mut self, author: &str, id: &str, ops: &[Op]) -> ChangeOutcome {
        if let Some(earlier) = self.earlier_change(author, id, ops) {
            return earlier;
        }
        if let Err(rejection) = apply_change(&mut self.state, ops) {
            return ChangeOutcome::Rejected(rejection);
        }
        self.version += 1;
        self.log.push_back(LoggedChange {
            version: self.version,
            client_id: author.to_owned(),
            id: id.to_owned(),
            ops: ops.to_vec(),
        });
        while self.log.len() > self.log_capacity {
            self.log.pop_front();
        }
        let key = (author.to_owned(), id.to_owned());
        let seen = Seen {
            version: self.version,
            digest: digest(ops),
        };
        self.ids.insert(key.clone(), seen);
        self.id_order.push_back(key);
        while self.id_order.len() > self.id_capacity {
            if let Some(old) = self.id_order.pop_front() {
                self.ids.remove(&old);
            }
        }
        ChangeOutcome::Applied {
            version: self.version,
        }
    }

    /// What a client at `version` of `epoch` needs: the changes after its version when the
    /// log still has them all, else a snapshot (the rule of [`replay_after`](Self::replay_after)).
    pub fn sync(&self, version: Option<u64>, epoch: Option<&str>) -> SyncReply {
        let oldest_logged = self.log.front().map(|c| c.version);
        match self.replay_after(version, epoch, oldest_logged) {
            Some(v) => {
                SyncReply::Changes(self.log.iter().filter(|c| c.version > v).cloned().collect())
            }
            None => self.snapshot(),
        }
    }

    /// The resume rule of `doc_sync`: whether a client at `version` of `epoch` can be brought
    /// up to date by replaying a change log whose oldest change has version `oldest_logged`
    /// (`None`: the log is empty). `Some(v)` means "send the logged changes with versions above
    /// `v`, in order" (none when the client is at the head); `None` means it needs a snapshot.
    ///
    /// A replay needs the same epoch (versions of another one mean nothing here) and a version
    /// from the one just before the oldest logged change up to the head: an older one would
    /// miss the changes the log has dropped, a newer one is not a state this server had.
    ///
    /// [`sync`](Self::sync) applies it to this server's own log. A server that keeps its log
    /// elsewhere (the relay keeps encoded frames and calls [`trim_log`](Self::trim_log) after
    /// every change) passes the oldest version its log holds, so both answer alike; that log
    /// must hold every change from `oldest_logged` to the head.
    ///
    /// ```
    /// use serde_json::json;
    /// use tether_core::sync::{DocumentServer, Op};
    ///
    /// let mut doc = DocumentServer::new("e1", 16);
    /// for n in 0..5 {
    ///     doc.apply("alice", &format!("c{n}"), &[Op::Set { key: "n".into(), value: json!(n) }]);
    /// }
    /// // A log holding versions 3 to 5 replays to clients at 2 and later…
    /// assert_eq!(doc.replay_after(Some(2), Some("e1"), Some(3)), Some(2));
    /// assert_eq!(doc.replay_after(Some(5), Some("e1"), Some(3)), Some(5));
    /// // …but not to one that would miss version 2, nor to one from another epoch.
    /// assert_eq!(doc.replay_after(Some(1), Some("e1"), Some(3)), None);
    /// assert_eq!(doc.replay_after(Some(4), Some("e0"), Some(3)), None);
    /// ```
    pub fn replay_after(
        &self,
        version: Option<u64>,
        epoch: Option<&str>,
        oldest_logged: Option<u64>,
    ) -> Option<u64> {
        let version = version?;
        // The oldest version from which the log leads to the head: an empty log only serves a
        // client that is already there.
        let reachable_from = oldest_logged.map_or(self.version, |v| v.saturating_sub(1));
        let replayable = epoch == Some(self.epoch.as_str())
            && version <= self.version
            && version >= reachable_from;
        replayable.then_some(version)
    }

    /// The whole state.
    pub fn snapshot(&self) -> SyncReply {
        SyncReply::Snapshot {
            version: self.version,
            state: self.state.clone(),
            applied: self.log.iter().map(|c| c.id.clone()).collect(),
            applied_by: self.log.iter().map(|c| c.client_id.clone()).collect(),
        }
    }

    /// [`sync`](Self::sync) for `author`, whose `doc_sync` listed `pending`: the ids of its
    /// changes that still await an answer. A snapshot then also lists, after the log's
    /// changes, those of `pending` this document remembers as `author`'s
    /// ([`pending_applied`](Self::pending_applied)) and the log no longer holds: the state
    /// contains them, and a client not told so would replay them on top, counting an
    /// increment twice until its ack came.
    pub fn sync_for(
        &self,
        author: &str,
        version: Option<u64>,
        epoch: Option<&str>,
        pending: &[String],
    ) -> SyncReply {
        let mut reply = self.sync(version, epoch);
        if let SyncReply::Snapshot {
            applied,
            applied_by,
            ..
        } = &mut reply
        {
            let logged = applied.len();
            let in_log =
                |id: &str| (0..logged).any(|i| applied[i] == id && applied_by[i] == author);
            let unlisted = self.pending_applied(author, pending, in_log);
            for id in unlisted {
                applied.push(id.to_owned());
                applied_by.push(author.to_owned());
            }
        }
        reply
    }

    /// The ids of `pending` (changes `author` awaits an answer for) that this document
    /// remembers as `author`'s and that `in_log` says a snapshot's `applied` does not list
    /// already, each once: applied, so contained in the state, though the log (and so a
    /// snapshot's `applied`) may no longer hold them. `in_log` is the caller's log (the relay
    /// keeps its own, encoded). The same bound as for
    /// resends: a change forgotten here would be applied again when re-sent, so it is rightly
    /// not listed. One remembered under the id with other ops (a reuse,
    /// [`ChangeOutcome::IdReused`]) is listed too, as a logged one would be: what the server
    /// applied under it is in the state, and the author's own change is refused.
    ///
    /// Only the first [`MAX_SYNC_PENDING`](super::MAX_SYNC_PENDING) ids are read (as many
    /// as the engine sends), so a request listing many more costs no more than that.
    pub fn pending_applied<'p>(
        &self,
        author: &str,
        pending: &'p [String],
        in_log: impl Fn(&str) -> bool,
    ) -> Vec<&'p str> {
        let mut listed: Vec<&'p str> = Vec::new();
        for id in pending.iter().take(super::MAX_SYNC_PENDING) {
            if !listed.contains(&id.as_str()) && !in_log(id) && self.remembers(author, id) {
                listed.push(id);
            }
        }
        listed
    }

    /// Forgets the change log but keeps the state and the applied ids (e.g. a restart that
    /// kept the document but not its log): older clients must then resync from a snapshot,
    /// and their resends are still recognised.
    pub fn trim_log(&mut self) {
        self.log.clear();
    }
}

/// A digest of a change's ops. Only one author's changes under one id are ever compared, so
/// a collision could only make that author's own reuse of an id pass as a resend: a fixed
/// hash (deterministic, as the engine must be) is enough.
fn digest(ops: &[Op]) -> u64 {
    let mut hasher = DefaultHasher::new();
    ops.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(k: &str, v: i64) -> Vec<Op> {
        vec![Op::Set {
            key: k.into(),
            value: json!(v),
        }]
    }

    #[test]
    fn orders_dedupes_and_replays() {
        let mut s = DocumentServer::new("e", 2);
        assert_eq!(
            s.apply("me", "a", &set("x", 1)),
            ChangeOutcome::Applied { version: 1 }
        );
        assert_eq!(
            s.apply("me", "a", &set("x", 1)),
            ChangeOutcome::Duplicate { version: 1 }
        );
        assert_eq!(
            s.earlier_change("me", "a", &set("x", 1)),
            Some(ChangeOutcome::Duplicate { version: 1 })
        );
        assert_eq!(s.earlier_change("me", "b", &set("x", 1)), None);
        assert!(s.remembers("me", "a"));
        assert!(!s.remembers("me", "b") && !s.remembers("you", "a"));
        s.apply("me", "b", &set("x", 2));
        s.apply("me", "c", &set("y", 3));
        match s.sync(Some(1), Some("e")) {
            SyncReply::Changes(c) => {
                assert_eq!(c.iter().map(|c| c.version).collect::<Vec<_>>(), vec![2, 3])
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(s.sync(Some(0), Some("e")), SyncReply::Snapshot { .. }),
            "log trimmed"
        );
        assert!(
            matches!(s.sync(Some(3), Some("old")), SyncReply::Snapshot { .. }),
            "other epoch"
        );
        match s.sync(None, None) {
            SyncReply::Snapshot {
                version,
                state,
                applied,
                applied_by,
            } => {
                assert_eq!(
                    (version, state["x"].clone(), applied, applied_by),
                    (
                        3,
                        json!(2),
                        vec!["b".into(), "c".into()],
                        vec!["me".into(), "me".into()]
                    )
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn replay_reaches_back_to_just_before_the_oldest_logged_change() {
        let mut s = DocumentServer::new("e", 10);
        for (i, id) in ["a", "b", "c", "d"].into_iter().enumerate() {
            s.apply("me", id, &set("x", i as i64));
        }
        let e = Some("e");
        // A log of versions 2..=4: clients at 1 to 4 are served from it.
        let logged = Some(2);
        let answers: Vec<_> = (0..=5)
            .map(|v| s.replay_after(Some(v), e, logged))
            .collect();
        assert_eq!(answers, [None, Some(1), Some(2), Some(3), Some(4), None]);
        assert_eq!(s.replay_after(None, e, logged), None, "a first sync");
        assert_eq!(s.replay_after(Some(3), None, logged), None, "no epoch");
        // An empty log serves only a client already at the head.
        assert_eq!(s.replay_after(Some(4), e, None), Some(4));
        assert_eq!(s.replay_after(Some(3), e, None), None);
        // `sync` follows the same rule over its own log (all four changes).
        assert!(matches!(s.sync(Some(0), e), SyncReply::Changes(c) if c.len() == 4));
        s.trim_log();
        assert!(matches!(s.sync(Some(4), e), SyncReply::Changes(c) if c.is_empty()));
        assert!(matches!(s.sync(Some(3), e), SyncReply::Snapshot { .. }));
    }

    #[test]
    fn change_ids_are_remembered_per_author_with_their_ops() {
        let mut s = DocumentServer::new("e", 10);
        assert_eq!(
            s.apply("mallory", "alice-8", &set("x", 0)),
            ChangeOutcome::Applied { version: 1 }
        );
        // Alice's own change under that id is hers, not a duplicate of mallory's.
        assert_eq!(
            s.apply("alice", "alice-8", &set("y", 1)),
            ChangeOutcome::Applied { version: 2 }
        );
        assert_eq!(s.state()["y"], json!(1));
        // Her resend is recognised; the id with other ops is refused, and nothing applies.
        assert_eq!(
            s.apply("alice", "alice-8", &set("y", 1)),
            ChangeOutcome::Duplicate { version: 2 }
        );
        assert_eq!(
            s.apply("alice", "alice-8", &set("y", 2)),
            ChangeOutcome::IdReused { version: 2 }
        );
        assert_eq!(
            s.earlier_change("alice", "alice-8", &set("y", 2)),
            Some(ChangeOutcome::IdReused { version: 2 })
        );
        assert_eq!((s.version(), &s.state()["y"]), (2, &json!(1)));
        // Both go out under their author, so each client can tell its own.
        match s.sync(Some(0), Some("e")) {
            SyncReply::Changes(c) => assert_eq!(
                c.iter()
                    .map(|c| (c.client_id.as_str(), c.id.as_str()))
                    .collect::<Vec<_>>(),
                [("mallory", "alice-8"), ("alice", "alice-8")]
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            s.snapshot(),
            SyncReply::Snapshot { applied_by, .. } if applied_by == ["mallory", "alice"]
        ));
    }

    #[test]
    fn a_snapshot_for_a_client_lists_its_pending_changes_the_log_no_longer_holds() {
        let mut s = DocumentServer::new("e", 2);
        s.apply("me", "m1", &set("x", 1));
        s.apply("you", "y1", &set("y", 1));
        s.apply("you", "y2", &set("y", 2));
        s.apply("me", "m2", &set("x", 2));
        // The log holds y2 and m2; m1 is remembered only. "m3" was never applied, and "y1"
        // is another author's.
        let pending: Vec<String> = ["m1", "m2", "m3", "y1", "m1"].map(String::from).into();
        assert_eq!(s.pending_applied("me", &pending, |_| false), ["m1", "m2"]);
        assert_eq!(s.pending_applied("me", &pending, |id| id == "m2"), ["m1"]);
        match s.sync_for("me", None, Some("e"), &pending) {
            SyncReply::Snapshot {
                applied,
                applied_by,
                ..
            } => assert_eq!(
                (applied, applied_by),
                (
                    ["y2", "m2", "m1"].map(String::from).to_vec(),
                    ["you", "me", "me"].map(String::from).to_vec()
                ),
                "m2 once (logged), m1 after the log"
            ),
            other => panic!("{other:?}"),
        }
        // A replay answers the same way as `sync`: it holds the pending changes it reaches.
        assert!(matches!(
            s.sync_for("me", Some(3), Some("e"), &pending),
            SyncReply::Changes(c) if c.len() == 1
        ));
        // At most MAX_SYNC_PENDING ids are read.
        let many: Vec<String> = (0..crate::sync::MAX_SYNC_PENDING + 10)
            .map(|i| format!("x{i}"))
            .collect();
        for id in &many {
            s.apply("me", id, &set("z", 0));
        }
        assert_eq!(
            s.pending_applied("me", &many, |_| false).len(),
            crate::sync::MAX_SYNC_PENDING
        );
    }

    #[test]
    fn rejected_changes_do_not_advance() {
        let mut s = DocumentServer::new("e", 10);
        s.apply("me", "a", &set("x", 1));
        let r = s.apply(
            "me",
            "b",
            &[Op::Insert {
                key: "x".into(),
                value: json!(2),
            }],
        );
        assert!(matches!(
            r,
            ChangeOutcome::Rejected(Rejection {
                code: "conflict",
                ..
            })
        ));
        assert_eq!(s.version(), 1);
        // The client's rule, applied by the server: an increment past the integer range.
        s.apply("me", "c", &set("n", i64::MAX));
        let r = s.apply(
            "me",
            "d",
            &[Op::Increment {
                key: "n".into(),
                by: u64::MAX.into(),
            }],
        );
        assert!(matches!(
            r,
            ChangeOutcome::Rejected(Rejection {
                code: "out_of_range",
                ..
            })
        ));
        assert_eq!(s.version(), 2);
        assert_eq!(s.state()["n"], json!(i64::MAX));
    }
}
