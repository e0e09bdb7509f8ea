//! [`Client`]: the connection, as an object the app holds.
//!
//! Synchronous methods (`connect`, `send`, `publish`, `subscribe`, `document`, `state`, …)
//! take the client's lock for one engine call and return; they are safe on a UI thread. Async
//! methods (`sendAcked`, `publishAcked`, `request`, `disconnect…`, `shutdown`) run on the
//! library's runtime and are cancellable in Kotlin and Python: cancelling the coroutine or
//! asyncio task abandons the wait (an acked message stays in the outbox; its `Acked` or
//! `Dropped` event will still come). UniFFI 0.32's Swift code does not pass a task's
//! cancellation on: a Swift call waits until it ends by itself (see the README).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::config::ClientConfig;
use crate::dispatch::{pump, Hub};
use crate::document::Document;
use crate::error::ClientError;
use crate::event::Payload;
use crate::listener::{ClientListener, ListenerHandle};
use crate::options::SendOptions;
use crate::runtime::{run, runtime};
use crate::state::{CloseReason, ConnectionState, EngineClock};
use crate::stats::ClientStats;
use crate::token::TokenSlot;
use crate::wake_fence::fenced;

/// A real-time connection that survives the network. Created `Idle`; call `connect()`.
/// `shutdown()` closes it, delivers every listener its last events (down to `Closed`) and
/// waits until nothing of the library holds your objects. Releasing it without that (Kotlin
/// `close()`/`use {}`, the last Swift or Python reference) stops its listeners at once, with
/// no further events (a callback in progress on another thread is waited for, up to 1 s: once
/// the release returns no callback starts, and none runs unless it outlasted that second),
/// releases them and the token provider on the releasing thread, and closes the connection in
/// the background.
#[derive(Debug, uniffi::Object)]
pub struct Client {
    inner: tether::Client,
    /// What a JSON payload becomes ([`Payload::into_core`]).
    protocol: tether::Protocol,
    hub: Arc<Hub>,
    clock: EngineClock,
    tokens: TokenSlot,
}

#[uniffi::export]
impl Client {
    /// Validates `config` and starts the client in `Idle`.
    #[uniffi::constructor]
    pub fn new(config: Arc<ClientConfig>) -> Result<Arc<Self>, ClientError> {
        let runtime = runtime();
        let _entered = runtime.enter();
        let clock = EngineClock::now();
        let listener_queue = config.listener_queue()?;
        let (builder, tokens) = config.to_builder();
        let protocol = config.protocol();
        let (inner, events) = builder.build()?;
        let hub = Hub::new(clock.state(inner.state()), listener_queue);
        runtime.spawn(pump(events, hub.clone(), clock));
        Ok(Arc::new(Client {
            inner,
            protocol,
            hub,
            clock,
            tokens,
        }))
    }

    /// Starts connecting (from `Idle` or `Closed`), or retries at once while `Waiting` (not
    /// before a minimum the server set: Retry-After, close 1013, `reconnect_after_ms`; from
    /// `Closed` too, when it set one before the close; and a token it refused is fetched with
    /// `refresh`); while
    /// `Closing` or draining (`disconnect_after_drain`), once the close is done (a
    /// `disconnect()` waiting for it returns); what is sent after it is then accepted for the
    /// next connection (during a drain, drained with the rest). Returns at
    /// once: the progress arrives as `StateChanged` events. Does nothing once
    /// `shutdown()` has started, even before it completes: create a new client instead.
    pub fn connect(&self) {
        self.inner.connect();
    }

    /// Queues a message for the server and returns its id. Raw mode: a frame. Tether mode: a
    /// channel-less publish. Queued while disconnected; delivered, or reported in `Dropped`.
    pub fn send(&self, payload: Payload) -> Result<u64, ClientError> {
        let id = self.inner.send(payload.into_core(self.protocol)?)?;
        Ok(id.get())
    }

    /// Publishes to `channel` (Tether mode; acknowledged and re-sent after a reconnect until
    /// the server acks it). Returns the id that `Acked`/`Dropped` events name.
    pub fn publish(&self, channel: String, payload: Payload) -> Result<u64, ClientError> {
        let id = self
            .inner
            .publish(&channel, payload.into_core(self.protocol)?)?;
        Ok(id.get())
    }

    /// `send` with per-message options: `ack = false` to write it once without an ack,
    /// `ttlMs` to drop it (reason `Expired`) if it cannot be sent in time.
    pub fn send_with(&self, payload: Payload, options: SendOptions) -> Result<u64, ClientError> {
        let payload = payload.into_core(self.protocol)?;
        Ok(self.inner.send_with(payload, options.into())?.get())
    }

    /// `publish` with per-message options: `ack = false` for fire and forget (no `Acked`
    /// event, not re-sent after a reconnect), `ttlMs` to drop it (reason `Expired`) if it
    /// cannot be sent in time.
    pub fn publish_with(
        &self,
        channel: String,
        payload: Payload,
        options: SendOptions,
    ) -> Result<u64, ClientError> {
        let payload = payload.into_core(self.protocol)?;
        Ok(self
            .inner
            .publish_with(&channel, payload, options.into())?
            .get())
    }

