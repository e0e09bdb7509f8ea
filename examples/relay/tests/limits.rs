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
