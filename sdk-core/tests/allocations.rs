//! The hot paths allocate nothing beyond the message the caller hands in: checked by counting
//! every allocation made while 10,000 messages pass through a warmed-up engine.
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use tether_core::{Action, Config, Engine, Event, Frame, Instant, Protocol, TransportId};

struct Counting;

// Per thread: the test harness allocates on its own threads while the test runs.
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // `try_with`: during thread teardown the locals may be gone; those are not ours.
        if COUNTING.try_with(Cell::get).unwrap_or(false) {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn open_engine(protocol: Protocol) -> (Engine, TransportId) {
    let config = Config::builder("ws://127.0.0.1:9000")
        .protocol(protocol)
        .build()
        .unwrap();
    let mut engine = Engine::new(config, 1);
    engine.connect(Instant::ZERO);
    let Some(Action::Open(open)) = engine.poll_action() else {
        panic!("no open")
    };
    engine.transport_opened(Instant::ZERO, open.transport);
    while engine.poll_action().is_some() {}
    while engine.poll_event().is_some() {}
    (engine, open.transport)
}

/// Allocations made by `step` over `n` runs, after a warm-up that lets queues reach capacity.
fn count(n: usize, mut make: impl FnMut() -> String, mut step: impl FnMut(String)) -> u64 {
    for _ in 0..100 {
        step(make());
    }
    let inputs: Vec<String> = (0..n).map(|_| make()).collect();
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    for input in inputs {
        step(input);
    }
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn raw_hot_paths_allocate_nothing_beyond_the_message() {
    let (mut engine, t) = open_engine(Protocol::Raw);
    let now = Instant::from_millis(1);
    let received = count(
        10_000,
        || "x".repeat(64),
        |text| {
            engine.frame_received(now, t, Frame::Text(text));
            assert!(matches!(engine.poll_event(), Some(Event::Message(_))));
        },
    );
    assert_eq!(received, 0, "frame in -> event out");

    let sent = count(
        10_000,
        || "x".repeat(64),
        |text| {
            engine.send(now, text).unwrap();
            assert!(matches!(engine.poll_action(), Some(Action::Send { .. })));
        },
    );
    assert_eq!(sent, 0, "send -> action out");
}
