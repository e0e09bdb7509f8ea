//! The many-client simulator: N clients against one relay that goes away and comes back, in
//! virtual time, driven by an event queue.
//!
//! Each client is either a real [`Engine`] (driven exactly as a driver would: inputs stamped
//! with virtual time, actions drained, `handle_timeout` at `poll_timeout`) or a baseline delay
//! model. A binary heap holds each client's next event (its deadline, or the answer to its
//! connection attempt), so the cost is proportional to the number of attempts, not to
//! clients × ticks. Clients never interact (the relay has no capacity limit in this model), so
//! the population is cut into shards simulated on separate threads and merged; every client's
//! seed depends only on `--seed` and its index, which keeps results identical whatever the
//! shard and thread counts.

use super::model::{engine_backoff, Baseline, Strategy};
use super::report::Timeline;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tether_core::{
    Action, BackoffConfig, Config, ConfigError, Engine, HeartbeatMode, Instant, Prng, State,
    TransportFailure, TransportId,
};

/// Virtual time in microseconds since the relay went down.
pub(crate) type Micros = u64;

/// Clients simulated together on one thread; small enough that two shards in flight stay
/// well under a gigabyte of engines.
const SHARD_SIZE: u32 = 25_000;

/// How the relay goes down at t = 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropKind {
    /// Every connection ends abruptly: `transport_closed(code: None)`.
    Abrupt,
    /// A graceful restart: every connection is closed with 1012 and the reason
    /// `{"reconnect_within_ms": window_ms}`, plus `"reconnect_after_ms": after_ms` when the
    /// relay advises its expected downtime.
    Graceful {
        /// The advised reconnect window.
        window_ms: u64,
        /// The advised earliest return, if any.
        after_ms: Option<u64>,
    },
}

/// Everything that defines one simulated storm, except the strategy.
#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    /// Number of clients, all connected and stable before t = 0.
    pub(crate) clients: u32,
    /// The relay is down in `[0, outage)` and accepts every attempt from `outage` on.
    pub(crate) outage: Micros,
    /// How the connections end at t = 0.
    pub(crate) drop: DropKind,
    /// Time for an attempt to be answered (refused or opened).
    pub(crate) latency: Micros,
    /// Master seed; client `i` gets a seed derived from it and `i`.
    pub(crate) seed: u64,
    /// The engine's backoff curve; each engine strategy sets only the jitter.
    pub(crate) curve: BackoffConfig,
    /// Stop simulating at this virtual time; clients not back by then are reported as such.
    pub(crate) horizon: Micros,
}

impl Scenario {
    /// The engine configuration for `strategy`, validated (the backoff flags can be wrong).
    pub(crate) fn engine_config(&self, strategy: Strategy) -> Result<Option<Config>, ConfigError> {
        let Some(jitter) = strategy.engine_jitter() else {
            return Ok(None);
        };
        Config::builder("ws://relay.invalid/ws")
            .heartbeat_mode(HeartbeatMode::Off)
            .backoff(engine_backoff(&self.curve, jitter))
            .build()
            .map(Some)
    }

    fn relay_up(&self, at: Micros) -> bool {
        at >= self.outage
    }
}

