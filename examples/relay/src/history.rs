//! One channel's message history: the epoch, the head offset, a ring buffer of the latest
//! messages for resume and SSE replay, and the remembered publish ids that make resends
//! idempotent. Pure data; the hub decides who hears about what.
//!
//! Publish ids are remembered per publisher (the connection's `client_id`, stable across the
//! SDK's reconnects) with a digest of the payload: an id is only unique within its client, so
//! keyed on the id alone anyone who saw `abcdef012345-7` could publish `abcdef012345-8` first
//! and have the real one acknowledged but never delivered. The same id from the same client
//! with another payload is not a resend either; it is refused as a [`Appended::Conflict`].

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A stored channel message: its offset and its `message` frame, encoded once and shared by
/// every subscriber, replay and SSE stream (cloning `Utf8Bytes` only bumps a count).
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) offset: u64,
    pub(crate) frame: Utf8Bytes,
}

/// The result of [`History::append`].
#[derive(Debug)]
pub(crate) enum Appended {
    /// A new message, now at `stored.offset`.
    New(Stored),
    /// A resend of an id already stored at this offset: acknowledge, do not deliver.
    Duplicate(u64),
    /// The publisher already used this id, stored at this offset, for another payload:
    /// refuse, do not deliver.
    Conflict(u64),
}

/// Who published, and under which id: the key resends are recognised by.
type PublishKey = (Arc<str>, String);

/// The last `capacity` publish keys, each with what is remembered of it; the oldest is
/// forgotten first. A capacity of 0 remembers nothing.
#[derive(Debug)]
pub(crate) struct Recent<V> {
    seen: HashMap<PublishKey, V>,
    /// The same keys in arrival order, so the oldest can be forgotten.
    order: VecDeque<PublishKey>,
    capacity: usize,
}

impl<V> Recent<V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Recent {
            seen: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// What is remembered of `publisher`'s `id`, if it is among the last ones.
    pub(crate) fn get(&self, publisher: &Arc<str>, id: &str) -> Option<&V> {
        self.seen.get(&(publisher.clone(), id.to_owned()))
    }

    /// Remembers a key not remembered yet, forgetting the oldest if full.
    pub(crate) fn insert(&mut self, publisher: &Arc<str>, id: &str, value: V) {
        if self.capacity == 0 {
            return;
        }
        if self.order.len() == self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        let key = (publisher.clone(), id.to_owned());
        self.seen.insert(key.clone(), value);
        self.order.push_back(key);
    }
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    offset: u64,
    /// The payload's digest, to tell a resend from a reuse of the id.
    digest: u64,
}

/// What a subscriber gets: where its stream starts and what is replayed to get there.
#[derive(Debug)]
pub(crate) struct Resume<'a> {
    /// Whether `replay` is exactly the gap after the client's `since` (nothing was missed).
    pub(crate) recovered: bool,
    /// The offset after which this subscriber's messages follow (`subscribed.offset`): the
    /// client adopts it, so the replay that follows is not mistaken for duplicates.
    pub(crate) after: u64,
    /// The messages to replay, in order.
    pub(crate) replay: Vec<&'a Stored>,
}

#[derive(Debug)]
pub(crate) struct History {
    epoch: Arc<str>,
    head: u64,
    /// Offsets `head - ring.len() + 1 ..= head`, oldest first.
    ring: VecDeque<Stored>,
    capacity: usize,
    /// (publisher, publish id) → offset and payload digest, for the last `dedupe_capacity`
    /// publishes.
    seen: Recent<Seen>,
}

impl History {
    pub(crate) fn new(epoch: Arc<str>, capacity: usize, dedupe_capacity: usize) -> Self {
        History {
            epoch,
            head: 0,
            ring: VecDeque::new(),
            capacity,
            seen: Recent::new(dedupe_capacity),
        }
    }

    pub(crate) fn epoch(&self) -> &Arc<str> {
        &self.epoch
    }

