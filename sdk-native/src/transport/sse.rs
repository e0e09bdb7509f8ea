//! A Server-Sent Events link: one HTTP GET with reqwest, the body fed to the engine crate's
//! event-stream parser (`tether_core::sse`), whose output goes to the engine as it is.
//!
//! Not reqwest-eventsource: its parser drops a `retry:` sent in a block of its own, and it
//! has its own retry loop. Here the link only reads: when the stream ends or fails, the engine
//! decides what happens next, and a reconnect is a new link carrying `Last-Event-ID`.

use super::{redirect_location, retry_after, LinkInput};
use futures_util::{FutureExt, Stream, StreamExt};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tether_core::sse::SseParser;
use tether_core::{OpenRequest, TransportFailure};

type Requesting = Pin<Box<dyn Future<Output = Result<reqwest::Response, TransportFailure>> + Send>>;
type Body = Pin<Box<dyn Stream<Item = Result<bytes::Bytes, reqwest::Error>> + Send>>;

enum State {
    Requesting(Requesting),
    Streaming(Body),
    Done,
}

pub(crate) struct SseLink {
    state: State,
    parser: SseParser,
    /// `close` was called: report it once.
    closed: bool,
    /// Body bytes arrived since the last [`SseLink::take_bytes_arrived`].
    bytes_arrived: bool,
}

