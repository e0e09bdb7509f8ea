//! Server-Sent Events and plain HTTP over a raw TCP client.
#![allow(clippy::unwrap_used)]

mod common;

use common::{http_request, relay, Client, Sse};
use serde_json::json;
use tether_core::protocol::ServerMessage;
use tether_relay::RelayConfig;

fn payload_of(msg: &ServerMessage) -> serde_json::Value {
    match msg {
        ServerMessage::Message { payload, .. } => payload.clone(),
        other => panic!("expected a message, got {other:?}"),
    }
}

#[tokio::test]
async fn an_sse_stream_replays_after_last_event_id_then_goes_live() {
    let relay = relay(RelayConfig::default()).await;
    let mut publisher = Client::hello(&relay.ws_url(), "pub").await;
    let epoch = publisher.subscribe("news", None, None).await.epoch;
    for i in 1..=3 {
        publisher
            .publish_acked("news", &format!("n{i}"), json!(i))
            .await;
    }

    let last = format!("Last-Event-ID: {epoch}-1");
    let mut sse = Sse::get(&relay, "/sse/news", &[&last]).await;
    assert_eq!(sse.status, 200);
    assert_eq!(sse.header("content-type"), Some("text/event-stream"));
    assert_eq!(sse.header("cache-control"), Some("no-cache"));
    assert_eq!(sse.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        sse.next_event().await,
        Some(vec![("retry".to_owned(), "1000".to_owned())])
    );
    for expected in 2..=3 {
        let (id, msg) = sse.next_message().await;
        assert_eq!(id, format!("{epoch}-{expected}"));
        assert_eq!(payload_of(&msg), json!(expected));
        assert!(matches!(msg, ServerMessage::Message { offset: Some(o), .. } if o == expected));
    }

    publisher.publish_acked("news", "n4", json!(4)).await;
    let (id, msg) = sse.next_message().await;
    assert_eq!((id, payload_of(&msg)), (format!("{epoch}-4"), json!(4)));
    common::stop(relay, [publisher]).await;
}

#[tokio::test]
async fn last_event_id_may_come_as_a_query_parameter() {
    let relay = relay(RelayConfig::default()).await;
    let mut publisher = Client::hello(&relay.ws_url(), "pub").await;
    let epoch = publisher.subscribe("room 1", None, None).await.epoch;
    for i in 1..=3 {
        publisher
            .publish_acked("room 1", &format!("m{i}"), json!(i))
            .await;
    }
    let path = format!("/sse/room%201?lastEventId={epoch}-2");
    let mut sse = Sse::get(&relay, &path, &[]).await;
    assert_eq!(sse.status, 200);
    let (id, _) = sse.next_message().await;
    assert_eq!(id, format!("{epoch}-3"));
    common::stop(relay, [publisher]).await;
}

#[tokio::test]
async fn a_fresh_sse_stream_gets_only_live_messages_and_keepalives() {
    let relay = relay(RelayConfig {
        sse_keepalive: std::time::Duration::from_millis(50),
        ..RelayConfig::default()
    })
    .await;
    let mut publisher = Client::hello(&relay.ws_url(), "pub").await;
    let epoch = publisher.subscribe("c", None, None).await.epoch;
    publisher.publish_acked("c", "old", json!("old")).await;

    let mut sse = Sse::get(&relay, "/sse/c", &[]).await;
    let _retry = sse.next_event().await;
    // Where it starts, as a `position` event (a Tether client takes its id as its last
    // event id), so a client whose stream drops before a message arrives resumes from
    // there; its data is the `subscribed` a WebSocket subscribe would get.
    let (id, subscribed) = sse.position().await;
    assert_eq!(id, format!("{epoch}-1"));
    assert_eq!(
        subscribed,
        ServerMessage::Subscribed {
            channel: "c".into(),
            offset: 1,
            epoch: Some(epoch.clone()),
            recovered: false,
        }
    );
    assert_eq!(
        sse.next_event().await,
        Some(vec![(String::new(), "keepalive".to_owned())])
    );
    publisher.publish_acked("c", "new", json!("new")).await;
    let (id, msg) = sse.next_message().await;
    assert!(id.ends_with("-2"), "{id}");
    assert_eq!(payload_of(&msg), json!("new"));
    common::stop(relay, [publisher]).await;
}

