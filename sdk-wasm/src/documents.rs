//! Shared documents in the browser (feature `documents`, the package's `tether-web/documents`
//! entry): the document methods of [`WasmClient`], their errors, and the JSON of changes and
//! document state. Without the feature the module, and the engine's document code, are left
//! out of the wasm (about 17 KB gzipped; docs/performance.md).

use crate::convert::{self, object, write_object};
use crate::WasmClient;
use tether_core::json as text;
use tether_core::serde_json::{Map, Value};
use tether_core::sync::{Document, KeyChange};
use tether_core::SyncError;
use wasm_bindgen::prelude::*;

pub(crate) fn sync_error(e: SyncError) -> JsValue {
    // The engine names the code; a rejection's text already starts with it.
    let message = match &e {
        SyncError::Rejected(r) => r.message.clone(),
        // A refused send (`too_large` with its details): as `send` reports it.
        SyncError::Send(e) => return convert::send_error(e),
        _ => e.to_string(),
    };
    convert::error(e.code(), &message)
}

/// A document's view (what this client sees), or with `confirmed` the server's state.
fn doc_map(doc: &Document, confirmed: bool) -> &Map<String, Value> {
    if confirmed {
        doc.confirmed()
    } else {
        doc.view()
    }
}

/// `[{key, value, overwroteLocal}]`; no `value` when the key was deleted.
pub(crate) fn write_key_changes(out: &mut String, changes: &[KeyChange]) {
    text::write_array(out, changes, |out, c| {
        write_object(out, |w| {
            w.str("key", &c.key);
            w.bool("overwroteLocal", c.overwrote_local);
            if let Some(value) = &c.value {
                w.value("value", value);
            }
        })
    });
}

/// `{generation, version, epoch, pending}` of a document, plus `map` when asked for.
/// `generation` says which opening of the channel's document this is: the wrapper's
/// TetherDocument takes only the events that name it.
fn document_info(doc: &Document, map: Option<&Map<String, Value>>) -> String {
    object(|w| {
        w.u64("generation", doc.generation());
        match doc.version() {
            Some(v) => w.u64("version", v),
            None => w.null("version"),
        }
        match doc.epoch() {
            Some(e) => w.str("epoch", e),
            None => w.null("epoch"),
        }
        w.u64("pending", doc.pending() as u64);
        if let Some(map) = map {
            text::write_map(w.key("map"), map);
        }
    })
}

#[wasm_bindgen]
impl WasmClient {
    /// Changes the document on `channel` atomically with `ops`, a JSON array of operations
    /// (`{op: "set" | "insert", key, value}`, `{op: "delete", key}`,
    /// `{op: "increment", key, by}`); returns the change id. The engine shows it at once and
    /// sends it acknowledged; a change that cannot apply to the current view is refused.
    pub fn change_document(&self, channel: &str, ops: &str) -> Result<f64, JsValue> {
        // The engine's own decoder of the `ops` field; whether they apply is its call too.
        // Past the parser's depth only a value can be (the ops around it are two levels): it
        // is the engine's `too_deep`, as for a value one level less deep, not a malformed op.
        let ops = tether_core::protocol::parse_ops(ops).map_err(|e| match e.kind() {
            text::ErrorKind::TooDeep => sync_error(SyncError::TooDeep),
            _ => convert::error("invalid_op", &e.to_string()),
        })?;
        self.refusable(
            |i, now| {
                i.engine
                    .change_document(now, channel, ops)
                    .map(|id| crate::js_id(id.get()))
            },
            sync_error,
        )
    }

    /// Whether a local change to `key` in the document on `channel` awaits the server (the
    /// engine's exact answer, which a view-vs-confirmed comparison is not).
    pub fn document_pending(&self, channel: &str, key: &str) -> Result<bool, JsValue> {
        self.peek(|e| {
            e.document(channel)
                .is_some_and(|d| d.pending_keys().contains(&key))
        })
    }

    /// The value of `key` in the document on `channel` as JSON: as this client sees it, or
    /// with `confirmed` as the server last confirmed it. `None`: absent, or not open.
    pub fn document_get(
        &self,
        channel: &str,
        key: &str,
        confirmed: bool,
    ) -> Result<Option<String>, JsValue> {
        self.peek(|e| {
            let doc = e.document(channel)?;
            doc_map(doc, confirmed).get(key).map(text::to_string)
        })
    }

    /// `{generation, version, epoch, pending}` of the document on `channel` as JSON, plus
    /// `map`: with `Some(false)` the whole view, with `Some(true)` the server's confirmed
    /// state. `None` if it is not open.
    pub fn document_info(
        &self,
        channel: &str,
        map: Option<bool>,
    ) -> Result<Option<String>, JsValue> {
        self.peek(|e| {
            let doc = e.document(channel)?;
            let map = map.map(|confirmed| doc_map(doc, confirmed));
            Some(document_info(doc, map))
        })
    }
}
