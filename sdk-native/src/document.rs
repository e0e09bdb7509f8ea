//! [`Document`]: a live handle on a shared document (Tether protocol), and its change stream.
//!
//! All the document logic (optimistic local changes, rebase over remote ones, rollback on
//! rejection, resync after a reconnect) lives in `tether_core::sync` and the engine; this
//! handle only locks the engine for one call at a time, like every other `Client` command.

use crate::client::Shared;
use futures_util::Stream;
use serde_json::{Map, Value};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tether_core::sync::{ChangeOrigin, KeyChange, Op};
use tether_core::{MessageId, SyncError};
use tokio::sync::broadcast;
use tokio_util::sync::ReusableBoxFuture;

/// Events of one document.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DocumentEvent {
    /// Keys of the view changed: a local change (shown at once), its confirmation, another
    /// client's change, or a rollback.
    Changed {
        /// Why.
        origin: ChangeOrigin,
        /// What, with the new values (`overwrote_local` marks a lost race).
        changes: Vec<KeyChange>,
    },
    /// A local change was rejected (`conflict`, `type_mismatch`, `out_of_range`) or dropped, and rolled back.
    Rejected {
        /// The change's id.
        change: MessageId,
        /// Why.
        code: String,
    },
    /// The document was replaced by a server snapshot; pending changes were replayed on top.
    Resynced {
        /// The snapshot's version.
        version: u64,
    },
    /// This stream fell behind and skipped `missed` events: read [`Document::snapshot`].
    Lagged {
        /// How many.
        missed: u64,
    },
}

/// How many document events a slow change stream may fall behind before it skips (and is
/// told so with [`DocumentEvent::Lagged`]).
pub(crate) const DOCUMENT_EVENT_CAPACITY: usize = 256;

/// A shared document on a channel: a JSON map that every client edits locally at once and
/// that converges to the server's order. Cheap to clone.
///
/// ```no_run
/// # async fn demo(client: tether::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use tether::serde_json::json;
/// use tether::DocumentEvent;
///
/// let todo = client.document("todo")?;
/// let mut changes = todo.changes();
/// todo.set("milk", json!({"done": false}))?;   // visible in todo.get("milk") at once
/// todo.increment("count", 1)?;                 // increments from every client sum exactly
/// while let Some(event) = changes.recv().await {
///     if let DocumentEvent::Changed { origin, changes } = event {
///         println!("{origin:?}: {changes:?}");
///     }
/// }
/// # Ok(()) }
/// ```
///
/// A handle is bound to the opening it came from: once that document is closed, the handle
/// reads as empty and its changes are refused (`not_open`), even after the channel's document
/// is opened again, which only the new opening's handles reach.
#[derive(Clone)]
pub struct Document {
    shared: Arc<Shared>,
    channel: Arc<str>,
    /// Which opening of the channel's document this handle is for
    /// (`tether_core::sync::Document::generation`).
    generation: u64,
}

impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Document")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl Document {
    /// Opens (or reuses) the document on `channel`; refused once the client task has ended,
    /// since nothing would ever sync it.
    pub(crate) fn open(shared: Arc<Shared>, channel: &str) -> Result<Document, SyncError> {
        let generation = {
            let now = shared.now();
            let mut inner = shared.lock();
            if inner.finished() {
                return Err(SyncError::Send(tether_core::SendError::Closed));
            }
            inner.engine.open_document(now, channel)?
        };
        shared.wake.notify_one();
        Ok(Document {
            shared,
            channel: Arc::from(channel),
            generation,
        })
    }

    /// The channel.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The value of `key` as this client sees it (its own pending changes included).
    pub fn get(&self, key: &str) -> Option<Value> {
        self.read(|d| d.get(key).cloned()).flatten()
    }

    /// The whole document as this client sees it.
    pub fn snapshot(&self) -> Map<String, Value> {
        self.read(|d| d.view().clone()).unwrap_or_default()
    }

    /// The server's version this client last confirmed (`None` before the first sync).
    pub fn version(&self) -> Option<u64> {
        self.read(|d| d.version()).flatten()
    }

    /// Local changes not yet confirmed by the server.
    pub fn pending(&self) -> usize {
        self.read(|d| d.pending()).unwrap_or(0)
    }

    /// Sets `key` (last writer in server order wins).
    pub fn set(&self, key: &str, value: impl Into<Value>) -> Result<MessageId, SyncError> {
        self.change(vec![Op::set(key, value)])
    }

    /// Deletes `key`.
    pub fn delete(&self, key: &str) -> Result<MessageId, SyncError> {
        self.change(vec![Op::delete(key)])
    }

    /// Adds `by` to the counter at `key`.
    pub fn increment(
        &self,
        key: &str,
        by: impl Into<serde_json::Number>,
    ) -> Result<MessageId, SyncError> {
        self.change(vec![Op::increment(key, by)])
    }

    /// Sets `key` only if absent (rejected with `conflict` if another client got there first).
    pub fn insert(&self, key: &str, value: impl Into<Value>) -> Result<MessageId, SyncError> {
        self.change(vec![Op::insert(key, value)])
    }

    /// Applies several operations atomically.
    pub fn change(&self, ops: Vec<Op>) -> Result<MessageId, SyncError> {
        // Refused, as a send is, once the client task has ended: a task that panicked left
        // an engine that would accept a change nothing will ever write or report.
        self.shared.command(|e, now| {
            if !is_opening(e.document(&self.channel), self.generation) {
                return Err(SyncError::NotOpen(self.channel.to_string()));
            }
            e.change_document(now, &self.channel, ops)
        })
    }

    /// The document's state as the server last confirmed it (without pending local changes).
    pub fn confirmed(&self) -> Map<String, Value> {
        self.read(|d| d.confirmed().clone()).unwrap_or_default()
    }

    /// Which opening of the channel's document this handle is bound to: a document closed and
    /// opened again is a new one, with a greater number (and new handles). The client's
    /// [`Event::DocumentChanged`](crate::Event::DocumentChanged),
    /// [`Event::ChangeRejected`](crate::Event::ChangeRejected) and
    /// [`Event::DocumentResynced`](crate::Event::DocumentResynced) name the opening they are
    /// about, so an app that follows documents through the client's events can tell a closed
    /// one's events (still queued when it was opened again) from the new one's. The number
    /// stays the handle's after its opening is closed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The epoch of [`version`](Self::version): a server that lost its change log (an
    /// in-memory relay restarting) starts a new one.
    pub fn epoch(&self) -> Option<String> {
        self.read(|d| d.epoch().map(str::to_owned)).flatten()
    }

    /// Stops syncing this document: the server is told to send no more of its changes, it is
    /// no longer re-synced on reconnects, and its change streams end. Pending changes stay in
    /// the outbox and are still delivered; their outcome comes as
    /// [`Event::Acked`](crate::Event::Acked) or [`Event::Dropped`](crate::Event::Dropped),
    /// no longer as document events. Every handle on the same opening is affected;
    /// [`Client::document`](crate::Client::document) opens it again. Closing a handle whose
    /// opening is closed already does nothing: it does not close a later opening.
    pub fn close(&self) {
        let mut inner = self.shared.lock();
        if !is_opening(inner.engine.document(&self.channel), self.generation) {
            return;
        }
        inner.engine.close_document(&self.channel);
        inner.waiters.documents.remove(&*self.channel);
        drop(inner);
        // The engine has a `doc_close` to write: until the task runs, the server keeps
        // sending the document.
        self.shared.wake.notify_one();
    }

    /// A stream of this document's events from now on. Ends when the document is closed or
    /// the client shuts down, and at once if this handle's opening is closed already. Only
    /// the events of this handle's opening: if the document was closed and opened again, a
    /// new handle's stream gets none of the closed one's, even those the client had not
    /// handed over yet.
    pub fn changes(&self) -> DocumentChanges {
        let mut inner = self.shared.lock();
        let generation = match inner.engine.document(&self.channel) {
            Some(doc) if doc.generation() == self.generation && !inner.waiters.task_ended => {
                doc.generation()
            }
            // Nothing will ever be sent: a stream that ends at once.
            _ => {
                let (_, rx) = broadcast::channel(1);
                return DocumentChanges::new(rx);
            }
        };
        let entry = inner
            .waiters
            .documents
            .entry(self.channel.to_string())
            .or_insert_with(|| (generation, broadcast::channel(DOCUMENT_EVENT_CAPACITY).0));
        if entry.0 != generation {
            // The streams of a document no longer open: they end, as `close` ends them.
            *entry = (generation, broadcast::channel(DOCUMENT_EVENT_CAPACITY).0);
        }
        DocumentChanges::new(entry.1.subscribe())
    }

    /// `f` of this handle's opening, if it is still open.
    fn read<T>(&self, f: impl FnOnce(&tether_core::sync::Document) -> T) -> Option<T> {
        let inner = self.shared.lock();
        let doc = inner.engine.document(&self.channel);
        is_opening(doc, self.generation).then(|| doc.map(f))?
    }
}

/// Whether `doc` (the channel's document now) is the opening `generation`.
fn is_opening(doc: Option<&tether_core::sync::Document>, generation: u64) -> bool {
    doc.is_some_and(|doc| doc.generation() == generation)
}

/// The events of one document. Ends when the client shuts down.
pub struct DocumentChanges {
    /// The pending `recv`, which owns the receiver between polls.
    next: ReusableBoxFuture<'static, (Option<DocumentEvent>, broadcast::Receiver<DocumentEvent>)>,
}

impl std::fmt::Debug for DocumentChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentChanges").finish_non_exhaustive()
    }
}

async fn recv(
    mut rx: broadcast::Receiver<DocumentEvent>,
) -> (Option<DocumentEvent>, broadcast::Receiver<DocumentEvent>) {
    let event = match rx.recv().await {
        Ok(event) => Some(event),
        Err(broadcast::error::RecvError::Lagged(missed)) => Some(DocumentEvent::Lagged { missed }),
        Err(broadcast::error::RecvError::Closed) => None,
    };
    (event, rx)
}

impl DocumentChanges {
    fn new(rx: broadcast::Receiver<DocumentEvent>) -> Self {
        DocumentChanges {
            next: ReusableBoxFuture::new(recv(rx)),
        }
    }

    /// The next event, or `None` once the client has shut down.
    pub async fn recv(&mut self) -> Option<DocumentEvent> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for DocumentChanges {
    type Item = DocumentEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<DocumentEvent>> {
        let (event, rx) = futures_util::ready!(self.next.poll(cx));
        self.next.set(recv(rx));
        Poll::Ready(event)
    }
}
