//! [`Client`]: the connection, as an object the app holds.
//!
//! Synchronous methods (`connect`, `send`, `publish`, `subscribe`, `state`, …) take the
//! client's lock for one engine call and return; they are safe on a UI thread. Async methods
//! (`sendAcked`, `publishAcked`, `request`, `disconnect…`) run on the library's runtime and are
//! cancellable: cancelling the coroutine or Swift task abandons the wait (an acked message
//! stays in the outbox; its `Acked` or `Dropped` event will still come).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::config::ClientConfig;
use crate::dispatch::{pump, Hub};
use crate::error::ClientError;
use crate::event::Payload;
use crate::listener::{ClientListener, ListenerHandle};
use crate::runtime::{run, runtime};
use crate::state::{CloseReason, ConnectionState, EngineClock};
use crate::stats::ClientStats;

/// A real-time connection that survives the network. Created `Idle`; call `connect()`.
/// Releasing it (Kotlin `close()`/`use {}`, or the last Swift reference) stops the client and,
/// once they have drained, its listeners.
#[derive(Debug, uniffi::Object)]
pub struct Client {
    inner: tether::Client,
    hub: Arc<Hub>,
    clock: EngineClock,
}

#[uniffi::export]
impl Client {
    /// Validates `config` and starts the client in `Idle`.
    #[uniffi::constructor]
    pub fn new(config: Arc<ClientConfig>) -> Result<Arc<Self>, ClientError> {
        let runtime = runtime();
        let _entered = runtime.enter();
        let clock = EngineClock::now();
        let (inner, events) = config.to_builder().build()?;
        let hub = Hub::new(clock.state(inner.state()), config.listener_queue());
        runtime.spawn(pump(events, hub.clone(), clock));
        Ok(Arc::new(Client { inner, hub, clock }))
    }

    /// Starts connecting (from `Idle` or `Closed`), or retries at once while `Waiting`.
    pub fn connect(&self) {
        self.inner.connect();
    }

    /// Queues a message for the server and returns its id. Raw mode: a frame. Tether mode: a
    /// channel-less publish. Queued while disconnected; delivered, or reported in `Dropped`.
    pub fn send(&self, payload: Payload) -> Result<u64, ClientError> {
        let id = self.inner.send(tether::Payload::try_from(payload)?)?;
        Ok(id.get())
    }

    /// Publishes to `channel` (Tether mode; acknowledged and re-sent after a reconnect until
    /// the server acks it). Returns the id that `Acked`/`Dropped` events name.
    pub fn publish(&self, channel: String, payload: Payload) -> Result<u64, ClientError> {
        let id = self
            .inner
            .publish(&channel, tether::Payload::try_from(payload)?)?;
        Ok(id.get())
    }

    /// Sends a channel-less message (Tether mode) and waits for the server's ack, at most
    /// `timeout_ms` (`null`: until acked or dropped). Returns the stored offset, if any.
    pub async fn send_acked(
        &self,
        payload: Payload,
        timeout_ms: Option<u64>,
    ) -> Result<Option<u64>, ClientError> {
        let payload = tether::Payload::try_from(payload)?;
        let client = self.inner.clone();
        within(timeout_ms, async move { client.send_acked(payload).await }).await
    }

    /// Publishes to `channel` and waits for the server's ack, at most `timeout_ms` (`null`:
    /// until acked or dropped). Returns the message's offset in the channel.
    pub async fn publish_acked(
        &self,
        channel: String,
        payload: Payload,
        timeout_ms: Option<u64>,
    ) -> Result<Option<u64>, ClientError> {
        let payload = tether::Payload::try_from(payload)?;
        let client = self.inner.clone();
        within(timeout_ms, async move {
            client.publish_acked(&channel, payload).await
        })
        .await
    }

