//! The protocol side of one WebSocket connection: authentication by `hello`, the rate
//! limit, and what each client message does (subscribe, publish, request …). It never
//! touches the socket: replies are queued on the connection's [`Peer`], and a decision to
//! close comes back as a [`Flow`]. New message types (such as a document-sync layer) are
//! added as arms of [`Session::dispatch`].
//!
//! Dropping a session removes its subscriptions from the hub (with the presence grace
//! period), so cleanup happens however the connection ends, aborts included.

use crate::auth::{token_matches, Access};
use crate::config::RelayConfig;
use crate::docs::{Author, QueuedSnapshots, SyncRequest};
use crate::head::head_of;
use crate::hub::{frame, Connected, Echo, Hub, Instance, Published};
use crate::peer::{Outbound, Peer};
use crate::rate_limit::TokenBucket;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use tether_core::protocol::{ClientMessage, DecodeError, ServerMessage};
use tokio::time::Instant;

/// Close code for a missing or refused token (protocol: `unauthorized`).
pub(crate) const CLOSE_UNAUTHORIZED: u16 = 4001;

/// Longest `id` of a `publish` or `doc_change` (docs/protocol.md, "Client → server"). The
/// relay remembers these ids (twice per channel for resends, and in every document's change
/// log and snapshots), so without a limit its memory bound per channel would not hold. As
/// long as a `client_id`; the engine's ids are far shorter (a 13-byte prefix and a counter).
pub(crate) const MAX_ID_LEN: usize = 128;

/// Error codes the relay sends (docs/protocol.md, "Errors").
pub(crate) mod code {
    pub(crate) const BAD_FRAME: &str = "bad_frame";
    pub(crate) const UNSUPPORTED_VERSION: &str = "unsupported_version";
    pub(crate) const INVALID_CHANNEL: &str = "invalid_channel";
    pub(crate) const RATE_LIMITED: &str = "rate_limited";
    pub(crate) const UNAUTHORIZED: &str = "unauthorized";
    pub(crate) const TOO_LARGE: &str = "too_large";
    pub(crate) const TOO_MANY_DOCUMENTS: &str = "too_many_documents";
    pub(crate) const DUPLICATE_ID: &str = "duplicate_id";
}

/// What the connection should do after a frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    /// Send the queued frames, then close with this code and reason.
    Close {
        code: u16,
        reason: String,
    },
}

#[derive(Debug)]
pub(crate) struct Session {
    peer: Peer,
    hub: Arc<Hub>,
    config: Arc<RelayConfig>,
    access: Access,
    /// The presence identity, from `hello` (or assigned at the first other message).
    member: Option<Arc<str>>,
    /// The client instance this connection belongs to, if its `hello` named one.
    instance: Option<Instance>,
    channels: HashSet<String>,
    /// Documents this connection syncs.
    documents: HashSet<String>,
    /// Document snapshots queued on this connection, so that it never has two of one.
    snapshots: QueuedSnapshots,
    limiter: Option<TokenBucket>,
    /// The client closed with 1000 (normal closure): it is leaving, not reconnecting, so its
    /// members leave at once instead of after the presence grace period.
    leaving: bool,
    /// Set while a frame is handled if it was a publish or a document change the relay
    /// already held (a resend, acknowledged; or a reuse of its id, refused): it stored,
    /// applied and delivered nothing.
    held: bool,
    /// How many more held publishes and document changes this connection may have handled
    /// without taking a rate limit token (see [`Session::on_text`]).
    free_resends: usize,
}

impl Session {
    pub(crate) fn new(
        peer: Peer,
        hub: Arc<Hub>,
        config: Arc<RelayConfig>,
        access: Access,
        now: Instant,
    ) -> Self {
        let limiter = config.rate_limit.map(|limit| TokenBucket::new(limit, now));
        let free_resends = config.dedupe_capacity;
        Session {
            peer,
            hub,
            config,
            access,
            member: None,
            instance: None,
            channels: HashSet::new(),
            documents: HashSet::new(),
            snapshots: QueuedSnapshots::new(),
            limiter,
            leaving: false,
            held: false,
            free_resends,
        }
    }

    /// The client sent a close frame with `code`. Only a normal closure (1000: the app
    /// closed) means it is not coming back; 1001 (a page reload, a process restart) and the
    /// 4000 of a client that found the connection dead are followed by a reconnect, which the
    /// grace period hides.
    pub(crate) fn client_closed(&mut self, code: Option<u16>) {
        self.leaving = code == Some(1000);
    }

    /// True until `hello` has brought the token that the handshake did not.
    pub(crate) fn awaiting_token(&self) -> bool {
        self.access == Access::HelloMustProve
    }