/// The seed of client `index`: SplitMix64 over the master seed and the index, so neighbouring
/// clients get unrelated streams.
pub(crate) fn client_seed(seed: u64, index: u32) -> u64 {
    let mut z = seed.wrapping_add((u64::from(index) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What a client did in answer to one input.
#[derive(Debug, Default)]
struct Reaction {
    /// It started a connection attempt now.
    attempted: bool,
    /// It is connected again.
    opened: bool,
    /// It stopped for good (an engine in `Closed`).
    gave_up: bool,
}

/// One simulated client: the relay tells it what happened, it says what it does.
trait Client {
    /// The relay dropped the (stable) connection at `now`.
    fn dropped(&mut self, now: Micros, drop: DropKind) -> Reaction;
    /// The answer to the current attempt arrived at `now`.
    fn answered(&mut self, now: Micros, accepted: bool) -> Reaction;
    /// The client's own deadline `now` passed.
    fn wake(&mut self, now: Micros) -> Reaction;
    /// When the client next wants [`Client::wake`].
    fn next_wake(&self) -> Option<Micros>;
}

/// Engine time of the relay's failure: the connections were opened at engine time zero and
/// have been up longer than the minimum uptime, so their backoff was reset (a stable crowd).
const fn engine_epoch(min_uptime: Duration) -> u64 {
    // One minute after the minimum uptime: the clients are settled, whatever the flags.
    min_uptime.as_micros() as u64 + 60_000_000
}

/// A real engine, driven like a driver would.
#[derive(Debug)]
struct EngineClient {
    engine: Engine,
    /// The engine's current transport: the open connection, or the attempt in flight.
    transport: Option<TransportId>,
    /// Engine time of the relay's failure (sim time zero).
    epoch: u64,
}

impl EngineClient {
    /// An engine that connected at engine time zero and has been stable since.
    fn connected(config: Config, seed: u64) -> Self {
        let epoch = engine_epoch(config.backoff().min_uptime);
        let mut client = EngineClient {
            engine: Engine::new(config, seed),
            transport: None,
            epoch,
        };
        client.engine.connect(Instant::ZERO);
        client.drain();
        if let Some(transport) = client.transport {
            client.engine.transport_opened(Instant::ZERO, transport);
        }
        client.drain();
        // Let the min-uptime deadline (and anything else before the failure) pass.
        while let Some(deadline) = client.engine.poll_timeout() {
            if deadline.as_micros() >= epoch {
                break;
            }
            client.engine.handle_timeout(deadline);
            client.drain();
        }
        client
    }

    fn at(&self, now: Micros) -> Instant {
        Instant::from_micros(self.epoch.saturating_add(now))
    }

    /// Applies the drain rule; returns whether an attempt was started.
    fn drain(&mut self) -> bool {
        let mut attempted = false;
        while let Some(action) = self.engine.poll_action() {
            if let Action::Open(open) = action {
                self.transport = Some(open.transport);
                attempted = true;
            }
        }
        while self.engine.poll_event().is_some() {}
        attempted
    }

    fn react(&mut self) -> Reaction {
        let attempted = self.drain();
        Reaction {
            attempted,
            opened: *self.engine.state() == State::Open,
            gave_up: matches!(self.engine.state(), State::Closed { .. }),
        }
    }
}

impl Client for EngineClient {
    fn dropped(&mut self, now: Micros, drop: DropKind) -> Reaction {
        let at = self.at(now);
        // The connection opened during warm-up.
        let Some(transport) = self.transport.take() else {
            return Reaction::default();
        };
        match drop {
            DropKind::Abrupt => self.engine.transport_closed(at, transport, None, ""),
            DropKind::Graceful {
                window_ms,
                after_ms,
            } => {
                let reason = match after_ms {
                    Some(after) => format!(
                        "{{\"reconnect_after_ms\": {after}, \"reconnect_within_ms\": {window_ms}}}"
                    ),
                    None => format!("{{\"reconnect_within_ms\": {window_ms}}}"),
                };
                self.engine
                    .transport_closed(at, transport, Some(1012), &reason);
            }
        }
        self.react()
    }

    fn answered(&mut self, now: Micros, accepted: bool) -> Reaction {
        let at = self.at(now);
        if let Some(transport) = self.transport.take() {
            if accepted {
                self.engine.transport_opened(at, transport);
            } else {
                self.engine
                    .transport_failed(at, transport, TransportFailure::Io("refused".into()));
            }
        }
        self.react()
    }

    fn wake(&mut self, now: Micros) -> Reaction {
        let at = self.at(now);
        self.engine.handle_timeout(at);
        self.react()
    }

    fn next_wake(&self) -> Option<Micros> {
        self.engine
            .poll_timeout()
            .map(|t| t.as_micros().saturating_sub(self.epoch))
    }
}

/// A baseline delay model: waits, attempts, and on refusal waits longer.
#[derive(Debug)]
struct BaselineClient {
    model: Baseline,
    rng: Prng,
    /// Retries since the connection was lost (0-based index of the next delay).
    retries: u32,
    wake_at: Option<Micros>,
}

impl BaselineClient {
    fn schedule(&mut self, now: Micros) {
        let delay = self.model.delay(self.retries, &mut self.rng);
        self.retries = self.retries.saturating_add(1);
        self.wake_at = Some(now.saturating_add(micros(delay)));
    }
}

impl Client for BaselineClient {
    fn dropped(&mut self, now: Micros, _drop: DropKind) -> Reaction {
        // Neither modelled client reads close codes for timing: a graceful 1012 is just a close.
        self.retries = 0;
        self.schedule(now);
        Reaction::default()
    }

    fn answered(&mut self, now: Micros, accepted: bool) -> Reaction {
        if accepted {
            return Reaction {
                opened: true,
                ..Reaction::default()
            };
        }
        self.schedule(now);
        Reaction::default()
    }

    fn wake(&mut self, now: Micros) -> Reaction {
        if self.wake_at.is_some_and(|t| t <= now) {
            self.wake_at = None;
            return Reaction {
                attempted: true,
                ..Reaction::default()
            };
        }
        Reaction::default()
    }

    fn next_wake(&self) -> Option<Micros> {
        self.wake_at
    }
}

fn micros(d: Duration) -> Micros {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A heap entry: what happens to which client when. `seq` keeps equal times in FIFO order.
type Entry = Reverse<(Micros, u64, u32, Kind)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// The client's deadline (stale if the client has since asked for another one).
    Wake,
    /// The relay answers the client's attempt.
    Answer { accepted: bool },
}

/// The event queue of one shard and what it has recorded so far.
#[derive(Debug)]
struct Queue<'a> {
    scenario: &'a Scenario,
    heap: BinaryHeap<Entry>,
    seq: u64,
    /// The wake time each client has in the heap; an entry that does not match is stale.
    queued_wake: Vec<Option<Micros>>,
    /// Clients that are back (or gave up): nothing more to simulate for them.
    done: Vec<bool>,
    timeline: Timeline,
}

impl Queue<'_> {
    fn push(&mut self, at: Micros, id: u32, kind: Kind) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, id, kind)));
    }

    /// Records what client `id` did at `now` and queues what follows from it.
    fn apply(&mut self, id: u32, client: &impl Client, now: Micros, reaction: Reaction) {
        let idx = id as usize;
        if reaction.opened || reaction.gave_up {
            if reaction.opened {
                self.timeline.record_back(now);
            }
            self.done[idx] = true;
            return;
        }
        if reaction.attempted {
            self.timeline.record_attempt(now);
            // The relay refuses or accepts when the attempt reaches it; the client hears
            // back one latency later.
            let accepted = self.scenario.relay_up(now);
            self.push(
                now.saturating_add(self.scenario.latency),
                id,
                Kind::Answer { accepted },
            );
        }
        let wake = client.next_wake();
        if wake != self.queued_wake[idx] {
            self.queued_wake[idx] = wake;
            if let Some(at) = wake {
                self.push(at.max(now), id, Kind::Wake);
            }
        }
    }
}

