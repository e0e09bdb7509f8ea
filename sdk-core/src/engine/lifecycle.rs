//! Attempts, failures, reconnect scheduling, opening and closing: every state transition is
//! made here, but one: a wait cut short to the server's minimum (`Waiting` with an earlier
//! `until`) is set by `retry_early` in `commands.rs`.

use super::{AuthState, Connection, Engine, Lingering, ServerMinimum};
use crate::action::{append_query, Action, OpenRequest, TransportId};
use crate::close_policy::{DelayHint, Disposition, Verdict};
use crate::config::{Protocol, TokenPlacement, TransportKind};
use crate::event::{
    CloseReason, DisconnectCause, DropReason, Event, MessageId, RequestFailure, State,
};
use crate::outbox::Awaiting;
use crate::protocol::ClientMessage;
use crate::time::{deadline_after, Instant};
use std::time::Duration;

/// Close reasons travel in a WebSocket close frame, which allows 123 bytes.
const MAX_CLOSE_REASON: usize = 123;

/// The WebSocket close code for "message too big" (RFC 6455).
const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;

impl Engine {
    /// Starts the next attempt: fetch a token if configured, then open.
    pub(super) fn start_attempt(&mut self, now: Instant) {
        let attempt = self.backoff.failures() + 1;
        self.timers.retry = None;
        self.timers.not_before = None;
        self.next_transport += 1;
        let transport = TransportId(self.next_transport);
        self.conn = Connection {
            transport: Some(transport),
            ..Connection::default()
        };
        self.stats.attempts += 1;
        self.set_state(State::Connecting { attempt });
        if self.config.token.is_some() {
            // The token fetch has the connect timeout; the request, once sent, has its own
            // (`open_transport`).
            self.timers.connect = deadline_after(now, self.config.connect_timeout());
            self.conn.awaiting_token = true;
            // Cleared only once a token arrives (`token_ready`): an attempt that ends first (the
            // provider failed, the connect timeout) must ask for a fresh one again, not let a
            // provider hand back the token the server just refused.
            let refresh = self.auth.refresh_next;
            self.actions.push_back(Action::FetchToken {
                transport,
                attempt,
                refresh,
            });
        } else {
            self.open_transport(now, attempt, None);
        }
    }

    /// Emits the `Open` action for the current transport, placing the token. From here an
    /// attempt has `Config::open_timeout` to open, however long its token took: the connect
    /// timeout again, longer only for an event stream, whose head may come with its first
    /// event.
    pub(super) fn open_transport(&mut self, now: Instant, attempt: u32, token: Option<String>) {
        let Some(transport) = self.conn.transport else {
            return;
        };
        let mut url = self.config.url.clone();
        let mut headers = self.config.headers.clone();
        match (&self.config.token, token) {
            (Some(TokenPlacement::Header { name, prefix }), Some(token)) => {
                headers.push((name.clone(), format!("{prefix}{token}")));
            }
            (Some(TokenPlacement::Query { param }), Some(token)) => {
                append_query(&mut url, param, &token);
            }
            (Some(TokenPlacement::FirstMessage), Some(token)) => {
                self.conn.hello_token = Some(token);
            }
            _ => {}
        }
        let last_event_id = match self.config.transport {
            TransportKind::Sse => self.last_event_id.clone(),
            TransportKind::WebSocket => None,
        };
        // The transport being replaced is not waited for any longer.
        self.release_lingering();
        // A fresh deadline for the open, whatever the token fetch took: a slow provider (a
        // cold OAuth refresh, an app waking up) must not leave a healthy server a moment to
        // answer, and fail every attempt at the connect timeout.
        self.timers.connect = deadline_after(now, self.config.open_timeout());
        self.actions.push_back(Action::Open(Box::new(OpenRequest {
            transport,
            kind: self.config.transport,
            url,
            headers,
            subprotocols: self.config.subprotocols.clone(),
            last_event_id,
            attempt,
        })));
    }

    /// The current transport opened.
    pub(super) fn on_opened(&mut self, now: Instant) {
        self.timers.connect = None;
        self.conn.opened = true;
        self.conn.opened_at = Some(now);
        self.stats.opens += 1;
        if self.stats.opens > 1 {
            self.stats.reconnects += 1;
        }
        self.conn.writable = true;
        self.timers.min_uptime = Some(now + self.config.backoff.min_uptime);
        self.heartbeat.start(now);
        self.set_state(State::Open);
        if self.config.protocol == Protocol::Tether {
            let hello = ClientMessage::Hello {
                client_id: self.client_id.clone(),
                token: self.conn.hello_token.take(),
                instance: Some(format!("{:016x}", self.instance)),
            };
            self.send_control(&hello);
            self.channels.connection_opened();
            for msg in self.channels.resubscribe_all() {
                self.send_control(&msg);
            }
            #[cfg(feature = "documents")]
            self.send_doc_syncs();
        }
        self.flush(now);
        self.check_drain(now);
    }

