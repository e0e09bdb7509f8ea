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
    /// The global scope: a window, a worker's scope, or Node's `globalThis` (the parity
    /// tests). Read directly: `js_sys::global()` probes four globals with four imports.
    /// Untyped: see [`event_scope`].
    #[wasm_bindgen(thread_local_v2, js_name = globalThis)]
    static GLOBAL: JsValue;
    /// The global `document`, absent in workers.
    #[wasm_bindgen(thread_local_v2, js_name = document)]
    static DOCUMENT: Option<JsValue>;
    /// The global `navigator` (a window's or a worker's: both have `onLine`).
    #[wasm_bindgen(thread_local_v2, js_name = navigator)]
    static NAVIGATOR: Option<Navigator>;
    type Navigator;
    /// A boolean in windows and workers; absent in some runtimes whose global scope is an
    /// `EventTarget` too (Deno), which must not read as offline.
    #[wasm_bindgen(method, getter, js_name = onLine)]
    fn on_line(this: &Navigator) -> JsValue;
    /// A `securitypolicyviolation` event, with the three fields the driver reads as strings
    /// (web-sys's binding turns `disposition` into an enum, with its conversion code).
    pub(crate) type Violation;
    /// The URL blocked, without its fragment.
    #[wasm_bindgen(method, getter, js_name = blockedURI)]
    pub(crate) fn blocked_uri(this: &Violation) -> String;
    /// `connect-src` for a connection, whichever directive of the policy names the rule.
    #[wasm_bindgen(method, getter, js_name = effectiveDirective)]
    pub(crate) fn effective_directive(this: &Violation) -> String;
    /// `enforce`, or `report` for a report-only policy, which blocks nothing.
    #[wasm_bindgen(method, getter)]
    pub(crate) fn disposition(this: &Violation) -> String;
}

/// The global scope, if it is one that fires `online`/`offline`: a window, or a worker's
/// scope (the HTML spec fires them there too). Node's `globalThis` is no `EventTarget`, and
/// is skipped, as is a shim left by server-side rendering or a test setup.
pub(crate) fn event_scope() -> Option<web_sys::EventTarget> {
    GLOBAL.with(|g| g.clone().dyn_into().ok())
}

/// The page's document, if there is one (none in workers) and it is a `Document`.
pub(crate) fn document() -> Option<web_sys::Document> {
    DOCUMENT.with(|d| d.clone()?.dyn_into().ok())
}

/// `navigator.onLine`, where there is a navigator that says; online otherwise.
pub(crate) fn online() -> bool {
    NAVIGATOR.with(|n| n.as_ref().and_then(|n| n.on_line().as_bool()) != Some(false))
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
