//! The public [`Client`] handle and the [`Events`] stream.
//!
//! The engine lives behind a mutex shared by the handles and the client's task. A command
//! locks it for the duration of one engine call (no await, no app code while locked), then
//! wakes the task, which performs whatever the engine asked for. So `send` returns its
//! `MessageId` or typed error synchronously, costs no channel hop per message, and the
//! engine's bounded outbox stays the only queue between the app and the socket.

use crate::builder::{BuildError, ClientBuilder, NativeOptions};
use crate::driver::{self, Waiters};
use crate::transport::proxy::ProxyRule;
use crate::transport::tls::TlsRoots;
use futures_util::Stream;
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tether_core::{
    CloseError, CloseReason, Config, DropReason, Engine, Event, MessageId, Payload, RequestFailure,
    RequestId, SendError, SendOptions, State, Stats, SubscribeError, Unacked,
};
use tokio::sync::{oneshot, watch, Notify};

/// State shared by the handles, the client task and [`Events`].
pub(crate) struct Shared {
    pub(crate) inner: Mutex<Inner>,
    /// The events on their way to the app. Its own lock, so the app taking an event never
    /// waits for the task feeding the engine.
    pub(crate) events: Mutex<EventQueue>,
    pub(crate) wake: Notify,
    /// The last handle was dropped, or `shutdown` ran: the task closes the engine and ends
    /// once it is closed. A flag and a `wake` instead of a `CancellationToken`, whose tree node
    /// and long-lived `cancelled()` future cost an idle client ~0.2 KiB.
    pub(crate) cancelled: AtomicBool,
    pub(crate) origin: tokio::time::Instant,
}

/// Everything behind the lock: the engine, and who waits for what.
pub(crate) struct Inner {
    pub(crate) engine: Engine,
    pub(crate) waiters: Waiters,
    /// [`Client::shutdown`] has begun: set under the lock that closes the engine, so no
    /// `connect` can reopen it (and no `document` open a handle) while the close handshake
    /// runs and the task ends, before `waiters.task_ended` says it has.
    pub(crate) shutting_down: bool,
}

impl Inner {
    /// Shutdown has begun or the task has ended: nothing may start a connection or open a
    /// document any more.
    pub(crate) fn finished(&self) -> bool {
        self.shutting_down || self.waiters.task_ended
    }
}

impl Shared {
    pub(crate) fn now(&self) -> tether_core::Instant {
        let micros = u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX);
        tether_core::Instant::from_micros(micros)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the engine half-updated in a way that
        // matters more than stopping would: keep serving.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a panic struck while the engine's lock was held (inside an engine call).
    pub(crate) fn inner_poisoned(&self) -> bool {
        self.inner.is_poisoned()
    }

    /// The event queue. Lock order: `inner` before `events`, never the reverse.
    pub(crate) fn lock_events(&self) -> MutexGuard<'_, EventQueue> {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Tells the task to close the engine and end (see `cancelled`).
    fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.wake_for_stop();
    }

    /// Wakes the task for a shutdown or cancellation, also where it waits for the app to take
    /// events (it stops waiting for that then: see `Driver::room_for_events`).
    fn wake_for_stop(&self) {
        self.wake.notify_one();
        let room = self.lock_events().room.take();
        if let Some(task) = room {
            task.wake();
        }
    }

    /// Shutdown has begun, the task was cancelled, or the app asked to close (the engine is
    /// closing, draining, or closed already: a close while waiting or connecting needs no
    /// handshake): the task no longer waits for the app to take events, as the app must not
    /// stall its own close, whose end the task reports.
    pub(crate) fn stopping(&self) -> bool {
        if self.cancelled.load(Ordering::Acquire) {
            return true;
        }
        let inner = self.lock();
        inner.shutting_down || inner.engine.is_closing() || inner.engine.state().is_closed()
    }

    /// Runs one engine command, then wakes the task to perform its actions. Refused without
    /// reaching the engine once the task has ended: nothing would perform what it asks for.
    /// (A task that ended cleanly closed the engine, which refuses the same way; one that
    /// panicked could not, and its engine would accept messages nobody will ever write.)
    pub(crate) fn command<T: Refusal>(
        &self,
        f: impl FnOnce(&mut Engine, tether_core::Instant) -> T,
    ) -> T {
        self.with_inner(|inner, now| f(&mut inner.engine, now))
    }

    /// [`command`](Self::command) for an engine call that reads the clock itself, if at all.
    fn command_untimed<T: Refusal>(&self, f: impl FnOnce(&mut Engine) -> T) -> T {
        let result = {
            let mut inner = self.lock();
            if inner.waiters.task_ended {
                return T::task_ended();
            }
            f(&mut inner.engine)
        };
        self.wake.notify_one();
        result
    }

    /// [`command`](Self::command) with the waiters too: a wait registered under the same
    /// lock the task resolves under cannot miss its event.
    fn with_inner<T: Refusal>(&self, f: impl FnOnce(&mut Inner, tether_core::Instant) -> T) -> T {
        let now = self.now();
        let result = {
            let mut inner = self.lock();
            if inner.waiters.task_ended {
                return T::task_ended();
            }
            f(&mut inner, now)
        };
        self.wake.notify_one();
        result
    }

    /// Runs a close command, then wakes the task also where it waits for the app to take
    /// events: a closing engine does not wait for that (see `stopping`).
    fn close_command<T: Refusal>(
        &self,
        f: impl FnOnce(&mut Engine, tether_core::Instant) -> T,
    ) -> T {
        let result = self.command(f);
        self.wake_for_stop();
        result
    }
}

/// What a command answers once the client task has ended: what a closed engine answers.
pub(crate) trait Refusal {
    fn task_ended() -> Self;
}

impl Refusal for () {
    fn task_ended() {}
}

impl<T> Refusal for Result<T, SendError> {
    fn task_ended() -> Self {
        Err(SendError::Closed)
    }
}

