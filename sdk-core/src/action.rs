//! What the engine asks its driver to do: [`Action`]s, drained with `Engine::poll_action`.
//!
//! Actions are the engine's only way to touch the outside world. Every action that concerns a
//! transport names it by [`TransportId`], and every transport input the driver reports carries
//! the same id back, so late news from a transport the engine already abandoned is recognised
//! and ignored instead of confusing the current connection.

use crate::config::TransportKind;
use std::fmt;

/// Identifies one transport (one connection attempt). Ids are never reused within an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransportId(pub(crate) u64);

impl TransportId {
    /// The raw number, for logs, or for a driver that hands the id to another language.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The id whose [`get`](Self::get) is `raw`: for a driver that handed an id to another
    /// language and has it back (the browser driver's token requests). An id this engine
    /// never gave, or no longer uses, is ignored as stale like any other.
    pub fn from_raw(raw: u64) -> Self {
        TransportId(raw)
    }
}

impl fmt::Display for TransportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

/// One WebSocket message (or SSE event data) going out or coming in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl Frame {
    /// Payload size in bytes.
    pub fn len(&self) -> usize {
        match self {
            Frame::Text(t) => t.len(),
            Frame::Binary(b) => b.len(),
        }
    }

    /// What this frame counts for in
    /// [`Engine::transport_progress`](crate::Engine::transport_progress): its payload size,
    /// and 1 for an empty frame. A socket that takes an empty frame takes no payload byte, so
    /// counted as 0 its taking could never be reported: the message would stay in the outbox
    /// after it went out, and be reported dropped when the connection closed. A driver that
    /// reports progress counts every data frame it is handed by this.
    pub fn progress_len(&self) -> u64 {
        self.len().max(1) as u64
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<String> for Frame {
    fn from(text: String) -> Self {
        Frame::Text(text)
    }
}

impl From<&str> for Frame {
    fn from(text: &str) -> Self {
        Frame::Text(text.to_owned())
    }
}

impl From<Vec<u8>> for Frame {
    fn from(bytes: Vec<u8>) -> Self {
        Frame::Binary(bytes)
    }
}

/// Everything a driver needs to open a transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRequest {
    /// The id to report this transport's inputs with.
    pub transport: TransportId,
    /// WebSocket or SSE.
    pub kind: TransportKind,
    /// The URL, with the token query parameter when that placement is configured.
    pub url: String,
    /// Handshake headers (configured headers plus the token header, if any).
    pub headers: Vec<(String, String)>,
    /// WebSocket subprotocols to offer.
    pub subprotocols: Vec<String>,
    /// For SSE: the `Last-Event-ID` to resume from.
    pub last_event_id: Option<String>,
    /// Which attempt this is since the last stable connection (1-based).
    pub attempt: u32,
}

impl OpenRequest {
    /// The URL with `last_event_id` in its query as `param` (before any `#fragment`), for a
    /// driver that cannot send the `Last-Event-ID` header: a browser's `EventSource`.
    pub fn url_with_last_event_id(&self, param: &str) -> String {
        let mut url = self.url.clone();
        if let Some(id) = &self.last_event_id {
            append_query(&mut url, param, id);
        }
        url
    }
}

/// Appends `param=value` to `url`'s query, percent-encoding both, before any `#fragment`.
pub(crate) fn append_query(url: &mut String, param: &str, value: &str) {
    let (base, fragment) = match url.find('#') {
        Some(i) => (url[..i].to_owned(), url[i..].to_owned()),
        None => (url.clone(), String::new()),
    };
    let sep = if base.contains('?') { '&' } else { '?' };
    let mut out = base;
    out.push(sep);
    out.push_str(&percent_encode(param));
    out.push('=');
    out.push_str(&percent_encode(value));
    out.push_str(&fragment);
    *url = out;
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// An instruction for the driver. Perform each one in the order drained.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Ask the app's token provider for a token and report it with `Engine::token_ready`
    /// (or `Engine::token_failed`). `refresh` is true when the previous token was refused,
    /// so a cached token must not be returned.
    FetchToken {
        /// The transport the token is for; echo it back. The engine ignores the answer to
        /// any request but the current one, so a driver need not cancel a slow provider.
        transport: TransportId,
        /// The attempt's number, for the provider (it starts at 1 again after `close`).
        attempt: u32,
        /// Whether the server refused the last token.
        refresh: bool,
    },
    /// Open a new transport. Any previous transport has already been told to close, or
    /// released (one still opening, or still closing when this comes).
    /// Boxed: it is by far the largest action and the rarest, and every `Send` would
    /// otherwise be as large as it in the action queue.
    Open(Box<OpenRequest>),
    /// Write one frame on the transport.
    Send {
        /// The transport to write on.
        transport: TransportId,
        /// The frame.
        frame: Frame,
    },
    /// Send a WebSocket ping control frame with this payload.
    Ping {
        /// The transport to ping on.
        transport: TransportId,
        /// Payload to expect back in the pong (report it with `Engine::pong_received`).
        payload: Vec<u8>,
    },
    /// Close the transport (a close frame where the transport has one), then drop it.
    /// No further input for this transport is needed; any that arrives is ignored.
    Close {
        /// The transport to close.
        transport: TransportId,
        /// WebSocket close code.
        code: u16,
        /// Close reason (at most 123 bytes, already truncated).
        reason: String,
    },
    /// Drop the transport now, without waiting for anything more from it (its close
    /// handshake included). Follows a `Close` whose handshake did not end within the close
    /// timeout (a wedged peer or a dead link would otherwise keep the socket open for as long
    /// as the client lives), or comes just before the `Open` of the transport that replaces
    /// it; or, with no `Close` before it, ends a transport still opening that the engine gave
    /// up on (its connect timeout, a close): it has no close handshake to wait for. Nothing is
    /// reported back; input that still arrives from it is ignored.
    Release {
        /// The transport to drop.
        transport: TransportId,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_token_is_encoded_and_placed_before_fragment() {
        let mut url = "ws://h/p?x=1#frag".to_owned();
        append_query(&mut url, "token", "a b&c");
        assert_eq!(url, "ws://h/p?x=1&token=a%20b%26c#frag");
        let mut url = "ws://h/p".to_owned();
        append_query(&mut url, "t", "v");
        assert_eq!(url, "ws://h/p?t=v");
    }

    #[test]
    fn a_last_event_id_goes_into_the_query_before_the_fragment() {
        let open = |last: Option<&str>| OpenRequest {
            transport: TransportId(1),
            kind: TransportKind::Sse,
            url: "http://h/sse/room?x=1#top".to_owned(),
            headers: Vec::new(),
            subprotocols: Vec::new(),
            last_event_id: last.map(str::to_owned),
            attempt: 1,
        };
        assert_eq!(
            open(Some("e1-7")).url_with_last_event_id("lastEventId"),
            "http://h/sse/room?x=1&lastEventId=e1-7#top"
        );
        assert_eq!(
            open(None).url_with_last_event_id("lastEventId"),
            "http://h/sse/room?x=1#top"
        );
    }
}
