//! The relay benchmark: one client pipelining acknowledged publishes to the reference relay on
//! loopback, and what the relay spends per acknowledgement.
//!
//! The relay runs in a child process, `EXE relay-serve --addr ADDR`, which this executable
//! answers with [`serve`]: the `tether-relay` library it was built with, on a multi-threaded
//! runtime as the `tether-relay` binary runs it, with the default configuration except the
//! per-connection rate limit, which is off (at 1,000 messages/s it would be all that this
//! measured). `--relay-exe` names other executables that answer the same command line (a
//! `tether-bench` built from another commit), so relays of two builds are compared in one run,
//! interleaved.
//!
//! The client is a plain tokio-tungstenite connection speaking the protocol: `hello`, then
//! `publish{ack: true}` frames of a fixed payload to one channel nobody subscribes to, `window`
//! of them unacknowledged at a time, so the relay's answers are the acks alone. Measured per
//! run: acks per second, each publish's time to its ack, the relay's CPU time per ack (every
//! thread of the child, from `/proc`), and how many TCP segments with data the client received
//! per ack (`TCP_INFO`): the relay's writes, merged where the kernel merged them.

use crate::stats::Sample;
use futures_util::{FutureExt, SinkExt, StreamExt};
use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tether_bench::server::{parent_gone, ServerProcess};
use tether_bench::{sys, BoxError};
use tether_core::protocol::ServerMessage;
use tether_relay::{Relay, RelayConfig};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The child's command word: `EXE relay-serve --addr ADDR`.
pub const RELAY_SERVE: &str = "relay-serve";

/// Longest wait for any single step (connect, one ack) before the run is declared broken.
const STEP: Duration = Duration::from_secs(10);

/// The address to serve the relay on if `args` (a whole command line, program name first) is
/// `EXE relay-serve --addr ADDR`; `None` otherwise.
pub fn serve_command(args: &[String]) -> Option<&str> {
    match args {
        [_, word, flag, addr] if word == RELAY_SERVE && flag == "--addr" => Some(addr),
        _ => None,
    }
}

/// Runs the relay until standard input closes. Prints `listening ADDR` once bound.
// The `listening` line is how the parent learns the address: stdout is the protocol.
#[allow(clippy::print_stdout)]
pub fn serve(addr: &str) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let config = RelayConfig {
            rate_limit: None,
            ..RelayConfig::default()
        };
        let relay = Relay::bind(addr, config).await?;
        println!("listening {}", relay.local_addr());
        parent_gone().await;
        relay.abort().await;
        Ok(())
    })
}

/// What one relay build is measured with.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Acked publishes per run.
    pub count: usize,
    /// Publishes unacknowledged at a time.
    pub window: usize,
    /// Payload bytes (a JSON string of that many `x`).
    pub size: usize,
    /// Runs per relay, the relays interleaved.
    pub repeat: usize,
    pub verbose: bool,
}

/// One run's figures.
#[derive(Debug, Clone, Copy)]
pub struct RelaySample {
    /// Acks per second; latencies from each publish to its ack; `cpu_us`: the relay's.
    pub sample: Sample,
    /// TCP segments with data received from the relay per ack.
    pub segments_per_ack: f64,
}

/// One relay build's runs.
#[derive(Debug)]
pub struct RelayFigures {
    /// "this build", or the file name of the executable given.
    pub label: String,
    pub runs: Vec<RelaySample>,
}

impl RelayFigures {
    /// The median of each figure over the runs (each on its own).
    pub fn median(&self) -> RelaySample {
        let samples: Vec<Sample> = self.runs.iter().map(|r| r.sample).collect();
        RelaySample {
            sample: Sample::median(&samples),
            segments_per_ack: crate::stats::median(
                self.runs.iter().map(|r| r.segments_per_ack).collect(),
            ),
        }
    }

    /// Half the min–max spread of `figure`, in % of its median.
    pub fn noise(&self, figure: fn(&RelaySample) -> f64) -> f64 {
        let values: Vec<f64> = self.runs.iter().map(figure).collect();
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mid = crate::stats::median(values);
        if mid > 0.0 {
            (hi - lo) / mid * 50.0
        } else {
            0.0
        }
    }
}

/// Starts one relay child per executable (this one first, then `others`), then measures them
/// `repeat` times each, rotating which goes first, and returns each one's runs.
pub async fn measure(others: &[PathBuf], opts: Options) -> Result<Vec<RelayFigures>, BoxError> {
    let this = std::env::current_exe()?;
    let exes: Vec<(String, &Path)> = std::iter::once(("this build".to_owned(), this.as_path()))
        .chain(
            others
                .iter()
                // Its file name: a whole path would not fit the report's column.
                .map(|p| {
                    let name = p.file_name().unwrap_or(p.as_os_str());
                    (name.to_string_lossy().into_owned(), p.as_path())
                }),
        )
        .collect();
    let mut relays = Vec::new();
    for (label, exe) in &exes {
        let process = ServerProcess::spawn_command(exe, RELAY_SERVE, "127.0.0.1:0").await?;
        relays.push((
            process,
            RelayFigures {
                label: label.clone(),
                runs: Vec::new(),
            },
        ));
    }
    let payload = "x".repeat(opts.size);
    let outcome: Result<(), BoxError> = async {
        let count = relays.len();
        for i in 0..opts.repeat {
            for k in 0..count {
                let (process, figures) = &mut relays[(i + k) % count];
                let pid = process.pid().ok_or("relay child gone")?;
                let run = run(process.addr, pid, opts, &payload, i).await?;
                if opts.verbose {
                    eprintln!(
                        "relay #{i} {}: {:.0} acks/s, p50 {:.1} µs, p99 {:.1} µs, relay cpu {:.2} µs/ack, {:.3} segments/ack",
                        figures.label,
                        run.sample.msgs_per_s,
                        run.sample.p50_us,
                        run.sample.p99_us,
                        run.sample.cpu_us,
                        run.segments_per_ack
                    );
                }
                figures.runs.push(run);
            }
        }
        Ok(())
    }
    .await;
    let mut figures = Vec::new();
    for (mut process, f) in relays {
        process.kill().await?;
        figures.push(f);
    }
    outcome?;
    Ok(figures)
}

