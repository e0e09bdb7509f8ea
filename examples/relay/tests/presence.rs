//! Presence over real sockets: snapshots, joins, leaves, and the grace period that hides a
//! quick reconnect.
#![allow(clippy::unwrap_used)]

mod common;

use common::{relay, Client};
use serde_json::json;
use std::time::Duration;
use tether_core::protocol::{ClientMessage, PresenceChange, ServerMessage};
use tether_relay::RelayConfig;

fn presence(change: PresenceChange) -> ServerMessage {
    ServerMessage::Presence {
        channel: "room".into(),
        change,
    }
}

#[tokio::test]
async fn subscribers_get_a_snapshot_and_others_hear_join_and_leave() {
    // A long grace: the leave below must come from the unsubscribe, not from a timer.
    let relay = relay(RelayConfig {
        presence_grace: Duration::from_secs(60),
        ..RelayConfig::default()
    })
    .await;
    let url = relay.ws_url();
    let mut alice = Client::hello(&url, "alice").await;
    assert_eq!(alice.subscribe("room", None, None).await.members, ["alice"]);

    let mut bob = Client::hello(&url, "bob").await;
    assert_eq!(
        bob.subscribe("room", None, None).await.members,
        ["alice", "bob"]
    );
    assert_eq!(
        alice.recv().await,
        presence(PresenceChange::Join("bob".into()))
    );

    // A second connection of a present member is not a join.
    let mut bob_tab = Client::hello(&url, "bob").await;
    bob_tab.subscribe("room", None, None).await;
    bob.send(ClientMessage::Unsubscribe {
        channel: "room".into(),
    })
    .await;
    assert!(matches!(
        bob.recv().await,
        ServerMessage::Unsubscribed { .. }
    ));
    // bob is still there through the other tab, so alice hears nothing yet; the barrier
    // message below proves it.
    bob_tab
        .publish_acked("room", "m1", json!("still here"))
        .await;
    assert!(matches!(
        alice.recv().await,
        ServerMessage::Message { id: Some(id), .. } if id == "m1"
    ));

    bob_tab
        .send(ClientMessage::Unsubscribe {
            channel: "room".into(),
        })
        .await;
    assert_eq!(
        alice.recv().await,
        presence(PresenceChange::Leave("bob".into()))
    );
    common::stop(relay, [alice, bob, bob_tab]).await;
}

#[tokio::test]
async fn a_reconnect_within_the_grace_period_is_invisible_to_others() {
    let grace = Duration::from_millis(300);
    let relay = relay(RelayConfig {
        presence_grace: grace,
        ..RelayConfig::default()
    })
    .await;
    let url = relay.ws_url();
    let mut alice = Client::hello(&url, "alice").await;
    alice.subscribe("room", None, None).await;
    let mut bob = Client::hello(&url, "bob").await;
    bob.subscribe("room", None, None).await;
    assert_eq!(
        alice.recv().await,
        presence(PresenceChange::Join("bob".into()))
    );

    // The connection drops without a close handshake, then bob comes straight back.
    drop(bob);
    let mut bob = Client::hello(&url, "bob").await;
    let back = bob.subscribe("room", None, None).await;
    assert_eq!(back.members, ["alice", "bob"]);

    // Absence can only be shown by letting the grace period pass: a leave (or a second
    // join) would be queued for alice before the marker message below.
    tokio::time::sleep(grace * 3).await;
    bob.publish_acked("room", "marker", json!(null)).await;
    assert!(
        matches!(alice.recv().await, ServerMessage::Message { id: Some(id), .. } if id == "marker"),
        "alice saw a presence change for a reconnect within the grace period"
    );
    common::stop(relay, [alice, bob]).await;
}

#[tokio::test]
async fn a_member_that_does_not_return_leaves_after_the_grace_period() {
    let relay = relay(RelayConfig {
        presence_grace: Duration::from_millis(200),
        ..RelayConfig::default()
    })
    .await;
    let url = relay.ws_url();
    let mut alice = Client::hello(&url, "alice").await;
    alice.subscribe("room", None, None).await;
    let mut bob = Client::hello(&url, "bob").await;
    bob.subscribe("room", None, None).await;
    assert_eq!(
        alice.recv().await,
        presence(PresenceChange::Join("bob".into()))
    );

    drop(bob);
    assert_eq!(
        alice.recv().await,
        presence(PresenceChange::Leave("bob".into()))
    );

    // A later subscriber's snapshot no longer lists bob.
    let mut carol = Client::hello(&url, "carol").await;
    assert_eq!(
        carol.subscribe("room", None, None).await.members,
        ["alice", "carol"]
    );
    common::stop(relay, [alice, carol]).await;
}

