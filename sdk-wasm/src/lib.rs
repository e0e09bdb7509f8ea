//! # tether-wasm: the browser driver for `tether-core`
//!
//! The engine decides everything; this crate only does the browser's I/O for it:
//!
//! * transports: `WebSocket` (with `bufferedAmount` backpressure) and `EventSource`
//!   ([`transport`]);
//! * time from `performance.now()`, one `setTimeout` re-armed to `poll_timeout`, the PRNG
//!   seeded from `crypto.getRandomValues` ([`driver`], `js`);
//! * `online`/`offline` (on the window or a worker's scope) → `network_changed`, document
//!   `visibilitychange` → `set_foreground`;
//! * heartbeats: the config is built with `driver_can_send_ping_frames(false)` and
//!   `driver_sees_ping_frames(false)`, so `HeartbeatMode::Auto` resolves to app pings in
//!   Tether mode and to none on a raw WebSocket (the browser answers the server's pings
//!   unseen) unless the app configures raw app pings.
//!
//! [`WasmClient`] is the low-level handle exported to JavaScript. Apps use the npm package
//! `tether-web`, whose `TetherClient` (js/tether.js, typed by js/tether.d.ts) wraps it with
//! typed events, promises for requests and a `TetherError` class.

/// The module's allocator (see Cargo.toml for why not std's dlmalloc).
#[cfg(all(not(target_feature = "atomics"), target_family = "wasm"))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

mod backpressure;
mod convert;
#[cfg(feature = "documents")]
mod documents;
mod driver;
mod js;
mod transport;

use driver::{Out, Shared};
use std::rc::Rc;
use std::time::Duration;
use tether_core::json;
use tether_core::{Engine, Payload, SendError, SendOptions, SubscribeError, TransportId};
use wasm_bindgen::prelude::*;

/// The low-level client: one engine and its browser driver. Used through `TetherClient` in
/// the npm package; every method returns at once and reports through the `sink` callback.
#[wasm_bindgen]
#[derive(Debug)]
pub struct WasmClient {
    shared: Rc<Shared>,
}

/// A refused send as the wrapper's `TetherError` (see [`convert::send_error`]).
fn send_error(e: SendError) -> JsValue {
    convert::send_error(&e)
}

fn subscribe_error(e: SubscribeError) -> JsValue {
    convert::error(e.code(), &e.to_string())
}

/// Every method's answer when the engine is already borrowed. The driver never calls app code
/// while it is (events are delivered afterwards), so this means a driver bug; every method
/// reports it the same way, as a `busy` `TetherError`, rather than guessing a value.
pub(crate) fn busy() -> JsValue {
    convert::error("busy", "the client is busy (called from inside the driver)")
}

impl WasmClient {
    /// `bytes` travel as binary; otherwise text is sent as is, and `json` text becomes what
    /// `Payload::from_json_text` says for the protocol. Whether the protocol allows the kind
    /// is the engine's call.
    /// Text, JSON and bytes the engine would refuse as too large are refused before they are copied
    /// into the module (`Engine::check_message_size`): one copied would grow its memory for
    /// good. A string's UTF-16 length is at most its UTF-8 size, so a copy is at most 3× the
    /// limit, which the engine then measures.
    fn payload(
        &self,
        data: js_sys::JsString,
        json: bool,
        bytes: Option<js_sys::Uint8Array>,
    ) -> Result<Payload, JsValue> {
        // JSON text too: a frame carrying it (in an envelope or not) is at least as large.
        let size = bytes.as_ref().map_or(data.length(), |b| b.length());
        let protocol = self.peek(|e| {
            e.check_message_size(size as usize)
                .map(|()| e.config().protocol())
        })?;
        let protocol = protocol.map_err(send_error)?;
        match bytes {
            Some(b) => Ok(Payload::Binary(b.to_vec())),
            // As the engine says (the raw protocol sends the text as the app wrote it).
            None if json => Payload::from_json_text(data.into(), protocol)
                .map_err(|e| convert::error("invalid_json", &e.to_string())),
            None => Ok(Payload::Text(data.into())),
        }
    }
}

/// Milliseconds from JS as a duration (absent is `None`); a value [`convert::millis`] refuses
/// is an `invalid_argument` error naming `what`.
fn duration(ms: Option<f64>, what: &str) -> Result<Option<Duration>, JsValue> {
    let refused = || {
        convert::error(
            "invalid_argument",
            &convert::invalid("", what, convert::MILLIS),
        )
    };
    ms.map(|ms| convert::millis(ms).ok_or_else(refused))
        .transpose()
}