    /// Until when the reader must wait before handing over the frame that just arrived
    /// (`text`, or `None` for a binary frame), or `None` to hand it over now.
    ///
    /// Over the rate limit, a message that names an `id` (a `publish`, `request`,
    /// `doc_change`; a `ping` is answered and a `pong` taken all the same) is refused by
    /// [`on_text`](Self::on_text) with `rate_limited` naming it, and the client drops or
    /// fails that one message. A message without one (`hello`, `subscribe`, `unsubscribe`,
    /// `doc_sync`, `doc_close`) could not be named by the error: refused, it would be lost
    /// without the client knowing (a client subscribing to more channels than the burst on
    /// every reconnect would believe itself subscribed to all).
    /// Such a message waits for a token instead: the reader stops reading the connection
    /// until then, so a flood of them is slowed by TCP backpressure rather than refused. Only
    /// a bucket that never refills (0 per second) refuses them, as nothing could be waited
    /// for.
    pub(crate) fn rate_wait(&self, text: Option<&str>, now: Instant) -> Option<Instant> {
        let at = self.limiter.as_ref()?.token_at(now)?;
        let names_id = || text.is_some_and(|text| head_of(text).id.is_some());
        (at > now && !names_id()).then_some(at)
    }

    /// Handles one text frame.
    ///
    /// A publish the relay already holds (same `client_id` and `id`: a resend after a
    /// reconnect whose ack was lost) takes no rate limit token, and is handled even over the
    /// limit: it stores and delivers nothing, and refusing it would make the client report
    /// as dropped a message every subscriber has. So does a `doc_change` its document
    /// remembers, which applies nothing: refused, its client reported as rejected a change
    /// every other client shows. Over the limit only the frame's head is read to recognise
    /// it. A client re-sends each unacked message once per connection, so a connection gets
    /// at most `dedupe_capacity` such frames free (the relay remembers no more per channel);
    /// past that they are charged like any other.
    ///
    /// A frame let through over the limit on the strength of its head is charged to that
    /// allowance when it is let through, whatever its handling then finds: its body may fail
    /// to decode, or be refused, and it must still not have been free (or a client could
    /// send such frames without bound).
    pub(crate) fn on_text(&mut self, text: &str, now: Instant) -> Flow {
        let limited = self.limiter.as_ref().is_some_and(|l| !l.has_token(now));
        if limited {
            if is_heartbeat(text) {
                return self.handle_text(text);
            }
            if !self.holds_resend(text) {
                self.reply_error(
                    code::RATE_LIMITED,
                    "message rate limit exceeded; this message was not processed".into(),
                    head_of(text).id,
                );
                return Flow::Continue;
            }
            // `holds_resend` is true only while some of the allowance is left.
            self.free_resends -= 1;
            return self.handle_text(text);
        }
        self.held = false;
        let flow = self.handle_text(text);
        if self.held && self.free_resends > 0 {
            self.free_resends -= 1;
        } else if let Some(limiter) = self.limiter.as_mut() {
            // There is a token (the frame was not limited): this one takes it.
            limiter.try_take(now);
        }
        flow
    }

    /// True if `text` is a publish or a document change the relay already holds and this
    /// connection may still have one handled for free.
    fn holds_resend(&self, text: &str) -> bool {
        // Without an identity yet nothing can be held (and naming one here would refuse a
        // `hello` that follows).
        let Some(member) = self.member.as_ref().filter(|_| self.free_resends > 0) else {
            return false;
        };
        let head = head_of(text);
        match (head.kind.as_deref(), head.id.as_deref(), head.channel) {
            (Some("publish"), Some(id), channel) => self.hub.holds(channel.as_deref(), member, id),
            (Some("doc_change"), Some(id), Some(channel)) => {
                self.hub.docs.holds(&channel, member, id)
            }
            _ => false,
        }
    }

    fn handle_text(&mut self, text: &str) -> Flow {
        match ClientMessage::decode(text) {
            Ok(msg) if self.awaiting_token() => self.authenticate(msg),
            Ok(msg) => self.dispatch(msg),
            Err(_) if self.awaiting_token() => self.unauthorized("expected hello with a token"),
            Err(e) => {
                let code = match e {
                    DecodeError::UnsupportedVersion(_) => code::UNSUPPORTED_VERSION,
                    _ => code::BAD_FRAME,
                };
                self.reply_error(code, e.to_string(), head_of(text).id);
                Flow::Continue
            }
        }
    }

    /// Handles one binary frame: not part of the protocol.
    pub(crate) fn on_binary(&mut self, now: Instant) -> Flow {
        if self.awaiting_token() {
            return self.unauthorized("expected hello with a token");
        }
        if self.within_rate(now) {
            self.reply_error(
                code::BAD_FRAME,
                "binary frames are not part of the protocol".into(),
                None,
            );
        } else {
            self.reply_error(
                code::RATE_LIMITED,
                "message rate limit exceeded; this message was not processed".into(),
                None,
            );
        }
        Flow::Continue
    }

    /// A wrong token came in the URL: refuse with close 4001 before anything else.
    pub(crate) fn refused_at_handshake(&mut self) -> Flow {
        if self.access == Access::RefusedInUrl {
            self.unauthorized("the token in the URL was refused")
        } else {
            Flow::Continue
        }
    }

    /// The handshake timeout passed without `hello` bringing the token.
    pub(crate) fn hello_timed_out(&mut self) -> Flow {
        if self.awaiting_token() {
            self.unauthorized("no hello with a token in time")
        } else {
            Flow::Continue
        }
    }

