//! The app's commands.

use super::{Drain, Engine};
use crate::action::{Action, Frame, TransportId};
use crate::channels::validate_channel;
use crate::config::{Protocol, TransportKind};
use crate::errors::{CloseError, SendError, SizeLimit, SubscribeError};
use crate::event::{
    CloseReason, DropReason, Event, MessageId, Payload, RequestFailure, RequestId, State, Unacked,
};
use crate::outbox::{Awaiting, Entry, Outgoing, PushError};
use crate::protocol::ClientMessage;
use crate::requests::Requests;
use crate::time::Instant;
use serde_json::Value;
use std::time::Duration;

/// Per-message options for [`Engine::send_with`] and [`Engine::publish`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// Keep the message until the server acknowledges it, and re-send it after a reconnect
    /// (at-least-once; the server deduplicates by id). `None` means the protocol's default:
    /// acknowledged in Tether mode, not available in raw mode.
    pub ack: Option<bool>,
    /// Drop the message (reason `Expired`) if it cannot be sent within this time.
    /// `None` uses the configured default TTL.
    pub ttl: Option<Duration>,
    /// Stop waiting for the acknowledgement after this long (acknowledged sends only): the
    /// engine then emits [`Event::AckTimedOut`], whose [`Unacked`] says what became of the
    /// message. The TTL is cut to the timeout, so a message that could not be written in time
    /// is dropped then rather than delivered long after the app gave up. `None`: no limit.
    pub timeout: Option<Duration>,
}

impl SendOptions {
    /// Options with acknowledgement explicitly on.
    pub fn acked() -> Self {
        SendOptions {
            ack: Some(true),
            ..SendOptions::default()
        }
    }

    /// Options with acknowledgement explicitly off (fire and forget).
    pub fn unacked() -> Self {
        SendOptions {
            ack: Some(false),
            ..SendOptions::default()
        }
    }

    /// Sets the TTL.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets the acknowledgement timeout (see [`SendOptions::timeout`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Whether the message is acknowledged (`ack`, else the protocol's `default`), once the
    /// options are known to agree: a timeout needs an acknowledgement, and a TTL or timeout
    /// under a microsecond (the engine's clock) would end the message during the call that
    /// accepts it, before the app holds its id.
    fn acknowledged(&self, default: bool) -> Result<bool, SendError> {
        let ack = self.ack.unwrap_or(default);
        if self.timeout.is_some() && !ack {
            return Err(SendError::InvalidOptions(
                "a timeout waits for an acknowledgement: it needs ack",
            ));
        }
        if under_a_microsecond(self.ttl) || under_a_microsecond(self.timeout) {
            return Err(SendError::InvalidOptions(
                "a ttl or timeout must be more than zero (the engine's clock counts whole microseconds)",
            ));
        }
        Ok(ack)
    }

    /// The same options with acknowledgement on (keeping the TTL and timeout).
    pub fn with_ack(mut self) -> Self {
        self.ack = Some(true);
        self
    }
}

impl Engine {
    /// Starts connecting: from `Idle` or `Closed` (a fresh start, backoff reset; but a minimum
    /// the server set before the close still holds, waited for in `Waiting` with a
    /// `ReconnectScheduled` naming that refusal, and a token it refused is fetched with
    /// `refresh`), or from
    /// `Waiting` (the app asks for an attempt now: skips the remaining backoff wait, but not a
    /// minimum the server set — Retry-After, close 1013, `reconnect_after_ms` — which moves
    /// the attempt to that minimum instead). While `Closing`, the close finishes first (its
    /// `Closed` is reported) and the fresh start follows: the app's last word is `connect`, so
    /// messages and requests given from then on are accepted for the next connection (not
    /// refused as `Closing`, nor dropped with the old connection's). So too during a drained
    /// close ([`Engine::close_after_drain`]), in any state: it finishes (what is given
    /// meanwhile is drained with the rest), then the client starts again (a fresh start, as
    /// above). Otherwise ignored while `Connecting` or `Open`.
    pub fn connect(&mut self, now: Instant) {
        let now = self.observe(now);
        // A drained close under way finishes first, as a close handshake does.
        if self.drain.is_some() {
            self.connect_after_close = true;
        }
        match self.state {
            State::Idle | State::Closed { .. } => self.start_afresh(now),
            State::Waiting { .. } => self.retry_early(now),
            State::Closing => {
                self.connect_after_close = true;
                // What the close kept for its acks and replies would count against the
                // outbox's bounds ahead of what the app now sends for the next connection
                // (overflowing it, or evicting the new messages): their outcome stays
                // unknown, as before the close kept them.
                let kept = self.outbox.drain_awaiting_answers();
                self.report_removed(kept, DropReason::Closed);
            }
            State::Connecting { .. } | State::Open => {}
        }
    }

