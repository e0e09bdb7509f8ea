//! Test helpers: a relay on an ephemeral loopback port, a small protocol client over a real
//! WebSocket, and a raw HTTP client for SSE. Every wait is bounded by [`WAIT`].
#![allow(dead_code, clippy::unwrap_used)] // each test binary uses a subset

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::future::Future;
use std::time::Duration;
use tether_core::protocol::{ClientMessage, PresenceChange, ServerMessage};
use tether_relay::{Relay, RelayConfig, RelayHandle};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The longest any single expected event may take.
pub const WAIT: Duration = Duration::from_secs(5);

/// Awaits `fut`, failing the test with `what` if it takes longer than [`WAIT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// An `error` message's code and id (panics on anything else).
pub fn error(msg: &ServerMessage) -> (&str, Option<&str>) {
    match msg {
        ServerMessage::Error { code, id, .. } => (code.as_str(), id.as_deref()),
        other => panic!("expected an error, got {other:?}"),
    }
}

pub async fn relay(config: RelayConfig) -> RelayHandle {
    Relay::bind("127.0.0.1:0", config).await.unwrap()
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A protocol client over a real WebSocket.
pub struct Client {
    pub ws: Ws,
}

/// What a subscribe brought back: `subscribed`, the replay, and the presence snapshot.
#[derive(Debug)]
pub struct Subscription {
    pub offset: u64,
    pub epoch: String,
    pub recovered: bool,
    /// `(offset, payload)` of each replayed message.
    pub replay: Vec<(u64, Value)>,
    pub members: Vec<String>,
}

impl Client {
    /// Connects without sending anything.
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = within("connect", tokio_tungstenite::connect_async(url))
            .await
            .unwrap();
        Client { ws }
    }

    /// Connects (without `hello`) over a socket with a tiny receive window, so the relay's
    /// writer blocks with frames still queued once a few arrive unread.
    pub async fn slow_reader(relay: &RelayHandle) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let tcp = within("tcp connect", socket.connect(relay.local_addr()))
            .await
            .unwrap();
        let (ws, _) = within(
            "handshake",
            tokio_tungstenite::client_async(relay.ws_url(), MaybeTlsStream::Plain(tcp)),
        )
        .await
        .unwrap();
        Client { ws }
    }

    /// Connects and says `hello` as `client_id`.
    pub async fn hello(url: &str, client_id: &str) -> Client {
        let mut c = Client::connect(url).await;
        c.send(ClientMessage::Hello {
            client_id: client_id.into(),
            token: None,
            instance: None,
        })
        .await;
        c
    }

    pub async fn send(&mut self, msg: ClientMessage) {
        self.send_raw(Message::text(msg.encode())).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.send_raw(Message::text(text)).await;
    }

    pub async fn send_raw(&mut self, msg: Message) {
        within("send", self.ws.send(msg)).await.unwrap();
    }

    /// The next WebSocket message or error, whatever it is.
    pub async fn next_raw(&mut self) -> Option<Result<Message, WsError>> {
        within("a frame", self.ws.next()).await
    }

    /// Channel messages up to the server's close: their offsets, and the close frame. Fails
    /// the test on anything else (each frame read is bounded by `within`).
    pub async fn offsets_until_close(&mut self) -> (Vec<u64>, CloseFrame) {
        let mut offsets = Vec::new();
        loop {
            match self.next_raw().await {
                Some(Ok(Message::Text(text))) => match ServerMessage::decode(&text).unwrap() {
                    ServerMessage::Message {
                        offset: Some(o), ..
                    } => offsets.push(o),
                    other => panic!("expected a message, got {other:?}"),
                },
                Some(Ok(Message::Close(Some(frame)))) => return (offsets, frame),
                other => panic!("expected messages then a close, got {other:?}"),
            }
        }
    }

    /// The next protocol message; fails the test on anything else.
    pub async fn recv(&mut self) -> ServerMessage {
        loop {
            match self.next_raw().await {
                Some(Ok(Message::Text(text))) => return ServerMessage::decode(&text).unwrap(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a protocol message, got {other:?}"),
            }
        }
    }

    /// The next protocol message, or `None` if nothing arrives within `wait` (pings and
    /// pongs skipped); fails the test on anything else, a close frame included.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<ServerMessage> {
        loop {
            match tokio::time::timeout(wait, self.ws.next()).await {
                Err(_) => return None,
                Ok(Some(Ok(Message::Text(text)))) => {
                    return Some(ServerMessage::decode(&text).unwrap())
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(other) => panic!("expected a protocol message, got {other:?}"),
            }
        }
    }

    /// Reads until the server's close frame and returns it (skipping other messages).
    pub async fn recv_close(&mut self) -> CloseFrame {
        loop {
            match self.next_raw().await {
                Some(Ok(Message::Close(Some(frame)))) => return frame,
                Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    pub async fn subscribe(
        &mut self,
        channel: &str,
        since: Option<u64>,
        epoch: Option<&str>,
    ) -> Subscription {
        self.send(ClientMessage::Subscribe {
            channel: channel.into(),
            since,
            epoch: epoch.map(str::to_owned),
        })
        .await;
        let (offset, epoch, recovered) = match self.recv().await {
            ServerMessage::Subscribed {
                channel: c,
                offset,
                epoch,
                recovered,
            } if c == channel => (offset, epoch.unwrap(), recovered),
            other => panic!("expected subscribed, got {other:?}"),
        };
        let mut replay = Vec::new();
        loop {
            match self.recv().await {
                ServerMessage::Message {
                    offset: Some(o),
                    payload,
                    ..
                } => replay.push((o, payload)),
                ServerMessage::Presence {
                    change: PresenceChange::Snapshot(members),
                    ..
                } => {
                    return Subscription {
                        offset,
                        epoch,
                        recovered,
                        replay,
                        members,
                    }
                }
                other => panic!("expected replay or snapshot, got {other:?}"),
            }
        }
    }

    pub async fn publish(&mut self, channel: &str, id: &str, payload: Value, ack: bool) {
        self.send(ClientMessage::Publish {
            id: id.into(),
            channel: Some(channel.into()),
            payload,
            ack,
        })
        .await;
    }

    /// Publishes with `ack: true` and returns the acked offset.
    pub async fn publish_acked(&mut self, channel: &str, id: &str, payload: Value) -> u64 {
        self.publish(channel, id, payload, true).await;
        loop {
            match self.recv().await {
                ServerMessage::Ack { id: acked, offset } if acked == id => {
                    return offset.unwrap();
                }
                // Our own broadcast, if subscribed.
                ServerMessage::Message { .. } => continue,
                other => panic!("expected ack, got {other:?}"),
            }
        }
    }

    /// Sends a request and waits for its reply: once it arrives, the relay has handled
    /// everything this client sent before.
    pub async fn barrier(&mut self) {
        let id = "barrier";
        self.send(ClientMessage::Request {
            id: id.into(),
            channel: None,
            payload: Value::Null,
        })
        .await;
        loop {
            match self.recv().await {
                ServerMessage::Reply { id: r, .. } if r == id => return,
                _ => continue,
            }
        }
    }
}

/// A raw HTTP/1.1 client reading a Server-Sent Events stream.
pub struct Sse {
    pub reader: BufReader<TcpStream>,
    pub status: u16,
    pub headers: Vec<String>,
}

/// One SSE event block: its fields in order, `(name, value)`; comments have name "".
pub type Event = Vec<(String, String)>;

impl Sse {
    /// Sends `GET path` with `extra_headers` and reads the response head.
    pub async fn get(relay: &RelayHandle, path: &str, extra_headers: &[&str]) -> Sse {
        let mut stream = within("tcp connect", TcpStream::connect(relay.local_addr()))
            .await
            .unwrap();
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n",
            relay.local_addr()
        );
        for h in extra_headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut reader = BufReader::new(stream);
        let status_line = read_line(&mut reader).await.unwrap();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap();
        let mut headers = Vec::new();
        loop {
            let line = read_line(&mut reader).await.unwrap();
            if line.is_empty() {
                break;
            }
            headers.push(line);
        }
        Sse {
            reader,
            status,
            headers,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|h| {
            let (n, v) = h.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The next event block, or `None` at the end of the stream; it must arrive within
    /// [`WAIT`] (each line is bounded, and so is the whole call: a stream of blank lines
    /// would otherwise keep it reading forever).
    pub async fn next_event(&mut self) -> Option<Event> {
        within("an event", async {
            let mut event = Vec::new();
            loop {
                let line = read_line(&mut self.reader).await?;
                if line.is_empty() {
                    if event.is_empty() {
                        continue;
                    }
                    return Some(event);
                }
                let (name, value) = line.split_once(':').unwrap_or((line.as_str(), ""));
                event.push((name.to_owned(), value.trim_start().to_owned()));
            }
        })
        .await
    }

    /// The next event that carries a message, as `(id, message)`, skipping keepalives and
    /// the stream's `position` event (its data is a `subscribed`: [`Sse::position`]); it must
    /// arrive within [`WAIT`] however many keepalives come first (with a 50 ms keepalive, a
    /// relay that never sends the message would otherwise keep this loop going forever).
    /// The id is the event's `id:` as sent (`<epoch>-<offset>`).
    pub async fn next_message(&mut self) -> (String, ServerMessage) {
        within("an event with data", async {
            loop {
                let event = self.next_event().await.expect("stream ended");
                let field = |n: &str| event.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
                if field("event").as_deref() == Some("position") {
                    continue;
                }
                if let Some(data) = field("data").filter(|d| !d.is_empty()) {
                    let id = field("id").expect("an id");
                    return (id, ServerMessage::decode(&data).unwrap());
                }
            }
        })
        .await
    }

    /// The stream's `position` event, which comes first after the `retry:` (read that
    /// first): its id and the `subscribed` in its data.
    pub async fn position(&mut self) -> (String, ServerMessage) {
        let event = self.next_event().await.expect("stream ended");
        let field = |n: &str| event.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(field("event").as_deref(), Some("position"), "{event:?}");
        let data = field("data").expect("data");
        (
            field("id").expect("an id"),
            ServerMessage::decode(&data).unwrap(),
        )
    }

    /// Reads the rest of the body; the stream must end within [`WAIT`].
    pub async fn read_to_end(&mut self) -> String {
        let mut rest = String::new();
        within("end of stream", self.reader.read_to_string(&mut rest))
            .await
            .unwrap();
        rest
    }
}

/// One line without its terminator, `None` at EOF.
async fn read_line(reader: &mut BufReader<TcpStream>) -> Option<String> {
    let mut line = String::new();
    let n = within("a line", reader.read_line(&mut line)).await.ok()?;
    if n == 0 {
        return None;
    }
    Some(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Sends a raw request and returns the whole response text (the relay closes after it).
pub async fn http_request(relay: &RelayHandle, request: &str) -> String {
    let mut stream = within("tcp connect", TcpStream::connect(relay.local_addr()))
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    within("response", stream.read_to_string(&mut response))
        .await
        .unwrap();
    response
}

/// Shuts `relay` down while `clients` read until their streams end, so every close
/// handshake completes (instead of the relay waiting out its close timeout for clients
/// that are not being polled).
pub async fn stop(relay: RelayHandle, clients: impl IntoIterator<Item = Client>) {
    let drain = futures_util::future::join_all(
        clients
            .into_iter()
            .map(|mut c| async move { while let Some(Ok(_)) = c.ws.next().await {} }),
    );
    within("shutdown", async { tokio::join!(relay.shutdown(), drain) }).await;
}
