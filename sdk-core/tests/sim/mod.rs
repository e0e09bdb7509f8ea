//! A deterministic simulator for scenario tests: one engine, a scripted server and a link with
//! latency, all in virtual time with a hard step cap.
//!
//! The simulated server speaks raw echo or a small in-memory version of the Tether protocol
//! (channels with offsets and an epoch, acks with dedupe by id, replay on resubscribe,
//! presence snapshots, request/reply, ping/pong). Its [`Behaviour`] can be switched at any
//! moment to model a restart, an outage, a black hole, an accept-then-close server, or HTTP
//! refusals.
#![allow(dead_code, clippy::unwrap_used)]

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;
use tether_core::protocol::{ClientMessage, PresenceChange, ServerMessage};
use tether_core::{
    Action, Config, Engine, Event, Frame, Instant, OpenRequest, SseEvent, TransportFailure,
    TransportId,
};

/// How the server treats new connections (and, for `BlackHole`, the current one).
#[derive(Debug, Clone, PartialEq)]
pub enum Behaviour {
    /// Accepts and answers.
    Normal,
    /// Nothing listens: attempts fail at once.
    Down,
    /// Answers the handshake with an HTTP status.
    Http {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// Accepts, then closes after `after` with `code`.
    AcceptThenClose {
        after: Duration,
        code: Option<u16>,
        reason: String,
    },
    /// Accepts (or keeps the current connection) but never answers anything again.
    BlackHole,
    /// Accepts but never completes the handshake.
    Hang,
    /// The platform refuses to open the URL: the driver's open fails at once, inside the call
    /// (a browser's `SecurityError` from the `WebSocket` constructor).
    Blocked,
}

/// The platform's words for a URL it refuses to open ([`Behaviour::Blocked`]), as Chromium's
/// `WebSocket` constructor throws them from an `https://` page.
pub const BLOCKED: &str = "Failed to construct 'WebSocket': An insecure WebSocket connection \
    may not be initiated from a page loaded over HTTPS.";

/// Something scheduled to reach the engine.
#[derive(Debug, Clone)]
enum Input {
    Opened,
    Frame(Frame),
    Sse(SseEvent),
    Pong(Vec<u8>),
    Closed(Option<u16>, String),
    Failed(TransportFailure),
    /// A frame arriving at the server.
    ToServer(Frame),
    /// The client's close frame arriving at the server (with `answers_close`).
    CloseToServer(u16),
}

#[derive(Debug)]
struct Scheduled {
    at: Instant,
    seq: u64,
    transport: TransportId,
    input: Input,
}

/// In-memory channel state of the simulated Tether server.
#[derive(Debug, Default)]
pub struct SimChannel {
    pub history: Vec<(u64, Value, String)>,
    pub members: BTreeSet<String>,
}

/// The scripted server.
#[derive(Debug)]
pub struct Server {
    pub behaviour: Behaviour,
    /// Tether protocol (true) or raw echo (false).
    pub tether: bool,
    /// Whether raw mode echoes frames back.
    pub echo: bool,
    /// Whether requests are answered.
    pub answer_requests: bool,
    /// Whether acks are sent for publishes.
    pub send_acks: bool,
    /// Whether pings (frames and app messages) are answered.
    pub answer_pings: bool,
    pub epoch: String,
    pub channels: BTreeMap<String, SimChannel>,
    pub seen_ids: HashMap<String, u64>,
    /// Every frame the server received, in order, with its arrival time.
    pub received: Vec<(Instant, Frame)>,
    /// Every open request the engine made, with its time.
    pub opens: Vec<(Instant, OpenRequest)>,
    /// Clients who said hello (client_id, token).
    pub hellos: Vec<(String, Option<String>)>,
    /// The server's current connection.
    pub conn: Option<TransportId>,
    pub subscribed: BTreeSet<String>,
    /// Extra presence members the server reports besides the client itself.
    pub others_present: BTreeSet<String>,
    /// When set, a resubscribe also replays this many messages the client already has.
    pub replay_overlap: u64,
    /// When set, a frame larger than this closes the connection with 1009 (message too big),
    /// unprocessed.
    pub max_frame: Option<usize>,
    /// A hostile server: every `subscribed` says `recovered: true`, whatever the resume (the
    /// offset and the replay are still the honest ones).
    pub lie_recovered: bool,
    /// A server that never resumes: every `subscribed` says `recovered: false` from offset 0
    /// of the same epoch, and its whole retained history is replayed.
    pub never_resumes: bool,
    /// Whether the client's close frame travels to the server behind what the client wrote
    /// before it, and is answered (a close handshake, as a real server has). Off, the server
    /// forgets the connection when the client closes, and the close ends at its timeout.
    pub answers_close: bool,
}

impl Server {
    fn new(tether: bool) -> Self {
        Server {
            behaviour: Behaviour::Normal,
            tether,
            echo: true,
            answer_requests: true,
            send_acks: true,
            answer_pings: true,
            answers_close: false,
            epoch: "epoch-1".into(),
            channels: BTreeMap::new(),
            seen_ids: HashMap::new(),
            received: Vec::new(),
            opens: Vec::new(),
            hellos: Vec::new(),
            conn: None,
            subscribed: BTreeSet::new(),
            others_present: BTreeSet::new(),
            replay_overlap: 0,
            max_frame: None,
            lie_recovered: false,
            never_resumes: false,
        }
    }

