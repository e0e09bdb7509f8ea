//! A WebSocket link over tokio-tungstenite.
//!
//! Reading and writing are driven from one `poll_input`, so the link can never deadlock on a
//! peer that only reads after it has written (writes progress whenever the driver polls for
//! input). Frames the engine hands over wait in a small local queue only while the socket
//! pushes back; the link then reports `Writable(false)` so that further messages stay in the
//! engine's bounded outbox instead of piling up here. It also reports how many bytes of them
//! the operating system has taken (`Progress`, counted at each completed flush): the engine
//! keeps the rest and sends it again on the next connection if this one ends first.
//!
//! A `ws://` connection is a `WebSocketStream<TcpStream>`, not tokio-tungstenite's
//! `MaybeTlsStream`: that enum is as large as its rustls variant, so every idle plain
//! connection would carry ~1 KiB of unused TLS state.
//!
//! The TCP stream under either is wrapped in [`Noted`], which notes that bytes arrived, or that
//! the socket took more of ours after pushing back, so the driver can tell the engine that a
//! large message is still coming in or going out (see `tether_core::Engine::bytes_received` and
//! `bytes_acknowledged`) without a call per read or write.

use super::{redirect_location, retry_after, LinkInput, PeerSigns};
use futures_util::{FutureExt, SinkExt, StreamExt};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tether_core::{Frame, OpenRequest, TransportFailure};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{ProtocolError, SubProtocolError, TlsError, UrlError};
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// `ws://`: 320 bytes.
type PlainStream = WebSocketStream<Noted<TcpStream>>;
/// `wss://`: 1,392 bytes (the rustls connection state is inline).
type TlsStream = WebSocketStream<MaybeTlsStream<Noted<TcpStream>>>;
type Connecting = Pin<Box<dyn Future<Output = Result<Opened, TransportFailure>> + Send>>;

/// A connection whose handshake completed (boxed: links are moved around while connecting).
enum Opened {
    Plain(Box<PlainStream>),
    Tls(Box<TlsStream>),
}

impl Opened {
    fn poll_input(&mut self, io: &mut Io, cx: &mut Context<'_>) -> Poll<LinkInput> {
        match self {
            Opened::Plain(stream) => io.poll_open(stream, cx),
            Opened::Tls(stream) => io.poll_open(stream, cx),
        }
    }

    /// Writes out what tungstenite holds (after a server's close: its reply, and what was
    /// queued before it). `Ready` once done or once writing failed.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Twice: a flush that finds tungstenite's write buffer full puts the close reply back
        // and still returns `Ok` once the buffer is out; the next one writes the reply.
        for _ in 0..2 {
            let flushed = match self {
                Opened::Plain(stream) => stream.poll_flush_unpin(cx),
                Opened::Tls(stream) => stream.poll_flush_unpin(cx),
            };
            match flushed {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(())) => {}
            }
        }
        Poll::Ready(())
    }

    /// What the peer showed since the last call.
    fn take_peer_signs(&self) -> PeerSigns {
        match self {
            Opened::Plain(stream) => stream.get_ref().take_signs(),
            Opened::Tls(stream) => stream.get_ref().get_ref().take_signs(),
        }
    }
}

/// A byte stream that notes signs of the peer: a read that got bytes ([`ARRIVED`]), and a
/// write that the socket took after it had pushed back ([`ACKNOWLEDGED`]: the kernel frees
/// send-buffer room only for bytes the peer acknowledged), taken by [`Noted::take_signs`].
/// As small as it can be (a `ws://` idle connection's memory is mostly its stream): one byte
/// of flags, atomic only so that a shared reference can take them (tokio-tungstenite's
/// `MaybeTlsStream` lends no `&mut` to what it wraps), and written through `&mut` on the I/O
/// paths.
pub(crate) struct Noted<S> {
    inner: S,
    notes: AtomicU8,
}

/// A read got bytes.
const ARRIVED: u8 = 1;
/// The last write found the socket full.
const PUSHED_BACK: u8 = 2;
/// A write went through after the socket had pushed back.
const ACKNOWLEDGED: u8 = 4;

impl<S> Noted<S> {
    fn new(inner: S) -> Self {
        Noted {
            inner,
            notes: AtomicU8::new(0),
        }
    }

