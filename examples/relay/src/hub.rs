//! The channel registry: for every channel its history, its subscribers (WebSocket and SSE)
//! and its presence table, plus the grace timers that turn a dropped connection into a
//! `leave`. Sessions and SSE streams call in; the hub queues frames on the peers.
//!
//! One mutex guards all channels. Every operation under it is short and never waits (frames
//! are queued with [`Peer::offer`], which does not block), and it keeps the ordering rules
//! of the protocol simple: a subscriber's `subscribed`, replay and snapshot are queued in one
//! critical section, so no live message can slip in between them.

use crate::config::RelayConfig;
use crate::docs::Docs;
use crate::history::{Appended, History, Recent, Stored};
use crate::peer::{Outbound, Peer, PeerId};
use crate::presence::{Departure, Presence};
use crate::server::RunState;
use crate::stats::Stats;
use serde_json::Value;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tether_core::protocol::{PresenceChange, ServerMessage};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Encodes a server message into a shareable text frame.
pub(crate) fn frame(msg: &ServerMessage) -> Utf8Bytes {
    Utf8Bytes::from(msg.encode())
}

/// Where an SSE stream starts ([`Hub::follow`]): what a WebSocket subscribe's `subscribed`
/// would say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamStart {
    /// The offset the stream's messages (replay, then live) all come after.
    pub(crate) offset: u64,
    /// Whether the replay is everything since the client's last event id.
    pub(crate) recovered: bool,
}

/// A publish refused because its publisher already used its id for another payload (stored
/// at `offset`): acknowledging it would tell the client that a message nobody will ever
/// receive was delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this client already published another payload under this id (at offset {offset})")]
pub(crate) struct IdReused {
    pub(crate) offset: u64,
}

/// A channel-less publish refused because its publisher already sent another payload under
/// its id: the echo of the first one is what the id stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this client already sent another payload under this id")]
pub(crate) struct EchoIdReused;

/// Where [`Hub::publish`] put a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Published {
    /// Stored at this offset and delivered.
    New(u64),
    /// A resend of one stored at this offset: acknowledge, nothing was delivered.
    Resent(u64),
}

impl Published {
    pub(crate) fn offset(self) -> u64 {
        match self {
            Published::New(offset) | Published::Resent(offset) => offset,
        }
    }
}

/// What [`Hub::echo`] found for a channel-less publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Echo {
    /// Not seen before (now remembered): echo it.
    New,
    /// A resend of one already echoed: acknowledge, do not echo again.
    Resent,
}

/// A client instance: its `client_id` and its `hello.instance`.
pub(crate) type Instance = (Arc<str>, String);

/// The connection a client instance has, with the channels it subscribed to, so that ending
/// it does not look through every channel under the hub's lock.
#[derive(Debug)]
struct InstancePeer {
    peer: Peer,
    channels: HashSet<String>,
    /// The grace periods its predecessors started (the instance's connection it ended, or
    /// one that dropped before it came), by channel: this connection subscribing there is
    /// that connection's return, which ends the grace period as the arrival of an unknown
    /// connection cannot.
    returns: Returns,
}

/// Grace periods a client instance's next connection ends by subscribing: by channel, the
/// member and the grace period's generation.
type Returns = HashMap<String, (Arc<str>, u64)>;

/// What [`Hub::connect_instance`] made of a connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Connected {
    /// It is now its instance's connection (an older one, if any, was ended).
    Current,
    /// A newer connection of its instance is already registered: this one is the stale one,
    /// and was ended.
    Stale,
}

#[derive(Debug)]
struct Subscriber {
    peer: Peer,
    /// The presence identity; `None` for SSE streams, which are not members.
    member: Option<Arc<str>>,
}

#[derive(Debug)]
struct Channel {
    history: History,
    subscribers: HashMap<PeerId, Subscriber>,
    presence: Presence,
}

impl Channel {
    /// Nothing here that anyone could observe: dropping it and recreating it later (same
    /// epoch, head 0) is indistinguishable from keeping it.
    fn is_idle(&self) -> bool {
        self.subscribers.is_empty() && self.presence.is_empty() && self.history.is_pristine()
    }

    /// Queues a presence change for every member subscriber except `except`.
    fn announce(&self, name: &str, change: PresenceChange, except: Option<PeerId>) {
        let frame = frame(&ServerMessage::Presence {
            channel: name.to_owned(),
            change,
        });
        for sub in self.subscribers.values() {
            if sub.member.is_some() && Some(sub.peer.id()) != except {
                sub.peer.offer(Outbound::Frame(frame.clone()));
            }
        }
    }
}