    /// Publishes from another client: stores it and returns the message to push to our
    /// client if it is subscribed.
    pub fn store(&mut self, channel: &str, payload: Value, id: &str) -> (u64, ServerMessage) {
        let ch = self.channels.entry(channel.to_owned()).or_default();
        let offset = ch.history.last().map_or(1, |m| m.0 + 1);
        ch.history.push((offset, payload.clone(), id.to_owned()));
        (
            offset,
            ServerMessage::Message {
                channel: Some(channel.to_owned()),
                offset: Some(offset),
                id: Some(id.to_owned()),
                payload,
                ts: None,
            },
        )
    }

    pub fn head(&self, channel: &str) -> u64 {
        self.channels
            .get(channel)
            .and_then(|c| c.history.last().map(|m| m.0))
            .unwrap_or(0)
    }

    /// The server's answers to one client frame.
    fn handle(&mut self, frame: &Frame) -> Vec<Frame> {
        if !self.tether {
            return match frame {
                Frame::Text(t) if t == "ping" && self.answer_pings => vec![Frame::from("pong")],
                other if self.echo => vec![other.clone()],
                _ => vec![],
            };
        }
        let Frame::Text(text) = frame else {
            return vec![];
        };
        let Ok(msg) = ClientMessage::decode(text) else {
            return vec![Frame::Text(
                ServerMessage::Error {
                    code: "bad_frame".into(),
                    message: "undecodable".into(),
                    id: None,
                }
                .encode(),
            )];
        };
        let out = |m: ServerMessage| Frame::Text(m.encode());
        match msg {
            ClientMessage::Hello {
                client_id, token, ..
            } => {
                self.hellos.push((client_id, token));
                vec![]
            }
            ClientMessage::Subscribe {
                channel,
                since,
                epoch,
            } => {
                self.subscribed.insert(channel.clone());
                let head = self.head(&channel);
                let same_epoch =
                    since.is_some_and(|s| s <= head) && epoch.as_ref() == Some(&self.epoch);
                // A history trimmed past `since` (tests remove its oldest entries) resumes as
                // the relay does: from just before the oldest kept, all of it replayed.
                let oldest = self
                    .channels
                    .get(&channel)
                    .and_then(|c| c.history.first())
                    .map_or(head + 1, |m| m.0);
                let trimmed =
                    same_epoch && since.is_some_and(|s| s + 1 < oldest) || self.never_resumes;
                let recovered = same_epoch && !trimmed;
                let mut frames = vec![out(ServerMessage::Subscribed {
                    channel: channel.clone(),
                    offset: if trimmed { oldest - 1 } else { head },
                    epoch: Some(self.epoch.clone()),
                    recovered: recovered || self.lie_recovered,
                })];
                if recovered || trimmed {
                    let from = match since {
                        Some(s) if recovered => s.saturating_sub(self.replay_overlap),
                        _ => 0,
                    };
                    if let Some(ch) = self.channels.get(&channel) {
                        for (offset, payload, id) in &ch.history {
                            if *offset > from {
                                frames.push(out(ServerMessage::Message {
                                    channel: Some(channel.clone()),
                                    offset: Some(*offset),
                                    id: Some(id.clone()),
                                    payload: payload.clone(),
                                    ts: None,
                                }));
                            }
                        }
                    }
                }
                let mut members = self.others_present.clone();
                if let Some((me, _)) = self.hellos.last() {
                    members.insert(me.clone());
                }
                frames.push(out(ServerMessage::Presence {
                    channel,
                    change: PresenceChange::Snapshot(members.into_iter().collect()),
                }));
                frames
            }
            ClientMessage::Unsubscribe { channel } => {
                self.subscribed.remove(&channel);
                vec![out(ServerMessage::Unsubscribed { channel })]
            }
            ClientMessage::Publish {
                id,
                channel,
                payload,
                ack,
            } => {
                let mut frames = Vec::new();
                let offset = match (&channel, self.seen_ids.get(&id)) {
                    (_, Some(offset)) => Some(*offset),
                    (Some(ch), None) => {
                        let (offset, msg) = self.store(ch, payload, &id);
                        self.seen_ids.insert(id.clone(), offset);
                        if self.subscribed.contains(ch) {
                            frames.push(out(msg));
                        }
                        Some(offset)
                    }
                    (None, None) => {
                        frames.push(out(ServerMessage::Message {
                            channel: None,
                            offset: None,
                            id: Some(id.clone()),
                            payload,
                            ts: None,
                        }));
                        None
                    }
                };
                if ack && self.send_acks {
                    frames.push(out(ServerMessage::Ack { id, offset }));
                }
                frames
            }
            ClientMessage::Request { id, payload, .. } if self.answer_requests => {
                vec![out(ServerMessage::Reply {
                    id,
                    payload: json!({"echo": payload}),
                })]
            }
            ClientMessage::Ping { id } if self.answer_pings => {
                vec![out(ServerMessage::Pong { id: Some(id) })]
            }
            _ => vec![],
        }
    }
}

/// Engine + server + link, stepped in virtual time.
pub struct Sim {
    pub engine: Engine,
    pub server: Server,
    pub now: Instant,
    /// One-way latency of the link.
    pub latency: Duration,
    /// Every event the engine emitted, with the time it was drained.
    pub events: Vec<(Instant, Event)>,
    /// Tokens handed out by the simulated token provider, with the `refresh` flag it got.
    pub token_requests: Vec<(u32, bool)>,
    /// When true, the token provider fails.
    pub token_fails: bool,
    /// Every `Close` action, with its time.
    pub closes: Vec<(Instant, TransportId)>,
    /// Every `Release` action, with its time.
    pub releases: Vec<(Instant, TransportId)>,
    queue: Vec<Scheduled>,
    seq: u64,
    steps: u64,
    /// A large frame whose bytes are arriving (see [`Sim::server_trickle`]).
    trickle: Option<Trickle>,
    /// When the simulated driver last fed the engine an input from the transport, or wrote a
    /// ping on it: bytes that arrived before then are not reported as `bytes_received`.
    bytes_noted: Instant,
}

/// The bytes of one large frame arriving steadily over a slow link, from `from` to `until`.
#[derive(Debug, Clone, Copy)]
struct Trickle {
    transport: TransportId,
    from: Instant,
    until: Instant,
    /// Whether the frame completes at `until` (else the bytes just stop: the link died).
    completes: bool,
}

/// Hard cap on loop iterations in one `run_*` call: a hot loop fails the test, not the machine.
const STEP_CAP: u64 = 200_000;

impl Sim {
    pub fn new(config: Config, tether: bool) -> Self {
        Sim {
            engine: Engine::new(config, 7),
            server: Server::new(tether),
            now: Instant::ZERO,
            latency: Duration::from_millis(10),
            events: Vec::new(),
            token_requests: Vec::new(),
            token_fails: false,
            closes: Vec::new(),
            releases: Vec::new(),
            queue: Vec::new(),
            seq: 0,
            steps: 0,
            trickle: None,
            bytes_noted: Instant::ZERO,
        }
    }