    /// Sends a request (Tether mode) and returns the reply's JSON text. Fails with
    /// `TimedOut` after `timeout_ms` (`null`: the configured request timeout).
    pub async fn request(
        &self,
        payload: Payload,
        timeout_ms: Option<u64>,
    ) -> Result<String, ClientError> {
        let payload = tether::Payload::try_from(payload)?;
        let client = self.inner.clone();
        let timeout = timeout_ms.map(Duration::from_millis);
        let reply = run(async move { client.request(payload, timeout).await })
            .await
            .ok_or(ClientError::Closed)??;
        Ok(reply.to_string())
    }

    /// Subscribes to `channel` (Tether mode); renewed with resume after every reconnect.
    pub fn subscribe(&self, channel: String) -> Result<(), ClientError> {
        Ok(self.inner.subscribe(&channel)?)
    }

    /// Unsubscribes from `channel`.
    pub fn unsubscribe(&self, channel: String) -> Result<(), ClientError> {
        Ok(self.inner.unsubscribe(&channel)?)
    }

    /// The members present on a subscribed channel, or `null` if not subscribed.
    pub fn presence(&self, channel: String) -> Option<Vec<String>> {
        self.inner.presence(&channel)
    }

    /// Closes the connection with code 1000 and waits until closed; pending messages are
    /// reported dropped. `connect()` starts again. (Named `disconnect` because Kotlin's
    /// `close()` is `AutoCloseable.close`, which releases the whole client.)
    pub async fn disconnect(&self) -> CloseReason {
        let client = self.inner.clone();
        run(async move { client.close().await })
            .await
            .map_or(CloseReason::App { code: 1000 }, Into::into)
    }

    /// Closes with `code` (1000 or 3000–4999) and `reason`, and waits until closed.
    pub async fn disconnect_with(
        &self,
        code: u16,
        reason: String,
    ) -> Result<CloseReason, ClientError> {
        let client = self.inner.clone();
        let closed = run(async move { client.close_with(code, &reason).await })
            .await
            .ok_or(ClientError::Closed)??;
        Ok(closed.into())
    }

    /// Stops taking messages, delivers (and gets acked) everything pending, reconnecting if
    /// needed, then closes; after `timeout_ms` at the latest, reporting the rest dropped.
    pub async fn disconnect_after_drain(&self, timeout_ms: u64) -> CloseReason {
        let client = self.inner.clone();
        let timeout = Duration::from_millis(timeout_ms);
        run(async move { client.close_after_drain(timeout).await })
            .await
            .map_or(CloseReason::App { code: 1000 }, Into::into)
    }

    /// Tell the client when the OS reports the network online or offline (Android
    /// `ConnectivityManager.NetworkCallback`, iOS `NWPathMonitor`): online skips the backoff
    /// wait, offline probes an open connection.
    pub fn network_changed(&self, online: bool) {
        self.inner.network_changed(online);
    }

    /// Tell the client when the app enters the foreground (`true`) or background (Android
    /// `ProcessLifecycleOwner`, iOS `scenePhase`/`UIApplication` notifications).
    pub fn set_foreground(&self, foreground: bool) {
        self.inner.set_foreground(foreground);
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        self.clock.state(self.inner.state())
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
    /// (`StateChanged` with `previous = null`), then every event, on a thread of its own.
    /// Keep the returned handle: dropping or cancelling it stops the listener.
    pub fn add_listener(&self, listener: Arc<dyn ClientListener>) -> Arc<ListenerHandle> {
        Arc::new(ListenerHandle::new(self.hub.attach(listener)))
    }
}

/// Runs an ack wait on the runtime, bounded by `timeout_ms` when given.
async fn within<F>(timeout_ms: Option<u64>, wait: F) -> Result<Option<u64>, ClientError>
where
    F: std::future::Future<Output = Result<Option<u64>, tether::AckError>> + Send + 'static,
{
    let bounded = async move {
        match timeout_ms {
            Some(ms) => tokio::time::timeout(Duration::from_millis(ms), wait)
                .await
                .map_err(|_| ClientError::TimedOut)?
                .map_err(ClientError::from),
            None => wait.await.map_err(ClientError::from),
        }
    };
    run(bounded).await.ok_or(ClientError::Closed)?
}
