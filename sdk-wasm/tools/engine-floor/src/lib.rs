//! Every engine entry point reachable from exported functions, so the linker keeps what a
//! real driver would need and nothing else (no wasm-bindgen, no JS, no driver).
#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::time::Duration;
use tether_core::json;
use tether_core::{
    Action, Config, Engine, Event, Frame, Instant, Payload, Protocol, SendOptions, SseEvent,
    TokenPlacement, TransportFailure,
};

thread_local! {
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
}

fn text(ptr: *const u8, len: usize) -> String {
    // SAFETY: the host passes a pointer and length into this module's own memory.
    #[allow(unsafe_code)]
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
    String::from_utf8_lossy(bytes).into_owned()
}

/// Creates the engine for the URL at `ptr..ptr+len`.
#[no_mangle]
pub extern "C" fn engine_new(ptr: *const u8, len: usize, seed: u64) -> u32 {
    let config = Config::builder(text(ptr, len))
        .protocol(Protocol::Tether)
        .driver_can_send_ping_frames(false)
        .token(TokenPlacement::FirstMessage)
        .build();
    match config {
        Ok(c) => {
            ENGINE.with(|e| *e.borrow_mut() = Some(Engine::new(c, seed)));
            1
        }
        Err(e) => e.to_string().len() as u32,
    }
}

/// Feeds input `kind` with the text at `ptr..ptr+len`, then drains like a driver.
#[no_mangle]
pub extern "C" fn engine_input(kind: u32, now: u64, ptr: *const u8, len: usize) -> u64 {
    let t = text(ptr, len);
    let now = Instant::from_micros(now);
    ENGINE.with(|cell| {
        let mut guard = cell.borrow_mut();
        let Some(en) = guard.as_mut() else { return 0 };
        let mut id = None;
        let mut acc = 0u64;
        while let Some(action) = en.poll_action() {
            match action {
                Action::Open(open) => id = Some(open.transport),
                Action::Send { frame, .. } => acc += frame.len() as u64,
                _ => acc += 1,
            }
        }
        let Some(id) = id else { return acc };
        // A driver turns the app's JSON text into payloads with the engine's own parser.
        let json = || json::parse(&t).unwrap_or_default();
        match kind {
            0 => en.connect(now),
            1 => en.transport_opened(now, id),
            2 => en.frame_received(now, id, Frame::Text(t)),
            3 => acc += en.send(now, t).map_or(0, |m| m.get()),
            4 => {
                acc += en
                    .publish(now, "ch", json(), SendOptions::default())
                    .map_or(0, |m| m.get())
            }
            5 => {
                acc += en
                    .request(now, Payload::Json(json()), Some(Duration::from_secs(1)))
                    .map_or(0, |r| r.get())
            }
            6 => acc += u64::from(en.subscribe(now, &t).is_ok()),
            7 => acc += u64::from(en.unsubscribe(now, &t).is_ok()),
            8 => en.transport_closed(now, id, Some(1000), &t),
            9 => en.transport_failed(now, id, TransportFailure::Io(t)),
            10 => en.handle_timeout(now),
            11 => en.network_changed(now, len > 0),
            12 => en.set_foreground(now, len > 0),
            13 => acc += u64::from(en.close(now, 1000, &t).is_ok()),
            14 => en.token_ready(now, 1, t),
            15 => en.transport_writable(now, id, len > 0),
            16 => en.sse_event_received(
                now,
                id,
                SseEvent {
                    data: t,
                    ..Default::default()
                },
            ),
            17 => en.token_failed(now, 1, &t),
            // What a browser driver asks before copying a message, and reports when it does not;
            // and the `bufferedAmount` it reports at the timer.
            18 => match en.reads_message_of(len) {
                true => en.send_buffer_level(now, id, len as u64),
                false => en.frame_too_large(now, id, len),
            },
            // Shared documents (the browser package exposes them).
            #[cfg(feature = "documents")]
            19 => acc += u64::from(en.open_document(now, &t).is_ok()),
            #[cfg(feature = "documents")]
            20 => acc += en.doc_set(now, "doc", &t, json()).map_or(0, |m| m.get()),
            #[cfg(feature = "documents")]
            21 => acc += en.doc_increment(now, "doc", &t, 1).map_or(0, |m| m.get()),
            #[cfg(feature = "documents")]
            22 => acc += en.doc_delete(now, "doc", &t).map_or(0, |m| m.get()),
            #[cfg(feature = "documents")]
            23 => acc += en.doc_insert(now, "doc", &t, json()).map_or(0, |m| m.get()),
            #[cfg(feature = "documents")]
            24 => acc += u64::from(en.close_document(&t)),
            #[cfg(feature = "documents")]
            25 => acc += en.document("doc").map_or(0, |d| d.view().len() as u64),
            _ => en.close_after_drain(now, Duration::from_secs(1)),
        }
        while let Some(action) = en.poll_action() {
            if let Action::Send { frame, .. } = action {
                acc += frame.len() as u64;
            }
        }
        while let Some(event) = en.poll_event() {
            acc += match event {
                Event::Message(m) => match m.payload {
                    Payload::Json(v) => json::to_string(&v).len() as u64,
                    _ => 1,
                },
                Event::StateChanged { to, .. } => to.to_string().len() as u64,
                Event::Error(e) => e.to_string().len() as u64,
                Event::ReconnectScheduled { cause, .. } => cause.to_string().len() as u64,
                Event::Presence { members, .. } => members.len() as u64,
                Event::Replied { payload, .. } => json::to_string(&payload).len() as u64,
                #[cfg(feature = "documents")]
                Event::DocumentChanged { changes, .. } => changes.len() as u64,
                _ => 2,
            };
        }
        acc + en.poll_timeout().map_or(0, |t| t.as_micros()) + en.stats().frames_sent
    })
}
