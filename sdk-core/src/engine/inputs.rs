//! What the driver reports: token results, transport events, and `handle_timeout`.
//!
//! Every input names its transport; inputs about a transport the engine has abandoned are
//! counted in `Stats::stale_inputs` (except the end of one it was closing, which it asked for)
//! and otherwise ignored. Inputs in a state where they make no
//! sense are ignored the same way, so every input is total.

use super::{Engine, ServerMinimum};
use crate::action::{Action, Frame, TransportId};
use crate::close_policy::Verdict;
use crate::config::{is_header_value, HeartbeatMode, Protocol, TokenPlacement, TransportKind};
use crate::errors::{SseEvent, SubprotocolMismatch, TransportFailure};
use crate::event::{DisconnectCause, EngineError, Event, InboundMessage, Payload, State};
use crate::heartbeat::Beat;
use crate::protocol::{ClientMessage, ServerMessage};
use crate::sse::{is_resumable_id, SseError, SseItem, MAX_EVENT_ID_LEN};
use crate::time::Instant;

/// Close code the engine uses when it abandons a transport itself (heartbeat or connect
/// timeout). In the application range because browsers let scripts send only 1000 and
/// 3000–4999 (docs/protocol.md, close codes).
const ABANDON_CODE: u16 = 4000;

impl Engine {
    /// The token provider answered the request for `transport` (from
    /// [`Action::FetchToken`]). An answer to any request but the current one is ignored: a
    /// slow provider's token for an attempt that timed out, or for the last session (attempt
    /// numbers start again after `close` and `connect`), never opens another attempt.
    pub fn token_ready(&mut self, now: Instant, transport: TransportId, token: String) {
        let now = self.observe(now);
        let Some(attempt) = self.awaited_token(transport) else {
            return;
        };
        if matches!(self.config.token, Some(TokenPlacement::Header { .. }))
            && !is_header_value(&token)
        {
            // It could never be sent (a trailing newline, say): a provider failure, retried
            // with backoff, rather than a handshake that fails locally every time.
            return self.token_failed(now, transport, "the token contains control characters");
        }
        self.conn.awaiting_token = false;
        self.auth.refresh_next = false;
        self.open_transport(now, attempt, Some(token));
    }

    /// The token provider failed the request for `transport`: the attempt fails and is
    /// retried with backoff. Ignored, like [`token_ready`](Self::token_ready), unless it is
    /// the current request.
    pub fn token_failed(&mut self, now: Instant, transport: TransportId, message: &str) {
        let now = self.observe(now);
        if self.awaited_token(transport).is_none() {
            return;
        }
        self.emit_error(EngineError::Token(message.to_owned()));
        let cause = DisconnectCause::TokenUnavailable {
            message: message.to_owned(),
        };
        self.connection_lost(now, cause, Verdict::RETRY, None);
    }

    /// The attempt whose token request `transport` names, if that request is still awaited
    /// (an input for any other one is counted stale).
    fn awaited_token(&mut self, transport: TransportId) -> Option<u32> {
        match self.state {
            State::Connecting { attempt } if self.conn.awaiting_token => {
                self.is_current(transport).then_some(attempt)
            }
            _ => {
                self.stats.stale_inputs += 1;
                None
            }
        }
    }

    /// Notes `transport`'s end (closed or failed) and returns whether it is the current one.
    /// The end of a transport the engine was closing is what it asked for, not a stale input:
    /// only the end of one it had let go of (released, or replaced) is counted as stale.
    fn end_of_current(&mut self, transport: TransportId) -> bool {
        if self.ended(transport) && self.conn.transport != Some(transport) {
            return false;
        }
        self.is_current(transport)
    }

    /// The transport from [`Action::Open`] completed its handshake.
    pub fn transport_opened(&mut self, now: Instant, transport: TransportId) {
        let now = self.observe(now);
        if !self.is_current(transport) || !matches!(self.state, State::Connecting { .. }) {
            return;
        }
        self.on_opened(now);
    }

