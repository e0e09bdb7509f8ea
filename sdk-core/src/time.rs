//! The engine's notion of time: a monotonic [`Instant`] chosen by the driver.
//!
//! `std::time::Instant` panics on `wasm32-unknown-unknown`, and reading a clock inside the
//! engine would make it untestable, so time is an input. A driver picks an origin (process
//! start, `performance.now()` zero, a test's virtual zero) and stamps every call with the time
//! elapsed since it. Durations are plain [`std::time::Duration`], which is just data and works
//! everywhere.
//!
//! The resolution is one microsecond rather than the millisecond the design sketch named:
//! round trips on a LAN or loopback are well under a millisecond, and a millisecond clock
//! would report them all as zero.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in time, in microseconds since an origin chosen by the driver.
///
/// Instants only make sense relative to each other within one engine. Arithmetic saturates:
/// an `Instant` never wraps and subtracting a later instant gives a zero duration.
///
/// ```
/// use std::time::Duration;
/// use tether_core::Instant;
///
/// let start = Instant::ZERO;
/// let later = start + Duration::from_millis(1500);
/// assert_eq!(later.as_millis(), 1500);
/// assert_eq!(later.saturating_duration_since(start), Duration::from_millis(1500));
/// assert_eq!(start.saturating_duration_since(later), Duration::ZERO);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The driver's origin.
    pub const ZERO: Instant = Instant(0);
    /// The far future; used as "never" by callers that need a value.
    pub const MAX: Instant = Instant(u64::MAX);

    /// An instant `micros` microseconds after the origin.
    pub const fn from_micros(micros: u64) -> Self {
        Instant(micros)
    }

    /// An instant `millis` milliseconds after the origin (saturating).
    pub const fn from_millis(millis: u64) -> Self {
        Instant(millis.saturating_mul(1000))
    }

    /// An instant from fractional milliseconds, as browsers' `performance.now()` reports them.
    /// Negative and NaN inputs map to the origin.
    pub fn from_millis_f64(millis: f64) -> Self {
        if millis.is_nan() || millis <= 0.0 {
            return Instant::ZERO;
        }
        // `as` saturates for floats too large for u64.
        Instant((millis * 1000.0) as u64)
    }

    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Whole milliseconds since the origin.
    pub const fn as_millis(self) -> u64 {
        self.0 / 1000
    }

    /// The time elapsed since `earlier`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

/// Whether `d` is zero on the engine's clock (it counts whole microseconds), so a deadline
/// `now + d` would already have passed in the call that sets it. The one rule behind every
/// refusal of a too-short duration: config fields (`ConfigError`) and per-call options
/// (`SendError::InvalidOptions`).
pub(crate) fn under_a_microsecond(d: Duration) -> bool {
    d < Duration::from_micros(1)
}

/// `now + d` as a deadline, or `None` (never) when the sum saturated to `now` although `d` is
/// not zero: at the clock's end a deadline would be due at once in every call, for ever (an
/// attempt per call, without backoff), and a ping due again in every call.
pub(crate) fn deadline_after(now: Instant, d: Duration) -> Option<Instant> {
    let at = now + d;
    (at > now || under_a_microsecond(d)).then_some(at)
}

impl Add<Duration> for Instant {
    type Output = Instant;

    fn add(self, rhs: Duration) -> Instant {
        Instant(self.0.saturating_add(crate::rng::duration_micros(rhs)))
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;

    fn sub(self, rhs: Duration) -> Instant {
        Instant(self.0.saturating_sub(crate::rng::duration_micros(rhs)))
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Keeps the engine's clock monotonic: a `now` earlier than one already seen is clamped to it.
///
/// Drivers are expected to pass a monotonic clock, but a bug (or a wall clock used by mistake)
/// must not make the engine fire timers twice or compute negative delays.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Clock {
    last: Instant,
}

impl Clock {
    /// Returns `now`, or the latest instant seen so far if `now` went backwards.
    pub(crate) fn observe(&mut self, now: Instant) -> Instant {
        if now > self.last {
            self.last = now;
        }
        self.last
    }

    pub(crate) fn now(&self) -> Instant {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
        assert_eq!(Instant::ZERO - Duration::from_secs(1), Instant::ZERO);
        assert_eq!(Instant::from_millis(u64::MAX), Instant::MAX);
    }

    #[test]
    fn from_performance_now() {
        assert_eq!(Instant::from_millis_f64(1.5).as_micros(), 1500);
        assert_eq!(Instant::from_millis_f64(-3.0), Instant::ZERO);
        assert_eq!(Instant::from_millis_f64(f64::NAN), Instant::ZERO);
        assert_eq!(Instant::from_millis_f64(f64::INFINITY), Instant::MAX);
    }

    #[test]
    fn clock_clamps_backwards_time() {
        let mut clock = Clock::default();
        assert_eq!(
            clock.observe(Instant::from_millis(10)),
            Instant::from_millis(10)
        );
        assert_eq!(
            clock.observe(Instant::from_millis(5)),
            Instant::from_millis(10)
        );
        assert_eq!(
            clock.observe(Instant::from_millis(11)),
            Instant::from_millis(11)
        );
    }
}
