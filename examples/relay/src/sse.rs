//! Server-Sent Events: `GET /sse/{channel}` streams one channel's messages, one event per
//! message (`id: <epoch>-<offset>`, `data: <message envelope>`), after a `retry:` hint, the
//! stream's starting position (an `event: position` whose `id:` names it and whose data is
//! the `subscribed` a WebSocket subscribe would get: [`SSE_POSITION_EVENT`]) and a replay of
//! the history after
//! `Last-Event-ID` (header, or `?lastEventId=` because a browser's
//! `EventSource` sends the header only on its own reconnects). The id carries the epoch so
//! that an id from before a restart is recognised as such (see
//! [`Hub::follow`](crate::hub::Hub::follow)). Idle streams get a `:keepalive` comment now and
//! then. A stream whose socket accepts no bytes for two keepalive intervals (its reader
//! stopped reading, or vanished without a FIN or RST) is ended, so it does not stay
//! subscribed forever.
//!
//! The body is delimited by closing the connection (`Connection: close`, no length, no
//! chunking): every HTTP/1.1 client reads such a body until EOF, and ending the stream is
//! then simply closing the socket.

use crate::http::RequestHead;
use crate::hub::StreamStart;
use crate::peer::{Outbound, Peer, PeerQueue};
use crate::server::{stopping, RunState, Shared};
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tether_core::protocol::{ServerMessage, SSE_POSITION_EVENT};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

/// How long ending a stream may take before the socket is dropped.
const END_TIMEOUT: Duration = Duration::from_secs(2);

/// Streams `channel` until the client goes away or the relay stops.
pub(crate) async fn serve(
    mut stream: TcpStream,
    head: RequestHead,
    channel: String,
    shared: Arc<Shared>,
    mut run_state: watch::Receiver<RunState>,
) -> io::Result<()> {
    let last_event_id = head
        .header("last-event-id")
        .map(str::to_owned)
        .or_else(|| head.query_param("lastEventId"))
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty());
    drop(head);

    let preamble = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
         Connection: close\r\nAccess-Control-Allow-Origin: *\r\nX-Accel-Buffering: no\r\n\r\n\
         retry: {}\n\n",
        shared.config.sse_retry.as_millis()
    );
    tokio::time::timeout(
        shared.config.handshake_timeout,
        stream.write_all(preamble.as_bytes()),
    )
    .await
    .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;

    let _open = shared.stats.connection_opened();
    // An event stream has no frame limit of its own: it is text over a response body.
    let (peer, mut queue) = Peer::with_limits(
        shared.next_peer_id(),
        shared.config.queue_limits(usize::MAX),
    );
    let start = shared.hub.follow(&peer, &channel, last_event_id.as_deref());
    let epoch = shared.hub.epoch();
    let position = position_event(epoch, &channel, start);
    tracing::debug!(
        peer = peer.id(),
        channel,
        ?last_event_id,
        position = position.trim_end(),
        "sse stream open"
    );
    let (mut reader, mut writer) = stream.split();
    let keepalive = shared.config.sse_keepalive;
    // Starts with the position event; outlives the writing, which a shutdown cancels.
    let mut unsent = Unsent::new(position.into_bytes());
    let end = tokio::select! {
        result = write_events(&mut writer, &mut queue, epoch, &mut unsent, keepalive) => {
            if let Err(e) = result {
                tracing::debug!(peer = peer.id(), error = %e, "sse stream write failed");
            }
            None
        }
        () = hung_up(&mut reader) => None,
        // A slow reader is cut off; its EventSource comes back with Last-Event-ID.
        () = peer.overflowed() => None,
        how = stopping(&mut run_state) => Some(how),
    };
    shared
        .hub
        .disconnect(peer.id(), std::iter::once(channel.as_str()));
    if end == Some(RunState::Draining) {
        // Graceful: what was accepted before the shutdown still goes out, then EOF. First
        // the rest of what the writer had taken from the queue (cut off mid-write, or not
        // begun), so that no event is lost or broken between the ones around it.
        drain_into(&mut unsent.buf, &mut queue, epoch, usize::MAX);
        let spread = restart_retry(
            shared.config.reconnect_after,
            shared.config.reconnect_window,
        );
        let finish = async {
            writer.write_all(unsent.rest()).await?;
            writer.write_all(spread.as_bytes()).await?;
            writer.shutdown().await
        };
        let _ = tokio::time::timeout(END_TIMEOUT, finish).await;
    }
    Ok(())
}

/// The last words of a stream a graceful shutdown ends: a `retry:` drawn from the reconnect
/// window (`reconnect_after..=reconnect_window`), what a WebSocket's 1012 close advises. An
/// event stream has no close reason to carry the window, so without it every client came
/// back at its own backoff's first delay, together; a client takes `retry:` as the least it
/// waits, so the draws spread them over the window. The stream's next start sets the usual
/// `retry:` again.
fn restart_retry(after: Duration, window: Duration) -> String {
    let (low, high) = (after.as_millis() as u64, window.as_millis() as u64);
    let ms = if high > low {
        rand::random_range(low..=high)
    } else {
        low
    };
    format!("retry: {ms}\n\n")
}