    /// Sends a message with default options: raw mode writes the frame as is; Tether mode wraps
    /// it in a channel-less `publish` (acknowledged). See [`Engine::send_with`].
    pub fn send(
        &mut self,
        now: Instant,
        payload: impl Into<Payload>,
    ) -> Result<MessageId, SendError> {
        self.send_with(now, payload, SendOptions::default())
    }

    /// Sends a message. It is queued if not connected (or if the transport pushes back) and
    /// written in order. Errors mean it was not accepted; once accepted it is eventually
    /// written (or acknowledged), or reported in an [`Event::Dropped`] — never lost silently.
    ///
    /// Raw mode: `Payload::Text`/`Binary` are written as frames, `Payload::Json` as text.
    /// Tether mode: text becomes a JSON string payload; binary is refused.
    pub fn send_with(
        &mut self,
        now: Instant,
        payload: impl Into<Payload>,
        options: SendOptions,
    ) -> Result<MessageId, SendError> {
        let payload = payload.into();
        match self.config.protocol {
            Protocol::Raw => {
                if options.acknowledged(false)? {
                    return Err(SendError::NeedsTetherProtocol("acknowledged sends"));
                }
                let frame = match payload {
                    Payload::Text(t) => Frame::Text(t),
                    Payload::Binary(b) => Frame::Binary(b),
                    Payload::Json(v) => Frame::Text(crate::json::to_string(&v)),
                };
                self.accept(now, frame, Awaiting::Nothing, options.ttl, None)
            }
            Protocol::Tether => self.publish_inner(now, None, payload, options),
        }
    }

    /// [`Engine::send_with`], reading the time only if the message needs it: with no TTL or
    /// timeout (its own or the configured default), on an open connection, with no queued
    /// message that could expire and no drain under way, nothing is timed from the moment it
    /// is accepted, so the engine's latest time ([`Engine::now`]) stands in for `clock()`.
    /// For drivers whose clock read is a measurable part of a send (a pipelined native
    /// client: one `clock_gettime` per message).
    pub fn send_with_clock(
        &mut self,
        clock: impl FnOnce() -> Instant,
        payload: impl Into<Payload>,
        options: SendOptions,
    ) -> Result<MessageId, SendError> {
        let timeless = options.ttl.is_none()
            && options.timeout.is_none()
            && self.config.outbox.default_ttl.is_none()
            && self.outbox.next_expiry().is_none()
            && self.drain.is_none()
            && self.state == State::Open;
        let now = if timeless { self.clock.now() } else { clock() };
        self.send_with(now, payload, options)
    }

    /// Publishes `payload` to `channel` (Tether mode). Acknowledged unless
    /// `options.ack == Some(false)`. Subscribing is not required to publish.
    pub fn publish(
        &mut self,
        now: Instant,
        channel: &str,
        payload: impl Into<Payload>,
        options: SendOptions,
    ) -> Result<MessageId, SendError> {
        if self.config.protocol != Protocol::Tether {
            return Err(SendError::NeedsTetherProtocol("publish"));
        }
        validate_channel(channel).map_err(SendError::InvalidChannel)?;
        self.publish_inner(now, Some(channel), payload.into(), options)
    }

    fn publish_inner(
        &mut self,
        now: Instant,
        channel: Option<&str>,
        payload: Payload,
        options: SendOptions,
    ) -> Result<MessageId, SendError> {
        let ack = options.acknowledged(true)?;
        let value = json_payload(payload)?;
        let wire_id = self.next_wire_id();
        let frame = Frame::Text(
            ClientMessage::Publish {
                id: wire_id.clone(),
                channel: channel.map(str::to_owned),
                payload: value,
                ack,
            }
            .encode(),
        );
        let awaiting = if ack {
            Awaiting::Ack(wire_id)
        } else {
            Awaiting::Nothing
        };
        self.accept(now, frame, awaiting, options.ttl, options.timeout)
    }

