//! Reconnect delays: capped exponential growth, jitter, and server hints.
//!
//! This module owns the count of consecutive failed attempts (attempt numbers and the attempt
//! limit), the count of waits since the last reset (the exponent: the n-th wait uses
//! `base_delay(n)`, whether the episode began with a failed first attempt or with a stable
//! connection dropping), and the previous delay (decorrelated jitter needs it). The engine resets
//! it only once a connection has stayed open for the minimum uptime.

use crate::close_policy::DelayHint;
use crate::config::{BackoffConfig, Jitter};
use crate::rng::Prng;
use std::time::Duration;

/// The un-jittered `n`-th wait since the backoff was last reset (1-based):
/// `min(max, initial × factor^(n-1))`.
///
/// ```
/// use std::time::Duration;
/// use tether_core::{backoff::base_delay, BackoffConfig};
/// let c = BackoffConfig::default();
/// assert_eq!(base_delay(&c, 1), Duration::from_millis(500));
/// assert_eq!(base_delay(&c, 5), Duration::from_secs(8));
/// assert_eq!(base_delay(&c, 40), Duration::from_secs(30));
/// ```
pub fn base_delay(config: &BackoffConfig, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(1_000) as i32;
    let scaled = config.initial.as_secs_f64() * config.factor.powi(exponent);
    if !scaled.is_finite() || scaled >= config.max.as_secs_f64() {
        config.max
    } else {
        Duration::from_secs_f64(scaled)
    }
}

/// The inclusive range the jittered `n`-th wait must fall in (without server hints).
pub fn delay_bounds(config: &BackoffConfig, n: u32) -> (Duration, Duration) {
    let base = base_delay(config, n);
    match config.jitter {
        Jitter::None => (base, base),
        Jitter::Full => (Duration::ZERO, base),
        Jitter::Equal => (base / 2, base),
        Jitter::Decorrelated => (config.initial, config.max),
    }
}

/// Consecutive-failure state and the delay calculation.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    config: BackoffConfig,
    failures: u32,
    /// Those of `failures` that do not count against `max_attempts` (see
    /// [`record_uncounted_failure`](Self::record_uncounted_failure)); they shape the delays.
    uncounted_failures: u32,
    waits: u32,
    previous: Duration,
}

impl Backoff {
    pub(crate) fn new(config: BackoffConfig) -> Self {
        let previous = config.initial;
        Backoff {
            config,
            failures: 0,
            uncounted_failures: 0,
            waits: 0,
            previous,
        }
    }

    /// Consecutive failed attempts since the last reset.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// Whether the configured attempt limit has been reached by the failures that count.
    pub(crate) fn exhausted(&self) -> bool {
        let counted = self.failures - self.uncounted_failures;
        self.config.max_attempts.is_some_and(|max| counted >= max)
    }

