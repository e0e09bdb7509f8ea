//! Shared documents end to end: native clients on the reference relay over loopback, with the
//! chaos proxy cutting one of them off.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use std::future::Future;
use std::time::Duration;
use tether::{ChangeOrigin, Client, Document, DocumentEvent, Protocol};
use tether_relay::{Relay, RelayConfig, RelayHandle};
use tether_tests::proxy::{ChaosProxy, Mode};
use tether_tests::tap::WsTap;
use tether_tests::wait::eventually;

const LIMIT: Duration = Duration::from_secs(10);

fn builder(url: String) -> tether::ClientBuilder {
    Client::builder(url)
        .protocol(Protocol::Tether)
        .backoff_initial(Duration::from_millis(50))
        .backoff_max(Duration::from_millis(300))
        .heartbeat_interval(Duration::from_millis(300))
}

fn client(url: String) -> Client {
    builder(url).connect().unwrap().0
}

/// A proxy in front of `relay` that can mute the relay's answers, and a builder for an author
/// behind it whose heartbeat does not fire within a test: the muted relay must not get the
/// connection judged dead (and its changes re-sent) before the test says so.
async fn behind_a_muting_proxy(
    relay: &RelayHandle,
) -> (tether_tests::oneway::OneWayProxy, tether::ClientBuilder) {
    let proxy = tether_tests::oneway::OneWayProxy::start(relay.local_addr())
        .await
        .unwrap();
    let author = builder(proxy.url()).heartbeat_interval(Duration::from_secs(60));
    (proxy, author)
}

/// Waits until `doc`'s view satisfies `pred` (bounded).
async fn until(
    doc: &Document,
    what: &str,
    pred: impl Fn(&serde_json::Map<String, serde_json::Value>) -> bool,
) {
    let settled = eventually(LIMIT, || pred(&doc.snapshot()) && doc.pending() == 0).await;
    assert!(settled, "{what}: {:?}", doc.snapshot());
}

#[tokio::test]
async fn two_clients_converge_and_the_loser_of_a_race_is_told() {
    let relay = Relay::bind("127.0.0.1:0", RelayConfig::default())
        .await
        .unwrap();
    let a = client(relay.ws_url());
    let b = client(relay.ws_url());
    let doc_a = a.document("list").unwrap();
    let doc_b = b.document("list").unwrap();
    let mut changes_a = doc_a.changes();

    doc_a.set("title", "groceries").unwrap();
    assert_eq!(
        doc_a.get("title"),
        Some(json!("groceries")),
        "visible at once"
    );
    until(&doc_b, "b sees a's change", |d| {
        d.get("title") == Some(&json!("groceries"))
    })
    .await;

    // A race on one key: a's value lands first, b's last; a must be told it lost.
    doc_a.set("owner", "alice").unwrap();
    until(&doc_a, "a's set confirmed", |d| {
        d.get("owner") == Some(&json!("alice"))
    })
    .await;
    doc_b.set("owner", "bob").unwrap();
    until(&doc_a, "a converges", |d| {
        d.get("owner") == Some(&json!("bob"))
    })
    .await;
    let mut told = false;
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(200), changes_a.recv()).await
    {
        if let DocumentEvent::Changed {
            origin: ChangeOrigin::Remote,
            changes,
        } = event
        {
            told |= changes
                .iter()
                .any(|c| c.key == "owner" && c.overwrote_local);
        }
    }
    assert!(told, "the loser sees its value replaced, flagged");
    assert_eq!(doc_a.snapshot(), doc_b.snapshot());
    relay.shutdown().await;
}