    /// Sends a request (Tether mode) and expects one reply within `timeout` (default: the
    /// configured request timeout). The outcome is an [`Event::Replied`] or an
    /// [`Event::RequestFailed`].
    pub fn request(
        &mut self,
        now: Instant,
        payload: impl Into<Payload>,
        timeout: Option<Duration>,
    ) -> Result<RequestId, SendError> {
        if self.config.protocol != Protocol::Tether {
            return Err(SendError::NeedsTetherProtocol("requests"));
        }
        // As for sends: it would end during the call, after being written.
        if under_a_microsecond(timeout) {
            return Err(SendError::InvalidOptions(
                "a request timeout must be more than zero (the engine's clock counts whole microseconds)",
            ));
        }
        let now = self.observe(now);
        let value = json_payload(payload.into())?;
        let id = RequestId(self.next_request + 1);
        let frame = Frame::Text(
            ClientMessage::Request {
                id: Requests::wire_id(id),
                channel: None,
                payload: value,
            }
            .encode(),
        );
        // No TTL: the request's own deadline ends it, with `RequestFailed` rather than a drop.
        self.enqueue(now, frame, Awaiting::Reply(id), None, None)?;
        self.next_request = id.0;
        let timeout = timeout.unwrap_or(self.config.request_timeout);
        self.requests.insert(id, now + timeout);
        Ok(id)
    }

    /// Gives up request `id`: the app no longer wants its reply (an aborted fetch in a
    /// browser, a screen the user left). Still queued, it is never sent; written, its reply
    /// is ignored when it comes. It ends, as every request does, with one outcome:
    /// [`Event::RequestFailed`] with [`RequestFailure::Cancelled`], and a drain waiting for
    /// it is over. False, and nothing happens, if `id` is not pending (it was answered,
    /// failed or cancelled before).
    pub fn cancel_request(&mut self, now: Instant, id: RequestId) -> bool {
        let now = self.observe(now);
        if !self.requests.complete(id) {
            return false;
        }
        self.outbox.remove_request(id);
        self.events.push_back(Event::RequestFailed {
            id,
            reason: RequestFailure::Cancelled,
        });
        self.check_drain(now);
        true
    }

    /// Subscribes to `channel` (Tether mode). The subscription is renewed on every open with
    /// the last seen offset, so missed messages are replayed and duplicates dropped.
    /// Subscribing twice is a no-op.
    pub fn subscribe(&mut self, now: Instant, channel: &str) -> Result<(), SubscribeError> {
        self.check_channel_command(channel)?;
        let _ = self.observe(now);
        if self.channels.add(channel) && self.state.is_open() {
            if let Some(msg) = self.channels.subscribe_message(channel) {
                self.send_control(&msg);
            }
        }
        Ok(())
    }

    /// Unsubscribes from `channel`; forgets its offset and presence. Unknown channels are a
    /// no-op. Messages the server sent on the channel before it read the unsubscribe (or, during
    /// the close handshake, before the connection ends) are not delivered: the app has its
    /// `Unsubscribed` already.
    pub fn unsubscribe(&mut self, now: Instant, channel: &str) -> Result<(), SubscribeError> {
        self.check_channel_command(channel)?;
        let _ = self.observe(now);
        if self.channels.remove(channel) {
            if self.state.is_open() {
                self.send_control(&ClientMessage::Unsubscribe {
                    channel: channel.to_owned(),
                });
            }
            // Frames still arrive while the close handshake runs, though no unsubscribe can
            // be written any more: what the server sent on the channel until the connection
            // ends belongs to the ended subscription either way.
            if self.receives_frames() {
                self.channels.unsubscribe_sent(channel);
            }
            self.events.push_back(Event::Unsubscribed {
                channel: channel.to_owned(),
            });
        }
        Ok(())
    }