    /// The connection stayed up for `min_uptime`: it is stable, forget past failures.
    pub(super) fn on_stable(&mut self) {
        self.timers.min_uptime = None;
        self.backoff.reset();
        self.auth.refreshed_once = false;
        self.stable = true;
    }

    /// The current connection or attempt ended for `cause`; `verdict` decides what next.
    /// `close_code` is set when the engine itself abandons the transport (timeouts), so the
    /// driver is told to close it (or to release it, if it never opened).
    pub(super) fn connection_lost(
        &mut self,
        now: Instant,
        cause: DisconnectCause,
        verdict: Verdict,
        close_code: Option<u16>,
    ) {
        if let (Some(transport), Some(code)) = (self.conn.transport, close_code) {
            self.close_transport(transport, code, truncate_reason(&cause.to_string()));
            // Frames its socket has not taken go back to the outbox (below) for the next
            // connection: the driver must not write them here too, so it drops the transport
            // now. (Its close frame would wait behind them anyway.)
            if self.conn.handed > self.conn.taken && self.config.reports_progress {
                self.release_lingering();
            }
        }
        // A connection that dropped before proving stable counts as a failed attempt, so an
        // accept-then-drop server meets growing delays; one that was stable starts afresh.
        // An event stream that dispatched an event did its work, however short it was: ending
        // a stream after a batch is how an SSE server says "come back" (the spec's `retry:`
        // is for it), so it does not count towards `max_attempts`. Its delays still grow, as
        // an attempt's while offline do, until a connection stays up `min_uptime`: a server
        // that sends one event and drops in a loop meets growing delays, not a hot loop.
        if !std::mem::take(&mut self.stable) {
            if self.online && !self.conn.sse_dispatched {
                self.backoff.record_failure();
            } else {
                self.backoff.record_uncounted_failure();
            }
        }
        if let DisconnectCause::Closed {
            code: Some(CLOSE_MESSAGE_TOO_BIG),
            ..
        } = cause
        {
            self.refused_as_too_big();
        }
        self.teardown_connection();
        let (code, status) = match &cause {
            DisconnectCause::Closed { code, .. } => (*code, None),
            DisconnectCause::Http { status } | DisconnectCause::Proxy { status } => {
                (None, Some(*status))
            }
            _ => (None, None),
        };
        match verdict.disposition {
            Disposition::Terminal => {
                let reason = match &cause {
                    // A failure's own words (a subprotocol mismatch), not "transport failed: ".
                    DisconnectCause::Closed { reason, .. }
                    | DisconnectCause::Failed { message: reason } => reason.clone(),
                    // The status is the refusal's own field, which its text shows: the reason
                    // adds only what the number does not say ("refused by the server with
                    // HTTP status 404", not "…: HTTP status 404" after it).
                    DisconnectCause::Http { status } => crate::errors::HttpStatus::advice(*status)
                        .unwrap_or_default()
                        .to_owned(),
                    other => other.to_string(),
                };
                self.finish_closed(CloseReason::Refused {
                    code,
                    status,
                    reason,
                });
            }
            Disposition::Reauth if self.auth.refreshed_once => {
                // An app that connects again (the user signed in again) gets a fresh token.
                self.auth.refresh_next = true;
                self.finish_closed(CloseReason::Unauthorized { code, status });
            }
            // The app asked to close once everything was delivered, and the connection took
            // the last of it along (requests failed with it): another connection would only
            // be opened to be closed. Closed, then started again after a `connect`, as when
            // a drain completes otherwise (`check_drain`).
            _ if self.drain_complete() => {
                self.drain = None;
                // What the server said still holds for a restart (`start_afresh`): its
                // minimum (1013, Retry-After), and a fresh token after a refusal.
                self.timers.not_before = ServerMinimum::after(now, verdict.hint, &cause);
                self.auth.refresh_next |= verdict.disposition == Disposition::Reauth;
                self.closing_finished(now, 1000);
            }
            Disposition::Reauth => {
                self.auth.refreshed_once = true;
                self.auth.refresh_next = true;
                self.schedule_retry(now, cause, verdict.hint);
            }
            _ => self.schedule_retry(now, cause, verdict.hint),
        }
    }

