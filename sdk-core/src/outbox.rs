//! The outbox: bounded storage for messages the app handed over and the server has not yet
//! taken (or, for acknowledged sends, not yet acknowledged).
//!
//! It owns two FIFO queues: `queued` (not written to any transport yet) and `in_flight`
//! (written, awaiting an ack or a reply, or — with a driver that reports what its socket took
//! — for the socket to take them; kept so they can be re-sent after a reconnect). The
//! bounds in messages and bytes cover both, except the entries the socket is taking: those
//! are handed over already (bounded by the engine's write batch), and counting them would
//! make room for new messages by dropping queued ones. When a new message does not fit, the oldest
//! *queued* messages are dropped first (in-flight ones have most likely reached the server
//! already), then the oldest in-flight ones; the caller reports every dropped id. Messages whose
//! TTL has passed are removed before they can be sent, so nothing that timed out is ever sent
//! late. An acknowledged entry may also carry an ack deadline (the app's timeout): the outbox
//! says when it passes, queued (the entry expires with it) or in flight (it stays for its ack).

use crate::action::Frame;
use crate::config::{OutboxConfig, OverflowPolicy};
use crate::event::{MessageId, RequestId};
use crate::time::Instant;
use std::collections::VecDeque;

/// What an entry waits for once written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Awaiting {
    /// Nothing: it leaves the outbox when written.
    Nothing,
    /// Nothing from the server, but the transport must take it: handed to a driver that
    /// reports the bytes its socket took ([`Engine::transport_progress`]), it leaves once they
    /// reach this offset (the end of its frame among everything handed to that transport),
    /// and goes back to the queue if the transport ends first.
    ///
    /// [`Engine::transport_progress`]: crate::Engine::transport_progress
    Taken(u64),
    /// An `ack` with this wire id.
    Ack(String),
    /// A `reply` to this request.
    Reply(RequestId),
}

#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) id: MessageId,
    pub(crate) frame: Frame,
    pub(crate) expires_at: Option<Instant>,
    /// When the app stops waiting for the acknowledgement (an acked send with a timeout; never
    /// after `expires_at`). Taken when reported, so it is reported once.
    pub(crate) ack_due: Option<Instant>,
    pub(crate) awaiting: Awaiting,
    /// Whether it was written before (a resend after reconnect if written again).
    pub(crate) written: bool,
}

/// One entry taken for writing by [`Outbox::next_to_send`].
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) frame: Frame,
    /// It stays in the outbox until acknowledged or replied to.
    pub(crate) awaits: bool,
    /// An acknowledged message written on an earlier connection (what `Stats::resent`
    /// counts; a request written again is not a message there).
    pub(crate) resend: bool,
}

/// What [`Outbox::expire`] removed.
#[derive(Debug, Default)]
pub(crate) struct Expired {
    /// Every entry removed, with what it awaited, oldest first.
    pub(crate) removed: Vec<(MessageId, Awaiting)>,
    /// Those whose ack deadline came with their TTL: the app's wait for them ends now.
    pub(crate) ack_due: Vec<MessageId>,
}

/// Refusals from [`Outbox::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The message alone exceeds the byte bound.
    TooLarge { size: usize, max: usize },
    /// Full and the policy is `RejectNew`.
    Full,
}

#[derive(Debug)]
pub(crate) struct Outbox {
    config: OutboxConfig,
    queued: VecDeque<Entry>,
    in_flight: VecDeque<Entry>,
    bytes: usize,
    /// Entries, and their bytes, that the transport is taking (`Awaiting::Taken`): outside the
    /// bounds.
    taking: usize,
    taking_bytes: usize,
    /// Earliest TTL among queued entries, possibly stale-early (a spurious wake-up is harmless;
    /// rescanning on every removal would make sends O(n)).
    next_expiry: Option<Instant>,
    /// Earliest unreported ack deadline among in-flight entries, stale-early like
    /// `next_expiry`. (A queued entry's ack deadline is never before its expiry.)
    next_ack_due: Option<Instant>,
}

impl Outbox {
    pub(crate) fn new(config: OutboxConfig) -> Self {
        Outbox {
            config,
            queued: VecDeque::new(),
            in_flight: VecDeque::new(),
            bytes: 0,
            taking: 0,
            taking_bytes: 0,
            next_expiry: None,
            next_ack_due: None,
        }
    }