/// Where the stream starts (`SSE_POSITION_EVENT`, documented there): an event named
/// `position` whose id becomes the client's last event id, so it resumes from here even if
/// its stream drops before a message arrives, and whose data is the `subscribed` message a
/// WebSocket subscribe would get (its `recovered` false after a resume that could not be
/// complete). Named, so that a browser dispatches it to a Tether driver listening for the
/// name and to nobody else.
fn position_event(epoch: &str, channel: &str, start: StreamStart) -> String {
    let subscribed = ServerMessage::Subscribed {
        channel: channel.to_owned(),
        offset: start.offset,
        epoch: Some(epoch.to_owned()),
        recovered: start.recovered,
    };
    format!(
        "event: {SSE_POSITION_EVENT}\nid: {epoch}-{}\ndata: {}\n\n",
        start.offset,
        subscribed.encode()
    )
}

/// Bytes of events taken from the queue and not all written yet, with how many were. Kept
/// outside the writing future: a graceful shutdown cancels that future wherever it is, and
/// then sends the rest of these before the events still queued. Dropped with the writing, a
/// batch cut off mid-write (or not begun) left a gap, or a broken event, between the events
/// before it and those the shutdown still sent, and the client resumed past it.
#[derive(Debug)]
struct Unsent {
    buf: Vec<u8>,
    written: usize,
}

impl Unsent {
    fn new(buf: Vec<u8>) -> Unsent {
        Unsent { buf, written: 0 }
    }

    fn rest(&self) -> &[u8] {
        &self.buf[self.written..]
    }
}

/// Writes what `unsent` starts with (the position event), then the queued events as they
/// come, and keepalives while there are none.
async fn write_events(
    writer: &mut (impl AsyncWrite + Unpin),
    queue: &mut PeerQueue,
    epoch: &str,
    unsent: &mut Unsent,
    keepalive: Duration,
) -> io::Result<()> {
    let start = tokio::time::Instant::now() + keepalive;
    let mut keepalives = tokio::time::interval_at(start, keepalive);
    keepalives.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let stall = keepalive.saturating_mul(2);
    write_all_within(writer, unsent, stall).await?;
    loop {
        tokio::select! {
            item = queue.recv() => {
                let Some(item) = item else { return Ok(()) };
                encode(&mut unsent.buf, epoch, item);
                drain_into(&mut unsent.buf, queue, epoch, 63);
                write_all_within(writer, unsent, stall).await?;
                // Activity counts as keepalive.
                keepalives.reset();
            }
            _ = keepalives.tick() => {
                unsent.buf.extend_from_slice(b":keepalive\n\n");
                write_all_within(writer, unsent, stall).await?;
            }
        }
    }
}

/// Writes all of `unsent`, counting each write in it as it goes (so a cancelled call leaves
/// exactly the unwritten rest), and then empties it, freeing the batch. Fails with
/// `TimedOut` once the socket has accepted nothing for `stall`. Progress, not the total, is
/// bounded: a large replay to a slow but reading client still goes out.
async fn write_all_within(
    writer: &mut (impl AsyncWrite + Unpin),
    unsent: &mut Unsent,
    stall: Duration,
) -> io::Result<()> {
    while !unsent.rest().is_empty() {
        let written = tokio::time::timeout(stall, writer.write(unsent.rest()))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the reader stalled"))??;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        unsent.written += written;
    }
    *unsent = Unsent::new(Vec::new());
    Ok(())
}

/// Encodes up to `max` already queued events into `buf`, so a burst goes out in one write.
fn drain_into(buf: &mut Vec<u8>, queue: &mut PeerQueue, epoch: &str, max: usize) {
    for _ in 0..max {
        let Some(item) = queue.try_recv() else { break };
        encode(buf, epoch, item);
    }
}

/// One SSE event per channel message. The envelope is compact JSON (serde_json never
/// emits a raw newline), so one `data:` line holds it.
fn encode(buf: &mut Vec<u8>, epoch: &str, item: Outbound) {
    match item {
        Outbound::Message(stored) => {
            buf.extend_from_slice(format!("id: {epoch}-{}\ndata: ", stored.offset).as_bytes());
            buf.extend_from_slice(stored.frame.as_bytes());
            buf.extend_from_slice(b"\n\n");
        }
        // Streams are not presence members, so the hub sends them nothing else.
        Outbound::Frame(_) => {}
    }
}

/// Resolves when the client closes its side (or the socket fails). SSE clients send
/// nothing after the request, so anything read is discarded.
async fn hung_up(reader: &mut (impl AsyncRead + Unpin)) {
    let mut scratch = [0u8; 256];
    while let Ok(n) = reader.read(&mut scratch).await {
        if n == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Stored;
    use tokio_tungstenite::tungstenite::Utf8Bytes;

    #[test]
    fn a_restart_retry_is_drawn_from_the_window() {
        let ms = |a, b| restart_retry(Duration::from_millis(a), Duration::from_millis(b));
        let draws: std::collections::BTreeSet<String> = (0..200).map(|_| ms(100, 300)).collect();
        for draw in &draws {
            let n: u64 = draw
                .strip_prefix("retry: ")
                .and_then(|r| r.strip_suffix("\n\n"))
                .unwrap()
                .parse()
                .unwrap();
            assert!((100..=300).contains(&n), "{draw:?}");
        }
        assert!(draws.len() > 50, "spread, not one value: {}", draws.len());
        assert_eq!(ms(500, 500), "retry: 500\n\n");
    }

    #[test]
    fn events_carry_the_epoch_and_offset_as_id() {
        let mut buf = Vec::new();
        encode(
            &mut buf,
            "e1",
            Outbound::Message(Stored {
                offset: 7,
                frame: Utf8Bytes::from(r#"{"type":"message"}"#),
            }),
        );
        encode(&mut buf, "e1", Outbound::Frame(Utf8Bytes::from("ignored")));
        assert_eq!(buf, b"id: e1-7\ndata: {\"type\":\"message\"}\n\n");
    }
}