/// Simulates clients `first..first + count` of the population.
fn run_shard<C: Client>(
    scenario: &Scenario,
    first: u32,
    count: u32,
    make: impl FnMut(u32) -> C,
) -> Timeline {
    let mut clients: Vec<C> = (first..first + count).map(make).collect();
    let mut queue = Queue {
        scenario,
        heap: BinaryHeap::with_capacity(clients.len() * 2),
        seq: 0,
        queued_wake: vec![None; clients.len()],
        done: vec![false; clients.len()],
        timeline: Timeline::new(u64::from(count)),
    };
    for (id, client) in (0u32..).zip(clients.iter_mut()) {
        let reaction = client.dropped(0, scenario.drop);
        queue.apply(id, client, 0, reaction);
    }
    while let Some(Reverse((now, _, id, kind))) = queue.heap.pop() {
        if now > scenario.horizon {
            break;
        }
        let idx = id as usize;
        if queue.done[idx] {
            continue;
        }
        let client = &mut clients[idx];
        let reaction = match kind {
            Kind::Wake if queue.queued_wake[idx] != Some(now) => continue,
            Kind::Wake => {
                queue.queued_wake[idx] = None;
                client.wake(now)
            }
            Kind::Answer { accepted } => client.answered(now, accepted),
        };
        queue.apply(id, client, now, reaction);
    }
    queue.timeline
}

