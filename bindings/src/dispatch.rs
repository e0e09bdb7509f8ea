//! Getting events from the client to foreign listeners without ever letting foreign code
//! stall or crash the client.
//!
//! ```text
//!  tether client task ──Events (bounded, backpressure)──▶ pump task ──▶ Hub ──broadcast ring──▶ dispatcher thread ──▶ ClientListener.onEvent
//!                   │                                   (never waits)   (state + sender)  (drop-oldest) │ one per listener
//!                   └──per-document broadcast ring (in `tether`, drop-oldest)──────────────▶ dispatcher thread ──▶ DocumentListener.onEvent
//! ```
//!
//! - The `tether` crate's `Events` queue is bounded and a full queue makes the client stop
//!   reading its socket and stop its timers until there is room. So the pump must drain it
//!   promptly: it converts each event and hands it to the hub, whose `send` never waits.
//! - The hub is a `tokio::sync::broadcast` ring of `listenerQueueCapacity` events. A listener
//!   too slow to keep up loses the oldest events it has not read (it is told how many with
//!   `Lagged`, then gets a state snapshot), instead of stalling everyone else.
//! - A document's events come from `tether`'s own per-document broadcast ring (the client task
//!   hands each event over without waiting), read the same way: a lagging document listener
//!   gets `Lagged`, then a document snapshot.
//! - Each listener has a dedicated OS thread, so a callback that blocks stalls only itself,
//!   and no foreign code ever runs on the runtime's worker threads or under a lock: the hub's
//!   mutex is held only to record the state and push one event (or to subscribe).
//! - A foreign exception comes back as an `Err(ListenerError)` value (the listener method is
//!   declared fallible for exactly this), is counted and logged, and dispatching continues.
//!   The call also runs under `catch_unwind`, so that even a panic in UniFFI's lifting code
//!   cannot take the dispatcher down in builds that unwind.
//! - The hub counts its listener threads, so `Client.shutdown()` can wait until every one has
//!   delivered its last event and released its listener: after that no Rust thread holds a
//!   foreign object (what a Python interpreter about to finalise needs).
//! - A listener lives until its handle's `cancel()` or the client's end, not as long as its
//!   handle (an app that drops the handle still wants the events). When the app releases the
//!   client without `shutdown()`, [`Hub::release_listeners`] takes every listener away from
//!   its thread and releases it on the releasing thread, which is the app's own: no Rust thread
//!   calls into or releases foreign code after that (a Python client released while the
//!   interpreter finalises would otherwise abort the process).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::document_event::DocumentEvent;
use crate::event::ClientEvent;
use crate::listener::{ClientListener, DocumentListener, ListenerError};
use crate::runtime::runtime;
use crate::state::{ConnectionState, EngineClock};

/// One event in the ring, with the state the sequence was in just before it (what a listener
/// that lagged up to this point should be told).
#[derive(Debug)]
struct Item {
    state_before: ConnectionState,
    event: ClientEvent,
}

#[derive(Debug)]
struct HubState {
    /// The state after the last event pushed.
    state: ConnectionState,
    /// `None` once the client has shut down.
    tx: Option<broadcast::Sender<Arc<Item>>>,
}

/// The fan-out point between the pump and the listeners, plus their counters.
#[derive(Debug)]
pub(crate) struct Hub {
    inner: Mutex<HubState>,
    pub(crate) missed: AtomicU64,
    pub(crate) failures: AtomicU64,
    /// Cancelled when the pump ends (the client task has ended and its events are all in).
    closed: CancellationToken,
    /// How many listener threads are running.
    live: watch::Sender<usize>,
    /// Every listener thread's foreign listener, for [`Hub::release_listeners`].
    attached: Mutex<Vec<Weak<Attached>>>,
    /// Set by [`Hub::release_listeners`]: listeners added after it are released at once.
    released: AtomicBool,
}

/// A foreign listener, as its dispatcher thread holds it.
enum Foreign {
    Client(Arc<dyn ClientListener>),
    Document(Arc<dyn DocumentListener>),
}

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attached")
            .field("cancel", &self.cancel)
            .finish_non_exhaustive()
    }
}

/// One listener thread's stop signal and foreign listener. The thread takes a reference to the
/// listener for each callback only; [`Hub::release_listeners`] can take the listener away.
struct Attached {
    cancel: CancellationToken,
    listener: Mutex<Option<Foreign>>,
}