fn options(
    ack: Option<bool>,
    ttl_ms: Option<f64>,
    timeout_ms: Option<f64>,
) -> Result<SendOptions, JsValue> {
    Ok(SendOptions {
        ack,
        ttl: duration(ttl_ms, "ttlMs")?,
        timeout: duration(timeout_ms, "timeoutMs")?,
    })
}

/// A message or request id as the JS number the wrapper hands out. Exact: ids count up from 1
/// per client, and a client would need 2^53 messages to lose precision.
pub(crate) fn js_id(id: u64) -> f64 {
    id as f64
}

/// The numbers of [`WasmClient::command`]'s commands and [`WasmClient::read`]'s readings. One
/// export for each group rather than one per command: every export costs glue in the module
/// and in JS (~80 B gzipped). They are written in one place only, the `const` lines of
/// js/tether.js, and read from there when this crate compiles (nothing of the file reaches the
/// module), so the two sides cannot disagree.
mod numbers {
    const TETHER_JS: &[u8] = include_bytes!("../js/tether.js");

    /// Starts connecting (also from `closed`, or now instead of waiting out a backoff).
    pub(crate) const CONNECT: u32 = js_const(b"CONNECT");
    /// Subscribes to the channel (renewed with resume on every reconnect).
    pub(crate) const SUBSCRIBE: u32 = js_const(b"SUBSCRIBE");
    pub(crate) const UNSUBSCRIBE: u32 = js_const(b"UNSUBSCRIBE");
    /// Starts syncing the channel's shared document (Tether protocol; again on every open).
    /// Without the `documents` feature this and `CLOSE_DOCUMENT` are unknown numbers.
    #[cfg_attr(not(feature = "documents"), allow(dead_code))]
    pub(crate) const OPEN_DOCUMENT: u32 = js_const(b"OPEN_DOCUMENT");
    /// Stops tracking the channel's document.
    #[cfg_attr(not(feature = "documents"), allow(dead_code))]
    pub(crate) const CLOSE_DOCUMENT: u32 = js_const(b"CLOSE_DOCUMENT");
    /// Network changes and foreground/background (`online`/`offline` on the window or a
    /// worker's scope, and the document's `visibilitychange`, are wired already).
    pub(crate) const ONLINE: u32 = js_const(b"ONLINE");
    pub(crate) const OFFLINE: u32 = js_const(b"OFFLINE");
    pub(crate) const FOREGROUND: u32 = js_const(b"FOREGROUND");
    pub(crate) const BACKGROUND: u32 = js_const(b"BACKGROUND");
    /// The wrapper stops running the client (`dispose()`, after its close): the engine ends
    /// the close at once and reports what it kept for the handshake (`Engine::abandon`).
    pub(crate) const ABANDON: u32 = js_const(b"ABANDON");

    /// Readings.
    pub(crate) const STATE: u32 = js_const(b"STATE");
    pub(crate) const STATS: u32 = js_const(b"STATS");
    pub(crate) const PRESENCE: u32 = js_const(b"PRESENCE");
    pub(crate) const CLIENT_ID: u32 = js_const(b"CLIENT_ID");

    /// The number in tether.js's `NAME = <digits>`: `name` as a whole name (not preceded by a
    /// letter, digit, `_`, `$` or `.`), then ` = `. Found nowhere or twice, it fails the build.
    const fn js_const(name: &[u8]) -> u32 {
        let mut found = None;
        let mut at = 0;
        while at < TETHER_JS.len() {
            if defines_at(at, name) {
                if found.is_some() {
                    panic!("a command or reading number is defined twice in js/tether.js");
                }
                found = Some(digits_at(at + name.len() + b" = ".len()));
            }
            at += 1;
        }
        match found {
            Some(n) => n,
            None => panic!("a command or reading number is missing from js/tether.js"),
        }
    }

    /// Whether `NAME = ` starts at `at`, as a whole name.
    const fn defines_at(at: usize, name: &[u8]) -> bool {
        if at > 0 && is_name_byte(TETHER_JS[at - 1]) {
            return false;
        }
        starts_with_at(at, name) && starts_with_at(at + name.len(), b" = ")
    }

    const fn starts_with_at(at: usize, text: &[u8]) -> bool {
        if at + text.len() > TETHER_JS.len() {
            return false;
        }
        let mut i = 0;
        while i < text.len() {
            if TETHER_JS[at + i] != text[i] {
                return false;
            }
            i += 1;
        }
        true
    }

    const fn is_name_byte(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b'.'
    }

    /// The decimal number at `at` (at least one digit).
    const fn digits_at(mut at: usize) -> u32 {
        let start = at;
        let mut n: u32 = 0;
        while at < TETHER_JS.len() && TETHER_JS[at].is_ascii_digit() {
            n = n * 10 + (TETHER_JS[at] - b'0') as u32;
            at += 1;
        }
        if at == start {
            panic!("a command or reading number in js/tether.js is not a decimal number");
        }
        n
    }
}

