//! The "no silent message loss" promises end to end, through relay restarts and dropped
//! connections: every accepted send ends exactly once (acked or reported dropped), every
//! request exactly once, and a subscriber that comes back misses nothing it is not told of.
//! Loopback only; every loop is bounded, every wait has a deadline, every server is stopped.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;
use tether::{Client, ClientBuilder, Event, MessageId, Payload, Protocol, RequestId, State};
use tether_relay::{Relay, RelayConfig, RelayHandle};
use tether_tests::proxy::{ChaosProxy, Mode};
use tether_tests::wait::{within, Recorder};

const LIMIT: Duration = Duration::from_secs(10);

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

async fn relay_with(config: RelayConfig) -> RelayHandle {
    Relay::bind("127.0.0.1:0", config).await.unwrap()
}

/// A new relay process on the address of one that was aborted (history and dedupe lost).
async fn relay_at(addr: std::net::SocketAddr, config: RelayConfig) -> RelayHandle {
    for _ in 0..50 {
        if let Ok(r) = Relay::bind(addr, config.clone()).await {
            return r;
        }
        tokio::time::sleep(ms(20)).await;
    }
    panic!("cannot rebind {addr}");
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

/// A client subscribed to "room" (its `subscribed` received).
async fn room_reader(url: impl Into<String>) -> (Client, Recorder) {
    let (reader, mut rec) = client(url);
    reader.subscribe("room").unwrap();
    rec.until_subscribed(LIMIT).await;
    (reader, rec)
}

fn payload_of(m: &tether::InboundMessage) -> serde_json::Value {
    match &m.payload {
        Payload::Json(v) => v.clone(),
        other => panic!("expected JSON, got {other:?}"),
    }
}

/// The channel messages seen so far, as (offset, payload).
fn messages(rec: &Recorder, channel: &str) -> Vec<(Option<u64>, serde_json::Value)> {
    rec.seen
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Message(m) if m.channel.as_deref() == Some(channel) => {
                Some((m.offset, payload_of(m)))
            }
            _ => None,
        })
        .collect()
}

/// Receives events until `rec` has `n` messages on "room" (or `limit` passes), then for
/// `more` (anything delivered twice comes then).
async fn until_room_messages(rec: &mut Recorder, n: usize, limit: Duration, more: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while messages(rec, "room").len() < n && tokio::time::Instant::now() < deadline {
        rec.collect_for(ms(50)).await;
    }
    rec.collect_for(more).await;
}

/// Acked and Dropped events per message id.
fn outcomes(rec: &Recorder) -> HashMap<MessageId, Vec<String>> {
    let mut out: HashMap<MessageId, Vec<String>> = HashMap::new();
    for (_, e) in &rec.seen {
        match e {
            Event::Acked { id, .. } => out.entry(*id).or_default().push("acked".into()),
            Event::Dropped { ids, reason } => {
                for id in ids {
                    out.entry(*id)
                        .or_default()
                        .push(format!("dropped {}", reason.name()));
                }
            }
            _ => {}
        }
    }
    out
}

/// Replied and RequestFailed events per request id.
fn request_outcomes(rec: &Recorder) -> HashMap<RequestId, Vec<String>> {
    let mut out: HashMap<RequestId, Vec<String>> = HashMap::new();
    for (_, e) in &rec.seen {
        match e {
            Event::Replied { id, .. } => out.entry(*id).or_default().push("replied".into()),
            Event::RequestFailed { id, reason } => out
                .entry(*id)
                .or_default()
                .push(format!("failed {reason:?}")),
            _ => {}
        }
    }
    out
}

/// Receives events until every id in `ids` has an outcome in `of` (or `LIMIT` passes).
async fn until_settled<K: std::hash::Hash + Eq, V>(
    rec: &mut Recorder,
    ids: &[K],
    of: impl Fn(&Recorder) -> HashMap<K, V>,
) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while tokio::time::Instant::now() < deadline {
        let settled = of(rec);
        if ids.iter().all(|id| settled.contains_key(id)) {
            break;
        }
        rec.collect_for(ms(50)).await;
    }
    rec.collect_for(ms(300)).await; // anything reported twice comes now
}

/// Publishes `count` acked messages to "room" in a tight loop; the relay is aborted after
/// publish `abort_at` and a new one (no history, no dedupe memory) starts on its address
/// after publish `back_at`. Returns the message ids and the new relay.
async fn publish_across_a_restart(
    publisher: &Client,
    relay: RelayHandle,
    count: u32,
    abort_at: u32,
    back_at: u32,
) -> (Vec<MessageId>, RelayHandle) {
    let addr = relay.local_addr();
    let mut ids = Vec::new();
    let mut relay = Some(relay);
    for i in 0..count {
        ids.push(publisher.publish("room", json!(i)).unwrap());
        if i == abort_at {
            relay.take().unwrap().abort().await;
        }
        if i == back_at {
            relay = Some(relay_at(addr, RelayConfig::default()).await);
        }
        if i % 10 == 0 {
            tokio::task::yield_now().await;
        }
    }
    (ids, relay.expect("the new relay"))
}

