//! Resends the relay already holds, end to end: the native client re-sends every unacked
//! publish after a reconnect, and the relay must recognise those it already delivered
//! (docs/protocol.md: a re-sent duplicate is acked again and not delivered twice).
//! Loopback only; every wait is bounded and every server stopped.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;
use tether::{Client, ClientBuilder, Event, MessageId, Protocol};
use tether_relay::{RateLimit, Relay, RelayConfig, RelayHandle};
use tether_tests::oneway::OneWayProxy;
use tether_tests::wait::Recorder;

const LIMIT: Duration = Duration::from_secs(10);

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

async fn relay_with(config: RelayConfig) -> RelayHandle {
    Relay::bind("127.0.0.1:0", config).await.unwrap()
}

/// A Tether client tuned for tests: fast backoff, fast heartbeats, fixed seed.
fn fast(url: impl Into<String>) -> ClientBuilder {
    Client::builder(url)
        .protocol(Protocol::Tether)
        .backoff_initial(ms(50))
        .backoff_max(ms(400))
        .heartbeat_interval(ms(200))
        .min_uptime(ms(300))
        .seed(42)
}

fn client(url: impl Into<String>) -> (Client, Recorder) {
    let (c, e) = fast(url).connect().unwrap();
    (c, Recorder::new(e))
}

fn channel_messages(rec: &Recorder, channel: &str) -> usize {
    rec.seen
        .iter()
        .filter(|(_, e)| matches!(e, Event::Message(m) if m.channel.as_deref() == Some(channel)))
        .count()
}

/// Acked and Dropped events per message id.
fn outcomes(rec: &Recorder) -> HashMap<MessageId, Vec<String>> {
    let mut out: HashMap<MessageId, Vec<String>> = HashMap::new();
    for (_, e) in &rec.seen {
        match e {
            Event::Acked { id, .. } => out.entry(*id).or_default().push("acked".into()),
            Event::Dropped { ids, reason } => {
                for id in ids {
                    let outcome = format!("dropped {}", reason.name());
                    out.entry(*id).or_default().push(outcome);
                }
            }
            _ => {}
        }
    }
    out
}

/// A WebSocket proxy that, once armed, forwards the first server frame containing a needle
/// and then drops both connections at once (no close frame): what the server sent after it
/// is lost, as with a connection that dies between two frames.
mod cutter {
    use futures_util::{SinkExt, StreamExt};
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use tether_tests::listen::Listener;
    use tokio_tungstenite::tungstenite::Message;

    pub struct Cutter {
        listener: Listener,
        needle: Arc<Mutex<Option<String>>>,
    }

    impl Cutter {
        pub async fn start(upstream: SocketAddr) -> Cutter {
            let needle: Arc<Mutex<Option<String>>> = Arc::default();
            let armed = needle.clone();
            let listener = Listener::start(move |tcp| {
                let armed = armed.clone();
                async move {
                    let Ok(client) = tokio_tungstenite::accept_async(tcp).await else {
                        return;
                    };
                    let url = format!("ws://{upstream}/");
                    let Ok((server, _)) = tokio_tungstenite::connect_async(url).await else {
                        return;
                    };
                    let (mut to_client, mut from_client) = client.split();
                    let (mut to_server, mut from_server) = server.split();
                    loop {
                        tokio::select! {
                            m = from_client.next() => match m {
                                Some(Ok(m @ (Message::Text(_) | Message::Close(_)))) => {
                                    if to_server.send(m).await.is_err() { return }
                                }
                                Some(Ok(_)) => {}
                                _ => return,
                            },
                            m = from_server.next() => match m {
                                Some(Ok(Message::Text(t))) => {
                                    let hit = {
                                        let mut armed = armed.lock().unwrap();
                                        let hit = armed.as_deref().is_some_and(|x| t.contains(x));
                                        if hit { *armed = None; }
                                        hit
                                    };
                                    if to_client.send(Message::Text(t)).await.is_err() { return }
                                    if hit { return } // both sockets dropped, no close frame
                                }
                                Some(Ok(m @ Message::Close(_))) => { let _ = to_client.send(m).await; }
                                Some(Ok(_)) => {}
                                _ => return,
                            },
                        }
                    }
                }
            })
            .await
            .unwrap();
            Cutter { listener, needle }
        }

        pub fn url(&self) -> String {
            format!("ws://{}/", self.listener.addr())
        }

        /// Cuts after the next server frame containing `needle`.
        pub fn arm(&self, needle: &str) {
            *self.needle.lock().unwrap() = Some(needle.to_owned());
        }
    }
}

