//! A close command's future counts the closes from before the command, not from after it:
//! on a multi-thread runtime the client's task can report the close (a close while
//! connecting needs no handshake) before the command returns, and a `connect()` before the
//! future is first polled then hid that close from it for good. A race: before the fix this
//! failed within some ten thousand rounds, with the cores busy (`yes > /dev/null`).
#![allow(clippy::unwrap_used)]

use futures_util::StreamExt;
use std::time::Duration;
use tether::Client;

#[test]
fn a_close_reported_before_the_command_returns_still_resolves_its_future() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // A port nothing listens on: the client is always connecting or waiting to retry,
        // where a close is immediate.
        let (client, mut events) = Client::builder("ws://127.0.0.1:9/")
            .backoff_initial(Duration::from_millis(1))
            .backoff_max(Duration::from_millis(1))
            .connect()
            .unwrap();
        // Read, so that the task never waits for the app to take events.
        tokio::spawn(async move { while events.next().await.is_some() {} });
        for round in 0..20000 {
            let closing = client.close();
            // The task, on the other worker, may already have reported that close: a restart
            // before the future is polled must not hide it.
            client.connect();
            tokio::time::timeout(Duration::from_secs(5), closing)
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "round {round}: the close future never resolved; {:?} {:?}",
                        client.state(),
                        client.stats()
                    )
                });
        }
        client.shutdown().await;
    });
}

/// `close()` on a client that is closed already does nothing to the engine, and its future
/// resolves with that close: a `connect()` before the future is first polled must not leave it
/// waiting for a close nobody asks for (the bindings' `disconnect()` never returned).
#[tokio::test]
async fn closing_a_closed_client_resolves_though_connect_follows_before_the_first_poll() {
    let (client, mut events) = Client::builder("ws://127.0.0.1:9/").connect().unwrap();
    tokio::spawn(async move { while events.next().await.is_some() {} });
    let first = client.close().await;
    assert!(client.state().is_closed());

    let closing = client.close();
    let closing_with = client.close_with(4000, "again");
    let draining = client.close_after_drain(Duration::from_secs(1));
    client.connect();
    // The task reports the new attempt before the futures are polled.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let limit = Duration::from_secs(5);
    assert_eq!(
        tokio::time::timeout(limit, closing)
            .await
            .expect("close resolved"),
        first
    );
    assert_eq!(
        tokio::time::timeout(limit, closing_with)
            .await
            .expect("close_with resolved")
            .unwrap(),
        first
    );
    assert_eq!(
        tokio::time::timeout(limit, draining)
            .await
            .expect("close_after_drain resolved"),
        first
    );
    client.shutdown().await;
}
