//! The Server-Sent Events stream format (WHATWG HTML §9.2.6), sans-IO: a driver feeds the
//! response body's bytes as they arrive ([`SseParser::feed`]) and takes out what the stream
//! said ([`SseParser::poll`]), which it hands to the engine.
//!
//! Our own parser rather than a crate's: eventsource-stream (under reqwest-eventsource) throws
//! away a `retry:` that arrives in a block without `data:` — how servers usually announce it —
//! so the engine could never honour the server's reconnection time.
//!
//! Where it departs from the spec, on purpose:
//! - **Memory is bounded.** An event's data longer than the message limit is not buffered: it
//!   is counted and skipped, and reported as [`SseError::EventTooLarge`] with its exact size
//!   (the engine reports it as `FrameTooLarge` and keeps the stream). Any other field longer
//!   than that is ignored with [`SseError::LineTooLong`]. So an endless line or `data:` block
//!   cannot exhaust memory.
//! - **An `id:` that could not be sent back is ignored.** The spec ignores an id holding NUL;
//!   we also ignore one holding any other character a `Last-Event-ID` header cannot carry
//!   (control characters other than tab), as it would make every later request fail locally,
//!   and one longer than [`MAX_EVENT_ID_LEN`] (reported as [`SseError::LineTooLong`]), which
//!   would be sent back as a header servers refuse (431) on every reconnect.
//! - **`retry:`** is reported on its own at once ([`SseItem::Event`] with only `retry` set),
//!   whether or not an event follows.

use crate::errors::SseEvent;
use std::collections::VecDeque;
use std::time::Duration;

/// Bytes a `data:` line carries besides its value: the field name, colon and space.
const DATA_PREFIX: usize = "data: ".len();

/// The longest event id adopted as the resume position, in bytes. It goes back to the server
/// as a `Last-Event-ID` header (or a URL parameter), where common limits for a whole request
/// head are 8 KiB; ids in practice are offsets, UUIDs or short cursors.
pub const MAX_EVENT_ID_LEN: usize = 1024;

/// Whether `id` can be adopted as the last event id: short enough, and free of characters a
/// `Last-Event-ID` header cannot carry. The parser and the engine (for drivers whose platform
/// parses the stream, like a browser's `EventSource`) both check with this.
pub(crate) fn is_resumable_id(id: &str) -> bool {
    id.len() <= MAX_EVENT_ID_LEN && crate::config::is_header_value(id)
}

/// Something the stream said, for the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// For `Engine::sse_event_received`: an event (data, type and the current last event id);
    /// or, with empty data, only a new last event id (a block with `id:` and no data); or only
    /// the server's `retry:` time.
    Event(SseEvent),
    /// One or more comment lines (`:` …): servers send them as keep-alives, so they are a sign
    /// of life (`Engine::ping_received`).
    Comment,
}

/// Something in the stream exceeded the parser's limit. Both are recoverable: the parser
/// skipped the offending part and goes on with the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SseError {
    /// An event's data was larger than the limit: the event was skipped without being
    /// buffered (for `Engine::frame_too_large`). Its `id:`, if any, still took effect.
    #[error("SSE event of {size} bytes exceeds the limit of {max}")]
    EventTooLarge {
        /// The size of the event's data (its lines joined with newlines).
        size: usize,
        /// The limit.
        max: usize,
    },
    /// An `id:`, `event:` or `retry:` line was longer than the limit (for `id:`, the value
    /// longer than [`MAX_EVENT_ID_LEN`]); it was ignored.
    #[error("SSE {field} line of {size} bytes exceeds the limit of {max}")]
    LineTooLong {
        /// The field name.
        field: &'static str,
        /// The line's length in bytes, against the line limit (the message limit plus a
        /// field name); for an `id` line within that but with a value over
        /// `MAX_EVENT_ID_LEN`, the value's length, against that.
        size: usize,
        /// The limit `size` exceeds.
        max: usize,
    },
}

