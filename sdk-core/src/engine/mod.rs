//! The [`Engine`]: composes lifecycle, backoff, outbox, heartbeat, close policy, channels and
//! requests into one sans-IO state machine.
//!
//! The methods are split by who calls them, one file each:
//! - `commands.rs`: the app's commands (`connect`, `send`, `publish`, `subscribe`, `close`…);
//! - `inputs.rs`: the transport's reports (`transport_opened`, `frame_received`…) and
//!   `handle_timeout`;
//! - `inbound.rs`: what a decoded server message does;
//! - `lifecycle.rs`: attempts, failures, reconnect scheduling and closing;
//! - `documents.rs`: shared documents (commands, and what their messages do).

mod commands;
#[cfg(feature = "documents")]
mod documents;
mod inbound;
mod inputs;
mod lifecycle;

use crate::action::{Action, TransportId};
use crate::backoff::Backoff;
use crate::channels::Channels;
use crate::config::{Config, HeartbeatMode, Protocol};
use crate::errors::SubscribeError;
use crate::event::{DisconnectCause, Event, MessageId, State};
use crate::heartbeat::Heartbeat;
use crate::outbox::Outbox;
use crate::requests::Requests;
use crate::rng::Prng;
#[cfg(feature = "documents")]
use crate::sorted::SortedMap;
use crate::stats::Stats;
use crate::time::{Clock, Instant};
use std::collections::VecDeque;
use std::time::Duration;

pub use commands::SendOptions;

/// Where a message held in the outbox is: [`Engine::outbox_status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxStatus {
    /// Not written on the current connection: waiting to be written (or re-sent after a
    /// reconnect); dropped as `Expired` instead once its TTL has passed.
    Queued,
    /// Written on the current connection; awaiting its acknowledgement or reply (or, with a
    /// driver that reports progress, for its socket to take it).
    InFlight,
}

/// The sans-IO reconnection engine. See the [crate docs](crate) for the contract and a
/// complete driver loop.
///
/// Methods come in four groups:
/// - **getters**: [`state`](Engine::state), [`stats`](Engine::stats),
///   [`presence`](Engine::presence), [`config`](Engine::config)…
/// - **app commands**: [`connect`](Engine::connect), [`send`](Engine::send),
///   [`publish`](Engine::publish), [`request`](Engine::request),
///   [`subscribe`](Engine::subscribe), [`unsubscribe`](Engine::unsubscribe),
///   [`close`](Engine::close), [`close_after_drain`](Engine::close_after_drain),
///   [`network_changed`](Engine::network_changed), [`set_foreground`](Engine::set_foreground);
/// - **transport inputs**: [`token_ready`](Engine::token_ready),
///   [`transport_opened`](Engine::transport_opened),
///   [`frame_received`](Engine::frame_received), [`pong_received`](Engine::pong_received),
///   [`transport_closed`](Engine::transport_closed),
///   [`transport_failed`](Engine::transport_failed)…, and
///   [`handle_timeout`](Engine::handle_timeout);
/// - **outputs**: [`poll_action`](Engine::poll_action), [`poll_event`](Engine::poll_event),
///   [`poll_timeout`](Engine::poll_timeout).
///
/// **The drain rule:** after any command or input, drain `poll_action` and `poll_event` until
/// both return `None`, then read `poll_timeout` and call `handle_timeout` when it passes.
/// Calling `handle_timeout` early or twice is harmless.
#[derive(Debug)]
pub struct Engine {
    config: Config,
    clock: Clock,
    rng: Prng,
    state: State,
    backoff: Backoff,
    outbox: Outbox,
    heartbeat: Heartbeat,
    channels: Channels,
    requests: Requests,
    timers: Timers,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    stats: Stats,
    conn: Connection,
    next_transport: u64,
    next_message: u64,
    next_request: u64,
    /// Prefix of this engine's publish ids: unique across clients so servers can deduplicate.
    wire_prefix: String,
    /// This engine's `hello.instance`: unlike the prefix, never shown to other clients (it
    /// would let them end this engine's connections by claiming its `client_id`).
    instance: u64,
    client_id: String,
    online: bool,
    foreground: bool,
    /// When the app last went to the background (`set_foreground(false)`), while it is there.
    background_since: Option<Instant>,
    auth: AuthState,
    /// The server's SSE `retry:` advice, applied to every later reconnect.
    sse_retry: Option<Duration>,
    /// The SSE `Last-Event-ID` to resume from.
    last_event_id: Option<String>,
    /// The last over-long SSE id reported: a platform parser repeats it on every event.
    refused_event_id: Option<Box<str>>,
    drain: Option<Drain>,
    /// A transport told to close whose end the driver has not reported yet: released when
    /// its close handshake outlasts the close timeout. Outside `timers`, which closing clears.
    lingering: Option<Lingering>,
    /// The last lingering transport released before its end was reported (the next attempt
    /// replaced it, or its close timeout passed): its end, if the driver still reports it,
    /// answers the engine's own close and is not counted as a stale input.
    released_unended: Option<TransportId>,
    /// The current connection has stayed open for `min_uptime` (backoff was reset).
    stable: bool,
    /// `connect` was called while the close handshake ran: start again once it is done.
    connect_after_close: bool,
    /// Shared documents by channel (Tether mode).
    #[cfg(feature = "documents")]
    documents: SortedMap<String, crate::sync::Document>,
    /// How many documents `open_document` has opened: the last one's `generation`.
    #[cfg(feature = "documents")]
    doc_opens: u64,
    /// The channel of every document change whose ack may still come: `(wire id, channel)`.
    /// An ack names no channel, and the change may have left its document before the ack
    /// (dropped from the outbox after it was written, its document closed and reopened,
    /// taken as applied before a server restart): the document must still learn that the
    /// server applied it. Kept while the change is in the outbox, and until the connection
    /// it may have been written on ends.
    #[cfg(feature = "documents")]
    doc_changes: Vec<(String, String)>,
}

