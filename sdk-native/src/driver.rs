//! The client task: the tokio loop around the engine. It owns the transport, performs the
//! engine's actions, feeds it inputs stamped with the current time, wakes it at the deadline
//! it names, and hands its events to the app. It decides nothing.

use crate::client::{AckError, AckWaiters, Inner, Shared};
use crate::document::DocumentEvent;
use crate::token::{BoxTokenProvider, TokenFuture};
use crate::transport::{Link, LinkContext, LinkInput};
use futures_util::FutureExt;
use serde_json::Value;
use std::collections::HashMap;
use std::future::poll_fn;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use tether_core::{
    Action, CloseReason, Engine, Event, Instant, RequestFailure, RequestId, State, TransportId,
};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

/// Futures waiting for an ack or a reply; resolved under the engine lock, as the events are
/// drained, so a waiter can never miss its event.
#[derive(Default)]
pub(crate) struct Waiters {
    pub(crate) acks: AckWaiters,
    pub(crate) requests: HashMap<RequestId, oneshot::Sender<Result<Value, RequestFailure>>>,
    /// Change streams of open documents, by channel, with the
    /// [`generation`](tether_core::sync::Document::generation) of the document they follow:
    /// a document closed and opened again is a new one, and the engine's events still queued
    /// for the closed one (which name its generation) must not reach the new one's streams.
    pub(crate) documents: HashMap<String, (u64, tokio::sync::broadcast::Sender<DocumentEvent>)>,
    /// The client task has ended: no stream created from now on would ever get an event.
    pub(crate) task_ended: bool,
}

/// Inputs read from the link in one go, fed to the engine under one lock. The batch is
/// allocated per batch (an idle client holds none), so it is kept under glibc's large-bin
/// threshold (1,008 bytes): an allocation above it first consolidates the allocator's fast
/// bins, which every freed message fills, and that cost more per batch than the batch saved
/// (64 inputs, 2.5 KiB: 2.6% of the pipelined client's CPU).
const INPUT_BATCH: usize = 24;

// 24 inputs of 40 bytes: 960 bytes.
const _: () = assert!(INPUT_BATCH * std::mem::size_of::<LinkInput>() <= 1000);

pub(crate) struct Driver {
    shared: Arc<Shared>,
    ctx: LinkContext,
    token_provider: Option<BoxTokenProvider>,
}

impl Driver {
    pub(crate) fn new(
        shared: Arc<Shared>,
        ctx: LinkContext,
        token_provider: Option<BoxTokenProvider>,
    ) -> Self {
        Driver {
            shared,
            ctx,
            token_provider,
        }
    }