    /// Sends a channel-less message (Tether mode) and waits for the server's ack, at most
    /// `timeout_ms` (`null`: until acked or dropped). Returns the stored offset, if any.
    ///
    /// After `AckTimedOut` the message is never sent again: if it was still waiting to be sent
    /// it is dropped (a `Dropped` event with reason `Expired`); if it was already written, an
    /// `Acked` event means the server has it, while a `Dropped` event leaves the outcome
    /// unknown: the server may have stored it and lost the ack (see `ClientError.AckTimedOut`).
    pub async fn send_acked(
        &self,
        payload: Payload,
        timeout_ms: Option<u64>,
    ) -> Result<Option<u64>, ClientError> {
        let payload = payload.into_core(self.protocol)?;
        let options = acked_options(timeout_ms);
        // Accepted here, in the order of the calls; the runtime's task only waits.
        let acked = run(self.inner.send_acked_with(payload, options));
        let acked = acked.await.ok_or_else(ClientError::closed)?;
        acked.map_err(|e| timeout_refused(e.into(), ACK_TIMEOUT))
    }

    /// Publishes to `channel` and waits for the server's ack, at most `timeout_ms` (`null`:
    /// until acked or dropped). Returns the message's offset in the channel. After `AckTimedOut`
    /// the message is never sent again (see `sendAcked`).
    pub async fn publish_acked(
        &self,
        channel: String,
        payload: Payload,
        timeout_ms: Option<u64>,
    ) -> Result<Option<u64>, ClientError> {
        let payload = payload.into_core(self.protocol)?;
        let options = acked_options(timeout_ms);
        // Accepted here, in the order of the calls; the runtime's task only waits.
        let acked = run(self.inner.publish_acked_with(&channel, payload, options));
        let acked = acked.await.ok_or_else(ClientError::closed)?;
        acked.map_err(|e| timeout_refused(e.into(), ACK_TIMEOUT))
    }

    /// Sends a request (Tether mode) and returns the reply's JSON text. Fails with
    /// `TimedOut` after `timeout_ms` (`null`: the configured request timeout). Cancelling the
    /// call (its Kotlin coroutine or asyncio task) cancels the request: still queued, it is
    /// never sent; written, its reply is ignored. The call ends as the language ends a
    /// cancelled one (`CancellationException`, `CancelledError`); no listener event reports
    /// it (listeners get no request events). A cancelled Swift task is not seen (UniFFI 0.32):
    /// the call ends with the reply or `TimedOut`.
    pub async fn request(
        &self,
        payload: Payload,
        timeout_ms: Option<u64>,
    ) -> Result<String, ClientError> {
        let payload = payload.into_core(self.protocol)?;
        let timeout = timeout_ms.map(Duration::from_millis);
        // A cancelled coroutine or asyncio task drops this call, and with it the request: the
        // app no longer wants its reply, so a queued request is never sent.
        let reply = run(self.inner.request(payload, timeout).cancel_on_drop())
            .await
            .ok_or_else(ClientError::closed)?
            .map_err(|e| timeout_refused(e.into(), REQUEST_TIMEOUT))?;
        Ok(reply.to_string())
    }

    /// The shared document on `channel` (Tether mode): edits show at once and converge to the
    /// server's order for every client, through drops and reconnects. Opening a channel twice
    /// gives two handles on the same document. `Closed` once `shutdown()` has started.
    pub fn document(&self, channel: String) -> Result<Arc<Document>, ClientError> {
        let doc = self.inner.document(&channel)?;
        Ok(Arc::new(Document::new(doc, self.hub.clone())))
    }

    /// Subscribes to `channel` (Tether mode); renewed with resume after every reconnect.
    pub fn subscribe(&self, channel: String) -> Result<(), ClientError> {
        Ok(self.inner.subscribe(&channel)?)
    }

    /// Unsubscribes from `channel`.
    pub fn unsubscribe(&self, channel: String) -> Result<(), ClientError> {
        Ok(self.inner.unsubscribe(&channel)?)
    }

    /// The members present on a subscribed channel, or `null` if not subscribed. Throws
    /// `NeedsTetherProtocol` in raw mode, as `subscribe` does.
    pub fn presence(&self, channel: String) -> Result<Option<Vec<String>>, ClientError> {
        Ok(self.inner.presence(&channel)?)
    }

    /// Closes the connection with code 1000 and waits until closed; pending messages are
    /// reported dropped (acknowledged ones already written only if their ack has not come
    /// when the close handshake ends). `connect()` starts again. (Named `disconnect` because Kotlin's
    /// `close()` is `AutoCloseable.close`, which releases the whole client.)
    pub async fn disconnect(&self) -> CloseReason {
        run(self.inner.close())
            .await
            .map_or(CloseReason::App { code: 1000 }, Into::into)
    }

    /// Closes with `code` (1000 or 3000–4999) and `reason`, and waits until closed.
    pub async fn disconnect_with(
        &self,
        code: u16,
        reason: String,
    ) -> Result<CloseReason, ClientError> {
        let closed = run(self.inner.close_with(code, &reason))
            .await
            .ok_or_else(ClientError::closed)??;
        Ok(closed.into())
    }

