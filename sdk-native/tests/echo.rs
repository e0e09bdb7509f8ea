//! The driver against a plain echo server on loopback: connect, round trip, reconnect after
//! the server goes away and comes back, close.
#![allow(clippy::unwrap_used)]

mod common;

use futures_util::{FutureExt, SinkExt, StreamExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tether::{Client, Event, Payload, State};
use tokio::net::TcpListener;
use tokio::time::timeout;

/// An echo server. Aborting the returned task drops its `JoinSet`, which aborts every
/// connection too: to the client, the server vanished.
async fn echo_server(listener: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            connections.spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    })
}

/// A client with default settings, open on a fresh echo server (abort the handle to stop it).
async fn open_echo_client() -> (Client, tether::Events, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = echo_server(listener).await;
    let (client, events) = Client::builder(format!("ws://{addr}")).connect().unwrap();
    common::wait_open(&client).await;
    (client, events, server)
}

async fn next_message(events: &mut tether::Events) -> Payload {
    loop {
        match common::next_event(events).await {
            Event::Message(m) => return m.payload,
            _ => continue,
        }
    }
}

#[tokio::test]
async fn round_trip_reconnect_and_close() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = echo_server(listener).await;

    let (client, mut events) = Client::builder(format!("ws://{addr}"))
        .backoff_initial(Duration::from_millis(50))
        .connect()
        .unwrap();
    client.send("hello").unwrap();
    assert_eq!(
        next_message(&mut events).await,
        Payload::Text("hello".into())
    );

    // The server goes away: the client notices and keeps the next message in its outbox.
    server.abort();
    let _ = server.await;
    let mut state = client.watch_state();
    timeout(Duration::from_secs(5), state.wait_for(|s| !s.is_open()))
        .await
        .unwrap()
        .unwrap();
    client.send("while down").unwrap();

    let listener = TcpListener::bind(addr).await.unwrap();
    let server = echo_server(listener).await;
    assert_eq!(
        next_message(&mut events).await,
        Payload::Text("while down".into())
    );
    assert!(client.stats().reconnects >= 1);

    let reason = timeout(Duration::from_secs(5), client.close())
        .await
        .unwrap();
    assert_eq!(reason, tether::CloseReason::App { code: 1000 });
    assert!(matches!(client.state(), State::Closed { .. }));
    server.abort();
}

#[tokio::test]
async fn shutdown_closes_and_ends_the_task() {
    let (client, mut events, server) = open_echo_client().await;
    timeout(Duration::from_secs(5), client.shutdown())
        .await
        .unwrap();
    assert!(client.state().is_closed());
    // The task is gone: the event stream ends after the last events.
    while timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .is_some()
    {}
    assert_eq!(client.send("late"), Err(tether::SendError::Closed));
    assert_eq!(
        client.document("late").err(),
        Some(tether::SyncError::Send(tether::SendError::Closed))
    );
    client.connect();
    assert!(
        client.state().is_closed(),
        "connect after shutdown does nothing"
    );
    server.abort();
}

#[tokio::test]
async fn every_shutdown_future_waits_for_the_task_to_end() {
    // An FFI host may shut a client down from two places. The second future must not resolve
    // before the task has ended just because the first one got to the task first, even when
    // the first is then never polled again (current-thread runtime: nothing else runs unless
    // this test awaits).
    let (client, mut events, server) = open_echo_client().await;
    let mut first = Box::pin(client.shutdown());
    let second = client.clone().shutdown();
    timeout(Duration::from_secs(5), client.closed())
        .await
        .unwrap();
    // Closed, so `first` gets past its wait for that and on to the task, which has not ended.
    assert!(first.as_mut().now_or_never().is_none());
    timeout(Duration::from_secs(5), second).await.unwrap();
    // The task has ended: the event stream ends after the events already queued, at once.
    loop {
        match events.recv().now_or_never() {
            Some(Some(_)) => continue,
            Some(None) => break,
            None => panic!("the second shutdown() resolved while the task was still running"),
        }
    }
    drop(first);
    server.abort();
}