    fn check_channel_command(&self, channel: &str) -> Result<(), SubscribeError> {
        if self.config.protocol != Protocol::Tether {
            return Err(SubscribeError::NeedsTetherProtocol);
        }
        // An event stream's channel is in its URL: a subscribe could never be written.
        if !self.can_write_frames() {
            return Err(SubscribeError::ReceiveOnly);
        }
        if self.state.is_closed() {
            return Err(SubscribeError::Closed);
        }
        validate_channel(channel).map_err(SubscribeError::InvalidChannel)
    }

    /// Closes the connection with `code` (1000 or 3000–4999) and stops reconnecting. Pending
    /// messages and requests are reported as dropped / failed with reason `Closed`: at once,
    /// but for the messages already written and awaiting their ack, and the requests already
    /// written and awaiting their reply, which an ack or reply received during the close
    /// handshake still settles (`Acked`, `Replied`); those left are reported dropped / failed
    /// when the close ends. Closing an
    /// already closed engine is a no-op. A close cancels an [`Engine::connect`] made during a
    /// close handshake or drain: the close is the app's last word again, and what was
    /// accepted for the next connection is dropped with reason `Closed` with the rest (during
    /// a close handshake, when it ends).
    pub fn close(&mut self, now: Instant, code: u16, reason: &str) -> Result<(), CloseError> {
        Self::check_close_code(code)?;
        let now = self.observe(now);
        // The app's last word is now `close`, also over a `connect` made while closing.
        self.connect_after_close = false;
        self.close_now(now, code, reason);
        Ok(())
    }

    /// Whether an app may close with `code` (1000 or 3000–4999), as [`Engine::close`] checks
    /// it; for a driver that must answer without an engine to ask (its task has ended).
    pub fn check_close_code(code: u16) -> Result<(), CloseError> {
        if code != 1000 && !(3000..=4999).contains(&code) {
            return Err(CloseError::InvalidCode(code));
        }
        Ok(())
    }

    pub(super) fn close_now(&mut self, now: Instant, code: u16, reason: &str) {
        match self.state {
            State::Closed { .. } | State::Closing => {}
            State::Open => {
                // What the transport is taking goes out ahead of the close frame, as anything
                // handed over does: it stays until the socket's progress settles it. A written
                // message awaiting its ack stays too, and a written request awaiting its
                // reply: the server answers what came before the close frame before it
                // answers the close, and reporting them lost at once told the app that a
                // message the server stored was dropped, or that a request it carried out
                // failed (an app retrying either would repeat it). What is still unsettled
                // when the close ends (answered, its timeout, the connection lost) is
                // reported dropped or failed, never forgotten. What was never written has
                // nothing coming, and is reported now.
                let mut removed = self.outbox.drain_all_but_written();
                // A drain's deadline after a `connect` made during the drain: what the app
                // sends from now on is for the next connection, and what this close would keep
                // for its handshake would count against the outbox's bounds ahead of it (as
                // at a `connect` during the handshake, see `connect`): it is reported now.
                if self.connect_after_close {
                    let mut kept = self.outbox.drain_awaiting_answers();
                    kept.append(&mut removed);
                    removed = kept;
                }
                self.report_removed(removed, DropReason::Closed);
                self.begin_close(now, code, reason);
            }
            // A drain's deadline, with a `connect` since: closed, then started again.
            _ => {
                let again = std::mem::take(&mut self.connect_after_close);
                self.finish_closed(CloseReason::App { code });
                if again {
                    self.connect(now);
                }
            }
        }
    }

    /// The driver can no longer run this engine (its task or runtime ended without a close):
    /// the engine is `Closed` at once with [`CloseReason::stopped_running`] (1001, "going
    /// away"; or the app's own code if it was already closing), and everything pending is reported as
    /// after `close` (dropped / failed with reason `Closed`). No handshake happens: the
    /// `Action::Close` queued for a live transport is the driver's to discard, as it has no
    /// transport left. Later commands are refused as after `close`, so nothing is accepted for
    /// a driver that will never send it. A no-op once closed.
    pub fn abandon(&mut self, now: Instant) {
        let _ = self.observe(now);
        if !self.state.is_closed() {
            // First, as `close` does: what was in flight is `Closed`, not `ConnectionLost`.
            self.drop_everything_pending();
            let reason = match self.conn.closing {
                Some(code) => CloseReason::App { code },
                None => CloseReason::stopped_running(),
            };
            self.finish_closed(reason);
        }
    }

