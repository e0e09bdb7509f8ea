//! Close policy: what a WebSocket close code or an HTTP status means for the next attempt.
//!
//! One classifier serves both transports, so a 401 on an SSE stream and a 4001 close on a
//! WebSocket lead to the same decision. Each input maps to a [`Verdict`]: a [`Disposition`]
//! (retry, refresh the token once then retry, or stop) and an optional [`DelayHint`] from the
//! server (Retry-After, close 1012/1013, an advised reconnect window in the close reason).
//!
//! Documented defaults (see docs/protocol.md, "Close codes and HTTP statuses"):
//!
//! | input | disposition | delay |
//! |---|---|---|
//! | close 1008, 4001–4003; HTTP 401, 403 | `Reauth`: new token, one more try, then terminal | backoff |
//! | close 4004–4099; HTTP 204 (SSE's "do not reconnect"), 400, 404, 405, 410 and every other 4xx except 408, 425, 429 | `Terminal` | — |
//! | HTTP 2xx other than 204 (a page instead of an upgrade or an event stream: a wrong URL, a captive portal, a maintenance page) | `Retry`, reported on every attempt | backoff |
//! | close 1012 (service restart) | `Retry` | spread uniformly over 5 s (or the advised window); after a connection that was not yet stable, no sooner than the backoff |
//! | close 1013 (try again later); HTTP 429 | `Retry` | at least 5 s (or Retry-After) |
//! | HTTP 503 | `Retry` | at least Retry-After, if sent |
//! | every other code or status, and transport errors | `Retry` | backoff |
//!
//! A proxy's status (`TransportFailure::Proxy`: the server was never reached) follows the same
//! table and overrides, except that `Reauth` becomes `Terminal` ([`ClosePolicy::classify_proxy`]):
//! a proxy's 407 or 403 stops the client, its 502, 503 or 504 is retried.
//!
//! A subprotocol mismatch (`TransportFailure::Subprotocol`: the server completed the
//! handshake without one of the subprotocols offered) is always `Terminal`, with no override:
//! it is the deployment's configuration, and the server makes the same choice on every
//! attempt. The client stops with `Refused` (no code, no status) whose reason names what was
//! offered and what the server chose.
//!
//! A close reason that is a JSON object may carry advice that overrides the table:
//! `{"reconnect": false}` makes the close terminal, `{"reconnect_within_ms": N}` asks clients
//! to spread their reconnects uniformly over the next N ms (graceful restarts), and
//! `{"reconnect_after_ms": A, "reconnect_within_ms": N}` over the window from A to N ms (a
//! server that knows it will be down for A ms: nobody wastes an attempt on the closed port).

use crate::config::ConfigError;
use std::ops::RangeInclusive;
use std::time::Duration;

/// What to do after a connection closed or an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Disposition {
    /// Reconnect after the backoff delay (or the server's hint).
    Retry,
    /// The credentials were refused: fetch a fresh token and try once more; if that attempt
    /// is refused too, stop with `CloseReason::Unauthorized`.
    Reauth,
    /// Stop reconnecting: state `Closed { reason: Refused }`.
    Terminal,
}

/// A server's advice on when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DelayHint {
    /// Wait at least this long (Retry-After, 1013, SSE `retry:`). A little jitter is added on
    /// top so that clients told the same value do not return in the same instant.
    AtLeast(Duration),
    /// Reconnect at a uniformly random moment within this window (graceful restart), so a
    /// crowd arrives evenly spread. It replaces the backoff curve only for the first wait
    /// after a stable connection dropped; after connections that failed before proving
    /// stable the wait is the later of that moment and the curve's, so the advice cannot
    /// turn an accept-then-close server into a hot loop.
    Within(Duration),
    /// Reconnect at a uniformly random moment between the two (a graceful restart whose
    /// server knows it will be away for the first part of the window); combined with the
    /// curve like `Within`.
    Between(Duration, Duration),
}

