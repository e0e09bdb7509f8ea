//! How the CLI prints events: one JSON object per line (`--json`, for programs and tests) or a
//! readable line (for people). JSON lines always carry `"event"` and `"t_ms"` (milliseconds
//! since the program started).

use crate::signals::Signal;
use serde_json::{json, Map, Value};
use std::cell::Cell;
use std::io::Write;
use std::time::{Duration, Instant};
use tether::{CloseReason, Event, Payload, State, Stats};

/// Writes events to stdout in the chosen format.
pub(crate) struct Output {
    json: bool,
    start: Instant,
    /// Why stdout could not be written, once it could not: its reader went away (`| head`,
    /// a consumer that died: broken pipe), or it fails. Nothing is written to it after that.
    stdout_lost: Cell<Option<std::io::ErrorKind>>,
}

impl Output {
    pub(crate) fn new(json: bool) -> Self {
        Output {
            json,
            start: Instant::now(),
            stdout_lost: Cell::new(None),
        }
    }

    /// Why stdout could not be written, if it could not: what is printed from then on reaches
    /// nobody, so the run stops (see `connect::run`).
    pub(crate) fn stdout_lost(&self) -> Option<std::io::ErrorKind> {
        self.stdout_lost.get()
    }

    /// Writes one line to stdout, flushed; a failure is noted (`stdout_lost`), not a panic
    /// as `println!` would make it.
    fn stdout_line(&self, line: impl std::fmt::Display) {
        if self.stdout_lost.get().is_some() {
            return;
        }
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            self.stdout_lost.set(Some(e.kind()));
        }
    }

    /// Writes one line to stderr. A failure is ignored, not a panic as `eprintln!` would make
    /// it: stderr is often the same pipe as stdout (`2>&1 | head`), gone with it, and the run
    /// must still close cleanly (the loss is found, and acted on, on stdout).
    pub(crate) fn stderr_line(&self, line: impl std::fmt::Display) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }

    fn t_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Prints one JSON line, adding `event` and `t_ms`.
    pub(crate) fn json_line(&self, event: &str, fields: Value) {
        let mut map = Map::new();
        map.insert("event".into(), json!(event));
        map.insert("t_ms".into(), json!(self.t_ms()));
        if let Value::Object(extra) = fields {
            map.extend(extra);
        }
        self.stdout_line(Value::Object(map));
    }

    /// Prints an event: JSON with `--json`; otherwise messages go to stdout as plain data and
    /// everything else to stderr as a readable line.
    pub(crate) fn event(&self, event: &Event) {
        if self.json {
            if let Some((name, fields)) = event_json(event) {
                self.json_line(name, fields);
            }
            return;
        }
        match event {
            Event::Message(m) => self.stdout_line(payload_text(&m.payload)),
            other => {
                if let Some(line) = human(other) {
                    self.stderr_line(format_args!(
                        "[{:>7.3}s] {line}",
                        self.t_ms() as f64 / 1000.0
                    ));
                }
            }
        }
    }

    /// The whole document after a change: a JSON line, or the document on one stdout line.
    pub(crate) fn document(&self, doc: &tether::Document, origin: tether::ChangeOrigin) {
        let state = Value::Object(doc.snapshot());
        if self.json {
            self.json_line(
                "document",
                json!({"channel": doc.channel(), "origin": origin.name(), "version": doc.version(), "pending": doc.pending(), "doc": state}),
            );
        } else {
            self.stdout_line(state);
        }
    }

    /// A problem found by the CLI itself (a refused send, a bad line).
    pub(crate) fn error(&self, kind: &str, message: &str) {
        if self.json {
            self.json_line("error", json!({"kind": kind, "message": message}));
        } else {
            self.stderr_line(format_args!("tether: {kind}: {message}"));
        }
    }

    /// The final line: why the client closed, with its counters, how many accepted messages
    /// were not delivered and how many stdin lines were skipped (never became a message).
    pub(crate) fn closed(
        &self,
        reason: &CloseReason,
        stats: &Stats,
        undelivered: u64,
        skipped_lines: u64,
    ) {
        let end = End {
            reason: reason.name(),
            detail: reason.to_string(),
            text: close_text(reason),
        };
        self.end(end, stats, undelivered, skipped_lines);
    }

    /// The final line when a second signal ends the process while it closes: it exits
    /// without waiting, so the connection is dropped rather than closed, and whatever was
    /// still pending is counted as not delivered. JSON: a `closed` line all the same (so a
    /// reader waiting for the last line gets one), with `reason` `interrupted`.
    pub(crate) fn exited(
        &self,
        signal: Signal,
        stats: &Stats,
        undelivered: u64,
        skipped_lines: u64,
    ) {
        let detail = format!(
            "exited at once on a second {}: the connection was dropped, not closed",
            signal.name()
        );
        let end = End {
            reason: "interrupted",
            text: detail.clone(),
            detail,
        };
        self.end(end, stats, undelivered, skipped_lines);
    }

    fn end(&self, end: End, stats: &Stats, undelivered: u64, skipped_lines: u64) {
        if self.json {
            self.json_line(
                "closed",
                json!({"reason": end.reason, "detail": end.detail, "undelivered": undelivered, "skipped_lines": skipped_lines, "stats": stats_json(stats)}),
            );
        } else {
            let mut line = end.text;
            if undelivered > 0 {
                line.push_str(&format!("; {undelivered} message(s) not delivered"));
            }
            if skipped_lines > 0 {
                line.push_str(&format!("; {skipped_lines} input line(s) skipped"));
            }
            self.stderr_line(line);
        }
    }

    /// A signal asked the client to close: it stops reading stdin and closes once the
    /// `pending` messages are delivered, within `drain_timeout` at most. Said at once, as the
    /// close may take that long, with how to stop waiting.
    pub(crate) fn interrupted(&self, signal: Signal, pending: usize, drain_timeout: Duration) {
        if self.json {
            let drain_ms = u64::try_from(drain_timeout.as_millis()).unwrap_or(u64::MAX);
            self.json_line(
                "interrupted",
                json!({"signal": signal.name(), "pending": pending, "drain_timeout_ms": drain_ms}),
            );
            return;
        }
        let waiting = if pending > 0 {
            format!(
                " once {pending} pending message(s) are delivered (at most {:.1} s)",
                drain_timeout.as_secs_f64()
            )
        } else {
            String::new()
        };
        self.stderr_line(format_args!(
            "[{:>7.3}s] {}: closing{waiting}; another signal exits at once",
            self.t_ms() as f64 / 1000.0,
            signal.name()
        ));
    }
}

