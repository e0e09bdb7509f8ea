//! The driver loop: feeds the engine inputs stamped with `performance.now()`, performs its
//! actions on the current [`Socket`], keeps one `setTimeout` armed at its next deadline, and
//! hands its events to JavaScript once the engine is no longer borrowed.
//!
//! Re-entrancy is the one browser-specific hazard: an app's event handler may call back into
//! the client (`send` from an `on('message')` handler). So app code is never called while
//! the engine is borrowed: events wait in a queue and are delivered afterwards, in order, by
//! the outermost call only.

use crate::backpressure;
use crate::convert::{DriverOptions, SseOptions};
use crate::js;
use crate::transport::{failure, Socket};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::time::Duration;
use tether_core::{Action, Engine, Event, Instant, TransportFailure, TransportId};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// While the browser's send buffer is above the high-water mark, or holds what the engine has
/// not heard it pass on, check it this often (the browser has no "drained" event).
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Something for JavaScript, delivered once the engine is released.
#[derive(Debug)]
pub(crate) enum Out {
    Event(Event),
    /// The engine's `Action::FetchToken`: JS calls the app's token provider and answers
    /// with `token_ready` / `token_failed`.
    FetchToken {
        request: TransportId,
        attempt: u32,
        refresh: bool,
    },
}

