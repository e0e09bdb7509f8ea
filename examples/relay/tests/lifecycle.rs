//! Stopping the relay: graceful shutdown tells clients when to come back, abort vanishes
//! like a crash, and dropping the handle stops the relay too.
#![allow(clippy::unwrap_used)]

mod common;

use common::{relay, within, Client, Sse};
use std::time::Duration;
use tether_relay::RelayConfig;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn graceful_shutdown_closes_with_1012_and_a_reconnect_window() {
    let relay = relay(RelayConfig {
        reconnect_window: Duration::from_millis(1234),
        ..RelayConfig::default()
    })
    .await;
    let url = relay.ws_url();
    let addr = relay.local_addr();
    let mut a = Client::hello(&url, "a").await;
    a.subscribe("room", None, None).await;
    let mut b = Client::hello(&url, "b").await;
    b.barrier().await;
    assert_eq!(relay.open_connections(), 2);

    let shutdown = tokio::spawn(relay.shutdown());
    // Each client is dropped after the handshake, as real clients do, which lets the relay
    // finish without waiting out its close timeout.
    for mut client in [a, b] {
        let close = client.recv_close().await;
        assert_eq!(u16::from(close.code), 1012);
        let advice: serde_json::Value = serde_json::from_str(&close.reason).unwrap();
        assert_eq!(advice, serde_json::json!({"reconnect_within_ms": 1234}));
        // The client completes the close handshake; the stream then ends.
        while let Some(Ok(_)) = client.next_raw().await {}
    }
    within("shutdown", shutdown).await.unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the port is released"
    );
}

#[tokio::test]
async fn abort_drops_connections_without_a_close_frame() {
    let relay = relay(RelayConfig::default()).await;
    let mut c = Client::hello(&relay.ws_url(), "c").await;
    c.subscribe("room", None, None).await;
    within("abort", relay.abort()).await;
    match c.next_raw().await {
        None | Some(Err(_)) => {}
        Some(Ok(Message::Close(frame))) => panic!("abort sent a close frame: {frame:?}"),
        Some(Ok(other)) => panic!("unexpected message after abort: {other:?}"),
    }
}