/// A number the wrapper does not send: a version mismatch between tether.js and the module.
fn unknown_number(what: &str) -> JsValue {
    convert::error(
        "invalid_argument",
        &format!(
            "unknown {what} number (tether.js and the wasm module are from different versions)"
        ),
    )
}

impl WasmClient {
    /// Runs `f` on the driver at the current time (see [`busy`]).
    fn act<R>(
        &self,
        f: impl FnOnce(&mut driver::Inner, tether_core::Instant) -> R,
    ) -> Result<R, JsValue> {
        self.shared.run(f).ok_or_else(busy)
    }

    /// Reads the engine (see [`busy`]).
    pub(crate) fn peek<R>(&self, f: impl FnOnce(&Engine) -> R) -> Result<R, JsValue> {
        self.shared.read(f).ok_or_else(busy)
    }

    /// Runs an engine command that the engine may refuse; `refused` turns its error into the
    /// `code:message` the wrapper throws as a `TetherError`.
    pub(crate) fn refusable<T, E>(
        &self,
        f: impl FnOnce(&mut driver::Inner, tether_core::Instant) -> Result<T, E>,
        refused: impl FnOnce(E) -> JsValue,
    ) -> Result<T, JsValue> {
        self.act(f)?.map_err(refused)
    }
}

#[wasm_bindgen]
impl WasmClient {
    /// Creates a client for `url` (`ws(s)://` WebSocket, `http(s)://` SSE) with `options`
    /// (JSON, see js/tether.d.ts), `has_token` when the app gave a token provider.
    /// `sink(kind, json, bytes)` receives every event and token request. Throws
    /// `"invalid_config:<message>"` when an option is invalid.
    #[wasm_bindgen(constructor)]
    pub fn new(
        url: &str,
        options: &str,
        has_token: bool,
        sink: js_sys::Function,
    ) -> Result<WasmClient, JsValue> {
        let (config, opts) = convert::config(url, options, has_token)
            .map_err(|m| convert::error("invalid_config", &m))?;
        let engine = Engine::new(config, js::entropy());
        let deliver = move |out: Out| {
            let (kind, json, bytes) = match out {
                Out::Event(event) => match convert::event(event) {
                    Some(e) => e,
                    None => return,
                },
                Out::FetchToken {
                    request,
                    attempt,
                    refresh,
                } => (
                    "token",
                    convert::token_request(request, attempt, refresh),
                    None,
                ),
            };
            let bytes = bytes.map_or(JsValue::UNDEFINED, |b| {
                js_sys::Uint8Array::from(&b[..]).into()
            });
            // An exception in an app handler must not unwind into the driver.
            let _ = sink.call3(&JsValue::NULL, &kind.into(), &json.into(), &bytes);
        };
        let lifecycle = opts.lifecycle;
        let shared = Shared::new(engine, opts, Box::new(deliver));
        if lifecycle {
            shared.watch_lifecycle();
        }
        Ok(WasmClient { shared })
    }

