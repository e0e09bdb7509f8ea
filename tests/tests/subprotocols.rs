//! The native client offering WebSocket subprotocols to servers that do not take one of them:
//! no retry can change a server's choice, so the client stops at once with a reason naming
//! what it offered and what the server chose, instead of reconnecting for ever.
#![allow(clippy::unwrap_used)]

use std::time::Duration;
use tether::{Client, CloseReason, Event, Events, State};
use tether_relay::{Relay, RelayConfig};
use tether_tests::listen::Listener;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// How many attempts the client may make before the test calls it a retry storm.
const ATTEMPTS: usize = 5;

/// A WebSocket server whose handshake answers `Sec-WebSocket-Protocol: chosen` (nothing if
/// `None`), whatever was offered, then holds the connection open.
async fn choosing_server(chosen: Option<&'static str>) -> Listener {
    Listener::start(move |tcp| async move {
        #[allow(clippy::result_large_err)] // tungstenite's callback type
        let choose = move |_: &Request, mut response: Response| {
            if let Some(chosen) = chosen {
                let value = HeaderValue::from_static(chosen);
                response
                    .headers_mut()
                    .insert("Sec-WebSocket-Protocol", value);
            }
            Ok(response)
        };
        if let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, choose).await {
            use futures_util::StreamExt;
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await
    .unwrap()
}

/// What the client did: the reason it closed with, or `None` if it scheduled [`ATTEMPTS`]
/// reconnects first (each event within 5 s); and the reconnects' causes.
async fn outcome(events: &mut Events) -> (Option<CloseReason>, Vec<String>) {
    let mut causes = Vec::new();
    while causes.len() < ATTEMPTS {
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("an event within 5 s")
            .expect("the client's events have not ended");
        match event {
            Event::StateChanged {
                to: State::Closed { reason },
                ..
            } => return (Some(reason), causes),
            Event::StateChanged {
                to: State::Open, ..
            } => panic!("opened"),
            Event::ReconnectScheduled { cause, .. } => causes.push(cause.to_string()),
            _ => {}
        }
    }
    (None, causes)
}

fn client(url: String, offered: &[&str]) -> (Client, Events) {
    let mut builder = Client::builder(url)
        .backoff_initial(Duration::from_millis(10))
        .backoff_max(Duration::from_millis(20));
    for name in offered {
        builder = builder.subprotocol(*name);
    }
    builder.connect().unwrap()
}

/// The refusal the client must stop with: no code or status (the server answered 101), and
/// a reason naming the subprotocols offered and the server's choice.
fn assert_refused(outcome: (Option<CloseReason>, Vec<String>), reason: &str) {
    let (closed, causes) = outcome;
    let Some(closed) = closed else {
        panic!("no terminal outcome: {ATTEMPTS} reconnects, causes {causes:?}");
    };
    assert!(causes.is_empty(), "retried first: {causes:?}");
    assert_eq!(
        closed,
        CloseReason::Refused {
            code: None,
            status: None,
            reason: reason.to_owned(),
        }
    );
}

/// The reference relay selects no subprotocol: a client offering one is refused at once.
#[tokio::test]
async fn a_server_that_selects_none_of_the_offered_subprotocols_stops_the_client() {
    let relay = Relay::bind("127.0.0.1:0", RelayConfig::default())
        .await
        .unwrap();
    let (client, mut events) = client(relay.ws_url(), &["tether.v9", "chat"]);
    assert_refused(
        outcome(&mut events).await,
        r#"subprotocol mismatch: offered "tether.v9", "chat"; the server chose none"#,
    );
    assert!(client.state().is_closed());
    drop(client);
    drop(relay);
}

/// A server choosing one that was not offered stops the client too. (tungstenite does not say
/// which it chose, so the reason cannot name it.)
#[tokio::test]
async fn a_server_that_selects_a_subprotocol_not_offered_stops_the_client() {
    let server = choosing_server(Some("other")).await;
    let (client, mut events) = client(format!("ws://{}/", server.addr()), &["tether.v9"]);
    assert_refused(
        outcome(&mut events).await,
        r#"subprotocol mismatch: offered "tether.v9"; the server chose one not offered"#,
    );
    drop(client);
    drop(server);
}

/// So does a server choosing one when none was offered (RFC 6455 §4.1: the client fails it).
#[tokio::test]
async fn a_server_that_selects_a_subprotocol_when_none_was_offered_stops_the_client() {
    let server = choosing_server(Some("other")).await;
    let (client, mut events) = client(format!("ws://{}/", server.addr()), &[]);
    assert_refused(
        outcome(&mut events).await,
        "subprotocol mismatch: offered none; the server chose one not offered",
    );
    drop(client);
    drop(server);
}

/// A server choosing one that was offered opens, as before.
#[tokio::test]
async fn a_server_that_selects_an_offered_subprotocol_opens() {
    let server = choosing_server(Some("chat")).await;
    let (client, mut events) = client(format!("ws://{}/", server.addr()), &["tether.v9", "chat"]);
    let opened = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.recv().await {
                Some(Event::StateChanged {
                    to: State::Open, ..
                }) => return,
                Some(Event::ReconnectScheduled { cause, .. }) => panic!("{cause}"),
                Some(_) => continue,
                None => panic!("the client's events ended"),
            }
        }
    })
    .await;
    assert!(opened.is_ok(), "opened within 5 s");
    drop(client);
    drop(server);
}