/// Why a run could not complete.
#[derive(Debug)]
pub(crate) enum SimError {
    /// The backoff flags make an invalid engine configuration.
    Config(ConfigError),
    /// A simulation thread panicked (a bug in the simulator or the engine).
    Panicked,
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimError::Config(e) => write!(f, "invalid engine configuration: {e}"),
            SimError::Panicked => write!(f, "a simulation thread panicked"),
        }
    }
}

/// Simulates the whole population once per strategy, on up to `threads` threads. The result
/// has one timeline per strategy, in the order given, and does not depend on `threads`.
pub(crate) fn run(
    scenario: &Scenario,
    strategies: &[Strategy],
    threads: usize,
) -> Result<Vec<Timeline>, SimError> {
    run_sharded(scenario, strategies, threads, SHARD_SIZE)
}

pub(crate) fn run_sharded(
    scenario: &Scenario,
    strategies: &[Strategy],
    threads: usize,
    shard_size: u32,
) -> Result<Vec<Timeline>, SimError> {
    let configs = strategies
        .iter()
        .map(|s| scenario.engine_config(*s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(SimError::Config)?;
    let shard_size = shard_size.max(1);
    let shards: Vec<(u32, u32)> = (0..scenario.clients)
        .step_by(shard_size as usize)
        .map(|first| (first, shard_size.min(scenario.clients - first)))
        .collect();
    let units: Vec<(usize, u32, u32)> = (0..strategies.len())
        .flat_map(|s| shards.iter().map(move |&(first, count)| (s, first, count)))
        .collect();

    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Timeline>>> = Mutex::new(vec![None; units.len()]);
    let threads = threads.clamp(1, units.len().max(1));
    let worker = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(&(s, first, count)) = units.get(i) else {
            break;
        };
        let timeline = run_unit(scenario, strategies[s], configs[s].as_ref(), first, count);
        if let Ok(mut slots) = results.lock() {
            slots[i] = Some(timeline);
        }
    };
    let all_joined = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads).map(|_| scope.spawn(worker)).collect();
        handles.into_iter().all(|h| h.join().is_ok())
    });
    if !all_joined {
        return Err(SimError::Panicked);
    }
    let slots = results.into_inner().map_err(|_| SimError::Panicked)?;
    let mut merged: Vec<Timeline> = strategies
        .iter()
        .map(|_| Timeline::new(u64::from(scenario.clients)))
        .collect();
    for ((s, _, _), slot) in units.iter().zip(slots) {
        let Some(part) = slot else {
            return Err(SimError::Panicked);
        };
        merged[*s].merge(part);
    }
    for timeline in &mut merged {
        timeline.finish();
    }
    Ok(merged)
}

fn run_unit(
    scenario: &Scenario,
    strategy: Strategy,
    config: Option<&Config>,
    first: u32,
    count: u32,
) -> Timeline {
    let seed = |i: u32| client_seed(scenario.seed, i);
    match (config, strategy.baseline()) {
        (Some(config), _) => run_shard(scenario, first, count, |i| {
            EngineClient::connected(config.clone(), seed(i))
        }),
        (None, Some(model)) => run_shard(scenario, first, count, |i| BaselineClient {
            model,
            rng: Prng::seed_from_u64(seed(i)),
            retries: 0,
            wake_at: None,
        }),
        // Every strategy is either the engine or a baseline; nothing to simulate otherwise.
        (None, None) => Timeline::new(u64::from(count)),
    }
}
