//! The SSE link against a hand-written event stream: what the core parser yields reaches the
//! engine, and what the engine decides comes back in the next request.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tether::{Client, EngineError, Event, Events, Payload};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const HEAD: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";

/// Serves request `n` with `streams[n]` (each piece written separately), then keeps the last
/// one open. Returns the address and each request's `Last-Event-ID` header.
async fn sse_server(
    streams: Vec<Vec<Vec<u8>>>,
) -> (std::net::SocketAddr, Arc<Mutex<Vec<Option<String>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        for (n, pieces) in streams.into_iter().enumerate() {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let Some(head) = common::read_request_head(&mut tcp).await else {
                return;
            };
            let last_event_id = head.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("last-event-id")
                    .then(|| value.trim().to_owned())
            });
            record.lock().unwrap().push(last_event_id);
            tcp.write_all(HEAD.as_bytes()).await.unwrap();
            for piece in pieces {
                if tcp.write_all(&piece).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if n == 1 {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        }
    });
    (addr, seen)
}

/// Messages and errors, in order, until `stop` is delivered.
async fn until_message(events: &mut Events, stop: &str) -> Vec<Result<String, EngineError>> {
    let mut got = Vec::new();
    loop {
        match common::next_event(events).await {
            Event::Message(m) => {
                let Payload::Text(text) = m.payload else {
                    panic!("{:?}", m.payload)
                };
                let done = text == stop;
                got.push(Ok(text));
                if done {
                    return got;
                }
            }
            Event::Error(e) => got.push(Err(e)),
            _ => {}
        }
    }
}

#[tokio::test]
async fn oversized_events_are_reported_and_unsendable_ids_never_reach_a_header() {
    let big = "x".repeat(20_000);
    let first = vec![
        b"\xef\xbb\xbfid: 1\r\ndata: a\r\n\r".to_vec(),
        b"\nid: 2\x01\ndata: b\n\n".to_vec(),
        // Larger than the limit, in pieces: skipped without being buffered.
        format!("data: {}", &big[..10_000]).into_bytes(),
        format!("{}\ndata: more\n\n", &big[10_000..]).into_bytes(),
        b":keepalive\n\ndata: c\n\n".to_vec(),
        // An id too long to send back: ignored, and reported rather than only logged.
        format!("id: {}\ndata: d\n\n", "9".repeat(2_000)).into_bytes(),
    ];
    let second = vec![b"data: again\n\n".to_vec()];
    let (addr, seen) = sse_server(vec![first, second]).await;
    let (client, mut events) = Client::builder(format!("http://{addr}/sse"))
        .max_message_bytes(1024)
        .backoff_initial(Duration::from_millis(10))
        .connect()
        .unwrap();
    let got = until_message(&mut events, "c").await;
    assert_eq!(
        got,
        [
            Ok("a".to_owned()),
            Ok("b".to_owned()),
            Err(EngineError::FrameTooLarge {
                size: 20_000 + 1 + 4,
                max: 1024
            }),
            Ok("c".to_owned()),
        ]
    );
    let got = until_message(&mut events, "d").await;
    assert_eq!(
        got,
        [
            // Longer than a line may be (the message limit plus "data: "): the line's length.
            Err(EngineError::SseLineTooLong {
                field: "id",
                size: "id: ".len() + 2_000,
                max: 1024 + "data: ".len()
            }),
            Ok("d".to_owned()),
        ]
    );
    // The stream ends; the reconnect resumes after "1": "2\u{1}" could not be a header value,
    // and the long one could not be sent back.
    let got = until_message(&mut events, "again").await;
    assert_eq!(got, [Ok("again".to_owned())]);
    assert_eq!(*seen.lock().unwrap(), [None, Some("1".to_owned())]);
    assert_eq!(client.stats().reconnects, 1);
}

