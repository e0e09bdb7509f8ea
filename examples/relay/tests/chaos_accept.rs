//! The chaos proxy keeps accepting after a failed `accept()`. Its own test binary, as it
//! lowers the process's file-descriptor limit (`RLIMIT_NOFILE`) to make `accept()` fail with
//! EMFILE, the usual way it fails, which would break any test running beside it.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use tether_relay::chaos::ChaosProxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The soft `RLIMIT_NOFILE`, and the hard one kept as it is.
fn fd_limits() -> (libc::rlim_t, libc::rlim_t) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given, which lives for the call.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(rc, 0, "getrlimit: {}", std::io::Error::last_os_error());
    (limit.rlim_cur, limit.rlim_max)
}

fn set_soft_fd_limit(soft: libc::rlim_t) {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: fd_limits().1,
    };
    // SAFETY: setrlimit only reads the struct it is given, which lives for the call.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

/// A round trip of `ping` through the proxy on `stream`, bounded.
fn echoes(mut stream: TcpStream) -> std::io::Result<bool> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"ping")?;
    let mut got = [0u8; 4];
    stream.read_exact(&mut got)?;
    Ok(&got == b"ping")
}

/// One failed `accept()` (out of file descriptors) ended the proxy's accept task: its
/// listener was dropped, and with it every proxied connection, silently. It now logs the
/// error, pauses briefly and accepts again once descriptors are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_chaos_proxy_keeps_accepting_after_a_failed_accept() {
    // An echo server upstream.
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let echo = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = upstream.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n @ 1..) = socket.read(&mut buf).await {
                    if socket.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let proxy = ChaosProxy::start(upstream_addr).await.unwrap();
    let proxy_addr: SocketAddr = proxy.addr();

    // The client's socket exists before the limit drops, so its connect needs no new
    // descriptor; the proxy's accept of it does, one at or above the limit: EMFILE.
    let client = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let (soft, _) = fd_limits();
    let lowest_free = std::fs::File::open("/dev/null").unwrap();
    let lowest_free =
        libc::rlim_t::try_from(std::os::fd::AsRawFd::as_raw_fd(&lowest_free)).unwrap();
    set_soft_fd_limit(lowest_free);
    let connected = client.connect(&proxy_addr.into());
    // Long enough for the proxy to try (and fail) a few times.
    tokio::time::sleep(Duration::from_millis(300)).await;
    set_soft_fd_limit(soft);
    connected.unwrap();
    assert_eq!(proxy.accepted(), 0, "no accept could have succeeded");

    // The connection that waited is proxied once descriptors are free, and so is a new one.
    let waited: TcpStream = client.into();
    let fresh = TcpStream::connect(proxy_addr);
    let (waited, fresh) =
        tokio::task::spawn_blocking(move || (echoes(waited), fresh.and_then(echoes)))
            .await
            .unwrap();
    assert!(
        matches!(waited, Ok(true)),
        "the waiting connection: {waited:?}"
    );
    assert!(matches!(fresh, Ok(true)), "a new connection: {fresh:?}");
    assert_eq!(proxy.accepted(), 2);
    drop(proxy);
    echo.abort();
}