/// One run against the relay at `addr` (process `pid`): a fresh connection with a client id
/// and a channel of its own, a warm-up, then `opts.count` acked publishes.
async fn run(
    addr: std::net::SocketAddr,
    pid: u32,
    opts: Options,
    payload: &str,
    run: usize,
) -> Result<RelaySample, BoxError> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let fd = tcp.as_raw_fd();
    let url = format!("ws://{addr}/");
    let (mut ws, _) = timeout(tokio_tungstenite::client_async(url, tcp)).await??;
    let client_id = format!("bench-{}-{run}", std::process::id());
    ws.send(Message::text(format!(
        r#"{{"v":1,"type":"hello","client_id":"{client_id}"}}"#
    )))
    .await?;
    let mut publisher = Publisher {
        channel: format!("bench-{run}"),
        payload,
        next_id: 0,
    };
    let warmup = (opts.count / 10).clamp(10, 2_000);
    pipeline(&mut ws, &mut publisher, warmup, opts.window, None).await?;

    let segments = sys::tcp_data_segments_in(fd);
    let cpu = sys::process_cpu_time(pid);
    let start = Instant::now();
    let mut latencies = Vec::with_capacity(opts.count);
    pipeline(
        &mut ws,
        &mut publisher,
        opts.count,
        opts.window,
        Some(&mut latencies),
    )
    .await?;
    let wall = start.elapsed();
    let cpu = sys::process_cpu_time(pid)
        .zip(cpu)
        .map(|(after, before)| after.saturating_sub(before));
    let segments = sys::tcp_data_segments_in(fd)
        .zip(segments)
        .map(|(after, before)| after.wrapping_sub(before));
    let _ = ws.close(None).await;
    let mut sample = Sample::new(latencies, wall, cpu.unwrap_or_default());
    if cpu.is_none() {
        sample.cpu_us = f64::NAN;
    }
    Ok(RelaySample {
        sample,
        segments_per_ack: segments.map_or(f64::NAN, |s| f64::from(s) / opts.count as f64),
    })
}

struct Publisher<'a> {
    channel: String,
    payload: &'a str,
    next_id: u64,
}

impl Publisher<'_> {
    fn next(&mut self) -> Message {
        self.next_id += 1;
        Message::text(format!(
            r#"{{"v":1,"type":"publish","id":"p{}","channel":"{}","payload":"{}","ack":true}}"#,
            self.next_id, self.channel, self.payload
        ))
    }
}

/// Publishes `n` messages with acks, at most `window` unacknowledged; with `latencies`,
/// records each one's time from being written to its ack (acks come in order).
async fn pipeline(
    ws: &mut WebSocketStream<TcpStream>,
    publisher: &mut Publisher<'_>,
    n: usize,
    window: usize,
    mut latencies: Option<&mut Vec<Duration>>,
) -> Result<(), BoxError> {
    let mut stamps: VecDeque<Instant> = VecDeque::with_capacity(window);
    let (mut sent, mut acked) = (0, 0);
    while acked < n {
        let mut fed = false;
        while sent < n && sent - acked < window {
            stamps.push_back(Instant::now());
            ws.feed(publisher.next()).await?;
            sent += 1;
            fed = true;
        }
        if fed {
            ws.flush().await?;
        }
        // Wait for one answer, then take every answer that is already here.
        let mut next = Some(timeout(ws.next()).await?);
        while let Some(answer) = next {
            if answer_is_ack(answer)? {
                acked += 1;
                let stamp = stamps.pop_front().ok_or("an ack for no publish")?;
                if let Some(latencies) = latencies.as_deref_mut() {
                    latencies.push(stamp.elapsed());
                }
            }
            next = if acked < n {
                ws.next().now_or_never()
            } else {
                None
            };
        }
    }
    Ok(())
}

/// Whether `answer` is an ack; an error (or anything the relay should not send) fails the run.
fn answer_is_ack(
    answer: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
) -> Result<bool, BoxError> {
    match answer {
        Some(Ok(Message::Text(text))) => match ServerMessage::decode(text.as_str()) {
            Ok(ServerMessage::Ack { .. }) => Ok(true),
            // The relay's heartbeat (every 25 s by default): not an answer.
            Ok(ServerMessage::Ping { .. }) => Ok(false),
            Ok(other) => Err(format!("the relay answered a publish with {other:?}").into()),
            Err(e) => Err(format!("undecodable frame from the relay: {e}").into()),
        },
        Some(Ok(Message::Close(frame))) => {
            Err(format!("the relay closed the connection: {frame:?}").into())
        }
        Some(Ok(_)) => Ok(false),
        Some(Err(e)) => Err(e.into()),
        None => Err("the relay closed the connection".into()),
    }
}

async fn timeout<T>(f: impl std::future::Future<Output = T>) -> Result<T, BoxError> {
    tokio::time::timeout(STEP, f)
        .await
        .map_err(|_| "no answer from the relay within 10 s".into())
}
