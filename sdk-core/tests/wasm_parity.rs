//! Native half of the wasm parity check: the seeded engine runs in
//! `sdk-wasm/tests/parity/cases.rs` must produce exactly `expected.txt` beside it. The wasm
//! suite (`scripts/test-web`) asserts the same file with the engine compiled to wasm32, so a
//! platform difference in the PRNG, the backoff maths or the codec shows up as a failure in
//! one of the two.
//!
//! An intended behaviour change (new jitter maths, a protocol field) changes the transcript on
//! every platform at once: regenerate it with
//! `TETHER_BLESS_PARITY=1 cargo test -p tether-core --test wasm_parity` and review the diff.

#[path = "../../sdk-wasm/tests/parity/cases.rs"]
mod cases;

const EXPECTED_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../sdk-wasm/tests/parity/expected.txt"
);

#[test]
fn seeded_runs_match_the_shared_transcript() {
    let got = cases::transcript();
    if std::env::var_os("TETHER_BLESS_PARITY").is_some() {
        std::fs::write(EXPECTED_PATH, &got).expect("write expected.txt");
        return;
    }
    let expected = std::fs::read_to_string(EXPECTED_PATH).expect("read expected.txt");
    for (n, (want, got)) in expected.lines().zip(got.lines()).enumerate() {
        assert_eq!(
            got,
            want,
            "line {} of sdk-wasm/tests/parity/expected.txt: if the engine's behaviour changed on \
             purpose, regenerate it with TETHER_BLESS_PARITY=1 cargo test -p tether-core --test \
             wasm_parity and review the diff (scripts/test-web asserts the same file on wasm32)",
            n + 1
        );
    }
    assert_eq!(got.lines().count(), expected.lines().count());
}
