//! The native client against servers that answer with plain HTTP: a web page where the stream should
//! be (retried and reported by default, fatal by policy), and a `503` whose `Retry-After` is a
//! date.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tether::{
    Client, ClosePolicy, CloseReason, DisconnectCause, Disposition, EngineError, Event, Events,
};
use tether_tests::servers::{read_request_head, Behaviour, MisbehavingServer};
use tether_tests::tls::TlsServer;
use tokio::io::AsyncWriteExt;

/// The next event, within 5 s.
async fn next_event(events: &mut Events) -> Event {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("an event within 5 s")
        .expect("the client's events have not ended")
}

/// A server answering every request with `response()`; its arrivals count the requests.
async fn http_server(response: fn() -> String) -> MisbehavingServer {
    MisbehavingServer::start(Behaviour::HttpAnswer(response))
        .await
        .unwrap()
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
        let event = next_event(events).await;
        let closed = matches!(&event, Event::StateChanged { to, .. } if to.is_closed());
        seen.push(event);
        if closed {
            return seen;
        }
    }
}

fn says_wrong_url(event: &Event) -> bool {
    matches!(
        event,
        Event::Error(EngineError::Transport(m)) if m.starts_with("HTTP status 200 instead of")
            && m.ends_with("(is the URL right?)")
    )
}

/// By default a page where the stream should be is retried (it may be a captive portal's login
/// page that goes away), and every attempt says what it got: not silent, not fatal.
async fn a_web_page_is_reported_on_every_attempt(scheme: &str) {
    let server = http_server(web_page).await;
    let addr = server.addr();
    let (client, mut events) = Client::builder(format!("{scheme}://{addr}/wrong"))
        .backoff_initial(Duration::from_millis(10))
        .backoff_max(Duration::from_millis(20))
        .connect()
        .unwrap();
    let (mut reported, mut causes) = (0, 0);
    while causes < 3 {
        let event = next_event(&mut events).await;
        reported += usize::from(says_wrong_url(&event));
        if let Event::ReconnectScheduled { cause, .. } = &event {
            assert_eq!(*cause, DisconnectCause::Http { status: 200 });
            causes += 1;
        }
        assert!(
            !matches!(&event, Event::StateChanged { to, .. } if to.is_closed()),
            "{event:?}"
        );
    }
    assert_eq!(reported, 3, "one error event per attempt");
    assert!(server.arrivals().len() >= 3);
    client.shutdown().await;
}

#[tokio::test]
async fn a_web_page_at_the_sse_url_is_retried_and_reported() {
    a_web_page_is_reported_on_every_attempt("http").await;
}

#[tokio::test]
async fn a_web_page_at_the_websocket_url_is_retried_and_reported() {
    a_web_page_is_reported_on_every_attempt("ws").await;
}

/// An app that knows its URL is right for good can make a 2xx page fatal.
#[tokio::test]
async fn a_2xx_page_stops_the_client_when_the_policy_says_so() {
    let server = http_server(web_page).await;
    let addr = server.addr();
    let policy = ClosePolicy::default().with_status(200..=299, Disposition::Terminal);
    let (client, mut events) = Client::builder(format!("ws://{addr}/wrong"))
        .backoff_initial(Duration::from_millis(10))
        .close_policy(policy)
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
    assert!(seen.iter().any(says_wrong_url), "{seen:?}");
    assert_eq!(server.arrivals().len(), 1, "asked only once");
}

#[tokio::test]
async fn retry_after_as_an_http_date_delays_the_next_attempt() {
    let server = http_server(|| {
        let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(4));
        format!(
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {at}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
    })
    .await;
    let (_client, mut events) = Client::builder(server.ws_url())
        .backoff_initial(Duration::from_millis(10))
        .connect()
        .unwrap();
    let (delay, cause) = loop {
        match next_event(&mut events).await {
            Event::ReconnectScheduled { delay, cause, .. } => break (delay, cause),
            _ => continue,
        }
    };
    assert_eq!(cause, DisconnectCause::Http { status: 503 });
    // The date has whole seconds: 4 s ahead is at least 3 s from when it is read.
    assert!(delay >= Duration::from_secs(3), "{delay:?}");
    assert!(delay <= Duration::from_secs(6), "{delay:?}");
}