impl Attached {
    fn new(cancel: CancellationToken, listener: Foreign) -> Arc<Self> {
        Arc::new(Attached {
            cancel,
            listener: Mutex::new(Some(listener)),
        })
    }

    /// The listener, unless released. Held only for the one lookup, never during a callback.
    fn listener(&self) -> MutexGuard<'_, Option<Foreign>> {
        self.listener.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn client(&self) -> Option<Arc<dyn ClientListener>> {
        match &*self.listener() {
            Some(Foreign::Client(l)) => Some(l.clone()),
            _ => None,
        }
    }

    fn document(&self) -> Option<Arc<dyn DocumentListener>> {
        match &*self.listener() {
            Some(Foreign::Document(l)) => Some(l.clone()),
            _ => None,
        }
    }
}

/// A running listener thread, counted in [`Hub::live`] until dropped.
struct Live(Arc<Hub>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.live.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Hub {
    pub(crate) fn new(initial: ConnectionState, capacity: usize) -> Arc<Self> {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Arc::new(Hub {
            inner: Mutex::new(HubState {
                state: initial,
                tx: Some(tx),
            }),
            missed: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            closed: CancellationToken::new(),
            live: watch::Sender::new(0),
            attached: Mutex::new(Vec::new()),
            released: AtomicBool::new(false),
        })
    }

    /// Registers a listener thread's listener for [`Hub::release_listeners`]. `None` (and the
    /// listener released at once, on the caller's thread) once that has run.
    fn register(&self, cancel: CancellationToken, listener: Foreign) -> Option<Arc<Attached>> {
        let mut attached = self.attached.lock().unwrap_or_else(PoisonError::into_inner);
        if self.released.load(Ordering::Acquire) {
            cancel.cancel();
            return None;
        }
        attached.retain(|a| a.strong_count() > 0);
        let a = Attached::new(cancel, listener);
        attached.push(Arc::downgrade(&a));
        Some(a)
    }

    /// The app released the client without `shutdown()`: stops every listener thread and
    /// releases every foreign listener here, on the caller's thread, instead of letting the
    /// threads deliver the final events and release them later from a Rust thread. A
    /// callback already in progress on another thread ends normally (that listener is then
    /// released by its thread); nothing is delivered after it. Listeners added later (through
    /// a `Document` handle that outlives the client) are released at once.
    pub(crate) fn release_listeners(&self) {
        let attached = {
            let mut attached = self.attached.lock().unwrap_or_else(PoisonError::into_inner);
            self.released.store(true, Ordering::Release);
            std::mem::take(&mut *attached)
        };
        let mut listeners = Vec::with_capacity(attached.len());
        for a in attached.iter().filter_map(Weak::upgrade) {
            a.cancel.cancel();
            listeners.push(a.listener().take());
        }
        // Dropped here, outside every lock: a foreign release may run foreign code.
        drop(listeners);
    }

    fn enter(self: &Arc<Self>) -> Live {
        self.live.send_modify(|n| *n += 1);
        Live(self.clone())
    }

    /// Resolves once the client's events have all been handed over and every listener thread
    /// has ended (delivered what was queued for it and released its listener).
    pub(crate) async fn finished(&self) {
        self.closed.cancelled().await;
        let mut live = self.live.subscribe();
        // Err only if the sender is gone, which it cannot be while `self` lives.
        let _ = live.wait_for(|n| *n == 0).await;
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // Nothing that can panic runs under this lock; recover rather than propagate anyway.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, event: ClientEvent) {
        let mut hub = self.lock();
        let state_before = hub.state.clone();
        if let ClientEvent::StateChanged { current, .. } = &event {
            hub.state = current.clone();
        }
        if let Some(tx) = &hub.tx {
            // An error only means nobody listens right now.
            let _ = tx.send(Arc::new(Item {
                state_before,
                event,
            }));
        }
    }

    fn shut(&self) {
        self.lock().tx = None;
        self.closed.cancel();
    }

    /// Starts delivering to `listener` on a thread of its own: first the current state, then
    /// every later event, until `cancel` fires or the client shuts down.
    pub(crate) fn attach(self: &Arc<Self>, listener: Arc<dyn ClientListener>) -> CancellationToken {
        let cancel = CancellationToken::new();
        // Snapshot and subscription under one lock: the snapshot is exactly the state before
        // the first event this receiver will see.
        let (snapshot, rx) = {
            let hub = self.lock();
            (hub.state.clone(), hub.tx.as_ref().map(|tx| tx.subscribe()))
        };
        let Some(attached) = self.register(cancel.clone(), Foreign::Client(listener)) else {
            return cancel;
        };
        let dispatcher = Dispatcher {
            hub: self.clone(),
            attached,
            cancel: cancel.clone(),
        };
        let live = self.enter();
        self.spawn("tether-listener", &cancel, move || {
            // The dispatcher (and with it the listener) is released before `live` counts
            // this thread out.
            dispatcher.run(snapshot, rx);
            drop(live);
        });
        cancel
    }

    /// Starts delivering `doc`'s events to `listener` on a thread of its own: first a
    /// snapshot, then every later event, until `cancel` fires or the client shuts down.
    pub(crate) fn attach_document(
        self: &Arc<Self>,
        doc: tether::Document,
        listener: Arc<dyn DocumentListener>,
    ) -> CancellationToken {
        let cancel = CancellationToken::new();
        // Subscribed before the snapshot is read (on the thread): the snapshot then contains
        // every change whose event this listener will not see. Events carry new values, so
        // one it does see that the snapshot already contains changes nothing.
        let changes = doc.changes();
        let Some(attached) = self.register(cancel.clone(), Foreign::Document(listener)) else {
            return cancel;
        };
        let dispatcher = DocumentDispatcher {
            hub: self.clone(),
            attached,
            cancel: cancel.clone(),
            doc,
        };
        let live = self.enter();
        self.spawn("tether-doc-listener", &cancel, move || {
            dispatcher.run(changes);
            drop(live);
        });
        cancel
    }

    fn spawn(&self, name: &str, cancel: &CancellationToken, body: impl FnOnce() + Send + 'static) {
        let spawned = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(body);
        if let Err(e) = spawned {
            // The closure (and the `Live` guard in it) was dropped: the count is right.
            warn!(error = %e, "cannot start a listener thread; the listener gets no events");
            cancel.cancel();
        }
    }

    /// One foreign callback: an exception (or a panic) is contained and counted.
    fn call(&self, what: &str, f: impl FnOnce() -> Result<(), ListenerError>) {
        let failure = match catch_unwind(AssertUnwindSafe(f)) {
            Ok(Ok(())) => return,
            Ok(Err(ListenerError::Threw { reason })) => reason,
            Err(_) => "panicked".to_owned(),
        };
        self.failures.fetch_add(1, Ordering::Relaxed);
        warn!(%failure, "a {what} threw; the event is skipped for it and dispatching goes on");
    }
}

/// Forwards the client's events to the hub until the client shuts down. Runs on the runtime.
pub(crate) async fn pump(mut events: tether::Events, hub: Arc<Hub>, clock: EngineClock) {
    while let Some(event) = events.recv().await {
        if let Some(event) = ClientEvent::from_core(event, &clock) {
            hub.publish(event);
        }
    }
    // Listeners drain what is queued, then their threads end.
    hub.shut();
}

struct Dispatcher {
    hub: Arc<Hub>,
    attached: Arc<Attached>,
    cancel: CancellationToken,
}

impl Dispatcher {
    fn run(self, snapshot: ConnectionState, rx: Option<broadcast::Receiver<Arc<Item>>>) {
        self.deliver(ClientEvent::StateChanged {
            previous: None,
            current: snapshot,
        });
        let Some(mut rx) = rx else { return };
        let handle = runtime().handle();
        let mut missed = 0u64;
        loop {
            let next = handle.block_on(async {
                tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => None,
                    next = rx.recv() => Some(next),
                }
            });
            match next {
                None => return,
                Some(Ok(item)) => {
                    if missed > 0 {
                        self.deliver(ClientEvent::Lagged { missed });
                        self.deliver(ClientEvent::StateChanged {
                            previous: None,
                            current: item.state_before.clone(),
                        });
                        missed = 0;
                    }
                    self.deliver(item.event.clone());
                }
                Some(Err(RecvError::Lagged(n))) => {
                    self.hub.missed.fetch_add(n, Ordering::Relaxed);
                    missed += n;
                }
                Some(Err(RecvError::Closed)) => {
                    if missed > 0 {
                        let state = self.hub.lock().state.clone();
                        self.deliver(ClientEvent::Lagged { missed });
                        self.deliver(ClientEvent::StateChanged {
                            previous: None,
                            current: state,
                        });
                    }
                    return;
                }
            }
        }
    }

    /// One callback, unless cancelled or released; an exception (or a panic) is contained.
    fn deliver(&self, event: ClientEvent) {
        if self.cancel.is_cancelled() {
            return;
        }
        let Some(listener) = self.attached.client() else {
            return;
        };
        self.hub.call("ClientListener", || listener.on_event(event));
    }
}