#[derive(Debug)]
pub(crate) struct Hub {
    config: Arc<RelayConfig>,
    /// This relay run's history generation. Every channel shares it, which is sound because
    /// a channel is only dropped while its history is empty (see [`Channel::is_idle`]).
    epoch: Arc<str>,
    channels: Mutex<HashMap<String, Channel>>,
    /// Channel-less publishes recently echoed: (publisher, id) → payload digest, the last
    /// `dedupe_capacity` of the whole relay, so a resend is acknowledged without a second
    /// echo. Nothing else is kept: the echo went to its sender only.
    echoes: Mutex<Recent<u64>>,
    /// The connection of each client instance (`hello.client_id` and `hello.instance`).
    /// An instance has one connection at a time; when a newer one says `hello`, the one here
    /// is one its client gave up on, whose end the relay did not hear (a vanished network
    /// path).
    instances: Mutex<HashMap<Instance, InstancePeer>>,
    /// The grace periods started by client instances' connections that dropped (their
    /// end seen by the relay, no newer connection of the instance yet), for the instance's
    /// next connection to take over as its [`InstancePeer::returns`]. An entry goes when
    /// that connection says `hello`, or with its grace period. Locked only after
    /// `instances`, if at all, and never with `channels`; `instances` may be held while
    /// `channels` is locked, never the other way round.
    departed: Mutex<HashMap<Instance, Returns>>,
    /// Digests of publish payloads, keyed at random per relay so that nobody can craft a
    /// different payload with the digest of someone else's.
    digests: RandomState,
    /// The last presence grace period generation handed out. One counter for every channel,
    /// so a generation is never reused: a channel dropped while idle and recreated must not
    /// hand out numbers that timers started for its previous incarnation still carry.
    generations: AtomicU64,
    /// Shared documents, a namespace of their own.
    pub(crate) docs: Docs,
    stats: Arc<Stats>,
    run_state: watch::Receiver<RunState>,
}

impl Hub {
    pub(crate) fn new(
        config: Arc<RelayConfig>,
        epoch: String,
        stats: Arc<Stats>,
        run_state: watch::Receiver<RunState>,
    ) -> Self {
        let epoch: Arc<str> = Arc::from(epoch);
        Hub {
            docs: Docs::new(epoch.clone(), &config),
            echoes: Mutex::new(Recent::new(config.dedupe_capacity)),
            instances: Mutex::new(HashMap::new()),
            departed: Mutex::new(HashMap::new()),
            config,
            epoch,
            channels: Mutex::new(HashMap::new()),
            digests: RandomState::new(),
            generations: AtomicU64::new(0),
            stats,
            run_state,
        }
    }

    fn channels(&self) -> MutexGuard<'_, HashMap<String, Channel>> {
        // Nothing under this lock can panic halfway through an update that matters more than
        // keeping the relay up, so a poisoned lock is used as it is.
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn new_channel(&self) -> Channel {
        Channel {
            history: History::new(
                self.epoch.clone(),
                self.config.history_capacity,
                self.config.dedupe_capacity,
            ),
            subscribers: HashMap::new(),
            presence: Presence::default(),
        }
    }

    /// Subscribes a WebSocket peer: queues `subscribed`, the replay (see `History::resume`),
    /// and a presence snapshot on `peer`; tells the others if `member` is new.
    /// Subscribing again on the same connection refreshes all three without a presence change.
    pub(crate) fn subscribe(
        &self,
        peer: &Peer,
        member: &Arc<str>,
        name: &str,
        since: Option<u64>,
        epoch: Option<&str>,
    ) {
        let mut channels = self.channels();
        let channel = channels
            .entry(name.to_owned())
            .or_insert_with(|| self.new_channel());

        let resume = channel.history.resume(since, epoch);
        peer.push(Outbound::Frame(frame(&ServerMessage::Subscribed {
            channel: name.to_owned(),
            offset: resume.after,
            epoch: Some(channel.history.epoch().to_string()),
            recovered: resume.recovered,
        })));
        for stored in resume.replay {
            peer.push(Outbound::Message(stored.clone()));
        }

        let previous = channel.subscribers.insert(
            peer.id(),
            Subscriber {
                peer: peer.clone(),
                member: Some(member.clone()),
            },
        );
        let joined = previous.is_none() && channel.presence.arrive(member);

        peer.push(Outbound::Frame(frame(&ServerMessage::Presence {
            channel: name.to_owned(),
            change: PresenceChange::Snapshot(channel.presence.snapshot()),
        })));
        if joined {
            channel.announce(
                name,
                PresenceChange::Join(member.to_string()),
                Some(peer.id()),
            );
        }
    }

    /// Ends a WebSocket peer's subscription on purpose: its member leaves at once if this
    /// was its last subscription here (no grace: it is not coming back), unless another of
    /// its connections dropped within the grace period (that one may come back).
    pub(crate) fn unsubscribe(&self, peer: PeerId, name: &str) {
        self.remove(peer, [name], false);
    }