    fn take_signs(&self) -> PeerSigns {
        let notes = self.notes.fetch_and(PUSHED_BACK, Ordering::Relaxed);
        PeerSigns {
            arrived: notes & ARRIVED != 0,
            acknowledged: notes & ACKNOWLEDGED != 0,
        }
    }

    /// Notes what a write's outcome says about the peer. `budget`: whether the task had
    /// cooperative budget left when it asked ([`tokio::task::coop::has_budget_remaining`]).
    /// Without, tokio answers `Pending` without asking the socket: no push-back, and the
    /// write that goes through next would be taken for the peer's acknowledgement. With, a
    /// `Pending` means the socket refused (or had refused) bytes, even if the budget ran out
    /// while tokio retried.
    fn note_write(&mut self, budget: bool, polled: &Poll<std::io::Result<usize>>) {
        let notes = self.notes.get_mut();
        match polled {
            Poll::Pending if budget => *notes |= PUSHED_BACK,
            Poll::Pending => {}
            Poll::Ready(Ok(n)) if *notes & PUSHED_BACK != 0 && *n > 0 => {
                *notes = (*notes & !PUSHED_BACK) | ACKNOWLEDGED;
            }
            Poll::Ready(_) => {}
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Noted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            *this.notes.get_mut() |= ARRIVED;
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Noted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let budget = tokio::task::coop::has_budget_remaining();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.note_write(budget, &polled);
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let budget = tokio::task::coop::has_budget_remaining();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.note_write(budget, &polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The smallest message size at which tungstenite fails a connection (see `connect`).
const MIN_MEMORY_CEILING: usize = 1 << 20;

/// Per-client WebSocket settings.
#[derive(Clone)]
pub(crate) struct WsOptions {
    pub(crate) tls: Arc<rustls::ClientConfig>,
    /// Whether to connect through a proxy, and which.
    pub(crate) proxy: Arc<super::proxy::ProxyRule>,
    pub(crate) read_buffer_size: usize,
    pub(crate) write_buffer_size: usize,
    pub(crate) max_message_bytes: usize,
}

enum State {
    Connecting(Connecting),
    Open(Opened),
    /// Ended (reported), with bytes still to write: the reply to a server's close that the
    /// socket could not take at once. Kept until they are out or the socket fails, so the
    /// server sees a clean close instead of a dropped connection; but only while the link
    /// holds the driver's one slot: an attempt that opens sooner replaces it.
    WritingOut(Opened),
    Done,
}

pub(crate) struct WsLink {
    state: State,
    io: Io,
}

/// The write side's bookkeeping, whatever the stream.
struct Io {
    /// Frames accepted from the engine but not yet taken by the socket, each with what it
    /// counts for in `started` (`Frame::progress_len`; 0 for a ping or a close).
    pending: VecDeque<(Message, u64)>,
    needs_flush: bool,
    writable: bool,
    /// Bytes of data frames handed to tungstenite (by the engine's measure, in which an empty
    /// frame counts as 1: its taking must show too); of them, those flushed to the socket (in
    /// the operating system's hands: tungstenite's own buffer would go with the link), and
    /// those the engine was told of.
    started: u64,
    taken: u64,
    reported: u64,
    /// How many bytes may be started past the last completed flush before the next one is
    /// asked for: tungstenite's write buffer size, so the flush finds what tungstenite writes
    /// by itself already written (no extra system call), and at most this much counts as not
    /// taken when it is in fact on its way (it is then sent again on the next connection).
    flush_every: u64,
    /// The link's end (closed or failed), held back one poll while a `Progress` goes first.
    deferred_end: Option<Box<LinkInput>>,
}

impl WsLink {
    pub(crate) fn open(request: OpenRequest, options: Arc<WsOptions>) -> Self {
        let flush_every = options.write_buffer_size.max(1) as u64;
        WsLink {
            state: State::Connecting(Box::pin(connect(request, options))),
            io: Io {
                flush_every,
                deferred_end: None,
                pending: VecDeque::new(),
                needs_flush: false,
                writable: true,
                started: 0,
                taken: 0,
                reported: 0,
            },
        }
    }

    pub(crate) fn send(&mut self, frame: Frame) {
        let units = frame.progress_len();
        let msg = match frame {
            Frame::Text(text) => Message::text(text),
            Frame::Binary(bytes) => Message::binary(bytes),
        };
        self.io.pending.push_back((msg, units));
    }

    pub(crate) fn ping(&mut self, payload: Vec<u8>) {
        self.io
            .pending
            .push_back((Message::Ping(payload.into()), 0));
    }

    pub(crate) fn close(&mut self, code: u16, reason: String) {
        let msg = Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        }));
        self.io.pending.push_back((msg, 0));
    }

    /// What the peer showed since the last call (the handshake's bytes included).
    pub(crate) fn take_peer_signs(&mut self) -> PeerSigns {
        match &self.state {
            State::Open(opened) => opened.take_peer_signs(),
            _ => PeerSigns::default(),
        }
    }

    pub(crate) fn poll_input(&mut self, cx: &mut Context<'_>) -> Poll<LinkInput> {
        let input = match &mut self.state {
            State::Connecting(fut) => match fut.poll_unpin(cx) {
                Poll::Ready(Ok(opened)) => {
                    self.state = State::Open(opened);
                    Poll::Ready(LinkInput::Opened)
                }
                Poll::Ready(Err(failure)) => {
                    self.state = State::Done;
                    return Poll::Ready(LinkInput::Failed(Box::new(failure)));
                }
                Poll::Pending => return Poll::Pending,
            },
            State::Open(stream) => stream.poll_input(&mut self.io, cx),
            State::WritingOut(stream) => {
                if stream.poll_write_out(cx).is_ready() {
                    self.state = State::Done;
                }
                return Poll::Pending;
            }
            State::Done => return Poll::Pending,
        };
        match &input {
            Poll::Ready(LinkInput::Closed { .. }) => {
                self.state = match std::mem::replace(&mut self.state, State::Done) {
                    State::Open(mut stream) => match stream.poll_write_out(cx) {
                        Poll::Pending => State::WritingOut(stream),
                        Poll::Ready(()) => State::Done,
                    },
                    _ => State::Done,
                };
            }
            Poll::Ready(LinkInput::Failed(_)) => self.state = State::Done,
            _ => {}
        }
        input
    }
}

impl Io {
    fn poll_open<S>(
        &mut self,
        stream: &mut WebSocketStream<S>,
        cx: &mut Context<'_>,
    ) -> Poll<LinkInput>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if let Some(end) = self.deferred_end.take() {
            return Poll::Ready(*end);
        }
        match self.poll_io(stream, cx) {
            // What the socket took is reported before the link's end, which comes next time:
            // the engine re-sends what it does not know to be taken.
            Poll::Ready(end @ (LinkInput::Closed { .. } | LinkInput::Failed(_)))
                if self.taken != self.reported =>
            {
                self.reported = self.taken;
                self.deferred_end = Some(Box::new(end));
                Poll::Ready(LinkInput::Progress(self.taken))
            }
            other => other,
        }
    }