/// An incremental event-stream parser. Feed it bytes in chunks of any size (lines and UTF-8
/// sequences may be split anywhere), then [`poll`](SseParser::poll) until `None`.
///
/// ```
/// use tether_core::sse::{SseItem, SseParser};
/// let mut parser = SseParser::new(1024);
/// parser.feed(b"retry: 3000\n\nid: 7\nda");
/// parser.feed(b"ta: hello\r\n\r\n");
/// let mut got = Vec::new();
/// while let Some(item) = parser.poll() {
///     got.push(item?);
/// }
/// let [SseItem::Event(retry), SseItem::Event(event)] = &got[..] else { panic!("{got:?}") };
/// assert_eq!(retry.retry, Some(std::time::Duration::from_secs(3)));
/// assert_eq!((event.id.as_deref(), event.data.as_str()), (Some("7"), "hello"));
/// # Ok::<(), tether_core::sse::SseError>(())
/// ```
#[derive(Debug)]
pub struct SseParser {
    /// The most data one event may carry: the engine's message limit.
    max: usize,
    /// The current line, kept up to `max + DATA_PREFIX` bytes (a full `data:` line fits).
    line: Vec<u8>,
    /// The current line's full length, including bytes not kept.
    line_len: usize,
    /// The previous byte was a CR, so a following LF belongs to the same line end.
    after_cr: bool,
    /// A first line was seen (a byte order mark is stripped from the first line only).
    started: bool,
    /// The event's data lines, each followed by a newline, while within the limit.
    data: String,
    /// What `data` would hold: its size even once the event is past the limit.
    data_len: usize,
    /// The event's type (`event:`).
    event: String,
    /// The last event id buffer: it persists across events until changed.
    id: Option<String>,
    /// The current block had an `id:` line: dispatched even without data, because the spec
    /// updates the last event id before it drops an empty event.
    id_in_block: bool,
    ready: VecDeque<Result<SseItem, SseError>>,
}

impl SseParser {
    /// A parser for a new stream; `max_message_bytes` is the most data one event may carry
    /// (the engine's `Config::max_message_bytes`).
    pub fn new(max_message_bytes: usize) -> Self {
        SseParser {
            max: max_message_bytes,
            line: Vec::new(),
            line_len: 0,
            after_cr: false,
            started: false,
            data: String::new(),
            data_len: 0,
            event: String::new(),
            id: None,
            id_in_block: false,
            ready: VecDeque::new(),
        }
    }

