//! The native client against servers that answer with plain HTTP: a web page where the stream should
//! be (retried and reported by default, fatal by policy), and a `503` whose `Retry-After` is a
//! date.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime};
use tether::{
    Client, ClosePolicy, CloseReason, DisconnectCause, Disposition, EngineError, Event, Events,
};
use tether_tests::servers::{Behaviour, MisbehavingServer};

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