#[tokio::test]
async fn increments_while_cut_off_sum_exactly_and_conflicts_roll_back() {
    let relay = Relay::bind("127.0.0.1:0", RelayConfig::default())
        .await
        .unwrap();
    let proxy = ChaosProxy::start(relay.local_addr()).await.unwrap();
    let online = client(relay.ws_url());
    let flaky = client(proxy.ws_url("/"));
    let doc_on = online.document("votes").unwrap();
    let doc_off = flaky.document("votes").unwrap();
    // Synced once (a version from the server) before the proxy cuts it off.
    let synced = eventually(LIMIT, || doc_off.version().is_some()).await;
    assert!(synced, "flaky never synced");
    let mut flaky_events = doc_off.changes();

    proxy.set_mode(Mode::Refuse);
    proxy.kill_all();
    for _ in 0..10 {
        doc_on.increment("yes", 1).unwrap();
        doc_off.increment("yes", 2).unwrap();
    }
    doc_on.insert("seat", "online").unwrap();
    let claim = doc_off.insert("seat", "flaky").unwrap();
    assert_eq!(
        doc_off.get("yes"),
        Some(json!(20)),
        "its own votes show while cut off"
    );
    until(&doc_on, "online settles", |d| {
        d.get("yes") == Some(&json!(10))
    })
    .await;

    proxy.set_mode(Mode::Forward);
    until(&doc_off, "flaky converges", |d| {
        d.get("yes") == Some(&json!(30))
    })
    .await;
    until(&doc_on, "online converges", |d| {
        d.get("yes") == Some(&json!(30))
    })
    .await;
    assert_eq!(
        doc_off.get("seat"),
        Some(json!("online")),
        "the later insert lost"
    );
    assert_eq!(doc_on.snapshot(), doc_off.snapshot());
    let mut rejected = None;
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(200), flaky_events.recv()).await
    {
        if let DocumentEvent::Rejected { change, code } = event {
            rejected = Some((change, code));
        }
    }
    assert_eq!(rejected, Some((claim, "conflict".to_owned())));
    relay.shutdown().await;
}

#[tokio::test]
async fn change_streams_end_when_the_document_closes_or_the_client_shuts_down() {
    let relay = Relay::bind("127.0.0.1:0", RelayConfig::default())
        .await
        .unwrap();
    let c = client(relay.ws_url());
    let doc = c.document("a").unwrap();
    let mut a_changes = doc.changes();
    doc.set("k", 1).unwrap();
    until(&doc, "confirmed", |d| d.get("k") == Some(&json!(1))).await;
    assert_eq!(doc.confirmed().get("k"), Some(&json!(1)));
    assert!(doc.epoch().is_some());
    doc.close();
    let drained =
        tokio::time::timeout(LIMIT, async { while a_changes.recv().await.is_some() {} }).await;
    assert!(drained.is_ok(), "closing the document ends its streams");

    let other = c.document("b").unwrap();
    let mut b_changes = other.changes();
    shut_down(&c).await;
    let drained =
        tokio::time::timeout(LIMIT, async { while b_changes.recv().await.is_some() {} }).await;
    assert!(drained.is_ok(), "shutdown ends every stream");
    assert!(tokio::time::timeout(LIMIT, other.changes().recv())
        .await
        .unwrap()
        .is_none());
    // Shut down means inert: connect() cannot reopen it, so nothing is accepted that no task
    // would ever send, and acked sends fail at once instead of waiting for ever.
    c.connect();
    assert!(c.state().is_closed(), "{:?}", c.state());
    assert!(matches!(c.send("lost?"), Err(tether::SendError::Closed)));
    let acked = tokio::time::timeout(LIMIT, c.publish_acked("a", "x")).await;
    assert!(matches!(acked, Ok(Err(_))), "{acked:?}");
    relay.shutdown().await;
}

/// Shuts `client` down, within `LIMIT`.
async fn shut_down(client: &Client) {
    tokio::time::timeout(LIMIT, client.shutdown())
        .await
        .unwrap();
}

async fn synced(doc: &Document) {
    assert!(
        eventually(LIMIT, || doc.version().is_some()).await,
        "never synced"
    );
}

