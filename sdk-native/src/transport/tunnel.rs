//! A WebSocket's TCP connection through an HTTP proxy: `CONNECT host:port`, the proxy's answer
//! read, and on a 2xx the `TcpStream` handed back for the TLS and WebSocket handshakes, exactly
//! as a direct connection (`transport/connect.rs`) is.
//!
//! The answer is read up to [`MAX_HEAD_BYTES`]: a proxy that never ends its head fails the
//! attempt, it does not grow memory. Time is bounded by the engine's connect timeout, which
//! covers the whole attempt (this future is dropped when it passes). Interim 1xx answers are
//! skipped; any final answer but a 2xx is
//! the proxy's refusal, reported as `TransportFailure::Proxy` with its status, so the engine
//! can tell it from the server's own answer (see `ClosePolicy::classify_proxy`).

use super::proxy::ProxyServer;
use std::time::Duration;
use tether_core::TransportFailure;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest proxy answer head read (status line and headers).
pub(crate) const MAX_HEAD_BYTES: usize = 8 * 1024;
/// The most headers the answer may have.
const MAX_HEADERS: usize = 64;

/// Opens a TCP connection to `host:port` through `proxy`. The proxy resolves `host`.
pub(crate) async fn open(
    proxy: &ProxyServer,
    host: &str,
    port: u16,
) -> Result<TcpStream, TransportFailure> {
    let io = |what: &str, e: &dyn std::fmt::Display| {
        TransportFailure::Io(format!("proxy {}: {what}: {e}", proxy.shown()))
    };
    let mut tcp = super::connect::connect(proxy.host(), proxy.port())
        .await
        .map_err(|e| io("cannot connect", &e))?;
    tcp.set_nodelay(true)
        .map_err(|e| io("cannot connect", &e))?;
    let request = connect_request(host, port, proxy.authorization());
    tcp.write_all(request.as_bytes())
        .await
        .map_err(|e| io("cannot send CONNECT", &e))?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        // Never more than MAX_HEAD_BYTES in all: each read is capped to what is left.
        let room = (MAX_HEAD_BYTES - head.len()).min(chunk.len());
        let n = tcp
            .read(&mut chunk[..room])
            .await
            .map_err(|e| io("reading its answer to CONNECT", &e))?;
        if n == 0 {
            return Err(TransportFailure::Io(format!(
                "proxy {}: closed the connection before answering CONNECT",
                proxy.shown()
            )));
        }
        head.extend_from_slice(&chunk[..n]);
        match parse_answer(&head).map_err(|e| io("bad answer to CONNECT", &e))? {
            Some(Answer { status, .. }) if (200..300).contains(&status) => return Ok(tcp),
            Some(Answer {
                status,
                retry_after,
            }) => {
                return Err(TransportFailure::Proxy {
                    status,
                    retry_after,
                })
            }
            None if head.len() >= MAX_HEAD_BYTES => {
                return Err(TransportFailure::Io(format!(
                    "proxy {}: its answer to CONNECT is longer than {MAX_HEAD_BYTES} bytes",
                    proxy.shown()
                )))
            }
            None => {}
        }
    }
}

/// `CONNECT host:port HTTP/1.1`, its `Host`, and the proxy's credentials if it has some. The
/// host comes from a parsed URL (no line breaks); an IPv6 address gets its brackets back.
fn connect_request(host: &str, port: u16, authorization: Option<&str>) -> String {
    let authority = match host.contains(':') {
        true => format!("[{host}]:{port}"),
        false => format!("{host}:{port}"),
    };
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(credentials) = authorization {
        request.push_str("Proxy-Authorization: ");
        request.push_str(credentials);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request
}

/// What the proxy answered.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
}

/// The proxy's answer, once its final head is complete (`None` until then). Interim 1xx
/// answers before it are skipped: RFC 9110 §15.2 has a client parse them even unasked (101
/// Switching Protocols is final, and no way through). A 2xx must be the end of what the proxy
/// sent: the tunnel carries nothing before the client speaks.
fn parse_answer(head: &[u8]) -> Result<Option<Answer>, String> {
    let mut head = head;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let length = match response.parse(head).map_err(|e| e.to_string())? {
            httparse::Status::Complete(length) => length,
            httparse::Status::Partial => return Ok(None),
        };
        let status = response.code.ok_or("no status")?;
        if (100..200).contains(&status) && status != 101 {
            head = &head[length..];
            continue;
        }
        return final_answer(&response, status, length < head.len());
    }
}

/// A final answer's status and `Retry-After`; `more` says bytes followed its head.
fn final_answer(
    response: &httparse::Response<'_, '_>,
    status: u16,
    more: bool,
) -> Result<Option<Answer>, String> {
    if (200..300).contains(&status) && more {
        return Err("bytes after a successful answer, before the tunnel was used".to_owned());
    }
    let retry_after = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("retry-after"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(super::retry_after_value);
    Ok(Some(Answer {
        status,
        retry_after,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connect_request_names_the_target_and_carries_the_credentials() {
        assert_eq!(
            connect_request("relay.example", 443, None),
            "CONNECT relay.example:443 HTTP/1.1\r\nHost: relay.example:443\r\n\r\n"
        );
        assert_eq!(
            connect_request("::1", 80, Some("Basic dTpw")),
            "CONNECT [::1]:80 HTTP/1.1\r\nHost: [::1]:80\r\nProxy-Authorization: Basic dTpw\r\n\r\n"
        );
    }

    #[test]
    fn answers_are_read_whole_and_a_refusal_keeps_its_retry_after() {
        assert_eq!(parse_answer(b"HTTP/1.1 200 Connection est"), Ok(None));
        assert_eq!(
            parse_answer(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Ok(Some(Answer {
                status: 200,
                retry_after: None
            }))
        );
        assert_eq!(
            parse_answer(b"HTTP/1.0 503 Busy\r\nRetry-After: 7\r\nContent-Length: 3\r\n\r\nbye"),
            Ok(Some(Answer {
                status: 503,
                retry_after: Some(Duration::from_secs(7))
            }))
        );
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\n\r\nearly").is_err());
        // Interim answers before the final one are skipped, whole or in pieces.
        let interim =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n";
        assert_eq!(parse_answer(&interim[..20]), Ok(None));
        assert_eq!(parse_answer(interim), Ok(None));
        let mut whole = interim.to_vec();
        whole.extend_from_slice(b"HTTP/1.1 200 Connection established\r\n\r\n");
        assert_eq!(
            parse_answer(&whole),
            Ok(Some(Answer {
                status: 200,
                retry_after: None
            }))
        );
        // 101 is no interim answer to CONNECT, and no way through either.
        assert_eq!(
            parse_answer(b"HTTP/1.1 101 Switching Protocols\r\n\r\n"),
            Ok(Some(Answer {
                status: 101,
                retry_after: None
            }))
        );
        assert!(parse_answer(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }
}