    pub(crate) async fn run(mut self) {
        let mut link: Option<Link> = None;
        let mut token: Option<(TransportId, TokenFuture)> = None;
        let mut shutting_down = false;
        let sleep = tokio::time::sleep(std::time::Duration::from_secs(86_400));
        tokio::pin!(sleep);
        let mut armed: Option<Option<Instant>> = None;
        // A long-lived wake-up future: created per loop turn, it would register with (and on
        // drop unregister from) the Notify's waiter list every time.
        let shared = self.shared.clone();
        let notified = shared.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        loop {
            // Cancellation (last handle dropped, or shutdown) comes with a wake-up; checked
            // first on every turn, as the first branch of a biased select would be.
            if !shutting_down && self.shared.cancelled.load(Ordering::Acquire) {
                shutting_down = true;
                let now = self.shared.now();
                let _ = self.shared.lock().engine.close(now, 1000, "client dropped");
            }
            let deadline = self.pump(&mut link, &mut token);
            // Nobody listening is no reason to stop: a client dropped after its `Events` still
            // runs its close handshake, and ends below once the engine has closed.
            self.room_for_events().await;
            if shutting_down && self.shared.lock_events().state.is_closed() {
                return;
            }
            // Re-arming the timer reads the clock and touches the timer wheel: only when
            // the deadline moved.
            if armed != Some(deadline) {
                armed = Some(deadline);
                // A deadline too far to represent (a huge TTL or timeout: the engine's clock
                // saturates, some platforms' clocks overflow sooner) is treated as none.
                let wake_at = deadline
                    .and_then(|at| {
                        let offset = at.saturating_duration_since(Instant::ZERO);
                        self.shared.origin.checked_add(offset)
                    })
                    .unwrap_or_else(|| {
                        tokio::time::Instant::now() + std::time::Duration::from_secs(86_400)
                    });
                sleep.as_mut().reset(wake_at);
            }

            tokio::select! {
                biased;
                // First: while a token is awaited the link is the previous connection's,
                // kept only for its close handshake, and one that always has input (a
                // server still sending) would starve the new attempt's token until its
                // connect timeout. A token is ready at most once per attempt.
                result = poll_token(&mut token) => {
                    let now = self.shared.now();
                    let mut inner = self.shared.lock();
                    match result {
                        (request, Ok(t)) => inner.engine.token_ready(now, request, t),
                        (request, Err(e)) => inner.engine.token_failed(now, request, &e),
                    }
                }
                inputs = poll_fn(|cx| poll_link(&mut link, cx)) => {
                    let now = self.shared.now();
                    let mut inner = self.shared.lock();
                    let id = link.as_ref().map(Link::id);
                    for input in inputs {
                        if let Some(id) = id {
                            feed(&mut inner.engine, now, id, input);
                        }
                    }
                    // A link that always has input (a server sending faster than this client
                    // reads) would keep the biased select from ever reaching the timer: a
                    // deadline that has passed is handled here too (a spurious call is a no-op).
                    if deadline.is_some_and(|at| at <= now) {
                        handle_timeout(&mut inner.engine, &mut link, now);
                    }
                }
                _ = &mut notified => {
                    notified.set(shared.wake.notified());
                    notified.as_mut().enable();
                    // The same for an app that calls the client faster than this loop turns
                    // (each call wakes it): a passed deadline is handled here too, or a
                    // reconnect retry, a heartbeat or a timeout would wait for the calls to
                    // pause. (The clock is read only when there is a deadline.)
                    if let Some(at) = deadline {
                        let now = self.shared.now();
                        if at <= now {
                            handle_timeout(&mut self.shared.lock().engine, &mut link, now);
                        }
                    }
                }
                _ = &mut sleep => {
                    // Elapsed: it must be re-armed even if the deadline is unchanged.
                    armed = None;
                    let now = self.shared.now();
                    let mut inner = self.shared.lock();
                    handle_timeout(&mut inner.engine, &mut link, now);
                }
            }
        }
    }

    /// Drains the engine (the drain rule): performs its actions and moves its events to the
    /// app's queue, under one lock. Performing an action only queues a frame on the link or
    /// creates a connect future, so no I/O runs under the lock. App code runs only after the
    /// lock is released: the log (the app's `tracing` subscriber), the app's wake-up and the
    /// token provider. Returns the next deadline.
    fn pump(
        &mut self,
        link: &mut Option<Link>,
        token: &mut Option<(TransportId, TokenFuture)>,
    ) -> Option<Instant> {
        let receiver;
        let mut fetch = None;
        let mut log = Log::default();
        let deadline = {
            let mut inner = self.shared.lock();
            let inner = &mut *inner;
            while let Some(action) = inner.engine.poll_action() {
                match action {
                    Action::FetchToken {
                        transport, refresh, ..
                    } => fetch = Some((transport, refresh)),
                    other => perform(link, other, &self.ctx, &mut log),
                }
            }
            receiver = self.deliver_events(inner, &mut log);
            inner.engine.poll_timeout()
        };
        // Woken even if the log panics (the app's subscriber): an app already waiting would
        // otherwise never see the events just queued for it.
        let app = WakeOnDrop(receiver);
        log.emit();
        drop(app);
        // The engine asks for a token only when it was given a token placement, which the
        // builder does only together with a provider.
        // A provider that panics fails its attempt, like one that returns an error: the
        // engine decides what follows, and the task goes on.
        if let Some(((request, refresh), provider)) = fetch.zip(self.token_provider.as_ref()) {
            let fetching = catch_unwind(AssertUnwindSafe(|| provider.token(refresh)))
                .unwrap_or_else(|_| Box::pin(std::future::ready(Err(PROVIDER_PANICKED.into()))));
            // A newer request replaces one still pending: the engine would ignore its answer.
            *token = Some((request, fetching));
        }
        deadline
    }

