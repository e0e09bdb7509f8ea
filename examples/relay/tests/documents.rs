//! Shared documents over real sockets: how the relay answers `doc_sync` and `doc_change`.
#![allow(clippy::unwrap_used)]

mod common;

use common::{relay, stop, Client};
use serde_json::json;
use tether_core::protocol::{ClientMessage, Op, ServerMessage};
use tether_relay::RelayConfig;

fn set(id: &str, channel: &str, value: i64) -> ClientMessage {
    ClientMessage::DocChange {
        id: id.into(),
        channel: channel.into(),
        base: 0,
        ops: vec![Op::Set {
            key: "n".into(),
            value: json!(value),
        }],
    }
}

/// What the relay answers a `doc_sync` from `version` of `epoch`: everything up to the
/// reply of a barrier request sent right behind it.
async fn sync(c: &mut Client, version: Option<u64>, epoch: Option<&str>) -> Vec<ServerMessage> {
    c.send(ClientMessage::DocSync {
        channel: "doc".into(),
        version,
        epoch: epoch.map(str::to_owned),
    })
    .await;
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
        writer.send(set(&format!("c{n}"), "doc", n)).await;
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
