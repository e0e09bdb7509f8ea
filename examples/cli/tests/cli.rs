//! The `tether` binary as a process: its JSON output, its exit statuses, its options.
#![allow(clippy::unwrap_used)]

mod common;

use common::{
    assert_closed, closed_port_url, exit_code, start_relay, tether, tether_with_stdin, JsonConnect,
    LIMIT,
};
use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use tether_tests::servers::{Behaviour, MisbehavingServer};
use tether_tests::tls::TlsEchoServer;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::time::timeout;

#[tokio::test]
async fn ack_timeout_reports_a_line_that_could_not_be_sent_in_time() {
    // A server that accepts TCP and never answers the handshake: nothing can be written.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", silent.local_addr().unwrap());
    let mut run = JsonConnect::spawn(
        &url,
        &[
            "--publish",
            "room",
            "--ack-timeout",
            "300",
            "--connect-timeout",
            "30000",
            "--drain-timeout",
            "100",
        ],
    );
    let mut stdin = run.stdin();
    stdin.write_all(b"lost\n").await.unwrap();
    let timed_out = run.until(|v| v["event"] == "ack_timed_out").await;
    assert_eq!(timed_out["status"], "expired");
    let dropped = run.until(|v| v["event"] == "dropped").await;
    assert_eq!(
        (&dropped["reason"], &dropped["ids"]),
        (
            &Value::from("expired"),
            &serde_json::json!([timed_out["id"]])
        ),
        "the dropped event that follows names the same message"
    );
    drop(stdin);
    let closed = run.until(|v| v["event"] == "closed").await;
    assert_eq!(closed["undelivered"], 1, "{closed}");
    assert_eq!(run.exit_code().await, 3, "the line was lost");
}

#[tokio::test]
async fn messages_dropped_at_the_drain_timeout_exit_with_status_3() {
    // A server that accepts TCP and never answers the handshake: the line stays pending.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", silent.local_addr().unwrap());
    let mut run = JsonConnect::spawn(
        &url,
        &["--connect-timeout", "30000", "--drain-timeout", "200"],
    );
    let mut stdin = run.stdin();
    stdin.write_all(b"never sent\n").await.unwrap();
    drop(stdin); // EOF: drain for 200 ms, then close with the line still pending
    let dropped = run.until(|v| v["event"] == "dropped").await;
    assert_eq!(dropped["reason"], "closed", "{dropped}");
    // A clean close, but the line was lost.
    assert_closed(&mut run, "app", 1).await;
    assert_eq!(run.exit_code().await, 3);
}

#[tokio::test]
async fn connect_prints_json_events_and_exits_cleanly_at_end_of_input() {
    let relay = start_relay().await;
    let url = relay.ws_url();
    let mut run = JsonConnect::spawn(&url, &["--subscribe", "room", "--publish", "room"]);
    run.until(|v| v["event"] == "state" && v["to"] == "open")
        .await;
    run.until(|v| v["event"] == "subscribed").await;
    let mut stdin = run.stdin();
    stdin.write_all(b"hello\n{\"n\":1}\n").await.unwrap();
    let first = run.until(|v| v["event"] == "message").await;
    assert_eq!(
        (&first["data"], &first["channel"], &first["offset"]),
        (&Value::from("hello"), &Value::from("room"), &Value::from(1))
    );
    let second = run.until(|v| v["event"] == "message").await;
    assert_eq!(
        second["data"],
        serde_json::json!({"n": 1}),
        "a JSON line is published as JSON"
    );
    drop(stdin); // EOF: drain and close
    let closed = run.until(|v| v["event"] == "closed").await;
    assert_eq!(closed["reason"], "app");
    assert_eq!(closed["stats"]["accepted"], 2);
    assert_eq!(closed["stats"]["dropped"], 0);
    assert_eq!(closed["undelivered"], 0);
    assert_eq!(run.exit_code().await, 0);
    let states: Vec<&str> = run
        .seen
        .iter()
        .filter(|v| v["event"] == "state")
        .filter_map(|v| v["to"].as_str())
        .collect();
    assert_eq!(states, ["connecting", "open", "closing", "closed"]);
    relay.shutdown().await;
}

