//! The transports: one [`Link`] per engine `TransportId`, either a WebSocket (tokio-tungstenite)
//! or an SSE stream (reqwest, parsed by `tether_core::sse`). A link only moves bytes and
//! reports what happened as [`LinkInput`]s; it decides nothing.

pub(crate) mod connect;
pub(crate) mod proxy;
pub(crate) mod sse;
pub(crate) mod tls;
pub(crate) mod tunnel;
pub(crate) mod ws;

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use tether_core::sse::{SseError, SseItem};
use tether_core::{Frame, OpenRequest, TransportFailure, TransportId, TransportKind};

/// Something a link reports, to be fed to the engine.
#[derive(Debug)]
pub(crate) enum LinkInput {
    Opened,
    Frame(Frame),
    /// What the SSE parser took out of the body, for the engine to judge. Boxed: an
    /// `SseEvent` is 88 bytes, the other inputs at most 32, and the driver's input batch is
    /// sized in inputs (see `driver::INPUT_BATCH`).
    Sse(Box<Result<SseItem, SseError>>),
    Ping,
    Pong(Vec<u8>),
    Writable(bool),
    /// The bytes of frames the socket has taken since the link opened (`Frame::progress_len`
    /// of each: an empty frame counts as 1).
    Progress(u64),
    Closed {
        code: Option<u16>,
        reason: String,
    },
    /// Boxed: failures are rare, and an HTTP one (with a redirect's `Location`) is the
    /// largest input.
    Failed(Box<TransportFailure>),
}

/// Signs of the peer a link noted between its inputs (see [`Link::take_peer_signs`]).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct PeerSigns {
    /// Bytes arrived without making a whole input yet.
    pub(crate) arrived: bool,
    /// The socket took more of our bytes after it had pushed back.
    pub(crate) acknowledged: bool,
}

/// What every link of one client shares: TLS roots, buffer sizes and the proxy rule (the HTTP
/// client holds it too).
#[derive(Clone)]
pub(crate) struct LinkContext {
    pub(crate) ws: ws::WsOptions,
    pub(crate) http: reqwest::Client,
}

impl LinkContext {
    pub(crate) fn new(
        native: &crate::builder::NativeOptions,
        config: &tether_core::Config,
        roots: &tls::TlsRoots,
        proxy: &Arc<proxy::ProxyRule>,
    ) -> Result<Self, String> {
        Ok(LinkContext {
            ws: ws::WsOptions {
                tls: roots.rustls_config()?,
                proxy: proxy.clone(),
                read_buffer_size: native.read_buffer_size,
                write_buffer_size: native.write_buffer_size,
                max_message_bytes: config.max_message_bytes(),
            },
            http: roots.http_client(proxy, config.connect_timeout())?,
        })
    }
}

enum Kind {
    Ws(ws::WsLink),
    /// Boxed: an EventSource is much larger than a WebSocket link's handle.
    Sse(Box<sse::SseLink>),
}

/// One transport and its id.
pub(crate) struct Link {
    id: TransportId,
    kind: Kind,
    ended: bool,
}

impl Link {
    /// Starts opening the transport the engine asked for.
    pub(crate) fn open(request: OpenRequest, ctx: &LinkContext) -> Link {
        let kind = match request.kind {
            TransportKind::Sse => Kind::Sse(Box::new(sse::SseLink::open(
                &request,
                &ctx.http,
                ctx.ws.max_message_bytes,
            ))),
            _ => Kind::Ws(ws::WsLink::open(request.clone(), Arc::new(ctx.ws.clone()))),
        };
        Link {
            id: request.transport,
            kind,
            ended: false,
        }
    }

    pub(crate) fn id(&self) -> TransportId {
        self.id
    }

    /// Queues a frame (SSE is receive-only: the engine never sends on it).
    pub(crate) fn send(&mut self, frame: Frame) {
        if let Kind::Ws(ws) = &mut self.kind {
            ws.send(frame);
        }
    }

    /// Queues a WebSocket ping. What the peer showed before it does not answer it: forgotten.
    pub(crate) fn ping(&mut self, payload: Vec<u8>) {
        self.take_peer_signs();
        if let Kind::Ws(ws) = &mut self.kind {
            ws.ping(payload);
        }
    }

