//! The runtimes a client is built on and used from: one without the timers or the I/O the
//! client's task needs, and one that is gone while the app still holds the client.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use tether::{AckError, BuildError, Client, RequestError, SendError};

/// Polls `fut` to completion on this thread, with no tokio context at all.
fn plain_block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        assert!(std::time::Instant::now() < deadline, "resolved within 10 s");
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

#[test]
fn a_runtime_without_timers_or_io_is_refused_at_build() {
    for (what, runtime) in [
        (
            "no timers",
            tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .unwrap(),
        ),
        (
            "no I/O",
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap(),
        ),
        (
            "neither",
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
        ),
    ] {
        let result = runtime.block_on(async {
            Client::builder("ws://127.0.0.1:9/")
                .connect()
                .map(|(client, _events)| client.state())
        });
        assert!(
            matches!(result, Err(BuildError::RuntimeFeatures(_))),
            "{what}: {result:?}"
        );
    }
}

#[test]
fn a_client_whose_runtime_was_dropped_answers_from_a_plain_thread() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (client, mut events) = runtime.block_on(async {
        Client::builder("ws://127.0.0.1:9/")
            .protocol(tether::Protocol::Tether)
            .connect()
            .unwrap()
    });
    drop(runtime);
    // No tokio context from here on.
    assert!(matches!(
        plain_block_on(client.publish_acked("room", "x")),
        Err(AckError::ClientGone | AckError::Send(SendError::Closed))
    ));
    assert!(matches!(
        plain_block_on(client.request("x", None)),
        Err(RequestError::ClientGone | RequestError::Send(SendError::Closed))
    ));
    assert_eq!(client.publish("room", "x"), Err(SendError::Closed));
    assert!(client.document("doc").is_err());
    client.connect();
    assert!(client.state().is_closed(), "{}", client.state());
    let reason = plain_block_on(client.closed());
    assert_eq!(reason, plain_block_on(client.close()));
    plain_block_on(client.shutdown());
    let mut n = 0;
    while plain_block_on(events.recv()).is_some() {
        n += 1;
        assert!(n < 100, "the events end");
    }
}

#[tokio::test]
async fn closing_a_client_that_never_connected_resolves() {
    for how in [
        "close",
        "drain",
        "drain zero",
        "drain max",
        "drain with a message",
    ] {
        let (client, _events) = Client::builder("ws://127.0.0.1:9/")
            .protocol(tether::Protocol::Tether)
            .build()
            .unwrap();
        let closing = match how {
            "close" => tokio::spawn(client.close()),
            "drain" => tokio::spawn(client.close_after_drain(Duration::from_secs(1))),
            "drain zero" => tokio::spawn(client.close_after_drain(Duration::ZERO)),
            "drain max" => tokio::spawn(client.close_after_drain(Duration::MAX)),
            _ => {
                client.publish("room", "x").unwrap();
                tokio::spawn(client.close_after_drain(Duration::from_millis(300)))
            }
        };
        let reason = tokio::time::timeout(Duration::from_secs(10), closing)
            .await
            .unwrap_or_else(|_| panic!("{how}: closed within 10 s ({})", client.state()))
            .unwrap();
        assert!(
            matches!(reason, tether::CloseReason::App { code: 1000 }),
            "{how}: {reason}"
        );
        client.shutdown().await;
    }
}

#[tokio::test]
async fn zero_timeouts_are_refused_with_a_typed_error_not_a_hang() {
    let (client, _events) = Client::builder("ws://127.0.0.1:9/")
        .protocol(tether::Protocol::Tether)
        .build()
        .unwrap();
    let limit = Duration::from_secs(5);
    let acked = tokio::time::timeout(
        limit,
        client.publish_acked_with("room", "x", tether::AckedOptions::timeout(Duration::ZERO)),
    )
    .await
    .expect("answered at once");
    assert!(matches!(acked, Err(AckError::Send(_))), "{acked:?}");
    let ttl = tether::AckedOptions::default().with_ttl(Duration::ZERO);
    let acked = tokio::time::timeout(limit, client.send_acked_with("x", ttl))
        .await
        .expect("answered at once");
    assert!(matches!(acked, Err(AckError::Send(_))), "{acked:?}");
    let reply = tokio::time::timeout(limit, client.request("x", Some(Duration::ZERO)))
        .await
        .expect("answered at once");
    assert!(matches!(reply, Err(RequestError::Send(_))), "{reply:?}");
    assert!(client.close_with(999, "x").await.is_err());
    assert_eq!(client.outbox_len(), 0);
    client.shutdown().await;
}
