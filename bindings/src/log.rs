//! The library's own log (the `tracing` events of `tether` and of these bindings) handed to
//! the app: [`set_log_sink`] with a foreign [`LogSink`], so an Android app can send it to
//! Logcat, an iOS app to `os_log`, a Python app to `logging`.
//!
//! ```text
//!  any thread: tracing event ──ForeignLayer (level check, format)──try_send──▶ bounded queue ──▶ "tether-log" thread ──▶ LogSink.log
//! ```
//!
//! The same rules as the event listeners (`dispatch`): foreign code never runs on the thread
//! that logged (which may be a runtime worker holding the engine's lock), only on a dedicated
//! thread; a sink that is slow loses records instead of stalling the client (the queue holds
//! [`QUEUE`] records, and the next record delivered after a loss says how many were dropped);
//! an exception thrown by the sink is contained.
//!
//! Nothing is installed until the first `set_log_sink`: until then `tracing` has no subscriber
//! and logging costs a relaxed atomic load per callsite. Then a global subscriber is installed
//! once; if the process already has one (another Rust library in the app installed its own),
//! `set_log_sink` reports it instead of silently logging nowhere.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use crate::foreign_slot::{ForeignSlot, RELEASE_WAIT};

/// Records waiting for a slow sink before new ones are dropped.
const QUEUE: usize = 1024;

/// How much the app wants to hear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum LogLevel {
    /// Something failed that the library could not handle.
    Error,
    /// Something unexpected the library handled (an engine error, a listener that threw).
    Warn,
    /// Connection lifecycle: state changes, scheduled reconnects.
    Info,
    /// Transport detail: each attempt opened, each transport closed.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    fn rank(self) -> u8 {
        match self {
            LogLevel::Error => 1,
            LogLevel::Warn => 2,
            LogLevel::Info => 3,
            LogLevel::Debug => 4,
            LogLevel::Trace => 5,
        }
    }

    fn of(level: &Level) -> LogLevel {
        match *level {
            Level::ERROR => LogLevel::Error,
            Level::WARN => LogLevel::Warn,
            Level::INFO => LogLevel::Info,
            Level::DEBUG => LogLevel::Debug,
            _ => LogLevel::Trace,
        }
    }
}

/// One log record.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct LogRecord {
    /// Its level.
    pub level: LogLevel,
    /// Where it comes from, e.g. `tether::driver`.
    pub target: String,
    /// The message followed by its fields, e.g. `reconnect scheduled attempt=2 delay_ms=840`,
    /// and the client's URL (`url=…`) from the span it was logged in.
    pub message: String,
    /// Records dropped just before this one because the sink did not keep up (normally 0).
    pub dropped_before: u64,
}

/// Receives the library's log records, in order, on a thread of its own ("tether-log"). Keep
/// `log` quick: a sink that falls more than 1,024 records behind loses the newest ones (the
/// next record delivered says how many). An exception thrown from `log` is contained.
#[uniffi::export(foreign)]
pub trait LogSink: Send + Sync {
    /// One record. Any exception it throws is contained.
    fn log(&self, record: LogRecord) -> Result<(), crate::listener::ListenerError>;
}

/// Why [`set_log_sink`] could not install the bridge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
#[uniffi::export(Display)]
pub enum LogError {
    /// The process already has a global `tracing` subscriber (installed by other Rust code):
    /// the library's records go to it.
    #[error("{reason}")]
    SubscriberAlreadySet {
        /// `another tracing subscriber is already installed in this process`. (A field so that
        /// Python's `str(e)` and Kotlin's `message`, which UniFFI builds from the fields, say it.)
        reason: String,
    },
    /// The delivery thread could not be started.
    #[error("cannot start the log thread: {reason}")]
    ThreadFailed {
        /// The OS error.
        reason: String,
    },
}

/// Sends the library's log records at `level` and more severe to `sink`, or stops sending with
/// a null sink. Replaces any earlier sink, which gets no record after this returns, not even
/// one queued for it, and is released here, on the calling thread: a record being delivered to
/// it on the log thread is waited for, up to 1 s (not when called from inside
/// `log`). So once `setLogSink(null, …)` returns, no library thread calls into or holds the app's
/// sink (what a Python interpreter about to finalise needs: a thread that calls into it then
/// aborts the process). Call it early, e.g. in `Application.onCreate`.
#[uniffi::export]
pub fn set_log_sink(sink: Option<Arc<dyn LogSink>>, level: LogLevel) -> Result<(), LogError> {
    let bridge = bridge()?;
    let mut current = bridge.sender.lock().unwrap_or_else(|p| p.into_inner());
    bridge.level.store(0, Ordering::Relaxed);
    // Dropping the old sender ends the old thread once it wakes; the old sink is taken from it
    // below, outside this lock.
    let old = current.take();
    let installed = match sink {
        None => Ok(()),
        Some(sink) => {
            let (tx, rx) = sync_channel(QUEUE);
            let slot = Arc::new(SinkSlot::new(sink));
            let delivering = slot.clone();
            match std::thread::Builder::new()
                .name("tether-log".to_owned())
                .spawn(move || deliver(rx, &delivering))
            {
                Ok(_) => {
                    *current = Some(Delivery { tx, slot });
                    bridge.level.store(level.rank(), Ordering::Relaxed);
                    Ok(())
                }
                Err(e) => {
                    // The closure, and its reference to the slot, are gone: the sink is
                    // released below, on this thread, with no lock held.
                    Err((
                        LogError::ThreadFailed {
                            reason: e.to_string(),
                        },
                        slot,
                    ))
                }
            }
        }
    };
    // Not held while waiting for the old sink: every thread that logs takes this lock.
    drop(current);
    let installed = installed.map_err(|(e, slot)| {
        drop(slot.take());
        e
    });
    if let Some(old) = old {
        release(&old.slot);
    }
    installed
}

