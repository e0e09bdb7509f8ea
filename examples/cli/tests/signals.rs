//! `tether connect` stopped by SIGINT or SIGTERM, as a process against the relay on loopback:
//! a clean close that the server sees as one, what was pending delivered or reported, and the
//! exit status. The relay is reached through a tap, which sees the client's close frame (the
//! relay does not tell a close from a dropped connection) and can hold the client's messages
//! back: written, but not acknowledged until released.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_closed, start_relay, tether_with_stdin, JsonConnect, LIMIT};
use serde_json::Value;
use std::process::Stdio;
use tether_relay::RelayHandle;
use tether_tests::tap::{Ending, WsTap};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::ChildStdin;
use tokio::time::timeout;

/// Sends `signal` (`INT`, `TERM`) to the process `pid`, through the shell's built-in `kill`
/// (slim images have no `kill` binary: it comes with procps).
fn kill(pid: u32, signal: &str) {
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("kill -s {signal} {pid}")])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

fn signal(run: &JsonConnect, signal: &str) {
    kill(run.child.id().unwrap(), signal);
}

/// A publishing `connect --json` (with `extra` options) through a tap, subscribed; the tap
/// holds back whatever it writes from now on: the lines, written but not acknowledged. Stdin
/// is kept open, as a terminal's: a signal, not the end of input, stops the reading.
async fn held_publisher(extra: &[&str]) -> (RelayHandle, WsTap, JsonConnect, ChildStdin) {
    let relay = start_relay().await;
    let tap = WsTap::start(relay.local_addr()).await.unwrap();
    let options: Vec<&str> = ["--subscribe", "room", "--publish", "room"]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    let mut run = JsonConnect::spawn(&tap.ws_url(), &options);
    // The hello and the subscription went through: what the tap holds from now on is the
    // lines.
    run.until(|v| v["event"] == "subscribed").await;
    let stdin = run.stdin();
    tap.hold(true);
    (relay, tap, run, stdin)
}

#[tokio::test]
async fn sigterm_closes_a_listening_client_cleanly_with_status_143() {
    let relay = start_relay().await;
    let tap = WsTap::start(relay.local_addr()).await.unwrap();
    let mut run = JsonConnect::spawn_with_stdin(
        &tap.ws_url(),
        &["--subscribe", "room", "--listen"],
        Stdio::null(),
    );
    run.until(|v| v["event"] == "subscribed").await;
    signal(&run, "TERM");
    let interrupted = run.until(|v| v["event"] == "interrupted").await;
    assert_eq!(
        (&interrupted["signal"], &interrupted["pending"]),
        (&Value::from("SIGTERM"), &Value::from(0)),
        "{interrupted}"
    );
    assert_closed(&mut run, "app", 0).await;
    assert_eq!(run.exit_code().await, 143);
    assert_eq!(
        tap.endings(1, LIMIT).await,
        [Ending::Closed(Some(1000))],
        "a normal close, not a dropped connection"
    );
    relay.shutdown().await;
}

#[tokio::test]
async fn sigint_delivers_what_was_accepted_then_closes_with_status_130() {
    // The read still in flight on the open stdin does not keep the process from exiting.
    let (relay, tap, mut run, mut stdin) = held_publisher(&[]).await;
    stdin.write_all(b"one\ntwo\n").await.unwrap();
    assert_eq!(
        tap.held(2, LIMIT).await,
        2,
        "both lines accepted and written, not yet acknowledged"
    );
    signal(&run, "INT");
    let interrupted = run.until(|v| v["event"] == "interrupted").await;
    assert_eq!(interrupted["pending"], 2, "{interrupted}");
    // The relay gets them now, and acknowledges them: the drain can end.
    tap.hold(false);
    let closed = assert_closed(&mut run, "app", 0).await;
    assert_eq!(closed["stats"]["accepted"], 2, "{closed}");
    assert_eq!(run.exit_code().await, 130);
    assert_eq!(relay.messages_published(), 2);
    assert_eq!(tap.endings(1, LIMIT).await, [Ending::Closed(Some(1000))]);
    drop(stdin);
    relay.shutdown().await;
}

#[tokio::test]
async fn what_a_signal_could_not_deliver_in_time_is_reported_with_status_3() {
    // Never released: no acknowledgement comes.
    let (relay, tap, mut run, mut stdin) = held_publisher(&["--drain-timeout", "300"]).await;
    stdin.write_all(b"never acknowledged\n").await.unwrap();
    assert_eq!(tap.held(1, LIMIT).await, 1);
    signal(&run, "INT");
    run.until(|v| v["event"] == "interrupted").await;
    let dropped = run.until(|v| v["event"] == "dropped").await;
    assert_eq!(dropped["reason"], "closed", "{dropped}");
    // A clean close, but the line was lost.
    assert_closed(&mut run, "app", 1).await;
    assert_eq!(run.exit_code().await, 3, "a loss wins over the signal");
    assert_eq!(tap.endings(1, LIMIT).await, [Ending::Closed(Some(1000))]);
    assert_eq!(relay.messages_published(), 0);
    drop(stdin);
    relay.shutdown().await;
}

#[tokio::test]
async fn a_second_signal_exits_at_once_and_counts_what_was_pending() {
    // A drain longer than any wait here: only the second signal can end the run in time.
    let (relay, tap, mut run, mut stdin) = held_publisher(&["--drain-timeout", "600000"]).await;
    stdin.write_all(b"pending\n").await.unwrap();
    assert_eq!(tap.held(1, LIMIT).await, 1);
    signal(&run, "INT");
    run.until(|v| v["event"] == "interrupted").await;
    signal(&run, "INT");
    assert_closed(&mut run, "interrupted", 1).await;
    assert_eq!(run.exit_code().await, 3);
    assert_eq!(
        tap.endings(1, LIMIT).await,
        [Ending::Dropped],
        "exited without closing"
    );
    drop(stdin);
    relay.shutdown().await;
}

#[tokio::test]
async fn the_readable_output_of_an_interrupted_run_ends_with_one_close_line() {
    let relay = start_relay().await;
    let tap = WsTap::start(relay.local_addr()).await.unwrap();
    let mut child = tether_with_stdin(&["connect", &tap.ws_url(), "--listen"], Stdio::null());
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut lines = Vec::new();
    // Bounded by LIMIT per line, and by the process's end (kill_on_drop).
    while let Some(line) = timeout(LIMIT, stderr.next_line()).await.unwrap().unwrap() {
        let open = line.ends_with("] open");
        lines.push(line);
        if open {
            kill(child.id().unwrap(), "INT");
        }
    }
    let status = timeout(LIMIT, child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(130), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("SIGINT: closing; another signal exits at once")),
        "{lines:#?}"
    );
    let closes: Vec<&String> = lines.iter().filter(|l| l.contains("closed")).collect();
    assert_eq!(closes, ["closed by the app with code 1000"], "{lines:#?}");
    assert_eq!(tap.endings(1, LIMIT).await, [Ending::Closed(Some(1000))]);
    relay.shutdown().await;
}
