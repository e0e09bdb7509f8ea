//! WebSocket connections: the upgrade response, then one task per connection in which a
//! reader (frames → [`Session`]) and a writer (queue → socket) run side by side, and the
//! closing sequence. Which close code a failure earns is decided here:
//! oversized message 1009, invalid UTF-8 1007, protocol violation 1002, slow consumer 1013,
//! graceful shutdown 1012, silence for two ping intervals (or none of the replies it asked
//! for read for as long) 4000, and whatever the session asks for (4001).

use crate::auth::Access;
use crate::config::RelayConfig;
use crate::http::{self, RequestHead};
use crate::hub::frame;
use crate::peer::{Peer, PeerQueue};
use crate::server::{aborted, stopping, RunState, Shared};
use crate::session::{Flow, Session};
use crate::stats::Stats;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tether_core::close_policy::restart_advice;
use tether_core::protocol::ServerMessage;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<NotedTcp>;

/// A connection's TCP stream, noting that bytes arrived: part of a frame still arriving is a
/// sign of life, so a large message on a slow uplink (whose client can only answer a ping
/// after the frame it is writing) is not closed as silent mid-message, and again after every
/// reconnect. The flag is shared with the reader, which looks at it only when the silence
/// limit passes. It also counts the writes (see [`RelayHandle::websocket_writes`]).
///
/// [`RelayHandle::websocket_writes`]: crate::RelayHandle::websocket_writes
struct NotedTcp {
    tcp: TcpStream,
    arrived: Arc<AtomicBool>,
    stats: Arc<Stats>,
}

impl NotedTcp {
    fn count_write(&self, written: &Poll<io::Result<usize>>) {
        if matches!(written, Poll::Ready(Ok(n)) if *n > 0) {
            self.stats.websocket_written();
        }
    }
}

impl AsyncRead for NotedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.arrived.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for NotedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.tcp).poll_write(cx, buf);
        this.count_write(&written);
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        this.count_write(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// Read buffer per connection. tungstenite's default (128 KiB, allocated up front) would
/// cost 1.25 GiB for 10,000 idle connections; protocol frames are small, and a large
/// message still arrives fine, just in more reads.
const READ_BUFFER: usize = 4 * 1024;
/// Bytes buffered before tungstenite writes to the socket. The writer flushes after every
/// batch anyway, so this only merges the frames of one batch into fewer writes.
const WRITE_BUFFER: usize = 8 * 1024;
/// Frames sent per flush at most, so a long queue still reaches the socket steadily.
const MAX_BATCH: usize = 64;
/// How long the closing sequence may take (sending the close frame, then waiting for the
/// client to hang up) before the socket is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Close code for a connection from which nothing arrived for two ping intervals: the code
/// the SDK uses for the same finding (docs/protocol.md), on which clients reconnect.
const CLOSE_HEARTBEAT_TIMEOUT: u16 = 4000;
/// Ping intervals of silence after which a connection counts as dead: one ping may go
/// unanswered (or be answered late), the second may not.
const SILENT_INTERVALS: u32 = 2;

fn ws_config(config: &RelayConfig) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        // Writes never fail for long without the connection being closed, so this only
        // needs room for one maximal message beyond the target.
        // (Saturating: `validate` caps the size, but a size computed from it must not wrap.)
        .max_write_buffer_size(
            WRITE_BUFFER
                .saturating_add(config.max_message_size.saturating_mul(2))
                .saturating_add(1024),
        )
        .max_message_size(Some(config.max_message_size))
        .max_frame_size(Some(config.max_message_size))
}

/// How a connection ends.
#[derive(Debug)]
enum Ending {
    /// The client left or the socket failed: nothing more to say.
    Gone,
    /// Close with this code and reason; `flush` first sends what is still queued.
    Close {
        code: u16,
        reason: String,
        flush: bool,
    },
    /// Abort: drop the socket without a close frame.
    Drop,
}

impl Ending {
    fn close(code: u16, reason: &str) -> Ending {
        Ending::Close {
            code,
            reason: reason.to_owned(),
            flush: true,
        }
    }

    fn from_read_error(e: WsError) -> Ending {
        match e {
            WsError::Capacity(e) => {
                tracing::debug!(error = %e, "closing: message too big");
                Ending::close(1009, "message too big")
            }
            WsError::Utf8(_) => Ending::close(1007, "text frame is not valid UTF-8"),
            WsError::Protocol(e) => {
                tracing::debug!(error = %e, "closing: protocol violation");
                Ending::close(1002, "protocol error")
            }
            _ => Ending::Gone,
        }
    }
}