    fn within_rate(&mut self, now: Instant) -> bool {
        self.limiter.as_mut().is_none_or(|l| l.try_take(now))
    }

    fn authenticate(&mut self, msg: ClientMessage) -> Flow {
        let ClientMessage::Hello {
            client_id,
            token,
            instance,
        } = msg
        else {
            return self.unauthorized("expected hello with a token");
        };
        let required = self.config.token.as_deref().unwrap_or_default();
        if !token.is_some_and(|t| token_matches(required, &t)) {
            return self.unauthorized("token missing or refused");
        }
        self.access = Access::Granted;
        self.hello(client_id, instance);
        Flow::Continue
    }

    fn unauthorized(&mut self, why: &str) -> Flow {
        self.reply_error(code::UNAUTHORIZED, why.to_owned(), None);
        Flow::Close {
            code: CLOSE_UNAUTHORIZED,
            reason: "unauthorized".to_owned(),
        }
    }

    fn dispatch(&mut self, msg: ClientMessage) -> Flow {
        match msg {
            ClientMessage::Hello {
                client_id,
                instance,
                ..
            } => self.hello(client_id, instance),
            ClientMessage::Subscribe {
                channel,
                since,
                epoch,
            } => {
                if self.check_channel(&channel, None) {
                    let member = self.member();
                    self.hub
                        .subscribe(&self.peer, &member, &channel, since, epoch.as_deref());
                    if let Some(instance) = &self.instance {
                        self.hub
                            .instance_channel(instance, self.peer.id(), &channel, true);
                    }
                    self.channels.insert(channel);
                }
            }
            ClientMessage::Unsubscribe { channel } => {
                if self.check_channel(&channel, None) {
                    if self.channels.remove(&channel) {
                        self.hub.unsubscribe(self.peer.id(), &channel);
                        if let Some(instance) = &self.instance {
                            self.hub
                                .instance_channel(instance, self.peer.id(), &channel, false);
                        }
                    }
                    // Acknowledged even if not subscribed, so unsubscribing is idempotent.
                    self.reply(&ServerMessage::Unsubscribed { channel });
                }
            }
            ClientMessage::Publish {
                id,
                channel,
                payload,
                ack,
            } => {
                if self.check_id(&id) {
                    self.publish(id, channel, payload, ack);
                }
            }
            ClientMessage::Request { id, payload, .. } => {
                // The reference relay is its own echo service.
                self.reply(&ServerMessage::Reply { id, payload });
            }
            ClientMessage::Ping { id } => {
                let id = (!id.is_empty()).then_some(id);
                self.reply(&ServerMessage::Pong { id });
            }
            // Liveness only; the connection is alive because a frame arrived.
            ClientMessage::Pong { .. } => {}
            ClientMessage::DocSync {
                channel,
                version,
                epoch,
                pending,
            } => {
                if self.check_channel(&channel, None) {
                    // The changes it awaits are remembered under its `client_id`.
                    let member = self.member();
                    let request = SyncRequest {
                        member: &member,
                        version,
                        epoch: epoch.as_deref(),
                        pending: &pending,
                    };
                    let docs = &self.hub.docs;
                    if docs.sync(&self.peer, &mut self.snapshots, &channel, request) {
                        self.documents.insert(channel);
                    }
                }
            }
            ClientMessage::DocClose { channel } => {
                // Not answered, and a no-op for a document this connection does not sync:
                // the client drops frames of documents it does not hold either way.
                if self.check_channel(&channel, None) && self.documents.remove(&channel) {
                    self.hub
                        .docs
                        .close(&self.peer, &mut self.snapshots, &channel);
                }
            }
            ClientMessage::DocChange {
                id, channel, ops, ..
            } => {
                if self.check_id(&id) && self.check_channel(&channel, Some(&id)) {
                    // Change ids are unique per client: dedupe is keyed on the client too.
                    let member = self.member();
                    let author = Author {
                        peer: &self.peer,
                        member: &member,
                    };
                    let snapshots = &mut self.snapshots;
                    self.held = self.hub.docs.change(author, snapshots, &channel, id, ops);
                }
            }
            other => {
                // A message type that tether-core knows and this relay does not (yet).
                let id = other.to_envelope().id;
                self.reply_error(
                    code::BAD_FRAME,
                    "message type not supported by this relay".into(),
                    id,
                );
            }
        }
        Flow::Continue
    }

    /// Takes the client's identity. An `instance` (at most [`MAX_ID_LEN`] bytes; a longer
    /// one is ignored) ends that instance's older connections (see
    /// [`Hub::connect_instance`]).
    fn hello(&mut self, client_id: String, instance: Option<String>) {
        // Any hello, even a refused one, shows a client that speaks the protocol: it is
        // sent the protocol's pings from now on.
        self.peer.said_hello();
        if self.member.is_some() {
            // The identity is fixed once presence may have seen it.
            self.reply_error(
                code::BAD_FRAME,
                "hello must be the first message".into(),
                None,
            );
        } else if let Err(reason) = tether_core::validate_client_id(&client_id) {
            self.reply_error(code::BAD_FRAME, format!("client_id {reason}"), None);
        } else {
            let member: Arc<str> = Arc::from(client_id);
            self.member = Some(member.clone());
            if let Some(instance) = instance.filter(|i| !i.is_empty() && i.len() <= MAX_ID_LEN) {
                let instance = (member, instance);
                // A stale connection (a newer one of its instance said `hello` first) is
                // ended, and not recorded as its instance's.
                if self.hub.connect_instance(&instance, &self.peer) == Connected::Current {
                    self.instance = Some(instance);
                }
            }
        }
    }

