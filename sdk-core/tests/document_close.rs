//! Closing a shared document: the server is told (`doc_close`) and stops sending the
//! document's changes; what it sent before reading that is dropped quietly; changes still
//! pending are delivered and reported as messages; a later connection neither syncs nor closes
//! the document again. Engine level, over the docnet harness in its relay-like mode (changes
//! are broadcast only to clients syncing the document, as the reference relay does).
#![allow(clippy::unwrap_used)]
#![cfg(feature = "documents")]

mod docnet;

use docnet::{secs, set, DocNet, DOC};
use serde_json::json;
use std::time::Duration;
use tether_core::sync::Op;
use tether_core::{DropReason, EngineError, Event};

/// `clients` engines syncing `DOC`, settled, against a server that broadcasts only to syncers.
fn relay_like(clients: usize, seed: u64) -> DocNet {
    let mut net = DocNet::new(clients, seed, 1_024);
    net.relay_like = true;
    net.connect_all();
    net.settle(secs(10));
    net
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Whether `e` is about a document or an error: what a closed document must not cause.
fn document_or_error(e: &Event) -> bool {
    matches!(
        e,
        Event::DocumentChanged { .. }
            | Event::DocumentResynced { .. }
            | Event::ChangeRejected { .. }
            | Event::Error(_)
    )
}

// ---------------------------------------------------------------------------------------------
// The server used to be told nothing: it kept sending every change of a closed document to the
// client until that client reconnected, and the engine threw each one away.
// ---------------------------------------------------------------------------------------------
#[test]
fn a_closed_document_is_closed_at_the_server_and_its_changes_stop_coming() {
    let mut net = relay_like(3, 31);
    net.change(1, set("a", json!(1))).unwrap();
    net.settle(secs(5));
    assert_eq!(
        net.broadcasts_to,
        [1, 0, 1],
        "while open, client 0 hears of changes"
    );

    assert!(net.close_document(0));
    net.run_for(secs(1));
    assert_eq!(net.doc_closes, [0], "the server was told");
    assert!(!net.syncs(0));
    // Closing it again is a no-op, and says nothing more to the server.
    assert!(!net.close_document(0));
    net.run_for(secs(1));
    assert_eq!(net.doc_closes, [0]);

    for n in 2..=5 {
        net.change(1, set("a", json!(n))).unwrap();
    }
    net.run_for(secs(5));
    assert_eq!(
        net.server.state()["a"],
        json!(5),
        "the changes were applied"
    );
    assert_eq!(
        net.broadcasts_to,
        [1, 0, 5],
        "none was sent to client 0; client 2, still syncing, got every one"
    );

    // Opened again, it catches up from the server.
    net.open_document(0);
    net.settle(secs(5));
    net.expect_same_everywhere();
    assert!(net.syncs(0));
}

// ---------------------------------------------------------------------------------------------
// A change the server broadcast before it read the `doc_close` still reaches the client: it is
// dropped without an event (no document to show it in, and nothing went wrong).
// ---------------------------------------------------------------------------------------------
#[test]
fn a_change_in_flight_when_the_document_closes_is_dropped_quietly() {
    let mut net = relay_like(2, 32);
    // Fixed 20 ms each way: client 1's change reaches the server at +20 ms and its broadcast
    // reaches client 0 at +40 ms, after the close at +30 ms.
    net.latency = (ms(20), ms(20));
    net.change(1, set("a", json!(1))).unwrap();
    net.run_for(ms(30));
    assert_eq!(net.broadcasts_to[0], 1, "broadcast, not yet received");
    let received = net.nodes[0].engine.stats().frames_received;
    let seen = net.nodes[0].events.len();

    assert!(net.close_document(0));
    net.run_for(secs(2));
    assert!(
        net.nodes[0].engine.stats().frames_received > received,
        "the broadcast arrived after the close"
    );
    let after: Vec<&Event> = net.nodes[0].events[seen..]
        .iter()
        .filter(|e| document_or_error(e))
        .collect();
    assert!(after.is_empty(), "{after:?}");
    assert!(net.nodes[0].engine.document(DOC).is_none());
}

// ---------------------------------------------------------------------------------------------
// Changes still pending when their document closes were promised an outcome: they are still
// delivered, and reported as messages (`Acked`, or `Dropped` with the server's refusal), with
// no document events, as there is no view left to update.
// ---------------------------------------------------------------------------------------------
#[test]
fn a_change_pending_when_its_document_closes_is_still_applied_and_acked() {
    let mut net = relay_like(2, 33);
    net.latency = (ms(20), ms(20));
    let change = net.change(0, set("a", json!("mine"))).unwrap();
    let seen = net.nodes[0].events.len();
    assert!(net.close_document(0));
    net.run_for(secs(2));
    assert_eq!(net.server.state()["a"], json!("mine"), "applied");
    assert_eq!(net.doc_closes, [0]);
    let acked = net.events(0, |e| match e {
        Event::Acked { id, .. } => Some(*id),
        _ => None,
    });
    assert_eq!(acked, [change]);
    let after: Vec<&Event> = net.nodes[0].events[seen..]
        .iter()
        .filter(|e| document_or_error(e))
        .collect();
    assert!(after.is_empty(), "{after:?}");
    assert_eq!(net.nodes[0].engine.outbox_len(), 0);
}

#[test]
fn a_change_pending_when_its_document_closes_and_then_refused_is_reported_dropped() {
    let mut net = relay_like(2, 34);
    net.latency = (ms(20), ms(20));
    let insert = |value: &str| {
        vec![Op::Insert {
            key: "seat".into(),
            value: json!(value),
        }]
    };
    // Both insert the same key at once; client 1's reaches the server first (same arrival
    // time, sent first), so client 0's is refused with `conflict` (and a snapshot follows it,
    // which the closed document does not take).
    net.change(1, insert("theirs")).unwrap();
    let mine = net.change(0, insert("mine")).unwrap();
    let seen = net.nodes[0].events.len();
    assert!(net.close_document(0));
    net.run_for(secs(2));
    assert_eq!(net.server.state()["seat"], json!("theirs"));
    let dropped = net.events(0, |e| match e {
        Event::Dropped { ids, reason } => Some((ids.clone(), reason.clone())),
        _ => None,
    });
    assert_eq!(
        dropped,
        [(
            vec![mine],
            DropReason::Rejected {
                code: "conflict".into()
            }
        )]
    );
    // The refusal is also an `Error` event (as for any refused message); nothing else is.
    let after: Vec<&Event> = net.nodes[0].events[seen..]
        .iter()
        .filter(|e| document_or_error(e) && !matches!(e, Event::Error(_)))
        .collect();
    assert!(after.is_empty(), "{after:?}");
}

// ---------------------------------------------------------------------------------------------
// Closed while offline: nothing to tell the server then, and the next connection neither syncs
// the document (only open ones are synced on open) nor sends a pointless `doc_close`.
// ---------------------------------------------------------------------------------------------
#[test]
fn a_document_closed_offline_is_not_synced_on_the_next_connection() {
    let mut net = relay_like(2, 35);
    net.set_online(0, false);
    assert!(net.close_document(0));
    net.set_online(0, true);
    net.run_for(secs(30));
    assert!(net.nodes[0].engine.state().is_open());
    assert!(!net.syncs(0), "no doc_sync on the new connection");
    assert!(net.doc_closes.is_empty(), "and no doc_close either");
    let before = net.broadcasts_to[0];
    net.change(1, set("a", json!(1))).unwrap();
    net.run_for(secs(2));
    assert_eq!(net.server.state()["a"], json!(1));
    assert_eq!(net.broadcasts_to[0], before);
}

// ---------------------------------------------------------------------------------------------
// A relay older than `doc_close` answers it `error{bad_frame}` naming no message and goes on
// sending the document: one `Error` event, nothing else changes (the connection stays up, the
// frames are dropped quietly as before).
// ---------------------------------------------------------------------------------------------
#[test]
fn an_older_relay_that_refuses_doc_close_costs_one_error_event_and_nothing_else() {
    let mut net = relay_like(2, 36);
    net.refuses_doc_close = true;
    let seen = net.nodes[0].events.len();
    assert!(net.close_document(0));
    net.run_for(secs(1));
    for n in 1..=3 {
        net.change(1, set("a", json!(n))).unwrap();
    }
    net.run_for(secs(2));
    assert_eq!(
        net.broadcasts_to[0], 3,
        "that relay still sends the changes"
    );
    assert!(net.nodes[0].engine.state().is_open());
    let after: Vec<&Event> = net.nodes[0].events[seen..]
        .iter()
        .filter(|e| document_or_error(e))
        .collect();
    assert!(
        matches!(
            after.as_slice(),
            [Event::Error(EngineError::Server { code, .. })] if code == "bad_frame"
        ),
        "{after:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// A document closed and opened again before the driver drained the engine: the closed one's
// last events were still queued, named by channel only, so a driver handed them to the new
// document's listeners. Each opening now has its own generation, which its events carry.
// ---------------------------------------------------------------------------------------------
#[test]
fn a_document_opened_again_is_a_new_generation_and_its_events_say_so() {
    use tether_core::{Config, Engine, Instant, Protocol};
    let config = Config::builder("ws://relay/")
        .protocol(Protocol::Tether)
        .build()
        .unwrap();
    let mut engine = Engine::new(config, 1);
    let now = Instant::ZERO;
    engine.open_document(now, DOC).unwrap();
    let first = engine.document(DOC).unwrap().generation();
    engine.open_document(now, DOC).unwrap();
    assert_eq!(
        engine.document(DOC).unwrap().generation(),
        first,
        "opening an open document changes nothing"
    );
    engine.doc_set(now, DOC, "old", json!(1)).unwrap();
    assert!(engine.close_document(DOC));
    engine.open_document(now, DOC).unwrap();
    let second = engine.document(DOC).unwrap().generation();
    assert_ne!(first, second, "a new document");
    engine.doc_set(now, DOC, "new", json!(1)).unwrap();
    let mut changed = Vec::new();
    while let Some(event) = engine.poll_event() {
        if let Event::DocumentChanged {
            generation,
            changes,
            ..
        } = event
        {
            changed.push((generation, changes[0].key.clone()));
        }
    }
    assert_eq!(
        changed,
        [(first, "old".to_owned()), (second, "new".to_owned())]
    );
}
