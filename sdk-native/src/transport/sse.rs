//! A Server-Sent Events link: one HTTP GET with reqwest, the body parsed as an event stream.
//!
//! We parse the stream ourselves (about sixty lines, below) instead of using
//! reqwest-eventsource: its parser (eventsource-stream) throws away a `retry:` field that
//! arrives in a block without `data:` — which is how servers usually announce it — so the
//! engine could never honour the server's reconnection time. It also had its own retry loop
//! to switch off. Here the link only reads: when the stream ends or fails, the engine decides
//! what happens next, and a reconnect is a new link carrying `Last-Event-ID`.

use super::{retry_after, LinkInput};
use futures_util::{FutureExt, Stream, StreamExt};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tether_core::{OpenRequest, SseEvent, TransportFailure};

type Requesting = Pin<Box<dyn Future<Output = Result<reqwest::Response, reqwest::Error>> + Send>>;
type Body = Pin<Box<dyn Stream<Item = Result<bytes::Bytes, reqwest::Error>> + Send>>;

enum State {
    Requesting(Requesting),
    Streaming(Body),
    Done,
}

pub(crate) struct SseLink {
    state: State,
    parser: Parser,
}

impl SseLink {
    /// `max_message_bytes` bounds what the parser buffers for one event (see [`Parser`]).
    pub(crate) fn open(
        request: &OpenRequest,
        http: &reqwest::Client,
        max_message_bytes: usize,
    ) -> Self {
        let mut builder = http
            .get(&request.url)
            .header("Accept", "text/event-stream")
            .header("Cache-Control", "no-cache");
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(id) = &request.last_event_id {
            builder = builder.header("Last-Event-ID", id.as_str());
        }
        SseLink {
            state: State::Requesting(Box::pin(builder.send())),
            parser: Parser::new(max_message_bytes),
        }
    }

    /// SSE has no close handshake: dropping the response is the close, reported at once.
    pub(crate) fn close(&mut self) {
        self.state = State::Done;
        self.parser.ready.clear();
        self.parser.ready.push_back(LinkInput::Closed {
            code: None,
            reason: "closed".to_owned(),
        });
    }

    pub(crate) fn poll_input(&mut self, cx: &mut Context<'_>) -> Poll<LinkInput> {
        if let Some(input) = self.parser.ready.pop_front() {
            return Poll::Ready(input);
        }
        match &mut self.state {
            State::Requesting(fut) => match fut.poll_unpin(cx) {
                Poll::Ready(Ok(response)) => Poll::Ready(self.on_response(response)),
                Poll::Ready(Err(e)) => {
                    self.state = State::Done;
                    Poll::Ready(LinkInput::Failed(TransportFailure::Io(e.to_string())))
                }
                Poll::Pending => Poll::Pending,
            },
            State::Streaming(body) => loop {
                match body.poll_next_unpin(cx) {
                    Poll::Ready(Some(Ok(chunk))) => {
                        self.parser.feed(&chunk);
                        if let Some(input) = self.parser.ready.pop_front() {
                            return Poll::Ready(input);
                        }
                    }
                    Poll::Ready(Some(Err(e))) => {
                        self.state = State::Done;
                        return Poll::Ready(LinkInput::Failed(TransportFailure::Io(e.to_string())));
                    }
                    Poll::Ready(None) => {
                        self.state = State::Done;
                        return Poll::Ready(LinkInput::Closed {
                            code: None,
                            reason: "stream ended".to_owned(),
                        });
                    }
                    Poll::Pending => return Poll::Pending,
                }
            },
            State::Done => Poll::Pending,
        }
    }

    fn on_response(&mut self, response: reqwest::Response) -> LinkInput {
        let status = response.status().as_u16();
        let is_event_stream = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if status != 200 {
            self.state = State::Done;
            return LinkInput::Failed(TransportFailure::Http {
                status,
                retry_after: retry_after(response.headers()),
            });
        }
        if !is_event_stream {
            self.state = State::Done;
            return LinkInput::Failed(TransportFailure::Io(
                "response is not text/event-stream".to_owned(),
            ));
        }
        self.state = State::Streaming(Box::pin(response.bytes_stream()));
        LinkInput::Opened
    }
}

/// The event-stream format (WHATWG HTML §9.2.6), incrementally.
///
/// Memory is bounded: a line or an event's data longer than the message limit is cut just
/// past it, so the engine (which owns the limit) still sees an oversized event and reports
/// `FrameTooLarge`, while an endless line or `data:` block cannot exhaust memory.
#[derive(Default)]
struct Parser {
    /// Bytes kept per line and per event's data: the message limit plus one.
    cap: usize,
    line: Vec<u8>,
    /// The previous byte was a CR, so a following LF belongs to the same line end.
    after_cr: bool,
    started: bool,
    data: String,
    event: String,
    id: Option<String>,
    /// The current block had an `id:` line: dispatched even without data, because the spec
    /// updates the last event id before it drops an empty event.
    id_in_block: bool,
    ready: VecDeque<LinkInput>,
}