#[tokio::test]
async fn an_applied_change_evicted_from_a_full_outbox_still_shows_for_its_author() {
    let relay = Relay::bind("127.0.0.1:0", RelayConfig::default())
        .await
        .unwrap();
    let (a, _events_a) = builder(relay.ws_url())
        .outbox_max_messages(1)
        .connect()
        .unwrap();
    let b = client(relay.ws_url());
    let doc_a = a.document("d").unwrap();
    let doc_b = b.document("d").unwrap();
    synced(&doc_a).await;
    synced(&doc_b).await;

    doc_a.set("title", "mine").unwrap();
    // Polled once: the request is queued at once (before the change's ack can come back),
    // which evicts the written change from the one-message outbox. Its reply is not awaited.
    {
        let request = a.request(json!("hello"), Some(Duration::from_secs(5)));
        let mut request = std::pin::pin!(request);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let _ = request.as_mut().poll(&mut cx);
    }
    let b_sees = eventually(LIMIT, || doc_b.get("title") == Some(json!("mine"))).await;
    assert!(b_sees, "the relay applied it: b shows it");
    let a_sees = eventually(LIMIT, || doc_a.get("title") == Some(json!("mine"))).await;
    let (view_a, view_b) = (doc_a.snapshot(), doc_b.snapshot());
    shut_down(&a).await;
    shut_down(&b).await;
    relay.shutdown().await;
    assert!(a_sees, "its author converges: a {view_a:?}, b {view_b:?}");
}

#[tokio::test]
async fn a_document_reopened_while_cut_off_shows_its_queued_change() {
    let relay = Relay::bind("127.0.0.1:0", RelayConfig::default())
        .await
        .unwrap();
    let proxy = ChaosProxy::start(relay.local_addr()).await.unwrap();
    let a = client(proxy.ws_url("/"));
    let b = client(relay.ws_url());
    let doc_a = a.document("d").unwrap();
    let doc_b = b.document("d").unwrap();
    synced(&doc_a).await;
    synced(&doc_b).await;

    proxy.set_mode(Mode::Refuse);
    proxy.kill_all();
    assert!(
        eventually(LIMIT, || !a.state().is_open()).await,
        "a never noticed the cut"
    );
    doc_a.set("title", "mine").unwrap();
    // The app leaves the document's screen and comes back, still offline.
    doc_a.close();
    let doc_a = a.document("d").unwrap();
    proxy.set_mode(Mode::Forward);

    let b_sees = eventually(LIMIT, || doc_b.get("title") == Some(json!("mine"))).await;
    assert!(b_sees, "the relay applied it: b shows it");
    let a_sees = eventually(LIMIT, || doc_a.get("title") == Some(json!("mine"))).await;
    let (view_a, view_b) = (doc_a.snapshot(), doc_b.snapshot());
    shut_down(&a).await;
    shut_down(&b).await;
    drop(proxy);
    relay.shutdown().await;
    assert!(
        a_sees,
        "the reopened document shows it: a {view_a:?}, b {view_b:?}"
    );
}

// Closing a document used to be local only: the relay went on sending every change of it to
// the client until the connection ended. Now the client's frames stop (the relay was told).
#[tokio::test]
async fn a_closed_document_stops_reaching_its_client_while_others_edit_it() {
    let relay = Relay::bind("127.0.0.1:0", RelayConfig::default())
        .await
        .unwrap();
    let tap = WsTap::start(relay.local_addr()).await.unwrap();
    let writer = client(relay.ws_url());
    // No heartbeat and no other timer within the test (the connection turns stable after
    // `min_uptime`, a timer that also wakes the task): every frame the closer receives is a
    // document frame or a reply to its own request, and it writes only what the app asks for.
    let closer = builder(tap.ws_url())
        .heartbeat_interval(Duration::from_secs(60))
        .min_uptime(Duration::from_secs(60))
        .connect()
        .unwrap()
        .0;
    let doc_w = writer.document("notes").unwrap();
    let doc_c = closer.document("notes").unwrap();
    synced(&doc_c).await;
    doc_w.set("n", 0).unwrap();
    until(&doc_c, "the closer hears of changes while open", |d| {
        d.get("n") == Some(&json!(0))
    })
    .await;

    // The close alone gets written: the task is woken for it (not only by the next command or
    // frame, which could be a minute away).
    tap.hold(true);
    doc_c.close();
    assert_eq!(tap.held(1, LIMIT).await, 1, "the close was written");
    tap.hold(false);
    // A round trip behind the close: once its reply is in, the relay has read the close.
    let barrier = || closer.request(json!("barrier"), Some(LIMIT));
    barrier().await.unwrap();
    let before = closer.stats().frames_received;
    for n in 1..=20 {
        doc_w.set("n", n).unwrap();
    }
    until(&doc_w, "the writer's changes are applied", |d| {
        d.get("n") == Some(&json!(20))
    })
    .await;
    // The relay sends each change to the syncers before acknowledging it: one still sent to
    // the closer is ahead of this reply.
    barrier().await.unwrap();
    let received = closer.stats().frames_received - before;
    assert_eq!(received, 1, "only the reply, none of the 20 changes");

    // Opened again, it catches up.
    let doc_c = closer.document("notes").unwrap();
    until(&doc_c, "the reopened document catches up", |d| {
        d.get("n") == Some(&json!(20))
    })
    .await;
    shut_down(&writer).await;
    shut_down(&closer).await;
    relay.shutdown().await;
}

