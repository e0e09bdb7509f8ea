//! A connection as the rest of the relay sees it: an id and an outbound queue. The hub
//! queues frames without blocking (it holds its lock while broadcasting), the connection's
//! writer drains them to the socket.
//!
//! Two kinds of items share the queue and are counted apart. *Offered* items (broadcasts,
//! answers) are the ones a client that stops reading would pile up: past their limits
//! (frames, or bytes of frames: a slow reader of large messages keeps them alive after the
//! history let them go) the peer is a slow consumer: that frame and every later one are
//! dropped (never a later one after a gap, which the client would take as having seen
//! everything before it) and the connection task closes the connection, so one client that
//! stops reading cannot make the relay buffer without bound. The client can reconnect and
//! resume from the channel history. *Pushed* items are the bursts the connection asked for
//! (a subscribe's replay, a document's): they never count against the offered limits, so a
//! client resuming many channels at once is not cut off, nor is the next broadcast after its
//! replays. They are bounded from the other side: while [`QueueLimits::frames`] of them are
//! queued, the connection's reader stops reading requests ([`Peer::replies_sent`]), so one
//! more request's burst is all that can come on top.

use crate::head::{head_of, FrameHead};
use crate::history::Stored;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tether_core::protocol::ServerMessage;
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Unique per relay, for the hub's subscriber tables and for logs.
pub(crate) type PeerId = u64;

/// An item's place in its connection's queue, from [`Peer::push_tracked`]: tells whether the
/// writer has taken it yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

/// One item queued for a connection.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A frame for this connection: a reply, a presence update, a `subscribed`.
    Frame(Utf8Bytes),
    /// A channel message; SSE also needs its offset for the event's `id:`.
    Message(Stored),
}

impl Outbound {
    /// The length of its frame in bytes.
    fn len(&self) -> usize {
        match self {
            Outbound::Frame(frame) => frame.len(),
            Outbound::Message(stored) => stored.frame.len(),
        }
    }

    /// The WebSocket text frame for this item.
    pub(crate) fn into_frame(self) -> Utf8Bytes {
        match self {
            Outbound::Frame(frame) => frame,
            Outbound::Message(stored) => stored.frame,
        }
    }
}

/// How much a connection's queue may hold; see [`Peer::with_limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueLimits {
    /// Offered items queued before the connection counts as a slow consumer; also the
    /// pushed items queued at which its reader stops reading requests.
    pub(crate) frames: usize,
    /// The most one request pushes (a replay and the frames around it): pushed items may
    /// reach `frames + burst`, and a push beyond that (which only a connection whose reader
    /// did not stop could cause) marks a slow consumer.
    pub(crate) burst: usize,
    /// Bytes of offered frames an `offer` (a broadcast) may find queued; with none queued
    /// it takes one, whatever its size.
    pub(crate) bytes: usize,
    /// Largest frame this connection may be sent; a larger one is replaced by an error.
    pub(crate) max_frame: usize,
}

impl QueueLimits {
    /// Only the frame limits: no byte limit, frames of any size.
    #[cfg(test)]
    pub(crate) fn frames(frames: usize, burst: usize) -> QueueLimits {
        QueueLimits {
            frames,
            burst,
            bytes: usize::MAX,
            max_frame: usize::MAX,
        }
    }
}

/// How a queued item counts against the limits.
#[derive(Debug, Clone, Copy)]
enum Cost {
    /// Offered (a broadcast, an answer), with its bytes.
    Offered(usize),
    /// Pushed (a burst the connection asked for).
    Pushed,
}

