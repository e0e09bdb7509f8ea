//! Deterministic engine runs whose every number must be the same natively and on wasm32.
//!
//! Shared, via `#[path]`, by `sdk-core/tests/wasm_parity.rs` (native) and
//! `sdk-wasm/tests/parity.rs` (compiled to wasm32, run by wasm-bindgen-test); both compare
//! [`transcript`] with the literal file `expected.txt` beside this one. A wasm32 difference
//! would come from the platform (32-bit `usize`, float maths, a PRNG that differs by pointer
//! width), which is exactly what the engine promises not to have.

use std::fmt::Write;
use std::time::Duration;
use tether_core::{
    Action, Config, ConfigBuilder, DisconnectCause, Engine, Event, Frame, Instant, Jitter, Prng,
    Protocol, TransportFailure,
};

/// Every scenario's numbers, one line per scenario.
pub fn transcript() -> String {
    let mut out = String::new();

    let mut rng = Prng::seed_from_u64(42);
    let v: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
    line(&mut out, "prng seed=42 next_u64", &v);
    let mut rng = Prng::seed_from_u64(42);
    let v: Vec<u64> = (0..4)
        .map(|_| micros(rng.duration_between(Duration::ZERO, Duration::from_secs(30))))
        .collect();
    line(&mut out, "prng seed=42 duration_between(0,30s) us", &v);

    for (name, jitter) in [
        ("none", Jitter::None),
        ("full", Jitter::Full),
        ("equal", Jitter::Equal),
        ("decorrelated", Jitter::Decorrelated),
    ] {
        let config = builder().jitter(jitter).seed(7);
        let label = format!("refused jitter={name} seed=7 delays us");
        refused(&mut out, &label, config, 12);
    }
    let config = builder()
        .backoff_initial(Duration::from_millis(250))
        .backoff_factor(1.5)
        .backoff_max(Duration::from_secs(10))
        .seed(99);
    refused(
        &mut out,
        "refused full x1.5 250ms..10s seed=99 delays us",
        config,
        12,
    );

    for code in [1012, 1013] {
        let label = format!("accept-then-close {code} seed=5 delays us");
        let config = builder().seed(5);
        let mut run = Run::new(config.build().expect("valid config"));
        run.serve(60, |engine, now, action| {
            if let Action::Open(open) = action {
                engine.transport_opened(now, open.transport);
                engine.transport_closed(now, open.transport, Some(code), "");
            }
        });
        line(&mut out, &label, &run.delays(6));
    }

    black_hole(&mut out);
    overflow(&mut out);
    out
}

fn builder() -> ConfigBuilder {
    Config::builder("ws://127.0.0.1:9/ws")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).expect("fits")
}

fn line(out: &mut String, name: &str, values: &[u64]) {
    let _ = write!(out, "{name}:");
    for v in values {
        let _ = write!(out, " {v}");
    }
    out.push('\n');
}

/// One engine in virtual time, answering its actions with a scripted server.
struct Run {
    engine: Engine,
    now: Instant,
    /// (virtual ms, attempt, delay, cause) of every ReconnectScheduled.
    reconnects: Vec<(u64, u32, Duration, DisconnectCause)>,
    events: Vec<Event>,
}

impl Run {
    fn new(config: Config) -> Self {
        Run {
            // Every config here fixes its seed (the timing); the entropy gives the client id
            // and publish-id prefix, the same on every platform for the same entropy.
            engine: Engine::new(config, 0),
            now: Instant::ZERO,
            reconnects: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Runs up to `secs` of virtual time (and at most 10,000 steps).
    fn serve(&mut self, secs: u64, mut server: impl FnMut(&mut Engine, Instant, Action)) {
        let end = Instant::from_millis(secs * 1000);
        self.engine.connect(self.now);
        for _ in 0..10_000 {
            loop {
                if let Some(action) = self.engine.poll_action() {
                    server(&mut self.engine, self.now, action);
                } else if let Some(event) = self.engine.poll_event() {
                    if let Event::ReconnectScheduled {
                        attempt,
                        delay,
                        cause,
                    } = &event
                    {
                        let at = self.now.as_millis();
                        self.reconnects.push((at, *attempt, *delay, cause.clone()));
                    }
                    self.events.push(event);
                } else {
                    break;
                }
            }
            match self.engine.poll_timeout() {
                Some(at) if at <= end => {
                    self.now = at;
                    self.engine.handle_timeout(at);
                }
                _ => break,
            }
        }
    }

    fn delays(&self, n: usize) -> Vec<u64> {
        self.reconnects
            .iter()
            .take(n)
            .map(|r| micros(r.2))
            .collect()
    }
}

/// A server that refuses every attempt: the delays are the backoff curve with jitter.
fn refused(out: &mut String, label: &str, config: ConfigBuilder, n: usize) {
    let mut run = Run::new(config.build().expect("valid config"));
    run.serve(3_600, |engine, now, action| {
        if let Action::Open(open) = action {
            let failure = TransportFailure::Io("refused".into());
            engine.transport_failed(now, open.transport, failure);
        }
    });
    line(out, label, &run.delays(n));
}

/// Tether mode in a browser (no ping frames): app pings into a server that never answers.
fn black_hole(out: &mut String) {
    let config = builder()
        .protocol(Protocol::Tether)
        .driver_can_send_ping_frames(false)
        .heartbeat_interval(Duration::from_secs(1))
        .max_missed_pongs(2)
        .seed(11)
        .build()
        .expect("valid config");
    let mut run = Run::new(config);
    let mut frames = Vec::new();
    let mut opens = 0;
    run.serve(10, |engine, now, action| match action {
        Action::Open(open) => {
            opens += 1;
            if opens == 1 {
                engine.transport_opened(now, open.transport);
            } else {
                engine.transport_failed(now, open.transport, TransportFailure::Io("down".into()));
            }
        }
        Action::Send {
            frame: Frame::Text(text),
            ..
        } => frames.push((now.as_millis(), text)),
        _ => {}
    });
    let (at, attempt, delay, cause) = run.reconnects.first().cloned().expect("a reconnect");
    let dead = u64::from(cause == DisconnectCause::HeartbeatTimeout);
    line(
        out,
        "black hole seed=11: dead at ms, heartbeat cause, attempt, delay us",
        &[at, dead, u64::from(attempt), micros(delay)],
    );
    let _ = writeln!(out, "black hole client id: {}", run.engine.client_id());
    for (at, text) in frames.iter().take(3) {
        let _ = writeln!(out, "black hole frame at {at} ms: {text}");
    }
}

/// Six messages into an outbox of three while idle: the oldest three are reported dropped.
fn overflow(out: &mut String) {
    let config = builder()
        .outbox_max_messages(3)
        .seed(1)
        .build()
        .expect("valid config");
    let mut engine = Engine::new(config, 0);
    let mut accepted = Vec::new();
    for i in 0..6 {
        let id = engine
            .send(Instant::ZERO, format!("m{i}"))
            .expect("accepted");
        accepted.push(id.get());
    }
    let mut dropped = Vec::new();
    while let Some(event) = engine.poll_event() {
        if let Event::Dropped { ids, .. } = event {
            dropped.extend(ids.iter().map(|id| id.get()));
        }
    }
    line(out, "overflow max=3 accepted ids", &accepted);
    line(out, "overflow max=3 dropped ids", &dropped);
    let len = u64::try_from(engine.outbox_len()).expect("fits");
    line(
        out,
        "overflow max=3 outbox len, dropped_overflow",
        &[len, engine.stats().dropped_overflow],
    );
}
