//! Raw-mode messages (no Tether envelope) at their edges, against an echoing WebSocket server.
//! Loopback only; every wait is bounded and every server stopped.
#![allow(clippy::unwrap_used)]

use std::time::Duration;
use tether::{Client, Event, Payload, State};
use tether_tests::servers::{Behaviour, MisbehavingServer};
use tether_tests::wait::Recorder;

const LIMIT: Duration = Duration::from_secs(10);

/// An empty message is a frame like any other: once the socket took it, it is settled. The
/// link reports what its socket took in bytes, and an empty frame added none, so it stayed in
/// the outbox after it went out: a drained close waited for it to its deadline, then reported
/// it dropped (`Closed`), though the server had it (and had echoed it back).
#[tokio::test]
async fn empty_messages_written_are_settled_not_reported_dropped() {
    let server = MisbehavingServer::start(Behaviour::Echo).await.unwrap();
    let (client, events) = Client::builder(server.ws_url()).connect().unwrap();
    let mut rec = Recorder::new(events);
    rec.until_open(LIMIT).await;
    client.send("").unwrap();
    client.send(Payload::Binary(Vec::new())).unwrap();
    client.send("").unwrap();
    let mut echoes = 0;
    rec.until(LIMIT, |e| {
        echoes += usize::from(matches!(e, Event::Message(_)));
        (echoes == 3).then_some(())
    })
    .await;
    // Everything went out (the server echoed it all): nothing is left to drain.
    let closing = client.close_after_drain(Duration::from_secs(2));
    let reason = tokio::time::timeout(LIMIT, closing).await.expect("closed");
    rec.until_state(LIMIT, State::is_closed).await;
    let dropped: Vec<_> = rec
        .seen
        .iter()
        .filter(|(_, e)| matches!(e, Event::Dropped { .. }))
        .map(|(_, e)| format!("{e:?}"))
        .collect();
    assert!(dropped.is_empty(), "delivered, yet reported: {dropped:?}");
    let stats = client.stats();
    assert_eq!(
        (
            stats.messages_accepted,
            stats.messages_settled,
            stats.dropped_total()
        ),
        (3, 3, 0),
        "{stats:?}"
    );
    assert_eq!(reason, tether::CloseReason::App { code: 1000 });
    client.shutdown().await;
}