#[tokio::test]
async fn shutdown_finishes_while_the_app_holds_events_it_does_not_read() {
    // A full event queue stops the task reading its socket until the app takes events; a
    // shutdown must not wait for that, or its close never happens.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = echo_server(listener).await;
    let (client, events) = Client::builder(format!("ws://{addr}"))
        .event_capacity(2)
        .connect()
        .unwrap();
    common::wait_open(&client).await;
    for i in 0..20 {
        client.send(format!("m{i}")).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // the echoes fill the queue
    timeout(Duration::from_secs(5), client.shutdown())
        .await
        .expect("shutdown finishes although nobody reads the events");
    assert!(client.state().is_closed());
    drop(events);
    server.abort();
}

/// A client with `event_capacity(2)` on an echo server, whose app has read none of the echoes
/// of 20 messages (so the task waits for room), and 5 more messages sent after that, which
/// the stalled task does not write.
async fn client_stalled_by_unread_events() -> (Client, tether::Events, tokio::task::JoinHandle<()>)
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = echo_server(listener).await;
    let (client, mut events) = Client::builder(format!("ws://{addr}"))
        .event_capacity(2)
        .connect()
        .unwrap();
    // The app reads up to `Open`, then stops reading.
    while !matches!(
        common::next_event(&mut events).await,
        Event::StateChanged {
            to: State::Open,
            ..
        }
    ) {}
    for i in 0..20 {
        client.send(format!("m{i}")).unwrap();
    }
    // The echoes fill the queue; the task waits for the app to take events.
    let limit = tokio::time::Instant::now() + Duration::from_secs(5);
    while client.stats().frames_received < 3 {
        assert!(tokio::time::Instant::now() < limit, "no echoes arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stalled = client.stats();
    for i in 0..5 {
        client.send(format!("late{i}")).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        client.stats().frames_received,
        stalled.frames_received,
        "the task is stalled"
    );
    (client, events, server)
}

/// The events already queued (the task has put everything up to `Closed` there).
fn queued_events(events: &mut tether::Events) -> Vec<Event> {
    std::iter::from_fn(|| events.try_recv().ok())
        .take(1_000)
        .collect()
}

#[tokio::test]
async fn close_finishes_while_the_app_holds_events_it_does_not_read() {
    // An app that asked to close is not stalled by its own unread events: the close frame is
    // written and the close completes.
    let (client, events, server) = client_stalled_by_unread_events().await;
    let reason = timeout(Duration::from_secs(5), client.close())
        .await
        .expect("close finishes although nobody reads the events");
    assert_eq!(reason, tether::CloseReason::App { code: 1000 });
    assert!(client.state().is_closed());
    drop(events);
    server.abort();
}

#[tokio::test]
async fn close_after_drain_finishes_while_the_app_holds_events_it_does_not_read() {
    // The drain needs the task to write what is pending; unread events must not stop it.
    let (client, mut events, server) = client_stalled_by_unread_events().await;
    let reason = timeout(
        Duration::from_secs(5),
        client.close_after_drain(Duration::from_millis(100)),
    )
    .await
    .expect("close_after_drain finishes although nobody reads the events");
    assert_eq!(reason, tether::CloseReason::App { code: 1000 });
    assert!(client.state().is_closed());
    // Written before the close, not dropped at the drain's deadline.
    let events = queued_events(&mut events);
    assert!(
        !events.iter().any(|e| matches!(e, Event::Dropped { .. })),
        "{events:?}"
    );
    assert_eq!(client.outbox_len(), 0);
    server.abort();
}

#[tokio::test]
async fn a_close_while_reconnecting_finishes_while_the_app_holds_events_it_does_not_read() {
    // No handshake to run: the engine is Closed inside the call. The task, paused for room
    // in the app's queue, used to stay paused, so `close()` waited forever for a `Closed` it
    // never reported.
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", refused.local_addr().unwrap());
    drop(refused);
    for drained in [false, true] {
        let (client, events) = Client::builder(url.as_str())
            .backoff_initial(Duration::from_millis(20))
            .backoff_max(Duration::from_millis(50))
            .event_capacity(2)
            .connect()
            .unwrap();
        // A few refused attempts: more than two events wait unread, the task pauses.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let close = async {
            if drained {
                client.close_after_drain(Duration::from_secs(1)).await
            } else {
                client.close().await
            }
        };
        let reason = timeout(Duration::from_secs(5), close)
            .await
            .unwrap_or_else(|_| panic!("drained {drained}: the close never finished"));
        assert_eq!(reason, tether::CloseReason::App { code: 1000 });
        drop(events);
    }
}

#[tokio::test]
async fn close_resolves_when_the_app_connects_again_during_the_close_handshake() {
    // The engine finishes the close and starts again in one go; `close()` must still see
    // the Closed it waits for (it used to watch only the latest state, and hang).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = echo_server(listener).await;
    let (client, mut events) = Client::builder(format!("ws://{addr}")).connect().unwrap();
    while !matches!(
        common::next_event(&mut events).await,
        Event::StateChanged {
            to: State::Open,
            ..
        }
    ) {}
    // Polled once: the close command runs (the engine is Closing, its handshake under way),
    // then the app connects again before the handshake can end.
    let mut closing = Box::pin(client.close());
    assert!(
        closing.as_mut().now_or_never().is_none(),
        "the handshake takes a turn"
    );
    client.connect();
    let reason = timeout(Duration::from_secs(5), closing)
        .await
        .expect("close() resolves");
    assert_eq!(reason, tether::CloseReason::App { code: 1000 });
    let limit = tokio::time::Instant::now() + Duration::from_secs(5);
    while client.state() != State::Open {
        assert!(
            tokio::time::Instant::now() < limit,
            "not open again: {:?}",
            client.state()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(events);
    client.shutdown().await;
    server.abort();
}

#[tokio::test]
async fn connect_and_document_during_shutdown_open_nothing() {
    // Holds every TCP connection without a handshake.
    let (addr, accepted, server) = counting_listener(Held::Open).await;
    let (client, _events) = Client::builder(format!("ws://{addr}"))
        .protocol(tether::Protocol::Tether)
        .connect()
        .unwrap();
    for _ in 0..500 {
        if accepted.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // shutdown() has begun (the engine is closed) but the task has not ended yet: another
    // thread's connect() or document() lands in between.
    let mut shutdown = Box::pin(client.shutdown());
    assert!((&mut shutdown).now_or_never().is_none(), "held mid-way");
    client.connect();
    assert_eq!(
        client.document("doc").err(),
        Some(tether::SyncError::Send(tether::SendError::Closed))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "no connection attempt after shutdown began"
    );
    timeout(Duration::from_secs(5), shutdown).await.unwrap();
    assert!(client.state().is_closed());
    server.abort();
}

#[tokio::test]
async fn shutdown_begins_at_the_call_even_if_its_future_is_never_polled() {
    // Drops every TCP connection at once: every attempt fails, and the client waits a minute
    // to retry, so only connect() (which retries a waiting client at once) can make a second.
    let (addr, accepted, server) = counting_listener(Held::Dropped).await;
    let (client, _events) = Client::builder(format!("ws://{addr}"))
        .backoff_initial(Duration::from_secs(60))
        .backoff_max(Duration::from_secs(60))
        .jitter(tether::Jitter::None)
        .connect()
        .unwrap();
    let mut waiting = client.watch_state();
    timeout(
        Duration::from_secs(5),
        waiting.wait_for(|s| matches!(s, State::Waiting { .. })),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // Not polled before connect(): a shutdown that began only when first polled would let
    // this connect() retry at once.
    let shutdown = client.shutdown();
    client.connect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "no connection attempt after shutdown() was called"
    );
    let mut closing = client.watch_state();
    timeout(
        Duration::from_secs(5),
        closing.wait_for(|s| matches!(s, State::Closing | State::Closed { .. })),
    )
    .await
    .unwrap()
    .unwrap();
    timeout(Duration::from_secs(5), shutdown).await.unwrap();
    assert!(client.state().is_closed());
    server.abort();
}

/// What [`counting_listener`] does with each accepted TCP connection.
enum Held {
    /// Keeps it open without a handshake (an attempt that hangs).
    Open,
    /// Closes it at once (an attempt that fails).
    Dropped,
}

/// A TCP listener on loopback that counts the connections it accepts. Returns its address,
/// the count and the task (abort it to stop the server).
async fn counting_listener(
    held: Held,
) -> (
    std::net::SocketAddr,
    Arc<AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let server = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            if matches!(held, Held::Open) {
                open.push(tcp);
            }
        }
    });
    (addr, accepted, server)
}

/// A server that accepts one WebSocket and reports the close frame it receives, if any.
async fn close_recorder() -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Receiver<Option<(u16, String)>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let mut close = None;
        while let Some(Ok(msg)) = ws.next().await {
            if let tokio_tungstenite::tungstenite::Message::Close(Some(frame)) = msg {
                close = Some((u16::from(frame.code), frame.reason.to_string()));
                break;
            }
        }
        let _ = tx.send(close);
    });
    (addr, rx)
}

