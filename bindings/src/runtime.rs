//! The library's own tokio runtime, started on first use.
//!
//! Mobile apps have no tokio runtime of their own, and UniFFI drives our async methods from
//! the foreign side's executor (Kotlin coroutines, Swift tasks, asyncio), which knows nothing
//! of tokio. So every client task, timer and socket lives on this one runtime, and async
//! methods hand their work to it and await the result ([`run`]), which makes tokio's timers
//! and I/O work whatever executor polls the outer future.

use std::future::Future;
use std::sync::OnceLock;
use tokio::runtime::{Builder, Runtime};
use tokio::task::JoinHandle;

use crate::wake_fence::fenced;

/// Two workers: a phone has few cores and a client is mostly idle; the work per event is tiny.
const WORKER_THREADS: usize = 2;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The shared runtime, built the first time any client is created.
pub(crate) fn runtime() -> &'static Runtime {
    RUNTIME.get_or_init(|| {
        Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("tether-ffi")
            .enable_all()
            .build()
            // Without threads or an epoll instance nothing in this library can work, and the
            // caller cannot do anything about it either: failing loudly is the honest answer.
            .unwrap_or_else(|e| panic!("tether-ffi: cannot start the tokio runtime: {e}"))
    })
}

/// Runs `future` on the library's runtime and waits for its output from whatever executor
/// polls the returned future. Dropping the returned future (a cancelled Kotlin coroutine or
/// asyncio task) aborts the spawned work, so cancellation reaches Rust. UniFFI 0.32's Swift
/// code drops it only once it completes: a cancelled Swift task does not reach here.
pub(crate) async fn run<F>(future: F) -> Option<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let task = AbortOnDrop(runtime().spawn(future));
    task.join().await
}

/// A task handle that aborts its task when dropped.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    /// `None` when the task panicked or the runtime shut down. Fenced: the foreign caller
    /// resumes only once the runtime thread that woke it has left the foreign language.
    async fn join(mut self) -> Option<T> {
        fenced(&mut self.0).await.ok()
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
