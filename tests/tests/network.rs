//! The engine's scenarios again, end to end over real loopback sockets: the native client
//! against the reference relay, a chaos proxy and misbehaving servers. Timings are scaled down
//! (50 ms backoff, 200 ms heartbeats) and every wait is bounded.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tether::{
    AckError, AckedOptions, Client, ClientBuilder, ClosePolicy, CloseReason, DisconnectCause,
    DropReason, Event, HeartbeatMode, Jitter, Payload, Protocol, State, Unacked,
};
use tether_relay::{Relay, RelayConfig, RelayHandle};
use tether_tests::proxy::{ChaosProxy, Mode};
use tether_tests::servers::{Behaviour, MisbehavingServer};
use tether_tests::tls::TlsEchoServer;
use tether_tests::wait::{eventually, within, Recorder};

const LIMIT: Duration = Duration::from_secs(10);

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

async fn relay() -> RelayHandle {
    relay_with(RelayConfig::default()).await
}

async fn relay_with(config: RelayConfig) -> RelayHandle {
    Relay::bind(
        "127.0.0.1:0",
        RelayConfig {
            presence_grace: ms(1_000),
            sse_retry: ms(300),
            ..config
        },
    )
    .await
    .unwrap()
}

/// A client tuned for tests: fast backoff, fast heartbeats, fixed seed.
fn fast(url: impl Into<String>) -> ClientBuilder {
    Client::builder(url)
        .backoff_initial(ms(50))
        .backoff_max(ms(400))
        .heartbeat_interval(ms(200))
        .min_uptime(ms(300))
        .seed(42)
}

fn tether_client(url: impl Into<String>) -> (Client, Recorder) {
    let (client, events) = fast(url).protocol(Protocol::Tether).connect().unwrap();
    (client, Recorder::new(events))
}

fn json_payload(m: &tether::InboundMessage) -> serde_json::Value {
    match &m.payload {
        Payload::Json(v) => v.clone(),
        other => panic!("expected JSON, got {other:?}"),
    }
}