    /// Closes once everything pending is written and acknowledged (reconnecting if needed: a
    /// client waiting to reconnect attempts at once, or at the server's minimum if it set one
    /// later), or at `timeout` at the latest, when what is left is dropped with reason `Closed`
    /// (what was written and awaits its ack or reply then, during the close handshake, as
    /// after [`Engine::close`]: settled by an answer that comes before the server's close;
    /// at once if the app called [`Engine::connect`] during the drain, so that it does not
    /// count against the outbox's bounds ahead of what is sent for the next connection). New
    /// messages are refused with [`SendError::Closing`] meanwhile, until the app calls
    /// [`Engine::connect`]: from then on they are accepted and drained with the rest, and once
    /// closed (`Closed` is reported) the client starts again. A close given after that
    /// `connect` is the last word again.
    pub fn close_after_drain(&mut self, now: Instant, timeout: Duration) {
        let now = self.observe(now);
        // A close is the app's last word, also over a `connect` made while closing.
        self.connect_after_close = false;
        if self.state.is_closed() || self.state == State::Closing {
            return;
        }
        let first = self.drain.is_none();
        self.drain = Some(Drain {
            deadline: now + timeout,
        });
        if self.state == State::Idle && !self.outbox.is_empty() {
            self.start_attempt(now);
        }
        self.check_drain(now);
        // What is pending can only be delivered over a connection: the backoff's wait (up to
        // its cap, 30 s by default) would outlast a drain of a few seconds and drop it all
        // with the server back. One attempt now, as for an `online` report; a minimum the
        // server set still holds. Only for the first drain asked: an app repeating its close
        // must not make an attempt per call.
        if first && self.drain.is_some() {
            self.retry_early(now);
        }
    }

    /// Tells the engine the device's network went `online` or offline. An online report while
    /// waiting reconnects at once, or at the server's minimum if it set one (see
    /// [`Engine::connect`]): also a repeated one, as platforms report a new network (a
    /// handover) before or without losing the old one, and the socket may have died with it;
    /// the server's minimum, never cut, is what protects a struggling server. While open, an
    /// online report, or the first offline one, sends a probe ping with a short deadline, so a
    /// socket that died with the old network is found in seconds without killing a healthy
    /// one. An event stream has no way to send a ping: an online report restarts it instead,
    /// from its position (see
    /// [`DisconnectCause::StreamRestarted`](crate::DisconnectCause::StreamRestarted) and
    /// [`ConfigBuilder::restart_streams`](crate::ConfigBuilder::restart_streams)).
    ///
    /// While offline, attempts go on with the usual growing delays (an offline report can be
    /// wrong, and an attempt without a network fails fast), but those that fail do not count
    /// against `max_attempts`: a client does not give up in airplane mode.
    pub fn network_changed(&mut self, now: Instant, online: bool) {
        let now = self.observe(now);
        let was_online = std::mem::replace(&mut self.online, online);
        match self.state {
            State::Waiting { .. } if online => self.retry_early(now),
            State::Open if online => self.recheck_open(now),
            // An offline report: a WebSocket is probed, for the socket may be gone with the
            // network; a stream is left be, as a restart now would fail offline.
            State::Open if was_online && self.can_write_frames() => self.probe(now),
            _ => {}
        }
    }

    /// Tells the engine the app moved to the foreground (`true`) or background. Returning to
    /// the foreground (from the background) reconnects at once if waiting, or at the server's
    /// minimum if it set one (see [`Engine::connect`]), and probes an open WebSocket. An open
    /// event stream is restarted as [`Engine::network_changed`] does, if it was open for at
    /// least the heartbeat interval while the app was away (25 s by default: long enough for
    /// a suspended app's socket to have died, where a browser tab switched away and back is
    /// not worth a new request), and the app has not reported the network offline.
    pub fn set_foreground(&mut self, now: Instant, foreground: bool) {
        let now = self.observe(now);
        let was = std::mem::replace(&mut self.foreground, foreground);
        if !foreground {
            if was {
                self.background_since = Some(now);
            }
            return;
        }
        if was {
            return;
        }
        let since = self.background_since.take();
        match self.state {
            State::Waiting { .. } => self.retry_early(now),
            State::Open if self.can_write_frames() => self.probe(now),
            // An event stream that was open for long enough while the app was away (one that
            // opened meanwhile counts from its opening); and not while the app says it is
            // offline, where a restart would fail.
            State::Open => {
                let long_enough = since.is_some_and(|since| {
                    let from = self
                        .conn
                        .opened_at
                        .map_or(since, |opened| opened.max(since));
                    now.saturating_duration_since(from) >= self.config.heartbeat.interval
                });
                if self.online && long_enough {
                    self.restart_stream(now);
                }
            }
            _ => {}
        }
    }