impl<T> Refusal for Result<T, SubscribeError> {
    fn task_ended() -> Self {
        Err(SubscribeError::Closed)
    }
}

impl<T> Refusal for Result<T, tether_core::SyncError> {
    fn task_ended() -> Self {
        Err(tether_core::SyncError::Send(SendError::Closed))
    }
}

/// The task is gone (its runtime was dropped): nothing would resolve the wait.
impl<T> Refusal for Result<T, AckError> {
    fn task_ended() -> Self {
        Err(AckError::ClientGone)
    }
}

impl<T> Refusal for Result<T, RequestError> {
    fn task_ended() -> Self {
        Err(RequestError::ClientGone)
    }
}

/// Closing a client whose task has ended is a no-op, as closing a closed engine is.
impl<T: Default> Refusal for Result<T, CloseError> {
    fn task_ended() -> Self {
        Ok(T::default())
    }
}

/// Cancels the client task when the last handle is dropped.
struct HandleGuard(Arc<Shared>);

impl Drop for HandleGuard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Why an acknowledged send did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// The message was not accepted.
    #[error(transparent)]
    Send(#[from] SendError),
    /// It was accepted but dropped before the server acknowledged it.
    #[error("dropped before acknowledgement: {}", .0.name())]
    Dropped(DropReason),
    /// The client shut down.
    #[error("the client shut down")]
    ClientGone,
    /// No acknowledgement within [`AckedOptions::timeout`]. The timeout is also the message's
    /// TTL, so it is not sent (or re-sent) after this; `status` says what became of it, and
    /// `id` is the id its `Event::Acked` or `Event::Dropped` carries.
    #[error("not acknowledged in time: message {} {status}", id.get())]
    TimedOut {
        /// The message.
        id: MessageId,
        /// Dropped, or still awaiting its acknowledgement.
        status: Unacked,
    },
}

/// How an acknowledged send waits: the options of [`Client::send_acked_with`] and
/// [`Client::publish_acked_with`]. `AckedOptions::default()` waits until the message is
/// acknowledged or dropped, with the configured default TTL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AckedOptions {
    /// Stop waiting after this long, with [`AckError::TimedOut`]. The message's TTL is cut to
    /// it, so a message that could not be sent in time is dropped (reason `Expired`) rather
    /// than delivered long after the caller gave up. `None`: no limit; under a microsecond,
    /// refused ([`SendError::InvalidOptions`]).
    ///
    /// The engine's clock runs it, so it pauses with the client: while the app leaves more
    /// than `event_capacity` events unread, the client neither reads, writes nor fires timers
    /// (see [`ClientBuilder::event_capacity`](crate::ClientBuilder::event_capacity)), and the
    /// timeout ends the wait once the app reads again.
    pub timeout: Option<Duration>,
    /// Drop the message (reason `Expired`, [`AckError::Dropped`]) if it cannot be sent, or
    /// re-sent after a reconnect, within this time. `None`: the configured `message_ttl`.
    /// Either way at most `timeout`.
    pub ttl: Option<Duration>,
}

impl AckedOptions {
    /// Waits at most `timeout` for the acknowledgement.
    pub fn timeout(timeout: Duration) -> Self {
        AckedOptions {
            timeout: Some(timeout),
            ttl: None,
        }
    }

    /// Sets the TTL.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

/// Why a request got no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The request was not accepted.
    #[error(transparent)]
    Send(#[from] SendError),
    /// It was sent but failed.
    #[error("request failed: {0}")]
    Failed(RequestFailure),
    /// The client shut down.
    #[error("the client shut down")]
    ClientGone,
}

/// A request on its way, from [`Client::request`]: a future of its reply that can also give
/// the request up.
///
/// The request was accepted (or refused) when it was made, not when this is first polled.
/// Awaiting it after a [`cancel`](Self::cancel) gives
/// `Err(RequestError::Failed(RequestFailure::Cancelled))`, unless the reply or another
/// failure came first.
///
/// ```no_run
/// # async fn demo(client: tether::Client, leave: tokio::sync::oneshot::Receiver<()>) {
/// let mut reply = client.request(serde_json::json!({"search": "rust"}), None);
/// tokio::select! {
///     answer = &mut reply => println!("{answer:?}"),
///     _ = leave => {
///         // The user left the screen: a request still queued is never sent, and a reply
///         // to one already written is ignored.
///         reply.cancel();
///     }
/// }
/// # }
/// ```
pub struct PendingRequest {
    shared: Arc<Shared>,
    id: Option<RequestId>,
    wait: RequestWait,
    cancel_on_drop: bool,
}

impl std::fmt::Debug for PendingRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingRequest")
            .field("id", &self.id)
            .field("wait", &self.wait)
            .field("cancel_on_drop", &self.cancel_on_drop)
            .finish()
    }
}

/// Where a [`PendingRequest`] is.
#[derive(Debug)]
enum RequestWait {
    /// Refused when it was made; the error is handed out by the first poll.
    Refused(RequestError),
    /// Accepted; the client task answers through this.
    Waiting(oneshot::Receiver<Result<Value, RequestFailure>>),
    /// Its outcome was handed out.
    Done,
}

impl PendingRequest {
    fn new(
        shared: Arc<Shared>,
        accepted: Result<
            (RequestId, oneshot::Receiver<Result<Value, RequestFailure>>),
            RequestError,
        >,
    ) -> Self {
        let (id, wait) = match accepted {
            Ok((id, rx)) => (Some(id), RequestWait::Waiting(rx)),
            Err(e) => (None, RequestWait::Refused(e)),
        };
        PendingRequest {
            shared,
            id,
            wait,
            cancel_on_drop: false,
        }
    }

    /// The request's id, as [`Event::Replied`] and [`Event::RequestFailed`] name it; `None`
    /// if it was refused (awaiting it gives the reason).
    pub fn id(&self) -> Option<RequestId> {
        self.id
    }

