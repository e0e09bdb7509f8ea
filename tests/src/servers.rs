//! Servers that misbehave in one specific way, on an ephemeral loopback port. Each records
//! when connections arrived (and with which headers), so tests can check the client's timing.

use crate::listen::Listener;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// What the server does with each connection.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Completes the WebSocket handshake, then closes with this code and reason at once
    /// (`None`: drops the TCP connection without a close frame).
    AcceptThenClose(Option<(u16, String)>),
    /// Answers every HTTP request (read up to its blank line) with the response this makes,
    /// made per request (so a `Retry-After` date can be relative to now), then closes.
    HttpAnswer(fn() -> String),
    /// Echoes text and binary messages.
    Echo,
    /// Completes the handshake, then sends this text frame and keeps echoing.
    SendThenEcho(String),
    /// Completes the handshake, then reads and discards whatever arrives without ever
    /// answering, not even a close frame (a wedged peer or proxy), until the client drops the
    /// connection: when it did is in [`MisbehavingServer::hangups`].
    Unresponsive,
    /// Accepts the TCP connection, then reads and discards whatever arrives without ever
    /// answering the request (a server wedged before its handshake, a half-dead proxy), until
    /// the client drops the connection: when it did is in [`MisbehavingServer::hangups`].
    /// Its arrivals have no path and no header (the request is not read).
    NeverAnswers,
}

/// A record of one accepted connection.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// When it arrived.
    pub at: Instant,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The request path and query.
    pub path: String,
}

/// A running misbehaving server; dropping it stops it and its connections.
#[derive(Debug)]
pub struct MisbehavingServer {
    listener: Listener,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    hangups: Arc<Mutex<Vec<Instant>>>,
}

impl MisbehavingServer {
    /// Starts on an ephemeral loopback port.
    pub async fn start(behaviour: Behaviour) -> std::io::Result<MisbehavingServer> {
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let hangups = Arc::new(Mutex::new(Vec::new()));
        let log = Log {
            arrivals: arrivals.clone(),
            hangups: hangups.clone(),
        };
        let listener =
            Listener::start(move |tcp| serve(tcp, behaviour.clone(), log.clone())).await?;
        Ok(MisbehavingServer {
            listener,
            arrivals,
            hangups,
        })
    }

    /// `ws://ADDR/`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/", self.listener.addr())
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.listener.addr()
    }

    /// Connections so far.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// When clients dropped their [`Behaviour::Unresponsive`] or [`Behaviour::NeverAnswers`]
    /// connections.
    pub fn hangups(&self) -> Vec<Instant> {
        self.hangups.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

/// Where the connections' tasks record what happened.
#[derive(Debug, Clone)]
struct Log {
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    hangups: Arc<Mutex<Vec<Instant>>>,
}

// The handshake callback's error type is tungstenite's, large by its design.
#[allow(clippy::result_large_err)]
async fn serve(mut tcp: tokio::net::TcpStream, behaviour: Behaviour, log: Log) {
    let at = Instant::now();
    if let Behaviour::HttpAnswer(response) = behaviour {
        let Some(head) = read_request_head(&mut tcp).await else {
            return;
        };
        record(&log.arrivals, at, &head);
        let _ = tcp.write_all(response().as_bytes()).await;
        let _ = tcp.shutdown().await;
        return;
    }
    if let Behaviour::NeverAnswers = behaviour {
        // Arrived, though no request is read: the arrival has no path nor header.
        record(&log.arrivals, at, "");
        return read_until_hangup(&mut tcp, &log).await;
    }
    let mut seen = None;
    let callback = |req: &Request, resp: Response| {
        seen = Some(Arrival {
            at,
            authorization: req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            path: req.uri().to_string(),
        });
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
        return;
    };
    if let (Some(arrival), Ok(mut arrivals)) = (seen, log.arrivals.lock()) {
        arrivals.push(arrival);
    }
    match behaviour {
        Behaviour::AcceptThenClose(Some((code, reason))) => {
            let _ = ws
                .close(Some(CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.into(),
                }))
                .await;
            // Drain until the client answers the close.
            while let Some(Ok(_)) = ws.next().await {}
        }
        Behaviour::AcceptThenClose(None) => drop(ws),
        Behaviour::SendThenEcho(text) => {
            if ws.send(Message::text(text)).await.is_ok() {
                echo(ws).await;
            }
        }
        Behaviour::Echo => echo(ws).await,
        Behaviour::Unresponsive => {
            // Below the WebSocket layer, which would answer a close frame by itself.
            read_until_hangup(ws.get_mut(), &log).await;
        }
        Behaviour::HttpAnswer(_) | Behaviour::NeverAnswers => {}
    }
}

/// Reads and discards until the client hangs up (or the connection fails), and records when.
async fn read_until_hangup(tcp: &mut tokio::net::TcpStream, log: &Log) {
    let mut buf = [0u8; 1024];
    while let Ok(1..) = tcp.read(&mut buf).await {}
    if let Ok(mut hangups) = log.hangups.lock() {
        hangups.push(Instant::now());
    }
}

async fn echo(mut ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) {
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            return;
        }
    }
}

/// An HTTP request's head, up to its blank line (at most 16 KiB); `None` if the peer leaves
/// or sends more than that first. Over TCP or TLS.
pub async fn read_request_head(tcp: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) if head.len() + n > 16 * 1024 => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

fn record(log: &Arc<Mutex<Vec<Arrival>>>, at: Instant, head: &str) {
    let path = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_owned();
    let authorization = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("authorization: ")
                .or_else(|| l.strip_prefix("Authorization: "))
        })
        .map(str::to_owned);
    if let Ok(mut log) = log.lock() {
        log.push(Arrival {
            at,
            authorization,
            path,
        });
    }
}