/// The reproduced sequence: alice's first grace timer is still running when the channel goes
/// idle and is recreated; her next grace period there must not be ended by that old timer
/// (which, with per-channel generations, carried the same number), so others see neither a
/// leave nor a join although she came back within the grace period.
#[tokio::test]
async fn a_stale_grace_timer_from_a_recreated_channel_does_not_end_a_new_grace_period() {
    let grace = Duration::from_secs(1);
    let relay = relay(RelayConfig {
        presence_grace: grace,
        ..RelayConfig::default()
    })
    .await;
    let url = relay.ws_url();
    let connections = |n: usize| {
        let relay = &relay;
        common::within("the connection count", async move {
            while relay.open_connections() != n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    // Grace period 1 starts (its timer fires at d1 + 1 s) when a newer connection of her
    // client instance ends her first one.
    let (old, _) = instance_in_room(&url, "alice", "i1").await;
    let mut alice = Client::connect(&url).await;
    alice
        .send(ClientMessage::Hello {
            client_id: "alice".into(),
            token: None,
            instance: Some("i1".into()),
        })
        .await;
    connections(1).await;
    let d1 = tokio::time::Instant::now();
    drop(old);
    // She is back (a known return: her grace period ends), then unsubscribes: the channel
    // is idle and dropped.
    alice.subscribe("room", None, None).await;
    alice
        .send(ClientMessage::Unsubscribe {
            channel: "room".into(),
        })
        .await;
    assert!(matches!(
        alice.recv().await,
        ServerMessage::Unsubscribed { .. }
    ));

    // The channel is recreated; grace period 2 starts (until about d1 + 1.6 s).
    tokio::time::sleep_until(d1 + Duration::from_millis(600)).await;
    let mut bob = Client::hello(&url, "bob").await;
    bob.subscribe("room", None, None).await;
    alice.subscribe("room", None, None).await;
    assert_eq!(
        bob.recv().await,
        presence(PresenceChange::Join("alice".into()))
    );
    drop(alice);
    connections(1).await;

    // After timer 1 fired (d1 + 1 s), within grace period 2, alice returns.
    tokio::time::sleep_until(d1 + grace + Duration::from_millis(300)).await;
    let mut alice = Client::hello(&url, "alice").await;
    assert_eq!(
        alice.subscribe("room", None, None).await.members,
        ["alice", "bob"]
    );
    // Past the end of grace period 2 too; then a marker: any leave or join would come first.
    tokio::time::sleep_until(d1 + grace * 2).await;
    alice.publish_acked("room", "marker", json!(null)).await;
    assert!(
        matches!(bob.recv().await, ServerMessage::Message { id: Some(id), .. } if id == "marker"),
        "bob saw a presence change for a return within the grace period"
    );
    common::stop(relay, [alice, bob]).await;
}

/// Connects as `client_id` with `hello.instance`, and subscribes to `room`.
async fn instance_in_room(url: &str, client_id: &str, instance: &str) -> (Client, Vec<String>) {
    let mut c = Client::connect(url).await;
    c.send(ClientMessage::Hello {
        client_id: client_id.into(),
        token: None,
        instance: Some(instance.into()),
    })
    .await;
    let members = c.subscribe("room", None, None).await.members;
    (c, members)
}

#[tokio::test]
async fn a_newer_connection_of_an_instance_ends_the_older_one_without_a_presence_change() {
    // A long grace: alice's leave below must come from her close, not from a timer.
    let relay = relay(RelayConfig {
        presence_grace: Duration::from_secs(60),
        ..RelayConfig::default()
    })
    .await;
    let url = relay.ws_url();
    let (mut old, _) = instance_in_room(&url, "alice", "i1").await;
    // Another instance of alice (another tab) is not ended by the reconnect below.
    let (mut tab, _) = instance_in_room(&url, "alice", "i2").await;
    let mut bob = Client::hello(&url, "bob").await;
    assert_eq!(
        bob.subscribe("room", None, None).await.members,
        ["alice", "bob"]
    );

    // Instance i1 connects again (its client found the old connection dead): the relay
    // drops the old connection, and bob sees no change.
    let (mut new, members) = instance_in_room(&url, "alice", "i1").await;
    assert_eq!(members, ["alice", "bob"]);
    loop {
        match old.next_raw().await {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(_))) => continue,
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => {
                panic!("dropped, not closed")
            }
            _ => break,
        }
    }
    // Both alices leave on purpose: i2 now, and i1, whose old connection the relay never
    // heard end, with a normal closure: alice leaves at once.
    tab.send(ClientMessage::Unsubscribe {
        channel: "room".into(),
    })
    .await;
    new.publish_acked("room", "marker", json!(null)).await;
    assert!(
        matches!(bob.recv().await, ServerMessage::Message { id: Some(id), .. } if id == "marker"),
        "bob saw a presence change"
    );
    let normal = tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "".into(),
    };
    new.ws.close(Some(normal)).await.unwrap();
    assert_eq!(
        bob.recv().await,
        presence(PresenceChange::Leave("alice".into()))
    );
    common::stop(relay, [tab, bob, new]).await;
}