    /// The server closed with 1009: a message we wrote was larger than it takes. If the
    /// largest frame written on this connection is a message still in the outbox (awaiting
    /// its ack or reply), that is the one: it is dropped as `Rejected { code: "too_large" }`
    /// (a request fails so), where re-sending it after the reconnect would only have the
    /// server close again, forever, with everything queued behind it waiting. A message
    /// that was not kept (written and forgotten) is gone already; nothing else is dropped.
    fn refused_as_too_big(&mut self) {
        if let Some(removed) = self
            .outbox
            .take_largest_in_flight(self.conn.largest_written)
        {
            self.report_removed(
                vec![removed],
                DropReason::Rejected {
                    code: "too_large".to_owned(),
                },
            );
        }
    }

    /// Forgets the current transport and everything tied to it.
    pub(super) fn teardown_connection(&mut self) {
        self.conn = Connection::default();
        self.stable = false;
        self.heartbeat.stop();
        self.timers.connect = None;
        self.timers.min_uptime = None;
        let keep_requests = !self.config.fail_requests_on_disconnect;
        for request in self.outbox.requeue_in_flight(keep_requests) {
            if self.requests.complete(request) {
                self.events.push_back(Event::RequestFailed {
                    id: request,
                    reason: RequestFailure::ConnectionLost,
                });
            }
        }
        // Acks come on the connection that carried the change: for one no longer in the
        // outbox (dropped), none can come any more.
        #[cfg(feature = "documents")]
        {
            let outbox = &self.outbox;
            self.doc_changes
                .retain(|(wire, _)| outbox.id_for_wire(wire).is_some());
        }
    }

    fn schedule_retry(&mut self, now: Instant, cause: DisconnectCause, hint: Option<DelayHint>) {
        // A minimum this verdict's server set (Retry-After, 1013, `reconnect_after_ms`) holds
        // against an early attempt; the SSE `retry:` field below only shapes the backoff.
        let not_before = ServerMinimum::after(now, hint, &cause);
        // The SSE `retry:` field is standing advice for every later reconnect.
        let hint = match (hint, self.sse_retry) {
            (None, Some(retry)) => Some(DelayHint::AtLeast(retry)),
            (hint, _) => hint,
        };
        let delay = self.backoff.next_delay(&mut self.rng, hint);
        if self.backoff.exhausted() {
            // The minimum outlives the close, for a `connect` after it (`start_afresh`).
            self.timers.not_before = not_before;
            self.finish_closed(CloseReason::GaveUp {
                attempts: self.backoff.failures(),
            });
            return;
        }
        self.wait(now, delay, not_before, cause);
    }

    /// Waits `delay` for the next attempt, reporting why.
    fn wait(
        &mut self,
        now: Instant,
        delay: Duration,
        not_before: Option<ServerMinimum>,
        cause: DisconnectCause,
    ) {
        let attempt = self.backoff.failures() + 1;
        let until = now + delay;
        self.timers.retry = deadline_after(now, delay);
        self.timers.not_before = not_before;
        self.set_state(State::Waiting { attempt, until });
        self.events.push_back(Event::ReconnectScheduled {
            attempt,
            delay,
            cause,
        });
    }

    /// A fresh start (`connect` from `Idle` or `Closed`): the backoff reset, but what a server
    /// said before the close still holds. Its minimum (a 1013, a Retry-After) is waited for,
    /// with the spread every wait for it gets, so that a crowd told the same (a page reloaded
    /// everywhere, an effect remounted) does not return in one instant; a token it refused is
    /// not asked for again (a refresh, the one a refusal gets).
    pub(super) fn start_afresh(&mut self, now: Instant) {
        self.backoff.reset();
        let refresh = self.auth.refresh_next;
        self.auth = AuthState {
            refresh_next: refresh,
            refreshed_once: refresh,
        };
        let Some(minimum) = self.timers.not_before.take().filter(|m| m.at > now) else {
            self.start_attempt(now);
            return;
        };
        let hint = DelayHint::AtLeast(minimum.at.saturating_duration_since(now));
        let delay = self.backoff.next_delay(&mut self.rng, Some(hint));
        let cause = minimum.cause.clone();
        self.wait(now, delay, Some(minimum), cause);
    }