#[tokio::test]
async fn a_line_that_is_not_utf8_is_reported_and_skipped_and_the_rest_is_sent() {
    a_bad_second_line_is_skipped(&[], b"bad \xff\xfe line\r\n", &["line 2", "UTF-8"]).await;
}

#[tokio::test]
async fn a_line_longer_than_the_largest_message_is_reported_and_skipped() {
    // Not kept in memory while it is read (lines::LineReader); reported with its size.
    let long = format!("{}\n", "x".repeat(1000));
    a_bad_second_line_is_skipped(
        &["--max-message-bytes", "256"],
        long.as_bytes(),
        &["line 2", "1001 bytes", "256"],
    )
    .await;
}

/// Publishes `first`, `bad` and `third` as stdin lines with `options`: `bad` is reported (an
/// error of kind `stdin` whose message holds each of `said`) and skipped, the other two are
/// delivered, and the run exits 3, a skipped line being input that did not get through.
async fn a_bad_second_line_is_skipped(options: &[&str], bad: &[u8], said: &[&str]) {
    let relay = start_relay().await;
    let url = relay.ws_url();
    let args = [&["--subscribe", "room", "--publish", "room"][..], options].concat();
    let mut run = JsonConnect::spawn(&url, &args);
    run.until(|v| v["event"] == "subscribed").await;
    let mut stdin = run.stdin();
    let input = [&b"first\n"[..], bad, b"third\n"].concat();
    stdin.write_all(&input).await.unwrap();
    drop(stdin);
    let error = run.until(|v| v["event"] == "error").await;
    assert_eq!(error["kind"], "stdin", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(said.iter().all(|s| message.contains(s)), "{message}");
    let closed = run.until(|v| v["event"] == "closed").await;
    let received: Vec<&Value> = run
        .seen
        .iter()
        .filter(|v| v["event"] == "message")
        .map(|v| &v["data"])
        .collect();
    assert_eq!(
        received,
        [&Value::from("first"), &Value::from("third")],
        "reading went on after the bad line"
    );
    assert_eq!(
        (&closed["skipped_lines"], &closed["undelivered"]),
        (&Value::from(1), &Value::from(0)),
        "{closed}"
    );
    assert_eq!(run.exit_code().await, 3);
    relay.shutdown().await;
}

/// Publishes `line` to `room` with a second `tether connect`, which must exit 0.
async fn publish_once(url: &str, line: &str) {
    let mut publisher = tether(&["connect", url, "--publish", "room"]);
    let mut stdin = publisher.stdin.take().unwrap();
    stdin.write_all(line.as_bytes()).await.unwrap();
    drop(stdin);
    assert_eq!(exit_code(&mut publisher).await, 0);
}

#[tokio::test]
async fn listen_needs_no_stdin_and_stays_connected() {
    let relay = start_relay().await;
    let url = relay.ws_url();

    // Without --listen, a stdin at its end (cron, docker without -i) closes at once.
    let mut once = tether_with_stdin(
        &["connect", &url, "--subscribe", "room", "--json"],
        Stdio::null(),
    );
    assert_eq!(exit_code(&mut once).await, 0);

    let mut run =
        JsonConnect::spawn_with_stdin(&url, &["--subscribe", "room", "--listen"], Stdio::null());
    run.until(|v| v["event"] == "subscribed").await;
    publish_once(&url, "while listening\n").await;
    let message = run.until(|v| v["event"] == "message").await;
    assert_eq!(message["data"], "while listening");
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "still connected: {:#?}",
        run.seen
    );
    run.child.kill().await.unwrap();
    relay.shutdown().await;
}