    /// Moves the engine's events into the app's queue, resolving waiters on the way: one lock
    /// and one wake-up per drain. Returns the app's waker to wake once the locks are released;
    /// what to log about the events goes to `log`, to be emitted then too.
    fn deliver_events(&self, inner: &mut Inner, log: &mut Log) -> Option<std::task::Waker> {
        let first = inner.engine.poll_event()?;
        let mut queue = self.shared.lock_events();
        let mut next = Some(first);
        while let Some(event) = next {
            resolve_waiters(&mut inner.waiters, &event);
            if let Event::StateChanged { to, .. } = &event {
                if let State::Closed { reason } = to {
                    queue.closes = queue.closes.wrapping_add(1);
                    queue.last_close = Some(Box::new(reason.clone()));
                }
                queue.state = to.clone();
                if let Some(watch) = &queue.state_watch {
                    watch.send_replace(to.clone());
                }
            }
            log.event(&event);
            if !queue.receiver_gone {
                queue.events.push_back(event);
            }
            next = inner.engine.poll_event();
        }
        queue.receiver.take()
    }

    /// Waits while the app's queue holds more than `event_capacity` events (a slow app
    /// stops the reading, so TCP pushes back); not at all once nobody listens any more, once
    /// the client is stopping, or while a close the app asked for is under way. A wait of
    /// [`STALL_WARNING`] is logged, once per wait: an app that keeps `Events` without reading
    /// it stalls its client, and nothing else would say so.
    async fn room_for_events(&self) {
        let mut room = std::pin::pin!(poll_fn(|cx| {
            let mut queue = self.shared.lock_events();
            if queue.receiver_gone || queue.has_room() {
                return Poll::Ready(());
            }
            queue.room = Some(cx.waker().clone());
            drop(queue);
            // An app that holds `Events` without reading must not stall a shutdown or its own
            // close (or drain): the close handshake still runs. Checked after registering the
            // waker (and without holding the queue's lock, taken after the engine's
            // elsewhere), so a stop that comes in between finds the waker
            // (`Shared::wake_for_stop`).
            if self.shared.stopping() {
                return Poll::Ready(());
            }
            Poll::Pending
        }));
        // The common case, room at once, sets no timer.
        if room.as_mut().now_or_never().is_some() {
            return;
        }
        if tokio::time::timeout(STALL_WARNING, room.as_mut())
            .await
            .is_ok()
        {
            return;
        }
        let (waiting, capacity) = {
            let queue = self.shared.lock_events();
            (queue.events.len(), queue.capacity())
        };
        warn!(
            waiting,
            event_capacity = capacity,
            paused_s = STALL_WARNING.as_secs(),
            "the client is paused: the app has not taken its events (more than event_capacity \
             wait), so it neither reads, writes nor fires timers; sends still go to the outbox, \
             whose overflow policy applies when it is full. Read `Events` (recv or try_recv), \
             drop it if the events are not wanted, or raise event_capacity"
        );
        room.await;
    }
}

/// How long the task waits for the app to take events before it logs that it is paused.
const STALL_WARNING: std::time::Duration = std::time::Duration::from_secs(5);

