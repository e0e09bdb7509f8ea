//! The same seeded runs as `parity.rs`, in headless Chromium (wasm-bindgen-test-runner through
//! Debian's chromedriver, flags from `webdriver.json`): the browser's wasm engine must agree
//! with Node's and with the native build on every number.

#[path = "parity/cases.rs"]
mod cases;

use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

const EXPECTED: &str = include_str!("parity/expected.txt");

#[wasm_bindgen_test]
fn seeded_runs_match_the_native_transcript_in_chromium() {
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