    /// A frame arrived. Frames larger than `max_message_bytes` are discarded with an error
    /// event; in Tether mode frames are decoded and undecodable ones reported and discarded.
    pub fn frame_received(&mut self, now: Instant, transport: TransportId, frame: Frame) {
        let now = self.observe(now);
        if !self.is_current(transport) || !self.receives_frames() {
            return;
        }
        if !self.count_frame(now, frame.len()) {
            return;
        }
        match (self.config.protocol, frame) {
            (Protocol::Raw, Frame::Text(text))
                if self.heartbeat.mode() == HeartbeatMode::AppMessage
                    && text == self.config.heartbeat.raw_pong =>
            {
                self.record_pong(now, None);
            }
            (Protocol::Raw, frame) => self.deliver(None, None, Payload::from(frame)),
            (Protocol::Tether, Frame::Text(text)) => self.protocol_frame_received(now, &text),
            (Protocol::Tether, Frame::Binary(bytes)) => {
                self.emit_error(EngineError::UnexpectedFrame(format!(
                    "binary frame of {} bytes in Tether protocol mode",
                    bytes.len()
                )))
            }
        }
    }

    /// A Tether protocol frame. Out of line, so the raw path above keeps a small stack frame
    /// (the decoded envelope is large).
    #[inline(never)]
    fn protocol_frame_received(&mut self, now: Instant, text: &str) {
        match ServerMessage::decode(text) {
            Ok(msg) => self.handle_server_message(now, msg),
            Err(err) => self.emit_error(EngineError::Decode(err)),
        }
    }

    /// What a driver's [`SseParser`](crate::sse::SseParser) took out of an SSE response body,
    /// as it is: an event, a comment (a sign of life), or what the parser skipped (an event
    /// over the message limit, reported as `FrameTooLarge`; an over-long line, reported as
    /// `SseLineTooLong`). Drivers whose platform parses the stream (a browser's
    /// `EventSource`) call [`Engine::sse_event_received`] instead.
    pub fn sse_parsed(
        &mut self,
        now: Instant,
        transport: TransportId,
        item: Result<SseItem, SseError>,
    ) {
        match item {
            Ok(SseItem::Event(event)) => self.sse_event_received(now, transport, event),
            Ok(SseItem::Comment) => self.ping_received(now, transport),
            Err(SseError::EventTooLarge { size, .. }) => self.frame_too_large(now, transport, size),
            Err(SseError::LineTooLong { field, size, max }) => {
                self.sse_line_too_long(now, transport, field, size, max)
            }
        }
    }

    /// Reports a line the stream carried but could not use; the stream is kept.
    fn sse_line_too_long(
        &mut self,
        now: Instant,
        transport: TransportId,
        field: &'static str,
        size: usize,
        max: usize,
    ) {
        let now = self.observe(now);
        if !self.is_current(transport) || !self.receives_frames() {
            return;
        }
        self.heartbeat.activity(now);
        self.emit_error(EngineError::SseLineTooLong { field, size, max });
    }

