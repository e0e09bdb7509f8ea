//! Shared documents: the server's answer to one of our changes reaches the view even when the
//! change has left its document first (dropped from the outbox after it was written, made
//! before the document was closed and reopened, taken as applied before a server reset its
//! state), and every local change reports its `LocalPending` before its `Confirmed`. Engine
//! level: the docnet harness, and a by-hand server (`Hand`) for exact message orders.
#![allow(clippy::unwrap_used)]
#![cfg(feature = "documents")]

mod docnet;

use docnet::{client_config, inc, secs, set, started, DocNet, DOC};
use serde_json::json;
use std::time::Duration;
use tether_core::protocol::{ClientMessage, ServerMessage};
use tether_core::sync::{ChangeOrigin, Op};
use tether_core::{Action, Config, Engine, Event, Frame, Instant, Protocol, TransportId};

/// A docnet whose client 0 has an outbox of at most `max` messages.
fn started_with_small_outbox(clients: usize, seed: u64, max: usize) -> DocNet {
    let mut net = DocNet::new(clients, seed, 1_024);
    let config = client_config(0)
        .outbox_max_messages(max)
        .seed(99)
        .build()
        .unwrap();
    let mut engine = Engine::new(config, 0);
    engine.open_document(Instant::ZERO, DOC).unwrap();
    net.nodes[0].engine = engine;
    net.connect_all();
    net.settle(secs(10));
    net
}

// ---------------------------------------------------------------------------------------------
// An in-flight document change evicted from the outbox (overflow) by a later request is rolled
// back and reported, but the server applied it. Its ack used to be ignored, and the author
// stayed a version behind, its view missing its own change, while everyone else showed it.
// ---------------------------------------------------------------------------------------------
#[test]
fn an_applied_change_evicted_from_the_outbox_after_it_was_written_shows_for_its_author() {
    let mut net = started_with_small_outbox(2, 21, 1);
    // Written at once: in flight, awaiting its ack.
    let change = net.change(0, set("title", json!("mine"))).unwrap();
    // The app makes a request before the ack is back: the full outbox drops its oldest entry,
    // the in-flight change (which has most likely reached the server already).
    let now = net.now;
    net.nodes[0]
        .engine
        .request(now, json!("ping?"), Some(secs(30)))
        .unwrap();
    net.run_for(secs(5));
    let rejected = net.events(0, |e| match e {
        Event::ChangeRejected { change, code, .. } => Some((*change, code.clone())),
        _ => None,
    });
    assert_eq!(
        net.server.state()["title"],
        json!("mine"),
        "the server applied it"
    );
    // Its author too, though it reported the change dropped.
    assert_eq!(rejected, [(change, "overflow".to_owned())]);
    net.expect_same_everywhere();
}

// ---------------------------------------------------------------------------------------------
// A document closed and opened again while offline, with a change of the old one still in the
// outbox: on reconnect the new document's doc_sync overtakes that change (control frames go
// ahead of the outbox), so its snapshot lacks the change, and the change's ack names a change
// the new document does not know. It used to be ignored: the app's own change never showed.
// ---------------------------------------------------------------------------------------------
#[test]
fn a_document_reopened_while_offline_shows_its_own_queued_change() {
    let mut net = started(2, 22);
    net.set_online(0, false);
    net.change(0, set("title", json!("mine"))).unwrap();
    let now = net.now;
    assert!(net.nodes[0].engine.close_document(DOC));
    net.nodes[0].engine.open_document(now, DOC).unwrap();
    net.set_online(0, true);
    net.run_for(secs(5));
    assert_eq!(
        net.server.state()["title"],
        json!("mine"),
        "the server applied it"
    );
    net.expect_same_everywhere();
}

// ---------------------------------------------------------------------------------------------
// A by-hand server for exact sequences.
// ---------------------------------------------------------------------------------------------
struct Hand {
    engine: Engine,
    transport: Option<TransportId>,
    now: Instant,
    /// Every frame the engine wrote, decoded, oldest first.
    sent: Vec<ClientMessage>,
    events: Vec<Event>,
}

