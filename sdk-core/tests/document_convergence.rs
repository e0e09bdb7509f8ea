//! Shared documents over a seeded, lossy network in virtual time, with the kind of restart
//! the reference relay has (in memory: a new epoch, an empty document, versions from 0 again)
//! and tiny change logs, so that snapshots often no longer list the changes they hold: every
//! client must end with the server's state, nothing pending, and every change settled once.
#![allow(clippy::unwrap_used)]
// `CONVERGE_SEED=n` traces one run on stderr, and failures are listed there before the assert.
#![allow(clippy::print_stderr)]
#![cfg(feature = "documents")]

mod docnet;

use docnet::{secs, DocNet};
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;
use tether_core::sync::{DocumentServer, Op};
use tether_core::{Event, MessageId, Prng};

/// The relay's restart: every connection drops and the document starts over, empty, in a
/// new epoch (the relay keeps documents in memory).
fn restart_in_memory(net: &mut DocNet, generation: u32, log: usize) {
    for i in 0..net.nodes.len() {
        net.drop_connection(i);
    }
    net.server = DocumentServer::new(format!("epoch-{generation}"), log);
}

/// What became of each change client `c` made: how many of `Acked`/`Dropped` name it.
fn outcomes(net: &DocNet, c: usize, made: &[MessageId]) -> Vec<(MessageId, usize, usize)> {
    let mut acked: HashMap<MessageId, usize> = HashMap::new();
    let mut dropped: HashMap<MessageId, usize> = HashMap::new();
    for e in &net.nodes[c].events {
        match e {
            Event::Acked { id, .. } => *acked.entry(*id).or_default() += 1,
            Event::Dropped { ids, .. } => {
                for id in ids {
                    *dropped.entry(*id).or_default() += 1;
                }
            }
            _ => {}
        }
    }
    made.iter()
        .map(|id| {
            (
                *id,
                acked.get(id).copied().unwrap_or(0),
                dropped.get(id).copied().unwrap_or(0),
            )
        })
        .collect()
}

