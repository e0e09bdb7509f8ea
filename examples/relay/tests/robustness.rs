//! Misbehaving clients over real sockets: bad frames, oversized frames, invalid UTF-8,
//! floods, slow readers, and wrong or missing tokens. One client's trouble never reaches
//! another.
#![allow(clippy::unwrap_used)]

mod common;

use common::{error, relay, within, Client};
use futures_util::StreamExt;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;
use tether_core::protocol::{ClientMessage, PresenceChange, ServerMessage};
use tether_relay::{RateLimit, RelayConfig};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};

#[tokio::test]
async fn bad_frames_are_answered_and_the_connection_stays_usable() {
    let relay = relay(RelayConfig::default()).await;
    let url = relay.ws_url();
    let mut bystander = Client::hello(&url, "bystander").await;
    bystander.subscribe("room", None, None).await;
    let mut c = Client::hello(&url, "c").await;

    let cases: [(&str, (&str, Option<&str>)); 6] = [
        ("{not json", ("bad_frame", None)),
        ("[1,2,3]", ("bad_frame", None)),
        (r#"{"type":"teleport","id":"t"}"#, ("bad_frame", Some("t"))),
        (
            r#"{"type":"publish","channel":"room"}"#,
            ("bad_frame", None),
        ),
        (
            r#"{"v":9,"type":"ping","id":"v9"}"#,
            ("unsupported_version", Some("v9")),
        ),
        (
            r#"{"type":"publish","id":"long","channel":"CHANNEL","payload":1}"#,
            ("invalid_channel", Some("long")),
        ),
    ];
    for (input, expected) in cases {
        let input = input.replace("CHANNEL", &"x".repeat(257));
        c.send_text(&input).await;
        assert_eq!(error(&c.recv().await), expected, "for {input}");
    }
    c.send_raw(Message::Binary(Bytes::from_static(b"\x00\x01")))
        .await;
    assert_eq!(error(&c.recv().await), ("bad_frame", None));

    // Still usable, and the bystander saw nothing but the one good message.
    c.publish("room", "ok", json!("fine"), false).await;
    assert!(matches!(
        bystander.recv().await,
        ServerMessage::Message { id: Some(id), .. } if id == "ok"
    ));
    c.send(ClientMessage::Ping { id: "alive".into() }).await;
    assert_eq!(
        c.recv().await,
        ServerMessage::Pong {
            id: Some("alive".into())
        }
    );
    common::stop(relay, [bystander, c]).await;
}

#[tokio::test]
async fn an_oversized_message_closes_with_1009_and_others_carry_on() {
    let relay = relay(RelayConfig {
        max_message_size: 1024,
        ..RelayConfig::default()
    })
    .await;
    let url = relay.ws_url();
    let mut other = Client::hello(&url, "other").await;
    let mut c = Client::hello(&url, "c").await;
    let big = format!(
        r#"{{"type":"publish","id":"big","payload":"{}"}}"#,
        "x".repeat(4096)
    );
    c.send_text(&big).await;
    assert_eq!(u16::from(c.recv_close().await.code), 1009);

    other.send(ClientMessage::Ping { id: "p".into() }).await;
    assert!(matches!(other.recv().await, ServerMessage::Pong { .. }));
    common::stop(relay, [other, c]).await;
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_closes_with_1007() {
    let relay = relay(RelayConfig::default()).await;
    let mut c = Client::hello(&relay.ws_url(), "c").await;
    let frame = Frame::message(
        Bytes::from_static(&[b'"', 0xff, 0xfe, b'"']),
        OpCode::Data(Data::Text),
        true,
    );
    c.send_raw(Message::Frame(frame)).await;
    assert_eq!(u16::from(c.recv_close().await.code), 1007);
    common::stop(relay, [c]).await;
}

#[tokio::test]
async fn messages_over_the_rate_limit_are_refused_by_id() {
    // One token per second: the refill during the test is negligible.
    let relay = relay(RelayConfig {
        rate_limit: Some(RateLimit {
            per_second: 1,
            burst: 3,
        }),
        ..RelayConfig::default()
    })
    .await;
    let mut c = Client::connect(&relay.ws_url()).await;
    // Requests, not pings: a ping over the limit is answered all the same (its refusal
    // would cost the same reply).
    for i in 0..6 {
        c.send(ClientMessage::Request {
            id: format!("p{i}"),
            channel: None,
            payload: json!(i),
        })
        .await;
    }
    for i in 0..3 {
        assert_eq!(
            c.recv().await,
            ServerMessage::Reply {
                id: format!("p{i}"),
                payload: json!(i)
            }
        );
    }
    for i in 3..6 {
        let got = c.recv().await;
        assert_eq!(
            error(&got),
            ("rate_limited", Some(format!("p{i}").as_str()))
        );
    }
    common::stop(relay, [c]).await;
}

/// A client (re)connecting sends `hello`, then one `subscribe` per channel and one
/// `doc_sync` per document, all at once. Those carry no `id`, so an `error{rate_limited}`
/// could name nothing: the client could not tell which subscription failed and would
/// silently never get that channel's messages. Over the rate they wait instead (the relay
/// stops reading the connection until the rate allows the next message), so every
/// `subscribe` is answered with `subscribed`.
#[tokio::test]
async fn a_rate_limited_subscribe_is_answered_with_something_that_names_its_channel() {
    let relay = relay(RelayConfig {
        // One token per second; the defaults (1,000/s, burst 2,000) behave the same for a
        // client with a few thousand channels.
        rate_limit: Some(RateLimit {
            per_second: 1,
            burst: 4,
        }),
        ..RelayConfig::default()
    })
    .await;
    let mut c = Client::hello(&relay.ws_url(), "many-channels").await;
    let channels: Vec<String> = (0..6).map(|i| format!("room-{i}")).collect();
    for ch in &channels {
        c.send(ClientMessage::Subscribe {
            channel: ch.clone(),
            since: None,
            epoch: None,
        })
        .await;
    }
    let mut unanswered: BTreeSet<String> = channels.iter().cloned().collect();
    let mut anonymous_errors = Vec::new();
    // Bounded: at most 3 frames per subscribe, each awaited at most 3 s (the relay lets one
    // through per second once the burst is spent).
    for _ in 0..3 * channels.len() {
        if unanswered.is_empty() {
            break;
        }
        let Some(msg) = c.recv_within(Duration::from_secs(3)).await else {
            break;
        };
        match msg {
            ServerMessage::Subscribed { channel, .. } => {
                unanswered.remove(&channel);
            }
            ServerMessage::Error { code, id: None, .. } => anonymous_errors.push(code),
            _ => {}
        }
    }
    assert!(
        unanswered.is_empty(),
        "subscriptions never answered: {unanswered:?}; the relay sent errors naming \
         nothing instead: {anonymous_errors:?}"
    );
    common::stop(relay, [c]).await;
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_closed_with_1013() {
    slow_subscriber_is_cut_off(RelayConfig {
        max_queued_frames: 8,
        rate_limit: None,
        ..RelayConfig::default()
    })
    .await;
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_large_messages_is_closed_by_the_byte_limit() {
    // 4,096 frames of 64 KiB would be 256 MiB held for one reader; the byte limit stops it
    // at 512 KiB.
    slow_subscriber_is_cut_off(RelayConfig {
        max_queued_bytes: 512 * 1024,
        rate_limit: None,
        ..RelayConfig::default()
    })
    .await;
}

/// A subscriber that stops reading while 200 messages of 64 KiB are published is closed with
/// 1013 after a gapless prefix of them, and the publisher is not affected.
async fn slow_subscriber_is_cut_off(config: RelayConfig) {
    let relay = relay(config).await;
    let url = relay.ws_url();

    let mut slow = Client::slow_reader(&relay).await;
    slow.subscribe("firehose", None, None).await;

    let mut publisher = Client::hello(&url, "publisher").await;
    let payload = json!("y".repeat(64 * 1024));
    let total = 200u64;
    for i in 0..total {
        publisher
            .publish("firehose", &format!("f{i}"), payload.clone(), false)
            .await;
    }
    publisher.barrier().await;

    // Now read: some messages, then the close.
    let (offsets, close) = slow.offsets_until_close().await;
    assert_eq!(u16::from(close.code), 1013);
    let delivered = offsets.len() as u64;
    assert!(
        delivered < total,
        "the relay stopped queueing for the slow reader"
    );
    // Nothing after the first dropped message: the client resumes from its last offset.
    assert_eq!(offsets, (1..=delivered).collect::<Vec<_>>(), "no gap");

    // The publisher was never affected.
    publisher.send(ClientMessage::Ping { id: "p".into() }).await;
    assert!(matches!(publisher.recv().await, ServerMessage::Pong { .. }));
    common::stop(relay, [slow, publisher]).await;
}

/// A client that comes back after a while resubscribes every channel at once, each with
/// its `since`, and the relay replays each gap. Replies the connection asked for do not count
/// against `max_queued_frames`: with the defaults (1,024 messages of history, 4,096 frames),
/// six channels with full histories once got it closed with 1013 "slow consumer", dropping
/// the replays it had queued; on reconnect it asked for the same gaps and was cut off again.
#[tokio::test]
async fn resuming_several_busy_channels_at_once_is_not_cut_off_as_a_slow_consumer() {
    // The defaults, without the rate limit so that one publisher fills the histories fast.
    let history = RelayConfig::default().history_capacity;
    let relay = relay(RelayConfig {
        rate_limit: None,
        ..RelayConfig::default()
    })
    .await;
    let url = relay.ws_url();
    let channels: Vec<String> = (0..6).map(|i| format!("busy-{i}")).collect();
    let mut publisher = Client::hello(&url, "publisher").await;
    for ch in &channels {
        for n in 0..history {
            publisher
                .publish(ch, &format!("{ch}-{n}"), json!(n), false)
                .await;
        }
    }
    publisher.barrier().await;
    // What a subscriber that had seen nothing of this epoch's messages yet resumes from.
    let mut probe = Client::hello(&url, "probe").await;
    let epoch = probe.subscribe("probe", None, None).await.epoch;

    let mut back = Client::hello(&url, "back").await;
    for ch in &channels {
        back.send(ClientMessage::Subscribe {
            channel: ch.clone(),
            since: Some(0),
            epoch: Some(epoch.clone()),
        })
        .await;
    }
    let mut replayed = 0;
    let mut closed = None;
    // Bounded: at most every frame the relay should send, each awaited at most 2 s.
    for _ in 0..channels.len() * (history + 2) {
        match tokio::time::timeout(Duration::from_secs(2), back.ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                if let ServerMessage::Message { .. } = ServerMessage::decode(&text).unwrap() {
                    replayed += 1;
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                closed = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                break;
            }
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => break,
        }
    }
    assert_eq!(
        (replayed, closed),
        (channels.len() * history, None),
        "every gap replayed, the connection kept"
    );
    common::stop(relay, [publisher, probe, back]).await;
}

/// The other side of not counting asked-for replies against the slow-consumer limit: a
/// client that keeps subscribing without reading must still not grow its queue without
/// bound. The relay stops reading its requests while `max_queued_frames` replies are unsent,
/// so a later `subscribe` is not even seen (nobody hears the client join) until the client
/// reads; then everything arrives, in order, and the connection is kept.
#[tokio::test]
async fn a_client_that_keeps_subscribing_without_reading_is_held_not_buffered() {
    let history = 16;
    let relay = relay(RelayConfig {
        history_capacity: history,
        document_log_capacity: history,
        max_queued_frames: 8,
        rate_limit: None,
        ..RelayConfig::default()
    })
    .await;
    let url = relay.ws_url();
    let mut publisher = Client::hello(&url, "publisher").await;
    let payload = json!("y".repeat(32 * 1024));
    for n in 0..history {
        publisher
            .publish("full", &format!("f{n}"), payload.clone(), false)
            .await;
    }
    publisher.barrier().await;
    let mut observer = Client::hello(&url, "observer").await;
    let epoch = observer.subscribe("beacon", None, None).await.epoch;

    // 60 replays of 16 × 32 KiB (30 MiB) asked for, far more than the sockets can hold, then
    // a subscribe the observer would hear about.
    let rounds = 60;
    let mut greedy = Client::slow_reader(&relay).await;
    greedy
        .send(ClientMessage::Hello {
            client_id: "greedy".into(),
            token: None,
            instance: None,
        })
        .await;
    for _ in 0..rounds {
        greedy
            .send(ClientMessage::Subscribe {
                channel: "full".into(),
                since: Some(0),
                epoch: Some(epoch.clone()),
            })
            .await;
    }
    greedy
        .send(ClientMessage::Subscribe {
            channel: "beacon".into(),
            since: None,
            epoch: None,
        })
        .await;
    assert_eq!(
        observer.recv_within(Duration::from_secs(1)).await,
        None,
        "the relay read past the replies the client left unread"
    );

    // Now read: every reply, then the beacon's, and no close (`recv` fails on one).
    let (mut subscribed, mut replayed) = (0, 0);
    loop {
        match greedy.recv().await {
            ServerMessage::Subscribed { channel, .. } if channel == "full" => subscribed += 1,
            ServerMessage::Message { .. } => replayed += 1,
            ServerMessage::Presence { channel, .. } if channel == "beacon" => break,
            ServerMessage::Presence { .. } | ServerMessage::Subscribed { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((subscribed, replayed), (rounds, rounds * history));
    assert_eq!(
        observer.recv().await,
        ServerMessage::Presence {
            channel: "beacon".into(),
            change: PresenceChange::Join("greedy".into()),
        }
    );
    common::stop(relay, [publisher, observer, greedy]).await;
}

fn token_config() -> RelayConfig {
    RelayConfig {
        token: Some("s3cret".into()),
        ..RelayConfig::default()
    }
}

async fn refused_status(request: impl IntoClientRequest + Unpin) -> u16 {
    match within("handshake", tokio_tungstenite::connect_async(request)).await {
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected an HTTP refusal, got a connection"),
    }
}

#[tokio::test]
async fn a_wrong_token_in_the_header_is_refused_with_401_and_in_the_url_with_close_4001() {
    let relay = relay(token_config()).await;
    let url = relay.ws_url();

    let mut request = url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Authorization", HeaderValue::from_static("Bearer wrong"));
    assert_eq!(refused_status(request).await, 401);

    // A browser never sees an HTTP status, so a URL token is refused where it can see it.
    let (mut ws, _) = within(
        "connect",
        tokio_tungstenite::connect_async(format!("{url}?token=wrong")),
    )
    .await
    .unwrap();
    let mut close_code = None;
    while let Some(Ok(msg)) = within("close", ws.next()).await {
        if let Message::Close(Some(frame)) = msg {
            close_code = Some(u16::from(frame.code));
        }
    }
    assert_eq!(close_code, Some(4001));
    common::stop(relay, []).await;
}

#[tokio::test]
async fn a_correct_token_in_the_handshake_is_enough() {
    let relay = relay(token_config()).await;
    let url = relay.ws_url();

    let mut request = url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Authorization", HeaderValue::from_static("Bearer s3cret"));
    let (ws, _) = within("connect", tokio_tungstenite::connect_async(request))
        .await
        .unwrap();
    let mut by_header = Client { ws };
    by_header.send(ClientMessage::Ping { id: "h".into() }).await;
    assert!(matches!(by_header.recv().await, ServerMessage::Pong { .. }));

    let mut by_query = Client::hello(&format!("{url}?token=s3cret"), "q").await;
    by_query.send(ClientMessage::Ping { id: "q".into() }).await;
    assert!(matches!(by_query.recv().await, ServerMessage::Pong { .. }));
    common::stop(relay, [by_header, by_query]).await;
}

#[tokio::test]
async fn without_a_handshake_token_hello_must_bring_it() {
    let relay = relay(token_config()).await;
    let url = relay.ws_url();

    let mut good = Client::connect(&url).await;
    good.send(ClientMessage::Hello {
        client_id: "good".into(),
        token: Some("s3cret".into()),
        instance: None,
    })
    .await;
    assert_eq!(good.subscribe("room", None, None).await.members, ["good"]);

    for token in [None, Some("wrong".to_owned())] {
        let mut bad = Client::connect(&url).await;
        bad.send(ClientMessage::Hello {
            client_id: "bad".into(),
            token,
            instance: None,
        })
        .await;
        assert_eq!(error(&bad.recv().await), ("unauthorized", None));
        assert_eq!(u16::from(bad.recv_close().await.code), 4001);
    }

    let mut skipped = Client::connect(&url).await;
    skipped
        .send(ClientMessage::Subscribe {
            channel: "room".into(),
            since: None,
            epoch: None,
        })
        .await;
    assert_eq!(u16::from(skipped.recv_close().await.code), 4001);
    common::stop(relay, [good, skipped]).await;
}
