//! What `tether connect` makes of its stdin lines: blank lines, and a long input against a
//! server that limits its clients' message rate.
#![allow(clippy::unwrap_used)]

mod common;

use common::{start_relay, JsonConnect};
use serde_json::Value;
use std::time::{Duration, Instant};
use tether_relay::{RateLimit, Relay, RelayConfig};
use tokio::io::AsyncWriteExt;

/// Runs `connect URL OPTIONS --json` with `input` on stdin to its end; returns the `closed`
/// line, every line seen and the exit status.
async fn run_with(url: &str, options: &[&str], input: &[u8]) -> (Value, Vec<Value>, i32) {
    let mut run = JsonConnect::spawn(url, options);
    let mut stdin = run.stdin();
    stdin.write_all(input).await.unwrap();
    drop(stdin);
    let closed = run.until(|v| v["event"] == "closed").await;
    let code = run.exit_code().await;
    (closed, run.seen, code)
}

fn events<'a>(seen: &'a [Value], event: &str) -> Vec<&'a Value> {
    seen.iter().filter(|v| v["event"] == event).collect()
}

/// An empty line (or one of only spaces and tabs) is not a message anyone meant to send: a
/// file's trailing blank line, the paragraph breaks of a text piped in. Each was sent as an
/// empty message (published as `""`). Now every mode that reads stdin skips them, counts
/// them as lines (so the line numbers of errors still match the file) and not as lost;
/// `--send-blank` sends them as they are.
#[tokio::test]
async fn blank_lines_are_skipped_in_every_mode_that_reads_stdin() {
    let relay = start_relay().await;
    let url = relay.ws_url();
    let input = b"one\n\n \t\r\n\r\ntwo\n\n";
    for options in [
        &["--publish", "room"][..],
        &["--protocol", "tether"][..],
        &["--protocol", "raw"][..],
    ] {
        let (closed, seen, code) = run_with(&url, options, input).await;
        assert_eq!(
            (&closed["stats"]["accepted"], &closed["skipped_lines"]),
            (&Value::from(2), &Value::from(0)),
            "{options:?}: {closed}"
        );
        assert!(events(&seen, "error").is_empty(), "{options:?}: {seen:?}");
        assert_eq!(code, 0, "{options:?}");
        // Asked for, they are sent as they came (without their line ending).
        let send_blank: Vec<&str> = options.iter().copied().chain(["--send-blank"]).collect();
        let (closed, _, code) = run_with(&url, &send_blank, input).await;
        assert_eq!(closed["stats"]["accepted"], 6, "{options:?}: {closed}");
        assert_eq!(code, 0, "{options:?}");
    }
    // A blank line is still a line: the next error names the line as the file numbers it.
    let (closed, seen, code) = run_with(&url, &["--publish", "room"], b"\n\nok\n\xff\n").await;
    let errors = events(&seen, "error");
    assert_eq!(errors.len(), 1, "{seen:?}");
    assert!(
        errors[0]["message"].as_str().unwrap().contains("line 4 "),
        "{}",
        errors[0]
    );
    assert_eq!(
        (&closed["stats"]["accepted"], &closed["skipped_lines"]),
        (&Value::from(1), &Value::from(1)),
        "{closed}"
    );
    assert_eq!(code, 3);
    // A document: a blank line is no command, and not reported as a bad one.
    let (closed, seen, code) =
        run_with(&url, &["--document", "todo"], b"set a 1\n\n   \ninc b 2\n").await;
    assert!(events(&seen, "error").is_empty(), "{seen:?}");
    assert_eq!(closed["undelivered"], 0, "{closed}");
    assert_eq!(code, 0);
    relay.shutdown().await;
}