/// A window/document listener the driver added and removes on drop.
type Hook = (web_sys::EventTarget, &'static str, Closure<dyn FnMut()>);

/// State shared between the JS handle and every callback (which hold it weakly).
pub(crate) struct Shared {
    inner: RefCell<Inner>,
    out: RefCell<VecDeque<Out>>,
    delivering: Cell<bool>,
    sink: Box<dyn Fn(Out)>,
    timer_cb: RefCell<Option<Closure<dyn FnMut()>>>,
    hooks: RefCell<Vec<Hook>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

/// The engine and the I/O resources it drives.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) engine: Engine,
    socket: Option<Socket>,
    /// The armed `setTimeout` handle and the deadline it is for.
    timer: Option<(JsValue, Instant)>,
    /// The engine was told `transport_writable(false)`.
    blocked: bool,
    /// Backpressure watermarks on `bufferedAmount`: stop above `high`, resume at `low`.
    high_water: u32,
    low_water: u32,
    /// How an event stream is opened.
    sse: SseOptions,
}

/// Runs `f` on the driver behind `weak` (if the client still exists), then drains.
pub(crate) fn input(weak: &Weak<Shared>, f: impl FnOnce(&mut Inner, Instant)) {
    if let Some(shared) = weak.upgrade() {
        shared.run(f);
    }
}

impl Shared {
    pub(crate) fn new(engine: Engine, opts: DriverOptions, sink: Box<dyn Fn(Out)>) -> Rc<Shared> {
        let shared = Rc::new(Shared {
            inner: RefCell::new(Inner {
                engine,
                socket: None,
                timer: None,
                blocked: false,
                high_water: opts.high_water,
                low_water: opts.low_water, // at most `high`: the options are validated
                sse: opts.sse,
            }),
            out: RefCell::default(),
            delivering: Cell::new(false),
            sink,
            timer_cb: RefCell::default(),
            hooks: RefCell::default(),
        });
        let weak = Rc::downgrade(&shared);
        let on_timer = Closure::new(move || {
            input(&weak, |i, now| {
                i.timer = None;
                i.note_upload(now);
                i.engine.handle_timeout(now);
            })
        });
        *shared.timer_cb.borrow_mut() = Some(on_timer);
        shared
    }

    /// Runs `f` with the engine at the current time, performs what the engine asks, re-arms
    /// the timer, then delivers events. `None` if the engine is already borrowed (a call made
    /// from inside the driver itself, which the design rules out).
    pub(crate) fn run<R>(self: &Rc<Self>, f: impl FnOnce(&mut Inner, Instant) -> R) -> Option<R> {
        let result = {
            let mut inner = self.inner.try_borrow_mut().ok()?;
            let now = js::now();
            inner.note_closing(now);
            let result = f(&mut inner, now);
            inner.drain(self, now);
            result
        };
        self.deliver();
        Some(result)
    }

    /// Reads the engine without side effects.
    pub(crate) fn read<R>(&self, f: impl FnOnce(&Engine) -> R) -> Option<R> {
        self.inner.try_borrow().ok().map(|i| f(&i.engine))
    }

    fn deliver(&self) {
        if self.delivering.replace(true) {
            return; // an outer call is delivering; it will reach what was just queued
        }
        loop {
            let next = self.out.borrow_mut().pop_front();
            match next {
                Some(out) => (self.sink)(out),
                None => break,
            }
        }
        self.delivering.set(false);
    }

    /// Wires `online`/`offline` (on the window, or a worker's global scope) and document
    /// `visibilitychange` to the engine, and reports the current values. Does nothing where
    /// the global scope fires no events (Node).
    pub(crate) fn watch_lifecycle(self: &Rc<Self>) {
        let Some(scope) = js::event_scope() else {
            return;
        };
        let mut hooks: Vec<Hook> = Vec::new();
        for (name, online) in [("online", true), ("offline", false)] {
            let w = Rc::downgrade(self);
            let cb = Closure::new(move || input(&w, |i, now| i.network_changed(now, online)));
            hooks.push((scope.clone(), name, cb));
        }
        let online = js::online();
        let document = js::document();
        if let Some(doc) = &document {
            let (w, d) = (Rc::downgrade(self), doc.clone());
            let cb = Closure::new(move || {
                let visible = d.visibility_state() == web_sys::VisibilityState::Visible;
                input(&w, |i, now| i.set_foreground(now, visible));
            });
            hooks.push((doc.clone().unchecked_into(), "visibilitychange", cb));
        }
        for (target, name, cb) in &hooks {
            let _ = target.add_event_listener_with_callback(name, cb.as_ref().unchecked_ref());
        }
        *self.hooks.borrow_mut() = hooks;
        let visible =
            document.is_none_or(|d| d.visibility_state() == web_sys::VisibilityState::Visible);
        self.run(|i, now| {
            if !online {
                i.engine.network_changed(now, false);
            }
            if !visible {
                i.engine.set_foreground(now, false);
            }
        });
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        for (target, name, cb) in self.hooks.get_mut().drain(..) {
            let _ = target.remove_event_listener_with_callback(name, cb.as_ref().unchecked_ref());
        }
        let inner = self.inner.get_mut();
        if let Some((handle, _)) = inner.timer.take() {
            js::clear_timeout(&handle);
        }
        inner.socket = None; // detaches its handlers and closes it
    }
}

impl Inner {
    /// Drains actions and events until the engine has nothing more (performing an action can
    /// feed an input back), then arms the timer for the next deadline.
    fn drain(&mut self, shared: &Rc<Shared>, now: Instant) {
        // Each pass either does work or ends the loop; the bound only guards against a bug.
        for _ in 0..10_000 {
            let mut busy = false;
            while let Some(action) = self.engine.poll_action() {
                busy = true;
                self.perform(shared, action, now);
            }
            while let Some(event) = self.engine.poll_event() {
                busy = true;
                shared.out.borrow_mut().push_back(Out::Event(event));
            }
            if busy || self.note_passed_on(now) || self.check_backpressure(now) {
                continue;
            }
            // A deadline already due (the next batch of an outbox flush): run it now rather
            // than after a `setTimeout`, which a hidden tab throttles to a second or more.
            if !self.blocked && self.engine.poll_timeout().is_some_and(|at| at <= now) {
                // The timer's own evidence first: a heartbeat deadline judged here (its
                // `setTimeout`, throttled, not yet run) must see the upload's progress too.
                self.note_upload(now);
                self.engine.handle_timeout(now);
                continue;
            }
            break;
        }
        self.arm_timer(shared, now);
    }

    fn perform(&mut self, shared: &Rc<Shared>, action: Action, now: Instant) {
        match action {
            Action::FetchToken {
                transport,
                attempt,
                refresh,
            } => {
                shared.out.borrow_mut().push_back(Out::FetchToken {
                    request: transport,
                    attempt,
                    refresh,
                });
            }
            Action::Open(req) => {
                // No socket is left to drop here: the engine releases one still closing
                // (`Action::Release`) before it opens another, and one that ended is forgotten.
                self.blocked = false;
                let failed = match Socket::open(&req, Rc::downgrade(shared), &self.sse) {
                    // Chromium throws nothing for a URL the page's Content-Security-Policy
                    // blocks: the WebSocket it makes is closed already, on every attempt, and
                    // its only events (`error`, and no `close`) would leave the attempt to its
                    // connect timeout. Dropped unheard, and the platform's refusal.
                    Ok(socket) if socket.closed_at_once() => TransportFailure::Blocked(
                        "the browser closed the WebSocket as it was made \
                         (the page's Content-Security-Policy?)"
                            .into(),
                    ),
                    Ok(socket) => {
                        self.socket = Some(socket);
                        return;
                    }
                    Err(e) => failure(e),
                };
                self.engine.transport_failed(now, req.transport, failed);
            }
            Action::Send { transport, frame } => {
                if let Some(socket) = self.current(transport) {
                    socket.send(&frame);
                }
            }
            Action::Close {
                transport,
                code,
                reason,
            } => {
                // A WebSocket stays in place until its `close` event reports the end of the
                // handshake (the engine waits for it while `Closing`); an EventSource closes at
                // once and fires nothing, so its end is reported here.
                #[allow(clippy::collapsible_match)] // a side effect does not belong in a guard
                if self
                    .current(transport)
                    .is_some_and(|s| s.close(code, &reason))
                {
                    self.socket = None;
                    self.engine
                        .transport_closed(now, transport, Some(code), &reason);
                }
            }
            // The engine stopped waiting for the close handshake (or replaces the socket).
            Action::Release { transport } => self.forget(transport),
            // Browsers cannot send ping frames: the config says so, so the engine uses
            // application pings and never asks for these.
            _ => {}
        }
    }

    fn current(&self, transport: TransportId) -> Option<&Socket> {
        self.socket.as_ref().filter(|s| s.id() == transport)
    }

    /// Drops the socket if it is `transport` (it ended).
    pub(crate) fn forget(&mut self, transport: TransportId) {
        if self.current(transport).is_some() {
            self.socket = None;
            self.blocked = false;
        }
    }

    /// A network change, with the level read first: the probe it may send is answered only
    /// by a fall after it (see `Engine::send_buffer_level`).
    pub(crate) fn network_changed(&mut self, now: Instant, online: bool) {
        self.note_upload(now);
        self.engine.network_changed(now, online);
    }

    /// Foreground or background, with the level read first (as for a network change).
    pub(crate) fn set_foreground(&mut self, now: Instant, foreground: bool) {
        self.note_upload(now);
        self.engine.set_foreground(now, foreground);
    }

    /// Reports the socket's `bufferedAmount` (`send_buffer_level`): from how it falls, the
    /// engine tells whether the peer is taking an upload, so a large message going out on a
    /// slow link is not cut off by a heartbeat whose pong waits behind it. Read whenever the
    /// timer fires (the engine needs it at its deadlines) and before an input that may probe:
    /// no call per byte.
    fn note_upload(&mut self, now: Instant) {
        if let Some((id, Some(buffered))) = self.socket.as_ref().map(|s| (s.id(), s.buffered())) {
            self.engine.send_buffer_level(now, id, buffered.into());
        }
    }

    /// Stops the engine writing to a WebSocket that is closing, before anything else it is told
    /// (it would hand over what it is sent: lost unseen, never reported `dropped`). What it
    /// sends waits in the outbox for the next connection, which the `close` event leads to.
    fn note_closing(&mut self, now: Instant) {
        match &self.socket {
            Some(socket) if !self.blocked && socket.closing() => {
                self.blocked = true;
                self.engine.transport_writable(now, socket.id(), false);
            }
            _ => {}
        }
    }

    /// Tells the engine how much of what it sent the browser has passed on
    /// ([`Socket::passed_on`]): those messages are settled, and the rest stay in the outbox,
    /// to be sent again if the connection ends first (what the browser still held when it
    /// closed is lost otherwise, unreported). Returns whether the engine was told.
    pub(crate) fn note_passed_on(&mut self, now: Instant) -> bool {
        let Some((id, Some(units))) = self.socket.as_ref().map(|s| (s.id(), s.passed_on())) else {
            return false;
        };
        self.engine.transport_progress(now, id, units);
        true
    }

    /// Reports `bufferedAmount` crossing the watermarks. Returns whether the engine was told.
    fn check_backpressure(&mut self, now: Instant) -> bool {
        let Some(socket) = &self.socket else {
            return false;
        };
        let (id, Some(buffered)) = (socket.id(), socket.buffered()) else {
            return false;
        };
        let writable =
            backpressure::writable(self.blocked, buffered, self.high_water, self.low_water);
        if writable != self.blocked {
            return false;
        }
        self.blocked = !writable;
        self.engine.transport_writable(now, id, writable);
        true
    }

    /// One `setTimeout` at a time, for the engine's next deadline (or the drain poll).
    fn arm_timer(&mut self, shared: &Shared, now: Instant) {
        let mut deadline = self.engine.poll_timeout();
        if self.blocked || self.socket.as_ref().is_some_and(Socket::holds_unsent) {
            let poll = now + DRAIN_POLL;
            deadline = Some(deadline.map_or(poll, |d| d.min(poll)));
        }
        if self.timer.as_ref().map(|t| t.1) == deadline {
            return;
        }
        if let Some((handle, _)) = self.timer.take() {
            js::clear_timeout(&handle);
        }
        let timer_cb = shared.timer_cb.borrow();
        let (Some(at), Some(cb)) = (deadline, timer_cb.as_ref()) else {
            return;
        };
        // Round up: a timer that fires early only re-arms. Browsers overflow above 2^31-1 ms.
        // In u64 parts, not `as_micros()`: its u128 division would link compiler-builtins'
        // 128-bit divide (~0.2 KB gzipped) for this one line.
        let d = at.saturating_duration_since(now);
        let ms = d
            .as_secs()
            .saturating_mul(1000)
            .saturating_add(u64::from(d.subsec_nanos().div_ceil(1_000_000)));
        let ms = i32::try_from(ms).unwrap_or(i32::MAX);
        self.timer = Some((js::set_timeout(cb.as_ref().unchecked_ref(), ms), at));
    }
}