impl DelayHint {
    /// The server's minimum: how long from now no attempt may start (`AtLeast`, and the start
    /// of a `Between` window), whatever cuts the wait short.
    pub(crate) fn floor(self) -> Option<Duration> {
        match self {
            DelayHint::AtLeast(floor) | DelayHint::Between(floor, _) => {
                Some(floor).filter(|f| !f.is_zero())
            }
            DelayHint::Within(_) => None,
        }
    }
}

/// The policy's decision for one close or failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Retry, reauthenticate or stop.
    pub disposition: Disposition,
    /// The server's timing advice, if any.
    pub hint: Option<DelayHint>,
}

impl Verdict {
    pub(crate) const RETRY: Verdict = Verdict {
        disposition: Disposition::Retry,
        hint: None,
    };
    pub(crate) const TERMINAL: Verdict = Verdict {
        disposition: Disposition::Terminal,
        hint: None,
    };
}

/// Maps close codes and HTTP statuses to [`Verdict`]s. The defaults are in the module docs;
/// overrides added with [`ClosePolicy::with_code`] / [`ClosePolicy::with_status`] take
/// precedence over them, and where two overrides' ranges overlap the one added later takes
/// precedence over the earlier one.
///
/// ```
/// use tether_core::{ClosePolicy, Disposition};
/// let policy = ClosePolicy::default()
///     .with_code(4500..=4599, Disposition::Terminal)
///     .with_code(4550..=4550, Disposition::Retry) // added later: wins for 4550
///     .with_status(404..=404, Disposition::Retry);
/// assert_eq!(policy.disposition_for_code(4501), Disposition::Terminal);
/// assert_eq!(policy.disposition_for_code(4550), Disposition::Retry);
/// assert_eq!(policy.disposition_for_status(404), Disposition::Retry);
/// assert_eq!(policy.disposition_for_code(4001), Disposition::Reauth);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ClosePolicy {
    code_overrides: Vec<(RangeInclusive<u16>, Disposition)>,
    status_overrides: Vec<(RangeInclusive<u16>, Disposition)>,
    /// Window over which clients spread reconnects after close 1012 without advice. Default 5 s.
    pub service_restart_window: Duration,
    /// Minimum delay after close 1013 or HTTP 429 without Retry-After. Default 5 s.
    pub try_again_later_delay: Duration,
    /// Upper bound applied to any server-advised delay or window. Default 5 min.
    pub max_server_delay: Duration,
}

impl Default for ClosePolicy {
    fn default() -> Self {
        ClosePolicy {
            code_overrides: Vec::new(),
            status_overrides: Vec::new(),
            service_restart_window: Duration::from_secs(5),
            try_again_later_delay: Duration::from_secs(5),
            max_server_delay: Duration::from_secs(300),
        }
    }
}

impl ClosePolicy {
    /// Overrides the disposition for a range of WebSocket close codes.
    pub fn with_code(mut self, codes: RangeInclusive<u16>, disposition: Disposition) -> Self {
        self.code_overrides.push((codes, disposition));
        self
    }

    /// Overrides the disposition for a range of HTTP statuses (handshake or SSE response).
    pub fn with_status(mut self, statuses: RangeInclusive<u16>, disposition: Disposition) -> Self {
        self.status_overrides.push((statuses, disposition));
        self
    }

    /// Sets the window over which clients spread reconnects after close 1012 without advice.
    pub fn with_service_restart_window(mut self, window: Duration) -> Self {
        self.service_restart_window = window;
        self
    }

    /// Sets the minimum delay after close 1013 or HTTP 429 without Retry-After.
    pub fn with_try_again_later_delay(mut self, delay: Duration) -> Self {
        self.try_again_later_delay = delay;
        self
    }

    /// Sets the cap on server-advised delays and windows.
    pub fn with_max_server_delay(mut self, max: Duration) -> Self {
        self.max_server_delay = max;
        self
    }

    /// The disposition for close `code`, overrides first.
    pub fn disposition_for_code(&self, code: u16) -> Disposition {
        if let Some(d) = lookup(&self.code_overrides, code) {
            return d;
        }
        match code {
            1008 | 4001..=4003 => Disposition::Reauth,
            4004..=4099 => Disposition::Terminal,
            _ => Disposition::Retry,
        }
    }