    pub fn raw(url: &str) -> Self {
        Self::new(Config::builder(url).seed(1).build().unwrap(), false)
    }

    fn schedule(&mut self, delay: Duration, transport: TransportId, input: Input) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at: self.now + delay,
            seq: self.seq,
            transport,
            input,
        });
    }

    /// Time advanced so far, as a Duration.
    pub fn elapsed(&self) -> Duration {
        self.now.saturating_duration_since(Instant::ZERO)
    }

    /// Drains the engine's outputs, performing actions.
    fn drain(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(action) = self.engine.poll_action() {
                progressed = true;
                self.perform(action);
            }
            while let Some(event) = self.engine.poll_event() {
                progressed = true;
                self.events.push((self.now, event));
            }
            if !progressed {
                break;
            }
        }
    }

    fn perform(&mut self, action: Action) {
        match action {
            Action::FetchToken {
                transport,
                attempt,
                refresh,
            } => {
                self.token_requests.push((attempt, refresh));
                if self.token_fails {
                    self.engine
                        .token_failed(self.now, transport, "provider down");
                } else {
                    let token = format!("tok{}", self.token_requests.len());
                    self.engine.token_ready(self.now, transport, token);
                }
            }
            Action::Open(req) => {
                let t = req.transport;
                self.server.opens.push((self.now, *req));
                let lat = self.latency;
                match self.server.behaviour.clone() {
                    Behaviour::Down => self.schedule(
                        lat,
                        t,
                        Input::Failed(TransportFailure::Io("connection refused".into())),
                    ),
                    Behaviour::Http {
                        status,
                        retry_after,
                    } => self.schedule(
                        lat,
                        t,
                        Input::Failed(TransportFailure::Http {
                            status,
                            retry_after,
                            location: None,
                        }),
                    ),
                    Behaviour::Hang => {}
                    Behaviour::Blocked => {
                        let failure = TransportFailure::Blocked(BLOCKED.into());
                        self.engine.transport_failed(self.now, t, failure);
                    }
                    Behaviour::AcceptThenClose {
                        after,
                        code,
                        reason,
                    } => {
                        self.server.conn = Some(t);
                        self.schedule(lat, t, Input::Opened);
                        self.schedule(lat + after, t, Input::Closed(code, reason));
                    }
                    Behaviour::Normal | Behaviour::BlackHole => {
                        self.server.conn = Some(t);
                        self.server.subscribed.clear();
                        self.schedule(lat * 2, t, Input::Opened);
                    }
                }
            }
            Action::Send { transport, frame } => {
                if self.server.conn == Some(transport)
                    && self.server.behaviour != Behaviour::BlackHole
                {
                    self.schedule(self.latency, transport, Input::ToServer(frame));
                }
            }
            Action::Ping { transport, payload } => {
                // As the native driver: bytes that came before the ping do not answer it.
                self.bytes_noted = self.now;
                // A server in the middle of a frame answers after it (RFC 6455 §5.4).
                let mut delay = self.latency * 2;
                if let Some(t) = self.trickle.filter(|t| t.transport == transport) {
                    if !t.completes && t.from <= self.now + self.latency {
                        return; // never: the frame never ends
                    }
                    let after_frame = t.until.saturating_duration_since(self.now) + self.latency;
                    delay = delay.max(after_frame);
                }
                if self.server.conn == Some(transport)
                    && self.server.behaviour != Behaviour::BlackHole
                    && self.server.answer_pings
                {
                    self.schedule(delay, transport, Input::Pong(payload));
                }
            }
            Action::Close {
                transport, code, ..
            } => {
                self.closes.push((self.now, transport));
                if self.server.conn == Some(transport) {
                    if self.server.answers_close {
                        self.schedule(self.latency, transport, Input::CloseToServer(code));
                    } else {
                        self.server.conn = None;
                    }
                }
            }
            Action::Release { transport } => {
                self.releases.push((self.now, transport));
                if self.server.conn == Some(transport) {
                    self.server.conn = None;
                }
            }
            other => panic!("unexpected action {other:?}"),
        }
    }

    fn deliver(&mut self, s: Scheduled) {
        let now = self.now;
        let t = s.transport;
        if !matches!(s.input, Input::ToServer(_) | Input::CloseToServer(_)) {
            self.bytes_noted = now;
        }
        match s.input {
            Input::Opened => self.engine.transport_opened(now, t),
            Input::Frame(f) => self.engine.frame_received(now, t, f),
            Input::Sse(e) => self.engine.sse_event_received(now, t, e),
            Input::Pong(p) => self.engine.pong_received(now, t, &p),
            Input::Closed(code, reason) => {
                if self.server.conn == Some(t) {
                    self.server.conn = None;
                }
                self.engine.transport_closed(now, t, code, &reason)
            }
            Input::Failed(f) => self.engine.transport_failed(now, t, f),
            Input::CloseToServer(code) => {
                if self.server.conn == Some(t) {
                    self.server.conn = None;
                    self.schedule(self.latency, t, Input::Closed(Some(code), String::new()));
                }
            }
            Input::ToServer(frame) => {
                if self.server.conn != Some(t) || self.server.behaviour == Behaviour::BlackHole {
                    return;
                }
                if self.server.max_frame.is_some_and(|max| frame.len() > max) {
                    self.server.conn = None;
                    let reason = "message too big".to_owned();
                    self.schedule(self.latency, t, Input::Closed(Some(1009), reason));
                    return;
                }
                self.server.received.push((now, frame.clone()));
                for reply in self.server.handle(&frame) {
                    self.schedule(self.latency, t, Input::Frame(reply));
                }
            }
        }
    }

    /// Runs until virtual time `until` (inclusive of everything due by then).
    pub fn run_until(&mut self, until: Instant) {
        self.drain();
        loop {
            self.steps += 1;
            assert!(
                self.steps < STEP_CAP,
                "step cap reached at {:?}: hot loop?",
                self.now
            );
            let next_input = self.queue.iter().map(|s| (s.at, s.seq)).min();
            let next_timer = self.engine.poll_timeout();
            let next = match (next_input, next_timer) {
                (Some((a, _)), Some(b)) => a.min(b),
                (Some((a, _)), None) => a,
                (None, Some(b)) => b,
                (None, None) => break,
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if let Some((at, seq)) = next_input {
                if at <= self.now {
                    let pos = self.queue.iter().position(|s| s.seq == seq).unwrap();
                    let s = self.queue.swap_remove(pos);
                    self.deliver(s);
                    self.drain();
                    continue;
                }
            }
            self.report_bytes();
            self.engine.handle_timeout(self.now);
            self.drain();
        }
        self.now = self.now.max(until);
    }

    /// What the native driver does before a due timeout: reports that bytes of a frame still
    /// arriving came in since it last fed the engine an input from the transport.
    fn report_bytes(&mut self) {
        let Some(t) = self.trickle else {
            return;
        };
        if t.from <= self.now && t.until > self.bytes_noted {
            self.bytes_noted = self.now;
            self.engine.bytes_received(self.now, t.transport);
            self.drain();
        }
    }

    /// The server sends a large `frame` that takes `over` to arrive (a slow link): its bytes
    /// come steadily from one latency from now, and the frame is complete `over` later. While
    /// it arrives the server answers no ping (a pong waits behind the frame). `None`: the bytes
    /// stop after `over` and the frame never completes (the link died mid-frame).
    pub fn server_trickle(&mut self, frame: Option<Frame>, over: Duration) {
        let Some(transport) = self.server.conn else {
            return;
        };
        let from = self.now + self.latency;
        self.trickle = Some(Trickle {
            transport,
            from,
            until: from + over,
            completes: frame.is_some(),
        });
        if let Some(frame) = frame {
            self.schedule(self.latency + over, transport, Input::Frame(frame));
        }
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Runs until `pred` holds for the engine, or panics after `limit` of virtual time.
    pub fn run_until_state(&mut self, limit: Duration, pred: impl Fn(&Engine) -> bool) {
        let deadline = self.now + limit;
        while !pred(&self.engine) {
            assert!(
                self.now < deadline,
                "condition not reached within {limit:?}"
            );
            let step = Duration::from_millis(1);
            self.run_for(step);
        }
    }

    pub fn connect(&mut self) {
        self.engine.connect(self.now);
        self.drain();
    }

    /// Connects and runs until open.
    pub fn connect_open(&mut self) {
        self.connect();
        self.run_until_state(Duration::from_secs(5), |e| e.state().is_open());
    }

    /// Drops the current connection abruptly (crash): the engine sees, now, a close without
    /// a code. Anything still in flight on that connection is lost.
    pub fn kill_connection(&mut self) {
        if let Some(t) = self.server.conn.take() {
            self.queue.retain(|s| s.transport != t);
            self.engine.transport_closed(self.now, t, None, "");
            self.drain();
        }
    }

    /// Closes the current connection with a code and reason (server-initiated); the engine
    /// sees it now.
    pub fn server_close(&mut self, code: u16, reason: &str) {
        if let Some(t) = self.server.conn.take() {
            self.queue.retain(|s| s.transport != t);
            self.engine
                .transport_closed(self.now, t, Some(code), reason);
            self.drain();
        }
    }

    /// Pushes a frame from the server on the current connection.
    pub fn server_push(&mut self, frame: Frame) {
        if let Some(t) = self.server.conn {
            self.schedule(self.latency, t, Input::Frame(frame));
        }
    }

    /// Pushes an SSE event on the current connection.
    pub fn server_push_sse(&mut self, event: SseEvent) {
        if let Some(t) = self.server.conn {
            self.schedule(self.latency, t, Input::Sse(event));
        }
    }

    /// Another client publishes on `channel`; delivered to ours if connected and subscribed.
    pub fn other_publishes(&mut self, channel: &str, payload: Value) -> u64 {
        let id = format!("other-{}", self.server.head(channel) + 1);
        let (offset, msg) = self.server.store(channel, payload, &id);
        if self.server.conn.is_some() && self.server.subscribed.contains(channel) {
            self.server_push(Frame::Text(msg.encode()));
        }
        offset
    }

    /// Events drained since the start, filtered.
    pub fn events_matching<T>(&self, f: impl Fn(&Event) -> Option<T>) -> Vec<T> {
        self.events.iter().filter_map(|(_, e)| f(e)).collect()
    }

    /// The error events reported to the app, in order.
    pub fn errors(&self) -> Vec<tether_core::EngineError> {
        self.events_matching(|e| match e {
            Event::Error(err) => Some(err.clone()),
            _ => None,
        })
    }

    /// Payloads of the messages delivered to the app.
    pub fn delivered(&self) -> Vec<tether_core::InboundMessage> {
        self.events_matching(|e| match e {
            Event::Message(m) => Some(m.clone()),
            _ => None,
        })
    }

    /// Why request `id` failed, every time it was reported (once, or the test found a bug).
    /// Publishes `json!(i)` to "room" for each `i` (default options); their ids.
    pub fn publish_each(
        &mut self,
        values: impl IntoIterator<Item = i32>,
    ) -> Vec<tether_core::MessageId> {
        values
            .into_iter()
            .map(|i| {
                self.engine
                    .publish(
                        self.now,
                        "room",
                        json!(i),
                        tether_core::SendOptions::default(),
                    )
                    .unwrap()
            })
            .collect()
    }

    /// Every `Dropped` event so far: its ids and reason.
    pub fn dropped(&self) -> Vec<(Vec<tether_core::MessageId>, tether_core::DropReason)> {
        self.events_matching(|e| match e {
            Event::Dropped { ids, reason } => Some((ids.clone(), reason.clone())),
            _ => None,
        })
    }

    /// Every request's outcome so far, in order: its reply's payload, or why it failed.
    pub fn request_outcomes(
        &self,
    ) -> Vec<(
        tether_core::RequestId,
        Result<Value, tether_core::RequestFailure>,
    )> {
        self.events_matching(|e| match e {
            Event::Replied { id, payload } => Some((*id, Ok(payload.clone()))),
            Event::RequestFailed { id, reason } => Some((*id, Err(reason.clone()))),
            _ => None,
        })
    }

    /// The ids of every `Acked` event so far.
    pub fn acked(&self) -> Vec<tether_core::MessageId> {
        self.events_matching(|e| match e {
            Event::Acked { id, .. } => Some(*id),
            _ => None,
        })
    }

    pub fn request_failures(&self, id: tether_core::RequestId) -> Vec<tether_core::RequestFailure> {
        self.events_matching(|e| match e {
            Event::RequestFailed { id: r, reason } if *r == id => Some(reason.clone()),
            _ => None,
        })
    }

    /// (time, attempt, delay, cause) of every scheduled reconnect.
    pub fn reconnects(&self) -> Vec<(Instant, u32, Duration, tether_core::DisconnectCause)> {
        self.events
            .iter()
            .filter_map(|(t, e)| match e {
                Event::ReconnectScheduled {
                    attempt,
                    delay,
                    cause,
                } => Some((*t, *attempt, *delay, cause.clone())),
                _ => None,
            })
            .collect()
    }

    /// Texts of the frames the server received (raw mode).
    pub fn server_texts(&self) -> Vec<String> {
        self.server
            .received
            .iter()
            .filter_map(|(_, f)| match f {
                Frame::Text(t) => Some(t.clone()),
                _ => None,
            })
            .collect()
    }

    /// Publishes the server received, decoded: (id, channel, payload).
    pub fn server_publishes(&self) -> Vec<(String, Option<String>, Value)> {
        self.server_texts()
            .iter()
            .filter_map(|t| match ClientMessage::decode(t) {
                Ok(ClientMessage::Publish {
                    id,
                    channel,
                    payload,
                    ..
                }) => Some((id, channel, payload)),
                _ => None,
            })
            .collect()
    }
}
