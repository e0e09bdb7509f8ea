//! Reconnect timing: the app sends one message every 50 ms while the echo server is killed
//! (SIGKILL) and started again on the same port after the outage. Measured per run: the time
//! from the new server listening to the client being `Open` again, and how many of the
//! messages the app sent while the connection was down came back echoed.
//!
//! The engine's backoff is random (full jitter by default), so a handful of real runs give a
//! noisy median; the same engine is therefore also driven in virtual time over thousands of
//! seeds (`model`), which gives the distribution the defaults produce, I/O excluded.

use crate::clients::BoxError;
use crate::stats::{median, percentile};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tether::{Client, Event, Payload, State};
use tether_bench::server::ServerProcess;
use tether_bench::wait_open;

/// A reconnect profile: the defaults, or one documented non-default setting.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    /// `backoff_max` override (non-default).
    pub backoff_max: Option<Duration>,
    /// `min_uptime` override (non-default; the smoke test uses it to avoid waiting 5 s).
    pub min_uptime: Option<Duration>,
}

impl Profile {
    pub fn label(&self) -> String {
        let mut parts = Vec::new();
        if let Some(max) = self.backoff_max {
            parts.push(format!("backoff_max {} ms", max.as_millis()));
            if max < default_initial() {
                parts.push(format!("backoff_initial {} ms", max.as_millis()));
            }
        }
        if let Some(up) = self.min_uptime {
            parts.push(format!("min_uptime {} ms", up.as_millis()));
        }
        if parts.is_empty() {
            "defaults".to_owned()
        } else {
            parts.join(", ")
        }
    }

    fn builder(&self, url: &str) -> tether::ClientBuilder {
        let mut builder = Client::builder(url);
        if let Some(max) = self.backoff_max {
            builder = builder
                .backoff_initial(max.min(default_initial()))
                .backoff_max(max);
        }
        if let Some(up) = self.min_uptime {
            builder = builder.min_uptime(up);
        }
        builder
    }

    fn config(&self, seed: u64) -> Result<tether_core::Config, BoxError> {
        let mut builder = tether_core::Config::builder("ws://127.0.0.1:1/").seed(seed);
        if let Some(max) = self.backoff_max {
            builder = builder
                .backoff_initial(max.min(default_initial()))
                .backoff_max(max);
        }
        if let Some(up) = self.min_uptime {
            builder = builder.min_uptime(up);
        }
        Ok(builder.build()?)
    }

    fn min_uptime(&self) -> Duration {
        self.min_uptime
            .unwrap_or_else(|| tether_core::BackoffConfig::default().min_uptime)
    }
}

/// The engine's default first backoff delay (a `backoff_max` below it lowers it too, since
/// the engine requires `initial <= max`).
fn default_initial() -> Duration {
    tether_core::BackoffConfig::default().initial
}

/// What one real run measured.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// From the new server listening to the client being open.
    pub restart_to_open: Duration,
    /// Messages the app sent after the client saw the connection drop, before it reopened.
    pub sent_in_outage: usize,
    /// How many of those came back echoed.
    pub delivered: usize,
    /// Messages sent between the kill and the client seeing the drop: written to a socket
    /// whose peer was already dead. Raw mode has no acknowledgements to recover them.
    pub sent_blind: usize,
    /// How many of those came back echoed.
    pub delivered_blind: usize,
}

/// Real runs and the virtual-time model for one profile.
#[derive(Debug, Clone)]
pub struct ReconnectFigures {
    pub profile: Profile,
    pub runs: Vec<Run>,
    /// Modelled restart→open delays, sorted.
    pub model: Vec<Duration>,
    /// Messages reported dropped by the client over all runs.
    pub dropped: usize,
}

impl ReconnectFigures {
    pub fn median_ms(&self) -> f64 {
        median(
            self.runs
                .iter()
                .map(|r| r.restart_to_open.as_secs_f64() * 1e3)
                .collect(),
        )
    }

    pub fn model_ms(&self, q: f64) -> f64 {
        percentile(&self.model, q).as_secs_f64() * 1e3
    }

    pub fn sent(&self) -> usize {
        self.runs.iter().map(|r| r.sent_in_outage).sum()
    }

