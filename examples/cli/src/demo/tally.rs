//! The demo's bookkeeping: what the publishers handed to the SDK, what the observer received,
//! what was reported dropped, and whether anything vanished without a report.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Counts kept while the demo runs. Messages are identified by the sequence number in their
/// payload, unique across publishers.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Every message accepted by a publisher's SDK, by sequence number.
    pub(crate) sent: BTreeSet<u64>,
    /// (publisher, SDK message id) → sequence number, to map drop and ack reports back.
    pub(crate) ids: HashMap<(&'static str, u64), u64>,
    /// Sequence numbers reported dropped (with a reason) by a publisher's SDK.
    pub(crate) reported: BTreeSet<u64>,
    /// Sequence numbers the observer received, with how many times.
    pub(crate) received: BTreeMap<u64, u32>,
    /// Whether the observer is currently disconnected or not yet resubscribed.
    pub(crate) observer_away: bool,
    /// Subscriptions the observer has confirmed so far.
    pub(crate) observer_subscriptions: u32,
    /// Messages the relay stored while the observer was away: it can only have them by replay.
    pub(crate) stored_while_away: BTreeSet<u64>,
}

/// The final accounting.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) sent: usize,
    pub(crate) delivered: usize,
    pub(crate) replayed: usize,
    pub(crate) dropped: usize,
    pub(crate) reported: usize,
    pub(crate) duplicates: usize,
    pub(crate) lost: usize,
}

impl Summary {
    /// The demo's claim: everything sent was delivered exactly once or reported dropped.
    /// (`dropped == reported` follows from `lost == 0`: a message not delivered is either
    /// reported or lost.)
    pub(crate) fn holds(&self) -> bool {
        self.lost == 0 && self.duplicates == 0
    }

    /// The summary line.
    pub(crate) fn line(&self) -> String {
        format!(
            "sent {}, delivered {}, replayed {}, dropped {} (reported {}), duplicates {}, lost {}",
            self.sent,
            self.delivered,
            self.replayed,
            self.dropped,
            self.reported,
            self.duplicates,
            self.lost
        )
    }
}

impl Tally {
    /// The sequence number of `publisher`'s message `id`.
    pub(crate) fn seq(&self, publisher: &'static str, id: u64) -> Option<u64> {
        self.ids.get(&(publisher, id)).copied()
    }

    /// Whether every sent message has been received or reported dropped.
    pub(crate) fn settled(&self) -> bool {
        self.sent
            .iter()
            .all(|seq| self.received.contains_key(seq) || self.reported.contains(seq))
    }

    /// Sequence numbers neither received nor reported.
    pub(crate) fn lost(&self) -> Vec<u64> {
        self.sent
            .iter()
            .copied()
            .filter(|seq| !self.received.contains_key(seq) && !self.reported.contains(seq))
            .collect()
    }

    pub(crate) fn summary(&self) -> Summary {
        let delivered: BTreeSet<u64> = self
            .received
            .keys()
            .copied()
            .filter(|seq| self.sent.contains(seq))
            .collect();
        let dropped = self.sent.difference(&delivered).count();
        let reported_and_missing = self
            .reported
            .iter()
            .filter(|seq| !delivered.contains(seq))
            .count();
        let lost = self.lost().len();
        Summary {
            sent: self.sent.len(),
            delivered: delivered.len(),
            replayed: self.stored_while_away.intersection(&delivered).count(),
            dropped,
            reported: reported_and_missing,
            duplicates: self
                .received
                .values()
                .map(|n| (*n as usize).saturating_sub(1))
                .sum(),
            lost,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreported_missing_messages_count_as_lost() {
        let mut t = Tally::default();
        t.sent.extend(1..=5);
        t.received.extend([(1, 1), (2, 1), (3, 2)]);
        t.reported.insert(4);
        let s = t.summary();
        assert_eq!(
            (s.delivered, s.dropped, s.reported, s.duplicates, s.lost),
            (3, 2, 1, 1, 1)
        );
        assert!(!s.holds());
        t.reported.insert(5);
        t.received.insert(3, 1);
        assert!(t.summary().holds());
    }
}
