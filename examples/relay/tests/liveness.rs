//! Liveness: connections whose peer went silent (a network that vanished without a FIN or
//! RST) are found and closed, so their subscriptions and presence do not last forever;
//! connections whose peer answers stay open.
#![allow(clippy::unwrap_used)]

mod common;

use common::{relay, within, Client};
use futures_util::StreamExt;
use serde_json::json;
use std::time::Duration;
use tether_core::protocol::{ClientMessage, PresenceChange, ServerMessage};
use tether_relay::RelayConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

const PING: Duration = Duration::from_millis(200);

fn config() -> RelayConfig {
    RelayConfig {
        ping_interval: Some(PING),
        presence_grace: Duration::from_millis(100),
        ..RelayConfig::default()
    }
}

/// Reads `client` until `want` arrives, answering the relay's pings as the SDK does; the
/// whole wait is bounded (pings alone would keep it going).
async fn recv_until(client: &mut Client, want: impl Fn(&ServerMessage) -> bool) {
    within("the awaited message", async {
        loop {
            match client.recv().await {
                msg if want(&msg) => return,
                ServerMessage::Ping { id } => client.send(ClientMessage::Pong { id }).await,
                _ => {}
            }
        }
    })
    .await
}

/// A raw TCP connection to `relay` that has sent a WebSocket upgrade request: from here on
/// the test speaks (or withholds) raw frames.
async fn raw_upgrade(relay: &tether_relay::RelayHandle) -> TcpStream {
    let mut tcp = within("tcp connect", TcpStream::connect(relay.local_addr()))
        .await
        .unwrap();
    tcp.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    tcp
}

/// The head of a client's binary frame of `len` bytes (16-bit length), masked with a zero
/// mask, so the payload follows as it is.
fn binary_frame_head(len: u16) -> Vec<u8> {
    let mut head = vec![0x82, 0x80 | 126];
    head.extend_from_slice(&len.to_be_bytes());
    head.extend_from_slice(&[0; 4]);
    head
}

#[tokio::test]
async fn a_silent_connection_is_closed_with_4000_and_its_member_leaves() {
    let relay = relay(config()).await;
    let url = relay.ws_url();
    let mut ghost = Client::hello(&url, "ghost").await;
    ghost.subscribe("room", None, None).await;
    // From here on the ghost reads and sends nothing: not even the automatic answers to
    // ping frames, which need the stream to be polled.
    let silent_since = Instant::now();
    let mut watcher = Client::hello(&url, "watcher").await;
    let joined = watcher.subscribe("room", None, None).await;
    assert_eq!(joined.members, ["ghost", "watcher"]);

    recv_until(&mut watcher, |m| {
        *m == ServerMessage::Presence {
            channel: "room".into(),
            change: PresenceChange::Leave("ghost".into()),
        }
    })
    .await;
    let after = silent_since.elapsed();
    // Two silent intervals, then the 100 ms grace; generous slack for a loaded machine.
    assert!(
        after >= PING * 2 && after < PING * 2 + Duration::from_millis(100) + Duration::from_secs(2),
        "leave after {after:?}"
    );

    // What the ghost would have read: pings, then the close that makes the SDK reconnect.
    let close = ghost.recv_close().await;
    assert_eq!(u16::from(close.code), 4000);
    assert_eq!(close.reason.as_str(), "heartbeat timeout");

    // The watcher, answering pings all along, is still served.
    watcher.barrier().await;
    common::stop(relay, [ghost, watcher]).await;
}

#[tokio::test]
async fn a_raw_socket_silent_after_the_handshake_is_closed() {
    let relay = relay(config()).await;
    let mut tcp = raw_upgrade(&relay).await;
    let start = Instant::now();
    // Everything the relay sends until it closes: the 101 head, pings, the close frame.
    let mut received = Vec::new();
    within(
        "the relay to close the silent socket",
        tcp.read_to_end(&mut received),
    )
    .await
    .unwrap();
    let after = start.elapsed();
    assert!(
        after >= PING * 2 && after < PING * 2 + Duration::from_secs(2),
        "closed after {after:?}"
    );
    assert!(received.starts_with(b"HTTP/1.1 101 "));
    // An unmasked server close frame with code 4000 (0x0fa0) and its reason.
    let close = [&[0x88, 2 + 17, 0x0f, 0xa0][..], b"heartbeat timeout"].concat();
    assert!(
        received.windows(close.len()).any(|w| w == close.as_slice()),
        "no close 4000 in {received:?}"
    );
    drop(tcp);
    wait_for_connections(&relay, 0).await;
    within("shutdown", relay.shutdown()).await;
}