    /// Parses the next bytes of the stream. Complete lines take effect at once; what they
    /// yield waits for [`poll`](SseParser::poll).
    pub fn feed(&mut self, bytes: &[u8]) {
        let cap = self.line_cap();
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    let len = std::mem::take(&mut self.line_len);
                    self.process(&line, len);
                    // Reuse the allocation: lines are bounded by `cap`.
                    self.line = line;
                    self.line.clear();
                }
                _ => {
                    self.after_cr = false;
                    self.line_len = self.line_len.saturating_add(1);
                    if self.line.len() < cap {
                        self.line.push(b);
                    }
                }
            }
        }
    }

    /// The next thing the stream said, in order; `None` until more bytes are fed.
    pub fn poll(&mut self) -> Option<Result<SseItem, SseError>> {
        self.ready.pop_front()
    }

    /// The most bytes of one line kept.
    fn line_cap(&self) -> usize {
        self.max.saturating_add(DATA_PREFIX)
    }

    fn process(&mut self, raw: &[u8], len: usize) {
        let mut raw = raw;
        let mut len = len;
        if !self.started {
            self.started = true;
            if let Some(rest) = raw.strip_prefix("\u{feff}".as_bytes()) {
                raw = rest;
                len -= 3;
            }
        }
        if raw.is_empty() {
            return self.dispatch();
        }
        if raw[0] == b':' {
            // A comment: the server's keepalive. Consecutive ones say no more than one.
            if self.ready.back() != Some(&Ok(SseItem::Comment)) {
                self.ready.push_back(Ok(SseItem::Comment));
            }
            return;
        }
        let line = String::from_utf8_lossy(raw);
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (&*line, ""),
        };
        let truncated = len > raw.len();
        if truncated {
            let field = match field {
                "data" => {
                    // Only the value's length matters now: count it, keep nothing.
                    let value_len = len - (line.len() - value.len());
                    return self.add_data_len(value_len);
                }
                "id" => "id",
                "event" => "event",
                "retry" => "retry",
                _ => return, // unknown fields are ignored anyway
            };
            self.ready.push_back(Err(SseError::LineTooLong {
                field,
                size: len,
                max: self.line_cap(),
            }));
            return;
        }
        match field {
            "data" => {
                self.add_data_len(value.len());
                if self.data_len <= self.max.saturating_add(1) {
                    self.data.push_str(value);
                    self.data.push('\n');
                }
            }
            "event" => value.clone_into(&mut self.event),
            "id" if is_resumable_id(value) => {
                self.id = Some(value.to_owned());
                self.id_in_block = true;
            }
            "id" if value.len() > MAX_EVENT_ID_LEN => {
                // The value's size, in the unit of the limit (not the line's, with `id:`).
                self.ready.push_back(Err(SseError::LineTooLong {
                    field: "id",
                    size: value.len(),
                    max: MAX_EVENT_ID_LEN,
                }));
            }
            "id" => {} // NUL (the spec) or another character a header cannot carry (ours)
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                let ms = value.parse().unwrap_or(u64::MAX);
                // Takes effect at once, whether or not an event is dispatched.
                self.ready.push_back(Ok(SseItem::Event(SseEvent {
                    retry: Some(Duration::from_millis(ms)),
                    ..SseEvent::default()
                })));
            }
            _ => {}
        }
    }

    /// Counts a data line of `value_len` bytes (and its newline); past the limit, the event's
    /// buffered data is dropped and only its size is kept.
    fn add_data_len(&mut self, value_len: usize) {
        self.data_len = self.data_len.saturating_add(value_len).saturating_add(1);
        if self.data_len > self.max.saturating_add(1) && !self.data.is_empty() {
            self.data = String::new();
        }
    }

    fn dispatch(&mut self) {
        let event = std::mem::take(&mut self.event);
        let had_id = std::mem::take(&mut self.id_in_block);
        let data_len = std::mem::take(&mut self.data_len);
        let mut data = std::mem::take(&mut self.data);
        if had_id && (data_len == 0 || data.is_empty()) {
            // Only the resume position changed (or the event is skipped): the engine records
            // it, and ignores the empty data.
            self.ready.push_back(Ok(SseItem::Event(SseEvent {
                id: self.id.clone(),
                ..SseEvent::default()
            })));
        }
        if data_len == 0 {
            return;
        }
        let size = data_len - 1; // without the last newline
        if size > self.max {
            self.ready.push_back(Err(SseError::EventTooLarge {
                size,
                max: self.max,
            }));
            return;
        }
        data.pop(); // the last newline
        self.ready.push_back(Ok(SseItem::Event(SseEvent {
            id: self.id.clone(),
            event: if event.is_empty() {
                "message".to_owned()
            } else {
                event
            },
            data,
            retry: None,
        })));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser_fed(max: usize, chunks: &[&[u8]]) -> SseParser {
        let mut p = SseParser::new(max);
        for c in chunks {
            p.feed(c);
        }
        p
    }

    fn items(p: &mut SseParser) -> Vec<Result<SseItem, SseError>> {
        std::iter::from_fn(|| p.poll()).collect()
    }

    /// The events of a stream fed in `chunks`, ignoring comments; panics on an error.
    fn parse(chunks: &[&str]) -> Vec<SseEvent> {
        let chunks: Vec<&[u8]> = chunks.iter().map(|c| c.as_bytes()).collect();
        let mut p = parser_fed(1 << 20, &chunks);
        items(&mut p)
            .into_iter()
            .filter_map(|i| match i.unwrap() {
                SseItem::Event(e) => Some(e),
                SseItem::Comment => None,
            })
            .collect()
    }

    fn message(id: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            id: id.map(str::to_owned),
            event: "message".to_owned(),
            data: data.to_owned(),
            retry: None,
        }
    }

    #[test]
    fn retry_alone_in_its_block_is_kept() {
        let events = parse(&["retry: 3000\n\n", "id: 7\ndata: hi\n\n"]);
        assert_eq!(events[0].retry, Some(Duration::from_secs(3)));
        assert_eq!(events[1], message(Some("7"), "hi"));
    }

    #[test]
    fn retry_must_be_only_digits() {
        let events = parse(&["retry: +5\nretry: 5s\nretry:\nretry: -1\n\n"]);
        assert_eq!(events, []);
        let events = parse(&["retry: 99999999999999999999999\n"]);
        assert_eq!(events[0].retry, Some(Duration::from_millis(u64::MAX)));
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
    fn cr_lf_and_crlf_line_ends_mix_and_split_anywhere() {
        let stream = "id: 1\rdata: a\r\rid: 2\r\ndata: b\r\n\r\nid: 3\ndata: c\n\ndata: d\r\n\n";
        let want = vec![
            message(Some("1"), "a"),
            message(Some("2"), "b"),
            message(Some("3"), "c"),
            message(Some("3"), "d"),
        ];
        assert_eq!(parse(&[stream]), want);
        // Fed one byte at a time, and cut at every point: the same events.
        let bytes: Vec<String> = stream.chars().map(String::from).collect();
        let bytes: Vec<&str> = bytes.iter().map(String::as_str).collect();
        assert_eq!(parse(&bytes), want);
        for cut in 1..stream.len() {
            assert_eq!(
                parse(&[&stream[..cut], &stream[cut..]]),
                want,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_cr_at_the_end_of_a_chunk_and_an_lf_at_the_start_of_the_next_are_one_line_end() {
        // Otherwise the LF would end an empty line and dispatch the event early.
        let events = parse(&["data: a\r", "\ndata: b\n\n"]);
        assert_eq!(events, [message(None, "a\nb")]);
    }

    #[test]
    fn utf8_split_across_chunks_survives() {
        let stream = "data: é ☃ 😀\n\n".as_bytes();
        for cut in 1..stream.len() {
            let mut p = parser_fed(1 << 20, &[&stream[..cut], &stream[cut..]]);
            let got = items(&mut p);
            assert_eq!(got, [Ok(SseItem::Event(message(None, "é ☃ 😀")))], "{cut}");
        }
    }

    #[test]
    fn a_leading_byte_order_mark_is_stripped_once_even_when_split() {
        let bom = "\u{feff}".as_bytes();
        let mut p = parser_fed(1 << 20, &[&bom[..1], &bom[1..], b"data: a\n\n"]);
        assert_eq!(items(&mut p), [Ok(SseItem::Event(message(None, "a")))]);
        // A second one is part of the field name: an unknown field, ignored.
        let mut p = SseParser::new(1 << 20);
        p.feed(bom);
        p.feed(bom);
        p.feed(b"data: a\n\ndata: b\n\n");
        assert_eq!(items(&mut p), [Ok(SseItem::Event(message(None, "b")))]);
    }

    #[test]
    fn comments_are_liveness_and_empty_data_is_not_dispatched() {
        let mut p = parser_fed(1 << 20, &[b":keepalive\n\nevent: nothing\n\n"]);
        assert_eq!(items(&mut p), [Ok(SseItem::Comment)]);
        // A burst of comments says no more than one.
        let mut p = parser_fed(1 << 20, &[b":a\n:b\n:c\n\n:d\n"]);
        assert_eq!(items(&mut p), [Ok(SseItem::Comment)]);
    }

    #[test]
    fn a_field_without_a_colon_has_an_empty_value() {
        let events = parse(&["data\ndata\n\n", "data: x\ndata\n\n"]);
        assert_eq!(events, [message(None, "\n"), message(None, "x\n")]);
    }

    #[test]
    fn an_id_alone_still_moves_the_resume_position() {
        let events = parse(&["id: 1\ndata: a\n\n", "id: 5\n\n", "id\n\n"]);
        assert_eq!(
            events,
            [
                message(Some("1"), "a"),
                SseEvent {
                    id: Some("5".into()),
                    ..SseEvent::default()
                },
                // An empty id resets the last event id.
                SseEvent {
                    id: Some(String::new()),
                    ..SseEvent::default()
                },
            ]
        );
    }

    #[test]
    fn an_id_with_nul_is_ignored_as_the_spec_says() {
        let events = parse(&["id: 1\ndata: a\n\n", "id: 2\0x\ndata: b\n\n"]);
        assert_eq!(events, [message(Some("1"), "a"), message(Some("1"), "b")]);
    }

    #[test]
    fn an_id_that_could_not_be_sent_back_as_a_header_is_ignored() {
        // Last-Event-ID would carry it: a control character would make every later request
        // fail before it leaves the client. Tabs and non-ASCII text are valid header bytes.
        for bad in ["2\u{1}", "\u{7f}", "a\u{1b}[31m", "x\u{c}y"] {
            let stream = format!("id: 1\ndata: a\n\nid: {bad}\ndata: b\n\nid: {bad}\n\n");
            let events = parse(&[&stream]);
            assert_eq!(
                events,
                [message(Some("1"), "a"), message(Some("1"), "b")],
                "{bad:?}"
            );
        }
        let events = parse(&["id: a\tb é\ndata: a\n\n"]);
        assert_eq!(events, [message(Some("a\tb é"), "a")]);
    }

    #[test]
    fn an_id_too_long_to_send_back_is_ignored_and_reported() {
        let at_limit = "i".repeat(MAX_EVENT_ID_LEN);
        let over = "o".repeat(MAX_EVENT_ID_LEN + 1);
        let stream = format!("id: {at_limit}\ndata: a\n\nid: {over}\ndata: b\n\n");
        let mut p = parser_fed(1 << 20, &[stream.as_bytes()]);
        assert_eq!(
            items(&mut p),
            [
                Ok(SseItem::Event(message(Some(&at_limit), "a"))),
                Err(SseError::LineTooLong {
                    field: "id",
                    size: over.len(), // the value's, as the limit is

                    max: MAX_EVENT_ID_LEN,
                }),
                // The event is still delivered; the resume position stays where it was.
                Ok(SseItem::Event(message(Some(&at_limit), "b"))),
            ]
        );
    }

    #[test]
    fn an_endless_data_line_is_bounded_and_skipped_with_its_exact_size() {
        let mut p = SseParser::new(10);
        let long = "x".repeat(10_000);
        p.feed(b"id: 9\n");
        p.feed(format!("data: {long}").as_bytes()); // no newline yet: one long line
        assert!(p.line.len() <= 16, "{}", p.line.len());
        p.feed(b"\ndata: yz\n");
        assert!(p.data.is_empty(), "nothing of it is kept");
        p.feed(b"\ndata: next\n\n");
        assert_eq!(
            items(&mut p),
            [
                // The skipped event's id still takes effect, as the spec updates it first.
                Ok(SseItem::Event(SseEvent {
                    id: Some("9".into()),
                    ..SseEvent::default()
                })),
                Err(SseError::EventTooLarge {
                    size: 10_000 + 1 + 2,
                    max: 10
                }),
                Ok(SseItem::Event(message(Some("9"), "next"))),
            ]
        );
    }

    #[test]
    fn many_short_data_lines_past_the_limit_are_skipped_too() {
        let mut p = SseParser::new(10);
        for _ in 0..1_000 {
            p.feed(b"data: 12345\n");
            assert!(p.data.len() <= 12, "{}", p.data.len());
        }
        p.feed(b"\n");
        assert_eq!(
            items(&mut p),
            [Err(SseError::EventTooLarge {
                size: 6 * 1_000 - 1,
                max: 10
            })]
        );
        // Exactly at the limit is fine.
        p.feed(b"data: 12345\ndata: 6789\n\n");
        assert_eq!(
            items(&mut p),
            [Ok(SseItem::Event(message(None, "12345\n6789")))]
        );
    }

    #[test]
    fn an_overlong_id_or_event_line_is_ignored_with_an_error() {
        let mut p = SseParser::new(4);
        p.feed(b"id: 1\nid: 123456789\nevent: abcdefghij\ndata: a\n\n");
        assert_eq!(
            items(&mut p),
            [
                Err(SseError::LineTooLong {
                    field: "id",
                    size: 13,
                    max: 10
                }),
                Err(SseError::LineTooLong {
                    field: "event",
                    size: 17,
                    max: 10
                }),
                Ok(SseItem::Event(message(Some("1"), "a"))),
            ]
        );
        // An overlong comment or unknown field is just ignored, like any.
        p.feed(b":0123456789abc\nfoo: 0123456789\ndata: b\n\n");
        assert_eq!(
            items(&mut p),
            [
                Ok(SseItem::Comment),
                Ok(SseItem::Event(message(Some("1"), "b")))
            ]
        );
    }
}