/// An app that saved the position of the last message it handled resumes from it after a
/// restart: the first request sends it, and every message says the position to save.
#[tokio::test]
async fn a_stream_resumes_from_the_position_the_app_saved() {
    let first = vec![b"id: 8\ndata: a\n\ndata: b\n\n".to_vec()];
    let second = vec![b"id: 9\ndata: c\n\n".to_vec()];
    let (addr, seen) = sse_server(vec![first, second]).await;
    let (client, mut events) = Client::builder(format!("http://{addr}/sse"))
        .last_event_id("7")
        .backoff_initial(Duration::from_millis(10))
        .connect()
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        if let Event::Message(m) = common::next_event(&mut events).await {
            got.push((m.payload, m.last_event_id));
        }
    }
    let text = |t: &str, id: &str| (Payload::Text(t.into()), Some(id.to_owned()));
    assert_eq!(got, [text("a", "8"), text("b", "8"), text("c", "9")]);
    assert_eq!(client.last_event_id().as_deref(), Some("9"));
    assert_eq!(
        *seen.lock().unwrap(),
        [Some("7".to_owned()), Some("8".to_owned())]
    );
    tokio::time::timeout(Duration::from_secs(5), client.shutdown())
        .await
        .unwrap();
}

/// The text of the first transport error, and of the cause of the reconnect that follows it.
async fn first_failure(events: &mut Events) -> (String, String) {
    let mut error = None;
    loop {
        match common::next_event(events).await {
            Event::Error(EngineError::Transport(message)) => error = Some(message),
            Event::ReconnectScheduled { cause, .. } => {
                let error = error.expect("the error comes before the reconnect");
                return (error, cause.to_string());
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_query_token_stays_out_of_transport_errors() {
    const TOKEN: &str = "s3cret-t0ken";
    // A port nobody listens on: connections are refused.
    let refused = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    // A server that starts a chunked event stream and hangs up in the middle of a chunk:
    // the body fails after the stream opened.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cut = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            if common::read_request_head(&mut tcp).await.is_some() {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                            Transfer-Encoding: chunked\r\n\r\n20\r\ndata: cut";
                let _ = tcp.write_all(head.as_bytes()).await;
            }
        }
    });
    for (url, expected) in [
        (format!("http://{refused}/sse"), "refused"),
        (format!("http://{cut}/sse"), "body"),
        (format!("ws://{refused}/ws"), "refused"),
    ] {
        let (client, mut events) = Client::builder(&url)
            .token_provider(|_refresh| async { Ok::<_, std::io::Error>(TOKEN.to_owned()) })
            .token_placement(tether::TokenPlacement::Query {
                param: "token".to_owned(),
            })
            .connect()
            .unwrap();
        let (error, cause) = first_failure(&mut events).await;
        for text in [&error, &cause] {
            assert!(!text.contains(TOKEN), "{url}: {text}");
            assert!(!text.contains(url.as_str()), "{url}: {text}");
        }
        // What failed is still said, with its cause.
        assert!(error.to_lowercase().contains(expected), "{url}: {error}");
        tokio::time::timeout(Duration::from_secs(5), client.shutdown())
            .await
            .unwrap();
    }
    server.abort();
}

