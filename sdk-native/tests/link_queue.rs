//! What happens to frames the WebSocket link holds when its connection is replaced: the
//! link reports the bytes its socket took (`Engine::transport_progress`), the engine keeps
//! messages until then and re-sends the rest on the next connection. (The engine used to count
//! a message settled when it handed the frame over, and a link whose socket pushed back lost
//! its whole queue, unreported, when the heartbeat gave up on the connection.)
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tether::Client;
use tokio::net::TcpListener;
use tokio::time::timeout;

/// A server whose first connection stops reading for `stall` (a slow peer: TCP pushes back),
/// then reads everything that connection carried until it ends; later connections read all
/// the time. Returns every text message received, over every connection.
async fn slow_then_reading_server(
    stall: Duration,
) -> (String, Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    use futures_util::StreamExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let record = received.clone();
    let server = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        for n in 0.. {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let record = record.clone();
            connections.spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                if n == 0 {
                    // Read raw, never writing (no pong, no close answer): nothing this side
                    // sends can make the client's kernel reset the connection and discard
                    // what it delivered.
                    tokio::time::sleep(stall).await;
                    let mut tcp = ws.into_inner();
                    let mut bytes = Vec::new();
                    let _ = tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut bytes).await;
                    record.lock().unwrap().extend(client_text_frames(&bytes));
                    return;
                }
                while let Some(Ok(msg)) = ws.next().await {
                    if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
                        record.lock().unwrap().push(t.as_str().to_owned());
                    }
                }
            });
        }
    });
    (url, received, server)
}

/// The complete, unfragmented text frames in `bytes` as a client sends them (masked), unmasked.
fn client_text_frames(mut bytes: &[u8]) -> Vec<String> {
    let mut texts = Vec::new();
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0f;
        let masked = bytes[1] & 0x80 != 0;
        let (len, mut at) = match bytes[1] & 0x7f {
            126 if bytes.len() >= 4 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 if bytes.len() >= 10 => (
                usize::try_from(u64::from_be_bytes(bytes[2..10].try_into().unwrap())).unwrap(),
                10,
            ),
            n @ 0..=125 => (usize::from(n), 2),
            _ => break,
        };
        let mask = if masked {
            if bytes.len() < at + 4 {
                break;
            }
            at += 4;
            Some([bytes[at - 4], bytes[at - 3], bytes[at - 2], bytes[at - 1]])
        } else {
            None
        };
        if bytes.len() < at + len {
            break; // cut short
        }
        let mut payload = bytes[at..at + len].to_vec();
        if let Some(mask) = mask {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        if opcode == 1 {
            texts.push(String::from_utf8_lossy(&payload).into_owned());
        }
        bytes = &bytes[at + len..];
    }
    texts
}

/// A peer that is slow to read for a while: the heartbeat gives up on the connection (its
/// pings wait behind the data) and the client reconnects. Every message the client reports as
/// settled (no `Dropped` event) must then reach the server, which reads everything both
/// connections carried: what the operating system had taken over the first one, the rest (the
/// link's queue, tungstenite's buffer) re-sent over the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_queued_in_the_link_are_not_lost_silently_when_the_connection_is_replaced() {
    const COUNT: usize = 40_000;
    let (url, received, server) = slow_then_reading_server(Duration::from_millis(1500)).await;
    let (client, mut events) = Client::builder(url)
        .heartbeat_mode(tether::HeartbeatMode::PingFrame)
        .heartbeat_interval(Duration::from_millis(100))
        .max_missed_pongs(2)
        .backoff_initial(Duration::from_millis(50))
        .outbox_max_messages(COUNT)
        .outbox_max_bytes(64 << 20)
        .connect()
        .unwrap();
    common::wait_open(&client).await;
    let stall_over = tokio::time::Instant::now() + Duration::from_millis(1600);
    let pad = "x".repeat(1000);
    for i in 0..COUNT {
        client.send(format!("{i:06}{pad}")).unwrap();
    }
    // Until everything is written (settled) after a reconnect, collecting what was dropped.
    let mut dropped = 0usize;
    let mut reconnected = false;
    let settled = timeout(Duration::from_secs(10), async {
        loop {
            while let Ok(event) = events.try_recv() {
                match event {
                    tether::Event::Dropped { ids, .. } => dropped += ids.len(),
                    tether::Event::ReconnectScheduled { .. } => reconnected = true,
                    _ => {}
                }
            }
            let stats = client.stats();
            if reconnected
                && client.outbox_len() == 0
                && stats.messages_settled + dropped as u64 >= COUNT as u64
            {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let _ = timeout(Duration::from_secs(5), client.close()).await;
    // The server reads the first connection to its end once its stall is over.
    tokio::time::sleep_until(stall_over).await;
    let mut last = usize::MAX;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = received.lock().unwrap().len();
        if now == last && now > 0 {
            break;
        }
        last = now;
    }
    timeout(Duration::from_secs(5), client.shutdown())
        .await
        .unwrap();
    server.abort();
    let stats = settled.expect("everything settled or dropped within 10 s, after a reconnect");
    let got: std::collections::HashSet<String> = received
        .lock()
        .unwrap()
        .iter()
        .map(|t| t[..6].to_owned())
        .collect();
    let missing = COUNT - got.len() - dropped;
    assert_eq!(
        missing, 0,
        "{missing} of {COUNT} messages neither reached the server nor were reported dropped \
         ({dropped} dropped, {} settled, {} reconnects)",
        stats.messages_settled, stats.reconnects
    );
    // At least once: what tungstenite was writing when its last flush had not completed
    // (at most its write buffer, 8 KiB, plus the message that crossed it) may have reached the
    // peer and is sent again; everything before was counted as taken.
    let copies = received.lock().unwrap().len() - got.len();
    assert!(copies <= 9, "{copies} messages arrived twice");
}
