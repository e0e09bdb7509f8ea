//! A proxy's refusal (`TransportFailure::Proxy`): reported as the proxy's, classified like the
//! same HTTP status except that it never asks for a new token (the server, whose token it is,
//! was never reached).
#![allow(clippy::unwrap_used)]

use std::time::Duration;
use tether_core::{
    Action, ClosePolicy, CloseReason, Config, DisconnectCause, Disposition, Engine, Event, Instant,
    State, TokenPlacement, TransportFailure, TransportId,
};

/// Everything the engine asks for and reports: the transport it opened, whether it asked for
/// a token (and a refreshed one), and its events.
#[derive(Default)]
struct Drained {
    opened: Option<TransportId>,
    token: Option<(TransportId, bool)>,
    events: Vec<Event>,
}

impl Drained {
    /// The first error event's text contains `text`.
    fn assert_error_says(&self, text: &str) {
        let error = self.events.iter().find_map(|e| match e {
            Event::Error(e) => Some(e.to_string()),
            _ => None,
        });
        assert!(
            error.as_deref().is_some_and(|e| e.contains(text)),
            "{error:?}"
        );
    }
}

fn drain(engine: &mut Engine) -> Drained {
    let mut out = Drained::default();
    while let Some(a) = engine.poll_action() {
        match a {
            Action::Open(open) => out.opened = Some(open.transport),
            Action::FetchToken {
                transport, refresh, ..
            } => out.token = Some((transport, refresh)),
            _ => {}
        }
    }
    while let Some(e) = engine.poll_event() {
        out.events.push(e);
    }
    out
}

/// A client with a token provider, its first attempt under way (the token given).
fn attempting(policy: ClosePolicy) -> (Engine, TransportId) {
    let config = Config::builder("wss://relay.example/ws")
        .token(TokenPlacement::bearer_header())
        .close_policy(policy)
        .backoff_initial(Duration::from_millis(100))
        .build()
        .unwrap();
    let mut engine = Engine::new(config, 7);
    engine.connect(Instant::ZERO);
    let (request, refresh) = drain(&mut engine).token.unwrap();
    assert!(!refresh);
    engine.token_ready(Instant::ZERO, request, "tok".to_owned());
    let transport = drain(&mut engine).opened.unwrap();
    (engine, transport)
}

fn proxy(status: u16) -> TransportFailure {
    TransportFailure::Proxy {
        status,
        retry_after: None,
    }
}

#[test]
fn a_proxy_407_stops_the_client_as_refused_without_asking_for_a_new_token() {
    let (mut engine, transport) = attempting(ClosePolicy::default());
    engine.transport_failed(Instant::ZERO, transport, proxy(407));
    let drained = drain(&mut engine);
    assert_eq!(drained.token, None, "a new token cannot satisfy a proxy");
    assert_eq!(
        engine.state(),
        &State::Closed {
            reason: CloseReason::Refused {
                code: None,
                status: Some(407),
                reason: "proxy answered HTTP status 407".to_owned(),
            }
        }
    );
    drained.assert_error_says("proxy answered HTTP status 407");
}

#[test]
fn a_proxy_403_is_not_taken_for_the_server_refusing_the_token() {
    // The server's 403 refreshes the token once; the proxy's (it forbids the destination)
    // cannot be helped by one.
    let (mut engine, transport) = attempting(ClosePolicy::default());
    engine.transport_failed(Instant::ZERO, transport, proxy(403));
    assert_eq!(drain(&mut engine).token, None);
    assert!(
        matches!(
            engine.state(),
            State::Closed {
                reason: CloseReason::Refused {
                    status: Some(403),
                    ..
                }
            }
        ),
        "{:?}",
        engine.state()
    );
}

#[test]
fn a_proxy_that_cannot_reach_the_server_is_retried_and_reported_as_the_proxys() {
    let (mut engine, transport) = attempting(ClosePolicy::default());
    engine.transport_failed(Instant::ZERO, transport, proxy(502));
    let drained = drain(&mut engine);
    let cause = drained.events.iter().find_map(|e| match e {
        Event::ReconnectScheduled { cause, .. } => Some(cause.clone()),
        _ => None,
    });
    let cause = cause.expect("a retry is scheduled");
    assert_eq!(cause, DisconnectCause::Proxy { status: 502 });
    assert_eq!(cause.name(), "proxy");
    assert_eq!(cause.to_string(), "proxy answered HTTP status 502");
}

#[test]
fn an_override_can_retry_a_proxy_407_and_a_proxy_retry_after_is_honoured() {
    let policy = ClosePolicy::default().with_status(407..=407, Disposition::Retry);
    assert_eq!(
        policy.classify_proxy(407, None).disposition,
        Disposition::Retry
    );
    // The server's Reauth statuses are never Reauth from a proxy, overridden or not.
    let reauth = ClosePolicy::default().with_status(407..=407, Disposition::Reauth);
    assert_eq!(
        reauth.classify_proxy(407, None).disposition,
        Disposition::Terminal
    );
    assert_eq!(
        ClosePolicy::default().classify_proxy(401, None).disposition,
        Disposition::Terminal
    );
    let hint = ClosePolicy::default()
        .classify_proxy(503, Some(Duration::from_secs(7)))
        .hint;
    assert_eq!(
        hint,
        ClosePolicy::default()
            .classify_http(503, Some(Duration::from_secs(7)))
            .hint
    );
    assert!(hint.is_some());

    let (mut engine, transport) = attempting(policy);
    engine.transport_failed(Instant::ZERO, transport, proxy(407));
    let drained = drain(&mut engine);
    assert!(
        matches!(engine.state(), State::Waiting { .. }),
        "{:?}",
        engine.state()
    );
    assert!(drained.events.iter().any(|e| matches!(
        e,
        Event::ReconnectScheduled {
            cause: DisconnectCause::Proxy { status: 407 },
            ..
        }
    )));
}

#[test]
fn a_407_reported_as_an_http_status_is_the_proxys_too() {
    // Only a proxy answers 407: a driver that met one in a handshake or a response reports
    // the status it saw, and the engine tells whose it is (once, for every driver).
    let (mut engine, transport) = attempting(ClosePolicy::default());
    let failure = TransportFailure::Http {
        status: 407,
        retry_after: None,
        location: None,
    };
    engine.transport_failed(Instant::ZERO, transport, failure);
    let drained = drain(&mut engine);
    assert_eq!(drained.token, None, "a new token cannot satisfy a proxy");
    assert!(
        matches!(
            engine.state(),
            State::Closed {
                reason: CloseReason::Refused {
                    status: Some(407),
                    ..
                }
            }
        ),
        "{:?}",
        engine.state()
    );
    drained.assert_error_says("proxy answered HTTP status 407");
}