fn keep_alive_sse_server() -> (std::net::SocketAddr, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let body = "data: hi\n\n";
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                while common::read_request_head(&mut tcp).await.is_some() {
                    if tokio::io::AsyncWriteExt::write_all(&mut tcp, response.as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, rt)
}

/// Waits for the first `Message` (at most `within`); `Err` with the events seen if none came.
async fn first_message(events: &mut Events, within: Duration) -> Result<(), Vec<String>> {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(within, async {
        while let Some(event) = events.recv().await {
            if matches!(event, Event::Message(_)) {
                return true;
            }
            seen.push(format!("{event:?}"));
        }
        false
    })
    .await;
    match found {
        Ok(true) => Ok(()),
        _ => Err(seen),
    }
}

/// Two SSE clients on two runtimes of one process (an app with a runtime per thread, a test
/// suite, a host embedding the bindings next to its own runtime). Clients that trust no extra
/// CA share one `reqwest::Client`, and so its pool of idle connections: the second client's
/// GET goes out on a connection the first one left in the pool, whose connection task lives
/// on the first runtime. When that runtime is not running (idle, blocked elsewhere, or being
/// torn down), the request never gets an answer: the attempt hangs until the connect timeout.
#[test]
fn an_sse_client_is_not_stalled_by_a_connection_another_runtime_left_in_the_pool() {
    let (addr, server_rt) = keep_alive_sse_server();
    let url = format!("http://{addr}/");
    let first_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    first_rt.block_on(async {
        let (client, mut events) = Client::builder(url.clone()).connect().unwrap();
        first_message(&mut events, Duration::from_secs(5))
            .await
            .unwrap();
        // The body is complete: the connection goes back to the pool.
        tokio::time::sleep(Duration::from_millis(200)).await;
        tokio::time::timeout(Duration::from_secs(5), client.shutdown())
            .await
            .unwrap();
    });
    // `first_rt` is kept, but nothing runs it any more (its thread went on to other work).
    let second_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = second_rt.block_on(async {
        let (client, mut events) = Client::builder(url)
            // Far apart, so a loaded machine cannot blur them: a stalled attempt hangs until
            // this timeout, and a working one answers within the wait below.
            .connect_timeout(Duration::from_secs(30))
            .connect()
            .unwrap();
        let result = first_message(&mut events, Duration::from_secs(10)).await;
        tokio::time::timeout(Duration::from_secs(5), client.shutdown())
            .await
            .unwrap();
        result
    });
    drop(second_rt);
    drop(first_rt);
    server_rt.shutdown_background();
    if let Err(seen) = result {
        panic!(
            "the second runtime's SSE client got no event within 10 s from a server that \
             answers at once; events: {seen:?}"
        );
    }
}

/// The same over SSE: the server-driven silence limit (300 ms here) must not run out while one
/// large event is still arriving steadily (96 KiB, 400 bytes every 5 ms or more): the stream
/// would be dropped mid-event, and `Last-Event-ID` would bring the same event back first on
/// every reconnect.
#[tokio::test]
async fn a_large_sse_event_on_a_slow_link_is_not_cut_off_by_the_silence_limit() {
    const SIZE: usize = 96 * 1024;
    let mut event = b"id: 1\ndata: ".to_vec();
    event.extend(std::iter::repeat_n(b'x', SIZE));
    event.extend_from_slice(b"\n\n");
    let mut pieces = vec![b": hello\n\n".to_vec()];
    pieces.extend(event.chunks(400).map(<[u8]>::to_vec));
    let (addr, _) = sse_server(vec![pieces]).await;
    let (client, mut events) = Client::builder(format!("http://{addr}/"))
        .heartbeat_interval(Duration::from_millis(100))
        .max_missed_pongs(2)
        .max_message_bytes(SIZE * 2)
        .connect()
        .unwrap();
    let got = common::first_message_or_reconnect(&mut events).await;
    tokio::time::timeout(Duration::from_secs(5), client.shutdown())
        .await
        .unwrap();
    assert_eq!(got, Ok(SIZE), "the event arrives on the first connection");
}

/// A server that sends its response head only with its first event (WSGI servers must; Node's
/// `writeHead` without a flush does) is waited for as an open stream would be, not cut off at
/// the connect timeout: on each attempt it was, so a quiet stream never opened.
#[tokio::test]
async fn a_stream_whose_head_comes_with_its_first_event_is_waited_for() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        common::read_request_head(&mut tcp).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let first = format!("{HEAD}data: late\n\n");
        tcp.write_all(first.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let (client, mut events) = Client::builder(format!("http://{addr}/sse"))
        .connect_timeout(Duration::from_millis(500))
        .backoff_initial(Duration::from_millis(10))
        .connect()
        .unwrap();
    assert_eq!(
        common::first_message_or_reconnect(&mut events).await,
        Ok("late".len())
    );
    assert_eq!(client.stats().attempts, 1);
    tokio::time::timeout(Duration::from_secs(5), client.shutdown())
        .await
        .unwrap();
    server.abort();
}

/// The longer wait for the response head is not one for the connection itself: a host that
/// takes the TCP connection and never answers the TLS ClientHello (as a black hole or a
/// wedged proxy does) is given up at the connect timeout, as a WebSocket's would be. The
/// attempt used to wait out the heartbeat's silence limit (75 s) there.
#[tokio::test]
async fn a_tls_handshake_that_never_answers_ends_at_the_connect_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp); // read nothing, answer nothing
        }
    });
    let (client, mut events) = Client::builder(format!("https://{addr}/sse"))
        .connect_timeout(Duration::from_millis(500))
        .backoff_initial(Duration::from_millis(10))
        .connect()
        .unwrap();
    let outcome = common::first_message_or_reconnect(&mut events).await;
    assert!(
        outcome
            .as_ref()
            .is_err_and(|e| e.starts_with("reconnect scheduled")),
        "{outcome:?}"
    );
    tokio::time::timeout(Duration::from_secs(5), client.shutdown())
        .await
        .unwrap();
    server.abort();
}

