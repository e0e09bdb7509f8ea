//! The native client against a server that accepts the TCP connection and never answers the
//! WebSocket upgrade: an attempt the client gives up on (its connect timeout, or the app's
//! close) is dropped at once. It never opened, so it has no close handshake to wait for.
#![allow(clippy::unwrap_used)]

use std::time::Duration;
use tether::{Client, CloseReason, DisconnectCause, Event, Events};
use tether_tests::servers::{Behaviour, MisbehavingServer};
use tether_tests::wait::eventually;

/// Long enough that a socket kept for it is plainly kept: the tests wait a third of it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of a server that never answers its upgrade, with the long close timeout and a
/// first retry far away (so no next attempt replaces the one given up on).
fn client_of(server: &MisbehavingServer, connect_timeout: Duration) -> (Client, Events) {
    Client::builder(server.ws_url())
        .connect_timeout(connect_timeout)
        .close_timeout(CLOSE_TIMEOUT)
        .backoff_initial(Duration::from_secs(60))
        .backoff_max(Duration::from_secs(60))
        .connect()
        .unwrap()
}

/// Whether the client hung up on the server within a third of the close timeout.
async fn hung_up(server: &MisbehavingServer) -> bool {
    eventually(CLOSE_TIMEOUT / 3, || !server.hangups().is_empty()).await
}

#[tokio::test]
async fn an_attempt_past_its_connect_timeout_is_dropped_at_once() {
    let server = MisbehavingServer::start(Behaviour::NeverAnswers)
        .await
        .unwrap();
    let (client, mut events) = client_of(&server, Duration::from_millis(300));
    let cause = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(Event::ReconnectScheduled { cause, .. }) = events.recv().await {
                return cause;
            }
        }
    })
    .await
    .expect("a reconnect within 5 s");
    assert_eq!(cause, DisconnectCause::ConnectTimeout);
    assert!(
        hung_up(&server).await,
        "the attempt given up on still holds its socket"
    );
    client.shutdown().await;
}

#[tokio::test]
async fn an_attempt_the_app_closes_is_dropped_at_once() {
    let server = MisbehavingServer::start(Behaviour::NeverAnswers)
        .await
        .unwrap();
    let (client, _events) = client_of(&server, Duration::from_secs(60));
    assert!(eventually(Duration::from_secs(5), || !server.arrivals().is_empty()).await);
    let reason = tokio::time::timeout(Duration::from_secs(5), client.close())
        .await
        .expect("closed within 5 s");
    assert_eq!(reason, CloseReason::App { code: 1000 });
    assert!(
        hung_up(&server).await,
        "the client reported closed and still holds its socket"
    );
}