    /// Gives the request up: still queued, it is never sent; written, its reply is ignored.
    /// It ends with `RequestFailure::Cancelled` (awaited here, and as an
    /// [`Event::RequestFailed`]). False, and nothing happens, if it had already ended (or
    /// was refused, or the client's task has ended).
    pub fn cancel(&self) -> bool {
        let Some(id) = self.id else { return false };
        if !matches!(self.wait, RequestWait::Waiting(_)) {
            return false;
        }
        self.shared
            .command(|engine, now| Cancelled(engine.cancel_request(now, id)))
            .0
    }

    /// Makes dropping this before its outcome came [`cancel`](Self::cancel) the request, as
    /// dropping a future cancels its work elsewhere: for a request raced in `select!` or
    /// under `timeout`, or owned by a task that may be aborted. By default a dropped
    /// `PendingRequest` abandons only the wait.
    pub fn cancel_on_drop(mut self) -> Self {
        self.cancel_on_drop = true;
        self
    }
}

/// What [`PendingRequest::cancel`] learnt; false when the client's task has ended.
struct Cancelled(bool);

impl Refusal for Cancelled {
    fn task_ended() -> Self {
        Cancelled(false)
    }
}

impl Future for PendingRequest {
    type Output = Result<Value, RequestError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let outcome = match std::mem::replace(&mut self.wait, RequestWait::Done) {
            RequestWait::Refused(e) => Err(e),
            RequestWait::Waiting(mut rx) => match Pin::new(&mut rx).poll(cx) {
                Poll::Pending => {
                    self.wait = RequestWait::Waiting(rx);
                    return Poll::Pending;
                }
                Poll::Ready(Ok(Ok(reply))) => Ok(reply),
                Poll::Ready(Ok(Err(failure))) => Err(RequestError::Failed(failure)),
                Poll::Ready(Err(_)) => Err(RequestError::ClientGone),
            },
            RequestWait::Done => panic!("a PendingRequest was polled after it completed"),
        };
        Poll::Ready(outcome)
    }
}

impl Drop for PendingRequest {
    fn drop(&mut self) {
        if self.cancel_on_drop {
            self.cancel();
        }
    }
}