#[tokio::test]
async fn dropping_the_client_after_its_events_still_sends_a_close_frame() {
    let (addr, close) = close_recorder().await;
    let (client, events) = Client::builder(format!("ws://{addr}")).connect().unwrap();
    common::wait_open(&client).await;
    drop(events);
    drop(client);
    let close = timeout(Duration::from_secs(5), close)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(close, Some((1000, "client dropped".to_owned())));
}

#[tokio::test]
async fn closing_without_an_events_stream_still_sends_a_close_frame() {
    let (addr, close) = close_recorder().await;
    let (client, events) = Client::builder(format!("ws://{addr}")).connect().unwrap();
    common::wait_open(&client).await;
    drop(events);
    timeout(Duration::from_secs(5), client.shutdown())
        .await
        .unwrap();
    let close = timeout(Duration::from_secs(5), close)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(close, Some((1000, "shutdown".to_owned())));
}

#[test]
fn a_client_whose_task_is_gone_refuses_work_and_reports_what_was_pending() {
    // The client's task ends with its runtime (dropped here without a shutdown). The engine
    // is closed then, with code 1001 (going away), so nothing is accepted for a task that will
    // never send it, and what was queued is reported in the app's last events.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (client, mut events, queued) = runtime.block_on(async {
        let (client, events) = Client::builder("ws://127.0.0.1:9/")
            .protocol(tether::Protocol::Tether)
            .connect()
            .unwrap();
        let queued = client.send("queued for nobody").unwrap();
        (client, events, queued)
    });
    drop(runtime);
    let other = tokio::runtime::Runtime::new().unwrap();
    other.block_on(async {
        let limit = Duration::from_secs(5);
        assert_eq!(client.send("late"), Err(tether::SendError::Closed));
        assert!(matches!(
            client.state(),
            State::Closed {
                reason: tether::CloseReason::App { code: 1001 }
            }
        ));
        let acked = tokio::time::timeout(limit, client.send_acked("x")).await;
        assert_eq!(
            acked.expect("ends at once"),
            Err(tether::AckError::ClientGone)
        );
        let reply = tokio::time::timeout(limit, client.request("q", None)).await;
        assert!(
            matches!(
                reply.expect("ends at once"),
                Err(tether::RequestError::ClientGone)
            ),
            "a request too"
        );
        let mut dropped = Vec::new();
        while let Some(event) = timeout(limit, events.recv())
            .await
            .expect("the stream ends")
        {
            if let Event::Dropped { ids, reason } = event {
                dropped.push((ids, reason));
            }
        }
        assert_eq!(dropped, vec![(vec![queued], tether::DropReason::Closed)]);
    });
}