    /// Stops taking messages, delivers (and gets acked) everything pending, reconnecting if
    /// needed (at once if waiting to, unless the server set a later minimum), then closes; after `timeout_ms` at the latest, reporting the rest dropped. A
    /// `connect()` meanwhile takes messages again (drained with the rest) and starts the client
    /// again once it is closed (at the server's minimum if it set one, as any `connect()` waits).
    pub async fn disconnect_after_drain(&self, timeout_ms: u64) -> CloseReason {
        let timeout = Duration::from_millis(timeout_ms);
        run(self.inner.close_after_drain(timeout))
            .await
            .map_or(CloseReason::App { code: 1000 }, Into::into)
    }

    /// Closes (code 1000; pending messages are reported dropped) and stops the client for
    /// good, and returns once everything it ran has ended: its task, the token provider it
    /// held, and every listener thread after delivering its last event (the final
    /// `StateChanged` to `Closed`). After that no library thread holds any of your objects.
    ///
    /// For deterministic teardown: before a Python interpreter exits (a client released
    /// during interpreter finalisation would release your Python objects from a library
    /// thread, which CPython does not allow), in tests, or when an Android `ViewModel` is
    /// cleared and you want the connection closed before going on. `connect()` does nothing
    /// afterwards; create a new client instead. Do not wait for it inside a listener: it
    /// waits for the listeners' threads. Cancelling the wait does not stop the teardown.
    ///
    /// It starts when its call runs, not when it is created: in Python when the coroutine
    /// first runs (awaited, or scheduled as a task and reached by the event loop);
    /// `client.shutdown()` alone only makes the coroutine and starts nothing. In Kotlin and
    /// Swift when the `suspend`/`async` call is made.
    pub async fn shutdown(&self) {
        // Begun at the first poll, which UniFFI's generated code makes synchronously when the
        // foreign coroutine or suspend call runs, not when the runtime first polls the spawned
        // teardown: `connect()` on another thread does nothing from now on.
        let shutdown = self.inner.shutdown();
        let hub = self.hub.clone();
        // Detached, not `run`: the teardown completes even if the caller stops waiting.
        let teardown = runtime().spawn(async move {
            shutdown.await;
            hub.finished().await;
        });
        // Fenced, as `run` is: the app resumes only once the worker that woke it has left
        // the foreign language (a Python interpreter finalising right after this call would
        // otherwise kill that worker mid-callback, aborting the process).
        let _ = fenced(teardown).await;
    }

    /// [`shutdown`](Self::shutdown) for code that cannot await: a synchronous Python app's
    /// `finally:` or `atexit` hook, a JVM shutdown hook. Blocks the calling thread until the
    /// teardown is done (every listener has had its last events, down to `Closed`, and let go
    /// of your objects) or `timeout_ms` has passed; returns whether it finished. Called before
    /// the interpreter exits, it leaves no library thread that could call into Python while it
    /// finalises. Not from a listener callback: it waits for the listeners' threads, so it
    /// could only time out there.
    pub fn shutdown_blocking(&self, timeout_ms: u64) -> bool {
        let shutdown = self.inner.shutdown();
        let hub = self.hub.clone();
        let (done, finished) = std::sync::mpsc::sync_channel(1);
        // Detached, as in `shutdown`: the teardown completes even if this wait times out.
        runtime().spawn(async move {
            shutdown.await;
            hub.finished().await;
            let _ = done.send(());
        });
        // A std channel, not `block_on`: the caller may be any thread, never a runtime one.
        finished
            .recv_timeout(std::time::Duration::from_millis(timeout_ms))
            .is_ok()
    }

    /// Tell the client when the OS reports the network online or offline (Android
    /// `ConnectivityManager.NetworkCallback`, iOS `NWPathMonitor`): an online report skips the
    /// backoff wait, also a repeated one (a handover reports the new network before losing the
    /// old one), but not a minimum the server set, such as Retry-After; an online report, or
    /// the first offline one, probes an open WebSocket, and an online report restarts an open
    /// event stream that has a position from that position (`DisconnectCause.StreamRestarted`,
    /// unless `ClientConfig.restartStreams(false)`), as a stream cannot be probed.
    pub fn network_changed(&self, online: bool) {
        self.inner.network_changed(online);
    }

    /// Tell the client when the app enters the foreground (`true`) or background (Android
    /// `ProcessLifecycleOwner`, iOS `scenePhase`/`UIApplication` notifications). Back in the
    /// foreground, it acts as an online report, except that an event stream is restarted only
    /// if it was open for at least the heartbeat interval while the app was away (25 s by
    /// default), and not while the app has reported the network offline.
    pub fn set_foreground(&self, foreground: bool) {
        self.inner.set_foreground(foreground);
    }

    /// The current state, as of the client's latest `StateChanged` event: a command's effect
    /// shows once the client's task has taken it up, a moment later (`connect()` then
    /// `state()` may still say `Idle`). Show the state from `StateChanged` events rather than
    /// by reading this right after a command.
    pub fn state(&self) -> ConnectionState {
        self.clock.state(self.inner.state())
    }