    fn poll_io<S>(
        &mut self,
        stream: &mut WebSocketStream<S>,
        cx: &mut Context<'_>,
    ) -> Poll<LinkInput>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // A flush under way first: once it completes, every frame started is in the operating
        // system's hands (under load, tungstenite's readiness flushes too, unseen here, and
        // what it wrote would otherwise count as not taken).
        if let Poll::Ready(Some(input)) = self.poll_flush(stream, cx) {
            return Poll::Ready(input);
        }
        // Write what the socket takes.
        while !self.pending.is_empty() {
            match stream.poll_ready_unpin(cx) {
                Poll::Ready(Ok(())) => {
                    let Some((msg, units)) = self.pending.pop_front() else {
                        break;
                    };
                    if let Err(e) = stream.start_send_unpin(msg) {
                        return Poll::Ready(failure(e));
                    }
                    self.started += units;
                    self.needs_flush = true;
                    if self.started - self.taken >= self.flush_every {
                        match self.poll_flush(stream, cx) {
                            Poll::Ready(Some(input)) => return Poll::Ready(input),
                            Poll::Ready(None) => {}
                            Poll::Pending => break,
                        }
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(failure(e)),
                Poll::Pending => break,
            }
        }
        if let Poll::Ready(Some(input)) = self.poll_flush(stream, cx) {
            return Poll::Ready(input);
        }
        // What the socket took is settled before anything read is reported: an end read next
        // must not send it again on the next connection.
        if self.taken != self.reported {
            self.reported = self.taken;
            return Poll::Ready(LinkInput::Progress(self.taken));
        }
        let writable = self.pending.is_empty();
        if writable != self.writable {
            self.writable = writable;
            return Poll::Ready(LinkInput::Writable(writable));
        }
        // Then read.
        loop {
            return match stream.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(msg))) => match msg {
                    Message::Text(text) => {
                        Poll::Ready(LinkInput::Frame(Frame::Text(text.as_str().to_owned())))
                    }
                    Message::Binary(bytes) => {
                        Poll::Ready(LinkInput::Frame(Frame::Binary(bytes.to_vec())))
                    }
                    Message::Ping(_) => Poll::Ready(LinkInput::Ping),
                    Message::Pong(payload) => Poll::Ready(LinkInput::Pong(payload.to_vec())),
                    Message::Close(frame) => {
                        // tungstenite queued the close reply; push it out before we go (with
                        // what was started before it: taken, if the flush completes).
                        if self.needs_flush {
                            let _ = self.poll_flush(stream, cx);
                        } else {
                            let _ = stream.poll_flush_unpin(cx);
                        }
                        Poll::Ready(match frame {
                            Some(f) => LinkInput::Closed {
                                code: Some(u16::from(f.code)),
                                reason: f.reason.as_str().to_owned(),
                            },
                            None => LinkInput::Closed {
                                code: None,
                                reason: String::new(),
                            },
                        })
                    }
                    Message::Frame(_) => continue,
                },
                Poll::Ready(Some(Err(e))) => Poll::Ready(failure(e)),
                Poll::Ready(None) => Poll::Ready(LinkInput::Closed {
                    code: None,
                    reason: String::new(),
                }),
                Poll::Pending => Poll::Pending,
            };
        }
    }
}

