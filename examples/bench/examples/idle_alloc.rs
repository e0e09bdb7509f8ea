//! What an idle tether connection keeps allocated, counted by a global allocator.
//!
//! ```text
//! cargo run --release -p tether-bench --example idle_alloc -- [CONNS] [TRACE_SIZE]
//! ```
//!
//! Opens CONNS (default 1,000) idle tether clients (defaults, raw protocol) to the bench's
//! echo server (`tether_bench::server`) on loopback, run in a child process of this example so
//! that its allocations are not counted, then prints the heap bytes and blocks still held per
//! connection, by allocation size, with the sizes of the types that usually explain them. With
//! TRACE_SIZE, the first allocations of exactly that many bytes made while connecting print
//! their backtrace (build with symbols, e.g. `--profile bench`, for readable frames).
//!
//! Requested bytes are counted; malloc adds its own header and rounding (the bench's RSS
//! figure includes them).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;
use tether_bench::server::{self, ServerProcess};
use tether_bench::{wait_open, BoxError};

/// Exact sizes up to this are counted one by one; larger ones share the last bucket.
const SIZES: usize = 16 * 1024;

struct Counting;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_BLOCKS: AtomicI64 = AtomicI64::new(0);
static BY_SIZE: [AtomicI64; SIZES + 1] = [const { AtomicI64::new(0) }; SIZES + 1];
static TRACE_SIZE: AtomicUsize = AtomicUsize::new(0);
static TRACES_LEFT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static IN_TRACE: AtomicBool = const { AtomicBool::new(false) };
}

fn count(size: usize, sign: i64) {
    LIVE_BYTES.fetch_add(sign * size as i64, Relaxed);
    LIVE_BLOCKS.fetch_add(sign, Relaxed);
    BY_SIZE[size.min(SIZES)].fetch_add(sign, Relaxed);
}

fn maybe_trace(size: usize) {
    if size != TRACE_SIZE.load(Relaxed) || TRACES_LEFT.load(Relaxed) == 0 {
        return;
    }
    let _ = IN_TRACE.try_with(|busy| {
        if busy.swap(true, Relaxed) {
            return;
        }
        if TRACES_LEFT
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            let trace = std::backtrace::Backtrace::force_capture();
            eprintln!("--- allocation of {size} bytes ---\n{trace}");
        }
        busy.store(false, Relaxed);
    });
}

#[allow(unsafe_code)]
// SAFETY: every call is forwarded to `System` unchanged; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size(), 1);
            maybe_trace(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size(), 1);
            maybe_trace(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) };
        count(layout.size(), -1);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's pointer, layout and size.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(layout.size(), -1);
            count(new_size, 1);
            maybe_trace(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    // The server child: `ServerProcess::spawn` below runs this executable again as the server.
    if let Some(addr) = server::serve_command(&args) {
        return Ok(server::serve(addr)?);
    }
    let number = |at: usize, name: &str, default: usize| -> Result<usize, BoxError> {
        args.get(at).map_or(Ok(default), |a| {
            a.parse()
                .map_err(|e| format!("{name} must be a whole number, not {a:?}: {e}").into())
        })
    };
    let conns = number(1, "CONNS", 1_000)?;
    let trace = number(2, "TRACE_SIZE", 0)?;
    if conns == 0 {
        return Err("CONNS must be at least 1 (per-connection figures of no connections)".into());
    }
    // Each connection is a socket here and one in the server child: refuse a count the open
    // file limit cannot hold instead of retrying connections that can never be made.
    let limit = tether_bench::sys::raise_nofile(conns as u64 + 256);
    if (conns as u64) + 64 > limit {
        return Err(format!("CONNS {conns} exceeds the open file limit ({limit}) minus 64").into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(measure(conns, trace))?;
    // The clients are not dropped one by one: the process just ends.
    std::process::exit(0)
}

async fn measure(conns: usize, trace: usize) -> Result<(), BoxError> {
    let mut server = ServerProcess::spawn("127.0.0.1:0").await?;
    let url = server.url();

    let connect = || async {
        let (client, mut events) = tether::Client::builder(url.as_str()).connect()?;
        wait_open(&mut events).await?;
        Ok::<_, BoxError>((client, events))
    };
    // Warm-up: one-time costs (shared TLS/HTTP context, runtime, lazy statics).
    let (warm, events) = connect().await?;
    warm.close().await;
    drop((warm, events));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let before_bytes = LIVE_BYTES.load(Relaxed);
    let before_blocks = LIVE_BLOCKS.load(Relaxed);
    let before: Vec<i64> = BY_SIZE.iter().map(|c| c.load(Relaxed)).collect();
    TRACE_SIZE.store(trace, Relaxed);
    TRACES_LEFT.store(if trace > 0 { 3 } else { 0 }, Relaxed);
    let mut clients = Vec::with_capacity(conns);
    while clients.len() < conns {
        let batch = 100.min(conns - clients.len());
        let opened = futures_util::future::join_all((0..batch).map(|_| connect())).await;
        for client in opened {
            clients.push(client?);
        }
    }
    TRACES_LEFT.store(0, Relaxed);
    // Let connection set-up garbage (handshake futures, first events) be freed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bytes = LIVE_BYTES.load(Relaxed) - before_bytes;
    let blocks = LIVE_BLOCKS.load(Relaxed) - before_blocks;
    let n = conns as f64;
    println!(
        "{conns} idle connections: {:.0} heap bytes in {:.1} blocks per connection \
         (requested sizes; add malloc's ~8-16 B per block)",
        bytes as f64 / n,
        blocks as f64 / n
    );
    let mut rows: Vec<(usize, i64)> = BY_SIZE
        .iter()
        .zip(&before)
        .enumerate()
        .map(|(size, (now, was))| (size, now.load(Relaxed) - was))
        .filter(|&(_, d)| d != 0)
        .collect();
    rows.sort_by_key(|&(size, d)| std::cmp::Reverse(size as i64 * d));
    println!("  size B   blocks/conn   bytes/conn");
    for (size, d) in rows.iter().take(25) {
        let label = if *size == SIZES { "≥16K" } else { "" };
        println!(
            "  {size:>6}{label} {:>11.2} {:>12.0}",
            *d as f64 / n,
            (*size as i64 * d) as f64 / n
        );
    }
    type Tcp = tokio::net::TcpStream;
    type Ws<S> = tokio_tungstenite::WebSocketStream<S>;
    println!(
        "type sizes: Engine {} B, Config {} B, Event {} B, Action {} B, \
         WebSocketStream<MaybeTlsStream<TcpStream>> {} B, WebSocketStream<TcpStream> {} B",
        std::mem::size_of::<tether_core::Engine>(),
        std::mem::size_of::<tether_core::Config>(),
        std::mem::size_of::<tether_core::Event>(),
        std::mem::size_of::<tether_core::Action>(),
        std::mem::size_of::<Ws<tokio_tungstenite::MaybeTlsStream<Tcp>>>(),
        std::mem::size_of::<Ws<Tcp>>(),
    );
    server.kill().await?;
    Ok(())
}