/// Why an upgrade request cannot be accepted: status, reason phrase, extra headers.
type Refusal = (u16, &'static str, &'static [(&'static str, &'static str)]);

/// Checks the upgrade request (RFC 6455 §4.2.1) and computes the accept key.
fn accept_key(head: &RequestHead) -> Result<String, Refusal> {
    if head.header("sec-websocket-version") != Some("13") {
        return Err((426, "Upgrade Required", &[("Sec-WebSocket-Version", "13")]));
    }
    let key = head.header("sec-websocket-key").unwrap_or_default();
    if !head.header_lists("connection", "upgrade") || key.is_empty() {
        return Err((400, "Bad Request", &[]));
    }
    Ok(derive_accept_key(key.as_bytes()))
}

/// Serves one WebSocket connection from its upgrade request to its close.
pub(crate) async fn serve(
    mut stream: TcpStream,
    head: RequestHead,
    rest: Vec<u8>,
    access: Access,
    shared: Arc<Shared>,
    mut run_state: watch::Receiver<RunState>,
) -> io::Result<()> {
    let key = accept_key(&head);
    // The head is not needed past the handshake; do not keep it for the connection's life.
    drop(head);
    let key = match key {
        Ok(key) => key,
        Err((status, reason, headers)) => {
            return http::respond(&mut stream, status, reason, headers, "").await;
        }
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {key}\r\n\r\n"
    );
    let limit = shared.config.handshake_timeout;
    tokio::time::timeout(limit, stream.write_all(response.as_bytes()))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    // Bytes the client sent right behind its request head are its first frames.
    let arrived = Arc::new(AtomicBool::new(false));
    let stream = NotedTcp {
        tcp: stream,
        arrived: arrived.clone(),
        stats: shared.stats.clone(),
    };
    let ws = WebSocketStream::from_partially_read(
        stream,
        rest,
        Role::Server,
        Some(ws_config(&shared.config)),
    )
    .await;

    let _open = shared.stats.connection_opened();
    let (peer, mut queue) = Peer::with_limits(
        shared.next_peer_id(),
        shared.config.queue_limits(shared.config.max_message_size),
    );
    let now = Instant::now();
    let mut session = Session::new(
        peer.clone(),
        shared.hub.clone(),
        shared.config.clone(),
        access,
        now,
    );
    let hello_deadline = session.awaiting_token().then(|| now + limit);
    let silence_limit = shared
        .config
        .ping_interval
        .map(|every| every.saturating_mul(SILENT_INTERVALS));
    tracing::debug!(peer = peer.id(), "websocket open");

    let (mut sink, mut frames) = ws.split();
    let refused = session.refused_at_handshake();
    let ending = if let Flow::Close { code, reason } = refused {
        Ending::Close {
            code,
            reason,
            flush: true,
        }
    } else {
        tokio::select! {
        end = read_frames(&mut frames, &mut session, &peer, hello_deadline, silence_limit, &arrived) => end,
        end = write_frames(&mut sink, &mut queue, shared.config.ping_interval) => end,
        // Its client connected again and gave this connection up: dead, or as good as.
        () = peer.replaced() => Ending::Drop,
        () = peer.overflowed() => Ending::Close {
            code: 1013,
            reason: "slow consumer".to_owned(),
            // Its queue is what is too long; the client resumes from history instead.
            flush: false,
        },
        how = stopping(&mut run_state) => match how {
            RunState::Aborting => Ending::Drop,
            _ => Ending::close(
                1012,
                &restart_advice(shared.config.reconnect_after, shared.config.reconnect_window),
            ),
        },
        }
    };
    // Leave the hub first, so nothing new is queued while the connection closes.
    drop(session);
    tracing::debug!(peer = peer.id(), ?ending, "websocket closing");
    if let Ending::Close {
        code,
        reason,
        flush,
    } = ending
    {
        let closing = close(sink, frames, queue, code, reason, flush);
        // An abort during a graceful close still drops the socket at once.
        tokio::select! {
            () = closing => {}
            () = aborted(&mut run_state) => {}
        }
    }
    Ok(())
}