/// A real-time client that survives the network. Cheap to clone; every clone drives the same
/// connection. Dropping the last clone closes the connection and stops the client's task.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use tether::{Client, Event, Protocol};
///
/// let (client, mut events) = Client::builder("ws://127.0.0.1:9000/ws")
///     .protocol(Protocol::Tether)
///     .connect()?;
/// client.subscribe("room")?;
/// client.publish("room", "hello")?;            // queued while connecting, never lost silently
/// while let Some(event) = events.recv().await {
///     match event {
///         Event::Message(m) => println!("{:?}: {:?}", m.channel, m.payload),
///         Event::StateChanged { to, .. } => println!("now {to}"),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    _guard: Arc<HandleGuard>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("state", &self.shared.lock_events().state)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts building a client for `url`: `ws://`/`wss://` for WebSocket, `http://`/
    /// `https://` for Server-Sent Events.
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url)
    }

    pub(crate) fn start(
        config: Config,
        native: NativeOptions,
        roots: TlsRoots,
        proxy: ProxyRule,
    ) -> Result<(Client, Events), BuildError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        check_runtime_features()?;
        let link_ctx = link_context(&native, &config, &roots, proxy).map_err(BuildError::Tls)?;
        let url = config.url().to_owned();
        let engine = Engine::new(config, os_entropy());
        let state = engine.state().clone();
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                engine,
                waiters: Waiters::default(),
                shutting_down: false,
            }),
            events: Mutex::new(EventQueue::new(native.event_capacity, state)),
            wake: Notify::new(),
            cancelled: AtomicBool::new(false),
            origin: tokio::time::Instant::now(),
        });
        let task = driver::Driver::new(shared.clone(), link_ctx, native.token_provider);
        // Every log line of this client's task carries its URL (without its query, which may
        // hold a credential).
        let url = crate::transport::redacted_url(&url);
        let span = tracing::info_span!("tether", %url);
        // Detached: `shutdown()` sees its end as the state watch closing (`Driver::drop`).
        drop(runtime.spawn(tracing::Instrument::instrument(task.run(), span)));
        let client = Client {
            shared: shared.clone(),
            _guard: Arc::new(HandleGuard(shared.clone())),
        };
        Ok((client, Events { shared }))
    }

    /// Starts connecting (from idle or closed), or retries at once if waiting (at the server's
    /// minimum if it set one: Retry-After, close 1013, `reconnect_after_ms`). During a close
    /// handshake, the close finishes first (a `close()` waiting for it resolves) and the client
    /// starts again right after; so too during a drained close ([`Client::close_after_drain`]),
    /// once it is drained. From idle or closed, a minimum the server set before (Retry-After,
    /// close 1013) still holds: the client waits for it (`Waiting`), and a token the server
    /// refused is fetched with `refresh`.
    /// Messages and requests given after this call are accepted (not
    /// refused as closing) and kept for the next connection (during a drain, drained with the
    /// rest). Does nothing
    /// from the moment [`Client::shutdown`] is called, or once the client task has ended
    /// (every handle dropped): the task is going away, nothing would perform the connection,
    /// and messages accepted by a reopened engine would never be written. The client goes on
    /// to `Closed`: sends are refused (`SendError::Closing` during the close handshake, then
    /// `SendError::Closed`).
    pub fn connect(&self) {
        let now = self.shared.now();
        let mut inner = self.shared.lock();
        if inner.finished() {
            return;
        }
        inner.engine.connect(now);
        drop(inner);
        self.shared.wake.notify_one();
    }

    /// Sends a message with default options (see [`Client::send_with`]).
    pub fn send(&self, payload: impl Into<Payload>) -> Result<MessageId, SendError> {
        self.send_with(payload, SendOptions::default())
    }

    /// Sends a message: queued in the bounded outbox while disconnected, written in order.
    /// Once accepted it is written (or acknowledged), or reported in an `Event::Dropped`.
    pub fn send_with(
        &self,
        payload: impl Into<Payload>,
        options: SendOptions,
    ) -> Result<MessageId, SendError> {
        let payload = payload.into();
        // The clock is read only if the message needs it (a TTL, say): a pipelined sender
        // spent ~3% of its CPU reading it.
        self.shared
            .command_untimed(|e| e.send_with_clock(|| self.shared.now(), payload, options))
    }

    /// Sends a channel-less message (Tether mode) and resolves when the server acknowledges
    /// it, with the stored offset if any. Waits as long as that takes (or until the message is
    /// dropped); see [`send_acked_with`](Self::send_acked_with) for a timeout.
    ///
    /// The message is accepted (or refused: the future's output says why) when this is
    /// called, not when the future is first polled: it takes its place in the outbox in the
    /// order of the calls, as [`send`](Self::send) does, and the future only waits. The same
    /// holds for every acknowledged send, [`request`](Self::request) and the close commands.
    ///
    /// # Waiting while events are unread
    ///
    /// The engine's clock runs the wait, so it pauses with the client: while the app leaves
    /// more than `event_capacity` events unread, the client neither reads, writes nor fires
    /// timers (see [`ClientBuilder::event_capacity`](crate::ClientBuilder::event_capacity)),
    /// unless a close or drain the app asked for is under way.
    /// Awaiting this from the task that reads [`Events`], with more than that unread, waits
    /// until events are read: the acknowledgement, and any timeout, can come only then.
    pub fn send_acked(
        &self,
        payload: impl Into<Payload>,
    ) -> impl Future<Output = Result<Option<u64>, AckError>> + Send + 'static {
        self.send_acked_with(payload, AckedOptions::default())
    }

    /// [`send_acked`](Self::send_acked) with a timeout and a TTL (see [`AckedOptions`]).
    ///
    /// When the timeout passes first, this fails with [`AckError::TimedOut`] and the message
    /// is never sent after that (its TTL is the timeout): if it was still waiting to be sent
    /// it is dropped ([`Unacked::Expired`], an `Event::Dropped` with reason `Expired`);
    /// if it was already written, it waits for the server's answer in the outbox
    /// ([`Unacked::AwaitingAck`]) and its `Event::Acked` or `Event::Dropped` says how it ended:
    /// `Acked`, the server has it; `Dropped`, its ack was never seen and the server may or may
    /// not have it (see [`Unacked::AwaitingAck`]).
    /// Dropping the future instead abandons the wait and leaves the message to its TTL.
    ///
    /// ```no_run
    /// # async fn demo(client: tether::Client) {
    /// use std::time::Duration;
    /// use tether::{AckError, AckedOptions, Unacked};
    ///
    /// match client.send_acked_with("hello", AckedOptions::timeout(Duration::from_secs(5))).await {
    ///     Ok(offset) => println!("stored at {offset:?}"),
    ///     Err(AckError::TimedOut { status: Unacked::Expired, .. }) => {
    ///         println!("not sent (or re-sent) in time: dropped, reported in Event::Dropped")
    ///     }
    ///     Err(AckError::TimedOut { id, .. }) => {
    ///         println!("written; Event::Acked or Event::Dropped will name {id:?}")
    ///     }
    ///     Err(e) => println!("not acknowledged: {e}"),
    /// }
    /// # }
    /// ```
    pub fn send_acked_with(
        &self,
        payload: impl Into<Payload>,
        options: AckedOptions,
    ) -> impl Future<Output = Result<Option<u64>, AckError>> + Send + 'static {
        let payload = payload.into();
        ack_wait(self.accept_acked(options, |e, now, send| e.send_with(now, payload, send)))
    }

    /// Publishes to `channel` (Tether mode; acknowledged by default, re-sent after a
    /// reconnect until acknowledged).
    pub fn publish(
        &self,
        channel: &str,
        payload: impl Into<Payload>,
    ) -> Result<MessageId, SendError> {
        let payload = payload.into();
        self.shared
            .command(|e, now| e.publish(now, channel, payload, SendOptions::default()))
    }

    /// Publishes and resolves when the server acknowledges, with the message's offset. Waits
    /// as long as that takes (or until the message is dropped); see
    /// [`publish_acked_with`](Self::publish_acked_with) for a timeout.
    ///
    /// # Waiting while events are unread
    ///
    /// The engine's clock runs the wait, so it pauses with the client: while the app leaves
    /// more than `event_capacity` events unread, the client neither reads, writes nor fires
    /// timers (see [`ClientBuilder::event_capacity`](crate::ClientBuilder::event_capacity)),
    /// unless a close or drain the app asked for is under way.
    /// Awaiting this from the task that reads [`Events`], with more than that unread, waits
    /// until events are read: the acknowledgement, and any timeout, can come only then.
    pub fn publish_acked(
        &self,
        channel: &str,
        payload: impl Into<Payload>,
    ) -> impl Future<Output = Result<Option<u64>, AckError>> + Send + 'static {
        self.publish_acked_with(channel, payload, AckedOptions::default())
    }

    /// Publishes with options (`ack: Some(false)` for fire-and-forget; a `ttl`; a `timeout`
    /// for the acknowledgement, reported as an `Event::AckTimedOut` when it passes).
    pub fn publish_with(
        &self,
        channel: &str,
        payload: impl Into<Payload>,
        options: SendOptions,
    ) -> Result<MessageId, SendError> {
        let payload = payload.into();
        self.shared
            .command(|e, now| e.publish(now, channel, payload, options))
    }

    /// [`publish_acked`](Self::publish_acked) with a timeout and a TTL (see [`AckedOptions`]);
    /// a timeout ends it as [`send_acked_with`](Self::send_acked_with) says.
    ///
    /// ```no_run
    /// # async fn demo(client: tether::Client) -> Result<(), tether::AckError> {
    /// use std::time::Duration;
    /// use tether::AckedOptions;
    ///
    /// let options = AckedOptions::timeout(Duration::from_secs(10));
    /// let offset = client.publish_acked_with("room", "hello", options).await?;
    /// # Ok(()) }
    /// ```
    pub fn publish_acked_with(
        &self,
        channel: &str,
        payload: impl Into<Payload>,
        options: AckedOptions,
    ) -> impl Future<Output = Result<Option<u64>, AckError>> + Send + 'static {
        let payload = payload.into();
        ack_wait(self.accept_acked(options, |e, now, send| {
            e.publish(now, channel, payload, send)
        }))
    }

    /// Accepts an acknowledged message now, and returns what its wait (`ack_wait`) waits on.
    /// The engine applies `options.timeout` (as the message's TTL cap and an ack deadline);
    /// the task resolves the wait from the `Acked`, `Dropped` or `AckTimedOut` event that
    /// comes first. Accepted at the call, not when first polled: the outbox's order is the
    /// order of the calls (as for `send`), and a wait dropped unpolled leaves its message to
    /// its TTL.
    fn accept_acked(
        &self,
        options: AckedOptions,
        f: impl FnOnce(&mut Engine, tether_core::Instant, SendOptions) -> Result<MessageId, SendError>,
    ) -> Result<AckReceiver, AckError> {
        let send = SendOptions {
            ack: Some(true),
            ttl: options.ttl,
            timeout: options.timeout,
        };
        self.shared.with_inner(|inner, now| -> Result<_, AckError> {
            let id = f(&mut inner.engine, now, send)?;
            let (tx, rx) = oneshot::channel();
            inner.waiters.acks.insert(id, tx);
            Ok(rx)
        })
    }

    /// Sends a request (Tether mode) and waits for its reply, at most `timeout` (default: the
    /// configured request timeout). The request is accepted when this is called; dropping the
    /// returned [`PendingRequest`] abandons only the wait (the reply, or the failure, still
    /// comes as an event), unless it was made [`cancel_on_drop`](PendingRequest::cancel_on_drop).
    /// [`PendingRequest::cancel`] gives the request up.
    ///
    /// # Waiting while events are unread
    ///
    /// The engine's clock runs the wait, so it pauses with the client: while the app leaves
    /// more than `event_capacity` events unread, the client neither reads, writes nor fires
    /// timers (see [`ClientBuilder::event_capacity`](crate::ClientBuilder::event_capacity)),
    /// unless a close or drain the app asked for is under way.
    /// Awaiting this from the task that reads [`Events`], with more than that unread, waits
    /// until events are read: the reply, and the timeout, can come only then.
    pub fn request(
        &self,
        payload: impl Into<Payload>,
        timeout: Option<Duration>,
    ) -> PendingRequest {
        let payload = payload.into();
        let accepted = self
            .shared
            .with_inner(|inner, now| -> Result<_, RequestError> {
                let id = inner.engine.request(now, payload, timeout)?;
                let (tx, rx) = oneshot::channel();
                inner.waiters.requests.insert(id, tx);
                Ok((id, rx))
            });
        PendingRequest::new(self.shared.clone(), accepted)
    }

    /// The shared document on `channel` (Tether mode): edits show at once and converge to the
    /// server's order for every client, through drops and reconnects. See [`Document`].
    /// Refused with `SyncError::Send(SendError::Closed)` from the moment [`Client::shutdown`]
    /// is called, or once the client task has ended, like a send.
    ///
    /// [`Document`]: crate::Document
    pub fn document(&self, channel: &str) -> Result<crate::Document, tether_core::SyncError> {
        crate::document::Document::open(self.shared.clone(), channel)
    }

    /// Subscribes to `channel` (Tether mode); renewed with resume on every reconnect.
    pub fn subscribe(&self, channel: &str) -> Result<(), SubscribeError> {
        self.shared.command(|e, now| e.subscribe(now, channel))
    }

    /// Unsubscribes from `channel`.
    pub fn unsubscribe(&self, channel: &str) -> Result<(), SubscribeError> {
        self.shared.command(|e, now| e.unsubscribe(now, channel))
    }

    /// The current members of a subscribed channel (`None` if not subscribed). Refused with
    /// [`SubscribeError::NeedsTetherProtocol`] in raw mode, as [`subscribe`](Self::subscribe)
    /// is: a raw client has no channels, and an app waiting for members there would wait for
    /// ever.
    pub fn presence(&self, channel: &str) -> Result<Option<Vec<String>>, SubscribeError> {
        let inner = self.shared.lock();
        inner.engine.check_presence()?;
        Ok(inner.engine.presence(channel).map(|m| m.to_vec()))
    }

    /// Tells the client the network went online or offline (from the OS's reachability).
    /// While waiting, an online report reconnects at once (a server's minimum delay still
    /// holds); while open, an online report, or the first offline one, probes a WebSocket
    /// with a ping that has a short deadline, and an online report restarts an event stream
    /// that has a position from that position
    /// ([`DisconnectCause::StreamRestarted`](tether_core::DisconnectCause::StreamRestarted),
    /// unless [`ClientBuilder::restart_streams`](crate::ClientBuilder::restart_streams) is
    /// off): a stream cannot be probed, and its socket may have died with the old network.
    pub fn network_changed(&self, online: bool) {
        self.shared.command(|e, now| e.network_changed(now, online));
    }

    /// Tells the client the app moved to the foreground (`true`) or background. Back in the
    /// foreground, it acts as an online report (see [`Client::network_changed`]), except that
    /// an event stream is restarted only if it was open for at least the heartbeat interval
    /// while the app was away (25 s by default: long enough for a suspended app's socket to
    /// have died), and not while the app has reported the network offline.
    pub fn set_foreground(&self, foreground: bool) {
        self.shared
            .command(|e, now| e.set_foreground(now, foreground));
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.shared.lock_events().state.clone()
    }

    /// A receiver that sees every state change (`watch` semantics: the latest value).
    ///
    /// It starts at the current state, marked as seen: `changed()` waits for the next
    /// transition. To wait for a state, whatever it is now, use `wait_for`:
    ///
    /// ```no_run
    /// # async fn f(client: tether::Client) {
    /// let mut state = client.watch_state();
    /// state.wait_for(|s| s.is_open()).await.ok();
    /// # }
    /// ```
    pub fn watch_state(&self) -> watch::Receiver<State> {
        let mut queue = self.shared.lock_events();
        if let Some(tx) = &queue.state_watch {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(queue.state.clone());
        // Once the task has ended nothing changes any more: the receiver sees it closed.
        if !queue.sender_gone {
            queue.state_watch = Some(tx);
        }
        rx
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.lock().engine.stats().clone()
    }

    /// An event stream's position: the last event id it sent, sent back on every reconnect
    /// (`None` on a WebSocket). It may be ahead of the messages still unread in [`Events`]:
    /// to save a position to resume from, save the `last_event_id` of the last message handled.
    pub fn last_event_id(&self) -> Option<String> {
        self.shared.lock().engine.last_event_id().map(str::to_owned)
    }

    /// The largest message, in bytes, this client sends or accepts
    /// ([`ClientBuilder::max_message_bytes`](crate::ClientBuilder::max_message_bytes)),
    /// measured encoded (with the Tether protocol, envelope included): larger sends are
    /// refused with [`SendError::TooLarge`], its `limit`
    /// [`SizeLimit::MaxMessageBytes`](crate::SizeLimit::MaxMessageBytes) (or
    /// [`SizeLimit::OutboxMaxBytes`](crate::SizeLimit::OutboxMaxBytes) when
    /// `outbox_max_bytes` is the smaller).
    pub fn max_message_bytes(&self) -> usize {
        self.shared.lock().engine.config().max_message_bytes()
    }

    /// Messages waiting in the outbox (queued or awaiting acknowledgement).
    pub fn outbox_len(&self) -> usize {
        self.shared.lock().engine.outbox_len()
    }

    /// Closes with code 1000 and waits until closed. Pending messages are reported dropped
    /// and pending requests failed: at once, but for acknowledged messages and requests
    /// already written, which an ack or reply received during the close handshake still
    /// settles (the rest are dropped or failed when it ends; see
    /// docs/protocol.md, "Acknowledgements"). The close begins at the call, not when the future is first polled (see
    /// [`shutdown`](Self::shutdown)); the future only waits, and owns what it needs.
    pub fn close(&self) -> impl Future<Output = CloseReason> + Send + 'static {
        let closed = self.closed();
        let already = self.close_noting(|e, now| e.close(now, 1000, ""));
        // Code 1000 is always valid: never refused.
        close_wait(already.unwrap_or(None), closed)
    }

    /// Runs a close command, answering the close the engine had reached already, if any (the
    /// command then does nothing). A close command's wait is built before this: it counts the
    /// closes from before this one (see `closed`); and on an engine closed already it
    /// resolves with that close at once (`close_wait`): counting from now, a `connect()`
    /// before the future's first poll would leave it waiting for a close nobody asks for.
    fn close_noting(
        &self,
        command: impl FnOnce(&mut Engine, tether_core::Instant) -> Result<(), CloseError>,
    ) -> Result<Option<CloseReason>, CloseError> {
        self.shared.close_command(|e, now| {
            let already = match e.state() {
                State::Closed { reason } => Some(reason.clone()),
                _ => None,
            };
            command(e, now).map(|()| already)
        })
    }

    /// Closes with `code` (1000 or 3000–4999) and `reason`, and waits until closed.
    /// Begins at the call, like [`close`](Self::close).
    pub fn close_with(
        &self,
        code: u16,
        reason: &str,
    ) -> impl Future<Output = Result<CloseReason, CloseError>> + Send + 'static {
        // Checked first: refused the same way whether or not the client task still runs.
        let closed = self.closed();
        let begun = Engine::check_close_code(code)
            .and_then(|()| self.close_noting(|e, now| e.close(now, code, reason)));
        async move { Ok(close_wait(begun?, closed).await) }
    }

    /// Stops taking new messages, delivers (and gets acknowledged) everything pending —
    /// reconnecting if needed, at once if the client was waiting to (or at the server's
    /// minimum, if it set one) — then closes; at `timeout` at the latest, reporting the rest as
    /// dropped (what was written and awaits its ack, during the close handshake that follows,
    /// as after [`close`](Self::close)). Waits until closed. A [`Client::connect`] meanwhile takes messages again (they
    /// are drained with the rest) and starts the client again once it is closed. The drain
    /// begins at the call, like [`close`](Self::close).
    pub fn close_after_drain(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = CloseReason> + Send + 'static {
        let closed = self.closed();
        let already = self.close_noting(|e, now| {
            e.close_after_drain(now, timeout);
            Ok(())
        });
        close_wait(already.unwrap_or(None), closed)
    }

    /// Closes (code 1000, pending messages reported dropped) and stops the client's task,
    /// resolving once it has ended: for deterministic teardown (an FFI host finalising, a
    /// test, a process exit). Every clone of this client is then inert: from the moment this
    /// is called (not first polled), `connect` does nothing and `document` is refused. The
    /// returned future owns what it needs, so it can be spawned.
    ///
    /// The close and the end of `connect` take effect at the call; only the waiting and the
    /// stopping of the task are in the future. Dropped without being polled, it leaves the
    /// client closed and inert, but the task is not cancelled and [`Events`] does not end
    /// until the last `Client` handle is dropped; a stored future that is never awaited holds
    /// a clone of this client, so it keeps the task alive for as long as it is kept.
    ///
    /// Calling it again, on this handle or a clone, is safe: the close is not repeated, and
    /// every returned future resolves once the task has ended, whether or not the others are
    /// still polled.
    pub fn shutdown(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        {
            let now = self.shared.now();
            let mut inner = self.shared.lock();
            // Under the lock that closes the engine: no `connect` can reopen it after this.
            inner.shutting_down = true;
            let _ = inner.engine.close(now, 1000, "shutdown");
        }
        self.shared.wake_for_stop();
        let client = self.clone();
        async move {
            let _ = client.closed().await;
            client._guard.0.cancel();
            // The task's end drops the state watch's sender (`Driver::drop`), which every
            // shutdown future sees, whichever others are polled or dropped.
            let mut state = client.watch_state();
            while state.changed().await.is_ok() {}
        }
    }

    /// Waits until the client reaches `Closed` (by the app, or because it gave up). If the
    /// client's task ended without the client reaching `Closed` (it panicked), the engine's
    /// close reason if it has one, else [`CloseReason::stopped_running`] (1001, going away),
    /// what the engine reports when its driver stops running it.
    ///
    /// The wait starts at the call: a close that happens before the future is first polled
    /// (even one that `connect()` already followed) resolves it. The future owns what it
    /// needs, without keeping the client alive, so it can be spawned.
    ///
    /// The close commands take this wait before they reach the engine: on a multi-thread
    /// runtime the task can report their close before the command returns, and a count taken
    /// after it would not see it (a `connect()` before the future's first poll then left it
    /// waiting for the next close).
    pub fn closed(&self) -> impl Future<Output = CloseReason> + Send + 'static {
        let mut rx = self.watch_state();
        let closes_before = self.shared.lock_events().closes;
        let shared = self.shared.clone();
        async move {
            loop {
                if let State::Closed { reason } = &*rx.borrow_and_update() {
                    return reason.clone();
                }
                // Closed and already started again (`connect()` during the close handshake).
                if let Some(reason) = shared.lock_events().closed_since(closes_before) {
                    return reason;
                }
                if rx.changed().await.is_err() {
                    return match shared.lock().engine.state() {
                        State::Closed { reason } => reason.clone(),
                        _ => CloseReason::stopped_running(),
                    };
                }
            }
        }
    }
}

