//! The native client against a server that never reads what the client writes, yet keeps
//! writing to it: what the client owes it in return (the pong to each of its application
//! pings) must not pile up in memory without bound behind a socket that takes nothing.
#![allow(clippy::unwrap_used)]

use futures_util::SinkExt;
use std::time::Duration;
use tether::{Client, Protocol};
use tether_tests::listen::Listener;
use tether_tests::wait::eventually;
use tokio_tungstenite::tungstenite::Message;

/// Pings the server sends, each with an id of [`ID_LEN`] bytes that its pong carries back:
/// about 48 MB of pongs, several times what loopback sockets can hold unread.
const PINGS: u64 = 48_000;
const ID_LEN: usize = 1_000;

/// Completes the handshake, sends `PINGS` application pings, and never reads a byte: the
/// client's hello and pongs stay in the sockets' buffers until they are full.
async fn pinging_server() -> Listener {
    Listener::start(|tcp| async move {
        let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
            return;
        };
        let id = "7".repeat(ID_LEN);
        let ping = format!(r#"{{"type":"ping","id":"{id}"}}"#);
        for _ in 0..PINGS {
            // Sending never reads: what the client writes is left unread.
            if ws.feed(Message::text(ping.clone())).await.is_err() {
                return;
            }
        }
        let _ = ws.flush().await;
        // Held open, unread, until the test drops the server.
        std::future::pending::<()>().await;
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn pongs_owed_to_a_server_that_never_reads_do_not_pile_up() {
    let server = pinging_server().await;
    let (client, _events) = Client::builder(format!("ws://{}/", server.addr()))
        .protocol(Protocol::Tether)
        .connect()
        .unwrap();
    let all_read = eventually(Duration::from_secs(60), || {
        client.stats().frames_received >= PINGS
    })
    .await;
    assert!(all_read, "read {} pings", client.stats().frames_received);
    let stats = client.stats();
    // Every pong handed to the link is kept until the socket takes it: what the operating
    // system can hold unread (a few MB on loopback), and one pong more, is all there is room
    // for.
    let bound = 16 << 20;
    assert!(
        stats.bytes_sent < bound,
        "{} pongs ({} bytes) handed to a socket that takes nothing",
        stats.frames_sent,
        stats.bytes_sent
    );
    client.shutdown().await;
}
