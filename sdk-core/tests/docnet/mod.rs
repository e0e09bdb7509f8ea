//! A network of engines sharing documents, in virtual time: N clients, one server running
//! `DocumentServer`, and links with seeded latency, connection drops and server restarts.
//! Deliveries keep FIFO order per connection and direction (as a WebSocket does) but
//! interleave freely across clients.
#![allow(dead_code, clippy::unwrap_used)]

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tether_core::protocol::{ClientMessage, ServerMessage};
use tether_core::sync::{ChangeOutcome, DocumentServer, Op, SyncReply};
use tether_core::{Action, Config, Engine, Event, Frame, Instant, Prng, Protocol, TransportId};

pub const DOC: &str = "doc";

/// Client `i`'s `client_id`, which the server keys its changes on and names as their author.
pub fn author(i: usize) -> String {
    format!("client{i}")
}

/// Client `i`'s settings (without its seed): what [`DocNet::new`] gives every client, for a
/// test that changes one of them.
pub fn client_config(i: usize) -> tether_core::ConfigBuilder {
    Config::builder("ws://relay/")
        .protocol(Protocol::Tether)
        .client_id(author(i))
        .backoff_initial(Duration::from_millis(100))
        .backoff_max(Duration::from_secs(2))
        .heartbeat_interval(Duration::from_secs(1))
        .heartbeat_mode(tether_core::HeartbeatMode::AppMessage)
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn set(key: &str, value: Value) -> Vec<Op> {
    vec![Op::Set {
        key: key.into(),
        value,
    }]
}

pub fn inc(key: &str, by: i64) -> Vec<Op> {
    vec![Op::Increment {
        key: key.into(),
        by: by.into(),
    }]
}

/// `clients` clients connected and settled on an empty document.
pub fn started(clients: usize, seed: u64) -> DocNet {
    let mut net = DocNet::new(clients, seed, 1_024);
    net.connect_all();
    net.settle(secs(10));
    net
}

/// Where a frame is going.
#[derive(Debug, Clone, Copy, PartialEq)]
enum To {
    Server,
    Client,
}

#[derive(Debug)]
struct Delivery {
    at: Instant,
    seq: u64,
    client: usize,
    transport: TransportId,
    to: To,
    frame: Option<Frame>,
}

/// One client: its engine, its connection as the server sees it, and its event log.
pub struct Node {
    pub engine: Engine,
    pub conn: Option<TransportId>,
    pub online: bool,
    pub events: Vec<Event>,
    last_at: [Instant; 2],
}

/// The simulated network.
pub struct DocNet {
    pub nodes: Vec<Node>,
    pub server: DocumentServer,
    pub now: Instant,
    pub rng: Prng,
    /// Link latency range, one way.
    pub latency: (Duration, Duration),
    queue: Vec<Delivery>,
    seq: u64,
    /// Ids of every change the server applied, in order (to prove nothing applied twice).
    pub applied: Vec<String>,
    /// Increments each client made, by the change id its engine returned.
    pub increments: std::collections::HashMap<(usize, tether_core::MessageId), i64>,
    /// (author, id) of the changes an impersonator sent under a node's `client_id`: the only
    /// ones a node's own change may legitimately collide with.
    impersonated: Vec<(String, String)>,
    /// As the reference relay does: broadcast a change only to the clients whose `doc_sync`
    /// the server has handled on their current connection (off by default).
    pub relay_like: bool,
    /// The connection on which the server handled each client's last `doc_sync` (until its
    /// `doc_close`).
    synced_on: Vec<Option<TransportId>>,
    /// How many `doc_change` broadcasts the server sent each client (live changes of others;
    /// replays after a `doc_sync` not counted).
    pub broadcasts_to: Vec<usize>,
    /// The clients whose `doc_close` the server handled, in order.
    pub doc_closes: Vec<usize>,
    /// As a relay older than `doc_close` does: answer it with `error{bad_frame}` (no `id`) and
    /// go on broadcasting.
    pub refuses_doc_close: bool,
}

impl DocNet {
    pub fn new(clients: usize, seed: u64, log_capacity: usize) -> Self {
        let mut rng = Prng::seed_from_u64(seed);
        let nodes = (0..clients)
            .map(|i| {
                let config = client_config(i).seed(rng.next_u64()).build().unwrap();
                // Each client is its own process, with its own entropy: a seed fixes timing,
                // not the identity its change ids are unique by.
                let mut engine = Engine::new(config, i as u64);
                engine.open_document(Instant::ZERO, DOC).unwrap();
                Node {
                    engine,
                    conn: None,
                    online: true,
                    events: Vec::new(),
                    last_at: [Instant::ZERO; 2],
                }
            })
            .collect();
        DocNet {
            nodes,
            server: DocumentServer::new("epoch-0", log_capacity),
            now: Instant::ZERO,
            rng,
            latency: (Duration::from_millis(1), Duration::from_millis(40)),
            queue: Vec::new(),
            seq: 0,
            applied: Vec::new(),
            increments: Default::default(),
            impersonated: Vec::new(),
            relay_like: false,
            synced_on: vec![None; clients],
            broadcasts_to: vec![0; clients],
            doc_closes: Vec::new(),
            refuses_doc_close: false,
        }
    }

    pub fn connect_all(&mut self) {
        for i in 0..self.nodes.len() {
            let now = self.now;
            self.nodes[i].engine.connect(now);
            self.drain(i);
        }
    }

    fn send(&mut self, client: usize, transport: TransportId, to: To, frame: Option<Frame>) {
        let (lo, hi) = self.latency;
        let delay = self.rng.duration_between(lo, hi);
        let dir = if to == To::Server { 0 } else { 1 };
        let node = &mut self.nodes[client];
        // FIFO per connection and direction.
        let at = (self.now + delay).max(node.last_at[dir]);
        node.last_at[dir] = at;
        self.seq += 1;
        self.queue.push(Delivery {
            at,
            seq: self.seq,
            client,
            transport,
            to,
            frame,
        });
    }

    /// Performs a client's actions and records its events.
    fn drain(&mut self, i: usize) {
        while let Some(action) = self.nodes[i].engine.poll_action() {
            match action {
                Action::Open(open) => {
                    let t = open.transport;
                    if self.nodes[i].online {
                        self.nodes[i].conn = Some(t);
                        self.nodes[i].last_at = [self.now; 2];
                        // `None` frame to the client = the handshake completing.
                        self.send(i, t, To::Client, None);
                    } else {
                        let now = self.now + Duration::from_millis(5);
                        self.nodes[i].engine.transport_failed(
                            now,
                            t,
                            tether_core::TransportFailure::Io("offline".into()),
                        );
                    }
                }
                Action::Send { transport, frame } => {
                    if self.nodes[i].conn == Some(transport) {
                        self.send(i, transport, To::Server, Some(frame));
                    }
                }
                Action::Close { transport, .. } | Action::Release { transport } => {
                    if self.nodes[i].conn == Some(transport) {
                        self.nodes[i].conn = None;
                    }
                }
                Action::Ping { .. } | Action::FetchToken { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        while let Some(event) = self.nodes[i].engine.poll_event() {
            self.nodes[i].events.push(event);
        }
    }

    fn deliver(&mut self, d: Delivery) {
        let i = d.client;
        if self.nodes[i].conn != Some(d.transport) {
            return; // the connection is gone; frames in flight are lost with it
        }
        match d.to {
            To::Client => {
                let now = self.now;
                match d.frame {
                    None => self.nodes[i].engine.transport_opened(now, d.transport),
                    Some(f) => self.nodes[i].engine.frame_received(now, d.transport, f),
                }
                self.drain(i);
            }
            To::Server => {
                let Some(Frame::Text(text)) = d.frame else {
                    return;
                };
                match ClientMessage::decode(&text) {
                    Ok(ClientMessage::DocSync { .. }) => self.synced_on[i] = Some(d.transport),
                    // As the relay does: no more broadcasts to this client (relay-like).
                    Ok(ClientMessage::DocClose { .. }) if !self.refuses_doc_close => {
                        self.synced_on[i] = None;
                        self.doc_closes.push(i);
                    }
                    _ => {}
                }
                self.serve_and_send(i, &author(i), Some(d.transport), &text);
            }
        }
    }

    /// The server handles a frame from client `i` (its answers go back on `transport`, if
    /// any) and broadcasts what it must to everyone else connected.
    fn serve_and_send(&mut self, i: usize, as_: &str, transport: Option<TransportId>, text: &str) {
        for reply in self.serve(as_, text) {
            if let Some(t) = transport {
                self.send(i, t, To::Client, Some(Frame::Text(reply.0.encode())));
            }
            if let Some(broadcast) = reply.1 {
                for j in 0..self.nodes.len() {
                    if j != i {
                        if let Some(t) = self.nodes[j].conn {
                            if self.relay_like && self.synced_on.get(j) != Some(&Some(t)) {
                                continue;
                            }
                            self.broadcasts_to[j] += 1;
                            self.send(j, t, To::Client, Some(Frame::Text(broadcast.encode())));
                        }
                    }
                }
            }
        }
    }

    /// A frame reaches the server now from `author(i)`, a client that is not one of the
    /// nodes (`i >= nodes.len()`; say, one that crafts its frames by hand): what it is
    /// answered is lost, what is broadcast reaches every node.
    pub fn outsider_sends(&mut self, i: usize, msg: &ClientMessage) {
        assert!(i >= self.nodes.len(), "client{i} is a node");
        self.serve_and_send(i, &author(i), None, &msg.encode());
    }

    /// A frame reaches the server now from a client that is not one of the nodes but says in
    /// its `hello` that it is node `victim` (`client_id` is self-declared; the server ties it
    /// to nothing): what it is answered is lost, what is broadcast reaches every node,
    /// `victim` included.
    pub fn impersonator_sends(&mut self, victim: usize, msg: &ClientMessage) {
        if let ClientMessage::DocChange { id, .. } = msg {
            self.impersonated.push((author(victim), id.clone()));
        }
        self.serve_and_send(self.nodes.len(), &author(victim), None, &msg.encode());
    }

    /// The ids of the `doc_change`s client `i` has sent that have not reached the server yet.
    pub fn changes_in_flight(&self, i: usize) -> Vec<String> {
        let mut flying: Vec<&Delivery> = self
            .queue
            .iter()
            .filter(|d| d.client == i && d.to == To::Server)
            .collect();
        flying.sort_by_key(|d| d.seq);
        flying
            .into_iter()
            .filter_map(|d| match &d.frame {
                Some(Frame::Text(text)) => match ClientMessage::decode(text) {
                    Ok(ClientMessage::DocChange { id, .. }) => Some(id),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    /// The server's answers to one client frame: (to the sender, optional broadcast).
    fn serve(&mut self, client: &str, text: &str) -> Vec<(ServerMessage, Option<ServerMessage>)> {
        let Ok(msg) = ClientMessage::decode(text) else {
            return vec![];
        };
        match msg {
            ClientMessage::Ping { id } => vec![(ServerMessage::Pong { id: Some(id) }, None)],
            ClientMessage::DocClose { .. } if self.refuses_doc_close => vec![(
                ServerMessage::Error {
                    code: "bad_frame".into(),
                    message: "message type not supported by this relay".into(),
                    id: None,
                },
                None,
            )],
            ClientMessage::DocSync {
                channel,
                version,
                epoch,
                pending,
            } => sync_answer(
                &self.server,
                &channel,
                client,
                version,
                epoch.as_deref(),
                &pending,
            )
            .into_iter()
            .map(|m| (m, None))
            .collect(),
            ClientMessage::DocChange {
                id, channel, ops, ..
            } => match self.server.apply(client, &id, &ops) {
                ChangeOutcome::Applied { version } => {
                    self.applied.push(id.clone());
                    vec![(
                        ServerMessage::Ack {
                            id: id.clone(),
                            offset: Some(version),
                        },
                        Some(ServerMessage::DocChange {
                            channel,
                            version,
                            id,
                            client_id: Some(client.to_owned()),
                            ops,
                        }),
                    )]
                }
                ChangeOutcome::Duplicate { version } => vec![(
                    ServerMessage::Ack {
                        id,
                        offset: Some(version),
                    },
                    None,
                )],
                // The engine never reuses an id for other ops: unless an impersonator took it
                // first, seen here it is a bug.
                ChangeOutcome::IdReused { version } => {
                    let key = (client.to_owned(), id.clone());
                    assert!(
                        self.impersonated.contains(&key),
                        "{client} reused change id {id} (first applied at {version})"
                    );
                    vec![(
                        ServerMessage::Error {
                            code: "duplicate_id".into(),
                            message: format!("{id} was already used for other ops"),
                            id: Some(id),
                        },
                        None,
                    )]
                }
                ChangeOutcome::Rejected(r) => {
                    let SyncReply::Snapshot {
                        version,
                        state,
                        applied,
                        applied_by,
                    } = self.server.snapshot()
                    else {
                        return vec![];
                    };
                    vec![
                        (
                            ServerMessage::Error {
                                code: r.code.to_owned(),
                                message: r.message,
                                id: Some(id),
                            },
                            None,
                        ),
                        (
                            ServerMessage::DocSnapshot {
                                channel,
                                version,
                                epoch: Some(self.server.epoch().to_owned()),
                                state,
                                applied,
                                applied_by: Some(applied_by),
                            },
                            None,
                        ),
                    ]
                }
            },
            _ => vec![],
        }
    }

    /// Runs until `until`, delivering frames and firing timers in time order (step-capped).
    pub fn run_until(&mut self, until: Instant) {
        for _ in 0..2_000_000 {
            let next_delivery = self.queue.iter().map(|d| (d.at, d.seq)).min();
            let next_timer = self
                .nodes
                .iter()
                .enumerate()
                .filter_map(|(i, n)| n.engine.poll_timeout().map(|t| (t, i)))
                .min();
            let next = match (next_delivery, next_timer) {
                (Some((a, _)), Some((b, _))) => a.min(b),
                (Some((a, _)), None) => a,
                (None, Some((b, _))) => b,
                (None, None) => break,
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            match (next_delivery, next_timer) {
                (Some((at, seq)), _) if at <= self.now => {
                    let pos = self.queue.iter().position(|d| d.seq == seq).unwrap();
                    let d = self.queue.swap_remove(pos);
                    self.deliver(d);
                }
                (_, Some((_, i))) => {
                    let now = self.now;
                    self.nodes[i].engine.handle_timeout(now);
                    self.drain(i);
                }
                _ => {}
            }
        }
        self.now = self.now.max(until);
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Drops client `i`'s connection (both directions lose what is in flight).
    pub fn drop_connection(&mut self, i: usize) {
        if let Some(t) = self.nodes[i].conn.take() {
            self.queue.retain(|d| !(d.client == i && d.transport == t));
            let now = self.now;
            self.nodes[i].engine.transport_closed(now, t, None, "");
            self.drain(i);
        }
    }

    /// Takes client `i` offline (its connection drops; attempts fail) or back online.
    pub fn set_online(&mut self, i: usize, online: bool) {
        self.nodes[i].online = online;
        if !online {
            self.drop_connection(i);
        }
        let now = self.now;
        self.nodes[i].engine.network_changed(now, online);
        self.drain(i);
    }

    /// The server restarts: every connection drops. The documents are durable; when
    /// `lose_log` the change log is not, so clients must resync from snapshots.
    pub fn restart_server(&mut self, lose_log: bool) {
        for i in 0..self.nodes.len() {
            self.drop_connection(i);
        }
        if lose_log {
            self.server.trim_log();
        }
    }

    /// Whether the server sends client `i`'s current connection the document's changes
    /// (relay-like: it handled a `doc_sync` on it, and no `doc_close` since).
    pub fn syncs(&self, i: usize) -> bool {
        self.nodes[i].conn.is_some() && self.synced_on[i] == self.nodes[i].conn
    }

    /// Client `i` closes the document; whether it was open.
    pub fn close_document(&mut self, i: usize) -> bool {
        let closed = self.nodes[i].engine.close_document(DOC);
        self.drain(i);
        closed
    }

    /// Client `i` opens the document again.
    pub fn open_document(&mut self, i: usize) {
        let now = self.now;
        self.nodes[i].engine.open_document(now, DOC).unwrap();
        self.drain(i);
    }

    /// A local change by client `i`.
    pub fn change(
        &mut self,
        i: usize,
        ops: Vec<tether_core::sync::Op>,
    ) -> Result<tether_core::MessageId, tether_core::SyncError> {
        let now = self.now;
        let r = self.nodes[i].engine.change_document(now, DOC, ops);
        self.drain(i);
        r
    }

    /// An increment of `key` by client `i`, remembered for the exactly-once check.
    pub fn increment(
        &mut self,
        i: usize,
        key: &str,
        by: i64,
    ) -> Result<tether_core::MessageId, tether_core::SyncError> {
        let id = self.change(
            i,
            vec![tether_core::sync::Op::Increment {
                key: key.into(),
                by: by.into(),
            }],
        )?;
        self.increments.insert((i, id), by);
        Ok(id)
    }

    /// The sum of the increments whose change the server acknowledged to its author.
    pub fn acknowledged_increments(&self) -> i64 {
        (0..self.nodes.len())
            .flat_map(|c| {
                self.events(c, |e| match e {
                    Event::Acked { id, .. } => Some((c, *id)),
                    _ => None,
                })
            })
            .filter_map(|key| self.increments.get(&key))
            .sum()
    }

    pub fn view(&self, i: usize) -> Map<String, Value> {
        self.nodes[i].engine.document(DOC).unwrap().view().clone()
    }

    /// Whether every client is caught up: connected, nothing pending, at the server's version.
    pub fn settled(&self) -> bool {
        self.nodes.iter().all(|n| {
            let doc = n.engine.document(DOC).unwrap();
            n.engine.state().is_open()
                && doc.pending() == 0
                && n.engine.outbox_len() == 0
                && doc.version() == Some(self.server.version())
        }) && self.queue.is_empty()
    }

    /// Runs until settled (bounded).
    pub fn settle(&mut self, limit: Duration) {
        let deadline = self.now + limit;
        while !self.settled() {
            assert!(
                self.now < deadline,
                "not settled within {limit:?}: {}",
                self.describe()
            );
            self.run_for(Duration::from_millis(50));
        }
    }

    pub fn describe(&self) -> String {
        let mut out = format!(
            "server v{} {:?}\n",
            self.server.version(),
            self.server.state()
        );
        for (i, n) in self.nodes.iter().enumerate() {
            let d = n.engine.document(DOC).unwrap();
            out += &format!(
                "client{i}: {} v{:?} pending {} outbox {} view {:?}\n",
                n.engine.state(),
                d.version(),
                d.pending(),
                n.engine.outbox_len(),
                d.view()
            );
        }
        out
    }

    /// Every event of client `i` matching `f`.
    pub fn events<T>(&self, i: usize, f: impl Fn(&Event) -> Option<T>) -> Vec<T> {
        self.nodes[i].events.iter().filter_map(f).collect()
    }

    pub fn expect_same_everywhere(&self) {
        let server = self.server.state();
        for (i, n) in self.nodes.iter().enumerate() {
            let d = n.engine.document(DOC).unwrap();
            assert_eq!(d.view(), server, "client{i}'s view\n{}", self.describe());
            assert_eq!(
                d.confirmed(),
                server,
                "client{i}'s confirmed state\n{}",
                self.describe()
            );
        }
    }

    /// The map as sorted pairs, for readable failures.
    pub fn sorted(map: &Map<String, Value>) -> BTreeMap<String, Value> {
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// The server's answer to `client`'s `doc_sync` of `channel` from `version` in `epoch`,
/// listing `pending`: the changes after it, or a snapshot that also lists which of `pending` it
/// holds (the reference relay's answer too).
pub fn sync_answer(
    server: &DocumentServer,
    channel: &str,
    client: &str,
    version: Option<u64>,
    epoch: Option<&str>,
    pending: &[String],
) -> Vec<ServerMessage> {
    match server.sync_for(client, version, epoch, pending) {
        SyncReply::Changes(changes) => changes
            .into_iter()
            .map(|c| ServerMessage::DocChange {
                channel: channel.to_owned(),
                version: c.version,
                id: c.id,
                client_id: Some(c.client_id),
                ops: c.ops,
            })
            .collect(),
        SyncReply::Snapshot {
            version,
            state,
            applied,
            applied_by,
        } => vec![ServerMessage::DocSnapshot {
            channel: channel.to_owned(),
            version,
            epoch: Some(server.epoch().to_owned()),
            state,
            applied,
            applied_by: Some(applied_by),
        }],
    }
}
