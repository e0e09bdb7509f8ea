//! What each decoded server message (Tether mode) does to the engine.

use super::Engine;
use crate::channels::Admission;
use crate::event::{DropReason, EngineError, Event, Payload, RequestFailure};
use crate::protocol::{ClientMessage, ServerMessage};
use crate::requests::Requests;
use crate::time::Instant;

impl Engine {
    pub(super) fn handle_server_message(&mut self, now: Instant, msg: ServerMessage) {
        match msg {
            ServerMessage::Message {
                channel,
                offset,
                payload,
                ..
            } => {
                // An event stream's channel is in its URL, not among the subscriptions.
                if let Some(name) = channel.as_deref().filter(|_| self.can_write_frames()) {
                    match self.channels.admit(name, offset) {
                        Admission::Deliver => {}
                        Admission::Duplicate => {
                            self.stats.duplicates_dropped += 1;
                            return;
                        }
                        Admission::Unsubscribed => return,
                        Admission::Gap {
                            last,
                            offset,
                            resubscribe,
                        } => {
                            if resubscribe {
                                self.resubscribe_after_gap(name, last, offset);
                            }
                            return;
                        }
                        unexpected @ (Admission::NotSubscribed | Admission::Early) => {
                            // Reported once per channel and connection, not per message: a
                            // server that keeps streaming the channel is no error flood.
                            self.stats.unexpected_dropped += 1;
                            if self.channels.first_unexpected(name) {
                                let why = if unexpected == Admission::Early {
                                    " before the answer to its subscribe"
                                } else {
                                    ", which the app is not subscribed to"
                                };
                                self.emit_error(EngineError::UnexpectedFrame(format!(
                                    "message on channel {}{why}",
                                    crate::errors::Quoted(name)
                                )));
                            }
                            return;
                        }
                    }
                }
                self.deliver(channel, offset, Payload::Json(payload));
            }
            ServerMessage::Ack { id, offset } => {
                // Unknown ids are normal under at-least-once: a resent message is acked twice.
                let acked = self.outbox.acknowledge(&id);
                // One for a message still queued answers nothing we wrote on this connection:
                // the outbox keeps it to send, so its document must not take it as applied.
                #[cfg(feature = "documents")]
                if acked.is_some() || self.outbox.id_for_wire(&id).is_none() {
                    self.on_doc_ack(&id, offset);
                }
                if let Some(message) = acked {
                    self.stats.messages_settled += 1;
                    self.events.push_back(Event::Acked {
                        id: message,
                        offset,
                    });
                    self.check_drain(now);
                }
            }
            ServerMessage::Reply { id, payload } => {
                let Some(request) = Requests::parse_wire_id(&id) else {
                    self.emit_error(EngineError::UnexpectedFrame(format!(
                        "reply with unknown id {}",
                        crate::errors::Quoted(&id)
                    )));
                    return;
                };
                if self.requests.complete(request) {
                    self.outbox.remove_request(request);
                    self.events.push_back(Event::Replied {
                        id: request,
                        payload,
                    });
                    self.check_drain(now);
                }
            }
            ServerMessage::Subscribed {
                channel,
                offset,
                epoch,
                recovered,
            } => {
                // An event stream subscribes by its URL: its server says where the stream
                // starts and whether its resume was complete (the data of the stream's
                // `position` event), and the stream's ids are its resume position.
                // A WebSocket's is the answer to a subscribe, or ignored (see on_subscribed).
                let recovered = if self.can_write_frames() {
                    self.channels
                        .on_subscribed(&channel, offset, epoch, recovered)
                } else {
                    Some(recovered)
                };
                if let Some(recovered) = recovered {
                    self.events.push_back(Event::Subscribed {
                        channel,
                        offset,
                        recovered,
                    });
                }
            }
            ServerMessage::Unsubscribed { channel } => {
                if self.channels.on_unsubscribed(&channel) {
                    self.events.push_back(Event::Unsubscribed { channel });
                }
            }
            ServerMessage::Presence { channel, change } => {
                if let Some(event) = self.channels.apply_presence(&channel, change) {
                    self.events.push_back(event);
                }
            }
            ServerMessage::Error { code, message, id } => {
                self.handle_server_error(now, code, message, id)
            }
            ServerMessage::Ping { id } => self.answer_ping(id),
            ServerMessage::Pong { id } => {
                // An id that is not one of our ping numbers names no ping (`u64::MAX` is
                // above any sent): it answers nothing, as a number never sent does.
                let seq = id.map(|s| s.parse().unwrap_or(u64::MAX));
                self.record_pong(now, seq);
            }
            #[cfg(feature = "documents")]
            ServerMessage::DocSnapshot {
                channel,
                version,
                epoch,
                state,
                applied,
                applied_by,
            } => {
                let ours = self.own_changes(applied, applied_by);
                self.on_doc_snapshot(channel, version, epoch, state, ours)
            }
            #[cfg(feature = "documents")]
            ServerMessage::DocChange {
                channel,
                version,
                id,
                client_id,
                ops,
            } => {
                // Ours by its author and an id this engine made (with an older server that
                // names no author, every change passes the first test).
                let ours =
                    self.is_own_change(client_id.as_deref()) && id.starts_with(&self.wire_prefix);
                self.on_doc_change(channel, version, id, ours, ops)
            }
        }
    }