    pub fn delivered(&self) -> usize {
        self.runs.iter().map(|r| r.delivered).sum()
    }

    pub fn sent_blind(&self) -> usize {
        self.runs.iter().map(|r| r.sent_blind).sum()
    }

    pub fn delivered_blind(&self) -> usize {
        self.runs.iter().map(|r| r.delivered_blind).sum()
    }
}

/// Options of the reconnect benchmark.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub runs: usize,
    pub outage: Duration,
    pub interval: Duration,
    pub model_seeds: u64,
    /// Print every reconnect decision of every run.
    pub verbose: bool,
}

#[derive(Default)]
struct Log {
    /// (seq, when sent).
    sent: Vec<(u64, Instant)>,
    echoed: HashSet<u64>,
    opens: Vec<Instant>,
    /// When the client left `Open` (saw the connection drop).
    drops: Vec<Instant>,
    /// Every reconnect decision: when, attempt, delay, cause.
    scheduled: Vec<(Instant, u32, Duration, String)>,
    dropped: usize,
}

/// Runs the real runs and the model for `profile`.
pub async fn measure(profile: Profile, opts: Options) -> Result<ReconnectFigures, BoxError> {
    let model = model(profile, opts.outage, opts.model_seeds)?;
    let mut server = ServerProcess::spawn("127.0.0.1:0").await?;
    let addr = server.addr.to_string();
    let (client, mut events) = profile.builder(&server.url()).connect()?;
    wait_open(&mut events).await?;
    let log = Arc::new(Mutex::new(Log::default()));
    log_lock(&log).opens.push(Instant::now());

    // The app: one message every `interval`, for as long as the benchmark lasts (bounded).
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (client, log, stop) = (client.clone(), log.clone(), stop.clone());
        let max_ticks = 3_600_000 / opts.interval.as_millis().max(1) as u64;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(opts.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for seq in 0..max_ticks {
                tick.tick().await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let at = Instant::now();
                if client.send(seq.to_string()).is_ok() {
                    log_lock(&log).sent.push((seq, at));
                }
            }
        })
    };
    // The app's event loop: ends when the client does.
    let listener = {
        let log = log.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let mut log = log_lock(&log);
                match event {
                    Event::Message(m) => {
                        if let Payload::Text(text) = m.payload {
                            if let Ok(seq) = text.parse() {
                                log.echoed.insert(seq);
                            }
                        }
                    }
                    Event::StateChanged {
                        to: State::Open, ..
                    } => log.opens.push(Instant::now()),
                    Event::StateChanged {
                        from: State::Open, ..
                    } => log.drops.push(Instant::now()),
                    Event::Dropped { ids, .. } => log.dropped += ids.len(),
                    Event::ReconnectScheduled {
                        attempt,
                        delay,
                        cause,
                    } => log
                        .scheduled
                        .push((Instant::now(), attempt, delay, cause.to_string())),
                    _ => {}
                }
            }
        })
    };

    let mut runs = Vec::with_capacity(opts.runs);
    let result: Result<(), BoxError> = async {
        for _ in 0..opts.runs {
            // A long-lived connection first: open for longer than min_uptime, so the drop
            // meets the backoff of a stable connection, not of a flapping one.
            let stable_for = profile.min_uptime() + Duration::from_millis(500);
            let opened = *log_lock(&log).opens.last().ok_or("never opened")?;
            tokio::time::sleep(stable_for.saturating_sub(opened.elapsed())).await;

            let killed_at = Instant::now();
            server.kill().await?;
            tokio::time::sleep(opts.outage.saturating_sub(killed_at.elapsed())).await;
            server = ServerProcess::spawn(&addr).await?;
            let restarted_at = server.ready_at;

            let opened_at = wait_until(Duration::from_secs(120), || {
                log_lock(&log)
                    .opens
                    .last()
                    .copied()
                    .filter(|at| *at > killed_at)
            })
            .await
            .ok_or("the client did not reconnect within 120 s")?;
            let noticed_at = log_lock(&log)
                .drops
                .iter()
                .copied()
                .find(|at| *at >= killed_at)
                .unwrap_or(killed_at);
            let sent_between = |from: Instant, to: Instant| -> Vec<u64> {
                log_lock(&log)
                    .sent
                    .iter()
                    .filter(|(_, at)| *at >= from && *at < to)
                    .map(|(seq, _)| *seq)
                    .collect()
            };
            let blind_seqs = sent_between(killed_at, noticed_at);
            let outage_seqs = sent_between(noticed_at, opened_at);
            // The outbox is flushed on open: give the echoes a moment to come back.
            let _ = wait_until(Duration::from_secs(5), || {
                let log = log_lock(&log);
                // Not the blind ones: raw mode cannot recover those, and anything that
                // will come back of them precedes the outage messages' echoes.
                outage_seqs
                    .iter()
                    .all(|s| log.echoed.contains(s))
                    .then_some(())
            })
            .await;
            let log = log_lock(&log);
            if opts.verbose {
                for (at, attempt, delay, cause) in &log.scheduled {
                    if *at >= killed_at && *at < opened_at {
                        eprintln!(
                            "  t={:>6.0} ms attempt {attempt} in {:>5} ms ({cause})",
                            at.duration_since(killed_at).as_secs_f64() * 1e3,
                            delay.as_millis()
                        );
                    }
                }
                eprintln!(
                    "  restarted at t={:.0} ms, open at t={:.0} ms",
                    restarted_at.duration_since(killed_at).as_secs_f64() * 1e3,
                    opened_at.duration_since(killed_at).as_secs_f64() * 1e3
                );
            }
            runs.push(Run {
                restart_to_open: opened_at.saturating_duration_since(restarted_at),
                sent_in_outage: outage_seqs.len(),
                delivered: outage_seqs
                    .iter()
                    .filter(|s| log.echoed.contains(s))
                    .count(),
                sent_blind: blind_seqs.len(),
                delivered_blind: blind_seqs.iter().filter(|s| log.echoed.contains(s)).count(),
            });
        }
        Ok(())
    }
    .await;

    stop.store(true, Ordering::Relaxed);
    let _ = sender.await;
    client.close().await;
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(5), listener).await;
    server.kill().await?;
    result?;
    let dropped = log_lock(&log).dropped;
    Ok(ReconnectFigures {
        profile,
        runs,
        model,
        dropped,
    })
}

