//! `tether connect` in a pipeline: stdin piped in faster than the network takes it, and a
//! stdout whose reader goes away.
#![allow(clippy::unwrap_used)]

mod common;

use common::{start_relay, JsonConnect};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

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