impl Parser {
    fn new(max_message_bytes: usize) -> Self {
        Parser {
            // Room for the longest field name and its colon, so a full data line still overflows.
            cap: max_message_bytes.saturating_add(16),
            ..Parser::default()
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        for &b in chunk {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.process(&line);
                }
                _ => {
                    self.after_cr = false;
                    if self.line.len() < self.cap {
                        self.line.push(b);
                    }
                }
            }
        }
    }

    fn process(&mut self, raw: &[u8]) {
        let mut line = String::from_utf8_lossy(raw).into_owned();
        if !self.started {
            self.started = true;
            if let Some(rest) = line.strip_prefix('\u{feff}') {
                line = rest.to_owned();
            }
        }
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            // A comment: the server's keepalive, which proves the stream alive.
            self.ready.push_back(LinkInput::Ping);
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_str(), ""),
        };
        match field {
            "data" if self.data.len() < self.cap => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "data" => {} // already past the limit: the engine refuses the event anyway
            "event" => self.event = value.to_owned(),
            "id" if !value.contains('\0') => {
                self.id = Some(value.to_owned());
                self.id_in_block = true;
            }
            "retry" => {
                if let Ok(ms) = value.parse::<u64>() {
                    // Takes effect at once, whether or not an event is dispatched.
                    self.ready.push_back(LinkInput::Sse(SseEvent {
                        retry: Some(Duration::from_millis(ms)),
                        ..SseEvent::default()
                    }));
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        let event = std::mem::take(&mut self.event);
        let had_id = std::mem::take(&mut self.id_in_block);
        if self.data.is_empty() {
            if had_id {
                // Only the resume position changed: the engine records it (and ignores the
                // empty data).
                self.ready.push_back(LinkInput::Sse(SseEvent {
                    id: self.id.clone(),
                    ..SseEvent::default()
                }));
            }
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the last newline
        self.ready.push_back(LinkInput::Sse(SseEvent {
            id: self.id.clone(),
            event: if event.is_empty() {
                "message".to_owned()
            } else {
                event
            },
            data,
            retry: None,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&str]) -> Vec<SseEvent> {
        let mut p = Parser::new(1 << 20);
        for c in chunks {
            p.feed(c.as_bytes());
        }
        p.ready
            .into_iter()
            .filter_map(|i| match i {
                LinkInput::Sse(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn retry_alone_in_its_block_is_kept() {
        let events = parse(&["retry: 3000\n\n", "id: 7\ndata: hi\n\n"]);
        assert_eq!(events[0].retry, Some(Duration::from_secs(3)));
        assert_eq!(events[1].id.as_deref(), Some("7"));
        assert_eq!(events[1].data, "hi");
        assert_eq!(events[1].event, "message");
    }

    #[test]
    fn lines_split_across_chunks_and_crlf() {
        let events = parse(&[
            "da",
            "ta: a\r",
            "\ndata:b\r\n",
            "\r\n",
            "event: x\ndata: c\n\n",
        ]);
        assert_eq!(events[0].data, "a\nb");
        assert_eq!(events[1].event, "x");
        // The id persists across events until changed.
        let events = parse(&["id: 1\ndata: a\n\ndata: b\n\n"]);
        assert_eq!(events[1].id.as_deref(), Some("1"));
    }

    #[test]
    fn comments_are_liveness_and_empty_data_is_not_dispatched() {
        let mut p = Parser::new(1 << 20);
        p.feed(b":keepalive\n\nevent: nothing\n\n");
        assert!(matches!(p.ready.pop_front(), Some(LinkInput::Ping)));
        assert!(p.ready.is_empty());
    }

    #[test]
    fn an_id_alone_still_moves_the_resume_position() {
        let events = parse(&[
            "id: 1
data: a

",
            "id: 5

",
        ]);
        assert_eq!(events.len(), 2);
        assert_eq!(
            (events[1].id.as_deref(), events[1].data.as_str()),
            (Some("5"), "")
        );
    }

    #[test]
    fn an_endless_line_or_data_block_is_cut_just_past_the_limit() {
        let mut p = Parser::new(10);
        let long = "x".repeat(10_000);
        p.feed(format!("data: {long}").as_bytes()); // no newline yet: one long line
        assert!(p.line.len() <= 26, "{}", p.line.len());
        p.feed(
            b"
",
        );
        for _ in 0..1_000 {
            p.feed(
                format!(
                    "data: {long}
"
                )
                .as_bytes(),
            );
        }
        assert!(p.data.len() <= 60, "{}", p.data.len());
        p.feed(
            b"
",
        );
        let Some(LinkInput::Sse(event)) = p.ready.pop_front() else {
            panic!("the oversized event is still dispatched");
        };
        // Longer than the limit: the engine reports FrameTooLarge and drops it.
        assert!(
            event.data.len() > 10 && event.data.len() <= 60,
            "{}",
            event.data.len()
        );
    }
}