/// Reads frames into the session until the connection ends. With a `silence_limit`, a
/// connection from which nothing at all arrives for that long (no message, no pong, no ping
/// frame, no byte of one: `arrived`, see [`NotedTcp`]) is closed as dead: its client's
/// network may have vanished without a FIN or RST, and only this frees its subscriptions and
/// presence.
///
/// Two things stop the reading for a while, leaving the client's frames in the socket
/// (TCP backpressure): replies the client asked for and has not read yet, as many as
/// `max_queued_frames` (see [`replies_sent`]), and the rate limit, for a frame that an
/// error could not name (see [`Session::rate_wait`]).
async fn read_frames(
    frames: &mut SplitStream<Ws>,
    session: &mut Session,
    peer: &Peer,
    hello_deadline: Option<Instant>,
    silence_limit: Option<Duration>,
    arrived: &AtomicBool,
) -> Ending {
    let mut last_inbound = Instant::now();
    // What was queued by the time the last frame was handled, if handling it queued anything.
    let mut answered = 0;
    loop {
        match replies_sent(peer, silence_limit).await {
            Ok(false) => {}
            // The client was reading all along: silence is counted from now.
            Ok(true) => last_inbound = Instant::now(),
            Err(ending) => return ending,
        }
        match answers_taken(peer, answered, silence_limit).await {
            Ok(false) => {}
            Ok(true) => last_inbound = Instant::now(),
            Err(ending) => return ending,
        }
        let hello = hello_deadline.filter(|_| session.awaiting_token());
        let silence = silence_limit.map(|limit| last_inbound + limit);
        let deadline = [hello, silence].into_iter().flatten().min();
        let next = match deadline {
            // `next` is cancel-safe: a partly read frame stays buffered in tungstenite.
            Some(deadline) => match tokio::time::timeout_at(deadline, frames.next()).await {
                Ok(next) => next,
                Err(_) => {
                    if hello == Some(deadline) {
                        if let Flow::Close { code, reason } = session.hello_timed_out() {
                            return Ending::close(code, &reason);
                        }
                    } else if arrived.swap(false, Ordering::Relaxed) {
                        // Part of a frame came in since the last one: still arriving.
                        last_inbound = Instant::now();
                    } else {
                        tracing::debug!("closing: nothing received for two ping intervals");
                        return Ending::Close {
                            code: CLOSE_HEARTBEAT_TIMEOUT,
                            reason: "heartbeat timeout".to_owned(),
                            // Nobody is likely to read it; the client resumes from history.
                            flush: false,
                        };
                    }
                    continue;
                }
            },
            None => frames.next().await,
        };
        // Any frame is a sign of life, pongs and pings included (and its bytes with it).
        last_inbound = Instant::now();
        arrived.store(false, Ordering::Relaxed);
        let queued_before = peer.enqueued_total();
        let flow = match next {
            None => return Ending::Gone,
            Some(Ok(Message::Text(text))) => {
                let now = within_rate(session, Some(&text), last_inbound).await;
                session.on_text(&text, now)
            }
            Some(Ok(Message::Binary(_))) => {
                let now = within_rate(session, None, last_inbound).await;
                session.on_binary(now)
            }
            // tungstenite answers close frames itself; the stream ends on the next read.
            Some(Ok(Message::Close(frame))) => {
                session.client_closed(frame.map(|f| u16::from(f.code)));
                Flow::Continue
            }
            // tungstenite answers pings itself.
            Some(Ok(_)) => Flow::Continue,
            Some(Err(e)) => return Ending::from_read_error(e),
        };
        if let Flow::Close { code, reason } = flow {
            return Ending::close(code, &reason);
        }
        let queued = peer.enqueued_total();
        if queued != queued_before {
            answered = queued;
        }
    }
}

/// Waits until the writer has taken the first `answered` items queued for `peer` (the
/// answers to the frames read so far) into the socket's sink, ahead of anything read next.
/// `Ok(true)` if it waited.
///
/// The next frame may be the client's close, and tungstenite answers a close as it reads it;
/// after that nothing more can be sent. A client that wrote acknowledged messages and then
/// closed would miss their acks and report messages the relay stored as dropped (it may resend
/// them, as duplicates). So what came before a close is answered before the close is: the
/// rule docs/protocol.md gives servers. The wait is short unless the client does not read:
/// then, as in [`replies_sent`], a client that takes nothing for `silence_limit` is closed.
async fn answers_taken(
    peer: &Peer,
    answered: u64,
    silence_limit: Option<Duration>,
) -> Result<bool, Ending> {
    let mut waited = false;
    while peer.taken_total() < answered {
        waited = true;
        // The writer takes them without sending them until this reader has read on.
        peer.reader_waits_for(answered);
        let woken = writer_wait(peer, silence_limit, peer.taken_up_to(answered)).await;
        peer.reader_waits_for(0);
        woken?;
    }
    Ok(waited)
}

