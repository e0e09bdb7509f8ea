//! Runs the whole bench with tiny counts, end to end: echo server child, both clients, the
//! memory children and a reconnect run. Proves it works; asserts no figure (machines are
//! shared and noisy).

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long one run of the bench binary may take before it is killed and the test fails.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the bench binary with `args` like `Command::output()`, but a hung run cannot hang
/// `cargo test`: past [`TIMEOUT`] it is killed and the test fails with what it printed.
fn bench(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether-bench"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the bench binary starts");
    // Read both pipes meanwhile, so a chatty run cannot block on a full pipe.
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .expect("the bench binary can be waited for")
        {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Bounded too: a grandchild (the bench's echo server) could hold a pipe open a moment.
    let collect =
        |rx: mpsc::Receiver<Vec<u8>>| rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
    let (stdout, stderr) = (collect(stdout), collect(stderr));
    let Some(status) = status else {
        panic!(
            "tether-bench {args:?} still running after {TIMEOUT:?}, killed:\n{}\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
    };
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Reads `pipe` to its end on a thread; the bytes arrive on the returned channel.
fn drain(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = tx.send(bytes);
    });
    rx
}

#[test]
fn every_benchmark_runs_end_to_end_with_tiny_counts() {
    let started = Instant::now();
    let output = bench(&[
        "all",
        "--rtt-count",
        "200",
        "--tput-count",
        "2000",
        "--repeat",
        "1",
        "--conns",
        "20",
        "--runs",
        "1",
        "--outage-ms",
        "200",
        "--skip-default-reconnect",
        "--alt-backoff-max-ms",
        "100",
        "--min-uptime-ms",
        "100",
        "--model-seeds",
        "100",
    ]);
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
    // Informative only (a hang is caught by the kill timeout): the smoke run is meant to
    // stay quick, and a shared machine's speed is no reason to fail it.
    #[allow(clippy::print_stderr)]
    {
        eprintln!("the smoke run took {:?}", started.elapsed());
    }
}

#[test]
fn the_relay_benchmark_runs_end_to_end_with_tiny_counts() {
    let output = bench(&["relay", "--relay-count", "500", "--repeat", "2"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed:\n{stdout}\n{stderr}");
    for expected in ["pipelined acked publishes", "this build", "segments/ack"] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("NaN"), "{stdout}");
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
        ("relay", "--relay-count"),
    ] {
        let output = bench(&[what, flag, "0"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flag} 0 ran");
        assert!(stderr.contains("must be at least 1"), "{flag}: {stderr}");
    }
}

#[test]
fn one_side_only_prints_n_a_not_nan() {
    let output = bench(&[
        "rtt",
        "--only",
        "tether",
        "--rtt-count",
        "50",
        "--repeat",
        "1",
    ]);
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