#[derive(Debug)]
struct Shared {
    /// Offered items queued.
    offered: AtomicUsize,
    /// The bytes of the frames in `offered`.
    offered_bytes: AtomicUsize,
    /// Pushed items queued.
    pushed: AtomicUsize,
    limits: QueueLimits,
    /// Set by the first frame dropped for a full queue; from then on nothing is queued.
    overflowed: AtomicBool,
    overflow: Notify,
    /// Notified when `pushed` falls below `limits.frames`: the reader may read again.
    replies_sent: Notify,
    /// Items ever queued and ever taken by the writer: the queue is first in, first out, so
    /// the n-th item queued is still waiting while fewer than n were taken.
    enqueued_total: AtomicU64,
    taken_total: AtomicU64,
    /// Notified whenever the writer takes an item (see [`Peer::taken_up_to`]).
    taken: Notify,
    /// The `taken_total` the connection's reader waits for before it reads its next frame;
    /// 0 while it waits for none (see [`PeerQueue::reader_reads_on`]).
    reader_waits_for: AtomicU64,
    /// Set once the client said `hello`: only then is it sent the protocol's own `ping`
    /// (a raw WebSocket client would get it as data), see [`Peer::said_hello`].
    said_hello: AtomicBool,
    /// Notified when a newer connection of the same client instance said `hello`: this one
    /// was given up by its client (see [`Peer::replace`]).
    replaced: Notify,
}

impl Shared {
    /// Counts an item of `cost` in (`queued`) or out of the queue. The item that takes
    /// the pushed items below the reader's bound wakes the reader.
    fn count(&self, cost: Cost, queued: bool) {
        match (cost, queued) {
            (Cost::Offered(bytes), true) => {
                self.offered.fetch_add(1, Ordering::Relaxed);
                self.offered_bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            (Cost::Offered(bytes), false) => {
                self.offered.fetch_sub(1, Ordering::Relaxed);
                self.offered_bytes.fetch_sub(bytes, Ordering::Relaxed);
            }
            (Cost::Pushed, true) => {
                self.pushed.fetch_add(1, Ordering::Relaxed);
            }
            (Cost::Pushed, false) => {
                if self.pushed.fetch_sub(1, Ordering::Relaxed) == self.limits.frames {
                    // `notify_one` stores a permit if the reader is not waiting yet.
                    self.replies_sent.notify_one();
                }
            }
        }
    }

    /// Marks the peer as a slow consumer: its connection task closes it (1013).
    fn overflow(&self) {
        self.overflowed.store(true, Ordering::Relaxed);
        // `notify_one` stores a permit, so the connection task sees it even if it is not
        // waiting right now.
        self.overflow.notify_one();
    }
}

/// The sending side of a connection's queue; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    id: PeerId,
    /// Each item with what it counts against the limits.
    tx: mpsc::UnboundedSender<(Outbound, Cost)>,
    shared: Arc<Shared>,
}

/// The receiving side, owned by the connection's writer.
#[derive(Debug)]
pub(crate) struct PeerQueue {
    rx: mpsc::UnboundedReceiver<(Outbound, Cost)>,
    shared: Arc<Shared>,
}

impl Peer {
    /// A peer whose queue may hold `limit` offered items before it counts as a slow
    /// consumer, and `limit + burst` pushed ones (replies the connection asked for).
    #[cfg(test)]
    pub(crate) fn new(id: PeerId, limit: usize, burst: usize) -> (Peer, PeerQueue) {
        Peer::with_limits(id, QueueLimits::frames(limit, burst))
    }

