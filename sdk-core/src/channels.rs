//! Channel subscriptions (Tether mode): which channels to (re)subscribe on every open, the
//! last offset seen on each (so the server can replay what was missed and duplicates can be
//! dropped), and each channel's presence set.
//!
//! Offsets: `subscribed.offset` is where the server's stream for this subscriber starts. A fresh
//! subscription adopts it (the head), so even a client that has received nothing yet resumes
//! from the right place after a reconnect. A message with an offset that comes before the
//! connection's first `subscribed` for its channel is outside that stream and is not
//! delivered (see [`Admission::Early`]). On a resume (`recovered: true`) the server replays
//! the missed messages after `subscribed`, and any message at or below the last seen offset is
//! a duplicate and is dropped. When the server could not recover (`recovered: false`: history
//! trimmed, or a new epoch after a server restart) the client adopts the server's starting
//! point, the retained history is replayed, and the app is told there may be a gap; in the
//! same named epoch a starting point below the last seen offset is not adopted (what it
//! replays up to that offset the app has). A
//! `recovered: true` in another epoch than the one resumed is no recovery (its offsets are
//! another history's) and is taken as `false`. Only the answer to a subscribe in flight moves
//! the position: another `subscribed` (stale, or forged) is ignored (see
//! [`Channels::on_subscribed`]).
//!
//! Gaps: offsets go 1, 2, 3… within an epoch and every subscriber gets every message, so a
//! message past the next offset means some went missing. It is not delivered (nor taken as
//! the position: one huge offset would make every later message a duplicate); the channel is
//! subscribed again from the last delivered offset, once until that subscribe is answered,
//! and the replay brings the missed messages and the held-back ones in order.
//!
//! Unsubscribing: the subscription ends for the app when it asks, but the server ends it only
//! when it reads the `unsubscribe`, and answers with `unsubscribed`. Until that answer comes,
//! the channel is *leaving*: messages the server sent before it read the unsubscribe are
//! dropped (the app was told `Unsubscribed`), and the answer is recognised as ours, so it
//! neither reports a second `Unsubscribed` nor ends a subscription the app made again since;
//! a `subscribed` that comes meanwhile answers the ended subscription, not a new one.
//! A message on a channel the app is not subscribed to at all is unexpected: reported once
//! per channel and connection (see [`Channels::first_unexpected`]), then only counted.

use crate::event::Event;
use crate::protocol::{ClientMessage, PresenceChange};
use crate::sorted::{SortedMap, SortedSet};

/// Longest channel name accepted, in bytes.
pub const MAX_CHANNEL_LEN: usize = 256;

/// Why `channel` is not a usable channel name, if it is not: it must be 1 to
/// [`MAX_CHANNEL_LEN`] bytes without control characters (docs/protocol.md). The engine checks
/// every channel with this before sending it, and the reference relay checks what it receives
/// with it, so neither accepts a name the other refuses.
///
/// ```
/// assert!(tether_core::validate_channel("room:1").is_ok());
/// assert!(tether_core::validate_channel("").is_err());
/// assert!(tether_core::validate_channel("a\tb").is_err());
/// ```
pub fn validate_channel(channel: &str) -> Result<(), String> {
    check_name(channel, MAX_CHANNEL_LEN)
}

