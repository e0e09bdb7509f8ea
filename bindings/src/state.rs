//! [`ConnectionState`] and [`CloseReason`]: the connection lifecycle, mirrored from
//! `tether::State` and `tether::CloseReason`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The connection lifecycle. Every change reaches listeners as
/// [`ClientEvent::StateChanged`](crate::ClientEvent::StateChanged).
///
/// `Idle → Connecting → Open → (dropped) → Waiting → Connecting → … → Closed`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum ConnectionState {
    /// Created; `connect()` not called yet.
    Idle,
    /// Attempt number `attempt` (1-based since the last stable connection) is under way:
    /// fetching a token and/or performing the handshake.
    Connecting {
        /// Attempt number.
        attempt: u32,
    },
    /// Connected: messages flow.
    Open,
    /// The app asked to close; waiting for the close handshake.
    Closing,
    /// Backing off before attempt `attempt`, which starts in `retry_in_ms` from when this
    /// value was made, at about `retry_at_unix_ms` on the wall clock. `networkChanged(true)` or
    /// `connect()` skip the wait, but not a minimum the server set (Retry-After, close 1013,
    /// `reconnect_after_ms`): the attempt then moves to it (a `Waiting` with an earlier time).
    ///
    /// Both are computed when the value is made (the event is converted, a listener's state
    /// snapshot is delivered, or `state()` is called) from the time left on the client's
    /// monotonic clock, so they are right after the
    /// device slept or the wall clock was set; a value kept from before does not update: ask
    /// `state()` again.
    Waiting {
        /// The next attempt's number.
        attempt: u32,
        /// When it starts, in Unix milliseconds (the wall clock when this value was made
        /// plus `retry_in_ms`): show a countdown with it.
        retry_at_unix_ms: u64,
        /// Milliseconds left when this value was made (as `retryInMs` in the browser package).
        retry_in_ms: u64,
    },
    /// Stopped until the app calls `connect()` again.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// Why the client reached [`ConnectionState::Closed`].
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum CloseReason {
    /// The app closed it, with this close code.
    App {
        /// The close code (1000 unless `closeWith` chose another).
        code: u16,
    },
    /// `maxAttempts` consecutive attempts failed.
    GaveUp {
        /// How many.
        attempts: u32,
    },
    /// The server's close code or HTTP status is terminal under the close policy: retrying
    /// would not help (e.g. 404, close 4004).
    Refused {
        /// The WebSocket close code, if any.
        code: Option<u16>,
        /// The HTTP status, if any.
        status: Option<u16>,
        /// The server's reason text.
        reason: String,
    },
    /// The server refused the credentials on two attempts in a row (the second with a freshly
    /// fetched token where there is a token provider): sign in again.
    Unauthorized {
        /// The close code, if the refusal was a close.
        code: Option<u16>,
        /// The HTTP status, if the refusal was an HTTP response.
        status: Option<u16>,
    },
}

impl From<tether::CloseReason> for CloseReason {
    fn from(reason: tether::CloseReason) -> Self {
        match reason {
            tether::CloseReason::App { code } => CloseReason::App { code },
            tether::CloseReason::GaveUp { attempts } => CloseReason::GaveUp { attempts },
            tether::CloseReason::Refused {
                code,
                status,
                reason,
            } => CloseReason::Refused {
                code,
                status,
                reason,
            },
            tether::CloseReason::Unauthorized { code, status } => {
                CloseReason::Unauthorized { code, status }
            }
            // `CloseReason` is non-exhaustive; a reason added to the core later is, from the
            // app's point of view, a refusal it cannot fix by retrying.
            other => CloseReason::Refused {
                code: None,
                status: None,
                reason: other.to_string(),
            },
        }
    }
}