    /// A message on `channel` skipped the offsets after `last` (to `offset`): the app is told
    /// the server broke the protocol, and the channel is subscribed again from `last`, so the
    /// replay brings what is missing and what was held back, in order. Its `subscribed`
    /// reaches the app as usual: `recovered: false` if the server no longer has them all.
    fn resubscribe_after_gap(&mut self, channel: &str, last: u64, offset: u64) {
        self.emit_error(EngineError::UnexpectedFrame(format!(
            "message on channel {} skips from offset {last} to {offset}",
            crate::errors::Quoted(channel)
        )));
        if let Some(msg) = self.channels.subscribe_message(channel) {
            self.send_control(&msg);
        }
    }

    /// Answers the server's application ping with its pong; while the transport pushes back,
    /// only the latest one, once it takes frames again (as RFC 6455 §5.5.3 allows for ping
    /// frames). Each pong went to the driver at once otherwise, to wait behind what the
    /// socket had not taken: a server that keeps pinging and never reads had the client
    /// queue a pong per ping, without bound.
    fn answer_ping(&mut self, id: Option<String>) {
        if self.conn.writable {
            self.send_control(&ClientMessage::Pong { id });
        } else {
            self.conn.owed_pong = Some(id);
        }
    }

    /// A server `error`: if it names one of our messages or requests, that one fails with the
    /// server's code; otherwise it is surfaced as an error event.
    fn handle_server_error(
        &mut self,
        now: Instant,
        code: String,
        message: String,
        id: Option<String>,
    ) {
        if let Some(wire) = id.as_deref() {
            if let Some(request) = Requests::parse_wire_id(wire) {
                if self.requests.complete(request) {
                    self.outbox.remove_request(request);
                    self.events.push_back(Event::RequestFailed {
                        id: request,
                        reason: RequestFailure::Rejected { code, message },
                    });
                    self.check_drain(now);
                    return;
                }
                // One this engine made that was cancelled or timed out: the app gave up on
                // it, and its late refusal is no more news than a late reply. (One never made
                // is the server's mistake, reported below.)
                if (1..=self.next_request).contains(&request.0) {
                    return;
                }
            }
            if let Some(msg_id) = self.outbox.id_for_wire(wire) {
                // Refused: not applied, so no ack will follow.
                #[cfg(feature = "documents")]
                self.take_doc_change(wire);
                self.outbox.remove_message(msg_id);
                self.report_removed(
                    vec![(msg_id, crate::outbox::Awaiting::Nothing)],
                    DropReason::Rejected { code: code.clone() },
                );
                self.emit_error(EngineError::Server { code, message });
                self.check_drain(now);
                return;
            }
        }
        self.emit_error(EngineError::Server { code, message });
    }
}
