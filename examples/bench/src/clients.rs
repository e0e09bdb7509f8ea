//! The two clients under test, each driven the same way by the same loops:
//! - `raw`: a plain tokio-tungstenite client (Nagle off, otherwise library defaults), the
//!   ceiling of our stack;
//! - `tether`: `tether::Client` in raw protocol mode with the default configuration.
//!
//! Both make one owned `String` per message (what an app hands over), stamp it on send and
//! match echoes in FIFO order (the server echoes in order).

use crate::stats::Sample;
use futures_util::{FutureExt, SinkExt, StreamExt};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tether::{Client, Event, Events, Payload, State};
use tether_bench::wait_open;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub use tether_bench::BoxError;

type RawWs = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Longest wait for any single step (connect, one echo) before the run is declared broken.
const STEP: Duration = Duration::from_secs(10);

/// Round trips made before measuring (connection warm-up, buffers grown); fewer for tiny runs.
fn warmup(n: usize) -> usize {
    (n / 2).clamp(10, 1_000)
}

/// Which client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Plain tokio-tungstenite.
    Raw,
    /// The tether client, raw protocol mode, default config.
    Tether,
}

/// One measured phase: `n` messages, per-message latencies, wall and CPU time.
struct Meter {
    latencies: Vec<Duration>,
    start: Instant,
    cpu: Duration,
}

impl Meter {
    fn start(n: usize) -> Meter {
        Meter {
            latencies: Vec::with_capacity(n),
            cpu: tether_bench::sys::cpu_time(),
            start: Instant::now(),
        }
    }

    fn finish(self) -> Sample {
        let wall = self.start.elapsed();
        let cpu = tether_bench::sys::cpu_time().saturating_sub(self.cpu);
        Sample::new(self.latencies, wall, cpu)
    }
}

/// Sequential round trips: send one, wait for its echo, `n` times.
pub async fn rtt(kind: Kind, url: &str, n: usize, payload: &str) -> Result<Sample, BoxError> {
    match kind {
        Kind::Raw => {
            let mut ws = raw_connect(url).await?;
            for _ in 0..warmup(n) {
                raw_round_trip(&mut ws, payload).await?;
            }
            let mut meter = Meter::start(n);
            for _ in 0..n {
                let sent = Instant::now();
                raw_round_trip(&mut ws, payload).await?;
                meter.latencies.push(sent.elapsed());
            }
            let sample = meter.finish();
            let _ = ws.close(None).await;
            Ok(sample)
        }
        Kind::Tether => {
            let (client, mut events) = tether_connect(url).await?;
            for _ in 0..warmup(n) {
                client.send(payload.to_owned())?;
                tether_echo(&mut events).await?;
            }
            let mut meter = Meter::start(n);
            for _ in 0..n {
                let sent = Instant::now();
                client.send(payload.to_owned())?;
                tether_echo(&mut events).await?;
                meter.latencies.push(sent.elapsed());
            }
            let sample = meter.finish();
            client.close().await;
            Ok(sample)
        }
    }
}

/// Pipelined: keep `window` messages in flight until `n` have come back.
pub async fn pipelined(
    kind: Kind,
    url: &str,
    n: usize,
    window: usize,
    payload: &str,
) -> Result<Sample, BoxError> {
    let mut stamps: VecDeque<Instant> = VecDeque::with_capacity(window);
    match kind {
        Kind::Raw => {
            let mut ws = raw_connect(url).await?;
            for _ in 0..warmup(n) {
                raw_round_trip(&mut ws, payload).await?;
            }
            let mut meter = Meter::start(n);
            let mut sent = 0;
            while meter.latencies.len() < n {
                let mut fed = false;
                while sent < n && sent - meter.latencies.len() < window {
                    stamps.push_back(Instant::now());
                    ws.feed(Message::text(payload.to_owned())).await?;
                    sent += 1;
                    fed = true;
                }
                if fed {
                    ws.flush().await?;
                }
                // Wait for one echo, then take every echo that is already here.
                let first = timeout(ws.next()).await?;
                raw_echoed(first, &mut stamps, &mut meter)?;
                while meter.latencies.len() < n {
                    match ws.next().now_or_never() {
                        Some(next) => raw_echoed(next, &mut stamps, &mut meter)?,
                        None => break,
                    }
                }
            }
            let sample = meter.finish();
            let _ = ws.close(None).await;
            Ok(sample)
        }
        Kind::Tether => {
            let (client, mut events) = tether_connect(url).await?;
            for _ in 0..warmup(n) {
                client.send(payload.to_owned())?;
                tether_echo(&mut events).await?;
            }
            let mut meter = Meter::start(n);
            let mut sent = 0;
            while meter.latencies.len() < n {
                while sent < n && sent - meter.latencies.len() < window {
                    stamps.push_back(Instant::now());
                    client.send(payload.to_owned())?;
                    sent += 1;
                }
                let first = timeout(events.recv()).await?;
                tether_echoed(first, &mut stamps, &mut meter)?;
                while meter.latencies.len() < n {
                    match events.try_recv() {
                        Ok(event) => tether_echoed(Some(event), &mut stamps, &mut meter)?,
                        Err(_) => break,
                    }
                }
            }
            let sample = meter.finish();
            client.close().await;
            Ok(sample)
        }
    }
}