/// A large message on a slow uplink arrives for longer than the silence limit: its bytes are
/// a sign of life (the client's pong can only follow the frame it is writing), or the relay
/// closes the connection mid-message, and again after every reconnect.
#[tokio::test]
async fn a_large_message_arriving_slowly_is_not_taken_for_silence() {
    let relay = relay(config()).await;
    let mut tcp = raw_upgrade(&relay).await;
    // One masked binary frame of 60,000 bytes (mask 0: the payload as it is), written 1,000
    // bytes every 20 ms: 1.2 s, three times the 400 ms silence limit.
    let mut frame = binary_frame_head(60_000);
    frame.extend(std::iter::repeat_n(b'x', 60_000));
    let start = Instant::now();
    for piece in frame.chunks(1_000) {
        tcp.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(start.elapsed() > PING * 3, "the upload was not slow enough");
    // Then a close (1000), and everything the relay sent until it hung up.
    tcp.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8])
        .await
        .unwrap();
    let mut received = Vec::new();
    within("the relay to close", tcp.read_to_end(&mut received))
        .await
        .unwrap();
    let heartbeat_close = [&[0x88, 2 + 17, 0x0f, 0xa0][..], b"heartbeat timeout"].concat();
    assert!(
        !received
            .windows(heartbeat_close.len())
            .any(|w| w == heartbeat_close.as_slice()),
        "closed as silent mid-message"
    );
    // The relay answered our close with its own (1000).
    assert!(
        received.windows(4).any(|w| w == [0x88, 2, 0x03, 0xe8]),
        "no close 1000 in the {} bytes received",
        received.len()
    );
    drop(tcp);
    wait_for_connections(&relay, 0).await;
    within("shutdown", relay.shutdown()).await;
}