    /// What the peer showed since the link last reported an input from it (or since the last
    /// call, or the last ping): part of a message still coming in (`Engine::bytes_received`),
    /// or more of ours taken after the socket pushed back (`Engine::bytes_acknowledged`).
    /// Cheap (flags), so the driver can ask before every timeout.
    pub(crate) fn take_peer_signs(&mut self) -> PeerSigns {
        match &mut self.kind {
            Kind::Ws(ws) => ws.take_peer_signs(),
            Kind::Sse(sse) => PeerSigns {
                arrived: sse.take_bytes_arrived(),
                acknowledged: false,
            },
        }
    }

    /// Starts closing; the link keeps reporting until the peer confirms or it ends.
    pub(crate) fn close(&mut self, code: u16, reason: String) {
        match &mut self.kind {
            Kind::Ws(ws) => ws.close(code, reason),
            Kind::Sse(sse) => sse.close(),
        }
    }

    /// Drives writes and returns the next input, if any. After `Closed` or `Failed` the link
    /// is finished and returns `Pending` forever.
    pub(crate) fn poll_input(&mut self, cx: &mut Context<'_>) -> Poll<LinkInput> {
        if self.ended {
            // Nothing more to report; a WebSocket may still be writing out its reply to the
            // server's close (it only ever answers `Pending` now).
            if let Kind::Ws(ws) = &mut self.kind {
                let _ = ws.poll_input(cx);
            }
            return Poll::Pending;
        }
        let input = match &mut self.kind {
            Kind::Ws(ws) => ws.poll_input(cx),
            Kind::Sse(sse) => sse.poll_input(cx),
        };
        match &input {
            Poll::Ready(LinkInput::Closed { .. } | LinkInput::Failed(_)) => self.ended = true,
            // Whatever came from the peer is reported with this input: the bytes that made it
            // are a sign of life the engine sees now, not one to report again at a timeout.
            // (Not `Writable` or `Progress`: they are about our writes.)
            Poll::Ready(LinkInput::Writable(_) | LinkInput::Progress(_)) | Poll::Pending => {}
            Poll::Ready(_) => {
                self.take_peer_signs();
            }
        }
        input
    }
}

/// `url` fit for a log line: its query string, which may hold a credential
/// (`TokenPlacement::Query`, or the app's own), replaced by `?…`, and so is a user name and
/// password in its authority (`ws://user:pass@host/`).
pub(crate) fn redacted_url(url: &str) -> std::borrow::Cow<'_, str> {
    let without_query = url.split_once('?').map_or(url, |(base, _)| base);
    let authority_at = url.find("://").map_or(0, |i| i + 3);
    let authority_len = url[authority_at..]
        .find(['/', '?', '#'])
        .unwrap_or(url.len() - authority_at);
    let userinfo = url[authority_at..authority_at + authority_len].rfind('@');
    if userinfo.is_none() && without_query.len() == url.len() {
        return url.into();
    }
    let mut out = String::with_capacity(url.len());
    match userinfo {
        Some(at) => {
            out.push_str(&url[..authority_at]);
            out.push('…');
            out.push_str(&without_query[authority_at + at..]);
        }
        None => out.push_str(without_query),
    }
    if without_query.len() < url.len() {
        out.push_str("?…");
    }
    out.into()
}

/// Parses a `Retry-After` header (RFC 9110 §10.2.3): delay-seconds, or an HTTP date, which is
/// read against the system clock as a delay from now (zero once it has passed).
pub(crate) fn retry_after(headers: &http_headers::HeaderMap) -> Option<Duration> {
    let value = headers.get("retry-after")?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now())
}

/// A `Retry-After` value (see [`retry_after`]).
pub(crate) fn retry_after_value(value: &str) -> Option<Duration> {
    parse_retry_after(value, SystemTime::now())
}

/// The `Location` of a redirect response, for the error that reports it unfollowed
/// (`TransportFailure::Http::location`), as the error may show it: see [`shown_location`].
pub(crate) fn redirect_location(status: u16, headers: &http_headers::HeaderMap) -> Option<String> {
    if !(300..400).contains(&status) {
        return None;
    }
    let location = headers.get("location")?;
    Some(shown_location(&String::from_utf8_lossy(
        location.as_bytes(),
    )))
}

