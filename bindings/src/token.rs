//! [`TokenProvider`]: the app's credential source, asked before every connection attempt.

use std::sync::{Arc, Mutex, PoisonError};

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

/// The app's provider, shared by the client task (which asks it for tokens) and the `Client`
/// object, which takes it away when the app releases the client: it is then released on the
/// app's thread, not later by the client task on a runtime thread (which a Python interpreter
/// that is finalising does not survive).
#[derive(Clone, Default)]
pub(crate) struct TokenSlot(Arc<Mutex<Option<Arc<dyn TokenProvider>>>>);

impl std::fmt::Debug for TokenSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSlot")
    }
}

impl TokenSlot {
    pub(crate) fn new(provider: Arc<dyn TokenProvider>) -> Self {
        TokenSlot(Arc::new(Mutex::new(Some(provider))))
    }

    fn get(&self) -> Option<Arc<dyn TokenProvider>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Takes the provider away and releases it on the calling thread. A token fetch already
    /// running keeps its own reference until it ends; later attempts get no token.
    pub(crate) fn release(&self) {
        let provider = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        drop(provider);
    }
}

/// Adapts the foreign provider to the `tether` crate's provider trait.
pub(crate) struct ForeignTokens(pub(crate) TokenSlot);

impl tether::TokenProvider for ForeignTokens {
    fn token(&self, refresh: bool) -> tether::TokenFuture {
        let provider = self.0.get();
        // The foreign call starts when the client task first polls this future, after it has
        // released the engine lock.
        Box::pin(async move {
            let Some(provider) = provider else {
                return Err("the client was released".to_owned());
            };
            provider
                .token(refresh)
                .await
                .map_err(|TokenError::Unavailable { reason }| reason)
        })
    }
}