/// Three clients edit the same keys (sets, deletes, increments, inserts) while connections
/// drop, clients go offline, close and reopen the document, and the relay restarts in memory;
/// logs of 1 to 4 changes force snapshot resyncs. Knobs for exploring: `CONVERGE_SEED=n` (one
/// seed, traced), `CONVERGE_N` (seeds), `CONVERGE_ALL` (print every failure), `CONVERGE_LOG` (log size),
/// `CONVERGE_NORESTART`, `CONVERGE_NOREOPEN`. Once healed, everyone must show the server's state, nothing may stay
/// pending, and every change must have ended exactly once (acked or dropped).
#[test]
fn seeded_three_client_runs_with_in_memory_restarts_converge() {
    let mut failures = Vec::new();
    let only: Option<u64> = std::env::var("CONVERGE_SEED")
        .ok()
        .and_then(|s| s.parse().ok());
    for seed in 0..std::env::var("CONVERGE_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300u64)
    {
        if only.is_some_and(|o| o != seed) {
            continue;
        }
        let trace = only.is_some();
        let mut rng = Prng::seed_from_u64(seed ^ 0x5eed);
        let log = std::env::var("CONVERGE_LOG")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or([1usize, 2, 4][(seed % 3) as usize]);
        let mut net = DocNet::new(3, seed, log);
        // Broadcasts only to clients synced on their current connection, as the relay does.
        net.relay_like = true;
        net.connect_all();
        let mut made: Vec<Vec<MessageId>> = vec![Vec::new(); 3];
        let mut generation = 0;
        for _ in 0..80 {
            let c = (rng.next_u64() % 3) as usize;
            let key = format!("k{}", rng.next_u64() % 3);
            let ops = match rng.next_u64() % 12 {
                0..=2 => Some(vec![Op::Set {
                    key,
                    value: json!(rng.next_u64() % 5),
                }]),
                3 => Some(vec![Op::Delete { key }]),
                4..=5 => Some(vec![Op::Increment {
                    key: "n".into(),
                    by: 1.into(),
                }]),
                6 => Some(vec![Op::Insert {
                    key,
                    value: json!(c),
                }]),
                7 => {
                    if trace {
                        eprintln!("t={:?} drop client{c}", net.now);
                    }
                    net.drop_connection(c);
                    None
                }
                8 => {
                    let online = !net.nodes[c].online;
                    net.set_online(c, online);
                    None
                }
                9 if rng.next_u64() % 4 == 0 && std::env::var("CONVERGE_NORESTART").is_err() => {
                    generation += 1;
                    if trace {
                        eprintln!("t={:?} RESTART", net.now);
                    }
                    restart_in_memory(&mut net, generation, log);
                    None
                }
                10 if std::env::var("CONVERGE_NOREOPEN").is_err() && rng.next_u64() % 3 == 0 => {
                    if trace {
                        eprintln!("t={:?} reopen client{c}", net.now);
                    }
                    let now = net.now;
                    net.nodes[c].engine.close_document(docnet::DOC);
                    net.nodes[c].engine.open_document(now, docnet::DOC).unwrap();
                    None
                }
                _ => {
                    let ms = rng.next_u64() % 200;
                    net.run_for(Duration::from_millis(ms));
                    None
                }
            };
            if let Some(ops) = ops {
                let r = net.change(c, ops.clone());
                if trace {
                    eprintln!("t={:?} client{c} change {ops:?} -> {r:?}", net.now);
                }
                if let Ok(id) = r {
                    made[c].push(id);
                }
            }
        }
        for c in 0..3 {
            net.set_online(c, true);
        }
        // Bounded: settle for up to 60 virtual seconds.
        let deadline = net.now + secs(60);
        while !net.settled() && net.now < deadline {
            net.run_for(Duration::from_millis(50));
        }
        if trace {
            for e in &net.nodes[1].events {
                eprintln!("client1 event {e:?}");
            }
        }
        let mut problems = Vec::new();
        if !net.settled() {
            problems.push(format!("never settled:\n{}", net.describe()));
        } else {
            for c in 0..3 {
                let d = net.nodes[c].engine.document(docnet::DOC).unwrap();
                if d.view() != net.server.state() || d.confirmed() != net.server.state() {
                    problems.push(format!("client{c} diverged:\n{}", net.describe()));
                }
            }
        }
        for (c, made) in made.iter().enumerate() {
            for (id, acked, dropped) in outcomes(&net, c, made) {
                if acked + dropped != 1 {
                    problems.push(format!(
                        "client{c} change {id:?}: acked {acked}×, dropped {dropped}×"
                    ));
                }
            }
        }
        if !problems.is_empty() {
            failures.push(format!("seed {seed} (log {log}): {}", problems.join("; ")));
        }
    }
    if std::env::var("CONVERGE_ALL").is_ok() {
        for f in &failures {
            eprintln!("FAIL {f}");
        }
    }
    assert!(
        failures.is_empty(),
        "{} seeded runs failed; first: {}",
        failures.len(),
        failures.first().unwrap()
    );
}

// ---- a minimal deterministic reproduction -----------------------------------------------

use tether_core::protocol::{ClientMessage, ServerMessage};
use tether_core::sync::ChangeOutcome;
use tether_core::{Action, Config, Engine, Frame, Instant, Protocol, TransportId};

const ME: &str = "hand";

/// One engine; the relay is played with real `DocumentServer`s (the relay's own logic), and
/// frames are handed over one by one.
struct Wire {
    engine: Engine,
    transport: Option<TransportId>,
    now: Instant,
    /// Frames the engine wrote on the current connection, not yet handed to the server.
    sent: Vec<ClientMessage>,
    events: Vec<Event>,
}

impl Wire {
    fn new() -> Wire {
        let config = Config::builder("ws://relay/")
            .protocol(Protocol::Tether)
            .client_id(ME)
            .seed(7)
            .build()
            .unwrap();
        let mut engine = Engine::new(config, 0);
        engine.open_document(Instant::ZERO, docnet::DOC).unwrap();
        engine.connect(Instant::ZERO);
        let mut w = Wire {
            engine,
            transport: None,
            now: Instant::ZERO,
            sent: Vec::new(),
            events: Vec::new(),
        };
        w.open();
        w
    }

    fn drain(&mut self) {
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Open(open) => self.transport = Some(open.transport),
                Action::Send {
                    frame: Frame::Text(text),
                    ..
                } => self.sent.push(ClientMessage::decode(&text).unwrap()),
                _ => {}
            }
        }
        while let Some(e) = self.engine.poll_event() {
            self.events.push(e);
        }
    }

    fn open(&mut self) {
        self.drain();
        let t = self.transport.unwrap();
        self.engine.transport_opened(self.now, t);
        self.drain();
    }

    /// The connection drops (frames in flight either way are lost); the engine reconnects.
    fn reconnect(&mut self) {
        self.reconnect_after(|_| {});
    }

    /// The connection drops; `offline` runs before the engine reconnects.
    fn reconnect_after(&mut self, offline: impl FnOnce(&mut Wire)) {
        let t = self.transport.unwrap();
        self.engine.transport_closed(self.now, t, None, "");
        self.sent.clear();
        self.drain();
        offline(self);
        let before = self.transport;
        for _ in 0..100 {
            self.drain();
            if self.transport != before {
                break;
            }
            self.now = self.engine.poll_timeout().unwrap();
            self.engine.handle_timeout(self.now);
        }
        self.sent.clear();
        self.open();
    }

    fn deliver(&mut self, msg: ServerMessage) {
        let t = self.transport.unwrap();
        self.engine
            .frame_received(self.now, t, Frame::Text(msg.encode()));
        self.drain();
    }

    /// The server (as `author` ME) handles everything the engine wrote, in order; returns
    /// its answers to this client, in order (what the relay queues on the connection).
    fn serve(&mut self, server: &mut DocumentServer) -> Vec<ServerMessage> {
        let mut out = Vec::new();
        for msg in std::mem::take(&mut self.sent) {
            match msg {
                ClientMessage::DocSync {
                    version,
                    epoch,
                    pending,
                    ..
                } => out.extend(docnet::sync_answer(
                    server,
                    docnet::DOC,
                    ME,
                    version,
                    epoch.as_deref(),
                    &pending,
                )),
                ClientMessage::DocChange { id, ops, .. } => match server.apply(ME, &id, &ops) {
                    ChangeOutcome::Applied { version } | ChangeOutcome::Duplicate { version } => {
                        out.push(ServerMessage::Ack {
                            id,
                            offset: Some(version),
                        })
                    }
                    other => panic!("unexpected {other:?}"),
                },
                _ => {}
            }
        }
        out
    }
}

