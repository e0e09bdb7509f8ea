//! What is being compared: the strategies, and the two comparison baselines that are *not*
//! the engine.
//!
//! The four jitter strategies run the real `tether_core::Engine`. The two baselines are small
//! delay models of other clients' documented defaults (see docs/performance.md, "Reconnect
//! storms"), so the chart can show what Tether's default avoids. They are comparison props,
//! not product code: nothing outside this simulator uses them.

use clap::ValueEnum;
use std::time::Duration;
use tether_core::{BackoffConfig, Jitter, Prng};

/// One reconnect policy the simulator can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Strategy {
    /// Tether engine, full jitter: uniform in [0, base] (the default).
    Full,
    /// Tether engine, equal jitter: uniform in [base/2, base].
    Equal,
    /// Tether engine, decorrelated jitter: uniform in [initial, min(cap, previous × 3)].
    Decorrelated,
    /// Tether engine, no jitter: exactly base (every client in lock-step).
    None,
    /// Baseline model of socket.io-client: 1 s × 2, ±50% jitter applied before a 5 s cap.
    #[value(name = "socketio-style")]
    SocketIo,
    /// Baseline model of fixed growth without jitter: 3 s × 1.3, cap 10 s (partysocket-style).
    #[value(name = "partysocket-style")]
    FixedGrowth,
}

impl Strategy {
    /// Every strategy, in report order: Tether's default first, the baselines last.
    pub(crate) const ALL: [Strategy; 6] = [
        Strategy::Full,
        Strategy::Equal,
        Strategy::Decorrelated,
        Strategy::None,
        Strategy::SocketIo,
        Strategy::FixedGrowth,
    ];

    /// The short name used on the command line and in every output.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Strategy::Full => "full",
            Strategy::Equal => "equal",
            Strategy::Decorrelated => "decorrelated",
            Strategy::None => "none",
            Strategy::SocketIo => "socketio-style",
            Strategy::FixedGrowth => "partysocket-style",
        }
    }

    /// A one-line description that says what is modelled, with the curve's numbers.
    pub(crate) fn describe(self, backoff: &BackoffConfig) -> String {
        let curve = format!(
            "{} × {}, cap {}",
            seconds(backoff.initial),
            backoff.factor,
            seconds(backoff.max)
        );
        match self {
            Strategy::Full => format!("Tether engine, full jitter (default): {curve}"),
            Strategy::Equal => format!("Tether engine, equal jitter: {curve}"),
            Strategy::Decorrelated => format!("Tether engine, decorrelated jitter: {curve}"),
            Strategy::None => format!("Tether engine, no jitter: {curve}"),
            Strategy::SocketIo => {
                "baseline model, socket.io-style: 1 s × 2, ±50% jitter before a 5 s cap".to_owned()
            }
            Strategy::FixedGrowth => {
                "baseline model, fixed growth without jitter: 3 s × 1.3, cap 10 s (partysocket-style)"
                    .to_owned()
            }
        }
    }

    /// The strategy's colour in the chart.
    pub(crate) fn colour(self) -> &'static str {
        match self {
            Strategy::Full => "#2563eb",
            Strategy::Equal => "#059669",
            Strategy::Decorrelated => "#7c3aed",
            Strategy::None => "#dc2626",
            Strategy::SocketIo => "#ea580c",
            Strategy::FixedGrowth => "#a16207",
        }
    }

    /// The engine's jitter for the engine strategies; `None` for the baseline models.
    pub(crate) fn engine_jitter(self) -> Option<Jitter> {
        match self {
            Strategy::Full => Some(Jitter::Full),
            Strategy::Equal => Some(Jitter::Equal),
            Strategy::Decorrelated => Some(Jitter::Decorrelated),
            Strategy::None => Some(Jitter::None),
            Strategy::SocketIo | Strategy::FixedGrowth => Option::None,
        }
    }

    /// The baseline delay model, for the strategies that are not the engine.
    pub(crate) fn baseline(self) -> Option<Baseline> {
        match self {
            Strategy::SocketIo => Some(Baseline::SocketIo),
            Strategy::FixedGrowth => Some(Baseline::FixedGrowth),
            _ => Option::None,
        }
    }
}