    /// A peer whose queue holds at most what `limits` allow. A connection that must never be
    /// sent a frame over `max_frame` bytes is a WebSocket, whose writer fails on a frame its
    /// write buffer cannot take (and whose client, with the default limits, refuses one over
    /// the relay's own limit): such a frame is replaced by `error{code:"too_large"}`, naming
    /// the id it carried, so the client is told instead of being disconnected.
    pub(crate) fn with_limits(id: PeerId, limits: QueueLimits) -> (Peer, PeerQueue) {
        // Unbounded on purpose: the hub must never wait on one connection while it holds
        // its lock; the limit is enforced by `offer` instead.
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            offered: AtomicUsize::new(0),
            offered_bytes: AtomicUsize::new(0),
            pushed: AtomicUsize::new(0),
            limits,
            overflowed: AtomicBool::new(false),
            overflow: Notify::new(),
            replies_sent: Notify::new(),
            enqueued_total: AtomicU64::new(0),
            taken_total: AtomicU64::new(0),
            taken: Notify::new(),
            reader_waits_for: AtomicU64::new(0),
            said_hello: AtomicBool::new(false),
            replaced: Notify::new(),
        });
        (
            Peer {
                id,
                tx,
                shared: shared.clone(),
            },
            PeerQueue { rx, shared },
        )
    }

    pub(crate) fn id(&self) -> PeerId {
        self.id
    }

    /// Queues `item`, a reply the connection asked for (a subscribe's replay, a document's
    /// changes or snapshot). It counts against neither offered limit: a client resuming
    /// several channels at once asks for several replays, and neither they nor the next
    /// broadcast must cut it off. Its bytes do not count either: a replay may be larger
    /// than the byte limit (the history it repeats is in memory anyway). Pushes are bounded
    /// by the reader instead, which stops reading requests while `limits.frames` pushed items
    /// are queued (see [`Peer::replies_sent`]); past `frames + burst`, which a reader that
    /// waits never reaches, the peer is a slow consumer.
    pub(crate) fn push(&self, item: Outbound) {
        self.push_tracked(item);
    }

    /// [`push`](Self::push), returning the item's ticket if it was queued, so that the
    /// sender can tell later whether it is still waiting (see [`Peer::is_queued`]).
    pub(crate) fn push_tracked(&self, item: Outbound) -> Option<Ticket> {
        let shared = &self.shared;
        if shared.overflowed.load(Ordering::Relaxed) {
            return None;
        }
        let limits = &shared.limits;
        if shared.pushed.load(Ordering::Relaxed) >= limits.frames.saturating_add(limits.burst) {
            shared.overflow();
            return None;
        }
        self.enqueue(item, false)
    }

    /// Queues `item`, as offered (counted against the offered limits) or pushed.
    fn enqueue(&self, item: Outbound, offered: bool) -> Option<Ticket> {
        let shared = &self.shared;
        let limits = &shared.limits;
        let item = if item.len() > limits.max_frame {
            Outbound::Frame(too_large(&item, limits.max_frame))
        } else {
            item
        };
        let cost = if offered {
            Cost::Offered(item.len())
        } else {
            Cost::Pushed
        };
        shared.count(cost, true);
        let ticket = Ticket(shared.enqueued_total.fetch_add(1, Ordering::Relaxed) + 1);
        if self.tx.send((item, cost)).is_err() {
            // The connection is gone; it will be removed from every table shortly.
            shared.count(cost, false);
            return None;
        }
        Some(ticket)
    }

    /// Whether the item of `ticket` is still queued, not yet taken by the writer. Two
    /// concurrent pushes may take their tickets and their places in opposite order, so the
    /// answer may be off for a moment, by the items pushed at the same time; callers use it
    /// only to avoid queuing a second copy of something already on its way.
    pub(crate) fn is_queued(&self, ticket: Ticket) -> bool {
        self.shared.taken_total.load(Ordering::Relaxed) < ticket.0
    }

    /// Queues `item` unless the offered items queued are over their limits (frames, or
    /// bytes with this one; pushed items do not count), in which case the peer is marked as
    /// a slow consumer and the item is dropped, and so is every later one, even once the
    /// queue has room again: delivered after the gap, a later message would make the client
    /// resume past it. Returns whether it was queued.
    pub(crate) fn offer(&self, item: Outbound) -> bool {
        let shared = &self.shared;
        if shared.overflowed.load(Ordering::Relaxed) {
            return false;
        }
        let offered = shared.offered.load(Ordering::Relaxed);
        let bytes_after = shared
            .offered_bytes
            .load(Ordering::Relaxed)
            .saturating_add(item.len());
        if offered >= shared.limits.frames || (offered > 0 && bytes_after > shared.limits.bytes) {
            shared.overflow();
            return false;
        }
        self.enqueue(item, true);
        true
    }

    /// Whether as many pushed items (replies the connection asked for) are queued as the
    /// reader lets pile up: it reads no further request until
    /// [`replies_sent`](Self::replies_sent).
    pub(crate) fn replies_pending(&self) -> bool {
        self.shared.pushed.load(Ordering::Relaxed) >= self.shared.limits.frames
    }

    /// Resolves when the pushed items queued may have fallen below the bound of
    /// [`replies_pending`](Self::replies_pending) (check it again: a wake-up may be stale).
    pub(crate) async fn replies_sent(&self) {
        self.shared.replies_sent.notified().await;
    }

    /// How many items the writer has taken so far: a count that moves shows a client that
    /// reads.
    pub(crate) fn taken_total(&self) -> u64 {
        self.shared.taken_total.load(Ordering::Relaxed)
    }

    /// How many items were ever queued: once [`taken_total`](Self::taken_total) reaches the
    /// count read after queuing an item, that item was taken (the queue is first in, first
    /// out, and the count was read after the item was in it).
    pub(crate) fn enqueued_total(&self) -> u64 {
        self.shared.enqueued_total.load(Ordering::Relaxed)
    }

    /// Resolves once the writer has taken `count` items in all.
    pub(crate) async fn taken_up_to(&self, count: u64) {
        loop {
            let taken = self.shared.taken.notified();
            tokio::pin!(taken);
            // Registered before the check, so a take between the two is not missed.
            taken.as_mut().enable();
            if self.taken_total() >= count {
                return;
            }
            taken.await;
        }
    }

    /// Records that the reader waits until the writer has taken `count` items in all before
    /// it reads its next frame (0: it no longer waits), for
    /// [`PeerQueue::reader_reads_on`].
    pub(crate) fn reader_waits_for(&self, count: u64) {
        self.shared.reader_waits_for.store(count, Ordering::Relaxed);
    }

    /// Records that the client said `hello`, so it speaks the Tether protocol: from now on
    /// its writer also sends it the protocol's `ping` messages (see
    /// [`PeerQueue::said_hello`]).
    pub(crate) fn said_hello(&self) {
        self.shared.said_hello.store(true, Ordering::Relaxed);
    }

    /// Resolves once the peer has been marked as a slow consumer.
    pub(crate) async fn overflowed(&self) {
        self.shared.overflow.notified().await;
    }

    /// Tells the connection task that its client instance has connected again: the client
    /// gave this connection up (found it dead), so it is dropped at once.
    pub(crate) fn replace(&self) {
        // `notify_one` stores a permit, so the task sees it even if it is not waiting now.
        self.shared.replaced.notify_one();
    }

    /// Completes once [`replace`](Self::replace) was called.
    pub(crate) async fn replaced(&self) {
        self.shared.replaced.notified().await;
    }
}

