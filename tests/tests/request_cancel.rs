//! Giving a request up through the native SDK (`PendingRequest::cancel`, `cancel_on_drop`),
//! end to end over the relay, with a tap in front of it that holds the client's messages back
//! so a test can tell a request still queued from one written. Loopback only; every wait is
//! bounded and every server stopped.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use std::time::Duration;
use tether::{Client, Event, Protocol, RequestError, RequestFailure, RequestId};
use tether_relay::{Relay, RelayConfig, RelayHandle};
use tether_tests::tap::WsTap;
use tether_tests::wait::Recorder;

const LIMIT: Duration = Duration::from_secs(10);

async fn relay() -> RelayHandle {
    Relay::bind("127.0.0.1:0", RelayConfig::default())
        .await
        .unwrap()
}

fn cancelled(outcome: &Result<serde_json::Value, RequestError>) -> bool {
    matches!(
        outcome,
        Err(RequestError::Failed(RequestFailure::Cancelled))
    )
}

/// Whether the events seen include a reply to `id`.
fn replied(rec: &Recorder, id: RequestId) -> bool {
    rec.seen
        .iter()
        .any(|(_, e)| matches!(e, Event::Replied { id: got, .. } if *got == id))
}

/// A Tether client connected to a relay through a tap, open.
async fn open_through_tap() -> (RelayHandle, WsTap, Client, Recorder) {
    let relay = relay().await;
    let tap = WsTap::start(relay.local_addr()).await.unwrap();
    let (client, events) = Client::builder(tap.ws_url())
        .protocol(Protocol::Tether)
        .connect()
        .unwrap();
    let mut rec = Recorder::new(events);
    rec.until_open(LIMIT).await;
    (relay, tap, client, rec)
}

/// How the events seen say request `id` failed, if they do.
fn failure(rec: &Recorder, id: RequestId) -> Option<RequestFailure> {
    rec.seen.iter().find_map(|(_, e)| match e {
        Event::RequestFailed { id: got, reason } if *got == id => Some(reason.clone()),
        _ => None,
    })
}

#[tokio::test]
async fn a_request_cancelled_while_queued_is_never_sent_and_ends_cancelled() {
    let relay = relay().await;
    let tap = WsTap::start(relay.local_addr()).await.unwrap();
    tap.hold(true);
    let (client, events) = Client::builder(tap.ws_url())
        .protocol(Protocol::Tether)
        .connect()
        .unwrap();
    let mut rec = Recorder::new(events);
    // Made before the connection is open: queued.
    let first = client.request(json!("first"), None);
    let first_id = first.id().expect("accepted");
    assert!(first.cancel(), "a pending request can be cancelled");
    assert!(!first.cancel(), "and only once");
    let second = client.request(json!("second"), None);

    rec.until_open(LIMIT).await;
    // The hello, then the requests, in order: had the first been sent, it would be held
    // before the second.
    assert_eq!(
        tap.held(2, LIMIT).await,
        2,
        "the hello and the second request"
    );
    assert_eq!(
        tap.held(3, Duration::from_millis(300)).await,
        2,
        "the cancelled request was never written"
    );
    tap.hold(false);
    let reply = tokio::time::timeout(LIMIT, second).await.unwrap().unwrap();
    assert_eq!(reply, json!("second"));
    assert!(cancelled(&first.await));
    // Reported at the cancel, before the connection opened.
    assert_eq!(
        failure(&rec, first_id),
        Some(RequestFailure::Cancelled),
        "{:#?}",
        rec.names()
    );
    assert!(!replied(&rec, first_id));
    client.shutdown().await;
}

#[tokio::test]
async fn a_request_cancelled_after_it_was_written_ignores_its_late_reply() {
    let (_relay, tap, client, mut rec) = open_through_tap().await;
    tap.hold(true);
    let mut asked = client.request(json!("asked"), None);
    let asked_id = asked.id().unwrap();
    assert_eq!(
        tap.held(1, LIMIT).await,
        1,
        "written, held before the relay"
    );
    assert!(asked.cancel());
    let outcome = tokio::time::timeout(LIMIT, &mut asked).await.unwrap();
    assert!(cancelled(&outcome), "{outcome:?}");

    // The relay answers both, in order: the first answer comes and is ignored.
    let after = client.request(json!("after"), None);
    assert_eq!(tap.held(2, LIMIT).await, 2);
    tap.hold(false);
    let reply = tokio::time::timeout(LIMIT, after).await.unwrap().unwrap();
    assert_eq!(reply, json!("after"));
    rec.collect_for(Duration::from_millis(100)).await;
    assert!(!replied(&rec, asked_id), "{:#?}", rec.names());
    assert!(
        !asked.cancel(),
        "an ended request cannot be cancelled again"
    );
    client.shutdown().await;
}

#[tokio::test]
async fn a_cancel_on_drop_request_dropped_under_a_timeout_is_cancelled_and_a_plain_one_is_not() {
    let (_relay, tap, client, mut rec) = open_through_tap().await;
    tap.hold(true);

    let raced = client.request(json!("raced"), None).cancel_on_drop();
    let raced_id = raced.id().unwrap();
    let plain = client.request(json!("plain"), None);
    let plain_id = plain.id().unwrap();
    // Both futures are dropped when their waits time out.
    assert!(tokio::time::timeout(Duration::from_millis(50), raced)
        .await
        .is_err());
    assert!(tokio::time::timeout(Duration::from_millis(50), plain)
        .await
        .is_err());
    tap.hold(false);

    // Only the plain one's reply still comes (as an event); the other ended cancelled.
    rec.until(LIMIT, |e| match e {
        Event::Replied { id, .. } if *id == plain_id => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(
        failure(&rec, raced_id),
        Some(RequestFailure::Cancelled),
        "{:#?}",
        rec.names()
    );
    assert!(!replied(&rec, raced_id));
    client.shutdown().await;
}

#[tokio::test]
async fn a_refused_request_has_no_id_and_cannot_be_cancelled() {
    let relay = relay().await;
    // Raw mode has no requests: refused when made, the reason handed out when awaited.
    let (client, _events) = Client::builder(format!("ws://{}/", relay.local_addr()))
        .connect()
        .unwrap();
    let refused = client.request(json!("q"), None).cancel_on_drop();
    assert_eq!(refused.id(), None);
    assert!(!refused.cancel());
    let outcome = refused.await;
    assert!(matches!(outcome, Err(RequestError::Send(_))), "{outcome:?}");
    client.shutdown().await;
}