    /// The last offset assigned, 0 before the first message.
    #[cfg(test)]
    pub(crate) fn head(&self) -> u64 {
        self.head
    }

    /// True while nothing was ever stored, so dropping the history loses nothing.
    pub(crate) fn is_pristine(&self) -> bool {
        self.head == 0
    }

    /// Stores a message under the next offset unless `publisher` already stored `id`;
    /// `digest` identifies the payload, `frame` builds the message frame for the assigned
    /// offset.
    pub(crate) fn append(
        &mut self,
        publisher: &Arc<str>,
        id: &str,
        digest: u64,
        frame: impl FnOnce(u64) -> Utf8Bytes,
    ) -> Appended {
        if let Some(seen) = self.seen.get(publisher, id) {
            return if seen.digest == digest {
                Appended::Duplicate(seen.offset)
            } else {
                Appended::Conflict(seen.offset)
            };
        }
        self.head += 1;
        let stored = Stored {
            offset: self.head,
            frame: frame(self.head),
        };
        if self.capacity > 0 {
            if self.ring.len() == self.capacity {
                self.ring.pop_front();
            }
            self.ring.push_back(stored.clone());
        }
        let seen = Seen {
            offset: self.head,
            digest,
        };
        self.seen.insert(publisher, id, seen);
        Appended::New(stored)
    }

    /// True if `publisher`'s `id` is among the publishes remembered here, so a publish under
    /// it is a resend (or a refused reuse): it stores and delivers nothing.
    pub(crate) fn holds(&self, publisher: &Arc<str>, id: &str) -> bool {
        self.seen.get(publisher, id).is_some()
    }

