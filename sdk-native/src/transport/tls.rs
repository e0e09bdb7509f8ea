//! TLS trust: the web PKI roots plus any CA the app adds (self-hosted servers), prepared once
//! per client for both transports.

use crate::builder::{BuildError, NativeOptions};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::sync::Arc;

/// Extra trusted CAs, parsed once at build time so a bad file is a build error, not a
/// reconnect loop.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsRoots {
    extra: Vec<CertificateDer<'static>>,
}

impl TlsRoots {
    pub(crate) fn load(options: &NativeOptions) -> Result<Self, BuildError> {
        let mut roots = TlsRoots::default();
        let mut pems = options.ca_pems.clone();
        for path in &options.ca_files {
            let pem = std::fs::read(path)
                .map_err(|e| BuildError::Tls(format!("cannot read {}: {e}", path.display())))?;
            pems.push(pem);
        }
        for pem in pems {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| BuildError::Tls(format!("invalid PEM: {e}")))?;
            if certs.is_empty() {
                return Err(BuildError::Tls("no certificate in the PEM data".to_owned()));
            }
            roots.extra.extend(certs);
        }
        Ok(roots)
    }

    /// A rustls client config trusting the web PKI roots and the extra CAs.
    pub(crate) fn rustls_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let mut store = rustls::RootCertStore::empty();
        store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in &self.extra {
            store
                .add(cert.clone())
                .map_err(|e| format!("unusable CA certificate: {e}"))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    /// An HTTP client for SSE trusting the same roots (the certificates parsed by `load`,
    /// handed over as DER: the PEM text is read once), going through the proxies `proxy`
    /// names and no others (the same rule as the WebSocket link's).
    ///
    /// Without a pool of idle connections: clients that trust no extra CA share one HTTP
    /// client (`client::link_context`), and a pooled connection's task lives on the runtime
    /// that opened it, so a client on another runtime could send its request on a connection
    /// nothing drives any more and hang until the connect timeout. An event stream lives for
    /// minutes or hours, so reusing a connection after one ended saves nothing worth that.
    ///
    /// `connect_timeout` bounds the TCP connect, the proxy tunnel and the TLS handshake, as
    /// the engine's connect timeout bounds a WebSocket's: an event stream's attempt as a whole
    /// waits longer for its response head (`Config::open_timeout`, the heartbeat's silence
    /// limit), which a host that never answers a SYN or a ClientHello must not get.
    pub(crate) fn http_client(
        &self,
        proxy: &Arc<super::proxy::ProxyRule>,
        connect_timeout: std::time::Duration,
    ) -> Result<reqwest::Client, String> {
        let builder = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .connect_timeout(connect_timeout)
            // The SSE link follows the redirects it may itself (`sse::get_following`).
            .redirect(reqwest::redirect::Policy::none());
        let mut builder = proxy.apply(builder);
        for cert in &self.extra {
            let cert = reqwest::Certificate::from_der(cert).map_err(|e| e.to_string())?;
            builder = builder.add_root_certificate(cert);
        }
        builder.build().map_err(|e| e.to_string())
    }
}
