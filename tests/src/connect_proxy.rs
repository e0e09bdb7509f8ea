//! A forward HTTP proxy, as a corporate network has one: `CONNECT host:port` tunnels (what a
//! WebSocket, and an `https://` event stream, asks for) and absolute-form requests
//! (`GET http://host:port/path`, what reqwest sends for a plain `http://` event stream). It
//! records what each client asked, optionally demands `Proxy-Authorization`, can misbehave
//! on purpose, and can cut every connection it carries. Names it resolves through
//! [`ConnectProxy::alias`] first (a host only the proxy knows, as behind a real one).

use crate::servers::read_request_head;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// How the proxy answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Opens the way to the target.
    Forward,
    /// Opens the way to the target, a tunnel's `200` preceded by an interim
    /// `100 Continue` (which a client must skip, RFC 9110 §15.2).
    InterimFirst,
    /// Answers with this status (and `Content-Length: 0`), then closes.
    Refuse(u16),
    /// Sends part of a status line, then closes.
    CloseMidHead,
    /// Sends a status line, then header lines without end (at most 4 MiB, or until the client
    /// goes).
    EndlessHead,
}

/// What one client asked.
#[derive(Debug, Clone)]
pub struct Asked {
    /// The request line (`CONNECT 127.0.0.1:80 HTTP/1.1`, `GET http://… HTTP/1.1`).
    pub request_line: String,
    /// The `Proxy-Authorization` header, if any.
    pub proxy_authorization: Option<String>,
}

#[derive(Debug)]
struct State {
    mode: ProxyMode,
    /// `Proxy-Authorization` required, if any: a request without it gets a 407.
    required: Option<String>,
    aliases: HashMap<String, SocketAddr>,
    asked: Vec<Asked>,
    connections: Vec<AbortHandle>,
}

/// A running proxy on 127.0.0.1; dropping it stops it and every connection it carries.
#[derive(Debug)]
pub struct ConnectProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: tokio::task::JoinHandle<()>,
}

impl ConnectProxy {
    /// Starts forwarding on an ephemeral loopback port.
    pub async fn start() -> std::io::Result<ConnectProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            mode: ProxyMode::Forward,
            required: None,
            aliases: HashMap::new(),
            asked: Vec::new(),
            connections: Vec::new(),
        }));
        let accepting = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let task = tokio::spawn(serve(tcp, accepting.clone()));
                let mut state = lock(&accepting);
                state.connections.retain(|c| !c.is_finished());
                state.connections.push(task.abort_handle());
            }
        });
        Ok(ConnectProxy {
            addr,
            state,
            accept,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How to answer from now on.
    pub fn set_mode(&self, mode: ProxyMode) {
        lock(&self.state).mode = mode;
    }

    /// Requires this `Proxy-Authorization` value (e.g. `Basic dTpw`) from now on.
    pub fn require(&self, authorization: &str) {
        lock(&self.state).required = Some(authorization.to_owned());
    }

    /// Connects requests for `host` (any port) to `to` instead of resolving it.
    pub fn alias(&self, host: &str, to: SocketAddr) {
        lock(&self.state).aliases.insert(host.to_owned(), to);
    }

    /// What clients asked so far.
    pub fn asked(&self) -> Vec<Asked> {
        lock(&self.state).asked.clone()
    }

    /// Cuts every connection the proxy carries (the clients see them reset or closed).
    pub fn kill_all(&self) {
        for connection in lock(&self.state).connections.drain(..) {
            connection.abort();
        }
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.kill_all();
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One client connection.
async fn serve(mut tcp: TcpStream, state: Arc<Mutex<State>>) {
    let Some(head) = read_request_head(&mut tcp).await else {
        return;
    };
    let request_line = head.lines().next().unwrap_or_default().to_owned();
    let proxy_authorization = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("proxy-authorization")
            .then(|| value.trim().to_owned())
    });
    let (mode, required, aliases) = {
        let mut state = lock(&state);
        state.asked.push(Asked {
            request_line: request_line.clone(),
            proxy_authorization: proxy_authorization.clone(),
        });
        (state.mode, state.required.clone(), state.aliases.clone())
    };
    if required.is_some() && proxy_authorization != required {
        let answer = "HTTP/1.1 407 Proxy Authentication Required\r\n\
                      Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n";
        let _ = tcp.write_all(answer.as_bytes()).await;
        return;
    }
    match mode {
        ProxyMode::Forward => forward(tcp, &head, &request_line, &aliases, false).await,
        ProxyMode::InterimFirst => forward(tcp, &head, &request_line, &aliases, true).await,
        ProxyMode::Refuse(status) => {
            let answer = format!("HTTP/1.1 {status} Refused\r\nContent-Length: 0\r\n\r\n");
            let _ = tcp.write_all(answer.as_bytes()).await;
        }
        ProxyMode::CloseMidHead => {
            let _ = tcp.write_all(b"HTTP/1.1 200 Connec").await;
        }
        ProxyMode::EndlessHead => {
            let _ = tcp
                .write_all(b"HTTP/1.1 200 Connection established\r\n")
                .await;
            let line = format!("X-Padding: {}\r\n", "a".repeat(1000));
            for _ in 0..4096 {
                if tcp.write_all(line.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Opens the way: a tunnel for `CONNECT`, or the request passed on in origin form.
async fn forward(
    mut client: TcpStream,
    head: &str,
    request_line: &str,
    aliases: &HashMap<String, SocketAddr>,
    interim: bool,
) {
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return;
    };
    let (authority, rest) = match method {
        "CONNECT" => (target, None),
        _ => {
            // `http://host:port/path` → `host:port` and `/path`.
            let Some(url) = target.strip_prefix("http://") else {
                return;
            };
            let slash = url.find('/').unwrap_or(url.len());
            (&url[..slash], Some(&url[slash..]))
        }
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().unwrap_or(80)),
        None => (authority, 80),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let upstream = match aliases.get(host) {
        Some(addr) => TcpStream::connect(addr).await,
        None => TcpStream::connect((host, port)).await,
    };
    let Ok(mut upstream) = upstream else {
        let _ = client
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            .await;
        return;
    };
    match rest {
        None => {
            if interim
                && client
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await
                    .is_err()
            {
                return;
            }
            let established = b"HTTP/1.1 200 Connection established\r\n\r\n";
            if client.write_all(established).await.is_err() {
                return;
            }
        }
        Some(path) => {
            // The same request in origin form, minus the proxy's own header.
            let mut request = format!("{method} {path} HTTP/1.1\r\n");
            for line in head.lines().skip(1).filter(|l| !l.is_empty()) {
                if !line.to_ascii_lowercase().starts_with("proxy-") {
                    request.push_str(line);
                    request.push_str("\r\n");
                }
            }
            request.push_str("\r\n");
            if upstream.write_all(request.as_bytes()).await.is_err() {
                return;
            }
        }
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}
