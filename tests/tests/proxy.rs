//! The native client behind an HTTP proxy (`ClientBuilder::proxy`): WebSockets tunnel with
//! `CONNECT` (plain and TLS), event streams go through the same proxy, credentials reach the
//! proxy and nothing else, the proxy's refusals are reported as the proxy's, a misbehaving
//! proxy fails the attempt within bounds, and reconnects go through the proxy again. All on
//! loopback: the proxy, the relay and the TLS echo server are started and stopped here.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use std::time::Duration;
use tether::{
    Client, ClientBuilder, CloseReason, DisconnectCause, Event, Payload, Protocol, Proxy, State,
};
use tether_relay::{Relay, RelayConfig, RelayHandle};
use tether_tests::connect_proxy::{ConnectProxy, ProxyMode};
use tether_tests::tls::TlsEchoServer;
use tether_tests::wait::{within, Recorder};

const LIMIT: Duration = Duration::from_secs(10);

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

async fn relay() -> RelayHandle {
    Relay::bind("127.0.0.1:0", RelayConfig::default())
        .await
        .unwrap()
}

/// A client tuned for tests (fast backoff, fixed seed) going through `proxy`.
fn via(url: impl Into<String>, proxy: &str) -> ClientBuilder {
    Client::builder(url)
        .backoff_initial(ms(50))
        .backoff_max(ms(200))
        .seed(7)
        .proxy(Proxy::url(proxy))
}

/// The request lines the proxy saw that start with `prefix`.
fn asked(proxy: &ConnectProxy, prefix: &str) -> usize {
    proxy
        .asked()
        .iter()
        .filter(|a| a.request_line.starts_with(prefix))
        .count()
}

/// The next `ReconnectScheduled`'s cause.
async fn next_cause(rec: &mut Recorder) -> DisconnectCause {
    rec.until(LIMIT, |e| match e {
        Event::ReconnectScheduled { cause, .. } => Some(cause.clone()),
        _ => None,
    })
    .await
}

/// Publishes `value` on `room` and waits until `rec`'s client receives it.
async fn round_trip(client: &Client, rec: &mut Recorder, value: i64) {
    within(LIMIT, client.publish_acked("room", json!(value)))
        .await
        .unwrap();
    rec.until(LIMIT, |e| match e {
        Event::Message(m) if m.payload == Payload::Json(json!(value)) => Some(()),
        _ => None,
    })
    .await;
}

#[tokio::test]
async fn a_websocket_goes_through_the_proxy_and_reconnects_through_it() {
    let relay = relay().await;
    let proxy = ConnectProxy::start().await.unwrap();
    let (client, events) = via(relay.ws_url(), &proxy.url())
        .protocol(Protocol::Tether)
        .connect()
        .unwrap();
    let mut rec = Recorder::new(events);
    rec.until_open(LIMIT).await;
    client.subscribe("room").unwrap();
    round_trip(&client, &mut rec, 1).await;
    let tunnel = format!("CONNECT {} HTTP/1.1", relay.local_addr());
    assert_eq!(asked(&proxy, &tunnel), 1, "{:?}", proxy.asked());

    // The proxy cuts the tunnel: the client reconnects, through the proxy again.
    proxy.kill_all();
    next_cause(&mut rec).await;
    rec.until_open(LIMIT).await;
    round_trip(&client, &mut rec, 2).await;
    assert_eq!(asked(&proxy, &tunnel), 2, "{:?}", proxy.asked());
    assert_eq!(proxy.asked().len(), 2, "nothing went around the proxy");
    client.shutdown().await;
}

#[tokio::test]
async fn a_tls_websocket_goes_through_the_proxy_encrypted_end_to_end() {
    let server = TlsEchoServer::start().await.unwrap();
    let proxy = ConnectProxy::start().await.unwrap();
    let (client, events) = via(server.wss_url(), &proxy.url())
        .ca_file(server.ca_file())
        .connect()
        .unwrap();
    let mut rec = Recorder::new(events);
    rec.until_open(LIMIT).await;
    client.send("through the tunnel").unwrap();
    rec.until(LIMIT, |e| match e {
        Event::Message(m) if m.payload == Payload::Text("through the tunnel".into()) => Some(()),
        _ => None,
    })
    .await;
    // The proxy was asked for the host by name (it resolves it), and carried TLS it cannot
    // read: the certificate checked is the server's, for `localhost`.
    let port = server
        .wss_url()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let tunnel = format!("CONNECT localhost:{port} HTTP/1.1");
    assert_eq!(asked(&proxy, &tunnel), 1, "{:?}", proxy.asked());
    client.shutdown().await;
}

