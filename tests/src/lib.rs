//! Test support for Tether's cross-crate scenario tests: a chaos proxy, misbehaving servers, a
//! TLS server with a CA generated on the fly, and helpers to start the relay and await events.
//! Every server here listens on 127.0.0.1 only and stops when dropped.

pub mod proxy;
pub mod servers;
pub mod tls;
pub mod wait;