    /// Starts the close handshake on an open connection.
    pub(super) fn begin_close(&mut self, now: Instant, code: u16, reason: &str) {
        let Some(transport) = self.conn.transport else {
            self.finish_closed(CloseReason::App { code });
            return;
        };
        self.close_transport(transport, code, truncate_reason(reason));
        self.heartbeat.stop();
        self.timers.min_uptime = None;
        self.timers.close = Some(now + self.config.close_timeout);
        self.conn.closing = Some(code);
        self.set_state(State::Closing);
    }

    /// Tells the driver to close `transport`, and gives its close handshake the close
    /// timeout: a peer that never answers (a wedged proxy, a dead link) must not keep the
    /// socket open, so it is then released (`release_overdue`).
    ///
    /// A transport still opening has no close handshake: it is released at once. Closed
    /// instead, it lingered for the close timeout after the attempt was given up on (its
    /// connect timeout) or after the app was told `Closed`, holding a socket to a server
    /// that never answered, and a handshake completing meanwhile opened a connection the
    /// engine no longer wanted, only to close it.
    pub(super) fn close_transport(&mut self, transport: TransportId, code: u16, reason: String) {
        if self.conn.transport == Some(transport) && self.conn.awaiting_token {
            return; // never opened (its token was still awaited): nothing to close
        }
        // One transport lingers at a time: an earlier one still closing goes now.
        if self.lingering.is_some_and(|l| l.transport != transport) {
            self.release_lingering();
        }
        if self.conn.transport == Some(transport) && !self.conn.opened {
            self.actions.push_back(Action::Release { transport });
            return;
        }
        self.actions.push_back(Action::Close {
            transport,
            code,
            reason,
        });
        self.lingering = Some(Lingering {
            transport,
            until: self.clock.now() + self.config.close_timeout,
        });
    }

    /// Releases the closing transport once its handshake has had the close timeout.
    pub(super) fn release_overdue(&mut self, now: Instant) {
        if self.lingering.is_some_and(|l| l.until <= now) {
            self.release_lingering();
        }
    }

    /// Tells the driver to drop the transport still closing, if any.
    fn release_lingering(&mut self) {
        if let Some(l) = self.lingering.take() {
            self.actions.push_back(Action::Release {
                transport: l.transport,
            });
            self.released_unended = Some(l.transport);
        }
    }

    /// The driver reported `transport`'s end: its close handshake needs no deadline any more.
    /// Returns whether the engine had asked for this end (closed the transport itself).
    pub(super) fn ended(&mut self, transport: TransportId) -> bool {
        if self.lingering.is_some_and(|l| l.transport == transport) {
            self.lingering = None;
            true
        } else {
            self.released_unended.take_if(|t| *t == transport).is_some()
        }
    }

    /// Enters the terminal state: nothing pending survives, and all of it is reported.
    pub(super) fn finish_closed(&mut self, reason: CloseReason) {
        self.end_closed(reason, false);
    }

    /// [`Engine::finish_closed`]; with `keep_queued`, what is queued and the pending requests
    /// stay for the next connection (see `closing_finished`).
    fn end_closed(&mut self, reason: CloseReason, keep_queued: bool) {
        if let Some(transport) = self.conn.transport {
            if self.conn.closing.is_none() {
                self.close_transport(transport, 1000, String::new());
            }
        }
        // Before the teardown, which fails written requests as `ConnectionLost`: one a close
        // kept for its handshake ends `Closed`, as the app's close is why.
        if !keep_queued {
            self.drop_everything_pending();
            #[cfg(feature = "documents")]
            self.doc_changes.clear();
        }
        self.teardown_connection();
        // The server's minimum outlives the close: a `connect` (an app's restart, an effect
        // remounted) must not call on a server sooner than it asked (`start_afresh`).
        self.timers = super::Timers {
            not_before: self.timers.not_before.take(),
            ..Default::default()
        };
        self.drain = None;
        // Only a close the app asked for starts again (`closing_finished`).
        self.connect_after_close = false;
        // Closed, the engine can no longer know who is there: a member list kept from the last
        // connection would show them present forever.
        let presence = self.channels.forget_presence();
        self.events.extend(presence);
        self.set_state(State::Closed { reason });
    }

    /// The close handshake the app asked for ended (answered, the transport gone, or its
    /// timeout): closed with the app's code, then started again if the app called `connect`
    /// meanwhile.
    pub(super) fn closing_finished(&mut self, now: Instant, code: u16) {
        let again = self.connect_after_close;
        // Then what the app gave since its `connect` is for the next connection: the close
        // left nothing else queued nor pending (it dropped what was queued, and what it kept
        // for its handshake went at the `connect`; or the drain delivered everything), and
        // what the socket was still taking goes now.
        if again {
            let removed = self.outbox.drain_in_flight();
            self.report_removed(removed, DropReason::Closed);
        }
        self.end_closed(CloseReason::App { code }, again);
        if again {
            self.connect(now);
        }
    }

