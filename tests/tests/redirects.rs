//! The native client against an SSE server that redirects elsewhere: what the client carries
//! for its own server (the token in a header of the app's naming, the app's headers) must not
//! follow a redirect to another origin, which may belong to anyone.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tether::{Client, DisconnectCause, Event, TokenPlacement};
use tether_tests::listen::Listener;
use tether_tests::servers::read_request_head;
use tether_tests::tls::TlsServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The token the client is given, and must only ever send to its own server.
const SECRET: &str = "s3cret-token";

/// A server that records every request head it gets and answers `response`.
async fn recording_server(response: String) -> (Listener, Arc<Mutex<Vec<String>>>) {
    let heads = Arc::new(Mutex::new(Vec::new()));
    let log = heads.clone();
    let listener = Listener::start(move |mut tcp| {
        let (log, response) = (log.clone(), response.clone());
        async move {
            if let Some(head) = read_request_head(&mut tcp).await {
                log.lock().unwrap().push(head);
                let _ = tcp.write_all(response.as_bytes()).await;
                let _ = tcp.shutdown().await;
            }
        }
    })
    .await
    .unwrap();
    (listener, heads)
}

/// The payload of the first message the client gets (within 10 s), which must come before
/// any reconnect.
async fn first_payload(events: &mut tether::Events) -> tether::Payload {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Some(Event::Message(m)) => return m.payload,
                Some(Event::ReconnectScheduled { cause, .. }) => panic!("{cause}"),
                Some(_) => continue,
                None => panic!("the client's events ended"),
            }
        }
    })
    .await
    .expect("a message within 10 s")
}

/// The first reconnect the client schedules (within 5 s): its cause.
async fn first_reconnect_cause(events: &mut tether::Events) -> DisconnectCause {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.recv().await {
                Some(Event::ReconnectScheduled { cause, .. }) => return cause,
                Some(_) => continue,
                None => panic!("the client's events ended"),
            }
        }
    })
    .await
    .expect("a reconnect within 5 s")
}

/// reqwest follows redirects by itself and, to another host or port, strips only the headers
/// it knows to be credentials (`Authorization`, `Cookie`…): a token in a header the app named,
/// and the app's own headers, went to whatever origin the redirect named. A redirect to
/// another origin is not followed: it is the HTTP answer it is, for the close policy to judge
/// (retried, and reported as its status on every attempt).
#[tokio::test]
async fn an_sse_redirect_to_another_origin_does_not_carry_the_token_there() {
    let no_stream =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let (elsewhere, elsewhere_heads) = recording_server(no_stream.to_owned()).await;
    let redirect = format!(
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{}/stolen\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        elsewhere.addr()
    );
    let (origin, origin_heads) = recording_server(redirect).await;
    let (client, mut events) = Client::builder(format!("http://{}/sse", origin.addr()))
        .header("X-App-Key", "app-key")
        .token_provider(|_refresh| async { Ok::<_, std::io::Error>(SECRET.to_owned()) })
        .token_placement(TokenPlacement::Header {
            name: "X-Api-Key".to_owned(),
            prefix: String::new(),
        })
        .backoff_initial(Duration::from_millis(10))
        .connect()
        .unwrap();
    let cause = first_reconnect_cause(&mut events).await;
    client.shutdown().await;
    let asked = origin_heads.lock().unwrap().clone();
    assert!(asked.iter().any(|h| h.contains(SECRET)), "{asked:?}");
    let leaked = elsewhere_heads.lock().unwrap().clone();
    assert!(
        leaked
            .iter()
            .all(|h| !h.contains(SECRET) && !h.contains("app-key")),
        "the other origin got the client's credentials: {leaked:?}"
    );
    assert_eq!(cause, DisconnectCause::Http { status: 307 });
}

/// A redirect within the origin (a moved path, a trailing slash) is still followed, with the
/// token: it goes to the same server.
#[tokio::test]
async fn an_sse_redirect_within_the_origin_is_followed() {
    let heads = Arc::new(Mutex::new(Vec::new()));
    let log = heads.clone();
    let server = Listener::start(move |mut tcp| {
        let log = log.clone();
        async move {
            let Some(head) = read_request_head(&mut tcp).await else {
                return;
            };
            let moved = head.starts_with("GET /old ");
            log.lock().unwrap().push(head);
            let response = if moved {
                "HTTP/1.1 308 Permanent Redirect\r\nLocation: /new\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            } else {
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\ndata: moved here\n\n"
            };
            let _ = tcp.write_all(response.as_bytes()).await;
            // Held open: the stream stays up until the client goes.
            let mut buf = [0u8; 64];
            while let Ok(1..) = tcp.read(&mut buf).await {}
        }
    })
    .await
    .unwrap();
    let (client, mut events) = Client::builder(format!("http://{}/old", server.addr()))
        .token_provider(|_refresh| async { Ok::<_, std::io::Error>(SECRET.to_owned()) })
        .connect()
        .unwrap();
    let data = first_payload(&mut events).await;
    client.shutdown().await;
    assert_eq!(data, tether::Payload::Text("moved here".to_owned()));
    let asked = heads.lock().unwrap().clone();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(
        asked[1].starts_with("GET /new ") && asked[1].contains(SECRET),
        "{asked:?}"
    );
}

/// A server moving its clients to TLS on the same host (`http://h:P` → `https://h:Q`) is
/// followed with the token, as documented: reqwest, following by itself, dropped the
/// `Authorization` header (the default placement of the token) on the port change, so the
/// TLS server got a request without the token (a real one answers 401, and after one
/// refresh the client gives up, `Unauthorized`).
#[tokio::test]
async fn an_sse_redirect_to_https_on_the_same_host_keeps_the_token() {
    let heads = Arc::new(Mutex::new(Vec::new()));
    let log = heads.clone();
    let secure = TlsServer::start(move |mut tls| {
        let log = log.clone();
        async move {
            let Some(head) = read_request_head(&mut tls).await else {
                return;
            };
            log.lock().unwrap().push(head);
            let response = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\ndata: over tls\n\n";
            let _ = tls.write_all(response.as_bytes()).await;
            let _ = tls.flush().await;
            // Held open: the stream stays up until the client goes.
            let mut buf = [0u8; 64];
            while let Ok(1..) = tls.read(&mut buf).await {}
        }
    })
    .await
    .unwrap();
    let redirect = format!(
        "HTTP/1.1 301 Moved Permanently\r\nLocation: https://127.0.0.1:{}/sse\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        secure.addr().port()
    );
    let (plain, plain_heads) = recording_server(redirect).await;
    let (client, mut events) =
        Client::builder(format!("http://127.0.0.1:{}/sse", plain.addr().port()))
            .ca_file(secure.ca_file())
            .token_provider(|_refresh| async { Ok::<_, std::io::Error>(SECRET.to_owned()) })
            .connect()
            .unwrap();
    let data = first_payload(&mut events).await;
    client.shutdown().await;
    assert_eq!(data, tether::Payload::Text("over tls".to_owned()));
    assert_eq!(plain_heads.lock().unwrap().len(), 1);
    let asked = heads.lock().unwrap().clone();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(
        asked[0].contains(&format!("Bearer {SECRET}")),
        "the TLS server got no token: {asked:?}"
    );
}