#[tokio::test]
async fn publishes_in_a_tight_loop_across_a_relay_restart_end_exactly_once() {
    let relay = relay_with(RelayConfig::default()).await;
    let (publisher, mut prec) = client(relay.ws_url());
    prec.until_open(LIMIT).await;

    let (ids, relay) = publish_across_a_restart(&publisher, relay, 400, 150, 250).await;
    until_settled(&mut prec, &ids, outcomes).await;
    let settled = outcomes(&prec);
    for id in &ids {
        let got = settled.get(id).cloned().unwrap_or_default();
        assert_eq!(
            got.len(),
            1,
            "message {id:?} ended {got:?}; seen {:?}",
            prec.names()
        );
    }
    publisher.shutdown().await;
    relay.shutdown().await;
}

/// Requests in flight while the connection drops: each ends once, replied or failed with
/// `ConnectionLost` (the default, `fail_requests_on_disconnect`); re-sent and replied when
/// the app asked for requests to survive a reconnect.
#[tokio::test]
async fn requests_in_flight_across_a_reconnect_end_exactly_once() {
    for fail_on_disconnect in [true, false] {
        let relay = relay_with(RelayConfig::default()).await;
        let proxy = ChaosProxy::start(relay.local_addr()).await.unwrap();
        let (requester, events) = fast(proxy.ws_url("/"))
            .fail_requests_on_disconnect(fail_on_disconnect)
            .connect()
            .unwrap();
        let mut rec = Recorder::new(events);
        rec.until_open(LIMIT).await;
        let mut waits = Vec::new();
        for i in 0..40 {
            let c = requester.clone();
            waits.push(tokio::spawn(async move {
                c.request(json!(i), Some(ms(5_000))).await
            }));
            if i == 20 {
                proxy.kill_all();
            }
        }
        let mut replies = Vec::new();
        for w in waits {
            replies.push(tokio::time::timeout(LIMIT, w).await.unwrap().unwrap());
        }
        rec.collect_for(ms(300)).await;
        for (i, r) in replies.iter().enumerate() {
            let lost = matches!(
                r,
                Err(tether::RequestError::Failed(
                    tether::RequestFailure::ConnectionLost
                ))
            );
            let ok = r.as_ref().ok() == Some(&json!(i)) || (fail_on_disconnect && lost);
            assert!(
                ok,
                "request {i} (fail on disconnect: {fail_on_disconnect}): {r:?}"
            );
        }
        let ended = request_outcomes(&rec);
        assert_eq!(ended.len(), 40, "{:?}", rec.names());
        for (id, got) in ended {
            assert_eq!(got.len(), 1, "request {id:?} ended {got:?}");
        }
        requester.shutdown().await;
        relay.shutdown().await;
    }
}

/// A subscriber away while the relay restarts (history lost) comes back to the new relay:
/// it is told it may have missed messages, and it gets every message the new relay has.
#[tokio::test]
async fn a_subscriber_away_during_a_relay_restart_is_told_and_gets_the_new_history() {
    let relay = relay_with(RelayConfig::default()).await;
    let addr = relay.local_addr();
    let proxy = ChaosProxy::start(addr).await.unwrap();
    let (reader, mut rec) = room_reader(proxy.ws_url("/")).await;
    let (writer, mut wrec) = client(relay.ws_url());
    wrec.until_open(LIMIT).await;
    for i in 1..=5 {
        within(LIMIT, writer.publish_acked("room", json!(i)))
            .await
            .unwrap();
    }
    rec.until(LIMIT, |e| {
        matches!(e, Event::Message(m) if m.offset == Some(5)).then_some(())
    })
    .await;

    proxy.set_mode(Mode::Refuse);
    proxy.kill_all();
    relay.abort().await;
    let relay = relay_at(addr, RelayConfig::default()).await;
    // The writer comes back first and publishes fewer messages than the reader had seen.
    wrec.until_state(LIMIT, State::is_open).await;
    for i in 6..=8 {
        within(LIMIT, writer.publish_acked("room", json!(i)))
            .await
            .unwrap();
    }
    proxy.set_mode(Mode::Forward);
    let recovered = rec.until_subscribed(LIMIT).await;
    assert!(!recovered, "a new epoch: the client must be told");
    within(LIMIT, writer.publish_acked("room", json!(9)))
        .await
        .unwrap();
    rec.until(LIMIT, |e| {
        matches!(e, Event::Message(m) if payload_of(m) == json!(9)).then_some(())
    })
    .await;
    rec.collect_for(ms(200)).await;
    let got: Vec<_> = messages(&rec, "room").into_iter().map(|(_, p)| p).collect();
    assert_eq!(got, (1..=9).map(|i| json!(i)).collect::<Vec<_>>());
    reader.shutdown().await;
    writer.shutdown().await;
    relay.shutdown().await;
}