    /// This relay run's history generation, which SSE event ids carry (`<epoch>-<offset>`).
    pub(crate) fn epoch(&self) -> &Arc<str> {
        &self.epoch
    }

    /// Attaches an SSE stream: queues the retained messages after `last_event_id`, then
    /// live messages. SSE streams are not presence members. Returns where the stream starts
    /// and whether its replay is the whole gap, what a WebSocket subscribe's `subscribed`
    /// says: `offset`, which the messages queued on it (replay then live) all come after,
    /// and `recovered`. The stream tells its client first (its `position` event): a client
    /// that has received nothing yet when its stream drops then resumes from there, instead
    /// of coming back as a new stream that gets only what is published after its return.
    ///
    /// The id is `<epoch>-<offset>` and is resumed as a `subscribe` with that `since` and
    /// `epoch` would be (`History::resume`). An id of this epoch resumes after its offset,
    /// `recovered` if everything since is retained. Any other id is unknown: one from before
    /// a restart (another epoch), a plain offset from a relay that sent those (necessarily an
    /// earlier process, so another epoch too), or garbage. Its client has seen something, but
    /// nothing that can be placed in this history, so it gets everything retained, not
    /// recovered: at worst messages it has (which clients drop by offset), never a gap
    /// unannounced, as when an offset of the old epoch skipped as many of the new one. So does
    /// an id of this epoch older than the history kept.
    pub(crate) fn follow(
        &self,
        peer: &Peer,
        name: &str,
        last_event_id: Option<&str>,
    ) -> StreamStart {
        let mut channels = self.channels();
        let channel = channels
            .entry(name.to_owned())
            .or_insert_with(|| self.new_channel());
        let (since, epoch) = match last_event_id {
            // A new stream: live messages only.
            None => (None, None),
            Some(last) => match last.rsplit_once('-').map(|(e, o)| (e, o.parse::<u64>())) {
                Some((epoch, Ok(offset))) => (Some(offset), Some(epoch)),
                _ => (Some(0), None),
            },
        };
        let resume = channel.history.resume(since, epoch);
        for stored in resume.replay {
            peer.push(Outbound::Message(stored.clone()));
        }
        let start = StreamStart {
            offset: resume.after,
            recovered: resume.recovered,
        };
        channel.subscribers.insert(
            peer.id(),
            Subscriber {
                peer: peer.clone(),
                member: None,
            },
        );
        start
    }

    /// Stores a publish under the next offset and delivers it to every subscriber, or, for
    /// an id `publisher` already stored, reports the original offset and delivers nothing:
    /// [`Published::Resent`] for a resend (same payload), [`IdReused`] for another payload
    /// under that id.
    pub(crate) fn publish(
        &self,
        name: &str,
        publisher: &Arc<str>,
        id: &str,
        payload: Value,
        ts: u64,
    ) -> Result<Published, IdReused> {
        let digest = self.digest(&payload);
        let mut channels = self.channels();
        let channel = channels
            .entry(name.to_owned())
            .or_insert_with(|| self.new_channel());
        let appended = channel.history.append(publisher, id, digest, |offset| {
            frame(&ServerMessage::Message {
                channel: Some(name.to_owned()),
                offset: Some(offset),
                id: Some(id.to_owned()),
                payload,
                ts: Some(ts),
            })
        });
        match appended {
            Appended::Duplicate(offset) => Ok(Published::Resent(offset)),
            Appended::Conflict(offset) => Err(IdReused { offset }),
            Appended::New(stored) => {
                self.stats.message_published();
                deliver(channel, &stored);
                Ok(Published::New(stored.offset))
            }
        }
    }

    /// True if the relay remembers `publisher`'s publish `id` on `channel` (`None`: a
    /// channel-less one), so that a publish under it stores and delivers nothing: it is a
    /// resend, acknowledged, or a reuse of the id, refused.
    pub(crate) fn holds(&self, channel: Option<&str>, publisher: &Arc<str>, id: &str) -> bool {
        match channel {
            Some(name) => self
                .channels()
                .get(name)
                .is_some_and(|c| c.history.holds(publisher, id)),
            None => self
                .echoes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(publisher, id)
                .is_some(),
        }
    }

    /// The digest a publish's payload is remembered by, to tell a resend from a reuse of its
    /// id.
    pub(crate) fn digest(&self, payload: &Value) -> u64 {
        self.digests.hash_one(payload)
    }

