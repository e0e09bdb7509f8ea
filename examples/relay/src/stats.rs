//! Counters shared by every task, read through [`RelayHandle`](crate::RelayHandle) by tests,
//! benchmarks and the CLI.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug, Default)]
pub(crate) struct Stats {
    open_connections: AtomicUsize,
    messages_published: AtomicU64,
    websocket_writes: AtomicU64,
}

impl Stats {
    /// Counts a connection as open until the returned guard is dropped, however its task
    /// ends (including being aborted).
    pub(crate) fn connection_opened(self: &Arc<Self>) -> ConnectionGuard {
        self.open_connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self.clone())
    }

    pub(crate) fn message_published(&self) {
        self.messages_published.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn websocket_written(&self) {
        self.websocket_writes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn open_connections(&self) -> usize {
        self.open_connections.load(Ordering::Relaxed)
    }

    pub(crate) fn messages_published(&self) -> u64 {
        self.messages_published.load(Ordering::Relaxed)
    }

    pub(crate) fn websocket_writes(&self) -> u64 {
        self.websocket_writes.load(Ordering::Relaxed)
    }
}

/// Decrements the open-connection count on drop.
#[derive(Debug)]
pub(crate) struct ConnectionGuard(Arc<Stats>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}
