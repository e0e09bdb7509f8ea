//! The commands that return a future (`publish_acked`, `send_acked`, `request`, `close`, …)
//! take effect when called, as `send` and `shutdown` do: the future only waits for the
//! outcome. Otherwise a message given later overtakes one given earlier (`send` promises
//! order), and a future dropped before it was first polled (a `select!` branch not taken, a
//! spawned task aborted before it ran) silently loses its message or its close.
//! Loopback only; every wait is bounded and every server stopped.
#![allow(clippy::unwrap_used)]

use std::time::Duration;
use tether::{Client, Event, Payload, Protocol, State};
use tether_relay::{Relay, RelayConfig};
use tether_tests::wait::Recorder;

const LIMIT: Duration = Duration::from_secs(10);

fn text(e: &Event) -> Option<String> {
    match e {
        Event::Message(m) => match &m.payload {
            Payload::Text(t) => Some(t.to_string()),
            Payload::Json(serde_json::Value::String(t)) => Some(t.clone()),
            _ => None,
        },
        _ => None,
    }
}

#[tokio::test]
async fn an_acked_publish_is_accepted_when_called_not_when_first_polled() {
    let relay = Relay::bind("127.0.0.1:0", RelayConfig::default())
        .await
        .unwrap();
    let url = format!("ws://{}/", relay.local_addr());
    let (listener, events) = Client::builder(&url)
        .protocol(Protocol::Tether)
        .connect()
        .unwrap();
    let mut seen = Recorder::new(events);
    listener.subscribe("room").unwrap();
    seen.until_subscribed(LIMIT).await;

    let (sender, _sender_events) = Client::builder(&url)
        .protocol(Protocol::Tether)
        .connect()
        .unwrap();
    // Given first, awaited last: it must still go first.
    let first = sender.publish_acked("room", "first");
    sender.publish("room", "second").unwrap();
    // Never polled: the message was accepted all the same, and is delivered.
    drop(sender.publish_acked("room", "third"));
    // Never polled either: the request is sent, and its reply (or failure) only unawaited.
    drop(sender.request("ping", Some(Duration::from_secs(5))));
    tokio::time::timeout(LIMIT, first)
        .await
        .expect("first acked in time")
        .expect("first acked");

    let wanted = ["first", "second", "third"];
    let mut texts = Vec::new();
    seen.until(LIMIT, |e| {
        texts.extend(text(e));
        (texts.len() >= wanted.len()).then_some(())
    })
    .await;
    assert_eq!(texts, wanted, "delivered in the order given");

    // A close whose future is dropped unpolled still closes.
    drop(sender.close());
    let mut state = sender.watch_state();
    tokio::time::timeout(LIMIT, state.wait_for(State::is_closed))
        .await
        .expect("closed in time, without the close future ever being polled")
        .unwrap();

    listener.shutdown().await;
    sender.shutdown().await;
    relay.shutdown().await;
}
