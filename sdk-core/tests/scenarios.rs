//! Scenario tests: each one names the behaviour it proves, runs one engine against the scripted
//! server of `sim` in virtual time with a fixed seed, and asserts on what the engine did.
#![allow(clippy::unwrap_used)]

mod sim;

use serde_json::json;
use sim::{Behaviour, Sim};
use std::time::Duration;
use tether_core::{
    BackoffConfig, CloseReason, Config, DisconnectCause, DropReason, EngineError, Event, Frame,
    HeartbeatMode, Instant, Jitter, MessageId, OutboxStatus, Payload, Protocol, RequestFailure,
    SendOptions, SizeLimit, SseEvent, State, SubscribeError, TokenPlacement, Unacked,
};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

fn tether(builder: tether_core::ConfigBuilder) -> Sim {
    Sim::new(
        builder.protocol(Protocol::Tether).seed(3).build().unwrap(),
        true,
    )
}

// ---- backoff and lifecycle ------------------------------------------------------------------

/// The documented default curve without jitter (500 ms × 2, capped at 30 s), in ms.
const DEFAULT_CURVE_MS: [u64; 8] = [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000];

#[test]
fn accept_then_drop_server_makes_delays_grow_instead_of_a_hot_loop() {
    let mut sim = Sim::new(
        Config::builder("ws://relay")
            .jitter(Jitter::None)
            .build()
            .unwrap(),
        false,
    );
    sim.server.behaviour = Behaviour::AcceptThenClose {
        after: ms(100),
        code: Some(1000),
        reason: String::new(),
    };
    sim.connect();
    sim.run_for(secs(120));
    let delays: Vec<u64> = sim
        .reconnects()
        .iter()
        .map(|r| r.2.as_millis() as u64)
        .collect();
    // Every connection opened, but none lived for the 5 s minimum uptime: no reset.
    assert_eq!(delays[..8], DEFAULT_CURVE_MS);
    let attempts: Vec<u32> = sim.reconnects().iter().map(|r| r.1).collect();
    assert!(
        attempts.windows(2).all(|w| w[1] == w[0] + 1),
        "{attempts:?}"
    );
    assert!(
        sim.engine.stats().attempts <= 9,
        "{}",
        sim.engine.stats().attempts
    );
}

#[test]
fn full_jitter_delays_stay_within_the_capped_curve() {
    let mut sim = Sim::raw("ws://relay");
    sim.server.behaviour = Behaviour::Down;
    sim.connect();
    sim.run_for(secs(600));
    // The documented default curve, written out rather than taken from the backoff module
    // under test: the n-th wait is uniform in [0, DEFAULT_CURVE_MS[n - 1]].
    let reconnects = sim.reconnects();
    assert!(reconnects.len() > 20);
    let mut below_cap = 0;
    for (n, (_, attempt, delay, _)) in reconnects.iter().enumerate() {
        // Attempt 1 is the first connection; the n-th wait (from 1) precedes attempt n + 1.
        assert_eq!(*attempt as usize, n + 2, "attempts count up from 2");
        let cap = Duration::from_millis(DEFAULT_CURVE_MS[n.min(DEFAULT_CURVE_MS.len() - 1)]);
        assert!(*delay <= cap, "attempt {attempt}: {delay:?} above {cap:?}");
        below_cap += usize::from(*delay < cap);
    }
    // Full jitter really draws below the curve, not at it.
    assert!(below_cap > reconnects.len() / 2, "{reconnects:?}");
}

#[test]
fn a_connection_that_stays_up_for_min_uptime_resets_the_backoff() {
    let mut sim = Sim::new(
        Config::builder("ws://relay")
            .jitter(Jitter::None)
            .build()
            .unwrap(),
        false,
    );
    sim.server.behaviour = Behaviour::Down;
    sim.connect();
    sim.run_for(secs(10)); // attempts 1..4 fail
    let before = sim.reconnects().last().unwrap().1;
    assert!(before >= 3);
    sim.server.behaviour = Behaviour::Normal;
    sim.run_until_state(secs(30), |e| e.state().is_open());
    sim.run_for(secs(6)); // longer than min_uptime (5 s)
    sim.kill_connection();
    sim.run_for(ms(1));
    let (_, attempt, delay, _) = sim.reconnects().last().cloned().unwrap();
    assert_eq!(
        (attempt, delay),
        (1, ms(500)),
        "backoff restarts from the beginning"
    );
}

#[test]
fn server_restart_reconnects_and_resubscribes() {
    let mut sim = tether(Config::builder("ws://relay"));
    sim.engine.subscribe(sim.now, "room").unwrap();
    sim.connect_open();
    sim.run_for(ms(100));
    sim.kill_connection();
    sim.server.behaviour = Behaviour::Down;
    sim.run_for(secs(2));
    sim.server.behaviour = Behaviour::Normal;
    sim.run_until_state(secs(30), |e| e.state().is_open());
    sim.run_for(ms(100));
    let subscribes = sim
        .server_texts()
        .iter()
        .filter(|t| t.contains(r#""type":"subscribe""#))
        .count();
    assert_eq!(
        subscribes, 2,
        "subscribed on the first open and again after the restart"
    );
    assert_eq!(sim.engine.stats().reconnects, 1);
    let states: Vec<&'static str> = sim.events_matching(|e| match e {
        Event::StateChanged { to, .. } => Some(to.name()),
        _ => None,
    });
    assert_eq!(&states[..3], ["connecting", "open", "waiting"]);
    assert_eq!(states.last(), Some(&"open"));
}

#[test]
fn every_transition_reports_both_ends() {
    let mut sim = Sim::raw("ws://relay");
    sim.connect_open();
    sim.kill_connection();
    sim.run_for(secs(3));
    let mut previous = State::Idle;
    for (_, e) in &sim.events {
        if let Event::StateChanged { from, to } = e {
            assert_eq!(from, &previous);
            assert_ne!(from, to);
            previous = to.clone();
        }
    }
    assert_eq!(&previous, sim.engine.state());
}

#[test]
fn max_attempts_gives_up_with_a_terminal_state() {
    let mut sim = Sim::new(
        Config::builder("ws://relay")
            .max_attempts(Some(3))
            .build()
            .unwrap(),
        false,
    );
    sim.server.behaviour = Behaviour::Down;
    sim.engine.send(sim.now, "never delivered").unwrap();
    sim.connect();
    sim.run_for(secs(60));
    assert_eq!(
        sim.engine.state(),
        &State::Closed {
            reason: CloseReason::GaveUp { attempts: 3 }
        }
    );
    assert_eq!(sim.server.opens.len(), 3);
    let dropped = sim.dropped();
    assert_eq!(dropped, vec![(vec![first_id()], DropReason::Closed)]);
    assert_eq!(
        sim.engine.poll_timeout(),
        None,
        "a closed engine has no timers"
    );
}

#[test]
fn connect_after_close_starts_again() {
    let mut sim = Sim::raw("ws://relay");
    sim.connect_open();
    sim.engine.close(sim.now, 1000, "bye").unwrap();
    sim.run_for(secs(3));
    assert!(sim.engine.state().is_closed());
    sim.connect_open();
    assert_eq!(sim.server.opens.len(), 2);
}

#[test]
fn connect_during_the_close_handshake_starts_again_once_it_is_done() {
    // The app's last word was connect: it used to be ignored while closing, and the client
    // ended closed (a React effect's cleanup then remount does exactly this).
    let mut sim = Sim::raw("ws://relay");
    sim.connect_open();
    sim.engine.close(sim.now, 1000, "bye").unwrap();
    assert_eq!(sim.engine.state(), &State::Closing);
    sim.engine.connect(sim.now);
    sim.run_for(secs(3));
    assert!(sim.engine.state().is_open(), "{:?}", sim.engine.state());
    assert_eq!(sim.server.opens.len(), 2);
    let states: Vec<String> = sim
        .events_matching(|e| match e {
            Event::StateChanged { to, .. } => Some(format!("{to:?}")),
            _ => None,
        })
        .into_iter()
        .skip(2) // connecting, open
        .collect();
    assert_eq!(
        states[..2],
        [
            "Closing".to_owned(),
            "Closed { reason: App { code: 1000 } }".to_owned()
        ],
        "the close is finished and reported first: {states:?}"
    );

    // And a close (or a drained close) after that connect is the last word again.
    sim.engine.close(sim.now, 1000, "bye").unwrap();
    sim.engine.connect(sim.now);
    sim.engine.close(sim.now, 1000, "really").unwrap();
    sim.run_for(secs(3));
    assert!(sim.engine.state().is_closed());
    assert_eq!(sim.server.opens.len(), 2);
    sim.connect_open();
    sim.engine.close(sim.now, 1000, "bye").unwrap();
    sim.engine.connect(sim.now);
    sim.engine.close_after_drain(sim.now, secs(1));
    sim.run_for(secs(3));
    assert!(sim.engine.state().is_closed(), "{:?}", sim.engine.state());
    assert_eq!(sim.server.opens.len(), 3);
}

#[test]
fn what_is_sent_after_a_connect_during_the_close_handshake_goes_on_the_next_connection() {
    // close(), connect(), then the remounted effect's own publish and request: they were
    // refused as `closing`, though the app's last word was connect.
    let mut sim = tether(Config::builder("ws://relay"));
    sim.connect_open();
    sim.engine.close(sim.now, 1000, "bye").unwrap();
    sim.engine.connect(sim.now);
    let id = sim
        .engine
        .publish(sim.now, "room", json!("after"), SendOptions::default())
        .expect("accepted for the next connection");
    let request = sim.engine.request(sim.now, json!("q"), None).unwrap();
    sim.run_for(secs(3));
    assert!(sim.engine.state().is_open(), "{:?}", sim.engine.state());
    let acked = sim.events_matching(|e| match e {
        Event::Acked { id, .. } => Some(*id),
        Event::Dropped { ids, .. } => Some(ids[0]),
        _ => None,
    });
    assert_eq!(
        acked,
        [id],
        "acknowledged on the new connection, not dropped"
    );
    let replies = sim.request_outcomes();
    assert_eq!(replies, [(request, Ok(json!({"echo": "q"})))]);

    // A close after that connect is the last word again: what was given since is dropped.
    sim.engine.close(sim.now, 1000, "bye").unwrap();
    sim.engine.connect(sim.now);
    let id = sim
        .engine
        .publish(sim.now, "room", json!("x"), SendOptions::default())
        .unwrap();
    sim.engine.close(sim.now, 1000, "really").unwrap();
    sim.run_for(secs(3));
    assert!(sim.engine.state().is_closed());
    let dropped = sim.dropped();
    assert_eq!(dropped, [(vec![id], DropReason::Closed)]);
}

#[test]
fn connect_timeout_abandons_a_hanging_handshake() {
    let mut sim = Sim::new(
        Config::builder("ws://relay")
            .connect_timeout(secs(3))
            .build()
            .unwrap(),
        false,
    );
    sim.server.behaviour = Behaviour::Hang;
    sim.connect();
    sim.run_for(ms(3001));
    let r = sim.reconnects();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0, Instant::from_millis(3000));
    assert_eq!(r[0].3, DisconnectCause::ConnectTimeout);
}

/// The longer wait is for the stream's head, once its request is out: a token provider that
/// never answers holds an event stream's attempt for the connect timeout, as a WebSocket's.
#[test]
fn an_event_streams_token_fetch_has_the_connect_timeout() {
    use tether_core::{Action, Engine};
    let config = Config::builder("http://relay/events")
        .connect_timeout(secs(3))
        .token(TokenPlacement::Query {
            param: "token".into(),
        })
        .build()
        .unwrap();
    let mut engine = Engine::new(config, 7);
    engine.connect(Instant::from_millis(0));
    let mut fetches = 0;
    while let Some(action) = engine.poll_action() {
        fetches += usize::from(matches!(action, Action::FetchToken { .. }));
    }
    assert_eq!(fetches, 1);
    assert_eq!(engine.poll_timeout(), Some(Instant::from_millis(3_000)));
    engine.handle_timeout(Instant::from_millis(3_000));
    let mut causes = Vec::new();
    while let Some(event) = engine.poll_event() {
        if let Event::ReconnectScheduled { cause, .. } = event {
            causes.push(cause);
        }
    }
    assert_eq!(causes, [DisconnectCause::ConnectTimeout]);
}

/// Many SSE servers send their response head only with their first event (WSGI servers must),
/// so a quiet stream waiting for its head is given the silence limit an open stream has, not
/// the connect timeout: cut off at that, it never opened while it had nothing to say.
#[test]
fn an_event_stream_waits_for_its_head_as_long_as_an_open_stream_may_be_silent() {
    use tether_core::HeartbeatConfig;
    let stream = |heartbeat: Option<HeartbeatConfig>| {
        let mut b = Config::builder("http://relay/events").connect_timeout(secs(3));
        if let Some(h) = heartbeat {
            b = b.heartbeat(h);
        }
        let mut sim = Sim::new(b.build().unwrap(), false);
        sim.server.behaviour = Behaviour::Hang;
        sim.connect();
        sim.run_for(secs(100));
        sim.reconnects()
            .first()
            .map(|r| (r.0, r.3.clone()))
            .expect("given up on at last")
    };
    // The default heartbeat: 25 s × (2 + 1).
    assert_eq!(
        stream(None),
        (
            Instant::from_millis(75_000),
            DisconnectCause::ConnectTimeout
        )
    );
    // A silence limit shorter than the connect timeout leaves the connect timeout.
    let short = HeartbeatConfig {
        interval: secs(1),
        max_missed: 1,
        ..HeartbeatConfig::default()
    };
    assert_eq!(
        stream(Some(short)),
        (Instant::from_millis(3_000), DisconnectCause::ConnectTimeout)
    );
}

/// A transport still opening has no close handshake: given up on (its connect timeout, the
/// app's close), it is released at once, not told to close and kept for the close timeout.
#[test]
fn a_transport_given_up_on_while_opening_is_released_at_once() {
    let config = Config::builder("ws://relay")
        .connect_timeout(secs(3))
        .build()
        .unwrap();
    let mut engine = tether_core::Engine::new(config, 7);
    let opening = |engine: &mut tether_core::Engine| match engine.poll_action() {
        Some(tether_core::Action::Open(open)) => open.transport,
        other => panic!("no open: {other:?}"),
    };
    engine.connect(Instant::ZERO);
    let first = opening(&mut engine);
    engine.handle_timeout(Instant::from_millis(3000));
    let actions: Vec<tether_core::Action> = std::iter::from_fn(|| engine.poll_action()).collect();
    assert_eq!(actions, [tether_core::Action::Release { transport: first }]);
    engine.connect(Instant::from_millis(3001));
    let second = opening(&mut engine);
    engine
        .close(Instant::from_millis(3002), 1000, "bye")
        .unwrap();
    let actions: Vec<tether_core::Action> = std::iter::from_fn(|| engine.poll_action()).collect();
    assert_eq!(
        actions,
        [tether_core::Action::Release { transport: second }]
    );
    assert!(engine.state().is_closed());
    assert_eq!(engine.poll_timeout(), None, "nothing left to wait for");
}

/// An engine (entropy 7) connected and its transport reported open at `at`, driven by hand
/// rather than by `Sim`, to see every action it takes; returns it with its transport. The
/// actions of the open (hello, pings...) are left to drain.
fn opened_engine(config: Config, at: Instant) -> (tether_core::Engine, tether_core::TransportId) {
    let mut engine = tether_core::Engine::new(config, 7);
    engine.connect(at);
    let Some(tether_core::Action::Open(open)) = engine.poll_action() else {
        panic!("no open")
    };
    let t = open.transport;
    engine.transport_opened(at, t);
    (engine, t)
}