/// A token provider whose first call panics, whose second call's future panics when polled,
/// and which answers from then on: `calls` counts the calls.
fn provider_that_panics_twice(
    calls: Arc<AtomicUsize>,
) -> impl Fn(bool) -> futures_util::future::BoxFuture<'static, Result<String, std::io::Error>>
       + Send
       + Sync
       + 'static {
    move |_refresh| {
        let call = calls.fetch_add(1, Ordering::SeqCst);
        assert!(call != 0, "the provider panics when called");
        async move {
            assert!(call != 1, "the provider's future panics when polled");
            Ok("token".to_owned())
        }
        .boxed()
    }
}

#[tokio::test]
async fn a_panicking_token_provider_fails_its_attempt_and_a_later_one_connects() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = echo_server(listener).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let (client, mut events) = Client::builder(format!("ws://{addr}"))
        .backoff_initial(Duration::from_millis(20))
        .token_provider(provider_that_panics_twice(calls.clone()))
        .connect()
        .unwrap();
    client.send("queued while connecting").unwrap();
    // Each panic is a token failure the engine reports and retries, like a provider error.
    let mut token_errors = 0;
    let mut retries = 0;
    let payload = loop {
        match common::next_event(&mut events).await {
            Event::Error(tether::EngineError::Token(message)) => {
                assert_eq!(message, "token provider panicked");
                token_errors += 1;
            }
            Event::ReconnectScheduled {
                cause: tether::DisconnectCause::TokenUnavailable { message },
                ..
            } => {
                assert_eq!(message, "token provider panicked");
                retries += 1;
            }
            Event::Message(m) => break m.payload,
            _ => {}
        }
    };
    assert_eq!((token_errors, retries), (2, 2));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(payload, Payload::Text("queued while connecting".into()));
    // The task runs on: sends keep working.
    client.send("after").unwrap();
    assert_eq!(
        next_message(&mut events).await,
        Payload::Text("after".into())
    );
    server.abort();
}

