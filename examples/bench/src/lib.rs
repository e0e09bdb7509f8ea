//! The parts of `tether-bench` that more than one executable runs: the echo server
//! (`server`: the `tether-bench` binary and the `idle_alloc` example both start it as a child
//! process of themselves) and what it reads from the OS (`sys`).
//!
//! Everything else (the clients, the benchmarks, the report) belongs to the binary,
//! `src/main.rs`.

pub mod server;
pub mod sys;