    /// Cuts a wait short: attempts now, unless the server set a minimum that has not passed,
    /// in which case the attempt moves to that minimum (`Waiting`'s `until` moves earlier).
    fn retry_early(&mut self, now: Instant) {
        let State::Waiting { attempt, until } = self.state else {
            return;
        };
        match self
            .timers
            .not_before
            .as_ref()
            .map(|m| m.at)
            .filter(|at| *at > now)
        {
            None => self.start_attempt(now),
            Some(at) if at < until => {
                self.timers.retry = Some(at);
                self.set_state(State::Waiting { attempt, until: at });
            }
            Some(_) => {}
        }
    }

    /// Whether the app last said the network is online.
    pub fn is_online(&self) -> bool {
        self.online
    }

    /// Whether the app last said it is in the foreground.
    pub fn is_foreground(&self) -> bool {
        self.foreground
    }

    // ---- shared with inputs ---------------------------------------------------------------

    fn check_accepting(&self) -> Result<(), SendError> {
        if self.state.is_closed() {
            return Err(SendError::Closed);
        }
        // Not when the app called `connect` since: the message is for the next connection
        // (`closing_finished` keeps it), as it would be once the close is done.
        if self.is_closing() && !self.connect_after_close {
            return Err(SendError::Closing);
        }
        if !self.can_write_frames() {
            return Err(SendError::ReceiveOnly);
        }
        Ok(())
    }

    fn check_size(&self, frame: &Frame) -> Result<(), SendError> {
        self.check_message_size(frame.len())
    }

    /// Refuses a message of at least `size` bytes that is over `max_message_bytes` or over
    /// the whole outbox (`outbox.max_bytes`, which it could never fit in), with
    /// [`SendError::TooLarge`] naming `size` and that limit, as a send or request of it would
    /// be: the frame of a text or binary payload is never smaller than the payload. A driver whose
    /// platform already holds the message asks this before copying it (a browser's string or
    /// byte array: copied into the module, one refused anyway would grow its memory for good;
    /// wasm memory never shrinks). Not for a JSON payload given as text: written back, it may
    /// be shorter than the text it came as.
    // One copy for the engine's sends and a driver's pre-check: inlined into each, the
    // browser module came out ~100 B larger gzipped (docs/performance.md).
    #[inline(never)]
    pub fn check_message_size(&self, size: usize) -> Result<(), SendError> {
        let (max, limit) = if size > self.config.max_message_bytes {
            (self.config.max_message_bytes, SizeLimit::MaxMessageBytes)
        } else if size > self.config.outbox.max_bytes {
            (self.config.outbox.max_bytes, SizeLimit::OutboxMaxBytes)
        } else {
            return Ok(());
        };
        Err(SendError::TooLarge { size, max, limit })
    }

    /// Puts an app message in the outbox and writes what can be written. `ack_timeout` (an
    /// acknowledged message only) also caps the TTL: what could not be written by then expires
    /// with the wait.
    pub(super) fn accept(
        &mut self,
        now: Instant,
        frame: Frame,
        awaiting: Awaiting,
        ttl: Option<Duration>,
        ack_timeout: Option<Duration>,
    ) -> Result<MessageId, SendError> {
        let ttl = match (ttl.or(self.config.outbox.default_ttl), ack_timeout) {
            (Some(ttl), Some(timeout)) => Some(ttl.min(timeout)),
            (ttl, timeout) => ttl.or(timeout),
        };
        let id = self.enqueue(now, frame, awaiting, ttl, ack_timeout)?;
        // Requests are not counted: they end as a reply or a `RequestFailed`, not as settled
        // or dropped messages (see `Stats`).
        self.stats.messages_accepted += 1;
        Ok(id)
    }