#[tokio::test]
async fn dropping_the_handle_stops_the_relay() {
    let relay = relay(RelayConfig::default()).await;
    let addr = relay.local_addr();
    let mut c = Client::hello(&relay.ws_url(), "c").await;
    c.barrier().await;
    drop(relay);
    assert_eq!(u16::from(c.recv_close().await.code), 1012);
    while let Some(Ok(_)) = c.next_raw().await {}
    // The listener goes away with the accept loop; poll briefly for that.
    within("the listener to close", async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// A stream's last words are a `retry:` drawn from the reconnect window, the advice a
/// WebSocket gets in its 1012 close: without it, every SSE client came back at once.
#[tokio::test]
async fn graceful_shutdown_ends_sse_streams_with_a_retry_from_the_reconnect_window() {
    let relay = relay(RelayConfig {
        reconnect_after: Duration::from_millis(1000),
        reconnect_window: Duration::from_millis(1234),
        ..RelayConfig::default()
    })
    .await;
    let mut sse = Sse::get(&relay, "/sse/room", &[]).await;
    assert_eq!(sse.status, 200);
    let _retry = sse.next_event().await;
    // Where the stream starts: a `position` event naming it, with the `subscribed` a
    // WebSocket subscribe would get (a new stream: not a resume).
    let position = sse.next_event().await.unwrap();
    assert!(
        matches!(position.as_slice(), [(event, name), (id, _), (data, subscribed)]
            if event == "event" && name == "position" && id == "id" && data == "data"
                && subscribed.contains(r#""type":"subscribed""#)
                && subscribed.contains(r#""recovered":false"#)),
        "{position:?}"
    );
    let shutdown = tokio::spawn(relay.shutdown());
    let rest = sse.read_to_end().await;
    let retry: u64 = rest
        .strip_prefix("retry: ")
        .and_then(|r| r.strip_suffix("\n\n"))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("{rest:?}"));
    assert!((1000..=1234).contains(&retry), "{retry}");
    within("shutdown", shutdown).await.unwrap();
}

/// Publishes 150 messages of 48 KiB (offsets 1 to 150) to `firehose`, more than a reader's
/// socket holds, and waits until the relay has taken them all. Returns how many.
async fn fill_firehose(publisher: &mut Client) -> u64 {
    let payload = serde_json::json!("y".repeat(48 * 1024));
    let total = 150u64;
    for i in 1..=total {
        publisher
            .publish("firehose", &format!("f{i}"), payload.clone(), false)
            .await;
    }
    publisher.barrier().await;
    total
}

/// A subscriber whose socket is full when the relay shuts down gracefully still gets every
/// message, in order, before the 1012: the frame the writer was holding when the shutdown
/// came is not dropped while the ones after it go out.
#[tokio::test]
async fn graceful_shutdown_under_backpressure_sends_every_queued_message_in_order() {
    use futures_util::StreamExt;

    let relay = relay(RelayConfig {
        rate_limit: None,
        ..RelayConfig::default()
    })
    .await;
    let url = relay.ws_url();
    let mut slow = Client::slow_reader(&relay).await;
    slow.subscribe("firehose", None, None).await;

    let mut publisher = Client::hello(&url, "publisher").await;
    let total = fill_firehose(&mut publisher).await;

    let shutdown = tokio::spawn(relay.shutdown());
    let (offsets, close) = slow.offsets_until_close().await;
    assert_eq!(u16::from(close.code), 1012);
    assert_eq!(
        offsets,
        (1..=total).collect::<Vec<_>>(),
        "no gap, nothing missing"
    );
    within("both connections closed", async {
        while let Some(Ok(_)) = publisher.ws.next().await {}
        while let Some(Ok(_)) = slow.ws.next().await {}
    })
    .await;
    within("shutdown", shutdown).await.unwrap();
}

/// An SSE reader whose socket is full when the relay shuts down gracefully still gets every
/// message, whole and in order, before the end of the stream: the events the writer had
/// taken from the queue and not yet written (all of them, or the rest of one cut mid-write)
/// go out before the ones still queued, not lost between them.
#[tokio::test]
async fn graceful_shutdown_of_a_backed_up_sse_stream_sends_every_queued_message_whole() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let relay = relay(RelayConfig {
        rate_limit: None,
        ..RelayConfig::default()
    })
    .await;
    // A reader with a tiny receive window, which reads nothing until the shutdown.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut reader = within("tcp connect", socket.connect(relay.local_addr()))
        .await
        .unwrap();
    reader
        .write_all(b"GET /sse/firehose HTTP/1.1\r\nHost: relay\r\n\r\n")
        .await
        .unwrap();
    let mut publisher = Client::hello(&relay.ws_url(), "publisher").await;
    // The stream must be attached before the first publish: the relay writes its `position`
    // event right after it follows the channel.
    let mut start = Vec::new();
    within("the stream's position event", async {
        let mut chunk = [0u8; 1024];
        while !String::from_utf8_lossy(&start).contains("event: position") {
            let n = reader.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the stream ended before its position event");
            start.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    let total = fill_firehose(&mut publisher).await;
    // Let the writer block on the full socket.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let shutdown = tokio::spawn(relay.shutdown());
    let mut body = String::from_utf8(start).unwrap();
    within("end of stream", reader.read_to_string(&mut body))
        .await
        .unwrap();
    let (_head, events) = body.split_once("\r\n\r\n").unwrap();
    let mut offsets = Vec::new();
    for event in events.split("\n\n").filter(|e| !e.is_empty()) {
        if event.starts_with("retry:") || event.starts_with("event: position") {
            continue;
        }
        let (id, data) = event
            .split_once('\n')
            .unwrap_or_else(|| panic!("a broken event: {:.200}", event));
        let offset: u64 = id
            .rsplit_once('-')
            .and_then(|(_, o)| o.parse().ok())
            .unwrap_or_else(|| panic!("a broken id line: {:.200}", id));
        let message = data
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("event {offset}: a broken data line: {:.200}", data));
        assert!(
            tether_core::protocol::ServerMessage::decode(message).is_ok(),
            "event {offset}: data is not a whole message: {:.200}",
            message
        );
        offsets.push(offset);
    }
    assert_eq!(
        offsets,
        (1..=total).collect::<Vec<_>>(),
        "no gap, nothing missing"
    );
    within("publisher closed", async {
        use futures_util::StreamExt;
        while let Some(Ok(_)) = publisher.ws.next().await {}
    })
    .await;
    within("shutdown", shutdown).await.unwrap();
}
