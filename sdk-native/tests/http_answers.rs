//! The driver against servers that answer with plain HTTP: a web page where the stream should
//! be, and a `503` whose `Retry-After` is a date.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tether::{Client, CloseReason, DisconnectCause, EngineError, Event, Events};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::timeout;

/// Answers every request with `response(now)` and counts the requests. Returns the address.
async fn http_server(
    response: impl Fn() -> String + Send + Sync + 'static,
) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    let response = Arc::new(response);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let count = count.clone();
            let response = response.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                let _ = tcp.write_all(response().as_bytes()).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    (addr, requests)
}

fn web_page() -> String {
    let body = "<html><body>not a stream</body></html>";
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Events until the client closes (at most 5 s).
async fn events_until_closed(events: &mut Events) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let event = timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("the client should stop, not retry for ever")
            .unwrap();
        let closed = matches!(&event, Event::StateChanged { to, .. } if to.is_closed());
        seen.push(event);
        if closed {
            return seen;
        }
    }
}

async fn a_web_page_stops_the_client(scheme: &str) {
    let (addr, requests) = http_server(web_page).await;
    let (client, mut events) = Client::builder(format!("{scheme}://{addr}/wrong"))
        .backoff_initial(Duration::from_millis(10))
        .connect()
        .unwrap();
    let seen = events_until_closed(&mut events).await;
    let reason = client.closed().await;
    assert!(
        matches!(
            reason,
            CloseReason::Refused {
                status: Some(200),
                ..
            }
        ),
        "{reason:?}"
    );
    assert!(reason.to_string().contains("is the URL right?"), "{reason}");
    assert!(
        seen.iter().any(|e| matches!(
            e,
            Event::Error(EngineError::Transport(m)) if m.starts_with("HTTP status 200 instead of")
        )),
        "{seen:?}"
    );
    assert_eq!(requests.load(Ordering::SeqCst), 1, "asked only once");
}

#[tokio::test]
async fn a_web_page_at_the_sse_url_stops_with_http_200() {
    a_web_page_stops_the_client("http").await;
}

#[tokio::test]
async fn a_web_page_at_the_websocket_url_stops_with_http_200() {
    a_web_page_stops_the_client("ws").await;
}

#[tokio::test]
async fn retry_after_as_an_http_date_delays_the_next_attempt() {
    let (addr, _) = http_server(|| {
        let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(4));
        format!(
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {at}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
    })
    .await;
    let (_client, mut events) = Client::builder(format!("ws://{addr}"))
        .backoff_initial(Duration::from_millis(10))
        .connect()
        .unwrap();
    let (delay, cause) = loop {
        match timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            Event::ReconnectScheduled { delay, cause, .. } => break (delay, cause),
            _ => continue,
        }
    };
    assert_eq!(cause, DisconnectCause::Http { status: 503 });
    // The date has whole seconds: 4 s ahead is at least 3 s from when it is read.
    assert!(delay >= Duration::from_secs(3), "{delay:?}");
    assert!(delay <= Duration::from_secs(6), "{delay:?}");
}
