//! A TCP proxy for faults the chaos proxy cannot make: the server → client direction muted
//! while client → server bytes still go through (acks lost, publishes stored), and a
//! vanished network path (connections that go silent both ways, their sockets left open, so
//! neither end hears a hang-up).

use crate::listen::Listener;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// A running proxy; dropping it stops it and its connections.
#[derive(Debug)]
pub struct OneWayProxy {
    listener: Listener,
    state: Arc<Shared>,
    kill: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Server → client bytes are read and discarded.
    mute: AtomicBool,
    /// Connections numbered below this forward nothing, either way (a vanished path).
    frozen_below: AtomicU64,
    /// Connections accepted so far.
    accepted: AtomicU64,
}

impl OneWayProxy {
    /// Listens on 127.0.0.1 and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<OneWayProxy> {
        let state = Arc::new(Shared::default());
        let (kill, kill_rx) = watch::channel(0u64);
        let shared = state.clone();
        let listener = Listener::start(move |client| {
            let number = shared.accepted.fetch_add(1, Ordering::SeqCst);
            forward(client, upstream, number, shared.clone(), kill_rx.clone())
        })
        .await?;
        Ok(OneWayProxy {
            listener,
            state,
            kill,
        })
    }

    /// The WebSocket URL to give clients.
    pub fn url(&self) -> String {
        format!("ws://{}/", self.listener.addr())
    }

    /// Mutes (or unmutes) the server → client direction of every connection.
    pub fn mute(&self, on: bool) {
        self.state.mute.store(on, Ordering::SeqCst);
    }

    /// Every connection open now goes silent both ways, hang-ups included, its sockets left
    /// open; later connections forward normally.
    pub fn freeze_existing(&self) {
        let accepted = self.state.accepted.load(Ordering::SeqCst);
        self.state.frozen_below.store(accepted, Ordering::SeqCst);
    }

    /// Drops every open connection at once (no close frame).
    pub fn kill_all(&self) {
        self.kill.send_modify(|generation| *generation += 1);
    }
}

async fn forward(
    client: TcpStream,
    upstream: SocketAddr,
    number: u64,
    state: Arc<Shared>,
    mut kill: watch::Receiver<u64>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    kill.borrow_and_update();
    let frozen = || number < state.frozen_below.load(Ordering::SeqCst);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 16384];
        loop {
            let n = match client_read.read(&mut buf).await {
                // A frozen path does not carry the client's hang-up either.
                Ok(0) | Err(_) if frozen() => return std::future::pending().await,
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if !frozen() && server_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; 16384];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let silent = state.mute.load(Ordering::SeqCst) || frozen();
            if !silent && client_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = up => {}
        () = down => {}
        _ = kill.changed() => {}
    }
}