    /// A Server-Sent Event arrived on an SSE transport. Its `retry:` becomes the minimum
    /// reconnect delay, its `id:` the `Last-Event-ID` for the next attempt, and its data is
    /// handled like a frame (decoded as a protocol message in Tether mode).
    pub fn sse_event_received(&mut self, now: Instant, transport: TransportId, event: SseEvent) {
        let now = self.observe(now);
        if !self.is_current(transport) || !self.receives_frames() {
            return;
        }
        if let Some(retry) = event.retry {
            self.sse_retry = Some(retry.min(self.config.close_policy.max_server_delay));
        }
        // Per the SSE spec an empty id resets the last event id. An id a `Last-Event-ID`
        // header could not carry, or one too long to send back, is ignored, as the spec
        // ignores one holding NUL: adopted, it would make every later attempt fail, here or at
        // the server (see `tether_core::sse::MAX_EVENT_ID_LEN`).
        match event.id.as_ref() {
            Some(id) if is_resumable_id(id) => {
                self.last_event_id = (!id.is_empty()).then(|| id.clone());
                self.refused_event_id = None;
            }
            // Reported as our parser reports it (a browser's `EventSource` keeps any length),
            // once: `EventSource` repeats the last id on every event until the next `id:`.
            Some(id)
                if id.len() > MAX_EVENT_ID_LEN
                    && self.refused_event_id.as_deref() != Some(id.as_str()) =>
            {
                self.refused_event_id = Some(id.as_str().into());
                self.emit_error(EngineError::SseLineTooLong {
                    field: "id",
                    size: id.len(),
                    max: MAX_EVENT_ID_LEN,
                });
            }
            _ => {}
        }
        // No type: not a dispatched event, only a new id or retry (see `SseEvent::event`).
        self.conn.sse_dispatched |= !event.event.is_empty();
        // A dispatched one with empty data (`data` alone on a line) is a message of ""
        // in raw mode, as browsers deliver it; the Tether protocol has no empty message.
        let not_a_message = event.event.is_empty() || self.config.protocol == Protocol::Tether;
        if event.data.is_empty() && not_a_message {
            self.heartbeat.activity(now);
            return;
        }
        match self.config.protocol {
            Protocol::Tether => self.frame_received(now, transport, Frame::Text(event.data)),
            _ => {
                if !self.count_frame(now, event.data.len()) {
                    return;
                }
                // `+5` or `05` is not the id `5` to a server that compares ids as text, so an
                // app that orders or deduplicates by offset would be misled.
                let offset = event.id.as_deref().and_then(crate::protocol::canonical_u64);
                let named = !event.event.is_empty() && event.event != "message";
                let name = named.then_some(event.event);
                self.events.push_back(Event::Message(InboundMessage {
                    channel: None,
                    offset,
                    payload: Payload::Text(event.data),
                    event: name,
                    last_event_id: self.last_event_id.clone(),
                }));
            }
        }
    }

    /// Whether a message of `size` bytes is within `max_message_bytes`, i.e. whether
    /// [`Engine::frame_received`] would read it. A driver whose platform already holds each
    /// message before handing it over (a browser's `WebSocket` and `EventSource` keep it in
    /// JavaScript memory) asks this before copying one, and reports one that is not with
    /// [`Engine::frame_too_large`] instead: an oversized message is then never copied at all.
    pub fn reads_message_of(&self, size: usize) -> bool {
        size <= self.config.max_message_bytes
    }

    /// A message of `size` bytes that the driver left unread because it is over
    /// `max_message_bytes` (see [`Engine::reads_message_of`]), or an SSE event its parser
    /// skipped for that reason ([`SseError::EventTooLarge`](crate::sse::SseError::EventTooLarge)):
    /// counted, a sign of life, and reported like an oversized frame, with
    /// [`EngineError::FrameTooLarge`]; the connection is kept. Reported as too large whatever
    /// `size` says: the driver has not kept the message.
    pub fn frame_too_large(&mut self, now: Instant, transport: TransportId, size: usize) {
        let now = self.observe(now);
        if !self.is_current(transport) || !self.receives_frames() {
            return;
        }
        if self.count_frame(now, size) {
            self.report_too_large(size);
        }
    }

    /// Counts a message of `size` bytes that arrived (a sign of life, whatever its fate) and
    /// says whether it may be read: one over `max_message_bytes` is reported with
    /// [`EngineError::FrameTooLarge`] and goes no further.
    fn count_frame(&mut self, now: Instant, size: usize) -> bool {
        self.stats.frames_received += 1;
        // Saturating: `size` is the driver's word (a platform's length, a parser's count),
        // and an input must never panic or wrap the counter.
        self.stats.bytes_received = self.stats.bytes_received.saturating_add(size as u64);
        self.heartbeat.activity(now);
        let fits = self.reads_message_of(size);
        if !fits {
            self.report_too_large(size);
        }
        fits
    }