#[tokio::test]
async fn sse_requires_the_token_when_the_relay_does() {
    let relay = relay(RelayConfig {
        token: Some("s3cret".into()),
        ..RelayConfig::default()
    })
    .await;
    assert_eq!(Sse::get(&relay, "/sse/c", &[]).await.status, 401);
    assert_eq!(Sse::get(&relay, "/sse/c?token=nope", &[]).await.status, 401);
    assert_eq!(
        Sse::get(&relay, "/sse/c?token=s3cret", &[]).await.status,
        200
    );
    let bearer = Sse::get(&relay, "/sse/c", &["Authorization: Bearer s3cret"]).await;
    assert_eq!(bearer.status, 200);
    common::stop(relay, []).await;
}

#[tokio::test]
async fn other_requests_get_plain_http_answers() {
    let relay = relay(RelayConfig::default()).await;
    let status = |response: String| response.split(' ').nth(1).unwrap_or_default().to_owned();

    let plain = http_request(&relay, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status(plain), "426");
    let post = http_request(&relay, "POST /sse/c HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status(post), "405");
    let preflight = http_request(&relay, "OPTIONS /sse/c HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(preflight.contains("Access-Control-Allow-Headers"));
    assert_eq!(status(preflight), "204");
    let bad_channel = http_request(&relay, "GET /sse/ HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status(bad_channel), "400");
    let garbage = http_request(&relay, "HELLO\r\n\r\n").await;
    assert_eq!(status(garbage), "400");
    // A WebSocket pointed at an event-stream path: a 200 event stream would fail the
    // client's handshake in a way it retries for ever; a 400 is final and says why.
    let ws_on_sse = http_request(
        &relay,
        "GET /sse/c HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert_eq!(status(ws_on_sse.clone()), "400", "{ws_on_sse}");
    assert!(ws_on_sse.contains("Server-Sent Events"), "{ws_on_sse}");

    // None of that disturbed the relay.
    let mut c = Client::hello(&relay.ws_url(), "c").await;
    c.barrier().await;
    common::stop(relay, [c]).await;
}

/// After a restart, an id from the old epoch must not skip the new epoch's messages with the
/// same or lower offsets: it is unknown here, so everything retained is replayed. So is a
/// plain offset (what relays sent before ids carried the epoch) and anything else unplaceable.
#[tokio::test]
async fn an_id_from_another_epoch_or_a_plain_offset_gets_everything_retained() {
    let old = relay(RelayConfig::default()).await;
    let mut publisher = Client::hello(&old.ws_url(), "pub").await;
    for i in 1..=3 {
        publisher
            .publish_acked("news", &format!("old{i}"), json!(i))
            .await;
    }
    // An unknown id replays everything retained: the three messages, with their ids.
    let mut sse = Sse::get(&old, "/sse/news", &["Last-Event-ID: 0-0"]).await;
    let mut last_old_id = String::new();
    for _ in 1..=3 {
        last_old_id = sse.next_message().await.0;
    }
    drop(sse);
    common::stop(old, [publisher]).await;

    // The restarted relay (a new epoch) has had more messages since than the client had seen.
    let relay = relay(RelayConfig::default()).await;
    let mut publisher = Client::hello(&relay.ws_url(), "pub").await;
    let epoch = publisher.subscribe("news", None, None).await.epoch;
    for i in 1..=5 {
        publisher
            .publish_acked("news", &format!("new{i}"), json!(i * 10))
            .await;
    }
    assert!(!last_old_id.starts_with(&epoch), "a new epoch");
    for last in [last_old_id.as_str(), "3", "garbage", &format!("{epoch}-x")] {
        let header = format!("Last-Event-ID: {last}");
        let mut sse = Sse::get(&relay, "/sse/news", &[&header]).await;
        let mut got = Vec::new();
        for _ in 1..=5 {
            let (id, msg) = sse.next_message().await;
            got.push((id, payload_of(&msg)));
        }
        let want: Vec<_> = (1..=5)
            .map(|i| (format!("{epoch}-{i}"), json!(i * 10)))
            .collect();
        assert_eq!(got, want, "after Last-Event-ID {last}");
    }
    // An id of this epoch still resumes exactly.
    let header = format!("Last-Event-ID: {epoch}-4");
    let mut sse = Sse::get(&relay, "/sse/news", &[&header]).await;
    assert_eq!(sse.next_message().await.0, format!("{epoch}-5"));
    common::stop(relay, [publisher]).await;
}
