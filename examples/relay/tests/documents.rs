//! Shared documents over real sockets: how the relay answers `doc_sync` and `doc_change`.
#![allow(clippy::unwrap_used)]

mod common;

use common::{relay, stop, Client};
use serde_json::json;
use tether_core::protocol::{ClientMessage, Op, ServerMessage};
use tether_relay::RelayConfig;

/// What the relay answers a `doc_sync` from `version` of `epoch`: everything up to the
/// reply of a barrier request sent right behind it.
async fn sync(c: &mut Client, version: Option<u64>, epoch: Option<&str>) -> Vec<ServerMessage> {
    c.send(ClientMessage::DocSync {
        channel: "doc".into(),
        version,
        epoch: epoch.map(str::to_owned),
        pending: Vec::new(),
    })
    .await;
    until_barrier(c).await
}

/// The versions of the changes replayed, or `None` if the answer was a snapshot.
fn replayed(answer: &[ServerMessage]) -> Option<Vec<u64>> {
    answer
        .iter()
        .map(|m| match m {
            ServerMessage::DocChange { version, .. } => Some(*version),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_resume_replays_back_to_the_oldest_logged_change_and_snapshots_before_it() {
    // A log of three changes: after five, it holds versions 3 to 5.
    let relay = relay(RelayConfig {
        document_log_capacity: 3,
        ..RelayConfig::default()
    })
    .await;
    let mut writer = Client::hello(&relay.ws_url(), "writer").await;
    for n in 1..=5 {
        let ops = vec![Op::Set {
            key: "n".into(),
            value: json!(n),
        }];
        writer.send(change(&format!("c{n}"), ops)).await;
        assert!(
            matches!(writer.recv().await, ServerMessage::Ack { offset: Some(o), .. } if o == n as u64)
        );
    }
    let mut reader = Client::hello(&relay.ws_url(), "reader").await;
    let epoch = match sync(&mut reader, None, None).await.as_slice() {
        [ServerMessage::DocSnapshot {
            version: 5,
            epoch: Some(epoch),
            applied,
            ..
        }] => {
            assert_eq!(
                applied,
                &["c3", "c4", "c5"],
                "the ids of the logged changes"
            );
            epoch.clone()
        }
        other => panic!("expected a snapshot at version 5, got {other:?}"),
    };
    let e = Some(epoch.as_str());
    let mut answers = Vec::new();
    for version in 0..=6 {
        answers.push(replayed(&sync(&mut reader, Some(version), e).await));
    }
    assert_eq!(
        answers,
        [
            None,
            None,
            Some(vec![3, 4, 5]),
            Some(vec![4, 5]),
            Some(vec![5]),
            Some(vec![]),
            None
        ],
        "versions 0 to 6: replay from 2 (just before the oldest logged change) to the head"
    );
    assert_eq!(
        replayed(&sync(&mut reader, Some(5), Some("another")).await),
        None,
        "another epoch gets a snapshot"
    );
    stop(relay, [writer, reader]).await;
}

fn change(id: &str, ops: Vec<Op>) -> ClientMessage {
    ClientMessage::DocChange {
        id: id.into(),
        channel: "doc".into(),
        base: 0,
        ops,
    }
}

fn increment(key: &str, by: i64) -> Vec<Op> {
    vec![Op::Increment {
        key: key.into(),
        by: by.into(),
    }]
}

#[tokio::test]
async fn change_ids_are_deduplicated_per_client_and_a_reused_id_is_refused() {
    let relay = relay(RelayConfig::default()).await;
    let url = relay.ws_url();
    let mut alice = Client::hello(&url, "alice").await;
    let mut mallory = Client::hello(&url, "mallory").await;
    assert!(matches!(
        sync(&mut alice, None, None).await.as_slice(),
        [ServerMessage::DocSnapshot { version: 0, .. }]
    ));
    // Mallory takes the id alice will use next (ids are seen by every syncing client).
    mallory.send(change("alice-1", increment("m", 1))).await;
    assert_eq!(
        mallory.recv().await,
        ServerMessage::Ack {
            id: "alice-1".into(),
            offset: Some(1)
        }
    );
    // Alice hears of it as mallory's: her client must not take it for her own change.
    assert_eq!(
        alice.recv().await,
        ServerMessage::DocChange {
            channel: "doc".into(),
            version: 1,
            id: "alice-1".into(),
            client_id: Some("mallory".into()),
            ops: increment("m", 1),
        }
    );
    // Alice's change under that id is hers: applied as version 2, not acked as a duplicate
    // of mallory's and dropped.
    alice.send(change("alice-1", increment("a", 1))).await;
    let applied = ServerMessage::Ack {
        id: "alice-1".into(),
        offset: Some(2),
    };
    assert_eq!(alice.recv().await, applied);
    // Her resend is acknowledged again and not applied twice; the id with other ops is
    // refused.
    alice.send(change("alice-1", increment("a", 1))).await;
    assert_eq!(alice.recv().await, applied);
    alice.send(change("alice-1", increment("a", 5))).await;
    assert_eq!(
        common::error(&alice.recv().await),
        ("duplicate_id", Some("alice-1"))
    );
    let mut reader = Client::hello(&url, "reader").await;
    let epoch = match sync(&mut reader, None, None).await.as_slice() {
        [ServerMessage::DocSnapshot {
            version,
            epoch,
            state,
            applied,
            applied_by,
            ..
        }] => {
            assert_eq!(*version, 2);
            assert_eq!(state["a"], json!(1), "alice's change, once");
            assert_eq!(state["m"], json!(1), "mallory's change");
            assert_eq!(applied, &["alice-1", "alice-1"]);
            assert_eq!(
                applied_by.as_deref(),
                Some(&["mallory".to_owned(), "alice".to_owned()][..]),
                "each under its author"
            );
            epoch.clone()
        }
        other => panic!("expected a snapshot, got {other:?}"),
    };
    // A replay names the authors too.
    let authors: Vec<_> = sync(&mut reader, Some(0), epoch.as_deref())
        .await
        .into_iter()
        .map(|m| match m {
            ServerMessage::DocChange { id, client_id, .. } => (id, client_id),
            other => panic!("expected a replayed change, got {other:?}"),
        })
        .collect();
    assert_eq!(
        authors,
        [
            ("alice-1".to_owned(), Some("mallory".to_owned())),
            ("alice-1".to_owned(), Some("alice".to_owned()))
        ]
    );
    stop(relay, [alice, mallory, reader]).await;
}

/// Everything the relay sends `c` up to the reply to a barrier request sent now.
async fn until_barrier(c: &mut Client) -> Vec<ServerMessage> {
    c.send(ClientMessage::Request {
        id: "barrier".into(),
        channel: None,
        payload: json!(null),
    })
    .await;
    let mut got = Vec::new();
    // Bounded: each `recv` waits at most `common::WAIT`, and a sync answers at most a log.
    for _ in 0..16 {
        match c.recv().await {
            ServerMessage::Reply { .. } => return got,
            msg => got.push(msg),
        }
    }
    panic!("no barrier reply after {got:?}");
}

// The relay used to go on sending a document's changes to a connection whose client had
// closed it (the client had no way to say so), until that connection ended.
#[tokio::test]
async fn after_doc_close_a_connection_hears_no_more_of_the_document() {
    let relay = relay(RelayConfig::default()).await;
    let url = relay.ws_url();
    let mut writer = Client::hello(&url, "writer").await;
    let mut closer = Client::hello(&url, "closer").await;
    let mut keeper = Client::hello(&url, "keeper").await;
    let mut epoch = None;
    for c in [&mut closer, &mut keeper] {
        match sync(c, None, None).await.as_slice() {
            [ServerMessage::DocSnapshot {
                version: 0,
                epoch: e,
                ..
            }] => epoch = e.clone(),
            other => panic!("expected an empty snapshot, got {other:?}"),
        }
    }
    let write = |n: u64| change(&format!("c{n}"), increment("n", 1));
    writer.send(write(1)).await;
    assert!(matches!(
        writer.recv().await,
        ServerMessage::Ack {
            offset: Some(1),
            ..
        }
    ));
    for c in [&mut closer, &mut keeper] {
        assert!(matches!(
            c.recv().await,
            ServerMessage::DocChange { version: 1, .. }
        ));
    }

    closer
        .send(ClientMessage::DocClose {
            channel: "doc".into(),
        })
        .await;
    assert_eq!(
        until_barrier(&mut closer).await,
        [],
        "doc_close is not answered"
    );
    for n in 2..=4 {
        writer.send(write(n)).await;
        assert!(
            matches!(writer.recv().await, ServerMessage::Ack { offset: Some(o), .. } if o == n)
        );
    }
    // Each change went to the syncers before its ack: any sent to the closer is queued
    // ahead of this reply.
    assert_eq!(
        until_barrier(&mut closer).await,
        [],
        "nothing more of the document"
    );
    let versions: Vec<u64> = until_barrier(&mut keeper)
        .await
        .iter()
        .map(|m| match m {
            ServerMessage::DocChange { version, .. } => *version,
            other => panic!("expected a change, got {other:?}"),
        })
        .collect();
    assert_eq!(
        versions,
        [2, 3, 4],
        "the other syncer still hears every change"
    );

    // Closing again (or a document never synced) is a no-op, not an error.
    for channel in ["doc", "never-synced"] {
        closer
            .send(ClientMessage::DocClose {
                channel: channel.into(),
            })
            .await;
    }
    assert_eq!(until_barrier(&mut closer).await, []);
    // A `doc_sync` brings the document back, from where the closer left it.
    assert_eq!(
        replayed(&sync(&mut closer, Some(1), epoch.as_deref()).await),
        Some(vec![2, 3, 4])
    );
    writer.send(write(5)).await;
    assert!(matches!(
        writer.recv().await,
        ServerMessage::Ack {
            offset: Some(5),
            ..
        }
    ));
    assert!(matches!(
        closer.recv().await,
        ServerMessage::DocChange { version: 5, .. }
    ));
    stop(relay, [writer, closer, keeper]).await;
}