fn log_lock(log: &Mutex<Log>) -> std::sync::MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

/// Polls `check` every millisecond until it gives a value or `limit` passes.
async fn wait_until<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(v) = check() {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

/// The same scenario in virtual time, `seeds` times: a connection stable for longer than
/// `min_uptime` drops; every attempt before `outage` has passed is refused; the first one
/// after it opens. Returns the sorted restart→open delays.
pub fn model(profile: Profile, outage: Duration, seeds: u64) -> Result<Vec<Duration>, BoxError> {
    use tether_core::{Action, Engine, Instant as T, TransportFailure};
    let mut delays = Vec::with_capacity(usize::try_from(seeds)?);
    for seed in 0..seeds {
        let mut engine = Engine::new(profile.config(seed)?, seed);
        let mut now = T::ZERO;
        engine.connect(now);
        let mut transport = None;
        while let Some(action) = engine.poll_action() {
            if let Action::Open(open) = action {
                transport = Some(open.transport);
            }
        }
        let first = transport.ok_or("the engine did not open")?;
        engine.transport_opened(now, first);
        now = now + profile.min_uptime() + Duration::from_millis(500);
        engine.handle_timeout(now);
        engine.transport_closed(now, first, None, "");
        let restart = now + outage;
        let mut opened = None;
        for _ in 0..10_000 {
            while let Some(action) = engine.poll_action() {
                if let Action::Open(open) = action {
                    if now >= restart {
                        opened = Some(now.saturating_duration_since(restart));
                    } else {
                        engine.transport_failed(
                            now,
                            open.transport,
                            TransportFailure::Io("connection refused".to_owned()),
                        );
                    }
                }
            }
            while engine.poll_event().is_some() {}
            if opened.is_some() {
                break;
            }
            let Some(next) = engine.poll_timeout() else {
                break;
            };
            now = now.max(next);
            engine.handle_timeout(now);
        }
        delays.push(opened.ok_or("the engine never reconnected in the model")?);
    }
    delays.sort_unstable();
    Ok(delays)
}
