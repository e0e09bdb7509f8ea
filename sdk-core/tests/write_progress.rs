//! The write-progress mechanism (`ConfigBuilder::driver_reports_progress`): a driver that
//! reports the bytes its socket took (`Engine::transport_progress`) gets messages re-sent, not
//! lost, when its transport ends with frames in its own queue. The drivers here play the
//! native WebSocket link: they count `Frame::progress_len` of every `Action::Send` they were
//! handed, and report that count as far as their socket took it.
#![allow(clippy::unwrap_used)]

use std::time::Duration;
use tether_core::{Action, Config, Engine, Event, Frame, HeartbeatMode, Instant, TransportId};

/// What a native link does with the engine's actions: the frames it was handed, in order.
#[derive(Default)]
struct Link {
    frames: Vec<String>,
    /// `Frame::progress_len` of every data frame handed over (the link's `started`).
    handed: u64,
}

fn drain(engine: &mut Engine, link: &mut Link) -> Option<TransportId> {
    let mut opened = None;
    while let Some(a) = engine.poll_action() {
        match a {
            Action::Open(open) => opened = Some(open.transport),
            Action::Send { frame, .. } => {
                link.handed += frame.progress_len();
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

/// Connects and opens the first transport, draining what the open hands over.
fn open(engine: &mut Engine, link: &mut Link, now: Instant) -> TransportId {
    engine.connect(now);
    let transport = drain(engine, link).unwrap();
    engine.transport_opened(now, transport);
    drain(engine, link);
    transport
}

/// Raw protocol with application pings: the `raw_ping` frame is handed over with a
/// `Send` like any other, and the link counts it among the bytes its socket took, but the
/// engine does not count it in `handed` (inputs.rs `send_ping`, raw branch, skips
/// `count_written`). Every ping shifts the link's offsets ahead of the engine's, so a
/// progress report settles messages the socket has not taken yet; if the connection then
/// ends they are lost (counted settled, never re-sent).
/// An engine with the default config (progress reports as `reports` says), opened at time
/// zero on a fresh link.
fn opened(reports: bool) -> (Engine, Link, TransportId) {
    let config = Config::builder("ws://relay")
        .driver_reports_progress(reports)
        .build()
        .unwrap();
    let mut engine = Engine::new(config, 1);
    let mut link = Link::default();
    let transport = open(&mut engine, &mut link, Instant::ZERO);
    (engine, link, transport)
}

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
    let first = open(&mut engine, &mut link, t0);

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

/// An empty message takes no payload byte, yet its taking must show: counted as 0 it never
/// could, and it stayed in the outbox after its socket took it, to be reported dropped when
/// the connection closed. Counted as 1 (`Frame::progress_len`), it is settled by the report
/// that covers it, and not by one from before it was handed over.
#[test]
fn an_empty_message_is_settled_when_the_socket_took_it() {
    let (mut engine, mut link, transport) = opened(true);
    let t0 = Instant::ZERO;

    engine.send(t0, "aaaa").unwrap();
    drain(&mut engine, &mut link);
    engine.transport_progress(t0, transport, link.handed);
    drain(&mut engine, &mut link);
    assert_eq!(engine.stats().messages_settled, 1);

    engine.send(t0, "").unwrap();
    engine.send(t0, Frame::Binary(Vec::new())).unwrap();
    drain(&mut engine, &mut link);
    assert_eq!(
        link.frames,
        ["aaaa", ""],
        "handed over (the binary one too)"
    );
    // A report of what was taken before they were handed over settles neither.
    engine.transport_progress(t0, transport, 4);
    drain(&mut engine, &mut link);
    assert_eq!(engine.outbox_len(), 2, "not taken yet");

    engine.transport_progress(t0, transport, link.handed);
    drain(&mut engine, &mut link);
    assert_eq!(engine.outbox_len(), 0, "taken: settled");
    assert_eq!(engine.stats().messages_settled, 3);
    engine.close(t0, 1000, "").unwrap();
    let mut dropped = Vec::new();
    while let Some(e) = engine.poll_event() {
        if let Event::Dropped { ids, .. } = e {
            dropped.extend(ids);
        }
    }
    assert!(dropped.is_empty(), "nothing to report dropped: {dropped:?}");
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
        let (mut engine, mut link, transport) = opened(reports);
        let t0 = Instant::ZERO;
        let mut dropped = 0;
        for i in 0..530 {
            engine
                .send(t0, format!("{i:04}{}", "x".repeat(1996)))
                .unwrap();
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
                    link.handed += frame.progress_len();
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

#[test]
fn with_a_driver_reporting_progress_untaken_messages_are_resent_not_lost_when_the_transport_ends() {
    // A native WebSocket link queues frames while its socket pushes back; when the engine gave
    // up on such a connection, that queue went with it and its messages counted as settled.
    let config = Config::builder("ws://relay")
        .driver_reports_progress(true)
        .write_batch_bytes(3 * 1024)
        .backoff_initial(Duration::from_millis(100))
        .build()
        .unwrap();
    let mut engine = tether_core::Engine::new(config, 1);
    let now = Instant::ZERO;
    let sent = |engine: &mut tether_core::Engine| -> Vec<String> {
        std::iter::from_fn(|| engine.poll_action())
            .filter_map(|a| match a {
                tether_core::Action::Send {
                    frame: Frame::Text(t),
                    ..
                } => Some(t[..2].to_owned()),
                _ => None,
            })
            .collect()
    };
    let first = open(&mut engine, &mut Link::default(), now);
    for i in 0..6 {
        engine
            .send(now, format!("m{i}{}", "x".repeat(1022)))
            .unwrap();
    }
    assert_eq!(
        sent(&mut engine),
        ["m0", "m1", "m2"],
        "a batch not yet taken, no more"
    );
    assert_eq!(
        engine.poll_timeout().filter(|at| *at == now),
        None,
        "no busy loop"
    );
    engine.transport_progress(now, first, 1024);
    assert_eq!(sent(&mut engine), ["m3"], "one taken, one more handed over");
    assert_eq!(engine.stats().messages_settled, 1);
    assert_eq!(
        engine.outbox_len(),
        5,
        "the untaken ones stay in the outbox"
    );

    engine.transport_failed(
        now,
        first,
        tether_core::TransportFailure::Io("reset".into()),
    );
    let later = now + Duration::from_secs(1);
    engine.handle_timeout(later);
    let second = std::iter::from_fn(|| engine.poll_action())
        .find_map(|a| match a {
            tether_core::Action::Open(open) => Some(open.transport),
            _ => None,
        })
        .unwrap();
    engine.transport_opened(later, second);
    assert_eq!(
        sent(&mut engine),
        ["m1", "m2", "m3"],
        "re-sent first, in order"
    );
    engine.transport_progress(later, second, 5 * 1024 * 1024);
    assert_eq!(sent(&mut engine), ["m4", "m5"]);
    engine.transport_progress(later, second, 5 * 1024 * 1024);
    let stats = engine.stats();
    assert_eq!(
        (stats.messages_settled, stats.resent, engine.outbox_len()),
        (6, 0, 0),
        "each settled once, nothing counted as a resend (they were never written)"
    );
    let dropped = std::iter::from_fn(|| engine.poll_event())
        .filter(|e| matches!(e, Event::Dropped { .. }))
        .count();
    assert_eq!(dropped, 0);
}

#[test]
fn with_a_driver_reporting_progress_what_the_transport_is_taking_follows_the_close() {
    let builder = || {
        Config::builder("ws://relay")
            .driver_reports_progress(true)
            .heartbeat_mode(HeartbeatMode::PingFrame)
            .heartbeat_interval(Duration::from_secs(1))
            .max_missed_pongs(1)
    };

    // The app closes: the frames handed over go out ahead of the close frame, as without
    // progress reports; they are settled as the socket takes them, not reported dropped.
    let closing_with_two_handed = || {
        let mut engine = tether_core::Engine::new(builder().build().unwrap(), 1);
        let transport = open(&mut engine, &mut Link::default(), Instant::ZERO);
        engine.send(Instant::ZERO, "a").unwrap();
        engine.send(Instant::ZERO, "b").unwrap();
        let actions: Vec<_> = std::iter::from_fn(|| engine.poll_action()).collect();
        assert_eq!(actions.len(), 2, "{actions:?}");
        engine.close(Instant::ZERO, 1000, "bye").unwrap();
        let dropped = std::iter::from_fn(|| engine.poll_event())
            .filter(|e| matches!(e, Event::Dropped { .. }))
            .count();
        assert_eq!(dropped, 0);
        (engine, transport)
    };
    let (mut engine, transport) = closing_with_two_handed();
    engine.transport_progress(Instant::ZERO, transport, 2);
    engine.transport_closed(Instant::ZERO, transport, Some(1000), "bye");
    assert!(engine.state().is_closed());
    let dropped = std::iter::from_fn(|| engine.poll_event())
        .filter(|e| matches!(e, Event::Dropped { .. }))
        .count();
    assert_eq!((dropped, engine.stats().messages_settled), (0, 2));

    // The peer never answers the close, and the socket took only the first: the second,
    // which the released transport never wrote, is reported dropped, not forgotten.
    let (mut engine, transport) = closing_with_two_handed();
    engine.transport_progress(Instant::ZERO, transport, 1);
    let at = engine.poll_timeout().unwrap();
    engine.handle_timeout(at);
    assert!(engine.state().is_closed());
    let dropped: Vec<_> = std::iter::from_fn(|| engine.poll_event())
        .filter_map(|e| match e {
            Event::Dropped { ids, reason } => Some((ids.len(), reason)),
            _ => None,
        })
        .collect();
    assert_eq!(dropped, [(1, tether_core::DropReason::Closed)]);
    assert_eq!(engine.stats().messages_settled, 1);
    assert_eq!(engine.outbox_len(), 0);

    // The engine gives up on the transport (no pong): what it had not taken goes back to the
    // outbox, so the driver must not write it there too; it is released at once.
    let mut engine = tether_core::Engine::new(builder().build().unwrap(), 1);
    let transport = open(&mut engine, &mut Link::default(), Instant::ZERO);
    engine.send(Instant::ZERO, "a").unwrap();
    let mut now = Instant::ZERO;
    let mut ends = Vec::new();
    while ends.len() < 2 && now < Instant::ZERO + Duration::from_secs(10) {
        now = engine.poll_timeout().unwrap();
        engine.handle_timeout(now);
        ends.extend(std::iter::from_fn(|| engine.poll_action()).filter(|a| {
            matches!(a, tether_core::Action::Close { transport: t, .. } | tether_core::Action::Release { transport: t } if *t == transport)
        }));
    }
    assert!(
        matches!(
            ends[..],
            [
                tether_core::Action::Close { .. },
                tether_core::Action::Release { .. }
            ]
        ),
        "{ends:?}"
    );
    assert!(
        now < Instant::ZERO + Duration::from_secs(3),
        "at the heartbeat's verdict"
    );
    assert_eq!(engine.outbox_len(), 1, "kept for the next connection");
}
