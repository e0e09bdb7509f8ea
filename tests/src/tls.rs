//! A `wss://` echo server whose certificate is signed by a CA generated for the test, so
//! clients trust it only when given that CA.

use crate::listen::Listener;
use futures_util::{SinkExt, StreamExt};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

/// A running TLS WebSocket echo server; dropping it stops it and removes the CA file.
#[derive(Debug)]
pub struct TlsEchoServer {
    listener: Listener,
    ca_file: PathBuf,
}

impl TlsEchoServer {
    /// Generates a CA and a certificate for `localhost`/127.0.0.1, writes the CA PEM to a
    /// temporary file, and serves a WebSocket echo over TLS.
    pub async fn start() -> Result<TlsEchoServer, Box<dyn std::error::Error + Send + Sync>> {
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tether test CA");
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let key = rcgen::KeyPair::generate()?;
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        let cert = params.signed_by(&key, &issuer)?;

        let ca_file = std::env::temp_dir().join(format!(
            "tether-test-ca-{}-{}.pem",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::write(&ca_file, ca_cert.pem())?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = Listener::start(move |tcp| echo(acceptor.clone(), tcp)).await?;
        Ok(TlsEchoServer { listener, ca_file })
    }

    /// `wss://localhost:PORT/`.
    pub fn wss_url(&self) -> String {
        format!("wss://localhost:{}/", self.listener.addr().port())
    }

    /// The CA certificate (PEM) that signed the server's certificate.
    pub fn ca_file(&self) -> &std::path::Path {
        &self.ca_file
    }
}

impl Drop for TlsEchoServer {
    fn drop(&mut self) {
        // The listener stops itself and its connections as it is dropped.
        let _ = std::fs::remove_file(&self.ca_file);
    }
}

/// One connection: the TLS and WebSocket handshakes, then every data message echoed.
async fn echo(acceptor: TlsAcceptor, tcp: TcpStream) {
    let Ok(tls) = acceptor.accept(tcp).await else {
        return;
    };
    let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            return;
        }
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish()
}