#[tokio::test]
async fn a_token_provider_that_always_panics_ends_in_gave_up_and_refused_sends() {
    let (client, mut events) = Client::builder("ws://127.0.0.1:9/")
        .backoff_initial(Duration::from_millis(10))
        .max_attempts(Some(2))
        .token_provider(|_refresh| async {
            panic!("provider bug");
            #[allow(unreachable_code)]
            Ok::<String, std::io::Error>(String::new())
        })
        .connect()
        .unwrap();
    let queued = client.send("queued").unwrap();
    let reason = timeout(Duration::from_secs(5), client.closed())
        .await
        .unwrap();
    assert_eq!(reason, tether::CloseReason::GaveUp { attempts: 2 });
    assert_eq!(client.send("late"), Err(tether::SendError::Closed));
    let mut dropped = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Event::Dropped { ids, .. } = event {
            dropped.extend(ids);
        }
    }
    assert_eq!(
        dropped,
        vec![queued],
        "the queued message is reported, not kept"
    );
}

/// A client for the slow-link tests: ping frames every `interval`, dead after two missed (a
/// bound of three intervals), room for a message of `size` bytes, and a short close timeout
/// (the test servers never answer the close).
fn slow_link_client(url: String, interval: Duration, size: usize) -> tether::ClientBuilder {
    Client::builder(url)
        .heartbeat_mode(tether::HeartbeatMode::PingFrame)
        .heartbeat_interval(interval)
        .max_missed_pongs(2)
        .max_message_bytes(size * 2)
        .close_timeout(Duration::from_millis(200))
}

/// The heartbeat finds a dead connection within `interval × (missed + 1)`. A large message on
/// a slow but healthy link keeps bytes coming the whole time, but the server's pong can only
/// come after the frame it is in the middle of (RFC 6455 §5.4): unless the bytes themselves
/// count, the connection is dropped mid-message, and again after every reconnect (a resuming
/// server sends the same message first). Here: a 300 ms bound, and a 96 KiB frame arriving
/// steadily over more than a second (800 bytes every 10 ms).
#[tokio::test]
async fn a_large_websocket_message_on_a_slow_link_is_not_cut_off_by_the_heartbeat() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SIZE: usize = 96 * 1024;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            connections.spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let mut tcp = ws.into_inner();
                // One unmasked text frame with a 64-bit length, written piece by piece.
                let mut frame = vec![0x81, 127];
                frame.extend_from_slice(&(SIZE as u64).to_be_bytes());
                frame.extend(std::iter::repeat_n(b'x', SIZE));
                for piece in frame.chunks(800) {
                    if tcp.write_all(piece).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                // Then read (and discard) whatever comes, until the client goes.
                let mut buf = [0u8; 4096];
                while let Ok(n) = tcp.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                }
            });
        }
    });
    let (client, mut events) = slow_link_client(url, Duration::from_millis(100), SIZE)
        .connect()
        .unwrap();
    let got = common::first_message_or_reconnect(&mut events).await;
    timeout(Duration::from_secs(5), client.shutdown())
        .await
        .unwrap();
    server.abort();
    assert_eq!(got, Ok(SIZE), "the message arrives on the first connection");
}