/// An app's own `Accept` or `Cache-Control` replaces the link's instead of going beside it:
/// the request carried two of each, and which one a server reads is its own choice.
#[tokio::test]
async fn an_apps_accept_header_replaces_the_links_own() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let record = seen.clone();
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        *record.lock().unwrap() = common::read_request_head(&mut tcp).await.unwrap();
        let first = format!("{HEAD}data: hi\n\n");
        tcp.write_all(first.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let (client, mut events) = Client::builder(format!("http://{addr}/sse"))
        .header("accept", "text/event-stream; charset=utf-8")
        .connect()
        .unwrap();
    assert_eq!(
        common::first_message_or_reconnect(&mut events).await,
        Ok("hi".len())
    );
    tokio::time::timeout(Duration::from_secs(5), client.shutdown())
        .await
        .unwrap();
    server.abort();
    let head = seen.lock().unwrap().clone();
    let values = |name: &str| -> Vec<String> {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    };
    assert_eq!(values("accept"), ["text/event-stream; charset=utf-8"]);
    assert_eq!(
        values("cache-control"),
        ["no-cache"],
        "the link's, as the app set none"
    );
}

/// An online report restarts a stable event stream from its position (an event stream has
/// no ping to probe its socket with): the old request's connection is closed, and the new
/// one carries the position, so nothing is lost or delivered twice.
#[tokio::test]
async fn an_online_report_restarts_a_stream_from_its_position() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let (first_closed_tx, first_closed) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(async move {
        let (mut first, _) = listener.accept().await.unwrap();
        let head = common::read_request_head(&mut first).await.unwrap();
        record.lock().unwrap().push(head);
        let one = format!("{HEAD}id: 7\ndata: one\n\n");
        first.write_all(one.as_bytes()).await.unwrap();
        let watch_first = tokio::spawn(async move {
            // The client's end of the old stream: it must close it, not leave it open.
            let mut buf = [0u8; 64];
            let closed = matches!(
                tokio::io::AsyncReadExt::read(&mut first, &mut buf).await,
                Ok(0) | Err(_)
            );
            let _ = first_closed_tx.send(closed);
        });
        let (mut second, _) = listener.accept().await.unwrap();
        let head = common::read_request_head(&mut second).await.unwrap();
        record.lock().unwrap().push(head);
        let two = format!("{HEAD}id: 8\ndata: two\n\n");
        second.write_all(two.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        watch_first.abort();
    });
    let (client, mut events) = Client::builder(format!("http://{addr}/sse"))
        .min_uptime(Duration::from_millis(100))
        .connect()
        .unwrap();
    assert_eq!(until_message(&mut events, "one").await, [Ok("one".into())]);
    tokio::time::sleep(Duration::from_millis(300)).await; // stable
    client.network_changed(true);
    assert_eq!(until_message(&mut events, "two").await, [Ok("two".into())]);
    let first_closed = tokio::time::timeout(Duration::from_secs(5), first_closed).await;
    assert!(matches!(first_closed, Ok(Ok(true))), "{first_closed:?}");
    let heads = seen.lock().unwrap().clone();
    let last_event_id = |head: &str| {
        head.lines()
            .find(|l| l.to_ascii_lowercase().starts_with("last-event-id:"))
            .map(|l| l["last-event-id:".len()..].trim().to_owned())
    };
    assert_eq!(heads.len(), 2);
    assert_eq!(last_event_id(&heads[0]), None);
    assert_eq!(last_event_id(&heads[1]).as_deref(), Some("7"));
    tokio::time::timeout(Duration::from_secs(5), client.shutdown())
        .await
        .unwrap();
    server.abort();
}