impl Io {
    /// Flushes what was started, if anything; `Some` is the link's failure.
    fn poll_flush<S>(
        &mut self,
        stream: &mut WebSocketStream<S>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<LinkInput>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if !self.needs_flush {
            return Poll::Ready(None);
        }
        match stream.poll_flush_unpin(cx) {
            Poll::Ready(Ok(())) => {
                self.needs_flush = false;
                self.taken = self.started;
                Poll::Ready(None)
            }
            Poll::Ready(Err(e)) => Poll::Ready(Some(failure(e))),
            Poll::Pending => Poll::Pending,
        }
    }
}

fn failure(e: WsError) -> LinkInput {
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => LinkInput::Closed {
            code: None,
            reason: String::new(),
        },
        other => LinkInput::Failed(Box::new(TransportFailure::Io(other.to_string()))),
    }
}

async fn connect(
    request: OpenRequest,
    options: Arc<WsOptions>,
) -> Result<Opened, TransportFailure> {
    let mut http = request
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| TransportFailure::Io(format!("invalid request: {e}")))?;
    for (name, value) in &request.headers {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::try_from(name.as_str())
            .map_err(|e| TransportFailure::Io(format!("invalid header name {name:?}: {e}")))?;
        let value = HeaderValue::try_from(value.as_str())
            .map_err(|e| TransportFailure::Io(format!("invalid header value: {e}")))?;
        http.headers_mut().append(name, value);
    }
    if !request.subprotocols.is_empty() {
        let value = HeaderValue::try_from(request.subprotocols.join(", "))
            .map_err(|e| TransportFailure::Io(format!("invalid subprotocol: {e}")))?;
        http.headers_mut().insert("Sec-WebSocket-Protocol", value);
    }
    let mut config = WebSocketConfig::default();
    config.read_buffer_size = options.read_buffer_size;
    config.write_buffer_size = options.write_buffer_size;
    // The engine owns the message limit: it drops a message over it with a FrameTooLarge
    // error and keeps the connection. tungstenite's own limit fails the whole connection (a
    // server that replays the message after every reconnect would loop for ever), so it is
    // only the memory ceiling, well above the engine's.
    let ceiling = options
        .max_message_bytes
        .saturating_mul(4)
        .max(MIN_MEMORY_CEILING);
    config.max_message_size = Some(ceiling);
    config.max_frame_size = Some(ceiling);
    let (socket, plain) = open_socket(&request.url, &http, &options).await?;
    let heard = Heard::default();
    match handshake(http, socket, plain, config, &options, &heard).await {
        Ok(opened) => Ok(opened),
        Err(WsError::Http(response)) => Err(TransportFailure::Http {
            status: response.status().as_u16(),
            retry_after: retry_after(response.headers()),
            // A WebSocket handshake follows no redirect (tungstenite's neither).
            location: redirect_location(response.status().as_u16(), response.headers()),
        }),
        // The server's choice of subprotocol, for the engine to judge (it stops the client):
        // none, or (unread: tungstenite does not keep it) one that was not offered.
        Err(WsError::Protocol(ProtocolError::SecWebSocketSubProtocolError(e))) => {
            Err(TransportFailure::Subprotocol {
                chosen: match e {
                    SubProtocolError::NoSubProtocol => None,
                    _ => Some(String::new()),
                },
            })
        }
        // tungstenite refuses some answers before looking at their status, an HTTP/1.0 one
        // above all ("HTTP version must be 1.1 or higher"): a refusal as any other, whose
        // status the engine must see (a 401 refreshes the token, a 404 stops, a 503's
        // `Retry-After` holds the client off), not an I/O failure retried for ever.
        Err(e) => Err(refusal_heard(&heard).unwrap_or_else(|| TransportFailure::Io(e.to_string()))),
    }
}