/// `1 s`, `1.5 s`, `250 ms`.
pub(crate) fn seconds(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{} s", d.as_secs_f64())
    }
}

/// A comparison client's reconnect delay policy (not the engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Baseline {
    /// socket.io-client 4 (`Manager` + `contrib/backo2`): delay = 1000 × 2^n ms, then one
    /// uniform draw `r` gives both the size (`⌊r × 0.5 × delay⌋`) and the sign (even first
    /// decimal digit subtracts), and only then is the result capped at 5000 ms. The third
    /// retry is capped for 30% of clients, the fourth for 90%, every later one for all: from
    /// then on each client waits exactly 5 s, so whatever spread the crowd had is frozen.
    /// `n` counts retries since the last successful open, from 0.
    SocketIo,
    /// Fixed growth without jitter, as partysocket's defaults: the k-th retry after a stable
    /// connection waits `3000 × 1.3^(k-1)` ms, capped at 10 000 ms. No randomness at all.
    FixedGrowth,
}

impl Baseline {
    /// The delay before retry number `retry` (0-based since the connection was lost).
    pub(crate) fn delay(self, retry: u32, rng: &mut Prng) -> Duration {
        let exponent = retry.min(64) as i32;
        let ms = match self {
            Baseline::SocketIo => {
                let base = 1000.0 * 2f64.powi(exponent);
                let r = unit_f64(rng);
                let deviation = (r * 0.5 * base).floor();
                let jittered = if ((r * 10.0).floor() as u64) & 1 == 0 {
                    base - deviation
                } else {
                    base + deviation
                };
                jittered.min(5000.0).floor()
            }
            Baseline::FixedGrowth => (3000.0 * 1.3f64.powi(exponent)).min(10_000.0),
        };
        Duration::from_micros((ms * 1000.0) as u64)
    }
}

/// A uniform draw in [0, 1), like `Math.random()`.
fn unit_f64(rng: &mut Prng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// The engine's backoff for a strategy: the configured curve with the strategy's jitter.
pub(crate) fn engine_backoff(curve: &BackoffConfig, jitter: Jitter) -> BackoffConfig {
    BackoffConfig {
        jitter,
        ..curve.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socketio_collapses_at_the_cap() {
        let mut rng = Prng::seed_from_u64(3);
        let first: Vec<Duration> = (0..1000)
            .map(|_| Baseline::SocketIo.delay(0, &mut rng))
            .collect();
        assert!(first
            .iter()
            .all(|d| *d >= Duration::from_millis(500) && *d <= Duration::from_millis(1500)));
        // From the fifth retry the ±50% range starts above the cap: always exactly 5 s.
        for retry in 4..10 {
            assert_eq!(
                Baseline::SocketIo.delay(retry, &mut rng),
                Duration::from_secs(5)
            );
        }
        // The fourth retry (8 s ± 4 s) is capped unless the draw subtracted more than 3 s.
        let capped = (0..1000)
            .filter(|_| Baseline::SocketIo.delay(3, &mut rng) == Duration::from_secs(5))
            .count();
        assert!(capped > 800, "{capped}");
    }

    #[test]
    fn fixed_growth_is_deterministic_and_capped() {
        let mut rng = Prng::seed_from_u64(1);
        let ms: Vec<u128> = (0..8)
            .map(|k| Baseline::FixedGrowth.delay(k, &mut rng).as_millis())
            .collect();
        assert_eq!(
            ms,
            vec![3000, 3900, 5070, 6591, 8568, 10_000, 10_000, 10_000]
        );
    }

    #[test]
    fn names_round_trip_through_clap() {
        for s in Strategy::ALL {
            assert_eq!(Strategy::from_str(s.name(), false), Ok(s));
        }
    }
}
