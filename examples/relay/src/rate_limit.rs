//! The per-connection token bucket that enforces [`RateLimit`]. Pure: the caller passes the
//! current time, so the arithmetic is tested without waiting.

use crate::config::RateLimit;
use std::time::Duration;
use tokio::time::Instant;

/// Tokens refill continuously at `per_second` up to `burst`; each message takes one.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket, so a new connection may send its first `burst` messages at once.
    pub(crate) fn new(limit: RateLimit, now: Instant) -> Self {
        TokenBucket {
            per_second: f64::from(limit.per_second),
            burst: f64::from(limit.burst),
            tokens: f64::from(limit.burst),
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        self.tokens = self.tokens_at(now);
        self.last = now.max(self.last);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// True if a token is there now. Takes nothing.
    pub(crate) fn has_token(&self, now: Instant) -> bool {
        self.tokens_at(now) >= 1.0
    }

    /// When the next token will be there: `now` if one is, `None` if never (a rate of 0 per
    /// second once the burst is spent). Takes nothing.
    pub(crate) fn token_at(&self, now: Instant) -> Option<Instant> {
        let missing = 1.0 - self.tokens_at(now);
        if missing <= 0.0 {
            return Some(now);
        }
        if self.per_second <= 0.0 {
            return None;
        }
        // Rounded up to the next millisecond: a caller that waits until then finds the token
        // there, not 0.999… of it.
        let ms = (missing / self.per_second * 1000.0).ceil();
        Some(now + Duration::from_millis(ms as u64))
    }

    /// The tokens there would be at `now`.
    fn tokens_at(&self, now: Instant) -> f64 {
        // `saturating_duration_since` keeps a clock that goes backwards from minting tokens.
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        (self.tokens + elapsed * self.per_second).min(self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_sustained_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(
            RateLimit {
                per_second: 10,
                burst: 3,
            },
            t0,
        );
        assert!((0..3).all(|_| bucket.try_take(t0)));
        assert!(!bucket.try_take(t0));
        // 10/s: one token every 100 ms.
        assert!(!bucket.try_take(t0 + Duration::from_millis(50)));
        assert!(bucket.try_take(t0 + Duration::from_millis(100)));
        assert!(!bucket.try_take(t0 + Duration::from_millis(100)));
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| bucket.try_take(later)).count(), 3);
    }

    #[test]
    fn time_going_backwards_mints_nothing() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut bucket = TokenBucket::new(
            RateLimit {
                per_second: 1,
                burst: 1,
            },
            t0,
        );
        assert!(bucket.try_take(t0));
        assert!(!bucket.try_take(t0 - Duration::from_millis(500)));
        assert!(!bucket.try_take(t0 + Duration::from_millis(500)));
        assert!(bucket.try_take(t0 + Duration::from_millis(1000)));
    }

    #[test]
    fn the_next_token_is_found_where_it_was_announced() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(
            RateLimit {
                per_second: 3,
                burst: 1,
            },
            t0,
        );
        assert_eq!(bucket.token_at(t0), Some(t0), "one is there");
        assert!(bucket.try_take(t0));
        let at = bucket.token_at(t0).expect("it refills");
        assert_eq!(at, t0 + Duration::from_millis(334), "1/3 s, rounded up");
        assert!(!bucket.try_take(at - Duration::from_millis(1)));
        assert!(bucket.try_take(at));

        let mut never = TokenBucket::new(
            RateLimit {
                per_second: 0,
                burst: 1,
            },
            t0,
        );
        assert!(never.try_take(t0));
        assert_eq!(never.token_at(t0 + Duration::from_secs(60)), None);
    }
}
