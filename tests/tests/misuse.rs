//! The public API under the settings and call patterns a demanding app reaches for: extreme
//! durations and sizes, a token provider that never answers, several tasks awaiting
//! `closed()`. Loopback only; every wait is bounded and every server stopped.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use std::time::Duration;
use tether::{AckedOptions, Client, CloseReason, Event, Protocol, State};
use tether_relay::{Relay, RelayConfig, RelayHandle};
use tether_tests::wait::Recorder;

const LIMIT: Duration = Duration::from_secs(10);

async fn relay() -> RelayHandle {
    Relay::bind("127.0.0.1:0", RelayConfig::default())
        .await
        .unwrap()
}

fn url(relay: &RelayHandle) -> String {
    format!("ws://{}/", relay.local_addr())
}

#[tokio::test]
async fn the_largest_durations_and_sizes_and_one_event_of_room_work_end_to_end() {
    let relay = relay().await;
    let (client, events) = Client::builder(url(&relay))
        .protocol(Protocol::Tether)
        .backoff_max(Duration::MAX)
        .min_uptime(Duration::MAX)
        .heartbeat_interval(Duration::MAX)
        .pong_timeout(Some(Duration::MAX))
        .connect_timeout(Duration::MAX)
        .close_timeout(Duration::MAX)
        .request_timeout(Duration::MAX)
        .message_ttl(Some(Duration::MAX))
        .outbox_max_messages(usize::MAX)
        .outbox_max_bytes(usize::MAX)
        .max_message_bytes(usize::MAX)
        .event_capacity(1)
        .connect()
        .unwrap();
    let mut rec = Recorder::new(events);
    rec.until_open(LIMIT).await;
    client.subscribe("room").unwrap();
    rec.until_subscribed(LIMIT).await;
    let options = AckedOptions {
        timeout: Some(Duration::MAX),
        ttl: Some(Duration::MAX),
    };
    let acked = client.publish_acked_with("room", "hello", options);
    // Read while waiting: one event of room.
    let reader = tokio::spawn(async move {
        rec.until(LIMIT, |e| matches!(e, Event::Message(_)).then_some(()))
            .await;
        rec
    });
    tokio::time::timeout(LIMIT, acked)
        .await
        .expect("acked in time")
        .expect("acked");
    let mut rec = reader.await.unwrap();
    let reply = tokio::time::timeout(LIMIT, client.request(json!({"q": 1}), Some(Duration::MAX)))
        .await
        .expect("replied in time")
        .expect("replied");
    assert_eq!(reply, json!({"q": 1}));
    let closing = client.close();
    rec.until_state(LIMIT, State::is_closed).await;
    assert_eq!(
        tokio::time::timeout(LIMIT, closing).await.unwrap(),
        CloseReason::App { code: 1000 }
    );
    client.shutdown().await;
    relay.shutdown().await;
}

#[tokio::test]
async fn a_token_provider_that_never_answers_is_bounded_by_the_connect_timeout() {
    let relay = relay().await;
    let (client, events) = Client::builder(url(&relay))
        .protocol(Protocol::Tether)
        .token_provider(|_refresh| std::future::pending::<Result<String, std::io::Error>>())
        .connect_timeout(Duration::from_millis(200))
        .backoff_initial(Duration::from_millis(20))
        .backoff_max(Duration::from_millis(50))
        .max_attempts(Some(2))
        .connect()
        .unwrap();
    let mut rec = Recorder::new(events);
    let state = rec.until_state(LIMIT, State::is_closed).await;
    assert!(
        matches!(
            &state,
            State::Closed {
                reason: CloseReason::GaveUp { .. }
            }
        ),
        "{state}"
    );
    assert_eq!(client.publish("room", "x"), Err(tether::SendError::Closed));
    client.shutdown().await;
    relay.shutdown().await;
}

#[tokio::test]
async fn several_tasks_awaiting_closed_all_see_the_close_even_one_connect_follows() {
    let relay = relay().await;
    let (client, events) = Client::builder(url(&relay))
        .protocol(Protocol::Tether)
        .connect()
        .unwrap();
    let mut rec = Recorder::new(events);
    rec.until_open(LIMIT).await;
    let waiters: Vec<_> = (0..4).map(|_| tokio::spawn(client.closed())).collect();
    // Closed, and started again at once: every waiter still saw the close.
    let closing = client.close_with(4000, "bye");
    client.connect();
    for waiter in waiters {
        let reason = tokio::time::timeout(LIMIT, waiter).await.unwrap().unwrap();
        assert_eq!(reason, CloseReason::App { code: 4000 });
    }
    assert_eq!(
        tokio::time::timeout(LIMIT, closing).await.unwrap().unwrap(),
        CloseReason::App { code: 4000 }
    );
    rec.until_open(LIMIT).await;
    // connect() twice while open changes nothing: no new connection, no state change.
    let (opens, seen) = (client.stats().opens, rec.seen.len());
    client.connect();
    client.connect();
    rec.collect_for(Duration::from_millis(300)).await;
    assert!(client.state().is_open(), "{}", client.state());
    assert_eq!(client.stats().opens, opens);
    let changes: Vec<_> = rec.seen[seen..]
        .iter()
        .filter(|(_, e)| matches!(e, Event::StateChanged { .. }))
        .collect();
    assert!(changes.is_empty(), "{changes:?}");
    client.shutdown().await;
    relay.shutdown().await;
}

#[tokio::test]
async fn presence_on_a_raw_client_is_refused_not_answered_not_subscribed() {
    let relay = relay().await;
    let (raw, _raw_events) = Client::builder(url(&relay)).connect().unwrap();
    // `None` would read "not subscribed yet", which an app may wait on for ever.
    assert_eq!(
        raw.presence("room"),
        Err(tether::SubscribeError::NeedsTetherProtocol)
    );
    let (tether_client, _events) = Client::builder(url(&relay))
        .protocol(Protocol::Tether)
        .connect()
        .unwrap();
    assert_eq!(tether_client.presence("room"), Ok(None));
    raw.shutdown().await;
    tether_client.shutdown().await;
}