    /// Reports entries that left the outbox undelivered: messages in one `Dropped` event,
    /// requests each as `RequestFailed`.
    pub(super) fn report_removed(
        &mut self,
        removed: Vec<(MessageId, Awaiting)>,
        reason: DropReason,
    ) {
        if removed.is_empty() {
            return;
        }
        let mut ids = Vec::with_capacity(removed.len());
        for (id, awaiting) in removed {
            match awaiting {
                Awaiting::Reply(request) => {
                    if self.requests.complete(request) {
                        self.events.push_back(Event::RequestFailed {
                            id: request,
                            reason: request_failure(&reason),
                        });
                    }
                }
                _ => ids.push(id),
            }
        }
        if ids.is_empty() {
            return;
        }
        #[cfg(feature = "documents")]
        for id in &ids {
            self.on_doc_discarded(*id, &reason);
        }
        let n = ids.len() as u64;
        match reason {
            DropReason::Overflow => self.stats.dropped_overflow += n,
            DropReason::Expired => self.stats.dropped_expired += n,
            DropReason::Closed => self.stats.dropped_closed += n,
            DropReason::Rejected { .. } => self.stats.dropped_rejected += n,
        }
        // Drops in a row for the same reason, with nothing queued between them, are one event
        // (the ids in order): a driver that stops draining (the native task pauses while its
        // app leaves events unread) while the app keeps sending into a full outbox would
        // otherwise hold one event per send for as long as the pause lasts. Nothing is lost,
        // and the order of events is kept.
        if let Some(Event::Dropped {
            ids: queued,
            reason: last,
        }) = self.events.back_mut()
        {
            if *last == reason {
                queued.extend(ids);
                return;
            }
        }
        self.events.push_back(Event::Dropped { ids, reason });
    }

    /// Empties the outbox and the request table, reporting everything (the engine closes).
    pub(super) fn drop_everything_pending(&mut self) {
        let removed = self.outbox.drain_all();
        self.report_removed(removed, DropReason::Closed);
        self.fail_all_requests();
    }

    /// Fails every pending request with `Closed` (the engine closes).
    pub(super) fn fail_all_requests(&mut self) {
        for request in self.requests.take_all() {
            self.events.push_back(Event::RequestFailed {
                id: request,
                reason: RequestFailure::Closed,
            });
        }
    }

    /// Draining, with nothing left to deliver or to wait for.
    fn drain_complete(&self) -> bool {
        self.drain.is_some() && self.outbox.is_empty() && self.requests.len() == 0
    }

    /// When draining, closes once nothing is pending.
    pub(super) fn check_drain(&mut self, now: Instant) {
        if !self.drain_complete() {
            return;
        }
        self.drain = None;
        match self.state {
            State::Open => self.begin_close(now, 1000, "done"),
            State::Closing | State::Closed { .. } => {}
            // Nothing is pending: closed, then started again after a `connect`.
            _ => self.closing_finished(now, 1000),
        }
    }
}

impl ServerMinimum {
    /// The minimum a verdict's timing advice sets from `now`, if it sets one.
    pub(super) fn after(
        now: Instant,
        hint: Option<DelayHint>,
        cause: &DisconnectCause,
    ) -> Option<ServerMinimum> {
        let floor = hint.and_then(DelayHint::floor)?;
        Some(ServerMinimum {
            at: now + floor,
            cause: cause.clone(),
        })
    }
}

fn request_failure(reason: &DropReason) -> RequestFailure {
    match reason {
        DropReason::Overflow => RequestFailure::Overflow,
        DropReason::Expired => RequestFailure::TimedOut,
        DropReason::Rejected { code } => RequestFailure::Rejected {
            code: code.clone(),
            message: String::new(),
        },
        _ => RequestFailure::Closed,
    }
}

/// Cuts `reason` to the 123 bytes a close frame allows, at a character boundary.
pub(super) fn truncate_reason(reason: &str) -> String {
    if reason.len() <= MAX_CLOSE_REASON {
        return reason.to_owned();
    }
    let mut end = MAX_CLOSE_REASON;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_truncated_on_char_boundaries() {
        let long = "é".repeat(100);
        let cut = truncate_reason(&long);
        assert!(cut.len() <= 123);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