    /// The disposition for HTTP `status`, overrides first.
    pub fn disposition_for_status(&self, status: u16) -> Disposition {
        if let Some(d) = lookup(&self.status_overrides, status) {
            return d;
        }
        match status {
            401 | 403 => Disposition::Reauth,
            408 | 425 | 429 => Disposition::Retry,
            // 204 is SSE's "do not reconnect". Other 4xx mean the request itself is wrong.
            204 | 400..=499 => Disposition::Terminal,
            // Any other 2xx that failed the attempt is a page where the WebSocket upgrade or the
            // event stream should be: a wrong URL, but also a captive portal's login page or a
            // load balancer's maintenance page on plain ws:// or http://, which go away. Retried
            // with the backoff; every attempt reports the status (an `Error` event, a cause of
            // `Http { status }`), so it is not silent. `with_status(200..=299, Terminal)` stops.
            _ => Disposition::Retry,
        }
    }

    /// Classifies a WebSocket close. `code` is `None` when the close frame had no code
    /// (treated like 1005/1006: retry).
    pub fn classify_close(&self, code: Option<u16>, reason: &str) -> Verdict {
        let Some(code) = code else {
            return Verdict::RETRY;
        };
        let advice = ReasonAdvice::parse(reason);
        let mut disposition = self.disposition_for_code(code);
        if advice.reconnect == Some(false) {
            disposition = Disposition::Terminal;
        }
        let cap = self.max_server_delay;
        let hint = match (advice.after, advice.within, code) {
            (Some(after), Some(within), _) => {
                let within = within.min(cap);
                Some(DelayHint::Between(after.min(within), within))
            }
            (Some(after), None, _) => Some(DelayHint::AtLeast(after.min(cap))),
            (None, Some(window), _) => Some(DelayHint::Within(window.min(cap))),
            (None, None, 1012) => Some(DelayHint::Within(self.service_restart_window)),
            (None, None, 1013) => Some(DelayHint::AtLeast(self.try_again_later_delay)),
            _ => None,
        };
        Verdict { disposition, hint }
    }

    /// Classifies an HTTP response that refused the handshake or the SSE stream.
    pub fn classify_http(&self, status: u16, retry_after: Option<Duration>) -> Verdict {
        let disposition = self.disposition_for_status(status);
        let hint = match (status, retry_after) {
            (429 | 503, Some(d)) => Some(DelayHint::AtLeast(d.min(self.max_server_delay))),
            (429, None) => Some(DelayHint::AtLeast(self.try_again_later_delay)),
            _ => None,
        };
        Verdict { disposition, hint }
    }

    /// Classifies a proxy's answer that kept the client from the server
    /// (`TransportFailure::Proxy`): as [`classify_http`](Self::classify_http) would the same
    /// status (the table and the overrides), except that `Reauth` becomes `Terminal`. A
    /// fresh token cannot help: the token is for the server, which was never reached, and the
    /// proxy's own credentials are the client's configuration, the same on every attempt. So
    /// by default a 407 (the proxy wants credentials, or refused them) and a 403 (the proxy
    /// forbids the destination) stop the client with `Refused`, while a 502, 503 or 504 (the
    /// proxy could not reach the server) is retried; `with_status(407..=407, Retry)` retries
    /// a 407 too (no server answers 407, so that override concerns proxies alone).
    pub fn classify_proxy(&self, status: u16, retry_after: Option<Duration>) -> Verdict {
        let mut verdict = self.classify_http(status, retry_after);
        if verdict.disposition == Disposition::Reauth {
            verdict.disposition = Disposition::Terminal;
        }
        verdict
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let checks = [
            (
                "close_policy.service_restart_window",
                self.service_restart_window,
            ),
            (
                "close_policy.try_again_later_delay",
                self.try_again_later_delay,
            ),
            ("close_policy.max_server_delay", self.max_server_delay),
        ];
        for (field, d) in checks {
            crate::config::at_least_a_microsecond(field, d)?;
        }
        // An empty range (first > last), or one outside what can be received (WebSocket close
        // codes 1000-4999, HTTP statuses 100-599), would never match: refused, not ignored.
        let ranges = [
            (
                "close_policy.code_overrides",
                &self.code_overrides,
                1000..=4999,
                "a range is outside the close codes 1000-4999",
            ),
            (
                "close_policy.status_overrides",
                &self.status_overrides,
                100..=599,
                "a range is outside the HTTP statuses 100-599",
            ),
        ];
        for (field, overrides, valid, outside) in ranges {
            for (range, _) in overrides.iter() {
                let reason = if range.is_empty() {
                    "a range is empty (its first value is above its last)"
                } else if !valid.contains(range.start()) || !valid.contains(range.end()) {
                    outside
                } else {
                    continue;
                };
                return Err(ConfigError {
                    field,
                    reason: reason.to_owned(),
                });
            }
        }
        Ok(())
    }
}