impl Hand {
    fn new(config: Config) -> Self {
        let mut engine = Engine::new(config, 0);
        engine.open_document(Instant::ZERO, DOC).unwrap();
        let mut hand = Hand {
            engine,
            transport: None,
            now: Instant::ZERO,
            sent: Vec::new(),
            events: Vec::new(),
        };
        hand.engine.connect(hand.now);
        hand.open();
        hand
    }

    fn config() -> tether_core::ConfigBuilder {
        Config::builder("ws://relay/")
            .protocol(Protocol::Tether)
            .client_id("hand")
            .seed(7)
    }

    /// Connected, with the document synced from an empty snapshot at `version` of epoch `e`.
    fn synced_at(version: u64) -> Self {
        let mut hand = Hand::new(Hand::config().build().unwrap());
        hand.snapshot(version, "e", json!({}), &[]);
        hand
    }

    fn snapshot(&mut self, version: u64, epoch: &str, state: serde_json::Value, applied: &[&str]) {
        self.send(ServerMessage::DocSnapshot {
            channel: DOC.into(),
            version,
            epoch: Some(epoch.into()),
            state: state.as_object().cloned().unwrap(),
            applied: applied.iter().map(|s| s.to_string()).collect(),
            applied_by: Some(applied.iter().map(|_| "hand".to_string()).collect()),
        });
    }

    fn open(&mut self) {
        self.drain();
        let t = self.transport.unwrap();
        self.engine.transport_opened(self.now, t);
        self.drain();
    }

    fn reconnect(&mut self) {
        let t = self.transport.unwrap();
        self.engine.transport_closed(self.now, t, None, "");
        let before = self.transport;
        for _ in 0..100 {
            self.drain();
            if self.transport != before {
                break;
            }
            self.now = self.engine.poll_timeout().unwrap();
            self.engine.handle_timeout(self.now);
        }
        assert_ne!(self.transport, before, "the engine never reconnected");
        self.sent.clear();
        self.open();
    }

    fn send(&mut self, msg: ServerMessage) {
        let t = self.transport.unwrap();
        self.engine
            .frame_received(self.now, t, Frame::Text(msg.encode()));
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Open(open) => self.transport = Some(open.transport),
                Action::Send {
                    frame: Frame::Text(text),
                    ..
                } => {
                    if let Ok(msg) = ClientMessage::decode(&text) {
                        self.sent.push(msg);
                    }
                }
                _ => {}
            }
        }
        while let Some(event) = self.engine.poll_event() {
            self.events.push(event);
        }
    }

    /// The wire ids of the doc_changes written since the last (re)connect, in order.
    fn changes_sent(&self) -> Vec<String> {
        self.sent
            .iter()
            .filter_map(|m| match m {
                ClientMessage::DocChange { id, .. } => Some(id.clone()),
                _ => None,
            })
            .collect()
    }

    fn doc(&self) -> &tether_core::sync::Document {
        self.engine.document(DOC).unwrap()
    }

    fn view(&self) -> serde_json::Value {
        serde_json::Value::Object(self.doc().view().clone())
    }
}