/// Reads the engine's clock, to turn its deadlines into time left.
///
/// The `tether` crate stamps `State::Waiting { until }` with engine time: monotonic time
/// since an origin private to its client task. `EngineClock::now()` is taken on the same
/// monotonic clock immediately before the client is built, so its origin precedes the
/// driver's by microseconds; the time left it computes is short by that much, which no
/// countdown can show.
///
/// A deadline is never placed on the wall clock once and kept: the wall clock jumps (set by
/// hand or by the network) and, on a phone, runs on while the device sleeps and the
/// monotonic clock stands still. Only the time left is stable; it is added to the wall clock
/// at conversion time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EngineClock {
    origin: tokio::time::Instant,
}

impl EngineClock {
    pub(crate) fn now() -> Self {
        EngineClock {
            origin: tokio::time::Instant::now(),
        }
    }

    /// The engine's time now: time since its origin.
    fn engine_now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Converts a core state, placing a backoff deadline on the wall clock as of now.
    pub(crate) fn state(&self, state: tether::State) -> ConnectionState {
        convert(state, self.engine_now(), SystemTime::now())
    }
}

/// A converted state and when it was converted: a listener's snapshot of the state (its first
/// event, and the one after `Lagged`) is delivered later than that, and a `Waiting`'s time
/// left is brought up to the moment of delivery, as `state()` would give it then. Kept as the
/// time left on the monotonic clock, like [`EngineClock`], and placed on the wall clock only
/// when delivered.
#[derive(Debug, Clone)]
pub(crate) struct Stamped {
    state: ConnectionState,
    made: tokio::time::Instant,
}

impl Stamped {
    /// `state`, converted just now.
    pub(crate) fn new(state: ConnectionState) -> Self {
        Stamped {
            state,
            made: tokio::time::Instant::now(),
        }
    }

    /// The state as of now: a `Waiting` with the time that has passed since it was made taken
    /// off its time left.
    pub(crate) fn now(&self) -> ConnectionState {
        aged(self.state.clone(), self.made.elapsed(), SystemTime::now())
    }
}

/// `state`, made `elapsed` ago, as of wall time `wall_now`.
fn aged(state: ConnectionState, elapsed: Duration, wall_now: SystemTime) -> ConnectionState {
    match state {
        ConnectionState::Waiting {
            attempt,
            retry_in_ms,
            ..
        } => {
            let left = Duration::from_millis(retry_in_ms).saturating_sub(elapsed);
            waiting(attempt, left, wall_now)
        }
        other => other,
    }
}

