//! `tether storm`: what a crowd of clients does to a relay that comes back after an outage.
//!
//! N clients — real engines, one per client, each seeded differently — are connected and
//! stable when the relay fails at t = 0. While it is down every attempt is refused; from
//! `--outage` on every attempt succeeds. Everything runs in virtual time, so a 30 s outage of
//! 100,000 clients takes seconds, and the same `--seed` gives the same figures on every run.
//! The report gives, per strategy, the attempts, the busiest 100 ms, the peak/mean ratio over
//! the reconnect window (relay back → 99% of clients back) and when 99% were back.
//!
//! Files: `model` (strategies and the comparison baselines), `sim` (the event-queue
//! simulator), `report` (the numbers and their table/JSON/CSV forms), `svg` (the chart).

mod model;
mod report;
mod sim;
mod svg;
#[cfg(test)]
mod tests;

use crate::EXIT_USAGE;
use clap::Args;
use model::Strategy;
use report::{Metrics, Row};
use serde_json::json;
use sim::{DropKind, Micros, Scenario};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tether_core::BackoffConfig;

/// Virtual time simulated after the relay is back before giving up on stragglers.
const HORIZON_AFTER_RETURN: Micros = 15 * 60 * 1_000_000;

/// Options of `tether storm`.
#[derive(Debug, Args)]
pub(crate) struct StormArgs {
    /// Number of simulated clients.
    #[arg(long, default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    clients: u32,
    /// Seconds the relay stays down (fractions allowed). Default 30, or 2 with --graceful.
    #[arg(long, value_name = "SECONDS")]
    outage: Option<f64>,
    /// Strategies to run, comma-separated: the engine's jitter (none, full, equal,
    /// decorrelated) or a comparison baseline (socketio-style, partysocket-style).
    /// Default: all six, side by side.
    #[arg(long, alias = "strategy", value_enum, value_delimiter = ',')]
    jitter: Vec<Strategy>,
    /// Model a graceful relay restart: every connection is closed with code 1012 and the
    /// reason {"reconnect_within_ms": WINDOW_MS} (the relay is still down for --outage).
    #[arg(long, value_name = "WINDOW_MS",
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    graceful: Option<u64>,
    /// With --graceful: the relay also advises its expected downtime
    /// ({"reconnect_after_ms": OUTAGE}), so clients spread their returns over the part of the
    /// window when it is back instead of wasting attempts on the closed port.
    #[arg(long, requires = "graceful")]
    advise_downtime: bool,
    /// Master seed: client i's engine is seeded from it and i.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Time for the relay to refuse or accept an attempt, in milliseconds.
    #[arg(long, default_value_t = 1.0, value_name = "MS")]
    latency_ms: f64,
    /// Engine backoff: first retry delay scale in ms (default 500). Named as in `connect`;
    /// the older `--backoff-initial-ms` still works.
    #[arg(
        long = "backoff-initial",
        alias = "backoff-initial-ms",
        value_name = "MS"
    )]
    backoff_initial_ms: Option<u64>,
    /// Engine backoff: cap of the un-jittered delay in ms (default 30000). Named as in
    /// `connect`; the older `--backoff-max-ms` still works.
    #[arg(long = "backoff-max", alias = "backoff-max-ms", value_name = "MS")]
    backoff_max_ms: Option<u64>,
    /// Engine backoff: growth per attempt (default 2).
    #[arg(long, value_name = "FACTOR")]
    backoff_factor: Option<f64>,
    /// Write a chart of attempts per 100 ms to this SVG file.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Write attempts per 100 ms (one column per strategy) to this CSV file.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Print the results as one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Worker threads, 1 to 1024 (default: the number of cores). Results do not depend on it.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
}