impl Drop for Driver {
    /// `Events` ends once it has handed over what is queued; document change streams end.
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        // A panic inside an engine call poisons the lock: the engine may be half-updated.
        let engine_intact = !self.shared.inner_poisoned();
        let mut log = Log::default();
        let last_events = {
            let mut inner = self.shared.lock();
            // Ended without the engine closed (its runtime was dropped mid-run, or the task
            // panicked outside the engine): closed here, so later sends are refused instead of
            // queued for nobody, and what was pending is reported in the app's last events
            // (resolving the waits for it).
            let last_events = if engine_intact {
                let now = self.shared.now();
                inner.engine.abandon(now);
                // Actions would need the task: the link is gone with it.
                while inner.engine.poll_action().is_some() {}
                self.deliver_events(&mut inner, &mut log)
            } else {
                None
            };
            inner.waiters.documents.clear();
            // Waits nothing reported end with `ClientGone` (and new ones are refused so).
            inner.waiters.acks.clear();
            inner.waiters.requests.clear();
            inner.waiters.task_ended = true;
            last_events
        };
        let mut queue = self.shared.lock_events();
        queue.sender_gone = true;
        // A panic inside the engine left it half-updated, and nothing runs it any more: the app
        // is told the client closed, with the reason `Engine::abandon` gives, and commands are
        // refused (`waiters.task_ended`).
        if !engine_intact && !queue.state.is_closed() {
            let closed = State::Closed {
                reason: CloseReason::stopped_running(),
            };
            if let Some(watch) = &queue.state_watch {
                watch.send_replace(closed.clone());
            }
            queue.state = closed;
        }
        // Receivers of `watch_state` see the channel closed, as when the task owned it.
        queue.state_watch = None;
        let app = WakeOnDrop(queue.receiver.take().or(last_events));
        drop(queue);
        // Nothing is logged while a panic unwinds (the panic may have come from the log
        // subscriber: a second one aborts the process).
        if !panicking {
            log.emit();
        }
        drop(app);
    }
}

/// The app's waker, woken when this is dropped: after the log that precedes it, and also if
/// that log panics.
struct WakeOnDrop(Option<std::task::Waker>);

impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        if let Some(app) = self.0.take() {
            app.wake();
        }
    }
}

/// Performs one engine action on the link (every action but `FetchToken`); what to log about
/// it goes to `log` (this runs under the engine's lock).
fn perform(link: &mut Option<Link>, action: Action, ctx: &LinkContext, log: &mut Log) {
    match action {
        Action::Open(request) => {
            log.push(LogLine::Opening {
                transport: request.transport,
                attempt: request.attempt,
                url: crate::transport::redacted_url(&request.url).into_owned(),
            });
            // What the slot still holds has ended: the engine releases a link still closing
            // (`Action::Release`) before it opens another.
            *link = Some(Link::open(*request, ctx));
        }
        Action::Send { transport, frame } => {
            if let Some(l) = link.as_mut().filter(|l| l.id() == transport) {
                l.send(frame);
            }
        }
        Action::Ping { transport, payload } => {
            if let Some(l) = link.as_mut().filter(|l| l.id() == transport) {
                l.ping(payload);
            }
        }
        Action::Close {
            transport,
            code,
            reason,
        } => {
            if let Some(l) = link.as_mut().filter(|l| l.id() == transport) {
                log.push(LogLine::Closing {
                    transport,
                    code,
                    reason: reason.clone(),
                });
                l.close(code, reason);
            }
        }
        // The engine stopped waiting for its close handshake (or replaces it): dropping the
        // link drops the socket.
        Action::Release { transport } => {
            if link.as_ref().is_some_and(|l| l.id() == transport) {
                log.push(LogLine::Releasing { transport });
                *link = None;
            }
        }
        other => log.push(LogLine::Unsupported(other)),
    }
}

/// The engine's deadline has passed: part of a message that came in, or more of ours the
/// socket took after pushing back, since the link's last input is reported first, once, not
/// per read or write (the heartbeat only judges at its deadlines).
fn handle_timeout(engine: &mut Engine, link: &mut Option<Link>, now: Instant) {
    if let Some(l) = link.as_mut() {
        let signs = l.take_peer_signs();
        if signs.arrived {
            engine.bytes_received(now, l.id());
        }
        if signs.acknowledged {
            engine.bytes_acknowledged(now, l.id());
        }
    }
    engine.handle_timeout(now);
}