/// The rule channel names and client ids share (both travel in JSON and in URLs, and end up
/// in logs and UIs): 1 to `max` bytes, no control characters. Says what is wrong.
pub(crate) fn check_name(name: &str, max: usize) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty".to_owned());
    }
    if name.len() > max {
        return Err(format!("{} bytes, at most {max} allowed", name.len()));
    }
    if name.chars().any(char::is_control) {
        return Err("contains control characters".to_owned());
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Subscription {
    last_offset: Option<u64>,
    epoch: Option<String>,
    /// A subscribe was sent on this connection and its `subscribed` has not come yet: a gap
    /// seen meanwhile asks for no other, as the answer's replay covers it.
    answer_due: bool,
    /// A `subscribed` came on this connection: the server's stream for this subscription has
    /// started, and the position is one its messages can be checked against.
    started: bool,
    members: SortedSet<String>,
}

impl Subscription {
    /// The subscribe that resumes this subscription after its last delivered offset, in its
    /// epoch; the caller sends it, so its answer is due.
    fn resume(&mut self, channel: &str) -> ClientMessage {
        self.answer_due = true;
        ClientMessage::Subscribe {
            channel: channel.to_owned(),
            since: self.last_offset,
            epoch: self.epoch.clone(),
        }
    }
}

/// Unanswered unsubscribes remembered at most (see [`Channels::unsubscribe_sent`]).
const MAX_LEAVING: usize = 256;

/// Channels whose unexpected messages were reported, remembered at most per connection (see
/// [`Channels::first_unexpected`]).
const MAX_REPORTED: usize = 256;

#[derive(Debug, Default)]
pub(crate) struct Channels {
    subs: SortedMap<String, Subscription>,
    /// Each channel with unsubscribes sent on this connection that the server has not
    /// answered yet (see the module docs), and how many; emptied when a connection opens.
    /// Short: a channel is in it only until its answers come back; oldest first, at most
    /// [`MAX_LEAVING`] besides channels subscribed again.
    leaving: Vec<(String, usize)>,
    /// The channels whose unexpected messages were reported on this connection, at most
    /// [`MAX_REPORTED`]; emptied when a connection opens. Empty unless the server misbehaves.
    reported: Vec<String>,
}

/// What to do with an inbound channel message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    Deliver,
    Duplicate,
    /// Sent before the server read the app's unsubscribe: the app does not want it.
    Unsubscribed,
    /// On a channel the app is not subscribed to (the server answered its unsubscribe, or it
    /// never asked): not wanted either, and a frame the server should not have sent.
    NotSubscribed,
    /// On a subscribed channel, but before the answer to its subscribe on this connection:
    /// also a frame the server should not have sent (the messages follow the `subscribed`
    /// that says where they start), and one that cannot be placed. A fresh subscription has
    /// no position to check it against, and after a reconnect the position is the old
    /// connection's, maybe in an epoch the server no longer has: taken as it came, it was
    /// delivered ahead of the messages before it, which then came again with it. Not
    /// delivered. One at or below the answer's offset is then lost to the app (the answer
    /// says the stream starts after it); one above it is brought back by the resubscribe once
    /// a later message shows the gap. docs/protocol.md makes it a rule for servers.
    Early,
    /// At `offset`, past a gap after `last`: held back for the replay of a resubscribe, which
    /// is to be sent if `resubscribe` (none is awaiting its answer yet).
    Gap {
        last: u64,
        offset: u64,
        resubscribe: bool,
    },
}

impl Channels {
    /// Adds a subscription; false if it already existed.
    pub(crate) fn add(&mut self, channel: &str) -> bool {
        if self.subs.contains_key(channel) {
            return false;
        }
        self.subs
            .insert(channel.to_owned(), Subscription::default());
        true
    }

    /// Removes a subscription; false if there was none.
    pub(crate) fn remove(&mut self, channel: &str) -> bool {
        self.subs.remove(channel).is_some()
    }

    /// An unsubscribe for `channel` was sent on this connection (or the app unsubscribed while
    /// it closes, when none can be written): until its `unsubscribed` answer, or the end of
    /// the connection, what the server sends on the channel belongs to the ended subscription.
    ///
    /// A server that never answers would grow the list with every channel unsubscribed on the
    /// connection, so past [`MAX_LEAVING`] the oldest not subscribed again is forgotten: at
    /// worst its late messages are reported as unexpected. One subscribed again is kept (as
    /// many as the app has subscriptions): its late answer would end the new subscription.
    pub(crate) fn unsubscribe_sent(&mut self, channel: &str) {
        if let Some(entry) = self.leaving.iter_mut().find(|(c, _)| c == channel) {
            entry.1 += 1;
            return;
        }
        if self.leaving.len() >= MAX_LEAVING {
            let subs = &self.subs;
            if let Some(i) = self.leaving.iter().position(|(c, _)| !subs.contains_key(c)) {
                self.leaving.remove(i);
            }
        }
        self.leaving.push((channel.to_owned(), 1));
    }

    /// The server said `unsubscribed`: the answer to one of our unsubscribes, or the server
    /// ending the subscription itself. True if that ended a subscription the app has (the
    /// app must be told); an answer to ours ends only the leaving.
    pub(crate) fn on_unsubscribed(&mut self, channel: &str) -> bool {
        match self.leaving.iter().position(|(c, _)| c == channel) {
            Some(i) => {
                self.leaving[i].1 -= 1;
                if self.leaving[i].1 == 0 {
                    self.leaving.remove(i);
                }
                false
            }
            None => self.remove(channel),
        }
    }