/// The wait of a close command: the close the engine had reached already when the command
/// ran, if any, else the next one.
async fn close_wait(
    already: Option<CloseReason>,
    closed: impl Future<Output = CloseReason>,
) -> CloseReason {
    match already {
        Some(reason) => reason,
        None => closed.await,
    }
}

/// What an accepted acknowledged message waits on.
type AckReceiver = oneshot::Receiver<Result<Option<u64>, AckError>>;

/// The wait of an acknowledged send: a future of its own type, holding no borrow of what the
/// message was built from (it was accepted already).
async fn ack_wait(accepted: Result<AckReceiver, AckError>) -> Result<Option<u64>, AckError> {
    accepted?.await.map_err(|_| AckError::ClientGone)?
}

/// Why [`Events::try_recv`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// No event is waiting now; the client is still running.
    #[error("no event is waiting")]
    Empty,
    /// The client has shut down and every event was taken: none will come.
    #[error("the client has shut down")]
    Shutdown,
}

/// The client's events, in order. Ends when the client shuts down.
///
/// A slow consumer is not given an ever-growing queue: once `event_capacity` events are
/// waiting, the client stops reading its socket until there is room (TCP backpressure).
pub struct Events {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("waiting", &self.shared.lock_events().events.len())
            .finish_non_exhaustive()
    }
}

