//! # tether: a real-time client that survives the network
//!
//! WebSocket (`ws://`, `wss://`) and Server-Sent Events (`http://`, `https://`) connections that
//! reconnect with jittered backoff, detect dead sockets with heartbeats, keep messages in a
//! bounded outbox while disconnected (never dropping one without telling you), resume channel
//! subscriptions where they left off, and refresh credentials on every attempt.
//!
//! This crate is the tokio driver of [`tether_core`], the sans-IO engine where every one of
//! those decisions is made (and tested in virtual time). It performs I/O and nothing else:
//! one task per client owns the engine and the transport; [`Client`] is a cheap handle; events
//! arrive on [`Events`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use tether::{Client, Event, Jitter, Protocol, State};
//!
//! let (client, mut events) = Client::builder("ws://127.0.0.1:9000/ws")
//!     .protocol(Protocol::Tether)          // channels, acks, presence, resume
//!     .jitter(Jitter::Full)                // the default: spreads a crowd of reconnects
//!     .outbox_max_messages(500)            // bounded; overflow is reported, not silent
//!     .connect()?;
//! client.subscribe("room")?;
//! let offset = client.publish_acked("room", "hello").await?; // resolves on the server's ack
//! println!("stored at {offset:?}");
//! while let Some(event) = events.recv().await {
//!     match event {
//!         Event::Message(m) => println!("{:?} #{:?}: {:?}", m.channel, m.offset, m.payload),
//!         Event::ReconnectScheduled { attempt, delay, cause } => {
//!             println!("reconnecting (attempt {attempt}) in {delay:?}: {cause}")
//!         }
//!         Event::Dropped { ids, reason } => println!("{} dropped: {}", ids.len(), reason.name()),
//!         // Gave up, refused, or closed by the app. `events` does not end here: a closed
//!         // client can `connect()` again, and only `shutdown()` or dropping every handle
//!         // ends the stream. `client.closed().await` waits for this state alone.
//!         Event::StateChanged { to: State::Closed { reason }, .. } => {
//!             println!("{reason}");
//!             break;
//!         }
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Logging goes through `tracing`: every state change and every reconnect decision is an
//! `info` event with its reason; drops and engine errors are `warn`, except transport errors,
//! which are `debug`: they are the normal news of a reconnect, and their text is in the cause
//! of the `info` line that follows (the reconnect scheduled, or the close).
//!
//! Proxies: WebSockets and event streams follow one rule, set with
//! [`ClientBuilder::proxy`]. By default it is the environment's, read when the client is
//! built: `HTTP_PROXY` for `ws://` and `http://`, `HTTPS_PROXY` for `wss://` and `https://`,
//! either falling back to `ALL_PROXY`, minus the targets `NO_PROXY` names and loopback targets
//! (a proxy elsewhere cannot reach this machine's loopback). A WebSocket goes through the
//! proxy with `CONNECT` (TLS end to end for `wss://`); the proxy's refusal of it, such as
//! `407 Proxy Authentication Required`, is reported as the proxy's (`DisconnectCause::Proxy`),
//! never as the server's. An event stream goes through reqwest, which tells less: a 407 is
//! the proxy's too, but another refusal of an `https://` stream's `CONNECT` is a transport
//! failure without its status (retried), and for a plain `http://` stream the proxy answers
//! the request itself, so its 403 or 502 cannot be told from the server's. Only `http://`
//! proxies (with an optional `user:password@`) are supported: an `https://` or SOCKS proxy URL
//! is a [`BuildError::Proxy`] (from the environment, only when this client's URL would go
//! through it: `ALL_PROXY=socks5://…` does not stop a client of a loopback relay). Redirects of an
//! event stream are followed only to the same server (the same origin, or from `http` to
//! `https` on the same host): the request carries the client's token and headers.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod builder;
mod client;
mod document;
mod driver;
mod token;
mod transport;

pub use builder::{BuildError, ClientBuilder};
pub use client::{
    AckError, AckedOptions, Client, Events, PendingRequest, RequestError, TryRecvError,
};
pub use document::{Document, DocumentChanges, DocumentEvent};
pub use token::{TokenFuture, TokenProvider};
pub use transport::proxy::Proxy;

pub use tether_core::sync::{ChangeOrigin, KeyChange, Op};
pub use tether_core::{
    serde_json, BackoffConfig, CloseError, ClosePolicy, CloseReason, DisconnectCause, Disposition,
    DropReason, EngineError, Event, HeartbeatConfig, HeartbeatMode, InboundMessage, Jitter,
    MessageId, OutboxConfig, OverflowPolicy, Payload, Protocol, RequestFailure, RequestId,
    SendError, SendOptions, SizeLimit, State, Stats, SubscribeError, SyncError, TokenPlacement,
    TransportKind, Unacked,
};

/// The README's Rust examples, compiled as doctests so they cannot rot.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