#[tokio::test]
async fn proxy_credentials_reach_the_proxy_and_appear_nowhere_else() {
    let relay = relay().await;
    let proxy = ConnectProxy::start().await.unwrap();
    // `us@er` and `p:ss w0rd` percent-encoded in the URL, decoded for the header:
    // base64("us@er:p:ss w0rd").
    proxy.require("Basic dXNAZXI6cDpzcyB3MHJk");
    let with = |password: &str| {
        let addr = proxy.addr();
        format!("http://us%40er:{password}@{addr}")
    };
    let (client, events) = via(relay.ws_url(), &with("p%3Ass%20w0rd"))
        .protocol(Protocol::Tether)
        .connect()
        .unwrap();
    let mut rec = Recorder::new(events);
    rec.until_open(LIMIT).await;
    client.subscribe("room").unwrap();
    round_trip(&client, &mut rec, 1).await;
    client.shutdown().await;

    // A wrong password: the proxy's 407 stops the client (its credentials are configuration,
    // the same on every attempt), reported as the proxy's answer, and the password is in
    // none of what the app sees.
    let (client, events) = via(relay.ws_url(), &with("s3cret-wrong"))
        .max_attempts(Some(3))
        .connect()
        .unwrap();
    let mut rec = Recorder::new(events);
    let state = rec
        .until_state(LIMIT, |s| matches!(s, State::Closed { .. }))
        .await;
    assert_eq!(
        state,
        State::Closed {
            reason: CloseReason::Refused {
                code: None,
                status: Some(407),
                reason: "proxy answered HTTP status 407".to_owned(),
            }
        }
    );
    let seen = format!("{:?} {}", rec.seen, state_text(&state));
    assert!(seen.contains("proxy answered HTTP status 407"), "{seen}");
    assert!(!seen.contains("s3cret"), "{seen}");
    let wrong = proxy
        .asked()
        .iter()
        .filter(|a| a.proxy_authorization.as_deref() != Some("Basic dXNAZXI6cDpzcyB3MHJk"))
        .count();
    assert_eq!(wrong, 1, "one attempt, no retry: {:?}", proxy.asked());
    // Nor in the builder's Debug, nor in an error for a proxy URL it refuses.
    let builder = via(relay.ws_url(), &with("s3cret"));
    assert!(!format!("{builder:?}").contains("s3cret"));
    let refused = via(relay.ws_url(), "https://user:s3cret@proxy.example:443")
        .build()
        .unwrap_err();
    assert!(
        matches!(refused, tether::BuildError::Proxy { .. }),
        "{refused}"
    );
    assert!(!format!("{refused} {refused:?}").contains("s3cret"));
    client.shutdown().await;
}

