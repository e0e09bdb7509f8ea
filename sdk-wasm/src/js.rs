//! The few browser globals the driver needs, bound directly so they work in windows and
//! workers alike (and in Node, where the parity tests run).

use tether_core::Instant;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

#[wasm_bindgen]
extern "C" {
    /// `setTimeout`; returns the handle to pass to `clearTimeout` (a number in browsers).
    #[wasm_bindgen(js_name = setTimeout)]
    pub(crate) fn set_timeout(handler: &js_sys::Function, ms: i32) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    pub(crate) fn clear_timeout(handle: &JsValue);
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
    #[wasm_bindgen(catch, js_namespace = crypto, js_name = getRandomValues)]
    fn get_random_values(buf: &mut [u8]) -> Result<JsValue, JsValue>;
    /// The global `window`, absent in workers. Read directly: `web_sys::window()` goes through
    /// `js_sys::global()`, which probes four globals with four imports. Untyped: see
    /// [`window`].
    #[wasm_bindgen(thread_local_v2, js_name = window)]
    static WINDOW: Option<JsValue>;
}

/// The browser window, if this is one: a `window` global that is not a `Window` (a shim
/// left by server-side rendering or a test setup) counts as none, so the driver skips the
/// lifecycle hooks instead of calling methods the shim lacks.
pub(crate) fn window() -> Option<web_sys::Window> {
    WINDOW.with(|w| w.clone()?.dyn_into().ok())
}

/// The engine's clock: `performance.now()`, so engine instants compare directly with it.
pub(crate) fn now() -> Instant {
    Instant::from_millis_f64(performance_now())
}

/// 64 bits from `crypto.getRandomValues` to seed the engine's PRNG.
pub(crate) fn entropy() -> u64 {
    let mut buf = [0u8; 8];
    if get_random_values(&mut buf).is_err() {
        // No Web Crypto (very old engines): the seed only spreads reconnects, so the clock
        // is an acceptable, if weak, fallback.
        buf = performance_now().to_bits().to_le_bytes();
    }
    u64::from_le_bytes(buf)
}
