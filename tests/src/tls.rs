//! TLS servers (a `wss://` echo, or any protocol) whose certificate is signed by a CA
//! generated for the test, so clients trust them only when given that CA.

use crate::listen::Listener;
use futures_util::{SinkExt, StreamExt};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A running TLS server on 127.0.0.1 whose certificate (for `localhost` and 127.0.0.1) is
/// signed by a CA generated for it; dropping it stops it and removes the CA file.
#[derive(Debug)]
pub struct TlsServer {
    listener: Listener,
    ca_file: PathBuf,
}

impl TlsServer {
    /// Generates a CA and a certificate for `localhost`/127.0.0.1, writes the CA PEM to a
    /// temporary file, and hands each connection, once its TLS handshake is done, to `serve`.
    pub async fn start<F, Fut>(
        serve: F,
    ) -> Result<TlsServer, Box<dyn std::error::Error + Send + Sync>>
    where
        F: Fn(TlsStream<TcpStream>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
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
        let serve = Arc::new(serve);
        let listener = Listener::start(move |tcp| {
            let (acceptor, serve) = (acceptor.clone(), serve.clone());
            async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve(tls).await;
                }
            }
        })
        .await?;
        Ok(TlsServer { listener, ca_file })
    }

    /// The listening address (127.0.0.1).
    pub fn addr(&self) -> std::net::SocketAddr {
        self.listener.addr()
    }

    /// The CA certificate (PEM) that signed the server's certificate.
    pub fn ca_file(&self) -> &std::path::Path {
        &self.ca_file
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        // The listener stops itself and its connections as it is dropped.
        let _ = std::fs::remove_file(&self.ca_file);
    }
}

/// A running TLS WebSocket echo server; dropping it stops it and removes the CA file.
#[derive(Debug)]
pub struct TlsEchoServer {
    server: TlsServer,
}

impl TlsEchoServer {
    /// Generates a CA and a certificate for `localhost`/127.0.0.1, writes the CA PEM to a
    /// temporary file, and serves a WebSocket echo over TLS.
    pub async fn start() -> Result<TlsEchoServer, Box<dyn std::error::Error + Send + Sync>> {
        let server = TlsServer::start(echo).await?;
        Ok(TlsEchoServer { server })
    }

    /// `wss://localhost:PORT/`.
    pub fn wss_url(&self) -> String {
        format!("wss://localhost:{}/", self.server.addr().port())
    }

    /// The CA certificate (PEM) that signed the server's certificate.
    pub fn ca_file(&self) -> &std::path::Path {
        self.server.ca_file()
    }
}

/// One connection: the WebSocket handshake, then every data message echoed.
async fn echo(tls: TlsStream<TcpStream>) {
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