    /// A connection opened: unsubscribes sent on an earlier one will not be answered, and
    /// what the server does wrong on it is news again.
    pub(crate) fn connection_opened(&mut self) {
        self.leaving.clear();
        self.reported.clear();
    }

    /// An unexpected message arrived on `channel` ([`Admission::NotSubscribed`] or
    /// [`Admission::Early`]): whether it is the first on the channel on this connection, to be
    /// reported. A server that keeps streaming a channel would otherwise raise an error per
    /// message; one report says it all, and the rest are counted. The two kinds share the
    /// list: after one report of either, a channel's later unexpected messages of the other
    /// kind on that connection are only counted.
    ///
    /// A server could use a new name for every message, so at most [`MAX_REPORTED`] channels
    /// are remembered, and past that none is reported any more: forgetting the oldest to make
    /// room would report the flood again, one per name, and 256 reports on one connection
    /// have told the app all it can do something about (`Stats::unexpected_dropped` keeps
    /// counting).
    pub(crate) fn first_unexpected(&mut self, channel: &str) -> bool {
        if self.reported.len() >= MAX_REPORTED || self.reported.iter().any(|c| c == channel) {
            return false;
        }
        self.reported.push(channel.to_owned());
        true
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.subs.keys().map(String::as_str)
    }

    /// The subscribe for `channel`, resuming after its last delivered offset (none if the app
    /// is not subscribed); the caller sends it, so its answer is due.
    pub(crate) fn subscribe_message(&mut self, channel: &str) -> Option<ClientMessage> {
        self.subs.get_mut(channel).map(|sub| sub.resume(channel))
    }

    /// Subscribe messages for every channel, in name order (sent on every open: no stream
    /// has started on the new connection).
    pub(crate) fn resubscribe_all(&mut self) -> Vec<ClientMessage> {
        self.subs
            .iter_mut()
            .map(|(channel, sub)| {
                sub.started = false;
                sub.resume(channel)
            })
            .collect()
    }

    /// The last offset seen on `channel`.
    pub(crate) fn last_offset(&self, channel: &str) -> Option<u64> {
        self.subs.get(channel).and_then(|s| s.last_offset)
    }

    /// The server confirmed a subscription. Unless it resumes from our offset (`recovered`),
    /// adopt its starting point: after a server restart (new epoch) offsets start over, so the
    /// old offset must not be kept or every new message would look like a duplicate. Returns
    /// whether it is a recovery: of a position we have, in the epoch we resumed, whatever the
    /// server says (a `recovered: true` from another epoch resumed nothing of ours).
    ///
    /// Only the answer to a subscribe in flight places the subscription; any other is
    /// ignored (`None`). One for a subscription answered already (stale, or forged) would
    /// move its position: back, and the next message looks like a gap whose resubscribe
    /// replays what the app has; forward, and the messages up to it are dropped as
    /// duplicates; either way the next resume starts from the wrong place. One that comes
    /// while an unsubscribe of the channel is unanswered answers a subscribe sent before
    /// that unsubscribe: the ended subscription's, not a new one's (the server answers in
    /// order, so a new one's answer follows the `unsubscribed`).
    pub(crate) fn on_subscribed(
        &mut self,
        channel: &str,
        start: u64,
        epoch: Option<String>,
        recovered: bool,
    ) -> Option<bool> {
        if self.leaving.iter().any(|(c, _)| c == channel) {
            return None;
        }
        let sub = self.subs.get_mut(channel).filter(|sub| sub.answer_due)?;
        let same_epoch = sub.last_offset.is_some() && sub.epoch == epoch;
        let recovered = recovered && same_epoch;
        if !recovered {
            // In the same named epoch, offsets name the same messages: a start below ours
            // replays what the app has (a server that does not resume), and those are
            // duplicates. Without an epoch, a start below ours may be a restarted server's.
            sub.last_offset = match sub.last_offset {
                Some(last) if same_epoch && epoch.is_some() => Some(start.max(last)),
                _ => Some(start),
            };
        }
        sub.epoch = epoch;
        sub.answer_due = false;
        sub.started = true;
        Some(recovered)
    }

