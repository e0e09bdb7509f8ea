//! A server that completes the WebSocket handshake without one of the subprotocols offered
//! (`TransportFailure::Subprotocol`): the client stops at once, whatever the close policy, with
//! a reason naming what it offered and what the server chose; it does not reconnect for ever.
#![allow(clippy::unwrap_used)]

use std::time::Duration;
use tether_core::{
    Action, ClosePolicy, CloseReason, Config, Disposition, Engine, EngineError, Event, Instant,
    State, TransportFailure, TransportId,
};

/// A client offering `offered`, its first attempt under way.
fn attempting(offered: &[&str], policy: ClosePolicy) -> (Engine, TransportId) {
    let mut config = Config::builder("ws://relay.example/ws")
        .close_policy(policy)
        .backoff_initial(Duration::from_millis(100));
    for name in offered {
        config = config.subprotocol(*name);
    }
    let mut engine = Engine::new(config.build().unwrap(), 7);
    engine.connect(Instant::ZERO);
    let mut transport = None;
    while let Some(action) = engine.poll_action() {
        if let Action::Open(open) = action {
            assert_eq!(open.subprotocols, offered);
            transport = Some(open.transport);
        }
    }
    while engine.poll_event().is_some() {}
    (engine, transport.unwrap())
}

/// The server's choice `chosen` fails the attempt: the events it gives, and whether the
/// engine then asks for anything (another attempt) or wants a timer.
fn mismatch(offered: &[&str], chosen: Option<&str>, policy: ClosePolicy) -> (Engine, Vec<Event>) {
    let (mut engine, transport) = attempting(offered, policy);
    let chosen = chosen.map(str::to_owned);
    engine.transport_failed(
        Instant::ZERO,
        transport,
        TransportFailure::Subprotocol { chosen },
    );
    let mut events = Vec::new();
    while let Some(e) = engine.poll_event() {
        events.push(e);
    }
    assert!(engine.poll_action().is_none());
    assert_eq!(engine.poll_timeout(), None, "no attempt scheduled");
    (engine, events)
}

fn refused(reason: &str) -> State {
    State::Closed {
        reason: CloseReason::Refused {
            code: None,
            status: None,
            reason: reason.to_owned(),
        },
    }
}

#[test]
fn a_server_choosing_none_of_the_subprotocols_offered_stops_the_client() {
    let (engine, events) = mismatch(&["tether.v2", "chat"], None, ClosePolicy::default());
    let reason = r#"subprotocol mismatch: offered "tether.v2", "chat"; the server chose none"#;
    assert_eq!(engine.state(), &refused(reason));
    assert_eq!(
        events.first(),
        Some(&Event::Error(EngineError::Transport(reason.to_owned())))
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::ReconnectScheduled { .. })),
        "{events:?}"
    );
    assert_eq!(
        engine.state().to_string(),
        format!("closed (refused: {reason})")
    );
}

#[test]
fn a_server_choosing_one_not_offered_stops_the_client_naming_it() {
    let (engine, _) = mismatch(&["v1"], Some("v2"), ClosePolicy::default());
    assert_eq!(
        engine.state(),
        &refused(r#"subprotocol mismatch: offered "v1"; the server chose "v2""#)
    );
    // One the driver could not read is still named as the server's.
    let (engine, _) = mismatch(&["v1"], Some(""), ClosePolicy::default());
    assert_eq!(
        engine.state(),
        &refused(r#"subprotocol mismatch: offered "v1"; the server chose one not offered"#)
    );
}

#[test]
fn a_server_choosing_one_when_none_was_offered_stops_the_client() {
    let (engine, _) = mismatch(&[], Some("v2"), ClosePolicy::default());
    assert_eq!(
        engine.state(),
        &refused(r#"subprotocol mismatch: offered none; the server chose "v2""#)
    );
}

/// No status or code override applies: the answer was a 101 with the wrong subprotocol.
#[test]
fn no_close_policy_override_makes_a_mismatch_retried() {
    let policy = ClosePolicy::default()
        .with_status(100..=599, Disposition::Retry)
        .with_code(1000..=4999, Disposition::Retry);
    let (engine, _) = mismatch(&["v1"], None, policy);
    assert!(engine.state().is_closed());
}

/// Not counted as a connection lost: a `connect` starts again from the first attempt.
#[test]
fn connect_after_the_refusal_tries_again() {
    let (mut engine, _) = mismatch(&["v1"], None, ClosePolicy::default());
    engine.connect(Instant::ZERO);
    assert!(matches!(engine.poll_action(), Some(Action::Open(_))));
}