    /// The presence identity; a client that skipped `hello` (allowed on an open relay, for
    /// hand-typed sessions) is named after its connection.
    fn member(&mut self) -> Arc<str> {
        let id = self.peer.id();
        self.member
            .get_or_insert_with(|| Arc::from(format!("anonymous-{id}")))
            .clone()
    }

    fn publish(&mut self, id: String, channel: Option<String>, payload: Value, ack: bool) {
        let ts = unix_ms();
        let Some(channel) = channel else {
            // A channel-less publish goes to the relay itself, which echoes it: once, however
            // often it is re-sent (ids are unique per client, as for channels).
            let digest = self.hub.digest(&payload);
            let echo = frame(&ServerMessage::Message {
                channel: None,
                offset: None,
                id: Some(id.clone()),
                payload,
                ts: Some(ts),
            });
            if !self.fits(echo.len(), &id) {
                return;
            }
            let publisher = self.member();
            let echo_of = self.hub.echo(&publisher, &id, digest);
            self.held = echo_of != Ok(Echo::New);
            match echo_of {
                Ok(Echo::New) => {
                    self.peer.offer(Outbound::Frame(echo));
                }
                Ok(Echo::Resent) => {}
                Err(reused) => {
                    self.reply_error(code::DUPLICATE_ID, reused.to_string(), Some(id));
                    return;
                }
            }
            if ack {
                self.reply(&ServerMessage::Ack { id, offset: None });
            }
            return;
        };
        if !self.check_channel(&channel, Some(&id)) {
            return;
        }
        // Checked before the hub stores it (and outside the hub's lock): a message no
        // subscriber could receive must not be acked, nor kept for replays.
        if !self.fits(message_frame_len(&channel, &id, &payload, ts), &id) {
            return;
        }
        // Ids are unique per client: dedupe is keyed on the client too.
        let publisher = self.member();
        let published = self.hub.publish(&channel, &publisher, &id, payload, ts);
        self.held = !matches!(published, Ok(Published::New(_)));
        let offset = match published {
            Ok(published) => published.offset(),
            Err(reused) => {
                self.reply_error(code::DUPLICATE_ID, reused.to_string(), Some(id));
                return;
            }
        };
        if ack {
            self.reply(&ServerMessage::Ack {
                id,
                offset: Some(offset),
            });
        }
    }

    /// Answers `bad_frame` unless `id` (of a publish or change, which the relay stores) is at
    /// most [`MAX_ID_LEN`] bytes. The error does not name an id that long: echoing it would
    /// make the answer as large as the offending frame.
    fn check_id(&mut self, id: &str) -> bool {
        if id.len() <= MAX_ID_LEN {
            return true;
        }
        let message = format!("id is {} bytes; at most {MAX_ID_LEN} are allowed", id.len());
        self.reply_error(code::BAD_FRAME, message, None);
        false
    }

    /// Answers `too_large` (naming `id`) if the `message` frame a publish becomes, `len`
    /// bytes, is larger than `max_message_size`: the frame adds `offset` and `ts` to the
    /// publish, and no client with the same limit (the client's default is the relay's)
    /// could receive it.
    fn fits(&mut self, len: usize, id: &str) -> bool {
        let max = self.config.max_message_size;
        if len <= max {
            return true;
        }
        let message =
            format!("the message would be a {len}-byte frame; this relay sends at most {max}");
        self.reply_error(code::TOO_LARGE, message, Some(id.to_owned()));
        false
    }

    /// Answers `invalid_channel` (naming `id`) unless `channel` is a valid name.
    fn check_channel(&mut self, channel: &str, id: Option<&str>) -> bool {
        match tether_core::validate_channel(channel) {
            Ok(()) => true,
            Err(why) => {
                // The core's own wording, as a client refusing the name would say it.
                let message = format!("invalid channel name: {why}");
                self.reply_error(code::INVALID_CHANNEL, message, id.map(str::to_owned));
                false
            }
        }
    }

    fn reply(&self, msg: &ServerMessage) {
        // Over the queue limit the peer is flagged and its connection closed, so a client
        // that sends without reading cannot grow this queue without bound.
        self.peer.offer(Outbound::Frame(frame(msg)));
    }

    fn reply_error(&self, code: &str, message: String, id: Option<String>) {
        self.reply(&ServerMessage::Error {
            code: code.to_owned(),
            message,
            id,
        });
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let channels = self.channels.iter().map(String::as_str);
        match &self.instance {
            Some(instance) => {
                self.hub
                    .end_instance_connection(instance, self.peer.id(), channels, self.leaving)
            }
            None if self.leaving => self.hub.leave(self.peer.id(), channels),
            None => self.hub.disconnect(self.peer.id(), channels),
        }
        self.hub
            .docs
            .disconnect(self.peer.id(), self.documents.iter().map(String::as_str));
    }
}