    /// Dedupe by offset: a message at or below the last seen offset was delivered already.
    /// One on a channel the app is not subscribed to (any more) is not wanted, nor one before
    /// the connection's first `subscribed` for the channel ([`Admission::Early`]).
    pub(crate) fn admit(&mut self, channel: &str, offset: Option<u64>) -> Admission {
        if self.leaving.iter().any(|(c, _)| c == channel) {
            return Admission::Unsubscribed;
        }
        let Some(sub) = self.subs.get_mut(channel) else {
            return Admission::NotSubscribed;
        };
        // Without an offset there is nothing to check, and nothing a resubscribe could bring
        // back: delivered as it comes, whenever it comes.
        let Some(offset) = offset else {
            return Admission::Deliver;
        };
        if !sub.started {
            return Admission::Early;
        }
        match sub.last_offset {
            Some(last) if offset <= last => Admission::Duplicate,
            // Not `last + 1`: some went missing (no overflow: `offset` is above `last`).
            Some(last) if offset - last > 1 => Admission::Gap {
                last,
                offset,
                resubscribe: !sub.answer_due,
            },
            _ => {
                sub.last_offset = Some(offset);
                Admission::Deliver
            }
        }
    }

    /// The current members of `channel`, if subscribed.
    pub(crate) fn members(&self, channel: &str) -> Option<&[String]> {
        self.subs.get(channel).map(|s| s.members.as_slice())
    }

    /// Empties every channel's member set (the engine closed: it can no longer know who is
    /// there); one `Presence` event per channel that had members, all of them `left`.
    pub(crate) fn forget_presence(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        for (channel, sub) in self.subs.iter_mut() {
            if sub.members.as_slice().is_empty() {
                continue;
            }
            let left = sub.members.as_slice().to_vec();
            sub.members.clear();
            events.push(Event::Presence {
                channel: channel.clone(),
                members: Vec::new(),
                joined: Vec::new(),
                left,
            });
        }
        events
    }

    /// Applies a presence update; returns the event to emit if anything changed.
    pub(crate) fn apply_presence(
        &mut self,
        channel: &str,
        change: PresenceChange,
    ) -> Option<Event> {
        // While the app's unsubscribe is unanswered, what the server sends for the channel is
        // about the subscription that ended (as in `admit`), even if the app subscribed again:
        // the new one's snapshot follows its `subscribed`.
        if self.leaving.iter().any(|(c, _)| c == channel) {
            return None;
        }
        let sub = self.subs.get_mut(channel)?;
        let (joined, left) = match change {
            PresenceChange::Snapshot(list) => {
                let next: SortedSet<String> = list.into_iter().collect();
                let joined = difference(&next, &sub.members);
                let left = difference(&sub.members, &next);
                sub.members = next;
                (joined, left)
            }
            PresenceChange::Join(member) => {
                if sub.members.insert(member.clone()) {
                    (vec![member], Vec::new())
                } else {
                    return None;
                }
            }
            PresenceChange::Leave(member) => {
                if sub.members.remove(&member) {
                    (Vec::new(), vec![member])
                } else {
                    return None;
                }
            }
        };
        if joined.is_empty() && left.is_empty() {
            return None;
        }
        Some(Event::Presence {
            channel: channel.to_owned(),
            members: sub.members.iter().cloned().collect(),
            joined,
            left,
        })
    }
}

