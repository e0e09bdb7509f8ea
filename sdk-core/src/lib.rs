//! # tether-core: a sans-IO reconnection engine
//!
//! This crate decides everything about keeping a WebSocket or Server-Sent Events connection
//! alive — when to connect, how long to back off, when a connection is dead, what to do with
//! messages while disconnected, which close codes are final — and does none of the I/O. It
//! never reads a clock, never opens a socket, never spawns a thread and never draws OS
//! randomness. Drivers (`tether` on tokio, `tether-wasm` in the browser, `tether-ffi` on
//! mobile) do the I/O and feed the results in.
//!
//! ## The contract
//!
//! * **Time is an input.** Every method takes `now: Instant`, microseconds from an origin the
//!   driver picks. Time that goes backwards is clamped to the latest seen.
//! * **Randomness is an input.** [`Engine::new`] takes a seed for its [`Prng`] (PCG-64, same
//!   output on every platform).
//! * **Commands** from the app: [`Engine::connect`], [`Engine::send`] / [`Engine::send_with`],
//!   [`Engine::publish`], [`Engine::request`], [`Engine::subscribe`], [`Engine::unsubscribe`],
//!   the shared-document commands (`Engine::open_document`, `Engine::change_document`,
//!   `Engine::close_document` and the `doc_*` shorthands), [`Engine::close`],
//!   [`Engine::close_after_drain`], [`Engine::network_changed`],
//!   [`Engine::set_foreground`].
//! * **Inputs** from the driver and the transport: [`Engine::abandon`] (the driver stops),
//!   [`Engine::token_ready`], [`Engine::token_failed`], [`Engine::transport_opened`],
//!   [`Engine::frame_received`], [`Engine::sse_parsed`], [`Engine::sse_event_received`],
//!   [`Engine::frame_too_large`] (a message left unread: over the size limit), [`Engine::pong_received`],
//!   [`Engine::ping_received`], [`Engine::bytes_received`] (part of a message arrived: a sign
//!   of life for the heartbeat), [`Engine::bytes_acknowledged`] (the socket took more of
//!   ours after pushing back: one too), [`Engine::send_buffer_level`] (the bytes a platform
//!   still holds unsent, read at a deadline: the engine infers the same sign from it),
//!   [`Engine::transport_writable`],
//!   [`Engine::transport_progress`], [`Engine::transport_closed`],
//!   [`Engine::transport_failed`], and [`Engine::handle_timeout`].
//! * **Outputs**, drained by the driver: [`Engine::poll_action`] (open a transport, send a
//!   frame, send a ping, close, release a transport, fetch a token), [`Engine::poll_event`] (state changes,
//!   messages, drops, acks, ack timeouts, replies, presence, RTT, errors, document changes, rejections and
//!   resyncs) and [`Engine::poll_timeout`] (the next deadline).
//!
//! **The drain rule:** after any command or input, drain `poll_action` and `poll_event` until
//! both return `None`, then read `poll_timeout`; when that instant passes, call
//! `handle_timeout`. A spurious or repeated `handle_timeout` is a no-op.
//!
//! Every input is total: malformed frames, inputs in the wrong state, stale transports and
//! time going backwards produce an event or are ignored — never a panic.
//!
//! ## A complete driver loop
//!
//! A driver is a loop around those three outputs. Here a scripted "transport" answers
//! immediately; a real driver performs the actions on sockets and waits for the deadline.
//!
//! ```
//! use std::time::Duration;
//! use tether_core::{Action, Config, Engine, Event, Frame, Instant, State};
//!
//! let config = Config::builder("ws://127.0.0.1:9000/ws").build()?;
//! let mut engine = Engine::new(config, 0x5eed);
//! let mut now = Instant::ZERO;
//!
//! engine.send(now, "queued before connecting")?; // waits in the outbox
//! engine.connect(now);
//!
//! let mut written = Vec::new();
//! for _ in 0..100 {
//!     // 1. Perform every action the engine asks for.
//!     while let Some(action) = engine.poll_action() {
//!         match action {
//!             Action::Open(open) => engine.transport_opened(now, open.transport),
//!             Action::Send { frame: Frame::Text(text), transport } => {
//!                 written.push(text.clone());
//!                 engine.frame_received(now, transport, Frame::Text(format!("echo: {text}")));
//!             }
//!             _ => {}
//!         }
//!     }
//!     // 2. Hand every event to the app.
//!     while let Some(event) = engine.poll_event() {
//!         if let Event::StateChanged { to: State::Open, .. } = event {
//!             println!("connected");
//!         }
//!     }
//!     // 3. Sleep until the next deadline (virtual time here), then wake the engine.
//!     match engine.poll_timeout() {
//!         Some(deadline) if deadline < Instant::from_millis(60_000) => {
//!             now = deadline;
//!             engine.handle_timeout(now);
//!         }
//!         _ => break,
//!     }
//! }
//! assert_eq!(written[0], "queued before connecting");
//! assert_eq!(engine.state(), &State::Open);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Modules
//!
//! One concern each: [`config`] (validated settings), [`backoff`] (delays and jitter),
//! `outbox` (bounded queue with TTL and acks), `heartbeat` (dead-connection detection),
//! [`close_policy`] (close codes and HTTP statuses), [`protocol`] (the JSON envelope),
//! [`json`] (JSON text to and from `serde_json::Value`, without serde's machinery),
//! `channels` (subscriptions, offsets, presence), `requests`, `sync` (shared documents: the
//! client's `sync::Document`, the server side's ordering, `apply_change`), and `engine`,
//! which composes them; [`sse`] parses a Server-Sent Events stream for drivers that read the
//! bytes themselves. The types that cross the engine's edge live in `action` (what the driver
//! does), `event` (what the app sees), `errors` (refusals and transport failures) and `stats`.
//! See docs/architecture.md in the repository for the picture.
//!
//! ## Features
//!
//! `documents` (on by default): shared documents, i.e. the `sync` module, the engine's
//! document commands (`open_document`, `change_document`…), their events and the `doc_*`
//! messages. Without it the engine is smaller and treats `doc_*` frames as of an unknown type;
//! the browser package's default entry is built that way (docs/performance.md).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod action;
pub mod backoff;
mod channels;
pub mod close_policy;
pub mod config;
mod engine;
mod errors;
mod event;
mod heartbeat;
pub mod json;
mod outbox;
pub mod protocol;
mod requests;
mod rng;
mod sorted;
pub mod sse;
mod stats;
#[cfg(feature = "documents")]
pub mod sync;
mod time;

pub use action::{Action, Frame, OpenRequest, TransportId};
pub use channels::{validate_channel, MAX_CHANNEL_LEN};
pub use close_policy::{ClosePolicy, DelayHint, Disposition, Verdict};
pub use config::{
    validate_client_id, BackoffConfig, Config, ConfigBuilder, ConfigError, HeartbeatConfig,
    HeartbeatMode, Jitter, OutboxConfig, OverflowPolicy, Protocol, TokenPlacement, TransportKind,
    MAX_CLIENT_ID_LEN,
};
pub use engine::{Engine, OutboxStatus, SendOptions};
#[cfg(feature = "documents")]
pub use errors::SyncError;
pub use errors::{CloseError, SendError, SizeLimit, SseEvent, SubscribeError, TransportFailure};
pub use event::{
    CloseReason, DisconnectCause, DropReason, EngineError, Event, InboundMessage, MessageId,
    Payload, RequestFailure, RequestId, State, Unacked,
};
pub use rng::Prng;
pub use stats::Stats;
pub use time::Instant;

/// Re-exported so apps can build JSON payloads without a direct dependency.
pub use serde_json;
