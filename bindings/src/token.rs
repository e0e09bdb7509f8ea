//! [`TokenProvider`]: the app's credential source, asked before every connection attempt.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

/// Supplies a credential for each connection attempt, so a reconnect always carries a fresh
/// token. Implemented by the app (Kotlin `suspend fun`, Swift `async`, Python `async def`).
///
/// `refresh` is true when the server refused the previous token: do not return a cached one.
/// The call counts against `connectTimeoutMs`. A provider that throws fails that attempt
/// (reported as `DisconnectCause.TokenUnavailable` with its error); one that never answers
/// fails it at the connect timeout (reported as `DisconnectCause.ConnectTimeout`, as a
/// handshake that hangs is: in Python, what a provider looks like whose event loop was never
/// set with `uniffi_set_event_loop`). Either way the client retries with backoff. The provider is never called while the client holds a lock, and a slow provider
/// delays only the attempt it serves.
#[uniffi::export(foreign)]
#[async_trait::async_trait]
pub trait TokenProvider: Send + Sync {
    /// Returns the token for the next attempt.
    async fn token(&self, refresh: bool) -> Result<String, TokenError>;
}

/// Why the token provider has no token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum TokenError {
    /// No token now (signed out, offline, the auth server failed). The attempt fails and is
    /// retried with backoff.
    #[error("token unavailable: {reason}")]
    Unavailable {
        /// Why, for logs and `DisconnectCause.TokenUnavailable`.
        reason: String,
    },
}

/// An exception the provider threw that is not a `TokenError` still only fails the attempt.
impl From<uniffi::UnexpectedUniFFICallbackError> for TokenError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        TokenError::Unavailable { reason: e.reason }
    }
}

/// The app's provider and the token fetch it is running, shared by the client task (which
/// asks for tokens and polls the fetch) and the `Client` object, which takes both away when the
/// app releases the client. They are then released on the app's thread, not later by the
/// client task on a runtime thread (which a Python interpreter that is finalising does not
/// survive): a fetch left running would hold the provider, and UniFFI's foreign future, until
/// the task dropped it.
#[derive(Clone, Default)]
pub(crate) struct TokenSlot(Arc<Mutex<Slot>>);

#[derive(Default)]
struct Slot {
    provider: Option<Arc<dyn TokenProvider>>,
    /// The fetches the client task awaits (normally one), each with its number. One is out
    /// of the list only while the task polls it, without the lock: a foreign call may wait for
    /// the interpreter's lock, which the releasing thread may hold while it waits for this one.
    fetches: Vec<(u64, tether::TokenFuture)>,
    next: u64,
}

impl std::fmt::Debug for TokenSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSlot")
    }
}

/// What the client task's fetch gets once the client was released.
const RELEASED: &str = "the client was released";

impl TokenSlot {
    pub(crate) fn new(provider: Arc<dyn TokenProvider>) -> Self {
        TokenSlot(Arc::new(Mutex::new(Slot {
            provider: Some(provider),
            ..Slot::default()
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the provider and the fetches away and releases them on the calling thread. A
    /// fetch the client task is polling at this very moment is dropped by it when that poll
    /// returns.
    pub(crate) fn release(&self) {
        let (provider, fetches) = {
            let mut slot = self.lock();
            (slot.provider.take(), std::mem::take(&mut slot.fetches))
        };
        drop(fetches);
        drop(provider);
    }

    /// Starts a fetch; its number, or none once released.
    fn start(&self, refresh: bool) -> Option<u64> {
        let mut slot = self.lock();
        let provider = slot.provider.clone()?;
        slot.next += 1;
        let n = slot.next;
        // The foreign call starts when the client task first polls this, after it has
        // released the engine lock.
        slot.fetches.push((
            n,
            Box::pin(async move {
                provider
                    .token(refresh)
                    .await
                    .map_err(|TokenError::Unavailable { reason }| reason)
            }),
        ));
        Some(n)
    }

    fn take(&self, n: u64) -> Option<tether::TokenFuture> {
        let mut slot = self.lock();
        let i = slot.fetches.iter().position(|(m, _)| *m == n)?;
        Some(slot.fetches.swap_remove(i).1)
    }

    /// Polls fetch number `n` outside the lock, and puts it back while it is pending.
    fn poll(&self, n: u64, cx: &mut Context<'_>) -> Poll<Result<String, String>> {
        let Some(mut fetch) = self.take(n) else {
            return Poll::Ready(Err(RELEASED.to_owned()));
        };
        let polled = fetch.as_mut().poll(cx);
        if polled.is_pending() {
            let mut slot = self.lock();
            // A fetch is only started with a provider, which only `release` takes away.
            if slot.provider.is_none() {
                // Released while it was polled: over (and dropped here, the one case).
                drop(slot);
                return Poll::Ready(Err(RELEASED.to_owned()));
            }
            slot.fetches.push((n, fetch));
        }
        polled
    }
}

/// The client task's side of a fetch: polls it through the slot, and ends it when dropped
/// (where the task drops a fetch it no longer awaits, as it would drop the fetch itself).
struct Fetch {
    slot: TokenSlot,
    n: u64,
}

impl Future for Fetch {
    type Output = Result<String, String>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.slot.poll(self.n, cx)
    }
}

impl Drop for Fetch {
    fn drop(&mut self) {
        drop(self.slot.take(self.n));
    }
}

/// Adapts the foreign provider to the `tether` crate's provider trait.
pub(crate) struct ForeignTokens(pub(crate) TokenSlot);

impl tether::TokenProvider for ForeignTokens {
    fn token(&self, refresh: bool) -> tether::TokenFuture {
        let slot = self.0.clone();
        match slot.start(refresh) {
            Some(n) => Box::pin(Fetch { slot, n }),
            None => Box::pin(std::future::ready(Err(RELEASED.to_owned()))),
        }
    }
}
