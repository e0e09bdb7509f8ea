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
    /// Backing off before attempt `attempt`, which starts at `retry_at_unix_ms` (wall clock,
    /// milliseconds since 1970: show a countdown with it). `networkChanged(true)` or
    /// `connect()` skip the wait.
    Waiting {
        /// The next attempt's number.
        attempt: u32,
        /// When it starts, in Unix milliseconds.
        retry_at_unix_ms: u64,
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
    /// The server refused the credentials even after a freshly fetched token: sign in again.
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

/// Maps the engine's clock (time since the client's origin) to the wall clock.
///
/// The `tether` crate stamps `State::Waiting { until }` with engine time, whose origin is
/// private to its client task. `EngineClock::now()` is taken immediately before the client
/// is built, so its origin precedes the driver's by microseconds; a deadline it converts is
/// early by that much, which no countdown can show.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EngineClock {
    origin_unix: Duration,
}

impl EngineClock {
    pub(crate) fn now() -> Self {
        EngineClock {
            origin_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }

    fn unix_ms(&self, engine_micros: u64) -> u64 {
        let at = self.origin_unix + Duration::from_micros(engine_micros);
        u64::try_from(at.as_millis()).unwrap_or(u64::MAX)
    }

    /// Converts a core state, placing a backoff deadline on the wall clock.
    pub(crate) fn state(&self, state: tether::State) -> ConnectionState {
        match state {
            tether::State::Idle => ConnectionState::Idle,
            tether::State::Connecting { attempt } => ConnectionState::Connecting { attempt },
            tether::State::Open => ConnectionState::Open,
            tether::State::Closing => ConnectionState::Closing,
            tether::State::Waiting { attempt, until } => ConnectionState::Waiting {
                attempt,
                retry_at_unix_ms: self.unix_ms(until.as_micros()),
            },
            tether::State::Closed { reason } => ConnectionState::Closed {
                reason: reason.into(),
            },
            // Non-exhaustive: a future core state is reported as the nearest one the app
            // knows, "connecting", rather than being hidden.
            _ => ConnectionState::Connecting { attempt: 0 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backoff_deadline_is_placed_on_the_wall_clock() {
        let clock = EngineClock {
            origin_unix: Duration::from_millis(1_700_000_000_000),
        };
        let waiting = tether::State::Waiting {
            attempt: 3,
            until: tether_core::Instant::from_millis(1_500),
        };
        assert_eq!(
            clock.state(waiting),
            ConnectionState::Waiting {
                attempt: 3,
                retry_at_unix_ms: 1_700_000_001_500,
            }
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