impl SseLink {
    /// `max_message_bytes` bounds what the parser buffers for one event.
    pub(crate) fn open(
        request: &OpenRequest,
        http: &reqwest::Client,
        max_message_bytes: usize,
    ) -> Self {
        // The body goes to the parser as it comes: a request without `Accept-Encoding`
        // accepts any content coding (RFC 9110 §12.5.3), so a server or a CDN could compress
        // it, and the parser would read the compressed bytes as text.
        let mut headers = vec![("Accept-Encoding".to_owned(), "identity".to_owned())];
        // The app's own `Accept` or `Cache-Control` replaces the link's: sent beside it, the
        // request would carry two, and which one a server reads is its own choice.
        for (name, value) in [
            ("Accept", "text/event-stream"),
            ("Cache-Control", "no-cache"),
        ] {
            if !request
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                headers.push((name.to_owned(), value.to_owned()));
            }
        }
        headers.extend(request.headers.iter().cloned());
        if let Some(id) = &request.last_event_id {
            headers.push(("Last-Event-ID".to_owned(), id.clone()));
        }
        let requesting = get_following(http.clone(), request.url.clone(), headers);
        SseLink {
            state: State::Requesting(Box::pin(requesting)),
            parser: SseParser::new(max_message_bytes),
            closed: false,
            bytes_arrived: false,
        }
    }

    /// Whether body bytes arrived since the last call.
    pub(crate) fn take_bytes_arrived(&mut self) -> bool {
        std::mem::take(&mut self.bytes_arrived)
    }

    /// SSE has no close handshake: dropping the response is the close, reported at once.
    pub(crate) fn close(&mut self) {
        self.state = State::Done;
        self.closed = true;
        // Events already parsed are not delivered after the close (nothing is read any more,
        // so the parser's limit no longer matters).
        self.parser = SseParser::new(0);
    }

    pub(crate) fn poll_input(&mut self, cx: &mut Context<'_>) -> Poll<LinkInput> {
        if std::mem::take(&mut self.closed) {
            return Poll::Ready(LinkInput::Closed {
                code: None,
                reason: "closed".to_owned(),
            });
        }
        if let Some(input) = Self::parsed(&mut self.parser) {
            return Poll::Ready(input);
        }
        match &mut self.state {
            State::Requesting(fut) => match fut.poll_unpin(cx) {
                Poll::Ready(Ok(response)) => Poll::Ready(self.on_response(response)),
                Poll::Ready(Err(failure)) => {
                    self.state = State::Done;
                    Poll::Ready(LinkInput::Failed(Box::new(failure)))
                }
                Poll::Pending => Poll::Pending,
            },
            State::Streaming(body) => loop {
                match body.poll_next_unpin(cx) {
                    Poll::Ready(Some(Ok(chunk))) => {
                        self.bytes_arrived |= !chunk.is_empty();
                        self.parser.feed(&chunk);
                        if let Some(input) = Self::parsed(&mut self.parser) {
                            return Poll::Ready(input);
                        }
                    }
                    Poll::Ready(Some(Err(e))) => {
                        self.state = State::Done;
                        return Poll::Ready(LinkInput::Failed(Box::new(io_failure(e))));
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

    /// The next parsed item (or what the parser skipped), for the engine to judge.
    fn parsed(parser: &mut SseParser) -> Option<LinkInput> {
        parser.poll().map(|item| LinkInput::Sse(Box::new(item)))
    }

    fn on_response(&mut self, response: reqwest::Response) -> LinkInput {
        let status = response.status().as_u16();
        let is_event_stream = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_event_stream_type);
        // A `200` that is not an event stream (a web page at a wrong URL, a captive portal) is
        // an HTTP answer that is not the protocol asked for, like a WebSocket handshake answered
        // with `200`: reported as what it is, not as an opaque I/O error. The default close
        // policy retries it with the backoff and reports it on every attempt (an error naming
        // the status, a cause of `Http { status: 200 }`); only `with_status(200..=299,
        // Terminal)` makes it stop, with `Closed { Refused }`.
        if status != 200 || !is_event_stream {
            self.state = State::Done;
            // A redirect here is one `get_following` would not follow (to another server).
            return LinkInput::Failed(Box::new(TransportFailure::Http {
                status,
                retry_after: retry_after(response.headers()),
                location: redirect_location(status, response.headers()),
            }));
        }
        if let Some(coding) = content_coding(response.headers()) {
            // Sent all the same: unreadable, and read as text it was an open stream that
            // delivered nothing (or garbage that happened to look like a field), silently.
            // Reported as the failure it is; the engine retries it like any I/O failure.
            self.state = State::Done;
            return LinkInput::Failed(Box::new(TransportFailure::Io(format!(
                "the event stream came with Content-Encoding {coding:?}, which was not asked \
                 for (Accept-Encoding: identity) and cannot be read"
            ))));
        }
        self.state = State::Streaming(Box::pin(response.bytes_stream()));
        LinkInput::Opened
    }
}

/// The most redirects followed for one request (reqwest's own default).
const MAX_REDIRECTS: usize = 10;

/// The GET of an event stream, following redirects only within the origin (scheme, host and
/// port) of the URL that answered with one, or from `http` to `https` on the same host (a
/// server moving its clients to TLS), with every header of the request, the token's included.
///
/// The request carries what the client has for its own server: the token, in a header
/// the app may have named (`TokenPlacement::Header`), the app's headers. reqwest, following
/// by itself, strips only the headers it knows to be credentials (`Authorization`,
/// `Cookie`…) on a redirect to another host or port, so any other origin a server named got
/// the rest (and a `Referer` with the URL's query, `TokenPlacement::Query`), while the
/// `https` port of the same server lost the default `Authorization` header: it answered 401,
/// and after one refresh the client gave up. A redirect elsewhere is not followed: the link
/// reports it as the HTTP answer it is (a 3xx), and the engine's close policy decides (by
/// default: retried with the backoff, reported on every attempt). The client itself follows
/// none (`TlsRoots::http_client`).
async fn get_following(
    http: reqwest::Client,
    url: String,
    headers: Vec<(String, String)>,
) -> Result<reqwest::Response, TransportFailure> {
    let get = |url: reqwest::Url| {
        let mut builder = http.get(url);
        for (name, value) in &headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder.send()
    };
    // An unparsable URL fails as reqwest reports it.
    let url = match reqwest::Url::parse(&url) {
        Ok(url) => url,
        Err(_) => {
            return http.get(url).send().await.map_err(io_failure);
        }
    };
    let mut followed = 0;
    let mut response = get(url).await.map_err(io_failure)?;
    loop {
        let redirect = matches!(response.status().as_u16(), 301 | 302 | 303 | 307 | 308);
        let next = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|location| location.to_str().ok())
            .and_then(|location| response.url().join(location).ok());
        let Some(next) = next.filter(|_| redirect) else {
            return Ok(response);
        };
        // Judged against the URL that answered with it, each hop as the first: a chain can
        // move to TLS once and never back (`http://h` → `https://h` → `http://h`).
        if !may_follow(response.url(), &next) {
            return Ok(response);
        }
        followed += 1;
        if followed > MAX_REDIRECTS {
            return Err(TransportFailure::Io("too many redirects".to_owned()));
        }
        drop(response);
        response = get(next).await.map_err(io_failure)?;
    }
}

/// Whether a redirect from `from` to `to` stays with the same server: the same origin, or the
/// same host moving from `http` to `https`.
fn may_follow(from: &reqwest::Url, to: &reqwest::Url) -> bool {
    from.origin() == to.origin()
        || (from.scheme() == "http" && to.scheme() == "https" && from.host() == to.host())
}

/// A reqwest error as the engine's transport failure: its text and its causes' (reqwest's own
/// text says only "error sending request"), without the URL reqwest would append, whose query
/// may hold the token (`TokenPlacement::Query`). The text reaches `EngineError::Transport`,
/// `DisconnectCause::Failed` and the logs.
fn io_failure(e: reqwest::Error) -> TransportFailure {
    let e = e.without_url();
    if refused_by_proxy_auth(&e) {
        return TransportFailure::Proxy {
            status: 407,
            retry_after: None,
        };
    }
    let mut text = e.to_string();
    // Bounded: a cause chain is a handful of links deep.
    let causes = std::iter::successors(std::error::Error::source(&e), |c| c.source()).take(8);
    for cause in causes {
        text.push_str(": ");
        text.push_str(&cause.to_string());
    }
    TransportFailure::Io(text)
}

/// Whether reqwest's `CONNECT` to the proxy (for an `https://` stream) was answered with a 407:
/// reqwest reports it as an error, not a response, with no status but this cause (hyper-util's
/// `TunnelError::ProxyAuthRequired`, reqwest's "tunnel error: proxy authorization required",
/// matched by its text as no type of it is ours to name;
/// `a_407_to_a_tls_event_stream_is_the_proxys_too` in tests/tests/proxy.rs notices a change).
/// Its other refusals carry no status at all: they stay I/O failures, retried.
fn refused_by_proxy_auth(e: &reqwest::Error) -> bool {
    std::iter::successors(std::error::Error::source(e), |c| c.source())
        .take(8)
        .any(|cause| cause.to_string().ends_with("proxy authorization required"))
}

/// The response's content coding, if it has one other than `identity` (the body is then not
/// the event stream's text), as the server wrote it (at most 64 characters of it).
fn content_coding(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get_all(reqwest::header::CONTENT_ENCODING)
        .iter()
        .find_map(|value| {
            let value = String::from_utf8_lossy(value.as_bytes());
            value
                .split(',')
                .map(str::trim)
                .find(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("identity"))
                .map(|coding| coding.chars().take(64).collect())
        })
}

/// Whether a `Content-Type` value names `text/event-stream`: the media type before any
/// parameters (`; charset=utf-8`), compared without regard to case as MIME types are.
fn is_event_stream_type(content_type: &str) -> bool {
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    media_type.eq_ignore_ascii_case("text/event-stream")
}

#[cfg(test)]
mod tests {
    #[test]
    fn redirects_are_followed_only_to_the_same_server() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        let from = url("http://relay.example:8080/sse?token=t");
        for to in [
            "http://relay.example:8080/events",
            "https://relay.example/sse",
            "https://relay.example:8443/sse",
        ] {
            assert!(super::may_follow(&from, &url(to)), "{to}");
        }
        for to in [
            "http://relay.example:9090/sse",
            "http://other.example:8080/sse",
            "https://other.example/sse",
            "http://relay.example.evil:8080/sse",
        ] {
            assert!(!super::may_follow(&from, &url(to)), "{to}");
        }
        // Never from TLS back to plain text (a chain is judged hop by hop: after a move to
        // TLS, the next hop is judged from the TLS URL).
        let tls = url("https://relay.example/sse");
        assert!(super::may_follow(
            &tls,
            &url("https://relay.example/events")
        ));
        for to in ["http://relay.example/sse", "http://relay.example:8080/sse"] {
            assert!(!super::may_follow(&tls, &url(to)), "{to}");
        }
    }

    use super::is_event_stream_type;

    #[test]
    fn content_codings_other_than_identity() {
        use reqwest::header::{HeaderMap, HeaderValue, CONTENT_ENCODING};
        let coding = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(CONTENT_ENCODING, HeaderValue::from_str(value).unwrap());
            }
            super::content_coding(&headers)
        };
        assert_eq!(coding(&[]), None);
        assert_eq!(coding(&["identity"]), None);
        assert_eq!(coding(&["Identity", ""]), None);
        assert_eq!(coding(&["gzip"]).as_deref(), Some("gzip"));
        assert_eq!(coding(&["identity, br"]).as_deref(), Some("br"));
        assert_eq!(coding(&["identity", "deflate"]).as_deref(), Some("deflate"));
        assert_eq!(coding(&[&"x".repeat(100)]).unwrap().len(), 64);
    }

    #[test]
    fn event_stream_content_types() {
        for ok in [
            "text/event-stream",
            "Text/Event-Stream",
            "text/event-stream; charset=utf-8",
            " text/event-stream ;charset=UTF-8",
        ] {
            assert!(is_event_stream_type(ok), "{ok}");
        }
        for not in [
            "text/html",
            "text/event-streamer",
            "text/plain; x=text/event-stream",
            "",
        ] {
            assert!(!is_event_stream_type(not), "{not}");
        }
    }
}
