//! `tether-bench`: the tether client side by side with a plain tokio-tungstenite client, in
//! one run, on loopback, against the same echo server (a child process: see the library's
//! `server`, which the `idle_alloc` example runs too).
//!
//! ```text
//! cargo run --release -p tether-bench -- [all|rtt|throughput|memory|reconnect] [options]
//! cargo run --release -p tether-bench -- relay [--relay-exe OTHER-BUILD]... [options]
//! ```
//!
//! Prints every figure for both clients and the ratio tether/raw, then which targets were met.
//! `relay` (not part of `all`: it measures the relay, not the clients) prints the reference
//! relay's acked-publish figures instead, for this build's relay and any other given (see
//! `relay.rs`). Figures are printed, never asserted: machines are shared and noisy.

// A bench binary's output is its report.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod clients;
mod memory;
mod reconnect;
mod relay;
mod stats;

use clap::{Parser, ValueEnum};
use clients::{BoxError, Kind};
use memory::{MemoryClient, MemoryFigure};
use reconnect::{Profile, ReconnectFigures};
use stats::Sample;
use std::time::Duration;
use tether_bench::server::{self, ServerProcess};
use tether_bench::sys;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum What {
    /// Every benchmark.
    All,
    /// Sequential round trips.
    Rtt,
    /// Pipelined throughput.
    Throughput,
    /// Idle memory per connection.
    Memory,
    /// Reconnect after a server outage.
    Reconnect,
    /// The reference relay: pipelined acked publishes (not part of `all`).
    Relay,
    /// (internal) open idle connections and report RSS.
    #[value(hide = true)]
    MemoryChild,
}

