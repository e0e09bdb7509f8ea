//! Property tests: random sequences of commands, transport inputs (including garbage) and time
//! steps, with the engine's invariants checked after every step.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tether_core::backoff::delay_bounds;
use tether_core::protocol::{PresenceChange, ServerMessage};
use tether_core::{
    Action, BackoffConfig, Config, Engine, Event, Frame, HeartbeatMode, Instant, Jitter, MessageId,
    OutboxStatus, Protocol, SendOptions, SseEvent, State, TokenPlacement, TransportFailure,
    TransportId, Unacked,
};

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Connect,
    Close(u16),
    Drain(u64),
    Send(usize, Option<u64>),
    /// Channel, acknowledged, and an ack timeout in ms (acknowledged only).
    Publish(u8, bool, Option<u64>),
    Request(u64),
    Subscribe(u8),
    Unsubscribe(u8),
    Network(bool),
    Foreground(bool),
    Writable(bool),
    Opened,
    TokenReady,
    TokenFailed,
    RawFrame(Vec<u8>, bool),
    Server(ServerOp),
    Pong(Vec<u8>),
    Closed(Option<u16>, String),
    Failed(Option<u16>),
    Sse(Option<u8>, Option<u64>),
    StaleInput,
    /// The link's socket took this many 1/8ths of what it was handed (review).
    Progress(u8),
    /// A message of this size the driver left unread (`reads_message_of` said no, or not).
    TooLarge(usize),
    /// The app gives up the i-th request it made (review).
    CancelRequest(usize),
    /// The driver stops running the engine (review).
    Abandon,
    /// The platform refuses to open the current transport's URL (review).
    Blocked,
    /// Part of a message arrived (`false`), or the socket took more of ours (`true`).
    PeerSign(bool),
    /// `send_buffer_level` with this many unsent bytes.
    SendBufferLevel(u64),
}

#[derive(Debug, Clone)]
enum ServerOp {
    Message(u8, u64),
    AckRecent(usize),
    AckGarbage,
    Reply(u64),
    Presence(u8, Vec<u8>),
    Subscribed(u8, u64, bool, u8),
    Error(usize),
    Ping,
    Pong(u64),
}