    fn report_too_large(&mut self, size: usize) {
        self.emit_error(EngineError::FrameTooLarge {
            size,
            max: self.config.max_message_bytes,
        });
    }

    /// A WebSocket pong control frame arrived with `payload`.
    pub fn pong_received(&mut self, now: Instant, transport: TransportId, payload: &[u8]) {
        let now = self.observe(now);
        if !self.is_current(transport) || !self.receives_frames() {
            return;
        }
        self.heartbeat.activity(now);
        let seq = <[u8; 8]>::try_from(payload).ok().map(u64::from_be_bytes);
        self.record_pong(now, seq);
    }

    /// A WebSocket ping control frame arrived (the driver's WebSocket library answers it);
    /// counts as a sign of life, which server-driven heartbeats rely on.
    pub fn ping_received(&mut self, now: Instant, transport: TransportId) {
        let now = self.observe(now);
        if !self.is_current(transport) || !self.receives_frames() {
            return;
        }
        self.heartbeat.activity(now);
    }

    /// Bytes arrived on `transport` since the driver's last input about it, without making a
    /// whole frame, event or comment yet: part of a large message on a slow link. A sign of
    /// life exactly like a received frame (it answers the outstanding ping or probe, when
    /// `any_frame_is_liveness`, and restarts the server-driven silence limit), so a message
    /// that keeps arriving is not cut off by a heartbeat its server cannot answer mid-frame.
    ///
    /// Meant to be cheap for the driver: it need not report every read. It notes that bytes
    /// arrived (since it last fed the engine an input from this transport) and reports that
    /// once, before the next `handle_timeout`; the heartbeat only judges at its deadlines, so
    /// that is all it needs. Bytes that arrived before the driver performed the latest
    /// [`Action::Ping`] should not be reported (a ping is answered by what comes after it). A
    /// driver whose platform hands over only whole messages (a browser's WebSocket or
    /// `EventSource`) cannot report this.
    pub fn bytes_received(&mut self, now: Instant, transport: TransportId) {
        self.peer_progressed(now, transport);
    }

    /// The socket of `transport` took more of our bytes after pushing back (its send buffer
    /// had been full): room comes back only as the peer acknowledges earlier bytes, so the
    /// peer is there. A sign of life like [`Engine::bytes_received`], with the same rules
    /// (reported once before a due `handle_timeout`, nothing from before the latest
    /// [`Action::Ping`]), for the other direction: a large message going out on a slow link
    /// keeps the peer busy reading it, and the ping waits behind it, so no pong can come
    /// until it is through. A dead path takes nothing once the buffer is full, so it is still
    /// found within the heartbeat's bound. A driver reports it when it sees its socket take
    /// bytes after pushing back (the native one); one that can only read how much its platform
    /// holds unsent (a browser's `bufferedAmount`) reports [`Engine::send_buffer_level`].
    pub fn bytes_acknowledged(&mut self, now: Instant, transport: TransportId) {
        self.peer_progressed(now, transport);
    }

    /// How many bytes handed to `transport` its platform still holds unsent, for a driver
    /// that cannot see its socket take bytes but can read such a level (a browser
    /// WebSocket's `bufferedAmount`). Read it at least at each deadline, before
    /// `handle_timeout`, and before an input that may send a probe ([`Engine::network_changed`],
    /// [`Engine::set_foreground`]): only a fall after the probe answers it, so a level read
    /// earlier is no baseline for it. Reading more often only shows more of the falls.
    ///
    /// The engine infers the peer's progress from the readings. While the platform holds a
    /// backlog, it hands bytes to the operating system as fast as the OS buffer frees room,
    /// and that room comes back only as the peer acknowledges: so a level that fell without
    /// reaching zero is a sign of life like [`Engine::bytes_acknowledged`], and so is the fall
    /// to zero that ends such a backlog (its last part left). A fall to zero in a backlog
    /// never seen draining proves nothing: a small send to a dead peer leaves at once for an
    /// OS buffer with room. What is then in the OS buffer goes out unseen. While a dead
    /// peer's OS buffer is still filling (a large send first fills its free room) readings
    /// can show false signs; once it is full the level only stays or grows, and the
    /// connection is found dead within the bound.
    pub fn send_buffer_level(&mut self, now: Instant, transport: TransportId, unsent: u64) {
        let now = self.observe(now);
        if !self.is_current(transport) {
            return;
        }
        self.conn.unsent_at = Some(now);
        let last = std::mem::replace(&mut self.conn.unsent, unsent);
        let fell = unsent < last;
        let sign = fell && (unsent > 0 || self.conn.backlog_drained);
        self.conn.backlog_drained = unsent > 0 && (fell || self.conn.backlog_drained);
        if sign {
            self.peer_progressed(now, transport);
        }
    }

