//! A connection as the rest of the relay sees it: an id and an outbound queue. The hub
//! queues frames without blocking (it holds its lock while broadcasting), the connection's
//! writer drains them to the socket. A queue that grows past its limits (frames, or bytes of
//! frames: a slow reader of large messages keeps them alive after the history let them go)
//! marks a slow consumer: that frame and every later one are dropped (never a later one after a gap, which
//! the client would take as having seen everything before it) and the connection task closes
//! the connection, so one client that stops reading cannot make the relay buffer without
//! bound. The client can reconnect and resume from the channel history.

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
    /// Items queued before the connection counts as a slow consumer.
    pub(crate) frames: usize,
    /// How far past `frames` a `push` (a burst the connection asked for) may go.
    pub(crate) burst: usize,
    /// Bytes of frames an `offer` (a broadcast) may find queued; an empty queue always
    /// takes one, whatever its size.
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

#[derive(Debug)]
struct Shared {
    queued: AtomicUsize,
    /// The bytes of the frames in `queued`.
    queued_bytes: AtomicUsize,
    limits: QueueLimits,
    /// Set by the first frame dropped for a full queue; from then on nothing is queued.
    overflowed: AtomicBool,
    overflow: Notify,
    /// Items ever queued and ever taken by the writer: the queue is first in, first out, so
    /// the n-th item queued is still waiting while fewer than n were taken.
    pushed: AtomicU64,
    taken: AtomicU64,
    /// Set once the client said `hello`: only then is it sent the protocol's own `ping`
    /// (a raw WebSocket client would get it as data), see [`Peer::said_hello`].
    said_hello: AtomicBool,
}

impl Shared {
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
    /// Each item with the bytes it counts against the byte limit (0 for a push).
    tx: mpsc::UnboundedSender<(Outbound, usize)>,
    shared: Arc<Shared>,
}

/// The receiving side, owned by the connection's writer.
#[derive(Debug)]
pub(crate) struct PeerQueue {
    rx: mpsc::UnboundedReceiver<(Outbound, usize)>,
    shared: Arc<Shared>,
}

impl Peer {
    /// A peer whose queue may hold `limit` items before it counts as a slow consumer, plus
    /// `burst` more for replies the connection asked for (a subscribe's replay).
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
            queued: AtomicUsize::new(0),
            queued_bytes: AtomicUsize::new(0),
            limits,
            overflowed: AtomicBool::new(false),
            overflow: Notify::new(),
            pushed: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            said_hello: AtomicBool::new(false),
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

    /// Queues `item` past the limit, for bursts the connection asked for (a subscribe's
    /// replay, at most the history capacity). A client that keeps asking without reading
    /// (repeated subscribes) reaches `limit + burst` and is cut off as a slow consumer, so
    /// its queue cannot grow without bound.
    /// Its bytes do not count against the byte limit: a replay the connection asked for may be
    /// larger than that (the history it repeats is in memory anyway), and must not have the
    /// next broadcast cut the connection off.
    pub(crate) fn push(&self, item: Outbound) {
        self.push_tracked(item);
    }

    /// [`push`](Self::push), returning the item's ticket if it was queued, so that the
    /// sender can tell later whether it is still waiting (see [`Peer::is_queued`]).
    pub(crate) fn push_tracked(&self, item: Outbound) -> Option<Ticket> {
        self.enqueue(item, false)
    }

    /// Queues `item`, counting its bytes against the byte limit if `counted` (an offer).
    fn enqueue(&self, item: Outbound, counted: bool) -> Option<Ticket> {
        let shared = &self.shared;
        if shared.overflowed.load(Ordering::Relaxed) {
            return None;
        }
        let limits = &shared.limits;
        if shared.queued.load(Ordering::Relaxed) >= limits.frames.saturating_add(limits.burst) {
            shared.overflow();
            return None;
        }
        let item = if item.len() > limits.max_frame {
            Outbound::Frame(too_large(&item, limits.max_frame))
        } else {
            item
        };
        let bytes = if counted { item.len() } else { 0 };
        shared.queued.fetch_add(1, Ordering::Relaxed);
        shared.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        let ticket = Ticket(shared.pushed.fetch_add(1, Ordering::Relaxed) + 1);
        if self.tx.send((item, bytes)).is_err() {
            // The connection is gone; it will be removed from every table shortly.
            shared.queued.fetch_sub(1, Ordering::Relaxed);
            shared.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            return None;
        }
        Some(ticket)
    }

    /// Whether the item of `ticket` is still queued, not yet taken by the writer. Two
    /// concurrent pushes may take their tickets and their places in opposite order, so the
    /// answer may be off for a moment, by the items pushed at the same time; callers use it
    /// only to avoid queuing a second copy of something already on its way.
    pub(crate) fn is_queued(&self, ticket: Ticket) -> bool {
        self.shared.taken.load(Ordering::Relaxed) < ticket.0
    }

    /// Queues `item` unless the queue is over its limits (frames, or bytes of offered items
    /// with this one),
    /// in which case the peer is marked as a slow consumer and the item is dropped, and so is
    /// every later one, even once the queue has room again: delivered after the gap, a later
    /// message would make the client resume past it. Returns whether it was queued.
    pub(crate) fn offer(&self, item: Outbound) -> bool {
        let shared = &self.shared;
        if shared.overflowed.load(Ordering::Relaxed) {
            return false;
        }
        let queued = shared.queued.load(Ordering::Relaxed);
        let bytes_after = shared
            .queued_bytes
            .load(Ordering::Relaxed)
            .saturating_add(item.len());
        if queued >= shared.limits.frames || (queued > 0 && bytes_after > shared.limits.bytes) {
            shared.overflow();
            return false;
        }
        self.enqueue(item, true);
        true
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
}

impl PeerQueue {
    /// The next queued item; `None` only once every [`Peer`] is dropped.
    pub(crate) async fn recv(&mut self) -> Option<Outbound> {
        let (item, bytes) = self.rx.recv().await?;
        self.taken(bytes);
        Some(item)
    }

    /// The next item if one is queued already.
    pub(crate) fn try_recv(&mut self) -> Option<Outbound> {
        let (item, bytes) = self.rx.try_recv().ok()?;
        self.taken(bytes);
        Some(item)
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

    /// An item left the queue; `bytes`: what it counted against the byte limit.
    fn taken(&self, bytes: usize) {
        self.shared.queued.fetch_sub(1, Ordering::Relaxed);
        self.shared.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.shared.taken.fetch_add(1, Ordering::Relaxed);
    }
}

/// The `error` sent instead of `item`, a frame over `max` bytes: it names the type of the
/// frame and the id it carried (unless that is too long to echo).
fn too_large(item: &Outbound, max: usize) -> Utf8Bytes {
    let frame = match item {
        Outbound::Frame(frame) => frame,
        Outbound::Message(stored) => &stored.frame,
    };
    let FrameHead { kind, id } = head_of(frame.as_str());
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
            peer.shared.queued.load(Ordering::Relaxed),
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
        assert_eq!(peer.shared.queued_bytes.load(Ordering::Relaxed), 0);
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
