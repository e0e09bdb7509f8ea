//! The send-buffer watermark rule (`src/backpressure.rs`), checked level by level. Runs in
//! Node: the rule is a pure function and touches no browser API.

#[path = "../src/backpressure.rs"]
mod backpressure;

use backpressure::writable;
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen_test]
fn a_connection_stops_at_the_high_mark_and_resumes_only_at_the_low_one() {
    let (high, low) = (1_000, 250);
    assert!(writable(false, high - 1, high, low));
    assert!(
        !writable(false, high, high, low),
        "stopped at the mark itself"
    );
    assert!(
        !writable(true, 500, high, low),
        "still stopped between the marks"
    );
    assert!(!writable(true, low + 1, high, low));
    assert!(writable(true, low, high, low), "resumed at the low mark");
    assert!(writable(false, 500, high, low), "running between the marks");
}

/// The bug this rule once had: with both marks 0 (`highWaterBytes: 0`) an empty buffer was at
/// the mark (stop) and at the resume level (resume), so the driver told the engine "not
/// writable", "writable", ... until its pass guard, inside every call into the client.
#[wasm_bindgen_test]
fn no_level_both_stops_and_resumes_so_the_driver_never_flips_in_place() {
    for high in 0..=40u32 {
        for low in 0..=high {
            for buffered in 0..=48u32 {
                let stops = !writable(false, buffered, high, low);
                let resumes = writable(true, buffered, high, low);
                assert!(
                    !(stops && resumes),
                    "level {buffered} with marks {high}/{low} stops and resumes"
                );
            }
        }
    }
}

#[wasm_bindgen_test]
fn equal_marks_at_zero_keep_an_empty_buffer_writable_and_a_full_one_stopped() {
    assert!(writable(false, 0, 0, 0));
    assert!(writable(true, 0, 0, 0));
    assert!(!writable(false, 1, 0, 0));
    assert!(!writable(true, 1, 0, 0));
}