/// A stream whose reads take at most 128 KiB every 16 ms (~8 MB/s): a slow uplink as the
/// server sees it.
struct SlowReads {
    tcp: tokio::net::TcpStream,
    pause: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl tokio::io::AsyncRead for SlowReads {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::ready!(std::future::Future::poll(self.pause.as_mut(), cx));
        let mut piece = vec![0u8; 128 * 1024];
        let room = buf.remaining().min(piece.len());
        let mut limited = tokio::io::ReadBuf::new(&mut piece[..room]);
        std::task::ready!(std::pin::Pin::new(&mut self.tcp).poll_read(cx, &mut limited))?;
        buf.put_slice(limited.filled());
        let next = tokio::time::Instant::now() + Duration::from_millis(16);
        self.pause.as_mut().reset(next);
        std::task::Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for SlowReads {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// The mirror of the test above: a large message going *out* on a slow link. The server's
/// pong comes only after the frame it is reading (and our ping waits behind the frame in our
/// own socket), so only the upload's progress shows that the peer is there: a socket that
/// pushed back takes more bytes only as the peer acknowledges earlier ones. Unless that
/// counts, the connection is dropped mid-message, and again after every reconnect (the engine
/// re-sends what the socket did not take). Here: a 1.5 s bound, and a 24 MiB message read at
/// ~8 MB/s. (That large because loopback's 64 KiB segments give the client's socket a send
/// buffer of megabytes: the socket wakes a pushed-back writer only when a third of it is free,
/// and the last buffer-full goes out with no push-back to see, so the bound must exceed the
/// time it takes; on a real link the buffer holds a few round trips' worth.)
#[tokio::test]
async fn a_large_websocket_message_sent_on_a_slow_link_is_not_cut_off_by_the_heartbeat() {
    const SIZE: usize = 24 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            connections.spawn(async move {
                let slow = SlowReads {
                    tcp,
                    pause: Box::pin(tokio::time::sleep(Duration::ZERO)),
                };
                let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                    .max_message_size(Some(SIZE * 2))
                    .max_frame_size(Some(SIZE * 2));
                let Ok(mut ws) =
                    tokio_tungstenite::accept_async_with_config(slow, Some(config)).await
                else {
                    return;
                };
                // Answers with the size of each text (and pings on the way, as tungstenite does).
                while let Some(Ok(msg)) = ws.next().await {
                    if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
                        let size = t.len().to_string();
                        if ws.send(size.into()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    let (client, mut events) = slow_link_client(url, Duration::from_millis(500), SIZE)
        .outbox_max_bytes(SIZE * 2)
        .connect()
        .unwrap();
    client.send("x".repeat(SIZE)).unwrap();
    let got = timeout(Duration::from_secs(30), async {
        while let Some(event) = events.recv().await {
            match event {
                Event::Message(m) => return Ok(m.payload),
                Event::ReconnectScheduled { cause, .. } => return Err(cause.to_string()),
                _ => {}
            }
        }
        Err("events ended".to_owned())
    })
    .await;
    timeout(Duration::from_secs(5), client.shutdown())
        .await
        .unwrap();
    server.abort();
    assert_eq!(
        got.unwrap(),
        Ok(Payload::Text(SIZE.to_string())),
        "the message goes through on the first connection"
    );
}

#[test]
fn a_request_error_reads_as_text_not_as_a_debug_dump() {
    use tether::{RequestError, RequestFailure};
    assert_eq!(
        RequestError::Failed(RequestFailure::TimedOut).to_string(),
        "request failed: no reply in time"
    );
    let rejected = RequestFailure::Rejected {
        code: "forbidden".to_owned(),
        message: "not yours".to_owned(),
    };
    assert_eq!(
        RequestError::Failed(rejected).to_string(),
        "request failed: forbidden: not yours"
    );
}

/// `try_recv` tells "nothing yet" from "never again": `Empty` while the client runs with no
/// event waiting, each waiting event after shutdown, and then `Shutdown`.
#[tokio::test]
async fn try_recv_tells_an_empty_queue_from_a_shut_down_client() {
    let (client, mut events, server) = open_echo_client().await;
    while events.try_recv().is_ok() {}
    assert_eq!(events.try_recv().unwrap_err(), tether::TryRecvError::Empty);

    client.send("echo me").unwrap();
    let echoed = timeout(Duration::from_secs(5), async {
        loop {
            match events.try_recv() {
                Ok(Event::Message(m)) => return m.payload,
                Ok(_) | Err(tether::TryRecvError::Empty) => {
                    tokio::time::sleep(Duration::from_millis(5)).await
                }
                Err(e) => panic!("stream ended before the echo: {e}"),
            }
        }
    })
    .await
    .expect("echo within 5 s");
    assert_eq!(echoed, Payload::Text("echo me".into()));

    client.shutdown().await;
    let mut after_shutdown = 0;
    let end = loop {
        match events.try_recv() {
            Ok(_) => after_shutdown += 1,
            Err(e) => break e,
        }
        assert!(after_shutdown < 100, "a shut-down client's queue ends");
    };
    assert_eq!(end, tether::TryRecvError::Shutdown);
    assert!(
        after_shutdown > 0,
        "the close's state change was still waiting"
    );
    server.abort();
}