fn server_op() -> impl Strategy<Value = ServerOp> {
    prop_oneof![
        4 => (0u8..3, 0u64..30).prop_map(|(c, o)| ServerOp::Message(c, o)),
        3 => (0usize..8).prop_map(ServerOp::AckRecent),
        1 => Just(ServerOp::AckGarbage),
        1 => (0u64..6).prop_map(ServerOp::Reply),
        1 => (0u8..3, prop::collection::vec(0u8..5, 0..4)).prop_map(|(c, m)| ServerOp::Presence(c, m)),
        2 => (0u8..3, 0u64..30, any::<bool>(), 0u8..2).prop_map(|(c, o, r, e)| ServerOp::Subscribed(c, o, r, e)),
        1 => (0usize..8).prop_map(ServerOp::Error),
        1 => Just(ServerOp::Ping),
        1 => (0u64..5).prop_map(ServerOp::Pong),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let codes = prop::sample::select(vec![
        1000u16, 1001, 1006, 1006, 1006, 1008, 1011, 1012, 1013, 4001, 4004, 4500,
    ]);
    prop_oneof![
        6 => (0u64..8_000).prop_map(Op::Advance),
        2 => Just(Op::Connect),
        1 => prop::sample::select(vec![1000u16, 3000, 1005, 999]).prop_map(Op::Close),
        1 => (0u64..20_000).prop_map(Op::Drain),
        5 => (0usize..300, prop::option::of(0u64..5_000)).prop_map(|(n, t)| Op::Send(n, t)),
        3 => (0u8..3, any::<bool>(), prop::option::of(0u64..6_000))
            .prop_map(|(c, a, t)| Op::Publish(c, a, t.filter(|_| a))),
        1 => (1u64..10_000).prop_map(Op::Request),
        2 => (0u8..3).prop_map(Op::Subscribe),
        1 => (0u8..3).prop_map(Op::Unsubscribe),
        1 => any::<bool>().prop_map(Op::Network),
        1 => any::<bool>().prop_map(Op::Foreground),
        1 => any::<bool>().prop_map(Op::Writable),
        4 => Just(Op::Opened),
        2 => Just(Op::TokenReady),
        1 => Just(Op::TokenFailed),
        2 => (prop::collection::vec(any::<u8>(), 0..40), any::<bool>()).prop_map(|(b, t)| Op::RawFrame(b, t)),
        6 => server_op().prop_map(Op::Server),
        1 => prop::collection::vec(any::<u8>(), 0..10).prop_map(Op::Pong),
        2 => (prop::option::of(codes), prop::sample::select(vec![
            String::new(), "bye".into(), r#"{"reconnect_within_ms":3000}"#.into(),
            r#"{"reconnect":false}"#.into(), "{garbage".into()]))
            .prop_map(|(c, r)| Op::Closed(c, r)),
        2 => prop::option::of(prop::sample::select(vec![401u16, 403, 404, 429, 500, 503])).prop_map(Op::Failed),
        1 => (prop::option::of(0u8..20), prop::option::of(0u64..4_000)).prop_map(|(i, r)| Op::Sse(i, r)),
        1 => Just(Op::StaleInput),
        4 => (0u8..=8).prop_map(Op::Progress),
        1 => (0usize..5_000).prop_map(Op::TooLarge),
        1 => any::<bool>().prop_map(Op::PeerSign),
        1 => (0u64..3).prop_map(|k| Op::SendBufferLevel(k * 1000)),
        2 => (0usize..8).prop_map(Op::CancelRequest),
        1 => Just(Op::Abandon),
        1 => Just(Op::Blocked),
    ]
}

#[derive(Debug, Clone)]
struct Setup {
    tether: bool,
    sse: bool,
    jitter: Jitter,
    token: bool,
    max_messages: usize,
    max_bytes: usize,
    app_pings: bool,
    max_attempts: Option<u32>,
    progress: bool,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        any::<bool>(),
        prop::bool::weighted(0.15),
        prop::sample::select(vec![
            Jitter::None,
            Jitter::Full,
            Jitter::Equal,
            Jitter::Decorrelated,
        ]),
        any::<bool>(),
        1usize..20,
        50usize..3_000,
        any::<bool>(),
        prop::option::weighted(0.15, 1u32..6),
        any::<bool>(),
    )
        .prop_map(
            |(
                tether,
                sse,
                jitter,
                token,
                max_messages,
                max_bytes,
                app_pings,
                max_attempts,
                progress,
            )| {
                Setup {
                    tether,
                    sse,
                    jitter,
                    token,
                    max_messages,
                    max_bytes,
                    app_pings,
                    max_attempts,
                    progress,
                }
            },
        )
}

fn config(s: &Setup, seed: u64) -> Config {
    let url = if s.sse {
        "http://relay/sse/a"
    } else {
        "ws://relay"
    };
    let mut b = Config::builder(url)
        .protocol(if s.tether {
            Protocol::Tether
        } else {
            Protocol::Raw
        })
        .jitter(s.jitter)
        .outbox_max_messages(s.max_messages)
        .outbox_max_bytes(s.max_bytes)
        .max_message_bytes(400)
        .max_attempts(s.max_attempts)
        .heartbeat_interval(Duration::from_secs(3))
        .driver_reports_progress(s.progress)
        .write_batch_bytes(700)
        .seed(seed);
    if s.token {
        b = b.token(TokenPlacement::Query { param: "t".into() });
    }
    if s.app_pings && !s.sse {
        b = b.heartbeat_mode(HeartbeatMode::AppMessage);
    }
    b.build().unwrap()
}

/// Drives one engine through the ops and checks every invariant after each step.
struct Harness {
    engine: Engine,
    setup: Setup,
    now: Instant,
    transport: Option<TransportId>,
    stale: Option<TransportId>,
    token_request: Option<TransportId>,
    wire_ids: Vec<String>,
    request_ids: Vec<String>,
    last_offsets: HashMap<String, u64>,
    state: State,
    /// The server's timing advice in the failure the current op reports, if any.
    advice: Option<Advice>,
    /// The server's minimum for the next attempt (a floor advised with the last reconnect).
    not_before: Option<Instant>,
    /// The code of the app's last `close`: a server's echo of it ends the close handshake
    /// without advice.
    close_code: u16,
    sse_retry_seen: bool,
    /// The state went from `Open` straight to `Connecting`: an event stream's restart, whose
    /// `ReconnectScheduled` (zero delay) must come next.
    restarting: bool,
    /// Acknowledged messages sent with a timeout, and how they have ended so far.
    timed: HashMap<MessageId, Timed>,
    /// Every request accepted, in order, and whether its one outcome came (review).
    requests: Vec<(tether_core::RequestId, bool)>,
    /// Every message id an `Acked` or `Dropped` named (review): each at most once.
    ended_messages: HashSet<MessageId>,
    /// Every message the engine accepted (send or publish), for `check_nothing_waits`.
    accepted: Vec<MessageId>,
    /// What the harness last told the engine about its current transport's backpressure
    /// (a new transport starts writable).
    writable: bool,
    /// Transports told to close, and whether each was released since.
    told_to_close: HashMap<TransportId, bool>,
    /// Transports reported open: only these have a close handshake before their release.
    opened: HashSet<TransportId>,
    /// Transports released while still opening (no close before: there is no handshake).
    released_opening: HashSet<TransportId>,
    /// Bytes of data frames handed to the current transport (as the native link counts them:
    /// `Frame::progress_len`).
    link_handed: u64,
}

/// A server's timing advice, as the default close policy reads it.
#[derive(Debug, Clone, Copy)]
enum Advice {
    /// Spread over a window from now (close 1012, `reconnect_within_ms`).
    Spread(Duration),
    /// Wait at least this long (close 1013, HTTP 429, 503 with Retry-After).
    Floor(Duration),
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// What the harness knows of an acknowledged message sent with a timeout.
#[derive(Debug)]
struct Timed {
    /// When the wait for its acknowledgement ends.
    due: Instant,
    /// The `AckTimedOut` it got, if any.
    timed_out: Option<Unacked>,
    /// An `Acked` or `Dropped` named it.
    ended: bool,
}

const CHANNELS: [&str; 3] = ["a", "b", "c"];

impl Harness {
    fn new(setup: Setup, seed: u64) -> Self {
        Harness {
            engine: Engine::new(config(&setup, seed), seed),
            setup,
            now: Instant::ZERO,
            transport: None,
            stale: None,
            token_request: None,
            wire_ids: Vec::new(),
            request_ids: Vec::new(),
            last_offsets: HashMap::new(),
            told_to_close: HashMap::new(),
            opened: HashSet::new(),
            released_opening: HashSet::new(),
            state: State::Idle,
            advice: None,
            not_before: None,
            close_code: 1000,
            sse_retry_seen: false,
            restarting: false,
            timed: HashMap::new(),
            requests: Vec::new(),
            ended_messages: HashSet::new(),
            accepted: Vec::new(),
            writable: true,
            link_handed: 0,
        }
    }

    fn frame(&mut self, msg: ServerMessage) {
        if let Some(t) = self.transport {
            self.engine
                .frame_received(self.now, t, Frame::Text(msg.encode()));
        }
    }

    fn apply(&mut self, op: Op) {
        let now = self.now;
        let e = &mut self.engine;
        match op {
            Op::Advance(ms) => {
                self.now = self.now + Duration::from_millis(ms);
                self.settle_timers();
                return;
            }
            Op::Connect => e.connect(now),
            Op::Close(code) => {
                let _ = e.close(now, code, "app");
                self.close_code = code;
            }
            Op::Drain(ms) => e.close_after_drain(now, Duration::from_millis(ms)),
            Op::Send(n, ttl) => {
                let opts = SendOptions {
                    ttl: ttl.map(Duration::from_millis),
                    ..SendOptions::default()
                };
                if let Ok(id) = e.send_with(now, "x".repeat(n), opts) {
                    self.accepted.push(id);
                }
            }
            Op::Publish(c, ack, timeout) => {
                let mut opts = if ack {
                    SendOptions::acked()
                } else {
                    SendOptions::unacked()
                };
                if let Some(ms) = timeout {
                    opts = opts.with_timeout(Duration::from_millis(ms));
                }
                let sent = e.publish(now, CHANNELS[c as usize], json!({"n": 1}), opts);
                if let Ok(id) = sent {
                    self.accepted.push(id);
                }
                if let (Ok(id), Some(ms)) = (sent, timeout) {
                    let due = e.now() + Duration::from_millis(ms);
                    let timed = Timed {
                        due,
                        timed_out: None,
                        ended: false,
                    };
                    self.timed.insert(id, timed);
                }
            }
            Op::Request(ms) => {
                if let Ok(id) = e.request(now, json!("q"), Some(Duration::from_millis(ms))) {
                    self.requests.push((id, false));
                }
            }
            Op::CancelRequest(i) => {
                if let Some((id, ended)) = self.requests.get(i).copied() {
                    let cancelled = e.cancel_request(now, id);
                    assert!(!(ended && cancelled), "{id:?} cancelled after it ended");
                }
            }
            Op::Abandon => e.abandon(now),
            Op::Blocked => {
                if let Some(t) = self.transport {
                    e.transport_failed(now, t, TransportFailure::Blocked("blocked".into()));
                }
            }
            Op::Subscribe(c) => {
                let name = CHANNELS[c as usize];
                if !e.channels().any(|ch| ch == name) {
                    self.last_offsets.remove(name);
                }
                let _ = e.subscribe(now, name);
            }
            Op::Unsubscribe(c) => {
                let _ = e.unsubscribe(now, CHANNELS[c as usize]);
                self.last_offsets.remove(CHANNELS[c as usize]);
            }
            Op::Network(online) => e.network_changed(now, online),
            Op::Foreground(fg) => e.set_foreground(now, fg),
            Op::Progress(eighths) => {
                if let Some(t) = self.transport {
                    e.transport_progress(now, t, self.link_handed * eighths as u64 / 8);
                }
            }
            Op::Writable(w) => {
                if let Some(t) = self.transport {
                    e.transport_writable(now, t, w);
                    self.writable = w;
                }
            }
            Op::TooLarge(size) => {
                if let Some(t) = self.transport {
                    e.frame_too_large(now, t, size);
                }
            }
            Op::PeerSign(acknowledged) => {
                if let Some(t) = self.transport {
                    match acknowledged {
                        true => e.bytes_acknowledged(now, t),
                        false => e.bytes_received(now, t),
                    }
                }
            }
            Op::SendBufferLevel(unsent) => {
                if let Some(t) = self.transport {
                    e.send_buffer_level(now, t, unsent);
                }
            }
            Op::Opened => {
                if let Some(t) = self.transport {
                    let was_open = e.state().is_open();
                    e.transport_opened(now, t);
                    self.opened.insert(t);
                    if !was_open && e.state().is_open() {
                        self.writable = true;
                    }
                }
            }
            Op::TokenReady => {
                if let Some(t) = self.token_request {
                    e.token_ready(now, t, "tok".into());
                }
            }
            Op::TokenFailed => {
                if let Some(t) = self.token_request {
                    e.token_failed(now, t, "no");
                }
            }
            Op::RawFrame(bytes, text) => {
                if let Some(t) = self.transport {
                    let frame = if text {
                        Frame::Text(String::from_utf8_lossy(&bytes).into_owned())
                    } else {
                        Frame::Binary(bytes)
                    };
                    e.frame_received(now, t, frame);
                }
            }
            Op::Server(s) => self.server(s),
            Op::Pong(p) => {
                if let Some(t) = self.transport {
                    e.pong_received(now, t, &p);
                }
            }
            Op::Closed(code, reason) => {
                if let Some(t) = self.transport {
                    // What the default close policy reads in this close (the reasons the
                    // strategy draws: only the window is advice; `reconnect: false` stops).
                    let closing = self.state == State::Closing;
                    self.advice = match code {
                        None => None,
                        // The end of the app's close handshake: only a server's own code
                        // (1013 instead of the echo) is advice.
                        Some(code) if closing && code == self.close_code => None,
                        Some(_) if reason.contains("within") => Some(Advice::Spread(secs(3))),
                        Some(1012) => Some(Advice::Spread(secs(5))),
                        Some(1013) => Some(Advice::Floor(secs(5))),
                        Some(_) => None,
                    };
                    e.transport_closed(now, t, code, &reason);
                }
            }
            Op::Failed(status) => {
                if let Some(t) = self.transport {
                    let failure = match status {
                        Some(status) => {
                            // A failure ends the app's close handshake without advice.
                            let closing = self.state == State::Closing;
                            self.advice = match status {
                                _ if closing => None,
                                429 => Some(Advice::Floor(secs(5))),
                                503 => Some(Advice::Floor(secs(2))),
                                _ => None,
                            };
                            TransportFailure::Http {
                                status,
                                retry_after: (status == 503).then(|| Duration::from_secs(2)),
                                location: None,
                            }
                        }
                        None => TransportFailure::Io("reset".into()),
                    };
                    e.transport_failed(now, t, failure);
                }
            }
            Op::Sse(id, retry) => {
                if let Some(t) = self.transport {
                    self.sse_retry_seen |= retry.is_some();
                    e.sse_event_received(
                        now,
                        t,
                        SseEvent {
                            id: id.map(|i| i.to_string()),
                            event: "message".into(),
                            data: json!({"type":"message","channel":"a","offset": id.unwrap_or(0),"payload":1}).to_string(),
                            retry: retry.map(Duration::from_millis),
                        },
                    );
                }
            }
            Op::StaleInput => {
                if let Some(t) = self.stale {
                    e.transport_closed(now, t, Some(1011), "stale");
                    e.frame_received(now, t, Frame::from("stale"));
                    e.transport_opened(now, t);
                }
            }
        }
        self.drain();
        // Advice belongs to the failure this op reported, whose reconnect was just drained.
        self.advice = None;
    }

    fn server(&mut self, op: ServerOp) {
        let ch = |c: u8| CHANNELS[c as usize % 3].to_string();
        let msg = match op {
            ServerOp::Message(c, o) => ServerMessage::Message {
                channel: Some(ch(c)),
                offset: Some(o),
                id: None,
                payload: json!(o),
                ts: None,
            },
            ServerOp::AckRecent(i) => match self.wire_ids.iter().rev().nth(i) {
                Some(id) => ServerMessage::Ack {
                    id: id.clone(),
                    offset: None,
                },
                None => return,
            },
            ServerOp::AckGarbage => ServerMessage::Ack {
                id: "nope".into(),
                offset: None,
            },
            ServerOp::Reply(i) => ServerMessage::Reply {
                id: self
                    .request_ids
                    .get(i as usize)
                    .cloned()
                    .unwrap_or_else(|| format!("q{i}")),
                payload: json!(null),
            },
            ServerOp::Presence(c, members) => ServerMessage::Presence {
                channel: ch(c),
                change: PresenceChange::Snapshot(members.iter().map(|m| format!("m{m}")).collect()),
            },
            ServerOp::Subscribed(c, o, r, e) => ServerMessage::Subscribed {
                channel: ch(c),
                offset: o,
                epoch: Some(format!("e{e}")),
                recovered: r,
            },
            ServerOp::Error(i) => ServerMessage::Error {
                code: "nope".into(),
                message: "refused".into(),
                id: self.wire_ids.iter().rev().nth(i).cloned(),
            },
            ServerOp::Ping => ServerMessage::Ping { id: None },
            ServerOp::Pong(i) => ServerMessage::Pong {
                id: Some(i.to_string()),
            },
        };
        self.frame(msg);
    }

    /// Fires due timers until the engine has nothing due at `now` (bounded: no hot loop).
    fn settle_timers(&mut self) {
        for _ in 0..1_000 {
            match self.engine.poll_timeout() {
                Some(t) if t <= self.now => {
                    self.engine.handle_timeout(self.now);
                    self.drain();
                }
                _ => {
                    self.check_deadlines();
                    self.check_nothing_waits();
                    return;
                }
            }
        }
        panic!("timers did not settle at {:?}: hot loop", self.now);
    }

    fn drain(&mut self) {
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Open(o) => {
                    self.stale = self.transport.replace(o.transport).or(self.stale);
                    self.link_handed = 0;
                }
                Action::FetchToken { transport, .. } => self.token_request = Some(transport),
                Action::Close { transport, .. } => {
                    self.told_to_close.insert(transport, false);
                }
                // Only a transport told to close is released, and once; or, without a close,
                // one still opening (it has no close handshake), once.
                Action::Release { transport } => match self.told_to_close.get_mut(&transport) {
                    Some(released) => {
                        assert!(!*released, "{transport} released twice");
                        *released = true;
                    }
                    None => {
                        assert!(
                            !self.opened.contains(&transport),
                            "{transport} released without a close"
                        );
                        assert!(
                            self.released_opening.insert(transport),
                            "{transport} released twice"
                        );
                    }
                },
                Action::Send { frame, .. } => {
                    self.link_handed += frame.progress_len();
                    let Frame::Text(t) = frame else {
                        continue;
                    };
                    if let Ok(tether_core::protocol::ClientMessage::Publish { id, .. }) =
                        tether_core::protocol::ClientMessage::decode(&t)
                    {
                        self.wire_ids.push(id);
                    } else if let Ok(tether_core::protocol::ClientMessage::Request { id, .. }) =
                        tether_core::protocol::ClientMessage::decode(&t)
                    {
                        self.request_ids.push(id);
                    }
                }
                _ => {}
            }
        }
        while let Some(event) = self.engine.poll_event() {
            self.check_event(event);
        }
        self.check_invariants();
    }

    fn check_event(&mut self, event: Event) {
        match event {
            Event::StateChanged { from, to } => {
                assert_eq!(from, self.state, "from must be the previous state");
                assert!(legal(&from, &to), "illegal transition {from:?} -> {to:?}");
                assert!(!self.restarting, "a restart without its ReconnectScheduled");
                if let (State::Open, State::Connecting { .. }) = (&from, &to) {
                    assert!(self.setup.sse, "only an event stream is restarted");
                    self.restarting = true;
                }
                // Nothing cuts a wait (network back, foreground, connect) below the server's
                // minimum, nor does a close and a fresh `connect`.
                if let (
                    State::Waiting { .. } | State::Closed { .. },
                    State::Connecting { .. },
                    Some(at),
                ) = (&from, &to, self.not_before)
                {
                    let now = self.engine.now();
                    assert!(now >= at, "attempt at {now:?} before the server's {at:?}");
                }
                if matches!(to, State::Connecting { .. }) {
                    self.not_before = None;
                }
                // Closed by the failure that gave a minimum (a drain it ended, the last
                // attempt): the minimum outlives the close. A refusal that stops the client
                // (`reconnect: false`) leaves a later `connect` to the app.
                if let (State::Closed { reason }, Some(Advice::Floor(floor))) = (&to, self.advice) {
                    if !matches!(reason, tether_core::CloseReason::Refused { .. }) {
                        self.not_before = Some(self.engine.now() + floor);
                    }
                }
                self.state = to;
            }
            Event::ReconnectScheduled {
                attempt,
                delay,
                cause,
            } if std::mem::take(&mut self.restarting) => {
                // An attempt now, not a wait, and no failure counted.
                assert_eq!(
                    (attempt, delay, cause),
                    (
                        1,
                        Duration::ZERO,
                        tether_core::DisconnectCause::StreamRestarted
                    )
                );
                self.not_before = None;
            }
            Event::ReconnectScheduled {
                attempt,
                delay,
                cause,
            } => {
                assert_ne!(
                    cause,
                    tether_core::DisconnectCause::StreamRestarted,
                    "without a restart"
                );
                let backoff = self.engine.config().backoff().clone();
                let server_cap = self.engine.config().close_policy().max_server_delay;
                assert!(
                    delay <= backoff.max.max(server_cap + server_cap / 4),
                    "{delay:?}"
                );
                // This is the (attempt-1)-th wait after a failed first attempt, or the
                // attempt-th after a stable connection dropped: the curve's own range.
                let lo = delay_bounds(&backoff, (attempt - 1).max(1)).0;
                let hi = delay_bounds(&backoff, attempt).1;
                // A fresh start after a close waits for what is left of a minimum the server
                // set before it (with the spread a minimum gets).
                let now = self.engine.now();
                let kept = self.not_before.filter(|at| *at > now);
                let (lo, hi) = match kept {
                    Some(at) => {
                        let floor = at.saturating_duration_since(now);
                        (lo.max(floor), hi.max(floor + floor / 4))
                    }
                    None => (lo, hi),
                };
                // Server advice may shorten the curve only for the first wait after a stable
                // connection (attempt 1: no failure since the reset), and only a window; a
                // minimum, or a window after failures, is combined with it, never below it.
                let (lo, hi) = match self.advice {
                    Some(Advice::Spread(window)) if attempt == 1 => (Duration::ZERO, window),
                    Some(Advice::Spread(window)) => (lo, hi.max(window)),
                    Some(Advice::Floor(floor)) => (lo.max(floor), hi.max(floor + floor / 4)),
                    // The SSE `retry:` seen earlier is standing advice: a floor of up to 4 s.
                    None if self.sse_retry_seen => (lo, hi.max(secs(5))),
                    None => (lo, hi),
                };
                assert!(
                    delay >= lo && delay <= hi,
                    "attempt {attempt} ({cause:?}, {:?}): {delay:?} outside [{lo:?}, {hi:?}] ({:?})",
                    self.advice,
                    self.setup.jitter
                );
                self.not_before = match self.advice {
                    Some(Advice::Floor(floor)) => Some(now + floor),
                    _ => kept,
                };
            }
            Event::Subscribed {
                channel,
                offset,
                recovered: false,
            } => {
                self.last_offsets.insert(channel, offset);
            }
            Event::AckTimedOut { id, status } => {
                let now = self.engine.now();
                let t = self
                    .timed
                    .get_mut(&id)
                    .expect("a timeout only for a send that had one");
                assert!(!t.ended, "{id:?} timed out after it ended");
                assert!(t.timed_out.is_none(), "{id:?} timed out twice");
                assert!(
                    now >= t.due,
                    "{id:?} timed out early: {now:?} < {:?}",
                    t.due
                );
                t.timed_out = Some(status);
            }
            Event::Replied { id, .. } | Event::RequestFailed { id, .. } => {
                let r = self
                    .requests
                    .iter_mut()
                    .find(|(r, _)| *r == id)
                    .expect("an outcome for a request made");
                assert!(!r.1, "{id:?} ended twice");
                r.1 = true;
            }
            Event::Acked { id, .. } => {
                assert!(self.ended_messages.insert(id), "{id:?} ended twice");
                if let Some(t) = self.timed.get_mut(&id) {
                    assert!(!t.ended, "{id:?} ended twice");
                    assert_ne!(
                        t.timed_out,
                        Some(Unacked::Expired),
                        "{id:?} acked after it expired"
                    );
                    t.ended = true;
                }
            }
            Event::Dropped { ids, reason } => {
                for id in ids {
                    assert!(self.ended_messages.insert(id), "{id:?} ended twice");
                    if let Some(t) = self.timed.get_mut(&id) {
                        assert!(!t.ended, "{id:?} ended twice");
                        if t.timed_out == Some(Unacked::Expired) {
                            assert_eq!(reason, tether_core::DropReason::Expired, "{id:?}");
                        }
                        t.ended = true;
                    }
                }
            }
            Event::Message(m) => {
                // Offsets are deduplicated on subscribed channels (others pass through), and
                // one past a gap is held back for the replay: each is the next one.
                let subscribed = |c: &String| self.engine.channels().any(|ch| ch == c);
                if let (Some(c), Some(o)) = (m.channel.filter(subscribed), m.offset) {
                    if let Some(last) = self.last_offsets.get(&c) {
                        assert!(o > *last, "duplicate offset {o} on {c} (last {last})");
                        assert_eq!(o - last, 1, "offset {o} on {c} skips some (last {last})");
                    }
                    self.last_offsets.insert(c, o);
                }
            }
            _ => {}
        }
    }

    fn check_invariants(&self) {
        let e = &self.engine;
        let s = e.stats();
        if self.setup.progress {
            // What the socket is still taking is outside the bounds: at most the write batch
            // (700) plus the frame that crossed it (400), and as many messages as the bound.
            assert!(e.outbox_bytes() <= self.setup.max_bytes + 700 + 400);
            assert!(e.outbox_len() <= 2 * self.setup.max_messages);
        } else {
            assert!(e.outbox_len() <= self.setup.max_messages);
            assert!(e.outbox_bytes() <= self.setup.max_bytes);
        }
        let pending_messages = (e.outbox_len() - e.pending_requests()) as u64;
        assert_eq!(
            s.messages_accepted,
            s.messages_settled + s.dropped_total() + pending_messages,
            "accepted = settled + dropped + pending ({s:?})"
        );
        assert_eq!(s.undelivered(), s.dropped_total() + pending_messages);
        if e.state().is_closed() {
            assert_eq!(e.outbox_len(), 0, "a closed engine holds nothing");
            // Its one timer: releasing the transport it told to close, if that transport has
            // not ended within the close timeout (the default, 2 s).
            if let Some(at) = e.poll_timeout() {
                assert!(at <= self.now + Duration::from_secs(2), "{at:?}");
                assert!(
                    self.told_to_close.values().any(|released| !released),
                    "a closed engine's only timer is a release"
                );
            }
        }
        assert_eq!(e.state(), &self.state);
        let open_requests = self.requests.iter().filter(|(_, ended)| !ended).count();
        assert_eq!(
            e.pending_requests(),
            open_requests,
            "requests without an outcome"
        );
        // An `Expired` timeout's `Dropped` comes in the same drain.
        for (id, t) in &self.timed {
            if t.timed_out == Some(Unacked::Expired) {
                assert!(t.ended, "{id:?} expired without its Dropped");
            }
        }
    }

    /// Once the timers have settled at the harness's clock, every wait whose time has come has
    /// ended: acknowledged, dropped, or told it timed out. (The harness's clock, not the
    /// engine's: a deadline `poll_timeout` forgot would leave the engine's clock behind.)
    /// Once the timers have settled, a message is not left queued while it could be written:
    /// the connection open and writable (a driver that reports its socket's progress may hold
    /// the rest back until the socket takes more, so not there).
    fn check_nothing_waits(&self) {
        let could_write = !self.setup.progress
            && !self.setup.sse
            && self.writable
            && self.engine.state().is_open();
        if !could_write {
            return;
        }
        for id in &self.accepted {
            assert_ne!(
                self.engine.outbox_status(*id),
                Some(OutboxStatus::Queued),
                "{id:?} queued on an open, writable connection at {:?}",
                self.now
            );
        }
    }

    fn check_deadlines(&self) {
        for (id, t) in &self.timed {
            if self.now >= t.due && !t.ended {
                assert!(
                    t.timed_out.is_some(),
                    "{id:?}: due at {:?}, now {:?}, no event",
                    t.due,
                    self.now
                );
            }
        }
    }
}

fn legal(from: &State, to: &State) -> bool {
    use State::*;
    // A wait cut short while the server's minimum has not passed moves to that minimum.
    if let (
        Waiting { attempt, until },
        Waiting {
            attempt: a,
            until: u,
        },
    ) = (from, to)
    {
        return attempt == a && u < until;
    }
    matches!(
        (from, to),
        (Idle, Connecting { .. })
            | (Idle, Closed { .. })
            | (Connecting { .. }, Open)
            | (Connecting { .. }, Waiting { .. })
            | (Connecting { .. }, Closed { .. })
            | (Open, Waiting { .. })
            // An event stream's restart (checked with its `ReconnectScheduled`).
            | (Open, Connecting { attempt: 1 })
            | (Open, Closing)
            | (Open, Closed { .. })
            | (Closing, Closed { .. })
            | (Waiting { .. }, Connecting { .. })
            | (Waiting { .. }, Closed { .. })
            | (Closed { .. }, Connecting { .. })
            // A restart the app asked for during a close, which ended with a server's
            // minimum still ahead: a fresh start, waiting for it.
            | (Closed { .. }, Waiting { attempt: 1, .. })
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn random_inputs_keep_every_invariant(setup in setup(), seed in any::<u64>(), ops in prop::collection::vec(op(), 1..250)) {
        let mut h = Harness::new(setup, seed);
        for op in ops {
            h.apply(op);
        }
        h.now = h.now + Duration::from_secs(3_600);
        h.settle_timers();
        // Every request has a timeout: each has had its one outcome by now.
        assert!(h.requests.iter().all(|(_, ended)| *ended), "{:?}", h.requests);
    }
}

/// The random ops rarely reach a stable event stream with a position followed by an online
/// report: the restart it makes is driven here on purpose, through every invariant.
#[test]
fn an_event_stream_restart_keeps_every_invariant() {
    for jitter in [Jitter::None, Jitter::Full] {
        let setup = Setup {
            tether: false,
            sse: true,
            jitter,
            token: true,
            max_messages: 5,
            max_bytes: 1_000,
            app_pings: false,
            max_attempts: Some(3),
            progress: false,
        };
        let mut h = Harness::new(setup, 7);
        for op in [
            Op::Connect,
            Op::TokenReady,
            Op::Opened,
            Op::Sse(Some(3), Some(1_000)),
            Op::Advance(5_100),
            Op::Network(true),
            Op::TokenReady,
            Op::Opened,
            Op::Sse(Some(4), None),
            Op::Advance(6_000),
            Op::Foreground(false),
            Op::Advance(30_000),
            Op::Foreground(true),
            Op::TokenFailed,
            Op::Advance(8_000),
            Op::TokenReady,
            Op::Opened,
            Op::Advance(1_000),
        ] {
            h.apply(op);
        }
        h.now = h.now + Duration::from_secs(3_600);
        h.settle_timers();
        assert!(h.engine.stats().reconnects >= 2, "{:?}", h.engine.stats());
    }
}

/// Full jitter spreads a crowd: 10,000 clients dropped at the same instant retry uniformly over
/// the first wait's scale (500 ms by default), so no 100 ms bucket holds much more than the mean. Without jitter every
/// client lands in the same bucket — which shows the measure can fail.
#[test]
fn full_jitter_spreads_ten_thousand_clients_evenly() {
    // The first wait's buckets, plus one for anything past it.
    let used_buckets = (BackoffConfig::default().initial.as_millis() / 100) as usize;
    let peak_to_mean = |jitter: Jitter| {
        let mut buckets = vec![0u32; used_buckets + 1];
        for seed in 0..10_000u64 {
            let config = Config::builder("ws://relay")
                .jitter(jitter)
                .seed(seed)
                .build()
                .unwrap();
            let mut engine = Engine::new(config, seed);
            engine.connect(Instant::ZERO);
            let Some(Action::Open(open)) = engine.poll_action() else {
                panic!("no open")
            };
            engine.transport_failed(
                Instant::ZERO,
                open.transport,
                TransportFailure::Io("down".into()),
            );
            let delay = std::iter::from_fn(|| engine.poll_event())
                .find_map(|e| match e {
                    Event::ReconnectScheduled { delay, .. } => Some(delay),
                    _ => None,
                })
                .unwrap();
            buckets[(delay.as_millis() as usize / 100).min(used_buckets)] += 1;
        }
        let used = &buckets[..used_buckets];
        let mean = used.iter().sum::<u32>() as f64 / used.len() as f64;
        *buckets.iter().max().unwrap() as f64 / mean
    };
    let full = peak_to_mean(Jitter::Full);
    let none = peak_to_mean(Jitter::None);
    assert!(full < 1.15, "full jitter peak/mean {full}");
    assert!(none > 5.0, "no jitter must pile up: {none}");
}
