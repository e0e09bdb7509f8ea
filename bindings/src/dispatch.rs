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
//! - The hub is a `tokio::sync::broadcast` ring of `listenerQueueCapacity` events (its slots
//!   rounded up to a power of two; the dispatcher keeps the bound as given). A listener too
//!   slow to keep up loses the oldest events it has not read (it is told how many with
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
//!   its thread, waits out a callback in progress on another thread (for up to a second, so
//!   a callback that waits for the releasing thread cannot deadlock it), and releases the
//!   listeners on the releasing thread, which is the app's own: once it returns no callback
//!   starts, and no Rust thread calls into or releases foreign code (a Python client released
//!   while the interpreter finalises would otherwise abort the process). A thread takes its
//!   reference to the listener, and marks its callback in progress, under the listener's own
//!   lock, and lets go of the reference before it clears the mark: there is no moment when a
//!   callback is about to start that the release cannot see.
//! - No foreign object is released while an internal lock is held: its release may run
//!   foreign code, which may call back into the library.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::document_event::DocumentEvent;
use crate::event::ClientEvent;
use crate::foreign_slot::{ForeignSlot, RELEASE_WAIT};
use crate::listener::{ClientListener, DocumentListener, ListenerError};
use crate::runtime::runtime;
use crate::state::{ConnectionState, EngineClock, Stamped};

/// One event in the ring, with the state the sequence was in just before it (what a listener
/// that lagged up to this point should be told).
#[derive(Debug)]
struct Item {
    state_before: Stamped,
    event: ClientEvent,
}

#[derive(Debug)]
struct HubState {
    /// The state after the last event pushed.
    state: Stamped,
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
    /// `listenerQueueCapacity`: how many events a listener may fall behind. The ring has a
    /// power of two of slots, at least this many; a listener skips what is beyond this.
    capacity: usize,
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
/// listener for each callback only; [`Hub::release_listeners`] can take the listener away and
/// wait for a callback in progress ([`ForeignSlot`]).
struct Attached {
    cancel: CancellationToken,
    listener: ForeignSlot<Foreign>,
}

impl Attached {
    fn new(cancel: CancellationToken, listener: Foreign) -> Arc<Self> {
        Arc::new(Attached {
            cancel,
            listener: ForeignSlot::new(listener),
        })
    }

    /// Calls `call` with the listener `pick` finds, unless it was cancelled or released.
    fn call<L>(&self, pick: impl FnOnce(&Foreign) -> Option<L>, call: impl FnOnce(&L)) {
        let cancel = &self.cancel;
        self.listener.call(
            |listener| (!cancel.is_cancelled()).then(|| pick(listener)).flatten(),
            call,
        );
    }

    /// The listener thread ends (cancelled, or the client shut): it releases its listener
    /// itself, seen by a release of the client ([`ForeignSlot::release_here`]).
    fn release_here(&self) {
        self.listener.release_here();
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
        let capacity = capacity.max(1);
        // `broadcast` rounds the slots up to a power of two (3 becomes 4, 1,000 becomes
        // 1,024): the bound the app gave is kept by the dispatcher (`Dispatcher::run`).
        let (tx, _) = broadcast::channel(capacity);
        Arc::new(Hub {
            inner: Mutex::new(HubState {
                state: Stamped::new(initial),
                tx: Some(tx),
            }),
            missed: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            closed: CancellationToken::new(),
            live: watch::Sender::new(0),
            attached: Mutex::new(Vec::new()),
            released: AtomicBool::new(false),
            capacity,
        })
    }

    /// Registers a listener thread's listener for [`Hub::release_listeners`]. Once that has
    /// run, cancels and gives the listener back, for the caller to release outside the lock.
    fn register(
        &self,
        cancel: CancellationToken,
        listener: Foreign,
    ) -> Result<Arc<Attached>, Foreign> {
        let mut attached = self.attached.lock().unwrap_or_else(PoisonError::into_inner);
        if self.released.load(Ordering::Acquire) {
            cancel.cancel();
            return Err(listener);
        }
        attached.retain(|a| a.strong_count() > 0);
        let a = Attached::new(cancel, listener);
        attached.push(Arc::downgrade(&a));
        Ok(a)
    }