/// The current transport, if any, and what is known about it.
#[derive(Debug, Default)]
struct Connection {
    transport: Option<TransportId>,
    /// Whether the driver can take more frames right now (backpressure).
    writable: bool,
    /// The server's latest application ping that came while the transport pushed back, not
    /// answered yet (its id): answered once the transport takes frames again (see
    /// `Engine::answer_ping`).
    owed_pong: Option<Option<String>>,
    /// Waiting for the token provider before opening.
    awaiting_token: bool,
    /// The driver reported the transport open (`transport_opened`): until then there is no
    /// close handshake to run on it.
    opened: bool,
    /// When it opened: an event stream that reopened while the app was in the background
    /// counts its time away from then (`Engine::set_foreground`).
    opened_at: Option<Instant>,
    /// The event stream dispatched an event (a message, or the relay's `position`): the
    /// server answered with its stream, so the stream's end is not a failed attempt (see
    /// `Engine::connection_lost`).
    sse_dispatched: bool,
    /// The token for a `hello` (FirstMessage placement).
    hello_token: Option<String>,
    /// The close code and reason requested by the app while `Closing`.
    closing: Option<u16>,
    /// The largest frame written on this connection, in bytes: a close 1009 (message too
    /// big) is about it (see `Engine::refused_as_too_big`).
    largest_written: usize,
    /// Bytes of frames handed to this transport, and how many of them its socket took (as
    /// far as the driver reports it: `Engine::transport_progress`).
    handed: u64,
    taken: u64,
    /// The latest [`Engine::send_buffer_level`] reading, and whether the backlog it shows
    /// (since the level was last zero) was seen draining at the peer's pace.
    unsent: u64,
    backlog_drained: bool,
    /// When that reading was taken: a probe sent later makes it no baseline (a fall from it
    /// may have come before the probe, which only what comes after it answers).
    unsent_at: Option<Instant>,
}

/// Token refresh bookkeeping: refresh once after a refusal, then give up.
#[derive(Debug, Default)]
struct AuthState {
    /// The next attempt must fetch a fresh token.
    refresh_next: bool,
    /// A refusal was already answered with a refresh; the next refusal is terminal.
    refreshed_once: bool,
}

/// The app asked to close once the outbox is empty.
#[derive(Debug, Clone, Copy)]
struct Drain {
    deadline: Instant,
}