/// Everything the server sent during the WebSocket handshake, up to [`MAX_HEARD`] bytes:
/// shared with the [`Recorder`] it reads through, which tungstenite drops when it fails.
type Heard = Arc<std::sync::Mutex<Vec<u8>>>;

/// The most of the server's handshake answer kept: its head and what followed it in the same
/// reads. A head this long is no server's.
const MAX_HEARD: usize = 64 << 10;

/// The stream the handshake runs on, keeping what it reads in [`Heard`]: the head of a
/// refusal tungstenite will not read, and the bytes that followed the head of an upgrade
/// (the first frames), which the WebSocket made over the stream itself must still read
/// (`upgrade`). Only for the handshake: the connection itself reads the stream directly.
struct Recorder<S> {
    inner: S,
    heard: Heard,
}

impl<S: AsyncRead + Unpin> AsyncRead for Recorder<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = &buf.filled()[before..];
        if !read.is_empty() {
            let mut heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
            let room = MAX_HEARD.saturating_sub(heard.len());
            heard.extend_from_slice(&read[..read.len().min(room)]);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recorder<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// As many header lines as tungstenite reads in a handshake answer.
const MAX_HEADERS: usize = 124;

/// The WebSocket upgrade on `stream` (TLS already done for `wss://`), read through a
/// [`Recorder`]: the WebSocket is then made over `stream` itself, with the bytes that followed
/// the answer's head, as tungstenite makes it.
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    http: tokio_tungstenite::tungstenite::handshake::client::Request,
    stream: S,
    config: WebSocketConfig,
    heard: &Heard,
) -> Result<WebSocketStream<S>, WsError> {
    let recorder = Recorder {
        inner: stream,
        heard: heard.clone(),
    };
    let (ws, _response) =
        tokio_tungstenite::client_async_with_config(http, recorder, Some(config)).await?;
    let stream = ws.into_inner().inner;
    let tail = {
        let heard = heard.lock().unwrap_or_else(|p| p.into_inner());
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::Response::new(&mut headers).parse(&heard) {
            Ok(httparse::Status::Complete(head)) if heard.len() < MAX_HEARD => {
                heard[head..].to_vec()
            }
            // What followed the head was not all kept.
            _ => {
                let e = std::io::Error::other("the server's handshake answer is too long");
                return Err(WsError::Io(e));
            }
        }
    };
    Ok(WebSocketStream::from_partially_read(stream, tail, Role::Client, Some(config)).await)
}

/// The refusal the server answered the handshake with, if what it sent is a complete HTTP
/// answer other than the upgrade (HTTP/1.0 included): its status, `Retry-After` and
/// redirect `Location`, as for any refusal.
fn refusal_heard(heard: &Heard) -> Option<TransportFailure> {
    let heard = heard.lock().unwrap_or_else(|p| p.into_inner());
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    if !response.parse(&heard).ok()?.is_complete() {
        return None;
    }
    let status = response.code.filter(|status| *status >= 200)?;
    let mut map = HeaderMap::new();
    for header in response.headers.iter() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_bytes(header.value),
        ) {
            map.append(name, value);
        }
    }
    Some(TransportFailure::Http {
        status,
        retry_after: retry_after(&map),
        location: redirect_location(status, &map),
    })
}

