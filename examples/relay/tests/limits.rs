//! The relay's size limits over real sockets: ids it stores, frames it builds, documents it
//! keeps. A request over a limit is refused with a typed `error` and the connection carries
//! on; nothing the relay builds is larger than a default client accepts.
#![allow(clippy::unwrap_used)]

mod common;

use common::{error, relay, stop, Client};
use serde_json::json;
use tether_core::protocol::{ClientMessage, Op, ServerMessage};
use tether_relay::RelayConfig;

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

fn doc_sync(channel: &str) -> ClientMessage {
    ClientMessage::DocSync {
        channel: channel.into(),
        version: None,
        epoch: None,
        pending: Vec::new(),
    }
}

fn doc_set(id: &str, channel: &str, key: &str, value: serde_json::Value) -> ClientMessage {
    ClientMessage::DocChange {
        id: id.into(),
        channel: channel.into(),
        base: 0,
        ops: vec![Op::Set {
            key: key.into(),
            value,
        }],
    }
}

/// Syncs `channel` and returns the snapshot's version and state.
async fn synced(
    c: &mut Client,
    channel: &str,
) -> (u64, serde_json::Map<String, serde_json::Value>) {
    c.send(doc_sync(channel)).await;
    match c.recv().await {
        ServerMessage::DocSnapshot { version, state, .. } => (version, state),
        other => panic!("expected a snapshot of {channel}, got {other:?}"),
    }
}

async fn acked(c: &mut Client, msg: ClientMessage) -> u64 {
    c.send(msg).await;
    match c.recv().await {
        ServerMessage::Ack { offset, .. } => offset.unwrap(),
        other => panic!("expected an ack, got {other:?}"),
    }
}

#[tokio::test]
async fn documents_are_capped_and_those_without_content_or_syncers_are_freed() {
    let relay = relay(RelayConfig {
        max_documents: 3,
        ..RelayConfig::default()
    })
    .await;
    let url = relay.ws_url();
    let mut a = Client::hello(&url, "a").await;
    synced(&mut a, "kept").await;
    assert_eq!(acked(&mut a, doc_set("k1", "kept", "k", json!(1))).await, 1);
    synced(&mut a, "made-up-1").await;
    synced(&mut a, "made-up-2").await;
    // A fourth document, by sync or by change, is refused by name.
    a.send(doc_sync("made-up-3")).await;
    assert_eq!(error(&a.recv().await), ("too_many_documents", None));
    a.send(doc_set("k2", "made-up-3", "k", json!(1))).await;
    assert_eq!(error(&a.recv().await), ("too_many_documents", Some("k2")));
    // Its connection was not harmed.
    a.barrier().await;
    drop(a);

    // Once `a` is gone, only the document with content is left: room for two more.
    let mut b = Client::hello(&url, "b").await;
    let mut freed = false;
    for _ in 0..50 {
        b.send(doc_sync("made-up-4")).await;
        match b.recv().await {
            ServerMessage::DocSnapshot { .. } => {
                freed = true;
                break;
            }
            // `a`'s disconnect may not have been handled yet.
            ServerMessage::Error { code, .. } if code == "too_many_documents" => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            other => panic!("expected a snapshot, got {other:?}"),
        }
    }
    assert!(freed, "the made-up documents were never freed");
    synced(&mut b, "made-up-5").await;
    let (version, state) = synced(&mut b, "kept").await;
    assert_eq!((version, state.get("k")), (1, Some(&json!(1))));
    b.send(doc_sync("made-up-6")).await;
    assert_eq!(error(&b.recv().await), ("too_many_documents", None));
    stop(relay, [b]).await;
}

#[tokio::test]
async fn a_change_past_the_state_cap_is_refused_and_others_never_see_it() {
    let relay = relay(RelayConfig {
        max_document_bytes: 1_000,
        ..RelayConfig::default()
    })
    .await;
    let url = relay.ws_url();
    let mut watcher = Client::hello(&url, "watcher").await;
    synced(&mut watcher, "doc").await;
    let mut c = Client::hello(&url, "c").await;
    synced(&mut c, "doc").await;

    assert_eq!(
        acked(&mut c, doc_set("c1", "doc", "a", json!("x".repeat(600)))).await,
        1
    );
    c.send(doc_set("c2", "doc", "b", json!("x".repeat(600))))
        .await;
    assert_eq!(error(&c.recv().await), ("too_large", Some("c2")));
    // Replacing the value instead stays under the cap.
    assert_eq!(
        acked(&mut c, doc_set("c3", "doc", "a", json!("y".repeat(900)))).await,
        2
    );
    // A resend of an applied change is acknowledged again, even though applying it now
    // would not fit.
    assert_eq!(
        acked(&mut c, doc_set("c1", "doc", "a", json!("x".repeat(600)))).await,
        1
    );

    for expected in [1, 2] {
        match watcher.recv().await {
            ServerMessage::DocChange { version, .. } => assert_eq!(version, expected),
            other => panic!("expected change {expected}, got {other:?}"),
        }
    }
    let (version, state) = synced(&mut watcher, "doc").await;
    assert_eq!((version, state.len()), (2, 1));
    stop(relay, [watcher, c]).await;
}

#[tokio::test]
async fn a_reply_larger_than_the_limit_is_an_error_not_a_dropped_connection() {
    // `1e5` comes back as `100000.0`: a 1 MiB request echoes as a ~2.4 MB reply, more than
    // the connection's write buffer takes, which used to end it without a close frame.
    let relay = relay(RelayConfig::default()).await;
    let mut c = Client::hello(&relay.ws_url(), "c").await;
    let numbers = vec!["1e5"; 250_000].join(",");
    c.send_text(&format!(
        r#"{{"type":"request","id":"big","payload":[{numbers}]}}"#
    ))
    .await;
    assert_eq!(error(&c.recv().await), ("too_large", Some("big")));
    c.barrier().await;
    stop(relay, [c]).await;
}

#[tokio::test]
async fn a_document_never_grows_past_a_snapshot_that_can_be_sent() {
    // No state cap of its own: the snapshot's size stops the document.
    let max = 64 * 1024;
    let relay = relay(RelayConfig {
        max_message_size: max,
        max_document_bytes: usize::MAX,
        ..RelayConfig::default()
    })
    .await;
    let url = relay.ws_url();
    let mut c = Client::hello(&url, "c").await;
    synced(&mut c, "doc").await;
    let mut refused = None;
    for i in 0..20 {
        c.send(doc_set(
            &format!("c{i}"),
            "doc",
            &format!("k{i}"),
            json!("x".repeat(10_000)),
        ))
        .await;
        match c.recv().await {
            ServerMessage::Ack { .. } => {}
            ServerMessage::Error { code, .. } if code == "too_large" => {
                refused = Some(i);
                break;
            }
            other => panic!("expected an ack or too_large, got {other:?}"),
        }
    }
    let refused = refused.expect("the document grew without limit");
    assert!(refused >= 5, "refused too early, at change {refused}");

    // A newcomer still gets the whole document, in one frame within the limit.
    let mut newcomer = Client::hello(&url, "newcomer").await;
    newcomer.send(doc_sync("doc")).await;
    match newcomer.next_raw().await {
        Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
            assert!(text.len() <= max, "{} bytes", text.len());
            match ServerMessage::decode(&text).unwrap() {
                ServerMessage::DocSnapshot { version, state, .. } => {
                    assert_eq!((version, state.len()), (refused, refused as usize));
                }
                other => panic!("expected a snapshot, got {other:?}"),
            }
        }
        other => panic!("expected the snapshot, got {other:?}"),
    }
    stop(relay, [c, newcomer]).await;
}
