//! A TCP proxy that misbehaves on command, for demos and tests: it forwards between clients
//! and an upstream server until told to kill every connection, refuse new ones, or black-hole
//! traffic (keep sockets open but forward nothing — the failure heartbeats exist for).

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward in both directions.
    Forward,
    /// Accept new connections and close them at once (upstream "down").
    Refuse,
    /// Keep every connection open but forward nothing in either direction.
    BlackHole,
}

/// A running proxy; dropping it stops everything.
#[derive(Debug)]
pub struct ChaosProxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    /// Bumped to kill all current connections.
    generation: watch::Sender<u64>,
    accept: tokio::task::JoinHandle<()>,
    accepted: Arc<std::sync::atomic::AtomicU64>,
}

impl ChaosProxy {
    /// Listens on an ephemeral loopback port, forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<ChaosProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (mode_tx, mode_rx) = watch::channel(Mode::Forward);
        let (gen_tx, gen_rx) = watch::channel(0u64);
        let accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = accepted.clone();
        let accept = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                // A failed accept (out of file descriptors, say) is passing, as in the relay's
                // own accept loop: ending here dropped the listener and, with the JoinSet,
                // every connection through the proxy, for good and without a word.
                let client = match listener.accept().await {
                    Ok((client, _)) => client,
                    Err(e) => {
                        tracing::warn!(error = %e, "chaos proxy: accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if *mode_rx.borrow() == Mode::Refuse {
                    drop(client);
                    continue;
                }
                // Marked seen here, not once the upstream connection is made: a kill while
                // it is being made must end it too.
                let mut generation = gen_rx.clone();
                generation.borrow_and_update();
                connections.spawn(pipe(client, upstream, mode_rx.clone(), generation));
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(ChaosProxy {
            addr,
            mode: mode_tx,
            generation: gen_tx,
            accept,
            accepted,
        })
    }

    /// The address clients should connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR{path}` for this proxy.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// `http://ADDR{path}` for this proxy.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Changes what happens to traffic from now on (existing connections included).
    pub fn set_mode(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Drops every current connection abruptly (both sides see the TCP connection end).
    pub fn kill_all(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn pipe(
    client: TcpStream,
    upstream: SocketAddr,
    mode: watch::Receiver<Mode>,
    mut generation: watch::Receiver<u64>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::select! {
        _ = copy(cr, sw, mode.clone()) => {}
        _ = copy(sr, cw, mode) => {}
        _ = generation.changed() => {}
    }
}

/// Copies until EOF, pausing (neither reading nor writing) while black-holed; nothing read is
/// lost: bytes read as a black hole begins are written when it ends.
async fn copy(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while *mode.borrow_and_update() == Mode::BlackHole {
            if mode.changed().await.is_err() {
                return;
            }
        }
        tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    // Read as a black hole began (the read and the mode change woke this
                    // together): held until it ends, as TCP holds what a dead path dropped
                    // and sends it again. Dropping it would cut bytes out of a connection
                    // that stays open, which no TCP connection does: a WebSocket frame
                    // missing between two that arrive.
                    while *mode.borrow_and_update() == Mode::BlackHole {
                        if mode.changed().await.is_err() {
                            return;
                        }
                    }
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            },
            _ = mode.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;
    use tokio::io::ReadBuf;

    /// A peer whose bytes arrive just as the black hole begins: the read that returns them
    /// also switches the proxy to `BlackHole` (as when the read and the mode change wake the
    /// proxy together). Then it ends.
    struct ArrivesAsTheBlackHoleBegins {
        bytes: Option<Vec<u8>>,
        mode: watch::Sender<Mode>,
    }

    impl AsyncRead for ArrivesAsTheBlackHoleBegins {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if let Some(bytes) = self.bytes.take() {
                self.mode.send_replace(Mode::BlackHole);
                buf.put_slice(&bytes);
            }
            Poll::Ready(Ok(()))
        }
    }

    /// A connection the proxy accepted before a `kill_all` ends even if its upstream
    /// connection was still being made when the kill came (it used to take the kill as seen
    /// once connected, and lived on).
    #[tokio::test]
    async fn a_kill_while_the_upstream_connection_is_made_ends_it() {
        let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client_side = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (_client, (accepted, _)) = tokio::try_join!(
            TcpStream::connect(client_side.local_addr().unwrap()),
            client_side.accept()
        )
        .unwrap();
        let (_mode, mode_rx) = watch::channel(Mode::Forward);
        let (kill, mut generation) = watch::channel(0u64);
        generation.borrow_and_update(); // as the accept loop does
        kill.send_modify(|g| *g += 1); // the kill, before `pipe` has connected upstream
        let piping = pipe(
            accepted,
            upstream.local_addr().unwrap(),
            mode_rx,
            generation,
        );
        tokio::time::timeout(Duration::from_secs(5), piping)
            .await
            .expect("the connection ends at once");
    }

    /// A black hole delays, it does not cut: what the proxy read as one began reaches the
    /// other side once it ends. Swallowing it took a frame out of the middle of a connection
    /// that stayed open, which no TCP connection does: a publisher's next frame on that
    /// connection reached the relay first, and the frame, re-sent after the reconnect, was
    /// stored after it (two messages swapped for every subscriber; `no_loss`'s seeded chaos).
    #[tokio::test]
    async fn what_is_read_as_a_black_hole_begins_is_forwarded_when_it_ends() {
        let (mode, watching) = watch::channel(Mode::Forward);
        let from = ArrivesAsTheBlackHoleBegins {
            bytes: Some(b"frame".to_vec()),
            mode: mode.clone(),
        };
        let (to, mut other_side) = tokio::io::duplex(64);
        let copying = tokio::spawn(copy(from, to, watching));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(*mode.borrow(), Mode::BlackHole);
        mode.send_replace(Mode::Forward);
        tokio::time::timeout(Duration::from_secs(5), copying)
            .await
            .unwrap()
            .unwrap();
        let mut got = Vec::new();
        other_side.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"frame");
    }
}
