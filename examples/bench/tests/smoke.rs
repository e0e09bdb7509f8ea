//! Runs the whole bench with tiny counts, end to end: echo server child, both clients, the
//! memory children and a reconnect run. Proves it works; asserts no figure (machines are
//! shared and noisy).

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn every_benchmark_runs_end_to_end_with_tiny_counts() {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_tether-bench"))
        .args([
            "all",
            "--rtt-count",
            "200",
            "--tput-count",
            "2000",
            "--repeat",
            "1",
        ])
        .args(["--conns", "20", "--runs", "1", "--outage-ms", "200"])
        .args(["--skip-default-reconnect", "--alt-backoff-max-ms", "100"])
        .args(["--min-uptime-ms", "100", "--model-seeds", "100"])
        .output()
        .expect("the bench binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed:\n{stdout}\n{stderr}");
    for expected in [
        "sequential round trips",
        "pipelined",
        "RSS KiB per connection",
        "restart → open",
        "outage messages delivered",
        "targets",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
    // Informative only: the smoke run is meant to stay quick.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn zero_counts_are_refused_with_a_clear_error() {
    // Each under a benchmark that reads it, so a regression fails fast instead of running.
    for (what, flag) in [
        ("reconnect", "--runs"),
        ("rtt", "--repeat"),
        ("throughput", "--window"),
        ("reconnect", "--interval-ms"),
        ("rtt", "--rtt-count"),
        ("throughput", "--tput-count"),
        ("reconnect", "--model-seeds"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_tether-bench"))
            .args([what, flag, "0"])
            .output()
            .expect("the bench binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flag} 0 ran");
        assert!(stderr.contains("must be at least 1"), "{flag}: {stderr}");
    }
}

#[test]
fn one_side_only_prints_n_a_not_nan() {
    let output = Command::new(env!("CARGO_BIN_EXE_tether-bench"))
        .args([
            "rtt",
            "--only",
            "tether",
            "--rtt-count",
            "50",
            "--repeat",
            "1",
        ])
        .output()
        .expect("the bench binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed:\n{stdout}\n{stderr}");
    assert!(!stdout.contains("NaN"), "{stdout}");
    // The skipped side has no spread, not "±0%" (which reads as a perfectly quiet run).
    assert!(stdout.contains("spread - / ±"), "{stdout}");
    let verdict = stdout.lines().find(|l| l.contains("round-trip p50 ≤"));
    assert!(
        verdict.is_some_and(|l| l.trim_start().starts_with("n/a")),
        "{stdout}"
    );
}
