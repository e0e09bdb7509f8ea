//! An app that calls the client faster than its task turns: every call wakes the task, and
//! the wake-up must not keep the engine's deadline from being handled (a reconnect retry, a
//! heartbeat, an ack or request timeout), or the client waits for as long as the calls last.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tether::{Client, Jitter, OutboxConfig, OverflowPolicy, State};

/// Sends at most this many: a bound on the test, far more than the retry needs (its delay
/// is 10 ms; a refused send takes a microsecond or so).
const SENDS: u64 = 3_000_000;

/// A reconnect retry falls due while another thread sends in a tight loop (refused sends:
/// the outbox holds one message and rejects the rest, so no event piles up): the retry must
/// start before the loop ends. The task checks the wake-up before the timer, so wake-ups
/// arriving faster than it turns would keep it from ever reaching the timer; it handles a
/// deadline that has passed on a wake-up too. (This did not fail before that: here a turn
/// is shorter than a send, so the task still found the timer between wake-ups. It guards the
/// rule, with a bound in sends, not time.)
#[tokio::test]
async fn a_retry_falls_due_while_the_app_sends_in_a_tight_loop() {
    // A port nothing listens on: every attempt is refused at once.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (client, _events) = Client::builder(format!("ws://127.0.0.1:{port}/"))
        .backoff_initial(Duration::from_millis(10))
        .jitter(Jitter::None)
        .outbox(OutboxConfig {
            max_messages: 1,
            overflow: OverflowPolicy::RejectNew,
            ..OutboxConfig::default()
        })
        .build()
        .unwrap();
    client.connect();
    // The first attempt was refused: waiting for the second.
    let mut state = client.watch_state();
    tokio::time::timeout(
        Duration::from_secs(5),
        state.wait_for(|s| matches!(s, State::Waiting { attempt: 2, .. })),
    )
    .await
    .expect("the first attempt refused within 5 s")
    .unwrap();

    let retried = Arc::new(AtomicBool::new(false));
    let sender = {
        let client = client.clone();
        let retried = retried.clone();
        std::thread::spawn(move || {
            let mut sent = 0;
            while sent < SENDS {
                let _ = client.send("x");
                sent += 1;
                // What the task last handed over: past the wait once the retry started.
                if sent % 64 == 0 && !matches!(client.state(), State::Waiting { attempt: 2, .. }) {
                    retried.store(true, Ordering::Release);
                    break;
                }
            }
            sent
        })
    };
    let sent = tokio::task::spawn_blocking(move || sender.join().unwrap())
        .await
        .unwrap();
    assert!(
        retried.load(Ordering::Acquire),
        "the retry (due 10 ms after the refusal) had not started after {sent} sends"
    );
    client.shutdown().await;
}