// A delete written, then dropped by `close` before its ack (the relay applied it; the ack was
// lost on the way): reported `closed` and rolled back, its key shown again. After `connect`
// the relay's replay brings the delete back (the key gone again, as on the relay), and it must
// come as this client's own change confirmed after all: it came as another client's, flagged
// as a race the author lost, to itself.
#[tokio::test]
async fn a_delete_dropped_by_close_yet_applied_by_the_relay_is_confirmed_after_reconnecting() {
    let relay = Relay::bind("127.0.0.1:0", RelayConfig::default())
        .await
        .unwrap();
    let (proxy, author) = behind_a_muting_proxy(&relay).await;
    let observer = client(relay.ws_url());
    let author = author
        .close_timeout(Duration::from_millis(300))
        .connect()
        .unwrap()
        .0;
    let doc_o = observer.document("notes").unwrap();
    let doc_a = author.document("notes").unwrap();
    synced(&doc_a).await;
    doc_a.set("k", 1).unwrap();
    until(&doc_a, "the author's set is confirmed", |d| {
        d.get("k") == Some(&json!(1))
    })
    .await;
    let mut events = doc_a.changes();

    proxy.mute(true); // the relay's answers are lost from now on
    let delete = doc_a.delete("k").unwrap();
    assert_eq!(doc_a.get("k"), None, "shown at once");
    let applied = eventually(LIMIT, || !doc_o.snapshot().contains_key("k")).await;
    assert!(applied, "the relay never applied the delete");
    tokio::time::timeout(LIMIT, author.close()).await.unwrap();
    assert_eq!(doc_a.get("k"), Some(json!(1)), "dropped: rolled back");

    proxy.mute(false);
    author.connect();
    until(&doc_a, "the author shows the relay's state", |d| {
        !d.contains_key("k")
    })
    .await;
    let mut seen = Vec::new();
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(200), events.recv()).await
    {
        seen.push(event);
    }
    let rejected = seen.iter().position(|e| {
        matches!(e, DocumentEvent::Rejected { change, code } if *change == delete && code == "closed")
    });
    let confirmed = seen.iter().rposition(|e| {
        matches!(e, DocumentEvent::Changed { origin: ChangeOrigin::Confirmed, changes }
            if changes.iter().any(|c| c.key == "k" && c.value.is_none() && !c.overwrote_local))
    });
    assert!(
        matches!((rejected, confirmed), (Some(r), Some(c)) if r < c),
        "told it was dropped, then that it took effect: {seen:#?}"
    );
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, DocumentEvent::Changed { changes, .. }
            if changes.iter().any(|c| c.overwrote_local))),
        "no race lost to itself: {seen:#?}"
    );
    assert_eq!(doc_a.snapshot(), doc_o.snapshot());
    shut_down(&author).await;
    shut_down(&observer).await;
    relay.shutdown().await;
}