/// `Waiting` for `attempt`, due in `left` from wall time `wall_now`.
fn waiting(attempt: u32, left: Duration, wall_now: SystemTime) -> ConnectionState {
    let at = (wall_now + left)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    ConnectionState::Waiting {
        attempt,
        retry_at_unix_ms: millis(at),
        retry_in_ms: millis(left),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Converts a core state at engine time `engine_now` (since its origin), wall time `wall_now`.
fn convert(state: tether::State, engine_now: Duration, wall_now: SystemTime) -> ConnectionState {
    match state {
        tether::State::Idle => ConnectionState::Idle,
        tether::State::Connecting { attempt } => ConnectionState::Connecting { attempt },
        tether::State::Open => ConnectionState::Open,
        tether::State::Closing => ConnectionState::Closing,
        tether::State::Waiting { attempt, until } => {
            let left = Duration::from_micros(until.as_micros()).saturating_sub(engine_now);
            waiting(attempt, left, wall_now)
        }
        tether::State::Closed { reason } => ConnectionState::Closed {
            reason: reason.into(),
        },
        // Non-exhaustive: a future core state is reported as the nearest one the app
        // knows, "connecting", rather than being hidden.
        _ => ConnectionState::Connecting { attempt: 0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting_at(millis: u64) -> tether::State {
        tether::State::Waiting {
            attempt: 3,
            until: tether_core::Instant::from_millis(millis),
        }
    }

    fn unix(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn a_backoff_deadline_is_the_time_left_on_the_wall_clock_of_the_conversion() {
        // (engine clock now ms, wall clock now ms, expected retry_at_unix_ms, retry_in_ms),
        // for an attempt due at 1,500 ms of engine time.
        let cases = [
            // 500 ms left.
            (1_000, 1_700_000_000_000, 1_700_000_000_500, 500),
            // The device slept an hour (the monotonic engine clock stood still) or the wall
            // clock was set: the attempt is still 500 ms away, from the wall clock of now.
            (1_000, 1_700_003_600_000, 1_700_003_600_500, 500),
            // A deadline already passed (the attempt is about to start) is now, not the past.
            (2_000, 1_700_000_000_000, 1_700_000_000_000, 0),
        ];
        for (engine_now, wall_now, retry_at_unix_ms, retry_in_ms) in cases {
            let state = convert(
                waiting_at(1_500),
                Duration::from_millis(engine_now),
                unix(wall_now),
            );
            assert_eq!(
                state,
                ConnectionState::Waiting {
                    attempt: 3,
                    retry_at_unix_ms,
                    retry_in_ms,
                },
                "engine {engine_now} ms, wall {wall_now} ms"
            );
        }
    }

    #[test]
    fn a_fresh_clock_puts_a_deadline_at_now_plus_the_delay() {
        let before = SystemTime::now();
        let clock = EngineClock::now();
        // A deadline 2 s after the engine's origin, converted at once.
        let ConnectionState::Waiting {
            retry_at_unix_ms,
            retry_in_ms,
            ..
        } = clock.state(waiting_at(2_000))
        else {
            panic!("waiting");
        };
        let after = SystemTime::now();
        let ms = |t: SystemTime| millis(t.duration_since(UNIX_EPOCH).unwrap_or_default());
        let elapsed = millis(after.duration_since(before).unwrap_or_default());
        assert!(
            (2_000u64.saturating_sub(elapsed + 1)..=2_000).contains(&retry_in_ms),
            "{retry_in_ms} ms left, {elapsed} ms elapsed"
        );
        assert!(
            ((ms(before) + 2_000).saturating_sub(elapsed + 1)..=ms(after) + 2_000)
                .contains(&retry_at_unix_ms),
            "{retry_at_unix_ms} is not about now + 2 s"
        );
    }

    #[test]
    fn a_snapshot_delivered_later_has_the_time_left_then() {
        let waiting = ConnectionState::Waiting {
            attempt: 2,
            retry_at_unix_ms: 1_700_000_003_000,
            retry_in_ms: 3_000,
        };
        // Delivered 1.2 s after it was made, the wall clock set an hour ahead meanwhile: 1.8 s
        // left, from the wall clock of the delivery.
        assert_eq!(
            aged(
                waiting.clone(),
                Duration::from_millis(1_200),
                unix(1_700_003_601_200)
            ),
            ConnectionState::Waiting {
                attempt: 2,
                retry_at_unix_ms: 1_700_003_603_000,
                retry_in_ms: 1_800,
            }
        );
        // Past its time: the attempt is due now.
        assert_eq!(
            aged(waiting, Duration::from_secs(5), unix(1_700_000_005_000)),
            ConnectionState::Waiting {
                attempt: 2,
                retry_at_unix_ms: 1_700_000_005_000,
                retry_in_ms: 0,
            }
        );
        // Other states have no time in them.
        assert_eq!(
            aged(ConnectionState::Open, Duration::from_secs(5), unix(0)),
            ConnectionState::Open
        );
    }

    #[test]
    fn close_reasons_keep_their_details() {
        let clock = EngineClock::now();
        let refused = tether::State::Closed {
            reason: tether::CloseReason::Refused {
                code: Some(4004),
                status: None,
                reason: "gone".to_owned(),
            },
        };
        assert_eq!(
            clock.state(refused),
            ConnectionState::Closed {
                reason: CloseReason::Refused {
                    code: Some(4004),
                    status: None,
                    reason: "gone".to_owned(),
                },
            }
        );
    }
}
