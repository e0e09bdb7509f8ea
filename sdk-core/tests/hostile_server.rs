//! A server that speaks the Tether protocol wrongly, or unusually: what the engine does with
//! frames no well-behaved relay sends. Each test runs one engine against the scripted server
//! of `sim` in virtual time with a fixed seed.
#![allow(clippy::unwrap_used)]

mod sim;

use serde_json::{json, Value};
use sim::Behaviour;
use sim::Sim;
use std::time::Duration;
use tether_core::protocol::ClientMessage;
use tether_core::{
    Config, DisconnectCause, Event, Frame, HeartbeatConfig, HeartbeatMode, Protocol,
};

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

/// The server sends `frame` now; it arrives after the link's latency.
fn push(sim: &mut Sim, frame: Value) {
    sim.server_push(Frame::Text(frame.to_string()));
    sim.run_for(ms(50));
}

/// A Tether engine (seed 3) on the scripted server, not connected yet.
fn tether_sim() -> Sim {
    Sim::new(
        Config::builder("ws://relay")
            .protocol(Protocol::Tether)
            .seed(3)
            .build()
            .unwrap(),
        true,
    )
}

/// A Tether engine (seed 3) open on the scripted server, subscribed to `room`.
fn subscribed_to_room() -> Sim {
    let mut sim = tether_sim();
    sim.engine.subscribe(sim.now, "room").unwrap();
    sim.connect_open();
    sim.run_for(ms(100));
    sim
}

#[test]
fn a_pong_whose_id_names_no_ping_answers_nothing() {
    // A server that sends `pong`s of its own (a keepalive, an id of its own making) does not
    // answer the engine's pings: no round-trip time is measured from them, and where only
    // pongs count as liveness, a connection whose pings go unanswered is still found dead.
    let mut sim = Sim::new(
        Config::builder("ws://relay")
            .protocol(Protocol::Tether)
            .heartbeat(HeartbeatConfig {
                mode: HeartbeatMode::AppMessage,
                interval: Duration::from_secs(10),
                max_missed: 2,
                any_frame_is_liveness: false,
                ..HeartbeatConfig::default()
            })
            .seed(5)
            .build()
            .unwrap(),
        true,
    );
    sim.server.answer_pings = false;
    sim.connect_open();
    for _ in 0..8 {
        sim.run_for(Duration::from_secs(5));
        push(&mut sim, json!({"type": "pong", "id": "keepalive"}));
    }
    let rtts = sim.events_matching(|e| match e {
        Event::Rtt { rtt } => Some(*rtt),
        _ => None,
    });
    assert_eq!(rtts, [], "no ping was answered");
    let causes: Vec<_> = sim.reconnects().into_iter().map(|r| r.3).collect();
    assert_eq!(
        causes.first(),
        Some(&DisconnectCause::HeartbeatTimeout),
        "{causes:?}"
    );
}

#[test]
fn a_message_is_delivered_whatever_number_its_unused_timestamp_is() {
    // `ts` is "a number" (docs/protocol.md), Unix ms, which the engine does not use: a server
    // that writes it as a float (`time.time() * 1000`) or before 1970 still has its messages
    // delivered, not each one lost as undecodable.
    let mut sim = subscribed_to_room();
    for (offset, ts) in [
        (1, json!(1_712_345_678_901.5)),
        (2, json!(-5)),
        (3, json!(7)),
    ] {
        push(
            &mut sim,
            json!({"type": "message", "channel": "room", "offset": offset, "payload": offset, "ts": ts}),
        );
    }
    let offsets: Vec<_> = sim.delivered().iter().map(|m| m.offset).collect();
    assert_eq!(offsets, [Some(1), Some(2), Some(3)], "{:?}", sim.errors());
}

