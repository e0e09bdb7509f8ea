//! What the CLI's test binaries share: the `tether` binary as a child process, its JSON lines
//! read with a deadline, and a relay on loopback. (Each test file is its own crate and
//! includes this with `mod common;`.)
// Not every test crate that includes this module uses every helper.
#![allow(dead_code, clippy::unwrap_used)]

use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use tether_relay::{Relay, RelayConfig, RelayHandle};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::timeout;

/// The bound of every wait on the child: a line, an exit.
pub const LIMIT: Duration = Duration::from_secs(20);

pub fn tether(args: &[&str]) -> Child {
    tether_with_stdin(args, Stdio::piped())
}

pub fn tether_with_stdin(args: &[&str], stdin: Stdio) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Waits (bounded) for the child to exit. tokio closes the child's stdin first if the child
/// still holds it; a test that must keep it open takes it out beforehand.
pub async fn exit_code(child: &mut Child) -> i32 {
    timeout(LIMIT, child.wait())
        .await
        .unwrap()
        .unwrap()
        .code()
        .unwrap()
}

/// The reference relay on an ephemeral loopback port; the test shuts it down.
pub async fn start_relay() -> RelayHandle {
    Relay::bind("127.0.0.1:0", RelayConfig::default())
        .await
        .unwrap()
}

/// A running `tether connect URL OPTIONS… --json` and the JSON lines it printed so far.
pub struct JsonConnect {
    pub child: Child,
    out: Lines<BufReader<ChildStdout>>,
    /// Every line read so far, for assertions on what came before.
    pub seen: Vec<Value>,
}

impl JsonConnect {
    /// Starts it with stdin piped (see [`JsonConnect::stdin`]).
    pub fn spawn(url: &str, options: &[&str]) -> JsonConnect {
        JsonConnect::spawn_with_stdin(url, options, Stdio::piped())
    }

    pub fn spawn_with_stdin(url: &str, options: &[&str], stdin: Stdio) -> JsonConnect {
        let args: Vec<&str> = ["connect", url]
            .into_iter()
            .chain(options.iter().copied())
            .chain(["--json"])
            .collect();
        let mut child = tether_with_stdin(&args, stdin);
        let out = BufReader::new(child.stdout.take().unwrap()).lines();
        JsonConnect {
            child,
            out,
            seen: Vec::new(),
        }
    }

    /// The child's stdin: dropping it is the end of input.
    pub fn stdin(&mut self) -> ChildStdin {
        self.child.stdin.take().unwrap()
    }

    /// Reads JSON lines until `pred` matches one (bounded), and returns it.
    pub async fn until(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let seen = &mut self.seen;
        loop {
            let line = timeout(LIMIT, self.out.next_line())
                .await
                .unwrap_or_else(|_| panic!("no matching line; seen {seen:#?}"))
                .unwrap()
                .unwrap_or_else(|| panic!("stdout ended; seen {seen:#?}"));
            let value: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert!(
                value["event"].is_string() && value["t_ms"].is_u64(),
                "{value}"
            );
            seen.push(value.clone());
            if pred(&value) {
                return value;
            }
        }
    }

    /// Waits (bounded) for it to exit.
    pub async fn exit_code(&mut self) -> i32 {
        exit_code(&mut self.child).await
    }
}

/// The run's `closed` line, checked for its `reason` and `undelivered` count.
pub async fn assert_closed(run: &mut JsonConnect, reason: &str, undelivered: u64) -> Value {
    let closed = run.until(|v| v["event"] == "closed").await;
    assert_eq!(
        (&closed["reason"], &closed["undelivered"]),
        (&Value::from(reason), &Value::from(undelivered)),
        "{closed}"
    );
    closed
}

/// A `ws://` URL of a loopback port nobody listens on (bound to learn a free one, then closed).
pub fn closed_port_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("ws://127.0.0.1:{port}/")
}