/// Waits while `peer` has as many replies it asked for queued as its reader lets pile up
/// (`max_queued_frames`: a client that keeps subscribing without reading is held there, its
/// requests left unread, instead of growing its queue). `Ok(true)` if it waited. A client
/// that reads nothing of them for `silence_limit` (the writer takes nothing) is as silent as
/// one that sends nothing: closed with 4000.
async fn replies_sent(peer: &Peer, silence_limit: Option<Duration>) -> Result<bool, Ending> {
    let mut waited = false;
    while peer.replies_pending() {
        waited = true;
        writer_wait(peer, silence_limit, peer.replies_sent()).await?;
    }
    Ok(waited)
}

/// One wait for the writer (until `woken`), bounded by `silence_limit`: a client of which the
/// writer took nothing for that long reads nothing, and is closed with 4000 as a silent one.
async fn writer_wait(
    peer: &Peer,
    silence_limit: Option<Duration>,
    woken: impl std::future::Future<Output = ()>,
) -> Result<(), Ending> {
    let Some(limit) = silence_limit else {
        woken.await;
        return Ok(());
    };
    let progress = peer.taken_total();
    if tokio::time::timeout(limit, woken).await.is_err() && peer.taken_total() == progress {
        tracing::debug!("closing: nothing queued for it taken for two ping intervals");
        return Err(Ending::Close {
            code: CLOSE_HEARTBEAT_TIMEOUT,
            reason: "heartbeat timeout".to_owned(),
            flush: false,
        });
    }
    Ok(())
}

/// Waits until the rate limit lets the frame that arrived at `arrived` (`text`, or `None`
/// for a binary frame) be handled, if it must wait (see [`Session::rate_wait`]); returns the
/// time to handle it at.
async fn within_rate(session: &Session, text: Option<&str>, arrived: Instant) -> Instant {
    let mut now = arrived;
    while let Some(at) = session.rate_wait(text, now) {
        tokio::time::sleep_until(at).await;
        now = Instant::now();
    }
    now
}

/// Sends queued frames (and pings) until the connection ends, in batches: what is queued, up
/// to [`MAX_BATCH`] frames, and what the reader is about to queue (see
/// [`PeerQueue::reader_reads_on`]), in one write.
///
/// This future is dropped whenever another branch of the connection's `select!` ends it, so
/// it never holds a frame taken from the queue across an await: it waits until the sink has
/// room, then takes a frame and hands it over with `start_send`, which does not wait. A
/// frame taken from the queue is thus always inside the sink, which [`close`] sends before
/// anything else; holding it in a pending `feed` instead lost it on a close with flush, and
/// the frames after it went out, so the client resumed past the gap.
async fn write_frames(
    sink: &mut SplitSink<Ws, Message>,
    queue: &mut PeerQueue,
    ping_interval: Option<Duration>,
) -> Ending {
    let mut pings = ping_interval.map(|every| {
        let mut interval = tokio::time::interval_at(Instant::now() + every, every);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        interval
    });
    let mut pings_sent = 0u64;
    loop {
        if ready(sink).await.is_err() {
            return Ending::Gone;
        }
        tokio::select! {
            // `recv` is cancel-safe, and what it returns goes into the sink at once.
            item = queue.recv() => {
                let Some(item) = item else { return Ending::Gone };
                if sink.start_send_unpin(Message::Text(item.into_frame())).is_err() {
                    return Ending::Gone;
                }
            }
            () = tick(&mut pings) => {
                // A ping frame, answered by every WebSocket stack (browsers, raw-mode
                // clients, tools) without the application: its pong keeps the connection
                // from being closed as silent. Then, for a client that said hello, the
                // protocol's `ping`, which clients that cannot see ping frames (browsers)
                // count as the server's life; a raw client would read it as data.
                // Made here, not taken from the queue: one lost to a close loses nothing.
                let ping = queue.said_hello().then(|| {
                    pings_sent += 1;
                    frame(&ServerMessage::Ping { id: Some(format!("s{pings_sent}")) })
                });
                let sent = async {
                    sink.feed(Message::Ping(Bytes::new())).await?;
                    match ping {
                        Some(ping) => sink.feed(Message::Text(ping)).await,
                        None => Ok(()),
                    }
                };
                if sent.await.is_err() {
                    return Ending::Gone;
                }
            }
        }
        let mut batch = 1;
        loop {
            // `ready` also moves the frame taken last from the sink's slot into tungstenite's
            // write buffer, so it is there before the writer yields to the reader below. (A
            // socket that pushes back keeps it in the slot while `ready` waits, as it always
            // did: a close read meanwhile would still overtake it.)
            if ready(sink).await.is_err() {
                return Ending::Gone;
            }
            if batch == MAX_BATCH {
                break;
            }
            if let Some(item) = queue.try_recv() {
                if sink
                    .start_send_unpin(Message::Text(item.into_frame()))
                    .is_err()
                {
                    return Ending::Gone;
                }
                batch += 1;
                continue;
            }
            // The queue is empty, but the reader waited for exactly what was just taken, and
            // reads its next frame now: under pipelined requests the answer to it comes in a
            // moment. Let it run first, so a burst of answers goes out in one write, not one
            // write each. (It waits for its answers to be taken, not sent, so this does not
            // hold it up; nor does it let a close overtake them: they are in the write buffer,
            // ahead of tungstenite's reply to a close.) Once the reader stops (nothing more
            // to read, or a wait of another kind), the batch is sent.
            if !queue.reader_reads_on() {
                break;
            }
            tokio::task::yield_now().await;
        }
        if sink.flush().await.is_err() {
            return Ending::Gone;
        }
    }
}