#[tokio::test]
async fn credentials_that_are_not_utf8_reach_the_proxy_alike_from_both_transports() {
    // `u%E9:p%FF` is the bytes 75 E9 : 70 FF (a Latin-1 user name, a binary password), sent
    // as they are, as curl sends them. The WebSocket's CONNECT sent these bytes while reqwest,
    // given the URL, decoded it as UTF-8 and sent U+FFFD for each (`Basic de+/vTpw77+9`): the
    // event stream was refused with a 407 by the proxy the WebSocket got through.
    let relay = relay().await;
    let proxy = ConnectProxy::start().await.unwrap();
    let expected = "Basic dek6cP8=";
    proxy.require(expected);
    let proxy_url = format!("http://u%E9:p%FF@{}", proxy.addr());
    let sse_url = format!("http://{}/sse/room", relay.local_addr());
    for url in [relay.ws_url(), sse_url] {
        let (client, events) = via(&url, &proxy_url).connect().unwrap();
        let mut rec = Recorder::new(events);
        let outcome = rec
            .until(LIMIT, |e| match e {
                Event::StateChanged { to, .. } if to.is_open() => Some(None),
                Event::StateChanged { to, .. } if matches!(to, State::Closed { .. }) => {
                    Some(Some(to.clone()))
                }
                _ => None,
            })
            .await;
        assert_eq!(outcome, None, "{url}: {:?}", proxy.asked());
        client.shutdown().await;
    }
    // reqwest's own CONNECT, for an `https://` stream, carries them too (no server listens at
    // the target: the proxy's 502 is retried, shutdown ends it).
    let (tls, events) = via("https://localhost:9/sse/room", &proxy_url)
        .connect()
        .unwrap();
    next_cause(&mut Recorder::new(events)).await;
    tls.shutdown().await;
    let asked = proxy.asked();
    assert_eq!(asked.len(), 3, "{asked:?}");
    for a in &asked {
        assert_eq!(a.proxy_authorization.as_deref(), Some(expected), "{a:?}");
    }
}

fn state_text(state: &State) -> String {
    match state {
        State::Closed { reason } => reason.to_string(),
        other => format!("{other:?}"),
    }
}

#[tokio::test]
async fn a_proxy_that_cannot_reach_the_server_is_retried_and_named_as_the_proxy() {
    let relay = relay().await;
    let proxy = ConnectProxy::start().await.unwrap();
    proxy.set_mode(ProxyMode::Refuse(502));
    let (client, events) = via(relay.ws_url(), &proxy.url()).connect().unwrap();
    let mut rec = Recorder::new(events);
    assert_eq!(
        next_cause(&mut rec).await,
        DisconnectCause::Proxy { status: 502 }
    );
    assert_eq!(
        next_cause(&mut rec).await,
        DisconnectCause::Proxy { status: 502 }
    );
    // Once the proxy gets through, so does the client.
    proxy.set_mode(ProxyMode::Forward);
    rec.until_open(LIMIT).await;
    client.shutdown().await;
}

#[tokio::test]
async fn an_interim_answer_before_the_proxys_200_is_skipped() {
    // RFC 9110 §15.2: a client must parse 1xx answers before the final one, even unasked.
    // Taken for the final answer, a 100 was a refusal retried for ever: the client never
    // opened.
    let relay = relay().await;
    let proxy = ConnectProxy::start().await.unwrap();
    proxy.set_mode(ProxyMode::InterimFirst);
    let (client, events) = via(relay.ws_url(), &proxy.url()).connect().unwrap();
    let mut rec = Recorder::new(events);
    let outcome = rec
        .until(LIMIT, |e| match e {
            Event::StateChanged { to, .. } if to.is_open() => Some(None),
            Event::ReconnectScheduled { cause, .. } => Some(Some(cause.clone())),
            _ => None,
        })
        .await;
    assert_eq!(outcome, None, "the first attempt opens");
    client.shutdown().await;
}

#[tokio::test]
async fn a_proxy_that_closes_mid_answer_or_never_ends_it_fails_the_attempt() {
    let relay = relay().await;
    let proxy = ConnectProxy::start().await.unwrap();
    proxy.set_mode(ProxyMode::CloseMidHead);
    let (client, events) = via(relay.ws_url(), &proxy.url()).connect().unwrap();
    let mut rec = Recorder::new(events);
    let cause = next_cause(&mut rec).await;
    let DisconnectCause::Failed { message } = &cause else {
        panic!("{cause:?}");
    };
    assert!(
        message.contains("closed the connection before answering CONNECT"),
        "{message}"
    );
    assert!(message.contains(&proxy.url()), "names the proxy: {message}");

    // A head without end: the attempt fails once 8 KiB are read, not at the connect timeout
    // (10 s here, over the wait's limit) and not after the proxy's 4 MiB.
    proxy.set_mode(ProxyMode::EndlessHead);
    let cause = next_cause(&mut rec).await;
    let DisconnectCause::Failed { message } = &cause else {
        panic!("{cause:?}");
    };
    assert!(message.contains("longer than 8192 bytes"), "{message}");
    client.shutdown().await;
}

