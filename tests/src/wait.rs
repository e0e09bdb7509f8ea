//! Bounded waiting for client events: every wait has a deadline, and the events seen on the
//! way are kept for later assertions.

use std::time::{Duration, Instant};
use tether::{Event, Events, State};

/// Collects a client's events and waits for specific ones, always with a deadline.
#[derive(Debug)]
pub struct Recorder {
    events: Events,
    /// Every event received so far, with when it arrived.
    pub seen: Vec<(Instant, Event)>,
}

impl Recorder {
    /// Wraps a client's event stream.
    pub fn new(events: Events) -> Self {
        Recorder {
            events,
            seen: Vec::new(),
        }
    }

    /// Waits for the first event (after those already seen) matching `pred`; panics with the
    /// events seen so far if none arrives within `limit`.
    pub async fn until<T>(
        &mut self,
        limit: Duration,
        mut pred: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => {
                    let hit = pred(&event);
                    self.seen.push((Instant::now(), event));
                    if let Some(value) = hit {
                        return value;
                    }
                }
                Ok(None) => panic!("event stream ended; seen: {:#?}", self.names()),
                Err(_) => panic!(
                    "no matching event within {limit:?}; seen: {:#?}",
                    self.names()
                ),
            }
        }
    }

    /// Waits until the client reaches a state matching `pred`.
    pub async fn until_state(&mut self, limit: Duration, pred: impl Fn(&State) -> bool) -> State {
        self.until(limit, |e| match e {
            Event::StateChanged { to, .. } if pred(to) => Some(to.clone()),
            _ => None,
        })
        .await
    }

    /// Waits until open.
    pub async fn until_open(&mut self, limit: Duration) {
        self.until_state(limit, State::is_open).await;
    }

    /// Waits for the next `Subscribed` event (a subscription, or its renewal after a
    /// reconnect, confirmed by the server); returns its `recovered`.
    pub async fn until_subscribed(&mut self, limit: Duration) -> bool {
        self.until(limit, |e| match e {
            Event::Subscribed { recovered, .. } => Some(*recovered),
            _ => None,
        })
        .await
    }

    /// Receives events for `d`, keeping them.
    pub async fn collect_for(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            self.seen.push((Instant::now(), event));
        }
    }

    /// Short names of the events seen, for failure messages.
    pub fn names(&self) -> Vec<String> {
        self.seen
            .iter()
            .map(|(_, e)| match e {
                Event::StateChanged { to, .. } => format!("state {to}"),
                Event::Message(m) => format!("message {:?} {:?}", m.offset, m.payload),
                other => format!("{other:?}").chars().take(120).collect(),
            })
            .collect()
    }
}

/// Polls `cond` every 20 ms until it holds or `limit` passes; returns whether it held. For
/// state kept outside a client's events (what a test server recorded): callers assert on what
/// they then read, so a timeout fails the test with their message.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Awaits `fut` for at most `limit`, or panics. For the SDK's own waits that have no deadline
/// (an acknowledged publish waits as long as its ack takes): a lost ack fails the test with a
/// message instead of hanging the run.
pub async fn within<T>(limit: Duration, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(out) => out,
        Err(_) => panic!("not finished within {limit:?}"),
    }
}
