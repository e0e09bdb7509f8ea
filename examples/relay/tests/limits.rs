//! The relay's size limits over real sockets: ids it stores, frames it builds, documents it
//! keeps. A request over a limit is refused with a typed `error` and the connection carries
//! on; nothing the relay builds is larger than a default client accepts.
#![allow(clippy::unwrap_used)]

mod common;

use common::{relay, stop, Client};
use serde_json::json;
use tether_core::protocol::{ClientMessage, ServerMessage};
use tether_relay::RelayConfig;

fn error(msg: &ServerMessage) -> (&str, Option<&str>) {
    match msg {
        ServerMessage::Error { code, id, .. } => (code.as_str(), id.as_deref()),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn publish_and_change_ids_longer_than_128_bytes_are_refused_and_not_stored() {
    let relay = relay(RelayConfig::default()).await;
    let url = relay.ws_url();
    let mut watcher = Client::hello(&url, "watcher").await;
    watcher.subscribe("room", None, None).await;
    let mut c = Client::hello(&url, "c").await;

    let long = "i".repeat(129);
    c.publish("room", &long, json!("x"), true).await;
    assert_eq!(error(&c.recv().await), ("bad_frame", None));
    c.send(ClientMessage::DocChange {
        id: long.clone(),
        channel: "doc".into(),
        base: 0,
        ops: vec![],
    })
    .await;
    assert_eq!(error(&c.recv().await), ("bad_frame", None));

    // 128 bytes is fine, and the refused publish took no offset.
    let exact = "i".repeat(128);
    assert_eq!(c.publish_acked("room", &exact, json!("y")).await, 1);
    match watcher.recv().await {
        ServerMessage::Message {
            offset: Some(1),
            id: Some(id),
            ..
        } => assert_eq!(id, exact),
        other => panic!("expected the 128-byte publish, got {other:?}"),
    }
    stop(relay, [watcher, c]).await;
}

/// A publish whose frame is exactly `size` bytes, its payload a string.
fn publish_of_size(channel: Option<&str>, id: &str, size: usize) -> ClientMessage {
    let with = |text: String| ClientMessage::Publish {
        id: id.into(),
        channel: channel.map(str::to_owned),
        payload: json!(text),
        ack: true,
    };
    let overhead = with(String::new()).encode().len();
    let msg = with("x".repeat(size - overhead));
    assert_eq!(msg.encode().len(), size);
    msg
}

#[tokio::test]
async fn a_publish_whose_message_frame_would_exceed_the_limit_is_refused_not_acked() {
    // The defaults: a 1 MiB publish was acked while its 1,048,601-byte message frame was
    // dropped by every default subscriber.
    let relay = relay(RelayConfig::default()).await;
    let max = RelayConfig::default().max_message_size;
    let url = relay.ws_url();
    let mut watcher = Client::hello(&url, "watcher").await;
    watcher.subscribe("room", None, None).await;
    let mut c = Client::hello(&url, "c").await;

    c.send(publish_of_size(Some("room"), "big", max)).await;
    assert_eq!(error(&c.recv().await), ("too_large", Some("big")));
    c.send(publish_of_size(None, "echo", max)).await;
    assert_eq!(error(&c.recv().await), ("too_large", Some("echo")));

    // Neither stored nor delivered: the next publish takes offset 1 and is the first the
    // watcher hears of. One that fits once wrapped is acked and delivered whole.
    let fits = max - 100;
    c.send(publish_of_size(Some("room"), "fits", fits)).await;
    match c.recv().await {
        ServerMessage::Ack { id, offset } => assert_eq!((id.as_str(), offset), ("fits", Some(1))),
        other => panic!("expected the ack, got {other:?}"),
    }
    match watcher.recv().await {
        ServerMessage::Message {
            offset: Some(1),
            id: Some(id),
            ..
        } => assert_eq!(id, "fits"),
        other => panic!("expected the fitting publish, got {other:?}"),
    }
    stop(relay, [watcher, c]).await;
}