    /// What a subscriber that has seen everything up to `since` of `epoch` can get back.
    ///
    /// - A fresh subscription (no `since`) starts at the head: no replay.
    /// - A resume in the same epoch with every offset after `since` still retained replays
    ///   exactly that gap (`recovered`).
    /// - Any other resume (another epoch, e.g. after a restart; a trimmed history) replays
    ///   everything retained, not recovered: the client may have lost what came before, but it
    ///   does not also lose what this relay does have. After a restart that is every message
    ///   since the restart.
    pub(crate) fn resume(&self, since: Option<u64>, epoch: Option<&str>) -> Resume<'_> {
        let Some(since) = since else {
            return Resume {
                recovered: false,
                after: self.head,
                replay: Vec::new(),
            };
        };
        let recoverable = epoch == Some(&*self.epoch)
            && since <= self.head
            && self.head - since <= self.ring.len() as u64;
        if recoverable {
            return Resume {
                recovered: true,
                after: since,
                replay: self.ring.iter().filter(|m| m.offset > since).collect(),
            };
        }
        Resume {
            recovered: false,
            after: self.head - self.ring.len() as u64,
            replay: self.ring.iter().collect(),
        }
    }

    /// Every retained message, oldest first.
    #[cfg(test)]
    fn retained(&self) -> Vec<u64> {
        self.ring.iter().map(|m| m.offset).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(capacity: usize, dedupe: usize) -> History {
        History::new(Arc::from("e1"), capacity, dedupe)
    }

    fn push(h: &mut History, id: &str) -> Appended {
        publish(h, "alice", id, 0)
    }

    fn publish(h: &mut History, publisher: &str, id: &str, digest: u64) -> Appended {
        h.append(&Arc::from(publisher), id, digest, |offset| {
            Utf8Bytes::from(format!("m{offset}"))
        })
    }

    fn offsets(resume: &Resume<'_>) -> Vec<u64> {
        resume.replay.iter().map(|m| m.offset).collect()
    }

    #[test]
    fn offsets_count_from_one_and_the_ring_keeps_the_latest() {
        let mut h = history(3, 10);
        for i in 0..5 {
            assert!(matches!(push(&mut h, &format!("id{i}")), Appended::New(_)));
        }
        assert_eq!(h.head(), 5);
        assert_eq!(h.retained(), vec![3, 4, 5]);
    }

    #[test]
    fn a_resent_id_is_a_duplicate_with_its_first_offset() {
        let mut h = history(10, 10);
        push(&mut h, "a");
        push(&mut h, "b");
        assert!(matches!(push(&mut h, "a"), Appended::Duplicate(1)));
        assert_eq!(h.head(), 2);
    }

    #[test]
    fn ids_are_remembered_per_publisher() {
        let mut h = history(10, 10);
        assert!(matches!(
            publish(&mut h, "mallory", "victim-8", 1),
            Appended::New(_)
        ));
        // The victim's own publish under that id is a new message, not a duplicate.
        assert!(matches!(
            publish(&mut h, "victim", "victim-8", 2),
            Appended::New(_)
        ));
        assert!(matches!(
            publish(&mut h, "victim", "victim-8", 2),
            Appended::Duplicate(2)
        ));
        assert_eq!(h.head(), 2);
    }

    #[test]
    fn a_reused_id_with_another_payload_is_a_conflict() {
        let mut h = history(10, 10);
        publish(&mut h, "alice", "a-1", 7);
        assert!(matches!(
            publish(&mut h, "alice", "a-1", 8),
            Appended::Conflict(1)
        ));
        assert!(matches!(
            publish(&mut h, "alice", "a-1", 7),
            Appended::Duplicate(1)
        ));
        assert_eq!(h.head(), 1);
    }

    #[test]
    fn only_the_last_ids_are_remembered() {
        let mut h = history(10, 2);
        push(&mut h, "a");
        push(&mut h, "b");
        push(&mut h, "c");
        assert!(matches!(push(&mut h, "a"), Appended::New(_)));
        assert!(matches!(push(&mut h, "c"), Appended::Duplicate(3)));
    }

    #[test]
    fn resume_replays_exactly_the_gap() {
        let mut h = history(10, 10);
        for id in ["a", "b", "c", "d"] {
            push(&mut h, id);
        }
        let r = h.resume(Some(2), Some("e1"));
        assert!(r.recovered);
        assert_eq!(r.after, 2);
        assert_eq!(offsets(&r), vec![3, 4]);
        let r = h.resume(Some(4), Some("e1"));
        assert!(r.recovered);
        assert!(r.replay.is_empty());
    }

    #[test]
    fn resume_fails_for_other_epochs_trimmed_history_or_the_future() {
        let mut h = history(2, 10);
        for id in ["a", "b", "c", "d"] {
            push(&mut h, id);
        }
        assert!(!h.resume(Some(3), Some("e0")).recovered);
        assert!(!h.resume(Some(3), None).recovered);
        assert!(!h.resume(None, Some("e1")).recovered);
        assert!(!h.resume(Some(1), Some("e1")).recovered, "3 was trimmed");
        assert!(h.resume(Some(2), Some("e1")).recovered, "3 and 4 retained");
        assert!(!h.resume(Some(9), Some("e1")).recovered);
    }

    #[test]
    fn an_unrecoverable_resume_still_gets_everything_retained() {
        let mut h = history(2, 10);
        for id in ["a", "b", "c", "d"] {
            push(&mut h, id);
        }
        let other_epoch = h.resume(Some(3), Some("e0"));
        assert_eq!((other_epoch.after, offsets(&other_epoch)), (2, vec![3, 4]));
        let trimmed = h.resume(Some(1), Some("e1"));
        assert_eq!((trimmed.after, offsets(&trimmed)), (2, vec![3, 4]));
        let fresh = h.resume(None, None);
        assert_eq!((fresh.after, offsets(&fresh)), (4, vec![]));
    }

    #[test]
    fn without_a_ring_only_an_up_to_date_client_recovers() {
        let mut h = history(0, 10);
        push(&mut h, "a");
        assert!(h.resume(Some(1), Some("e1")).recovered);
        assert!(!h.resume(Some(0), Some("e1")).recovered);
    }
}