/// What the final line says about how the run ended.
struct End {
    /// `reason` in JSON.
    reason: &'static str,
    /// `detail` in JSON.
    detail: String,
    /// The readable line, before the counts.
    text: String,
}

/// The JSON form of an event: its name and fields.
pub(crate) fn event_json(event: &Event) -> Option<(&'static str, Value)> {
    Some(match event {
        Event::StateChanged { from, to } => (
            "state",
            json!({"from": from.name(), "to": to.name(), "detail": state_detail(to)}),
        ),
        Event::ReconnectScheduled {
            attempt,
            delay,
            cause,
        } => (
            "reconnect_scheduled",
            json!({"attempt": attempt, "delay_ms": delay.as_millis() as u64, "cause": cause.to_string()}),
        ),
        Event::Message(m) => {
            let mut fields = json!({"data": payload_value(&m.payload)});
            if let Some(channel) = &m.channel {
                fields["channel"] = json!(channel);
            }
            if let Some(offset) = m.offset {
                fields["offset"] = json!(offset);
            }
            if let Some(name) = &m.event {
                fields["sse_event"] = json!(name);
            }
            // The position to resume from with --last-event-id once this line is handled.
            if let Some(id) = &m.last_event_id {
                fields["last_event_id"] = json!(id);
            }
            ("message", fields)
        }
        Event::Dropped { ids, reason } => (
            "dropped",
            json!({"count": ids.len(), "reason": reason.name(), "ids": ids.iter().map(|i| i.get()).collect::<Vec<_>>()}),
        ),
        Event::Acked { id, offset } => ("acked", json!({"id": id.get(), "offset": offset})),
        Event::AckTimedOut { id, status } => (
            "ack_timed_out",
            json!({"id": id.get(), "status": status.name()}),
        ),
        Event::Replied { id, payload } => ("reply", json!({"id": id.get(), "data": payload})),
        Event::RequestFailed { id, reason } => (
            "request_failed",
            json!({"id": id.get(), "reason": reason.code(), "message": reason.to_string()}),
        ),
        Event::Subscribed {
            channel,
            offset,
            recovered,
        } => (
            "subscribed",
            json!({"channel": channel, "offset": offset, "recovered": recovered}),
        ),
        Event::Unsubscribed { channel } => ("unsubscribed", json!({"channel": channel})),
        Event::Presence {
            channel,
            members,
            joined,
            left,
        } => (
            "presence",
            json!({"channel": channel, "members": members, "joined": joined, "left": left}),
        ),
        Event::Rtt { rtt } => ("rtt", json!({"ms": rtt.as_secs_f64() * 1000.0})),
        Event::Error(e) => ("error", json!({"kind": e.kind(), "message": e.to_string()})),
        Event::DocumentChanged {
            channel,
            origin,
            changes,
            ..
        } => (
            "document_changed",
            json!({
                "channel": channel,
                "origin": origin.name(),
                "changes": changes.iter().map(|c| json!({"key": c.key, "value": c.value, "overwrote_local": c.overwrote_local})).collect::<Vec<_>>(),
            }),
        ),
        Event::ChangeRejected {
            channel,
            change,
            code,
            ..
        } => (
            "change_rejected",
            json!({"channel": channel, "id": change.get(), "code": code}),
        ),
        Event::DocumentResynced {
            channel, version, ..
        } => (
            "document_resynced",
            json!({"channel": channel, "version": version}),
        ),
        _ => return None,
    })
}

