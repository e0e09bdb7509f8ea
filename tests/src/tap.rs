//! A WebSocket proxy for tests that must see the client's side of the wire, in front of a
//! real server: it forwards messages between each client and the upstream, records how each
//! client connection ended (the close frame the client sent, or none), and can hold the
//! client's messages back, so that they are written by the client but not yet delivered or
//! acknowledged. The relay itself does not tell a clean close from a dropped connection.

use crate::listen::Listener;
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

/// How long a client's close handshake may take through the tap (its close frame answered,
/// then the connection's end) before the tap lets the connection go.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// How a client connection through the tap ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The client sent a close frame with this code (`None`: a close frame without one):
    /// its own close, or its answer to the server's.
    Closed(Option<u16>),
    /// The client's side ended without a close frame: what a server reports as 1006.
    Dropped,
    /// The upstream connection ended without a close frame; the tap dropped the client's.
    UpstreamLost,
}

/// A running tap on an ephemeral loopback port; dropping it stops it and its connections.
#[derive(Debug)]
pub struct WsTap {
    listener: Listener,
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    /// `ws://HOST:PORT` of the server; each client's request path is appended.
    upstream: String,
    hold: watch::Sender<bool>,
    /// Client messages held back so far, over every connection.
    held: watch::Sender<usize>,
    endings: watch::Sender<Vec<Ending>>,
}

impl WsTap {
    /// Starts forwarding to the WebSocket server at `upstream`, with each client's own path
    /// and query (its other request headers are not passed on).
    pub async fn start(upstream: SocketAddr) -> std::io::Result<WsTap> {
        let state = Arc::new(State {
            upstream: format!("ws://{upstream}"),
            hold: watch::channel(false).0,
            held: watch::channel(0).0,
            endings: watch::channel(Vec::new()).0,
        });
        let shared = state.clone();
        let listener = Listener::start(move |tcp| serve(tcp, shared.clone())).await?;
        Ok(WsTap { listener, state })
    }

    /// `ws://ADDR/`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/", self.listener.addr())
    }

    /// Holds the clients' messages back (`true`), or forwards them, those held first, in
    /// order (`false`). Close frames always go through.
    pub fn hold(&self, hold: bool) {
        self.state.hold.send_replace(hold);
    }

    /// Waits up to `limit` until `count` client messages were held back in all; returns how
    /// many were.
    pub async fn held(&self, count: usize, limit: Duration) -> usize {
        let mut held = self.state.held.subscribe();
        let _ = tokio::time::timeout(limit, held.wait_for(|n| *n >= count)).await;
        let n = *held.borrow();
        n
    }

    /// Waits up to `limit` until `count` client connections have ended; returns how every
    /// one that has ended did, in order.
    pub async fn endings(&self, count: usize, limit: Duration) -> Vec<Ending> {
        let mut endings = self.state.endings.subscribe();
        let _ = tokio::time::timeout(limit, endings.wait_for(|e| e.len() >= count)).await;
        let ended = endings.borrow().clone();
        ended
    }
}

// The handshake callback's error type is tungstenite's, large by its design.
#[allow(clippy::result_large_err)]
async fn serve(tcp: TcpStream, state: Arc<State>) {
    let mut path = String::from("/");
    let callback = |req: &Request, resp: Response| {
        path = req.uri().to_string();
        Ok(resp)
    };
    let Ok(client) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
        return;
    };
    let upstream = format!("{}{path}", state.upstream);
    // An upstream that refuses: the client's connection is dropped, and not an ending of its
    // own making to record.
    let Ok((server, _)) = tokio_tungstenite::connect_async(upstream).await else {
        return;
    };
    let ending = pipe(client, server, &state).await;
    state.endings.send_modify(|e| e.push(ending));
}

type Ws<S> = tokio_tungstenite::WebSocketStream<S>;
type Upstream = tokio_tungstenite::MaybeTlsStream<TcpStream>;

/// Forwards text and binary messages both ways until the client's side ends. Pings and pongs
/// are not forwarded: tungstenite answers each side's pings itself.
async fn pipe(client: Ws<TcpStream>, server: Ws<Upstream>, state: &State) -> Ending {
    let (mut to_client, mut from_client) = client.split();
    let (mut to_server, mut from_server) = server.split();
    let mut hold = state.hold.subscribe();
    let mut held = VecDeque::new();
    // The server sent its close frame: only the client's answer is still to come.
    let mut upstream_closed = false;
    loop {
        if !*hold.borrow_and_update() {
            while let Some(message) = held.pop_front() {
                let _ = to_server.send(message).await;
            }
        }
        tokio::select! {
            message = from_client.next() => match message {
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.as_ref().map(|f| u16::from(f.code));
                    let _ = to_server.send(Message::Close(frame)).await;
                    // Reading on sends tungstenite's answer, then sees the connection end.
                    let _ = tokio::time::timeout(CLOSE_WAIT, async {
                        while let Some(Ok(_)) = from_client.next().await {}
                    })
                    .await;
                    return Ending::Closed(code);
                }
                Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                    if *hold.borrow() {
                        held.push_back(message);
                        state.held.send_modify(|n| *n += 1);
                    } else {
                        // A failure shows as the upstream's end on its next read.
                        let _ = to_server.send(message).await;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Ending::Dropped,
            },
            message = from_server.next(), if !upstream_closed => match message {
                Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                    // A failure shows as the client's end on its next read.
                    let _ = to_client.send(message).await;
                }
                // Passed on; the client's answer comes through the other branch.
                Some(Ok(Message::Close(frame))) => {
                    upstream_closed = true;
                    let _ = to_client.send(Message::Close(frame)).await;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Ending::UpstreamLost,
            },
            _ = hold.changed() => {}
        }
    }
}
