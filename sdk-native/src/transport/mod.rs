//! The transports: one [`Link`] per engine `TransportId`, either a WebSocket (tokio-tungstenite)
//! or an SSE stream (reqwest-eventsource with its own retry turned off). A link only moves
//! bytes and reports what happened as [`LinkInput`]s; it decides nothing.

pub(crate) mod sse;
pub(crate) mod tls;
pub(crate) mod ws;

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tether_core::{Frame, OpenRequest, SseEvent, TransportFailure, TransportId, TransportKind};

/// Something a link reports, to be fed to the engine.
#[derive(Debug)]
pub(crate) enum LinkInput {
    Opened,
    Frame(Frame),
    Sse(SseEvent),
    Ping,
    Pong(Vec<u8>),
    Writable(bool),
    Closed { code: Option<u16>, reason: String },
    Failed(TransportFailure),
}

/// What every link of one client shares: TLS roots and buffer sizes.
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
    ) -> Result<Self, String> {
        Ok(LinkContext {
            ws: ws::WsOptions {
                tls: roots.rustls_config()?,
                read_buffer_size: native.read_buffer_size,
                write_buffer_size: native.write_buffer_size,
                max_message_bytes: config.max_message_bytes(),
            },
            http: roots.http_client()?,
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

    /// Queues a WebSocket ping.
    pub(crate) fn ping(&mut self, payload: Vec<u8>) {
        if let Kind::Ws(ws) = &mut self.kind {
            ws.ping(payload);
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
            return Poll::Pending;
        }
        let input = match &mut self.kind {
            Kind::Ws(ws) => ws.poll_input(cx),
            Kind::Sse(sse) => sse.poll_input(cx).map(not_an_event_stream_is_http),
        };
        if let Poll::Ready(LinkInput::Closed { .. } | LinkInput::Failed(_)) = &input {
            self.ended = true;
        }
        input
    }
}

/// What the SSE link reports for a `200` response whose content type is not
/// `text/event-stream` (sse.rs checks it where the response arrives).
const NOT_AN_EVENT_STREAM: &str = "response is not text/event-stream";

/// A `200` that is not an event stream (a web page at a wrong URL) is reported to the engine as
/// what it is, an HTTP answer that is not the protocol asked for, like a WebSocket handshake
/// answered with `200`: the engine's close policy then stops with `Closed { Refused }` and a
/// `DisconnectCause::Http { status: 200 }` instead of retrying an opaque I/O error for ever.
fn not_an_event_stream_is_http(input: LinkInput) -> LinkInput {
    match input {
        LinkInput::Failed(TransportFailure::Io(message)) if message == NOT_AN_EVENT_STREAM => {
            LinkInput::Failed(TransportFailure::Http {
                status: 200,
                retry_after: None,
            })
        }
        other => other,
    }
}

/// Parses a `Retry-After` header given in seconds (the HTTP-date form is ignored).
pub(crate) fn retry_after(headers: &http_headers::HeaderMap) -> Option<Duration> {
    headers
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The `http` crate's header map, as both tungstenite and reqwest expose it.
pub(crate) mod http_headers {
    pub(crate) use tokio_tungstenite::tungstenite::http::HeaderMap;
}
