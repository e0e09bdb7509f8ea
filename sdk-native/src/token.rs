//! The app's token provider: an async callback asked before every connection attempt.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The future a provider returns: the token, or a description of why there is none.
pub type TokenFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// Supplies a credential for each connection attempt. `refresh` is true when the server
/// refused the previous token, so a cached one must not be returned.
///
/// A provider that panics, when called or while its future is polled, fails that attempt as
/// an error would (`"token provider panicked"`): the client reports it and retries with
/// backoff, and the client's task runs on.
///
/// Any `Fn(bool) -> impl Future<Output = Result<String, E: Display>>` is a provider:
///
/// ```
/// use tether::TokenProvider;
/// fn assert_provider(_: impl TokenProvider) {}
/// assert_provider(|refresh: bool| async move {
///     Ok::<_, std::io::Error>(if refresh { "new".to_owned() } else { "cached".to_owned() })
/// });
/// ```
pub trait TokenProvider: Send + Sync + 'static {
    /// Fetches a token.
    fn token(&self, refresh: bool) -> TokenFuture;
}

impl<F, Fut, E> TokenProvider for F
where
    F: Fn(bool) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, E>> + Send + 'static,
    E: Display,
{
    fn token(&self, refresh: bool) -> TokenFuture {
        let fut = self(refresh);
        Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
    }
}

pub(crate) type BoxTokenProvider = Arc<dyn TokenProvider>;
