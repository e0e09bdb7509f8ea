//! Just enough HTTP/1.1 for the relay's one port: read a request head (bounded in size; the
//! caller bounds it in time), parse it, decode its path and query, and write small plain
//! responses. Request bodies are never read: the relay serves GET (and CORS preflight) only.
//!
//! The relay reads the head itself rather than letting tungstenite do it so that one parse
//! routes WebSocket upgrades, SSE streams and errors alike, and so that a refused token gets
//! a real `401` response.

use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest request head accepted; URLs carry at most a channel name and a token.
pub(crate) const MAX_HEAD: usize = 8 * 1024;

/// A parsed request line and headers.
#[derive(Debug)]
pub(crate) struct RequestHead {
    pub(crate) method: String,
    /// The path, still percent-encoded.
    pub(crate) path: String,
    /// The query string without `?`, still percent-encoded.
    pub(crate) query: String,
    headers: Vec<(String, String)>,
}

/// Why no request head could be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeadError {
    #[error("connection closed before a complete request head")]
    Closed,
    #[error("request head larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("malformed request head: {0}")]
    Malformed(&'static str),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads until the blank line that ends the head. Returns the head and any bytes that came
/// after it in the same reads (a client may send its first frame right behind the head).
pub(crate) async fn read_head(
    stream: &mut (impl AsyncRead + Unpin),
) -> Result<(RequestHead, Vec<u8>), HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        // The terminator may straddle two reads.
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            let end = from + pos + 4;
            if end > MAX_HEAD {
                return Err(HeadError::TooLarge);
            }
            let rest = buf.split_off(end);
            return Ok((RequestHead::parse(&buf)?, rest));
        }
        if buf.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
    }
}

impl RequestHead {
    fn parse(bytes: &[u8]) -> Result<RequestHead, HeadError> {
        let text = std::str::from_utf8(bytes).map_err(|_| HeadError::Malformed("not UTF-8"))?;
        let mut lines = text.split("\r\n");
        let request_line = lines.next().unwrap_or_default();
        let mut parts = request_line.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(HeadError::Malformed("request line"));
        };
        if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
            return Err(HeadError::Malformed("request line"));
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut headers = Vec::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let (name, value) = line
                .split_once(':')
                .ok_or(HeadError::Malformed("header line"))?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        Ok(RequestHead {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers,
        })
    }

    /// The first header called `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the comma-separated header `name` lists `token` (case-insensitive), as in
    /// `Connection: keep-alive, Upgrade`.
    pub(crate) fn header_lists(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// The first query parameter called `name`, decoded as a form value.
    pub(crate) fn query_param(&self, name: &str) -> Option<String> {
        self.query
            .split('&')
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(key, _)| percent_decode(key, true).as_deref() == Some(name))
            .and_then(|(_, value)| percent_decode(value, true))
    }
}

/// Decodes `%XX` escapes (and, in query strings, `+` as a space, as browsers encode forms).
/// `None` for a broken escape or bytes that are not UTF-8.
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Writes a complete response with a plain-text body and closes the write side.
pub(crate) async fn respond(
    stream: &mut (impl AsyncWrite + Unpin),
    status: u16,
    reason: &str,
    extra_headers: &[(&str, &str)],
    body: &str,
) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\nAccess-Control-Allow-Origin: *\r\n",
        body.len()
    );
    for (name, value) in extra_headers {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(body);
    stream.write_all(out.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn head(raw: &str) -> Result<(RequestHead, Vec<u8>), HeadError> {
        read_head(&mut raw.as_bytes()).await
    }

    #[tokio::test]
    async fn a_request_head_is_parsed_and_what_follows_is_kept() {
        let (h, rest) = head(
            "GET /sse/room%201?token=a%2Bb+c&lastEventId=7 HTTP/1.1\r\n\
             Host: x\r\nConnection: keep-alive, Upgrade\r\nLast-Event-ID:  3 \r\n\r\nextra",
        )
        .await
        .expect("parsed");
        assert_eq!(h.method, "GET");
        assert_eq!(h.path, "/sse/room%201");
        assert_eq!(h.header("last-event-id"), Some("3"));
        assert!(h.header_lists("connection", "upgrade"));
        assert!(!h.header_lists("connection", "close"));
        assert_eq!(h.query_param("token").as_deref(), Some("a+b c"));
        assert_eq!(h.query_param("lastEventId").as_deref(), Some("7"));
        assert_eq!(h.query_param("missing"), None);
        assert_eq!(rest, b"extra");
    }

    #[tokio::test]
    async fn bad_heads_are_errors() {
        assert!(matches!(head("GET /\r\n").await, Err(HeadError::Closed)));
        assert!(matches!(
            head("NONSENSE\r\n\r\n").await,
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            head("GET / HTTP/1.1\r\nno colon\r\n\r\n").await,
            Err(HeadError::Malformed(_))
        ));
        let huge = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_HEAD + 10));
        assert!(matches!(head(&huge).await, Err(HeadError::TooLarge)));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c", false).as_deref(), Some("a b+c"));
        assert_eq!(percent_decode("a%20b+c", true).as_deref(), Some("a b c"));
        assert_eq!(percent_decode("%e2%82%ac", false).as_deref(), Some("€"));
        assert_eq!(percent_decode("%zz", false), None);
        assert_eq!(percent_decode("%4", false), None);
        assert_eq!(percent_decode("%+1", false), None);
        assert_eq!(percent_decode("%ff", false), None, "not UTF-8");
    }
}
