//! A client whose task panicked (in app code the driver does not guard: here the app's
//! `tracing` subscriber). Its own test binary: `tracing` caches per-callsite interest across
//! threads, so a subscriber set while other tests log concurrently could miss the event. (The
//! tests here each set one, and both subscribers enable everything.)
#![allow(clippy::unwrap_used)]

mod common;

use common::Traced;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tether::{AckError, Client, CloseReason, DropReason, Event, State};
use tokio::time::timeout;

/// Where the subscriber panics once armed (once only: the driver logs again as it ends).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// On an `info` event. The driver logs once it has released its locks, so the panic
    /// leaves the engine's lock unpoisoned, as `Enter` does, but strikes mid-drain: after the
    /// engine's events were handed over, before the app's wake-up and the token provider.
    InfoEvent,
    /// On entering a span. The client's task runs inside its `tether` span, entered on every
    /// poll of the task, outside any engine call: the lock is not poisoned.
    Enter,
}

/// A `tracing` subscriber that panics at its trigger once armed: app code that panics inside
/// the client's task, where the driver does not catch it.
struct PanickingSubscriber {
    armed: Arc<AtomicBool>,
    trigger: Trigger,
}

impl PanickingSubscriber {
    fn fire(&self, at: Trigger) {
        if at == self.trigger && self.armed.swap(false, Ordering::SeqCst) {
            panic!("the app's subscriber panics");
        }
    }
}

impl PanickingSubscriber {
    /// Installs it for this thread (the current-thread runtime's) until the guard drops.
    fn set_default(self) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(common::TestSubscriber::new(move |traced| match traced {
            Traced::Event(event) if *event.metadata().level() == tracing::Level::INFO => {
                self.fire(Trigger::InfoEvent)
            }
            Traced::Event(_) => {}
            Traced::Enter => self.fire(Trigger::Enter),
        }))
    }
}

/// A client of a server that accepts TCP and never answers the WebSocket handshake: it stays
/// connecting (the test accepts the connection to know the task ran).
async fn client_of_a_silent_server() -> (tokio::net::TcpListener, Client, tether::Events) {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", silent.local_addr().unwrap());
    let (client, events) = Client::builder(url)
        .protocol(tether::Protocol::Tether)
        .connect()
        .unwrap();
    (silent, client, events)
}

#[tokio::test]
async fn a_client_whose_task_panicked_reports_closed_and_refuses_work() {
    // Current-thread runtime: the client's task runs on this thread, under this subscriber.
    let armed = Arc::new(AtomicBool::new(true));
    let _subscriber = PanickingSubscriber {
        armed: armed.clone(),
        trigger: Trigger::InfoEvent,
    }
    .set_default();
    let (client, mut events) = Client::builder("ws://127.0.0.1:9/")
        .protocol(tether::Protocol::Tether)
        .connect()
        .unwrap();
    client.send("accepted while the task ran").unwrap();
    let doc = client.document("todo").unwrap();
    // The task's first state change log panics; the task ends without closing the engine,
    // which its end abandons.
    let reason = timeout(Duration::from_secs(5), client.closed())
        .await
        .unwrap();
    assert!(!armed.load(Ordering::SeqCst), "the subscriber panicked");
    let gone = CloseReason::App { code: 1001 };
    assert_eq!(reason, gone);
    assert_eq!(client.state(), State::Closed { reason: gone });
    assert_eq!(client.send("late"), Err(tether::SendError::Closed));
    assert_eq!(
        client.subscribe("room"),
        Err(tether::SubscribeError::Closed)
    );
    // A document change is a send too: the half-updated engine must not take one that
    // nothing will ever write or report.
    assert_eq!(
        doc.set("milk", true),
        Err(tether::SyncError::Send(tether::SendError::Closed))
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
        CloseReason::App { code: 1001 }
    );
    assert!(timeout(Duration::from_secs(5), async {
        while events.recv().await.is_some() {}
    })
    .await
    .is_ok());
}

