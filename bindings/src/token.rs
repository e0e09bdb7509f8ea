//! [`TokenProvider`]: the app's credential source, asked before every connection attempt.

use std::sync::Arc;

/// Supplies a credential for each connection attempt, so a reconnect always carries a fresh
/// token. Implemented by the app (Kotlin `suspend fun`, Swift `async`, Python `async def`).
///
/// `refresh` is true when the server refused the previous token: do not return a cached one.
/// The call counts against `connectTimeoutMs`; a provider that throws or never answers fails
/// that attempt (reported as `DisconnectCause.TokenUnavailable`) and the client retries with
/// backoff. The provider is never called while the client holds a lock, and a slow provider
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

/// Adapts the foreign provider to the `tether` crate's provider trait.
pub(crate) struct ForeignTokens(pub(crate) Arc<dyn TokenProvider>);

impl tether::TokenProvider for ForeignTokens {
    fn token(&self, refresh: bool) -> tether::TokenFuture {
        let provider = self.0.clone();
        // The foreign call starts when the client task first polls this future, after it has
        // released the engine lock.
        Box::pin(async move {
            provider
                .token(refresh)
                .await
                .map_err(|TokenError::Unavailable { reason }| reason)
        })
    }
}