/// A subscriber whose resume offset is older than the relay's retained history is told it
/// missed messages and gets what is retained, each once.
#[tokio::test]
async fn a_resume_older_than_the_history_is_reported_and_replays_what_is_kept() {
    let config = RelayConfig {
        history_capacity: 3,
        ..RelayConfig::default()
    };
    let relay = relay_with(config).await;
    let proxy = ChaosProxy::start(relay.local_addr()).await.unwrap();
    let (reader, mut rec) = room_reader(proxy.ws_url("/")).await;
    let (writer, mut wrec) = client(relay.ws_url());
    wrec.until_open(LIMIT).await;
    within(LIMIT, writer.publish_acked("room", json!(1)))
        .await
        .unwrap();
    rec.until(LIMIT, |e| matches!(e, Event::Message(_)).then_some(()))
        .await;
    proxy.set_mode(Mode::Refuse);
    proxy.kill_all();
    for i in 2..=10 {
        within(LIMIT, writer.publish_acked("room", json!(i)))
            .await
            .unwrap();
    }
    proxy.set_mode(Mode::Forward);
    let recovered = rec.until_subscribed(LIMIT).await;
    assert!(
        !recovered,
        "messages 2..=7 are gone: the client must be told"
    );
    rec.until(LIMIT, |e| {
        matches!(e, Event::Message(m) if m.offset == Some(10)).then_some(())
    })
    .await;
    rec.collect_for(ms(200)).await;
    let got: Vec<_> = messages(&rec, "room")
        .into_iter()
        .map(|(o, _)| o.unwrap())
        .collect();
    assert_eq!(got, vec![1, 8, 9, 10]);
    reader.shutdown().await;
    writer.shutdown().await;
    relay.shutdown().await;
}

/// Unsubscribing and subscribing again while disconnected: the channel is subscribed once the
/// client is back, and live messages reach it.
#[tokio::test]
async fn unsubscribe_and_resubscribe_while_away_keeps_the_channel() {
    let relay = relay_with(RelayConfig::default()).await;
    let proxy = ChaosProxy::start(relay.local_addr()).await.unwrap();
    let (reader, mut rec) = room_reader(proxy.ws_url("/")).await;
    proxy.set_mode(Mode::Refuse);
    proxy.kill_all();
    rec.until_state(LIMIT, |s| matches!(s, State::Waiting { .. }))
        .await;
    reader.unsubscribe("room").unwrap();
    reader.subscribe("room").unwrap();
    proxy.set_mode(Mode::Forward);
    rec.until_subscribed(LIMIT).await;
    let (writer, mut wrec) = client(relay.ws_url());
    wrec.until_open(LIMIT).await;
    within(LIMIT, writer.publish_acked("room", json!("live")))
        .await
        .unwrap();
    rec.until(LIMIT, |e| {
        matches!(e, Event::Message(m) if payload_of(m) == json!("live")).then_some(())
    })
    .await;
    reader.shutdown().await;
    writer.shutdown().await;
    relay.shutdown().await;
}

/// Acked publishes in a tight loop while both the publisher's and the subscriber's
/// connections are cut again and again (the relay keeps running): every publish is acked
/// once, and the subscriber gets each exactly once, in order.
#[tokio::test]
async fn publishes_through_repeated_cuts_reach_a_cut_subscriber_exactly_once_in_order() {
    let relay = relay_with(RelayConfig::default()).await;
    let wproxy = ChaosProxy::start(relay.local_addr()).await.unwrap();
    let rproxy = ChaosProxy::start(relay.local_addr()).await.unwrap();
    let (reader, mut rec) = room_reader(rproxy.ws_url("/")).await;
    let (writer, mut wrec) = client(wproxy.ws_url("/"));
    wrec.until_open(LIMIT).await;

    const N: u32 = 300;
    let mut ids = Vec::new();
    for i in 0..N {
        ids.push(writer.publish("room", json!(i)).unwrap());
        match i % 60 {
            20 => wproxy.kill_all(),
            40 => rproxy.kill_all(),
            _ => {}
        }
        if i % 5 == 0 {
            tokio::time::sleep(ms(2)).await;
        }
    }
    until_settled(&mut wrec, &ids, outcomes).await;
    let settled = outcomes(&wrec);
    for id in &ids {
        assert_eq!(
            settled.get(id).map(Vec::as_slice),
            Some(&["acked".to_owned()][..])
        );
    }
    until_room_messages(&mut rec, N as usize, LIMIT, ms(300)).await;
    let got: Vec<_> = messages(&rec, "room").into_iter().map(|(_, p)| p).collect();
    let want: Vec<_> = (0..N).map(|i| json!(i)).collect();
    assert_eq!(got, want, "each once, in order");
    reader.shutdown().await;
    writer.shutdown().await;
    relay.shutdown().await;
}