/// Whether `text` is a heartbeat frame (`ping` or `pong`), which the rate limit lets through
/// free. A ping is answered with what it asks for: refusing it costs the same reply, and a
/// client whose heartbeat counts only pongs would otherwise find its own healthy connection
/// dead while it publishes in a burst. A pong asks for nothing, but it names the relay's
/// ping (`s<n>`): refused, it would cost an error frame naming an id the client matches to
/// none of its messages, so every ping of a client sending at its limit ended as a stray
/// `rate_limited` error event in its app.
fn is_heartbeat(text: &str) -> bool {
    matches!(head_of(text).kind.as_deref(), Some("ping" | "pong"))
}

/// The length of the `message` frame the hub will build for this publish, at the longest
/// offset it could get, without encoding the payload twice into one frame.
fn message_frame_len(channel: &str, id: &str, payload: &Value, ts: u64) -> usize {
    let envelope = ServerMessage::Message {
        channel: Some(channel.to_owned()),
        offset: Some(u64::MAX),
        id: Some(id.to_owned()),
        payload: Value::Null,
        ts: Some(ts),
    }
    .encode();
    let mut payload_text = String::new();
    tether_core::json::write_value(&mut payload_text, payload);
    envelope.len() - "null".len() + payload_text.len()
}

/// Wall-clock time in Unix milliseconds, for `message.ts`.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::PeerQueue;
    use crate::server::RunState;
    use crate::stats::Stats;
    use tether_core::protocol::PresenceChange;
    use tokio::sync::watch;

    /// A running hub for session tests (its run-state sender dropped: it never changes).
    fn hub(config: &Arc<RelayConfig>) -> Arc<Hub> {
        let (_tx, rx) = watch::channel(RunState::Running);
        Arc::new(Hub::new(
            config.clone(),
            "e1".into(),
            Arc::new(Stats::default()),
            rx,
        ))
    }

    fn session(config: RelayConfig, access: Access) -> (Session, PeerQueue) {
        let config = Arc::new(config);
        let hub = hub(&config);
        let (peer, queue) = Peer::new(7, 100, 0);
        (
            Session::new(peer, hub, config, access, Instant::now()),
            queue,
        )
    }

    fn error_code(msg: &ServerMessage) -> Option<(&str, Option<&str>)> {
        match msg {
            ServerMessage::Error { code, id, .. } => Some((code.as_str(), id.as_deref())),
            _ => None,
        }
    }

    #[tokio::test]
    async fn bad_input_is_answered_with_the_right_code() {
        let (mut s, mut q) = session(RelayConfig::default(), Access::Granted);
        let now = Instant::now();
        let inputs = [
            ("not json", ("bad_frame", None)),
            (
                r#"{"type":"teleport","id":"t1"}"#,
                ("bad_frame", Some("t1")),
            ),
            (r#"{"type":"publish"}"#, ("bad_frame", None)),
            (
                r#"{"v":2,"type":"ping","id":"p"}"#,
                ("unsupported_version", Some("p")),
            ),
            (
                r#"{"type":"publish","id":"x","channel":"","payload":1}"#,
                ("invalid_channel", Some("x")),
            ),
            (
                r#"{"type":"subscribe","channel":"a\u0007b"}"#,
                ("invalid_channel", None),
            ),
            (r#"{"type":"doc_close"}"#, ("bad_frame", None)),
            (
                r#"{"type":"doc_close","channel":""}"#,
                ("invalid_channel", None),
            ),
        ];
        for (input, expected) in inputs {
            assert_eq!(s.on_text(input, now), Flow::Continue);
            let got = q.drain_messages();
            assert_eq!(got.len(), 1, "{input}: {got:?}");
            assert_eq!(error_code(&got[0]), Some(expected), "{input}");
        }
        assert_eq!(s.on_binary(now), Flow::Continue);
        assert_eq!(
            error_code(&q.drain_messages()[0]),
            Some(("bad_frame", None))
        );
    }

    #[tokio::test]
    async fn a_token_in_hello_is_required_when_the_handshake_had_none() {
        let config = RelayConfig {
            token: Some("t".into()),
            ..RelayConfig::default()
        };
        let now = Instant::now();
        let (mut s, _q) = session(config.clone(), Access::HelloMustProve);
        assert!(matches!(
            s.on_text(r#"{"type":"ping","id":"1"}"#, now),
            Flow::Close { code: 4001, .. }
        ));
        let (mut s, _q) = session(config.clone(), Access::HelloMustProve);
        assert!(matches!(
            s.on_text(r#"{"type":"hello","client_id":"c","token":"x"}"#, now),
            Flow::Close { code: 4001, .. }
        ));
        let (mut s, mut q) = session(config, Access::HelloMustProve);
        assert_eq!(
            s.on_text(r#"{"type":"hello","client_id":"c","token":"t"}"#, now),
            Flow::Continue
        );
        assert!(!s.awaiting_token());
        s.on_text(r#"{"type":"ping","id":"1"}"#, now);
        assert_eq!(
            q.drain_messages(),
            vec![ServerMessage::Pong {
                id: Some("1".into())
            }]
        );
    }

    #[tokio::test]
    async fn a_client_without_hello_is_an_anonymous_member() {
        let (mut s, mut q) = session(RelayConfig::default(), Access::Granted);
        s.on_text(r#"{"type":"subscribe","channel":"c"}"#, Instant::now());
        let got = q.drain_messages();
        assert!(matches!(
            &got[1],
            ServerMessage::Presence { change: PresenceChange::Snapshot(m), .. } if m == &["anonymous-7"]
        ));
        s.on_text(r#"{"type":"hello","client_id":"late"}"#, Instant::now());
        assert_eq!(
            error_code(&q.drain_messages()[0]),
            Some(("bad_frame", None))
        );
    }

    #[tokio::test]
    async fn a_client_id_is_held_to_the_clients_own_rule() {
        let now = Instant::now();
        // 200 bytes: fits a channel name, not a client id (the client's builder refuses it).
        let long = "x".repeat(200);
        for id in [long.as_str(), "", "a\\u0007b"] {
            let (mut s, mut q) = session(RelayConfig::default(), Access::Granted);
            s.on_text(&format!(r#"{{"type":"hello","client_id":"{id}"}}"#), now);
            assert_eq!(
                error_code(&q.drain_messages()[0]),
                Some(("bad_frame", None)),
                "{id}"
            );
            assert!(tether_core::Config::builder("ws://h/")
                .client_id(id.replace("\\u0007", "\u{7}"))
                .build()
                .is_err());
        }
        let (mut s, mut q) = session(RelayConfig::default(), Access::Granted);
        s.on_text(r#"{"type":"hello","client_id":"alice"}"#, now);
        assert!(q.drain_messages().is_empty());
    }

    #[tokio::test]
    async fn a_resent_channel_less_publish_is_acked_and_not_echoed_again() {
        let now = Instant::now();
        let (mut s, mut q) = session(RelayConfig::default(), Access::Granted);
        s.on_text(r#"{"type":"hello","client_id":"alice"}"#, now);
        let send = |id: &str, payload: &str| {
            format!(r#"{{"type":"publish","id":"{id}","payload":{payload},"ack":true}}"#)
        };
        s.on_text(&send("s1", "1"), now);
        let got = q.drain_messages();
        assert!(
            matches!(got.as_slice(), [ServerMessage::Message { id: Some(e), .. }, ServerMessage::Ack { id: a, offset: None }] if e == "s1" && a == "s1"),
            "{got:?}"
        );
        // The same send again (a resend after a reconnect): acked, not echoed twice.
        s.on_text(&send("s1", "1"), now);
        assert_eq!(
            q.drain_messages(),
            vec![ServerMessage::Ack {
                id: "s1".into(),
                offset: None
            }]
        );
        // The same id with another payload is not a resend.
        s.on_text(&send("s1", "2"), now);
        assert_eq!(
            error_code(&q.drain_messages()[0]),
            Some(("duplicate_id", Some("s1")))
        );
    }

    /// A rate limit of `burst` tokens that never refill, and a dedupe window of `dedupe`.
    fn never_refilling(burst: u32, dedupe: usize) -> RelayConfig {
        RelayConfig {
            rate_limit: Some(crate::config::RateLimit {
                per_second: 0,
                burst,
            }),
            dedupe_capacity: dedupe,
            ..RelayConfig::default()
        }
    }

    /// An acknowledged publish `id` to channel `c`.
    fn publish_to_c(id: &str) -> String {
        format!(r#"{{"type":"publish","id":"{id}","channel":"c","payload":1,"ack":true}}"#)
    }

    #[tokio::test]
    async fn resends_of_held_publishes_take_no_token_even_over_the_limit() {
        let config = never_refilling(3, 4);
        let now = Instant::now();
        let (mut s, mut q) = session(config, Access::Granted);
        let send = |id: &str| format!(r#"{{"type":"publish","id":"{id}","payload":1,"ack":true}}"#);
        s.on_text(r#"{"type":"hello","client_id":"alice"}"#, now);
        s.on_text(&publish_to_c("p1"), now);
        s.on_text(&send("s1"), now);
        q.drain_messages();
        // The bucket is empty (it never refills): new messages are refused ...
        s.on_text(&publish_to_c("p2"), now);
        assert_eq!(
            error_code(&q.drain_messages()[0]),
            Some(("rate_limited", Some("p2")))
        );
        // ... resends are acknowledged, channel and channel-less alike, free up to the
        // number of publishes the relay remembers (4 here) ...
        for _ in 0..2 {
            s.on_text(&publish_to_c("p1"), now);
            s.on_text(&send("s1"), now);
            assert!(matches!(
                q.drain_messages().as_slice(),
                [ServerMessage::Ack { id: a, offset: Some(1) }, ServerMessage::Ack { id: b, offset: None }]
                    if a == "p1" && b == "s1"
            ));
        }
        // ... then charged like anything else.
        s.on_text(&publish_to_c("p1"), now);
        assert_eq!(
            error_code(&q.drain_messages()[0]),
            Some(("rate_limited", Some("p1")))
        );
    }

    /// A `doc_change` of `id` to document `d`: one increment.
    fn change_to_d(id: &str) -> String {
        format!(
            r#"{{"type":"doc_change","id":"{id}","channel":"d","base":0,"ops":[{{"op":"increment","key":"n","by":1}}]}}"#
        )
    }

    // Changes the relay applied and whose acks were lost with their connection come again on
    // the client's next one, after its hello, resubscribes and doc_syncs. Refused there as
    // `rate_limited`, the client took that for the verdict on a change every other client
    // has: it reported it rejected (having taken it as applied from its doc_sync's replay,
    // as if another client had sent it under its name). They are what held publishes are:
    // answered without storing or sending anything, so they are handled as those are.
    #[tokio::test]
    async fn resends_of_applied_document_changes_take_no_token_even_over_the_limit() {
        let config = Arc::new(never_refilling(3, 4));
        let hub = hub(&config);
        let now = Instant::now();
        let connection = |id| {
            let (peer, queue) = Peer::new(id, 100, 0);
            let session = Session::new(peer, hub.clone(), config.clone(), Access::Granted, now);
            (session, queue)
        };
        let (mut first, _lost) = connection(1);
        first.on_text(r#"{"type":"hello","client_id":"alice"}"#, now);
        first.on_text(&change_to_d("c1"), now);
        first.on_text(&change_to_d("c2"), now);

        let (mut s, mut q) = connection(2);
        s.on_text(r#"{"type":"hello","client_id":"alice"}"#, now);
        // Within the limit, a resend leaves its token...
        s.on_text(&change_to_d("c1"), now);
        s.on_text(r#"{"type":"doc_sync","channel":"d"}"#, now);
        s.on_text(r#"{"type":"doc_sync","channel":"other"}"#, now);
        // ... and over it, it is acknowledged all the same, and applied only once.
        s.on_text(&change_to_d("c2"), now);
        s.on_text(&change_to_d("c3"), now);
        let got = q.drain_messages();
        let answers: Vec<_> = got
            .iter()
            .filter_map(|m| match m {
                ServerMessage::Ack { id, offset } => Some((id.as_str(), *offset)),
                other => error_code(other).map(|(code, id)| (code, id.map(|_| 0))),
            })
            .collect();
        assert_eq!(
            answers,
            [("c1", Some(1)), ("c2", Some(2)), ("rate_limited", Some(0))],
            "{got:?}"
        );
        let docs = &hub.docs;
        let snapshot = docs.snapshot_of("d");
        assert_eq!(snapshot, Some((2, serde_json::json!({"n": 2}))));
    }

    #[tokio::test]
    async fn a_ping_over_the_limit_is_still_answered_with_a_pong() {
        // A client whose heartbeat counts only pongs (`any_frame_is_liveness: false`) would
        // otherwise declare its own healthy connection dead while it publishes in a burst.
        let config = never_refilling(1, 4);
        let now = Instant::now();
        let (mut s, mut q) = session(config, Access::Granted);
        s.on_text(r#"{"type":"hello","client_id":"alice"}"#, now);
        q.drain_messages();
        s.on_text(&publish_to_c("p1"), now);
        assert_eq!(
            error_code(&q.drain_messages()[0]),
            Some(("rate_limited", Some("p1"))),
            "the bucket is empty"
        );
        for _ in 0..3 {
            s.on_text(r#"{"type":"ping","id":"7"}"#, now);
            assert_eq!(
                q.drain_messages(),
                vec![ServerMessage::Pong {
                    id: Some("7".into())
                }]
            );
        }
        // The pings took nothing: the bucket is as empty as before.
        s.on_text(&publish_to_c("p2"), now);
        assert_eq!(
            error_code(&q.drain_messages()[0]),
            Some(("rate_limited", Some("p2")))
        );
    }

    #[tokio::test]
    async fn a_resend_within_the_limit_leaves_its_token() {
        let config = never_refilling(3, RelayConfig::default().dedupe_capacity);
        let now = Instant::now();
        let (mut s, mut q) = session(config, Access::Granted);
        s.on_text(r#"{"type":"hello","client_id":"alice"}"#, now);
        s.on_text(&publish_to_c("p1"), now);
        for _ in 0..5 {
            s.on_text(&publish_to_c("p1"), now);
        }
        s.on_text(&publish_to_c("p2"), now);
        let acks = q
            .drain_messages()
            .into_iter()
            .filter(|m| matches!(m, ServerMessage::Ack { .. }))
            .count();
        assert_eq!(acks, 7, "hello, p1 and p2 took the three tokens");
    }

    #[test]
    fn the_message_frame_length_is_computed_exactly() {
        let payload =
            serde_json::json!({"text": "h\u{e9}\"llo\u{7}", "n": [1e5, -0.5, 7], "x": null});
        let real = ServerMessage::Message {
            channel: Some("room".into()),
            offset: Some(u64::MAX),
            id: Some("p1".into()),
            payload: payload.clone(),
            ts: Some(1_700_000_000_000),
        }
        .encode();
        assert_eq!(
            message_frame_len("room", "p1", &payload, 1_700_000_000_000),
            real.len()
        );
    }

    #[tokio::test]
    async fn publish_and_change_ids_over_the_limit_are_refused_without_being_echoed() {
        let now = Instant::now();
        let (mut s, mut q) = session(RelayConfig::default(), Access::Granted);
        let long = "i".repeat(MAX_ID_LEN + 1);
        for frame in [
            format!(r#"{{"type":"publish","id":"{long}","channel":"c","payload":1,"ack":true}}"#),
            format!(r#"{{"type":"publish","id":"{long}","payload":1,"ack":true}}"#),
            format!(r#"{{"type":"doc_change","id":"{long}","channel":"d","base":0,"ops":[]}}"#),
        ] {
            s.on_text(&frame, now);
            let got = q.drain_messages();
            assert_eq!(got.len(), 1, "{got:?}");
            assert_eq!(error_code(&got[0]), Some(("bad_frame", None)));
        }
        // The engine's ids are far shorter than the limit.
        let engine_like = format!("{:012x}-{}", u64::MAX >> 16, u64::MAX);
        assert!(engine_like.len() <= MAX_ID_LEN);
        let exact = "i".repeat(MAX_ID_LEN);
        s.on_text(
            &format!(r#"{{"type":"publish","id":"{exact}","channel":"c","payload":1,"ack":true}}"#),
            now,
        );
        assert!(matches!(
            q.drain_messages().as_slice(),
            [ServerMessage::Ack { id, offset: Some(1) }] if *id == exact
        ));
    }

    // A frame whose head names a held publish is let through over the rate limit; if its
    // full decode then fails (here `ack` is not a boolean) it has still used one of the
    // connection's free resends, so the rate limit is not bypassed without bound.
    #[tokio::test]
    async fn a_held_head_with_an_undecodable_body_is_charged_to_the_free_resends() {
        let config = never_refilling(2, 4);
        let now = Instant::now();
        let (mut s, mut q) = session(config, Access::Granted);
        s.on_text(r#"{"type":"hello","client_id":"alice"}"#, now);
        s.on_text(&publish_to_c("p1"), now);
        q.drain_messages();
        let bad = r#"{"type":"publish","id":"p1","channel":"c","payload":1,"ack":"yes"}"#;
        for _ in 0..50 {
            s.on_text(bad, now);
        }
        let handled = q
            .drain_messages()
            .iter()
            .filter(|m| error_code(m).map(|(c, _)| c) != Some("rate_limited"))
            .count();
        assert!(
            handled <= 4,
            "{handled} frames handled over the limit; at most dedupe_capacity (4) may be"
        );
    }

    fn two_sessions() -> ((Session, Peer), (Session, Peer)) {
        let config = Arc::new(RelayConfig::default());
        let hub = hub(&config);
        let (older, _) = Peer::new(1, 100, 0);
        let (newer, _) = Peer::new(2, 100, 0);
        let now = Instant::now();
        let a = Session::new(
            older.clone(),
            hub.clone(),
            config.clone(),
            Access::Granted,
            now,
        );
        let b = Session::new(newer.clone(), hub, config, Access::Granted, now);
        ((a, older), (b, newer))
    }

    // The hello of an older connection (delayed on the path its client gave up) arriving
    // after the newer connection's hello must not end the newer connection.
    #[tokio::test]
    async fn a_late_hello_of_an_older_connection_does_not_end_the_newer_one() {
        use futures_util::FutureExt;
        let ((mut a, older), (mut b, newer)) = two_sessions();
        let now = Instant::now();
        let hello = r#"{"type":"hello","client_id":"alice","instance":"00000000000000aa"}"#;
        b.on_text(hello, now);
        a.on_text(hello, now);
        assert!(
            newer.replaced().now_or_never().is_none(),
            "the newer connection was ended by the older one's late hello"
        );
        assert!(
            older.replaced().now_or_never().is_some(),
            "the older connection, the stale one, is ended"
        );
    }

    // The usual order: the newer connection's hello ends the older one, whose subscriptions
    // are gone from the hub at once (its members in their grace period).
    #[tokio::test]
    async fn a_newer_connections_hello_ends_the_older_one_and_its_subscriptions() {
        use futures_util::FutureExt;
        let ((mut a, older), (mut b, newer)) = two_sessions();
        let now = Instant::now();
        let hello = r#"{"type":"hello","client_id":"alice","instance":"00000000000000aa"}"#;
        a.on_text(hello, now);
        a.on_text(r#"{"type":"subscribe","channel":"c"}"#, now);
        a.on_text(r#"{"type":"subscribe","channel":"d"}"#, now);
        a.on_text(r#"{"type":"unsubscribe","channel":"d"}"#, now);
        b.on_text(hello, now);
        assert!(older.replaced().now_or_never().is_some());
        assert!(newer.replaced().now_or_never().is_none());
        assert!(!a.hub.is_subscribed(older.id(), "c"));
    }
}