    fn peer_progressed(&mut self, now: Instant, transport: TransportId) {
        let now = self.observe(now);
        if !self.is_current(transport) || !self.receives_frames() {
            return;
        }
        self.heartbeat.activity(now);
    }

    /// Backpressure: whether the transport can take more frames now. While `false`, messages
    /// wait in the (bounded) outbox instead of piling up in the driver.
    pub fn transport_writable(&mut self, now: Instant, transport: TransportId, writable: bool) {
        let now = self.observe(now);
        if !self.is_current(transport) {
            return;
        }
        let was = std::mem::replace(&mut self.conn.writable, writable);
        if writable && !was {
            if let Some(id) = self.conn.owed_pong.take() {
                self.send_control(&ClientMessage::Pong { id });
            }
            self.flush(now);
        }
    }

    /// The transport's socket has taken `taken` bytes of the frames handed to it (the sum of
    /// their [`Frame::progress_len`](crate::Frame::progress_len), counted from its `Open`, in
    /// the order of the `Send` actions); only with
    /// [`ConfigBuilder::driver_reports_progress`](crate::ConfigBuilder::driver_reports_progress).
    /// The messages it took are settled, and more are handed over.
    pub fn transport_progress(&mut self, now: Instant, transport: TransportId, taken: u64) {
        let now = self.observe(now);
        if !self.is_current(transport) || !self.config.reports_progress {
            return;
        }
        let taken = taken.min(self.conn.handed);
        if taken <= self.conn.taken {
            return;
        }
        self.conn.taken = taken;
        self.stats.messages_settled += self.outbox.taken(taken) as u64;
        self.flush(now);
    }

    /// The transport closed, with the close frame's code and reason if there was one
    /// (`None` for an abrupt end). The close policy decides whether and when to reconnect.
    pub fn transport_closed(
        &mut self,
        now: Instant,
        transport: TransportId,
        code: Option<u16>,
        reason: &str,
    ) {
        let now = self.observe(now);
        if !self.end_of_current(transport) {
            return;
        }
        let verdict = self.config.close_policy.classify_close(code, reason);
        let cause = DisconnectCause::Closed {
            code,
            reason: reason.to_owned(),
        };
        if let Some(app_code) = self.conn.closing {
            // A server that answers the app's close with a code of its own (1013, "try again
            // later") sets a minimum for the next start (`start_afresh`: a `connect` made
            // meanwhile, or later); an echo of the app's code says nothing.
            if code.is_some_and(|code| code != app_code) {
                self.timers.not_before = ServerMinimum::after(now, verdict.hint, &cause);
            }
            self.closing_finished(now, app_code);
            return;
        }
        self.connection_lost(now, cause, verdict, None);
    }