fn state_detail(state: &State) -> String {
    state.to_string()
}

/// A payload as a JSON value: JSON payloads as they are, text as a string, binary as a
/// base-16 string.
pub(crate) fn payload_value(payload: &Payload) -> Value {
    match payload {
        Payload::Json(v) => v.clone(),
        Payload::Text(t) => json!(t),
        Payload::Binary(b) => json!(hex(b)),
        _ => Value::Null,
    }
}

/// A payload as one line of text: strings unquoted, other JSON compact, binary in hex.
pub(crate) fn payload_text(payload: &Payload) -> String {
    match payload {
        Payload::Json(Value::String(s)) | Payload::Text(s) => one_line(s),
        Payload::Json(v) => v.to_string(),
        Payload::Binary(b) => hex(b),
        _ => String::new(),
    }
}

/// Text as it came, or, if it holds a line break or another control character, as a JSON
/// string (quoted, escaped): a reader of stdout takes one line for one message, and a
/// message's own newline must not split it into several, nor a stray `\r` or escape
/// sequence rewrite the terminal.
fn one_line(text: &str) -> String {
    if text.chars().any(char::is_control) {
        Value::String(text.to_owned()).to_string()
    } else {
        text.to_owned()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn stats_json(s: &Stats) -> Value {
    json!({
        "attempts": s.attempts,
        "opens": s.opens,
        "reconnects": s.reconnects,
        "accepted": s.messages_accepted,
        "settled": s.messages_settled,
        "resent": s.resent,
        "frames_sent": s.frames_sent,
        "frames_received": s.frames_received,
        "bytes_sent": s.bytes_sent,
        "bytes_received": s.bytes_received,
        "dropped": s.dropped_total(),
        "dropped_overflow": s.dropped_overflow,
        "dropped_expired": s.dropped_expired,
        "dropped_closed": s.dropped_closed,
        "dropped_rejected": s.dropped_rejected,
        "duplicates_dropped": s.duplicates_dropped,
        "unexpected_dropped": s.unexpected_dropped,
        "errors": s.errors,
        "stale_inputs": s.stale_inputs,
        "last_rtt_ms": s.last_rtt.map(|d| d.as_secs_f64() * 1000.0),
    })
}

/// Why the client closed, as a line for people. The app's reasons already read "closed by
/// the app with code N" / "closed: the client stopped running"; the others get the prefix.
pub(crate) fn close_text(reason: &CloseReason) -> String {
    match reason {
        CloseReason::App { .. } => reason.to_string(),
        other => format!("closed: {other}"),
    }
}

/// A readable line for people, or nothing for events not worth a line.
fn human(event: &Event) -> Option<String> {
    Some(match event {
        // The final line (`Output::closed`) says why, right after.
        Event::StateChanged {
            to: State::Closed { .. },
            ..
        } => return None,
        // The `ReconnectScheduled` line says the same, with the wait in seconds from now
        // rather than an engine instant: one line per wait, not two.
        Event::StateChanged {
            to: State::Waiting { .. },
            ..
        } => return None,
        Event::StateChanged { to, .. } => format!("{to}"),
        Event::ReconnectScheduled {
            attempt,
            delay,
            cause,
        } => format!(
            "{cause}; reconnecting (attempt {attempt}) in {:.1} s",
            delay.as_secs_f64()
        ),
        Event::Dropped { ids, reason } => {
            format!("dropped {} message(s): {}", ids.len(), reason.name())
        }
        Event::AckTimedOut { id, status } => {
            format!("message {} not acknowledged in time: {status}", id.get())
        }
        Event::Presence {
            channel, members, ..
        } => {
            format!("presence {channel}: {}", members.join(", "))
        }
        Event::Subscribed {
            channel, recovered, ..
        } => format!(
            "subscribed to {channel}{}",
            if *recovered { " (resumed)" } else { "" }
        ),
        Event::Error(e) => format!("error: {e}"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_prints_as_one_line() {
        let text = |s: &str| payload_text(&Payload::Text(s.to_owned()));
        let json_string = |s: &str| payload_text(&Payload::Json(json!(s)));
        assert_eq!(text("hello, world"), "hello, world");
        assert_eq!(
            json_string("héllo \"you\""),
            "héllo \"you\"",
            "plain text unquoted"
        );
        assert_eq!(text("two\nlines"), r#""two\nlines""#);
        assert_eq!(json_string("a\r\nb"), r#""a\r\nb""#);
        assert_eq!(text("\u{1b}[2Jcleared"), r#""\u001b[2Jcleared""#);
        assert_eq!(
            payload_text(&Payload::Json(json!({"k": "x\ny"}))),
            r#"{"k":"x\ny"}"#
        );
    }

    #[test]
    fn a_scheduled_reconnect_reads_as_one_line_not_a_state_line_as_well() {
        let waiting = State::Waiting {
            attempt: 2,
            until: tether_core::Instant::ZERO,
        };
        let state = Event::StateChanged {
            from: State::Idle,
            to: waiting,
        };
        assert_eq!(human(&state), None);
        let scheduled = Event::ReconnectScheduled {
            attempt: 2,
            delay: std::time::Duration::from_millis(360),
            cause: tether::DisconnectCause::Failed {
                message: "connection refused".into(),
            },
        };
        assert_eq!(
            human(&scheduled).as_deref(),
            Some("transport failed: connection refused; reconnecting (attempt 2) in 0.4 s")
        );
    }

    #[test]
    fn every_close_reason_reads_as_one_close_line() {
        let cases = [
            (
                CloseReason::App { code: 1000 },
                "closed by the app with code 1000",
            ),
            (
                CloseReason::App { code: 1001 },
                "closed: the client stopped running",
            ),
            (
                CloseReason::GaveUp { attempts: 3 },
                "closed: gave up after 3 attempts",
            ),
            (
                CloseReason::Refused {
                    code: Some(4004),
                    status: None,
                    reason: "no such room".into(),
                },
                "closed: refused by the server with close code 4004: no such room",
            ),
            (
                CloseReason::Unauthorized {
                    code: None,
                    status: Some(401),
                },
                "closed: unauthorized by the server with HTTP status 401, on two attempts in a row",
            ),
        ];
        for (reason, line) in cases {
            assert_eq!(close_text(&reason), line);
        }
    }
}
