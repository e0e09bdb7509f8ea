//! Idle memory per connection: a child process opens N idle connections to the echo server
//! and reports its resident set before and after. Each client kind gets its own process, so
//! allocator state left by one cannot flatter or penalise the other.

use crate::clients::{raw_connect_with, tether_connect_with, BoxError};
use futures_util::StreamExt;
use std::time::Duration;
use tether_bench::sys;
use tokio::process::Command;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Connections opened at once while filling up (the server's accept backlog is finite).
const BATCH: usize = 100;

/// Which client a memory child opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MemoryClient {
    /// tokio-tungstenite with its defaults (128 KiB read buffer), one reader task each.
    Raw,
    /// tokio-tungstenite with tether's buffer sizes (4 KiB read, 8 KiB write), one reader
    /// task each.
    RawSmall,
    /// tether clients (raw protocol mode, defaults); the app holds their `Events`.
    Tether,
    /// tether clients with one non-default setting: `read_buffer_size(2 KiB)`.
    TetherReadBuf2k,
}

/// What a memory child measured.
#[derive(Debug, Clone, Copy)]
pub struct MemoryFigure {
    pub conns: usize,
    pub before_kib: u64,
    pub after_kib: u64,
}

impl MemoryFigure {
    pub fn per_conn_kib(&self) -> f64 {
        self.after_kib.saturating_sub(self.before_kib) as f64 / self.conns.max(1) as f64
    }
}

/// Runs a memory child for `client` and parses its report.
pub async fn measure(
    client: MemoryClient,
    url: &str,
    conns: usize,
) -> Result<MemoryFigure, BoxError> {
    let exe = std::env::current_exe()?;
    let name = match client {
        MemoryClient::Raw => "raw",
        MemoryClient::RawSmall => "raw-small",
        MemoryClient::Tether => "tether",
        MemoryClient::TetherReadBuf2k => "tether-read-buf2k",
    };
    let run = Command::new(exe)
        .args(["memory-child", "--client", name, "--url", url])
        .args(["--conns", &conns.to_string()])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .map_err(|_| "memory child did not finish in 120 s")??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "memory child ({name}) failed: {}{}",
            stdout,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    // One line: "rss_before_kib B rss_after_kib A conns N".
    let fields: Vec<&str> = stdout.split_whitespace().collect();
    let field = |key: &str| -> Result<u64, BoxError> {
        let pos = fields
            .iter()
            .position(|f| *f == key)
            .ok_or_else(|| format!("memory child output lacks {key}: {stdout:?}"))?;
        Ok(fields.get(pos + 1).ok_or("truncated")?.parse()?)
    };
    Ok(MemoryFigure {
        conns: usize::try_from(field("conns")?)?,
        before_kib: field("rss_before_kib")?,
        after_kib: field("rss_after_kib")?,
    })
}

/// The child: opens `conns` idle connections, prints its RSS before and after.
pub async fn child(client: MemoryClient, url: &str, conns: usize) -> Result<(), BoxError> {
    let limit = sys::raise_nofile(conns as u64 + 256);
    if limit < conns as u64 + 64 {
        return Err(format!("open-file limit {limit} is too low for {conns} connections").into());
    }
    // Lets connection set-up garbage be freed before RSS is read (shorter for tiny runs).
    let settle_ms = (50 + conns as u64 / 8).min(300);
    let settle = || tokio::time::sleep(Duration::from_millis(settle_ms));
    match client {
        MemoryClient::Raw | MemoryClient::RawSmall => {
            let config = (client == MemoryClient::RawSmall).then(|| {
                WebSocketConfig::default()
                    .read_buffer_size(4 * 1024)
                    .write_buffer_size(8 * 1024)
            });
            // Warm-up: one-time costs (runtime, lazy statics) are not per connection.
            drop(raw_connect_with(url, config).await?);
            let mut readers = Vec::with_capacity(conns);
            settle().await;
            let before = sys::rss_kib().ok_or("no VmRSS")?;
            while readers.len() < conns {
                let batch = BATCH.min(conns - readers.len());
                let opened = futures_util::future::join_all(
                    (0..batch).map(|_| raw_connect_with(url, config)),
                )
                .await;
                for ws in opened {
                    let mut ws = ws?;
                    // An idle app still reads, to answer pings and see the close.
                    readers.push(tokio::spawn(async move {
                        while let Some(Ok(_)) = ws.next().await {}
                    }));
                }
            }
            settle().await;
            let after = sys::rss_kib().ok_or("no VmRSS")?;
            report(before, after, readers.len());
            for reader in readers {
                reader.abort();
            }
        }
        MemoryClient::Tether | MemoryClient::TetherReadBuf2k => {
            let read_buffer = (client == MemoryClient::TetherReadBuf2k).then_some(2 * 1024);
            let connect = || tether_connect_with(url, read_buffer);
            let (warm, _events) = connect().await?;
            warm.close().await;
            drop(warm);
            let mut clients = Vec::with_capacity(conns);
            settle().await;
            let before = sys::rss_kib().ok_or("no VmRSS")?;
            while clients.len() < conns {
                let batch = BATCH.min(conns - clients.len());
                let opened = futures_util::future::join_all((0..batch).map(|_| connect())).await;
                for client in opened {
                    clients.push(client?);
                }
            }
            settle().await;
            let after = sys::rss_kib().ok_or("no VmRSS")?;
            report(before, after, clients.len());
        }
    }
    Ok(())
}

/// The child's report: one line on stdout, read by the parent.
fn report(before: u64, after: u64, conns: usize) {
    println!("rss_before_kib {before} rss_after_kib {after} conns {conns}");
}
