//! The engine compiled to wasm32 behaves exactly as natively: the same seeded runs give the
//! same numbers as `expected.txt`, which `sdk-core/tests/wasm_parity.rs` checks natively.
//! Runs in Node (no `run_in_browser`): nothing here touches the browser.

#[path = "parity/cases.rs"]
mod cases;

use wasm_bindgen_test::wasm_bindgen_test;

const EXPECTED: &str = include_str!("parity/expected.txt");

#[wasm_bindgen_test]
fn seeded_runs_match_the_native_transcript() {
    let got = cases::transcript();
    for (n, (want, got)) in EXPECTED.lines().zip(got.lines()).enumerate() {
        assert_eq!(
            got,
            want,
            "line {} differs from the native transcript",
            n + 1
        );
    }
    assert_eq!(got.lines().count(), EXPECTED.lines().count());
}

#[wasm_bindgen_test]
fn usize_is_32_bits_here_so_the_test_means_something() {
    assert_eq!(usize::BITS, 32);
}
