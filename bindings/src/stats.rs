//! [`ClientStats`]: the core's counters plus the bindings' own (listener lag and failures).

/// A snapshot of the client's counters, all since the client was created.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ClientStats {
    /// Connection attempts started.
    pub attempts: u64,
    /// Connections that opened.
    pub opens: u64,
    /// Opens after the first one.
    pub reconnects: u64,
    /// Messages accepted by `send`/`publish`.
    pub messages_accepted: u64,
    /// Messages delivered (written; or acknowledged, if acked).
    pub messages_settled: u64,
    /// Messages written (data frames: the app's, resends, and the protocol's own, such as
    /// subscribes and acks). WebSocket ping, pong and close frames are not counted (the
    /// heartbeat's pings are ping frames here).
    pub frames_sent: u64,
    /// Messages received (data frames, or SSE events). WebSocket ping, pong and close frames
    /// and SSE comments are not counted.
    pub frames_received: u64,
    /// Bytes of the messages `frames_sent` counts (payloads, without framing).
    pub bytes_sent: u64,
    /// Bytes of the messages `frames_received` counts (payloads, without framing).
    pub bytes_received: u64,
    /// Acked messages written again after a reconnect.
    pub resent: u64,
    /// Messages dropped because the outbox was full.
    pub dropped_overflow: u64,
    /// Messages dropped because their TTL passed.
    pub dropped_expired: u64,
    /// Messages dropped because the client closed.
    pub dropped_closed: u64,
    /// Messages the server rejected.
    pub dropped_rejected: u64,
    /// Inbound duplicates removed.
    pub duplicates_dropped: u64,
    /// Inbound channel messages dropped as unexpected (on a channel the app is not subscribed
    /// to, or before the server's answer to its subscribe); only the first per channel and
    /// connection is also an error event.
    pub unexpected_dropped: u64,
    /// Error events.
    pub errors: u64,
    /// Reports about a transport the client had already replaced (late events of an old
    /// socket), ignored. The end of one the client was closing itself is not counted.
    pub stale_inputs: u64,
    /// The latest round-trip time, in milliseconds.
    pub last_rtt_ms: Option<f64>,
    /// Messages in the outbox now (queued or awaiting an ack).
    pub outbox_len: u64,
    /// Events skipped for listeners that fell behind (sum over listeners).
    pub listener_events_missed: u64,
    /// Listener callbacks that threw.
    pub listener_failures: u64,
}

impl From<tether::Stats> for ClientStats {
    /// The core's counters; the bindings' own are zero until the client fills them in.
    fn from(s: tether::Stats) -> Self {
        ClientStats {
            attempts: s.attempts,
            opens: s.opens,
            reconnects: s.reconnects,
            messages_accepted: s.messages_accepted,
            messages_settled: s.messages_settled,
            frames_sent: s.frames_sent,
            frames_received: s.frames_received,
            bytes_sent: s.bytes_sent,
            bytes_received: s.bytes_received,
            resent: s.resent,
            dropped_overflow: s.dropped_overflow,
            dropped_expired: s.dropped_expired,
            dropped_closed: s.dropped_closed,
            dropped_rejected: s.dropped_rejected,
            duplicates_dropped: s.duplicates_dropped,
            unexpected_dropped: s.unexpected_dropped,
            errors: s.errors,
            stale_inputs: s.stale_inputs,
            last_rtt_ms: s.last_rtt.map(|d| d.as_secs_f64() * 1000.0),
            outbox_len: 0,
            listener_events_missed: 0,
            listener_failures: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_counter_reaches_the_bindings() {
        let mut core = tether::Stats::default();
        core.errors = 7;
        core.stale_inputs = 3;
        core.unexpected_dropped = 2;
        let stats = ClientStats::from(core);
        assert_eq!(
            (stats.errors, stats.stale_inputs, stats.unexpected_dropped),
            (7, 3, 2)
        );
        assert_eq!(
            stats.outbox_len, 0,
            "the client's own counters start at zero"
        );
    }
}