/// A subscriber that stops reading (its app leaves events unread) becomes the relay's slow
/// consumer and is closed with 1013; once the app reads again it resumes from its offset:
/// every message once, in order, and it is told nothing was missed.
#[tokio::test]
async fn a_slow_consumer_closed_by_the_relay_resumes_without_gaps_or_duplicates() {
    let relay = relay_with(RelayConfig {
        max_queued_frames: 16,
        max_queued_bytes: 256 * 1024,
        ..RelayConfig::default()
    })
    .await;
    let (reader, events) = fast(relay.ws_url())
        .event_capacity(4)
        .read_buffer_size(16 * 1024)
        .heartbeat_interval(ms(60_000))
        .connect()
        .unwrap();
    let mut rec = Recorder::new(events);
    reader.subscribe("room").unwrap();
    rec.until_subscribed(LIMIT).await;
    let (writer, mut wrec) = client(relay.ws_url());
    wrec.until_open(LIMIT).await;
    // The reader's app reads nothing meanwhile: its socket fills, then the relay's queue.
    const N: u64 = 400;
    let filler = "x".repeat(32 * 1024);
    for i in 1..=N {
        within(
            LIMIT,
            writer.publish_acked("room", json!({"i": i, "fill": filler})),
        )
        .await
        .unwrap();
    }
    until_room_messages(&mut rec, N as usize, Duration::from_secs(30), ms(300)).await;
    let got: Vec<u64> = messages(&rec, "room")
        .into_iter()
        .map(|(_, p)| p["i"].as_u64().unwrap())
        .collect();
    assert!(
        reader.stats().reconnects >= 1,
        "the relay cut the slow reader off"
    );
    assert_eq!(
        got,
        (1..=N).collect::<Vec<_>>(),
        "{:?}",
        rec.names()
            .iter()
            .filter(|n| !n.starts_with("message"))
            .collect::<Vec<_>>()
    );
    reader.shutdown().await;
    writer.shutdown().await;
    relay.shutdown().await;
}

/// When the relay comes back in [`drain_across_an_outage`]: before the drain is asked, or
/// this long after.
enum Back {
    BeforeTheDrain,
    After(Duration),
}

/// A writer (`builder` of the proxy's URL) publishes `count` acked messages while the relay is
/// unreachable, then asks `close_after_drain(drain)`, the relay coming back as `back` says:
/// each is acked once, and the subscriber gets each once, in order.
async fn drain_across_an_outage(
    builder: impl FnOnce(String) -> ClientBuilder,
    count: u64,
    drain: Duration,
    back: Back,
) {
    let relay = relay_with(RelayConfig::default()).await;
    let proxy = ChaosProxy::start(relay.local_addr()).await.unwrap();
    let (reader, mut rec) = room_reader(relay.ws_url()).await;
    let (writer, events) = builder(proxy.ws_url("/")).connect().unwrap();
    let mut wrec = Recorder::new(events);
    wrec.until_open(LIMIT).await;
    proxy.set_mode(Mode::Refuse);
    proxy.kill_all();
    wrec.until_state(LIMIT, |s| matches!(s, State::Waiting { .. }))
        .await;
    let ids: Vec<_> = (0..count)
        .map(|i| writer.publish("room", json!(i)).unwrap())
        .collect();
    if let Back::BeforeTheDrain = back {
        proxy.set_mode(Mode::Forward);
    }
    let closed = tokio::spawn(writer.close_after_drain(drain));
    if let Back::After(delay) = back {
        tokio::time::sleep(delay).await;
        proxy.set_mode(Mode::Forward);
    }
    let reason = tokio::time::timeout(LIMIT, closed)
        .await
        .expect("closed within the drain's time")
        .unwrap();
    until_settled(&mut wrec, &ids, outcomes).await;
    let settled = outcomes(&wrec);
    for id in &ids {
        assert_eq!(
            settled.get(id).map(Vec::as_slice),
            Some(&["acked".to_owned()][..]),
            "closed: {reason:?}; {:?}",
            wrec.names()
        );
    }
    until_room_messages(&mut rec, count as usize, LIMIT, ms(0)).await;
    let got: Vec<_> = messages(&rec, "room").into_iter().map(|(_, p)| p).collect();
    assert_eq!(got, (0..count).map(|i| json!(i)).collect::<Vec<_>>());
    reader.shutdown().await;
    relay.shutdown().await;
}

/// Acked publishes accepted while the relay is unreachable wait in the outbox (within its
/// bounds); `close_after_drain` asked meanwhile still delivers them once the relay is back,
/// then closes.
#[tokio::test]
async fn a_drain_asked_while_offline_delivers_what_was_queued_once_the_relay_is_back() {
    drain_across_an_outage(fast, 20, Duration::from_secs(8), Back::After(ms(300))).await;
}

/// The same with the next attempt a minute away: the drain (5 s) is far shorter than the
/// wait, so it attempts at once. Before, it waited out its 5 s and dropped all with the relay
/// back up.
#[tokio::test]
async fn a_drain_shorter_than_the_backoff_reconnects_at_once_to_deliver() {
    let slow = |url: String| {
        fast(url)
            .backoff_initial(Duration::from_secs(60))
            .backoff_max(Duration::from_secs(60))
    };
    drain_across_an_outage(slow, 5, Duration::from_secs(5), Back::BeforeTheDrain).await;
}