/// The members of `a` that are not in `b`, in order.
fn difference(a: &SortedSet<String>, b: &SortedSet<String>) -> Vec<String> {
    a.iter().filter(|m| !b.contains(m)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_and_client_ids_follow_one_rule_with_their_own_limits() {
        let long_channel = "c".repeat(MAX_CHANNEL_LEN + 1);
        let long_id = "i".repeat(crate::MAX_CLIENT_ID_LEN + 1);
        assert_eq!(validate_channel(""), Err("empty".to_owned()));
        assert_eq!(crate::validate_client_id(""), Err("empty".to_owned()));
        assert_eq!(
            validate_channel(&long_channel),
            Err("257 bytes, at most 256 allowed".to_owned())
        );
        assert_eq!(
            crate::validate_client_id(&long_id),
            Err("129 bytes, at most 128 allowed".to_owned())
        );
        assert!(crate::validate_client_id(&long_id[1..]).is_ok());
        for bad in ["a\u{0}b", "a\nb", "\u{7f}"] {
            assert_eq!(
                validate_channel(bad),
                Err("contains control characters".to_owned())
            );
            assert!(crate::validate_client_id(bad).is_err());
        }
    }

    /// The subscribe for `channel` is sent and answered; whether that is a recovery.
    fn answered(
        c: &mut Channels,
        channel: &str,
        start: u64,
        epoch: Option<&str>,
        recovered: bool,
    ) -> bool {
        assert!(c.subscribe_message(channel).is_some());
        let epoch = epoch.map(str::to_owned);
        c.on_subscribed(channel, start, epoch, recovered).unwrap()
    }

    #[test]
    fn fresh_subscription_adopts_head_then_dedupes() {
        let mut c = Channels::default();
        c.add("room");
        answered(&mut c, "room", 5, Some("e1"), false);
        assert_eq!(c.admit("room", Some(5)), Admission::Duplicate);
        assert_eq!(c.admit("room", Some(6)), Admission::Deliver);
        assert_eq!(c.admit("room", Some(6)), Admission::Duplicate);
        // Answered already: another `subscribed` is asked for by nothing, and moves nothing.
        assert_eq!(c.on_subscribed("room", 1, Some("e1".into()), false), None);
        assert_eq!(c.on_subscribed("room", 9, Some("e1".into()), false), None);
        assert_eq!(c.on_subscribed("other", 9, Some("e1".into()), false), None);
        assert_eq!(c.last_offset("room"), Some(6));
        assert_eq!(
            c.subscribe_message("room").unwrap(),
            ClientMessage::Subscribe {
                channel: "room".into(),
                since: Some(6),
                epoch: Some("e1".into()),
            }
        );
    }

    #[test]
    fn recovered_resume_keeps_offset_so_replay_is_delivered() {
        let mut c = Channels::default();
        c.add("room");
        answered(&mut c, "room", 3, None, false);
        assert!(answered(&mut c, "room", 9, None, true));
        assert_eq!(c.admit("room", Some(4)), Admission::Deliver);
        answered(&mut c, "room", 20, None, false);
        assert_eq!(c.last_offset("room"), Some(20));
        // A restarted server (new epoch) starts over at a lower head: adopt it, even if it
        // claims to have recovered (from another epoch, it recovered nothing of ours).
        assert!(!answered(&mut c, "room", 0, Some("e2"), true));
        assert_eq!(c.admit("room", Some(1)), Admission::Deliver);
    }

    #[test]
    fn an_unrecovered_start_below_the_position_is_adopted_only_without_a_shared_epoch() {
        let mut c = Channels::default();
        c.add("room");
        answered(&mut c, "room", 8, Some("e1"), false);
        // The same epoch: offsets up to 8 are messages the app has.
        assert!(!answered(&mut c, "room", 2, Some("e1"), false));
        assert_eq!(c.admit("room", Some(5)), Admission::Duplicate);
        assert_eq!(c.admit("room", Some(9)), Admission::Deliver);
        // No epoch named: a lower start may be a restarted server's new history.
        c.add("bare");
        answered(&mut c, "bare", 8, None, false);
        assert!(!answered(&mut c, "bare", 2, None, false));
        assert_eq!(c.admit("bare", Some(3)), Admission::Deliver);
    }

    #[test]
    fn a_leaving_channel_drops_messages_until_the_server_answers_each_unsubscribe() {
        let mut c = Channels::default();
        c.add("room");
        answered(&mut c, "room", 1, None, false);
        // Unsubscribe, subscribe again, unsubscribe again: two answers due.
        for _ in 0..2 {
            assert!(c.remove("room"));
            c.unsubscribe_sent("room");
            c.add("room");
        }
        assert_eq!(c.admit("room", Some(2)), Admission::Unsubscribed);
        assert!(!c.on_unsubscribed("room"), "the answer to ours");
        assert_eq!(c.admit("room", Some(3)), Admission::Unsubscribed);
        assert!(!c.on_unsubscribed("room"));
        assert!(c.subs.contains_key("room"), "the newer subscription stands");
        assert_eq!(
            c.admit("room", Some(4)),
            Admission::Early,
            "not answered yet"
        );
        answered(&mut c, "room", 3, None, false);
        assert_eq!(c.admit("room", Some(4)), Admission::Deliver);
        // The server ending the subscription itself is news for the app.
        assert!(c.on_unsubscribed("room"));
        assert!(!c.subs.contains_key("room"));
        assert!(!c.on_unsubscribed("room"));
    }

    #[test]
    fn a_subscribed_answer_does_not_end_a_later_unsubscribe_and_a_new_connection_ends_all() {
        // subscribe, unsubscribe, subscribe before the first answer (React StrictMode's
        // double effect): the first `subscribed` must not take the unsubscribe sent after it
        // for answered, or its `unsubscribed` would end the app's subscription.
        // Nor does it place the new subscription: it answers the ended one.
        let mut c = Channels::default();
        c.add("room");
        assert!(c.subscribe_message("room").is_some());
        c.remove("room");
        c.unsubscribe_sent("room");
        c.add("room");
        assert!(c.subscribe_message("room").is_some());
        assert_eq!(c.on_subscribed("room", 7, None, false), None);
        assert_eq!(c.admit("room", Some(8)), Admission::Unsubscribed);
        assert!(!c.on_unsubscribed("room"), "the answer to ours");
        assert!(c.subs.contains_key("room"));
        assert_eq!(c.admit("room", Some(9)), Admission::Early);
        assert_eq!(c.on_subscribed("room", 8, None, false), Some(false));
        assert_eq!(c.admit("room", Some(9)), Admission::Deliver);
        c.unsubscribe_sent("room");
        c.connection_opened();
        assert_eq!(c.admit("room", Some(10)), Admission::Deliver);
    }

    #[test]
    fn a_server_that_never_answers_unsubscribes_is_remembered_for_the_latest_only() {
        let mut c = Channels::default();
        let name = |i: usize| format!("room:{i}");
        for i in 0..MAX_LEAVING * 4 {
            c.add(&name(i));
            c.remove(&name(i));
            c.unsubscribe_sent(&name(i));
        }
        assert_eq!(c.leaving.len(), MAX_LEAVING, "bounded");
        // The latest are still recognised: their messages dropped quietly, answers ours.
        let latest = name(MAX_LEAVING * 4 - 1);
        assert_eq!(c.admit(&latest, Some(1)), Admission::Unsubscribed);
        assert!(!c.on_unsubscribed(&latest));
        // The oldest was forgotten: its late answer ends nothing the app has.
        assert_eq!(c.admit(&name(0), Some(1)), Admission::NotSubscribed);
        assert!(!c.on_unsubscribed(&name(0)));
        // One subscribed again is never forgotten, however often it is unsubscribed.
        c.add("again");
        for _ in 0..MAX_LEAVING * 2 {
            c.remove("again");
            c.unsubscribe_sent("again");
            c.add("again");
        }
        for i in 0..MAX_LEAVING * 2 {
            c.unsubscribe_sent(&name(i));
        }
        assert_eq!(c.leaving.len(), MAX_LEAVING, "still bounded");
        for _ in 0..MAX_LEAVING * 2 {
            assert!(!c.on_unsubscribed("again"), "the answer to ours");
        }
        assert!(c.subs.contains_key("again"));
    }

    #[test]
    fn a_gap_asks_for_one_resubscribe_until_its_answer() {
        let mut c = Channels::default();
        c.add("room");
        answered(&mut c, "room", 1, Some("e1"), false);
        let gap = |resubscribe| Admission::Gap {
            last: 1,
            offset: 3,
            resubscribe,
        };
        assert_eq!(c.admit("room", Some(3)), gap(true));
        c.subscribe_message("room");
        assert_eq!(c.admit("room", Some(3)), gap(false), "answer due");
        assert_eq!(
            c.on_subscribed("room", 1, Some("e1".into()), true),
            Some(true)
        );
        assert_eq!(c.admit("room", Some(2)), Admission::Deliver);
        // A recovery claimed in another epoch is none: its offset is adopted.
        assert!(!answered(&mut c, "room", 0, Some("e2"), true));
        assert_eq!(c.last_offset("room"), Some(0));
        assert_eq!(
            c.admit("room", Some(u64::MAX)),
            Admission::Gap {
                last: 0,
                offset: u64::MAX,
                resubscribe: true,
            }
        );
    }

    #[test]
    fn snapshot_replaces_members_and_reports_ghosts() {
        let mut c = Channels::default();
        c.add("room");
        c.apply_presence(
            "room",
            PresenceChange::Snapshot(vec!["a".into(), "ghost".into()]),
        );
        let ev = c
            .apply_presence(
                "room",
                PresenceChange::Snapshot(vec!["a".into(), "b".into()]),
            )
            .unwrap();
        assert_eq!(
            ev,
            Event::Presence {
                channel: "room".into(),
                members: vec!["a".into(), "b".into()],
                joined: vec!["b".into()],
                left: vec!["ghost".into()],
            }
        );
        assert!(c
            .apply_presence("room", PresenceChange::Join("a".into()))
            .is_none());
        assert!(c
            .apply_presence("other", PresenceChange::Join("x".into()))
            .is_none());
    }
}