    /// Forget past failures: the connection proved stable.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
        self.uncounted_failures = 0;
        self.waits = 0;
        self.previous = self.config.initial;
    }

    /// Records one more failed attempt (or a connection that dropped before it was stable).
    pub(crate) fn record_failure(&mut self) {
        self.failures = self.failures.saturating_add(1);
    }

    /// [`record_failure`](Self::record_failure) for a failure that is not one of the server's:
    /// the delays grow as usual, but the attempt limit is not nearer. While the app reports the
    /// network offline (a client must not give up in airplane mode), or when an event stream
    /// ended after it dispatched events (how an SSE server says "come back").
    pub(crate) fn record_uncounted_failure(&mut self) {
        if self.failures < u32::MAX {
            self.failures += 1;
            self.uncounted_failures += 1;
        }
    }

    /// The delay before the next attempt: the next wait of the curve (a stable connection
    /// that dropped waits like after a first failure, so a crowd dropped at once still
    /// spreads), combined with the server's hint.
    ///
    /// A hint never shortens the curve, except once: a window (`Within`, `Between`) is used
    /// as given only for the first wait after a stable connection dropped (no failure
    /// recorded since the reset), the graceful restart it exists for. After a connection that
    /// failed before proving stable, the wait is the later of the window's moment and the
    /// curve's, so a server that accepts and closes with 1012 over and over meets the same
    /// growing delays as one that refuses. A minimum (`AtLeast`) is always a floor, never a
    /// ceiling. Either way the curve's part stays within its cap.
    pub(crate) fn next_delay(&mut self, rng: &mut Prng, hint: Option<DelayHint>) -> Duration {
        self.waits = self.waits.saturating_add(1);
        let jittered = self.jittered(rng);
        self.previous = jittered.max(self.config.initial);
        let advised = match hint {
            None => return jittered,
            Some(DelayHint::AtLeast(floor)) => {
                // Spread clients told the same Retry-After over a quarter of it.
                let spread = rng.duration_between(Duration::ZERO, floor / 4);
                return jittered.max(floor.saturating_add(spread));
            }
            Some(DelayHint::Within(window)) => rng.duration_between(Duration::ZERO, window),
            Some(DelayHint::Between(from, to)) => rng.duration_between(from, to),
        };
        if self.failures == 0 {
            advised
        } else {
            advised.max(jittered)
        }
    }

    fn jittered(&self, rng: &mut Prng) -> Duration {
        let base = base_delay(&self.config, self.waits);
        match self.config.jitter {
            Jitter::None => base,
            Jitter::Full => rng.duration_between(Duration::ZERO, base),
            Jitter::Equal => rng.duration_between(base / 2, base),
            Jitter::Decorrelated => {
                let high = self.previous.saturating_mul(3).min(self.config.max);
                rng.duration_between(self.config.initial, high)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(jitter: Jitter) -> BackoffConfig {
        // A 1 s scale, so the curve reads in whole seconds; the default is 500 ms.
        BackoffConfig {
            jitter,
            initial: Duration::from_secs(1),
            ..BackoffConfig::default()
        }
    }

    #[test]
    fn none_is_exact_exponential_with_cap() {
        let mut b = Backoff::new(config(Jitter::None));
        let mut rng = Prng::seed_from_u64(1);
        let delays: Vec<u64> = (0..7)
            .map(|_| {
                b.record_failure();
                b.next_delay(&mut rng, None).as_secs()
            })
            .collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30]);
        // A stable connection dropped: the curve starts over, 1, 2, 4 s.
        b.reset();
        assert_eq!(b.next_delay(&mut rng, None), Duration::from_secs(1));
        b.record_failure();
        assert_eq!(b.next_delay(&mut rng, None), Duration::from_secs(2));
        b.record_failure();
        assert_eq!(b.next_delay(&mut rng, None), Duration::from_secs(4));
    }

    #[test]
    fn every_strategy_stays_in_bounds() {
        for jitter in [
            Jitter::None,
            Jitter::Full,
            Jitter::Equal,
            Jitter::Decorrelated,
        ] {
            let c = config(jitter);
            let mut b = Backoff::new(c.clone());
            let mut rng = Prng::seed_from_u64(9);
            for attempt in 1..=200 {
                b.record_failure();
                let d = b.next_delay(&mut rng, None);
                let (lo, hi) = delay_bounds(&c, attempt);
                assert!(d >= lo && d <= hi, "{jitter:?} attempt {attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn full_jitter_does_not_collapse_at_the_cap() {
        let mut b = Backoff::new(config(Jitter::Full));
        let mut rng = Prng::seed_from_u64(3);
        let late: Vec<Duration> = (0..100)
            .map(|_| {
                b.record_failure();
                b.next_delay(&mut rng, None)
            })
            .skip(20)
            .collect();
        let distinct: std::collections::BTreeSet<_> = late.iter().collect();
        assert!(distinct.len() > 70, "delays at the cap must stay spread");
    }

    #[test]
    fn hints_raise_or_replace_the_delay() {
        let mut b = Backoff::new(config(Jitter::Full));
        let mut rng = Prng::seed_from_u64(5);
        let floor = Duration::from_secs(7);
        let d = b.next_delay(&mut rng, Some(DelayHint::AtLeast(floor)));
        assert!(d >= floor && d <= floor + floor / 4);
        // The largest floor a config allows saturates instead of overflowing.
        let huge = b.next_delay(&mut rng, Some(DelayHint::AtLeast(Duration::MAX)));
        assert_eq!(huge, Duration::MAX);
        let window = Duration::from_secs(10);
        for _ in 0..100 {
            let d = b.next_delay(&mut rng, Some(DelayHint::Within(window)));
            assert!(d <= window);
        }
    }

    #[test]
    fn a_window_replaces_the_curve_only_after_a_stable_connection() {
        let mut b = Backoff::new(config(Jitter::None));
        let mut rng = Prng::seed_from_u64(11);
        let tiny = Some(DelayHint::Within(Duration::from_millis(1)));
        // A stable connection closed with 1012: the window as given.
        assert!(b.next_delay(&mut rng, tiny) <= Duration::from_millis(1));
        // Every later connection failed before proving stable: the curve, up to its cap.
        let delays: Vec<u64> = (0..7)
            .map(|_| {
                b.record_failure();
                b.next_delay(&mut rng, tiny).as_secs()
            })
            .collect();
        assert_eq!(delays, vec![2, 4, 8, 16, 30, 30, 30]);
        // A window longer than the curve's wait still counts: the later of the two.
        let mut b = Backoff::new(config(Jitter::None));
        b.record_failure();
        let window = Duration::from_secs(60);
        let d = b.next_delay(
            &mut rng,
            Some(DelayHint::Between(Duration::from_secs(50), window)),
        );
        assert!(d >= Duration::from_secs(50) && d <= window, "{d:?}");
    }

    #[test]
    fn a_minimum_is_a_floor_never_a_ceiling() {
        let mut b = Backoff::new(config(Jitter::None));
        let mut rng = Prng::seed_from_u64(12);
        let floor = Duration::from_secs(5);
        // The curve at this test's 1 s scale (the default's doubled), written out rather than
        // computed by the code under test.
        let curve = [1, 2, 4, 8, 16, 30, 30, 30];
        for (n, secs) in (1..=8).zip(curve) {
            b.record_failure();
            let d = b.next_delay(&mut rng, Some(DelayHint::AtLeast(floor)));
            let base = Duration::from_secs(secs);
            assert!(d >= base.max(floor), "wait {n}: {d:?}");
            assert!(d <= base.max(floor + floor / 4), "wait {n}: {d:?}");
        }
    }

    #[test]
    fn attempt_limit() {
        let mut b = Backoff::new(BackoffConfig {
            max_attempts: Some(2),
            ..BackoffConfig::default()
        });
        assert!(!b.exhausted());
        b.record_failure();
        assert!(!b.exhausted());
        b.record_failure();
        assert!(b.exhausted());
    }
}