/// `close()` right after a burst of acked publishes: what the client had written reaches the
/// relay ahead of the close frame, and the relay acks it before it answers the close. Every
/// message is reported once, and none the relay stored (the reader got it) is reported
/// dropped. Before, everything unacknowledged at the call was `Dropped { Closed }` at once.
#[tokio::test]
async fn a_close_right_after_publishing_reports_no_stored_message_as_dropped() {
    let relay = relay_with(RelayConfig::default()).await;
    let (reader, mut rec) = room_reader(relay.ws_url()).await;
    let (writer, mut wrec) = client(relay.ws_url());
    wrec.until_open(LIMIT).await;
    let ids: Vec<_> = (0..200)
        .map(|i| writer.publish("room", json!(i)).unwrap())
        .collect();
    let reason = tokio::time::timeout(LIMIT, writer.close())
        .await
        .expect("closed");
    until_settled(&mut wrec, &ids, outcomes).await;
    rec.collect_for(ms(300)).await;
    let stored: Vec<usize> = messages(&rec, "room")
        .into_iter()
        .map(|(_, p)| p.as_u64().unwrap() as usize)
        .collect();
    let settled = outcomes(&wrec);
    let acked = ids.iter().filter(|id| settled[id] == ["acked"]).count();
    for (i, id) in ids.iter().enumerate() {
        let outcome = settled.get(id).map(Vec::as_slice).unwrap_or_default();
        let expected: &[&str] = if stored.contains(&i) {
            &["acked"]
        } else {
            &["dropped closed"]
        };
        assert_eq!(
            outcome,
            expected,
            "message {i}; closed {reason:?}; {acked} acked; {:?}",
            wrec.names()
        );
    }
    assert!(acked > 0, "some were written before the close: {acked}");
    reader.shutdown().await;
    relay.shutdown().await;
}

/// `close()` right after a burst of requests: the relay replies to every request the client
/// had written before it answers the close frame behind them, so each of those resolves;
/// only those never written fail `Closed`. Before, every request was failed `Closed` at the
/// call, also those the relay had carried out (an app retrying them repeats them).
#[tokio::test]
async fn a_close_right_after_requesting_fails_no_request_the_relay_answered() {
    let relay = relay_with(RelayConfig::default()).await;
    let (c, mut rec) = client(relay.ws_url());
    rec.until_open(LIMIT).await;
    let frames_before = c.stats().frames_sent;
    let pending: Vec<_> = (0..200).map(|i| c.request(json!(i), Some(LIMIT))).collect();
    let reason = tokio::time::timeout(LIMIT, c.close())
        .await
        .expect("closed");
    let results = tokio::time::timeout(LIMIT, futures_util::future::join_all(pending))
        .await
        .expect("every request ended");
    let written = c.stats().frames_sent - frames_before;
    let replied = results.iter().filter(|r| r.is_ok()).count() as u64;
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.iter().all(|e| matches!(
            e,
            tether::RequestError::Failed(tether::RequestFailure::Closed)
        )),
        "{failed:?}"
    );
    assert_eq!(
        replied, written,
        "every request written before the close is answered; closed {reason:?}"
    );
    assert!(written > 0, "some were written before the close");
    relay.shutdown().await;
}

/// Two clients (tabs) with the same `client_id` publish acked messages to the same channel
/// through cuts: the relay keys resends on (`client_id`, id), so neither's publish may be
/// taken for a resend of the other's.
#[tokio::test]
async fn two_clients_sharing_a_client_id_lose_none_of_each_others_publishes() {
    let relay = relay_with(RelayConfig::default()).await;
    let proxy = ChaosProxy::start(relay.local_addr()).await.unwrap();
    let (_reader, mut rec) = room_reader(relay.ws_url()).await;
    let tab = |url: String| {
        let (c, e) = fast(url).client_id("alice").connect().unwrap();
        (c, Recorder::new(e))
    };
    let (a, mut arec) = tab(proxy.ws_url("/"));
    let (b, mut brec) = tab(proxy.ws_url("/"));
    arec.until_open(LIMIT).await;
    brec.until_open(LIMIT).await;
    let mut aids = Vec::new();
    let mut bids = Vec::new();
    for i in 0..50 {
        aids.push(a.publish("room", json!(format!("a{i}"))).unwrap());
        bids.push(b.publish("room", json!(format!("b{i}"))).unwrap());
        if i == 25 {
            proxy.kill_all();
        }
    }
    until_settled(&mut arec, &aids, outcomes).await;
    until_settled(&mut brec, &bids, outcomes).await;
    for (rec, ids) in [(&arec, &aids), (&brec, &bids)] {
        let settled = outcomes(rec);
        for id in ids {
            assert_eq!(
                settled.get(id).map(Vec::as_slice),
                Some(&["acked".to_owned()][..])
            );
        }
    }
    until_room_messages(&mut rec, 100, LIMIT, ms(200)).await;
    let mut got: Vec<String> = messages(&rec, "room")
        .into_iter()
        .map(|(_, p)| p.as_str().unwrap().to_owned())
        .collect();
    got.sort();
    let mut want: Vec<String> = (0..50)
        .flat_map(|i| [format!("a{i}"), format!("b{i}")])
        .collect();
    want.sort();
    assert_eq!(got, want);
    relay.shutdown().await;
}