/// A transport whose close handshake is under way, and when to stop waiting for it.
#[derive(Debug, Clone, Copy)]
struct Lingering {
    transport: TransportId,
    until: Instant,
}

/// The earliest moment the server allows the next attempt, and the refusal that said so (a
/// restart after a close reports it as the cause of its wait).
#[derive(Debug)]
struct ServerMinimum {
    at: Instant,
    cause: DisconnectCause,
}

/// The engine's own deadlines (heartbeat, outbox TTLs and requests keep theirs).
#[derive(Debug, Default)]
struct Timers {
    connect: Option<Instant>,
    retry: Option<Instant>,
    /// Not a deadline: the server's earliest moment for the next attempt (Retry-After, 1013,
    /// `reconnect_after_ms`), which a wait cut short still respects, and so does a fresh
    /// start after a close (`start_afresh`): it outlives the close.
    not_before: Option<ServerMinimum>,
    min_uptime: Option<Instant>,
    close: Option<Instant>,
    /// A flush stopped at `write_batch_bytes` with more queued: it goes on at this deadline
    /// (the moment it stopped), after the driver's turn.
    flush_more: Option<Instant>,
}

impl Engine {
    /// Creates an engine in [`State::Idle`]. `entropy` seeds the PRNG unless the config fixes
    /// a seed; drivers pass OS or browser randomness, tests a constant. The engine's identity
    /// (its default client id and the prefix of its publish ids) always comes from `entropy`,
    /// seed or not: a seed reproduces a run's timing, and two runs with the same seed must
    /// still be two senders to the server, or it would deduplicate the second one's publishes.
    ///
    /// ```
    /// use tether_core::{Config, Engine, State};
    /// let engine = Engine::new(Config::builder("ws://127.0.0.1:9000").build()?, 1);
    /// assert_eq!(engine.state(), &State::Idle);
    /// # Ok::<(), tether_core::ConfigError>(())
    /// ```
    pub fn new(config: Config, entropy: u64) -> Self {
        // The identity nonce is the first draw of a PRNG seeded with `entropy`. Without a
        // seed that is the engine's own PRNG; with one, the engine's PRNG still spends its
        // first draw, so the jitter a seed gives is the same as before.
        let mut identity = Prng::seed_from_u64(entropy);
        let nonce = identity.next_u64();
        let mut rng = Prng::seed_from_u64(config.seed.unwrap_or(entropy));
        let _ = rng.next_u64();
        let client_id = config
            .client_id
            .clone()
            .unwrap_or_else(|| format!("c{nonce:016x}"));
        Engine {
            heartbeat: Heartbeat::new(config.effective_heartbeat_mode(), config.heartbeat.clone()),
            backoff: Backoff::new(config.backoff.clone()),
            outbox: Outbox::new(config.outbox.clone()),
            clock: Clock::default(),
            rng,
            state: State::Idle,
            channels: Channels::default(),
            requests: Requests::default(),
            timers: Timers::default(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            conn: Connection::default(),
            next_transport: 0,
            next_message: 0,
            next_request: 0,
            wire_prefix: format!("{:012x}-", nonce >> 16),
            instance: identity.next_u64(),
            client_id,
            online: true,
            foreground: true,
            background_since: None,
            auth: AuthState::default(),
            sse_retry: None,
            last_event_id: config.resume_from.clone(),
            refused_event_id: None,
            drain: None,
            lingering: None,
            released_unended: None,
            stable: false,
            connect_after_close: false,
            #[cfg(feature = "documents")]
            documents: Default::default(),
            #[cfg(feature = "documents")]
            doc_opens: 0,
            #[cfg(feature = "documents")]
            doc_changes: Vec::new(),
            config,
        }
    }

    // ---- getters ----------------------------------------------------------------------

    /// The current lifecycle state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Whether a close the app asked for is under way: the close handshake runs
    /// (`State::Closing`), or a [`close_after_drain`](Engine::close_after_drain) waits for what
    /// is pending. The driver must keep performing actions and feeding inputs meanwhile, or
    /// the close never completes.
    pub fn is_closing(&self) -> bool {
        self.state == State::Closing || self.drain.is_some()
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The heartbeat mode in effect (after resolving `Auto`).
    pub fn heartbeat_mode(&self) -> HeartbeatMode {
        self.heartbeat.mode()
    }

    /// An event stream's position: the last event id it sent (or the one the app resumed
    /// from, `ConfigBuilder::last_event_id`, until the stream sends one), sent back on every
    /// reconnect. `None` on a WebSocket, and once the stream said `id:` with no value. It may
    /// be ahead of the messages the app has handled: to save a position to resume from, save
    /// the `last_event_id` of the last message handled (`InboundMessage::last_event_id`).
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Messages held in the outbox (queued + awaiting ack or reply).
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// Where message `id` is in the outbox: still queued (not written, or waiting to be re-sent
    /// after a reconnect), in flight (written on the current connection, awaiting its ack or
    /// reply), or `None` once it has left (settled, acknowledged or dropped: its event says).
    pub fn outbox_status(&self, id: MessageId) -> Option<OutboxStatus> {
        self.outbox.holds(id).map(|in_flight| {
            if in_flight {
                OutboxStatus::InFlight
            } else {
                OutboxStatus::Queued
            }
        })
    }

    /// Bytes held in the outbox.
    pub fn outbox_bytes(&self) -> usize {
        self.outbox.bytes()
    }

    /// Requests still waiting for a reply.
    pub fn pending_requests(&self) -> usize {
        self.requests.len()
    }

    /// The identity sent in `hello` (Tether mode) and used as presence member name.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Subscribed channels, in name order.
    pub fn channels(&self) -> impl Iterator<Item = &str> {
        self.channels.names()
    }

    /// The last offset seen on `channel`.
    pub fn last_offset(&self, channel: &str) -> Option<u64> {
        self.channels.last_offset(channel)
    }

    /// The current presence set of a subscribed channel, sorted. While reconnecting it is the
    /// set last known (the snapshot after the resubscribe corrects it, naming who `left`
    /// meanwhile); once closed it is empty, each member reported as `left`.
    pub fn presence(&self, channel: &str) -> Option<&[String]> {
        self.channels.members(channel)
    }

    /// Whether this client has presence to read at all: a raw client has no channels, so the
    /// reading is refused as [`Engine::subscribe`] is ([`SubscribeError::NeedsTetherProtocol`])
    /// rather than answered "not subscribed" by [`Engine::presence`], which an app may wait on
    /// for members that can never come. A query for drivers whose reading can refuse (the
    /// browser's `presence()` throws).
    pub fn check_presence(&self) -> Result<(), SubscribeError> {
        if self.config.protocol != Protocol::Tether {
            return Err(SubscribeError::NeedsTetherProtocol);
        }
        Ok(())
    }

    /// The latest time the engine has seen (inputs earlier than it are clamped to it).
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    // ---- outputs ----------------------------------------------------------------------

    /// The next thing the driver must do, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next thing that happened, for the app.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When the engine next needs [`handle_timeout`](Engine::handle_timeout), if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = &self.timers;
        [
            t.connect,
            t.retry,
            t.min_uptime,
            t.close,
            t.flush_more,
            self.drain.map(|d| d.deadline),
            self.heartbeat.deadline(),
            self.outbox.next_expiry(),
            self.outbox.next_ack_due(),
            self.requests.next_deadline(),
            self.lingering.map(|l| l.until),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---- small helpers shared by the submodules ---------------------------------------

    fn set_state(&mut self, to: State) {
        if self.state == to {
            return;
        }
        let from = std::mem::replace(&mut self.state, to.clone());
        self.events.push_back(Event::StateChanged { from, to });
    }

    fn emit_error(&mut self, error: crate::event::EngineError) {
        self.stats.errors += 1;
        self.events.push_back(Event::Error(error));
    }

    /// Accepts an input's `now`, clamping time that went backwards.
    fn observe(&mut self, now: Instant) -> Instant {
        self.clock.observe(now)
    }

    /// Whether `transport` is the current one; counts stale inputs.
    fn is_current(&mut self, transport: TransportId) -> bool {
        if self.conn.transport == Some(transport) {
            true
        } else {
            self.stats.stale_inputs += 1;
            false
        }
    }
}
