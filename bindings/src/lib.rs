//! # tether-ffi: the tether client for Kotlin (Android), Swift (iOS) and Python
//!
//! UniFFI bindings over the `tether` crate. The core (`tether-core`) and the tokio driver
//! (`tether`) know nothing of UniFFI: every type here mirrors one of theirs through a `From`
//! impl, one file per exported concept:
//!
//! | file | exports |
//! |---|---|
//! | `config.rs` | `ClientConfig` (chainable builder), `WireProtocol`, `Jitter`, `HeartbeatMode`, `OverflowPolicy`, `TokenPlacement`, `Disposition` |
//! | `client.rs` | `Client`: connect, send/publish, acked sends and requests (async), channels, presence, documents, close and shutdown, network and lifecycle hooks, state, stats |
//! | `options.rs` | `SendOptions` (per-message ack, TTL and ack timeout) |
//! | `document.rs` | `Document` (a shared document: get, snapshot, set, delete, increment, insert, change, listeners), `DocumentOp` |
//! | `document_event.rs` | `DocumentEvent`, `ChangeOrigin`, `KeyChange` |
//! | `listener.rs` | `ClientListener`, `DocumentListener` (foreign traits), `ListenerHandle` (`cancel()`), `ListenerError` |
//! | `event.rs` | `ClientEvent`, `DisconnectCause`, `DropReason`, `Payload`, `InboundMessage`, `EngineIssue` |
//! | `state.rs` | `ConnectionState`, `CloseReason` |
//! | `token.rs` | `TokenProvider` (async foreign trait), `TokenError` |
//! | `log.rs` | `setLogSink`, `LogSink` (foreign trait), `LogRecord`, `LogLevel`, `LogError`: the library's log for Logcat / os_log / `logging` |
//! | `error.rs` | `ClientError`, `SizeLimit` (which limit `TooLarge` exceeds), `Unacked` (what `AckTimedOut` found) |
//! | `stats.rs` | `ClientStats` |
//!
//! Internals: `runtime.rs` (the library's lazily started tokio runtime), `wake_fence.rs` (an
//! awaited call returns only once the thread that woke it has left the foreign language),
//! `dispatch.rs` (how events reach foreign listeners without foreign code ever stalling or
//! crashing the client) and `foreign_slot.rs` (a listener or the log sink, released on the
//! app's thread once no library thread is calling it). See bindings/README.md for building the Android and iOS libraries and for usage.

mod client;
mod config;
mod dispatch;
mod document;
mod document_event;
mod error;
mod event;
mod foreign_slot;
mod listener;
mod log;
mod options;
mod runtime;
mod state;
mod stats;
mod token;
mod wake_fence;

pub use client::Client;
pub use config::{
    ClientConfig, Disposition, HeartbeatMode, Jitter, OverflowPolicy, TokenPlacement, WireProtocol,
};
pub use document::{Document, DocumentOp};
pub use document_event::{ChangeOrigin, DocumentEvent, KeyChange};
pub use error::{ClientError, SizeLimit, Unacked};
pub use event::{
    ClientEvent, DisconnectCause, DropReason, EngineIssue, InboundMessage, Payload, PayloadBytes,
};
pub use listener::{ClientListener, DocumentListener, ListenerError, ListenerHandle};
pub use log::{set_log_sink, LogError, LogLevel, LogRecord, LogSink};
pub use options::SendOptions;
pub use state::{CloseReason, ConnectionState};
pub use stats::ClientStats;
pub use token::{TokenError, TokenProvider};

uniffi::setup_scaffolding!();

/// The version of the tether SDK these bindings were built from, e.g. for a support log.
#[uniffi::export]
pub fn sdk_version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}