    /// The transport failed (during the handshake or later).
    pub fn transport_failed(
        &mut self,
        now: Instant,
        transport: TransportId,
        failure: TransportFailure,
    ) {
        let now = self.observe(now);
        if !self.end_of_current(transport) {
            return;
        }
        if let Some(app_code) = self.conn.closing {
            self.closing_finished(now, app_code);
            return;
        }
        // Only a proxy answers 407 (RFC 9110 §15.5.8), whichever transport met it: one that
        // intercepts connections made directly, or the one the driver went through.
        let failure = match failure {
            TransportFailure::Http {
                status: 407,
                retry_after,
                ..
            } => TransportFailure::Proxy {
                status: 407,
                retry_after,
            },
            failure => failure,
        };
        let text = match &failure {
            // What was offered is the engine's to say: the driver reports the server's choice.
            TransportFailure::Subprotocol { chosen } => {
                SubprotocolMismatch(Some(&self.config.subprotocols), chosen).to_string()
            }
            failure => failure.to_string(),
        };
        self.emit_error(EngineError::Transport(text.clone()));
        let (cause, verdict) = match failure {
            TransportFailure::Http {
                status,
                retry_after,
                ..
            } => (
                DisconnectCause::Http { status },
                self.config.close_policy.classify_http(status, retry_after),
            ),
            TransportFailure::Proxy {
                status,
                retry_after,
            } => (
                DisconnectCause::Proxy { status },
                self.config.close_policy.classify_proxy(status, retry_after),
            ),
            TransportFailure::Io(message) => (DisconnectCause::Failed { message }, Verdict::RETRY),
            // The server's choice, or the platform's refusal of the URL, is the same on every
            // attempt: stop, with the facts.
            TransportFailure::Subprotocol { .. } | TransportFailure::Blocked(_) => {
                (DisconnectCause::Failed { message: text }, Verdict::TERMINAL)
            }
        };
        self.connection_lost(now, cause, verdict, None);
    }