fn lookup(overrides: &[(RangeInclusive<u16>, Disposition)], value: u16) -> Option<Disposition> {
    overrides
        .iter()
        .rev()
        .find(|(range, _)| range.contains(&value))
        .map(|(_, d)| *d)
}

/// The close reason a server sends with 1012 (service restart) to spread its clients'
/// reconnects over the window from `after` to `within` (a zero `after` is left out): the
/// advice [`ClosePolicy::classify_close`] reads, written in one place so that servers (such
/// as the reference relay) and the engine cannot disagree on its form.
///
/// `after` is capped at `within`. The reference relay never passes a longer one (its config
/// validation refuses it), but other servers may: uncapped, the advice would be a window that
/// ends before it starts, which the protocol does not define and a client could misread.
pub fn restart_advice(after: Duration, within: Duration) -> String {
    let within_ms = u64::try_from(within.as_millis()).unwrap_or(u64::MAX);
    let after_ms = u64::try_from(after.as_millis())
        .unwrap_or(u64::MAX)
        .min(within_ms);
    let mut out = String::with_capacity(64);
    let mut w = crate::json::ObjectWriter::new(&mut out);
    if after_ms > 0 {
        w.u64("reconnect_after_ms", after_ms);
    }
    w.u64("reconnect_within_ms", within_ms);
    w.finish();
    out
}

/// Advice a server may put in a close reason as a JSON object.
#[derive(Debug, Default, PartialEq)]
struct ReasonAdvice {
    reconnect: Option<bool>,
    after: Option<Duration>,
    within: Option<Duration>,
}