#[tokio::test]
async fn an_sse_url_does_not_read_stdin() {
    let relay = start_relay().await;
    let url = relay.ws_url();
    let sse = format!("http://{}/sse/room", relay.local_addr());
    let mut run = JsonConnect::spawn(&sse, &["--protocol", "tether"]);
    run.until(|v| v["to"] == "open").await;
    // Neither sent (SSE cannot) nor taken as the end of input.
    let mut stdin = run.stdin();
    stdin.write_all(b"not sent\n").await.unwrap();
    drop(stdin);
    publish_once(&url, "over sse\n").await;
    let message = run.until(|v| v["event"] == "message").await;
    assert_eq!(message["data"], "over sse");
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "still connected: {:#?}",
        run.seen
    );
    assert!(
        !run.seen.iter().any(|v| v["event"] == "error"),
        "{:#?}",
        run.seen
    );
    run.child.kill().await.unwrap();
    relay.shutdown().await;
}

/// `--json` prints each message's stream position; a later run given it with
/// `--last-event-id` resumes after that message: the next one again, not the one before.
#[tokio::test]
async fn an_sse_run_resumes_from_the_last_event_id_a_run_printed() {
    let relay = start_relay().await;
    let url = relay.ws_url();
    let sse = format!("http://{}/sse/room", relay.local_addr());
    let mut first = JsonConnect::spawn(&sse, &["--protocol", "tether"]);
    first.until(|v| v["to"] == "open").await;
    publish_once(&url, "one\n").await;
    let one = first.until(|v| v["event"] == "message").await;
    let saved = one["last_event_id"]
        .as_str()
        .expect("a position")
        .to_owned();
    publish_once(&url, "two\n").await;
    first.until(|v| v["data"] == "two").await;
    first.child.kill().await.unwrap();
    let options = ["--protocol", "tether", "--last-event-id", saved.as_str()];
    let mut again = JsonConnect::spawn(&sse, &options);
    let next = again.until(|v| v["event"] == "message").await;
    assert_eq!(next["data"], "two", "{:#?}", again.seen);
    again.child.kill().await.unwrap();
    relay.shutdown().await;
}