/// An acked channel-less `send` (the relay's echo service): the connection dies after the
/// echo and before the ack. The re-sent publish (same id) is acked, not echoed again.
#[tokio::test]
async fn a_resent_channel_less_send_is_echoed_once() {
    let r = relay_with(RelayConfig::default()).await;
    let cut = cutter::Cutter::start(r.local_addr()).await;
    let (c, mut rec) = client(cut.url());
    rec.until_open(LIMIT).await;
    cut.arm(r#""type":"message""#);
    let acked = tokio::time::timeout(LIMIT, c.send_acked(json!("once")))
        .await
        .unwrap();
    assert!(acked.is_ok(), "{acked:?}");
    rec.collect_for(ms(300)).await;
    let direct = rec
        .seen
        .iter()
        .filter(|(_, e)| matches!(e, Event::Message(m) if m.channel.is_none()))
        .count();
    assert!(c.stats().reconnects >= 1, "the cut happened");
    assert_eq!(direct, 1, "one send, one echo: {:?}", rec.names());
    r.shutdown().await;
}

/// The same cut on a channel publish the publisher itself is subscribed to: delivered once.
#[tokio::test]
async fn a_resent_channel_publish_is_delivered_once() {
    let r = relay_with(RelayConfig::default()).await;
    let cut = cutter::Cutter::start(r.local_addr()).await;
    let (c, mut rec) = client(cut.url());
    c.subscribe("room").unwrap();
    rec.until_subscribed(LIMIT).await;
    cut.arm(r#""type":"message""#);
    let acked = tokio::time::timeout(LIMIT, c.publish_acked("room", json!("once")))
        .await
        .unwrap();
    assert!(acked.is_ok(), "{acked:?}");
    rec.collect_for(ms(300)).await;
    assert!(c.stats().reconnects >= 1, "the cut happened");
    assert_eq!(channel_messages(&rec, "room"), 1, "{:?}", rec.names());
    r.shutdown().await;
}

/// Publishes the relay stored while their acks were lost are re-sent in one burst after the
/// reconnect, faster than the relay's rate limit. Every subscriber has them, so each is
/// acked, none reported `Dropped { Rejected: rate_limited }`.
#[tokio::test]
async fn resends_of_stored_publishes_are_acked_not_rate_limited() {
    let r = relay_with(RelayConfig {
        rate_limit: Some(RateLimit {
            per_second: 20,
            burst: 5,
        }),
        ..RelayConfig::default()
    })
    .await;
    let (reader, mut rrec) = client(r.ws_url());
    reader.subscribe("room").unwrap();
    rrec.until_subscribed(LIMIT).await;
    let proxy = OneWayProxy::start(r.local_addr()).await.unwrap();
    let (w, events) = fast(proxy.url())
        .heartbeat_interval(ms(60_000))
        .connect()
        .unwrap();
    let mut wrec = Recorder::new(events);
    wrec.until_open(LIMIT).await;
    proxy.mute(true); // acks are lost from now on
    let mut ids = vec![];
    for i in 0..12 {
        ids.push(w.publish("room", json!(i)).unwrap());
        tokio::time::sleep(ms(100)).await; // well within the relay's rate
    }
    let deadline = tokio::time::Instant::now() + LIMIT;
    while channel_messages(&rrec, "room") < 12 {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", rrec.names());
        rrec.collect_for(ms(20)).await;
    }
    proxy.kill_all();
    proxy.mute(false);
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !ids.iter().all(|id| outcomes(&wrec).contains_key(id)) {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", wrec.names());
        wrec.collect_for(ms(50)).await;
    }
    let o = outcomes(&wrec);
    let wrong: Vec<_> = ids
        .iter()
        .filter(|id| o[id] != ["acked"])
        .map(|id| (id, o[id].clone()))
        .collect();
    assert!(wrong.is_empty(), "delivered, yet reported: {wrong:?}");
    rrec.collect_for(ms(100)).await;
    assert_eq!(channel_messages(&rrec, "room"), 12, "each once");
    r.shutdown().await;
}

/// A client over its rate limit (it published past the burst) still answers the relay's
/// pings with the protocol's `pong`, as the SDK must. The relay must not refuse those pongs
/// with `rate_limited`: handling one costs nothing, while refusing it costs an error frame,
/// and the client can match that error to none of its messages, so the app sees a
/// `rate_limited` error event per relay ping for no message it sent.
#[tokio::test]
async fn pongs_over_the_rate_limit_are_not_refused() {
    let r = relay_with(RelayConfig {
        rate_limit: Some(RateLimit {
            per_second: 1,
            burst: 4,
        }),
        ping_interval: Some(ms(100)),
        ..RelayConfig::default()
    })
    .await;
    let (c, events) = fast(r.ws_url())
        .heartbeat_mode(tether::HeartbeatMode::Off)
        .connect()
        .unwrap();
    let mut rec = Recorder::new(events);
    rec.until_open(LIMIT).await;
    // hello took one token; these take the rest and then some: the bucket stays empty.
    let ids: Vec<_> = (0..6)
        .map(|i| c.publish("room", json!(i)).unwrap())
        .collect();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !ids.iter().all(|id| outcomes(&rec).contains_key(id)) {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", rec.names());
        rec.collect_for(ms(50)).await;
    }
    rec.collect_for(ms(600)).await; // six of the relay's pings, answered over the limit
    let refused = outcomes(&rec)
        .values()
        .filter(|o| o.iter().any(|x| x == "dropped rejected"))
        .count();
    let errors = rec
        .seen
        .iter()
        .filter(|(_, e)| matches!(e, Event::Error(err) if err.to_string().contains("rate_limited")))
        .count();
    assert!(
        refused >= 1,
        "the publishes went over the limit: {:?}",
        rec.names()
    );
    assert_eq!(
        errors,
        refused,
        "one rate_limited error per refused publish, none for pongs: {:?}",
        rec.names()
    );
    c.shutdown().await;
    r.shutdown().await;
}
