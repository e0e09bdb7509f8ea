//! [`ClientListener`] and [`DocumentListener`] (implemented by the app) and
//! [`ListenerHandle`] (what `Client.addListener` and `Document.addListener` return). The
//! machinery between them is in `dispatch`.

use tokio_util::sync::CancellationToken;

use crate::document_event::DocumentEvent;
use crate::event::ClientEvent;

/// Receives the client's events, in order, on a thread of its own (one per listener, never a
/// thread of the client). The first event is always a `StateChanged` snapshot with
/// `previous = null`, then every event as it happens.
///
/// Keep `onEvent` quick: post to your UI thread or your own queue. A listener that is slow
/// never stalls the connection; it falls behind, and once more than `listenerQueueCapacity`
/// events wait for it the oldest are skipped and it receives `Lagged(missed)` followed by a
/// fresh state snapshot. An exception thrown from `onEvent` is caught, counted in
/// `ClientStats.listenerFailures`, and the next event is delivered as usual.
#[uniffi::export(foreign)]
pub trait ClientListener: Send + Sync {
    /// One event. Any exception it throws is contained (see [`ListenerError`]).
    fn on_event(&self, event: ClientEvent) -> Result<(), ListenerError>;
}

/// Receives one shared document's events, in order, on a thread of its own (one per listener,
/// never a thread of the client). The first event is always a `Snapshot` of the whole
/// document, then every event as it happens.
///
/// The same guarantees as [`ClientListener`]: keep `onEvent` quick; a slow listener never
/// stalls the client or other listeners, it falls behind, and once more than 256 events wait
/// for it the oldest are skipped and it receives `Lagged(missed)` followed by a fresh
/// `Snapshot`. An exception thrown from `onEvent` is caught, counted in
/// `ClientStats.listenerFailures`, and the next event is delivered as usual.
#[uniffi::export(foreign)]
pub trait DocumentListener: Send + Sync {
    /// One event. Any exception it throws is contained (see [`ListenerError`]).
    fn on_event(&self, event: DocumentEvent) -> Result<(), ListenerError>;
}

/// What a listener's exception becomes on the Rust side.
///
/// `onEvent` is declared fallible so that an exception crosses the FFI as a value: without an
/// error type UniFFI turns a foreign exception into a Rust panic, which an app built with
/// `panic = "abort"` (common for mobile release builds) could not survive. Apps never need to
/// throw this themselves; any exception is converted into it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum ListenerError {
    /// The listener threw.
    #[error("the listener threw: {reason}")]
    Threw {
        /// The exception, as text.
        reason: String,
    },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for ListenerError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        ListenerError::Threw { reason: e.reason }
    }
}

/// Controls a listener: `cancel()` stops it. Releasing the handle does not (so an app that
/// ignores the return value of `addListener`, or whose handle is garbage-collected, keeps
/// receiving events): a listener lives until `cancel()`, until its document is closed
/// (`closeDocument()`), or until the client shuts down or is released.
#[derive(Debug, uniffi::Object)]
pub struct ListenerHandle {
    cancel: CancellationToken,
}

impl ListenerHandle {
    pub(crate) fn new(cancel: CancellationToken) -> Self {
        ListenerHandle { cancel }
    }
}

#[uniffi::export]
impl ListenerHandle {
    /// Stops the listener. Returns at once, from any thread (also from inside `onEvent`),
    /// without waiting for a callback in progress. At most one event the listener's thread was
    /// already handing over may still arrive after this returns; none after that. Idempotent.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Whether the listener is stopped: `cancel()` was called, or it ended with its document
    /// (`closeDocument()`) or its client (`shutdown()`, or released).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}
