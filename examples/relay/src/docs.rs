//! Shared documents (docs/protocol.md, "Documents"): per channel one
//! `tether_core::sync::DocumentServer` — the same ordering rules the clients are tested
//! against — and the connections syncing it. A change is acknowledged to its author and
//! broadcast to everyone else syncing the document; a rejected change gets the author an
//! `error` naming it and a fresh snapshot.
//!
//! Documents live in memory like everything else here: a restarted relay starts every
//! document empty in a new epoch, and clients resync from a snapshot.

use crate::hub::frame;
use crate::peer::{Outbound, Peer, PeerId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tether_core::protocol::{Op, ServerMessage};
use tether_core::sync::{ChangeOutcome, DocumentServer, SyncReply};

#[derive(Debug)]
struct Doc {
    server: DocumentServer,
    syncers: HashMap<PeerId, Peer>,
}

#[derive(Debug)]
pub(crate) struct Docs {
    epoch: Arc<str>,
    log_capacity: usize,
    docs: Mutex<HashMap<String, Doc>>,
}

impl Docs {
    pub(crate) fn new(epoch: Arc<str>, log_capacity: usize) -> Self {
        Docs {
            epoch,
            log_capacity,
            docs: Mutex::new(HashMap::new()),
        }
    }

    fn docs(&self) -> MutexGuard<'_, HashMap<String, Doc>> {
        self.docs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `doc_sync`: registers `peer` and queues what it needs — the changes after `version`, or
    /// a snapshot — under the lock, so no live change can slip in before them.
    pub(crate) fn sync(
        &self,
        peer: &Peer,
        channel: &str,
        version: Option<u64>,
        epoch: Option<&str>,
    ) {
        let mut docs = self.docs();
        let doc = docs.entry(channel.to_owned()).or_insert_with(|| Doc {
            server: DocumentServer::new(self.epoch.to_string(), self.log_capacity),
            syncers: HashMap::new(),
        });
        match doc.server.sync(version, epoch) {
            SyncReply::Changes(changes) => {
                for (version, id, ops) in changes {
                    peer.push(Outbound::Frame(frame(&ServerMessage::DocChange {
                        channel: channel.to_owned(),
                        version,
                        id,
                        ops,
                    })));
                }
            }
            snapshot @ SyncReply::Snapshot { .. } => {
                push_snapshot(peer, channel, &doc.server, snapshot)
            }
        }
        doc.syncers.insert(peer.id(), peer.clone());
    }

    /// `doc_change` from `author`: apply, acknowledge, broadcast — or reject with a snapshot.
    pub(crate) fn change(&self, author: &Peer, channel: &str, id: String, ops: Vec<Op>) {
        let mut docs = self.docs();
        let doc = docs.entry(channel.to_owned()).or_insert_with(|| Doc {
            server: DocumentServer::new(self.epoch.to_string(), self.log_capacity),
            syncers: HashMap::new(),
        });
        match doc.server.apply(&id, &ops) {
            ChangeOutcome::Applied { version } => {
                author.offer(Outbound::Frame(frame(&ServerMessage::Ack {
                    id: id.clone(),
                    offset: Some(version),
                })));
                let change = frame(&ServerMessage::DocChange {
                    channel: channel.to_owned(),
                    version,
                    id,
                    ops,
                });
                for peer in doc.syncers.values().filter(|p| p.id() != author.id()) {
                    peer.offer(Outbound::Frame(change.clone()));
                }
            }
            ChangeOutcome::Duplicate { version } => {
                author.offer(Outbound::Frame(frame(&ServerMessage::Ack {
                    id,
                    offset: Some(version),
                })));
            }
            ChangeOutcome::Rejected(rejection) => {
                author.offer(Outbound::Frame(frame(&ServerMessage::Error {
                    code: rejection.code.to_owned(),
                    message: rejection.message,
                    id: Some(id),
                })));
                let snapshot = doc.server.snapshot();
                push_snapshot(author, channel, &doc.server, snapshot);
            }
        }
    }

    /// A connection went away: it no longer hears about these documents.
    pub(crate) fn disconnect<'a>(&self, peer: PeerId, channels: impl IntoIterator<Item = &'a str>) {
        let mut docs = self.docs();
        for channel in channels {
            if let Some(doc) = docs.get_mut(channel) {
                doc.syncers.remove(&peer);
            }
        }
    }
}

fn push_snapshot(peer: &Peer, channel: &str, server: &DocumentServer, snapshot: SyncReply) {
    if let SyncReply::Snapshot {
        version,
        state,
        applied,
    } = snapshot
    {
        peer.push(Outbound::Frame(frame(&ServerMessage::DocSnapshot {
            channel: channel.to_owned(),
            version,
            epoch: Some(server.epoch().to_owned()),
            state,
            applied,
        })));
    }
}
