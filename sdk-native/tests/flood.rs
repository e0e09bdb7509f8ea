//! A server that sends faster than the client can read: the client's timers must still fire
//! (the engine's contract: `handle_timeout` once its deadline passes), or a close, a request
//! or an acknowledgement waits for as long as the flood lasts.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;
use tether::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::timeout;

/// Reads a WebSocket upgrade request on `tcp` and answers it (101): from here on the test
/// speaks raw frames. `None` if the request or the answer did not go through.
async fn accept_upgrade(tcp: &mut tokio::net::TcpStream) -> Option<()> {
    let head = common::read_request_head(tcp).await?;
    let answer = common::upgrade_answer(&head);
    tcp.write_all(answer.as_bytes()).await.ok()
}

/// A WebSocket server that, once the handshake is done, writes small text frames as fast as
/// the socket takes them, reads (and ignores) everything the client sends, and never answers
/// a close. Aborting the returned task stops it and its connections.
async fn flooding_server(listener: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            connections.spawn(async move {
                if accept_upgrade(&mut tcp).await.is_none() {
                    return;
                }
                let (mut read, mut write) = tcp.into_split();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while matches!(read.read(&mut buf).await, Ok(n) if n > 0) {}
                });
                // 32,768 empty unmasked text frames per write.
                let frames: Vec<u8> = b"\x81\x00".repeat(32 * 1024);
                while write.write_all(&frames).await.is_ok() {}
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_times_out_while_the_server_floods_and_never_answers_it() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = flooding_server(listener).await;
    let (client, mut events) = Client::builder(format!("ws://{addr}"))
        .protocol(tether::Protocol::Tether)
        .close_timeout(Duration::from_millis(300))
        .connect()
        .unwrap();
    common::wait_open(&client).await;
    // An app that keeps up with its events.
    let reader = tokio::spawn(async move { while events.recv().await.is_some() {} });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The close timeout is 300 ms; with timers starved by the flood it took 0.7 to 3.5 s. No
    // wall-clock bound tells those apart on a loaded machine (a speed check in a test): this
    // asserts that the close ends, within a bound far above both.
    let closed = timeout(Duration::from_secs(10), client.close()).await;
    server.abort();
    reader.abort();
    closed.expect("close() resolves at the close timeout despite the flood");
}

/// Counts the text frames in what a client wrote (masked frames, as clients send them).
fn client_text_frames(bytes: &[u8]) -> usize {
    client_opcodes(bytes)
        .iter()
        .filter(|&&opcode| opcode == 1)
        .count()
}

/// A loopback listener whose connections have a 4 KiB receive buffer: a peer that stops
/// reading makes the client's socket push back soon.
fn slow_reading_listener() -> TcpListener {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    socket.listen(8).unwrap()
}

/// The app closes while its socket pushes back (the server reads nothing, nor answers the
/// close): every message the client accepted was either written or reported dropped, none
/// forgotten with the connection released at the close timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_reports_what_the_socket_never_took() {
    use std::collections::BTreeSet;
    let listener = slow_reading_listener();
    let addr = listener.local_addr().unwrap();
    let (read_tx, read_rx) = tokio::sync::oneshot::channel();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        accept_upgrade(&mut tcp).await.unwrap();
        // Reads nothing until the client has closed, then everything its socket took.
        let _ = go_rx.await;
        let mut all = Vec::new();
        let _ = timeout(Duration::from_secs(10), tcp.read_to_end(&mut all)).await;
        let _ = read_tx.send(client_text_frames(&all));
    });
    let (client, mut events) = Client::builder(format!("ws://{addr}"))
        .close_timeout(Duration::from_millis(300))
        .outbox_max_messages(10_000)
        .outbox_max_bytes(64 << 20)
        .connect()
        .unwrap();
    common::wait_open(&client).await;
    let mut accepted = BTreeSet::new();
    for _ in 0..3000 {
        accepted.insert(client.send("x".repeat(1000)).unwrap());
        if accepted.len() % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    timeout(Duration::from_secs(5), client.close())
        .await
        .unwrap();
    let _ = go_tx.send(());
    let mut dropped = BTreeSet::new();
    while let Ok(event) = events.try_recv() {
        if let tether::Event::Dropped { ids, .. } = event {
            dropped.extend(ids);
        }
    }
    let written = timeout(Duration::from_secs(15), read_rx)
        .await
        .unwrap()
        .unwrap();
    server.abort();
    assert!(dropped.iter().all(|id| accepted.contains(id)));
    let outcome = format!(
        "{written} written, {} reported dropped, of {} accepted",
        dropped.len(),
        accepted.len()
    );
    // None forgotten. A message may be both: what tungstenite was writing when the link was
    // released (at most its 8 KiB write buffer, 9 of these frames) may have gone out whole.
    assert!(written + dropped.len() >= accepted.len(), "{outcome}");
    assert!(written + dropped.len() <= accepted.len() + 9, "{outcome}");
}

