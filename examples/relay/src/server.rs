//! The listening side: [`Relay::bind`], the accept loop, routing each request to the
//! WebSocket or SSE handler (or an HTTP error), and the lifecycle behind [`RelayHandle`]:
//! graceful shutdown, abort, and stop-on-drop.
//!
//! Every connection task lives in one `JoinSet` owned by the accept loop, so shutdown can
//! wait for all of them (graceful) or cancel all of them at once (abort, which drops the
//! sockets without close frames, as a crash would).

use crate::auth::{self, Access};
use crate::config::RelayConfig;
use crate::http::{self, HeadError, RequestHead};
use crate::hub::Hub;
use crate::stats::Stats;
use crate::{sse, ws};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle, JoinSet};

/// Where the relay is in its life; every task watches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunState {
    Running,
    /// Graceful shutdown: close WebSockets with 1012, end SSE streams, then stop.
    Draining,
    /// Crash simulation: drop every connection without a word.
    Aborting,
}

/// Resolves when the relay starts to stop, with how. A vanished sender means the relay is
/// gone altogether, which is treated like an abort.
pub(crate) async fn stopping(run_state: &mut watch::Receiver<RunState>) -> RunState {
    match run_state.wait_for(|s| *s != RunState::Running).await {
        Ok(state) => *state,
        Err(_) => RunState::Aborting,
    }
}

/// Resolves if the relay is aborted; never if it stops any other way.
pub(crate) async fn aborted(run_state: &mut watch::Receiver<RunState>) {
    if run_state
        .wait_for(|s| *s == RunState::Aborting)
        .await
        .is_err()
    {
        std::future::pending::<()>().await;
    }
}

/// What every connection task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Arc<RelayConfig>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) stats: Arc<Stats>,
    next_peer: AtomicU64,
}

impl Shared {
    pub(crate) fn next_peer_id(&self) -> u64 {
        self.next_peer.fetch_add(1, Ordering::Relaxed)
    }
}

/// The Tether reference relay. See the [crate docs](crate) for what it serves.
#[derive(Debug)]
pub struct Relay;

impl Relay {
    /// Binds `addr` and starts serving on the current tokio runtime. The relay runs until
    /// [`RelayHandle::shutdown`] or [`RelayHandle::abort`] is called or the handle is dropped.
    ///
    /// Fails if `config` is invalid (`InvalidInput`, wrapping a
    /// [`ConfigError`](crate::ConfigError)) or the address cannot be bound. Must be called
    /// from within a tokio runtime.
    ///
    /// ```no_run
    /// # async fn run() -> std::io::Result<()> {
    /// use tether_relay::{Relay, RelayConfig};
    ///
    /// let relay = Relay::bind("127.0.0.1:0", RelayConfig::default()).await?;
    /// println!("connect to {}", relay.ws_url());
    /// relay.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn bind(addr: impl ToSocketAddrs, config: RelayConfig) -> io::Result<RelayHandle> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;

        let (state_tx, state_rx) = watch::channel(RunState::Running);
        let config = Arc::new(config);
        let stats = Arc::new(Stats::default());
        let epoch = format!("{:016x}", rand::random::<u64>());
        tracing::info!(%local_addr, %epoch, "relay listening");
        let hub = Arc::new(Hub::new(
            config.clone(),
            epoch,
            stats.clone(),
            state_rx.clone(),
        ));
        let shared = Arc::new(Shared {
            config,
            hub,
            stats,
            next_peer: AtomicU64::new(1),
        });
        let server = tokio::spawn(accept_loop(listener, shared.clone(), state_rx));
        Ok(RelayHandle {
            local_addr,
            shared,
            run_state: state_tx,
            server: Some(server),
        })
    }
}

/// Controls a running relay. Dropping it starts a graceful shutdown without waiting for it;
/// call [`shutdown`](Self::shutdown) to wait, or [`abort`](Self::abort) to simulate a crash.
#[derive(Debug)]
pub struct RelayHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    run_state: watch::Sender<RunState>,
    server: Option<JoinHandle<()>>,
}

impl RelayHandle {
    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The WebSocket URL clients connect to, e.g. `ws://127.0.0.1:9000/`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/", self.local_addr)
    }

    /// WebSocket and SSE connections currently open.
    pub fn open_connections(&self) -> usize {
        self.shared.stats.open_connections()
    }

    /// Channel messages stored and delivered so far (duplicates and echoes not counted).
    pub fn messages_published(&self) -> u64 {
        self.shared.stats.messages_published()
    }

    /// Writes the relay made to its WebSocket connections' sockets after their upgrade: one
    /// system call each, carrying one frame or a batch of them. Against the frames sent, it
    /// shows how well the writers batch (a burst of acks goes out in a few writes).
    pub fn websocket_writes(&self) -> u64 {
        self.shared.stats.websocket_writes()
    }

    /// Graceful shutdown: stops accepting, closes every WebSocket with 1012 and the reason
    /// `{"reconnect_within_ms": N}` (N from [`RelayConfig::reconnect_window`]), ends every
    /// SSE stream, and resolves once every connection is closed and the port is released.
    pub async fn shutdown(mut self) {
        self.stop(RunState::Draining).await;
    }

    /// Simulates a crash: stops accepting and drops every connection at once, without close
    /// frames. Resolves once everything is gone and the port is released.
    pub async fn abort(mut self) {
        self.stop(RunState::Aborting).await;
    }

    async fn stop(&mut self, how: RunState) {
        self.run_state.send_replace(how);
        if let Some(server) = self.server.take() {
            if let Err(e) = server.await {
                log_join_error("relay accept loop", &e);
            }
        }
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        if self.server.is_some() {
            self.run_state.send_replace(RunState::Draining);
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut run_state: watch::Receiver<RunState>,
) {
    let mut tasks = JoinSet::new();
    let how = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    tasks.spawn(handle(stream, addr, shared.clone(), run_state.clone()));
                }
                Err(e) => {
                    // Typically out of file descriptors: pause instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = done {
                    log_join_error("connection task", &e);
                }
            }
            how = stopping(&mut run_state) => break how,
        }
    };
    drop(listener);
    tracing::info!(?how, connections = tasks.len(), "relay stopping");
    match how {
        RunState::Aborting => tasks.shutdown().await,
        _ => {
            while let Some(done) = tasks.join_next().await {
                if let Err(e) = done {
                    log_join_error("connection task", &e);
                }
            }
        }
    }
    tracing::info!("relay stopped");
}