// An increment the relay applied, its ack lost with the connection, is re-sent on the next
// connection after its hello and one doc_sync per document. With those using the rate limit's
// burst, the relay refused the resend as `rate_limited` (it let only publish resends through):
// the author, whose doc_sync replay had just shown the increment as its own, reported it
// rejected — an edit every other client shows, and that an app retrying it would count twice.
#[tokio::test]
async fn a_resend_of_an_applied_change_over_the_rate_limit_is_not_reported_rejected() {
    let config = RelayConfig {
        rate_limit: Some(tether_relay::RateLimit {
            per_second: 1,
            burst: 3,
        }),
        ..RelayConfig::default()
    };
    let relay = Relay::bind("127.0.0.1:0", config).await.unwrap();
    let (proxy, author) = behind_a_muting_proxy(&relay).await;
    let observer = client(relay.ws_url());
    let (author, mut client_events) = author.connect().unwrap();
    let doc_o = observer.document("votes").unwrap();
    // Its hello and two doc_syncs take the burst on every connection.
    let doc_a = author.document("votes").unwrap();
    let _other = author.document("other").unwrap();
    synced(&doc_a).await;
    synced(&doc_o).await;
    // A token for the increment (one a second).
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let mut events = doc_a.changes();

    proxy.mute(true); // the relay's ack is lost
    let vote = doc_a.increment("n", 1).unwrap();
    let applied = eventually(LIMIT, || doc_o.get("n") == Some(json!(1))).await;
    assert!(applied, "the relay never applied the increment");
    proxy.mute(false);
    proxy.kill_all(); // the author reconnects and re-sends it

    until(&doc_a, "the author settles", |d| {
        d.get("n") == Some(&json!(1))
    })
    .await;
    let mut seen = Vec::new();
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(300), events.recv()).await
    {
        seen.push(event);
    }
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, DocumentEvent::Rejected { change, .. } if *change == vote)),
        "an applied change reported rejected: {seen:#?}"
    );
    let mut acked = false;
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(100), client_events.recv()).await
    {
        match event {
            tether::Event::Acked { id, .. } if id == vote => acked = true,
            tether::Event::Dropped { ids, reason } if ids.contains(&vote) => {
                panic!("an applied change reported dropped: {reason:?}")
            }
            _ => {}
        }
    }
    assert!(acked, "its resend was never acknowledged");
    assert_eq!(doc_a.snapshot(), doc_o.snapshot());
    shut_down(&author).await;
    shut_down(&observer).await;
    relay.shutdown().await;
}

// A document closed and opened again before the client task drained the engine: the engine
// still held the closed document's last events (here its last local change), and the task
// handed them to the change stream of the new one, found by channel alone. The app then
// showed a change of a document it had closed as one of the document it had just opened.
#[tokio::test]
async fn a_reopened_documents_changes_carry_none_of_the_closed_ones_events() {
    let relay = Relay::bind("127.0.0.1:0", RelayConfig::default())
        .await
        .unwrap();
    let c = client(relay.ws_url());
    let doc = c.document("d").unwrap();
    synced(&doc).await;
    // No await until the new stream is read: on this current-thread runtime the client task
    // cannot drain the engine in between.
    doc.set("old", 1).unwrap();
    doc.close();
    let doc = c.document("d").unwrap();
    let mut changes = doc.changes();
    doc.set("new", 1).unwrap();
    let first = tokio::time::timeout(LIMIT, changes.recv()).await;
    shut_down(&c).await;
    relay.shutdown().await;
    let Ok(Some(DocumentEvent::Changed {
        origin: ChangeOrigin::LocalPending,
        changes,
    })) = &first
    else {
        panic!("expected the new document's local change first, got {first:?}");
    };
    let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(
        keys,
        ["new"],
        "the closed document's change reached the new stream"
    );
}

