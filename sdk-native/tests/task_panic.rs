//! A client whose task panicked (in app code the driver does not guard: here the app's
//! `tracing` subscriber). Its own test binary: `tracing` caches per-callsite interest across
//! threads, so a subscriber set while other tests log concurrently could miss the event.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tether::{Client, State};
use tokio::time::timeout;

/// A `tracing` subscriber that panics on the first `info` event once armed: app code that
/// panics inside the client's task, where the driver does not catch it.
struct PanickingSubscriber(Arc<AtomicBool>);

impl tracing::Subscriber for PanickingSubscriber {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::INFO && self.0.swap(false, Ordering::SeqCst)
        {
            panic!("the app's subscriber panics");
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
async fn a_client_whose_task_panicked_reports_closed_and_refuses_work() {
    // Current-thread runtime: the client's task runs on this thread, under this subscriber.
    let armed = Arc::new(AtomicBool::new(true));
    let _subscriber = tracing::subscriber::set_default(PanickingSubscriber(armed.clone()));
    let (client, mut events) = Client::builder("ws://127.0.0.1:9/")
        .protocol(tether::Protocol::Tether)
        .connect()
        .unwrap();
    client.send("accepted while the task ran").unwrap();
    // The task's first state change log panics; the task ends without closing the engine.
    let reason = timeout(Duration::from_secs(5), client.closed())
        .await
        .unwrap();
    assert!(!armed.load(Ordering::SeqCst), "the subscriber panicked");
    let gone = tether::CloseReason::App { code: 1001 };
    assert_eq!(reason, gone);
    assert_eq!(client.state(), State::Closed { reason: gone });
    assert_eq!(client.send("late"), Err(tether::SendError::Closed));
    assert_eq!(
        client.subscribe("room"),
        Err(tether::SubscribeError::Closed)
    );
    assert_eq!(
        client.close_with(999, "").await,
        Err(tether::CloseError::InvalidCode(999)),
        "refused as by a running client"
    );
    assert_eq!(
        timeout(Duration::from_secs(5), client.close())
            .await
            .unwrap(),
        tether::CloseReason::App { code: 1001 }
    );
    assert!(timeout(Duration::from_secs(5), async {
        while events.recv().await.is_some() {}
    })
    .await
    .is_ok());
}