/// The heartbeat gives up on a connection whose server floods it and answers no ping; the
/// engine keeps that link for its close handshake (which the server never answers) while the
/// next attempt asks the token provider. The driver read the old link first on every turn,
/// so the provider's future, ready at once, was not polled until the close timeout released
/// the link: the new attempt failed at its connect timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_not_starved_by_the_flood_of_a_connection_being_closed() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = flooding_server(listener).await;
    let asked = Arc::new(AtomicU32::new(0));
    let counter = asked.clone();
    let heartbeat = tether::HeartbeatConfig {
        mode: tether::HeartbeatMode::PingFrame,
        interval: Duration::from_millis(100),
        max_missed: 1,
        any_frame_is_liveness: false,
        ..Default::default()
    };
    let (client, mut events) = Client::builder(format!("ws://{addr}"))
        .heartbeat(heartbeat)
        .close_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(1))
        .token_provider(move |_refresh| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, std::io::Error>("t".to_owned()) }
        })
        .connect()
        .unwrap();
    let mut causes = Vec::new();
    let outcome = timeout(Duration::from_secs(8), async {
        while let Some(event) = events.recv().await {
            if let tether::Event::ReconnectScheduled { cause, .. } = event {
                causes.push(cause.to_string());
                if causes.len() == 2 {
                    return;
                }
            }
        }
    })
    .await;
    server.abort();
    let _ = timeout(Duration::from_secs(1), client.shutdown()).await;
    assert!(outcome.is_ok(), "two reconnects within 8 s: {causes:?}");
    // Each connection is given up by the heartbeat, none by the connect timeout.
    assert_eq!(
        causes,
        ["heartbeat timeout", "heartbeat timeout"],
        "{causes:?}"
    );
    assert!(asked.load(Ordering::SeqCst) >= 2);
}

/// The opcodes of the whole frames a client wrote (masked frames), in order.
fn client_opcodes(mut bytes: &[u8]) -> Vec<u8> {
    let mut opcodes = Vec::new();
    while bytes.len() >= 2 {
        let (len, mut at) = match bytes[1] & 0x7f {
            126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 if bytes.len() >= 10 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n if n < 126 => (n as usize, 2),
            _ => break,
        };
        at += 4; // the mask
        if bytes.len() < at + len {
            break;
        }
        opcodes.push(bytes[0] & 0x0f);
        bytes = &bytes[at + len..];
    }
    opcodes
}

/// The server closes while the client's socket pushes back (the server had stopped reading):
/// the client's close reply cannot be written at once. It was written once, and the socket
/// dropped with the reply still in tungstenite's buffer, so the server saw the connection
/// end without a close frame. It is written out once the server reads again (while the link
/// is not yet replaced by the next attempt's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reply_to_a_servers_close_is_written_out_when_the_socket_pushes_back() {
    let listener = slow_reading_listener();
    let addr = listener.local_addr().unwrap();
    let (close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
    let (read_tx, read_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        accept_upgrade(&mut tcp).await.unwrap();
        // Reads nothing until the client's socket pushes back, then closes (1000) and reads
        // everything until the client's end.
        let _ = close_rx.await;
        tcp.write_all(b"\x88\x02\x03\xe8").await.unwrap();
        // Not at once: the client reads the close while its socket still pushes back.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut all = Vec::new();
        let _ = timeout(Duration::from_secs(10), tcp.read_to_end(&mut all)).await;
        let _ = read_tx.send(client_opcodes(&all));
    });
    let (client, mut events) = Client::builder(format!("ws://{addr}"))
        .write_buffer_size(8 << 10)
        .outbox_max_messages(20_000)
        .outbox_max_bytes(64 << 20)
        // The next attempt 5 s away: the driver has one link slot, and an attempt opened
        // before the reply is out replaces the old link (and drops what it still held).
        .backoff_initial(Duration::from_secs(5))
        .jitter(tether::Jitter::None)
        .connect()
        .unwrap();
    common::wait_open(&client).await;
    // More than the kernel's buffers hold: the socket pushes back, and the rest stays in the
    // outbox once the link has written what it could.
    for _ in 0..16_000 {
        client.send("x".repeat(1000)).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(client.outbox_len() > 0, "the socket never pushed back");
    let _ = close_tx.send(());
    let closed = timeout(Duration::from_secs(5), async {
        while let Some(event) = events.recv().await {
            if matches!(event, tether::Event::ReconnectScheduled { .. }) {
                return;
            }
        }
    })
    .await;
    let opcodes = timeout(Duration::from_secs(15), read_rx).await;
    server.abort();
    let _ = timeout(Duration::from_secs(1), client.shutdown()).await;
    assert!(closed.is_ok(), "the client saw the server's close");
    let opcodes = opcodes.unwrap().unwrap();
    assert!(opcodes.len() > 1, "{} frames", opcodes.len());
    assert_eq!(
        opcodes.last(),
        Some(&8),
        "the last whole frame is the close reply"
    );
}