    /// An event stream's position: the last event id it sent, sent back on every reconnect
    /// (null on a WebSocket). It may be ahead of events the listener has not handled yet: to
    /// save a position to resume from, save the `lastEventId` of the last message handled.
    pub fn last_event_id(&self) -> Option<String> {
        self.inner.last_event_id()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ClientStats {
        ClientStats {
            outbox_len: self.inner.outbox_len() as u64,
            listener_events_missed: self.hub.missed.load(Ordering::Relaxed),
            listener_failures: self.hub.failures.load(Ordering::Relaxed),
            ..self.inner.stats().into()
        }
    }

    /// Subscribes `listener` to this client's events: it first receives the current state
    /// (`StateChanged` with `previous = null`), then every event, on a thread of its own,
    /// until the returned handle's `cancel()` or the client's end (`shutdown()` or release).
    /// Releasing the handle does not stop the listener.
    pub fn add_listener(&self, listener: Arc<dyn ClientListener>) -> Arc<ListenerHandle> {
        Arc::new(ListenerHandle::new(self.hub.attach(listener)))
    }
}

/// Released by the app without `shutdown()`: the listeners get nothing more (a callback in
/// progress on another thread is waited for, up to 1 s), and they and the token provider are released
/// here, on the app's thread, rather than later by the library's threads (a Python
/// interpreter that is finalising aborts the process when another thread calls into it). The connection closes in the background as the `tether` client is dropped.
impl Drop for Client {
    fn drop(&mut self) {
        self.hub.release_listeners();
        self.tokens.release();
    }
}

/// What `timeout_refused` says of a refused `timeoutMs` of `sendAcked`/`publishAcked`.
const ACK_TIMEOUT: &str = "must be at least 1 ms (null: wait until acked or dropped)";
/// What `timeout_refused` says of a refused `timeoutMs` of `request`.
const REQUEST_TIMEOUT: &str = "must be at least 1 ms (null: the configured request timeout)";

/// The only option `sendAcked`, `publishAcked` and `request` pass is the app's `timeoutMs`, so
/// a refusal of their options (a 0, under the engine's microsecond) names that argument, in
/// the unit the app wrote, rather than `options` and microseconds the app never saw.
fn timeout_refused(e: ClientError, reason: &str) -> ClientError {
    match e {
        ClientError::InvalidArgument { argument, .. } if argument == "options" => {
            ClientError::InvalidArgument {
                argument: "timeout_ms".to_owned(),
                reason: reason.to_owned(),
            }
        }
        other => other,
    }
}

/// `timeoutMs` of `sendAcked`/`publishAcked`: `tether` bounds the wait and the message's TTL.
fn acked_options(timeout_ms: Option<u64>) -> tether::AckedOptions {
    tether::AckedOptions {
        timeout: timeout_ms.map(Duration::from_millis),
        ttl: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{WireProtocol, MAX_LISTENER_QUEUE};
    use crate::document::DocumentOp;
    use crate::document_event::{ChangeOrigin, DocumentEvent};
    use crate::event::ClientEvent;
    use crate::listener::{DocumentListener, ListenerError};
    use std::sync::{mpsc, Mutex};

    const WAIT: Duration = Duration::from_secs(5);

    struct Docs(Mutex<mpsc::Sender<DocumentEvent>>);

    impl DocumentListener for Docs {
        fn on_event(&self, event: DocumentEvent) -> Result<(), ListenerError> {
            let _ = self.0.lock().map(|tx| tx.send(event));
            Ok(())
        }
    }

    struct Events(Mutex<mpsc::Sender<ClientEvent>>);

    impl ClientListener for Events {
        fn on_event(&self, event: ClientEvent) -> Result<(), ListenerError> {
            let _ = self.0.lock().map(|tx| tx.send(event));
            Ok(())
        }
    }

    /// A Tether-mode client that is never connected.
    fn offline() -> Arc<Client> {
        let config = ClientConfig::new("ws://127.0.0.1:9/".to_owned())
            .wire_protocol(WireProtocol::Tether)
            .message_ttl_ms(Some(60_000));
        Client::new(config).expect("a valid config")
    }

    #[test]
    fn a_zero_capacity_is_an_invalid_config_not_raised_to_one() {
        let base = || ClientConfig::new("ws://127.0.0.1:9/".to_owned());
        for (config, expected) in [
            (base().event_capacity(0), "event_capacity"),
            (base().listener_queue_capacity(0), "listener_queue_capacity"),
        ] {
            match Client::new(config) {
                Err(ClientError::InvalidConfig { field, .. }) => assert_eq!(field, expected),
                other => panic!("{expected}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_bad_ca_pem_is_named_as_every_other_field_is() {
        // Every `InvalidConfig.field` is the setting's snake_case name (`client_id`,
        // `event_capacity`, `listener_queue_capacity`), which an app may match on.
        let config =
            ClientConfig::new("wss://127.0.0.1:9/".to_owned()).ca_pem("garbage".to_owned());
        match Client::new(config) {
            Err(ClientError::InvalidConfig { field, .. }) => assert_eq!(field, "ca_pem"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_proxy_is_a_url_or_empty_for_direct_and_a_bad_one_is_named_without_its_password() {
        let base = || ClientConfig::new("wss://127.0.0.1:9/".to_owned());
        for ok in [
            "",
            "http://user:pw@proxy.example:3128",
            "proxy.example:8080",
        ] {
            let client = Client::new(base().proxy(ok.to_owned()));
            assert!(client.is_ok(), "{ok:?}: {:?}", client.err());
        }
        let config = base().proxy("https://user:s3cret@proxy.example".to_owned());
        match Client::new(config) {
            Err(ClientError::InvalidConfig { field, reason }) => {
                assert_eq!(field, "proxy");
                assert!(reason.contains("https:// proxies"), "{reason}");
                assert!(!reason.contains("s3cret"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_message_too_large_names_the_limit_it_exceeds() {
        let config = ClientConfig::new("ws://127.0.0.1:9/".to_owned())
            .max_message_bytes(8)
            .outbox_max_bytes(4);
        let client = Client::new(config).expect("a valid config");
        let text = |n: usize| Payload::Text {
            text: "x".repeat(n),
        };
        assert_eq!(
            client.send(text(9)),
            Err(ClientError::TooLarge {
                size: 9,
                max: 8,
                limit: crate::error::SizeLimit::MaxMessageBytes
            })
        );
        assert_eq!(
            client.send(text(6)),
            Err(ClientError::TooLarge {
                size: 6,
                max: 4,
                limit: crate::error::SizeLimit::OutboxMaxBytes
            })
        );
        assert!(client.send(text(4)).is_ok());
        runtime().block_on(client.shutdown());
    }

    #[test]
    fn a_listener_queue_over_the_maximum_is_an_invalid_config_not_an_allocation() {
        let base = || ClientConfig::new("ws://127.0.0.1:9/".to_owned());
        // u32::MAX would have the ring allocate 2^32 slots up front and abort the process.
        for capacity in [MAX_LISTENER_QUEUE + 1, 1 << 31, u32::MAX] {
            match Client::new(base().listener_queue_capacity(capacity)) {
                Err(ClientError::InvalidConfig { field, reason }) => {
                    assert_eq!(field, "listener_queue_capacity");
                    assert!(reason.contains("65536"), "{reason}");
                }
                other => panic!("{capacity}: {other:?}"),
            }
        }
        let largest = Client::new(base().listener_queue_capacity(MAX_LISTENER_QUEUE));
        assert!(largest.is_ok(), "{largest:?}");
    }

    #[test]
    fn shutdown_blocking_returns_once_every_listener_had_its_last_event() {
        let client = offline();
        let (tx, rx) = mpsc::channel();
        let _handle = client.add_listener(Arc::new(Events(Mutex::new(tx))));
        assert!(
            client.shutdown_blocking(5_000),
            "the teardown finished in time"
        );
        // Everything was delivered before it returned: the listener's last event is Closed,
        // and its thread has let go of it (the sender is dropped).
        let events: Vec<ClientEvent> = rx.try_iter().collect();
        assert!(
            matches!(
                events.last(),
                Some(ClientEvent::StateChanged {
                    current: ConnectionState::Closed { .. },
                    ..
                })
            ),
            "{events:?}"
        );
        assert_eq!(rx.try_recv(), Err(mpsc::TryRecvError::Disconnected));
        assert!(
            client.shutdown_blocking(0) || client.shutdown_blocking(1_000),
            "again: done"
        );
    }

    #[test]
    fn a_listener_lives_until_cancelled_not_as_long_as_its_handle() {
        let client = offline();
        let doc = client.document("todo".to_owned()).expect("Tether mode");
        let (tx, rx) = mpsc::channel();
        let (doc_tx, doc_rx) = mpsc::channel();
        // The handles are dropped at once, as an app that ignores them does.
        drop(client.add_listener(Arc::new(Events(Mutex::new(tx)))));
        drop(doc.add_listener(Arc::new(Docs(Mutex::new(doc_tx)))));
        assert!(matches!(
            rx.recv_timeout(WAIT),
            Ok(ClientEvent::StateChanged { previous: None, .. })
        ));
        assert!(matches!(
            doc_rx.recv_timeout(WAIT),
            Ok(DocumentEvent::Snapshot { .. })
        ));
        doc.set("milk".to_owned(), "2".to_owned()).expect("set");
        assert!(
            std::iter::from_fn(|| rx.recv_timeout(WAIT).ok())
                .any(|e| matches!(e, ClientEvent::DocumentChanged { .. })),
            "the client listener stopped with its handle"
        );
        assert!(
            matches!(doc_rx.recv_timeout(WAIT), Ok(DocumentEvent::Changed { .. })),
            "the document listener stopped with its handle"
        );

        // cancel() still stops one: its thread ends and drops the listener's sender.
        let (tx, rx) = mpsc::channel();
        let handle = client.add_listener(Arc::new(Events(Mutex::new(tx))));
        assert!(rx.recv_timeout(WAIT).is_ok());
        handle.cancel();
        assert!(handle.is_cancelled());
        let deadline = std::time::Instant::now() + WAIT;
        while rx.recv_timeout(WAIT) != Err(mpsc::RecvTimeoutError::Disconnected) {
            assert!(std::time::Instant::now() < deadline, "the listener goes on");
        }
        runtime().block_on(client.shutdown());
    }

    /// Records the thread it is released on.
    struct Released(Arc<Mutex<Option<std::thread::ThreadId>>>);

    impl Drop for Released {
        fn drop(&mut self) {
            if let Ok(mut on) = self.0.lock() {
                *on = Some(std::thread::current().id());
            }
        }
    }

    /// A client listener that forwards events and records where it is released.
    struct Tracked(
        Mutex<mpsc::Sender<ClientEvent>>,
        #[allow(dead_code)] Released,
    );

    impl ClientListener for Tracked {
        fn on_event(&self, event: ClientEvent) -> Result<(), ListenerError> {
            let _ = self.0.lock().map(|tx| tx.send(event));
            Ok(())
        }
    }

    struct TrackedDoc(#[allow(dead_code)] Released);

    impl DocumentListener for TrackedDoc {
        fn on_event(&self, _: DocumentEvent) -> Result<(), ListenerError> {
            Ok(())
        }
    }

    struct Tokens(#[allow(dead_code)] Released);

    #[async_trait::async_trait]
    impl crate::token::TokenProvider for Tokens {
        async fn token(&self, _refresh: bool) -> Result<String, crate::token::TokenError> {
            Ok("t".to_owned())
        }
    }

    /// A provider whose fetch says it started, then never answers (a slow auth server).
    struct SlowTokens(Mutex<mpsc::Sender<()>>, #[allow(dead_code)] Released);

    #[async_trait::async_trait]
    impl crate::token::TokenProvider for SlowTokens {
        async fn token(&self, _refresh: bool) -> Result<String, crate::token::TokenError> {
            let _ = self.0.lock().map(|tx| tx.send(()));
            std::future::pending().await
        }
    }

    #[test]
    fn a_client_released_during_a_token_fetch_releases_the_provider_and_the_fetch_on_that_thread() {
        // The fetch holds the provider (and, for a foreign one, UniFFI's foreign future): it
        // used to live on in the client task, which dropped it later on a runtime thread.
        let tokens_on = Arc::new(Mutex::new(None));
        let (tx, fetching) = mpsc::channel();
        let config = ClientConfig::new("ws://127.0.0.1:9/".to_owned()).token_provider(Arc::new(
            SlowTokens(Mutex::new(tx), Released(tokens_on.clone())),
        ));
        let client = Client::new(config).expect("a valid config");
        client.connect();
        fetching.recv_timeout(WAIT).expect("the fetch started");
        drop(client);
        assert_eq!(
            *tokens_on.lock().unwrap(),
            Some(std::thread::current().id()),
            "the provider, held by its fetch, released here and now"
        );
    }

    #[test]
    fn a_client_released_without_shutdown_releases_its_foreign_objects_on_that_thread_at_once() {
        let on = |_| Arc::new(Mutex::new(None));
        let (listener_on, doc_listener_on, tokens_on) = (on(0), on(1), on(2));
        let config = ClientConfig::new("ws://127.0.0.1:9/".to_owned())
            .wire_protocol(WireProtocol::Tether)
            .token_provider(Arc::new(Tokens(Released(tokens_on.clone()))));
        let client = Client::new(config).expect("a valid config");
        let doc = client.document("todo".to_owned()).expect("Tether mode");
        let (tx, rx) = mpsc::channel();
        let handle = client.add_listener(Arc::new(Tracked(
            Mutex::new(tx),
            Released(listener_on.clone()),
        )));
        let _doc_handle = doc.add_listener(Arc::new(TrackedDoc(Released(doc_listener_on.clone()))));
        assert!(rx.recv_timeout(WAIT).is_ok(), "the snapshot");

        // What Python's last reference, or Kotlin's close(), does.
        drop(client);
        let here = Some(std::thread::current().id());
        for (what, on) in [
            ("client listener", &listener_on),
            ("document listener", &doc_listener_on),
            ("token provider", &tokens_on),
        ] {
            assert_eq!(
                *on.lock().unwrap(),
                here,
                "{what} not released here and now"
            );
        }
        // No more events (not even the final Closed), and the listener counts as stopped.
        assert_eq!(rx.try_recv(), Err(mpsc::TryRecvError::Disconnected));
        assert!(handle.is_cancelled());
        // A listener added through a document that outlives the client is released at once.
        let late_on = on(3);
        let late = doc.add_listener(Arc::new(TrackedDoc(Released(late_on.clone()))));
        assert!(late.is_cancelled());
        assert_eq!(*late_on.lock().unwrap(), here);
    }

    #[test]
    fn local_edits_reach_document_and_client_listeners_and_shutdown_ends_their_threads() {
        let client = offline();
        let doc = client.document("todo".to_owned()).expect("Tether mode");
        let (doc_tx, doc_rx) = mpsc::channel();
        let (tx, rx) = mpsc::channel();
        let _d = doc.add_listener(Arc::new(Docs(Mutex::new(doc_tx))));
        let _c = client.add_listener(Arc::new(Events(Mutex::new(tx))));
        assert_eq!(
            doc_rx.recv_timeout(WAIT),
            Ok(DocumentEvent::Snapshot {
                values: Default::default(),
                version: None,
                pending: 0
            })
        );

        let id = doc.set("milk".to_owned(), "2".to_owned()).expect("set");
        assert_eq!(doc.get("milk".to_owned()).as_deref(), Some("2"), "at once");
        assert_eq!(doc.pending(), 1);
        assert_eq!(doc.increment("milk".to_owned(), 3), Ok(id + 1), "ids go on");
        assert_eq!(doc.snapshot_json(), r#"{"milk":5}"#);
        assert!(matches!(
            doc.insert("milk".to_owned(), "0".to_owned()),
            Err(ClientError::Rejected { ref code, .. }) if code == "conflict"
        ));
        let DocumentEvent::Changed { origin, changes } =
            doc_rx.recv_timeout(WAIT).expect("a change")
        else {
            panic!("a Changed event");
        };
        assert_eq!(origin, ChangeOrigin::LocalPending);
        assert_eq!(changes[0].value.as_deref(), Some("2"));
        let forwarded = std::iter::from_fn(|| rx.recv_timeout(WAIT).ok())
            .find(|e| matches!(e, ClientEvent::DocumentChanged { .. }));
        assert!(
            matches!(forwarded, Some(ClientEvent::DocumentChanged { ref channel, .. }) if channel == "todo"),
            "{forwarded:?}"
        );

        runtime().block_on(client.shutdown());
        // Both listener threads have ended: their senders are gone once what was queued is
        // delivered (the pending changes are dropped and rolled back on the way).
        let rest: Vec<_> = doc_rx.try_iter().collect();
        assert_eq!(doc_rx.try_recv(), Err(mpsc::TryRecvError::Disconnected));
        assert!(
            rest.iter()
                .any(|e| matches!(e, DocumentEvent::Rejected { .. })),
            "{rest:?}"
        );
        let rest: Vec<_> = rx.try_iter().collect();
        assert_eq!(rx.try_recv(), Err(mpsc::TryRecvError::Disconnected));
        assert!(matches!(
            rest.last(),
            Some(ClientEvent::StateChanged {
                current: ConnectionState::Closed { .. },
                ..
            })
        ));
        assert_eq!(
            client.document("other".to_owned()).err(),
            Some(ClientError::closed())
        );
        client.connect();
        assert!(matches!(client.state(), ConnectionState::Closed { .. }));
    }

    /// The kind, channel, generation and origin of a client event about a document.
    fn doc_event(e: &ClientEvent) -> Option<(&'static str, &str, u64, Option<ChangeOrigin>)> {
        match e {
            ClientEvent::DocumentChanged {
                channel,
                generation,
                origin,
                ..
            } => Some(("changed", channel, *generation, Some(*origin))),
            ClientEvent::ChangeRejected {
                channel,
                generation,
                ..
            } => Some(("rejected", channel, *generation, None)),
            ClientEvent::DocumentResynced {
                channel,
                generation,
                ..
            } => Some(("resynced", channel, *generation, None)),
            _ => None,
        }
    }

    #[test]
    fn the_client_listeners_document_events_name_the_opening_they_are_about() {
        // An app that follows its documents through the client listener gets the events of
        // an opening it closed after it opened the document again (the listener runs behind
        // the app): only `generation` tells them from the new opening's.
        let config = ClientConfig::new("ws://127.0.0.1:9/".to_owned())
            .wire_protocol(WireProtocol::Tether)
            .message_ttl_ms(Some(150));
        let client = Client::new(config).expect("a valid config");
        let (tx, rx) = mpsc::channel();
        let _c = client.add_listener(Arc::new(Events(Mutex::new(tx))));
        let doc = client.document("todo".to_owned()).expect("Tether mode");
        let first = doc.generation();
        doc.set("draft".to_owned(), "1".to_owned()).expect("set");
        doc.close_document();
        let again = client.document("todo".to_owned()).expect("opens again");
        let second = again.generation();
        assert!(second > first, "{second} after {first}");
        assert_eq!(doc.generation(), first, "a handle stays its opening's");
        again.set("mine".to_owned(), "2".to_owned()).expect("set");

        // Both changes expire (never connected): the closed opening's only as `Dropped`,
        // the open one's as its rejection and rollback.
        let mut seen = Vec::new();
        while !seen.iter().any(|e: &(_, String, _, _)| e.0 == "rejected") {
            let event = rx.recv_timeout(WAIT).expect("the expiry");
            if let Some((kind, channel, generation, origin)) = doc_event(&event) {
                seen.push((kind, channel.to_owned(), generation, origin));
            }
        }
        let changed = |generation, origin| ("changed", "todo".to_owned(), generation, Some(origin));
        assert_eq!(
            seen,
            [
                changed(first, ChangeOrigin::LocalPending),
                changed(second, ChangeOrigin::LocalPending),
                ("rejected", "todo".to_owned(), second, None),
            ]
        );
        let rollback = std::iter::from_fn(|| rx.recv_timeout(WAIT).ok())
            .find_map(|e| doc_event(&e).map(|(k, _, g, o)| (k, g, o)));
        assert_eq!(
            rollback,
            Some(("changed", second, Some(ChangeOrigin::RolledBack)))
        );
        runtime().block_on(client.shutdown());
    }

    /// A document listener that reports each event, and blocks in its first callback until
    /// released.
    struct GatedDocs {
        tx: Mutex<mpsc::Sender<DocumentEvent>>,
        gate: Mutex<Option<mpsc::Receiver<()>>>,
    }

    impl DocumentListener for GatedDocs {
        fn on_event(&self, event: DocumentEvent) -> Result<(), ListenerError> {
            let _ = self.tx.lock().map(|tx| tx.send(event));
            let gate = self.gate.lock().ok().and_then(|mut g| g.take());
            if let Some(gate) = gate {
                // Long: 300 changes take seconds in a debug build on a busy machine. A test
                // that fails before releasing it drops the sender, which ends the wait.
                let _ = gate.recv_timeout(Duration::from_secs(60));
            }
            Ok(())
        }
    }

    #[test]
    fn a_lagging_document_listener_never_gets_a_snapshot_of_the_document_opened_after_its_own() {
        // A listener follows one opening of a document. Behind by more than its ring holds, it
        // is told `Lagged` and given a fresh snapshot: if the document was closed and opened
        // again meanwhile, that snapshot must be of its own opening (closed: empty), not the
        // new one's, which a read by channel would give (the handle it reads through is bound
        // to its opening).
        let client = offline();
        let (tx, rx) = mpsc::channel();
        let _c = client.add_listener(Arc::new(Events(Mutex::new(tx))));
        let doc = client.document("todo".to_owned()).expect("Tether mode");
        let (doc_tx, doc_rx) = mpsc::channel();
        let (release, gate) = mpsc::channel();
        let _d = doc.add_listener(Arc::new(GatedDocs {
            tx: Mutex::new(doc_tx),
            gate: Mutex::new(Some(gate)),
        }));
        assert!(matches!(
            doc_rx.recv_timeout(WAIT),
            Ok(DocumentEvent::Snapshot { .. })
        ));
        // The listener is blocked in that callback: 300 changes overrun its ring (256).
        const CHANGES: usize = 300;
        for i in 0..CHANGES {
            doc.set(format!("k{i}"), "1".to_owned()).expect("set");
        }
        // Handed to the document's ring before the client listener gets them: wait for those.
        let mut forwarded = 0;
        while forwarded < CHANGES {
            let event = rx.recv_timeout(WAIT).expect("the changes");
            forwarded += usize::from(matches!(event, ClientEvent::DocumentChanged { .. }));
        }
        doc.close_document();
        let again = client.document("todo".to_owned()).expect("opens again");
        again.set("new".to_owned(), "2".to_owned()).expect("set");
        release.send(()).expect("the listener waits");

        // Until its thread ends with the closed opening's stream (and drops the listener).
        let rest: Vec<DocumentEvent> =
            std::iter::from_fn(|| doc_rx.recv_timeout(WAIT).ok()).collect();
        let lagged = rest
            .iter()
            .position(|e| matches!(e, DocumentEvent::Lagged { .. }))
            .unwrap_or_else(|| panic!("no Lagged: {:?}", &rest[..rest.len().min(3)]));
        assert_eq!(
            rest.get(lagged + 1),
            Some(&DocumentEvent::Snapshot {
                values: Default::default(),
                version: None,
                pending: 0
            }),
            "the snapshot after Lagged is of the closed opening, not {:?}",
            again.snapshot()
        );
        assert!(
            !rest.iter().any(|e| match e {
                DocumentEvent::Changed { changes, .. } => changes.iter().any(|c| c.key == "new"),
                DocumentEvent::Snapshot { values, .. } => values.contains_key("new"),
                _ => false,
            }),
            "the new opening's change reached the closed one's listener"
        );
        runtime().block_on(client.shutdown());
    }

    #[test]
    fn a_closed_document_ends_its_listener_refuses_changes_and_opens_again() {
        let client = offline();
        let doc = client.document("todo".to_owned()).expect("Tether mode");
        let other = client.document("todo".to_owned()).expect("a second handle");
        let (doc_tx, doc_rx) = mpsc::channel();
        let _d = doc.add_listener(Arc::new(Docs(Mutex::new(doc_tx))));
        assert!(matches!(
            doc_rx.recv_timeout(WAIT),
            Ok(DocumentEvent::Snapshot { .. })
        ));
        doc.set("milk".to_owned(), "2".to_owned()).expect("set");
        assert_eq!(doc.epoch(), None, "never synced");
        assert_eq!(doc.confirmed(), Default::default(), "nothing confirmed yet");

        other.close_document();
        // The listener's thread ends: its sender is dropped once what was queued is delivered.
        let deadline = std::time::Instant::now() + WAIT;
        while doc_rx.recv_timeout(WAIT) != Err(mpsc::RecvTimeoutError::Disconnected) {
            assert!(std::time::Instant::now() < deadline, "the listener goes on");
        }
        let closed = Err(ClientError::DocumentClosed {
            channel: "todo".to_owned(),
        });
        assert_eq!(doc.set("milk".to_owned(), "3".to_owned()), closed);
        assert_eq!(
            doc.change(vec![DocumentOp::Delete {
                key: "milk".to_owned()
            }]),
            closed
        );
        assert_eq!(
            (doc.get("milk".to_owned()), doc.version(), doc.epoch()),
            (None, None, None)
        );
        assert_eq!((doc.snapshot().len(), doc.pending()), (0, 0));
        doc.close_document(); // closing again does nothing

        let again = client.document("todo".to_owned()).expect("opens again");
        assert!(again.set("milk".to_owned(), "4".to_owned()).is_ok());
        assert_eq!(again.get("milk".to_owned()).as_deref(), Some("4"));
        // The closed opening's handles stay closed: they do not reach the new one.
        assert_eq!(doc.get("milk".to_owned()), None);
        assert_eq!(doc.set("milk".to_owned(), "5".to_owned()), closed);
        doc.close_document();
        assert_eq!(
            again.get("milk".to_owned()).as_deref(),
            Some("4"),
            "still open"
        );
        assert!(again.set("milk".to_owned(), "6".to_owned()).is_ok());
        runtime().block_on(client.shutdown());
    }
}
