//! A server that sends faster than the client can read: the client's timers must still fire
//! (the engine's contract: `handle_timeout` once its deadline passes), or a close, a request
//! or an acknowledgement waits for as long as the flood lasts.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};
use tether::{Client, State};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

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
                let Some(head) = common::read_request_head(&mut tcp).await else {
                    return;
                };
                let key = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("sec-websocket-key")
                            .then(|| value.trim().to_owned())
                    })
                    .unwrap_or_default();
                let answer = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                    derive_accept_key(key.as_bytes())
                );
                if tcp.write_all(answer.as_bytes()).await.is_err() {
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
    let mut state = client.watch_state();
    timeout(Duration::from_secs(5), state.wait_for(State::is_open))
        .await
        .unwrap()
        .unwrap();
    // An app that keeps up with its events.
    let reader = tokio::spawn(async move { while events.recv().await.is_some() {} });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let closed = timeout(Duration::from_secs(5), client.close()).await;
    server.abort();
    reader.abort();
    let reason = closed.expect("close() resolves at the close timeout despite the flood");
    // The close timeout is 300 ms; with timers starved by the flood it took 0.7 to 3.5 s.
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "closed after {:?}: {reason}",
        started.elapsed()
    );
}