/// The TCP connection under the WebSocket, directly or through the proxy the rule names for
/// `url`, and whether it stays plain (`ws://`). The same host and port rules, and the same
/// errors, as `tokio_tungstenite::connect_async_tls_with_config`.
async fn open_socket(
    url: &str,
    http: &tokio_tungstenite::tungstenite::handshake::client::Request,
    options: &WsOptions,
) -> Result<(Noted<TcpStream>, bool), TransportFailure> {
    let url_error = |e: UrlError| TransportFailure::Io(WsError::Url(e).to_string());
    let host = http
        .uri()
        .host()
        .ok_or_else(|| url_error(UrlError::NoHostName))?;
    // An IPv6 literal without its brackets, as rustls wants it.
    let host = super::proxy::unbracketed(host);
    let plain = http.uri().scheme_str() == Some("ws");
    let port = http
        .uri()
        .port_u16()
        .or_else(|| match http.uri().scheme_str() {
            Some("wss") => Some(443),
            Some("ws") => Some(80),
            _ => None,
        })
        .ok_or_else(|| url_error(UrlError::UnsupportedUrlScheme))?;
    // The URL parsed into a request already: one the rule's parser refuses goes direct, and
    // fails as it would have.
    let url = reqwest::Url::parse(url).ok();
    let proxy = url.as_ref().and_then(|url| options.proxy.for_url(url));
    let io = |e: std::io::Error| TransportFailure::Io(WsError::Io(e).to_string());
    let socket = match proxy {
        Some(proxy) => super::tunnel::open(proxy, host, port).await?,
        None => super::connect::connect(host, port).await.map_err(io)?,
    };
    // Nagle off: small frames (pings, acks, chat messages) must not wait 40 ms for company.
    socket.set_nodelay(true).map_err(io)?;
    Ok((Noted::new(socket), plain))
}

