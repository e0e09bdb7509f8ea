//! One browser transport: a `WebSocket` or an `EventSource`, with its event handlers wired
//! to the engine's inputs.
//!
//! Every handler carries the engine's [`TransportId`], so news from a transport the engine
//! has abandoned is recognised (and ignored) by the engine itself. The driver keeps at most one
//! transport; dropping it detaches the handlers first and then closes it, so an abandoned
//! socket can never call back.
//!
//! `EventSource` reconnects on its own after an error. That would bypass the engine's backoff,
//! so the driver closes it on the first error and lets the engine decide; because a new
//! `EventSource` cannot set the `Last-Event-ID` header, the resume position travels as the
//! `lastEventId` query parameter (the convention of the common EventSource polyfills).

use crate::convert::SseOptions;
use crate::driver::{input, Shared};
use crate::js;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use tether_core::{
    Engine, Frame, OpenRequest, SseEvent, TransportFailure, TransportId, TransportKind,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, CloseEvent, EventSource, EventTarget, MessageEvent, WebSocket};

type Handler = Closure<dyn FnMut(JsValue)>;

/// The event a Content-Security-Policy's violation fires at the global scope.
const VIOLATION: &str = "securitypolicyviolation";

enum Kind {
    Ws(WebSocket),
    /// With the `securitypolicyviolation` listener on the global scope (see
    /// [`Socket::open_sse`]), removed on drop.
    Sse(EventSource, Option<(EventTarget, Handler)>),
}

/// What a WebSocket's sends handed the browser, to tell the engine how much of it the browser
/// has passed on (`Engine::transport_progress`): `bufferedAmount` counts the bytes handed and
/// not yet passed on, so the rest were. Counted in the engine's units (`Frame::progress_len`),
/// where an empty frame counts one, though it adds nothing to `bufferedAmount`.
#[derive(Default)]
struct Handed {
    /// Bytes of every frame sent.
    bytes: Cell<u64>,
    /// The same frames in the engine's units.
    units: Cell<u64>,
    /// Where (after how many bytes) each empty frame not yet passed on was sent: it is passed
    /// on once those bytes are.
    empties: RefCell<VecDeque<u64>>,
    /// Empty frames passed on.
    empties_passed: Cell<u64>,
    /// The progress last reported, in the engine's units.
    reported: Cell<u64>,
}

/// The current transport and the handlers that feed the engine.
pub(crate) struct Socket {
    id: TransportId,
    kind: Kind,
    handed: Handed,
    _handlers: [Handler; 3],
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Socket")
    }
}