pub(crate) fn run(args: StormArgs) -> ExitCode {
    let scenario = match scenario(&args) {
        Ok(s) => s,
        Err(message) => {
            eprintln!("tether storm: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let strategies = chosen(&args.jitter);
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        usize::from,
    );

    let started = std::time::Instant::now();
    let timelines = match sim::run(&scenario, &strategies, threads) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tether storm: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let wall = started.elapsed();

    let rows: Vec<Row<'_>> = strategies
        .iter()
        .zip(&timelines)
        .map(|(s, t)| Row {
            name: s.name(),
            description: s.describe(&scenario.curve),
            metrics: Metrics::of(t, scenario.outage),
        })
        .collect();

    if args.json {
        let doc = json!({
            "clients": scenario.clients,
            "outage_s": report::secs(scenario.outage),
            "drop": match scenario.drop {
                DropKind::Abrupt => json!({"kind": "abrupt"}),
                DropKind::Graceful { window_ms, .. } =>
                    json!({"kind": "graceful", "close_code": 1012, "window_ms": window_ms}),
            },
            "seed": scenario.seed,
            "latency_ms": scenario.latency as f64 / 1000.0,
            "bucket_ms": report::BUCKET / 1000,
            "strategies": rows.iter().map(|r| report::json_row(r, scenario.outage))
                .collect::<Vec<_>>(),
            "wall_s": wall.as_secs_f64(),
            "threads": threads,
        });
        say(&format!("{doc}\n"));
    } else {
        say(&header(&scenario));
        say(&report::table(&rows, scenario.outage));
        if let DropKind::Graceful { window_ms, .. } = scenario.drop {
            say(&graceful_verdicts(&rows, window_ms));
        }
        say(&format!(
            "\nsimulated {} × {} clients in {:.1} s (wall clock, {} threads)\n",
            strategies.len(),
            report::grouped(u64::from(scenario.clients)),
            wall.as_secs_f64(),
            threads
        ));
    }

    let mut status = ExitCode::SUCCESS;
    if let Some(path) = &args.svg {
        let names: Vec<&str> = strategies.iter().map(|s| s.name()).collect();
        let doc = chart(&scenario, &strategies, &names, &rows, &timelines);
        status = write_file(path, &doc, args.json).unwrap_or(status);
    }
    if let Some(path) = &args.csv {
        let names: Vec<&str> = strategies.iter().map(|s| s.name()).collect();
        let doc = report::csv(&names, &timelines);
        status = write_file(path, &doc, args.json).unwrap_or(status);
    }
    status
}

/// Validates the options into a scenario; the error names the option.
fn scenario(args: &StormArgs) -> Result<Scenario, String> {
    let default_outage = if args.graceful.is_some() { 2.0 } else { 30.0 };
    let outage_s = args.outage.unwrap_or(default_outage);
    if !outage_s.is_finite() || !(0.0..=86_400.0).contains(&outage_s) {
        return Err(format!(
            "--outage {outage_s}: must be between 0 and 86400 seconds"
        ));
    }
    if !args.latency_ms.is_finite() || !(0.0..=60_000.0).contains(&args.latency_ms) {
        return Err(format!(
            "--latency-ms {}: must be between 0 and 60000",
            args.latency_ms
        ));
    }
    let mut curve = BackoffConfig::default();
    if let Some(ms) = args.backoff_initial_ms {
        curve.initial = Duration::from_millis(ms);
    }
    if let Some(ms) = args.backoff_max_ms {
        curve.max = Duration::from_millis(ms);
    }
    if let Some(factor) = args.backoff_factor {
        curve.factor = factor;
    }
    let outage = (outage_s * 1e6).round() as Micros;
    // The relay refuses to advise a return after the end of its window (its config's
    // reconnect_after must be at most reconnect_window), and the engine would cap it: modelled
    // anyway, every client came back at the window's end, while the relay was still down.
    if let (Some(window_ms), true) = (args.graceful, args.advise_downtime) {
        if outage / 1_000 > window_ms {
            return Err(format!(
                "--advise-downtime: the outage ({outage_s} s, --outage) is longer than the \
                 window (--graceful {window_ms} ms), advice no relay gives; raise --graceful \
                 or shorten --outage"
            ));
        }
    }
    let scenario = Scenario {
        clients: args.clients,
        outage,
        drop: match args.graceful {
            Some(window_ms) => DropKind::Graceful {
                window_ms,
                after_ms: args.advise_downtime.then_some(outage / 1_000),
            },
            None => DropKind::Abrupt,
        },
        latency: (args.latency_ms * 1000.0).round() as Micros,
        seed: args.seed,
        curve,
        horizon: outage.saturating_add(HORIZON_AFTER_RETURN),
    };
    // The backoff flags are checked by the engine's own validation, field named.
    scenario
        .engine_config(Strategy::Full)
        .map_err(|e| format!("invalid backoff: {e}"))?;
    Ok(scenario)
}

/// The strategies asked for, without repeats, in the order given; all of them by default.
fn chosen(asked: &[Strategy]) -> Vec<Strategy> {
    if asked.is_empty() {
        return Strategy::ALL.to_vec();
    }
    let mut out: Vec<Strategy> = Vec::new();
    for s in asked {
        if !out.contains(s) {
            out.push(*s);
        }
    }
    out
}

fn header(scenario: &Scenario) -> String {
    let drop = match scenario.drop {
        DropKind::Abrupt => "every connection dropped at once without a close code".to_owned(),
        DropKind::Graceful {
            window_ms,
            after_ms: None,
        } => format!(
            "graceful restart: every connection closed with 1012 \
             {{\"reconnect_within_ms\": {window_ms}}}"
        ),
        DropKind::Graceful {
            window_ms,
            after_ms: Some(after),
        } => format!(
            "graceful restart: every connection closed with 1012 \
             {{\"reconnect_after_ms\": {after}, \"reconnect_within_ms\": {window_ms}}}"
        ),
    };
    format!(
        "tether storm: {} clients; at 0 s {drop}; relay back at {} s\n\
         attempts are refused after {} ms while it is down; seed {}; 100 ms buckets; \
         window = relay back .. 99% of clients back\n\n",
        report::grouped(u64::from(scenario.clients)),
        report::secs(scenario.outage),
        scenario.latency as f64 / 1000.0,
        scenario.seed,
    )
}

fn graceful_verdicts(rows: &[Row<'_>], window_ms: u64) -> String {
    let window = window_ms.saturating_mul(1000);
    let mut out = format!("\nadvised window {} s:\n", window_ms as f64 / 1000.0);
    for row in rows {
        let verdict = match row.metrics.t99 {
            Some(t) if t <= window => format!("99% back at {:.2} s, within it", report::secs(t)),
            Some(t) => format!(
                "99% back at {:.2} s, {:.2} s after it",
                report::secs(t),
                report::secs(t - window)
            ),
            None => "99% never back".to_owned(),
        };
        out.push_str(&format!("{:<18} {verdict}\n", row.name));
    }
    out
}

fn chart(
    scenario: &Scenario,
    strategies: &[Strategy],
    names: &[&str],
    rows: &[Row<'_>],
    timelines: &[report::Timeline],
) -> String {
    let clients = report::grouped(u64::from(scenario.clients));
    let outage = report::secs(scenario.outage);
    let title = match scenario.drop {
        DropKind::Abrupt => format!("Reconnect storm: {clients} clients, relay down for {outage} s"),
        DropKind::Graceful { window_ms, .. } => format!(
            "Graceful restart: {clients} clients told to return within {} s, relay down for {outage} s",
            window_ms as f64 / 1000.0
        ),
    };
    let how = match scenario.drop {
        DropKind::Abrupt => "every connection drops at 0 s",
        DropKind::Graceful { .. } => "every connection is closed with 1012 at 0 s",
    };
    let subtitle = format!(
        "Connection attempts per 100 ms after {how}; the window for peak/mean runs from the \
         relay's return to 99% back. Seed {}.",
        scenario.seed
    );
    let series = strategies
        .iter()
        .zip(names)
        .zip(rows.iter().zip(timelines))
        .map(|((s, name), (row, timeline))| {
            let m = &row.metrics;
            let ratio = m
                .peak_over_mean()
                .map_or("-".to_owned(), |r| format!("{r:.2}"));
            let after_return = match (m.window, m.t99) {
                (Some(w), Some(t)) => format!(
                    "after return: peak {} per 100 ms, 99% back at {:.1} s",
                    report::grouped(w.peak),
                    report::secs(t)
                ),
                _ => "99% never back".to_owned(),
            };
            svg::Series {
                name,
                colour: s.colour(),
                note: format!(
                    "peak/mean {ratio} · {after_return} · whole run: peak {}, {} attempts",
                    report::grouped(m.peak.0),
                    report::grouped(m.total_attempts)
                ),
                attempts: &timeline.attempts,
                t99: m.t99,
            }
        })
        .collect();
    svg::render(&svg::Chart {
        title,
        subtitle,
        outage: scenario.outage,
        series,
    })
}

/// Prints to stdout; a closed stdout (piped into `head`) is not worth a panic.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Writes `contents` to `path`; on failure prints why and returns the exit status to use.
fn write_file(path: &Path, contents: &str, quiet: bool) -> Option<ExitCode> {
    match std::fs::write(path, contents) {
        Ok(()) => {
            if !quiet {
                say(&format!("wrote {}\n", path.display()));
            }
            None
        }
        Err(e) => {
            eprintln!("tether storm: cannot write {}: {e}", path.display());
            Some(ExitCode::from(EXIT_USAGE))
        }
    }
}