#[test]
fn messages_on_a_channel_the_app_is_not_subscribed_to_are_not_delivered() {
    // The server keeps sending on a channel after answering the app's unsubscribe, or sends
    // on one the app never subscribed to: the app said it does not want them (its
    // `subscribed` answers are ignored for the same reason), so neither is delivered.
    let mut sim = subscribed_to_room();
    sim.engine.unsubscribe(sim.now, "room").unwrap();
    sim.run_for(ms(100)); // the server answered `unsubscribed`
    assert!(sim
        .server_texts()
        .iter()
        .any(|t| t.contains(r#""type":"unsubscribe""#)));
    push(
        &mut sim,
        json!({"type": "message", "channel": "room", "offset": 9, "payload": "late"}),
    );
    push(
        &mut sim,
        json!({"type": "message", "channel": "never", "offset": 1, "payload": "stray"}),
    );
    // A channel-less (direct) message is still delivered.
    push(&mut sim, json!({"type": "message", "payload": "direct"}));
    let payloads: Vec<_> = sim.delivered().into_iter().map(|m| m.payload).collect();
    assert_eq!(payloads, [tether_core::Payload::Json(json!("direct"))]);
    // Not silently gone: each is a frame the server should not have sent, reported as a
    // reply to no request is.
    let unexpected: Vec<_> = sim
        .errors()
        .into_iter()
        .filter_map(|e| match e {
            tether_core::EngineError::UnexpectedFrame(text) => Some(text),
            _ => None,
        })
        .collect();
    assert_eq!(
        unexpected,
        [
            r#"message on channel "room", which the app is not subscribed to"#,
            r#"message on channel "never", which the app is not subscribed to"#,
        ]
    );
}

#[test]
fn a_server_streaming_a_channel_the_app_left_is_reported_once_per_channel_and_connection() {
    // A server that keeps streaming a channel after answering the app's unsubscribe (or one
    // the app never joined) used to raise one error event per message: a flood. The first
    // message on each channel is reported, once per connection; the others are counted.
    let mut sim = subscribed_to_room();
    sim.engine.unsubscribe(sim.now, "room").unwrap();
    sim.run_for(ms(100)); // the server answered `unsubscribed`
    for offset in 1..=50 {
        for channel in ["room", "never"] {
            let frame =
                json!({"type": "message", "channel": channel, "offset": offset, "payload": offset});
            sim.server_push(Frame::Text(frame.to_string()));
        }
    }
    sim.run_for(ms(100));
    assert_eq!(sim.delivered(), []);
    assert_eq!(
        unexpected(&sim),
        [
            r#"message on channel "room", which the app is not subscribed to"#,
            r#"message on channel "never", which the app is not subscribed to"#,
        ]
    );
    assert_eq!(sim.engine.stats().unexpected_dropped, 100);
    // A new connection is a new server session: its first stray message is news again.
    sim.kill_connection();
    sim.run_until_state(Duration::from_secs(30), |e| e.state().is_open());
    for offset in 51..=52 {
        push(
            &mut sim,
            json!({"type": "message", "channel": "room", "offset": offset, "payload": offset}),
        );
    }
    assert_eq!(unexpected(&sim).len(), 3, "{:?}", unexpected(&sim));
    assert_eq!(sim.engine.stats().unexpected_dropped, 102);
}

#[test]
fn stray_messages_on_endless_channel_names_are_reported_for_the_first_256_only() {
    // A server could use a new channel name for every message: the channels already reported
    // are remembered for the connection, at most 256 of them, and past that the stray
    // messages are only counted (reporting more would be the flood again).
    let mut sim = subscribed_to_room();
    for i in 0..1_000 {
        let frame =
            json!({"type": "message", "channel": format!("c{i}"), "offset": 1, "payload": i});
        sim.server_push(Frame::Text(frame.to_string()));
    }
    // The first ones again: still remembered.
    for i in 0..10 {
        let frame =
            json!({"type": "message", "channel": format!("c{i}"), "offset": 2, "payload": i});
        sim.server_push(Frame::Text(frame.to_string()));
    }
    sim.run_for(ms(100));
    let reported = unexpected(&sim);
    assert_eq!(reported.len(), 256);
    assert_eq!(
        reported[255],
        r#"message on channel "c255", which the app is not subscribed to"#
    );
    assert_eq!(sim.delivered(), []);
    assert_eq!(sim.engine.stats().unexpected_dropped, 1_010, "all counted");
}

// ---- channel positions: epochs, gaps, huge offsets ------------------------------------------

/// The offsets of the messages delivered so far on `room`.
/// Subscribed to "room", where another client published 1, 2 and 3, all delivered.
fn room_with_three_messages() -> Sim {
    let mut sim = subscribed_to_room();
    for i in 1..=3 {
        sim.other_publishes("room", json!(i));
    }
    sim.run_for(ms(100));
    sim
}

fn room_offsets(sim: &Sim) -> Vec<u64> {
    sim.delivered()
        .iter()
        .filter(|m| m.channel.as_deref() == Some("room"))
        .filter_map(|m| m.offset)
        .collect()
}

/// `recovered` of every `Subscribed` event so far.
fn recoveries(sim: &Sim) -> Vec<bool> {
    sim.events_matching(|e| match e {
        Event::Subscribed { recovered, .. } => Some(*recovered),
        _ => None,
    })
}

/// The `since` of every `subscribe` the server received for `room` (`None`: a fresh one).
fn subscribes(sim: &Sim) -> Vec<Option<u64>> {
    sim.server_texts()
        .iter()
        .filter_map(|t| match ClientMessage::decode(t) {
            Ok(ClientMessage::Subscribe { channel, since, .. }) if channel == "room" => Some(since),
            _ => None,
        })
        .collect()
}

/// The `unexpected_frame` errors reported so far.
fn unexpected(sim: &Sim) -> Vec<String> {
    sim.errors()
        .into_iter()
        .filter_map(|e| match e {
            tether_core::EngineError::UnexpectedFrame(text) => Some(text),
            _ => None,
        })
        .collect()
}

fn room_message(offset: u64) -> Value {
    json!({"type": "message", "channel": "room", "offset": offset, "payload": offset})
}

#[test]
fn a_recovered_answer_from_another_epoch_is_no_recovery() {
    // A restarted server (new epoch, offsets start over at 1) that still says `recovered:
    // true`: keeping the old position would drop the new history's messages 1..=3 as
    // duplicates. A recovery is only one in the epoch the client resumed: the answer is taken
    // as `recovered: false` (its offset adopted) and reported to the app as such.
    let mut sim = room_with_three_messages();
    sim.kill_connection();
    sim.server.channels.clear();
    sim.server.epoch = "epoch-2".into();
    sim.server.lie_recovered = true;
    sim.run_until_state(Duration::from_secs(30), |e| e.state().is_open());
    sim.run_for(ms(100));
    for i in 1..=4 {
        sim.other_publishes("room", json!(i));
    }
    sim.run_for(ms(100));
    assert_eq!(room_offsets(&sim), [1, 2, 3, 1, 2, 3, 4]);
    assert_eq!(
        recoveries(&sim),
        [false, false],
        "the app may have missed messages"
    );
    assert_eq!(sim.engine.stats().duplicates_dropped, 0);
}

#[test]
fn a_same_epoch_replay_from_before_the_position_delivers_no_duplicates() {
    // A server that does not resume says `recovered: false` and replays all it kept, from
    // offset 1 again. The epoch is the same, so offsets 1..=3 are the messages the app has:
    // only 4 and 5 are new. (The answer stays `recovered: false`: the server's word.)
    let mut sim = room_with_three_messages();
    sim.kill_connection();
    sim.server.never_resumes = true;
    for i in 4..=5 {
        sim.other_publishes("room", json!(i));
    }
    sim.run_until_state(Duration::from_secs(30), |e| e.state().is_open());
    sim.run_for(ms(100));
    assert_eq!(subscribes(&sim), [None, Some(3)]);
    assert_eq!(room_offsets(&sim), [1, 2, 3, 4, 5]);
    assert_eq!(recoveries(&sim), [false, false]);
    assert_eq!(sim.engine.stats().duplicates_dropped, 3);
    assert_eq!(sim.engine.last_offset("room"), Some(5));
}

#[test]
fn a_gap_in_a_channel_resubscribes_once_and_its_replay_fills_it_in_order() {
    // Every subscriber gets every message of its channel, so offset 3 after 1 means 2 went
    // missing. 3 is not delivered out of order: the client resubscribes from 1, once, and
    // the replay brings 2, 3, 4, 5 in order. 4 and 5 arrive before that answer and show the
    // same gap: no second subscribe, and not delivered (the replay holds them: the server
    // stored them before it read the subscribe). 6 is live after the answer.
    let mut sim = subscribed_to_room();
    sim.other_publishes("room", json!(1));
    sim.run_for(ms(100));
    sim.server.store("room", json!(2), "lost"); // never sent to this subscriber
    sim.other_publishes("room", json!(3));
    sim.other_publishes("room", json!(4));
    sim.run_for(ms(15)); // 3 and 4 arrived: the subscribe is on its way
    sim.other_publishes("room", json!(5)); // arrives before the answer
    sim.run_for(ms(10)); // the server answered, with 2..=5
    sim.other_publishes("room", json!(6));
    sim.run_for(ms(100));
    assert_eq!(room_offsets(&sim), [1, 2, 3, 4, 5, 6]);
    assert_eq!(
        subscribes(&sim),
        [None, Some(1)],
        "one resubscribe for the gap"
    );
    assert_eq!(recoveries(&sim), [false, true], "the gap was filled");
    assert_eq!(
        unexpected(&sim),
        [r#"message on channel "room" skips from offset 1 to 3"#]
    );
    assert_eq!(sim.engine.last_offset("room"), Some(6));
}

#[test]
fn a_gap_the_server_no_longer_holds_is_reported_as_possibly_missed() {
    // The messages after the client's position were trimmed from the history: the
    // resubscribe's answer says `recovered: false` from just before the oldest kept, which the
    // client adopts; the app gets the retained ones in order and is told it may have missed
    // some.
    let mut sim = subscribed_to_room();
    for i in 1..=2 {
        sim.other_publishes("room", json!(i));
    }
    sim.run_for(ms(100));
    for i in 3..=5 {
        sim.server.store("room", json!(i), &format!("lost-{i}"));
    }
    let history = &mut sim.server.channels.get_mut("room").unwrap().history;
    history.retain(|m| m.0 > 3); // 3 is gone
    sim.other_publishes("room", json!(6));
    sim.run_for(ms(100));
    assert_eq!(room_offsets(&sim), [1, 2, 4, 5, 6]);
    assert_eq!(subscribes(&sim), [None, Some(2)]);
    assert_eq!(recoveries(&sim), [false, false]);
    sim.other_publishes("room", json!(7));
    sim.run_for(ms(100));
    assert_eq!(room_offsets(&sim), [1, 2, 4, 5, 6, 7]);
}

#[test]
fn a_huge_offset_is_a_gap_not_the_channel_position() {
    // One message at u64::MAX (or 2^60) used to become the channel's position: every later
    // message was then dropped as a duplicate until a `recovered: false`. It is a gap: not
    // delivered, and the position stays the last delivered one.
    let mut sim = subscribed_to_room();
    sim.other_publishes("room", json!(1));
    sim.run_for(ms(100));
    push(&mut sim, room_message(u64::MAX));
    for i in 2..=3 {
        sim.other_publishes("room", json!(i));
    }
    sim.run_for(ms(100));
    push(&mut sim, room_message(1 << 60));
    sim.other_publishes("room", json!(4));
    sim.run_for(ms(100));
    assert_eq!(room_offsets(&sim), [1, 2, 3, 4]);
    assert_eq!(sim.engine.last_offset("room"), Some(4));
    assert_eq!(subscribes(&sim), [None, Some(1), Some(3)]);
    assert_eq!(sim.engine.stats().duplicates_dropped, 0);
}

/// The server's `subscribed` for `room`.
fn room_subscribed(offset: u64, epoch: &str, recovered: bool) -> Value {
    json!({"type": "subscribed", "channel": "room", "offset": offset, "epoch": epoch, "recovered": recovered})
}

#[test]
fn a_message_before_the_answer_to_its_subscribe_is_not_delivered_out_of_order() {
    // A channel's messages come after its `subscribed`, which says where they start. One that
    // comes before it (a server that sends live messages to a subscriber it has not answered
    // yet) cannot be placed: a fresh subscription has no position to check it against, and
    // after a reconnect the position is the old connection's, maybe of another epoch. It was
    // delivered and taken as the position, ahead of the messages before it, which then came
    // again with it. It is dropped as unexpected: the stream after the answer holds it when
    // it is one the subscription wants (above the answer's offset: the next message shows the
    // gap), and docs/protocol.md makes "messages follow `subscribed`" a rule for servers.
    let mut sim = tether_sim();
    sim.connect_open();
    sim.server.behaviour = Behaviour::BlackHole; // the script below is the server
    sim.engine.subscribe(sim.now, "room").unwrap();
    push(&mut sim, room_message(7)); // live, before the answer
    push(&mut sim, room_subscribed(5, "e1", false));
    for offset in 6..=8 {
        push(&mut sim, room_message(offset));
    }
    assert_eq!(room_offsets(&sim), [6, 7, 8]);

    // The connection drops, and the server restarts (a new epoch, offsets start over): the
    // resume from 8 of "e1" is answered from before its oldest message, all of it replayed.
    // Its live 9 came before that answer, and 9 is 8 + 1 in the old epoch's terms.
    sim.kill_connection();
    sim.run_until_state(Duration::from_secs(30), |e| e.state().is_open());
    push(&mut sim, room_message(9));
    push(&mut sim, room_subscribed(0, "e2", false));
    for offset in 1..=9 {
        push(&mut sim, room_message(offset));
    }
    assert_eq!(room_offsets(&sim), [6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(sim.engine.last_offset("room"), Some(9));
    assert_eq!(
        unexpected(&sim),
        [r#"message on channel "room" before the answer to its subscribe"#; 2]
    );
    assert_eq!(sim.engine.stats().duplicates_dropped, 0);
}

#[test]
fn a_subscribed_the_client_did_not_ask_for_moves_no_position() {
    // A `subscribed` for a channel whose subscribe was answered already (a stale or forged
    // one) was taken as an answer: one that rewinds the position had the next message look
    // like a gap, whose resubscribe replayed messages the app had (2, 3 again); one that
    // advances it had the next ones dropped as duplicates (5 lost), and the next resume
    // start from the wrong place. Only the answer to a subscribe in flight places a
    // subscription; any other is ignored, as one for a channel not subscribed to is.
    let mut sim = room_with_three_messages();
    push(&mut sim, room_subscribed(1, "epoch-1", false));
    sim.other_publishes("room", json!(4));
    sim.run_for(ms(100));
    push(&mut sim, room_subscribed(100, "epoch-1", false));
    sim.other_publishes("room", json!(5));
    sim.run_for(ms(100));
    assert_eq!(room_offsets(&sim), [1, 2, 3, 4, 5]);
    assert_eq!(
        recoveries(&sim),
        [false],
        "only the answer to the subscribe"
    );
    assert_eq!(subscribes(&sim), [None]);
    // Nor does one whose `recovered: true` names another epoch.
    push(&mut sim, room_subscribed(0, "epoch-2", true));
    sim.kill_connection();
    sim.run_until_state(Duration::from_secs(30), |e| e.state().is_open());
    sim.run_for(ms(100));
    assert_eq!(
        subscribes(&sim),
        [None, Some(5)],
        "resumed from the last delivered"
    );
    assert_eq!(recoveries(&sim), [false, true]);
    assert_eq!(sim.engine.stats().duplicates_dropped, 0);
}

#[test]
fn a_server_that_keeps_skipping_offsets_gets_one_resubscribe_at_a_time() {
    // A flood of messages past a gap before the answer comes: one subscribe, however many.
    let mut sim = subscribed_to_room();
    sim.other_publishes("room", json!(1));
    sim.run_for(ms(100));
    for offset in (10..1_010).step_by(2) {
        sim.server_push(Frame::Text(room_message(offset).to_string()));
    }
    sim.run_for(ms(25)); // all arrived, and the one subscribe reached the server
    assert_eq!(subscribes(&sim), [None, Some(1)]);
    sim.run_for(ms(100));
    assert_eq!(room_offsets(&sim), [1], "the server holds none of them");
    assert_eq!(subscribes(&sim), [None, Some(1)]);
    assert_eq!(unexpected(&sim).len(), 1);
}

#[test]
fn a_gap_on_a_channel_being_left_is_dropped_quietly() {
    // Between the app's unsubscribe and its answer, the server's messages on the channel
    // belong to the ended subscription, gap or not: no resubscribe, no error.
    let mut sim = subscribed_to_room();
    sim.other_publishes("room", json!(1));
    sim.run_for(ms(100));
    sim.engine.unsubscribe(sim.now, "room").unwrap();
    sim.server_push(Frame::Text(room_message(5).to_string())); // before the answer
    sim.run_for(ms(100));
    assert_eq!(room_offsets(&sim), [1]);
    assert_eq!(subscribes(&sim), [None]);
    assert_eq!(unexpected(&sim), Vec::<String>::new());
}

#[test]
fn an_event_stream_delivers_its_messages_in_the_order_the_server_sends_them() {
    // An event stream cannot carry a subscribe, and its ids are opaque to the client (its
    // resume position, sent back as Last-Event-ID): the engine keeps no offsets for it, so it
    // neither drops duplicates nor holds back a message past a gap (docs/protocol.md).
    let config = Config::builder("http://relay/sse/room")
        .protocol(Protocol::Tether)
        .seed(3)
        .build()
        .unwrap();
    let mut sim = Sim::new(config, true);
    sim.connect_open();
    for offset in [1, 5, 5] {
        sim.server_push_sse(tether_core::SseEvent {
            event: "message".into(),
            id: Some(format!("e1-{offset}")),
            data: room_message(offset).to_string(),
            ..tether_core::SseEvent::default()
        });
    }
    sim.run_for(ms(100));
    assert_eq!(room_offsets(&sim), [1, 5, 5]);
    assert_eq!(sim.errors(), []);
}
