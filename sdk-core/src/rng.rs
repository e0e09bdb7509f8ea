//! The engine's only source of randomness: a named, portable, seeded PRNG.
//!
//! Jitter must be reproducible: the same seed must give the same delays in a test, in a
//! native app and in the browser. `rand`'s `SmallRng` is a different algorithm on 32- and
//! 64-bit targets, so the engine names its generator explicitly (PCG-64 MCG, whose output is
//! defined for every target) and never touches `getrandom`. Drivers seed it from OS or
//! browser entropy; tests seed it with a constant.

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;
use std::time::Duration;

/// A seeded pseudo-random number generator with the same output on every platform.
///
/// ```
/// use tether_core::Prng;
/// let mut a = Prng::seed_from_u64(7);
/// let mut b = Prng::seed_from_u64(7);
/// assert_eq!(a.next_u64(), b.next_u64());
/// ```
#[derive(Debug, Clone)]
pub struct Prng(Pcg64Mcg);

impl Prng {
    /// A generator whose whole output is determined by `seed`.
    pub fn seed_from_u64(seed: u64) -> Self {
        Prng(Pcg64Mcg::seed_from_u64(seed))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.random::<u64>()
    }

    /// A duration drawn uniformly from `[low, high]` (microsecond resolution).
    /// If `high < low` the bounds are swapped, so callers cannot trigger a panic.
    pub fn duration_between(&mut self, low: Duration, high: Duration) -> Duration {
        let (lo, hi) = if high < low { (high, low) } else { (low, high) };
        let lo_us = duration_micros(lo);
        let hi_us = duration_micros(hi);
        if lo_us == hi_us {
            return lo;
        }
        Duration::from_micros(self.0.random_range(lo_us..=hi_us))
    }
}

/// Microseconds in `d`, saturating at `u64::MAX`.
pub(crate) fn duration_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_known_values() {
        // Pinned values: if these change, delays change on every platform at once, which
        // would break reproducibility of recorded scenarios. The wasm test suite asserts the
        // same numbers.
        let mut rng = Prng::seed_from_u64(42);
        let first: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        let mut again = Prng::seed_from_u64(42);
        let second: Vec<u64> = (0..3).map(|_| again.next_u64()).collect();
        assert_eq!(first, second);
        assert_eq!(
            first,
            [
                10_580_897_095_847_554_459,
                2_459_073_333_136_617_071,
                6_565_857_352_388_044_582
            ]
        );
    }

    #[test]
    fn duration_between_stays_in_bounds() {
        let mut rng = Prng::seed_from_u64(1);
        for _ in 0..10_000 {
            let d = rng.duration_between(Duration::from_millis(10), Duration::from_millis(20));
            assert!(d >= Duration::from_millis(10) && d <= Duration::from_millis(20));
        }
        let swapped = rng.duration_between(Duration::from_secs(2), Duration::from_secs(1));
        assert!(swapped >= Duration::from_secs(1) && swapped <= Duration::from_secs(2));
        assert_eq!(
            rng.duration_between(Duration::from_secs(3), Duration::from_secs(3)),
            Duration::from_secs(3)
        );
    }
}
