//! An app's `tracing` subscriber is app code: one that calls back into the client from inside
//! a log event (to enrich its lines with `client.stats()` or `client.state()`, say) must not
//! deadlock the client's task on the driver's own (non-reentrant) locks. Its own test binary:
//! `tracing` caches per-callsite interest across threads, so a subscriber set while other
//! tests log concurrently could miss events.
#![allow(clippy::unwrap_used)]

mod common;

use futures_util::StreamExt;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use tether::Client;
use tokio::net::TcpListener;
use tokio::time::timeout;

/// A `tracing` subscriber that, on every event, reads the client's stats (the engine's lock)
/// and state (the event queue's lock), and records the event's message.
#[derive(Default)]
struct ReentrantSubscriber {
    client: Mutex<Option<Client>>,
    /// Calls into the client made from inside an event.
    reentries: AtomicUsize,
    /// The messages of the events seen (from the `tether` crate).
    messages: Mutex<BTreeSet<String>>,
}

impl ReentrantSubscriber {
    fn client(&self) -> Option<Client> {
        self.client.lock().unwrap().clone()
    }
}

/// Picks the `message` field out of an event.
struct MessageField(Option<String>);

impl tracing::field::Visit for MessageField {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

impl ReentrantSubscriber {
    /// Records a `tether` event's message, then calls into the client.
    fn on_event(&self, event: &tracing::Event<'_>) {
        if event.metadata().target().starts_with("tether") {
            let mut message = MessageField(None);
            event.record(&mut message);
            if let Some(m) = message.0 {
                self.messages.lock().unwrap().insert(m);
            }
        }
        // Called without holding `self.client`'s lock: only the client's locks are on trial.
        if let Some(client) = self.client() {
            let _ = client.stats();
            let _ = client.state();
            let _ = client.outbox_len();
            self.reentries.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A server on `listener`: it drops its first connection before the handshake (the client
/// logs a transport error and schedules a reconnect), accepts the second as a WebSocket that
/// reads until the client closes (answering the close), and holds later connections without
/// answering (the client stays connecting).
fn server(listener: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        for n in 0.. {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            match n {
                0 => drop(tcp),
                1 => {
                    connections.spawn(async move {
                        let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                            return;
                        };
                        while let Some(Ok(_)) = ws.next().await {}
                    });
                }
                _ => {
                    connections.spawn(async move {
                        let _held = tcp;
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    });
                }
            }
        }
    })
}

/// Connects (a failed attempt, a reconnect, an open connection), closes, connects again with a
/// message queued and shuts down: every path on which the driver logs.
async fn drive(subscriber: Arc<ReentrantSubscriber>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = server(listener);
    let (client, mut events) = Client::builder(format!("ws://{addr}"))
        .backoff_initial(Duration::from_millis(20))
        .backoff_max(Duration::from_millis(50))
        .build()
        .unwrap();
    *subscriber.client.lock().unwrap() = Some(client.clone());
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });

    client.connect();
    client.send("written once open").unwrap();
    common::wait_open(&client).await;
    timeout(Duration::from_secs(5), client.close())
        .await
        .expect("closed within 5 s");

    // Connecting again, to a server that never answers: the message stays queued, and the
    // shutdown reports it dropped.
    client.connect();
    client.send("dropped at shutdown").unwrap();
    common::wait_connecting(&client).await;
    timeout(Duration::from_secs(5), client.shutdown())
        .await
        .expect("shut down within 5 s");
    timeout(Duration::from_secs(5), drain)
        .await
        .expect("events end within 5 s")
        .unwrap();

    *subscriber.client.lock().unwrap() = None;
    server.abort();
}

/// A client whose runtime is dropped while it connects with a message queued: the task's end
/// (`Driver::drop`) abandons the engine and logs the close and the dropped message. Returns
/// the calls into the client made from the log meanwhile.
fn abandon(subscriber: &ReentrantSubscriber) -> usize {
    // Never accepted: the kernel completes the TCP handshake, nobody answers the WebSocket one.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}", silent.local_addr().unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (client, _events) = runtime.block_on(async {
        let (client, events) = Client::builder(url).connect().unwrap();
        client.send("pending when the runtime goes").unwrap();
        common::wait_connecting(&client).await;
        (client, events)
    });
    *subscriber.client.lock().unwrap() = Some(client.clone());
    let before = subscriber.reentries.load(Ordering::SeqCst);
    drop(runtime);
    let after = subscriber.reentries.load(Ordering::SeqCst);
    *subscriber.client.lock().unwrap() = None;
    assert!(client.state().is_closed(), "{:?}", client.state());
    after - before
}

#[test]
fn a_subscriber_that_calls_into_the_client_from_a_log_event_does_not_deadlock_it() {
    let subscriber = Arc::new(ReentrantSubscriber::default());
    let (done, finished) = mpsc::channel();
    // The client runs on a runtime of its own thread, under the subscriber: a deadlock there
    // (a std mutex locked again by the thread that holds it) is seen here as a timeout instead
    // of hanging the test binary.
    let runner = std::thread::spawn({
        let subscriber = subscriber.clone();
        move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let dispatch = tracing::Dispatch::new(common::TestSubscriber::new({
                let subscriber = subscriber.clone();
                move |traced| {
                    if let common::Traced::Event(event) = traced {
                        subscriber.on_event(event);
                    }
                }
            }));
            let abandoned = tracing::dispatcher::with_default(&dispatch, || {
                runtime.block_on(drive(subscriber.clone()));
                abandon(&subscriber)
            });
            let _ = done.send(abandoned);
        }
    });
    let abandoned = match finished.recv_timeout(Duration::from_secs(30)) {
        Ok(abandoned) => {
            runner.join().unwrap();
            abandoned
        }
        // The runner panicked (an assertion in `drive`): its panic is the failure.
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(runner.join().unwrap_err())
        }
        // The runner's thread is left blocked; the test binary ends without it.
        Err(mpsc::RecvTimeoutError::Timeout) => panic!(
            "the client did not finish within 30 s: deadlocked by a subscriber calling into it \
             (messages seen: {:?})",
            subscriber.messages.lock().unwrap()
        ),
    };
    let seen = subscriber.messages.lock().unwrap().clone();
    for expected in [
        "opening",
        "state changed",
        "transport error",
        "reconnect scheduled",
        "closing transport",
        "messages dropped",
    ] {
        assert!(seen.contains(expected), "no {expected:?} logged: {seen:?}");
    }
    assert!(subscriber.reentries.load(Ordering::SeqCst) > 0);
    assert!(
        abandoned > 0,
        "the task's end logged the close of the engine it abandoned"
    );
}
