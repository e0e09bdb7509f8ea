//! Pending requests (Tether mode): their wire ids and deadlines.
//!
//! A request's frame lives in the outbox like any message; this module only remembers which
//! requests still wait for a reply and until when. Wire ids are `q<number>` so a reply maps
//! back to its [`RequestId`] without a lookup table.

use crate::event::RequestId;
use crate::sorted::SortedMap;
use crate::time::Instant;

#[derive(Debug, Default)]
pub(crate) struct Requests {
    deadlines: SortedMap<RequestId, Instant>,
    /// Earliest deadline, possibly stale-early (spurious wake-ups are harmless).
    next_deadline: Option<Instant>,
}

impl Requests {
    pub(crate) fn wire_id(id: RequestId) -> String {
        format!("q{}", id.0)
    }

    pub(crate) fn parse_wire_id(wire: &str) -> Option<RequestId> {
        wire.strip_prefix('q')
            .and_then(crate::protocol::canonical_u64)
            .map(RequestId)
    }

    pub(crate) fn insert(&mut self, id: RequestId, deadline: Instant) {
        self.deadlines.insert(id, deadline);
        self.next_deadline = Some(self.next_deadline.map_or(deadline, |d| d.min(deadline)));
    }

    /// Forgets `id`; false if it was not pending.
    pub(crate) fn complete(&mut self, id: RequestId) -> bool {
        self.deadlines.remove(&id).is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.deadlines.len()
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.next_deadline
    }

    /// Removes and returns the requests whose deadline is at or before `now`.
    pub(crate) fn take_expired(&mut self, now: Instant) -> Vec<RequestId> {
        if self.next_deadline.is_none_or(|d| d > now) {
            return Vec::new();
        }
        let expired: Vec<RequestId> = self
            .deadlines
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| *id)
            .collect();
        self.deadlines.retain(|_, at| *at > now);
        self.next_deadline = self.deadlines.values().min().copied();
        expired
    }

    /// Removes and returns every pending request.
    pub(crate) fn take_all(&mut self) -> Vec<RequestId> {
        self.next_deadline = None;
        self.deadlines.take_keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_ids_round_trip_and_reject_garbage() {
        assert_eq!(
            Requests::parse_wire_id(&Requests::wire_id(RequestId(42))),
            Some(RequestId(42))
        );
        assert_eq!(Requests::parse_wire_id("x42"), None);
        assert_eq!(Requests::parse_wire_id("q-1"), None);
        assert_eq!(Requests::parse_wire_id("q"), None);
        // Only as the engine writes them: a peer that echoes ids does not add these.
        assert_eq!(Requests::parse_wire_id("q05"), None);
        assert_eq!(Requests::parse_wire_id("q+5"), None);
        assert_eq!(Requests::parse_wire_id("q0"), Some(RequestId(0)));
    }

    #[test]
    fn expiry_in_deadline_order() {
        let mut r = Requests::default();
        r.insert(RequestId(1), Instant::from_millis(30));
        r.insert(RequestId(2), Instant::from_millis(10));
        assert_eq!(r.next_deadline(), Some(Instant::from_millis(10)));
        assert_eq!(r.take_expired(Instant::from_millis(20)), vec![RequestId(2)]);
        assert_eq!(r.next_deadline(), Some(Instant::from_millis(30)));
        assert!(r.complete(RequestId(1)));
        assert!(!r.complete(RequestId(1)));
    }
}