/// Waits for the next channel message and returns (offset, payload).
async fn next_message(rec: &mut Recorder) -> (u64, serde_json::Value) {
    rec.until(LIMIT, |e| match e {
        Event::Message(m) => Some((m.offset.unwrap_or(0), json_payload(m))),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn reconnects_after_the_relay_restarts_and_resubscribes() {
    let relay = relay().await;
    let addr = relay.local_addr();
    let (client, mut rec) = tether_client(relay.ws_url());
    client.subscribe("room").unwrap();
    rec.until_subscribed(LIMIT).await;

    relay.abort().await;
    rec.until_state(LIMIT, |s| matches!(s, State::Waiting { .. }))
        .await;
    let relay = relay_with_addr(addr).await;
    let recovered = rec.until_subscribed(LIMIT).await;
    assert!(!recovered, "a new relay has a new epoch: nothing to resume");
    let (publisher, mut prec) = tether_client(relay.ws_url());
    prec.until_open(LIMIT).await;
    within(LIMIT, publisher.publish_acked("room", "after restart"))
        .await
        .unwrap();
    assert_eq!(next_message(&mut rec).await, (1, json!("after restart")));
    assert_eq!(client.stats().reconnects, 1);
    relay.shutdown().await;
}

/// A relay whose presence grace period is `grace` (`relay_with` sets its own, short one).
async fn relay_with_grace(grace: Duration) -> RelayHandle {
    Relay::bind(
        "127.0.0.1:0",
        RelayConfig {
            presence_grace: grace,
            ..RelayConfig::default()
        },
    )
    .await
    .unwrap()
}

async fn relay_with_addr(addr: std::net::SocketAddr) -> RelayHandle {
    // The old socket is gone once abort() resolved; retry briefly in case the OS lags.
    for _ in 0..50 {
        if let Ok(r) = Relay::bind(addr, RelayConfig::default()).await {
            return r;
        }
        tokio::time::sleep(ms(20)).await;
    }
    panic!("cannot rebind {addr}");
}

#[tokio::test]
async fn resubscribe_replays_what_was_missed_without_duplicates() {
    let relay = relay().await;
    let proxy = ChaosProxy::start(relay.local_addr()).await.unwrap();
    let (reader, mut rec) = tether_client(proxy.ws_url("/"));
    reader.subscribe("room").unwrap();
    rec.until_subscribed(LIMIT).await;
    let (writer, mut wrec) = tether_client(relay.ws_url());
    wrec.until_open(LIMIT).await;
    for i in 1..=3 {
        within(LIMIT, writer.publish_acked("room", json!(i)))
            .await
            .unwrap();
    }
    for i in 1..=3 {
        assert_eq!(next_message(&mut rec).await, (i, json!(i)));
    }

    proxy.set_mode(Mode::Refuse);
    proxy.kill_all();
    for i in 4..=6 {
        within(LIMIT, writer.publish_acked("room", json!(i)))
            .await
            .unwrap();
    }
    proxy.set_mode(Mode::Forward);
    let recovered = rec.until_subscribed(LIMIT).await;
    assert!(recovered, "the relay still had the history");
    for i in 4..=6 {
        assert_eq!(next_message(&mut rec).await, (i, json!(i)));
    }
    rec.collect_for(ms(200)).await;
    let extra: Vec<_> = rec
        .seen
        .iter()
        .filter(|(_, e)| matches!(e, Event::Message(_)))
        .collect();
    assert_eq!(extra.len(), 6, "no duplicates: {:?}", rec.names());
    relay.shutdown().await;
}

#[tokio::test]
async fn leaving_and_rejoining_a_channel_at_once_keeps_the_subscription_across_reconnects() {
    // The relay answers the unsubscribe after the client has subscribed again; that answer
    // must not end the new subscription (the next reconnect would not resubscribe).
    let relay = relay().await;
    let proxy = ChaosProxy::start(relay.local_addr()).await.unwrap();
    let (reader, mut rec) = tether_client(proxy.ws_url("/"));
    reader.subscribe("room").unwrap();
    rec.until_subscribed(LIMIT).await;
    reader.unsubscribe("room").unwrap();
    reader.subscribe("room").unwrap();
    rec.until_subscribed(LIMIT).await;
    rec.collect_for(ms(200)).await; // the answer to the unsubscribe, if it is late
    let unsubscribed = rec
        .seen
        .iter()
        .filter(|(_, e)| matches!(e, Event::Unsubscribed { .. }))
        .count();
    assert_eq!(unsubscribed, 1, "only the app's own: {:?}", rec.names());

    proxy.kill_all();
    rec.until_subscribed(LIMIT).await;
    let (writer, mut wrec) = tether_client(relay.ws_url());
    wrec.until_open(LIMIT).await;
    within(LIMIT, writer.publish_acked("room", json!("after")))
        .await
        .unwrap();
    assert_eq!(next_message(&mut rec).await.1, json!("after"));
    relay.shutdown().await;
}

#[tokio::test]
async fn acknowledged_publishes_survive_a_dropped_connection() {
    let relay = relay().await;
    let proxy = ChaosProxy::start(relay.local_addr()).await.unwrap();
    let (reader, mut rec) = tether_client(relay.ws_url());
    reader.subscribe("room").unwrap();
    rec.until_subscribed(LIMIT).await;
    let (writer, mut wrec) = tether_client(proxy.ws_url("/"));
    wrec.until_open(LIMIT).await;

    let mut acks = Vec::new();
    for i in 0..50 {
        let w = writer.clone();
        acks.push(tokio::spawn(async move {
            w.publish_acked("room", json!(i)).await
        }));
        if i == 25 {
            proxy.kill_all(); // some publishes reached the relay, their acks did not come back
        }
    }
    for ack in acks {
        tokio::time::timeout(LIMIT, ack)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 50 {
        got.push(next_message(&mut rec).await.1);
    }
    assert_eq!(
        got,
        (0..50).map(|i| json!(i)).collect::<Vec<_>>(),
        "each once, in order"
    );
    rec.collect_for(ms(200)).await;
    let messages = rec
        .seen
        .iter()
        .filter(|(_, e)| matches!(e, Event::Message(_)))
        .count();
    assert_eq!(messages, 50, "no duplicate delivery");
    assert!(writer.stats().reconnects >= 1);
    relay.shutdown().await;
}

#[tokio::test]
async fn a_black_hole_is_detected_within_the_heartbeat_bound() {
    let relay = relay().await;
    let proxy = ChaosProxy::start(relay.local_addr()).await.unwrap();
    let (client, events) = fast(proxy.ws_url("/"))
        .heartbeat_mode(HeartbeatMode::PingFrame)
        .max_missed_pongs(2)
        .connect()
        .unwrap();
    let mut rec = Recorder::new(events);
    rec.until_open(LIMIT).await;
    rec.until(LIMIT, |e| matches!(e, Event::Rtt { .. }).then_some(()))
        .await;

    proxy.set_mode(Mode::BlackHole);
    let cause = rec
        .until(LIMIT, |e| match e {
            Event::ReconnectScheduled { cause, .. } => Some(cause.clone()),
            _ => None,
        })
        .await;
    // The bound is interval × (missed + 1) = 600 ms, checked exactly in virtual time
    // (sdk-core's scenarios: black_hole_is_detected_within_interval_times_missed_plus_one).
    // Over real sockets the heartbeat is what must find it, within LIMIT: without a working
    // detector only the TCP stack would, minutes later. No tighter wall-clock bound: on a
    // loaded shared machine the timers and the event delivery can each lag by hundreds of ms.
    assert_eq!(cause, DisconnectCause::HeartbeatTimeout);
    proxy.set_mode(Mode::Forward);
    rec.until_open(LIMIT).await;
    drop(client);
    relay.shutdown().await;
}

#[tokio::test]
async fn an_accept_then_close_server_meets_growing_delays() {
    let server = MisbehavingServer::start(Behaviour::AcceptThenClose(None))
        .await
        .unwrap();
    let (client, events) = fast(server.ws_url())
        .jitter(Jitter::None)
        .backoff_max(ms(5_000))
        .min_uptime(ms(1_000))
        .connect()
        .unwrap();
    let mut rec = Recorder::new(events);
    // No connection lives for the 1 s minimum uptime, so the backoff never resets: with
    // Jitter::None the engine announces exactly the doubling curve from 50 ms.
    let expected = [ms(50), ms(100), ms(200), ms(400), ms(800)];
    let mut delays = Vec::new();
    while delays.len() < expected.len() {
        let delay = rec
            .until(LIMIT, |e| match e {
                Event::ReconnectScheduled { delay, .. } => Some(*delay),
                _ => None,
            })
            .await;
        delays.push(delay);
    }
    assert_eq!(delays, expected, "announced delays");
    // No unannounced (hot-loop) reconnects: the client queues each ReconnectScheduled before
    // it starts the wait, so every arrival after the first follows one, whatever the timing.
    let arrivals = server.arrivals();
    rec.collect_for(Duration::ZERO).await; // what was announced by now
    let announced = rec
        .seen
        .iter()
        .filter(|(_, e)| matches!(e, Event::ReconnectScheduled { .. }))
        .count();
    assert!(
        arrivals.len() >= expected.len() && arrivals.len() <= announced + 1,
        "{} connections for {announced} announced reconnects",
        arrivals.len()
    );
    // The client really waited: only lower bounds on wall-clock gaps (a loaded machine makes
    // them longer, never shorter), 5 ms under the announced delay for timer granularity.
    let gaps: Vec<Duration> = arrivals.windows(2).map(|w| w[1].at - w[0].at).collect();
    for (gap, delay) in gaps.iter().zip(&delays) {
        assert!(
            *gap + ms(5) >= *delay,
            "waited {gap:?} for a {delay:?} delay: {gaps:?}"
        );
    }
    drop(client);
}

#[tokio::test]
async fn a_peer_that_never_answers_the_close_is_released_at_the_close_timeout() {
    let server = MisbehavingServer::start(Behaviour::Unresponsive)
        .await
        .unwrap();
    let (client, events) = fast(server.ws_url())
        .close_timeout(ms(300))
        .connect()
        .unwrap();
    let mut rec = Recorder::new(events);
    rec.until_open(LIMIT).await;
    let asked = std::time::Instant::now();
    let reason = tokio::time::timeout(LIMIT, client.close()).await.unwrap();
    assert_eq!(reason, CloseReason::App { code: 1000 });
    // The socket goes with the engine's verdict, not with the client (still alive here).
    eventually(LIMIT, || !server.hangups().is_empty()).await;
    let hangups = server.hangups();
    assert_eq!(hangups.len(), 1, "the connection is still open");
    let after = hangups[0] - asked;
    assert!(
        after >= ms(250) && after < ms(3_000),
        "released {after:?} after the close"
    );
    drop(client);
}

#[tokio::test]
async fn policy_violation_refreshes_the_token_once_then_stops() {
    let server = MisbehavingServer::start(Behaviour::AcceptThenClose(Some((
        1008,
        "token expired".into(),
    ))))
    .await
    .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let (client, events) = fast(server.ws_url())
        .token_provider(move |refresh| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move { Ok::<_, std::io::Error>(format!("t{n}-{refresh}")) }
        })
        .connect()
        .unwrap();
    let mut rec = Recorder::new(events);
    let state = rec.until_state(LIMIT, State::is_closed).await;
    assert_eq!(
        state,
        State::Closed {
            reason: CloseReason::Unauthorized {
                code: Some(1008),
                status: None
            }
        }
    );
    let auth: Vec<Option<String>> = server
        .arrivals()
        .into_iter()
        .map(|a| a.authorization)
        .collect();
    assert_eq!(
        auth,
        vec![
            Some("Bearer t1-false".into()),
            Some("Bearer t2-true".into())
        ]
    );
    drop(client);
}

/// A server that closes every connection with 1013 (try again later), and a client told to
/// wait `minimum` after it, past its first refusal; with the wait it announced.
async fn refused_as_busy(minimum: Duration) -> (MisbehavingServer, Client, Recorder, Duration) {
    let server = MisbehavingServer::start(Behaviour::AcceptThenClose(Some((1013, "busy".into()))))
        .await
        .unwrap();
    let policy = ClosePolicy::default().with_try_again_later_delay(minimum);
    let (client, events) = fast(server.ws_url())
        .close_policy(policy)
        .connect()
        .unwrap();
    let mut rec = Recorder::new(events);
    let delay = rec
        .until(LIMIT, |e| match e {
            Event::ReconnectScheduled { delay, .. } => Some(*delay),
            _ => None,
        })
        .await;
    (server, client, rec, delay)
}

#[tokio::test]
async fn try_again_later_and_service_restart_delay_the_retry() {
    let (server, client, _rec, delay) = refused_as_busy(ms(400)).await;
    assert!(delay >= ms(400), "{delay:?}");
    // The retry comes after the announced delay (about 0.4-0.5 s), later on a loaded machine:
    // wait for it as long as LIMIT, then check it did not come early.
    eventually(LIMIT, || server.arrivals().len() >= 2).await;
    let arrivals = server.arrivals();
    assert!(arrivals.len() >= 2, "no retry within {LIMIT:?}");
    assert!(arrivals[1].at - arrivals[0].at >= ms(400));
    drop(client);

    // The server's minimum outlives a close: an app that closes while waiting for it and
    // connects again (a reconnect button, a view rebuilt) does not call on the server sooner.
    let (server, client, _rec, _) = refused_as_busy(ms(800)).await;
    client.close().await;
    client.connect();
    eventually(LIMIT, || server.arrivals().len() >= 2).await;
    let arrivals = server.arrivals();
    assert!(
        arrivals.len() >= 2,
        "no attempt after connect() within {LIMIT:?}"
    );
    let waited = arrivals[1].at - arrivals[0].at;
    assert!(waited >= ms(800), "called again after {waited:?}");
    drop(client);

    let server = MisbehavingServer::start(Behaviour::AcceptThenClose(Some((
        1012,
        r#"{"reconnect_within_ms": 300}"#.into(),
    ))))
    .await
    .unwrap();
    let (client, events) = fast(server.ws_url())
        .backoff_initial(ms(5_000))
        .backoff_max(ms(5_000))
        .jitter(Jitter::None)
        .connect()
        .unwrap();
    let mut rec = Recorder::new(events);
    let delay = rec
        .until(LIMIT, |e| match e {
            Event::ReconnectScheduled { delay, .. } => Some(*delay),
            _ => None,
        })
        .await;
    // The window replaces the backoff only after a stable connection (the engine's scenario
    // tests cover that); a server that accepts and closes at once still gets the backoff, or
    // a 1 ms window would make it a hot loop.
    assert_eq!(
        delay,
        ms(5_000),
        "a connection closed before it was stable waits the backoff"
    );
    drop(client);
}

#[tokio::test]
async fn an_oversized_incoming_message_is_reported_and_the_connection_survives() {
    let server = MisbehavingServer::start(Behaviour::SendThenEcho("x".repeat(2_000)))
        .await
        .unwrap();
    let (client, events) = fast(server.ws_url())
        .max_message_bytes(1_024)
        .connect()
        .unwrap();
    reported_and_connection_kept(&client, events, "frame_too_large").await;
}

/// Waits for an error event of `kind`, then checks for a while that the client never
/// reconnected (merely open again would pass with a 50 ms backoff hiding a drop).
async fn reported_and_connection_kept(client: &Client, events: tether::Events, kind: &str) {
    let mut rec = Recorder::new(events);
    let got = rec
        .until(LIMIT, |e| match e {
            Event::Error(err) => Some(err.kind()),
            _ => None,
        })
        .await;
    assert_eq!(got, kind);
    rec.collect_for(ms(300)).await;
    assert_eq!(
        (client.stats().opens, client.stats().reconnects),
        (1, 0),
        "the problem did not cost the connection"
    );
}

#[tokio::test]
async fn malformed_frames_are_reported_and_the_connection_survives() {
    let server = MisbehavingServer::start(Behaviour::SendThenEcho("{not json".into()))
        .await
        .unwrap();
    let (client, events) = fast(server.ws_url())
        .protocol(Protocol::Tether)
        .connect()
        .unwrap();
    reported_and_connection_kept(&client, events, "decode").await;
    assert!(matches!(
        client.send("x".repeat(2 << 20)),
        Err(tether::SendError::TooLarge {
            limit: tether::SizeLimit::MaxMessageBytes,
            ..
        })
    ));
}

#[tokio::test]
async fn oversized_frames_close_only_the_offender_at_the_relay() {
    let relay = relay_with(RelayConfig {
        max_message_size: 1024,
        ..RelayConfig::default()
    })
    .await;
    let (bystander, mut brec) = tether_client(relay.ws_url());
    bystander.subscribe("room").unwrap();
    brec.until_subscribed(LIMIT).await;
    let (offender, events) = fast(relay.ws_url())
        .protocol(Protocol::Tether)
        .connect()
        .unwrap();
    let mut orec = Recorder::new(events);
    orec.until_open(LIMIT).await;
    let huge = offender.publish("room", "x".repeat(4096)).unwrap();
    // Its message is dropped as too large, not re-sent after every reconnect (each time
    // closing the connection again) with everything behind it waiting.
    assert_eq!(
        dropped(&mut orec, huge).await,
        DropReason::Rejected {
            code: "too_large".into()
        }
    );
    let cause = orec
        .until(LIMIT, |e| match e {
            Event::ReconnectScheduled { cause, .. } => Some(cause.clone()),
            _ => None,
        })
        .await;
    assert!(
        matches!(
            &cause,
            DisconnectCause::Closed {
                code: Some(1009),
                ..
            } | DisconnectCause::Failed { .. }
        ),
        "{cause:?}"
    );
    within(LIMIT, bystander.publish_acked("room", "still here"))
        .await
        .unwrap();
    assert_eq!(next_message(&mut brec).await.1, json!("still here"));
    // And what the offender sends next gets through.
    within(LIMIT, offender.publish_acked("room", "small"))
        .await
        .unwrap();
    assert_eq!(next_message(&mut brec).await.1, json!("small"));
    assert!(offender.stats().reconnects <= 3, "{:?}", offender.stats());
    assert_eq!(
        (bystander.stats().opens, bystander.stats().reconnects),
        (1, 0),
        "only the offender's connection was closed"
    );
    drop(offender);
    relay.shutdown().await;
}

#[tokio::test]
async fn wss_with_a_private_ca_is_trusted_only_when_given_the_ca() {
    let server = TlsEchoServer::start().await.unwrap();
    let (untrusting, events) = fast(server.wss_url()).connect().unwrap();
    let mut rec = Recorder::new(events);
    let message = rec
        .until(LIMIT, |e| match e {
            Event::Error(err) => Some(err.to_string()),
            _ => None,
        })
        .await;
    assert!(message.to_lowercase().contains("certificate"), "{message}");
    assert_eq!(
        untrusting.stats().opens,
        0,
        "an untrusted certificate never opens"
    );
    drop(untrusting);

    let (client, events) = fast(server.wss_url())
        .ca_file(server.ca_file())
        .connect()
        .unwrap();
    let mut rec = Recorder::new(events);
    rec.until_open(LIMIT).await;
    client.send("over tls").unwrap();
    let got = rec
        .until(LIMIT, |e| match e {
            Event::Message(m) => Some(m.payload.clone()),
            _ => None,
        })
        .await;
    assert_eq!(got, Payload::Text("over tls".into()));
}

/// The channel offset inside a relay SSE event's data (the message envelope). A raw-mode
/// client's `offset` is its event id parsed as a number, and the relay's ids are
/// `<epoch>-<offset>`, so that no resume across a restart is mistaken for one within a run.
fn envelope_offset(m: &tether::InboundMessage) -> Option<u64> {
    // The stream's `position` event carries a `subscribed`, not a message.
    if m.event.is_some() {
        return None;
    }
    match &m.payload {
        Payload::Text(text) => {
            serde_json::from_str::<serde_json::Value>(text).ok()?["offset"].as_u64()
        }
        _ => None,
    }
}

/// The channel offsets of the next `n` messages `rec` sees (each within [`LIMIT`]).
async fn next_envelope_offsets(rec: &mut Recorder, n: usize) -> Vec<u64> {
    let mut offsets = Vec::with_capacity(n);
    while offsets.len() < n {
        offsets.push(
            rec.until(LIMIT, |e| match e {
                Event::Message(m) => envelope_offset(m),
                _ => None,
            })
            .await,
        );
    }
    offsets
}

#[tokio::test]
async fn sse_resumes_with_last_event_id_and_honours_retry() {
    let relay = relay().await;
    let proxy = ChaosProxy::start(relay.local_addr()).await.unwrap();
    let (sse, events) = fast(proxy.http_url("/sse/news")).connect().unwrap();
    let mut rec = Recorder::new(events);
    rec.until_open(LIMIT).await;
    let (writer, mut wrec) = tether_client(relay.ws_url());
    wrec.until_open(LIMIT).await;
    for i in 1..=3 {
        within(LIMIT, writer.publish_acked("news", json!(i)))
            .await
            .unwrap();
    }
    let offsets = next_envelope_offsets(&mut rec, 3).await;
    assert_eq!(offsets, vec![1, 2, 3]);

    proxy.set_mode(Mode::Refuse);
    proxy.kill_all();
    let delay = rec
        .until(LIMIT, |e| match e {
            Event::ReconnectScheduled { delay, .. } => Some(*delay),
            _ => None,
        })
        .await;
    assert!(
        delay >= ms(300),
        "the relay's retry: 300 raises the 50 ms backoff: {delay:?}"
    );
    for i in 4..=5 {
        within(LIMIT, writer.publish_acked("news", json!(i)))
            .await
            .unwrap();
    }
    proxy.set_mode(Mode::Forward);
    let resumed = next_envelope_offsets(&mut rec, 2).await;
    assert_eq!(
        resumed,
        vec![4, 5],
        "replayed after Last-Event-ID, no duplicates"
    );
    drop(sse);
    relay.shutdown().await;
}

/// An event stream that has received nothing yet still resumes from where it started: what
/// is published while it reconnects reaches it. (Without an id from the relay it reconnected
/// without `Last-Event-ID`, as a new stream, and got only what came after.)
#[tokio::test]
async fn an_sse_stream_that_received_nothing_yet_misses_nothing_across_a_reconnect() {
    let relay = relay().await;
    let (writer, mut wrec) = tether_client(relay.ws_url());
    wrec.until_open(LIMIT).await;
    // History before the stream opens, which it must not get.
    within(LIMIT, writer.publish_acked("news", json!(0)))
        .await
        .unwrap();
    let proxy = ChaosProxy::start(relay.local_addr()).await.unwrap();
    let (sse, events) = fast(proxy.http_url("/sse/news")).connect().unwrap();
    let mut rec = Recorder::new(events);
    rec.until_open(LIMIT).await;

    proxy.set_mode(Mode::Refuse);
    proxy.kill_all();
    rec.until_state(LIMIT, |s| matches!(s, State::Waiting { .. }))
        .await;
    for i in 1..=2 {
        within(LIMIT, writer.publish_acked("news", json!(i)))
            .await
            .unwrap();
    }
    proxy.set_mode(Mode::Forward);
    let resumed = next_envelope_offsets(&mut rec, 2).await;
    assert_eq!(resumed, vec![2, 3], "what was published while it was away");
    drop(sse);
    relay.shutdown().await;
}

/// An SSE stream that resumes past what the relay kept of its channel is told so, as a
/// WebSocket subscriber is (`Subscribed { recovered: false }`): it used to get what was kept
/// after a silent gap. A resume within what was kept says `recovered: true`.
#[tokio::test]
async fn an_sse_stream_resuming_past_the_relays_history_is_told_of_the_gap() {
    let relay = relay_with(RelayConfig {
        history_capacity: 3,
        ..RelayConfig::default()
    })
    .await;
    let (writer, mut wrec) = tether_client(relay.ws_url());
    wrec.until_open(LIMIT).await;
    let proxy = ChaosProxy::start(relay.local_addr()).await.unwrap();
    let (sse, events) = fast(proxy.http_url("/sse/news"))
        .protocol(Protocol::Tether)
        .connect()
        .unwrap();
    let mut rec = Recorder::new(events);
    let away_while = async |rec: &mut Recorder, published: u64| {
        proxy.set_mode(Mode::Refuse);
        proxy.kill_all();
        rec.until_state(LIMIT, |s| matches!(s, State::Waiting { .. }))
            .await;
        for i in 0..published {
            within(LIMIT, writer.publish_acked("news", json!(i)))
                .await
                .unwrap();
        }
        proxy.set_mode(Mode::Forward);
    };
    assert!(!rec.until_subscribed(LIMIT).await, "a new stream");
    away_while(&mut rec, 2).await;
    assert!(
        rec.until_subscribed(LIMIT).await,
        "2 missed, 3 kept: recovered"
    );
    away_while(&mut rec, 5).await;
    assert!(
        !rec.until_subscribed(LIMIT).await,
        "5 missed, 3 kept: a gap"
    );
    drop(sse);
    relay.shutdown().await;
}

#[tokio::test]
async fn the_token_provider_is_asked_on_every_attempt() {
    let relay = relay_with(RelayConfig {
        token: Some("s3cret".into()),
        ..RelayConfig::default()
    })
    .await;
    let proxy = ChaosProxy::start(relay.local_addr()).await.unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let (client, events) = fast(proxy.ws_url("/"))
        .protocol(Protocol::Tether)
        .token_provider(move |refresh: bool| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            // The first token is stale: the relay refuses it, and the refresh gets a good one.
            let token = if n == 0 && !refresh {
                "stale"
            } else {
                "s3cret"
            };
            async move { Ok::<_, std::io::Error>(token.to_owned()) }
        })
        .connect()
        .unwrap();
    let mut rec = Recorder::new(events);
    rec.until_open(LIMIT).await;
    for _ in 0..3 {
        rec.collect_for(ms(400)).await; // longer than min uptime: stable
        proxy.kill_all();
        rec.until_state(LIMIT, |s| matches!(s, State::Waiting { .. }))
            .await;
        rec.until_open(LIMIT).await;
    }
    let stats = client.stats();
    assert_eq!(u64::from(calls.load(Ordering::SeqCst)), stats.attempts);
    assert!(stats.attempts >= 5, "{stats:?}");
    relay.shutdown().await;
}

/// A Tether client named `id`, subscribed to `lobby` (the subscription confirmed).
async fn in_lobby(url: String, id: &str) -> (Client, Recorder) {
    let (client, events) = fast(url)
        .protocol(Protocol::Tether)
        .client_id(id)
        .connect()
        .unwrap();
    let mut rec = Recorder::new(events);
    client.subscribe("lobby").unwrap();
    rec.until_subscribed(LIMIT).await;
    (client, rec)
}

/// The members present on a channel `client` is subscribed to.
fn members(client: &Client, channel: &str) -> Vec<String> {
    client
        .presence(channel)
        .expect("tether mode")
        .expect("subscribed")
}

/// Waits for a presence update in which `member` is present, or (`present` false) has left.
async fn until_presence(rec: &mut Recorder, member: &str, present: bool) {
    rec.until(LIMIT, |e| match e {
        Event::Presence { members, left, .. } => {
            let seen = if present { members } else { left };
            seen.iter().any(|m| m == member).then_some(())
        }
        _ => None,
    })
    .await;
}

#[tokio::test]
async fn a_quick_reconnect_never_looks_like_leaving() {
    let relay = relay().await;
    let proxy = ChaosProxy::start(relay.local_addr()).await.unwrap();
    let (flaky, mut frec) = in_lobby(proxy.ws_url("/"), "flaky").await;
    let (watcher, mut wrec) = in_lobby(relay.ws_url(), "watcher").await;
    until_presence(&mut wrec, "flaky", true).await;

    proxy.kill_all();
    frec.until_subscribed(LIMIT).await;
    wrec.collect_for(ms(1_500)).await; // past the 1 s grace period
    let left_flaky = wrec.seen.iter().any(
        |(_, e)| matches!(e, Event::Presence { left, .. } if left.contains(&"flaky".to_owned())),
    );
    assert!(!left_flaky, "{:?}", wrec.names());
    assert_eq!(members(&watcher, "lobby"), vec!["flaky", "watcher"]);

    drop(flaky);
    until_presence(&mut wrec, "flaky", false).await;
    relay.shutdown().await;
}

#[tokio::test]
async fn a_client_that_closes_leaves_at_once_not_after_the_grace_period() {
    // A minute of grace: only a close that says it is leaving (1000) can explain a leave
    // within the test's limit.
    let relay = relay_with_grace(Duration::from_secs(60)).await;
    let (leaver, _lrec) = in_lobby(relay.ws_url(), "leaver").await;
    let (watcher, mut wrec) = in_lobby(relay.ws_url(), "watcher").await;
    until_presence(&mut wrec, "leaver", true).await;

    leaver.close().await;
    until_presence(&mut wrec, "leaver", false).await;
    assert_eq!(members(&watcher, "lobby"), vec!["watcher"]);
    relay.shutdown().await;
}

/// A member with two connections (two tabs, one `client_id`): one drops and comes back within
/// the grace period while the other leaves the channel on purpose. The member never left, so
/// nobody is told it did.
#[tokio::test]
async fn a_member_back_within_grace_stays_when_its_other_tab_leaves() {
    let relay = relay().await;
    let proxy = ChaosProxy::start(relay.local_addr()).await.unwrap();
    let (watcher, mut wrec) = in_lobby(relay.ws_url(), "watcher").await;
    let (tab_a, mut arec) = in_lobby(proxy.ws_url("/"), "alice").await;
    let (tab_b, _brec) = in_lobby(relay.ws_url(), "alice").await;
    until_presence(&mut wrec, "alice", true).await;
    let before = wrec.seen.len();
    // Tab A's connection drops (it will be back within the 1 s grace period) ...
    proxy.set_mode(Mode::Refuse);
    proxy.kill_all();
    arec.until_state(LIMIT, |s| matches!(s, State::Waiting { .. }))
        .await;
    // Watcher and tab B: the relay has seen the drop.
    assert!(eventually(LIMIT, || relay.open_connections() == 2).await);
    // ... and tab B leaves the channel on purpose meanwhile. A round trip behind the
    // unsubscribe: once its reply is in, the relay has read the unsubscribe.
    tab_b.unsubscribe("lobby").unwrap();
    tab_b.request(json!("barrier"), Some(LIMIT)).await.unwrap();
    proxy.set_mode(Mode::Forward);
    arec.until_subscribed(LIMIT).await;
    wrec.collect_for(ms(1_500)).await; // past the grace period
    let flicker: Vec<_> = wrec.seen[before..]
        .iter()
        .filter(|(_, e)| {
            matches!(e, Event::Presence { left, .. } if left.contains(&"alice".to_owned()))
        })
        .collect();
    assert!(flicker.is_empty(), "alice never left, yet: {flicker:#?}");
    assert_eq!(members(&watcher, "lobby"), vec!["alice", "watcher"]);
    // Had tab A not come back, alice would leave when its grace period ends.
    drop((tab_a, tab_b));
    until_presence(&mut wrec, "alice", false).await;
    relay.shutdown().await;
}

/// A client finds its connection dead (heartbeat) on a path that vanished, so the relay
/// never hears that connection hang up; it reconnects, resubscribes, then closes with 1000.
/// The relay ends the dead connection when the same client instance says hello again, so the
/// member leaves at the close, not a liveness limit (50 s) and a grace period later.
#[tokio::test]
async fn a_client_that_reconnected_past_a_dead_path_leaves_on_close() {
    let relay = relay().await;
    let proxy = tether_tests::oneway::OneWayProxy::start(relay.local_addr())
        .await
        .unwrap();
    let (watcher, mut wrec) = in_lobby(relay.ws_url(), "watcher").await;
    let (alice, mut arec) = in_lobby(proxy.url(), "alice").await;
    until_presence(&mut wrec, "alice", true).await;
    proxy.freeze_existing();
    arec.until_subscribed(LIMIT).await; // found dead, reconnected, resubscribed
    alice.close().await;
    // No grace for a close with 1000 (and the grace period, 1 s, is far below the limit).
    until_presence(&mut wrec, "alice", false).await;
    assert_eq!(members(&watcher, "lobby"), vec!["watcher"]);
    relay.shutdown().await;
}

#[tokio::test]
async fn requests_get_replies_over_the_relay() {
    let relay = relay().await;
    let (client, mut rec) = tether_client(relay.ws_url());
    rec.until_open(LIMIT).await;
    let reply = client
        .request(json!({"q": 1}), Some(ms(2_000)))
        .await
        .unwrap();
    assert_eq!(reply, json!({"q": 1}));
    relay.shutdown().await;
}

/// The `Dropped` event naming `id`, and its reason.
async fn dropped(rec: &mut Recorder, id: tether::MessageId) -> DropReason {
    rec.until(LIMIT, |e| match e {
        Event::Dropped { ids, reason } if ids.contains(&id) => Some(reason.clone()),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn an_acked_send_that_times_out_unsent_is_dropped_and_reported() {
    // Accepts TCP connections but never answers the handshake: nothing can be written.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", silent.local_addr().unwrap());
    let (client, events) = fast(url).protocol(Protocol::Tether).connect().unwrap();
    let mut rec = Recorder::new(events);

    let started = std::time::Instant::now();
    let err = client
        .send_acked_with(json!(1), AckedOptions::timeout(ms(300)))
        .await
        .unwrap_err();
    let took = started.elapsed();
    let AckError::TimedOut { id, status } = err else {
        panic!("{err:?}");
    };
    assert_eq!(status, Unacked::Expired);
    assert!(took >= ms(300) && took < LIMIT, "timed out after {took:?}");
    assert_eq!(dropped(&mut rec, id).await, DropReason::Expired);
    assert_eq!(client.outbox_len(), 0, "not kept to be sent late");

    // A TTL shorter than the timeout ends it first: a drop, not a timeout.
    let started = std::time::Instant::now();
    let err = client
        .publish_acked_with(
            "room",
            json!(2),
            AckedOptions::timeout(ms(5_000)).with_ttl(ms(100)),
        )
        .await;
    assert_eq!(err, Err(AckError::Dropped(DropReason::Expired)));
    assert!(started.elapsed() < ms(5_000));
    assert_eq!(client.stats().dropped_expired, 2);
    client.shutdown().await;
    drop(silent);
}

/// The id and status of an acked send that timed out; any other outcome fails the test.
fn timed_out<T: std::fmt::Debug>(result: Result<T, AckError>) -> (tether::MessageId, Unacked) {
    match result {
        Err(AckError::TimedOut { id, status }) => (id, status),
        other => panic!("expected a timeout: {other:?}"),
    }
}

#[tokio::test]
async fn an_acked_send_written_before_its_timeout_awaits_its_ack_and_is_never_resent() {
    let relay = relay().await;
    let proxy = ChaosProxy::start(relay.local_addr()).await.unwrap();
    let (reader, mut rec) = tether_client(relay.ws_url());
    reader.subscribe("room").unwrap();
    rec.until_subscribed(LIMIT).await;
    // Heartbeats slower than the test: the black hole goes unnoticed, the connection stays.
    let (writer, events) = fast(proxy.ws_url("/"))
        .protocol(Protocol::Tether)
        .heartbeat_interval(ms(60_000))
        .connect()
        .unwrap();
    let mut wrec = Recorder::new(events);
    wrec.until_open(LIMIT).await;

    // Written, but the relay's ack is withheld: it stays, and its Acked event comes later.
    proxy.set_mode(Mode::BlackHole);
    let late = AckedOptions::timeout(ms(300));
    let err = writer.publish_acked_with("room", json!("late"), late).await;
    let (id, status) = timed_out(err);
    assert_eq!(status, Unacked::AwaitingAck);
    assert_eq!(writer.outbox_len(), 1, "it awaits its ack in the outbox");
    proxy.set_mode(Mode::Forward);
    wrec.until(LIMIT, |e| {
        matches!(e, Event::Acked { id: acked, .. } if *acked == id).then_some(())
    })
    .await;
    assert_eq!(next_message(&mut rec).await.1, json!("late"));
    assert_eq!(writer.outbox_len(), 0);

    // Written, then the connection dies: after the reconnect it is dropped, not re-sent.
    proxy.set_mode(Mode::BlackHole);
    let err = writer.publish_acked_with("room", json!("lost"), late).await;
    let (id, status) = timed_out(err);
    assert_eq!(status, Unacked::AwaitingAck);
    proxy.kill_all();
    // Forwarding again only once the old connection is gone, which held the frame.
    wrec.until_state(LIMIT, |s| !s.is_open()).await;
    proxy.set_mode(Mode::Forward);
    assert_eq!(dropped(&mut wrec, id).await, DropReason::Expired);
    within(LIMIT, writer.publish_acked("room", json!("after")))
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut rec).await.1,
        json!("after"),
        "not \"lost\""
    );
    assert_eq!(writer.stats().resent, 0);
    writer.shutdown().await;
    reader.shutdown().await;
    relay.shutdown().await;
}

#[tokio::test]
async fn an_acked_send_with_a_timeout_too_far_to_represent_is_acknowledged() {
    // The engine's clock saturates at such a deadline, and the driver turns it into "no
    // timer" where the platform's clock cannot hold it (macOS, Windows: std's Instant would
    // panic). On Linux it fits, so this checks the saturating path end to end, not that guard.
    let relay = relay().await;
    let (client, mut rec) = tether_client(relay.ws_url());
    rec.until_open(LIMIT).await;
    let forever = AckedOptions::timeout(Duration::MAX).with_ttl(Duration::MAX);
    let acked = tokio::time::timeout(LIMIT, client.publish_acked_with("room", json!(1), forever))
        .await
        .expect("acknowledged in time");
    assert_eq!(acked, Ok(Some(1)));
    client.shutdown().await;
    relay.shutdown().await;
}

/// The relay closes connections silent for two of its ping intervals (4000). A healthy idle
/// client stays: with its own heartbeat (ping frames here), and also with none at all, since
/// it answers the relay's pings (the driver answers ping frames, the engine answers `ping`).
#[tokio::test]
async fn an_idle_healthy_client_is_not_closed_by_the_relays_liveness_check() {
    let relay = relay_with(RelayConfig {
        ping_interval: Some(ms(100)),
        ..RelayConfig::default()
    })
    .await;
    let (own, mut own_rec) = tether_client(relay.ws_url());
    let (none, events) = fast(relay.ws_url())
        .protocol(Protocol::Tether)
        .heartbeat_mode(HeartbeatMode::Off)
        .connect()
        .unwrap();
    let mut none_rec = Recorder::new(events);
    own.subscribe("idle").unwrap();
    none.subscribe("idle").unwrap();
    own_rec.until_subscribed(LIMIT).await;
    none_rec.until_subscribed(LIMIT).await;
    // Ten of the relay's intervals, five of its silence limits, with no traffic of their own.
    tokio::time::sleep(ms(1_000)).await;
    for client in [&own, &none] {
        let stats = client.stats();
        assert_eq!((stats.opens, stats.reconnects), (1, 0), "{stats:?}");
    }
    let (publisher, mut prec) = tether_client(relay.ws_url());
    prec.until_open(LIMIT).await;
    within(LIMIT, publisher.publish_acked("idle", "still here"))
        .await
        .unwrap();
    assert_eq!(next_message(&mut own_rec).await.1, json!("still here"));
    assert_eq!(next_message(&mut none_rec).await.1, json!("still here"));
    drop((own, none, publisher));
    relay.shutdown().await;
}

/// A client's connection drops (the relay sees the socket end: a grace period starts); the
/// client reconnects with the same instance, resubscribes, and later closes with 1000. The
/// relay knows the new connection is the dropped one's return (same `hello.instance`), so the
/// member leaves at the close, not when a grace period meant for a return that already
/// happened ends (a minute here).
#[tokio::test]
async fn a_client_back_from_a_dropped_connection_leaves_at_once_on_close() {
    let relay = relay_with_grace(Duration::from_secs(60)).await;
    let proxy = ChaosProxy::start(relay.local_addr()).await.unwrap();
    let (watcher, mut wrec) = in_lobby(relay.ws_url(), "watcher").await;
    let (alice, mut arec) = in_lobby(proxy.ws_url("/"), "alice").await;
    until_presence(&mut wrec, "alice", true).await;
    // The connection drops, and the relay sees it end before alice is back.
    proxy.set_mode(Mode::Refuse);
    proxy.kill_all();
    arec.until_state(LIMIT, |s| matches!(s, State::Waiting { .. }))
        .await;
    assert!(eventually(LIMIT, || relay.open_connections() == 1).await);
    proxy.set_mode(Mode::Forward);
    arec.until_subscribed(LIMIT).await;
    alice.close().await;
    until_presence(&mut wrec, "alice", false).await;
    assert_eq!(members(&watcher, "lobby"), vec!["watcher"]);
    relay.shutdown().await;
}