/// The current sink's queue, and the sink as its thread holds it.
struct Delivery {
    tx: SyncSender<LogRecord>,
    slot: Arc<SinkSlot>,
}

/// The app's sink, which the log thread takes a reference to for one record at a time, and
/// which [`set_log_sink`] takes away (waiting for the record in progress).
type SinkSlot = ForeignSlot<Arc<dyn LogSink>>;

/// Takes the sink away, waits for a record in progress on another thread (up to
/// [`RELEASE_WAIT`]), and releases the sink on this thread. Past the wait, the log thread
/// releases its own reference when the record returns.
fn release(slot: &SinkSlot) {
    let sink = slot.take();
    if slot.wait_for_call(std::time::Instant::now() + RELEASE_WAIT) {
        // To the new sink, if any (the bridge's lock is not held here).
        tracing::warn!(
            "the log sink was replaced while it handled a record for more than {} ms; it \
             is released when that call returns",
            RELEASE_WAIT.as_millis()
        );
    }
    // Outside the lock: a foreign release may run foreign code.
    drop(sink);
}

/// The installed bridge: the current sink's queue and the level it wants (0: none).
struct Bridge {
    sender: Mutex<Option<Delivery>>,
    level: AtomicU8,
    dropped: AtomicU64,
}

static BRIDGE: OnceLock<Result<Arc<Bridge>, LogError>> = OnceLock::new();

/// The bridge, installing the global subscriber the first time.
fn bridge() -> Result<&'static Arc<Bridge>, LogError> {
    BRIDGE
        .get_or_init(|| {
            let bridge = Arc::new(Bridge {
                sender: Mutex::new(None),
                level: AtomicU8::new(0),
                dropped: AtomicU64::new(0),
            });
            let layer = ForeignLayer(bridge.clone());
            let subscriber = tracing_subscriber::registry().with(layer);
            tracing::subscriber::set_global_default(subscriber).map_err(|_| {
                LogError::SubscriberAlreadySet {
                    reason: "another tracing subscriber is already installed in this process"
                        .to_owned(),
                }
            })?;
            Ok(bridge)
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn deliver(rx: Receiver<LogRecord>, slot: &SinkSlot) {
    for record in rx {
        // A thrower (or a panic in UniFFI's lifting) loses this record only.
        let called = slot.call(
            |sink| Some(sink.clone()),
            |sink| {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink.log(record)));
            },
        );
        if !called {
            return; // replaced: nothing more for it, not even what was queued
        }
    }
}

/// The `tracing` layer: filters by the sink's level, formats, queues without waiting.
struct ForeignLayer(Arc<Bridge>);

impl<S> Layer<S> for ForeignLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    /// Asked again at every event: the level can change at any time (the default would cache
    /// "never" for every callsite seen before the first sink was set).
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        LogLevel::of(metadata.level()).rank() <= self.0.level.load(Ordering::Relaxed)
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        // A span's fields (the client's URL) are kept with it, to be added to its records.
        let mut fields = Fields(String::new());
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let bridge = &self.0;
        // Formatted before taking the lock: a field's Debug impl that logs must not find it held.
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(span_fields) = span.extensions().get::<Fields>() {
                    fields.0.push_str(&span_fields.0);
                }
            }
        }
        let record = LogRecord {
            level: LogLevel::of(event.metadata().level()),
            target: event.metadata().target().to_owned(),
            message: fields.0.trim_start().to_owned(),
            dropped_before: bridge.dropped.swap(0, Ordering::Relaxed),
        };
        let sender = bridge.sender.lock().unwrap_or_else(|p| p.into_inner());
        let Some(Delivery { tx, .. }) = sender.as_ref() else {
            return; // the sink was removed meanwhile
        };
        if let Err(TrySendError::Full(r) | TrySendError::Disconnected(r)) = tx.try_send(record) {
            bridge
                .dropped
                .fetch_add(r.dropped_before + 1, Ordering::Relaxed);
        }
    }
}

/// `message key=value key=value`, as the fields are visited.
struct Fields(String);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.insert_str(0, &format!("{value:?}"));
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}