impl Events {
    /// The next event, or `None` once the client has shut down.
    pub async fn recv(&mut self) -> Option<Event> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next event if one is ready now, without waiting.
    ///
    /// [`TryRecvError::Empty`] means nothing is waiting yet (the client is alive: try later or
    /// [`recv`](Self::recv)); [`TryRecvError::Shutdown`] means the stream has ended, as `recv`
    /// returning `None` does: every event was taken and the client has shut down.
    pub fn try_recv(&mut self) -> Result<Event, TryRecvError> {
        let mut queue = self.shared.lock_events();
        let Some(event) = queue.events.pop_front() else {
            return Err(if queue.sender_gone {
                TryRecvError::Shutdown
            } else {
                TryRecvError::Empty
            });
        };
        let room = queue.room_made();
        drop(queue);
        if let Some(task) = room {
            task.wake();
        }
        Ok(event)
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let mut queue = self.shared.lock_events();
        if let Some(event) = queue.events.pop_front() {
            let room = queue.room_made();
            drop(queue);
            if let Some(task) = room {
                task.wake();
            }
            return Poll::Ready(Some(event));
        }
        if queue.sender_gone {
            return Poll::Ready(None);
        }
        match &mut queue.receiver {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.poll_recv(cx)
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let mut queue = self.shared.lock_events();
        queue.receiver_gone = true;
        let waiting = std::mem::take(&mut queue.events);
        let room = queue.room.take();
        drop(queue);
        drop(waiting);
        if let Some(task) = room {
            task.wake();
        }
    }
}

/// The bounded queue between the client task and [`Events`]: the task appends everything
/// one engine drain produced under one lock and wakes the app once; the app takes events
/// one by one. Replaces a tokio mpsc channel, whose per-event semaphore, block and waker
/// traffic cost more than the engine call that produced the event, and whose first block
/// (32 events) was most of an idle client's memory.
pub(crate) struct EventQueue {
    pub(crate) events: std::collections::VecDeque<Event>,
    capacity: usize,
    /// The state as of the last event handed over (what `Client::state` says).
    pub(crate) state: State,
    /// Fed with every state change once someone asked for it (`watch_state`, `closed`); not
    /// created before, as a watch channel is ~0.4 KiB per client. Dropped when the task ends.
    pub(crate) state_watch: Option<watch::Sender<State>>,
    /// The app waits for an event.
    pub(crate) receiver: Option<Waker>,
    /// The client task waits for the queue to fall to `capacity`.
    pub(crate) room: Option<Waker>,
    /// `Events` was dropped: nobody listens, events are discarded.
    pub(crate) receiver_gone: bool,
    /// The client task ended: `Events` ends once the queue is empty.
    pub(crate) sender_gone: bool,
    /// How many times the state went to `Closed`, and the last close's reason: a close the
    /// app followed with `connect()` (the engine starts again as soon as the handshake ends)
    /// passes `Closed` within one handover, which a watcher of the latest state never sees.
    pub(crate) closes: u32,
    pub(crate) last_close: Option<Box<CloseReason>>,
}

impl EventQueue {
    fn new(capacity: usize, state: State) -> Self {
        EventQueue {
            events: std::collections::VecDeque::new(),
            capacity,
            state,
            state_watch: None,
            receiver: None,
            room: None,
            receiver_gone: false,
            sender_gone: false,
            closes: 0,
            last_close: None,
        }
    }

