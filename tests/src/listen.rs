//! The accept loop the test servers here share: a listener on an ephemeral loopback port
//! that gives every connection its own task, and stops them all, and itself, when dropped.

use std::future::Future;
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// A running accept loop; dropping it stops it and its connections.
#[derive(Debug)]
pub struct Listener {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// Listens on 127.0.0.1 and runs `serve` for each connection in its own task.
    pub async fn start<F, Fut>(mut serve: F) -> std::io::Result<Listener>
    where
        F: FnMut(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            // Dropped with the accept task: every connection ends with the listener.
            let mut connections = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                connections.spawn(serve(tcp));
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(Listener { addr, task })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}
