//! The authoritative side of a shared document: orders changes, assigns versions, keeps a
//! bounded change log for resume, and answers `doc_sync` with the missed changes or a snapshot.
//!
//! Pure data, no I/O: the reference relay serves it over sockets and the tests drive it in
//! virtual time, so both use the very same rules.

use super::{apply_change, Op, Rejection};
use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};

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
    /// Refused; the author gets the error and a snapshot.
    Rejected(Rejection),
}

/// The answer to `doc_sync`.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncReply {
    /// The changes after the client's version, in order: (version, id, ops).
    Changes(Vec<(u64, String, Vec<Op>)>),
    /// The whole state (the log no longer reaches back, another epoch, or a first sync).
    Snapshot {
        /// The version.
        version: u64,
        /// The state.
        state: Map<String, Value>,
        /// Ids of the changes in the log (all included in `state`).
        applied: Vec<String>,
    },
}

/// One document, authoritative.
#[derive(Debug, Clone)]
pub struct DocumentServer {
    epoch: String,
    version: u64,
    state: Map<String, Value>,
    log: VecDeque<(u64, String, Vec<Op>)>,
    log_capacity: usize,
    /// Applied change ids → version, kept longer than the log (and through `trim_log`): a
    /// resend must never be applied twice just because the log was cut.
    ids: HashMap<String, u64>,
    id_order: VecDeque<String>,
    id_capacity: usize,
}

impl DocumentServer {
    /// An empty document in `epoch`, keeping the last `log_capacity` changes for resume and
    /// the ids of the last `max(4 × log_capacity, 4096)` changes for duplicate detection.
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

    /// The version change `id` was applied as, while its id is remembered: what
    /// [`apply`](Self::apply) would answer as [`ChangeOutcome::Duplicate`]. A server that
    /// checks a change (say, against a size limit) before applying it asks this first, so a
    /// resend is acknowledged rather than checked again.
    pub fn applied_version(&self, id: &str) -> Option<u64> {
        self.ids.get(id).copied()
    }

    /// Orders and applies change `id`. Resends of a change still in the log are recognised.
    pub fn apply(&mut self, id: &str, ops: &[Op]) -> ChangeOutcome {
        if let Some(&version) = self.ids.get(id) {
            return ChangeOutcome::Duplicate { version };
        }
        if let Err(rejection) = apply_change(&mut self.state, ops) {
            return ChangeOutcome::Rejected(rejection);
        }
        self.version += 1;
        self.log
            .push_back((self.version, id.to_owned(), ops.to_vec()));
        while self.log.len() > self.log_capacity {
            self.log.pop_front();
        }
        self.ids.insert(id.to_owned(), self.version);
        self.id_order.push_back(id.to_owned());
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
        let oldest_logged = self.log.front().map(|(v, _, _)| *v);
        match self.replay_after(version, epoch, oldest_logged) {
            Some(v) => SyncReply::Changes(
                self.log
                    .iter()
                    .filter(|(lv, _, _)| *lv > v)
                    .cloned()
                    .collect(),
            ),
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
    ///     doc.apply(&format!("c{n}"), &[Op::Set { key: "n".into(), value: json!(n) }]);
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
            applied: self.log.iter().map(|(_, id, _)| id.clone()).collect(),
        }
    }

    /// Forgets the change log but keeps the state and the applied ids (e.g. a restart that
    /// kept the document but not its log): older clients must then resync from a snapshot,
    /// and their resends are still recognised.
    pub fn trim_log(&mut self) {
        self.log.clear();
    }
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
            s.apply("a", &set("x", 1)),
            ChangeOutcome::Applied { version: 1 }
        );
        assert_eq!(
            s.apply("a", &set("x", 9)),
            ChangeOutcome::Duplicate { version: 1 }
        );
        assert_eq!(s.applied_version("a"), Some(1));
        assert_eq!(s.applied_version("b"), None);
        s.apply("b", &set("x", 2));
        s.apply("c", &set("y", 3));
        match s.sync(Some(1), Some("e")) {
            SyncReply::Changes(c) => {
                assert_eq!(c.iter().map(|c| c.0).collect::<Vec<_>>(), vec![2, 3])
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
            } => {
                assert_eq!(
                    (version, state["x"].clone(), applied),
                    (3, json!(2), vec!["b".into(), "c".into()])
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn replay_reaches_back_to_just_before_the_oldest_logged_change() {
        let mut s = DocumentServer::new("e", 10);
        for (i, id) in ["a", "b", "c", "d"].into_iter().enumerate() {
            s.apply(id, &set("x", i as i64));
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
    fn rejected_changes_do_not_advance() {
        let mut s = DocumentServer::new("e", 10);
        s.apply("a", &set("x", 1));
        let r = s.apply(
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
    }
}