fn inc_n() -> Vec<Op> {
    vec![Op::Increment {
        key: "n".into(),
        by: 1.into(),
    }]
}

/// A change the engine took as applied (its replay named our author and id) is re-applied by
/// a relay that restarted in memory, and acknowledged at version 1 of the new epoch. The
/// engine cannot apply it (it keeps no ops for it), so it asks for a resync — and from then
/// on every ack of its other changes is a "gap": `Document::acked` keeps each pending,
/// trusting the resync's replay to confirm it, while the ack itself is consumed and the
/// message leaves the outbox. When the resync's answer is a snapshot (the document moved more
/// than the change log holds — 1,024 changes on the relay by default — in between), its
/// `applied` list does not name those changes: they stay pending for ever, replayed on top of
/// a state that already holds them. Their increments are counted twice in the view, and
/// nothing (no resend, no ack, no drop) ever resolves them.
#[test]
fn changes_acked_while_a_resync_is_outstanding_are_not_left_pending_for_ever() {
    let mut w = Wire::new();
    let mut a = DocumentServer::new("A", 1024);
    for msg in w.serve(&mut a) {
        w.deliver(msg);
    }
    // P1: applied, but the connection drops before its ack arrives.
    w.engine
        .change_document(w.now, docnet::DOC, inc_n())
        .unwrap();
    w.drain();
    let _lost = w.serve(&mut a);
    w.reconnect();
    // The resume replays P1 (ours: confirmed); its resend's ack is lost as the relay dies.
    let answers = w.serve(&mut a);
    let replay: Vec<_> = answers
        .into_iter()
        .filter(|m| matches!(m, ServerMessage::DocChange { .. }))
        .collect();
    assert_eq!(replay.len(), 1);
    for msg in replay {
        w.deliver(msg);
    }
    assert_eq!(w.engine.document(docnet::DOC).unwrap().pending(), 0);

    // The relay restarts in memory: new epoch, empty document, default log.
    let mut b = DocumentServer::new("B", 1024);
    // Offline, two more increments.
    w.engine
        .change_document(w.now, docnet::DOC, inc_n())
        .unwrap();
    w.engine
        .change_document(w.now, docnet::DOC, inc_n())
        .unwrap();
    w.drain();
    w.reconnect();
    // doc_sync(1, A) → snapshot v0 of B; P1, P2, P3 → acks at 1, 2, 3.
    for msg in w.serve(&mut b) {
        w.deliver(msg);
    }
    // The engine asked for a resync (the ack of P1 was past its version). Before the relay
    // reads it, the document is busy: another client makes more changes than the log holds,
    // each broadcast to us.
    for k in 0..1_100u64 {
        let id = format!("other-{k}");
        let ops = vec![Op::Set {
            key: format!("o{}", k % 7),
            value: json!(k),
        }];
        let ChangeOutcome::Applied { version } = b.apply("other", &id, &ops) else {
            panic!()
        };
        w.deliver(ServerMessage::DocChange {
            channel: docnet::DOC.into(),
            version,
            id,
            client_id: Some("other".into()),
            ops,
        });
    }
    // Now the relay answers the resync (a snapshot: the log no longer reaches back).
    for msg in w.serve(&mut b) {
        w.deliver(msg);
    }
    let doc = w.engine.document(docnet::DOC).unwrap();
    assert_eq!(w.engine.outbox_len(), 0, "every change was acknowledged");
    assert_eq!(
        b.state()["n"],
        json!(3),
        "the relay holds each increment once"
    );
    assert_eq!(
        (doc.pending(), doc.view().get("n"), doc.version()),
        (0, Some(&json!(3)), Some(b.version())),
        "acked changes must not stay pending: the view counts them twice"
    );
}