/// `data: hi\n\n`, gzip-compressed.
const GZIPPED_EVENT: &[u8] = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff\x4b\x49\x2c\x49\xb4\x52\
    \xc8\xc8\xe4\xe2\x02\x00\xb8\xa4\xcb\xb2\x0a\x00\x00\x00";

/// A request without `Accept-Encoding` accepts any content coding (RFC 9110 §12.5.3), so a
/// server (or a CDN in front of it) may compress the stream. The link cannot decompress: the
/// compressed bytes went to the parser as if they were text, the stream stayed open and
/// delivered nothing (or whatever garbage happened to look like a field), with no error. It
/// asks for the stream as it is (`identity`), and one encoded all the same is refused, said as
/// what it is.
#[tokio::test]
async fn a_compressed_event_stream_is_refused_not_read_as_text() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let record = heads.clone();
    let server = tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let Some(head) = common::read_request_head(&mut tcp).await else {
                continue;
            };
            record.lock().unwrap().push(head);
            let mut response = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                Content-Encoding: gzip\r\nConnection: close\r\n\r\n"
                .to_vec();
            response.extend_from_slice(GZIPPED_EVENT);
            let _ = tcp.write_all(&response).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let (client, mut events) = Client::builder(format!("http://{addr}/sse"))
        .backoff_initial(Duration::from_millis(10))
        .connect()
        .unwrap();
    let mut seen = Vec::new();
    let error = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match common::next_event(&mut events).await {
                Event::Error(EngineError::Transport(message)) => return message,
                event => seen.push(format!("{event:?}")),
            }
        }
    })
    .await;
    tokio::time::timeout(Duration::from_secs(5), client.shutdown())
        .await
        .unwrap();
    server.abort();
    let error = error.unwrap_or_else(|_| panic!("no transport error; events: {seen:?}"));
    assert!(error.contains("gzip"), "{error}");
    assert!(
        !seen
            .iter()
            .any(|e| e.contains("Message") || e.contains("to: Open")),
        "{seen:?}"
    );
    let heads = heads.lock().unwrap();
    let accept_encoding = heads[0].lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("accept-encoding")
            .then(|| value.trim().to_owned())
    });
    assert_eq!(accept_encoding.as_deref(), Some("identity"));
}

/// A server that ends its stream after each event, as PHP scripts and serverless functions
/// do, and expects the client back with `Last-Event-ID`: every stream works, so however many
/// there are, `max_attempts` is never reached (each one counted as a failed attempt, the
/// client gave up after the second).
#[tokio::test]
async fn a_server_that_ends_each_stream_after_an_event_is_not_given_up_on() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        for n in 1..=4 {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            if common::read_request_head(&mut tcp).await.is_none() {
                return;
            }
            let stream = format!("{HEAD}retry: 10\nid: {n}\ndata: {n}\n\n");
            let _ = tcp.write_all(stream.as_bytes()).await;
        }
    });
    let (client, mut events) = Client::builder(format!("http://{addr}/sse"))
        .max_attempts(Some(2))
        .backoff_initial(Duration::from_millis(10))
        .backoff_max(Duration::from_millis(50))
        .connect()
        .unwrap();
    let got = until_message(&mut events, "4").await;
    let texts: Vec<_> = got.into_iter().map(Result::unwrap).collect();
    assert_eq!(texts, ["1", "2", "3", "4"]);
    tokio::time::timeout(Duration::from_secs(5), client.shutdown())
        .await
        .unwrap();
    server.abort();
}