#[tokio::test]
async fn the_readable_output_ends_with_one_close_line() {
    let relay = start_relay().await;
    let child = tether_with_stdin(&["connect", &relay.ws_url()], Stdio::null());
    let output = timeout(LIMIT, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let closes: Vec<&str> = stderr.lines().filter(|l| l.contains("closed")).collect();
    assert_eq!(closes, ["closed by the app with code 1000"], "{stderr}");
    relay.shutdown().await;
}

#[tokio::test]
async fn a_terminal_close_code_exits_with_status_2() {
    let server = MisbehavingServer::start(Behaviour::AcceptThenClose(Some((
        4004,
        "no such room".into(),
    ))))
    .await
    .unwrap();
    let mut run = JsonConnect::spawn(&server.ws_url(), &[]);
    let closed = run.until(|v| v["event"] == "closed").await;
    assert_eq!(closed["reason"], "refused");
    assert!(
        closed["detail"].as_str().unwrap().contains("4004"),
        "{closed}"
    );
    assert_eq!(run.exit_code().await, 2);
}

#[tokio::test]
async fn giving_up_after_max_attempts_exits_with_status_2() {
    let url = closed_port_url();
    let mut run = JsonConnect::spawn(&url, &["--max-attempts", "3", "--backoff-initial", "20"]);
    let closed = run.until(|v| v["event"] == "closed").await;
    assert_eq!(closed["reason"], "gave_up");
    assert_eq!(closed["stats"]["attempts"], 3);
    let delays: Vec<u64> = run
        .seen
        .iter()
        .filter(|v| v["event"] == "reconnect_scheduled")
        .map(|v| v["delay_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(delays.len(), 2, "{:#?}", run.seen);
    assert_eq!(run.exit_code().await, 2);
}

#[tokio::test]
async fn a_client_that_gave_up_exits_while_stdin_stays_open() {
    let url = closed_port_url();
    let mut run = JsonConnect::spawn(&url, &["--max-attempts", "1"]);
    // Held open and never written to, like a terminal nobody types in: the read of stdin in
    // flight must not keep the process from exiting.
    let _stdin = run.stdin();
    let closed = run.until(|v| v["event"] == "closed").await;
    assert_eq!(closed["reason"], "gave_up");
    assert_eq!(run.exit_code().await, 2);
}

#[tokio::test]
async fn bad_options_exit_with_status_1_and_name_the_option() {
    for (args, expected) in [
        // It said "must be at least 1 µs", a value these millisecond options cannot take.
        (
            vec!["connect", "ws://127.0.0.1:1/", "--backoff-initial", "0"],
            "--backoff-initial: must be at least 1 (ms)",
        ),
        (
            vec!["connect", "ws://127.0.0.1:1/", "--connect-timeout", "0"],
            "--connect-timeout: must be at least 1 (ms)",
        ),
        (
            vec!["connect", "ws://127.0.0.1:1/", "--jitter", "sometimes"],
            "--jitter",
        ),
        (vec!["connect", "ftp://example.com"], "URL"),
        (
            vec!["connect", "ws://127.0.0.1:1/", "--header", "no-colon"],
            "--header",
        ),
        (
            vec![
                "connect",
                "ws://127.0.0.1:1/",
                "--ca-file",
                "/nonexistent.pem",
            ],
            "--ca-file: cannot read /nonexistent.pem",
        ),
        // Over the default cap (30 s): it blamed --backoff-max alone, by a field name.
        (
            vec!["connect", "ws://127.0.0.1:1/", "--backoff-initial", "60000"],
            "--backoff-max (30000 ms) must be at least --backoff-initial (60000 ms)",
        ),
        // It said "use None for unlimited".
        (
            vec!["connect", "ws://127.0.0.1:1/", "--max-attempts", "0"],
            "--max-attempts: must be at least 1 (leave it out to retry for ever)",
        ),
        // It said "use ServerDriven or Off", values the option does not take.
        (
            vec![
                "connect",
                "http://127.0.0.1:1/sse/room",
                "--ping-mode",
                "frame",
            ],
            "use --ping-mode server or off",
        ),
        // Each line was refused by send (exit 3); --subscribe and --document were refused
        // up front.
        (
            vec!["connect", "ws://127.0.0.1:1/", "--publish", ""],
            "--publish \"\": invalid channel name",
        ),
        (vec!["frobnicate"], "frobnicate"),
        // It said "cannot listen on 127.0.0.1:9000: reconnect_after ...": the port was fine.
        (
            vec![
                "relay",
                "--listen",
                "127.0.0.1:0",
                "--reconnect-after",
                "6000",
                "--reconnect-window",
                "5000",
            ],
            "tether relay: reconnect_after (--reconnect-after) must be at most",
        ),
        // A debug build's connections panicked on the write buffer's size; a release build's
        // wrapped to 9 KiB and dropped the first larger frame.
        (
            vec![
                "relay",
                "--listen",
                "127.0.0.1:0",
                "--max-message-bytes",
                "18446744073709551615",
            ],
            "tether relay: max_message_size (--max-message-bytes) must be at most 1 GiB",
        ),
        // It modelled advice the relay refuses to give (a return after the window's end).
        (
            vec!["storm", "--graceful", "1000", "--advise-downtime"],
            "--advise-downtime: the outage (2 s, --outage) is longer than the window",
        ),
        // It ran on one thread and reported "0 threads".
        (vec!["storm", "--threads", "0"], "--threads"),
        // Options that could never work: refused up front instead of failing line by line.
        (
            vec![
                "connect",
                "http://127.0.0.1:1/sse/room",
                "--publish",
                "room",
            ],
            "--publish",
        ),
        (
            vec![
                "connect",
                "https://127.0.0.1:1/sse/room",
                "--document",
                "todo",
            ],
            "--document",
        ),
        (
            vec![
                "connect",
                "http://127.0.0.1:1/sse/room",
                "--subscribe",
                "room",
            ],
            "--subscribe",
        ),
        (
            vec![
                "connect",
                "ws://127.0.0.1:1/",
                "--protocol",
                "raw",
                "--publish",
                "room",
            ],
            "--publish",
        ),
        (
            vec![
                "connect",
                "ws://127.0.0.1:1/",
                "--listen",
                "--publish",
                "room",
            ],
            "--listen",
        ),
    ] {
        let child = tether(&args);
        let output = timeout(LIMIT, child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn wss_with_a_private_ca_works_only_with_ca_file() {
    let server = TlsEchoServer::start().await.unwrap();
    let url = server.wss_url();

    let mut untrusting = JsonConnect::spawn(&url, &["--backoff-initial", "50"]);
    let error = untrusting.until(|v| v["event"] == "error").await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("certificate"),
        "{error}"
    );
    assert!(!untrusting.seen.iter().any(|v| v["to"] == "open"));
    untrusting.child.kill().await.unwrap();

    let ca = server.ca_file().to_str().unwrap().to_owned();
    let mut run = JsonConnect::spawn(&url, &["--ca-file", &ca]);
    run.until(|v| v["to"] == "open").await;
    let mut stdin = run.stdin();
    stdin.write_all(b"over tls\n").await.unwrap();
    let echoed = run.until(|v| v["event"] == "message").await;
    assert_eq!(echoed["data"], "over tls");
    drop(stdin);
    assert_eq!(run.exit_code().await, 0);
}

#[tokio::test]
async fn the_relay_command_announces_its_address_and_stops_on_sigterm() {
    let mut child = tether(&["relay", "--listen", "127.0.0.1:0"]);
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = timeout(LIMIT, out.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(line.starts_with("listening on ws://127.0.0.1:"), "{line}");
    let pid = child.id().unwrap();
    // The shell's own `kill`: slim images have no kill binary.
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("kill -s TERM {pid}")])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(exit_code(&mut child).await, 0);
}

/// `tether demo | head -2`: the reader goes away after two lines. The next `println!`
/// panicked (exit 101, a panic message and a backtrace on the terminal) from whichever
/// task printed it; now the demo ends at once as a program SIGPIPE ended does (141).
#[tokio::test]
async fn the_demo_piped_into_head_ends_quietly() {
    let mut child = tether(&["demo"]);
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..2 {
        timeout(LIMIT, stdout.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
    drop(stdout);
    let output = timeout(LIMIT, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(141), "{stderr}");
}

#[tokio::test]
async fn the_demo_holds_its_summary() {
    let child = tether(&["demo"]);
    let output = timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let summary = stdout.lines().find(|l| l.starts_with("sent ")).unwrap();
    assert!(summary.ends_with("lost 0"), "{summary}");
    for phase in ["relay  crashed", "heartbeat timeout", "dropped"] {
        assert!(
            stdout.contains(phase),
            "the timeline shows {phase:?}:\n{stdout}"
        );
    }
}

#[tokio::test]
async fn connect_with_a_document_prints_it_as_it_converges() {
    let relay = start_relay().await;
    let url = relay.ws_url();
    let mut run = JsonConnect::spawn(&url, &["--document", "todo"]);
    run.until(|v| v["event"] == "document_resynced").await;
    let mut stdin = run.stdin();
    stdin
        .write_all(b"set milk {\"done\":false}\ninc count 2\ninsert milk 1\n")
        .await
        .unwrap();
    let refused = run.until(|v| v["event"] == "error").await;
    assert!(
        refused["message"].as_str().unwrap().contains("conflict"),
        "{refused}"
    );
    let settled = run
        .until(|v| v["event"] == "document" && v["pending"] == 0 && v["version"] == 2)
        .await;
    assert_eq!(
        settled["doc"],
        serde_json::json!({"milk": {"done": false}, "count": 2})
    );
    drop(stdin);
    // The refused insert never became a change: a skipped line, as a change the server
    // rejects is a dropped message.
    assert_eq!(run.exit_code().await, 3);
    relay.shutdown().await;
}