impl Socket {
    /// Opens the transport the engine asked for; an event stream as `sse` says (the event types
    /// it listens for, `message`, unnamed events, among them). An `Err` is the constructor's
    /// exception (a bad URL, or one the browser refuses from this page), to report with
    /// `transport_failed` as [`failure`] says.
    pub(crate) fn open(
        req: &OpenRequest,
        shared: Weak<Shared>,
        sse: &SseOptions,
    ) -> Result<Socket, JsValue> {
        let id = req.transport;
        // Set on `open`: a close before it is a failed handshake, after it a lost connection.
        let opened = Rc::new(Cell::new(false));
        let on_open = {
            let (w, o) = (shared.clone(), opened.clone());
            handler(move |_| {
                o.set(true);
                input(&w, |i, now| i.engine.transport_opened(now, id));
            })
        };
        if req.kind == TransportKind::Sse {
            return Self::open_sse(req, shared, opened, on_open, sse);
        }
        // Chromium's WebSocket throws on a URL with a `#fragment`, at every attempt.
        let url = without_fragment(&req.url);
        let ws = if req.subprotocols.is_empty() {
            WebSocket::new(url)
        } else {
            let list: js_sys::Array = req
                .subprotocols
                .iter()
                .map(|p| JsValue::from_str(p))
                .collect();
            WebSocket::new_with_str_sequence(url, &list)
        }?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let on_message = {
            let w = shared.clone();
            handler(move |ev| {
                let data = ev.unchecked_into::<MessageEvent>().data();
                input(&w, |i, now| match read_message(&i.engine, &data) {
                    Ok(frame) => i.engine.frame_received(now, id, frame),
                    Err(size) => i.engine.frame_too_large(now, id, size),
                });
            })
        };
        let on_close = handler(move |ev| {
            let ev = ev.unchecked_into::<CloseEvent>();
            let (code, reason) = (ev.code(), ev.reason());
            input(&shared, |i, now| {
                // First what the browser passed on before the end: the engine sends the rest
                // again on the next connection.
                i.note_passed_on(now);
                if opened.get() {
                    // 1005 (no status) and 1006 (abnormal) mean there was no close frame.
                    let code = (code != 1005 && code != 1006).then_some(code);
                    i.engine.transport_closed(now, id, code, &reason);
                } else {
                    let failure = TransportFailure::Io("WebSocket handshake failed".into());
                    i.engine.transport_failed(now, id, failure);
                }
                i.forget(id);
            });
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(Socket {
            id,
            kind: Kind::Ws(ws),
            handed: Handed::default(),
            _handlers: [on_open, on_message, on_close],
        })
    }

    fn open_sse(
        req: &OpenRequest,
        shared: Weak<Shared>,
        opened: Rc<Cell<bool>>,
        on_open: Handler,
        sse: &SseOptions,
    ) -> Result<Socket, JsValue> {
        let id = req.transport;
        // EventSource cannot send a Last-Event-ID header on its own first request: the
        // resume position goes in the query (the relay reads `lastEventId` there).
        let url = req.url_with_last_event_id("lastEventId");
        // Without its fragment, the URL the `securitypolicyviolation` event names (below).
        let url = without_fragment(&url);
        let es = if sse.with_credentials {
            let init = web_sys::EventSourceInit::new();
            init.set_with_credentials(true);
            EventSource::new_with_event_source_init_dict(url, &init)
        } else {
            EventSource::new(url)
        }?;
        let on_message = {
            let w = shared.clone();
            // Whether this EventSource has shown an id: its last-event-id buffer starts empty
            // and becomes empty again only through an `id:` field with no value.
            let seen_id = Cell::new(false);
            handler(move |ev| {
                let ev = ev.unchecked_into::<MessageEvent>();
                let last = ev.last_event_id();
                if !last.is_empty() {
                    seen_id.set(true);
                }
                let mut event = SseEvent {
                    // Empty before any id means "no id seen on this EventSource", not a reset:
                    // a stream resumed through the `lastEventId` query parameter starts with an
                    // empty buffer, and reporting that as a reset would lose the resume
                    // position. Empty after one is the stream's reset (`id:` with no value),
                    // which the engine's own parser reports as `Some("")`.
                    id: seen_id.get().then_some(last),
                    event: String::new(),
                    data: String::new(),
                    retry: None, // browsers do not expose the `retry:` field
                };
                input(&w, |i, now| match read_message(&i.engine, &ev.data()) {
                    Ok(Frame::Text(data)) => {
                        event.event = ev.type_();
                        event.data = data;
                        i.engine.sse_event_received(now, id, event);
                    }
                    // Its id still counts, as with the engine's own parser: the event alone,
                    // without a type (not a message), then the size.
                    Err(size) => {
                        i.engine.sse_event_received(now, id, event);
                        i.engine.frame_too_large(now, id, size);
                    }
                    Ok(Frame::Binary(_)) => {} // an EventSource's data is always text
                });
            })
        };
        // Chromium throws nothing for a URL the page's Content-Security-Policy blocks, and the
        // `error` that follows is the one an HTTP error status gives (which may be fixed by
        // the next attempt). What tells them apart is the `securitypolicyviolation` event the
        // global scope (a window, or a worker's) gets first, naming this URL: enforced, it
        // blocked the request. Should the `error` come first, the attempt is an ordinary
        // failure, as before. (Mixed content, an `http://` URL from an `https://` page, gives
        // no such sign: it looks like an error status, and is retried.)
        let csp_blocked = Rc::new(Cell::new(false));
        let on_violation = {
            // As the browser writes it, as the event does (host lower-cased, and so on).
            let (blocked, url) = (csp_blocked.clone(), es.url());
            handler(move |ev| {
                let ev = ev.unchecked_into::<js::Violation>();
                if ev.blocked_uri() == url
                    && ev.disposition() == "enforce"
                    && ev.effective_directive() == "connect-src"
                {
                    blocked.set(true);
                }
            })
        };
        let scope = js::event_scope();
        if let Some(scope) = &scope {
            let f = on_violation.as_ref().unchecked_ref();
            let _ = scope.add_event_listener_with_callback(VIOLATION, f);
        }
        let on_error = {
            let es = es.clone();
            handler(move |_| {
                // Stop the browser's own reconnect: the engine decides when to retry.
                es.close();
                input(&shared, |i, now| {
                    if opened.get() {
                        i.engine.transport_closed(now, id, None, "");
                    } else {
                        let failure = if csp_blocked.get() {
                            TransportFailure::Blocked(
                                "the page's Content-Security-Policy blocked the EventSource \
                                 (connect-src)"
                                    .into(),
                            )
                        } else {
                            TransportFailure::Io("EventSource failed".into())
                        };
                        i.engine.transport_failed(now, id, failure);
                    }
                    i.forget(id);
                });
            })
        };
        es.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        // `EventSource` gives an `event: name` event only to listeners for that name, and has
        // no catch-all: the app lists the names, each heard like unnamed events (`message`). A
        // name listed twice is one listener. No removal on drop: a closed `EventSource`
        // dispatches nothing.
        for name in &sse.events {
            let f = on_message.as_ref().unchecked_ref();
            let _ = es.add_event_listener_with_callback(name, f);
        }
        es.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Ok(Socket {
            id,
            kind: Kind::Sse(es, scope.map(|scope| (scope, on_violation))),
            handed: Handed::default(),
            _handlers: [on_open, on_message, on_error],
        })
    }

    pub(crate) fn id(&self) -> TransportId {
        self.id
    }

    /// Writes a frame. Browsers queue it (see [`Socket::buffered`]) and never block.
    pub(crate) fn send(&self, frame: &Frame) {
        if let Kind::Ws(ws) = &self.kind {
            // Only a still-connecting socket throws, and the engine sends only once open.
            let _ = match frame {
                Frame::Text(text) => ws.send_with_str(text),
                Frame::Binary(bytes) => ws.send_with_u8_array(bytes),
            };
            let h = &self.handed;
            if frame.is_empty() {
                h.empties.borrow_mut().push_back(h.bytes.get());
            }
            h.bytes.set(h.bytes.get() + frame.len() as u64);
            h.units.set(h.units.get() + frame.progress_len());
        }
    }

    /// How much of what was sent the browser has passed on, in the engine's units, when it is
    /// more than last reported. Read in any state: a closed socket's `bufferedAmount` still
    /// counts what it never sent, which the engine then sends again on the next connection.
    pub(crate) fn passed_on(&self) -> Option<u64> {
        let Kind::Ws(ws) = &self.kind else {
            return None;
        };
        let h = &self.handed;
        let bytes = h.bytes.get().saturating_sub(ws.buffered_amount().into());
        let mut empties = h.empties.borrow_mut();
        while empties.front().is_some_and(|&at| at <= bytes) {
            empties.pop_front();
            h.empties_passed.set(h.empties_passed.get() + 1);
        }
        let units = bytes + h.empties_passed.get();
        (units > h.reported.get()).then(|| {
            h.reported.set(units);
            units
        })
    }

    /// Whether the browser holds something sent that it has not been seen to pass on.
    pub(crate) fn holds_unsent(&self) -> bool {
        self.handed.reported.get() < self.handed.units.get()
    }

    /// Starts closing. Returns `true` when the transport is already closed (an `EventSource`
    /// closes at once and fires no event), so the driver reports it itself.
    pub(crate) fn close(&self, code: u16, reason: &str) -> bool {
        match &self.kind {
            Kind::Ws(ws) => {
                // Browsers accept only 1000 and 3000-4999 from scripts, which are the only
                // codes the engine asks for: `Engine::close` refuses others and the engine's
                // own abandon code is 4000.
                let _ = ws.close_with_code_and_reason(code, reason);
                false
            }
            Kind::Sse(es, _) => {
                es.close();
                true
            }
        }
    }

    /// Whether a WebSocket is closed already (asked right after [`Socket::open`]): what
    /// Chromium makes of a URL the page's Content-Security-Policy blocks, instead of throwing.
    pub(crate) fn closed_at_once(&self) -> bool {
        matches!(&self.kind, Kind::Ws(ws) if ws.ready_state() == WebSocket::CLOSED)
    }

    /// Whether a WebSocket is closing or closed (the server's close frame came, or ours went)
    /// though its `close` event, which ends it for the engine, may be seconds away: what is
    /// sent to it meanwhile the browser discards without a word.
    pub(crate) fn closing(&self) -> bool {
        matches!(&self.kind, Kind::Ws(ws) if ws.ready_state() > WebSocket::OPEN)
    }

    /// Bytes the browser holds unsent, for an open WebSocket.
    pub(crate) fn buffered(&self) -> Option<u32> {
        match &self.kind {
            Kind::Ws(ws) if ws.ready_state() == WebSocket::OPEN => Some(ws.buffered_amount()),
            _ => None,
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        match &self.kind {
            Kind::Ws(ws) => {
                ws.set_onopen(None);
                ws.set_onmessage(None);
                ws.set_onclose(None);
                if ws.ready_state() <= WebSocket::OPEN {
                    let _ = ws.close_with_code_and_reason(1000, "");
                }
            }
            Kind::Sse(es, violations) => {
                es.set_onopen(None);
                es.set_onerror(None);
                es.close();
                if let Some((scope, f)) = violations {
                    let f = f.as_ref().unchecked_ref();
                    let _ = scope.remove_event_listener_with_callback(VIOLATION, f);
                }
            }
        }
    }
}

fn handler(f: impl FnMut(JsValue) + 'static) -> Handler {
    Closure::new(f)
}

/// `url` without its `#fragment`, which never reaches the server (the native driver drops it
/// too: `http::Uri`). A byte search: `split('#')` links a char searcher.
fn without_fragment(url: &str) -> &str {
    &url[..url.bytes().position(|b| b == b'#').unwrap_or(url.len())]
}

/// A constructor's exception as the engine's failure: always [`TransportFailure::Blocked`],
/// so the engine stops rather than retry what fails the same way every time. A constructor
/// throws before any connection is made, for what this page and URL always get: a
/// `SecurityError` (the browser refusing the URL from this page, e.g. an insecure `ws://`
/// from an `https://` page), a `SyntaxError` (a URL the browser's parser refuses though the
/// engine's check let it through), a `ReferenceError` (no `WebSocket` or `EventSource` in
/// this runtime, e.g. Node 20).
pub(crate) fn failure(err: JsValue) -> TransportFailure {
    TransportFailure::Blocked(match err.dyn_ref::<js_sys::Error>() {
        Some(e) => e.message().into(),
        None => err.as_string().unwrap_or_else(|| "unknown error".into()),
    })
}

/// The message a `WebSocket` or `EventSource` event holds, copied into the module only if the
/// engine would read it. One over the limit stays in JavaScript memory (`Err` with its size in
/// bytes): copied, it would grow the module's memory, which never shrinks, for nothing.
fn read_message(engine: &Engine, data: &JsValue) -> Result<Frame, usize> {
    if let Some(text) = data.dyn_ref::<js_sys::JsString>() {
        // UTF-8 takes at least one byte for each UTF-16 unit, so a string of more units than
        // the limit is over it; one within may still be over (a unit takes up to 3 bytes):
        // the engine measures that after the copy, so a copy is at most 3× the limit.
        let units = text.length() as usize;
        if !engine.reads_message_of(units) {
            return Err(utf8_len(text).unwrap_or(units));
        }
        return Ok(Frame::Text(text.into()));
    }
    let bytes = js_sys::Uint8Array::new(data);
    let size = bytes.length() as usize;
    match engine.reads_message_of(size) {
        true => Ok(Frame::Binary(bytes.to_vec())),
        false => Err(size),
    }
}

/// A string's size in UTF-8 without copying it here: a `Blob` of it counts its bytes.
fn utf8_len(text: &js_sys::JsString) -> Option<usize> {
    let parts = js_sys::Array::of1(text);
    let blob = web_sys::Blob::new_with_str_sequence(&parts).ok()?;
    Some(blob.size() as usize)
}