    /// Remembers a channel-less publish (`digest` from [`Hub::digest`]) the relay is about to
    /// echo, or recognises a resend of one it already echoed: [`Echo::Resent`] for the same
    /// payload, [`EchoIdReused`] for another payload under that id.
    pub(crate) fn echo(
        &self,
        publisher: &Arc<str>,
        id: &str,
        digest: u64,
    ) -> Result<Echo, EchoIdReused> {
        let mut echoes = self.echoes.lock().unwrap_or_else(PoisonError::into_inner);
        match echoes.get(publisher, id) {
            Some(&seen) if seen == digest => Ok(Echo::Resent),
            Some(_) => Err(EchoIdReused),
            None => {
                echoes.insert(publisher, id, digest);
                Ok(Echo::New)
            }
        }
    }

    /// Records `peer` as the connection of client `instance` and ends the instance's older
    /// connection: its client gave it up, so it is removed from its channels now rather than
    /// after the relay's own liveness limit. Its members get the grace period of a dropped
    /// connection, which the new connection's resubscribes (right after its `hello`) end
    /// without anyone seeing a change; a channel it does not resubscribe to is left when the
    /// grace period ends.
    ///
    /// Peer ids only increase, so a smaller id is an older connection. The `hello` of an
    /// older connection can arrive after a newer one's (delayed on the path its client gave
    /// up): then `peer` is the stale one, and it is ended instead ([`Connected::Stale`]). It
    /// has not subscribed to anything yet (`hello` comes first).
    pub(crate) fn connect_instance(
        self: &Arc<Self>,
        instance: &Instance,
        peer: &Peer,
    ) -> Connected {
        let mut current = InstancePeer {
            peer: peer.clone(),
            channels: HashSet::new(),
            returns: HashMap::new(),
        };
        // Held until the grace periods are handed over, so that a grace period's end
        // (`forget_departed`) finds them here or in `departed`, never in between.
        let mut instances = self
            .instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let older = match instances.entry(instance.clone()) {
            Entry::Occupied(entry) if entry.get().peer.id() > peer.id() => None,
            entry => {
                // What a connection of the instance that dropped left for its return.
                current.returns = self.departed().remove(instance).unwrap_or_default();
                match entry {
                    Entry::Occupied(mut entry) => {
                        Some(Some(std::mem::replace(entry.get_mut(), current)))
                    }
                    Entry::Vacant(entry) => {
                        entry.insert(current);
                        Some(None)
                    }
                }
            }
        };
        let Some(older) = older else {
            drop(instances);
            tracing::debug!(
                peer = peer.id(),
                "a newer connection of its client said hello first"
            );
            peer.replace();
            return Connected::Stale;
        };
        if let Some(old) = older {
            tracing::debug!(
                peer = old.peer.id(),
                "replaced by a newer connection of its client"
            );
            let grace = !self.config.presence_grace.is_zero();
            let pending = self.remove(
                old.peer.id(),
                old.channels.iter().map(String::as_str),
                grace,
            );
            let mut returns = old.returns;
            for (name, member, generation) in &pending {
                returns.insert(name.clone(), (member.clone(), *generation));
            }
            if let Some(entry) = instances.get_mut(instance) {
                entry.returns.extend(returns);
            }
            drop(instances);
            old.peer.replace();
            for (name, member, generation) in pending {
                self.start_grace(name, member, generation, Some(instance.clone()));
            }
        }
        Connected::Current
    }

    /// Notes that `peer`, the connection of `instance`, subscribed to `name` (`subscribed`)
    /// or unsubscribed from it, for [`connect_instance`](Self::connect_instance) to end it
    /// with. A connection no longer its instance's (ended by a newer one) is not noted: its
    /// own end removes it from whatever it subscribed to since.
    pub(crate) fn instance_channel(
        &self,
        instance: &Instance,
        peer: PeerId,
        name: &str,
        subscribed: bool,
    ) {
        let mut instances = self
            .instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = instances.get_mut(instance).filter(|e| e.peer.id() == peer) else {
            return;
        };
        if !subscribed {
            entry.channels.remove(name);
            return;
        }
        if !entry.channels.contains(name) {
            entry.channels.insert(name.to_owned());
        }
        let returned = entry.returns.remove(name);
        drop(instances);
        if let Some((member, generation)) = returned {
            if let Some(channel) = self.channels().get_mut(name) {
                channel.presence.returned(&member, generation);
            }
        }
    }