/// The WebSocket handshake (with TLS first for `wss://`) on `socket`: what
/// `tokio_tungstenite::connect_async_tls_with_config` does after connecting, except that a
/// `ws://` stream is not wrapped in `MaybeTlsStream`, and that the upgrade reads through a
/// recorder of what the server answered (`heard`, see [`upgrade`]).
async fn handshake(
    http: tokio_tungstenite::tungstenite::handshake::client::Request,
    socket: Noted<TcpStream>,
    plain: bool,
    config: WebSocketConfig,
    options: &WsOptions,
    heard: &Heard,
) -> Result<Opened, WsError> {
    if plain {
        let stream = upgrade(http, socket, config, heard).await?;
        Ok(Opened::Plain(Box::new(stream)))
    } else {
        // As tokio-tungstenite's rustls connector: the host without an IPv6 address's
        // brackets, a TLS failure as an I/O error.
        let host = http
            .uri()
            .host()
            .ok_or(WsError::Url(UrlError::NoHostName))?;
        let domain = rustls_pki_types::ServerName::try_from(super::proxy::unbracketed(host))
            .map_err(|_| WsError::Tls(TlsError::InvalidDnsName))?
            .to_owned();
        let tls = tokio_rustls::TlsConnector::from(options.tls.clone())
            .connect(domain, socket)
            .await
            .map_err(WsError::Io)?;
        let stream = upgrade(http, MaybeTlsStream::Rustls(tls), config, heard).await?;
        Ok(Opened::Tls(Box::new(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    /// An idle `ws://` connection's memory is mostly its stream: noting what the peer does
    /// costs it 8 bytes, no more (and as much under TLS).
    #[test]
    fn noting_arrivals_keeps_the_streams_small() {
        assert!(size_of::<PlainStream>() <= size_of::<WebSocketStream<TcpStream>>() + 8);
        assert!(
            size_of::<TlsStream>() <= size_of::<WebSocketStream<MaybeTlsStream<TcpStream>>>() + 8
        );
    }

    /// A writer that pushes back on every other write, then takes everything.
    struct Alternating {
        full: bool,
    }

    impl AsyncWrite for Alternating {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.full = !self.full;
            match self.full {
                true => Poll::Pending,
                false => Poll::Ready(Ok(buf.len())),
            }
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Only a write taken after a push-back says the peer acknowledged something: a socket
    /// with room takes bytes whether or not anyone is there.
    #[test]
    fn a_write_counts_as_acknowledged_only_after_a_push_back() {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        let mut noted = Noted::new(Alternating { full: true });
        let mut write = |noted: &mut Noted<Alternating>| {
            let _ = Pin::new(noted).poll_write(&mut cx, b"bytes");
        };
        write(&mut noted); // taken: the socket had room
        assert_eq!(noted.take_signs(), PeerSigns::default());
        write(&mut noted); // pushed back
        assert_eq!(noted.take_signs(), PeerSigns::default());
        write(&mut noted); // taken after the push-back
        let acknowledged = PeerSigns {
            arrived: false,
            acknowledged: true,
        };
        assert_eq!(noted.take_signs(), acknowledged);
        assert_eq!(noted.take_signs(), PeerSigns::default(), "taken once");
        write(&mut noted); // pushed back
        let _ = noted.take_signs(); // e.g. a ping was queued: the push-back is remembered
        write(&mut noted);
        assert_eq!(noted.take_signs(), acknowledged);
    }

    /// tokio answers `Pending` without touching the socket once the task has used its
    /// cooperative budget (128 operations a poll): that is no push-back, and the write that
    /// goes through after it says nothing about the peer. Here the peer never reads; the
    /// socket has room all along.
    #[tokio::test]
    async fn a_pending_write_from_an_exhausted_task_budget_is_not_a_push_back() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (_peer, _) = listener.accept().await.unwrap(); // never reads
        let mut noted = Noted::new(tcp);
        // Small writes in one poll until one is refused: the budget runs out long before a
        // send buffer of at least a few KiB is full.
        let writes = std::future::poll_fn(|cx| {
            let mut n = 0;
            while n < 1_000 {
                match Pin::new(&mut noted).poll_write(cx, b"x") {
                    Poll::Ready(Ok(1)) => n += 1,
                    other => return Poll::Ready((n, other.is_pending())),
                }
            }
            Poll::Ready((n, false))
        })
        .await;
        assert!(
            writes.1 && writes.0 <= 128,
            "refused after {} writes",
            writes.0
        );
        tokio::task::yield_now().await; // a fresh budget
        let taken =
            std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut noted).poll_write(cx, b"x"))).await;
        assert!(matches!(taken, Poll::Ready(Ok(1))), "the socket had room");
        assert_eq!(noted.take_signs(), PeerSigns::default());
    }

    /// The real thing on a socket: its buffer fills while the peer does not read, and room
    /// comes back as the peer reads (and so acknowledges).
    #[tokio::test]
    async fn a_socket_that_pushed_back_and_takes_more_once_the_peer_reads_is_acknowledged() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut peer, _) = listener.accept().await.unwrap();
        let mut noted = Noted::new(tcp);
        let chunk = vec![0u8; 64 << 10];
        async fn write(noted: &mut Noted<TcpStream>, chunk: &[u8]) -> Poll<std::io::Result<usize>> {
            std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *noted).poll_write(cx, chunk)))
                .await
        }
        let mut sent = 0;
        loop {
            tokio::task::yield_now().await; // a fresh budget for each write
            match write(&mut noted, &chunk).await {
                Poll::Ready(Ok(n)) => sent += n,
                Poll::Pending => break,
                Poll::Ready(Err(e)) => panic!("{e}"),
            }
            assert!(sent < 1 << 30, "the socket never pushed back");
        }
        assert_eq!(noted.take_signs(), PeerSigns::default());
        let mut sink = vec![0u8; 1 << 20];
        let mut read = 0;
        let taken = loop {
            read += peer.read(&mut sink).await.unwrap();
            tokio::task::yield_now().await;
            if let Poll::Ready(r) = write(&mut noted, &chunk).await {
                break r.unwrap();
            }
            assert!(read <= sent, "room never came back");
        };
        assert!(taken > 0);
        let signs = noted.take_signs();
        assert!(signs.acknowledged, "{signs:?}");
    }
}