    /// The app released the client without `shutdown()`: stops every listener thread and
    /// releases every foreign listener here, on the caller's thread, instead of letting the
    /// threads deliver the final events and release them later from a Rust thread. A
    /// callback in progress on another thread is waited for (it may be about to start, or
    /// running), for up to [`RELEASE_WAIT`] in all; one on this thread (the client released
    /// from inside a callback) is not, and that listener is released when its callback
    /// returns, on this thread too. So once this returns no callback starts, and none runs
    /// unless one outlasted the wait (logged; that listener is then released by its own thread
    /// when the callback returns). Listeners added later (through a `Document` handle that
    /// outlives the client) are released at once.
    pub(crate) fn release_listeners(&self) {
        let attached: Vec<Arc<Attached>> = {
            let mut attached = self.attached.lock().unwrap_or_else(PoisonError::into_inner);
            self.released.store(true, Ordering::Release);
            std::mem::take(&mut *attached)
        }
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
        // Every listener taken away first, so no callback starts while a slow one is waited
        // for.
        let mut listeners = Vec::with_capacity(attached.len());
        for a in &attached {
            // Taken before the thread is told to stop: a thread that ends releases a
            // listener still in its slot itself (`release_here`), on a Rust thread, which is
            // what this release is for avoiding (a finalising Python interpreter aborts).
            listeners.push(a.listener.take());
            a.cancel.cancel();
        }
        let deadline = std::time::Instant::now() + RELEASE_WAIT;
        let outlasted = attached
            .iter()
            .filter(|a| a.listener.wait_for_call(deadline))
            .count();
        if outlasted > 0 {
            warn!(
                callbacks = outlasted,
                "the client was released while a listener callback ran for more than {} ms; \
                 the release goes on, and that listener is released when its callback returns",
                RELEASE_WAIT.as_millis()
            );
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
            hub.state = Stamped::new(current.clone());
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
        let attached = match self.register(cancel.clone(), Foreign::Client(listener)) {
            Ok(attached) => attached,
            Err(refused) => {
                // Released here, on the caller's thread, with no lock held.
                drop(refused);
                return cancel;
            }
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
        let attached = match self.register(cancel.clone(), Foreign::Document(listener)) {
            Ok(attached) => attached,
            Err(refused) => {
                // Released here, on the caller's thread, with no lock held.
                drop(refused);
                return cancel;
            }
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
    fn run(self, snapshot: Stamped, rx: Option<broadcast::Receiver<Arc<Item>>>) {
        // As of now, not of the transition: a `Waiting`'s time left has run since.
        self.deliver(ClientEvent::StateChanged {
            previous: None,
            current: snapshot.now(),
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
                    // This event and those queued behind it: more than the capacity the app
                    // set (the ring may hold more) and this one, the oldest, is skipped, as
                    // a ring of exactly that capacity would have overwritten it.
                    if rx.len() >= self.hub.capacity {
                        self.hub.missed.fetch_add(1, Ordering::Relaxed);
                        missed += 1;
                        continue;
                    }
                    if missed > 0 {
                        self.deliver(ClientEvent::Lagged { missed });
                        self.deliver(ClientEvent::StateChanged {
                            previous: None,
                            current: item.state_before.now(),
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
                        let state = self.hub.lock().state.now();
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
        self.attached.call(
            |l| match l {
                Foreign::Client(l) => Some(l.clone()),
                Foreign::Document(_) => None,
            },
            |listener| self.hub.call("ClientListener", || listener.on_event(event)),
        );
    }
}

struct DocumentDispatcher {
    hub: Arc<Hub>,
    attached: Arc<Attached>,
    cancel: CancellationToken,
    doc: tether::Document,
}

/// The thread's end (or a spawn that failed): the listener is stopped for good, which its
/// handle's `isCancelled()` reports also when no `cancel()` ended it (the client shut down, the
/// document was closed), and it is released here, seen by a release of the client (see
/// [`Attached::release_here`]).
impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.attached.release_here();
    }
}

impl Drop for DocumentDispatcher {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.attached.release_here();
    }
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
        self.attached.call(
            |l| match l {
                Foreign::Document(l) => Some(l.clone()),
                Foreign::Client(_) => None,
            },
            |listener| {
                self.hub
                    .call("DocumentListener", || listener.on_event(event))
            },
        );
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

    /// A listener whose every callback waits for a `release`, attached to `hub`: the
    /// events it receives, its gate, and its attachment's token.
    fn gated_listener(
        hub: &Arc<Hub>,
    ) -> (
        mpsc::Receiver<ClientEvent>,
        mpsc::Sender<()>,
        CancellationToken,
    ) {
        let (tx, rx) = mpsc::channel();
        let (release, gate) = mpsc::channel();
        let listener = Arc::new(Probe {
            tx: Mutex::new(tx),
            gate: Some(Mutex::new(gate)),
            fail: false,
            panic: false,
        });
        (rx, release, hub.attach(listener))
    }

    #[test]
    fn a_slow_listener_skips_the_oldest_is_told_how_many_and_gets_a_snapshot() {
        let hub = Hub::new(ConnectionState::Idle, 4);
        let (rx, release, _cancel) = gated_listener(&hub);
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
    fn a_capacity_that_is_not_a_power_of_two_is_the_bound_as_given() {
        // The ring rounds 3 up to 4 slots; the listener may still fall only 3 events behind.
        let hub = Hub::new(ConnectionState::Idle, 3);
        let (rx, release, _cancel) = gated_listener(&hub);
        // Stuck in its first callback (the snapshot) while five events come.
        hub.publish(changed(Some(ConnectionState::Idle), ConnectionState::Open));
        for ms in 1..=4 {
            hub.publish(rtt(ms));
        }
        for _ in 0..20 {
            let _ = release.send(());
        }
        assert_eq!(next(&rx), changed(None, ConnectionState::Idle));
        assert_eq!(next(&rx), ClientEvent::Lagged { missed: 2 });
        assert_eq!(next(&rx), changed(None, ConnectionState::Open));
        for ms in 2..=4 {
            assert_eq!(next(&rx), rtt(ms));
        }
        assert_eq!(hub.missed.load(Ordering::Relaxed), 2);
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

    /// Records the thread it is released on, and says so on a channel.
    struct Released(mpsc::Sender<std::thread::ThreadId>);

    impl Drop for Released {
        fn drop(&mut self) {
            let _ = self.0.send(std::thread::current().id());
        }
    }

    /// Says when its callback starts, then blocks until the gate opens (at most 5 s).
    struct Blocking {
        started: Mutex<mpsc::Sender<ClientEvent>>,
        gate: Mutex<mpsc::Receiver<()>>,
        _released: Released,
    }

    impl ClientListener for Blocking {
        fn on_event(&self, event: ClientEvent) -> Result<(), ListenerError> {
            let _ = self.started.lock().map(|tx| tx.send(event));
            let _ = self.gate.lock().map(|g| g.recv_timeout(WAIT));
            Ok(())
        }
    }

    /// Attaches a [`Blocking`] listener: what its callbacks start with, the sender that opens
    /// its gate, the thread it is released on, and its handle's token.
    fn attach_blocking(
        hub: &Arc<Hub>,
    ) -> (
        mpsc::Receiver<ClientEvent>,
        mpsc::Sender<()>,
        mpsc::Receiver<std::thread::ThreadId>,
        CancellationToken,
    ) {
        let (started_tx, started) = mpsc::channel();
        let (open, gate) = mpsc::channel();
        let (released_tx, released_on) = mpsc::channel();
        let cancel = hub.attach(Arc::new(Blocking {
            started: Mutex::new(started_tx),
            gate: Mutex::new(gate),
            _released: Released(released_tx),
        }));
        (started, open, released_on, cancel)
    }

    #[test]
    fn a_release_waits_out_a_callback_in_progress_then_no_callback_starts_and_the_listener_is_released_on_its_thread(
    ) {
        let hub = Hub::new(ConnectionState::Idle, 16);
        let (started, open, released_on, _cancel) = attach_blocking(&hub);
        // The listener is in its first callback (the snapshot), blocked; an event waits.
        assert_eq!(
            started.recv_timeout(WAIT),
            Ok(changed(None, ConnectionState::Idle))
        );
        hub.publish(rtt(1));

        let (returned_tx, returned) = mpsc::channel();
        let releaser = {
            let hub = hub.clone();
            std::thread::spawn(move || {
                hub.release_listeners();
                // What has happened by the time the release returns.
                let _ = returned_tx.send(std::thread::current().id());
            })
        };
        // The release waits for the callback: it has not returned, nor released the listener.
        assert_eq!(
            returned.recv_timeout(Duration::from_millis(200)),
            Err(mpsc::RecvTimeoutError::Timeout),
            "the release returned while a callback was in progress"
        );
        assert!(released_on.try_recv().is_err());
        open.send(()).expect("the listener waits at its gate");
        let releasing = returned.recv_timeout(WAIT).expect("the release returns");
        // By then the listener was released, on the releasing thread, not the listener's.
        assert_eq!(released_on.try_recv(), Ok(releasing));
        releaser.join().expect("the releaser");
        // The queued event never started a callback: the listener is gone and told nothing.
        assert_eq!(
            started.recv_timeout(WAIT),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn a_release_waits_for_a_stuck_callback_for_a_bounded_time_then_goes_on() {
        // A callback that waits for the releasing thread (here: for a gate only the test opens
        // after the release returned) must not deadlock the release.
        let hub = Hub::new(ConnectionState::Idle, 16);
        let (started, open, released_on, _cancel) = attach_blocking(&hub);
        assert!(started.recv_timeout(WAIT).is_ok());
        let began = std::time::Instant::now();
        hub.release_listeners();
        let waited = began.elapsed();
        assert!(waited >= RELEASE_WAIT, "released after {waited:?}");
        assert!(waited < WAIT, "released after {waited:?}");
        // The stuck callback still holds its listener; it is released by the listener's
        // thread once the callback returns, and nothing else is delivered.
        assert!(released_on.try_recv().is_err());
        open.send(()).expect("the listener waits at its gate");
        let released = released_on
            .recv_timeout(WAIT)
            .expect("the listener is released");
        assert_ne!(released, std::thread::current().id());
        assert_eq!(
            started.recv_timeout(WAIT),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
    }

    /// Releases the hub from inside its first callback, as a client released by its own
    /// listener is.
    struct ReleasesFromInside {
        hub: Mutex<Option<Arc<Hub>>>,
        done: Mutex<mpsc::Sender<std::thread::ThreadId>>,
        _released: Released,
    }

    impl ClientListener for ReleasesFromInside {
        fn on_event(&self, _: ClientEvent) -> Result<(), ListenerError> {
            let hub = self.hub.lock().ok().and_then(|mut h| h.take());
            if let Some(hub) = hub {
                hub.release_listeners();
                let _ = self
                    .done
                    .lock()
                    .map(|tx| tx.send(std::thread::current().id()));
            }
            Ok(())
        }
    }

    #[test]
    fn a_release_from_inside_a_callback_does_not_wait_for_itself() {
        let hub = Hub::new(ConnectionState::Idle, 16);
        let (done_tx, done) = mpsc::channel();
        let (released_tx, released_on) = mpsc::channel();
        let _cancel = hub.attach(Arc::new(ReleasesFromInside {
            hub: Mutex::new(Some(hub.clone())),
            done: Mutex::new(done_tx),
            _released: Released(released_tx),
        }));
        let callback = done.recv_timeout(WAIT).expect("the release returned");
        // Released once its callback returned: on its own thread, the releasing one.
        assert_eq!(released_on.recv_timeout(WAIT), Ok(callback));
    }

    /// A foreign listener whose release calls back into the library, as a foreign finaliser
    /// may: it adds a listener to the same hub.
    struct AddsOnRelease {
        hub: Arc<Hub>,
        done: mpsc::Sender<()>,
    }

    impl ClientListener for AddsOnRelease {
        fn on_event(&self, _: ClientEvent) -> Result<(), ListenerError> {
            Ok(())
        }
    }

    impl Drop for AddsOnRelease {
        fn drop(&mut self) {
            let (late, _rx) = probe(false, false);
            let _ = self.hub.attach(late);
            let _ = self.done.send(());
        }
    }

    #[test]
    fn no_listener_is_released_under_a_lock_of_the_hub() {
        let hub = Hub::new(ConnectionState::Idle, 16);
        let (done_tx, done) = mpsc::channel();
        // Released by `release_listeners`, then refused (added after it) and released at once:
        // each release re-enters the hub, which would deadlock under its lock.
        let _cancel = hub.attach(Arc::new(AddsOnRelease {
            hub: hub.clone(),
            done: done_tx.clone(),
        }));
        let worker = {
            let hub = hub.clone();
            std::thread::spawn(move || {
                hub.release_listeners();
                let refused = hub.attach(Arc::new(AddsOnRelease {
                    hub: hub.clone(),
                    done: done_tx,
                }));
                assert!(refused.is_cancelled());
            })
        };
        for what in ["released", "refused"] {
            assert_eq!(done.recv_timeout(WAIT), Ok(()), "{what}: deadlocked");
        }
        worker.join().expect("the worker");
    }

    /// Its release (a foreign finaliser) says when it starts, blocks until the gate opens (at
    /// most 5 s), then says which thread it ran on.
    struct SlowToRelease {
        dropping: mpsc::Sender<()>,
        gate: Mutex<mpsc::Receiver<()>>,
        released: mpsc::Sender<std::thread::ThreadId>,
    }

    impl ClientListener for SlowToRelease {
        fn on_event(&self, _: ClientEvent) -> Result<(), ListenerError> {
            Ok(())
        }
    }

    impl Drop for SlowToRelease {
        fn drop(&mut self) {
            let _ = self.dropping.send(());
            let _ = self.gate.lock().map(|g| g.recv_timeout(WAIT));
            let _ = self.released.send(std::thread::current().id());
        }
    }

    #[test]
    fn a_release_waits_for_a_listener_its_own_thread_is_releasing() {
        // A listener whose thread ended by itself (its handle cancelled, or the client shut)
        // is released by that thread. A release of the client meanwhile used to find no
        // listener left to wait for and return while the foreign release still ran on the
        // Rust thread (a Python finaliser waiting for the GIL the releasing thread holds).
        let hub = Hub::new(ConnectionState::Idle, 16);
        let (dropping_tx, dropping) = mpsc::channel();
        let (open, gate) = mpsc::channel();
        let (released_tx, released_on) = mpsc::channel();
        let cancel = hub.attach(Arc::new(SlowToRelease {
            dropping: dropping_tx,
            gate: Mutex::new(gate),
            released: released_tx,
        }));
        cancel.cancel();
        dropping
            .recv_timeout(WAIT)
            .expect("the listener thread releases its listener");
        let (returned_tx, returned) = mpsc::channel();
        let releaser = {
            let hub = hub.clone();
            std::thread::spawn(move || {
                hub.release_listeners();
                let _ = returned_tx.send(());
            })
        };
        assert_eq!(
            returned.recv_timeout(Duration::from_millis(200)),
            Err(mpsc::RecvTimeoutError::Timeout),
            "the release returned while a listener thread was releasing its listener"
        );
        open.send(()).expect("the release waits at its gate");
        returned.recv_timeout(WAIT).expect("the release returns");
        // By then the foreign release was over.
        assert!(released_on.try_recv().is_ok());
        releaser.join().expect("the releaser");
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