    /// Removes `peer`, a connection of client `instance`, from `names` as it ends: as
    /// [`leave`](Self::leave) if its client closed on purpose (`leaving`), else as
    /// [`disconnect`](Self::disconnect), and then, if it was its instance's connection, the
    /// grace periods that started (with those its predecessors left that it did not end) are
    /// kept for the instance's next connection, whose resubscribes are known returns: they end
    /// them, so its member leaves at once if it then closes on purpose. Closing on purpose
    /// also ends the grace periods it took over and did not end (the channels it did not
    /// resubscribe to): its client is not coming back to them either.
    pub(crate) fn end_instance_connection<'a>(
        self: &Arc<Self>,
        instance: &Instance,
        peer: PeerId,
        names: impl IntoIterator<Item = &'a str>,
        leaving: bool,
    ) {
        // Held until the grace periods are kept in `departed`, so that a grace period's end
        // (`forget_departed`) finds them in one place or the other, never in between, and
        // the instance's next connection takes them with it.
        let mut instances = self
            .instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let unclaimed = match instances.entry(instance.clone()) {
            Entry::Occupied(entry) if entry.get().peer.id() == peer => Some(entry.remove().returns),
            _ => None,
        };
        if leaving {
            drop(instances);
            self.leave(peer, names);
            // Its client is not coming back: the grace periods it took over and did not
            // end (channels it did not resubscribe to) end now too. Their timers then find
            // nothing to do.
            for (name, (member, generation)) in unclaimed.into_iter().flatten() {
                self.expire(&name, &member, generation);
            }
            return;
        }
        let grace = !self.config.presence_grace.is_zero();
        let pending = self.remove(peer, names, grace);
        if let Some(mut returns) = unclaimed {
            for (name, member, generation) in &pending {
                returns.insert(name.clone(), (member.clone(), *generation));
            }
            if !returns.is_empty() {
                self.departed().insert(instance.clone(), returns);
            }
        }
        drop(instances);
        for (name, member, generation) in pending {
            self.start_grace(name, member, generation, Some(instance.clone()));
        }
    }

    fn departed(&self) -> MutexGuard<'_, HashMap<Instance, Returns>> {
        self.departed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes a connection whose client closed on purpose from `names`: its members leave
    /// at once, where it was their last connection and no other dropped within the grace
    /// period.
    pub(crate) fn leave<'a>(&self, peer: PeerId, names: impl IntoIterator<Item = &'a str>) {
        self.remove(peer, names, false);
    }

    /// Removes a connection that went away from `names`. Its members get a grace period
    /// before others hear `leave`.
    pub(crate) fn disconnect<'a>(
        self: &Arc<Self>,
        peer: PeerId,
        names: impl IntoIterator<Item = &'a str>,
    ) {
        let grace = !self.config.presence_grace.is_zero();
        let pending = self.remove(peer, names, grace);
        for (name, member, generation) in pending {
            self.start_grace(name, member, generation, None);
        }
    }

    /// Removes `peer` from `names`, announcing immediate leaves; returns the grace periods
    /// that started.
    fn remove<'a>(
        &self,
        peer: PeerId,
        names: impl IntoIterator<Item = &'a str>,
        grace: bool,
    ) -> Vec<(String, Arc<str>, u64)> {
        let mut pending = Vec::new();
        let mut channels = self.channels();
        for name in names {
            let Some(channel) = channels.get_mut(name) else {
                continue;
            };
            let member = channel.subscribers.remove(&peer).and_then(|s| s.member);
            if let Some(member) = member {
                let generation =
                    grace.then(|| self.generations.fetch_add(1, Ordering::Relaxed) + 1);
                match channel.presence.depart(&member, generation) {
                    Departure::Stays => {}
                    Departure::Left => {
                        channel.announce(name, PresenceChange::Leave(member.to_string()), None)
                    }
                    Departure::Leaving(generation) => {
                        pending.push((name.to_owned(), member, generation));
                    }
                }
            }
            if channel.is_idle() {
                channels.remove(name);
            }
        }
        pending
    }

    /// Starts the timer of a grace period; `instance`: the client instance whose connection
    /// started it, which may have left it for its next connection (see `departed`).
    fn start_grace(
        self: &Arc<Self>,
        name: String,
        member: Arc<str>,
        generation: u64,
        instance: Option<Instance>,
    ) {
        let mut run_state = self.run_state.clone();
        if *run_state.borrow() != RunState::Running {
            // The relay is stopping: nobody is left to tell.
            return;
        }
        // Connections are also cleaned up from `Drop`, which may run while the runtime is
        // shutting down; then there is no timer to start and nobody to tell either.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let hub = Arc::downgrade(self);
        let grace = self.config.presence_grace;
        runtime.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(grace) => {}
                _ = run_state.wait_for(|s| *s != RunState::Running) => return,
            }
            if let Some(hub) = hub.upgrade() {
                hub.expire(&name, &member, generation);
                if let Some(instance) = instance {
                    hub.forget_departed(&instance, generation);
                }
            }
        });
    }

    fn expire(&self, name: &str, member: &str, generation: u64) {
        let mut channels = self.channels();
        let Some(channel) = channels.get_mut(name) else {
            return;
        };
        if channel.presence.expire(member, generation) {
            tracing::debug!(channel = name, member, "presence grace period ended");
            channel.announce(name, PresenceChange::Leave(member.to_owned()), None);
        }
        if channel.is_idle() {
            channels.remove(name);
        }
    }

    /// Forgets the grace period `generation` kept for `instance`'s next connection, or
    /// taken over by its current one without being ended (it did not resubscribe there): it
    /// ended. Left in the current connection's `returns`, it would be passed on to
    /// `departed` when that connection drops, where no timer is left to forget it.
    fn forget_departed(&self, instance: &Instance, generation: u64) {
        let mut instances = self
            .instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = instances.get_mut(instance) {
            entry.returns.retain(|_, (_, g)| *g != generation);
        }
        let mut departed = self.departed();
        if let Some(returns) = departed.get_mut(instance) {
            returns.retain(|_, (_, g)| *g != generation);
            if returns.is_empty() {
                departed.remove(instance);
            }
        }
    }

    /// Channels currently held (for tests of the cleanup rule).
    #[cfg(test)]
    fn channel_count(&self) -> usize {
        self.channels().len()
    }

    /// Client instances with grace periods kept for their next connection (for tests).
    #[cfg(test)]
    fn departed_count(&self) -> usize {
        self.departed().len()
    }

    /// Whether `peer` is subscribed to channel `name` (for tests).
    #[cfg(test)]
    pub(crate) fn is_subscribed(&self, peer: PeerId, name: &str) -> bool {
        self.channels()
            .get(name)
            .is_some_and(|c| c.subscribers.contains_key(&peer))
    }
}