impl PeerQueue {
    /// The next queued item; `None` only once every [`Peer`] is dropped.
    pub(crate) async fn recv(&mut self) -> Option<Outbound> {
        let (item, cost) = self.rx.recv().await?;
        self.taken(cost);
        Some(item)
    }

    /// The next item if one is queued already.
    pub(crate) fn try_recv(&mut self) -> Option<Outbound> {
        let (item, cost) = self.rx.try_recv().ok()?;
        self.taken(cost);
        Some(item)
    }

    /// Whether the reader was waiting for the items just taken and, now that they are, reads
    /// its next frame at once ([`Peer::reader_waits_for`]): the answer to that frame may be
    /// queued in a moment, and can go out in the same write.
    pub(crate) fn reader_reads_on(&self) -> bool {
        let waits_for = self.shared.reader_waits_for.load(Ordering::Relaxed);
        waits_for != 0 && self.shared.taken_total.load(Ordering::Relaxed) >= waits_for
    }

    /// Whether the client said `hello`. A connection that did not may be any WebSocket
    /// client (raw mode), for which a protocol `ping` would be a text frame of data it never
    /// asked for; it gets WebSocket ping frames only, which its stack answers by itself.
    pub(crate) fn said_hello(&self) -> bool {
        self.shared.said_hello.load(Ordering::Relaxed)
    }

    /// Everything queued, decoded (tests read what the relay would have sent).
    #[cfg(test)]
    pub(crate) fn drain_messages(&mut self) -> Vec<tether_core::protocol::ServerMessage> {
        std::iter::from_fn(|| self.try_recv())
            .map(|item| {
                let frame = item.into_frame();
                tether_core::protocol::ServerMessage::decode(frame.as_str())
                    .unwrap_or_else(|e| panic!("relay sent an undecodable frame: {e}"))
            })
            .collect()
    }

