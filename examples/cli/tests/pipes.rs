//! `tether connect` in a pipeline: stdin piped in faster than the network takes it, and a
//! stdout whose reader goes away.
#![allow(clippy::unwrap_used)]

mod common;

use common::{exit_code, start_relay, tether, tether_with_stdin, JsonConnect, LIMIT};
use serde_json::Value;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::time::timeout;

/// `connect URL --subscribe room --listen`, with `--json` if asked.
fn listen_args(url: &str, json: bool) -> Vec<&str> {
    let mut args = vec!["connect", url, "--subscribe", "room", "--listen"];
    if json {
        args.push("--json");
    }
    args
}

/// Reads `lines` until one contains `needle` (each line within `LIMIT`).
async fn until_line<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut tokio::io::Lines<R>,
    needle: &str,
) {
    while let Some(line) = timeout(LIMIT, lines.next_line()).await.unwrap().unwrap() {
        if line.contains(needle) {
            return;
        }
    }
    panic!("the output ended before a line with {needle:?}");
}

/// Publishes one line on `room` through a second `tether connect`, which must succeed.
async fn publish_one(url: &str) {
    let mut publisher = tether(&["connect", url, "--publish", "room"]);
    let mut stdin = publisher.stdin.take().unwrap();
    stdin.write_all(b"for nobody\n").await.unwrap();
    drop(stdin);
    assert_eq!(exit_code(&mut publisher).await, 0);
}

/// A file piped in (`cat lines | tether connect --publish`) is read much faster than the relay
/// acknowledges: every line must still be delivered. Reading stdin paid no attention to the
/// outbox, whose default policy drops the oldest message to make room: with a small outbox,
/// almost every line was dropped (and the run exited 3).
#[tokio::test]
async fn a_piped_stdin_faster_than_the_network_loses_no_line() {
    const LINES: usize = 400;
    let relay = start_relay().await;
    let url = relay.ws_url();
    for (mode, options) in [
        (
            "publish",
            &["--publish", "room", "--outbox-messages", "4"][..],
        ),
        ("raw", &["--outbox-messages", "4"][..]),
    ] {
        let mut run = JsonConnect::spawn(&url, options);
        let mut stdin = run.stdin();
        let input: String = (0..LINES).map(|n| format!("line {n}\n")).collect();
        stdin.write_all(input.as_bytes()).await.unwrap();
        drop(stdin);
        let closed = run.until(|v| v["event"] == "closed").await;
        let dropped: Vec<&Value> = run
            .seen
            .iter()
            .filter(|v| v["event"] == "dropped")
            .collect();
        assert!(dropped.is_empty(), "{mode}: {dropped:?}");
        assert_eq!(
            (&closed["undelivered"], &closed["stats"]["accepted"]),
            (&Value::from(0), &Value::from(LINES)),
            "{mode}: {closed}"
        );
        assert_eq!(run.exit_code().await, 0, "{mode}");
    }
    relay.shutdown().await;
}

/// `tether connect … --listen | head -1`: once the reader of its stdout is gone, nothing it
/// prints reaches anyone, so the run ends, closing cleanly, with 141 (128 + SIGPIPE, what a
/// shell reports for a program SIGPIPE ended). It went on for ever, taking every message
/// off the relay only to print it into the closed pipe, and never exited.
#[tokio::test]
async fn a_stdout_whose_reader_went_away_ends_the_run() {
    let relay = start_relay().await;
    let url = relay.ws_url();
    for json in [true, false] {
        let mut child = tether_with_stdin(&listen_args(&url, json), Stdio::null());
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        if json {
            // Subscribed, so the message below is for it.
            until_line(&mut stdout, r#""event":"subscribed""#).await;
        } else {
            // The readable output says so on stderr.
            let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
            until_line(&mut stderr, "subscribed to room").await;
            child.stderr = Some(stderr.into_inner().into_inner());
        }
        drop(stdout); // `head` has what it wanted and exits
        publish_one(&url).await;
        assert_eq!(exit_code(&mut child).await, 141, "json: {json}");
        let mut stderr = String::new();
        let mut pipe = child.stderr.take().unwrap();
        timeout(LIMIT, pipe.read_to_string(&mut stderr))
            .await
            .unwrap()
            .unwrap();
        assert!(stderr.contains("stdout"), "json: {json}: {stderr}");
    }
    relay.shutdown().await;
}

/// `tether connect … 2>&1 | head -1`: stderr goes to the same pipe as stdout, so it is gone
/// too when the reader leaves. The run must still end as above (closed cleanly, 141), not
/// with a panic: a write to stderr that fails (the notice that stdout was lost, or a
/// readable event line) panicked in `eprintln!` ("failed printing to stderr"), exit 101,
/// without the clean close.
#[tokio::test]
async fn a_stdout_and_stderr_whose_reader_went_away_end_the_run_without_a_panic() {
    let relay = start_relay().await;
    let url = relay.ws_url();
    for json in [true, false] {
        let args = listen_args(&url, json);
        // `sh -c 'exec tether … 2>&1'`: stderr is stdout's pipe.
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 2>&1"#)
            .arg(env!("CARGO_BIN_EXE_tether"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut both = BufReader::new(child.stdout.take().unwrap()).lines();
        let subscribed = if json {
            r#""event":"subscribed""#
        } else {
            "subscribed to room"
        };
        until_line(&mut both, subscribed).await;
        drop(both); // `head` has what it wanted and exits
        publish_one(&url).await;
        assert_eq!(exit_code(&mut child).await, 141, "json: {json}");
    }
    relay.shutdown().await;
}
