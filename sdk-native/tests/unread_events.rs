//! An app that keeps `Events` and never reads it: once `event_capacity` events wait, the
//! client's task pauses (documented backpressure). That is logged, once per pause that lasts,
//! so the stall is not silent.
#![allow(clippy::unwrap_used)]

mod common;

use common::{TestSubscriber, Traced};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tether::Client;

/// Counts the warnings that name `event_capacity` (the pause's).
fn pause_warnings() -> (Arc<AtomicUsize>, tracing::subscriber::DefaultGuard) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let subscriber = TestSubscriber::new(move |traced| {
        if let Traced::Event(event) = traced {
            if *event.metadata().level() == tracing::Level::WARN
                && event.fields().any(|f| f.name() == "event_capacity")
            {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (count, tracing::subscriber::set_default(subscriber))
}

/// Paused time: the 5 s the task waits before it warns pass at once, and exactly.
#[tokio::test(start_paused = true)]
async fn a_client_paused_by_unread_events_says_so_once() {
    let (warnings, _guard) = pause_warnings();
    // A port nothing listens on: every attempt fails, and every failure is news.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (client, events) = Client::builder(format!("ws://127.0.0.1:{port}/"))
        .event_capacity(1)
        .build()
        .unwrap();
    client.connect();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(warnings.load(Ordering::SeqCst), 0, "not before 5 s");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        warnings.load(Ordering::SeqCst),
        1,
        "once the pause lasted 5 s"
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(warnings.load(Ordering::SeqCst), 1, "once per pause");
    // Nobody listens any more: the client goes on, and never pauses again.
    drop(events);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(warnings.load(Ordering::SeqCst), 1);
    client.shutdown().await;
}