    /// An item of `cost` left the queue.
    fn taken(&self, cost: Cost) {
        self.shared.count(cost, false);
        self.shared.taken_total.fetch_add(1, Ordering::Relaxed);
        self.shared.taken.notify_waiters();
    }
}

/// The `error` sent instead of `item`, a frame over `max` bytes: it names the type of the
/// frame and the id it carried (unless that is too long to echo).
fn too_large(item: &Outbound, max: usize) -> Utf8Bytes {
    let frame = match item {
        Outbound::Frame(frame) => frame,
        Outbound::Message(stored) => &stored.frame,
    };
    let FrameHead { kind, id, .. } = head_of(frame.as_str());
    let kind = kind.unwrap_or_default();
    tracing::warn!(
        kind,
        len = frame.len(),
        max,
        "frame too large for the connection; not sent"
    );
    crate::hub::frame(&ServerMessage::Error {
        code: crate::session::code::TOO_LARGE.to_owned(),
        message: format!(
            "the relay's {kind} frame would be {} bytes; this connection takes at most {max}",
            frame.len()
        ),
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn frame(s: &str) -> Outbound {
        Outbound::Frame(Utf8Bytes::from(s))
    }

    #[tokio::test]
    async fn offers_past_the_limit_are_dropped_and_flag_the_peer() {
        let (peer, mut queue) = Peer::new(1, 2, 0);
        assert!(peer.offer(frame("a")));
        assert!(peer.offer(frame("b")));
        assert!(!peer.offer(frame("c")));
        tokio::time::timeout(Duration::from_secs(1), peer.overflowed())
            .await
            .expect("flagged");
        assert_eq!(
            queue.recv().await.map(|o| o.into_frame().to_string()),
            Some("a".into())
        );
        // Room again, but "d" after the lost "c" would hide the gap.
        assert!(!peer.offer(frame("d")), "refused for good after a drop");
        peer.push(frame("e"));
        assert_eq!(
            queue.try_recv().map(|o| o.into_frame().to_string()),
            Some("b".into())
        );
        assert!(queue.try_recv().is_none(), "nothing after the gap");
    }

    #[tokio::test]
    async fn a_push_past_the_burst_also_refuses_everything_after_it() {
        let (peer, mut queue) = Peer::new(1, 1, 1);
        peer.push(frame("a"));
        peer.push(frame("b"));
        peer.push(frame("dropped"));
        assert!(queue.try_recv().is_some() && queue.try_recv().is_some());
        assert!(!peer.offer(frame("c")));
        peer.push(frame("d"));
        assert!(queue.try_recv().is_none());
    }

    #[tokio::test]
    async fn pushes_past_the_limit_stop_at_the_burst_allowance() {
        let (peer, _queue) = Peer::new(1, 2, 3);
        for i in 0..100 {
            peer.push(frame(&i.to_string()));
        }
        assert_eq!(
            peer.shared.pushed.load(Ordering::Relaxed),
            5,
            "limit 2 + burst 3"
        );
        tokio::time::timeout(Duration::from_secs(1), peer.overflowed())
            .await
            .expect("flagged as a slow consumer");
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_is_replaced_by_an_error_naming_its_id() {
        let limits = QueueLimits {
            max_frame: 64,
            ..QueueLimits::frames(10, 0)
        };
        let (peer, mut queue) = Peer::with_limits(1, limits);
        let reply = format!(
            r#"{{"type":"reply","id":"r1","payload":"{}"}}"#,
            "x".repeat(64)
        );
        peer.push(frame(&reply));
        peer.push(frame(r#"{"type":"pong","id":"p"}"#));
        let got: Vec<String> = std::iter::from_fn(|| queue.try_recv())
            .map(|o| o.into_frame().to_string())
            .collect();
        match ServerMessage::decode(&got[0]) {
            Ok(ServerMessage::Error { code, id, .. }) => {
                assert_eq!((code.as_str(), id.as_deref()), ("too_large", Some("r1")));
            }
            other => panic!("expected too_large, got {other:?}"),
        }
        assert_eq!(got[1], r#"{"type":"pong","id":"p"}"#, "smaller frames pass");
    }

    #[tokio::test]
    async fn offers_past_the_byte_limit_flag_the_peer_and_taking_frees_their_bytes() {
        let limits = QueueLimits {
            bytes: 10,
            ..QueueLimits::frames(100, 0)
        };
        let (peer, mut queue) = Peer::with_limits(1, limits);
        assert!(peer.offer(frame("12345")));
        assert!(peer.offer(frame("67890")), "exactly the limit");
        queue.try_recv();
        assert!(
            peer.offer(frame("abcde")),
            "the first one's bytes were given back"
        );
        assert!(!peer.offer(frame("f")), "11 bytes");
        tokio::time::timeout(Duration::from_secs(1), peer.overflowed())
            .await
            .expect("flagged");

        // An empty queue takes one frame of any size: the limit bounds a backlog, not a
        // message.
        let (peer, _queue) = Peer::with_limits(2, limits);
        assert!(peer.offer(frame(&"x".repeat(50))));
        assert!(!peer.offer(frame("y")));

        // A replay the connection asked for (pushed) does not count: the broadcasts after
        // it are still taken.
        let (peer, mut queue) = Peer::with_limits(3, limits);
        peer.push(frame(&"r".repeat(18)));
        assert!(peer.offer(frame("live")), "not cut off by its own replay");
        assert!(queue.try_recv().is_some() && queue.try_recv().is_some());
        assert_eq!(peer.shared.offered_bytes.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn pushes_do_not_count_against_offers_and_hold_the_reader_at_the_limit() {
        let (peer, mut queue) = Peer::new(1, 3, 4);
        // Two replays the connection asked for, past the offered limit together.
        for _ in 0..5 {
            peer.push(frame("replay"));
        }
        assert!(peer.replies_pending(), "3 or more pushed: the reader waits");
        assert!(
            peer.offer(frame("live")),
            "a broadcast is not cut off by them"
        );
        assert!(peer.offer(frame("live")) && peer.offer(frame("live")));
        assert!(!peer.offer(frame("live")), "but 3 offered are the limit");

        let (peer, mut queue2) = Peer::new(2, 3, 4);
        for _ in 0..4 {
            peer.push(frame("replay"));
        }
        let taken = peer.taken_total();
        queue2.try_recv();
        assert!(peer.replies_pending(), "still 3");
        queue2.try_recv();
        assert!(!peer.replies_pending());
        assert_eq!(peer.taken_total(), taken + 2);
        // The item that went below the bound left a wake-up for the reader.
        tokio::time::timeout(Duration::from_secs(1), peer.replies_sent())
            .await
            .expect("woken");
        assert!(queue.try_recv().is_some());
    }

    #[tokio::test]
    async fn a_ticket_tells_whether_its_item_is_still_queued() {
        let (peer, mut queue) = Peer::new(1, 10, 0);
        let first = peer.push_tracked(frame("a")).expect("queued");
        let second = peer.push_tracked(frame("b")).expect("queued");
        assert!(peer.is_queued(first) && peer.is_queued(second));
        queue.try_recv();
        assert!(!peer.is_queued(first) && peer.is_queued(second));
        queue.recv().await;
        assert!(!peer.is_queued(second));
    }

    #[test]
    fn the_reader_reads_on_once_what_it_waits_for_is_taken() {
        let (peer, mut queue) = Peer::new(1, 10, 0);
        peer.push(frame("a"));
        peer.push(frame("b"));
        assert!(!queue.reader_reads_on(), "it waits for nothing");
        peer.reader_waits_for(peer.enqueued_total());
        queue.try_recv();
        assert!(
            !queue.reader_reads_on(),
            "one of its answers is still queued"
        );
        queue.try_recv();
        assert!(queue.reader_reads_on(), "both taken: it reads on");
        peer.reader_waits_for(0);
        assert!(!queue.reader_reads_on(), "it read on");
    }

    #[tokio::test]
    async fn pushes_go_past_the_limit_within_the_burst() {
        let (peer, mut queue) = Peer::new(1, 1, 4);
        for _ in 0..5 {
            peer.push(frame("x"));
        }
        let mut n = 0;
        while queue.try_recv().is_some() {
            n += 1;
        }
        assert_eq!(n, 5);
    }
}