/// The same stuck-pending outcome without any restart: a change made before the document was
/// closed and reopened is acknowledged (at the version after the reopened document's first
/// snapshot). The reopened document does not hold it, takes the ack as a sign it is behind and
/// asks for a resync; the acks of its own changes that follow are "gaps" and are consumed
/// while the changes stay pending; the resync's answer is a snapshot (a busy document, or a
/// relay with a small `document_log_capacity`) that does not list them. Here with a log of 4.
#[test]
fn an_old_changes_ack_after_a_reopen_does_not_leave_the_new_changes_pending_for_ever() {
    let mut w = Wire::new();
    let mut a = DocumentServer::new("A", 4);
    for msg in w.serve(&mut a) {
        w.deliver(msg);
    }
    // P1 goes out; the connection drops with it in flight (the relay never got it).
    w.engine
        .change_document(w.now, docnet::DOC, inc_n())
        .unwrap();
    w.drain();
    // Offline, the app closes and reopens the document, and increments again (P2).
    w.reconnect_after(|w| {
        w.engine.close_document(docnet::DOC);
        w.engine.open_document(w.now, docnet::DOC).unwrap();
        w.engine
            .change_document(w.now, docnet::DOC, inc_n())
            .unwrap();
        w.drain();
    });
    // Back online: doc_sync (none), P1, P2 → snapshot v0, acks at 1 and 2.
    for msg in w.serve(&mut a) {
        w.deliver(msg);
    }
    // Five changes by another client before the relay reads the resync request.
    for k in 0..5u64 {
        let id = format!("other-{k}");
        let ops = vec![Op::Set {
            key: "o".into(),
            value: json!(k),
        }];
        let ChangeOutcome::Applied { version } = a.apply("other", &id, &ops) else {
            panic!()
        };
        w.deliver(ServerMessage::DocChange {
            channel: docnet::DOC.into(),
            version,
            id,
            client_id: Some("other".into()),
            ops,
        });
    }
    for msg in w.serve(&mut a) {
        w.deliver(msg);
    }
    let doc = w.engine.document(docnet::DOC).unwrap();
    assert_eq!(w.engine.outbox_len(), 0, "both changes were acknowledged");
    assert_eq!(a.state()["n"], json!(2));
    assert_eq!(
        (doc.pending(), doc.view().get("n"), doc.version()),
        (0, Some(&json!(2)), Some(a.version())),
        "P2 was acknowledged: it must not stay pending, counted twice in the view"
    );
}
