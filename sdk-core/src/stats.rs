//! Running counters the engine keeps about itself, for dashboards and the CLI's summary.

use std::time::Duration;

/// A snapshot of the engine's counters. All counts are since the engine was created.
///
/// Invariant (checked by the property tests): every message accepted by `send`/`publish` is
/// settled (written, or acknowledged when acks are on), dropped with a reported reason, or
/// still pending: `messages_accepted == messages_settled + dropped_total() + pending`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Connection attempts started.
    pub attempts: u64,
    /// Transports that opened.
    pub opens: u64,
    /// Opens after the first one.
    pub reconnects: u64,
    /// Messages accepted from the app (`send`/`publish`).
    pub messages_accepted: u64,
    /// Messages that left the outbox successfully (written; or acknowledged if acked).
    pub messages_settled: u64,
    /// Messages handed to the transport (data frames): the app's, resends, and the
    /// protocol's own (subscribes, acks, and the heartbeat's pings when they are messages,
    /// `HeartbeatMode::AppMessage`, as in the browser, which cannot send ping frames).
    /// WebSocket control frames (ping, pong, close) are not counted: the native client's
    /// heartbeat pings are ping frames, so they are not in this count there.
    pub frames_sent: u64,
    /// Messages received from the transport (data frames, or SSE events), discarded ones
    /// included. WebSocket ping, pong and close frames and SSE comments are not counted.
    pub frames_received: u64,
    /// Bytes of the messages `frames_sent` counts (their payloads, without framing).
    pub bytes_sent: u64,
    /// Bytes of the messages `frames_received` counts (their payloads, without framing).
    pub bytes_received: u64,
    /// Acked messages written again after a reconnect. Requests written again (kept across
    /// a drop by `fail_requests_on_disconnect(false)`) are not counted: like every message
    /// count here, it covers what `send`/`publish` accepted.
    pub resent: u64,
    /// Messages dropped because the outbox was full.
    pub dropped_overflow: u64,
    /// Messages dropped because their TTL passed.
    pub dropped_expired: u64,
    /// Messages dropped because the engine closed.
    pub dropped_closed: u64,
    /// Messages the server rejected.
    pub dropped_rejected: u64,
    /// Inbound channel messages dropped as duplicates (offset already seen).
    pub duplicates_dropped: u64,
    /// Inbound channel messages dropped as unexpected: on a channel the app is not subscribed
    /// to (its unsubscribe answered, or never asked for), or, with an offset, before the
    /// server's `subscribed` for the channel on that connection. The first on each channel per
    /// connection is also reported as an `UnexpectedFrame` error event; the rest only counted
    /// here. Those that the server sent before it read the app's unsubscribe are expected,
    /// and not counted.
    pub unexpected_dropped: u64,
    /// Error events emitted.
    pub errors: u64,
    /// Inputs about a transport the engine had let go of (late events of an old socket),
    /// ignored. The end of one the engine was closing itself is not counted: it answers the
    /// engine's own request.
    pub stale_inputs: u64,
    /// The latest round-trip time measured.
    pub last_rtt: Option<Duration>,
}

impl Stats {
    /// Every message dropped, for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_overflow + self.dropped_expired + self.dropped_closed + self.dropped_rejected
    }

    /// Messages accepted and not (yet) delivered: dropped for any reason, or still pending
    /// (`dropped_total() + pending`, by the invariant above). Once closed, what was lost.
    pub fn undelivered(&self) -> u64 {
        self.messages_accepted.saturating_sub(self.messages_settled)
    }
}