    /// Queues a message — `bytes` as binary, else text (with `json`, a JSON payload) — and
    /// returns its id: published to `channel` (Tether protocol), or without one sent as is.
    // Flat scalars rather than an options object: reading one would take js-sys property
    // lookups (glue in both the module and JS) for three optional numbers.
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        &self,
        channel: Option<String>,
        data: js_sys::JsString,
        json: bool,
        bytes: Option<js_sys::Uint8Array>,
        ack: Option<bool>,
        ttl_ms: Option<f64>,
        timeout_ms: Option<f64>,
    ) -> Result<f64, JsValue> {
        let payload = self.payload(data, json, bytes)?;
        let opts = options(ack, ttl_ms, timeout_ms)?;
        self.refusable(
            |i, now| {
                match &channel {
                    Some(channel) => i.engine.publish(now, channel, payload, opts),
                    None => i.engine.send_with(now, payload, opts),
                }
                .map(|id| js_id(id.get()))
            },
            send_error,
        )
    }

    /// Sends a request (Tether protocol); the outcome arrives as `replied` or
    /// `request_failed` with the returned id.
    pub fn request(
        &self,
        data: js_sys::JsString,
        json: bool,
        bytes: Option<js_sys::Uint8Array>,
        timeout_ms: Option<f64>,
    ) -> Result<f64, JsValue> {
        let payload = self.payload(data, json, bytes)?;
        let timeout = duration(timeout_ms, "timeoutMs")?;
        self.refusable(
            |i, now| {
                i.engine
                    .request(now, payload, timeout)
                    .map(|id| js_id(id.get()))
            },
            send_error,
        )
    }

    /// Gives up request `id` (its `AbortSignal` fired): not sent if still queued, its reply
    /// ignored if written. False if it was no longer pending.
    pub fn cancel_request(&self, id: f64) -> Result<bool, JsValue> {
        let id = tether_core::RequestId::from_raw(id as u64);
        self.act(|i, now| i.engine.cancel_request(now, id))
    }

    /// Closes with `code` (1000 or 3000-4999) and stops reconnecting. The code comes as a JS
    /// number: a `u16` parameter would wrap 66536 to 1000 before the engine could refuse it.
    pub fn close(&self, code: f64, reason: &str) -> Result<(), JsValue> {
        let invalid = |message: String| convert::error("invalid_close_code", &message);
        if code.fract() != 0.0 || !(0.0..=f64::from(u16::MAX)).contains(&code) {
            // No `{code}` in the text: printing an f64 would link float formatting (~6 KB).
            return Err(invalid(
                "a close code is a whole number, 1000 or 3000-4999".into(),
            ));
        }
        let code = code as u16; // whole and in range: exact
        self.refusable(
            |i, now| i.engine.close(now, code, reason),
            |e| invalid(e.to_string()),
        )
    }

    /// Closes once everything pending is delivered, or after `timeout_ms`.
    pub fn close_after_drain(&self, timeout_ms: f64) -> Result<(), JsValue> {
        let timeout = duration(Some(timeout_ms), "drain")?.unwrap_or_default();
        self.act(|i, now| i.engine.close_after_drain(now, timeout))
    }

    /// The token provider's answer to `request` (the engine ignores one it no longer awaits).
    pub fn token_ready(&self, request: f64, token: String) -> Result<(), JsValue> {
        let request = TransportId::from_raw(request as u64);
        self.act(|i, now| i.engine.token_ready(now, request, token))
    }

    /// The token provider failed `request`.
    pub fn token_failed(&self, request: f64, message: &str) -> Result<(), JsValue> {
        let request = TransportId::from_raw(request as u64);
        self.act(|i, now| i.engine.token_failed(now, request, message))
    }

    /// A command that takes at most a channel, by number (see [`numbers`]).
    pub fn command(&self, op: u32, channel: &str) -> Result<(), JsValue> {
        match op {
            numbers::SUBSCRIBE => {
                self.refusable(|i, now| i.engine.subscribe(now, channel), subscribe_error)
            }
            numbers::UNSUBSCRIBE => {
                self.refusable(|i, now| i.engine.unsubscribe(now, channel), subscribe_error)
            }
            // Opening twice is a no-op.
            #[cfg(feature = "documents")]
            numbers::OPEN_DOCUMENT => self.refusable(
                |i, now| i.engine.open_document(now, channel).map(drop),
                documents::sync_error,
            ),
            // Its pending changes are still delivered.
            #[cfg(feature = "documents")]
            numbers::CLOSE_DOCUMENT => self.act(|i, _| {
                i.engine.close_document(channel);
            }),
            numbers::ONLINE | numbers::OFFLINE => {
                self.act(|i, now| i.network_changed(now, op == numbers::ONLINE))
            }
            numbers::FOREGROUND | numbers::BACKGROUND => {
                self.act(|i, now| i.set_foreground(now, op == numbers::FOREGROUND))
            }
            numbers::CONNECT => self.act(|i, now| i.engine.connect(now)),
            numbers::ABANDON => self.act(|i, now| i.engine.abandon(now)),
            _ => Err(unknown_number("command")),
        }
    }

    /// A reading as JSON (or text), by number (see [`numbers`]); `channel` only for presence.
    pub fn read(&self, what: u32, channel: &str) -> Result<String, JsValue> {
        self.peek(|e| {
            let mut out = String::new();
            match what {
                // `until` in `performance.now()` microseconds.
                numbers::STATE => convert::write_state(&mut out, e.state()),
                numbers::STATS => convert::write_stats(&mut out, e),
                // The members of a subscribed channel (`null` if not subscribed); a raw client
                // has none to read, refused as its `subscribe` is.
                numbers::PRESENCE => {
                    e.check_presence().map_err(subscribe_error)?;
                    match e.presence(channel) {
                        Some(members) => json::write_strings(&mut out, members),
                        None => out.push_str("null"),
                    }
                }
                // The identity sent in `hello` and used as presence member name (plain text).
                numbers::CLIENT_ID => out.push_str(e.client_id()),
                _ => return Err(unknown_number("reading")),
            }
            Ok(out)
        })?
    }
}