    /// Messages held (queued + in flight).
    pub(crate) fn len(&self) -> usize {
        self.queued.len() + self.in_flight.len()
    }

    /// Bytes held (queued + in flight).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.next_expiry
    }

    /// When an in-flight entry's ack deadline next passes (possibly early): call
    /// [`Outbox::overdue_acks`] then.
    pub(crate) fn next_ack_due(&self) -> Option<Instant> {
        self.next_ack_due
    }

    /// Where entry `id` is: `Some(false)` queued, `Some(true)` in flight, `None` not held.
    /// A scan: for the rare question (an acked send's wait timing out), not a hot path.
    pub(crate) fn holds(&self, id: MessageId) -> Option<bool> {
        if self.in_flight.iter().any(|e| e.id == id) {
            Some(true)
        } else if self.queued.iter().any(|e| e.id == id) {
            Some(false)
        } else {
            None
        }
    }

    /// Adds an entry at the back. On success returns the entries dropped to make room, oldest
    /// first.
    pub(crate) fn push(&mut self, entry: Entry) -> Result<Vec<(MessageId, Awaiting)>, PushError> {
        let size = entry.frame.len();
        if size > self.config.max_bytes {
            return Err(PushError::TooLarge {
                size,
                max: self.config.max_bytes,
            });
        }
        let mut dropped = Vec::new();
        while self.len() - self.taking + 1 > self.config.max_messages
            || self.bytes - self.taking_bytes + size > self.config.max_bytes
        {
            if self.config.overflow == OverflowPolicy::RejectNew {
                return Err(PushError::Full);
            }
            match self.pop_oldest() {
                Some(old) => dropped.push((old.id, old.awaiting)),
                None => break,
            }
        }
        if let Some(at) = entry.expires_at {
            self.next_expiry = Some(self.next_expiry.map_or(at, |cur| cur.min(at)));
        }
        self.bytes += size;
        self.queued.push_back(entry);
        Ok(dropped)
    }

    /// The oldest entry that can be dropped: never one the transport is taking (its frame is
    /// in the driver's hands and may still be written; it is bounded by the write batch).
    fn pop_oldest(&mut self) -> Option<Entry> {
        let old = match self.queued.pop_front() {
            Some(old) => old,
            None => {
                let pos = self
                    .in_flight
                    .iter()
                    .position(|e| !matches!(e.awaiting, Awaiting::Taken(_)))?;
                self.in_flight.remove(pos)?
            }
        };
        self.bytes -= old.frame.len();
        Some(old)
    }

    /// Whether as many entries as the outbox holds are being taken by the transport: hand
    /// over no more until some are (empty messages cost no bytes of the write batch).
    pub(crate) fn taking_is_full(&self) -> bool {
        self.taking >= self.config.max_messages
    }

    /// Whether entries wait to be written (not only for their acks).
    pub(crate) fn has_unsent(&self) -> bool {
        !self.queued.is_empty()
    }

    /// Takes the next queued entry to write. Entries awaiting an ack or a reply stay (as in
    /// flight) with a copy of their frame for a possible resend. Expired entries are never
    /// returned: call [`Outbox::expire`] first.
    ///
    /// `handed`: with a driver that reports what its socket took, the bytes already handed to
    /// this transport; an entry that awaits nothing then stays (in flight) until the socket
    /// takes it ([`Awaiting::Taken`]).
    pub(crate) fn next_to_send(&mut self, handed: Option<u64>) -> Option<Outgoing> {
        let entry = self.queued.pop_front()?;
        Some(self.hand_over(entry, handed))
    }

    /// Whether `size` more bytes would be written at once by [`Outbox::push_written`]: nothing
    /// is queued ahead of them, and they fit without dropping anything.
    pub(crate) fn can_write_at_once(&self, size: usize) -> bool {
        self.queued.is_empty()
            && self.len() - self.taking < self.config.max_messages
            && self.bytes - self.taking_bytes + size <= self.config.max_bytes
    }

    /// [`Outbox::push`] then [`Outbox::next_to_send`] without the round trip through the
    /// queue, when [`Outbox::can_write_at_once`] says nothing would be dropped or overtaken.
    pub(crate) fn push_written(&mut self, entry: Entry, handed: Option<u64>) -> Outgoing {
        debug_assert!(self.can_write_at_once(entry.frame.len()));
        self.bytes += entry.frame.len();
        self.hand_over(entry, handed)
    }

    /// What [`Outbox::next_to_send`] does with the entry it took from the queue.
    fn hand_over(&mut self, mut entry: Entry, handed: Option<u64>) -> Outgoing {
        let resend = entry.written && matches!(entry.awaiting, Awaiting::Ack(_));
        if let (Awaiting::Nothing, Some(handed)) = (&entry.awaiting, handed) {
            entry.awaiting = Awaiting::Taken(handed + entry.frame.progress_len());
            self.taking += 1;
            self.taking_bytes += entry.frame.len();
        }
        if entry.awaiting == Awaiting::Nothing {
            self.bytes -= entry.frame.len();
            Outgoing {
                frame: entry.frame,
                awaits: false,
                resend,
            }
        } else {
            entry.written = true;
            if let Some(at) = entry.ack_due {
                self.next_ack_due = Some(self.next_ack_due.map_or(at, |cur| cur.min(at)));
            }
            let frame = entry.frame.clone();
            self.in_flight.push_back(entry);
            Outgoing {
                frame,
                awaits: true,
                resend,
            }
        }
    }

    /// The transport took `offset` bytes of what was handed to it: removes the entries it
    /// took ([`Awaiting::Taken`] up to `offset`); returns how many. They were handed in order,
    /// so the scan stops at the first one not taken yet.
    pub(crate) fn taken(&mut self, offset: u64) -> usize {
        let mut removed = 0;
        let mut i = 0;
        while let Some(entry) = self.in_flight.get(i) {
            match entry.awaiting {
                Awaiting::Taken(end) if end <= offset => {
                    self.remove_in_flight_at(i);
                    removed += 1;
                }
                Awaiting::Taken(_) => break,
                _ => i += 1,
            }
        }
        removed
    }

    /// Empties the outbox but for what the server may still settle during a close handshake:
    /// the entries the transport is still taking (the driver writes them ahead of its close
    /// frame, and the socket's progress settles them) and the written ones awaiting their ack
    /// or reply (a server answers what came before the close frame before it answers the
    /// close). Returns every other entry's id and what it awaited: what was never written.
    pub(crate) fn drain_all_but_written(&mut self) -> Vec<(MessageId, Awaiting)> {
        let mut removed = Vec::new();
        let mut kept = VecDeque::new();
        let mut kept_bytes = 0;
        for e in self.in_flight.drain(..) {
            if matches!(
                e.awaiting,
                Awaiting::Taken(_) | Awaiting::Ack(_) | Awaiting::Reply(_)
            ) {
                kept_bytes += e.frame.len();
                kept.push_back(e);
            } else {
                removed.push((e.id, e.awaiting));
            }
        }
        removed.extend(self.queued.drain(..).map(|e| (e.id, e.awaiting)));
        self.in_flight = kept;
        self.bytes = kept_bytes;
        self.next_expiry = None;
        removed
    }

    /// Removes the written entries awaiting an ack or a reply (those a close kept for its
    /// handshake, [`Outbox::drain_all_but_written`]); returns their ids, oldest first.
    pub(crate) fn drain_awaiting_answers(&mut self) -> Vec<(MessageId, Awaiting)> {
        let mut removed = Vec::new();
        let bytes = &mut self.bytes;
        self.in_flight.retain_mut(|e| match e.awaiting {
            Awaiting::Ack(_) | Awaiting::Reply(_) => {
                *bytes -= e.frame.len();
                removed.push((e.id, std::mem::replace(&mut e.awaiting, Awaiting::Nothing)));
                false
            }
            _ => true,
        });
        removed
    }

    /// Removes the in-flight entry awaiting ack `wire_id`. Acks usually come in order, so the
    /// front is checked first.
    pub(crate) fn acknowledge(&mut self, wire_id: &str) -> Option<MessageId> {
        let pos = self
            .in_flight
            .iter()
            .position(|e| matches!(&e.awaiting, Awaiting::Ack(w) if w == wire_id))?;
        self.remove_in_flight_at(pos)
    }

    /// Removes the entry (queued or in flight) awaiting a reply to `request`.
    pub(crate) fn remove_request(&mut self, request: RequestId) -> Option<MessageId> {
        let wanted = Awaiting::Reply(request);
        if let Some(pos) = self.in_flight.iter().position(|e| e.awaiting == wanted) {
            return self.remove_in_flight_at(pos);
        }
        let pos = self.queued.iter().position(|e| e.awaiting == wanted)?;
        let entry = self.queued.remove(pos)?;
        self.bytes -= entry.frame.len();
        Some(entry.id)
    }

    /// Removes the entry with local id `id`, wherever it is.
    pub(crate) fn remove_message(&mut self, id: MessageId) -> bool {
        if let Some(pos) = self.in_flight.iter().position(|e| e.id == id) {
            return self.remove_in_flight_at(pos).is_some();
        }
        if let Some(pos) = self.queued.iter().position(|e| e.id == id) {
            if let Some(entry) = self.queued.remove(pos) {
                self.bytes -= entry.frame.len();
                return true;
            }
        }
        false
    }

    /// Removes the largest in-flight entry if it is `size` bytes or more (the largest frame
    /// written on the connection); returns it with what it awaited.
    pub(crate) fn take_largest_in_flight(&mut self, size: usize) -> Option<(MessageId, Awaiting)> {
        let (pos, _) = self
            .in_flight
            .iter()
            .enumerate()
            .filter(|(_, e)| e.frame.len() >= size)
            .max_by_key(|(_, e)| e.frame.len())?;
        let entry = self.remove_in_flight_entry(pos)?;
        Some((entry.id, entry.awaiting))
    }

    /// Finds the local id of the entry with ack wire id `wire_id`.
    pub(crate) fn id_for_wire(&self, wire_id: &str) -> Option<MessageId> {
        self.in_flight
            .iter()
            .chain(self.queued.iter())
            .find(|e| matches!(&e.awaiting, Awaiting::Ack(w) if w == wire_id))
            .map(|e| e.id)
    }

    fn remove_in_flight_at(&mut self, pos: usize) -> Option<MessageId> {
        self.remove_in_flight_entry(pos).map(|e| e.id)
    }

    fn remove_in_flight_entry(&mut self, pos: usize) -> Option<Entry> {
        let entry = self.in_flight.remove(pos)?;
        self.bytes -= entry.frame.len();
        if let Awaiting::Taken(_) = entry.awaiting {
            self.taking -= 1;
            self.taking_bytes -= entry.frame.len();
        }
        Some(entry)
    }

    /// The connection dropped: in-flight entries go back to the front of the queue, in their
    /// original order, to be re-sent first. Requests are handed back to the caller instead
    /// when `keep_requests` is false (they fail with `ConnectionLost`).
    pub(crate) fn requeue_in_flight(&mut self, keep_requests: bool) -> Vec<RequestId> {
        let mut lost_requests = Vec::new();
        self.taking = 0;
        self.taking_bytes = 0;
        while let Some(mut entry) = self.in_flight.pop_back() {
            match entry.awaiting {
                Awaiting::Reply(req) if !keep_requests => {
                    self.bytes -= entry.frame.len();
                    lost_requests.push(req);
                }
                _ => {
                    if let Some(at) = entry.expires_at {
                        self.next_expiry = Some(self.next_expiry.map_or(at, |cur| cur.min(at)));
                    }
                    // Never taken by the socket: not written, so not a resend either.
                    if let Awaiting::Taken(_) = entry.awaiting {
                        entry.awaiting = Awaiting::Nothing;
                        entry.written = false;
                    }
                    self.queued.push_front(entry);
                }
            }
        }
        lost_requests.reverse();
        lost_requests
    }

    /// Removes the in-flight entries (written, or being taken), leaving the queued ones.
    pub(crate) fn drain_in_flight(&mut self) -> Vec<(MessageId, Awaiting)> {
        self.taking = 0;
        self.taking_bytes = 0;
        let bytes = &mut self.bytes;
        self.in_flight
            .drain(..)
            .map(|e| {
                *bytes -= e.frame.len();
                (e.id, e.awaiting)
            })
            .collect()
    }

    /// Removes queued entries whose TTL is at or before `now`; returns them.
    pub(crate) fn expire(&mut self, now: Instant) -> Expired {
        let mut expired = Expired::default();
        if self.next_expiry.is_none_or(|at| at > now) {
            return expired;
        }
        let mut next = None::<Instant>;
        let mut bytes = self.bytes;
        self.queued.retain_mut(|e| match e.expires_at {
            Some(at) if at <= now => {
                bytes -= e.frame.len();
                if e.ack_due.take().is_some_and(|due| due <= now) {
                    expired.ack_due.push(e.id);
                }
                let awaiting = std::mem::replace(&mut e.awaiting, Awaiting::Nothing);
                expired.removed.push((e.id, awaiting));
                false
            }
            Some(at) => {
                next = Some(next.map_or(at, |cur| cur.min(at)));
                true
            }
            None => true,
        });
        self.bytes = bytes;
        self.next_expiry = next;
        expired
    }

    /// The in-flight entries whose ack deadline is at or before `now` and not yet reported,
    /// oldest first. They stay in flight, awaiting their ack; each is returned once.
    pub(crate) fn overdue_acks(&mut self, now: Instant) -> Vec<MessageId> {
        let mut overdue = Vec::new();
        if self.next_ack_due.is_none_or(|at| at > now) {
            return overdue;
        }
        let mut next = None::<Instant>;
        for e in &mut self.in_flight {
            match e.ack_due {
                Some(at) if at <= now => {
                    e.ack_due = None;
                    overdue.push(e.id);
                }
                Some(at) => next = Some(next.map_or(at, |cur| cur.min(at))),
                None => {}
            }
        }
        self.next_ack_due = next;
        overdue
    }

    /// Empties the outbox (engine closing); returns every entry's id and what it awaited.
    pub(crate) fn drain_all(&mut self) -> Vec<(MessageId, Awaiting)> {
        self.bytes = 0;
        self.taking = 0;
        self.taking_bytes = 0;
        self.next_expiry = None;
        self.next_ack_due = None;
        self.in_flight
            .drain(..)
            .chain(self.queued.drain(..))
            .map(|e| (e.id, e.awaiting))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64, text: &str) -> Entry {
        Entry {
            id: MessageId(id),
            frame: Frame::Text(text.to_owned()),
            expires_at: None,
            ack_due: None,
            awaiting: Awaiting::Nothing,
            written: false,
        }
    }

    /// An entry awaiting the ack of wire id `wire`.
    fn acked(id: u64, text: &str, wire: &str) -> Entry {
        Entry {
            awaiting: Awaiting::Ack(wire.to_owned()),
            ..entry(id, text)
        }
    }

    fn outbox(max_messages: usize, max_bytes: usize) -> Outbox {
        Outbox::new(OutboxConfig {
            max_messages,
            max_bytes,
            ..OutboxConfig::default()
        })
    }

    #[test]
    fn holds_tells_queued_from_in_flight_and_gone() {
        let mut o = outbox(10, 100);
        o.push(acked(1, "a", "w1")).unwrap();
        assert_eq!(o.holds(MessageId(1)), Some(false), "queued");
        assert!(o.next_to_send(None).is_some());
        assert_eq!(o.holds(MessageId(1)), Some(true), "in flight");
        o.requeue_in_flight(true);
        assert_eq!(
            o.holds(MessageId(1)),
            Some(false),
            "queued again for a resend"
        );
        o.next_to_send(None);
        assert_eq!(o.acknowledge("w1"), Some(MessageId(1)));
        assert_eq!(o.holds(MessageId(1)), None, "gone");
        assert_eq!(o.holds(MessageId(2)), None, "never held");
    }

    #[test]
    fn drops_oldest_by_count_and_bytes() {
        let mut o = outbox(2, 100);
        assert!(o.push(entry(1, "a")).unwrap().is_empty());
        assert!(o.push(entry(2, "b")).unwrap().is_empty());
        assert_eq!(
            o.push(entry(3, "c")).unwrap(),
            vec![(MessageId(1), Awaiting::Nothing)]
        );
        let mut o = outbox(10, 10);
        o.push(entry(1, "12345")).unwrap();
        o.push(entry(2, "12345")).unwrap();
        assert_eq!(
            o.push(entry(3, "123")).unwrap(),
            vec![(MessageId(1), Awaiting::Nothing)]
        );
        assert_eq!(o.bytes(), 8);
        assert_eq!(
            o.push(entry(4, "12345678901")),
            Err(PushError::TooLarge { size: 11, max: 10 })
        );
    }

    #[test]
    fn queued_are_dropped_before_in_flight() {
        let mut o = outbox(2, 100);
        o.push(acked(1, "a", "w1")).unwrap();
        o.next_to_send(None).unwrap();
        o.push(entry(2, "b")).unwrap();
        assert_eq!(
            o.push(entry(3, "c")).unwrap(),
            vec![(MessageId(2), Awaiting::Nothing)]
        );
        assert_eq!(o.acknowledge("w1"), Some(MessageId(1)));
        assert_eq!(o.len(), 1);
    }

    #[test]
    fn requeue_puts_in_flight_first_in_order() {
        let mut o = outbox(10, 100);
        for i in 1..=3 {
            o.push(acked(i, &format!("m{i}"), &format!("w{i}")))
                .unwrap();
        }
        o.next_to_send(None);
        o.next_to_send(None);
        o.requeue_in_flight(true);
        let order: Vec<(Frame, bool)> =
            std::iter::from_fn(|| o.next_to_send(None).map(|out| (out.frame, out.resend)))
                .collect();
        assert_eq!(
            order,
            vec![
                (Frame::Text("m1".into()), true),
                (Frame::Text("m2".into()), true),
                (Frame::Text("m3".into()), false)
            ]
        );
    }

    #[test]
    fn expiry_removes_only_due_entries() {
        let mut o = outbox(10, 100);
        let mut e = entry(1, "old");
        e.expires_at = Some(Instant::from_millis(10));
        o.push(e).unwrap();
        let mut e = entry(2, "new");
        e.expires_at = Some(Instant::from_millis(20));
        o.push(e).unwrap();
        o.push(entry(3, "forever")).unwrap();
        assert_eq!(o.next_expiry(), Some(Instant::from_millis(10)));
        let gone: Vec<_> = o
            .expire(Instant::from_millis(15))
            .removed
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(gone, vec![MessageId(1)]);
        assert_eq!(o.next_expiry(), Some(Instant::from_millis(20)));
        assert_eq!(o.bytes(), 10);
    }

    #[test]
    fn ack_deadlines_are_reported_once_in_flight_and_with_expiry_when_queued() {
        let mut o = outbox(10, 100);
        let at = |ms| Some(Instant::from_millis(ms));
        let mut written = acked(1, "a", "w1");
        (written.expires_at, written.ack_due) = (at(10), at(10));
        o.push(written).unwrap();
        o.next_to_send(None).unwrap();
        let mut queued = acked(2, "b", "w2");
        (queued.expires_at, queued.ack_due) = (at(20), at(20));
        o.push(queued).unwrap();
        assert_eq!(o.next_ack_due(), at(10));
        assert!(o.overdue_acks(Instant::from_millis(9)).is_empty());
        assert_eq!(o.overdue_acks(Instant::from_millis(10)), vec![MessageId(1)]);
        assert!(o.overdue_acks(Instant::from_millis(30)).is_empty(), "once");
        assert_eq!(o.next_ack_due(), None);
        assert_eq!(o.holds(MessageId(1)), Some(true), "still awaiting its ack");
        let expired = o.expire(Instant::from_millis(20));
        assert_eq!(expired.ack_due, vec![MessageId(2)]);
        assert_eq!(
            expired.removed,
            vec![(MessageId(2), Awaiting::Ack("w2".into()))]
        );
    }

    #[test]
    fn reject_new_policy() {
        let mut o = Outbox::new(OutboxConfig {
            max_messages: 1,
            overflow: OverflowPolicy::RejectNew,
            ..OutboxConfig::default()
        });
        o.push(entry(1, "a")).unwrap();
        assert_eq!(o.push(entry(2, "b")), Err(PushError::Full));
        assert_eq!(o.len(), 1);
    }
}