/// Publishes and requests still pending when the app shuts the client down (while the relay
/// is unreachable, or with acks and replies withheld) are each reported once before the
/// event stream ends.
#[tokio::test]
async fn pending_work_at_shutdown_is_reported_once_before_the_events_end() {
    let relay = relay_with(RelayConfig::default()).await;
    let proxy = ChaosProxy::start(relay.local_addr()).await.unwrap();
    for offline in [true, false] {
        let (c, mut rec) = client(proxy.ws_url("/"));
        rec.until_open(LIMIT).await;
        if offline {
            proxy.set_mode(Mode::Refuse);
            proxy.kill_all();
            rec.until_state(LIMIT, |s| matches!(s, State::Waiting { .. }))
                .await;
        } else {
            proxy.set_mode(Mode::BlackHole);
        }
        let ids: Vec<_> = (0..10)
            .map(|i| c.publish("room", json!(i)).unwrap())
            .collect();
        let request = {
            let c = c.clone();
            tokio::spawn(async move { c.request(json!("q"), Some(LIMIT)).await })
        };
        tokio::time::sleep(ms(100)).await;
        tokio::time::timeout(LIMIT, c.shutdown()).await.unwrap();
        let answer = tokio::time::timeout(LIMIT, request).await.unwrap().unwrap();
        assert!(answer.is_err(), "{answer:?}");
        rec.collect_for(ms(300)).await;
        let settled = outcomes(&rec);
        for id in &ids {
            let got = settled.get(id).cloned().unwrap_or_default();
            assert_eq!(
                got.len(),
                1,
                "offline {offline}: {id:?} ended {got:?}: {:?}",
                rec.names()
            );
        }
        let failed = request_outcomes(&rec);
        assert_eq!(failed.len(), 1, "offline {offline}: {:?}", rec.names());
        proxy.set_mode(Mode::Forward);
    }
    relay.shutdown().await;
}

/// A publisher in a tight loop and a subscriber, both connected while the relay is killed and
/// a new one (no history) starts on its address: every publish ends once, and the subscriber
/// gets every message the new relay acknowledged, each once, in the new relay's order.
#[tokio::test]
async fn what_the_restarted_relay_acknowledged_reaches_a_subscriber_once_in_order() {
    let relay = relay_with(RelayConfig::default()).await;
    let (reader, mut rec) = room_reader(relay.ws_url()).await;
    let (publisher, mut prec) = client(relay.ws_url());
    prec.until_open(LIMIT).await;
    let (ids, relay) = publish_across_a_restart(&publisher, relay, 600, 200, 300).await;
    until_settled(&mut prec, &ids, outcomes).await;
    let settled = outcomes(&prec);
    for id in &ids {
        let got = settled.get(id).cloned().unwrap_or_default();
        assert_eq!(got, ["acked"], "message {id:?}");
    }
    // The offsets the new relay acknowledged: 1..=top in its epoch, after the old relay's.
    let acked: Vec<u64> = prec
        .seen
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Acked { offset, .. } => *offset,
            _ => None,
        })
        .collect();
    let first = acked.iter().rposition(|o| *o == 1).unwrap();
    let top = acked[first..].iter().copied().max().unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let last = messages(&rec, "room").last().and_then(|(o, _)| *o);
        if last == Some(top) || tokio::time::Instant::now() >= deadline {
            break;
        }
        rec.collect_for(ms(50)).await;
    }
    rec.collect_for(ms(300)).await;
    // After the subscriber's resubscribe to the new relay: offsets 1..=top, each once.
    let all = messages(&rec, "room");
    let restart = all
        .iter()
        .rposition(|(o, _)| *o == Some(1))
        .expect("the new relay's first message");
    let after: Vec<u64> = all[restart..].iter().map(|(o, _)| o.unwrap()).collect();
    assert_eq!(after, (1..=top).collect::<Vec<_>>());
    reader.shutdown().await;
    publisher.shutdown().await;
    relay.shutdown().await;
}