fn log_join_error(what: &str, e: &JoinError) {
    if e.is_panic() {
        tracing::error!(error = %e, "{what} panicked");
    }
}

/// One accepted TCP connection: read the request head, then hand over to a handler.
async fn handle(
    mut stream: TcpStream,
    addr: SocketAddr,
    shared: Arc<Shared>,
    mut run_state: watch::Receiver<RunState>,
) {
    // Frames are small and latency matters more than packet count.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%addr, error = %e, "set_nodelay failed");
    }
    // A backstop below the protocol's own liveness checks (ping interval, SSE write stalls):
    // the kernel finds a peer that vanished while nothing was being sent, even with the
    // relay's pings turned off.
    if let Err(e) = socket2::SockRef::from(&stream).set_tcp_keepalive(&tcp_keepalive()) {
        tracing::debug!(%addr, error = %e, "set_tcp_keepalive failed");
    }
    let limit = shared.config.handshake_timeout;
    let read = tokio::select! {
        read = tokio::time::timeout(limit, http::read_head(&mut stream)) => read,
        _ = stopping(&mut run_state) => return,
    };
    let result = match read {
        Ok(Ok((head, rest))) => route(stream, head, rest, shared, run_state).await,
        Ok(Err(HeadError::TooLarge)) => {
            http::respond(&mut stream, 431, "Request Header Fields Too Large", &[], "").await
        }
        Ok(Err(HeadError::Malformed(why))) => {
            http::respond(&mut stream, 400, "Bad Request", &[], why).await
        }
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "no request");
            Ok(())
        }
        Err(_) => {
            tracing::debug!(%addr, "request head timed out");
            Ok(())
        }
    };
    if let Err(e) = result {
        tracing::debug!(%addr, error = %e, "connection ended with an I/O error");
    }
}

/// TCP keepalive: the first probe after a minute of silence, then every 10 s (where the
/// platform lets the interval be set).
fn tcp_keepalive() -> socket2::TcpKeepalive {
    let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
    #[cfg(any(target_os = "linux", target_os = "macos", target_os = "windows"))]
    let keepalive = keepalive.with_interval(Duration::from_secs(10));
    keepalive
}

const CORS_PREFLIGHT: &[(&str, &str)] = &[
    ("Access-Control-Allow-Methods", "GET, OPTIONS"),
    (
        "Access-Control-Allow-Headers",
        "Authorization, Last-Event-ID, Cache-Control",
    ),
    ("Access-Control-Max-Age", "600"),
];

async fn route(
    mut stream: TcpStream,
    head: RequestHead,
    rest: Vec<u8>,
    shared: Arc<Shared>,
    run_state: watch::Receiver<RunState>,
) -> io::Result<()> {
    if head.method == "OPTIONS" {
        return http::respond(&mut stream, 204, "No Content", CORS_PREFLIGHT, "").await;
    }
    if head.method != "GET" {
        return http::respond(
            &mut stream,
            405,
            "Method Not Allowed",
            &[("Allow", "GET, OPTIONS")],
            "",
        )
        .await;
    }
    let access = match auth::check_handshake(shared.config.token.as_deref(), &head) {
        Ok(access) => access,
        Err(auth::Refused) => return unauthorized(&mut stream).await,
    };

    if let Some(raw) = head.path.strip_prefix("/sse/") {
        if head.header_lists("upgrade", "websocket") {
            // An event stream answered with 200 fails a WebSocket handshake in a way clients
            // retry for ever; a 400 is final for them and says what the path is.
            return http::respond(
                &mut stream,
                400,
                "Bad Request",
                &[],
                "/sse/{channel} serves Server-Sent Events; connect WebSockets to another path\n",
            )
            .await;
        }
        let channel =
            http::percent_decode(raw, false).filter(|c| tether_core::validate_channel(c).is_ok());
        let Some(channel) = channel else {
            return http::respond(&mut stream, 400, "Bad Request", &[], "invalid channel name")
                .await;
        };
        // SSE has no hello in which a token could come later.
        if access != Access::Granted {
            return unauthorized(&mut stream).await;
        }
        return sse::serve(stream, head, channel, shared, run_state).await;
    }

    if head.header_lists("upgrade", "websocket") {
        return ws::serve(stream, head, rest, access, shared, run_state).await;
    }
    http::respond(
        &mut stream,
        426,
        "Upgrade Required",
        &[("Upgrade", "websocket")],
        "Tether relay: connect with a WebSocket, or GET /sse/{channel} for Server-Sent Events\n",
    )
    .await
}

async fn unauthorized(stream: &mut TcpStream) -> io::Result<()> {
    http::respond(
        stream,
        401,
        "Unauthorized",
        &[("WWW-Authenticate", "Bearer")],
        "token missing or refused\n",
    )
    .await
}