/// Reads up to a batch of ready inputs; Ready with them when at least one arrived. The batch
/// is allocated only once an input is there, so an idle client holds none.
fn poll_link(link: &mut Option<Link>, cx: &mut std::task::Context<'_>) -> Poll<Vec<LinkInput>> {
    let Some(l) = link.as_mut() else {
        return Poll::Pending;
    };
    let mut inputs = Vec::new();
    while inputs.len() < INPUT_BATCH {
        match l.poll_input(cx) {
            Poll::Ready(input) => {
                if inputs.capacity() == 0 {
                    inputs.reserve_exact(INPUT_BATCH);
                }
                inputs.push(input);
            }
            Poll::Pending => break,
        }
    }
    if inputs.is_empty() {
        Poll::Pending
    } else {
        Poll::Ready(inputs)
    }
}

/// The token failure reported for a provider that panicked (calling it, or polling its future).
const PROVIDER_PANICKED: &str = "token provider panicked";

async fn poll_token(
    token: &mut Option<(TransportId, TokenFuture)>,
) -> (TransportId, Result<String, String>) {
    poll_fn(|cx| match token.as_mut() {
        Some((request, fut)) => match catch_unwind(AssertUnwindSafe(|| fut.poll_unpin(cx)))
            .unwrap_or_else(|_| Poll::Ready(Err(PROVIDER_PANICKED.to_owned())))
        {
            Poll::Ready(result) => {
                let request = *request;
                *token = None;
                Poll::Ready((request, result))
            }
            Poll::Pending => Poll::Pending,
        },
        None => Poll::Pending,
    })
    .await
}

fn feed(engine: &mut Engine, now: Instant, id: tether_core::TransportId, input: LinkInput) {
    match input {
        LinkInput::Opened => engine.transport_opened(now, id),
        LinkInput::Frame(frame) => engine.frame_received(now, id, frame),
        LinkInput::Sse(item) => engine.sse_parsed(now, id, *item),
        LinkInput::Ping => engine.ping_received(now, id),
        LinkInput::Pong(payload) => engine.pong_received(now, id, &payload),
        LinkInput::Writable(w) => engine.transport_writable(now, id, w),
        LinkInput::Progress(taken) => engine.transport_progress(now, id, taken),
        LinkInput::Closed { code, reason } => engine.transport_closed(now, id, code, &reason),
        LinkInput::Failed(failure) => engine.transport_failed(now, id, *failure),
    }
}

fn resolve_waiters(waiters: &mut Waiters, event: &Event) {
    match event {
        Event::Acked { id, offset } => {
            if let Some(tx) = waiters.acks.remove(id) {
                let _ = tx.send(Ok(*offset));
            }
        }
        Event::AckTimedOut { id, status } => {
            if let Some(tx) = waiters.acks.remove(id) {
                let _ = tx.send(Err(AckError::TimedOut {
                    id: *id,
                    status: *status,
                }));
            }
        }
        Event::Dropped { ids, reason } => {
            for id in ids {
                if let Some(tx) = waiters.acks.remove(id) {
                    let _ = tx.send(Err(AckError::Dropped(reason.clone())));
                }
            }
        }
        Event::Replied { id, payload } => {
            if let Some(tx) = waiters.requests.remove(id) {
                let _ = tx.send(Ok(payload.clone()));
            }
        }
        Event::RequestFailed { id, reason } => {
            if let Some(tx) = waiters.requests.remove(id) {
                let _ = tx.send(Err(reason.clone()));
            }
        }
        Event::DocumentChanged {
            channel,
            generation,
            origin,
            changes,
        } => forward(waiters, channel, *generation, || DocumentEvent::Changed {
            origin: *origin,
            changes: changes.clone(),
        }),
        Event::ChangeRejected {
            channel,
            generation,
            change,
            code,
        } => forward(waiters, channel, *generation, || DocumentEvent::Rejected {
            change: *change,
            code: code.clone(),
        }),
        Event::DocumentResynced {
            channel,
            generation,
            version,
        } => forward(waiters, channel, *generation, || DocumentEvent::Resynced {
            version: *version,
        }),
        _ => {}
    }
}