/// The app closes while acks are withheld, calls `connect` during the close handshake and
/// publishes more: what came before the `connect` ends once (acked or dropped `closed`), what
/// came after it is delivered on the next connection, each once.
#[tokio::test]
async fn publishes_around_a_connect_during_a_close_end_exactly_once() {
    let relay = relay_with(RelayConfig::default()).await;
    let proxy = ChaosProxy::start(relay.local_addr()).await.unwrap();
    let (reader, mut rec) = room_reader(relay.ws_url()).await;
    let (writer, events) = fast(proxy.ws_url("/"))
        .close_timeout(ms(500))
        .heartbeat_interval(ms(60_000))
        .connect()
        .unwrap();
    let mut wrec = Recorder::new(events);
    wrec.until_open(LIMIT).await;
    proxy.set_mode(Mode::BlackHole);
    let before: Vec<_> = (0..10)
        .map(|i| writer.publish("room", json!(format!("before{i}"))).unwrap())
        .collect();
    tokio::time::sleep(ms(50)).await;
    let closing = {
        let w = writer.clone();
        tokio::spawn(async move { w.close().await })
    };
    wrec.until_state(LIMIT, |s| matches!(s, State::Closing))
        .await;
    writer.connect();
    let after: Vec<_> = (0..10)
        .map(|i| writer.publish("room", json!(format!("after{i}"))).unwrap())
        .collect();
    proxy.kill_all();
    proxy.set_mode(Mode::Forward);
    let _ = tokio::time::timeout(LIMIT, closing).await.unwrap();
    let all: Vec<_> = before.iter().chain(&after).copied().collect();
    until_settled(&mut wrec, &all, outcomes).await;
    let settled = outcomes(&wrec);
    for id in &before {
        let got = settled.get(id).cloned().unwrap_or_default();
        assert_eq!(got.len(), 1, "{id:?} ended {got:?}: {:?}", wrec.names());
    }
    for id in &after {
        let got = settled.get(id).cloned().unwrap_or_default();
        assert_eq!(got, ["acked"], "{id:?}: {:?}", wrec.names());
    }
    until_room_messages(&mut rec, 10, LIMIT, ms(200)).await;
    let got: Vec<String> = messages(&rec, "room")
        .into_iter()
        .map(|(_, p)| p.as_str().unwrap().to_owned())
        .filter(|p| p.starts_with("after"))
        .collect();
    assert_eq!(
        got,
        (0..10).map(|i| format!("after{i}")).collect::<Vec<_>>()
    );
    writer.shutdown().await;
    reader.shutdown().await;
    relay.shutdown().await;
}

/// Two clients increment a shared counter while the relay is down; a new relay (no
/// documents) starts on its address: both converge on the sum of every increment, none lost
/// and none applied twice.
#[tokio::test]
async fn document_increments_made_while_the_relay_restarts_sum_exactly() {
    let relay = relay_with(RelayConfig::default()).await;
    let addr = relay.local_addr();
    let (a, mut arec) = client(relay.ws_url());
    let (b, mut brec) = client(relay.ws_url());
    let doc_a = a.document("counter").unwrap();
    let doc_b = b.document("counter").unwrap();
    arec.until_open(LIMIT).await;
    brec.until_open(LIMIT).await;
    relay.abort().await;
    arec.until_state(LIMIT, |s| matches!(s, State::Waiting { .. }))
        .await;
    brec.until_state(LIMIT, |s| matches!(s, State::Waiting { .. }))
        .await;
    for _ in 0..5 {
        doc_a.increment("n", 1).unwrap();
    }
    for _ in 0..3 {
        doc_b.increment("n", 1).unwrap();
    }
    let relay = relay_at(addr, RelayConfig::default()).await;
    let settled = tether_tests::wait::eventually(LIMIT, || {
        doc_a.pending() == 0
            && doc_b.pending() == 0
            && doc_a.get("n") == Some(json!(8))
            && doc_b.get("n") == Some(json!(8))
    })
    .await;
    assert!(
        settled,
        "a {:?}, b {:?}",
        doc_a.snapshot(),
        doc_b.snapshot()
    );
    a.shutdown().await;
    b.shutdown().await;
    relay.shutdown().await;
}

/// A subscriber of more channels than the relay's rate-limit burst resumes every one of them
/// after a cut: each is recovered and gets what was published while it was away.
#[tokio::test]
async fn resubscribing_more_channels_than_the_rate_limit_burst_misses_nothing() {
    let relay = relay_with(RelayConfig {
        rate_limit: Some(tether_relay::RateLimit {
            per_second: 40,
            burst: 5,
        }),
        ..RelayConfig::default()
    })
    .await;
    let proxy = ChaosProxy::start(relay.local_addr()).await.unwrap();
    let (reader, mut rec) = client(proxy.ws_url("/"));
    const N: usize = 30;
    for c in 0..N {
        reader.subscribe(&format!("c{c}")).unwrap();
    }
    for _ in 0..N {
        rec.until_subscribed(LIMIT).await;
    }
    let (writer, mut wrec) = client(relay.ws_url());
    wrec.until_open(LIMIT).await;
    proxy.set_mode(Mode::Refuse);
    proxy.kill_all();
    rec.until_state(LIMIT, |s| matches!(s, State::Waiting { .. }))
        .await;
    for c in 0..N {
        within(LIMIT, writer.publish_acked(&format!("c{c}"), json!(c)))
            .await
            .unwrap();
        tokio::time::sleep(ms(30)).await; // within the writer's own rate
    }
    proxy.set_mode(Mode::Forward);
    let deadline = tokio::time::Instant::now() + LIMIT;
    let count = |rec: &Recorder| {
        rec.seen
            .iter()
            .filter(|(_, e)| matches!(e, Event::Message(_)))
            .count()
    };
    while count(&rec) < N && tokio::time::Instant::now() < deadline {
        rec.collect_for(ms(50)).await;
    }
    rec.collect_for(ms(300)).await;
    let recovered: Vec<bool> = rec
        .seen
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Subscribed { recovered, .. } => Some(*recovered),
            _ => None,
        })
        .skip(N)
        .collect();
    assert_eq!(recovered, vec![true; N], "{:?}", rec.names());
    assert_eq!(count(&rec), N, "{:?}", rec.names());
    reader.shutdown().await;
    writer.shutdown().await;
    relay.shutdown().await;
}

