//! Helpers shared by the native integration tests (each test file is its own crate and
//! includes this module with `mod common;`).
// Not every test crate that includes this module uses every helper.
#![allow(dead_code)]

use std::time::Duration;
use tether::{Client, Event, Events, State};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The client's next event, failing the test if none comes within 5 s (or the stream ended).
pub async fn next_event(events: &mut Events) -> Event {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("an event within 5 s")
        .expect("the client's events have not ended")
}

/// Reads an HTTP request head (up to the blank line) from `tcp`; `None` if the peer closed or
/// failed first.
pub async fn read_request_head(tcp: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// The `101 Switching Protocols` answer to the WebSocket upgrade request `head` (its
/// `Sec-WebSocket-Accept` derived from the request's key), for a test server that then speaks
/// raw frames.
pub fn upgrade_answer(head: &str) -> String {
    let key = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes())
    )
}

/// The size of the first message `events` delivers, or the reconnect (its cause) that came
/// first, or what ended the wait (5 s at most).
pub async fn first_message_or_reconnect(events: &mut Events) -> Result<usize, String> {
    let outcome = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(event) = events.recv().await {
            match event {
                Event::Message(m) => {
                    return Ok(match m.payload {
                        tether::Payload::Text(t) => t.len(),
                        tether::Payload::Binary(b) => b.len(),
                        other => format!("{other:?}").len(),
                    })
                }
                Event::ReconnectScheduled { cause, .. } => {
                    return Err(format!("reconnect scheduled: {cause}"))
                }
                _ => {}
            }
        }
        Err("events ended".to_owned())
    })
    .await;
    outcome.unwrap_or_else(|_| Err("nothing within 5 s".to_owned()))
}

/// Waits (at most 5 s) until `client` is open.
pub async fn wait_open(client: &Client) {
    wait_state(client, "open", State::is_open).await;
}

/// Waits (at most 5 s) until `client` is connecting.
pub async fn wait_connecting(client: &Client) {
    wait_state(client, "connecting", |s| {
        matches!(s, State::Connecting { .. })
    })
    .await;
}

async fn wait_state(client: &Client, what: &str, reached: impl FnMut(&State) -> bool) {
    let mut state = client.watch_state();
    tokio::time::timeout(Duration::from_secs(5), state.wait_for(reached))
        .await
        .unwrap_or_else(|_| panic!("{what} within 5 s"))
        .expect("the client task is running");
}

/// What a test's `tracing` subscriber sees: an event, or a span entered (the client's task
/// enters its `tether` span on every poll).
pub enum Traced<'a> {
    Event(&'a tracing::Event<'a>),
    Enter,
}

/// A `tracing` subscriber that enables everything and hands each event and span entry to the
/// test's closure: the app code on trial inside the client's task. Spans are not tracked.
pub struct TestSubscriber<F>(F);

impl<F: Fn(Traced<'_>) + Send + Sync + 'static> TestSubscriber<F> {
    /// (A constructor with the bound, so that a closure passed to it takes any lifetime.)
    pub fn new(on_traced: F) -> Self {
        TestSubscriber(on_traced)
    }
}

impl<F: Fn(Traced<'_>) + Send + Sync + 'static> tracing::Subscriber for TestSubscriber<F> {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        (self.0)(Traced::Event(event));
    }
    fn enter(&self, _: &tracing::span::Id) {
        (self.0)(Traced::Enter);
    }
    fn exit(&self, _: &tracing::span::Id) {}
}
