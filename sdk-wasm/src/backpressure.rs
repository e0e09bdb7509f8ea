//! The rule for when the browser's send buffer stops and resumes the engine's writes. It is
//! a pure function of the buffer's level and the two watermarks, so it is tested without a
//! socket (`tests/backpressure.rs` includes this file).

/// Whether a WebSocket with `buffered` bytes waiting in the browser takes more writes, given
/// whether the engine was last told it does not (`blocked`) and the watermarks (`low` at
/// most `high`: the options are validated).
///
/// Hysteresis: a connection stops at the high mark and resumes only at the low one.
/// Stopped at the mark, not only above it: the engine hands over a batch of exactly the mark,
/// and one more batch on top would double what waits in the browser. But never stopped at a
/// level that resumes: with the marks equal (`highWaterBytes: 0` makes both 0) that level
/// would stop and resume in turn on every pass.
pub(crate) fn writable(blocked: bool, buffered: u32, high: u32, low: u32) -> bool {
    if blocked {
        buffered <= low
    } else {
        buffered < high || buffered <= low
    }
}