    /// Checks and queues one outbox entry (an app message or a request), then writes what can
    /// be written: what `accept` and `request` share.
    fn enqueue(
        &mut self,
        now: Instant,
        frame: Frame,
        awaiting: Awaiting,
        ttl: Option<Duration>,
        ack_timeout: Option<Duration>,
    ) -> Result<MessageId, SendError> {
        let now = self.observe(now);
        self.check_accepting()?;
        self.check_size(&frame)?;
        let id = self.next_message_id();
        self.next_message = id.0;
        let entry = Entry {
            id,
            frame,
            expires_at: ttl.map(|t| now + t),
            ack_due: ack_timeout.map(|t| now + t),
            awaiting,
            written: false,
        };
        match self.writable_at_once(now, &entry.frame) {
            // What `flush` would do with it, without its round trip through the queue.
            Some(transport) => {
                let out = self.outbox.push_written(
                    entry,
                    self.config.reports_progress.then_some(self.conn.handed),
                );
                self.write_out(transport, out);
                self.check_drain(now);
            }
            None => {
                self.push_entry(entry)?;
                self.flush(now);
            }
        }
        Ok(id)
    }

    /// Whether a new message of this size would go straight out: `flush` would write it at
    /// once (open, writable, room in the write batch) with nothing queued ahead of it, and
    /// queueing it would drop nothing. Then the transport to write it on, after `flush`'s own
    /// preliminaries.
    fn writable_at_once(&mut self, now: Instant, frame: &Frame) -> Option<TransportId> {
        let transport = self.writable_transport()?;
        if self.batch_room() == 0 || !self.outbox.can_write_at_once(frame.len()) {
            return None;
        }
        self.timers.flush_more = None;
        self.expire_due(now);
        // Expiring may have ended a drain and with it the connection.
        (self.state.is_open() && self.conn.transport == Some(transport)).then_some(transport)
    }

    /// The id `enqueue` gives the next message it takes: the one place message ids come from.
    fn next_message_id(&self) -> MessageId {
        MessageId(self.next_message + 1)
    }

    /// The wire id (unique across clients, for the server to deduplicate) of the next message
    /// `enqueue` takes: build the frame with it, then queue the frame before anything else.
    pub(super) fn next_wire_id(&self) -> String {
        format!("{}{}", self.wire_prefix, self.next_message_id().0)
    }

    fn push_entry(&mut self, entry: Entry) -> Result<(), SendError> {
        match self.outbox.push(entry) {
            Ok(dropped) => {
                self.report_removed(dropped, DropReason::Overflow);
                Ok(())
            }
            Err(PushError::TooLarge { size, max }) => Err(SendError::TooLarge {
                size,
                max,
                limit: SizeLimit::OutboxMaxBytes,
            }),
            Err(PushError::Full) => Err(SendError::OutboxFull),
        }
    }

    /// Drops what has expired by `now`; when draining, what left may have been the last thing
    /// pending, so the drain is checked at once rather than at its deadline.
    /// An acknowledged message whose timeout came with its TTL is reported `AckTimedOut`
    /// (status `Expired`) before the `Dropped` that says it left the outbox, so a driver
    /// resolving the app's wait on the first of the two tells it "timed out".
    pub(super) fn expire_due(&mut self, now: Instant) {
        let expired = self.outbox.expire(now);
        if expired.removed.is_empty() {
            return;
        }
        for id in expired.ack_due {
            self.events.push_back(Event::AckTimedOut {
                id,
                status: Unacked::Expired,
            });
        }
        self.report_removed(expired.removed, DropReason::Expired);
        self.check_drain(now);
    }

    /// Reports written messages whose acknowledgement timeout passed: they stay in the outbox
    /// for their ack, and their `Acked` or `Dropped` event follows.
    pub(super) fn report_overdue_acks(&mut self, now: Instant) {
        for id in self.outbox.overdue_acks(now) {
            self.events.push_back(Event::AckTimedOut {
                id,
                status: Unacked::AwaitingAck,
            });
        }
    }