    /// Fires every deadline at or before `now`. Spurious or repeated calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Expiry, request and ack timeouts first and unconditionally: the lifecycle timers
        // below return early, and a message or request whose TTL or timeout has come must be
        // reported on this call (as `Expired` or `TimedOut`, not as `Closed` by a close due on
        // the same tick) whichever is due.
        let now = self.observe(now);
        self.expire_due(now);
        self.fire_request_timeouts(now);
        self.report_overdue_acks(now);
        self.release_overdue(now);
        if self.timers.close.is_some_and(|t| t <= now) {
            let code = self.conn.closing.unwrap_or(1000);
            self.closing_finished(now, code);
            return;
        }
        if self.drain.is_some_and(|d| d.deadline <= now) {
            self.drain = None;
            self.close_now(now, 1000, "drain timeout");
            return;
        }
        if self.timers.connect.is_some_and(|t| t <= now) {
            self.connection_lost(
                now,
                DisconnectCause::ConnectTimeout,
                Verdict::RETRY,
                Some(ABANDON_CODE),
            );
            return;
        }
        if self.timers.retry.is_some_and(|t| t <= now) {
            self.start_attempt(now);
            return;
        }
        if self.timers.min_uptime.is_some_and(|t| t <= now) {
            self.on_stable();
        }
        self.flush(now);
        self.run_heartbeat(now);
    }

    /// Fails the requests whose timeout has come; a drain waiting only for them is over.
    fn fire_request_timeouts(&mut self, now: Instant) {
        let expired = self.requests.take_expired(now);
        if expired.is_empty() {
            return;
        }
        for request in expired {
            self.outbox.remove_request(request);
            self.events.push_back(Event::RequestFailed {
                id: request,
                reason: crate::event::RequestFailure::TimedOut,
            });
        }
        self.check_drain(now);
    }

    fn run_heartbeat(&mut self, now: Instant) {
        while let Some(beat) = self.heartbeat.tick(now) {
            match beat {
                Beat::SendPing { seq } => self.send_ping(seq),
                Beat::Dead => {
                    self.connection_lost(
                        now,
                        DisconnectCause::HeartbeatTimeout,
                        Verdict::RETRY,
                        Some(ABANDON_CODE),
                    );
                    return;
                }
            }
        }
    }

    /// Finds out whether the open connection survived a network change: a WebSocket is
    /// probed (a ping with a short deadline), an event stream, which cannot send one, is
    /// restarted from its position.
    pub(super) fn recheck_open(&mut self, now: Instant) {
        if self.can_write_frames() {
            self.probe(now);
        } else {
            self.restart_stream(now);
        }
    }

    /// Ends the open event stream and opens it again at once, resuming from its position: on
    /// a network that changed its socket may be dead, and the only sign would be the
    /// heartbeat's silence limit (75 s by default), while a restart with a `Last-Event-ID`
    /// loses nothing from a server that resumes from it ([`ConfigBuilder::restart_streams`]
    /// turns it off for one that does not). Not without a position (the events the server
    /// sent between the two streams would be lost, from a healthy stream), and not before the
    /// stream has been up `min_uptime`: a platform reporting the network over and over would
    /// otherwise restart the stream as often.
    ///
    /// Not a failure, and not a wait: the attempt starts now (`ReconnectScheduled` says so
    /// with a zero delay), and neither the backoff nor its random draws move, so an attempt
    /// that fails then meets the delays a stable connection's drop meets.
    ///
    /// [`ConfigBuilder::restart_streams`]: crate::ConfigBuilder::restart_streams
    pub(super) fn restart_stream(&mut self, now: Instant) {
        if !self.config.restart_streams || self.last_event_id.is_none() || !self.stable {
            return;
        }
        let Some(transport) = self.conn.transport else {
            return;
        };
        let cause = DisconnectCause::StreamRestarted;
        self.close_transport(transport, ABANDON_CODE, cause.to_string());
        self.teardown_connection();
        let attempt = self.backoff.failures() + 1;
        self.start_attempt(now);
        // After the state change (`Open` → `Connecting`), as every `ReconnectScheduled`
        // follows its own (to `Waiting`).
        self.events.push_back(Event::ReconnectScheduled {
            attempt,
            delay: std::time::Duration::ZERO,
            cause,
        });
    }

    /// Sends a probe ping with a short deadline on an open connection.
    pub(super) fn probe(&mut self, now: Instant) {
        if let Some(Beat::SendPing { seq }) = self.heartbeat.probe(now) {
            // Only a fall after the probe answers it: a level read before it is no baseline.
            if self.conn.unsent_at != Some(now) {
                self.conn.unsent = 0;
            }
            self.send_ping(seq);
        }
    }

    fn send_ping(&mut self, seq: u64) {
        let Some(transport) = self.conn.transport else {
            return;
        };
        match self.heartbeat.mode() {
            HeartbeatMode::PingFrame => self.actions.push_back(Action::Ping {
                transport,
                payload: seq.to_be_bytes().to_vec(),
            }),
            HeartbeatMode::AppMessage => match self.config.protocol {
                Protocol::Tether => self.send_control(&ClientMessage::Ping {
                    id: seq.to_string(),
                }),
                _ => {
                    let frame = Frame::Text(self.config.heartbeat.raw_ping.clone());
                    // Counted like every frame handed over: a driver reporting progress
                    // counts it among the bytes its socket took.
                    self.count_written(&frame);
                    self.actions.push_back(Action::Send { transport, frame });
                }
            },
            _ => {}
        }
    }

    pub(super) fn record_pong(&mut self, now: Instant, seq: Option<u64>) {
        if let Some(rtt) = self.heartbeat.pong(now, seq) {
            self.stats.last_rtt = Some(rtt);
            self.events.push_back(Event::Rtt { rtt });
        }
    }

    /// Frames are delivered while open and during the close handshake.
    pub(super) fn receives_frames(&self) -> bool {
        matches!(self.state, State::Open | State::Closing)
    }

    pub(super) fn deliver(
        &mut self,
        channel: Option<String>,
        offset: Option<u64>,
        payload: Payload,
    ) {
        self.events.push_back(Event::Message(InboundMessage {
            channel,
            offset,
            payload,
            event: None,
            // A Tether message over an event stream: the stream's position is its id too.
            last_event_id: match self.config.transport {
                TransportKind::Sse => self.last_event_id.clone(),
                TransportKind::WebSocket => None,
            },
        }));
    }
}