impl ReasonAdvice {
    fn parse(reason: &str) -> Self {
        // Close reasons are at most 123 bytes; only objects are advice, anything else is prose.
        if !reason.trim_start().starts_with('{') {
            return ReasonAdvice::default();
        }
        let Ok(serde_json::Value::Object(map)) = crate::json::parse(reason) else {
            return ReasonAdvice::default();
        };
        let millis = |field: &str| {
            map.get(field)
                .and_then(|v| v.as_u64())
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis)
        };
        ReasonAdvice {
            reconnect: map.get("reconnect").and_then(|v| v.as_bool()),
            after: millis("reconnect_after_ms"),
            within: millis("reconnect_within_ms"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_ranges_outside_what_can_arrive_are_refused() {
        let build = |p: ClosePolicy| crate::Config::builder("ws://x").close_policy(p).build();
        let refused = |p: ClosePolicy| build(p).unwrap_err().field;
        assert_eq!(
            refused(ClosePolicy::default().with_code(500..=1000, Disposition::Terminal)),
            "close_policy.code_overrides"
        );
        assert_eq!(
            refused(ClosePolicy::default().with_code(4999..=5000, Disposition::Terminal)),
            "close_policy.code_overrides"
        );
        assert_eq!(
            refused(ClosePolicy::default().with_status(99..=200, Disposition::Terminal)),
            "close_policy.status_overrides"
        );
        assert!(build(ClosePolicy::default().with_code(1000..=4999, Disposition::Retry)).is_ok());
    }

    #[test]
    fn restart_advice_is_read_back_as_written() {
        let p = ClosePolicy::default();
        let hint = |reason: &str| p.classify_close(Some(1012), reason).hint;
        let s = Duration::from_secs;
        assert_eq!(
            restart_advice(Duration::ZERO, s(10)),
            r#"{"reconnect_within_ms":10000}"#
        );
        assert_eq!(
            hint(&restart_advice(Duration::ZERO, s(10))),
            Some(DelayHint::Within(s(10)))
        );
        assert_eq!(
            hint(&restart_advice(s(2), s(10))),
            Some(DelayHint::Between(s(2), s(10)))
        );
        // `after` beyond the window is capped to it: callers other than the relay may pass one.
        assert_eq!(
            restart_advice(s(30), s(10)),
            r#"{"reconnect_after_ms":10000,"reconnect_within_ms":10000}"#
        );
    }

    #[test]
    fn default_code_table() {
        let p = ClosePolicy::default();
        for code in [1000, 1001, 1006, 1011, 3000, 4000, 4100, 4999] {
            assert_eq!(p.disposition_for_code(code), Disposition::Retry, "{code}");
        }
        for code in [1008, 4001, 4002, 4003] {
            assert_eq!(p.disposition_for_code(code), Disposition::Reauth, "{code}");
        }
        for code in [4004, 4050, 4099] {
            assert_eq!(
                p.disposition_for_code(code),
                Disposition::Terminal,
                "{code}"
            );
        }
    }

    #[test]
    fn default_status_table() {
        let p = ClosePolicy::default();
        assert_eq!(p.disposition_for_status(401), Disposition::Reauth);
        assert_eq!(p.disposition_for_status(403), Disposition::Reauth);
        assert_eq!(p.disposition_for_status(404), Disposition::Terminal);
        assert_eq!(p.disposition_for_status(204), Disposition::Terminal);
        // A web page where the stream should be: a wrong URL, or a captive portal that goes
        // away after login. Retried (and reported on every attempt), not fatal.
        assert_eq!(p.disposition_for_status(200), Disposition::Retry);
        assert_eq!(p.disposition_for_status(299), Disposition::Retry);
        assert_eq!(p.disposition_for_status(429), Disposition::Retry);
        assert_eq!(p.disposition_for_status(500), Disposition::Retry);
        assert_eq!(p.disposition_for_status(503), Disposition::Retry);
    }

    #[test]
    fn server_hints() {
        let p = ClosePolicy::default();
        assert_eq!(
            p.classify_close(Some(1012), "").hint,
            Some(DelayHint::Within(Duration::from_secs(5)))
        );
        assert_eq!(
            p.classify_close(Some(1012), r#"{"reconnect_within_ms": 10000}"#)
                .hint,
            Some(DelayHint::Within(Duration::from_secs(10)))
        );
        assert_eq!(
            p.classify_close(
                Some(1012),
                r#"{"reconnect_after_ms": 2000, "reconnect_within_ms": 10000}"#
            )
            .hint,
            Some(DelayHint::Between(
                Duration::from_secs(2),
                Duration::from_secs(10)
            ))
        );
        assert_eq!(
            p.classify_close(Some(1013), "busy").hint,
            Some(DelayHint::AtLeast(Duration::from_secs(5)))
        );
        let v = p.classify_close(Some(1000), r#"{"reconnect": false}"#);
        assert_eq!(v.disposition, Disposition::Terminal);
        assert_eq!(
            p.classify_http(503, Some(Duration::from_secs(7))).hint,
            Some(DelayHint::AtLeast(Duration::from_secs(7)))
        );
        assert_eq!(
            p.classify_http(429, Some(Duration::from_secs(86_400))).hint,
            Some(DelayHint::AtLeast(Duration::from_secs(300))),
            "server advice is capped"
        );
        assert_eq!(p.classify_close(None, "").disposition, Disposition::Retry);
        // Malformed advice is ignored, not an error.
        assert_eq!(p.classify_close(Some(1001), "{not json").hint, None);
    }
}