/// Waits until `sink` can take a frame (its previous one has moved on towards the socket).
async fn ready(sink: &mut SplitSink<Ws, Message>) -> Result<(), WsError> {
    std::future::poll_fn(|cx| sink.poll_ready_unpin(cx)).await
}

async fn tick(interval: &mut Option<Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Sends the close frame (after what is still queued, if `flush`), then half-closes and
/// waits for the client to hang up. Closing the socket at once instead could turn unread
/// input (say, the rest of an oversized frame) into a TCP reset that destroys the close
/// frame before the client reads it. After a read error the socket is drained raw:
/// tungstenite's reader may be mid-frame and would buffer whatever follows.
async fn close(
    mut sink: SplitSink<Ws, Message>,
    frames: SplitStream<Ws>,
    mut queue: PeerQueue,
    code: u16,
    reason: String,
    flush: bool,
) {
    let send = async {
        // A frame the writer took from the queue is still in `sink`; every send below
        // pushes it out first, so the order holds with or without `flush`.
        if flush {
            while let Some(item) = queue.try_recv() {
                sink.feed(Message::Text(item.into_frame())).await?;
            }
        }
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        sink.send(Message::Close(Some(frame))).await
    };
    match tokio::time::timeout(CLOSE_TIMEOUT, send).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "close frame not sent"),
        Err(_) => tracing::debug!("close frame not sent in time"),
    }
    let Ok(mut ws) = frames.reunite(sink) else {
        return;
    };
    let tcp = ws.get_mut();
    let linger = async {
        tcp.shutdown().await?;
        let mut scratch = [0u8; 1024];
        while tcp.read(&mut scratch).await? > 0 {}
        Ok::<_, io::Error>(())
    };
    // The outcome does not matter: the socket is dropped right after either way.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, linger).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::read_head;

    async fn head(raw: &str) -> RequestHead {
        match read_head(&mut raw.as_bytes()).await {
            Ok((head, _)) => head,
            Err(e) => panic!("bad test head: {e}"),
        }
    }

    #[tokio::test]
    async fn upgrade_requests_are_checked() {
        let good = "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        // The example from RFC 6455 §1.3.
        assert_eq!(
            accept_key(&head(good).await).ok().as_deref(),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        let old = good.replace("Version: 13", "Version: 8");
        assert_eq!(accept_key(&head(&old).await).err().map(|r| r.0), Some(426));
        let keyless = "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                       Sec-WebSocket-Version: 13\r\n\r\n";
        assert_eq!(
            accept_key(&head(keyless).await).err().map(|r| r.0),
            Some(400)
        );
    }
}