    /// Writes queued messages while the transport takes them.
    pub(super) fn flush(&mut self, now: Instant) {
        self.timers.flush_more = None;
        self.expire_due(now);
        let Some(transport) = self.writable_transport() else {
            return;
        };
        let progress = self.config.reports_progress;
        let mut batch = self.batch_room();
        if batch == 0 {
            self.check_drain(now);
            return;
        }
        while let Some(out) = self
            .outbox
            .next_to_send(progress.then_some(self.conn.handed))
        {
            batch = batch.saturating_sub(out.frame.len());
            self.write_out(transport, out);
            if batch == 0 || (progress && self.outbox.taking_is_full()) {
                if !progress && self.outbox.has_unsent() {
                    self.timers.flush_more = Some(now);
                }
                break;
            }
        }
        // Unacknowledged messages leave the outbox as they are written: that may be the end
        // of a drain (after backpressure lifted, say).
        self.check_drain(now);
    }

    /// The transport frames can be written on now: open, writable, and not a receive-only
    /// event stream.
    fn writable_transport(&self) -> Option<TransportId> {
        if !self.state.is_open() || !self.conn.writable || !self.can_write_frames() {
            return None;
        }
        self.conn.transport
    }

    /// The bytes a write batch may take now, 0 when none. A batch at a time (see
    /// `ConfigBuilder::write_batch_bytes`): the driver reports backpressure between batches,
    /// before the whole outbox is in the transport's buffer. A driver that reports what its
    /// socket took gets at most a batch not yet taken (and no more entries than the outbox
    /// lets it take); its next report goes on.
    fn batch_room(&self) -> usize {
        if !self.config.reports_progress {
            return self.config.write_batch_bytes;
        }
        if self.outbox.taking_is_full() {
            return 0;
        }
        let untaken = (self.conn.handed - self.conn.taken) as usize;
        self.config.write_batch_bytes.saturating_sub(untaken)
    }

    /// Hands an outbox entry taken for writing to the transport.
    fn write_out(&mut self, transport: TransportId, out: Outgoing) {
        if out.resend {
            self.stats.resent += 1;
        }
        if !out.awaits {
            self.stats.messages_settled += 1;
        }
        self.count_written(&out.frame);
        self.actions.push_back(Action::Send {
            transport,
            frame: out.frame,
        });
    }

    /// Whether frames can be written on this transport kind at all (SSE is receive-only).
    pub(super) fn can_write_frames(&self) -> bool {
        self.config.transport == TransportKind::WebSocket
    }

    /// Writes a protocol control message (hello, subscribe, pong…) ahead of the outbox; not on
    /// a receive-only transport (SSE), which cannot carry it, and only while open: once the
    /// close frame is written (`Closing`), RFC 6455 allows no more data frames (tungstenite
    /// refuses them, failing the link mid-handshake). What the server still sends meanwhile
    /// (its `ping`, a document change past a gap) goes unanswered: the connection is ending.
    pub(super) fn send_control(&mut self, msg: &ClientMessage) {
        if !self.state.is_open() {
            return;
        }
        let Some(transport) = self.conn.transport.filter(|_| self.can_write_frames()) else {
            return;
        };
        let frame = Frame::Text(msg.encode());
        self.count_written(&frame);
        self.actions.push_back(Action::Send { transport, frame });
    }

    /// Counts a frame handed to the transport.
    pub(super) fn count_written(&mut self, frame: &Frame) {
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += frame.len() as u64;
        self.conn.handed += frame.progress_len();
        self.conn.largest_written = self.conn.largest_written.max(frame.len());
    }
}

fn json_payload(payload: Payload) -> Result<Value, SendError> {
    match payload {
        Payload::Json(v) => Ok(v),
        Payload::Text(t) => Ok(Value::String(t)),
        Payload::Binary(_) => Err(SendError::BinaryInTetherMode),
    }
}

impl From<String> for Payload {
    fn from(text: String) -> Self {
        Payload::Text(text)
    }
}

impl From<&str> for Payload {
    fn from(text: &str) -> Self {
        Payload::Text(text.to_owned())
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Self {
        Payload::Binary(bytes)
    }
}

impl From<Value> for Payload {
    fn from(value: Value) -> Self {
        Payload::Json(value)
    }
}

/// A deadline the engine's clock (microseconds) would reach within the call that sets it.
fn under_a_microsecond(d: Option<Duration>) -> bool {
    d.is_some_and(crate::time::under_a_microsecond)
}