/// Queues a stored message for every subscriber of `channel`.
fn deliver(channel: &Channel, stored: &Stored) {
    for sub in channel.subscribers.values() {
        if !sub.peer.offer(Outbound::Message(stored.clone())) {
            tracing::debug!(peer = sub.peer.id(), "slow consumer: message not queued");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn hub(grace: Duration) -> (Arc<Hub>, watch::Sender<RunState>) {
        let (tx, rx) = watch::channel(RunState::Running);
        let config = RelayConfig {
            presence_grace: grace,
            ..RelayConfig::default()
        };
        let hub = Hub::new(
            Arc::new(config),
            "e1".into(),
            Arc::new(Stats::default()),
            rx,
        );
        (Arc::new(hub), tx)
    }

    fn member(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[tokio::test]
    async fn subscribe_queues_subscribed_replay_and_snapshot_in_order() {
        let (hub, _run) = hub(Duration::ZERO);
        let (a, mut qa) = Peer::new(1, 100, 0);
        hub.subscribe(&a, &member("alice"), "room", None, None);
        let alice = member("alice");
        hub.publish("room", &alice, "p1", json!(1), 0).unwrap();
        hub.publish("room", &alice, "p2", json!(2), 0).unwrap();
        let first = qa.drain_messages();
        assert!(matches!(
            &first[0],
            ServerMessage::Subscribed {
                offset: 0,
                recovered: false,
                ..
            }
        ));
        assert_eq!(
            first.len(),
            4,
            "subscribed, snapshot, two messages: {first:?}"
        );

        let (b, mut qb) = Peer::new(2, 100, 0);
        hub.subscribe(&b, &member("bob"), "room", Some(1), Some("e1"));
        let got = qb.drain_messages();
        // `offset` is where bob's stream resumes: after #1, so #2 follows as replay.
        assert!(matches!(
            &got[0],
            ServerMessage::Subscribed {
                offset: 1,
                recovered: true,
                ..
            }
        ));
        assert!(matches!(
            &got[1],
            ServerMessage::Message {
                offset: Some(2),
                ..
            }
        ));
        assert!(matches!(
            &got[2],
            ServerMessage::Presence { change: PresenceChange::Snapshot(m), .. } if m == &["alice", "bob"]
        ));
        assert_eq!(got.len(), 3);
        assert!(matches!(
            qa.drain_messages().as_slice(),
            [ServerMessage::Presence { change: PresenceChange::Join(m), .. }] if m == "bob"
        ));
    }

    #[tokio::test]
    async fn idle_channels_are_dropped_but_channels_with_history_are_kept() {
        let (hub, _run) = hub(Duration::ZERO);
        let (a, _qa) = Peer::new(1, 100, 0);
        hub.subscribe(&a, &member("alice"), "empty", None, None);
        hub.subscribe(&a, &member("alice"), "busy", None, None);
        hub.publish("busy", &member("alice"), "p1", json!(1), 0)
            .unwrap();
        hub.disconnect(1, ["empty", "busy"]);
        assert_eq!(hub.channel_count(), 1);
    }

    #[tokio::test]
    async fn a_duplicate_publish_is_not_delivered() {
        let (hub, _run) = hub(Duration::ZERO);
        let (a, mut qa) = Peer::new(1, 100, 0);
        hub.subscribe(&a, &member("alice"), "room", None, None);
        qa.drain_messages();
        let alice = member("alice");
        let first = hub.publish("room", &alice, "x", json!(1), 0);
        let again = hub.publish("room", &alice, "x", json!(1), 0);
        assert_eq!(
            (first, again),
            (Ok(Published::New(1)), Ok(Published::Resent(1)))
        );
        assert_eq!(qa.drain_messages().len(), 1);
    }

    #[tokio::test]
    async fn another_clients_id_and_a_reused_id_are_told_apart() {
        let (hub, _run) = hub(Duration::ZERO);
        let (a, mut qa) = Peer::new(1, 100, 0);
        hub.subscribe(&a, &member("alice"), "room", None, None);
        qa.drain_messages();
        let (alice, mallory) = (member("alice"), member("mallory"));
        let new = |offset| Ok(Published::New(offset));
        assert_eq!(hub.publish("room", &mallory, "a-8", json!("x"), 0), new(1));
        assert_eq!(hub.publish("room", &alice, "a-8", json!("hi"), 0), new(2));
        assert!(hub.holds(Some("room"), &alice, "a-8"));
        assert!(!hub.holds(Some("room"), &alice, "a-9"));
        assert!(!hub.holds(Some("hall"), &alice, "a-8"));
        assert_eq!(
            hub.publish("room", &alice, "a-8", json!("other"), 0),
            Err(IdReused { offset: 2 })
        );
        assert_eq!(
            qa.drain_messages().len(),
            2,
            "both first publishes, nothing else"
        );
    }

    // A connection of a client instance drops: its grace period is kept for the instance's
    // next connection, whose resubscribe ends it, so a close on purpose then leaves at once.
    // Kept no longer than the grace period itself if nobody comes back.
    #[tokio::test]
    async fn a_dropped_instance_connections_grace_period_ends_at_its_return_or_its_end() {
        let (hub, _run) = hub(Duration::from_millis(100));
        let alice = member("alice");
        let instance: Instance = (alice.clone(), "i1".into());
        let (w, mut qw) = Peer::new(1, 100, 0);
        hub.subscribe(&w, &member("watcher"), "room", None, None);
        let (a1, _q1) = Peer::new(2, 100, 0);
        assert_eq!(hub.connect_instance(&instance, &a1), Connected::Current);
        hub.subscribe(&a1, &alice, "room", None, None);
        hub.instance_channel(&instance, 2, "room", true);
        hub.end_instance_connection(&instance, 2, ["room"], false);
        assert_eq!(hub.departed_count(), 1);
        // Back: the resubscribe is a known return, so a close on purpose leaves at once.
        let (a2, _q2) = Peer::new(3, 100, 0);
        assert_eq!(hub.connect_instance(&instance, &a2), Connected::Current);
        assert_eq!(hub.departed_count(), 0);
        hub.subscribe(&a2, &alice, "room", None, None);
        hub.instance_channel(&instance, 3, "room", true);
        qw.drain_messages();
        hub.end_instance_connection(&instance, 3, ["room"], true);
        assert!(matches!(
            qw.drain_messages().as_slice(),
            [ServerMessage::Presence { change: PresenceChange::Leave(m), .. }] if m == "alice"
        ));
        // A drop nobody returns from: kept only until its grace period ends.
        let (a3, _q3) = Peer::new(4, 100, 0);
        hub.connect_instance(&instance, &a3);
        hub.subscribe(&a3, &alice, "room", None, None);
        hub.instance_channel(&instance, 4, "room", true);
        hub.end_instance_connection(&instance, 4, ["room"], false);
        assert_eq!(hub.departed_count(), 1);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(hub.departed_count(), 0);
        assert!(qw
            .drain_messages()
            .iter()
            .any(|m| matches!(m, ServerMessage::Presence { change: PresenceChange::Leave(m), .. } if m == "alice")));
    }

    /// Waits (bounded) until `qw` has been sent `alice`'s leave from `channel`.
    async fn until_alice_leaves(qw: &mut crate::peer::PeerQueue, channel: &str) {
        for _ in 0..500 {
            let left = qw.drain_messages().iter().any(|m| {
                matches!(m, ServerMessage::Presence { channel: c, change: PresenceChange::Leave(m) }
                    if c == channel && m == "alice")
            });
            if left {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("alice never left {channel}");
    }

    /// A watcher (peer 1, whose queue is returned) in "room" and "hall"; alice's instance
    /// "i1" subscribed to both on peer 2, which dropped; back on peer 3, resubscribed to
    /// "room" only (so "hall"'s grace period is still running).
    fn back_in_room_only(
        grace: Duration,
    ) -> (
        Arc<Hub>,
        watch::Sender<RunState>,
        crate::peer::PeerQueue,
        Instance,
    ) {
        let (hub, run) = hub(grace);
        let alice = member("alice");
        let instance: Instance = (alice.clone(), "i1".into());
        let (w, qw) = Peer::new(1, 100, 0);
        hub.subscribe(&w, &member("watcher"), "room", None, None);
        hub.subscribe(&w, &member("watcher"), "hall", None, None);
        let (a1, _q1) = Peer::new(2, 100, 0);
        hub.connect_instance(&instance, &a1);
        for name in ["room", "hall"] {
            hub.subscribe(&a1, &alice, name, None, None);
            hub.instance_channel(&instance, 2, name, true);
        }
        hub.end_instance_connection(&instance, 2, ["room", "hall"], false);
        let (a2, _q2) = Peer::new(3, 100, 0);
        hub.connect_instance(&instance, &a2);
        hub.subscribe(&a2, &alice, "room", None, None);
        hub.instance_channel(&instance, 3, "room", true);
        (hub, run, qw, instance)
    }

    // The instance's next connection takes over a grace period it then does not end (it
    // does not resubscribe there), and the grace period ends while that connection holds it.
    // When that connection drops in turn, what it passes on must not include the ended grace
    // period: no timer is left to forget it, so it would be kept for good.
    #[tokio::test]
    async fn a_grace_period_that_ends_while_a_return_holds_it_is_not_kept() {
        // Back, but only in "room": "hall"'s grace period runs out while it is connected.
        let (hub, _run, mut qw, instance) = back_in_room_only(Duration::from_millis(50));
        until_alice_leaves(&mut qw, "hall").await;
        // It drops too, and nobody comes back.
        hub.end_instance_connection(&instance, 3, ["room"], false);
        until_alice_leaves(&mut qw, "room").await;
        let mut kept = hub.departed_count();
        for _ in 0..500 {
            if kept == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            kept = hub.departed_count();
        }
        assert_eq!(kept, 0, "every grace period ended: nothing is kept");
    }

    // A client back from a dropped connection resubscribes to fewer channels than it had,
    // then closes on purpose: it is not coming back, so it leaves the channels it did not
    // resubscribe to at once too, not when their grace periods end.
    #[tokio::test]
    async fn a_returning_client_that_closes_leaves_the_channels_it_did_not_resubscribe_to() {
        let (hub, _run, mut qw, instance) = back_in_room_only(Duration::from_secs(3600));
        qw.drain_messages();
        hub.end_instance_connection(&instance, 3, ["room"], true);
        let mut left: Vec<String> = qw
            .drain_messages()
            .into_iter()
            .filter_map(|m| match m {
                ServerMessage::Presence {
                    channel,
                    change: PresenceChange::Leave(m),
                } if m == "alice" => Some(channel),
                _ => None,
            })
            .collect();
        left.sort();
        assert_eq!(left, ["hall", "room"], "alice left both at once");
        assert_eq!(
            hub.departed_count(),
            0,
            "nothing kept for a next connection"
        );
    }
    // An SSE stream is resumed as a `subscribe` with the same position would be: a resume
    // past what the channel kept says so (`recovered: false`), where it used to replay what
    // was kept after a silent gap.
    #[tokio::test]
    async fn an_sse_stream_says_whether_its_resume_is_the_whole_gap() {
        let (tx, rx) = watch::channel(RunState::Running);
        let config = RelayConfig {
            history_capacity: 3,
            ..RelayConfig::default()
        };
        let hub = Arc::new(Hub::new(
            Arc::new(config),
            "e1".into(),
            Arc::new(Stats::default()),
            rx,
        ));
        let alice = member("alice");
        for n in 1..=10 {
            hub.publish("room", &alice, &format!("p{n}"), json!(n), 0)
                .unwrap();
        }
        let follow = |id: Option<&str>| {
            let (peer, mut queue) = Peer::new(2, 100, 0);
            let start = hub.follow(&peer, "room", id);
            let replayed: Vec<u64> = queue
                .drain_messages()
                .iter()
                .filter_map(|m| match m {
                    ServerMessage::Message { offset, .. } => *offset,
                    _ => None,
                })
                .collect();
            hub.disconnect(2, ["room"]);
            (start.offset, start.recovered, replayed)
        };
        assert_eq!(follow(Some("e1-8")), (8, true, vec![9, 10]));
        assert_eq!(
            follow(Some("e1-1")),
            (7, false, vec![8, 9, 10]),
            "2..=7 trimmed"
        );
        assert_eq!(
            follow(Some("e0-9")),
            (7, false, vec![8, 9, 10]),
            "another run's"
        );
        assert_eq!(follow(Some("garbage")), (7, false, vec![8, 9, 10]));
        assert_eq!(follow(None), (10, false, vec![]), "a new stream: live only");
        drop(tx);
    }
}
