//! Channels over real sockets: fan-out, acks and deduplication, resume from history,
//! epochs, request/reply, pings.
#![allow(clippy::unwrap_used)]

mod common;

use common::{relay, Client};
use futures_util::SinkExt;
use serde_json::json;
use std::time::Duration;
use tether_core::protocol::{ClientMessage, ServerMessage};
use tether_relay::RelayConfig;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_publish_reaches_every_subscriber_including_the_sender() {
    let relay = relay(RelayConfig::default()).await;
    let url = relay.ws_url();
    let mut alice = Client::hello(&url, "alice").await;
    let mut bob = Client::hello(&url, "bob").await;
    let first = alice.subscribe("room", None, None).await;
    assert_eq!((first.offset, first.recovered), (0, false));
    assert!(first.replay.is_empty());
    bob.subscribe("room", None, None).await;
    let _join = alice.recv().await;

    bob.publish("room", "b-1", json!({"text": "hi"}), false)
        .await;
    for client in [&mut alice, &mut bob] {
        match client.recv().await {
            ServerMessage::Message {
                channel,
                offset,
                id,
                payload,
                ts,
            } => {
                assert_eq!(channel.as_deref(), Some("room"));
                assert_eq!(offset, Some(1));
                assert_eq!(id.as_deref(), Some("b-1"));
                assert_eq!(payload, json!({"text": "hi"}));
                assert!(ts.is_some_and(|t| t > 1_600_000_000_000), "server sets ts");
            }
            other => panic!("expected the message, got {other:?}"),
        }
    }
    assert_eq!(relay.messages_published(), 1);
    common::stop(relay, [alice, bob]).await;
}

#[tokio::test]
async fn a_resent_publish_is_acked_with_its_first_offset_and_not_delivered_twice() {
    let relay = relay(RelayConfig::default()).await;
    let url = relay.ws_url();
    let mut sub = Client::hello(&url, "sub").await;
    sub.subscribe("room", None, None).await;
    let mut publisher = Client::hello(&url, "pub").await;

    assert_eq!(publisher.publish_acked("room", "p-1", json!(1)).await, 1);
    assert_eq!(publisher.publish_acked("room", "p-2", json!(2)).await, 2);
    // The resend after a reconnect reuses the id.
    assert_eq!(publisher.publish_acked("room", "p-1", json!(1)).await, 1);
    assert_eq!(publisher.publish_acked("room", "p-3", json!(3)).await, 3);

    let mut seen = Vec::new();
    while seen.len() < 3 {
        if let ServerMessage::Message { id, offset, .. } = sub.recv().await {
            seen.push((id.unwrap(), offset.unwrap()));
        }
    }
    assert_eq!(
        seen,
        vec![("p-1".into(), 1), ("p-2".into(), 2), ("p-3".into(), 3)],
        "the duplicate was not delivered"
    );
    assert_eq!(relay.messages_published(), 3);
    common::stop(relay, [sub, publisher]).await;
}

