//! Review findings on the write-progress mechanism (`driver_reports_progress`). Each test plays
//! a driver exactly as the native WebSocket link does: it counts `Frame::len` of every
//! `Action::Send` it was handed, and reports that count (as far as its socket took it) with
//! `transport_progress`.
#![allow(clippy::unwrap_used)]

use std::time::Duration;
use tether_core::{Action, Config, Engine, Event, Frame, HeartbeatMode, Instant, TransportId};

/// What a native link does with the engine's actions: the frames it was handed, in order.
#[derive(Default)]
struct Link {
    frames: Vec<String>,
    /// `Frame::len` of every data frame handed over (the link's `started`).
    handed: u64,
}

fn drain(engine: &mut Engine, link: &mut Link) -> Option<TransportId> {
    let mut opened = None;
    while let Some(a) = engine.poll_action() {
        match a {
            Action::Open(open) => opened = Some(open.transport),
            Action::Send { frame, .. } => {
                link.handed += frame.len() as u64;
                if let Frame::Text(t) = frame {
                    link.frames.push(t);
                }
            }
            _ => {}
        }
    }
    while engine.poll_event().is_some() {}
    opened
}

/// Raw protocol with application pings: the `raw_ping` frame is handed over with a
/// `Send` like any other, and the link counts it among the bytes its socket took, but the
/// engine does not count it in `handed` (inputs.rs `send_ping`, raw branch, skips
/// `count_written`). Every ping shifts the link's offsets ahead of the engine's, so a
/// progress report settles messages the socket has not taken yet; if the connection then
/// ends they are lost (counted settled, never re-sent).
#[test]
fn raw_app_pings_are_counted_like_the_link_counts_them() {
    let config = Config::builder("ws://relay")
        .driver_reports_progress(true)
        .heartbeat_mode(HeartbeatMode::AppMessage)
        .heartbeat_interval(Duration::from_secs(1))
        .backoff_initial(Duration::from_millis(100))
        .build()
        .unwrap();
    let mut engine = Engine::new(config, 1);
    let mut link = Link::default();
    let t0 = Instant::ZERO;
    engine.connect(t0);
    let first = drain(&mut engine, &mut link).unwrap();
    engine.transport_opened(t0, first);
    drain(&mut engine, &mut link);

    // The heartbeat's first ping: "ping", 4 bytes, taken by the socket at once.
    let t1 = t0 + Duration::from_secs(1);
    engine.handle_timeout(t1);
    drain(&mut engine, &mut link);
    assert_eq!(link.frames, ["ping"], "the raw app ping");
    engine.transport_progress(t1, first, link.handed);
    drain(&mut engine, &mut link);

    // Two messages handed over; the socket takes the first only (4 + 4 bytes by the link's
    // count).
    engine.send(t1, "aaaa").unwrap();
    engine.send(t1, "bbbb").unwrap();
    drain(&mut engine, &mut link);
    assert_eq!(link.frames, ["ping", "aaaa", "bbbb"]);
    let socket_took = 4 + 4; // "ping" + "aaaa"
    engine.transport_progress(t1, first, socket_took);
    drain(&mut engine, &mut link);
    assert_eq!(
        engine.stats().messages_settled,
        1,
        "only \"aaaa\" was taken; \"bbbb\" still waits in the link's queue"
    );

    // The connection ends: "bbbb" must be re-sent on the next one.
    engine.transport_failed(t1, first, tether_core::TransportFailure::Io("reset".into()));
    drain(&mut engine, &mut link);
    let t2 = t1 + Duration::from_secs(1);
    engine.handle_timeout(t2);
    let second = drain(&mut engine, &mut link).unwrap();
    link.frames.clear();
    engine.transport_opened(t2, second);
    drain(&mut engine, &mut link);
    assert_eq!(link.frames, ["bbbb"], "the untaken message is re-sent");
}

/// With the default bounds (1 MiB, 1,000 messages) and the default `write_batch_bytes`
/// (1 MiB), the entries the link is taking fill the outbox's whole byte bound by themselves.
/// While the socket has not reported progress, every new message then drops the one queued
/// before it (`pop_oldest` skips only the `Taken` entries), so the outbox holds one queued
/// message: a 1.06 MB burst (530 messages, fewer than `max_messages`) loses messages as
/// `Overflow` that the same client without progress reports (or before this change) kept.
#[test]
fn the_untaken_window_does_not_leave_room_for_one_queued_message() {
    for reports in [false, true] {
        let config = Config::builder("ws://relay")
            .driver_reports_progress(reports)
            .build()
            .unwrap();
        let mut engine = Engine::new(config, 1);
        let mut link = Link::default();
        let t0 = Instant::ZERO;
        engine.connect(t0);
        let transport = drain(&mut engine, &mut link).unwrap();
        engine.transport_opened(t0, transport);
        drain(&mut engine, &mut link);
        let mut dropped = 0;
        for i in 0..530 {
            engine.send(t0, format!("{i:04}{}", "x".repeat(1996))).unwrap();
            while let Some(e) = engine.poll_event() {
                if let Event::Dropped { ids, .. } = e {
                    dropped += ids.len();
                }
            }
        }
        drain(&mut engine, &mut link);
        // The socket takes everything, in as many reports as it takes.
        for _ in 0..10 {
            engine.transport_progress(t0, transport, link.handed);
            while let Some(a) = engine.poll_action() {
                if let Action::Send { frame, .. } = a {
                    link.handed += frame.len() as u64;
                }
            }
            while let Some(e) = engine.poll_event() {
                if let Event::Dropped { ids, .. } = e {
                    dropped += ids.len();
                }
            }
        }
        assert_eq!(
            (dropped, engine.stats().messages_settled),
            (0, 530),
            "driver_reports_progress({reports}): a burst the socket takes within a report \
             loses nothing"
        );
    }
}
