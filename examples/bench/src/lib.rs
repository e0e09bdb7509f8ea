//! The parts of `tether-bench` that more than one executable runs: the echo server
//! (`server`: the `tether-bench` binary and the `idle_alloc` example both start it as a child
//! process of themselves), what it reads from the OS (`sys`) and the wait for a tether client
//! to open ([`wait_open`]).
//!
//! Everything else (the clients, the benchmarks, the report) belongs to the binary,
//! `src/main.rs`.

pub mod server;
pub mod sys;

use std::time::Duration;
use tether::{Event, Events, State};

/// A boxed error: the bench reports and stops.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Waits for `StateChanged { to: Open }`, at most 10 s in all: a client that cannot open
/// (server gone, limits) fails the run instead of hanging it, and one that closes or ends
/// first fails it at once.
pub async fn wait_open(events: &mut Events) -> Result<(), BoxError> {
    let open = async {
        loop {
            match events.recv().await {
                Some(Event::StateChanged {
                    to: State::Open, ..
                }) => return Ok::<(), BoxError>(()),
                Some(Event::StateChanged {
                    to: State::Closed { reason },
                    ..
                }) => return Err(format!("client closed: {reason:?}").into()),
                Some(_) => {}
                None => return Err("client ended before opening".into()),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), open)
        .await
        .map_err(|_| "a client did not open within 10 s")?
}