#[tokio::test]
async fn an_event_stream_goes_through_the_same_proxy_and_reconnects_through_it() {
    let relay = relay().await;
    let proxy = ConnectProxy::start().await.unwrap();
    proxy.require("Basic dTpw"); // "u:p"
    let proxy_url = format!("http://u:p@{}", proxy.addr());
    let sse_url = format!("http://{}/sse/room", relay.local_addr());
    let (sse, events) = via(&sse_url, &proxy_url).connect().unwrap();
    let mut rec = Recorder::new(events);
    rec.until_open(LIMIT).await;
    // reqwest asks a plain-http proxy with the request itself (absolute form), credentials
    // included.
    let request = format!("GET {sse_url} HTTP/1.1");
    assert_eq!(asked(&proxy, &request), 1, "{:?}", proxy.asked());
    assert_eq!(
        proxy.asked()[0].proxy_authorization.as_deref(),
        Some("Basic dTpw")
    );

    let (writer, wevents) = Client::builder(relay.ws_url())
        .protocol(Protocol::Tether)
        .proxy(Proxy::Direct)
        .connect()
        .unwrap();
    Recorder::new(wevents).until_open(LIMIT).await;
    within(LIMIT, writer.publish_acked("room", json!(1)))
        .await
        .unwrap();
    rec.until(LIMIT, |e| match e {
        Event::Message(m) => Some(m.payload.clone()),
        _ => None,
    })
    .await;

    proxy.kill_all();
    next_cause(&mut rec).await;
    rec.until_open(LIMIT).await;
    assert_eq!(asked(&proxy, &request), 2, "{:?}", proxy.asked());

    // Another client without the proxy (sharing the HTTP client that clients with the same
    // proxy rule share) does not go through it: the rule is per client.
    let (direct, devents) = Client::builder(&sse_url)
        .proxy(Proxy::Direct)
        .connect()
        .unwrap();
    Recorder::new(devents).until_open(LIMIT).await;
    assert_eq!(proxy.asked().len(), 2, "{:?}", proxy.asked());
    for client in [sse, writer, direct] {
        client.shutdown().await;
    }
}

#[tokio::test]
async fn a_407_to_an_event_stream_is_the_proxys_too() {
    let relay = relay().await;
    let proxy = ConnectProxy::start().await.unwrap();
    proxy.require("Basic dTpw");
    let sse_url = format!("http://{}/sse/room", relay.local_addr());
    let (sse, events) = via(&sse_url, &proxy.url()).connect().unwrap();
    let mut rec = Recorder::new(events);
    let state = rec
        .until_state(LIMIT, |s| matches!(s, State::Closed { .. }))
        .await;
    assert!(
        matches!(
            &state,
            State::Closed {
                reason: CloseReason::Refused {
                    status: Some(407),
                    reason,
                    ..
                }
            } if reason.contains("proxy")
        ),
        "{state:?}"
    );
    sse.shutdown().await;
}

#[tokio::test]
async fn a_407_to_a_tls_event_stream_is_the_proxys_too() {
    // reqwest tunnels an `https://` stream with its own CONNECT, and reports a 407 as an error
    // without a status: the link still tells the engine it was the proxy's. The target is
    // never reached (no server listens there).
    let proxy = ConnectProxy::start().await.unwrap();
    proxy.require("Basic dTpw");
    let (sse, events) = via("https://localhost:9/sse/room", &proxy.url())
        .connect()
        .unwrap();
    let mut rec = Recorder::new(events);
    let state = rec
        .until_state(LIMIT, |s| matches!(s, State::Closed { .. }))
        .await;
    assert!(
        matches!(
            &state,
            State::Closed {
                reason: CloseReason::Refused {
                    status: Some(407),
                    ..
                }
            }
        ),
        "{state:?}"
    );
    assert_eq!(
        asked(&proxy, "CONNECT localhost:9 HTTP/1.1"),
        1,
        "{:?}",
        proxy.asked()
    );
    sse.shutdown().await;
}