/// The bytes of a frame keep a connection open only while they keep coming: a client whose
/// network vanishes mid-message is still closed with 4000, at most twice the silence limit
/// after its last byte (the flag seen at one deadline may be that old).
#[tokio::test]
async fn a_client_silent_in_the_middle_of_a_frame_is_still_closed() {
    let relay = relay(config()).await;
    let mut tcp = raw_upgrade(&relay).await;
    // The head of a 60,000-byte masked binary frame and 5,000 bytes of it, over 100 ms; then
    // nothing more, ever.
    let mut frame = binary_frame_head(60_000);
    frame.extend(std::iter::repeat_n(b'x', 5_000));
    for piece in frame.chunks(1_000) {
        tcp.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last_byte = Instant::now();
    let mut received = Vec::new();
    within("the relay to close", tcp.read_to_end(&mut received))
        .await
        .unwrap();
    let after = last_byte.elapsed();
    let limit = PING * 2;
    assert!(
        after >= limit - Duration::from_millis(50) && after < limit * 2 + Duration::from_secs(2),
        "closed {after:?} after the last byte"
    );
    let close = [&[0x88, 2 + 17, 0x0f, 0xa0][..], b"heartbeat timeout"].concat();
    assert!(
        received.windows(close.len()).any(|w| w == close.as_slice()),
        "no close 4000 in the {} bytes received",
        received.len()
    );
    drop(tcp);
    wait_for_connections(&relay, 0).await;
    within("shutdown", relay.shutdown()).await;
}

#[tokio::test]
async fn a_client_that_answers_pings_stays_connected() {
    let relay = relay(config()).await;
    let url = relay.ws_url();
    let mut idle = Client::hello(&url, "idle").await;
    idle.subscribe("room", None, None).await;
    // Five intervals of idleness in which the client only answers the relay's pings.
    let pinged = within("five pings", async {
        let mut pings = 0;
        while pings < 5 {
            if let ServerMessage::Ping { id } = idle.recv().await {
                pings += 1;
                idle.send(ClientMessage::Pong { id }).await;
            }
        }
        pings
    })
    .await;
    assert_eq!(pinged, 5);
    let mut publisher = Client::hello(&url, "publisher").await;
    publisher.publish_acked("room", "p1", json!(1)).await;
    recv_until(&mut idle, |m| matches!(m, ServerMessage::Message { .. })).await;
    common::stop(relay, [idle, publisher]).await;
}

#[tokio::test]
async fn a_raw_client_gets_ping_frames_only_and_stays_connected() {
    // A client that never says hello (raw mode: any WebSocket client) and only reads, as
    // tungstenite does, answering ping frames by itself.
    let relay = relay(config()).await;
    let mut raw = Client::connect(&relay.ws_url()).await;
    // Three pings (a protocol ping would come with each), counted rather than timed: a
    // loaded machine may stretch the intervals. Bounded by a generous deadline.
    let until = Instant::now() + PING * 25;
    let mut pings = 0;
    while pings < 3 {
        match tokio::time::timeout_at(until, raw.ws.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(Message::Text(text)))) => {
                panic!("a protocol frame injected into a raw client's data: {text}")
            }
            Ok(other) => panic!("the relay ended a raw client that answers pings: {other:?}"),
            Err(_) => panic!("{pings} ping frames in 25 intervals"),
        }
    }
    // Three intervals, more than the two after which a silent connection is closed.
    assert_eq!(relay.open_connections(), 1);
    // Once it says hello it speaks the protocol, and gets the protocol's pings too.
    raw.send(ClientMessage::Hello {
        client_id: "late".into(),
        token: None,
        instance: None,
    })
    .await;
    assert!(matches!(
        raw.recv().await,
        ServerMessage::Ping { id: Some(_) }
    ));
    common::stop(relay, [raw]).await;
}

#[tokio::test]
async fn pings_can_be_turned_off() {
    // Three intervals: with pings on, a ping (and, unanswered, the close) comes within them.
    let window = PING * 3;
    for (interval, expect_traffic) in [(Some(PING), true), (None, false)] {
        let relay = relay(RelayConfig {
            ping_interval: interval,
            ..config()
        })
        .await;
        let mut quiet = Client::hello(&relay.ws_url(), "quiet").await;
        quiet.barrier().await;
        let next = tokio::time::timeout(window, quiet.ws.next()).await;
        assert_eq!(next.is_ok(), expect_traffic, "{interval:?}: {next:?}");
        common::stop(relay, [quiet]).await;
    }
}

#[tokio::test]
async fn an_sse_stream_whose_reader_stalls_is_ended() {
    let keepalive = Duration::from_millis(100);
    let relay = relay(RelayConfig {
        sse_keepalive: keepalive,
        rate_limit: None,
        ..RelayConfig::default()
    })
    .await;
    // A tiny receive window, and a reader that never reads past the response head.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = within("tcp connect", socket.connect(relay.local_addr()))
        .await
        .unwrap();
    tcp.write_all(b"GET /sse/firehose HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    within("the response head", tcp.read_exact(&mut head))
        .await
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");

    let mut publisher = Client::hello(&relay.ws_url(), "publisher").await;
    wait_for_connections(&relay, 2).await;
    // Far more than the socket buffers hold, far fewer than the queue limit: only a write
    // timeout can end this stream.
    let payload = json!("z".repeat(256 * 1024));
    for i in 0..40 {
        publisher
            .publish("firehose", &format!("f{i}"), payload.clone(), false)
            .await;
    }
    publisher.barrier().await;
    // The stalled stream is dropped (two keepalive intervals without progress), leaving
    // only the publisher.
    wait_for_connections(&relay, 1).await;
    drop(tcp);
    common::stop(relay, [publisher]).await;
}

async fn wait_for_connections(relay: &tether_relay::RelayHandle, n: usize) {
    within("the open connection count", async {
        while relay.open_connections() != n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