async fn timeout<T>(f: impl std::future::Future<Output = T>) -> Result<T, BoxError> {
    tokio::time::timeout(STEP, f)
        .await
        .map_err(|_| "no answer from the echo server within 10 s".into())
}

/// A plain tokio-tungstenite connection: library defaults, Nagle off (as tether does).
pub async fn raw_connect(url: &str) -> Result<RawWs, BoxError> {
    raw_connect_with(url, None).await
}

/// A plain connection with an explicit tungstenite config.
pub async fn raw_connect_with(
    url: &str,
    config: Option<tokio_tungstenite::tungstenite::protocol::WebSocketConfig>,
) -> Result<RawWs, BoxError> {
    let (ws, _) = timeout(tokio_tungstenite::connect_async_with_config(
        url, config, true,
    ))
    .await??;
    Ok(ws)
}

async fn raw_round_trip(ws: &mut RawWs, payload: &str) -> Result<(), BoxError> {
    ws.send(Message::text(payload.to_owned())).await?;
    loop {
        match timeout(ws.next()).await? {
            Some(Ok(Message::Text(_) | Message::Binary(_))) => return Ok(()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => return Err("echo server closed the connection".into()),
        }
    }
}

fn raw_echoed(
    msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    stamps: &mut VecDeque<Instant>,
    meter: &mut Meter,
) -> Result<(), BoxError> {
    match msg {
        Some(Ok(Message::Text(_) | Message::Binary(_))) => {
            let sent = stamps.pop_front().ok_or("echo of a message never sent")?;
            meter.latencies.push(sent.elapsed());
            Ok(())
        }
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(e.into()),
        None => Err("echo server closed the connection".into()),
    }
}

/// A tether client (raw protocol mode, defaults), connected and open.
pub async fn tether_connect(url: &str) -> Result<(Client, Events), BoxError> {
    tether_connect_with(url, None).await
}

/// A tether client, optionally with a non-default WebSocket read buffer, connected and open.
pub async fn tether_connect_with(
    url: &str,
    read_buffer: Option<usize>,
) -> Result<(Client, Events), BoxError> {
    let mut builder = Client::builder(url);
    if let Some(bytes) = read_buffer {
        builder = builder.read_buffer_size(bytes);
    }
    let (client, mut events) = builder.connect()?;
    wait_open(&mut events).await?;
    Ok((client, events))
}

async fn tether_echo(events: &mut Events) -> Result<(), BoxError> {
    loop {
        match timeout(events.recv()).await? {
            Some(Event::Message(_)) => return Ok(()),
            Some(Event::StateChanged { to, .. }) if to != State::Open => {
                return Err(format!("connection left Open: {to}").into())
            }
            Some(_) => continue,
            None => return Err("client ended".into()),
        }
    }
}

fn tether_echoed(
    event: Option<Event>,
    stamps: &mut VecDeque<Instant>,
    meter: &mut Meter,
) -> Result<(), BoxError> {
    match event {
        Some(Event::Message(m)) => {
            debug_assert!(matches!(m.payload, Payload::Text(_)));
            let sent = stamps.pop_front().ok_or("echo of a message never sent")?;
            meter.latencies.push(sent.elapsed());
            Ok(())
        }
        Some(Event::StateChanged { to, .. }) if to != State::Open => {
            Err(format!("connection left Open: {to}").into())
        }
        Some(Event::Dropped { ids, reason }) => {
            Err(format!("{} messages dropped: {}", ids.len(), reason.name()).into())
        }
        Some(_) => Ok(()),
        None => Err("client ended".into()),
    }
}