#[tokio::test]
async fn a_panic_outside_the_engine_abandons_it_and_reports_what_was_pending() {
    // Current-thread runtime: the client's task is polled on this thread, under this
    // subscriber.
    let armed = Arc::new(AtomicBool::new(false));
    let _subscriber = PanickingSubscriber {
        armed: armed.clone(),
        trigger: Trigger::Enter,
    }
    .set_default();
    // Whatever is sent stays pending.
    let (silent, client, mut events) = client_of_a_silent_server().await;
    let queued = client.send("queued").unwrap();
    let acked = tokio::spawn({
        let client = client.clone();
        async move { client.send_acked("awaits its ack").await }
    });
    // The task runs: it is connecting.
    let (_connection, _) = timeout(Duration::from_secs(5), silent.accept())
        .await
        .unwrap()
        .unwrap();
    timeout(Duration::from_secs(5), async {
        while client.outbox_len() < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();

    armed.store(true, Ordering::SeqCst);
    // Wakes the task, whose next poll enters its span: the panic.
    let last = client.send("accepted just before the panic").unwrap();
    let mut dropped = BTreeSet::new();
    let closed = timeout(Duration::from_secs(5), async {
        loop {
            match events.recv().await.unwrap() {
                Event::Dropped { ids, reason } => {
                    assert_eq!(reason, DropReason::Closed);
                    dropped.extend(ids.iter().map(|id| id.get()));
                }
                Event::StateChanged {
                    to: State::Closed { reason },
                    ..
                } => return reason,
                _ => {}
            }
        }
    })
    .await
    .unwrap();
    assert!(!armed.load(Ordering::SeqCst), "the subscriber panicked");
    // The engine was intact, so it was abandoned: closed "going away", and every pending
    // message reported in an event, not silently forgotten.
    assert_eq!(closed, CloseReason::App { code: 1001 });
    assert_eq!(dropped.len(), 3, "{dropped:?}");
    assert!(dropped.contains(&queued.get()) && dropped.contains(&last.get()));
    // The waiter heard why (after a poisoned panic it could only learn the client was gone).
    let ack = timeout(Duration::from_secs(5), acked)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ack, Err(AckError::Dropped(DropReason::Closed)));
    assert_eq!(client.send("late"), Err(tether::SendError::Closed));
    assert!(
        timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .is_none(),
        "the events end after the last ones"
    );
}

// The driver takes the app's waker while it hands over the events, and wakes it once its locks
// are released, after the log: a subscriber that panics there must not take the wake-up with
// it, or an app already waiting on its `Events` waits for ever for the events (the last ones,
// the client's close among them) queued for it.
#[tokio::test]
async fn an_app_waiting_for_events_is_woken_when_the_log_panics() {
    let armed = Arc::new(AtomicBool::new(false));
    let _subscriber = PanickingSubscriber {
        armed: armed.clone(),
        trigger: Trigger::InfoEvent,
    }
    .set_default();
    let (silent, client, mut events) = client_of_a_silent_server().await;
    let (_connection, _) = timeout(Duration::from_secs(5), silent.accept())
        .await
        .unwrap()
        .unwrap();
    // Everything so far is handed over; the app then waits for more.
    while timeout(Duration::from_millis(50), events.recv())
        .await
        .is_ok()
    {}
    let reader = tokio::spawn(async move {
        let mut closed = false;
        while let Some(event) = events.recv().await {
            closed |= matches!(
                event,
                Event::StateChanged {
                    to: State::Closed { .. },
                    ..
                }
            );
        }
        closed
    });
    // The reader runs and parks on `recv` (its waker now with the driver).
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    armed.store(true, Ordering::SeqCst);
    // Its state change logs at info: the panic, mid-drain.
    let closing = tokio::spawn({
        let client = client.clone();
        async move { client.close().await }
    });
    let closed = timeout(Duration::from_secs(5), reader).await;
    assert!(!armed.load(Ordering::SeqCst), "the subscriber panicked");
    assert!(
        matches!(closed, Ok(Ok(true))),
        "the waiting app got the close and the end of its events: {closed:?}"
    );
    drop(closing);
}
