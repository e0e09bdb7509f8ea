//! A Server-Sent Events link over reqwest-eventsource, with its own retry turned off: when the
//! stream ends or fails, the engine decides what happens next (backoff, `retry:`, Retry-After,
//! close policy), and a reconnect is a new link that carries `Last-Event-ID`.

use super::{retry_after, LinkInput};
use futures_util::StreamExt;
use reqwest_eventsource::{retry::Never, Error as SseError, Event, EventSource};
use std::task::{Context, Poll};
use tether_core::{OpenRequest, SseEvent, TransportFailure};

pub(crate) struct SseLink {
    source: Option<EventSource>,
    /// A failure found while building the request, reported on the first poll.
    early_failure: Option<TransportFailure>,
}

impl SseLink {
    pub(crate) fn open(request: &OpenRequest, http: &reqwest::Client) -> Self {
        let mut builder = http.get(&request.url).header("Accept", "text/event-stream");
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(id) = &request.last_event_id {
            builder = builder.header("Last-Event-ID", id.as_str());
        }
        match EventSource::new(builder) {
            Ok(mut source) => {
                source.set_retry_policy(Box::new(Never));
                SseLink {
                    source: Some(source),
                    early_failure: None,
                }
            }
            Err(e) => SseLink {
                source: None,
                early_failure: Some(TransportFailure::Io(e.to_string())),
            },
        }
    }

    pub(crate) fn close(&mut self) {
        if let Some(source) = self.source.as_mut() {
            source.close();
        }
    }

    pub(crate) fn poll_input(&mut self, cx: &mut Context<'_>) -> Poll<LinkInput> {
        if let Some(failure) = self.early_failure.take() {
            return Poll::Ready(LinkInput::Failed(failure));
        }
        let Some(source) = self.source.as_mut() else {
            return Poll::Pending;
        };
        match source.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(Event::Open))) => Poll::Ready(LinkInput::Opened),
            Poll::Ready(Some(Ok(Event::Message(m)))) => Poll::Ready(LinkInput::Sse(SseEvent {
                id: (!m.id.is_empty()).then_some(m.id),
                event: m.event,
                data: m.data,
                retry: m.retry,
            })),
            Poll::Ready(Some(Err(e))) => {
                self.source = None;
                Poll::Ready(match e {
                    SseError::InvalidStatusCode(status, response) => {
                        LinkInput::Failed(TransportFailure::Http {
                            status: status.as_u16(),
                            retry_after: retry_after(response.headers()),
                        })
                    }
                    SseError::StreamEnded => LinkInput::Closed {
                        code: None,
                        reason: "stream ended".to_owned(),
                    },
                    other => LinkInput::Failed(TransportFailure::Io(other.to_string())),
                })
            }
            Poll::Ready(None) => {
                self.source = None;
                Poll::Ready(LinkInput::Closed {
                    code: None,
                    reason: "stream ended".to_owned(),
                })
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