/// A tiny deterministic generator for the seeded chaos run (no dependency needed).
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Seeded chaos: acked publishes while the publisher's and the subscriber's paths are cut,
/// refused and frozen at random. Every publish ends once; the subscriber gets every message
/// once, in order.
#[tokio::test]
async fn seeded_chaos_loses_and_repeats_nothing() {
    for seed in [1u64, 7, 42] {
        let relay = relay_with(RelayConfig::default()).await;
        let wproxy = ChaosProxy::start(relay.local_addr()).await.unwrap();
        let rproxy = ChaosProxy::start(relay.local_addr()).await.unwrap();
        let (reader, mut rec) = room_reader(rproxy.ws_url("/")).await;
        let (writer, mut wrec) = client(wproxy.ws_url("/"));
        wrec.until_open(LIMIT).await;
        let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut ids = Vec::new();
        const N: u64 = 200;
        for i in 0..N {
            ids.push(writer.publish("room", json!(i)).unwrap());
            let proxy = if rng.below(2) == 0 { &wproxy } else { &rproxy };
            match rng.below(40) {
                0 => proxy.kill_all(),
                1 => {
                    proxy.set_mode(Mode::Refuse);
                    proxy.kill_all();
                    tokio::time::sleep(ms(rng.below(300))).await;
                    proxy.set_mode(Mode::Forward);
                }
                2 => {
                    proxy.set_mode(Mode::BlackHole);
                    tokio::time::sleep(ms(rng.below(900))).await;
                    proxy.set_mode(Mode::Forward);
                }
                _ => tokio::time::sleep(ms(rng.below(4))).await,
            }
        }
        wproxy.set_mode(Mode::Forward);
        rproxy.set_mode(Mode::Forward);
        until_settled(&mut wrec, &ids, outcomes).await;
        let settled = outcomes(&wrec);
        for id in &ids {
            let got = settled.get(id).cloned().unwrap_or_default();
            assert_eq!(got, ["acked"], "seed {seed}: {id:?}: {:?}", wrec.names());
        }
        until_room_messages(&mut rec, N as usize, LIMIT, ms(300)).await;
        let got: Vec<u64> = messages(&rec, "room")
            .into_iter()
            .map(|(_, p)| p.as_u64().unwrap())
            .collect();
        assert_eq!(got, (0..N).collect::<Vec<_>>(), "seed {seed}");
        reader.shutdown().await;
        writer.shutdown().await;
        relay.shutdown().await;
    }
}

/// Offline, the outbox keeps what fits its bounds: the oldest beyond them are reported
/// dropped (overflow), the rest delivered once the relay is reachable, each once, in order.
#[tokio::test]
async fn offline_sends_beyond_the_outbox_bound_are_reported_and_the_rest_delivered() {
    let relay = relay_with(RelayConfig::default()).await;
    let proxy = ChaosProxy::start(relay.local_addr()).await.unwrap();
    let (reader, mut rec) = room_reader(relay.ws_url()).await;
    let (writer, events) = fast(proxy.ws_url("/"))
        .outbox_max_messages(5)
        .connect()
        .unwrap();
    let mut wrec = Recorder::new(events);
    wrec.until_open(LIMIT).await;
    proxy.set_mode(Mode::Refuse);
    proxy.kill_all();
    wrec.until_state(LIMIT, |s| matches!(s, State::Waiting { .. }))
        .await;
    let ids: Vec<_> = (0..8)
        .map(|i| writer.publish("room", json!(i)).unwrap())
        .collect();
    proxy.set_mode(Mode::Forward);
    until_settled(&mut wrec, &ids, outcomes).await;
    let settled = outcomes(&wrec);
    let ended: Vec<_> = ids.iter().map(|id| settled.get(id).cloned()).collect();
    let want: Vec<_> = (0..8)
        .map(|i| {
            Some(vec![
                if i < 3 { "dropped overflow" } else { "acked" }.to_owned()
            ])
        })
        .collect();
    assert_eq!(ended, want);
    until_room_messages(&mut rec, 5, LIMIT, ms(200)).await;
    let got: Vec<_> = messages(&rec, "room").into_iter().map(|(_, p)| p).collect();
    assert_eq!(got, (3..8).map(|i| json!(i)).collect::<Vec<_>>());
    writer.shutdown().await;
    reader.shutdown().await;
    relay.shutdown().await;
}