/// While the transport pushes back, the server's application pings are answered once, with
/// the latest one's id, when it takes frames again: a pong per ping, each handed over at
/// once, piled up without bound behind a socket a server never reads.
#[test]
fn pings_that_come_while_the_transport_pushes_back_get_one_pong_for_the_latest() {
    let config = Config::builder("ws://relay")
        .protocol(Protocol::Tether)
        .build()
        .unwrap();
    let (mut engine, t) = opened_engine(config, Instant::ZERO);
    while engine.poll_action().is_some() {}
    let ping = |id: u32| {
        let msg = tether_core::protocol::ServerMessage::Ping {
            id: Some(id.to_string()),
        };
        Frame::Text(msg.encode())
    };
    let pongs = |engine: &mut tether_core::Engine| -> Vec<String> {
        std::iter::from_fn(|| engine.poll_action())
            .filter_map(|a| match a {
                tether_core::Action::Send {
                    frame: Frame::Text(text),
                    ..
                } => Some(text),
                _ => None,
            })
            .collect()
    };
    engine.frame_received(Instant::from_millis(1), t, ping(1));
    assert_eq!(pongs(&mut engine).len(), 1, "answered while writable");
    engine.transport_writable(Instant::from_millis(2), t, false);
    for id in 2..=1000 {
        engine.frame_received(Instant::from_millis(3), t, ping(id));
    }
    assert_eq!(
        pongs(&mut engine),
        Vec::<String>::new(),
        "queued behind the backlog"
    );
    engine.transport_writable(Instant::from_millis(4), t, true);
    let answered = pongs(&mut engine);
    assert_eq!(answered.len(), 1, "{answered:?}");
    assert!(answered[0].contains(r#""1000""#), "{answered:?}");
}

// ---- transports whose close handshake does not end ------------------------------------------

#[test]
fn a_close_handshake_the_server_never_answers_is_released_at_the_close_timeout() {
    let mut sim = Sim::new(
        Config::builder("ws://relay")
            .close_timeout(secs(2))
            .seed(1)
            .build()
            .unwrap(),
        false,
    );
    sim.connect_open();
    let t = sim.server.opens[0].1.transport;
    sim.engine.close(sim.now, 1000, "bye").unwrap();
    let asked = sim.now;
    // The simulated server never answers a close frame: a wedged peer.
    sim.run_for(secs(5));
    assert_eq!(sim.closes, vec![(asked, t)]);
    assert_eq!(
        sim.releases,
        vec![(asked + secs(2), t)],
        "released when the engine stops waiting, not kept for the client's life"
    );
    assert_eq!(
        sim.engine.state(),
        &State::Closed {
            reason: CloseReason::App { code: 1000 }
        }
    );
    assert_eq!(sim.engine.poll_timeout(), None, "nothing left to wait for");
}

#[test]
fn a_close_handshake_that_ends_needs_no_release() {
    let mut sim = Sim::raw("ws://relay");
    sim.connect_open();
    let t = sim.server.opens[0].1.transport;
    sim.engine.close(sim.now, 1000, "bye").unwrap();
    sim.run_for(ms(20));
    sim.engine.transport_closed(sim.now, t, Some(1000), "bye");
    sim.run_for(secs(30));
    assert!(sim.engine.state().is_closed());
    assert_eq!(sim.closes.len(), 1);
    assert!(sim.releases.is_empty(), "{:?}", sim.releases);
    assert_eq!(sim.engine.poll_timeout(), None);
}

/// A client whose pings find a black hole in 30 s, with this backoff and close timeout.
fn pinging(backoff: BackoffConfig, close_timeout: Duration) -> tether_core::ConfigBuilder {
    Config::builder("ws://relay")
        .heartbeat_mode(HeartbeatMode::PingFrame)
        .heartbeat_interval(secs(10))
        .max_missed_pongs(2)
        .backoff(backoff)
        .close_timeout(close_timeout)
        .seed(5)
}

#[test]
fn a_dead_transport_is_released_after_the_last_attempt_or_before_the_next() {
    // Gives up at the heartbeat timeout (the connection never proved stable, so it was the
    // one attempt allowed): nothing replaces the dead link, the release ends it.
    let gives_up = BackoffConfig {
        max_attempts: Some(1),
        min_uptime: secs(120),
        ..BackoffConfig::default()
    };
    let mut sim = Sim::new(pinging(gives_up, secs(3)).build().unwrap(), false);
    sim.connect_open();
    let t = sim.server.opens[0].1.transport;
    sim.server.behaviour = Behaviour::BlackHole;
    sim.run_for(secs(60));
    assert!(matches!(
        sim.engine.state(),
        State::Closed {
            reason: CloseReason::GaveUp { .. }
        }
    ));
    let [(closed_at, closed)] = sim.closes[..] else {
        panic!("one close: {:?}", sim.closes)
    };
    assert_eq!(closed, t);
    assert_eq!(sim.releases, vec![(closed_at + secs(3), t)]);

    // Reconnecting sooner than the close timeout: released just before the next open.
    let quick = BackoffConfig {
        initial: ms(100),
        max: ms(100),
        ..BackoffConfig::default()
    };
    let mut sim = Sim::new(pinging(quick, secs(30)).build().unwrap(), false);
    sim.connect_open();
    let t = sim.server.opens[0].1.transport;
    sim.server.behaviour = Behaviour::BlackHole;
    sim.run_for(secs(40));
    sim.server.behaviour = Behaviour::Normal;
    sim.run_for(secs(1));
    assert_eq!(sim.engine.state(), &State::Open);
    assert_eq!(sim.closes[0].1, t);
    let next_open = sim.server.opens[1].0;
    assert_eq!(sim.releases[0], (next_open, t));
}

#[test]
fn a_closing_transport_is_released_when_the_next_attempt_is_closed_before_it_opens() {
    // The retry comes before the dead transport's close timeout, and waits for its token;
    // the app closes meanwhile: the first transport must not be forgotten, and the second,
    // never opened, needs no close.
    let quick = BackoffConfig {
        initial: ms(100),
        max: ms(100),
        ..BackoffConfig::default()
    };
    let config = pinging(quick, secs(30)).token(TokenPlacement::bearer_header());
    let mut sim = Sim::new(config.build().unwrap(), false);
    sim.connect_open();
    let first = sim.server.opens[0].1.transport;
    sim.server.behaviour = Behaviour::BlackHole;
    sim.run_until_state(secs(60), |e| matches!(e.state(), State::Waiting { .. }));
    // The token for the next attempt never comes: the provider is slow.
    sim.token_fails = false;
    let fetches = sim.token_requests.len();
    sim.engine.handle_timeout(sim.now + ms(100));
    assert!(matches!(sim.engine.state(), State::Connecting { .. }));
    let mut actions = Vec::new();
    while let Some(a) = sim.engine.poll_action() {
        actions.push(a);
    }
    assert!(
        matches!(actions[..], [tether_core::Action::FetchToken { .. }]),
        "{actions:?}"
    );
    assert_eq!(sim.token_requests.len(), fetches);
    sim.engine.close(sim.now + ms(100), 1000, "bye").unwrap();
    assert_eq!(
        sim.engine.poll_action(),
        None,
        "no close for the attempt that never opened"
    );
    // The dead one is still released at its close timeout.
    let (closed_at, closed) = sim.closes[0];
    assert_eq!(closed, first);
    let release_at = closed_at + secs(30);
    assert_eq!(sim.engine.poll_timeout(), Some(release_at));
    sim.engine.handle_timeout(release_at);
    assert_eq!(
        sim.engine.poll_action(),
        Some(tether_core::Action::Release { transport: first })
    );
    assert_eq!(sim.engine.poll_timeout(), None);
}

// ---- server hints and close policy ----------------------------------------------------------

#[test]
fn close_1013_waits_at_least_the_try_again_delay() {
    let mut sim = Sim::raw("ws://relay");
    sim.connect_open();
    sim.server_close(1013, "overloaded");
    sim.run_for(ms(50));
    let (_, _, delay, _) = sim.reconnects()[0].clone();
    assert!(
        delay >= secs(5) && delay <= secs(5) + secs(5) / 4,
        "{delay:?}"
    );
}

/// A URL the platform refuses to open from where the client runs (a browser's `SecurityError`:
/// an insecure `ws://` URL from an `https://` page) fails the same way on every attempt: the
/// client stops at once with the platform's words, whatever the close policy, instead of
/// retrying with backoff for ever; what was queued is dropped as at a close; a later
/// `connect` tries again.
#[test]
fn a_url_the_platform_refuses_to_open_stops_the_client_instead_of_retrying_for_ever() {
    let policy = tether_core::ClosePolicy::default()
        .with_status(100..=599, tether_core::Disposition::Retry)
        .with_code(1000..=4999, tether_core::Disposition::Retry);
    let config = Config::builder("ws://relay").close_policy(policy);
    let mut sim = Sim::new(config.build().unwrap(), false);
    sim.server.behaviour = Behaviour::Blocked;
    let queued = sim.engine.send(sim.now, "queued").unwrap();
    sim.connect();
    sim.run_for(secs(120));
    assert_eq!(sim.server.opens.len(), 1, "one attempt");
    assert!(sim.reconnects().is_empty(), "{:?}", sim.reconnects());
    let reason = CloseReason::Refused {
        code: None,
        status: None,
        reason: sim::BLOCKED.to_owned(),
    };
    assert_eq!(sim.engine.state(), &State::Closed { reason });
    assert_eq!(
        sim.engine.state().to_string(),
        format!("closed (refused: {})", sim::BLOCKED)
    );
    assert_eq!(
        sim.errors(),
        vec![EngineError::Transport(sim::BLOCKED.to_owned())]
    );
    assert_eq!(sim.dropped(), vec![(vec![queued], DropReason::Closed)]);
    // The page may have changed (another URL is the app's to give): `connect` tries again.
    sim.server.behaviour = Behaviour::Normal;
    sim.connect_open();
    assert_eq!(sim.server.opens.len(), 2);
}

#[test]
fn graceful_restart_window_spreads_reconnects_within_it() {
    let mut delays = Vec::new();
    for seed in 0..50 {
        let mut sim = Sim::new(
            Config::builder("ws://relay").seed(seed).build().unwrap(),
            false,
        );
        sim.connect_open();
        sim.server_close(1012, r#"{"reconnect_within_ms": 10000}"#);
        sim.run_for(ms(50));
        let (_, _, delay, _) = sim.reconnects()[0].clone();
        delays.push(delay);
    }
    // Within the advised 10 s and spread over it: without the advice the first wait after a
    // drop is at most the 500 ms initial backoff.
    assert!(delays.iter().all(|d| *d <= secs(10)), "{delays:?}");
    assert!(delays.iter().any(|d| *d > secs(5)), "{delays:?}");
    assert!(delays.iter().any(|d| *d < secs(5)), "{delays:?}");
}

#[test]
fn a_seed_reproduces_timing_but_not_identity() {
    // Two processes run with the same `--seed` (the driver's entropy differs): the same
    // jitter, but two senders. With one identity the server took the second run's publishes
    // for resends of the first run's: acked, never stored.
    let run = |entropy: u64| {
        let config = Config::builder("ws://relay")
            .protocol(Protocol::Tether)
            .seed(42)
            .build()
            .unwrap();
        let mut sim = Sim::new(config.clone(), true);
        sim.engine = tether_core::Engine::new(config, entropy);
        sim.connect_open();
        sim.engine
            .publish(sim.now, "room", json!("hi"), SendOptions::default())
            .unwrap();
        sim.run_for(ms(100));
        sim.server.behaviour = Behaviour::Down;
        sim.kill_connection();
        sim.run_for(secs(30));
        let hello = sim.server.hellos[0].0.clone();
        let publish_ids: Vec<String> = sim.server_publishes().into_iter().map(|p| p.0).collect();
        let delays: Vec<Duration> = sim.reconnects().into_iter().map(|r| r.2).collect();
        (hello, publish_ids, delays)
    };
    let (id_a, publishes_a, delays_a) = run(1);
    let (id_b, publishes_b, delays_b) = run(2);
    assert_ne!(id_a, id_b, "client ids");
    assert_eq!(publishes_a.len(), 1);
    assert_eq!(publishes_b.len(), 1);
    assert_ne!(publishes_a, publishes_b, "publish ids");
    assert!(delays_a.len() >= 3, "{delays_a:?}");
    assert_eq!(delays_a, delays_b, "the seed still fixes the jitter");
    // The same entropy is the same identity (tests stay reproducible).
    assert_eq!(run(1).1, publishes_a);
}

#[test]
fn accept_then_close_with_a_1012_window_still_meets_growing_delays() {
    // A server that accepts, then closes with 1012 and a 1 ms window, again and again: the
    // window may shorten only the first wait after a stable connection, never the curve.
    let mut sim = Sim::new(
        Config::builder("ws://relay")
            .jitter(Jitter::None)
            .build()
            .unwrap(),
        false,
    );
    sim.server.behaviour = Behaviour::AcceptThenClose {
        after: ms(100),
        code: Some(1012),
        reason: r#"{"reconnect_within_ms":1}"#.into(),
    };
    sim.connect();
    sim.run_for(secs(120));
    let delays: Vec<u64> = sim
        .reconnects()
        .iter()
        .map(|r| r.2.as_millis() as u64)
        .collect();
    assert_eq!(delays[..8], DEFAULT_CURVE_MS);
    assert!(sim.engine.stats().attempts <= 9, "{:?}", sim.engine.stats());

    // The default full jitter, with the advised 1 ms window and with plain 1012 (a 5 s
    // window): the waits are drawn from the growing curve, so ten minutes hold a few dozen
    // attempts, not thousands (1 ms) or one every 2.5 s (0-5 s for ever).
    for reason in [r#"{"reconnect_within_ms":1}"#, ""] {
        let mut sim = Sim::raw("ws://relay");
        sim.server.behaviour = Behaviour::AcceptThenClose {
            after: ms(100),
            code: Some(1012),
            reason: reason.into(),
        };
        sim.connect();
        sim.run_for(secs(600));
        let window = if reason.is_empty() { secs(5) } else { ms(1) };
        let reconnects = sim.reconnects();
        for (_, attempt, delay, _) in &reconnects {
            // Each wait is at most the later of the window and the documented curve's cap for
            // it (0.5, 1, 2, 4, 8, 16, then 30 s), written out rather than computed by the code.
            let n = (*attempt as usize).saturating_sub(2);
            let hi = ms(DEFAULT_CURVE_MS[n.min(DEFAULT_CURVE_MS.len() - 1)]).max(window);
            assert!(*delay <= hi, "{reason:?} attempt {attempt}: {delay:?}");
        }
        let late: Vec<Duration> = reconnects.iter().skip(8).map(|r| r.2).collect();
        let mean = late.iter().sum::<Duration>() / late.len() as u32;
        assert!(
            mean >= secs(10),
            "{reason:?}: waits at the cap average {mean:?}"
        );
        let attempts = sim.engine.stats().attempts;
        assert!(
            (20..=60).contains(&attempts),
            "{reason:?}: {attempts} attempts"
        );
    }
}

#[test]
fn a_1012_window_after_a_stable_connection_is_used_as_given() {
    for seed in 0..20 {
        let mut sim = Sim::new(
            Config::builder("ws://relay")
                .jitter(Jitter::None)
                .seed(seed)
                .build()
                .unwrap(),
            false,
        );
        sim.connect_open();
        sim.run_for(secs(6)); // stable
        sim.server_close(1012, r#"{"reconnect_within_ms":200}"#);
        let (_, attempt, delay, _) = sim.reconnects()[0].clone();
        // Without jitter the curve's first wait is 500 ms; the advised window is shorter.
        assert_eq!(attempt, 1);
        assert!(delay <= ms(200), "{delay:?}");
        // That connection then fails before proving stable: back to the curve (1 s).
        sim.server.behaviour = Behaviour::AcceptThenClose {
            after: ms(100),
            code: Some(1012),
            reason: r#"{"reconnect_within_ms":200}"#.into(),
        };
        sim.run_for(ms(500));
        let (_, attempt, delay, _) = sim.reconnects()[1].clone();
        assert_eq!((attempt, delay), (2, secs(1)));
    }
}

#[test]
fn http_429_retry_after_raises_the_delay() {
    let mut sim = Sim::raw("ws://relay");
    sim.server.behaviour = Behaviour::Http {
        status: 429,
        retry_after: Some(secs(7)),
    };
    sim.connect();
    sim.run_for(ms(50));
    let (_, _, delay, cause) = sim.reconnects()[0].clone();
    assert!(delay >= secs(7), "{delay:?}");
    assert_eq!(cause, DisconnectCause::Http { status: 429 });
}

#[test]
fn terminal_close_code_stops_and_reports_the_reason() {
    let mut sim = Sim::raw("ws://relay");
    sim.connect_open();
    sim.server_close(4004, "no such room");
    sim.run_for(secs(60));
    assert_eq!(
        sim.engine.state(),
        &State::Closed {
            reason: CloseReason::Refused {
                code: Some(4004),
                status: None,
                reason: "no such room".into()
            }
        }
    );
    assert_eq!(
        sim.server.opens.len(),
        1,
        "no reconnect after a terminal code"
    );
}

#[test]
fn json_close_reason_can_forbid_reconnecting() {
    let mut sim = Sim::raw("ws://relay");
    sim.connect_open();
    sim.server_close(1000, r#"{"reconnect": false}"#);
    sim.run_for(secs(10));
    assert!(sim.engine.state().is_closed());
}

#[test]
fn http_404_is_terminal() {
    let mut sim = Sim::raw("ws://relay");
    sim.server.behaviour = Behaviour::Http {
        status: 404,
        retry_after: None,
    };
    sim.connect();
    sim.run_for(secs(10));
    let State::Closed { reason } = sim.engine.state() else {
        panic!("not closed: {:?}", sim.engine.state());
    };
    assert!(
        matches!(
            reason,
            CloseReason::Refused {
                status: Some(404),
                ..
            }
        ),
        "{reason:?}"
    );
    // The status said once, not again as the reason.
    assert_eq!(
        reason.to_string(),
        "refused by the server with HTTP status 404"
    );
}

#[test]
fn a_client_that_gives_up_after_one_attempt_says_attempt() {
    assert_eq!(
        CloseReason::GaveUp { attempts: 1 }.to_string(),
        "gave up after 1 attempt"
    );
    assert_eq!(
        CloseReason::GaveUp { attempts: 3 }.to_string(),
        "gave up after 3 attempts"
    );
}

// ---- auth -------------------------------------------------------------------------------------

#[test]
fn a_header_token_with_a_newline_is_a_token_failure_not_a_doomed_handshake() {
    let config = Config::builder("ws://relay")
        .token(TokenPlacement::bearer_header())
        .build()
        .unwrap();
    let mut engine = tether_core::Engine::new(config, 1);
    engine.connect(Instant::ZERO);
    let request = match engine.poll_action() {
        Some(tether_core::Action::FetchToken {
            transport,
            attempt: 1,
            ..
        }) => transport,
        other => panic!("{other:?}"),
    };
    engine.token_ready(Instant::ZERO, request, "tok\n".into());
    let mut actions = Vec::new();
    while let Some(a) = engine.poll_action() {
        actions.push(a);
    }
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, tether_core::Action::Open(_))),
        "{actions:?}"
    );
    assert!(
        matches!(engine.state(), State::Waiting { .. }),
        "{:?}",
        engine.state()
    );
    let mut token_errors = 0;
    while let Some(e) = engine.poll_event() {
        if matches!(&e, Event::Error(err) if err.kind() == "token") {
            token_errors += 1;
        }
    }
    assert_eq!(token_errors, 1);
}

#[test]
#[allow(clippy::reversed_empty_ranges)] // the point of the test
fn an_empty_close_policy_range_is_refused_at_build_time() {
    let err = Config::builder("ws://relay")
        .close_policy(
            tether_core::ClosePolicy::default()
                .with_code(4599..=4500, tether_core::Disposition::Terminal),
        )
        .build()
        .unwrap_err();
    assert_eq!(err.field, "close_policy.code_overrides");
}

#[test]
fn a_header_value_with_a_newline_is_refused_at_build_time() {
    let err = Config::builder("ws://relay")
        .header("X-Api-Key", "k1\n")
        .build()
        .unwrap_err();
    assert_eq!(err.field, "header");
}

#[test]
fn token_provider_is_asked_before_every_attempt_and_the_token_placed_in_a_header() {
    let mut sim = Sim::new(
        Config::builder("ws://relay")
            .token(TokenPlacement::bearer_header())
            .build()
            .unwrap(),
        false,
    );
    sim.server.behaviour = Behaviour::Down;
    sim.connect();
    sim.run_for(secs(5));
    sim.server.behaviour = Behaviour::Normal;
    sim.run_until_state(secs(30), |e| e.state().is_open());
    let n = sim.server.opens.len();
    assert!(n >= 3);
    assert_eq!(sim.token_requests.len(), n);
    for (i, (_, open)) in sim.server.opens.iter().enumerate() {
        let auth = open
            .headers
            .iter()
            .find(|(k, _)| k == "Authorization")
            .unwrap();
        assert_eq!(
            auth.1,
            format!("Bearer tok{}", i + 1),
            "a fresh token per attempt"
        );
    }
}

#[test]
fn query_token_placement_appends_to_the_url() {
    let mut sim = Sim::new(
        Config::builder("wss://relay/ws?room=a")
            .token(TokenPlacement::Query {
                param: "token".into(),
            })
            .build()
            .unwrap(),
        false,
    );
    sim.connect_open();
    assert_eq!(
        sim.server.opens[0].1.url,
        "wss://relay/ws?room=a&token=tok1"
    );
}

#[test]
fn first_message_token_goes_in_hello() {
    let mut sim = tether(Config::builder("ws://relay").token(TokenPlacement::FirstMessage));
    sim.connect_open();
    sim.run_for(ms(50));
    assert_eq!(sim.server.hellos[0].1.as_deref(), Some("tok1"));
}

#[test]
fn unauthorized_close_refreshes_the_token_once_then_stops() {
    let mut sim = Sim::new(
        Config::builder("ws://relay")
            .token(TokenPlacement::bearer_header())
            .build()
            .unwrap(),
        false,
    );
    sim.connect_open();
    sim.server_close(4001, "token expired");
    sim.run_until_state(secs(10), |e| e.state().is_open());
    sim.server_close(4001, "token expired");
    sim.run_for(secs(10));
    assert_eq!(sim.token_requests, vec![(1, false), (2, true)]);
    assert_eq!(
        sim.engine.state(),
        &State::Closed {
            reason: CloseReason::Unauthorized {
                code: Some(4001),
                status: None
            }
        }
    );
}

#[test]
fn a_refresh_that_fails_is_asked_for_again_not_forgotten() {
    let mut sim = Sim::new(
        Config::builder("ws://relay")
            .token(TokenPlacement::bearer_header())
            .build()
            .unwrap(),
        false,
    );
    sim.connect_open();
    sim.token_fails = true; // the auth server hiccups once the token is refused
    sim.server_close(4001, "token expired");
    sim.run_for(secs(8));
    assert!(sim.token_requests.len() >= 3, "{:?}", sim.token_requests);
    sim.token_fails = false;
    sim.run_until_state(secs(30), |e| e.state().is_open());
    let refreshes: Vec<bool> = sim.token_requests.iter().map(|r| r.1).collect();
    assert_eq!(refreshes[..2], [false, true], "{:?}", sim.token_requests);
    assert!(
        refreshes[2..].iter().all(|&refresh| refresh),
        "every attempt after the refusal asks for a fresh token until one arrives: {:?}",
        sim.token_requests
    );
    // The fresh token is accepted; a stable connection later starts from cached tokens again.
    sim.run_for(secs(6));
    sim.server_close(1001, "going away");
    sim.run_until_state(secs(10), |e| e.state().is_open());
    assert_eq!(sim.token_requests.last().map(|r| r.1), Some(false));
}

#[test]
fn unauthorized_refusal_after_a_stable_period_gets_a_fresh_refresh() {
    let mut sim = Sim::new(
        Config::builder("ws://relay")
            .token(TokenPlacement::bearer_header())
            .build()
            .unwrap(),
        false,
    );
    sim.connect_open();
    sim.server_close(1008, "expired");
    sim.run_until_state(secs(10), |e| e.state().is_open());
    sim.run_for(secs(6)); // stable: the refresh allowance is renewed
    sim.server_close(1008, "expired again, hours later");
    sim.run_until_state(secs(10), |e| e.state().is_open());
    assert_eq!(sim.token_requests.iter().filter(|r| r.1).count(), 2);
}

#[test]
fn token_provider_failure_is_retried_with_backoff() {
    let mut sim = Sim::new(
        Config::builder("ws://relay")
            .token(TokenPlacement::bearer_header())
            .build()
            .unwrap(),
        false,
    );
    sim.token_fails = true;
    sim.connect();
    sim.run_for(secs(5));
    assert!(sim.server.opens.is_empty(), "no handshake without a token");
    let causes = sim.reconnects();
    assert!(matches!(
        causes[0].3,
        DisconnectCause::TokenUnavailable { .. }
    ));
    sim.token_fails = false;
    sim.run_until_state(secs(30), |e| e.state().is_open());
}

// ---- heartbeat --------------------------------------------------------------------------------

fn heartbeat_sim(mode: HeartbeatMode, protocol: Protocol) -> Sim {
    Sim::new(
        Config::builder("ws://relay")
            .protocol(protocol)
            .heartbeat_mode(mode)
            .heartbeat_interval(secs(10))
            .max_missed_pongs(2)
            .seed(5)
            .build()
            .unwrap(),
        protocol == Protocol::Tether,
    )
}

#[test]
fn black_hole_is_detected_within_interval_times_missed_plus_one() {
    for (mode, protocol) in [
        (HeartbeatMode::PingFrame, Protocol::Raw),
        (HeartbeatMode::AppMessage, Protocol::Raw),
        (HeartbeatMode::AppMessage, Protocol::Tether),
    ] {
        let mut sim = heartbeat_sim(mode, protocol);
        sim.connect_open();
        sim.run_for(secs(25)); // healthy: pongs arrive
        assert!(
            sim.reconnects().is_empty(),
            "{mode:?}: a healthy connection stays up"
        );
        let rtts = sim.events_matching(|e| match e {
            Event::Rtt { rtt } => Some(*rtt),
            _ => None,
        });
        assert_eq!(rtts.len(), 2, "{mode:?}");
        assert_eq!(rtts[0], ms(20), "{mode:?}: RTT = two one-way latencies");
        let went_dark = sim.now;
        sim.server.behaviour = Behaviour::BlackHole;
        sim.run_for(secs(40));
        let (at, _, _, cause) = sim.reconnects()[0].clone();
        assert_eq!(cause, DisconnectCause::HeartbeatTimeout, "{mode:?}");
        let detected = at.saturating_duration_since(went_dark);
        assert!(
            detected <= secs(30),
            "{mode:?}: detected after {detected:?}"
        );
    }
}

/// With the defaults (a ping every 25 s, 2 missed), a link that went silent is declared dead
/// 75 s after its last sign of life, even when an online report sent a probe just before:
/// the probe replaced the unanswered ping, hid its miss, and the link was declared dead only
/// when the probe timed out, at 79 s.
#[test]
fn a_probe_just_before_the_bound_does_not_delay_it() {
    let mut sim = Sim::raw("ws://relay");
    sim.connect_open();
    let opened = sim.now;
    sim.server.behaviour = Behaviour::BlackHole;
    sim.run_until(opened + secs(74));
    sim.engine.network_changed(sim.now, true);
    sim.run_for(secs(10));
    let (at, _, _, cause) = sim.reconnects()[0].clone();
    assert_eq!(cause, DisconnectCause::HeartbeatTimeout);
    assert_eq!(at.saturating_duration_since(opened), secs(75));
}

#[test]
fn inbound_traffic_counts_as_liveness_when_pongs_are_lost() {
    let mut sim = heartbeat_sim(HeartbeatMode::PingFrame, Protocol::Raw);
    sim.server.answer_pings = false;
    sim.connect_open();
    for _ in 0..10 {
        sim.server_push(Frame::from("tick"));
        sim.run_for(secs(5));
    }
    assert!(sim.reconnects().is_empty());
}

#[test]
fn server_driven_heartbeat_expects_traffic() {
    let mut sim = heartbeat_sim(HeartbeatMode::ServerDriven, Protocol::Raw);
    sim.connect_open();
    let opened = sim.now;
    sim.run_for(secs(31));
    let (at, _, _, cause) = sim.reconnects()[0].clone();
    assert_eq!(cause, DisconnectCause::HeartbeatTimeout);
    assert_eq!(at.saturating_duration_since(opened), secs(30));
}

#[test]
fn a_large_message_still_arriving_is_a_sign_of_life_but_a_link_that_dies_mid_message_is_not() {
    // A frame that takes 60 s to arrive over a slow link, with a 30 s heartbeat bound: the
    // server cannot answer a ping in the middle of a frame, so only the bytes themselves,
    // reported by the driver before each due timeout, show that the link is alive.
    for mode in [HeartbeatMode::PingFrame, HeartbeatMode::ServerDriven] {
        let mut sim = heartbeat_sim(mode, Protocol::Raw);
        sim.connect_open();
        sim.run_for(secs(5));
        sim.server_trickle(Some(Frame::from("x".repeat(1 << 20))), secs(60));
        sim.run_for(secs(61));
        assert_eq!(sim.reconnects(), [], "{mode:?}: cut off mid-message");
        assert_eq!(sim.delivered().len(), 1, "{mode:?}");
        // The same link then goes silent: found as before.
        let quiet = sim.now;
        sim.server.behaviour = Behaviour::BlackHole;
        sim.run_for(secs(40));
        let (at, _, _, cause) = sim.reconnects()[0].clone();
        assert_eq!(cause, DisconnectCause::HeartbeatTimeout, "{mode:?}");
        assert!(at.saturating_duration_since(quiet) <= secs(30), "{mode:?}");

        // A link that dies in the middle of the message: found within the bound of its last
        // byte, as a silent one is.
        let mut sim = heartbeat_sim(mode, Protocol::Raw);
        sim.connect_open();
        sim.run_for(secs(5));
        let stopped = sim.now + sim.latency + secs(45);
        sim.server_trickle(None, secs(45));
        sim.run_for(secs(100));
        let (at, _, _, cause) = sim.reconnects()[0].clone();
        assert_eq!(cause, DisconnectCause::HeartbeatTimeout, "{mode:?}");
        assert!(at > stopped, "{mode:?}: cut off while bytes still came");
        let bound = match mode {
            HeartbeatMode::PingFrame => secs(30),
            // The driver reports bytes at the next deadline, which is the silence limit's
            // own: the bytes it saw arrived at some time since the last input.
            _ => secs(60),
        };
        assert!(
            at.saturating_duration_since(stopped) <= bound,
            "{mode:?}: found {:?} after the last byte",
            at.saturating_duration_since(stopped)
        );
        assert!(sim.delivered().is_empty());
    }
}

#[test]
fn bytes_answer_a_probe_when_they_come_after_it_and_only_then() {
    // The network changes while a large message is arriving: the bytes that keep coming
    // answer the probe (its pong waits behind the frame).
    let mut sim = heartbeat_sim(HeartbeatMode::PingFrame, Protocol::Raw);
    sim.connect_open();
    sim.run_for(secs(1));
    sim.server_trickle(Some(Frame::from("x".repeat(1 << 20))), secs(20));
    sim.run_for(secs(4));
    sim.engine.network_changed(sim.now, true);
    sim.run_for(secs(20));
    assert_eq!(sim.reconnects(), [], "the probe was answered by the bytes");
    assert_eq!(sim.delivered().len(), 1);

    let mut sim = heartbeat_sim(HeartbeatMode::PingFrame, Protocol::Raw);
    sim.connect_open();
    sim.run_for(secs(1));
    // Bytes arrive for 3 s, then the link dies; the network changes a second later.
    sim.server_trickle(None, secs(3));
    sim.run_for(secs(4));
    let probe_at = sim.now;
    sim.engine.network_changed(sim.now, true);
    sim.run_for(secs(6));
    let (at, _, _, cause) = sim.reconnects()[0].clone();
    assert_eq!(cause, DisconnectCause::HeartbeatTimeout);
    assert_eq!(at.saturating_duration_since(probe_at), secs(5));
}

#[test]
fn an_upload_the_peer_keeps_acknowledging_is_not_cut_off_and_a_stalled_one_is() {
    // A large message going out on a slow link: the server reads it and cannot answer a ping
    // until it is through (and our ping waits behind it). The driver reports that its socket
    // took more after pushing back, once per second for a minute: the heartbeat keeps it.
    let mut sim = heartbeat_sim(HeartbeatMode::PingFrame, Protocol::Raw);
    sim.connect_open();
    let conn = sim.server.conn.unwrap();
    sim.server.behaviour = Behaviour::BlackHole;
    let start = sim.now;
    for s in 1..=60 {
        sim.run_until(start + secs(s));
        sim.engine.bytes_acknowledged(sim.now, conn);
    }
    assert_eq!(sim.reconnects(), [], "cut off while the peer acknowledged");
    // Then the socket takes nothing more: found within the bound, as a silent link is.
    let stalled = sim.now;
    sim.run_for(secs(100));
    let (at, _, _, cause) = sim.reconnects()[0].clone();
    assert_eq!(cause, DisconnectCause::HeartbeatTimeout);
    assert!(at.saturating_duration_since(stalled) <= secs(30));
}

/// How long after opening a black-holed connection is declared dead when the driver reads
/// its platform's unsent level as `levels` at the heartbeat's deadlines (just before each).
fn death_with_send_buffer_levels(levels: &[u64]) -> Duration {
    let mut sim = heartbeat_sim(HeartbeatMode::AppMessage, Protocol::Raw);
    sim.connect_open();
    let conn = sim.server.conn.unwrap();
    sim.server.behaviour = Behaviour::BlackHole;
    let opened = sim.now;
    for (k, &level) in (1u64..).zip(levels) {
        sim.run_until(opened + secs(10 * k) - Duration::from_millis(1));
        sim.engine.send_buffer_level(sim.now, conn, level);
    }
    sim.run_until(opened + secs(200));
    let (at, _, _, cause) = sim.reconnects()[0].clone();
    assert_eq!(cause, DisconnectCause::HeartbeatTimeout, "{levels:?}");
    at.saturating_duration_since(opened)
}

#[test]
fn a_send_buffer_draining_at_the_peers_pace_is_a_sign_of_life_and_a_lone_fall_to_zero_is_not() {
    // The browser driver reads `bufferedAmount` at the engine's deadlines; the engine tells
    // which readings show the peer taking an upload. With nothing read, death comes after
    // interval × (max_missed + 1) = 30 s.
    let silent = death_with_send_buffer_levels(&[]);
    assert_eq!(silent, secs(30));
    // Nothing that a dead peer also shows is a sign: a level that stays (the OS buffer is
    // full and nothing is acknowledged), one that grows (the app sends more), and a small
    // send that left at once for an OS buffer with room (a reading caught it, the next is 0).
    for levels in [&[5000, 5000, 5000][..], &[1000, 5000, 9000], &[1000, 0]] {
        assert_eq!(death_with_send_buffer_levels(levels), silent, "{levels:?}");
    }
    // An upload draining without emptying keeps the connection as long as it drains...
    let draining = death_with_send_buffer_levels(&[9000, 8000, 7000, 6000, 5000, 4000]);
    assert_eq!(
        draining,
        secs(80),
        "the falls at 20 s to 60 s each answered a ping"
    );
    // ...and its last part leaving (the fall to zero that ends a backlog seen draining)
    // counts once more, however often the level was read in between; zero again does not.
    let emptied = death_with_send_buffer_levels(&[9000, 8000, 7000, 6000, 5000, 4000, 0]);
    assert_eq!(emptied, draining + secs(10));
    let stayed_empty = death_with_send_buffer_levels(&[9000, 8000, 7000, 6000, 5000, 4000, 0, 0]);
    assert_eq!(stayed_empty, emptied);
    // A backlog that stays between two readings (a browser's level moves in steps) is
    // still the same draining backlog.
    let stepped = death_with_send_buffer_levels(&[9000, 8000, 8000, 0]);
    assert_eq!(
        stepped,
        secs(60),
        "the fall to zero at 40 s answered a ping"
    );
    // A new backlog after the level was zero must be seen draining again.
    let again = death_with_send_buffer_levels(&[9000, 8000, 0, 0, 1000, 0]);
    assert_eq!(again, secs(50), "the fall of a new backlog to zero counted");
}

#[test]
fn a_dead_peer_is_found_within_the_bound_however_often_the_level_is_read() {
    // The browser driver reads the level every 20 ms while backpressure holds. A dead peer's
    // OS buffer takes the start of an upload (the one false sign), then nothing: the app
    // keeps sending, so the level only grows, and it is found within the bound of that sign.
    let mut sim = heartbeat_sim(HeartbeatMode::AppMessage, Protocol::Raw);
    sim.connect_open();
    let conn = sim.server.conn.unwrap();
    sim.server.behaviour = Behaviour::BlackHole;
    let opened = sim.now;
    let mut level = 0;
    for k in 1..=10_000u64 {
        sim.run_until(opened + ms(20 * k));
        level = match k {
            ..=749 => 0,
            750 => 50_000,
            751 => 20_000,
            _ if k % 50 == 0 => level + 100,
            _ => level,
        };
        sim.engine.send_buffer_level(sim.now, conn, level);
        if !sim.reconnects().is_empty() {
            break;
        }
    }
    // The false sign at 15 s answered the ping of 10 s; those of 20 s and 30 s went missing.
    let (at, _, _, cause) = sim.reconnects()[0].clone();
    assert_eq!(cause, DisconnectCause::HeartbeatTimeout);
    assert_eq!(at.saturating_duration_since(opened), secs(40));
}

#[test]
fn a_send_buffer_fall_answers_a_probe_only_when_it_comes_after_it() {
    // As with bytes: a probe (the network changed) is answered by what comes after it. An
    // upload drained between two heartbeat deadlines, then the link died with the old
    // network; the probe's reading still shows the fall since the last deadline's reading,
    // which came before the probe and must not answer it.
    let probed = |read_at_probe: Option<u64>| {
        let mut sim = heartbeat_sim(HeartbeatMode::AppMessage, Protocol::Raw);
        sim.connect_open();
        let conn = sim.server.conn.unwrap();
        sim.server.behaviour = Behaviour::BlackHole;
        let opened = sim.now;
        sim.run_until(opened + secs(10) - ms(1));
        sim.engine.send_buffer_level(sim.now, conn, 9000);
        // The peer took 3000 bytes at 11 s, then the link died; the network changes at 13 s.
        sim.run_until(opened + secs(13));
        let probe_at = sim.now;
        if let Some(level) = read_at_probe {
            sim.engine.send_buffer_level(sim.now, conn, level);
        }
        sim.engine.network_changed(sim.now, true);
        sim.run_until(probe_at + secs(5) - ms(1));
        sim.engine.send_buffer_level(sim.now, conn, 6000);
        sim.run_until(probe_at + secs(6));
        (probe_at, sim.reconnects())
    };
    let (probe_at, reconnects) = probed(None);
    let (at, _, _, cause) = reconnects[0].clone();
    assert_eq!(cause, DisconnectCause::HeartbeatTimeout);
    assert_eq!(
        at.saturating_duration_since(probe_at),
        secs(5),
        "a dead socket is found within the probe timeout"
    );
    // Read at the probe too, the same fall is known to come before it: still found.
    let (_, reconnects) = probed(Some(6000));
    assert_eq!(reconnects[0].3, DisconnectCause::HeartbeatTimeout);
    // A fall after the probe's own reading answers it.
    let (_, reconnects) = probed(Some(7000));
    assert_eq!(reconnects, [], "the upload kept draining after the probe");
}

#[test]
fn send_buffer_levels_of_a_stale_transport_are_ignored() {
    let mut sim = heartbeat_sim(HeartbeatMode::AppMessage, Protocol::Raw);
    sim.connect_open();
    let first = sim.server.conn.unwrap();
    sim.kill_connection();
    sim.run_until_state(secs(10), |e| e.state().is_open());
    sim.server.behaviour = Behaviour::BlackHole;
    let opened = sim.now;
    for k in 1..=20u64 {
        sim.run_until(opened + secs(k));
        sim.engine.send_buffer_level(sim.now, first, 100_000 - k);
    }
    sim.run_for(secs(60));
    let (at, _, _, cause) = sim.reconnects()[1].clone();
    assert_eq!(cause, DisconnectCause::HeartbeatTimeout);
    assert!(at.saturating_duration_since(opened) <= secs(30));
}

#[test]
fn bytes_received_from_a_stale_transport_are_ignored() {
    let mut sim = heartbeat_sim(HeartbeatMode::ServerDriven, Protocol::Raw);
    sim.connect_open();
    let first = sim.server.conn.unwrap();
    sim.kill_connection();
    sim.run_until_state(secs(10), |e| e.state().is_open());
    let opened = sim.now;
    for s in 1..=40 {
        sim.run_until(opened + secs(s));
        sim.engine.bytes_received(sim.now, first);
    }
    let (at, _, _, cause) = sim.reconnects()[1].clone();
    assert_eq!(cause, DisconnectCause::HeartbeatTimeout);
    assert!(
        at.saturating_duration_since(opened) <= secs(30),
        "the old transport's bytes kept the new one alive"
    );
    assert!(sim.engine.stats().stale_inputs >= 30, "counted as stale");
}

#[test]
fn a_quiet_raw_socket_stays_up_in_a_browser_that_hides_the_servers_pings() {
    // A browser can neither send ping frames nor see the server's: Auto must not wait for
    // signs of life it can never get (it used to declare this connection dead every 75 s).
    let mut sim = Sim::new(
        Config::builder("ws://relay")
            .driver_can_send_ping_frames(false)
            .driver_sees_ping_frames(false)
            .seed(5)
            .build()
            .unwrap(),
        false,
    );
    assert_eq!(
        sim.engine.config().effective_heartbeat_mode(),
        HeartbeatMode::Off
    );
    sim.connect_open();
    sim.run_for(secs(600));
    assert!(sim.reconnects().is_empty(), "{:?}", sim.reconnects());
    assert_eq!(sim.engine.state(), &State::Open);
}

// ---- network and lifecycle hints ----------------------------------------------------------------

#[test]
fn a_network_change_just_before_the_ping_tick_does_not_kill_a_healthy_connection() {
    // The probe went out 5 ms before the regular ping was due; with max_missed_pongs(1) the
    // tick counted it as missed before its answer (20 ms round trip) could arrive.
    let mut sim = Sim::new(
        Config::builder("ws://relay")
            .heartbeat_mode(HeartbeatMode::PingFrame)
            .heartbeat_interval(secs(10))
            .max_missed_pongs(1)
            .seed(5)
            .build()
            .unwrap(),
        false,
    );
    sim.connect_open();
    let opened = sim.now;
    sim.run_until(opened + secs(20) - ms(5));
    sim.engine.network_changed(sim.now, true);
    sim.run_for(secs(30));
    assert_eq!(sim.reconnects(), [], "a healthy link was declared dead");
    assert!(sim.engine.state().is_open());
}

/// The payloads of the pings an engine asks for, and whether it asked to close, draining it.
fn drained_pings(engine: &mut tether_core::Engine) -> (Vec<Vec<u8>>, bool) {
    let (mut pings, mut closed) = (Vec::new(), false);
    while let Some(action) = engine.poll_action() {
        match action {
            tether_core::Action::Ping { payload, .. } => pings.push(payload),
            tether_core::Action::Close { .. } => closed = true,
            _ => {}
        }
    }
    while engine.poll_event().is_some() {}
    (pings, closed)
}

#[test]
fn an_answered_pings_deadline_does_not_judge_a_probe_sent_after_it_when_only_pongs_count() {
    // Only pongs prove the link alive (`any_frame_is_liveness: false`), each ping has 3 s.
    // A ping goes out; the network changes a second later and a probe (5 s) goes out; the
    // ping's pong arrives in time. At the ping's deadline the probe, not yet due, must not be
    // judged by it: the connection was declared dead at 13 s, with its probe answered at 14 s.
    let config = Config::builder("ws://relay")
        .heartbeat(tether_core::HeartbeatConfig {
            mode: HeartbeatMode::PingFrame,
            interval: secs(10),
            pong_timeout: Some(secs(3)),
            probe_timeout: secs(5),
            any_frame_is_liveness: false,
            ..Default::default()
        })
        .seed(5)
        .build()
        .unwrap();
    let at = |d: Duration| Instant::ZERO + d;
    let (mut engine, t) = opened_engine(config, at(secs(0)));
    drained_pings(&mut engine);

    engine.handle_timeout(at(secs(10)));
    let (ping, _) = drained_pings(&mut engine);
    assert_eq!(ping.len(), 1, "the regular ping");
    engine.network_changed(at(secs(11)), true);
    let (probe, _) = drained_pings(&mut engine);
    assert_eq!(probe.len(), 1, "the probe");
    engine.pong_received(at(ms(11_100)), t, &ping[0]);
    engine.handle_timeout(at(secs(13)));
    let (_, closed) = drained_pings(&mut engine);
    assert!(
        !closed && engine.state().is_open(),
        "dead at the answered ping's deadline, before the probe's: {:?}",
        engine.state()
    );
    engine.pong_received(at(secs(14)), t, &probe[0]);
    engine.handle_timeout(at(secs(16)));
    let (_, closed) = drained_pings(&mut engine);
    assert!(!closed && engine.state().is_open(), "{:?}", engine.state());
}

#[test]
fn attempts_that_fail_while_offline_do_not_count_against_max_attempts() {
    // Airplane mode for five minutes with max_attempts(3): the client kept its three
    // attempts for when the network is back, instead of giving up in the first minute.
    let mut sim = Sim::new(
        Config::builder("ws://relay")
            .max_attempts(Some(3))
            .backoff_max(secs(30))
            .seed(9)
            .build()
            .unwrap(),
        false,
    );
    sim.connect_open();
    sim.run_for(secs(6)); // stable: its loss is not a failed attempt
    sim.engine.network_changed(sim.now, false);
    sim.server.behaviour = Behaviour::Down;
    sim.kill_connection();
    sim.run_for(secs(300));
    assert!(
        matches!(sim.engine.state(), State::Waiting { .. }),
        "{:?}",
        sim.engine.state()
    );
    let offline_attempts = sim.server.opens.len() - 1;
    assert!(offline_attempts > 3, "attempts went on: {offline_attempts}");
    let delays: Vec<Duration> = sim.reconnects().into_iter().map(|r| r.2).collect();
    assert!(delays.iter().all(|d| *d <= secs(30)), "{delays:?}");

    // Back online: the counted attempts start now. The network is not yet usable (the
    // server still down), so three more fail, then the client gives up.
    sim.engine.network_changed(sim.now, true);
    sim.run_for(secs(300));
    assert_eq!(
        sim.engine.state(),
        &State::Closed {
            reason: CloseReason::GaveUp {
                attempts: offline_attempts as u32 + 3
            }
        }
    );
}

#[test]
fn coming_online_while_waiting_reconnects_at_once() {
    let mut sim = Sim::new(
        Config::builder("ws://relay")
            .jitter(Jitter::None)
            .build()
            .unwrap(),
        false,
    );
    sim.server.behaviour = Behaviour::Down;
    sim.connect();
    sim.run_for(secs(4)); // waiting 4 s before attempt 4
    sim.engine.network_changed(sim.now, false);
    sim.server.behaviour = Behaviour::Normal;
    let before = sim.server.opens.len();
    sim.engine.network_changed(sim.now, true);
    sim.run_for(ms(50));
    assert_eq!(sim.server.opens.len(), before + 1, "attempted immediately");
    assert!(sim.engine.state().is_open());
}

#[test]
fn going_offline_probes_instead_of_killing_a_healthy_socket() {
    let mut sim = heartbeat_sim(HeartbeatMode::PingFrame, Protocol::Raw);
    sim.connect_open();
    sim.engine.network_changed(sim.now, false);
    sim.run_for(secs(6));
    assert!(sim.reconnects().is_empty(), "the probe was answered");
    assert_eq!(
        sim.events_matching(|e| matches!(e, Event::Rtt { .. }).then_some(()))
            .len(),
        1
    );

    sim.server.behaviour = Behaviour::BlackHole;
    let probe_at = sim.now;
    sim.engine.network_changed(sim.now, true);
    sim.run_for(secs(6));
    let (at, _, _, cause) = sim.reconnects()[0].clone();
    assert_eq!(cause, DisconnectCause::HeartbeatTimeout);
    assert_eq!(
        at.saturating_duration_since(probe_at),
        secs(5),
        "a dead socket is found within the probe timeout, not after 30 s"
    );
}

#[test]
fn returning_to_foreground_reconnects_a_waiting_client() {
    let mut sim = Sim::raw("ws://relay");
    sim.server.behaviour = Behaviour::Down;
    sim.connect();
    sim.run_for(secs(3));
    sim.engine.set_foreground(sim.now, false);
    sim.server.behaviour = Behaviour::Normal;
    sim.engine.set_foreground(sim.now, true);
    sim.run_for(ms(50));
    assert!(sim.engine.state().is_open());
}

/// A client refused with 429 and `Retry-After: retry_after`, now waiting; the server then
/// recovers. Returns the sim and when the retry was scheduled.
fn told_to_retry_after(retry_after: Duration) -> (Sim, Instant) {
    let mut sim = Sim::raw("ws://relay");
    sim.server.behaviour = Behaviour::Http {
        status: 429,
        retry_after: Some(retry_after),
    };
    sim.connect();
    sim.run_for(ms(50));
    let (at, _, delay, _) = sim.reconnects()[0].clone();
    assert!(delay >= retry_after, "{delay:?}");
    sim.server.behaviour = Behaviour::Normal;
    (sim, at)
}

#[test]
fn repeated_online_reports_cut_the_backoff_but_never_the_servers_minimum() {
    // Against a server's Retry-After: platforms report "online" over and over.
    let (mut sim, _) = told_to_retry_after(secs(120));
    for _ in 0..20 {
        sim.engine.network_changed(sim.now, true);
        sim.run_for(secs(5));
    }
    assert_eq!(sim.server.opens.len(), 1, "no attempt before Retry-After");

    // Against the backoff, an online report is a network change (a handover reports the new
    // network before losing the old one): it attempts at once, offline first or not.
    let mut sim = Sim::new(
        Config::builder("ws://relay")
            .jitter(Jitter::None)
            .build()
            .unwrap(),
        false,
    );
    sim.server.behaviour = Behaviour::Down;
    sim.connect();
    sim.run_for(secs(4)); // waiting 4 s before attempt 4
    let before = sim.server.opens.len();
    sim.engine.network_changed(sim.now, true);
    sim.run_for(ms(1));
    assert_eq!(sim.server.opens.len(), before + 1, "online while online");
    sim.run_for(ms(50));
    sim.engine.network_changed(sim.now, false);
    sim.engine.network_changed(sim.now, true);
    sim.run_for(ms(1));
    assert_eq!(
        sim.server.opens.len(),
        before + 2,
        "offline then online: at once"
    );
}

#[test]
fn coming_back_online_waits_for_the_servers_minimum() {
    let (mut sim, scheduled) = told_to_retry_after(secs(120));
    sim.run_for(secs(30));
    sim.engine.network_changed(sim.now, false);
    sim.run_for(secs(30));
    sim.engine.network_changed(sim.now, true);
    sim.run_for(ms(1));
    assert_eq!(sim.server.opens.len(), 1, "not before Retry-After");
    // The attempt moved from Retry-After plus its jitter to Retry-After itself.
    assert_eq!(
        sim.engine.state(),
        &State::Waiting {
            attempt: 2,
            until: scheduled + secs(120)
        }
    );
    sim.run_until_state(secs(120), |e| e.state().is_open());
    assert_eq!(sim.server.opens.len(), 2);
    assert_eq!(sim.server.opens[1].0, scheduled + secs(120));
}

#[test]
fn the_floor_of_close_1013_and_of_an_advised_downtime_holds_too() {
    for (code, reason, floor) in [
        (1013, "busy", secs(5)),
        (
            1012,
            r#"{"reconnect_after_ms": 8000, "reconnect_within_ms": 20000}"#,
            secs(8),
        ),
    ] {
        let mut sim = Sim::raw("ws://relay");
        sim.connect_open();
        sim.server_close(code, reason);
        let scheduled = sim.now;
        sim.engine.network_changed(sim.now, false);
        sim.run_for(secs(1));
        sim.engine.network_changed(sim.now, true);
        sim.engine.set_foreground(sim.now, false);
        sim.engine.set_foreground(sim.now, true);
        sim.engine.connect(sim.now);
        sim.run_until_state(secs(30), |e| e.state().is_open());
        assert_eq!(sim.server.opens.len(), 2, "{code}");
        assert_eq!(sim.server.opens[1].0, scheduled + floor, "{code} {reason}");
    }
}

#[test]
fn foreground_flapping_waits_for_the_servers_minimum() {
    let (mut sim, scheduled) = told_to_retry_after(secs(60));
    for _ in 0..10 {
        sim.engine.set_foreground(sim.now, false);
        sim.run_for(secs(1));
        sim.engine.set_foreground(sim.now, true);
        sim.engine.set_foreground(sim.now, true);
        sim.run_for(secs(4));
    }
    // 50 s of flapping: still waiting for the minimum, which the first return moved it to.
    assert_eq!(sim.server.opens.len(), 1);
    sim.run_until_state(secs(60), |e| e.state().is_open());
    assert_eq!(sim.server.opens[1].0, scheduled + secs(60));

    // Without a server minimum every return to the foreground attempts at once.
    let mut sim = Sim::new(
        Config::builder("ws://relay")
            .jitter(Jitter::None)
            .backoff_initial(secs(20))
            .build()
            .unwrap(),
        false,
    );
    sim.server.behaviour = Behaviour::Down;
    sim.connect();
    sim.run_for(ms(50)); // waiting 20 s
    for n in 1..=3 {
        sim.engine.set_foreground(sim.now, true);
        sim.run_for(ms(50));
        assert_eq!(sim.server.opens.len(), n, "already in the foreground");
        sim.engine.set_foreground(sim.now, false);
        sim.engine.set_foreground(sim.now, true);
        sim.run_for(ms(1));
        assert_eq!(sim.server.opens.len(), n + 1, "back from the background");
        sim.run_for(ms(50));
    }
}

#[test]
fn connect_while_waiting_skips_the_backoff_but_not_the_servers_minimum() {
    let mut sim = Sim::new(
        Config::builder("ws://relay")
            .jitter(Jitter::None)
            .backoff_initial(secs(20))
            .build()
            .unwrap(),
        false,
    );
    sim.server.behaviour = Behaviour::Down;
    sim.connect();
    sim.run_for(ms(50)); // waiting 20 s
    sim.server.behaviour = Behaviour::Normal;
    sim.engine.connect(sim.now);
    sim.run_for(ms(50));
    assert!(sim.engine.state().is_open(), "the app asked: at once");

    let (mut sim, scheduled) = told_to_retry_after(secs(30));
    sim.run_for(secs(10));
    sim.engine.connect(sim.now);
    sim.run_for(ms(50));
    assert_eq!(sim.server.opens.len(), 1, "not before Retry-After");
    sim.run_until_state(secs(30), |e| e.state().is_open());
    assert_eq!(sim.server.opens[1].0, scheduled + secs(30));
}

// ---- outbox -----------------------------------------------------------------------------------

#[test]
fn an_outbox_flushed_at_open_is_handed_over_a_batch_at_a_time_so_backpressure_can_stop_it() {
    // 100 messages of 16 KiB queued offline; batches of 64 KiB. The whole outbox used to be
    // handed over in one go when the connection opened, past any backpressure the driver
    // could report (a browser's bufferedAmount high-water mark).
    let config = Config::builder("ws://relay")
        .write_batch_bytes(64 * 1024)
        .outbox_max_bytes(4 << 20)
        .build()
        .unwrap();
    let mut engine = tether_core::Engine::new(config, 1);
    let now = Instant::ZERO;
    let chunk = "x".repeat(16 * 1024);
    for _ in 0..100 {
        engine.send(now, chunk.as_str()).unwrap();
    }
    engine.connect(now);
    let transport = match engine.poll_action() {
        Some(tether_core::Action::Open(open)) => open.transport,
        other => panic!("{other:?}"),
    };
    engine.transport_opened(now, transport);
    let sends = |engine: &mut tether_core::Engine| {
        std::iter::from_fn(|| engine.poll_action())
            .filter(|a| matches!(a, tether_core::Action::Send { .. }))
            .count()
    };
    assert_eq!(sends(&mut engine), 4, "64 KiB: four messages");
    assert_eq!(
        engine.poll_timeout(),
        Some(now),
        "the rest follows at once…"
    );
    // …unless the driver, in its turn, finds its buffer full.
    engine.transport_writable(now, transport, false);
    engine.handle_timeout(now);
    assert_eq!(sends(&mut engine), 0);
    assert_ne!(
        engine.poll_timeout(),
        Some(now),
        "no busy loop while blocked"
    );
    assert_eq!(engine.outbox_len(), 96, "kept in the outbox");
    engine.transport_writable(now, transport, true);
    let mut written = sends(&mut engine);
    for _ in 0..100 {
        if engine.poll_timeout() != Some(now) {
            break;
        }
        engine.handle_timeout(now);
        written += sends(&mut engine);
    }
    assert_eq!(written, 96, "all of it, a batch per turn");
    assert_eq!(engine.outbox_len(), 0);
}

#[test]
fn outbox_overflow_drops_the_oldest_reports_them_and_delivers_the_rest_in_order() {
    let mut sim = Sim::new(
        Config::builder("ws://relay")
            .outbox_max_messages(10)
            .build()
            .unwrap(),
        false,
    );
    sim.server.echo = false;
    sim.server.behaviour = Behaviour::Down;
    sim.connect();
    for i in 1..=15 {
        sim.engine.send(sim.now, format!("m{i}")).unwrap();
        sim.run_for(ms(1));
    }
    let dropped: Vec<u64> = sim
        .events_matching(|e| match e {
            Event::Dropped {
                ids,
                reason: DropReason::Overflow,
            } => Some(ids.iter().map(|i| i.get()).collect::<Vec<_>>()),
            _ => None,
        })
        .concat();
    assert_eq!(dropped, vec![1, 2, 3, 4, 5]);
    assert_eq!(sim.engine.stats().dropped_overflow, 5);
    sim.server.behaviour = Behaviour::Normal;
    sim.run_until_state(secs(30), |e| e.state().is_open());
    sim.run_for(ms(100));
    let got = sim.server_texts();
    let want: Vec<String> = (6..=15).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want);
}

#[test]
fn outbox_byte_bound_and_too_large_messages() {
    let mut sim = Sim::new(
        Config::builder("ws://relay")
            .outbox_max_bytes(10)
            .max_message_bytes(8)
            .build()
            .unwrap(),
        false,
    );
    assert_eq!(
        sim.engine.send(sim.now, "123456789"),
        Err(tether_core::SendError::TooLarge {
            size: 9,
            max: 8,
            limit: SizeLimit::MaxMessageBytes
        })
    );
    sim.engine.send(sim.now, "12345").unwrap();
    sim.engine.send(sim.now, "12345").unwrap();
    sim.engine.send(sim.now, "1").unwrap();
    assert_eq!(sim.engine.outbox_bytes(), 6);
    assert_eq!(sim.engine.stats().dropped_overflow, 1);
}

#[test]
fn a_too_large_refusal_names_the_limit_that_applied() {
    // The outbox's byte bound is the smaller limit here: a message within
    // `max_message_bytes` can still be larger than the whole outbox.
    let mut sim = Sim::new(
        Config::builder("ws://relay")
            .outbox_max_bytes(4)
            .max_message_bytes(8)
            .build()
            .unwrap(),
        false,
    );
    let over_outbox = sim.engine.send(sim.now, "123456").unwrap_err();
    assert_eq!(
        over_outbox,
        tether_core::SendError::TooLarge {
            size: 6,
            max: 4,
            limit: SizeLimit::OutboxMaxBytes
        }
    );
    assert_eq!(
        over_outbox.to_string(),
        "message of 6 bytes exceeds the limit of 4 bytes (outbox.max_bytes)"
    );
    // A driver asking before it copies a message in is told the same.
    assert_eq!(sim.engine.check_message_size(6), Err(over_outbox));
    assert_eq!(sim.engine.check_message_size(4), Ok(()));
    let over_message = sim.engine.send(sim.now, "123456789").unwrap_err();
    assert_eq!(
        over_message.to_string(),
        "message of 9 bytes exceeds the limit of 8 bytes (max_message_bytes)"
    );
    // The names are the settings' own, as a refused config names them.
    for (limit, builder) in [
        (
            SizeLimit::MaxMessageBytes,
            Config::builder("ws://relay").max_message_bytes(0),
        ),
        (
            SizeLimit::OutboxMaxBytes,
            Config::builder("ws://relay").outbox_max_bytes(0),
        ),
    ] {
        assert_eq!(builder.build().unwrap_err().field, limit.field());
    }
    assert_eq!(sim.engine.outbox_len(), 0);
}

#[test]
fn expired_messages_are_reported_and_never_sent_late() {
    let mut sim = Sim::raw("ws://relay");
    sim.server.echo = false;
    sim.server.behaviour = Behaviour::Down;
    sim.connect();
    sim.engine
        .send_with(sim.now, "stale", SendOptions::default().with_ttl(secs(1)))
        .unwrap();
    sim.engine.send(sim.now, "fresh").unwrap();
    sim.run_for(ms(1001));
    let expired = sim.events_matching(|e| match e {
        Event::Dropped {
            ids,
            reason: DropReason::Expired,
        } => Some(ids.clone()),
        _ => None,
    });
    assert_eq!(expired, vec![vec![first_id()]]);
    sim.server.behaviour = Behaviour::Normal;
    sim.run_until_state(secs(30), |e| e.state().is_open());
    sim.run_for(ms(50));
    assert_eq!(sim.server_texts(), vec!["fresh"]);
}

#[test]
fn messages_sent_while_open_queue_behind_older_ones_under_backpressure() {
    let mut sim = Sim::raw("ws://relay");
    sim.server.echo = false;
    sim.connect_open();
    let t = sim.server.conn.unwrap();
    sim.engine.transport_writable(sim.now, t, false);
    sim.engine.send(sim.now, "a").unwrap();
    sim.engine.send(sim.now, "b").unwrap();
    sim.run_for(ms(50));
    assert!(
        sim.server_texts().is_empty(),
        "held in the outbox while the socket is full"
    );
    assert_eq!(sim.engine.outbox_len(), 2);
    sim.engine.transport_writable(sim.now, t, true);
    sim.engine.send(sim.now, "c").unwrap();
    sim.run_for(ms(50));
    assert_eq!(sim.server_texts(), vec!["a", "b", "c"]);
}

#[test]
fn close_reports_pending_messages_as_dropped() {
    let mut sim = Sim::raw("ws://relay");
    sim.server.behaviour = Behaviour::Down;
    sim.connect();
    sim.engine.send(sim.now, "a").unwrap();
    sim.engine.close(sim.now, 1000, "bye").unwrap();
    let dropped = sim.engine.stats().dropped_closed;
    assert_eq!(dropped, 1);
    assert_eq!(
        sim.engine.send(sim.now, "late"),
        Err(tether_core::SendError::Closed)
    );
    assert!(
        sim.engine.close(sim.now, 1005, "").is_err(),
        "1005 is reserved"
    );
}

#[test]
fn a_drain_ends_when_backpressure_lifts_and_the_last_message_is_written() {
    let mut sim = Sim::raw("ws://relay");
    sim.connect_open();
    let t = sim.server.opens[0].1.transport;
    sim.engine.transport_writable(sim.now, t, false);
    sim.engine.send(sim.now, "x").unwrap();
    sim.engine.close_after_drain(sim.now, secs(60));
    sim.run_for(ms(50));
    assert_eq!(sim.engine.state(), &State::Open, "nothing written yet");
    sim.engine.transport_writable(sim.now, t, true);
    sim.run_for(ms(50));
    // Written, then the close (the simulated server drops frames that arrive after it).
    assert_eq!(sim.engine.stats().messages_settled, 1);
    assert_eq!(sim.engine.stats().dropped_total(), 0);
    assert!(
        matches!(sim.engine.state(), State::Closing | State::Closed { .. }),
        "closing once written, not at the 60 s deadline: {:?}",
        sim.engine.state()
    );
    assert_eq!(sim.closes.len(), 1);
}

#[test]
fn a_close_settles_the_written_messages_the_server_acks_before_answering_the_close() {
    // Three acked publishes written, then `close()` before their acks: the server takes them
    // ahead of the close frame and acks them before it answers the close. They were reported
    // `Dropped { Closed }` at the call, so the app was told three stored messages were lost
    // (and one that resends them duplicates them). A message still queued (never written) is
    // dropped at once, as before.
    let mut sim = tether(Config::builder("ws://relay"));
    sim.server.answers_close = true;
    sim.connect_open();
    let written = sim.publish_each(0..3);
    sim.run_for(ms(1));
    assert_eq!(sim.engine.stats().messages_settled, 0, "none acked yet");
    sim.engine.close(sim.now, 1000, "bye").unwrap();
    sim.run_for(secs(5));
    assert_eq!(
        sim.engine.state(),
        &State::Closed {
            reason: CloseReason::App { code: 1000 }
        }
    );
    assert_eq!(sim.server_publishes().len(), 3);
    let acked = sim.acked();
    let dropped = sim.events_matching(|e| match e {
        Event::Dropped { ids, .. } => Some(ids.clone()),
        _ => None,
    });
    assert_eq!((acked, dropped), (written, vec![]));
}

#[test]
fn a_written_message_whose_ack_never_comes_is_dropped_when_the_close_ends() {
    // The same close, the server answering it but not the publish: reported once, when the
    // close handshake ends, not lost and not left waiting.
    let mut sim = tether(Config::builder("ws://relay"));
    sim.server.answers_close = true;
    sim.server.send_acks = false;
    sim.connect_open();
    let id = sim
        .engine
        .publish(sim.now, "room", json!(1), SendOptions::default())
        .unwrap();
    sim.run_for(ms(1));
    sim.engine.close(sim.now, 1000, "").unwrap();
    sim.run_for(ms(0));
    assert_eq!(sim.engine.state(), &State::Closing);
    let at_close = sim.events_matching(|e| matches!(e, Event::Dropped { .. }).then_some(()));
    assert!(at_close.is_empty(), "not before the close ends");
    sim.run_for(secs(5));
    assert!(sim.engine.state().is_closed());
    let dropped = sim.dropped();
    assert_eq!(dropped, [(vec![id], DropReason::Closed)]);
}

#[test]
fn a_close_lets_a_written_request_get_the_reply_the_server_sends_before_answering_the_close() {
    // A request written, then close() before its reply: the server read it ahead of the close
    // frame and replies before it answers the close. It was failed `Closed` at the call, so
    // the app was told a request the server carried out had failed (one that retries it
    // repeats it). A request never written still fails at the call.
    let mut sim = tether(Config::builder("ws://relay"));
    sim.server.answers_close = true;
    sim.connect_open();
    let written = sim.engine.request(sim.now, json!("done?"), None).unwrap();
    sim.run_for(ms(1));
    sim.engine.close(sim.now, 1000, "bye").unwrap();
    sim.run_for(secs(5));
    assert!(sim.engine.state().is_closed(), "{:?}", sim.engine.state());
    let outcomes = sim.request_outcomes();
    assert_eq!(outcomes, [(written, Ok(json!({"echo": "done?"})))]);
}

#[test]
fn a_written_request_whose_reply_never_comes_fails_when_the_close_ends() {
    let mut sim = tether(Config::builder("ws://relay"));
    sim.server.answers_close = true;
    sim.server.answer_requests = false;
    sim.connect_open();
    let written = sim.engine.request(sim.now, json!(1), None).unwrap();
    sim.run_for(ms(1));
    sim.engine.close(sim.now, 1000, "").unwrap();
    let queued = {
        // Offline-queued requests have nothing coming: they fail at the call.
        let mut other = tether(Config::builder("ws://relay"));
        let id = other.engine.request(other.now, json!(2), None).unwrap();
        other.engine.close(other.now, 1000, "").unwrap();
        other.run_for(ms(0));
        other.request_failures(id)
    };
    assert_eq!(queued, [RequestFailure::Closed]);
    sim.run_for(ms(0));
    assert_eq!(sim.engine.state(), &State::Closing);
    assert_eq!(
        sim.request_failures(written),
        [],
        "not before the close ends"
    );
    sim.run_for(secs(5));
    assert!(sim.engine.state().is_closed());
    assert_eq!(sim.request_failures(written), [RequestFailure::Closed]);
    assert_eq!(sim.engine.pending_requests(), 0);
}

#[test]
fn a_connect_during_the_close_fails_the_request_it_kept_for_its_reply() {
    // As for the messages kept for their acks (below): the next connection starts without it.
    let mut sim = tether(Config::builder("ws://relay"));
    sim.server.answers_close = true;
    sim.server.answer_requests = false;
    sim.connect_open();
    let kept = sim.engine.request(sim.now, json!(1), None).unwrap();
    sim.run_for(ms(1));
    sim.engine.close(sim.now, 1000, "").unwrap();
    sim.run_for(ms(0));
    assert_eq!(sim.request_failures(kept), []);
    sim.engine.connect(sim.now);
    sim.run_for(ms(0));
    assert_eq!(sim.request_failures(kept), [RequestFailure::Closed]);
    assert_eq!(sim.engine.outbox_len(), 0);
}

#[test]
fn a_connect_during_the_close_drops_what_it_kept_for_acks_before_taking_new_messages() {
    // close() kept three written messages for their acks (the server never sends them), then
    // connect() (a remount) and three new sends into an outbox of three. The kept ones counted
    // against the bound: each new send evicted one of them as an overflow, or the new one
    // before it. Now the connect reports the kept ones closed, as the close used to, and the
    // new ones wait, whole, for the next connection.
    let mut sim = tether(Config::builder("ws://relay").outbox_max_messages(3));
    sim.server.answers_close = true;
    sim.server.send_acks = false;
    sim.connect_open();
    let kept = sim.publish_each(0..3);
    sim.run_for(ms(1));
    sim.engine.close(sim.now, 1000, "").unwrap();
    sim.engine.connect(sim.now);
    let fresh = sim.publish_each(10..13);
    sim.run_for(ms(0));
    let dropped = sim.dropped();
    assert_eq!(dropped, [(kept, DropReason::Closed)]);
    sim.server.send_acks = true;
    sim.run_for(secs(5));
    assert!(sim.engine.state().is_open(), "{:?}", sim.engine.state());
    let acked = sim.acked();
    assert_eq!(acked, fresh);
}

#[test]
fn a_drain_that_times_out_after_a_connect_drops_what_it_kept_before_taking_new_messages() {
    // As `a_connect_during_the_close_drops_what_it_kept_...` above, but the `connect` came
    // during a drained close, before its deadline: the drain times out into a close
    // handshake that keeps three written requests for their replies (the server never
    // answers them), and the app, whose last word was `connect`, sends three messages into
    // an outbox of three. The kept requests counted against the bound: the first new send
    // failed a written request as an overflow, and each later one evicted the new message
    // before it.
    let mut sim = tether(Config::builder("ws://relay").outbox_max_messages(3));
    sim.server.answer_requests = false;
    sim.connect_open();
    let kept: Vec<_> = (0..3)
        .map(|i| {
            sim.engine
                .request(sim.now, json!(i), Some(secs(60)))
                .unwrap()
        })
        .collect();
    sim.run_for(ms(1));
    sim.engine.close_after_drain(sim.now, secs(1));
    sim.engine.connect(sim.now);
    sim.run_until_state(secs(2), |e| e.state() == &State::Closing);
    let fresh = sim.publish_each(10..13);
    sim.run_for(secs(10));
    assert!(sim.engine.state().is_open(), "{:?}", sim.engine.state());
    for id in &kept {
        assert_eq!(
            sim.request_failures(*id),
            [RequestFailure::Closed],
            "{id:?}"
        );
    }
    assert_eq!(sim.dropped(), [], "a new message was evicted");
    assert_eq!(sim.acked(), fresh);
}

#[test]
fn a_drained_close_asked_again_while_waiting_makes_no_attempt_of_its_own() {
    // The first close_after_drain cuts the wait once; an app repeating it (a close button
    // pressed again) makes no more attempts than the backoff's.
    let mut sim = tether(
        Config::builder("ws://relay")
            .backoff_initial(secs(60))
            .backoff_max(secs(60))
            .jitter(Jitter::None),
    );
    sim.server.behaviour = Behaviour::Down;
    sim.connect();
    sim.run_until_state(secs(1), |e| matches!(e.state(), State::Waiting { .. }));
    sim.engine
        .publish(sim.now, "room", json!(1), SendOptions::default())
        .unwrap();
    let opens = sim.server.opens.len();
    for _ in 0..20 {
        sim.engine.close_after_drain(sim.now, secs(30));
        sim.run_for(ms(100));
    }
    assert_eq!(
        sim.server.opens.len(),
        opens + 1,
        "one attempt for the drain"
    );
}

#[test]
fn close_after_drain_delivers_everything_then_closes() {
    let mut sim = tether(Config::builder("ws://relay"));
    sim.server.behaviour = Behaviour::Down;
    sim.connect();
    sim.publish_each(0..3);
    assert!(!sim.engine.is_closing());
    sim.engine.close_after_drain(sim.now, secs(30));
    assert!(sim.engine.is_closing(), "the drain is a close under way");
    assert_eq!(
        sim.engine
            .publish(sim.now, "room", json!(9), SendOptions::default()),
        Err(tether_core::SendError::Closing)
    );
    sim.run_for(secs(2));
    assert!(
        sim.engine.is_closing(),
        "still draining while the server is down"
    );
    sim.server.behaviour = Behaviour::Normal;
    sim.run_for(secs(10));
    assert!(
        !sim.engine.is_closing(),
        "closed: nothing under way any more"
    );
    assert_eq!(sim.server_publishes().len(), 3);
    assert_eq!(
        sim.engine.state(),
        &State::Closed {
            reason: CloseReason::App { code: 1000 }
        }
    );
    assert_eq!(sim.engine.stats().messages_settled, 3);
    assert_eq!(sim.engine.stats().dropped_total(), 0);
}

/// A client waiting out a long backoff with a message queued, the server back up, and the
/// close's drain shorter than the wait: `(the drain ended after, what the server got, the
/// drops reported)`, from `close_after_drain(5 s)`.
fn drained_close_while_waiting(server_minimum: Option<Duration>) -> (Duration, usize, usize) {
    let mut sim = tether(
        Config::builder("ws://relay")
            .backoff_initial(secs(60))
            .backoff_max(secs(60)),
    );
    sim.server.behaviour = match server_minimum {
        Some(at_least) => Behaviour::Http {
            status: 503,
            retry_after: Some(at_least),
        },
        None => Behaviour::Down,
    };
    sim.connect();
    sim.run_for(ms(100));
    let State::Waiting { until, .. } = *sim.engine.state() else {
        panic!("waiting after a failed attempt: {:?}", sim.engine.state())
    };
    assert!(until > sim.now + secs(10), "a long wait: {until:?}");
    sim.server.behaviour = Behaviour::Normal;
    sim.engine
        .publish(sim.now, "room", json!("last words"), SendOptions::default())
        .unwrap();
    let closed_from = sim.now;
    sim.engine.close_after_drain(sim.now, secs(5));
    sim.run_for(secs(6));
    assert!(sim.engine.state().is_closed(), "{:?}", sim.engine.state());
    // Where the drain ended: the close handshake (Closing) after delivering, or Closed
    // without a connection.
    let ended = sim
        .events
        .iter()
        .find_map(|(at, e)| match e {
            Event::StateChanged {
                to: State::Closing | State::Closed { .. },
                ..
            } => Some(*at),
            _ => None,
        })
        .expect("closed");
    let dropped = sim.events_matching(|e| match e {
        Event::Dropped { ids, .. } => Some(ids.len()),
        _ => None,
    });
    (
        ended.saturating_duration_since(closed_from),
        sim.server_publishes().len(),
        dropped.iter().sum(),
    )
}

#[test]
fn a_drained_close_while_waiting_reconnects_now_to_deliver_what_is_queued() {
    // The app asked for its queue to be delivered within 5 s; the next attempt was a minute
    // away. It waited out the drain and dropped the message although the server was up.
    let (ended, delivered, dropped) = drained_close_while_waiting(None);
    assert_eq!((delivered, dropped), (1, 0));
    assert!(
        ended < secs(1),
        "closing once delivered, not at the deadline: {ended:?}"
    );
}

#[test]
fn a_drained_close_while_waiting_keeps_the_servers_minimum() {
    // A server that asked for 30 s (Retry-After) is not called on sooner for a drain: the
    // drain ends at its deadline with the message dropped, reported.
    let (ended, delivered, dropped) = drained_close_while_waiting(Some(secs(30)));
    assert_eq!((delivered, dropped), (0, 1));
    assert_eq!(ended, secs(5));
}

#[test]
fn connect_during_a_drained_close_starts_again_when_a_lost_connection_ends_the_drain() {
    // close_after_drain, then connect: the drain waits for a request's reply, and the
    // connection drops taking the request along (it fails with `ConnectionLost`, the
    // default). Nothing is left to drain, so the drain is over: closed, and then, as the
    // app's last word was connect, started again. It stayed closed.
    let mut sim = tether(Config::builder("ws://relay"));
    sim.server.answer_requests = false;
    sim.connect_open();
    let request = sim.engine.request(sim.now, json!("q"), None).unwrap();
    sim.run_for(ms(100));
    sim.engine.close_after_drain(sim.now, secs(5));
    sim.engine.connect(sim.now);
    sim.kill_connection();
    assert_eq!(
        sim.request_failures(request),
        [RequestFailure::ConnectionLost]
    );
    let closes = sim.events_matching(|e| match e {
        Event::StateChanged {
            to: State::Closed { reason },
            ..
        } => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(closes, [CloseReason::App { code: 1000 }], "the drain ended");
    sim.run_for(secs(3));
    assert!(
        sim.engine.state().is_open(),
        "started again after the drained close: {:?}",
        sim.engine.state()
    );
    assert_eq!(sim.server.opens.len(), 2);
}

#[test]
fn connect_during_a_drained_close_starts_again_once_it_is_done() {
    // close_after_drain, then connect (a cleanup and remount): the app's last word is
    // connect. It was ignored while open: the client closed once drained and stayed closed,
    // refusing every send meanwhile as `Closing`. Now, as after a close: the drain finishes
    // (what was given meanwhile drained with it), is reported closed, and the client starts
    // again.
    let mut sim = tether(Config::builder("ws://relay"));
    sim.connect_open();
    // Written, its ack not yet back: the drain waits for it.
    sim.engine
        .publish(sim.now, "room", json!(1), SendOptions::default())
        .unwrap();
    sim.engine.close_after_drain(sim.now, secs(5));
    sim.engine.connect(sim.now);
    sim.engine
        .publish(sim.now, "room", json!(2), SendOptions::default())
        .expect("accepted");
    sim.run_for(secs(10));
    assert!(sim.engine.state().is_open(), "{:?}", sim.engine.state());
    assert_eq!(sim.server.opens.len(), 2, "closed, then started again");
    assert_eq!(sim.engine.stats().dropped_total(), 0);
    assert_eq!(sim.engine.stats().messages_settled, 2);

    // Its deadline passing while disconnected: the rest is dropped, then it starts again.
    sim.server.behaviour = Behaviour::Down;
    sim.kill_connection();
    sim.engine
        .publish(sim.now, "room", json!(3), SendOptions::default())
        .unwrap();
    sim.engine.close_after_drain(sim.now, secs(1));
    sim.engine.connect(sim.now);
    sim.run_for(secs(2));
    assert_eq!(sim.engine.stats().dropped_closed, 1);
    sim.server.behaviour = Behaviour::Normal;
    sim.run_for(secs(40));
    assert!(sim.engine.state().is_open(), "{:?}", sim.engine.state());
}

/// The attempts the client opened from `since` on, as times after `since`.
fn opens_after(sim: &Sim, since: Instant) -> Vec<Duration> {
    sim.server
        .opens
        .iter()
        .filter(|(at, _)| *at >= since)
        .map(|(at, _)| at.saturating_duration_since(since))
        .collect()
}

/// Open, with a request whose reply never comes, then `close_after_drain` and `connect`: the
/// drain waits for the reply, and the client is to start again once it is over.
fn draining_a_request(builder: tether_core::ConfigBuilder) -> Sim {
    let mut sim = tether(builder);
    sim.server.answer_requests = false;
    sim.connect_open();
    sim.engine.request(sim.now, json!("q"), None).unwrap();
    sim.run_for(ms(100));
    sim.engine.close_after_drain(sim.now, secs(30));
    sim.engine.connect(sim.now);
    sim
}

/// A restart the app asked for during a drained close (`close_after_drain`, then `connect`)
/// waits for the minimum a server set as the close ended (close 1013: 5 s by default, and a
/// quarter of it as spread). It used to start at once, whichever way the drain ended: the
/// close reset the timers that held the minimum, and the restart was a fresh `connect`.
#[test]
fn a_restart_after_a_drained_close_waits_for_the_servers_minimum() {
    let busy = || DisconnectCause::Closed {
        code: Some(1013),
        reason: "busy".into(),
    };
    let assert_waited = |sim: &Sim, refused: Instant, case: &str| {
        let opens = opens_after(sim, refused);
        assert_eq!(opens.len(), 1, "{case}: {opens:?}");
        assert!(
            opens[0] >= secs(5) && opens[0] <= ms(6_250),
            "{case}: the restart after {:?}",
            opens[0]
        );
        let waits = sim.reconnects();
        let (_, attempt, _, cause) = waits.last().unwrap();
        assert_eq!((*attempt, cause), (1, &busy()), "{case}: a fresh start");
        assert!(sim.engine.state().is_open(), "{case}");
    };

    // The refusal ends the drain: the connection took the last request along.
    let mut sim = draining_a_request(Config::builder("ws://relay"));
    let refused = sim.now;
    sim.server_close(1013, "busy");
    sim.run_for(secs(10));
    assert_waited(&sim, refused, "the refusal ended the drain");

    // A written message awaits its ack (which never comes) when the server refuses: the
    // client waits for the server's minimum, and the drain ends meanwhile.
    let drain_while_waiting = |ttl: Option<Duration>, drain: Duration| {
        let mut sim = tether(Config::builder("ws://relay"));
        sim.server.send_acks = false;
        sim.connect_open();
        let options = SendOptions {
            ttl,
            ..SendOptions::default()
        };
        sim.engine
            .publish(sim.now, "room", json!(1), options)
            .unwrap();
        sim.run_for(ms(100));
        sim.engine.close_after_drain(sim.now, drain);
        sim.engine.connect(sim.now);
        let refused = sim.now;
        sim.server_close(1013, "busy");
        sim.run_for(secs(10));
        (sim, refused)
    };

    // The last message expired.
    let (sim, refused) = drain_while_waiting(Some(secs(1)), secs(30));
    assert_eq!(sim.engine.stats().dropped_expired, 1);
    assert_waited(&sim, refused, "the last message expired while waiting");

    // The drain's deadline came.
    let (sim, refused) = drain_while_waiting(None, secs(2));
    assert_eq!(sim.engine.stats().dropped_closed, 1);
    assert_waited(&sim, refused, "the drain's deadline while waiting");
}

/// A server's minimum outlives a close: an app that closes while waiting for it and connects
/// again (an effect cleaned up and remounted, a page's "reconnect" button) waits for it too,
/// where it used to call at once. A token the server refused is refreshed then, and so is one
/// after the close that a second refusal ended (`Unauthorized`: the user may have signed in
/// again), where the provider used to be asked without `refresh`.
#[test]
fn a_connect_after_a_close_keeps_what_the_server_said() {
    let mut sim = tether(Config::builder("ws://relay"));
    sim.connect_open();
    sim.run_for(secs(1));
    let refused = sim.now;
    sim.server_close(1013, "busy");
    sim.run_for(secs(1));
    sim.engine.close(sim.now, 1000, "unmount").unwrap();
    sim.engine.connect(sim.now);
    assert!(
        matches!(sim.engine.state(), State::Waiting { attempt: 1, .. }),
        "{:?}",
        sim.engine.state()
    );
    sim.run_for(secs(10));
    let opens = opens_after(&sim, refused);
    assert_eq!(opens.len(), 1, "{opens:?}");
    assert!(opens[0] >= secs(5) && opens[0] <= ms(6_250), "{opens:?}");

    let mut sim = tether(Config::builder("ws://relay").token(TokenPlacement::bearer_header()));
    sim.connect_open();
    sim.server_close(4001, "token expired");
    sim.engine.close(sim.now, 1000, "unmount").unwrap();
    sim.engine.connect(sim.now);
    sim.run_until_state(secs(5), |e| e.state().is_open());
    // Refused again: the refresh was the one a refusal gets, so the client stops.
    sim.server_close(4001, "token expired");
    assert!(matches!(
        sim.engine.state(),
        State::Closed {
            reason: CloseReason::Unauthorized { .. }
        }
    ));
    sim.engine.connect(sim.now);
    sim.run_until_state(secs(5), |e| e.state().is_open());
    let refreshes: Vec<bool> = sim.token_requests.iter().map(|r| r.1).collect();
    assert_eq!(refreshes, [false, true, true]);
}

/// A server that answers the app's close with a code of its own (1013) sets the minimum for
/// the restart the app asked for meanwhile; one that echoes the app's code sets none.
#[test]
fn a_restart_after_a_close_answered_with_1013_waits_for_the_servers_minimum() {
    for (answer, waits) in [(1013, true), (1000, false)] {
        let mut sim = tether(Config::builder("ws://relay"));
        sim.connect_open();
        let transport = sim.server.opens.last().unwrap().1.transport;
        sim.engine.close(sim.now, 1000, "bye").unwrap();
        sim.engine.connect(sim.now);
        sim.run_for(ms(1));
        let answered = sim.now;
        sim.engine
            .transport_closed(sim.now, transport, Some(answer), "busy");
        sim.run_for(secs(10));
        let opens = opens_after(&sim, answered);
        assert_eq!(opens.len(), 1, "{answer}: {opens:?}");
        assert_eq!(opens[0] >= secs(5), waits, "{answer}: after {:?}", opens[0]);
        assert!(sim.engine.state().is_open(), "{answer}");
    }
}

/// A restart after a drained close that a token refusal (close 4001) ended asks the provider
/// for a fresh token: it used to ask without `refresh`, and a caching provider handed back
/// the token the server had just refused.
#[test]
fn a_restart_after_a_drained_close_ended_by_a_token_refusal_refreshes_the_token() {
    let mut sim =
        draining_a_request(Config::builder("ws://relay").token(TokenPlacement::bearer_header()));
    sim.server_close(4001, "token expired");
    sim.run_for(secs(5));
    assert!(sim.engine.state().is_open(), "{:?}", sim.engine.state());
    let refreshes: Vec<bool> = sim.token_requests.iter().map(|r| r.1).collect();
    assert_eq!(refreshes, [false, true]);
}

#[test]
fn close_after_drain_gives_up_at_its_deadline_and_reports_the_rest() {
    let mut sim = Sim::raw("ws://relay");
    sim.server.behaviour = Behaviour::Down;
    sim.engine.send(sim.now, "a").unwrap();
    sim.engine.close_after_drain(sim.now, secs(3));
    sim.run_for(secs(4));
    assert!(sim.engine.state().is_closed());
    assert_eq!(sim.engine.stats().dropped_closed, 1);
}

#[test]
fn close_after_drain_closes_when_the_last_message_expires_while_waiting() {
    // Disconnected, the server down, with the retry far off: the drain's one attempt at the
    // close fails, and the only pending message leaves by its TTL, which finishes the drain
    // then and there, not at the drain deadline nor after reconnecting.
    let mut sim = tether(
        Config::builder("ws://relay")
            .backoff_initial(secs(20))
            .jitter(Jitter::None),
    );
    sim.server.behaviour = Behaviour::Down;
    sim.connect();
    sim.run_until_state(secs(1), |e| matches!(e.state(), State::Waiting { .. }));
    let opens = sim.server.opens.len();
    let id = sim
        .engine
        .publish(
            sim.now,
            "room",
            json!("x"),
            SendOptions::default().with_ttl(secs(1)),
        )
        .unwrap();
    let start = sim.now;
    sim.engine.close_after_drain(sim.now, secs(60));
    sim.run_until_state(secs(5), |e| e.state().is_closed());
    assert_eq!(sim.now, start + secs(1), "closed at the TTL");
    assert_eq!(
        sim.engine.state(),
        &State::Closed {
            reason: CloseReason::App { code: 1000 }
        }
    );
    let dropped = sim.dropped();
    assert_eq!(dropped, vec![(vec![id], DropReason::Expired)]);
    assert_eq!(
        sim.server.opens.len(),
        opens + 1,
        "one attempt to deliver at the close (the server was down), none after"
    );
}

#[test]
fn close_after_drain_closes_when_the_last_request_times_out_while_waiting() {
    // As for a message's TTL: a request kept across the outage (not failed with the
    // connection) that times out leaves nothing to drain; the drain used to go on retrying
    // until its own deadline.
    let mut sim = tether(
        Config::builder("ws://relay")
            .fail_requests_on_disconnect(false)
            .backoff_initial(secs(20))
            .jitter(Jitter::None),
    );
    sim.connect_open();
    sim.server.behaviour = Behaviour::Down;
    sim.kill_connection();
    let opens = sim.server.opens.len();
    let id = sim
        .engine
        .request(sim.now, json!("q"), Some(secs(2)))
        .unwrap();
    let start = sim.now;
    sim.engine.close_after_drain(sim.now, secs(600));
    sim.run_until_state(secs(10), |e| e.state().is_closed());
    assert_eq!(sim.now, start + secs(2), "closed at the request's timeout");
    assert_eq!(
        sim.engine.state(),
        &State::Closed {
            reason: CloseReason::App { code: 1000 }
        }
    );
    let failed = sim.request_failures(id);
    assert_eq!(failed, [RequestFailure::TimedOut]);
    assert_eq!(
        sim.server.opens.len(),
        opens + 1,
        "one attempt to deliver at the close (the server was down), none after"
    );
}

#[test]
fn close_after_drain_closes_when_the_last_request_fails_with_the_connection() {
    let mut sim = tether(Config::builder("ws://relay"));
    sim.server.answer_requests = false;
    sim.connect_open();
    let id = sim.engine.request(sim.now, json!("q"), None).unwrap();
    sim.run_for(ms(100));
    sim.engine.close_after_drain(sim.now, secs(60));
    let opens = sim.server.opens.len();
    sim.kill_connection();
    let failed = sim.request_failures(id);
    assert_eq!(failed, [RequestFailure::ConnectionLost]);
    assert_eq!(
        sim.engine.state(),
        &State::Closed {
            reason: CloseReason::App { code: 1000 }
        },
        "nothing is left to deliver: no new connection just to close it"
    );
    sim.run_for(secs(5));
    assert_eq!(sim.server.opens.len(), opens);
}

#[test]
fn a_request_times_out_on_the_tick_its_deadline_shares_with_the_drain_timeout() {
    // The request counterpart of the acked-message case below: reported TimedOut, not Closed.
    let mut sim = tether(Config::builder("ws://relay"));
    sim.server.answer_requests = false;
    sim.connect_open();
    let id = sim
        .engine
        .request(sim.now, json!("q"), Some(secs(2)))
        .unwrap();
    sim.engine.close_after_drain(sim.now, secs(2));
    sim.run_for(secs(3));
    let failed = sim.request_failures(id);
    assert_eq!(failed, [RequestFailure::TimedOut]);
    sim.run_until_state(secs(5), |e| e.state().is_closed());
    assert_eq!(
        sim.engine.state(),
        &State::Closed {
            reason: CloseReason::App { code: 1000 }
        }
    );
}

#[test]
fn a_message_the_server_closes_1009_on_is_dropped_instead_of_resent_forever() {
    // The client's limit above the server's: an acked publish the server refuses by closing
    // with 1009 used to be re-sent after every reconnect, each time closing the connection
    // again, with everything queued behind it waiting.
    let mut sim = tether(Config::builder("ws://relay"));
    sim.server.max_frame = Some(1_000);
    sim.connect_open();
    let small = sim
        .engine
        .publish(sim.now, "room", json!("before"), SendOptions::default())
        .unwrap();
    let huge = sim
        .engine
        .publish(
            sim.now,
            "room",
            json!("x".repeat(5_000)),
            SendOptions::default(),
        )
        .unwrap();
    let after = sim
        .engine
        .publish(sim.now, "room", json!("after"), SendOptions::default())
        .unwrap();
    sim.run_for(secs(10));
    let dropped = sim.dropped();
    assert_eq!(
        dropped,
        [(
            vec![huge],
            DropReason::Rejected {
                code: "too_large".into()
            }
        )]
    );
    let acked = sim.acked();
    assert_eq!(acked, [small, after], "the rest got through");
    let reconnects = sim.reconnects().len();
    assert_eq!(reconnects, 1, "one reconnect, not a loop");
    assert!(sim.engine.state().is_open());
}

#[test]
fn a_1009_drops_nothing_when_the_largest_frame_written_was_not_kept() {
    // An unacked message leaves the outbox when written, so the one the server refused is
    // gone; an acked message still waiting must not be taken for it.
    let mut sim = tether(Config::builder("ws://relay"));
    sim.server.max_frame = Some(1_000);
    sim.server.send_acks = false;
    sim.connect_open();
    let kept = sim
        .engine
        .send_with(sim.now, json!("small, acked"), SendOptions::acked())
        .unwrap();
    sim.run_for(ms(100));
    sim.engine
        .send_with(sim.now, json!("y".repeat(5_000)), SendOptions::unacked())
        .unwrap();
    sim.run_for(ms(100));
    assert_eq!(
        sim.events_matching(|e| matches!(e, Event::Dropped { .. }).then_some(())),
        []
    );
    assert_eq!(
        sim.engine.outbox_len(),
        1,
        "{kept:?} is still waiting for its ack"
    );
}

// ---- acknowledged sends -----------------------------------------------------------------------

#[test]
fn acked_publishes_survive_a_drop_with_no_loss_and_no_duplicate_delivery() {
    let mut sim = tether(Config::builder("ws://relay"));
    sim.engine.subscribe(sim.now, "room").unwrap();
    sim.connect_open();
    sim.run_for(ms(100));
    // The server stores the publishes but the connection dies before any ack is back.
    sim.publish_each(0..5);
    sim.run_for(ms(15)); // frames reached the server; acks are still in flight
    sim.kill_connection();
    sim.run_until_state(secs(10), |e| e.state().is_open());
    sim.run_for(ms(200));
    let acked = sim.events_matching(|e| matches!(e, Event::Acked { .. }).then_some(()));
    assert_eq!(acked.len(), 5, "every publish acknowledged exactly once");
    assert_eq!(sim.engine.stats().resent, 5);
    let publishes = sim.server_publishes();
    assert_eq!(publishes.len(), 10, "each publish was written twice");
    assert_eq!(sim.server.head("room"), 5, "the server deduplicated by id");
    let delivered: Vec<serde_json::Value> = sim
        .delivered()
        .into_iter()
        .filter_map(|m| match m.payload {
            Payload::Json(v) => Some(v),
            _ => None,
        })
        .collect();
    assert_eq!(delivered, (0..5).map(|i| json!(i)).collect::<Vec<_>>());
    assert_eq!(sim.engine.outbox_len(), 0);
}

#[test]
fn wire_ids_carry_the_message_id_the_engine_returned() {
    use tether_core::protocol::ClientMessage;
    let mut sim = tether(Config::builder("ws://relay").max_message_bytes(256));
    sim.connect_open();
    #[cfg(feature = "documents")]
    sim.engine.open_document(sim.now, "doc").unwrap();
    let a = sim
        .engine
        .publish(sim.now, "room", json!("a"), SendOptions::default())
        .unwrap();
    sim.engine.request(sim.now, json!("q"), None).unwrap(); // takes a message id too
    let refused = sim
        .engine
        .publish(sim.now, "room", "x".repeat(300), SendOptions::default());
    assert!(matches!(
        refused,
        Err(tether_core::SendError::TooLarge { .. })
    ));
    let mut returned = vec![a];
    // A document change is an acked message too, numbered from the same sequence.
    #[cfg(feature = "documents")]
    returned.push(sim.engine.doc_set(sim.now, "doc", "k", json!(1)).unwrap());
    let c = sim
        .engine
        .publish(sim.now, "room", json!("c"), SendOptions::unacked())
        .unwrap();
    returned.push(c);
    sim.run_for(ms(50));
    let wire_ids: Vec<String> = sim
        .server_texts()
        .iter()
        .filter_map(|t| match ClientMessage::decode(t) {
            Ok(ClientMessage::Publish { id, .. }) => Some(id),
            #[cfg(feature = "documents")]
            Ok(ClientMessage::DocChange { id, .. }) => Some(id),
            _ => None,
        })
        .collect();
    let suffixes: Vec<&str> = wire_ids
        .iter()
        .map(|w| w.rsplit_once('-').unwrap().1)
        .collect();
    let returned: Vec<String> = returned.iter().map(|id| id.get().to_string()).collect();
    assert_eq!(suffixes, returned, "{wire_ids:?}");
}

#[test]
fn a_publish_the_server_rejects_is_dropped_and_reported() {
    let mut sim = tether(Config::builder("ws://relay"));
    sim.connect_open();
    sim.server.send_acks = false;
    let id = sim
        .engine
        .publish(sim.now, "room", json!("x"), SendOptions::default())
        .unwrap();
    sim.run_for(ms(50));
    let wire = sim.server_publishes()[0].0.clone();
    sim.server_push(Frame::Text(
        tether_core::protocol::ServerMessage::Error {
            code: "rate_limited".into(),
            message: "slow down".into(),
            id: Some(wire),
        }
        .encode(),
    ));
    sim.run_for(ms(50));
    let dropped = sim.dropped();
    assert_eq!(
        dropped,
        vec![(
            vec![id],
            DropReason::Rejected {
                code: "rate_limited".into()
            }
        )]
    );
    assert_eq!(sim.engine.outbox_len(), 0);
}

#[test]
fn unacked_publishes_in_raw_mode_are_refused_with_a_clear_error() {
    let mut sim = Sim::raw("ws://relay");
    assert_eq!(
        sim.engine.send_with(sim.now, "x", SendOptions::acked()),
        Err(tether_core::SendError::NeedsTetherProtocol(
            "acknowledged sends"
        ))
    );
    assert!(sim
        .engine
        .publish(sim.now, "room", "x", SendOptions::default())
        .is_err());
    assert!(sim.engine.subscribe(sim.now, "room").is_err());
}

/// The events the engine has queued since the last drain, without running anything else.
fn drained_drops(engine: &mut tether_core::Engine) -> Vec<(Vec<MessageId>, DropReason)> {
    std::iter::from_fn(|| engine.poll_event())
        .filter_map(|e| match e {
            Event::Dropped { ids, reason } => Some((ids, reason)),
            _ => None,
        })
        .collect()
}

/// An engine stuck connecting (the server never completes the handshake; connect timeout
/// 3 s) holding one acked message per TTL in `ttls`, its events drained: the messages are
/// queued, never written.
fn connecting_with_acked(ttls: &[u64]) -> (Sim, Vec<MessageId>) {
    let mut sim = tether(Config::builder("ws://relay").connect_timeout(secs(3)));
    sim.server.behaviour = Behaviour::Hang;
    sim.connect();
    let ids = ttls
        .iter()
        .map(|&ttl| {
            sim.engine
                .send_with(sim.now, "x", SendOptions::acked().with_ttl(secs(ttl)))
                .unwrap()
        })
        .collect();
    while sim.engine.poll_event().is_some() {}
    (sim, ids)
}

#[test]
fn an_acked_message_expires_on_the_tick_its_ttl_shares_with_the_connect_timeout() {
    // A driver giving up on an acked send at its TTL makes one `handle_timeout` call and
    // expects the message gone, reported `Expired`; the connect timeout due on the same tick
    // must not postpone that to a later call.
    let (mut sim, ids) = connecting_with_acked(&[3]);
    let id = ids[0];
    let tick = Instant::from_millis(3000);
    assert_eq!(sim.engine.poll_timeout(), Some(tick));
    sim.engine.handle_timeout(tick);
    assert_eq!(sim.engine.outbox_status(id), None);
    assert_eq!(sim.engine.outbox_len(), 0);
    assert_eq!(
        drained_drops(&mut sim.engine),
        vec![(vec![id], DropReason::Expired)]
    );
}

#[test]
fn an_acked_message_expires_on_the_tick_its_ttl_shares_with_the_drain_timeout() {
    // The drain deadline due on the same tick closes the engine, which drops what is left as
    // `Closed`: a message whose TTL came on that tick is `Expired`, as the app waiting on it
    // at its TTL is told.
    let mut sim = tether(Config::builder("ws://relay"));
    sim.connect_open();
    let t = sim.server.conn.unwrap();
    sim.engine.transport_writable(sim.now, t, false); // it stays queued
    let id = sim
        .engine
        .send_with(sim.now, "x", SendOptions::acked().with_ttl(secs(2)))
        .unwrap();
    sim.engine.close_after_drain(sim.now, secs(2));
    while sim.engine.poll_event().is_some() {}
    sim.engine.handle_timeout(sim.now + secs(2));
    assert_eq!(sim.engine.state(), &State::Closing);
    assert_eq!(
        drained_drops(&mut sim.engine),
        vec![(vec![id], DropReason::Expired)]
    );
}

/// What an event says about how a message ended (or stopped being waited for).
#[derive(Debug, PartialEq)]
enum Outcome {
    TimedOut(MessageId, Unacked),
    Dropped(Vec<MessageId>, DropReason),
    Acked(MessageId),
}

/// For `sim.events_matching(outcome)`: the events the sim ran.
fn outcome(e: &Event) -> Option<Outcome> {
    match e {
        Event::AckTimedOut { id, status } => Some(Outcome::TimedOut(*id, *status)),
        Event::Dropped { ids, reason } => Some(Outcome::Dropped(ids.clone(), reason.clone())),
        Event::Acked { id, .. } => Some(Outcome::Acked(*id)),
        _ => None,
    }
}

/// The outcomes among the engine's queued events, in order, without running anything else.
fn drained_outcomes(engine: &mut tether_core::Engine) -> Vec<Outcome> {
    std::iter::from_fn(|| engine.poll_event())
        .filter_map(|e| outcome(&e))
        .collect()
}

/// An acknowledged message sent now with `timeout`.
fn send_with_timeout(sim: &mut Sim, timeout: Duration) -> MessageId {
    let options = SendOptions::acked().with_timeout(timeout);
    sim.engine.send_with(sim.now, "m", options).unwrap()
}

/// An open Tether engine whose server takes publishes but does not acknowledge them.
fn open_without_acks() -> Sim {
    let mut sim = tether(Config::builder("ws://relay"));
    sim.server.send_acks = false;
    sim.connect_open();
    while sim.engine.poll_event().is_some() {}
    sim
}

#[test]
fn an_ack_timeout_on_a_queued_message_expires_it_and_says_so_first() {
    // Stuck connecting (connect timeout 3 s, due on the same tick as the 3 s timeout): the
    // message was never written, so it leaves as `Expired`, announced as the app's timeout.
    let mut sim = tether(Config::builder("ws://relay").connect_timeout(secs(3)));
    sim.server.behaviour = Behaviour::Hang;
    sim.connect();
    let id = sim
        .engine
        .send_with(sim.now, "x", SendOptions::acked().with_timeout(secs(3)))
        .unwrap();
    while sim.engine.poll_event().is_some() {}
    let tick = Instant::from_millis(3000);
    assert_eq!(sim.engine.poll_timeout(), Some(tick));
    sim.engine.handle_timeout(Instant::from_millis(2999));
    assert_eq!(sim.engine.outbox_status(id), Some(OutboxStatus::Queued));
    sim.engine.handle_timeout(tick);
    assert_eq!(sim.engine.outbox_status(id), None);
    assert_eq!(
        drained_outcomes(&mut sim.engine),
        vec![
            Outcome::TimedOut(id, Unacked::Expired),
            Outcome::Dropped(vec![id], DropReason::Expired)
        ]
    );
}

#[test]
fn an_ack_timeout_on_a_written_message_keeps_it_for_its_ack() {
    let mut sim = open_without_acks();
    let id = send_with_timeout(&mut sim, secs(2));
    sim.run_for(ms(10));
    assert_eq!(sim.engine.outbox_status(id), Some(OutboxStatus::InFlight));
    let due = sim.now - ms(10) + secs(2);
    assert!(sim.engine.poll_timeout().is_some_and(|t| t <= due));
    sim.engine.handle_timeout(due);
    assert_eq!(
        drained_outcomes(&mut sim.engine),
        vec![Outcome::TimedOut(id, Unacked::AwaitingAck)]
    );
    assert_eq!(sim.engine.outbox_status(id), Some(OutboxStatus::InFlight));
    // Reported once, and the ack that comes late still ends it.
    sim.engine.handle_timeout(due + secs(1));
    assert!(drained_outcomes(&mut sim.engine).is_empty());
    let wire = sim.server_publishes()[0].0.clone();
    sim.server_push(Frame::Text(
        tether_core::protocol::ServerMessage::Ack {
            id: wire,
            offset: None,
        }
        .encode(),
    ));
    sim.run_for(ms(10));
    assert_eq!(sim.events_matching(outcome), vec![Outcome::Acked(id)]);
    assert_eq!(sim.engine.outbox_len(), 0);
}

#[test]
fn a_timed_out_message_is_not_resent_after_a_reconnect() {
    // Its TTL is the timeout: once that passed, a resend would deliver what the app gave up
    // on, so the reconnect drops it instead (and reports no second timeout).
    let mut sim = open_without_acks();
    let id = send_with_timeout(&mut sim, secs(2));
    sim.run_for(secs(3));
    assert_eq!(
        sim.events_matching(outcome),
        vec![Outcome::TimedOut(id, Unacked::AwaitingAck)]
    );
    sim.kill_connection();
    sim.run_for(secs(10));
    assert!(sim.engine.state().is_open());
    assert_eq!(
        sim.events_matching(outcome),
        vec![
            Outcome::TimedOut(id, Unacked::AwaitingAck),
            Outcome::Dropped(vec![id], DropReason::Expired)
        ],
        "dropped at the reconnect, with no second timeout"
    );
    assert_eq!(sim.server_publishes().len(), 1, "not re-sent");
}

#[test]
fn a_ttl_shorter_than_the_timeout_is_a_drop_not_a_timeout() {
    let (mut sim, _) = connecting_with_acked(&[]);
    let id = sim
        .engine
        .send_with(
            sim.now,
            "x",
            SendOptions::acked().with_ttl(secs(1)).with_timeout(secs(2)),
        )
        .unwrap();
    sim.engine.handle_timeout(Instant::from_millis(1000));
    assert_eq!(
        drained_outcomes(&mut sim.engine),
        vec![Outcome::Dropped(vec![id], DropReason::Expired)]
    );
    sim.engine.handle_timeout(Instant::from_millis(2000));
    assert!(drained_outcomes(&mut sim.engine).is_empty());
}

#[test]
fn the_configured_ttl_is_cut_to_the_timeout_but_not_raised() {
    // Default TTL 1 s below a 5 s timeout: the TTL wins, a drop at 1 s.
    let mut sim = tether(
        Config::builder("ws://relay")
            .connect_timeout(secs(30))
            .message_ttl(Some(secs(1))),
    );
    sim.server.behaviour = Behaviour::Hang;
    sim.connect();
    let id = sim
        .engine
        .send_with(sim.now, "x", SendOptions::acked().with_timeout(secs(5)))
        .unwrap();
    assert_eq!(sim.engine.poll_timeout(), Some(Instant::from_millis(1000)));
    sim.engine.handle_timeout(Instant::from_millis(1000));
    assert_eq!(
        drained_outcomes(&mut sim.engine),
        vec![Outcome::Dropped(vec![id], DropReason::Expired)]
    );
}

#[test]
fn an_acknowledged_message_never_times_out() {
    let mut sim = tether(Config::builder("ws://relay"));
    sim.connect_open();
    let id = send_with_timeout(&mut sim, secs(1));
    sim.run_for(secs(5));
    assert_eq!(sim.events_matching(outcome), vec![Outcome::Acked(id)]);
}

#[test]
fn a_timeout_without_an_acknowledgement_is_refused() {
    let mut sim = tether(Config::builder("ws://relay"));
    assert_eq!(
        sim.engine
            .send_with(sim.now, "x", SendOptions::unacked().with_timeout(secs(1))),
        Err(tether_core::SendError::InvalidOptions(
            "a timeout waits for an acknowledgement: it needs ack"
        ))
    );
    // Raw mode has no acknowledgements: a timeout alone is the same contradiction, and an
    // explicit ack the missing protocol.
    let mut raw = Sim::raw("ws://relay");
    let timeout_only = SendOptions::default().with_timeout(secs(1));
    assert!(matches!(
        raw.engine.send_with(raw.now, "x", timeout_only),
        Err(tether_core::SendError::InvalidOptions(_))
    ));
    assert_eq!(
        raw.engine
            .send_with(raw.now, "x", SendOptions::acked().with_timeout(secs(1))),
        Err(tether_core::SendError::NeedsTetherProtocol(
            "acknowledged sends"
        ))
    );
    // Zero would end the message inside the call that accepts it, before its id is known.
    for zero in [
        SendOptions::acked().with_timeout(Duration::ZERO),
        SendOptions::acked().with_ttl(Duration::from_nanos(999)),
    ] {
        assert_eq!(
            sim.engine.publish(sim.now, "room", "x", zero),
            Err(tether_core::SendError::InvalidOptions(
                "a ttl or timeout must be more than zero (the engine's clock counts whole microseconds)"
            ))
        );
    }
    assert!(sim
        .engine
        .send_with(
            sim.now,
            "x",
            SendOptions::acked().with_ttl(Duration::from_micros(1))
        )
        .is_ok());
    // A request's timeout likewise; refused before anything is written.
    let before = sim.engine.outbox_len();
    assert_eq!(
        sim.engine
            .request(sim.now, "q", Some(Duration::from_nanos(999))),
        Err(tether_core::SendError::InvalidOptions(
            "a request timeout must be more than zero (the engine's clock counts whole microseconds)"
        ))
    );
    assert_eq!(sim.engine.outbox_len(), before);
    assert!(sim
        .engine
        .request(sim.now, "q", Some(Duration::from_micros(1)))
        .is_ok());
    assert_eq!(raw.engine.outbox_len(), 0);
}

#[test]
fn poll_timeout_wakes_for_a_written_messages_ack_deadline() {
    // Once the queued messages' expiry is gone, only the ack deadline can wake the driver.
    let mut sim = open_without_acks();
    let t = sim.server.conn.unwrap();
    let start = sim.now;
    let written = sim
        .engine
        .send_with(start, "a", SendOptions::acked().with_timeout(secs(2)))
        .unwrap();
    sim.engine.transport_writable(start, t, false);
    let queued = sim
        .engine
        .send_with(start, "b", SendOptions::acked().with_ttl(secs(1)))
        .unwrap();
    sim.engine.handle_timeout(start + secs(1));
    assert_eq!(
        drained_outcomes(&mut sim.engine),
        vec![Outcome::Dropped(vec![queued], DropReason::Expired)]
    );
    let next = sim.engine.poll_timeout().expect("a deadline");
    assert!(
        next <= start + secs(2),
        "the ack deadline (or an earlier timer) wakes the driver, not later: {next:?}"
    );
    sim.engine.handle_timeout(start + secs(2));
    assert_eq!(
        drained_outcomes(&mut sim.engine),
        vec![Outcome::TimedOut(written, Unacked::AwaitingAck)]
    );
}

#[test]
fn a_message_evicted_by_overflow_is_dropped_once_and_never_times_out() {
    let mut sim = tether(
        Config::builder("ws://relay")
            .connect_timeout(secs(30))
            .outbox_max_messages(1),
    );
    sim.server.behaviour = Behaviour::Hang;
    sim.connect();
    let first = send_with_timeout(&mut sim, secs(2));
    sim.engine
        .send_with(sim.now, "b", SendOptions::acked())
        .unwrap();
    sim.engine.handle_timeout(Instant::from_millis(5000));
    assert_eq!(
        drained_outcomes(&mut sim.engine),
        vec![Outcome::Dropped(vec![first], DropReason::Overflow)]
    );
}

/// A driver that stops draining the engine (the native task pauses while the app leaves
/// `event_capacity` events unread) while the app keeps sending into a full outbox: each send
/// drops the oldest message, and each drop used to queue an event of its own, so the engine's
/// queue grew by one event per send for as long as the pause lasted. Drops in a row, for the
/// same reason, with nothing reported between them, are one event: every id, in order.
#[test]
fn drops_in_a_row_while_nobody_drains_are_one_event() {
    let mut sim = tether(Config::builder("ws://relay").outbox_max_messages(1));
    sim.server.behaviour = Behaviour::Hang;
    sim.connect();
    while sim.engine.poll_event().is_some() {}
    let ids: Vec<MessageId> = (0..1_000)
        .map(|i| sim.engine.send(sim.now, format!("m{i}")).unwrap())
        .collect();
    let events: Vec<Event> = std::iter::from_fn(|| sim.engine.poll_event()).collect();
    assert_eq!(
        events,
        vec![Event::Dropped {
            ids: ids[..999].to_vec(),
            reason: DropReason::Overflow
        }]
    );
    assert_eq!(sim.engine.stats().dropped_overflow, 999);
    // Once drained, the next drop is an event of its own.
    sim.engine.send(sim.now, "after").unwrap();
    assert_eq!(
        drained_outcomes(&mut sim.engine),
        vec![Outcome::Dropped(vec![ids[999]], DropReason::Overflow)]
    );
}

// ---- channels, resume, presence -----------------------------------------------------------------

fn offsets(sim: &Sim) -> Vec<u64> {
    sim.delivered().iter().filter_map(|m| m.offset).collect()
}

#[test]
fn resubscribe_replays_missed_messages_and_drops_duplicates() {
    let mut sim = tether(Config::builder("ws://relay"));
    sim.engine.subscribe(sim.now, "room").unwrap();
    sim.connect_open();
    sim.run_for(ms(100));
    for i in 1..=3 {
        sim.other_publishes("room", json!(i));
    }
    sim.run_for(ms(100));
    assert_eq!(offsets(&sim), vec![1, 2, 3]);
    sim.kill_connection();
    sim.server.behaviour = Behaviour::Down;
    for i in 4..=6 {
        sim.other_publishes("room", json!(i)); // missed while down
    }
    sim.server.replay_overlap = 2; // the server replays 2..6: 2 and 3 are duplicates
    sim.server.behaviour = Behaviour::Normal;
    sim.run_until_state(secs(30), |e| e.state().is_open());
    sim.run_for(ms(200));
    assert_eq!(offsets(&sim), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(sim.engine.stats().duplicates_dropped, 2);
    let resumed = sim.events_matching(|e| match e {
        Event::Subscribed { recovered, .. } => Some(*recovered),
        _ => None,
    });
    assert_eq!(
        resumed,
        vec![false, true],
        "first subscribe fresh, then a full resume"
    );
    assert!(sim
        .server_texts()
        .iter()
        .any(|t| t.contains(r#""since":3"#) && t.contains(r#""epoch":"epoch-1""#)));
}

#[test]
fn a_client_that_received_nothing_still_resumes_from_the_head() {
    let mut sim = tether(Config::builder("ws://relay"));
    sim.other_publishes("room", json!("old"));
    sim.engine.subscribe(sim.now, "room").unwrap();
    sim.connect_open();
    sim.run_for(ms(100));
    sim.kill_connection();
    sim.server.behaviour = Behaviour::Down;
    sim.other_publishes("room", json!("missed"));
    sim.server.behaviour = Behaviour::Normal;
    sim.run_until_state(secs(30), |e| e.state().is_open());
    sim.run_for(ms(200));
    let got: Vec<Payload> = sim.delivered().into_iter().map(|m| m.payload).collect();
    assert_eq!(got, vec![Payload::Json(json!("missed"))]);
}

#[test]
fn a_restarted_server_with_a_new_epoch_is_not_mistaken_for_duplicates() {
    let mut sim = tether(Config::builder("ws://relay"));
    sim.engine.subscribe(sim.now, "room").unwrap();
    sim.connect_open();
    for i in 1..=5 {
        sim.other_publishes("room", json!(i));
    }
    sim.run_for(ms(100));
    sim.kill_connection();
    // The server restarts with empty history and a new epoch.
    sim.server.channels.clear();
    sim.server.epoch = "epoch-2".into();
    sim.run_until_state(secs(30), |e| e.state().is_open());
    sim.run_for(ms(100));
    sim.other_publishes("room", json!("after restart"));
    sim.run_for(ms(100));
    let last = sim.delivered().pop().unwrap();
    assert_eq!(last.payload, Payload::Json(json!("after restart")));
    assert_eq!(last.offset, Some(1));
}

/// A raw client has no channels: reading presence is refused as subscribing is, where
/// `presence` alone answers "not subscribed" (`None`) for ever.
#[test]
fn presence_on_a_raw_client_is_refused_as_subscribe_is() {
    let mut raw = Sim::raw("ws://relay");
    raw.connect_open();
    assert_eq!(
        raw.engine.check_presence(),
        Err(SubscribeError::NeedsTetherProtocol)
    );
    assert_eq!(
        raw.engine.subscribe(raw.now, "room"),
        Err(SubscribeError::NeedsTetherProtocol)
    );
    let mut sim = tether(Config::builder("ws://relay"));
    assert_eq!(sim.engine.check_presence(), Ok(()), "before any subscribe");
    sim.engine.subscribe(sim.now, "room").unwrap();
    sim.connect_open();
    sim.run_for(ms(100));
    assert_eq!(sim.engine.check_presence(), Ok(()));
    assert!(sim.engine.presence("room").is_some());
}

/// A Tether engine as "me", open and subscribed to `room`, where `others` are present.
fn in_room_with(others: &[&str]) -> Sim {
    let mut sim = tether(Config::builder("ws://relay").client_id("me"));
    sim.server.others_present = others.iter().map(|m| m.to_string()).collect();
    sim.engine.subscribe(sim.now, "room").unwrap();
    sim.connect_open();
    sim.run_for(ms(100));
    sim
}

/// The engine's members of `room`, sorted.
fn room_members(sim: &Sim) -> Vec<&str> {
    let members = sim.engine.presence("room").expect("subscribed to room");
    members.iter().map(String::as_str).collect()
}

#[test]
fn presence_is_empty_once_closed_and_everyone_reported_as_left() {
    let mut sim = in_room_with(&["alice"]);
    assert_eq!(sim.engine.presence("room").unwrap().len(), 2);
    sim.engine.close(sim.now, 1000, "bye").unwrap();
    sim.run_for(secs(5));
    assert!(sim.engine.state().is_closed());
    assert_eq!(
        sim.engine.presence("room"),
        Some(&[][..]),
        "nobody is known to be there"
    );
    let last = sim
        .events_matching(|e| match e {
            Event::Presence {
                channel,
                members,
                joined,
                left,
            } => Some((
                channel.clone(),
                members.clone(),
                joined.clone(),
                left.clone(),
            )),
            _ => None,
        })
        .pop()
        .unwrap();
    assert_eq!(
        last,
        (
            "room".to_owned(),
            vec![],
            vec![],
            vec!["alice".to_owned(), "me".to_owned()]
        )
    );
}

#[test]
fn presence_snapshot_after_reconnect_removes_ghosts() {
    let mut sim = in_room_with(&["alice", "ghost"]);
    assert_eq!(room_members(&sim), ["alice", "ghost", "me"]);
    sim.kill_connection();
    sim.server.others_present = ["alice", "bob"].into_iter().map(String::from).collect();
    sim.run_until_state(secs(30), |e| e.state().is_open());
    sim.run_for(ms(100));
    assert_eq!(room_members(&sim), ["alice", "bob", "me"]);
    let last = sim
        .events_matching(|e| match e {
            Event::Presence { joined, left, .. } => Some((joined.clone(), left.clone())),
            _ => None,
        })
        .pop()
        .unwrap();
    assert_eq!(last, (vec!["bob".to_string()], vec!["ghost".to_string()]));
}

#[test]
fn unsubscribe_stops_resubscribing() {
    let mut sim = tether(Config::builder("ws://relay"));
    sim.engine.subscribe(sim.now, "a").unwrap();
    sim.engine.subscribe(sim.now, "b").unwrap();
    sim.connect_open();
    sim.engine.unsubscribe(sim.now, "a").unwrap();
    sim.run_for(ms(100));
    sim.kill_connection();
    sim.run_until_state(secs(30), |e| e.state().is_open());
    sim.run_for(ms(100));
    let subs: Vec<String> = sim
        .server_texts()
        .into_iter()
        .filter(|t| t.contains(r#""type":"subscribe""#))
        .collect();
    assert_eq!(subs.len(), 3, "{subs:?}");
    assert!(subs[2].contains(r#""channel":"b""#));
    assert!(matches!(
        sim.engine.subscribe(sim.now, ""),
        Err(tether_core::SubscribeError::InvalidChannel(_))
    ));
}

#[test]
fn subscribing_again_right_after_unsubscribing_survives_the_answer_to_the_unsubscribe() {
    // "Leave the room, rejoin": the server's `unsubscribed` for the first arrives after the
    // second subscribe was sent, and used to end the new subscription (silently: the next
    // reconnect did not resubscribe, and messages stopped for good).
    let mut sim = tether(Config::builder("ws://relay"));
    sim.engine.subscribe(sim.now, "room").unwrap();
    sim.connect_open();
    sim.run_for(ms(100));
    sim.engine.unsubscribe(sim.now, "room").unwrap();
    sim.engine.subscribe(sim.now, "room").unwrap();
    sim.run_for(ms(100));
    let channels: Vec<&str> = sim.engine.channels().collect();
    assert_eq!(channels, ["room"]);
    let unsubscribed = sim.events_matching(|e| match e {
        Event::Unsubscribed { channel } => Some(channel.clone()),
        _ => None,
    });
    assert_eq!(unsubscribed, ["room"], "one Unsubscribed, the app's own");

    sim.kill_connection();
    sim.run_until_state(secs(30), |e| e.state().is_open());
    sim.run_for(ms(100));
    sim.other_publishes("room", json!("after the reconnect"));
    sim.run_for(ms(100));
    let delivered: Vec<Payload> = sim.delivered().into_iter().map(|m| m.payload).collect();
    assert_eq!(delivered, [Payload::Json(json!("after the reconnect"))]);
}

#[test]
fn subscribe_unsubscribe_subscribe_before_any_answer_keeps_the_subscription() {
    // React StrictMode's double effect, and a double toggle: the answers to the first
    // subscribe must not make the answers to the unsubscribes look like the server's own
    // removals.
    for toggles in [1, 2] {
        let mut sim = tether(Config::builder("ws://relay"));
        sim.connect_open();
        sim.engine.subscribe(sim.now, "room").unwrap();
        for _ in 0..toggles {
            sim.engine.unsubscribe(sim.now, "room").unwrap();
            sim.engine.subscribe(sim.now, "room").unwrap();
        }
        sim.run_for(ms(100));
        let channels: Vec<&str> = sim.engine.channels().collect();
        assert_eq!(channels, ["room"], "{toggles} toggles");
        let unsubscribed = sim
            .events_matching(|e| matches!(e, Event::Unsubscribed { .. }).then_some(()))
            .len();
        assert_eq!(unsubscribed, toggles, "only the app's own");
        sim.kill_connection();
        sim.run_until_state(secs(30), |e| e.state().is_open());
        sim.run_for(ms(100));
        sim.other_publishes("room", json!("after"));
        sim.run_for(ms(100));
        let delivered: Vec<Payload> = sim.delivered().into_iter().map(|m| m.payload).collect();
        assert_eq!(
            delivered,
            [Payload::Json(json!("after"))],
            "{toggles} toggles"
        );
    }
}

#[test]
fn the_answer_to_a_subscribe_the_app_took_back_does_not_place_the_new_subscription() {
    // subscribe, unsubscribe, subscribe again before the first answer. The first
    // `subscribed` comes while the unsubscribe is unanswered: it answers the ended
    // subscription (whose start, 1, is before a message published meanwhile, 2), not the new
    // one, which starts after 2. Taken for the new one's answer, it was reported to the app
    // (a second `Subscribed`), and it would leave the new subscription's real answer unasked.
    let mut sim = tether(Config::builder("ws://relay"));
    sim.other_publishes("room", json!(1));
    sim.connect_open();
    sim.engine.subscribe(sim.now, "room").unwrap();
    sim.run_for(ms(1));
    sim.engine.unsubscribe(sim.now, "room").unwrap();
    sim.engine.subscribe(sim.now, "room").unwrap();
    sim.run_for(ms(9)); // the server read the first subscribe, not the rest
    sim.other_publishes("room", json!(2)); // to the first subscription only
    sim.run_for(ms(100));
    let subscribed = sim.events_matching(|e| match e {
        Event::Subscribed { offset, .. } => Some(*offset),
        _ => None,
    });
    assert_eq!(subscribed, [2], "the answer for the subscription in force");
    assert_eq!(sim.engine.last_offset("room"), Some(2));
    sim.other_publishes("room", json!(3));
    sim.run_for(ms(100));
    let delivered: Vec<Option<u64>> = sim.delivered().iter().map(|m| m.offset).collect();
    assert_eq!(delivered, [Some(3)]);
}

#[test]
fn presence_for_a_subscription_the_app_ended_does_not_reach_the_new_one() {
    // Unsubscribe and subscribe again (a remount) while the unsubscribe is unanswered: a
    // presence change the server sent for the old subscription meanwhile was applied to the
    // new one, and the app saw a member join who then left at the new snapshot.
    let mut sim = in_room_with(&["alice"]);
    let seen_before = sim
        .events_matching(|e| matches!(e, Event::Presence { .. }).then_some(()))
        .len();
    sim.engine.unsubscribe(sim.now, "room").unwrap();
    sim.engine.subscribe(sim.now, "room").unwrap();
    // Sent by the server before it reads the unsubscribe: it arrives while that is unanswered.
    let join = json!({"type": "presence", "channel": "room", "join": "ghost"});
    sim.server_push(Frame::Text(join.to_string()));
    sim.run_for(ms(100));
    let joined: Vec<Vec<String>> = sim
        .events_matching(|e| match e {
            Event::Presence { joined, .. } => Some(joined.clone()),
            _ => None,
        })
        .split_off(seen_before);
    assert!(
        joined.iter().all(|j| !j.contains(&"ghost".to_owned())),
        "{joined:?}"
    );
    assert_eq!(room_members(&sim), ["alice", "me"]);
}

#[test]
fn many_unsubscribes_answered_late_end_no_subscription_made_again() {
    // Past 256 unanswered unsubscribes the oldest were forgotten, even those of channels the
    // app had subscribed again (a route change re-mounting 300 channels; a toggle repeated
    // 300 times): their late answers then ended the app's new subscriptions.
    let name = |i: usize| format!("c{i}");
    let mut sim = tether(Config::builder("ws://relay"));
    for i in 0..300 {
        sim.engine.subscribe(sim.now, &name(i)).unwrap();
    }
    sim.connect_open();
    sim.run_for(ms(100));
    for i in 0..300 {
        sim.engine.unsubscribe(sim.now, &name(i)).unwrap();
        sim.engine.subscribe(sim.now, &name(i)).unwrap();
    }
    for _ in 0..300 {
        sim.engine.unsubscribe(sim.now, "c0").unwrap();
        sim.engine.subscribe(sim.now, "c0").unwrap();
    }
    sim.run_for(ms(100));
    assert_eq!(sim.engine.channels().count(), 300);
    let unsubscribed = sim
        .events_matching(|e| matches!(e, Event::Unsubscribed { .. }).then_some(()))
        .len();
    assert_eq!(unsubscribed, 600, "only the app's own");
}

#[test]
fn no_channel_message_is_delivered_after_the_app_unsubscribed() {
    let mut sim = tether(Config::builder("ws://relay"));
    sim.engine.subscribe(sim.now, "room").unwrap();
    sim.connect_open();
    sim.run_for(ms(100));
    // On the wire towards the client when it unsubscribes.
    sim.other_publishes("room", json!("in flight"));
    sim.run_for(ms(1));
    sim.engine.unsubscribe(sim.now, "room").unwrap();
    sim.run_for(ms(100));
    assert_eq!(
        sim.delivered(),
        [],
        "the app was told Unsubscribed before it"
    );
    // Subscribed again, the channel's messages are delivered again.
    sim.engine.subscribe(sim.now, "room").unwrap();
    sim.run_for(ms(100));
    sim.other_publishes("room", json!("later"));
    sim.run_for(ms(100));
    let delivered: Vec<Payload> = sim.delivered().into_iter().map(|m| m.payload).collect();
    assert_eq!(delivered, [Payload::Json(json!("later"))]);
}

#[test]
fn no_channel_message_is_delivered_after_the_app_unsubscribed_during_the_close_handshake() {
    // The app closes, then unsubscribes while the close handshake runs (a view torn down
    // with its client). Frames still arrive while closing; a message the server sent on the
    // channel before the close must not reach an app already told `Unsubscribed`.
    let mut sim = tether(Config::builder("ws://relay"));
    sim.engine.subscribe(sim.now, "room").unwrap();
    sim.connect_open();
    sim.run_for(ms(100));
    // On the wire towards the client when it closes and unsubscribes.
    sim.other_publishes("room", json!("in flight"));
    sim.run_for(ms(1));
    sim.engine.close(sim.now, 1000, "bye").unwrap();
    assert_eq!(sim.engine.state(), &State::Closing);
    sim.engine.unsubscribe(sim.now, "room").unwrap();
    sim.run_for(ms(100));
    let unsubscribed = sim.events_matching(|e| match e {
        Event::Unsubscribed { channel } => Some(channel.clone()),
        _ => None,
    });
    assert_eq!(unsubscribed, ["room"]);
    assert_eq!(
        sim.delivered(),
        [],
        "the app was told Unsubscribed before it"
    );
    // Connected again, the channel is not resubscribed and nothing of it arrives.
    sim.run_until_state(secs(10), |e| e.state().is_closed());
    sim.connect_open();
    sim.run_for(ms(100));
    assert_eq!(sim.engine.channels().count(), 0);
}

// ---- requests ---------------------------------------------------------------------------------

#[test]
fn requests_get_replies_or_time_out() {
    let mut sim = tether(Config::builder("ws://relay"));
    sim.connect_open();
    let ok = sim.engine.request(sim.now, json!("ping"), None).unwrap();
    sim.run_for(ms(100));
    sim.server.answer_requests = false;
    let lost = sim
        .engine
        .request(sim.now, json!("x"), Some(secs(2)))
        .unwrap();
    let sent_at = sim.now;
    sim.run_for(secs(3));
    let outcomes = sim.request_outcomes();
    assert_eq!(
        outcomes,
        vec![
            (ok, Ok(json!({"echo": "ping"}))),
            (lost, Err(RequestFailure::TimedOut))
        ]
    );
    let failed_at = sim
        .events
        .iter()
        .find(|(_, e)| matches!(e, Event::RequestFailed { .. }))
        .unwrap()
        .0;
    assert_eq!(failed_at.saturating_duration_since(sent_at), secs(2));
    assert_eq!(sim.engine.pending_requests(), 0);
    assert_eq!(sim.engine.outbox_len(), 0);
}

#[test]
fn requests_fail_fast_when_the_connection_drops() {
    let mut sim = tether(Config::builder("ws://relay"));
    sim.connect_open();
    sim.server.answer_requests = false;
    let id = sim
        .engine
        .request(sim.now, json!(1), Some(secs(30)))
        .unwrap();
    sim.run_for(ms(50));
    sim.kill_connection();
    sim.run_for(ms(1));
    let failed = sim.events_matching(|e| match e {
        Event::RequestFailed { id, reason } => Some((*id, reason.clone())),
        _ => None,
    });
    assert_eq!(failed, vec![(id, RequestFailure::ConnectionLost)]);
}

#[test]
fn requests_can_survive_a_drop_when_configured() {
    let mut sim = tether(Config::builder("ws://relay").fail_requests_on_disconnect(false));
    sim.connect_open();
    sim.server.answer_requests = false;
    let id = sim
        .engine
        .request(sim.now, json!(1), Some(secs(30)))
        .unwrap();
    sim.run_for(ms(50));
    sim.kill_connection();
    sim.server.answer_requests = true;
    sim.run_until_state(secs(10), |e| e.state().is_open());
    sim.run_for(ms(100));
    let replied = sim.events_matching(|e| match e {
        Event::Replied { id, .. } => Some(*id),
        _ => None,
    });
    assert_eq!(replied, vec![id]);
}

#[test]
fn a_request_cancelled_while_queued_is_never_sent() {
    let mut sim = tether(Config::builder("ws://relay"));
    let id = sim.engine.request(sim.now, json!("stale"), None).unwrap();
    assert!(sim.engine.cancel_request(sim.now, id));
    assert_eq!(sim.engine.outbox_len(), 0);
    sim.connect_open();
    sim.run_for(ms(100));
    assert!(
        !sim.server_texts().iter().any(|t| t.contains("stale")),
        "{:?}",
        sim.server_texts()
    );
    assert_eq!(sim.request_failures(id), [RequestFailure::Cancelled]);
    assert_eq!(sim.engine.pending_requests(), 0);
}

#[test]
fn a_cancelled_requests_late_reply_is_ignored_and_it_ends_once() {
    let mut sim = tether(Config::builder("ws://relay"));
    sim.connect_open();
    sim.latency = ms(50);
    let id = sim.engine.request(sim.now, json!("ping"), None).unwrap();
    sim.run_for(ms(60)); // written and read; the reply is on its way
    assert!(sim.engine.cancel_request(sim.now, id));
    assert!(!sim.engine.cancel_request(sim.now, id), "cancelled twice");
    sim.run_for(ms(200));
    let outcomes = sim.request_outcomes();
    assert_eq!(outcomes, [(id, Err(RequestFailure::Cancelled))]);
    assert_eq!(sim.errors(), [], "a late reply is not an error");
    // Nothing to cancel once answered.
    let answered = sim.engine.request(sim.now, json!("ping"), None).unwrap();
    sim.run_for(ms(200));
    assert!(!sim.engine.cancel_request(sim.now, answered));
}

/// The wire id (`"id"`) of the last request frame the server read.
fn last_request_wire_id(sim: &Sim) -> String {
    let frame = sim
        .server_texts()
        .into_iter()
        .rfind(|t| t.contains(r#""type":"request""#))
        .expect("a request frame");
    let value: serde_json::Value = serde_json::from_str(&frame).unwrap();
    value["id"].as_str().unwrap().to_owned()
}

#[test]
fn a_refusal_of_a_request_the_app_gave_up_on_is_ignored_like_a_late_reply() {
    // Cancelled (an AbortSignal, a dropped handle) or timed out, then refused by the server
    // (`rate_limited`, `too_large`): the refusal was reported as a stray server error about a
    // request the app no longer waits for, where a late reply is ignored.
    for timed_out in [false, true] {
        let mut sim = tether(Config::builder("ws://relay"));
        sim.connect_open();
        sim.server.answer_requests = false;
        let id = sim
            .engine
            .request(sim.now, json!("ask"), Some(ms(100)))
            .unwrap();
        sim.run_for(ms(50));
        let wire = last_request_wire_id(&sim);
        if timed_out {
            sim.run_for(ms(100));
        } else {
            assert!(sim.engine.cancel_request(sim.now, id));
        }
        let refusal =
            json!({"type": "error", "id": wire, "code": "rate_limited", "message": "slow down"});
        sim.server_push(Frame::Text(refusal.to_string()));
        sim.run_for(ms(100));
        let expected = if timed_out {
            RequestFailure::TimedOut
        } else {
            RequestFailure::Cancelled
        };
        assert_eq!(sim.request_failures(id), [expected]);
        assert_eq!(sim.errors(), [], "timed out: {timed_out}");
        // One naming a request never made is still the server's error to report.
        let stray = json!({"type": "error", "id": "q999", "code": "rate_limited", "message": "?"});
        sim.server_push(Frame::Text(stray.to_string()));
        sim.run_for(ms(100));
        assert_eq!(sim.errors().len(), 1, "{:?}", sim.errors());
    }
}

#[test]
fn a_reply_whose_id_is_written_another_way_settles_no_request() {
    // `q05` or `q+5` is not the id `q5` the engine wrote: a server that echoes ids does not
    // write them so, and a reply under one must not settle request 5.
    let mut sim = tether(Config::builder("ws://relay"));
    sim.connect_open();
    sim.server.answer_requests = false;
    let id = sim.engine.request(sim.now, json!("ask"), None).unwrap();
    sim.run_for(ms(50));
    let wire = last_request_wire_id(&sim);
    let number = wire.strip_prefix('q').unwrap();
    for other in [format!("q0{number}"), format!("q+{number}")] {
        let reply = json!({"type": "reply", "id": other, "payload": "not yours"});
        sim.server_push(Frame::Text(reply.to_string()));
    }
    sim.run_for(ms(100));
    assert_eq!(sim.request_outcomes(), []);
    assert_eq!(sim.engine.pending_requests(), 1);
    let reply = json!({"type": "reply", "id": wire, "payload": "yours"});
    sim.server_push(Frame::Text(reply.to_string()));
    sim.run_for(ms(100));
    assert_eq!(sim.request_outcomes(), [(id, Ok(json!("yours")))]);
}

#[test]
fn a_drain_waiting_only_for_a_request_closes_when_it_is_cancelled() {
    let mut sim = tether(Config::builder("ws://relay"));
    sim.connect_open();
    sim.server.answer_requests = false;
    let id = sim
        .engine
        .request(sim.now, json!(1), Some(secs(30)))
        .unwrap();
    sim.run_for(ms(50));
    sim.engine.close_after_drain(sim.now, secs(20));
    sim.run_for(ms(50));
    assert_eq!(sim.engine.state(), &State::Open);
    sim.engine.cancel_request(sim.now, id);
    sim.run_for(ms(1));
    let state = sim.engine.state();
    assert!(
        state == &State::Closing || state.is_closed(),
        "the drain still waits: {state:?}"
    );
}

#[test]
fn resent_counts_acked_messages_not_requests() {
    // `Stats::resent` is "acked messages written again after a reconnect"; a request kept
    // across the drop is written again too, but requests are not messages in `Stats`.
    let mut sim = tether(Config::builder("ws://relay").fail_requests_on_disconnect(false));
    sim.connect_open();
    sim.server.answer_requests = false;
    sim.server.send_acks = false;
    sim.engine
        .request(sim.now, json!(1), Some(secs(30)))
        .unwrap();
    sim.engine
        .publish(sim.now, "room", json!("hi"), SendOptions::default())
        .unwrap();
    sim.run_for(ms(50));
    sim.kill_connection();
    sim.run_until_state(secs(10), |e| e.state().is_open());
    sim.run_for(ms(100));
    let requests = sim
        .server_texts()
        .iter()
        .filter(|t| t.contains(r#""type":"request""#))
        .count();
    assert_eq!(requests, 2, "the request was written again");
    assert_eq!(sim.server_publishes().len(), 2, "and so was the publish");
    assert_eq!(sim.engine.stats().resent, 1, "only the publish is counted");
}

// ---- bad input --------------------------------------------------------------------------------

#[test]
fn malformed_and_oversized_frames_are_reported_and_the_connection_survives() {
    let mut sim = tether(Config::builder("ws://relay").max_message_bytes(100));
    sim.engine.subscribe(sim.now, "room").unwrap();
    sim.connect_open();
    sim.run_for(ms(100));
    sim.server_push(Frame::from("{not json"));
    sim.server_push(Frame::from(r#"{"v":1,"type":"teleport"}"#));
    sim.server_push(Frame::from(r#"{"v":9,"type":"message"}"#));
    sim.server_push(Frame::Binary(vec![0xff, 0x00]));
    sim.server_push(Frame::Text("x".repeat(101)));
    sim.other_publishes("room", json!("still works"));
    sim.run_for(ms(100));
    let kinds = sim.errors().iter().map(|e| e.kind()).collect::<Vec<_>>();
    assert_eq!(
        kinds,
        vec![
            "decode",
            "decode",
            "decode",
            "unexpected_frame",
            "frame_too_large"
        ]
    );
    assert!(sim.engine.state().is_open());
    assert_eq!(
        sim.delivered().last().unwrap().payload,
        Payload::Json(json!("still works"))
    );
}

#[test]
fn the_end_of_a_transport_the_engine_closed_itself_is_not_a_stale_input() {
    // A dead link found by the heartbeat is closed by the engine and replaced: the driver's
    // report of that close answers the engine's own request, it is not late news. Counted as
    // stale, `stale_inputs` grew with every such reconnect (and every restarted event stream
    // in the browser), and told an app nothing.
    let config = Config::builder("ws://relay")
        .heartbeat_interval(secs(10))
        .max_missed_pongs(1)
        .build()
        .unwrap();
    let (mut engine, t) = opened_engine(config, Instant::ZERO);
    while engine.poll_action().is_some() {}
    let mut now = Instant::ZERO;
    let mut closed = false;
    for _ in 0..100 {
        let Some(deadline) = engine.poll_timeout() else {
            break;
        };
        now = deadline;
        engine.handle_timeout(now);
        closed = std::iter::from_fn(|| engine.poll_action())
            .any(|a| matches!(a, tether_core::Action::Close { transport, .. } if transport == t));
        if closed {
            break;
        }
    }
    assert!(closed, "the silent link was closed");
    assert!(matches!(engine.state(), State::Waiting { .. }));
    engine.transport_closed(now + ms(5), t, Some(4000), "");
    assert_eq!(engine.stats().stale_inputs, 0, "the close it asked for");
    // Anything about it after that is late news.
    engine.transport_failed(
        now + ms(6),
        t,
        tether_core::TransportFailure::Io("reset".into()),
    );
    engine.frame_received(now + ms(7), t, Frame::from("late"));
    assert_eq!(engine.stats().stale_inputs, 2);
    assert!(matches!(engine.state(), State::Waiting { .. }));
}

#[test]
fn the_end_of_a_restarted_stream_is_not_a_stale_input() {
    // An online report restarts an open event stream: the engine closes it and opens the
    // next attempt at once, which releases the one closing. The driver's report of that
    // stream's end comes after the release; it still answers the engine's own close.
    let config = Config::builder("http://relay/events")
        .last_event_id("7")
        .build()
        .unwrap();
    let (mut engine, t) = opened_engine(config, Instant::ZERO);
    // Stable (`min_uptime`): a stream that just opened is not restarted.
    engine.handle_timeout(Instant::ZERO + secs(20));
    while engine.poll_action().is_some() {}
    engine.network_changed(Instant::ZERO + secs(60), true);
    let actions: Vec<tether_core::Action> = std::iter::from_fn(|| engine.poll_action()).collect();
    assert!(
        matches!(
            actions[..],
            [
                tether_core::Action::Close { transport: c, .. },
                tether_core::Action::Release { transport: r },
                tether_core::Action::Open(_),
            ] if c == t && r == t
        ),
        "{actions:?}"
    );
    engine.transport_closed(Instant::ZERO + secs(60), t, Some(4000), "");
    assert_eq!(engine.stats().stale_inputs, 0, "the close it asked for");
    engine.transport_closed(Instant::ZERO + secs(61), t, None, "");
    assert_eq!(engine.stats().stale_inputs, 1, "a second end is late news");
}

#[test]
fn a_frame_too_large_of_any_size_is_counted_without_overflow() {
    // The size is the driver's word; `usize::MAX` must neither panic (debug) nor wrap the
    // byte counter (release).
    let (mut engine, t) = opened_engine(
        Config::builder("ws://relay").build().unwrap(),
        Instant::ZERO,
    );
    while engine.poll_action().is_some() {}
    engine.frame_too_large(Instant::ZERO + ms(1), t, usize::MAX);
    engine.frame_received(Instant::ZERO + ms(2), t, Frame::from("hi"));
    let stats = engine.stats();
    assert_eq!(stats.bytes_received, u64::MAX);
    assert_eq!(stats.frames_received, 2);
    assert!(engine.state().is_open());
}

#[test]
fn at_the_clocks_end_attempts_do_not_loop() {
    // A driver clock that jumps to the end (`Instant::from_millis_f64(inf)` saturates there):
    // every deadline `now + d` is `now`, so the connect timeout and the backoff's wait were
    // due at once, in every call: an attempt per `handle_timeout`, without backoff.
    let mut engine = tether_core::Engine::new(Config::builder("ws://relay").build().unwrap(), 1);
    engine.connect(Instant::ZERO);
    while engine.poll_action().is_some() {}
    let mut calls = 0;
    while engine.poll_timeout().is_some() && calls < 50 {
        engine.handle_timeout(Instant::MAX);
        while engine.poll_action().is_some() {}
        calls += 1;
    }
    assert_eq!(engine.stats().attempts, 1, "after {calls} calls");
    assert!(calls < 50, "the engine still asks to be woken at once");
    assert!(matches!(engine.state(), State::Waiting { .. }));
}

#[test]
fn time_going_backwards_is_clamped_and_stale_inputs_are_ignored() {
    let mut sim = Sim::raw("ws://relay");
    sim.connect_open();
    let stale = sim.server.conn.unwrap();
    sim.kill_connection();
    sim.run_until_state(secs(10), |e| e.state().is_open());
    // Late news about the old transport changes nothing.
    sim.engine
        .transport_closed(sim.now, stale, Some(1011), "late");
    sim.engine
        .frame_received(sim.now, stale, Frame::from("late"));
    assert!(sim.engine.state().is_open());
    assert_eq!(sim.engine.stats().stale_inputs, 2);
    // A clock that jumps backwards does not fire timers early or panic.
    let deadline = sim.engine.poll_timeout().unwrap();
    sim.engine.handle_timeout(Instant::ZERO);
    assert_eq!(sim.engine.poll_timeout(), Some(deadline));
    assert!(sim.engine.poll_action().is_none());
}

#[test]
// The test, not the engine, runs a thread: a watchdog, so that a hang fails the test instead
// of stalling the suite.
#[allow(clippy::disallowed_methods)]
fn a_clock_at_its_end_does_not_make_the_heartbeat_spin() {
    // Time saturates at `Instant::MAX` (what `Instant::from_millis_f64(INFINITY)` gives, and
    // what a driver firing "everything due" might pass): `now + interval` is `now` again. The
    // heartbeat, asked for the next ping, found it due again at once, for ever, inside one
    // `handle_timeout` call (the driver hung, and its action queue grew without bound).
    let cases = [HeartbeatMode::PingFrame, HeartbeatMode::AppMessage]
        .into_iter()
        .flat_map(|mode| [(mode, None), (mode, Some(secs(5)))]);
    for (mode, pong_timeout) in cases {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let config = Config::builder("ws://relay")
                .heartbeat_mode(mode)
                .pong_timeout(pong_timeout)
                .seed(5)
                .build()
                .unwrap();
            let (mut engine, _) = opened_engine(config, Instant::ZERO);
            while engine.poll_action().is_some() {}
            engine.handle_timeout(Instant::MAX);
            let _ = tx.send(std::iter::from_fn(|| engine.poll_action()).count());
        });
        let actions = rx.recv_timeout(secs(2)).unwrap_or_else(|_| {
            panic!("{mode:?} {pong_timeout:?}: handle_timeout(Instant::MAX) never returned")
        });
        assert!(actions <= 2, "{mode:?} {pong_timeout:?}: {actions} actions");
    }
}

#[test]
fn nothing_is_written_after_the_close_frame() {
    // RFC 6455 §5.5.1: after sending a Close frame an endpoint sends no more data frames
    // (tungstenite refuses with `SendAfterClosing`, which fails the link and cuts the close
    // handshake short). The server's heartbeat `ping` crossing the app's close must not be
    // answered with a `pong` written behind the close frame.
    let config = Config::builder("ws://relay")
        .protocol(Protocol::Tether)
        .seed(3)
        .build()
        .unwrap();
    let (mut engine, t) = opened_engine(config, Instant::ZERO);
    while engine.poll_action().is_some() {}
    engine.close(Instant::ZERO + secs(1), 1000, "bye").unwrap();
    let closing: Vec<tether_core::Action> = std::iter::from_fn(|| engine.poll_action()).collect();
    assert!(
        matches!(closing[..], [tether_core::Action::Close { .. }]),
        "{closing:?}"
    );
    let ping = tether_core::protocol::ServerMessage::Ping {
        id: Some("7".into()),
    };
    engine.frame_received(Instant::ZERO + ms(1_010), t, Frame::Text(ping.encode()));
    let after: Vec<tether_core::Action> = std::iter::from_fn(|| engine.poll_action()).collect();
    assert_eq!(after, [], "written after the close frame");
    assert_eq!(engine.state(), &State::Closing);
}

#[test]
fn a_slow_token_fetch_does_not_shorten_the_handshake() {
    // The token fetch has the connect timeout, and the request, once sent, has it again: a
    // provider that took 9 of the 10 s left the handshake 1 s, and a healthy server behind
    // a slow provider failed every attempt at the connect timeout.
    let config = Config::builder("ws://relay")
        .token(TokenPlacement::Query { param: "t".into() })
        .build()
        .unwrap();
    let mut engine = tether_core::Engine::new(config, 1);
    engine.connect(Instant::ZERO);
    let Some(tether_core::Action::FetchToken { transport, .. }) = engine.poll_action() else {
        panic!("no token fetch")
    };
    let fetched = Instant::ZERO + secs(9);
    engine.token_ready(fetched, transport, "tok".into());
    assert!(matches!(
        engine.poll_action(),
        Some(tether_core::Action::Open(_))
    ));
    assert_eq!(engine.poll_timeout(), Some(fetched + secs(10)));
    engine.handle_timeout(Instant::ZERO + secs(12));
    assert!(
        matches!(engine.state(), State::Connecting { .. }),
        "still opening"
    );
    engine.transport_opened(Instant::ZERO + secs(12), transport);
    assert!(engine.state().is_open());
    // The fetch itself still has the connect timeout.
    let mut engine = tether_core::Engine::new(
        Config::builder("ws://relay")
            .token(TokenPlacement::Query { param: "t".into() })
            .build()
            .unwrap(),
        1,
    );
    engine.connect(Instant::ZERO);
    assert_eq!(engine.poll_timeout(), Some(Instant::ZERO + secs(10)));
}

#[test]
fn a_late_token_for_the_last_session_does_not_open_the_next_one() {
    // Attempt numbers start at 1 again after close() and connect(): the engine, not each
    // driver, must tell the old request's answer from the new one's.
    let config = Config::builder("ws://relay")
        .token(TokenPlacement::bearer_header())
        .build()
        .unwrap();
    let mut engine = tether_core::Engine::new(config, 1);
    let fetch = |engine: &mut tether_core::Engine| match engine.poll_action() {
        Some(tether_core::Action::FetchToken {
            transport,
            attempt: 1,
            ..
        }) => transport,
        other => panic!("{other:?}"),
    };
    engine.connect(Instant::ZERO);
    let old = fetch(&mut engine);
    engine.close(Instant::from_millis(10), 1000, "bye").unwrap();
    while engine.poll_action().is_some() {}
    engine.connect(Instant::from_millis(20));
    let new = fetch(&mut engine);
    engine.token_ready(Instant::from_millis(30), old, "old-session".into());
    let opened: Vec<_> = std::iter::from_fn(|| engine.poll_action()).collect();
    assert_eq!(
        opened,
        [],
        "the old request's answer opened the new attempt"
    );
    engine.token_ready(Instant::from_millis(40), new, "new-session".into());
    match engine.poll_action() {
        Some(tether_core::Action::Open(req)) => assert!(
            req.headers.iter().any(|(_, v)| v == "Bearer new-session"),
            "{:?}",
            req.headers
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn inputs_in_the_wrong_state_are_harmless() {
    let mut sim = Sim::raw("ws://relay");
    let engine = &mut sim.engine;
    let bogus = {
        // A transport id from another engine: never current here.
        let mut other = tether_core::Engine::new(Config::builder("ws://x").build().unwrap(), 0);
        other.connect(Instant::ZERO);
        match other.poll_action() {
            Some(tether_core::Action::Open(o)) => o.transport,
            other => panic!("{other:?}"),
        }
    };
    engine.transport_opened(Instant::ZERO, bogus);
    engine.token_ready(Instant::ZERO, bogus, "t".into());
    engine.handle_timeout(Instant::from_millis(5));
    engine.network_changed(Instant::ZERO, true);
    engine.set_foreground(Instant::ZERO, true);
    assert_eq!(engine.state(), &State::Idle);
    assert!(engine.poll_action().is_none());
    assert!(engine.poll_event().is_none());
}

// ---- SSE ------------------------------------------------------------------------------------

#[test]
fn a_receive_only_sse_transport_never_gets_a_frame_to_write() {
    // Tether protocol over SSE: a server ping would be answered with a pong on a WebSocket;
    // an EventSource cannot carry it, so nothing is written (and nothing counted as sent).
    let config = Config::builder("http://relay/sse/room")
        .protocol(Protocol::Tether)
        .heartbeat_mode(HeartbeatMode::ServerDriven)
        .build()
        .unwrap();
    let mut sim = Sim::new(config, true);
    sim.connect_open();
    sim.server_push_sse(SseEvent {
        data: r#"{"v":1,"type":"ping","id":"7"}"#.into(),
        ..SseEvent::default()
    });
    sim.run_for(ms(50));
    assert!(sim.engine.state().is_open());
    assert!(sim.server.received.is_empty(), "{:?}", sim.server.received);
    assert_eq!(sim.engine.stats().frames_sent, 0);
}

#[test]
fn an_sse_stream_says_whether_its_resume_was_complete() {
    // A Tether server starts each stream with its position, whose data is the `subscribed`
    // a WebSocket subscribe would get: `recovered: false` after a resume past the history
    // it kept (or across its restart) is the app's only sign of the gap.
    let config = Config::builder("http://relay/sse/room")
        .protocol(Protocol::Tether)
        .build()
        .unwrap();
    let mut sim = Sim::new(config, true);
    sim.connect_open();
    let position = |offset: u64, recovered: bool| SseEvent {
        event: tether_core::protocol::SSE_POSITION_EVENT.into(),
        id: Some(format!("e1-{offset}")),
        data: format!(
            r#"{{"v":1,"type":"subscribed","channel":"room","offset":{offset},"epoch":"e1","recovered":{recovered}}}"#
        ),
        ..SseEvent::default()
    };
    sim.server_push_sse(position(3, true));
    sim.run_for(ms(10));
    sim.kill_connection();
    sim.run_for(secs(40));
    assert!(sim.engine.state().is_open());
    sim.server_push_sse(position(9, false));
    sim.run_for(ms(10));
    let subscribed = sim.events_matching(|e| match e {
        Event::Subscribed {
            channel,
            offset,
            recovered,
        } => Some((channel.clone(), *offset, *recovered)),
        _ => None,
    });
    assert_eq!(
        subscribed,
        [("room".to_owned(), 3, true), ("room".to_owned(), 9, false)]
    );
    assert!(
        sim.events_matching(|e| matches!(e, Event::Message(_)).then_some(()))
            .is_empty(),
        "a position is not a message"
    );
}

/// A raw event stream on the scripted server (`/sse/room`), without jitter.
fn sse_room() -> Sim {
    Sim::new(
        Config::builder("http://relay/sse/room")
            .jitter(Jitter::None)
            .build()
            .unwrap(),
        false,
    )
}

#[test]
fn an_sse_retry_shapes_the_backoff_but_an_app_connect_or_online_is_not_held_by_it() {
    let mut sim = sse_room();
    sim.connect_open();
    sim.server_push_sse(SseEvent {
        retry: Some(secs(30)),
        ..SseEvent::default()
    });
    sim.run_for(ms(50));
    sim.kill_connection();
    sim.run_for(ms(1));
    let delay = sim.reconnects()[0].2;
    assert!(
        delay >= secs(30) && delay <= secs(30) + secs(30) / 4,
        "the stream's retry: is the backoff's floor (+ jitter): {delay:?}"
    );
    // Not a server's minimum (Retry-After, 1013, reconnect_after_ms): the app can cut it.
    sim.engine.network_changed(sim.now, true);
    sim.run_for(ms(100));
    assert_eq!(sim.server.opens.len(), 2, "coming online attempts at once");
}

#[test]
fn an_sse_stream_that_delivered_events_and_ended_is_not_a_failed_attempt() {
    // A server that ends its stream after each batch of events (PHP, a serverless function
    // cut at its time limit) and lets the client come back with `Last-Event-ID`, as the SSE
    // spec invites: every stream works, yet each was counted as a failed attempt (it ended
    // before `min_uptime`), and `max_attempts(3)` gave up after the third one.
    let mut sim = Sim::new(
        Config::builder("http://relay/sse/room")
            .max_attempts(Some(3))
            .build()
            .unwrap(),
        false,
    );
    sim.connect_open();
    for i in 1..=5 {
        sim.server_push_sse(SseEvent {
            id: Some(i.to_string()),
            event: "message".into(),
            data: format!("batch {i}"),
            retry: None,
        });
        sim.run_for(ms(50));
        sim.kill_connection();
        sim.run_until_state(secs(60), |e| e.state().is_open());
    }
    assert_eq!(sim.delivered().len(), 5);
    assert_eq!(sim.server.opens.len(), 6);
    assert_eq!(sim.server.opens[5].1.last_event_id.as_deref(), Some("5"));
    // Five streams ended with `max_attempts(3)` and the client is still there: their ends
    // do not count towards the limit. They still grow the delays (each reconnect is the
    // next attempt of the curve), so a server that sends one event and drops in a loop
    // meets growing delays, not a hot loop.
    let attempts: Vec<u32> = sim.reconnects().into_iter().map(|r| r.1).collect();
    assert_eq!(attempts, [2, 3, 4, 5, 6]);

    // A stream that ends without an event (a server that answers and hangs up at once) is
    // still a failed attempt, and meets the limit (the count given is every attempt's, as
    // after attempts made offline).
    for _ in 0..3 {
        sim.run_until_state(secs(60), |e| e.state().is_open());
        sim.kill_connection();
    }
    assert_eq!(
        sim.engine.state(),
        &State::Closed {
            reason: CloseReason::GaveUp { attempts: 8 }
        }
    );
}

#[test]
fn a_raw_sse_ids_offset_is_its_number_only_when_written_one_way() {
    let got: Vec<(Option<u64>, Option<String>)> = raw_sse_delivered(
        b"id: 5\ndata: a\n\nid: +6\ndata: b\n\nid: 0x7\ndata: c\n\nid: 18446744073709551616\ndata: d\n\nid: 08\ndata: e\n\nid: 0\ndata: f\n\n",
    )
    .into_iter()
    .map(|m| (m.offset, m.last_event_id))
    .collect();
    assert_eq!(
        got,
        [
            (Some(5), Some("5".into())),
            (None, Some("+6".into())),
            (None, Some("0x7".into())),
            (None, Some("18446744073709551616".into())),
            (None, Some("08".into())),
            (Some(0), Some("0".into())),
        ]
    );
}

/// What a raw-mode SSE client delivers of `stream`, read by the engine's own parser.
fn raw_sse_delivered(stream: &[u8]) -> Vec<tether_core::InboundMessage> {
    let mut sim = Sim::new(
        Config::builder("http://relay/sse/room").build().unwrap(),
        false,
    );
    sim.connect_open();
    let transport = sim.server.conn.unwrap();
    let mut parser = tether_core::sse::SseParser::new(1 << 20);
    parser.feed(stream);
    while let Some(item) = parser.poll() {
        sim.engine.sse_parsed(sim.now, transport, item);
    }
    sim.run_for(ms(10));
    sim.delivered()
}

#[test]
fn an_sse_event_with_empty_data_is_a_message_in_raw_mode() {
    // `data` alone on a line dispatches an event whose data is "" (browsers fire it); it was
    // taken for an id-only update and never delivered.
    let got: Vec<Payload> = raw_sse_delivered(b"data: first\n\ndata\n\nid: 7\n\ndata: last\n\n")
        .into_iter()
        .map(|m| m.payload)
        .collect();
    assert_eq!(
        got,
        [
            Payload::Text("first".into()),
            Payload::Text(String::new()),
            Payload::Text("last".into())
        ],
        "the id-only block is not a message"
    );
}

#[test]
fn a_named_sse_event_says_its_type() {
    // With several named events (`event: update`, `event: delete`) the app could not tell
    // them apart: the type was dropped.
    let stream = b"event: update\ndata: 1\n\nevent: delete\ndata: 1\n\ndata: plain\n\n";
    let got: Vec<Option<String>> = raw_sse_delivered(stream)
        .into_iter()
        .map(|m| m.event)
        .collect();
    assert_eq!(
        got,
        [Some("update".to_owned()), Some("delete".to_owned()), None]
    );
}

/// An app that saved the stream's position before it stopped resumes from it: the first
/// attempt sends it, and the stream's own ids take over from there.
#[test]
fn sse_resumes_from_a_position_the_app_saved() {
    let mut sim = Sim::new(
        Config::builder("http://relay/sse/room")
            .last_event_id("e1-41")
            .jitter(Jitter::None)
            .build()
            .unwrap(),
        false,
    );
    assert_eq!(sim.engine.last_event_id(), Some("e1-41"));
    sim.connect_open();
    assert_eq!(
        sim.server.opens[0].1.last_event_id.as_deref(),
        Some("e1-41")
    );
    sim.server_push_sse(SseEvent {
        id: Some("e1-42".into()),
        event: "message".into(),
        data: "tick".into(),
        retry: None,
    });
    // No id of its own: the stream's position is still the one before it.
    sim.server_push_sse(SseEvent {
        id: None,
        event: "message".into(),
        data: "tock".into(),
        retry: None,
    });
    sim.run_for(ms(50));
    assert_eq!(sim.engine.last_event_id(), Some("e1-42"));
    let positions: Vec<Option<String>> = sim
        .delivered()
        .into_iter()
        .map(|m| m.last_event_id)
        .collect();
    assert_eq!(positions, [Some("e1-42".into()), Some("e1-42".into())]);
    sim.kill_connection();
    sim.run_until_state(secs(10), |e| e.state().is_open());
    assert_eq!(
        sim.server.opens[1].1.last_event_id.as_deref(),
        Some("e1-42")
    );
}

/// An event stream cannot send a ping to find out whether its socket survived a network
/// change: it used to be found dead only at the heartbeat's silence limit (75 s). An online
/// report, or a return to the foreground after the heartbeat interval, restarts a stable
/// stream that has a position, at once and from that position; a stream without one, or one
/// not yet stable, or an offline report, or a short time away, leaves it be.
#[test]
fn an_open_sse_stream_with_a_position_is_restarted_on_a_network_change() {
    let open_sse_with = |id: Option<&str>, restart_streams: bool| {
        let mut sim = Sim::new(
            Config::builder("http://relay/sse/room")
                .jitter(Jitter::None)
                .restart_streams(restart_streams)
                .build()
                .unwrap(),
            false,
        );
        sim.connect_open();
        sim.server_push_sse(SseEvent {
            id: id.map(str::to_owned),
            event: "message".into(),
            data: "tick".into(),
            // A server's advice for reconnects: a restart is none, and does not wait for it.
            retry: Some(secs(10)),
        });
        sim.run_for(ms(50));
        sim
    };
    let open_sse = |id: Option<&str>| open_sse_with(id, true);
    let restarted = |sim: &Sim| {
        sim.reconnects()
            .iter()
            .filter(|r| r.3 == DisconnectCause::StreamRestarted)
            .count()
    };

    // Not yet stable (5 s of uptime): a platform reporting the network over and over must
    // not restart the stream as often.
    let mut sim = open_sse(Some("e1-5"));
    sim.engine.network_changed(sim.now, true);
    sim.run_for(ms(10));
    assert_eq!(restarted(&sim), 0);
    assert!(sim.engine.state().is_open());

    sim.run_for(secs(6));
    // An offline report: a restart now would fail.
    sim.engine.network_changed(sim.now, false);
    sim.run_for(ms(10));
    assert_eq!(restarted(&sim), 0);
    assert!(sim.engine.state().is_open());

    let restart_at = sim.elapsed();
    sim.engine.network_changed(sim.now, true);
    assert!(
        matches!(sim.engine.state(), State::Connecting { attempt: 1 }),
        "at once, not after a backoff delay, and no failure counted: {:?}",
        sim.engine.state()
    );
    sim.run_until_state(secs(5), |e| e.state().is_open());
    assert_eq!(restarted(&sim), 1);
    assert_eq!(sim.server.opens.len(), 2);
    assert_eq!(sim.server.opens[1].1.last_event_id.as_deref(), Some("e1-5"));
    let took = sim.elapsed() - restart_at;
    assert!(took < ms(100), "{took:?}");
    // Said as what it is: an attempt now, not a wait (the server's retry: is 10 s), and no
    // `Waiting` state announcing one.
    let restart = sim.reconnects().last().cloned().unwrap();
    assert_eq!((restart.1, restart.2), (1, Duration::ZERO));
    let waits = sim.events_matching(|e| match e {
        Event::StateChanged {
            to: State::Waiting { .. },
            ..
        } => Some(()),
        _ => None,
    });
    assert!(waits.is_empty(), "{} waits", waits.len());

    // The foreground: a tab switched away and back (1 s) is not worth a new request; an app
    // away for the heartbeat interval (25 s) may have had its socket die while suspended.
    sim.run_for(secs(6));
    sim.engine.set_foreground(sim.now, false);
    sim.run_for(secs(1));
    sim.engine.set_foreground(sim.now, true);
    sim.run_for(ms(10));
    assert_eq!(restarted(&sim), 1);
    sim.engine.set_foreground(sim.now, false);
    sim.run_for(secs(25));
    sim.engine.set_foreground(sim.now, true);
    sim.run_until_state(secs(5), |e| e.state().is_open());
    assert_eq!(restarted(&sim), 2);
    assert_eq!(sim.server.opens.len(), 3);

    // Not while the app says it is offline: the restart would fail.
    sim.run_for(secs(6));
    sim.engine.network_changed(sim.now, false);
    sim.engine.set_foreground(sim.now, false);
    sim.run_for(secs(30));
    sim.engine.set_foreground(sim.now, true);
    sim.run_for(ms(10));
    assert_eq!(restarted(&sim), 2);
    assert!(sim.engine.state().is_open());
    sim.engine.network_changed(sim.now, true);
    sim.run_until_state(secs(5), |e| e.state().is_open());
    assert_eq!(restarted(&sim), 3);

    // A stream that reopened while the app was away counts from its opening: 10 s is too
    // fresh to doubt, though the app was away for 30 s.
    sim.run_for(secs(6));
    sim.engine.set_foreground(sim.now, false);
    sim.run_for(secs(20));
    sim.kill_connection();
    sim.run_until_state(secs(20), |e| e.state().is_open()); // the server's retry: 10 s
    sim.run_for(secs(10));
    let opens = sim.server.opens.len();
    sim.engine.set_foreground(sim.now, true);
    sim.run_for(ms(10));
    assert_eq!(restarted(&sim), 3);
    assert_eq!(sim.server.opens.len(), opens);
    // Open 30 s of a longer time away: doubted.
    sim.engine.set_foreground(sim.now, false);
    sim.kill_connection();
    sim.run_until_state(secs(20), |e| e.state().is_open());
    sim.run_for(secs(30));
    sim.engine.set_foreground(sim.now, true);
    sim.run_until_state(secs(5), |e| e.state().is_open());
    assert_eq!(restarted(&sim), 4);

    // An engine made in the background (a page opened in a hidden tab): its first return
    // doubts a stream that was open long enough meanwhile.
    let mut sim = sse_room();
    sim.engine.set_foreground(sim.now, false);
    sim.connect_open();
    sim.server_push_sse(SseEvent {
        id: Some("e1-9".into()),
        event: "message".into(),
        data: "tick".into(),
        retry: None,
    });
    sim.run_for(secs(60));
    sim.engine.set_foreground(sim.now, true);
    sim.run_until_state(secs(5), |e| e.state().is_open());
    assert_eq!(restarted(&sim), 1);
    assert_eq!(sim.server.opens[1].1.last_event_id.as_deref(), Some("e1-9"));

    // Turned off, for a server that sends ids but does not resume from them.
    let mut sim = open_sse_with(Some("e1-5"), false);
    sim.run_for(secs(6));
    sim.engine.network_changed(sim.now, true);
    sim.run_for(secs(1));
    assert_eq!(restarted(&sim), 0);
    assert_eq!(sim.server.opens.len(), 1);

    // No position: a restart would lose what a healthy stream sent meanwhile.
    let mut sim = open_sse(None);
    sim.run_for(secs(6));
    sim.engine.network_changed(sim.now, true);
    sim.run_for(secs(1));
    assert_eq!(restarted(&sim), 0);
    assert_eq!(sim.server.opens.len(), 1);
}

#[test]
fn sse_resumes_with_last_event_id_and_honours_retry() {
    let mut sim = sse_room();
    sim.connect_open();
    assert_eq!(sim.server.opens[0].1.last_event_id, None);
    sim.server_push_sse(SseEvent {
        retry: Some(secs(3)),
        ..SseEvent::default()
    });
    for i in 1..=2 {
        sim.server_push_sse(SseEvent {
            id: Some(i.to_string()),
            event: "message".into(),
            data: format!("tick {i}"),
            retry: None,
        });
    }
    sim.run_for(ms(50));
    sim.kill_connection();
    sim.run_for(ms(1));
    let (_, _, delay, _) = sim.reconnects()[0].clone();
    assert!(
        delay >= secs(3) && delay <= secs(3) + secs(3) / 4,
        "SSE retry: raises the 500 ms backoff to 3 s (+ jitter): {delay:?}"
    );
    sim.run_until_state(secs(10), |e| e.state().is_open());
    assert_eq!(sim.server.opens[1].1.last_event_id.as_deref(), Some("2"));
    let got: Vec<(Option<u64>, Payload)> = sim
        .delivered()
        .into_iter()
        .map(|m| (m.offset, m.payload))
        .collect();
    assert_eq!(
        got,
        vec![
            (Some(1), Payload::Text("tick 1".into())),
            (Some(2), Payload::Text("tick 2".into()))
        ]
    );
    // SSE is receive-only: a send would wait in the outbox forever (an acked one's promise
    // or future never settling), so it is refused.
    assert_eq!(
        sim.engine.send(sim.now, "held"),
        Err(tether_core::SendError::ReceiveOnly)
    );
    assert_eq!(sim.engine.outbox_len(), 0);
}

#[test]
fn an_sse_client_refuses_channel_and_document_commands_it_could_never_send() {
    // The stream's channel is the one in its URL: a subscribe (or a document's sync) can never
    // be written, so accepting it would leave the app waiting for a `Subscribed` that never
    // comes, and a document unsynced for ever.
    let mut sim = Sim::new(
        Config::builder("http://relay/sse/room")
            .protocol(Protocol::Tether)
            .build()
            .unwrap(),
        false,
    );
    for connected in [false, true] {
        if connected {
            sim.connect_open();
        }
        assert_eq!(
            sim.engine.subscribe(sim.now, "other"),
            Err(tether_core::SubscribeError::ReceiveOnly)
        );
        assert_eq!(
            sim.engine.unsubscribe(sim.now, "room"),
            Err(tether_core::SubscribeError::ReceiveOnly)
        );
        #[cfg(feature = "documents")]
        assert_eq!(
            sim.engine
                .open_document(sim.now, "todo")
                .map_err(|e| e.code()),
            Err("receive_only")
        );
    }
    assert_eq!(sim.engine.presence("other"), None);
}

#[test]
fn an_sse_id_a_header_could_not_carry_is_not_resumed_from() {
    // Adopted, "2\u{1}" would become a Last-Event-ID header that fails every later request
    // before it leaves the client; like the spec's NUL rule, it is ignored.
    let mut sim = Sim::new(
        Config::builder("http://relay/sse/room").build().unwrap(),
        false,
    );
    sim.connect_open();
    // Also one too long to send back: servers would refuse the header (431) on every attempt.
    let long = "x".repeat(tether_core::sse::MAX_EVENT_ID_LEN + 1);
    // The long one twice: a browser's EventSource repeats the last id on every later event.
    for id in [
        "1",
        "2\u{1}",
        "3\r\n",
        "\u{7f}",
        long.as_str(),
        long.as_str(),
    ] {
        sim.server_push_sse(SseEvent {
            id: Some(id.into()),
            event: "message".into(),
            data: format!("after {}", id.len()),
            retry: None,
        });
    }
    sim.run_for(ms(50));
    assert_eq!(
        sim.delivered().len(),
        6,
        "the events themselves are delivered"
    );
    // Only the over-long one is reported (as our parser reports it), once; the others break
    // a header rule the app cannot act on, and NUL is the spec's own silent rule.
    let errors = sim.errors();
    assert_eq!(
        errors,
        vec![EngineError::SseLineTooLong {
            field: "id",
            size: long.len(),
            max: tether_core::sse::MAX_EVENT_ID_LEN
        }]
    );
    sim.kill_connection();
    sim.run_until_state(secs(60), |e| e.state().is_open());
    assert_eq!(sim.server.opens[1].1.last_event_id.as_deref(), Some("1"));
}

#[test]
fn a_message_the_driver_left_unread_as_too_large_is_reported_and_the_next_one_read() {
    // A browser's WebSocket holds each message in JavaScript memory; the driver asks
    // `reads_message_of` before copying it into the module and reports one over the limit
    // with `frame_too_large`, uncopied.
    let mut sim = Sim::new(
        Config::builder("ws://relay/ws")
            .max_message_bytes(64)
            .build()
            .unwrap(),
        false,
    );
    sim.connect_open();
    assert!(sim.engine.reads_message_of(64));
    assert!(!sim.engine.reads_message_of(65));
    let transport = sim.server.conn.unwrap();
    sim.engine.frame_too_large(sim.now, transport, 5_000_000);
    sim.engine
        .frame_received(sim.now, transport, Frame::from("after"));
    sim.run_for(ms(50));
    let errors = sim.errors();
    assert_eq!(
        errors,
        [EngineError::FrameTooLarge {
            size: 5_000_000,
            max: 64
        }]
    );
    let texts: Vec<Payload> = sim.delivered().into_iter().map(|m| m.payload).collect();
    assert_eq!(texts, [Payload::Text("after".into())]);
    assert!(sim.engine.state().is_open(), "the connection is kept");
    assert_eq!(sim.engine.stats().frames_received, 2);
    assert_eq!(sim.engine.stats().bytes_received, 5_000_005);
}

#[test]
fn what_an_sse_parser_hands_over_is_judged_by_the_engine() {
    use tether_core::sse::SseParser;
    let mut sim = Sim::new(
        Config::builder("http://relay/sse/room")
            .max_message_bytes(64)
            .build()
            .unwrap(),
        false,
    );
    sim.connect_open();
    let transport = sim.server.conn.unwrap();
    let mut parser = SseParser::new(64);
    let long_event = "e".repeat(100);
    parser.feed(
        format!(
            ": keep-alive\n\nevent: {long_event}\ndata: kept\n\ndata: {}\n\nid: 9\ndata: ok\n\n",
            "d".repeat(100)
        )
        .as_bytes(),
    );
    while let Some(item) = parser.poll() {
        sim.engine.sse_parsed(sim.now, transport, item);
    }
    sim.run_for(ms(50));
    let errors = sim.errors().iter().map(|e| e.kind()).collect::<Vec<_>>();
    assert_eq!(errors, vec!["sse_line_too_long", "frame_too_large"]);
    let texts: Vec<Payload> = sim.delivered().into_iter().map(|m| m.payload).collect();
    assert_eq!(
        texts,
        vec![Payload::Text("kept".into()), Payload::Text("ok".into())]
    );
    assert!(sim.engine.state().is_open(), "the stream is kept");
    sim.kill_connection();
    sim.run_until_state(secs(60), |e| e.state().is_open());
    assert_eq!(sim.server.opens[1].1.last_event_id.as_deref(), Some("9"));
}

#[test]
fn an_sse_event_the_parser_skipped_as_too_large_is_reported_and_the_stream_kept() {
    let mut sim = Sim::new(
        Config::builder("http://relay/sse/room")
            .max_message_bytes(64)
            .build()
            .unwrap(),
        false,
    );
    sim.connect_open();
    let transport = sim.server.conn.unwrap();
    sim.engine.frame_too_large(sim.now, transport, 1_000_000);
    sim.run_for(ms(50));
    let errors = sim.errors();
    assert_eq!(
        errors,
        [tether_core::EngineError::FrameTooLarge {
            size: 1_000_000,
            max: 64
        }]
    );
    assert!(sim.engine.state().is_open());
    assert_eq!(sim.engine.stats().frames_received, 1);
}

/// `MessageId`s are opaque outside the crate; this is the first one an engine hands out.
fn first_id() -> MessageId {
    let mut e = tether_core::Engine::new(Config::builder("ws://x").build().unwrap(), 0);
    e.send(Instant::ZERO, "x").unwrap()
}

#[test]
fn an_abandoned_engine_is_closed_at_once_and_reports_what_was_pending() {
    let mut sim = open_without_acks();
    let written = sim.engine.send(sim.now, "a").unwrap();
    sim.run_for(ms(10));
    let request = sim.engine.request(sim.now, "q", None).unwrap();
    sim.engine.abandon(sim.now);
    assert_eq!(
        sim.engine.state(),
        &State::Closed {
            reason: CloseReason::App { code: 1001 }
        }
    );
    // What the name drivers use for it reads as.
    assert_eq!(
        CloseReason::stopped_running().to_string(),
        "closed: the client stopped running"
    );
    let events: Vec<Event> = std::iter::from_fn(|| sim.engine.poll_event()).collect();
    assert!(events.contains(&Event::Dropped {
        ids: vec![written],
        reason: DropReason::Closed
    }));
    assert!(events.contains(&Event::RequestFailed {
        id: request,
        reason: RequestFailure::Closed
    }));
    assert_eq!(
        sim.engine.send(sim.now, "late"),
        Err(tether_core::SendError::Closed)
    );
    // Nothing is left to perform a close handshake on: the actions are the driver's to drop.
    sim.engine.abandon(sim.now);
    assert!(sim.engine.poll_event().is_none(), "a no-op once closed");

    // Abandoned during the app's own close handshake: the app's code is kept.
    let mut sim = open_without_acks();
    sim.engine.close(sim.now, 4000, "bye").unwrap();
    assert_eq!(sim.engine.state(), &State::Closing);
    sim.engine.abandon(sim.now);
    assert_eq!(
        sim.engine.state(),
        &State::Closed {
            reason: CloseReason::App { code: 4000 }
        }
    );
}

#[test]
fn send_with_clock_reads_the_clock_only_for_what_is_timed() {
    use std::cell::Cell;
    use tether_core::{Action, Engine};
    let config = Config::builder("ws://127.0.0.1:9000")
        .protocol(Protocol::Raw)
        .build()
        .unwrap();
    let mut engine = Engine::new(config, 1);
    let reads = Cell::new(0);
    let clock = |at: u64| {
        let reads = &reads;
        move || {
            reads.set(reads.get() + 1);
            Instant::from_millis(at)
        }
    };
    // Not open: queued, and timed from the moment it is accepted once it may expire.
    engine
        .send_with_clock(clock(1), "queued", SendOptions::default())
        .unwrap();
    assert_eq!(reads.get(), 1, "not open yet");
    engine.connect(Instant::from_millis(2));
    let Some(Action::Open(open)) = engine.poll_action() else {
        panic!("no open")
    };
    engine.transport_opened(Instant::from_millis(3), open.transport);
    while engine.poll_action().is_some() {}
    engine
        .send_with_clock(clock(4), "untimed", SendOptions::default())
        .unwrap();
    assert_eq!(
        reads.get(),
        1,
        "open, nothing timed: the engine's time stands in"
    );
    assert_eq!(engine.now(), Instant::from_millis(3));
    engine
        .send_with_clock(
            clock(5),
            "with a ttl",
            SendOptions::default().with_ttl(ms(10)),
        )
        .unwrap();
    assert_eq!(reads.get(), 2, "a TTL is timed from now");
    assert_eq!(engine.now(), Instant::from_millis(5));
}
