//! Test support for Tether's cross-crate scenario tests: a chaos proxy, a proxy that mutes one
//! direction or freezes a path, a forward HTTP proxy (`CONNECT`), misbehaving servers, a WebSocket tap that sees how clients
//! close, a TLS server with a CA generated on the fly, and helpers to start the relay and await
//! events.
//! Every server here listens on 127.0.0.1 only and stops when dropped.

/// The chaos proxy lives with the relay so the demo can use it too.
pub use tether_relay::chaos as proxy;
pub mod connect_proxy;
pub mod listen;
pub mod oneway;
pub mod servers;
pub mod tap;
pub mod tls;
pub mod wait;