struct DocumentDispatcher {
    hub: Arc<Hub>,
    attached: Arc<Attached>,
    cancel: CancellationToken,
    doc: tether::Document,
}

enum Step {
    Stop,
    Event(tether::DocumentEvent),
}

impl DocumentDispatcher {
    fn run(self, mut changes: tether::DocumentChanges) {
        self.deliver(DocumentEvent::snapshot_of(&self.doc));
        let handle = runtime().handle();
        loop {
            let step = handle.block_on(async {
                tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => Step::Stop,
                    // Before `closed`: what is queued is still delivered after a shutdown.
                    // (`DocumentChanges::recv` keeps its state between calls: cancel-safe.)
                    next = changes.recv() => next.map_or(Step::Stop, Step::Event),
                    // The document's stream does not end by itself while handles on the
                    // client's state live (this thread holds one): the hub says when the
                    // client task has ended.
                    _ = self.hub.closed.cancelled() => Step::Stop,
                }
            });
            match step {
                Step::Stop => return,
                Step::Event(tether::DocumentEvent::Lagged { missed }) => {
                    self.hub.missed.fetch_add(missed, Ordering::Relaxed);
                    self.deliver(DocumentEvent::Lagged { missed });
                    self.deliver(DocumentEvent::snapshot_of(&self.doc));
                }
                Step::Event(event) => {
                    if let Some(event) = DocumentEvent::from_core(event) {
                        self.deliver(event);
                    }
                }
            }
        }
    }

    fn deliver(&self, event: DocumentEvent) {
        if self.cancel.is_cancelled() {
            return;
        }
        let Some(listener) = self.attached.document() else {
            return;
        };
        self.hub
            .call("DocumentListener", || listener.on_event(event));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    const WAIT: Duration = Duration::from_secs(5);

    /// Forwards events to a channel; optionally blocks on the first one until released, and
    /// optionally fails or panics on every call.
    struct Probe {
        tx: Mutex<mpsc::Sender<ClientEvent>>,
        gate: Option<Mutex<mpsc::Receiver<()>>>,
        fail: bool,
        panic: bool,
    }

    impl ClientListener for Probe {
        fn on_event(&self, event: ClientEvent) -> Result<(), ListenerError> {
            if let Some(gate) = &self.gate {
                let _ = gate.lock().map(|g| g.recv_timeout(WAIT));
            }
            let _ = self.tx.lock().map(|tx| tx.send(event));
            assert!(!self.panic, "listener panicked");
            if self.fail {
                return Err(ListenerError::Threw {
                    reason: "boom".to_owned(),
                });
            }
            Ok(())
        }
    }

    fn probe(fail: bool, panic: bool) -> (Arc<Probe>, mpsc::Receiver<ClientEvent>) {
        let (tx, rx) = mpsc::channel();
        let p = Probe {
            tx: Mutex::new(tx),
            gate: None,
            fail,
            panic,
        };
        (Arc::new(p), rx)
    }

    fn rtt(ms: u32) -> ClientEvent {
        ClientEvent::Rtt {
            rtt_ms: f64::from(ms),
        }
    }

    fn changed(previous: Option<ConnectionState>, current: ConnectionState) -> ClientEvent {
        ClientEvent::StateChanged { previous, current }
    }

    fn next(rx: &mpsc::Receiver<ClientEvent>) -> ClientEvent {
        rx.recv_timeout(WAIT).expect("an event within 5 s")
    }

    #[test]
    fn a_listener_gets_the_state_at_attach_time_then_every_later_event_in_order() {
        let hub = Hub::new(ConnectionState::Idle, 16);
        hub.publish(changed(
            Some(ConnectionState::Idle),
            ConnectionState::Connecting { attempt: 1 },
        ));
        let (listener, rx) = probe(false, false);
        let _cancel = hub.attach(listener);
        assert_eq!(
            next(&rx),
            changed(None, ConnectionState::Connecting { attempt: 1 })
        );
        let open = changed(
            Some(ConnectionState::Connecting { attempt: 1 }),
            ConnectionState::Open,
        );
        hub.publish(open.clone());
        hub.publish(rtt(1));
        assert_eq!(next(&rx), open);
        assert_eq!(next(&rx), rtt(1));
    }

    #[test]
    fn a_slow_listener_skips_the_oldest_is_told_how_many_and_gets_a_snapshot() {
        let hub = Hub::new(ConnectionState::Idle, 4);
        let (tx, rx) = mpsc::channel();
        let (release, gate) = mpsc::channel();
        let listener = Arc::new(Probe {
            tx: Mutex::new(tx),
            gate: Some(Mutex::new(gate)),
            fail: false,
            panic: false,
        });
        let _cancel = hub.attach(listener);
        // The listener is now stuck in its first callback (the snapshot).
        hub.publish(changed(Some(ConnectionState::Idle), ConnectionState::Open));
        for ms in 1..=9 {
            hub.publish(rtt(ms));
        }
        for _ in 0..20 {
            let _ = release.send(());
        }
        assert_eq!(next(&rx), changed(None, ConnectionState::Idle));
        // Ten events into a ring of four: six skipped, then the state at that point.
        assert_eq!(next(&rx), ClientEvent::Lagged { missed: 6 });
        assert_eq!(next(&rx), changed(None, ConnectionState::Open));
        for ms in 6..=9 {
            assert_eq!(next(&rx), rtt(ms));
        }
        assert_eq!(hub.missed.load(Ordering::Relaxed), 6);
    }

    #[test]
    fn failing_and_panicking_listeners_are_counted_and_keep_receiving() {
        let hub = Hub::new(ConnectionState::Idle, 16);
        let (failing, failed_rx) = probe(true, false);
        let (panicking, panicked_rx) = probe(false, true);
        let _a = hub.attach(failing);
        let _b = hub.attach(panicking);
        hub.publish(rtt(1));
        for rx in [&failed_rx, &panicked_rx] {
            assert_eq!(next(rx), changed(None, ConnectionState::Idle));
            assert_eq!(next(rx), rtt(1));
        }
        let deadline = std::time::Instant::now() + WAIT;
        while hub.failures.load(Ordering::Relaxed) < 4 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(hub.failures.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn a_cancelled_listener_gets_nothing_more_and_its_thread_ends() {
        let hub = Hub::new(ConnectionState::Idle, 16);
        let (listener, rx) = probe(false, false);
        let cancel = hub.attach(listener);
        assert_eq!(next(&rx), changed(None, ConnectionState::Idle));
        cancel.cancel();
        hub.publish(rtt(1));
        // The thread drops its sender when it ends: the channel disconnects, empty.
        assert_eq!(
            rx.recv_timeout(WAIT),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn after_shutdown_listeners_drain_what_is_queued_then_end() {
        let hub = Hub::new(ConnectionState::Open, 16);
        let (listener, rx) = probe(false, false);
        let _cancel = hub.attach(listener);
        hub.publish(rtt(1));
        hub.publish(rtt(2));
        hub.shut();
        assert_eq!(next(&rx), changed(None, ConnectionState::Open));
        assert_eq!(next(&rx), rtt(1));
        assert_eq!(next(&rx), rtt(2));
        assert_eq!(
            rx.recv_timeout(WAIT),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
        // A listener added after shutdown still learns the final state.
        let (late, late_rx) = probe(false, false);
        let _late = hub.attach(late);
        assert_eq!(next(&late_rx), changed(None, ConnectionState::Open));
    }

    #[test]
    fn finished_waits_for_every_listener_to_have_its_last_event_and_be_released() {
        let hub = Hub::new(ConnectionState::Open, 16);
        let (listener, rx) = probe(false, false);
        let _cancel = hub.attach(listener);
        hub.publish(rtt(1));
        hub.shut();
        runtime().block_on(async {
            tokio::time::timeout(WAIT, hub.finished())
                .await
                .expect("finished within 5 s");
        });
        // Everything was delivered, and the listener (which owns the sender) is gone: the
        // channel holds the events and reports the disconnection without waiting.
        assert_eq!(rx.try_recv(), Ok(changed(None, ConnectionState::Open)));
        assert_eq!(rx.try_recv(), Ok(rtt(1)));
        assert_eq!(rx.try_recv(), Err(mpsc::TryRecvError::Disconnected));
    }
}