/// Benchmarks the tether client against a plain tokio-tungstenite client on loopback.
#[derive(Debug, Parser)]
#[command(name = "tether-bench")]
struct Cli {
    /// Which benchmark.
    #[arg(value_enum, default_value = "all")]
    what: What,
    /// Sequential round trips per repeat.
    #[arg(long, default_value_t = 20_000, value_parser = at_least_one::<usize>)]
    rtt_count: usize,
    /// Pipelined messages per repeat.
    #[arg(long, default_value_t = 200_000, value_parser = at_least_one::<usize>)]
    tput_count: usize,
    /// Pipelined messages in flight (also publishes awaiting their ack, for `relay`).
    #[arg(long, default_value_t = 100, value_parser = at_least_one::<usize>)]
    window: usize,
    /// Acked publishes per repeat of the relay benchmark.
    #[arg(long, default_value_t = 100_000, value_parser = at_least_one::<usize>)]
    relay_count: usize,
    /// Another executable whose `relay-serve` runs its own build of the relay (a tether-bench
    /// built from another commit), measured beside this build's, interleaved. Repeatable.
    #[arg(long, value_name = "PATH")]
    relay_exe: Vec<std::path::PathBuf>,
    /// Message size in bytes (text; the payload of each publish for `relay`).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Repeats of the round-trip, throughput and relay phases (raw and tether, or the relays,
    /// interleaved); the table shows medians.
    #[arg(long, default_value_t = 5, value_parser = at_least_one::<usize>)]
    repeat: usize,
    /// Idle connections for the memory figure.
    #[arg(long, default_value_t = 2_000, value_parser = at_least_one::<usize>)]
    conns: usize,
    /// Real reconnect runs per profile.
    #[arg(long, default_value_t = 7, value_parser = at_least_one::<usize>)]
    runs: usize,
    /// How long the server stays down, ms.
    #[arg(long, default_value_t = 2_000)]
    outage_ms: u64,
    /// The app sends one message every this many ms during the reconnect benchmark.
    #[arg(long, default_value_t = 50, value_parser = at_least_one::<u64>)]
    interval_ms: u64,
    /// Seeds for the virtual-time reconnect model.
    #[arg(long, default_value_t = 10_000, value_parser = at_least_one::<u64>)]
    model_seeds: u64,
    /// Also run the reconnect benchmark with this non-default `backoff_max` (0: don't).
    #[arg(long, default_value_t = 1_000)]
    alt_backoff_max_ms: u64,
    /// Skip the reconnect run with default settings (only the alternative profile runs).
    #[arg(long)]
    skip_default_reconnect: bool,
    /// Non-default `min_uptime` for both reconnect profiles (for quick smoke runs).
    #[arg(long)]
    min_uptime_ms: Option<u64>,
    /// Client runtime: tokio's multi-threaded runtime (as most apps run) or current-thread.
    #[arg(long, value_enum, default_value = "multi-thread")]
    runtime: Runtime,
    /// Run only one client in the round-trip and throughput phases (for profiling one side).
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// Run the app loops in `block_on` on the main thread (as a `#[tokio::main]` body does)
    /// instead of in a spawned task.
    #[arg(long)]
    app_in_main: bool,
    /// Print every repeat's figures.
    #[arg(long)]
    verbose: bool,
    /// (internal) server URL for a memory child.
    #[arg(long, hide = true, default_value = "")]
    url: String,
    /// (internal) which client a memory child opens.
    #[arg(long, hide = true, value_enum, default_value = "tether")]
    client: MemoryClient,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Only {
    Raw,
    Tether,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Runtime {
    MultiThread,
    CurrentThread,
}

fn main() -> std::process::ExitCode {
    // The server child (`ServerProcess::spawn`): its command line is the server's own.
    let args: Vec<String> = std::env::args().collect();
    if let Some(addr) = server::serve_command(&args) {
        return match server::serve(addr) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("echo server: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    // A relay child (`relay::measure`), for this executable's build of the relay.
    if let Some(addr) = relay::serve_command(&args) {
        return match relay::serve(addr) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("relay: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let cli = Cli::parse();
    let runtime = match cli.runtime {
        Runtime::MultiThread => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        Runtime::CurrentThread => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    };
    let result = runtime.map_err(BoxError::from).and_then(|rt| {
        rt.block_on(async {
            if cli.what == What::MemoryChild {
                memory::child(cli.client, &cli.url, cli.conns).await
            } else {
                run(&cli).await
            }
        })
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tether-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[derive(Default)]
struct Results {
    rtt: Option<(Vec<Sample>, Vec<Sample>)>,
    tput: Option<(Vec<Sample>, Vec<Sample>)>,
    memory: Option<Vec<(MemoryClient, MemoryFigure)>>,
    reconnect: Vec<ReconnectFigures>,
}

async fn run(cli: &Cli) -> Result<(), BoxError> {
    if cli.what == What::Relay {
        return run_relay(cli).await;
    }
    let all = cli.what == What::All;
    let payload = "x".repeat(cli.size);
    println!(
        "tether-bench: {}; client runtime {:?}; echo server: child process, current-thread tokio",
        sys::machine(),
        cli.runtime
    );
    let mut results = Results::default();
    if all || matches!(cli.what, What::Rtt | What::Throughput | What::Memory) {
        let mut server = ServerProcess::spawn("127.0.0.1:0").await?;
        let url = server.url();
        let outcome: Result<(), BoxError> = async {
            if all || cli.what == What::Rtt {
                results.rtt = Some(
                    repeated(cli, "rtt", |kind| {
                        let (url, payload, n) = (url.clone(), payload.clone(), cli.rtt_count);
                        app(
                            cli,
                            async move { clients::rtt(kind, &url, n, &payload).await },
                        )
                    })
                    .await?,
                );
            }
            if all || cli.what == What::Throughput {
                results.tput = Some(
                    repeated(cli, "pipelined", |kind| {
                        let (url, payload) = (url.clone(), payload.clone());
                        let (n, window) = (cli.tput_count, cli.window);
                        app(cli, async move {
                            clients::pipelined(kind, &url, n, window, &payload).await
                        })
                    })
                    .await?,
                );
            }
            if all || cli.what == What::Memory {
                let mut figures = Vec::new();
                for client in [
                    MemoryClient::Raw,
                    MemoryClient::RawSmall,
                    MemoryClient::Tether,
                    MemoryClient::TetherReadBuf2k,
                ] {
                    figures.push((client, memory::measure(client, &url, cli.conns).await?));
                }
                results.memory = Some(figures);
            }
            Ok(())
        }
        .await;
        server.kill().await?;
        outcome?;
    }
    if all || cli.what == What::Reconnect {
        let opts = reconnect::Options {
            runs: cli.runs,
            outage: Duration::from_millis(cli.outage_ms),
            interval: Duration::from_millis(cli.interval_ms),
            model_seeds: cli.model_seeds,
            verbose: cli.verbose,
        };
        let min_uptime = cli.min_uptime_ms.map(Duration::from_millis);
        let mut profiles = Vec::new();
        if !cli.skip_default_reconnect {
            profiles.push(Profile {
                backoff_max: None,
                min_uptime,
            });
        }
        if cli.alt_backoff_max_ms > 0 {
            profiles.push(Profile {
                backoff_max: Some(Duration::from_millis(cli.alt_backoff_max_ms)),
                min_uptime,
            });
        }
        for profile in profiles {
            eprintln!("reconnect ({}): {} runs…", profile.label(), opts.runs);
            results
                .reconnect
                .push(reconnect::measure(profile, opts).await?);
        }
    }
    print_report(cli, &results);
    Ok(())
}

/// The relay benchmark (see `relay.rs`) and its report.
async fn run_relay(cli: &Cli) -> Result<(), BoxError> {
    println!(
        "tether-bench relay: {}; relay: child process, multi-thread tokio, rate limit off; \
         client: raw tokio-tungstenite",
        sys::machine()
    );
    let opts = relay::Options {
        count: cli.relay_count,
        window: cli.window,
        size: cli.size,
        repeat: cli.repeat,
        verbose: cli.verbose,
    };
    let figures = relay::measure(&cli.relay_exe, opts).await?;
    println!();
    println!(
        "pipelined acked publishes ({} × {} B payload, window {}, median of {})",
        cli.relay_count, cli.size, cli.window, cli.repeat
    );
    let head = |label: &str, cells: [&str; 5]| {
        println!(
            "  {label:<28} {:>10} {:>9} {:>9} {:>17} {:>15}",
            cells[0], cells[1], cells[2], cells[3], cells[4]
        );
    };
    head(
        "relay",
        [
            "acks/s",
            "p50 µs",
            "p99 µs",
            "relay CPU µs/ack",
            "segments/ack",
        ],
    );
    let Some(base) = figures.first().map(relay::RelayFigures::median) else {
        return Ok(());
    };
    type Figure = fn(&relay::RelaySample) -> f64;
    let columns: [(Figure, usize); 5] = [
        (|r| r.sample.msgs_per_s, 0),
        (|r| r.sample.p50_us, 1),
        (|r| r.sample.p99_us, 1),
        (|r| r.sample.cpu_us, 2),
        (|r| r.segments_per_ack, 3),
    ];
    for f in &figures {
        let m = f.median();
        let cells = columns.map(|(get, decimals)| figure(get(&m), decimals));
        head(&f.label, cells.each_ref().map(String::as_str));
        let spread = columns.map(|(get, _)| format!("±{:.0}%", f.noise(get)));
        head("  spread", spread.each_ref().map(String::as_str));
        if !std::ptr::eq(f, &figures[0]) {
            let ratios = columns.map(|(get, _)| ratio(get(&m), get(&base)));
            head("  ÷ this build", ratios.each_ref().map(String::as_str));
        }
    }
    Ok(())
}

/// Runs an app loop where apps run it: in a spawned task (default) or in `block_on` itself.
async fn app<T: Send + 'static>(
    cli: &Cli,
    f: impl std::future::Future<Output = Result<T, BoxError>> + Send + 'static,
) -> Result<T, BoxError> {
    if cli.app_in_main {
        f.await
    } else {
        tokio::spawn(f).await?
    }
}

/// Runs `phase` for raw and tether `cli.repeat` times, alternating which goes first.
async fn repeated<F, Fut>(
    cli: &Cli,
    name: &str,
    phase: F,
) -> Result<(Vec<Sample>, Vec<Sample>), BoxError>
where
    F: Fn(Kind) -> Fut,
    Fut: std::future::Future<Output = Result<Sample, BoxError>>,
{
    let (mut raw, mut tether) = (Vec::new(), Vec::new());
    for i in 0..cli.repeat {
        let order = if i % 2 == 0 {
            [Kind::Raw, Kind::Tether]
        } else {
            [Kind::Tether, Kind::Raw]
        };
        for kind in order {
            match (cli.only, kind) {
                (Some(Only::Raw), Kind::Tether) | (Some(Only::Tether), Kind::Raw) => continue,
                _ => {}
            }
            let sample = phase(kind).await?;
            if cli.verbose {
                eprintln!(
                    "{name} #{i} {kind:?}: {:.0} msgs/s, p50 {:.1} µs, p99 {:.1} µs, cpu {:.2} µs/msg",
                    sample.msgs_per_s, sample.p50_us, sample.p99_us, sample.cpu_us
                );
            }
            match kind {
                Kind::Raw => raw.push(sample),
                Kind::Tether => tether.push(sample),
            }
        }
    }
    Ok((raw, tether))
}

/// A count or interval that 0 would make meaningless (a median of no runs, a window of no
/// messages, a send every 0 ms), so 0 is refused rather than silently raised to 1.
fn at_least_one<T>(arg: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialEq + From<u8>,
    T::Err: std::fmt::Display,
{
    match arg.parse::<T>() {
        Ok(n) if n == T::from(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A figure, or `n/a` where there was nothing to measure (the side `--only` skipped).
fn figure(value: f64, decimals: usize) -> String {
    if value.is_finite() {
        format!("{value:.decimals$}")
    } else {
        "n/a".to_owned()
    }
}

/// A target's verdict and value, or `n/a` for both when `q` could not be measured.
fn target(
    name: impl Into<String>,
    q: f64,
    met: bool,
    value: String,
) -> (String, Option<bool>, String) {
    if q.is_finite() {
        (name.into(), Some(met), value)
    } else {
        (name.into(), None, "n/a".to_owned())
    }
}

fn row(label: &str, raw: String, tether: String, ratio: String, note: String) {
    println!("  {label:<34} {raw:>16} {tether:>16} {ratio:>12}  {note}");
}

fn ratio(tether: f64, raw: f64) -> String {
    if raw > 0.0 && tether.is_finite() {
        format!("{:.2}", tether / raw)
    } else {
        "n/a".to_owned()
    }
}

/// Each side's spread; "-" for a side `--only` skipped (no samples is not "no noise").
fn noise(raw: &[Sample], tether: &[Sample], f: fn(&Sample) -> f64) -> String {
    let side = |samples: &[Sample]| {
        if samples.is_empty() {
            "-".to_owned()
        } else {
            format!("±{:.0}%", Sample::spread(samples, f) * 50.0)
        }
    };
    format!("spread {} / {}", side(raw), side(tether))
}

fn print_report(cli: &Cli, r: &Results) {
    println!();
    row(
        "figure",
        "raw tungstenite".into(),
        "tether".into(),
        "tether/raw".into(),
        "noise (raw / tether)".into(),
    );
    let mut targets: Vec<(String, Option<bool>, String)> = Vec::new();
    let samples = |label: &str, pair: &(Vec<Sample>, Vec<Sample>), p99_only: bool| {
        let (raw, tether) = pair;
        let (mr, mt) = (Sample::median(raw), Sample::median(tether));
        println!("{label}");
        // One row per figure: the medians side by side, their ratio and each side's spread.
        let metric = |name: &str, decimals: usize, f: fn(&Sample) -> f64| {
            row(
                name,
                figure(f(&mr), decimals),
                figure(f(&mt), decimals),
                ratio(f(&mt), f(&mr)),
                noise(raw, tether, f),
            );
        };
        metric("msgs/s", 0, |s| s.msgs_per_s);
        if !p99_only {
            metric("p50 µs", 1, |s| s.p50_us);
        }
        metric("p99 µs", 1, |s| s.p99_us);
        metric("client CPU µs/msg", 2, |s| s.cpu_us);
        (mr, mt)
    };
    if let Some(pair) = &r.rtt {
        let label = format!(
            "sequential round trips ({} × {} B text, median of {})",
            cli.rtt_count,
            cli.size,
            pair.0.len()
        );
        let (mr, mt) = samples(&label, pair, false);
        let q = mt.p50_us / mr.p50_us;
        targets.push(target(
            "round-trip p50 ≤ 1.10 × raw",
            q,
            q <= 1.10,
            format!("{q:.2} × raw"),
        ));
    }
    if let Some(pair) = &r.tput {
        let label = format!(
            "pipelined ({} × {} B text, window {}, median of {})",
            cli.tput_count,
            cli.size,
            cli.window,
            pair.0.len()
        );
        let (mr, mt) = samples(&label, pair, true);
        let q = mt.msgs_per_s / mr.msgs_per_s;
        targets.push(target(
            "pipelined throughput ≥ 0.90 × raw",
            q,
            q >= 0.90,
            format!("{q:.2} × raw"),
        ));
    }
    if let Some(figures) = &r.memory {
        let get = |c: MemoryClient| figures.iter().find(|(k, _)| *k == c).map(|(_, f)| *f);
        let conns = figures.first().map_or(0, |(_, f)| f.conns);
        println!("idle memory ({conns} open connections, one process per client kind)");
        if let (Some(raw), Some(small), Some(tether)) = (
            get(MemoryClient::Raw),
            get(MemoryClient::RawSmall),
            get(MemoryClient::Tether),
        ) {
            row(
                "RSS KiB per connection",
                format!("{:.1}", raw.per_conn_kib()),
                format!("{:.1}", tether.per_conn_kib()),
                ratio(tether.per_conn_kib(), raw.per_conn_kib()),
                "raw: library defaults".into(),
            );
            row(
                "  vs raw with 4 KiB/8 KiB buffers",
                format!("{:.1}", small.per_conn_kib()),
                format!("{:.1}", tether.per_conn_kib()),
                ratio(tether.per_conn_kib(), small.per_conn_kib()),
                "raw: tether's buffer sizes".into(),
            );
            if let Some(small_read) = get(MemoryClient::TetherReadBuf2k) {
                row(
                    "  tether, read_buffer_size 2 KiB",
                    format!("{:.1}", small.per_conn_kib()),
                    format!("{:.1}", small_read.per_conn_kib()),
                    ratio(small_read.per_conn_kib(), small.per_conn_kib()),
                    "non-default setting".into(),
                );
            }
            row(
                "RSS MiB before → after",
                format!("{}→{}", raw.before_kib / 1024, raw.after_kib / 1024),
                format!("{}→{}", tether.before_kib / 1024, tether.after_kib / 1024),
                String::new(),
                String::new(),
            );
            targets.push((
                "idle memory ≤ 10 KiB per connection".into(),
                Some(tether.per_conn_kib() <= 10.0),
                format!("{:.1} KiB", tether.per_conn_kib()),
            ));
        }
    }
    for f in &r.reconnect {
        println!(
            "reconnect, tether ({}): server down {} ms, 1 msg / {} ms, {} runs",
            f.profile.label(),
            cli.outage_ms,
            cli.interval_ms,
            f.runs.len()
        );
        let runs: Vec<String> = f
            .runs
            .iter()
            .map(|r| format!("{:.0}", r.restart_to_open.as_secs_f64() * 1e3))
            .collect();
        row(
            "restart → open, median ms",
            "n/a".into(),
            format!("{:.0}", f.median_ms()),
            String::new(),
            format!("runs: {}", runs.join(", ")),
        );
        row(
            "  engine model, p50 / p90 / p99 ms",
            "n/a".into(),
            format!(
                "{:.0} / {:.0} / {:.0}",
                f.model_ms(0.5),
                f.model_ms(0.9),
                f.model_ms(0.99)
            ),
            String::new(),
            format!("virtual time, {} seeds", f.model.len()),
        );
        row(
            "outage messages delivered",
            "n/a".into(),
            format!("{} / {}", f.delivered(), f.sent()),
            String::new(),
            format!(
                "sent while down; {} reported dropped by the client",
                f.dropped
            ),
        );
        row(
            "  sent before the drop was seen",
            "n/a".into(),
            format!("{} / {}", f.delivered_blind(), f.sent_blind()),
            String::new(),
            "written to a dead socket: needs acks".into(),
        );
        if f.profile.backoff_max.is_none() {
            targets.push((
                "reconnect ≤ 1 s median (defaults)".into(),
                Some(f.median_ms() <= 1_000.0),
                format!(
                    "{:.0} ms (model p50 {:.0} ms)",
                    f.median_ms(),
                    f.model_ms(0.5)
                ),
            ));
        }
        targets.push((
            format!("0 outage messages lost ({})", f.profile.label()),
            Some(f.delivered() == f.sent()),
            format!("{} lost", f.sent() - f.delivered()),
        ));
    }
    println!("  (raw tungstenite has no reconnection: its reconnect cells are n/a)");
    println!();
    println!("targets");
    for (name, met, value) in targets {
        println!(
            "  {:<7} {name:<40} {value}",
            match met {
                Some(true) => "MET",
                Some(false) => "MISSED",
                None => "n/a",
            }
        );
    }
}
