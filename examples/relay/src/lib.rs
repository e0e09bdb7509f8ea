//! The Tether reference relay: the server side of the Tether protocol
//! (`docs/protocol.md`), in memory, for development, tests, demos and benchmarks.
//!
//! One port serves:
//! - **WebSocket** (any path): `hello`, channels with `subscribe`/`unsubscribe`, publishes
//!   with offsets, acks and deduplication by id, resume from `since`/`epoch` out of a
//!   per-channel history, presence with a grace period, `request`→`reply` echo,
//!   `ping`→`pong`, server pings that close silent connections (4000), and shared documents
//!   (`doc_sync`/`doc_change`/`doc_close`: one server order per document, a change log for
//!   resyncs, snapshots after a restart).
//! - **Server-Sent Events**: `GET /sse/{channel}` streams a channel's messages, replaying
//!   after `Last-Event-ID` (header or `?lastEventId=`) as a `subscribe` resumes, and says
//!   first where the stream starts and whether its replay is the whole gap (a `position`
//!   event carrying the `subscribed` a subscribe would get). A WebSocket upgrade on an
//!   `/sse/` path is refused with 400, which clients take as final, not retried.
//!
//! Misbehaving clients get `error` frames (`bad_frame`, `unsupported_version`,
//! `invalid_channel`, `rate_limited`, `too_large`) and keep their connection; an oversized message closes
//! with 1009, invalid UTF-8 with 1007, a missing or wrong token with HTTP 401 or close 4001.
//! Graceful shutdown closes every WebSocket with 1012 and `{"reconnect_within_ms": N}`, and
//! ends every event stream with a `retry:` drawn from that window.
//!
//! Everything lives in memory: a restarted relay starts a new epoch, so clients can tell
//! that offsets from before the restart mean nothing now. It is a reference server, not a
//! product: one process, no persistence, and no limit on the number of channels (a channel
//! without history or subscribers is dropped; one with history is kept for resumes).
//!
//! ```no_run
//! use tether_relay::{Relay, RelayConfig};
//!
//! # async fn run() -> std::io::Result<()> {
//! let relay = Relay::bind("127.0.0.1:9000", RelayConfig::default()).await?;
//! println!("listening on {}", relay.ws_url());
//! tokio::signal::ctrl_c().await?;
//! relay.shutdown().await; // clients are told to come back within 5 s
//! # Ok(())
//! # }
//! ```
//!
//! Modules, one job each: `config` (limits and defaults), `server` (bind, accept, route,
//! lifecycle), `http` (request heads and plain responses), `auth` (token rules), `ws`
//! (WebSocket connection I/O and close codes), `session` (the protocol per connection), `head` (the type and id of a frame not decoded
//! whole, for the errors that name them),
//! `hub` (channels, fan-out, presence timers), `history` (offsets, ring buffer, dedupe),
//! `presence` (members and grace periods), `peer` (per-connection outbound queues and the
//! slow-consumer rule), `rate_limit` (token bucket), `sse` (event streams), `docs` (shared
//! documents: ordering, change log, snapshots), `stats` (counters), `cli` (the command-line
//! options both front ends, the `tether-relay` binary and `tether relay`, parse with clap), and
//! `chaos` (the fault-injecting proxy the demo and the tests put between clients and relay).

mod auth;
pub mod chaos;
pub mod cli;
mod config;
mod docs;
mod head;
mod history;
mod http;
mod hub;
mod peer;
mod presence;
mod rate_limit;
mod server;
mod session;
mod sse;
mod stats;
mod ws;

pub use cli::RelayOptions;
pub use config::{ConfigError, RateLimit, RelayConfig, MAX_MESSAGE_SIZE_LIMIT};
pub use server::{Relay, RelayHandle};
