//! Opening the TCP connection under a WebSocket: every address the host resolves to, tried the
//! Happy Eyeballs way (RFC 8305), not one after another.
//!
//! One after another, a first address that drops packets (an IPv6 route that is broken, a
//! common fault of mobile and corporate networks) holds the attempt until the operating
//! system gives up, minutes later: the engine's connect timeout ends it first, and the next
//! attempt starts with the same address again, so the client never connects although the next
//! address works. Here the next address is tried when the previous one has failed or has not
//! connected within [`ATTEMPT_DELAY`] (the earlier attempts keep going), alternating address
//! families, and the first connection made wins. Browsers and reqwest (our SSE link) do the
//! same.

use futures_util::stream::{FuturesUnordered, StreamExt};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long an attempt has before the next address is tried alongside it (RFC 8305's
/// "Connection Attempt Delay": 250 ms recommended).
pub(crate) const ATTEMPT_DELAY: Duration = Duration::from_millis(250);
/// Attempts in flight at most: a host with dozens of addresses would otherwise get a socket
/// every 250 ms until the connect timeout (40 by default), multiplied by a storm's clients.
const MAX_IN_FLIGHT: usize = 4;

/// Resolves `host` and connects to the first of its addresses that answers.
pub(crate) async fn connect(host: &str, port: u16) -> io::Result<TcpStream> {
    let addrs = tokio::net::lookup_host((host, port)).await?.collect();
    connect_first(interleave(addrs), ATTEMPT_DELAY).await
}

/// The addresses with their families alternating, starting with the resolver's first choice
/// (RFC 8305 §4); each family keeps the resolver's order.
fn interleave(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return addrs;
    };
    let preferred = first.is_ipv6();
    let (mut ours, mut theirs): (Vec<_>, Vec<_>) =
        addrs.into_iter().partition(|a| a.is_ipv6() == preferred);
    let mut out = Vec::with_capacity(ours.len() + theirs.len());
    ours.reverse();
    theirs.reverse();
    while !ours.is_empty() || !theirs.is_empty() {
        out.extend(ours.pop());
        out.extend(theirs.pop());
    }
    out
}

/// Connects to the first of `addrs` to answer: an attempt per address, each started when an
/// attempt failed or after `attempt_delay` ([`ATTEMPT_DELAY`]; the tests choose others), the
/// earlier ones still running (at most [`MAX_IN_FLIGHT`]). The others are dropped (closed)
/// once one connects. All failed: the last error.
async fn connect_first(addrs: Vec<SocketAddr>, attempt_delay: Duration) -> io::Result<TcpStream> {
    let mut next = addrs.into_iter();
    let mut attempts = FuturesUnordered::new();
    let mut error = None;
    loop {
        if let Some(addr) = next.next() {
            attempts.push(TcpStream::connect(addr));
        }
        let more = next.len() > 0 && attempts.len() < MAX_IN_FLIGHT;
        let delay = tokio::time::sleep(attempt_delay);
        tokio::pin!(delay);
        // Until an attempt ends, or it is time for the next address. An attempt that ends as
        // the delay does comes first: no attempt is started only to be dropped.
        tokio::select! {
            biased;
            ended = attempts.next() => match ended {
                Some(Ok(stream)) => return Ok(stream),
                Some(Err(e)) => error = Some(e),
                None => {
                    let none = || io::Error::new(io::ErrorKind::NotFound, "no address to connect to");
                    return Err(error.unwrap_or_else(none));
                }
            },
            () = &mut delay, if more => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpSocket};

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn families_alternate_from_the_resolvers_first_choice() {
        let got = interleave(vec![
            addr("[::1]:1"),
            addr("[::2]:1"),
            addr("[::3]:1"),
            addr("10.0.0.1:1"),
        ]);
        let want = ["[::1]:1", "10.0.0.1:1", "[::2]:1", "[::3]:1"].map(addr);
        assert_eq!(got, want);
        let got = interleave(vec![
            addr("10.0.0.1:1"),
            addr("[::1]:1"),
            addr("10.0.0.2:1"),
        ]);
        assert_eq!(got, ["10.0.0.1:1", "[::1]:1", "10.0.0.2:1"].map(addr));
        assert_eq!(interleave(vec![]), []);
    }

    /// A loopback address whose SYNs are dropped, as on a broken route: a listener whose
    /// accept queue (backlog 1) is full, and the connections that fill it.
    async fn black_hole() -> (SocketAddr, TcpListener, Vec<TcpStream>) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(addr("127.0.0.1:0")).unwrap();
        let listener = socket.listen(1).unwrap();
        let at = listener.local_addr().unwrap();
        let mut held = Vec::new();
        for _ in 0..8 {
            match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(at)).await {
                Ok(Ok(stream)) => held.push(stream),
                _ => return (at, listener, held),
            }
        }
        panic!("the accept queue never filled");
    }

    #[tokio::test]
    async fn an_address_that_drops_packets_does_not_hold_up_the_next_one() {
        let (hole, _listener, _held) = black_hole().await;
        let good = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good_addr = good.local_addr().unwrap();
        let started = std::time::Instant::now();
        // One after another, this waits for the operating system's SYN retries (minutes).
        let stream = tokio::time::timeout(
            Duration::from_secs(10),
            connect_first(vec![hole, good_addr], ATTEMPT_DELAY),
        )
        .await
        .expect("held up by the first address")
        .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), good_addr);
        assert!(
            started.elapsed() >= ATTEMPT_DELAY,
            "the first address had its head start"
        );
    }

    #[tokio::test]
    async fn at_most_four_attempts_are_in_flight() {
        let (hole, _listener, _held) = black_hole().await;
        let good = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good_addr = good.local_addr().unwrap();
        let three_holes = vec![hole, hole, hole, good_addr];
        let stream = tokio::time::timeout(
            Duration::from_secs(10),
            connect_first(three_holes, ATTEMPT_DELAY),
        )
        .await
        .expect("the fourth address was tried")
        .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), good_addr);
        // Four attempts hang: the fifth address waits for one of them to end.
        let four_holes = vec![hole, hole, hole, hole, good_addr];
        let waited =
            tokio::time::timeout(ATTEMPT_DELAY * 8, connect_first(four_holes, ATTEMPT_DELAY)).await;
        assert!(waited.is_err(), "a fifth attempt was started");
    }

    #[tokio::test]
    async fn a_refused_address_passes_to_the_next_at_once_and_all_refused_is_an_error() {
        // A port nobody listens on: bound, then released.
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let good = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good_addr = good.local_addr().unwrap();
        // A delay no test waits out: had the refusal not started the next attempt, the
        // timeout would end the wait first.
        let never = Duration::from_secs(3_600);
        let stream = tokio::time::timeout(
            Duration::from_secs(10),
            connect_first(vec![closed, good_addr], never),
        )
        .await
        .expect("waited after a refusal")
        .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), good_addr);

        let err = connect_first(vec![closed, closed], never)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        let err = connect_first(vec![], never).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