#[tokio::test]
async fn retry_after_in_more_seconds_than_a_u64_holds_the_client_off_for_the_cap() {
    // It used to be ignored as unparsable: the client retried at its 10 ms backoff.
    let server = http_server(|| {
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 99999999999999999999\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .to_owned()
    })
    .await;
    let (_client, mut events) = Client::builder(server.ws_url())
        .backoff_initial(Duration::from_millis(10))
        .connect()
        .unwrap();
    let delay = loop {
        if let Event::ReconnectScheduled { delay, .. } = next_event(&mut events).await {
            break delay;
        }
    };
    let cap = tether::ClosePolicy::default().max_server_delay;
    assert!(delay >= cap, "{delay:?} < {cap:?}");
}

/// A redirect the client does not follow (any, for a WebSocket; to another server, for an
/// event stream) is reported with where it pointed, without the query a token may be in.
#[tokio::test]
async fn an_unfollowed_redirect_is_reported_with_its_location() {
    let server = http_server(|| {
        "HTTP/1.1 301 Moved Permanently\r\nLocation: wss://elsewhere.example/ws?token=secret\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .to_owned()
    })
    .await;
    let addr = server.addr();
    for url in [format!("ws://{addr}/ws"), format!("http://{addr}/sse")] {
        let (client, mut events) = Client::builder(&url)
            .backoff_initial(Duration::from_millis(10))
            .connect()
            .unwrap();
        let message = loop {
            if let Event::Error(EngineError::Transport(m)) = next_event(&mut events).await {
                break m;
            }
        };
        assert_eq!(
            message, r#"HTTP status 301 redirecting to "wss://elsewhere.example/ws", not followed"#,
            "{url}"
        );
        client.shutdown().await;
    }
}

/// The answer of a server that speaks HTTP/1.0 (Python's `http.server`, a small embedded
/// one, an old proxy's or load balancer's error page) to a WebSocket upgrade.
const HTTP_1_0_UNAUTHORIZED: &str = "HTTP/1.0 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";

/// An HTTP/1.0 refusal of a WebSocket upgrade counts by its status, as an HTTP/1.1 one does:
/// here a 401 gets the token refreshed once, then stops the client as unauthorized.
/// tungstenite refuses a response older than HTTP/1.1 before it looks at the status, so the
/// client saw only "HTTP version must be 1.1 or higher", an I/O failure retried for ever: a
/// 401 never got a new token, a 403 or 404 never stopped the client, a 503's `Retry-After`
/// was ignored. Plain and over TLS.
#[tokio::test]
async fn an_http_1_0_refusal_of_a_websocket_upgrade_counts_by_its_status() {
    let plain = http_server(|| HTTP_1_0_UNAUTHORIZED.to_owned()).await;
    refused_as_unauthorized(plain.ws_url(), None).await;
    assert_eq!(plain.arrivals().len(), 2);

    let tls = TlsServer::start(|mut tls| async move {
        if read_request_head(&mut tls).await.is_some() {
            let _ = tls.write_all(HTTP_1_0_UNAUTHORIZED.as_bytes()).await;
            let _ = tls.shutdown().await;
        }
    })
    .await
    .unwrap();
    let url = format!("wss://localhost:{}/", tls.addr().port());
    refused_as_unauthorized(url, Some(tls.ca_file())).await;
}

/// Connects to `url` (trusting `ca`) with a token provider, and checks that the client stops
/// as unauthorized by HTTP status 401 after asking for a fresh token once.
async fn refused_as_unauthorized(url: String, ca: Option<&std::path::Path>) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let record = asked.clone();
    let mut builder = Client::builder(&url)
        .backoff_initial(Duration::from_millis(10))
        // Bounded: the old code retried for ever.
        .max_attempts(Some(4))
        .token_provider(move |refresh| {
            record.lock().unwrap().push(refresh);
            async { Ok::<_, String>("token".to_owned()) }
        });
    if let Some(ca) = ca {
        builder = builder.ca_file(ca);
    }
    let (client, mut events) = builder.connect().unwrap();
    let seen = events_until_closed(&mut events).await;
    assert_eq!(
        client.closed().await,
        CloseReason::Unauthorized {
            code: None,
            status: Some(401)
        },
        "{url}: {seen:#?}"
    );
    assert_eq!(
        *asked.lock().unwrap(),
        [false, true],
        "{url}: refreshed once"
    );
    client.shutdown().await;
}