#[tokio::test]
async fn publish_ids_are_deduplicated_per_client_and_a_reused_id_is_refused() {
    let relay = relay(RelayConfig::default()).await;
    let url = relay.ws_url();
    let mut sub = Client::hello(&url, "sub").await;
    sub.subscribe("room", None, None).await;
    let mut victim = Client::hello(&url, "victim").await;
    assert_eq!(victim.publish_acked("room", "v-1", json!("one")).await, 1);

    // Someone who saw "v-1" takes "v-2" first: a message of its own, not the victim's.
    let mut mallory = Client::hello(&url, "mallory").await;
    assert_eq!(mallory.publish_acked("room", "v-2", json!("fake")).await, 2);
    assert_eq!(victim.publish_acked("room", "v-2", json!("two")).await, 3);

    // The victim's resend after a reconnect (same client_id) is still a duplicate.
    drop(victim);
    let mut victim = Client::hello(&url, "victim").await;
    assert_eq!(victim.publish_acked("room", "v-2", json!("two")).await, 3);

    // The same id from the same client with another payload is refused, by id.
    victim.publish("room", "v-2", json!("changed"), true).await;
    match victim.recv().await {
        ServerMessage::Error { code, id, .. } => {
            assert_eq!(
                (code.as_str(), id.as_deref()),
                ("duplicate_id", Some("v-2"))
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }

    let mut seen = Vec::new();
    while seen.len() < 3 {
        if let ServerMessage::Message {
            offset, payload, ..
        } = sub.recv().await
        {
            seen.push((offset.unwrap(), payload));
        }
    }
    assert_eq!(
        seen,
        vec![(1, json!("one")), (2, json!("fake")), (3, json!("two"))]
    );
    sub.barrier().await;
    assert_eq!(relay.messages_published(), 3, "nothing else was stored");
    common::stop(relay, [sub, victim, mallory]).await;
}

/// The acks to a burst of pipelined publishes go out in a few writes, not one write each: the
/// writer sends what the reader answers while it reads on. (The reader reads no frame before
/// the answers to those it read are taken, as the next one may be a close; a writer that sent
/// whatever it had taken whenever its queue was empty sent every ack alone.)
#[tokio::test]
async fn the_acks_to_a_burst_of_publishes_go_out_in_a_few_writes() {
    let relay = relay(RelayConfig::default()).await;
    let mut c = Client::hello(&relay.ws_url(), "burst").await;
    c.barrier().await;
    let before = relay.websocket_writes();
    let n = 200;
    // One flush: the whole burst is in the relay's socket before it reads any of it.
    for i in 0..n {
        let publish = ClientMessage::Publish {
            id: format!("p{i}"),
            channel: Some("room".into()),
            payload: json!(i),
            ack: true,
        };
        c.ws.feed(Message::text(publish.encode())).await.unwrap();
    }
    c.ws.flush().await.unwrap();
    for i in 0..n {
        match c.recv().await {
            ServerMessage::Ack { id, .. } => assert_eq!(id, format!("p{i}")),
            other => panic!("expected the ack of p{i}, got {other:?}"),
        }
    }
    let writes = relay.websocket_writes() - before;
    // 4 batches of at most 64 frames; one write per ack is what this guards against.
    assert!(writes <= n / 5, "{writes} writes for {n} acks");
    common::stop(relay, [c]).await;
}

#[tokio::test]
async fn a_resubscribe_with_since_and_epoch_replays_exactly_the_missed_messages() {
    let relay = relay(RelayConfig::default()).await;
    let url = relay.ws_url();
    let mut publisher = Client::hello(&url, "pub").await;
    let mut reader = Client::hello(&url, "reader").await;
    let sub = reader.subscribe("news", None, None).await;
    for i in 1..=3 {
        publisher
            .publish_acked("news", &format!("n{i}"), json!(i))
            .await;
    }
    let mut last = 0;
    while last < 3 {
        if let ServerMessage::Message { offset, .. } = reader.recv().await {
            last = offset.unwrap();
        }
    }
    drop(reader);

    for i in 4..=6 {
        publisher
            .publish_acked("news", &format!("n{i}"), json!(i))
            .await;
    }
    let mut back = Client::hello(&url, "reader").await;
    let resumed = back.subscribe("news", Some(last), Some(&sub.epoch)).await;
    assert!(resumed.recovered);
    assert_eq!(
        resumed.offset, 3,
        "the stream resumes after what the reader had"
    );
    assert_eq!(resumed.epoch, sub.epoch);
    assert_eq!(
        resumed.replay,
        vec![(4, json!(4)), (5, json!(5)), (6, json!(6))]
    );

    // Live traffic follows the replay.
    publisher.publish("news", "n7", json!(7), false).await;
    assert!(matches!(
        back.recv().await,
        ServerMessage::Message {
            offset: Some(7),
            ..
        }
    ));
    common::stop(relay, [publisher, back]).await;
}

#[tokio::test]
async fn another_epoch_or_trimmed_history_is_not_recovered_but_gets_what_is_retained() {
    let relay = relay(RelayConfig {
        history_capacity: 2,
        ..RelayConfig::default()
    })
    .await;
    let url = relay.ws_url();
    let mut c = Client::hello(&url, "c").await;
    let first = c.subscribe("ch", None, None).await;
    for i in 1..=4 {
        c.publish_acked("ch", &format!("m{i}"), json!(i)).await;
    }

    let mut other = Client::hello(&url, "other").await;
    let wrong_epoch = other.subscribe("ch", Some(3), Some("not-it")).await;
    assert!(!wrong_epoch.recovered);
    assert_eq!(wrong_epoch.replay, vec![(3, json!(3)), (4, json!(4))]);
    assert_eq!(
        wrong_epoch.offset, 2,
        "the stream starts before the oldest retained"
    );

    let trimmed = other.subscribe("ch", Some(1), Some(&first.epoch)).await;
    assert!(!trimmed.recovered, "offset 2 is gone from a ring of 2");
    assert_eq!(trimmed.replay, vec![(3, json!(3)), (4, json!(4))]);

    let kept = other.subscribe("ch", Some(2), Some(&first.epoch)).await;
    assert!(kept.recovered);
    assert_eq!(kept.replay, vec![(3, json!(3)), (4, json!(4))]);

    let future = other.subscribe("ch", Some(9), Some(&first.epoch)).await;
    assert!(!future.recovered, "since beyond the head");
    common::stop(relay, [c, other]).await;
}

#[tokio::test]
async fn a_restarted_relay_has_a_new_epoch() {
    let first = relay(RelayConfig::default()).await;
    let mut c = Client::hello(&first.ws_url(), "c").await;
    let before = c.subscribe("ch", None, None).await;
    common::stop(first, [c]).await;

    let second = relay(RelayConfig::default()).await;
    let mut c = Client::hello(&second.ws_url(), "c").await;
    let after = c.subscribe("ch", Some(0), Some(&before.epoch)).await;
    assert_ne!(after.epoch, before.epoch);
    assert!(!after.recovered);
    common::stop(second, [c]).await;
}

#[tokio::test]
async fn requests_pings_and_channel_less_publishes_are_answered() {
    let relay = relay(RelayConfig::default()).await;
    let mut c = Client::hello(&relay.ws_url(), "c").await;

    c.send(ClientMessage::Request {
        id: "r1".into(),
        channel: None,
        payload: json!({"q": 42}),
    })
    .await;
    assert_eq!(
        c.recv().await,
        ServerMessage::Reply {
            id: "r1".into(),
            payload: json!({"q": 42})
        }
    );

    c.send(ClientMessage::Ping { id: "p1".into() }).await;
    assert_eq!(
        c.recv().await,
        ServerMessage::Pong {
            id: Some("p1".into())
        }
    );

    c.send(ClientMessage::Publish {
        id: "e1".into(),
        channel: None,
        payload: json!("echo"),
        ack: true,
    })
    .await;
    match c.recv().await {
        ServerMessage::Message {
            channel,
            offset,
            id,
            payload,
            ..
        } => {
            assert_eq!((channel, offset), (None, None));
            assert_eq!(id.as_deref(), Some("e1"));
            assert_eq!(payload, json!("echo"));
        }
        other => panic!("expected the echo, got {other:?}"),
    }
    assert_eq!(
        c.recv().await,
        ServerMessage::Ack {
            id: "e1".into(),
            offset: None
        }
    );
    assert_eq!(relay.messages_published(), 0, "echoes are not stored");
    common::stop(relay, [c]).await;
}

#[tokio::test]
async fn unsubscribe_stops_delivery_and_is_acknowledged() {
    let relay = relay(RelayConfig::default()).await;
    let url = relay.ws_url();
    let mut c = Client::hello(&url, "c").await;
    c.subscribe("a", None, None).await;
    c.subscribe("b", None, None).await;
    c.send(ClientMessage::Unsubscribe {
        channel: "a".into(),
    })
    .await;
    assert_eq!(
        c.recv().await,
        ServerMessage::Unsubscribed {
            channel: "a".into()
        }
    );
    let mut p = Client::hello(&url, "p").await;
    p.publish_acked("a", "x", json!("not for c")).await;
    p.publish_acked("b", "y", json!("for c")).await;
    assert!(matches!(
        c.recv().await,
        ServerMessage::Message { id: Some(id), .. } if id == "y"
    ));
    common::stop(relay, [c, p]).await;
}

#[tokio::test]
async fn server_pings_arrive_when_enabled() {
    let relay = relay(RelayConfig {
        ping_interval: Some(Duration::from_millis(50)),
        ..RelayConfig::default()
    })
    .await;
    let mut c = Client::hello(&relay.ws_url(), "c").await;
    for _ in 0..2 {
        assert!(matches!(
            c.recv().await,
            ServerMessage::Ping { id: Some(_) }
        ));
    }
    common::stop(relay, [c]).await;
}