/// Hands a document event to that document's change streams, if anyone listens: those of
/// the document open on `channel` as `generation`, not those of one opened there since.
fn forward(
    waiters: &Waiters,
    channel: &str,
    generation: u64,
    event: impl FnOnce() -> DocumentEvent,
) {
    if let Some((_, tx)) = waiters
        .documents
        .get(channel)
        .filter(|(open, tx)| *open == generation && tx.receiver_count() > 0)
    {
        let _ = tx.send(event());
    }
}

/// What the task logs about one drain, collected while it holds its locks and emitted once
/// they are released. The app's `tracing` subscriber is app code: one that calls back into the
/// client from a log event (`stats()`, `state()`, a send) would deadlock on a lock the task
/// holds (std's mutex is not reentrant), and one that panics would poison it. Empty (no
/// allocation) for the common drain: sends, pings and messages log nothing.
#[derive(Default)]
struct Log(Vec<LogLine>);

/// One line of a [`Log`]: what the log macro needs, owned.
enum LogLine {
    Opening {
        transport: TransportId,
        attempt: u32,
        url: String,
    },
    Closing {
        transport: TransportId,
        code: u16,
        reason: String,
    },
    Releasing {
        transport: TransportId,
    },
    Unsupported(Action),
    StateChanged {
        from: State,
        to: State,
    },
    ReconnectScheduled {
        attempt: u32,
        delay: std::time::Duration,
        cause: tether_core::DisconnectCause,
    },
    Dropped {
        count: usize,
        reason: &'static str,
    },
    Error(tether_core::EngineError),
}

impl Log {
    fn push(&mut self, line: LogLine) {
        self.0.push(line);
    }

    /// Keeps what the log says of `event`, if it is worth a line: every state change and
    /// reconnect decision with its reason, drops, and errors. (Owned fields only, not a copy
    /// of the event: a drop's ids and a message's payload are not logged.)
    fn event(&mut self, event: &Event) {
        let line = match event {
            Event::StateChanged { from, to } => LogLine::StateChanged {
                from: from.clone(),
                to: to.clone(),
            },
            Event::ReconnectScheduled {
                attempt,
                delay,
                cause,
            } => LogLine::ReconnectScheduled {
                attempt: *attempt,
                delay: *delay,
                cause: cause.clone(),
            },
            Event::Dropped { ids, reason } => LogLine::Dropped {
                count: ids.len(),
                reason: reason.name(),
            },
            Event::Error(e) => LogLine::Error(e.clone()),
            _ => return,
        };
        self.push(line);
    }

    /// Logs the lines, in order. Call without holding any lock of the client.
    fn emit(self) {
        for line in self.0 {
            match line {
                LogLine::Opening {
                    transport,
                    attempt,
                    url,
                } => debug!(%transport, attempt, %url, "opening"),
                LogLine::Closing {
                    transport,
                    code,
                    reason,
                } => debug!(%transport, code, %reason, "closing transport"),
                LogLine::Releasing { transport } => debug!(%transport, "releasing transport"),
                LogLine::Unsupported(other) => warn!(?other, "action not supported by this driver"),
                LogLine::StateChanged { from, to } => info!(%from, %to, "state changed"),
                LogLine::ReconnectScheduled {
                    attempt,
                    delay,
                    cause,
                } => {
                    info!(attempt, delay_ms = delay.as_millis() as u64, %cause, "reconnect scheduled")
                }
                LogLine::Dropped { count, reason } => warn!(count, reason, "messages dropped"),
                // Transport errors are the normal news of a reconnect (and are in the cause of
                // the ReconnectScheduled that follows); anything else deserves a warning.
                LogLine::Error(e @ tether_core::EngineError::Transport(_)) => {
                    debug!(error = %e, "transport error")
                }
                LogLine::Error(e) => warn!(kind = e.kind(), error = %e, "engine reported an error"),
            }
        }
    }
}
