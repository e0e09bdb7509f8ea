//! The proxy the environment names (the builder's default, `Proxy::FromEnvironment`), end to
//! end. Its own test binary with a single test: it sets the process's environment, which
//! tests running in parallel threads must not do, and installs a global `tracing` subscriber
//! to read every log line the client writes. The rule itself (which variable, `NO_PROXY`,
//! loopback) is unit-tested as a pure function of the variables in sdk-native's `proxy.rs`.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tether::{Client, CloseReason, Event, Payload, State};
use tether_tests::connect_proxy::ConnectProxy;
use tether_tests::servers::{Behaviour, MisbehavingServer};
use tether_tests::wait::Recorder;

const LIMIT: Duration = Duration::from_secs(10);
const VARIABLES: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// Every log line (its fields, formatted), from any thread.
struct Lines(Arc<Mutex<Vec<String>>>);

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl tracing::Subscriber for Lines {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut line = String::new();
        span.record(&mut Fields(&mut line));
        self.0.lock().unwrap().push(line);
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut line = String::new();
        values.record(&mut Fields(&mut line));
        self.0.lock().unwrap().push(line);
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = String::new();
        event.record(&mut Fields(&mut line));
        self.0.lock().unwrap().push(line);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn the_environments_proxy_carries_websockets_and_its_password_is_never_logged() {
    let lines = Arc::new(Mutex::new(Vec::new()));
    tracing::subscriber::set_global_default(Lines(lines.clone())).unwrap();
    let saved: Vec<_> = VARIABLES.iter().map(|v| (v, std::env::var_os(v))).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let outcome = std::panic::catch_unwind(|| runtime.block_on(scenario(&lines)));
    for (name, value) in saved {
        match value {
            Some(value) => std::env::set_var(name, value),
            None => std::env::remove_var(name),
        }
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn scenario(lines: &Arc<Mutex<Vec<String>>>) {
    let echo = MisbehavingServer::start(Behaviour::Echo).await.unwrap();
    let proxy = ConnectProxy::start().await.unwrap();
    // Names only the proxy knows: the client cannot have gone around it (it would have to
    // resolve them), and they are not loopback names, which skip a proxy from the environment.
    proxy.alias("echo.test", echo.addr());
    proxy.alias("other.test", echo.addr());
    proxy.require("Basic dXNlcjpzM2NyZXQ="); // "user:s3cret"
    for name in VARIABLES {
        std::env::remove_var(name);
    }
    std::env::set_var("http_proxy", format!("http://user:s3cret@{}", proxy.addr()));
    std::env::set_var("NO_PROXY", "example.com");
    let port = echo.addr().port();
    let (client, events) = Client::builder(format!("ws://echo.test:{port}/"))
        .connect()
        .unwrap();
    let mut rec = Recorder::new(events);
    rec.until_open(LIMIT).await;
    client.send("via the environment").unwrap();
    rec.until(LIMIT, |e| match e {
        Event::Message(m) if m.payload == Payload::Text("via the environment".into()) => Some(()),
        _ => None,
    })
    .await;
    let tunnel = format!("CONNECT echo.test:{port} HTTP/1.1");
    assert_eq!(proxy.asked()[0].request_line, tunnel);
    client.shutdown().await;

    // The environment is read when a client is built: a wrong password set now is this
    // client's, refused by the proxy, and logged nowhere.
    std::env::set_var(
        "http_proxy",
        format!("http://user:s3cret-wrong@{}", proxy.addr()),
    );
    let (client, events) = Client::builder(format!("ws://other.test:{port}/"))
        .connect()
        .unwrap();
    let mut rec = Recorder::new(events);
    let state = rec
        .until_state(LIMIT, |s| matches!(s, State::Closed { .. }))
        .await;
    assert!(
        matches!(
            state,
            State::Closed {
                reason: CloseReason::Refused {
                    status: Some(407),
                    ..
                }
            }
        ),
        "{state:?}"
    );
    client.shutdown().await;
    let lines = lines.lock().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("proxy answered HTTP status 407")),
        "the refusal is logged: {lines:#?}"
    );
    assert!(!lines.iter().any(|l| l.contains("s3cret")), "{lines:#?}");
}