// A handle kept from a document that was closed, then opened again: it reached the channel's
// new document, so a late `close()` from the old owner (a UI component unmounting after its
// replacement mounted) closed the new one, and its changes went into the new one. A handle is
// bound to its opening: the stale one reads empty, its changes are refused `not_open`, its
// close does nothing and its change stream ends at once; the new opening syncs on.
#[tokio::test]
async fn a_handle_on_a_closed_document_does_not_reach_the_reopened_one() {
    let relay = Relay::bind("127.0.0.1:0", RelayConfig::default())
        .await
        .unwrap();
    let c = client(relay.ws_url());
    let old = c.document("d").unwrap();
    synced(&old).await;
    old.set("k", 1).unwrap();
    old.close();
    let new = c.document("d").unwrap();
    synced(&new).await;
    assert!(
        eventually(LIMIT, || new.get("k") == Some(json!(1))).await,
        "the closed document's pending change is still delivered"
    );
    assert_eq!(old.get("k"), None);
    assert_eq!(old.version(), None);
    assert!(old.snapshot().is_empty());
    assert_eq!(old.set("k", 2).unwrap_err().code(), "not_open");
    let mut stale = old.changes();
    assert!(
        tokio::time::timeout(LIMIT, stale.recv())
            .await
            .unwrap()
            .is_none(),
        "the stale handle's stream ends at once"
    );
    old.close();
    let mut changes = new.changes();
    new.set("k", 3).unwrap();
    let event = tokio::time::timeout(LIMIT, changes.recv()).await.unwrap();
    assert!(
        matches!(event, Some(DocumentEvent::Changed { .. })),
        "the stale close closed the new document: {event:?}"
    );
    assert_eq!(new.get("k"), Some(json!(3)));
    shut_down(&c).await;
    relay.shutdown().await;
}

// An increment the relay applied, its ack lost with the connection, then pushed out of the
// relay's change log (2 changes here) by another client's changes. The author's resume is
// answered with a snapshot that holds the increment; its `applied` (the log) no longer named
// it, so the author replayed it on top: its view counted it twice until the resend's ack.
// The resume now lists the changes it awaits (`doc_sync.pending`), and the relay's snapshot
// names those it holds. End to end: the engine's request, the relay's session and snapshot.
#[tokio::test]
async fn an_applied_increment_older_than_the_relays_log_is_not_counted_twice_after_a_reconnect() {
    let config = RelayConfig {
        document_log_capacity: 2,
        ..RelayConfig::default()
    };
    let relay = Relay::bind("127.0.0.1:0", config).await.unwrap();
    let (proxy, author) = behind_a_muting_proxy(&relay).await;
    let observer = client(relay.ws_url());
    let author = author.connect().unwrap().0;
    let doc_o = observer.document("votes").unwrap();
    let doc_a = author.document("votes").unwrap();
    synced(&doc_a).await;
    synced(&doc_o).await;
    let mut events = doc_a.changes();

    proxy.mute(true); // the relay's ack is lost
    doc_a.increment("n", 1).unwrap();
    let applied = eventually(LIMIT, || doc_o.get("n") == Some(json!(1))).await;
    assert!(applied, "the relay never applied the increment");
    for _ in 0..3 {
        doc_o.increment("n", 1).unwrap();
    }
    until(&doc_o, "the observer's increments are applied", |d| {
        d.get("n") == Some(&json!(4))
    })
    .await;
    proxy.mute(false);
    proxy.kill_all(); // the author reconnects: its resume is answered with a snapshot

    until(&doc_a, "the author settles", |d| {
        d.get("n") == Some(&json!(4))
    })
    .await;
    let mut shown = Vec::new();
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(300), events.recv()).await
    {
        if let DocumentEvent::Changed { changes, .. } = event {
            shown.extend(
                changes
                    .into_iter()
                    .filter(|c| c.key == "n")
                    .filter_map(|c| c.value),
            );
        }
    }
    shut_down(&author).await;
    shut_down(&observer).await;
    relay.shutdown().await;
    assert!(
        shown.iter().all(|n| n.as_i64() <= Some(4)),
        "the author's increment was counted twice: n went {shown:?}"
    );
    assert!(shown.contains(&json!(4)), "{shown:?}");
}