/// What an error, and so the app's logs, may show of a redirect's `Location`: no query or
/// fragment (a token may be there), no user name or password before the host
/// (`https://user:secret@host`), and at most 200 bytes of what is left (a server chooses its
/// length).
fn shown_location(location: &str) -> String {
    let shown = match reqwest::Url::parse(location) {
        Ok(mut url) => {
            // Each `Err` is for a URL that cannot have the part (`mailto:`): nothing to drop.
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.into()
        }
        // Relative (`/next`, `//user@host/path`): its query and fragment go, and a
        // network path's user info (up to the authority's last `@`).
        Err(_) => {
            let end = location.find(['?', '#']).unwrap_or(location.len());
            let relative = &location[..end];
            let path = relative.strip_prefix("//").unwrap_or_default();
            let authority = &path[..path.find('/').unwrap_or(path.len())];
            match authority.rfind('@') {
                Some(at) => format!("//{}", &path[at + 1..]),
                None => relative.to_owned(),
            }
        }
    };
    truncated(shown)
}

/// At most 200 bytes of `shown`, cut on a character boundary.
fn truncated(mut shown: String) -> String {
    let mut end = shown.len().min(200);
    while !shown.is_char_boundary(end) {
        end -= 1;
    }
    shown.truncate(end);
    shown
}

fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    // delay-seconds is any run of digits (RFC 9110 §10.2.3): one too large for a u64 is
    // a very long wait (the close policy caps it), not garbage to ignore, which would have
    // the client retry at its plain backoff against a server that asked for quiet.
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The `http` crate's header map, as both tungstenite and reqwest expose it.
pub(crate) mod http_headers {
    pub(crate) use tokio_tungstenite::tungstenite::http::HeaderMap;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redacted_url_keeps_everything_but_the_query_and_the_user_info() {
        assert_eq!(
            redacted_url("wss://h.example:8443/ws?token=s3cret&x=1#f"),
            "wss://h.example:8443/ws?…"
        );
        assert_eq!(redacted_url("ws://h/ws"), "ws://h/ws");
        assert_eq!(redacted_url("http://h/sse?"), "http://h/sse?…");
        assert_eq!(
            redacted_url("wss://user:pa@ss@h:1/ws?token=t"),
            "wss://…@h:1/ws?…"
        );
        assert_eq!(redacted_url("ws://u:p@h"), "ws://…@h");
        assert_eq!(
            redacted_url("ws://h/a@b"),
            "ws://h/a@b",
            "an @ in the path stays"
        );
    }

    #[test]
    fn a_redirect_location_is_shown_without_what_may_be_a_credential() {
        assert_eq!(
            shown_location("wss://example.com/ws?token=secret#x"),
            "wss://example.com/ws"
        );
        assert_eq!(shown_location("/next#frag"), "/next");
        // At most 200 bytes, and the cut never splits a character: a relative location is
        // shown as sent (`/` and 99 two-byte characters make 199; the 100th would end at 201).
        let long = format!("/{}", "é".repeat(300));
        assert_eq!(shown_location(&long), format!("/{}", "é".repeat(99)));
        // An absolute one as the URL parser writes it (non-ASCII percent-encoded).
        let long = format!("https://example.com/{}", "é".repeat(300));
        assert_eq!(shown_location(&long).len(), 200);
        assert!(shown_location(&long).starts_with("https://example.com/%C3%A9"));
        // A user name and password before the host are credentials too, in the authority
        // only: an `@` in the path stays.
        assert_eq!(
            shown_location("https://user:secret@example.com/ws?token=x"),
            "https://example.com/ws"
        );
        assert_eq!(shown_location("//user:secret@example.com"), "//example.com");
        assert_eq!(
            shown_location("//us@r:p@ss@example.com/x"),
            "//example.com/x"
        );
        assert_eq!(shown_location("/a@b"), "/a@b");
        assert_eq!(
            shown_location("https://example.com/a@b"),
            "https://example.com/a@b"
        );
    }

    #[test]
    fn retry_after_in_seconds_or_as_an_http_date() {
        // 1994-11-06 08:49:37 UTC, the example date of RFC 9110.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let parse = |v| parse_retry_after(v, now);
        assert_eq!(parse(" 120 "), Some(Duration::from_secs(120)));
        // IMF-fixdate, and the two obsolete forms a recipient must still accept.
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:50:07 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse("Sunday, 06-Nov-94 08:50:07 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse("Sun Nov  6 08:50:07 1994"),
            Some(Duration::from_secs(30))
        );
        // A date already past means now, not never.
        assert_eq!(parse("Sun, 06 Nov 1994 08:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse("soon"), None);
        assert_eq!(parse("-5"), None);
        assert_eq!(parse("+5"), None);
        // Too many seconds for a u64 is still "wait very long", not "no advice" (the close
        // policy caps it at its max_server_delay).
        assert_eq!(
            parse("99999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
    }
}