    /// The reason of the last close, if the state went to `Closed` since `closes` were
    /// counted.
    fn closed_since(&self, closes: u32) -> Option<CloseReason> {
        if self.closes == closes {
            return None;
        }
        self.last_close.as_deref().cloned()
    }

    /// The app's `event_capacity`.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether the task may go on: the queue holds at most `capacity` events.
    pub(crate) fn has_room(&self) -> bool {
        self.events.len() <= self.capacity
    }

    /// The waiting task, if taking an event made room for it.
    fn room_made(&mut self) -> Option<Waker> {
        if self.room.is_some() && self.has_room() {
            self.room.take()
        } else {
            None
        }
    }
}

/// The transports' context. A rustls config with the web PKI roots and a reqwest client cost
/// about 45 KiB of resident memory per client (tether-bench's idle-memory figure) and are
/// identical for every client that trusts no extra CA, so those clients share one pair, built
/// by the first of them. (They then also share reqwest's idle-connection pool and rustls's
/// session-resumption cache, which only saves handshakes.)
///
/// The reqwest client holds the proxy rule and the connect timeout, so the pair is shared
/// only with clients whose rule is the same as its first client's (as it is for every client
/// reading the same environment): a client with a proxy of its own, or none, builds its own
/// pair, and never sends its event stream through another client's proxy. A client with the
/// same rule but another connect timeout shares the TLS part and builds its own HTTP client.
fn link_context(
    native: &NativeOptions,
    config: &Config,
    roots: &TlsRoots,
    proxy: ProxyRule,
) -> Result<crate::transport::LinkContext, String> {
    use crate::transport::{ws::WsOptions, LinkContext};
    static DEFAULT_ROOTS: Mutex<Option<(LinkContext, Duration)>> = Mutex::new(None);
    let proxy = Arc::new(proxy);
    if !native.ca_files.is_empty() || !native.ca_pems.is_empty() {
        return LinkContext::new(native, config, roots, &proxy);
    }
    let mut shared = DEFAULT_ROOTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (ctx, http) = match shared.as_ref() {
        Some((ctx, timeout)) if *ctx.ws.proxy == *proxy => {
            let http = if *timeout == config.connect_timeout() {
                ctx.http.clone()
            } else {
                roots.http_client(&ctx.ws.proxy, config.connect_timeout())?
            };
            (ctx, http)
        }
        Some(_) => return LinkContext::new(native, config, roots, &proxy),
        None => {
            let ctx = LinkContext::new(native, config, roots, &proxy)?;
            *shared = Some((ctx.clone(), config.connect_timeout()));
            return Ok(ctx);
        }
    };
    // The same per-client settings LinkContext::new takes, over the shared TLS, HTTP and
    // proxy parts.
    Ok(LinkContext {
        ws: WsOptions {
            tls: ctx.ws.tls.clone(),
            proxy: ctx.ws.proxy.clone(),
            read_buffer_size: native.read_buffer_size,
            write_buffer_size: native.write_buffer_size,
            max_message_bytes: config.max_message_bytes(),
        },
        http,
    })
}

/// Refuses a runtime without the timers or the I/O driver the client's task needs: its first
/// timer or socket would panic the task, and the client would be closed (1001) right after
/// `build` said it was fine. tokio has no query for them, so each is tried the way the task
/// uses it, and the panic that says it is missing is caught (its message is still printed,
/// by the panic hook: once, for a runtime that is wrong).
fn check_runtime_features() -> Result<(), BuildError> {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    if catch_unwind(|| drop(tokio::time::sleep(Duration::ZERO))).is_err() {
        return Err(BuildError::RuntimeFeatures("timers"));
    }
    // A socket only this probe uses (no traffic); one the OS will not give says nothing about
    // the runtime, and is left for the connection attempts to report.
    let Ok(socket) = std::net::UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0)) else {
        return Ok(());
    };
    if socket.set_nonblocking(true).is_err() {
        return Ok(());
    }
    match catch_unwind(AssertUnwindSafe(|| tokio::net::UdpSocket::from_std(socket))) {
        Ok(_) => Ok(()),
        Err(_) => Err(BuildError::RuntimeFeatures("I/O")),
    }
}

/// 64 bits of OS randomness for the engine's seed, without a dependency: std's `RandomState`
/// is keyed from the OS's random source.
fn os_entropy() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x7e7e_7e7e);
    h.finish()
}

/// Waiter maps, re-exported for the driver.
pub(crate) type AckWaiters = HashMap<MessageId, oneshot::Sender<Result<Option<u64>, AckError>>>;