// ---------------------------------------------------------------------------------------------
// One of our changes taken as applied (its replay came before its ack) and then a relay restart
// (new epoch, state lost) before the ack: the new relay's snapshot no longer holds it and, not
// pending any more, it is not replayed on top; the resend is applied by the new relay and
// acknowledged. That ack used to be ignored, and the author's view missed its change for good.
// ---------------------------------------------------------------------------------------------
#[test]
fn a_change_taken_as_applied_then_reset_by_a_relay_restart_comes_back_with_its_ack() {
    let mut hand = Hand::synced_at(0);
    hand.engine
        .change_document(hand.now, DOC, set("title", json!("mine")))
        .unwrap();
    hand.drain();
    let wire = hand.changes_sent().pop().unwrap();
    let ops = set("title", json!("mine"));
    // The relay applied it as version 1; the connection dropped before the ack.
    hand.reconnect();
    // The resume (sent before the resend) is answered with the change, ours.
    hand.send(ServerMessage::DocChange {
        channel: DOC.into(),
        version: 1,
        id: wire.clone(),
        client_id: Some("hand".into()),
        ops: ops.clone(),
    });
    assert_eq!(hand.doc().version(), Some(1));
    // The relay restarts before it reads the resend: every document empty, in a new epoch.
    hand.reconnect();
    assert!(
        hand.changes_sent().contains(&wire),
        "the change is resent: {:?}",
        hand.sent
    );
    // The new relay answers the resume with its (empty) snapshot, then applies the resend.
    hand.snapshot(0, "e2", json!({}), &[]);
    hand.send(ServerMessage::Ack {
        id: wire.clone(),
        offset: Some(1),
    });
    // Applied past our version 0: the document asks for what it misses…
    let syncs: Vec<_> = hand
        .sent
        .iter()
        .filter_map(|m| match m {
            ClientMessage::DocSync { version, epoch, .. } => Some((*version, epoch.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        syncs.last(),
        Some(&(Some(0), Some("e2".to_owned()))),
        "{syncs:?}"
    );
    // …and the new relay replays it.
    hand.send(ServerMessage::DocChange {
        channel: DOC.into(),
        version: 1,
        id: wire.clone(),
        client_id: Some("hand".into()),
        ops,
    });
    // The new relay's state is {"title": "mine"} at version 1.
    assert_eq!(
        (hand.view(), hand.doc().version()),
        (json!({"title": "mine"}), Some(1)),
        "the author must show what the relay holds; events: {:#?}",
        hand.events
    );
}

// ---------------------------------------------------------------------------------------------
// Exploration: random edits with in-memory relay restarts (a new epoch, the state lost), as the
// reference relay does. Only convergence is checked (what the old relay held is gone).
// ---------------------------------------------------------------------------------------------
mod explore {
    use super::*;
    use proptest::prelude::*;
    use tether_core::sync::DocumentServer;

    #[derive(Debug, Clone)]
    enum Step {
        Set(usize, u8, i64),
        Inc(usize, i64),
        Insert(usize, u8),
        Wait(u64),
        Drop(usize),
        Offline(usize),
        Online(usize),
        Wipe,
    }

    fn step(clients: usize) -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0..clients, 0u8..4, -5i64..5).prop_map(|(c, k, v)| Step::Set(c, k, v)),
            4 => (0..clients, 1i64..10).prop_map(|(c, v)| Step::Inc(c, v)),
            2 => (0..clients, 0u8..4).prop_map(|(c, k)| Step::Insert(c, k)),
            4 => (0u64..200).prop_map(Step::Wait),
            1 => (0..clients).prop_map(Step::Drop),
            1 => (0..clients).prop_map(Step::Offline),
            2 => (0..clients).prop_map(Step::Online),
            1 => Just(Step::Wipe),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn random_edits_with_in_memory_relay_restarts_converge(
            seed in any::<u64>(),
            steps in prop::collection::vec(step(3), 10..60),
        ) {
            let clients = 3;
            let mut net = DocNet::new(clients, seed, 1024);
            net.connect_all();
            let mut epochs = 0;
            for s in steps {
                match s {
                    Step::Set(c, k, v) => { let _ = net.change(c, set(&format!("k{k}"), json!(v))); }
                    Step::Inc(c, v) => { let _ = net.change(c, inc("total", v)); }
                    Step::Insert(c, k) => { let _ = net.change(c, vec![Op::Insert { key: format!("slot{k}"), value: json!(c) }]); }
                    Step::Wait(ms) => net.run_for(Duration::from_millis(ms)),
                    Step::Drop(c) => net.drop_connection(c),
                    Step::Offline(c) => net.set_online(c, false),
                    Step::Online(c) => net.set_online(c, true),
                    Step::Wipe => {
                        net.restart_server(true);
                        epochs += 1;
                        net.server = DocumentServer::new(format!("epoch-w{epochs}"), 1024);
                    }
                }
            }
            for c in 0..clients {
                net.set_online(c, true);
            }
            net.run_for(Duration::from_secs(30));
            let server = net.server.state().clone();
            for c in 0..clients {
                prop_assert_eq!(net.view(c), server.clone(), "client{}\n{}", c, net.describe());
            }
        }
    }
}

/// A `DocumentChanged` event as its origin and its (key, value) pairs.
type DocEvent = (ChangeOrigin, Vec<(String, Option<serde_json::Value>)>);

fn doc_events(events: &[Event]) -> Vec<DocEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::DocumentChanged {
                origin, changes, ..
            } => Some((
                *origin,
                changes
                    .iter()
                    .map(|c| (c.key.clone(), c.value.clone()))
                    .collect(),
            )),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A local change that leaves the view as it was (a set to the value shown, an increment by 0)
// used to produce no `DocumentChanged { LocalPending }`, yet later a `Confirmed` for it.
// ---------------------------------------------------------------------------------------------
#[test]
fn a_local_change_to_the_shown_value_reports_local_pending_then_confirmed() {
    let mut hand = Hand::synced_at(0);
    hand.snapshot(3, "e", json!({"k": 1}), &[]);
    hand.events.clear();
    hand.engine
        .change_document(hand.now, DOC, set("k", json!(1)))
        .unwrap();
    hand.drain();
    let wire = hand.changes_sent().pop().unwrap();
    hand.send(ServerMessage::Ack {
        id: wire,
        offset: Some(4),
    });
    let origins: Vec<ChangeOrigin> = doc_events(&hand.events).into_iter().map(|e| e.0).collect();
    assert_eq!(
        origins,
        [ChangeOrigin::LocalPending, ChangeOrigin::Confirmed],
        "one LocalPending for the change, then its Confirmed"
    );
}

// ---------------------------------------------------------------------------------------------
// A server acknowledges one of our changes before we wrote it (its id is guessable: the
// client's prefix and a counter). The outbox rightly ignores that ack and sends the change
// later, but the document took it as applied at the version it named: it then ignored the
// other client's change the server really made at that version, and never showed it.
// ---------------------------------------------------------------------------------------------
#[test]
fn an_ack_for_a_change_not_yet_written_is_not_taken_as_its_confirmation() {
    let mut hand = Hand::synced_at(0);
    // A first change, written and acknowledged, shows how our ids are made.
    let first = hand
        .engine
        .change_document(hand.now, DOC, set("first", json!(1)))
        .unwrap();
    hand.drain();
    let written = hand.changes_sent().pop().unwrap();
    hand.send(ServerMessage::Ack {
        id: written.clone(),
        offset: Some(1),
    });
    let prefix = written.strip_suffix(&first.get().to_string()).unwrap();
    // The transport pushes back: the next change waits in the outbox.
    let t = hand.transport.unwrap();
    hand.engine.transport_writable(hand.now, t, false);
    let id = hand
        .engine
        .change_document(hand.now, DOC, set("mine", json!(1)))
        .unwrap();
    hand.drain();
    let wire = format!("{prefix}{}", id.get());
    assert_eq!(hand.changes_sent(), [written], "not written yet");
    hand.send(ServerMessage::Ack {
        id: wire.clone(),
        offset: Some(2),
    });
    // What the server really applied as version 2: another client's change.
    hand.send(ServerMessage::DocChange {
        channel: DOC.into(),
        version: 2,
        id: "other-1".into(),
        client_id: Some("other".into()),
        ops: set("theirs", json!(1)),
    });
    // Writable again: our change goes out, is applied as version 3 and acknowledged.
    hand.engine.transport_writable(hand.now, t, true);
    hand.drain();
    assert_eq!(hand.changes_sent().last(), Some(&wire), "written now");
    hand.send(ServerMessage::Ack {
        id: wire,
        offset: Some(3),
    });
    assert_eq!(
        (hand.view(), hand.doc().version(), hand.doc().pending()),
        (json!({"first": 1, "mine": 1, "theirs": 1}), Some(3), 0),
        "the server's state at version 3; events: {:#?}",
        hand.events
    );
}

// ---------------------------------------------------------------------------------------------
// The connection drops after a change was applied and before its ack; the resume is answered
// by a snapshot (the server's log no longer reaches back), which holds the change — listed in
// its `applied`, or not any more — and then the resend is acknowledged. The change was settled
// without a `DocumentChanged { Confirmed }`, so an app marking keys saved on it (as the
// bindings' README shows) showed that key unsaved for good.
// ---------------------------------------------------------------------------------------------
#[test]
fn a_change_settled_by_a_snapshot_after_a_reconnect_is_reported_confirmed() {
    for listed in [true, false] {
        let mut hand = Hand::synced_at(0);
        hand.engine
            .change_document(hand.now, DOC, set("k", json!(1)))
            .unwrap();
        hand.drain();
        let wire = hand.changes_sent().pop().unwrap();
        // Applied as version 1; the ack is lost with the connection. Many changes later, the
        // server answers the resume with a snapshot, then acknowledges the resend.
        hand.reconnect();
        let applied: &[&str] = if listed { &[&wire] } else { &[] };
        hand.snapshot(50, "e", json!({"k": 1}), applied);
        assert!(hand.changes_sent().contains(&wire), "resent");
        hand.send(ServerMessage::Ack {
            id: wire.clone(),
            offset: Some(1),
        });
        assert_eq!((hand.view(), hand.doc().pending()), (json!({"k": 1}), 0));
        let origins: Vec<ChangeOrigin> =
            doc_events(&hand.events).into_iter().map(|e| e.0).collect();
        assert_eq!(
            origins,
            [ChangeOrigin::LocalPending, ChangeOrigin::Confirmed],
            "listed in the snapshot: {listed}; events: {:#?}",
            hand.events
        );
    }
}

// ---------------------------------------------------------------------------------------------
// A change written, then dropped by the app's `close` before its ack (`Dropped { Closed }`): it
// is rolled back and reported, as its outcome is unknown. The server had applied it, and after
// `connect` its replay (our author, our id) brings it back into the view. It came as another
// client's change (`Remote`, flagged `overwrote_local` over the author's own confirmed value),
// so the app was never told its change took effect after all, and was told it lost a race with
// itself. Had the server not applied it, nothing is replayed and the rollback stands.
// ---------------------------------------------------------------------------------------------
#[test]
fn a_written_change_dropped_by_close_yet_applied_is_reported_confirmed_after_reconnecting() {
    for applied in [true, false] {
        let mut hand = Hand::synced_at(0);
        hand.engine.doc_set(hand.now, DOC, "k", json!(1)).unwrap();
        hand.drain();
        let set_wire = hand.changes_sent().pop().unwrap();
        hand.send(ServerMessage::Ack {
            id: set_wire,
            offset: Some(1),
        });
        let delete = hand.engine.doc_delete(hand.now, DOC, "k").unwrap();
        hand.drain();
        let wire = hand.changes_sent().pop().unwrap();
        assert_eq!(hand.view(), json!({}), "shown at once");
        hand.events.clear();
        hand.engine.close(hand.now, 1000, "").unwrap();
        hand.drain();
        // Written, it may still be acknowledged during the close handshake: it waits for it.
        assert_eq!(hand.view(), json!({}), "still pending while closing");
        let t = hand.transport.unwrap();
        hand.engine.transport_closed(hand.now, t, Some(1000), "");
        hand.drain();
        assert!(hand.engine.state().is_closed());
        assert!(
            hand.events.iter().any(|e| matches!(e,
                Event::ChangeRejected { change, code, .. } if *change == delete && code == "closed")),
            "{:#?}",
            hand.events
        );
        assert_eq!(hand.view(), json!({"k": 1}), "rolled back");

        hand.events.clear();
        hand.sent.clear();
        hand.engine.connect(hand.now);
        hand.open();
        assert!(
            hand.sent.iter().any(|m| matches!(
                m,
                ClientMessage::DocSync {
                    version: Some(1),
                    ..
                }
            )),
            "resumes from version 1: {:?}",
            hand.sent
        );
        assert!(!hand.changes_sent().contains(&wire), "dropped: not resent");
        if applied {
            hand.send(ServerMessage::DocChange {
                channel: DOC.into(),
                version: 2,
                id: wire.clone(),
                client_id: Some("hand".into()),
                ops: vec![Op::delete("k")],
            });
            assert_eq!(
                (hand.view(), hand.doc().version()),
                (json!({}), Some(2)),
                "the server's state"
            );
            let told: Vec<_> = hand
                .events
                .iter()
                .filter_map(|e| match e {
                    Event::DocumentChanged {
                        origin, changes, ..
                    } => Some((*origin, changes.clone())),
                    _ => None,
                })
                .collect();
            assert_eq!(
                told,
                [(
                    ChangeOrigin::Confirmed,
                    vec![tether_core::sync::KeyChange {
                        key: "k".into(),
                        value: None,
                        overwrote_local: false,
                    }]
                )],
                "our own change, confirmed after all; events: {:#?}",
                hand.events
            );
        } else {
            assert_eq!(hand.view(), json!({"k": 1}), "the rollback stands");
        }
    }
}

/// Answers every `doc_sync` the engine wrote since the last call as `server` does (for the
/// client "hand", with the `pending` it listed), in order.
fn answer_syncs(hand: &mut Hand, server: &tether_core::sync::DocumentServer) {
    let syncs: Vec<_> = hand
        .sent
        .iter()
        .filter_map(|m| match m {
            ClientMessage::DocSync {
                version,
                epoch,
                pending,
                ..
            } => Some((*version, epoch.clone(), pending.clone())),
            _ => None,
        })
        .collect();
    hand.sent
        .retain(|m| !matches!(m, ClientMessage::DocSync { .. }));
    for (version, epoch, pending) in syncs {
        let answer = docnet::sync_answer(server, DOC, "hand", version, epoch.as_deref(), &pending);
        for msg in answer {
            hand.send(msg);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The connection drops after an increment was applied and before its ack. By the time the
// client is back, the server's log (4 changes) no longer reaches back to it, so the resume is
// answered with a snapshot that holds the increment, but whose `applied` (the recent log) no
// longer named it. The client replayed it on top of the snapshot: its view counted it twice
// until the resend's ack came. Its `doc_sync` now lists the changes it awaits (`pending`),
// and the snapshot names those it holds.
// ---------------------------------------------------------------------------------------------
#[test]
fn a_snapshot_holding_a_pending_change_older_than_its_log_does_not_count_it_twice() {
    use tether_core::sync::{ChangeOutcome, DocumentServer};
    let mut server = DocumentServer::new("e", 4);
    let mut hand = Hand::new(Hand::config().build().unwrap());
    answer_syncs(&mut hand, &server);
    hand.engine.doc_increment(hand.now, DOC, "n", 1).unwrap();
    hand.drain();
    let wire = hand.changes_sent().pop().unwrap();
    assert_eq!(
        server.apply("hand", &wire, &inc("n", 1)),
        ChangeOutcome::Applied { version: 1 }
    );
    // The ack is lost with the connection; another client increments ten times meanwhile.
    hand.reconnect();
    for i in 0..10 {
        server.apply("other", &format!("o{i}"), &inc("n", 1));
    }
    assert!(
        hand.sent.iter().any(|m| matches!(m,
            ClientMessage::DocSync { version: Some(0), pending, .. } if *pending == [wire.clone()])),
        "the resume lists the change it awaits: {:?}",
        hand.sent
    );
    hand.events.clear();
    answer_syncs(&mut hand, &server);
    let shown: Vec<_> = doc_events(&hand.events)
        .into_iter()
        .flat_map(|(_, changes)| changes)
        .filter(|(key, _)| key == "n")
        .map(|(_, value)| value)
        .collect();
    assert_eq!(
        (hand.view(), hand.doc().pending()),
        (json!({"n": 11}), 0),
        "counted once; shown: {shown:?}"
    );
    assert!(
        !shown.contains(&Some(json!(12))),
        "never shown twice: {shown:?}"
    );
    // The resend is acknowledged with its original version: nothing moves.
    assert!(hand.changes_sent().contains(&wire), "resent");
    let ChangeOutcome::Duplicate { version } = server.apply("hand", &wire, &inc("n", 1)) else {
        panic!("a resend")
    };
    hand.send(ServerMessage::Ack {
        id: wire,
        offset: Some(version),
    });
    assert_eq!(
        (hand.view(), hand.doc().pending(), hand.doc().version()),
        (json!({"n": 11}), 0, Some(11))
    );
}