/// A document command with a typo, or one the client refuses, never became a change: it is
/// reported, counted as a skipped line, and the run exits 3. It exited 0 with
/// `skipped_lines: 0`, so a script of commands with a typo looked applied.
#[tokio::test]
async fn a_document_command_that_is_not_applied_is_a_skipped_line() {
    let relay = start_relay().await;
    let url = relay.ws_url();
    let (closed, seen, code) = run_with(
        &url,
        &["--document", "todo"],
        b"set a 1
set
inc b abc
frobnicate x 1
insert a 2
inc b 2
",
    )
    .await;
    assert_eq!(events(&seen, "error").len(), 4, "{seen:?}");
    assert_eq!(closed["skipped_lines"], 4, "{closed}");
    assert_eq!(code, 3);
    relay.shutdown().await;
}

/// Document commands with their words apart by more than one space, or a tab, are the same
/// commands. Split at each single space, `set  milk 1` set the key "" to the text "milk 1"
/// and exited 0: a wrong change to a shared document, reported nowhere.
#[tokio::test]
async fn document_command_words_may_be_apart_by_any_whitespace() {
    let relay = start_relay().await;
    let (_closed, seen, code) = run_with(
        &relay.ws_url(),
        &["--document", "todo"],
        b"set  milk   1\ninsert\tbread\t{\"n\": 2}\n  inc  count\t 3 \n",
    )
    .await;
    assert!(events(&seen, "error").is_empty(), "{seen:?}");
    let last = events(&seen, "document").last().cloned().unwrap();
    assert_eq!(
        last["doc"],
        serde_json::json!({"milk": 1, "bread": {"n": 2}, "count": 3})
    );
    assert_eq!(code, 0);
    relay.shutdown().await;
}

/// The reference relay takes 1,000 messages a second from a connection, in bursts of up to
/// 2,000, and refuses the rest (`rate_limited`). `tether connect` sent a piped file as fast
/// as the outbox emptied, so every line past about the 2,000th was refused and dropped
/// (exit 3). It now paces what it sends (`--rate`, by default the relay's 1,000 a second),
/// reading stdin no faster than that.
#[tokio::test]
async fn a_file_longer_than_the_relays_burst_is_delivered_whole() {
    const LINES: usize = 5_000;
    let relay = start_relay().await;
    let input: String = (0..LINES).map(|n| format!("line {n}\n")).collect();
    let (closed, seen, code) =
        run_with(&relay.ws_url(), &["--publish", "room"], input.as_bytes()).await;
    let dropped = events(&seen, "dropped");
    assert!(
        dropped.is_empty(),
        "{} dropped: {:?}",
        dropped.len(),
        dropped.first()
    );
    assert_eq!(
        (&closed["undelivered"], &closed["stats"]["accepted"]),
        (&Value::from(0), &Value::from(LINES)),
        "{closed}"
    );
    assert_eq!(code, 0);
    relay.shutdown().await;
}

/// `--rate N` keeps to a stricter server's limit: every line gets through, and the run takes
/// as long as the rate says (stdin is read no faster), where the default rate overruns it.
#[tokio::test]
async fn rate_keeps_to_a_stricter_servers_limit() {
    const LINES: usize = 120;
    let config = RelayConfig {
        rate_limit: Some(RateLimit {
            per_second: 100,
            burst: 20,
        }),
        ..RelayConfig::default()
    };
    let relay = Relay::bind("127.0.0.1:0", config).await.unwrap();
    let url = relay.ws_url();
    let input: String = (0..LINES).map(|n| format!("line {n}\n")).collect();
    let started = Instant::now();
    let (closed, seen, code) = run_with(
        &url,
        &["--publish", "room", "--rate", "100"],
        input.as_bytes(),
    )
    .await;
    let took = started.elapsed();
    assert!(events(&seen, "dropped").is_empty(), "{seen:?}");
    assert_eq!(closed["stats"]["accepted"], LINES, "{closed}");
    assert_eq!(code, 0);
    // At most a tenth of a second's worth at once, then 100 a second.
    assert!(took >= Duration::from_millis(1_000), "{took:?}");
    // The default rate is this relay's tenfold: lines are refused, and the run says so.
    let (closed, _, code) = run_with(&url, &["--publish", "room"], input.as_bytes()).await;
    assert!(closed["undelivered"].as_u64().unwrap() > 0, "{closed}");
    assert_eq!(code, 3);
    relay.shutdown().await;
}
