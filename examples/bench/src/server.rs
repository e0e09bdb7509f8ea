//! The echo server: a lean tokio-tungstenite server that writes every text or binary message
//! back, batching the echoes of everything one read brought in into one write.
//!
//! This is the one server of the crate: the `tether-bench` binary and the `idle_alloc` example
//! both run it. [`ServerProcess::spawn`] starts it as a child process of whichever executable
//! calls it, with the command line `EXE serve --addr ADDR`, which that executable answers by
//! calling [`serve`] (`tether-bench` has it as its hidden `serve` command; the example
//! recognises it with [`serve_command`]). It runs on a single-threaded runtime, in its own
//! process, so that:
//! - its CPU time is not counted in the client's (the bench reports client CPU per message);
//! - its memory is not counted in the client's resident set (the idle-memory figure) nor in
//!   the client's heap (the `idle_alloc` example counts every allocation of its process);
//! - the reconnect benchmark can really kill it (SIGKILL: the kernel closes every socket,
//!   as in a crash) and start a new one on the same port.
//!
//! The child exits when its standard input closes, so it cannot outlive its parent.

use crate::sys;
use futures_util::{FutureExt, SinkExt, StreamExt};
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// The child's command word and address flag: `EXE serve --addr ADDR`.
const SERVE: &str = "serve";
const ADDR: &str = "--addr";

/// The address to serve on if `args` (a whole command line, program name first) is the one
/// [`ServerProcess::spawn`] gives the child, `EXE serve --addr ADDR`; `None` otherwise.
pub fn serve_command(args: &[String]) -> Option<&str> {
    match args {
        [_, word, flag, addr] if word == SERVE && flag == ADDR => Some(addr),
        _ => None,
    }
}

/// Runs the server until standard input closes. Prints `listening ADDR` once bound.
// The `listening` line is how the parent learns the address: stdout is the protocol.
#[allow(clippy::print_stdout)]
pub fn serve(addr: &str) -> io::Result<()> {
    sys::raise_nofile(65_536);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = bind(addr).await?;
        println!("listening {}", listener.local_addr()?);
        let accept = async {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        tokio::spawn(echo(stream));
                    }
                    // Out of descriptors or a reset before accept: not fatal for a server.
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        };
        tokio::select! {
            () = accept => {}
            () = parent_gone() => {}
        }
        Ok(())
    })
}

/// Resolves when standard input closes: the parent holds its write end, so a child server
/// that waits for this cannot outlive it.
pub async fn parent_gone() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// Binds, retrying briefly: after a kill the port may take a moment to be free again.
async fn bind(addr: &str) -> io::Result<TcpListener> {
    let mut last = None;
    for _ in 0..100 {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(last.unwrap_or_else(|| io::Error::other("bind failed")))
}

async fn echo(stream: TcpStream) {
    if stream.set_nodelay(true).is_err() {
        return;
    }
    // Small buffers: the memory benchmark holds 2,000 connections here at once.
    let config = WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(16 * 1024);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    loop {
        let Some(Ok(first)) = ws.next().await else {
            return;
        };
        if !relay(&mut ws, first).await {
            return;
        }
        // Everything the last read already brought in goes into the same write.
        while let Some(next) = ws.next().now_or_never() {
            let Some(Ok(msg)) = next else {
                return;
            };
            if !relay(&mut ws, msg).await {
                return;
            }
        }
        if ws.flush().await.is_err() {
            return;
        }
    }
}

async fn relay(ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>, msg: Message) -> bool {
    match msg {
        Message::Text(_) | Message::Binary(_) => ws.feed(msg).await.is_ok(),
        // Pings are answered by tungstenite itself; a close reply is queued by it too.
        _ => true,
    }
}

/// A running echo server child process. Killed (SIGKILL) on drop at the latest.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// When the parent learnt that it listens.
    pub ready_at: Instant,
}

impl ServerProcess {
    /// Starts this executable again as `EXE serve --addr ADDR` (see the module docs: the
    /// executable must answer that command line with [`serve`]) and waits until it listens.
    pub async fn spawn(addr: &str) -> io::Result<ServerProcess> {
        ServerProcess::spawn_command(&std::env::current_exe()?, SERVE, addr).await
    }

    /// Starts `exe WORD --addr ADDR` and waits until it prints `listening ADDR`: another
    /// server that a bench executable answers (the relay benchmark's `relay-serve`), possibly
    /// in another build of it.
    pub async fn spawn_command(exe: &Path, word: &str, addr: &str) -> io::Result<ServerProcess> {
        let mut child = Command::new(exe)
            .args([word, ADDR, addr])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        let read = reader.read_line(&mut line);
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .map_err(|_| {
                io::Error::other(format!("{} {word} did not start in 10 s", exe.display()))
            })??;
        let ready_at = Instant::now();
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| io::Error::other(format!("unexpected server output {line:?}")))?;
        Ok(ServerProcess {
            child,
            addr,
            ready_at,
        })
    }

    /// The child's process id (gone once it was killed and reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The `ws://` URL of the server.
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// Kills it with SIGKILL (like a crash: the kernel closes its sockets) and reaps it.
    pub async fn kill(&mut self) -> io::Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }
}
