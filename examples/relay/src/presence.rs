//! One channel's presence table: which members (client ids) are present, how many
//! subscriptions each holds, and which are inside their grace period. Pure data: the hub
//! runs the grace timers and broadcasts what this table decides.
//!
//! A member inside its grace period is still present (it is in snapshots, and nobody has
//! been told it left), so a return within the grace period changes nothing anyone can see.
//! Each grace period has a generation number, and a member keeps every one still pending (one
//! per dropped subscription), so that a timer is matched to its own drop. Generations come from
//! the hub, one counter for the whole relay: a table is dropped with its channel when idle and
//! recreated later, and a counter of its own would start again at the numbers that timers of
//! the old table still carry, which would then end the new table's grace periods early.

use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug)]
struct Member {
    /// Subscriptions to this channel held by this member's connections.
    subscriptions: usize,
    /// The generations of the grace periods still running, one per subscription whose
    /// connection dropped (several tabs may drop, together or not). While any runs the member
    /// does not leave, even if its last subscription ends on purpose meanwhile (another tab
    /// closing): it leaves when the last of them ends with no subscription left.
    ///
    /// An arrival does not end one: the relay cannot tell the dropped tab's return from
    /// another tab opening, and taking the latter for the former would let the member leave
    /// while the dropped tab may still come back (then a visible `join`). A returned tab is
    /// a subscription, which keeps the member present anyway; the cost is that a member
    /// whose every subscription then ends on purpose leaves when the grace period ends,
    /// not at once. Only a return known as one ([`Presence::returned`]: the next connection
    /// of the client instance whose connection dropped) ends one early.
    leaving: Vec<u64>,
}

/// What a subscription's end means for its member.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Departure {
    /// The member still has another subscription here, or a grace period running.
    Stays,
    /// The member is gone: broadcast `leave` now.
    Left,
    /// A grace period started (the member stays present meanwhile); call
    /// [`Presence::expire`] with this generation when it ends.
    Leaving(u64),
}

#[derive(Debug, Default)]
pub(crate) struct Presence {
    members: HashMap<Arc<str>, Member>,
}

impl Presence {
    /// Records a new subscription of `member`; true if the member was not present, so others
    /// should hear `join`. A member back within its grace period is not new.
    pub(crate) fn arrive(&mut self, member: &Arc<str>) -> bool {
        match self.members.get_mut(member) {
            Some(m) => {
                m.subscriptions += 1;
                false
            }
            None => {
                self.members.insert(
                    member.clone(),
                    Member {
                        subscriptions: 1,
                        leaving: Vec::new(),
                    },
                );
                true
            }
        }
    }

    /// Records the end of one of `member`'s subscriptions. With `grace` (the generation for
    /// it, never used before) the subscription's connection dropped and may come back: a
    /// grace period starts, alongside any running one, even while the member has other
    /// subscriptions (they may end on purpose before the dropped one is back). Without, the
    /// subscription ended on purpose: the last one leaves at once, unless a grace period is
    /// running, whose end then decides.
    pub(crate) fn depart(&mut self, member: &str, grace: Option<u64>) -> Departure {
        let Some(m) = self.members.get_mut(member) else {
            return Departure::Stays;
        };
        m.subscriptions = m.subscriptions.saturating_sub(1);
        if let Some(generation) = grace {
            m.leaving.push(generation);
            return Departure::Leaving(generation);
        }
        if m.subscriptions > 0 || !m.leaving.is_empty() {
            return Departure::Stays;
        }
        self.members.remove(member);
        Departure::Left
    }

    /// Ends the grace period `generation` of `member` without a `leave`: the connection whose
    /// drop started it is known to be back (a newer connection of its client instance, which
    /// has just subscribed here). Does nothing if it already ended.
    pub(crate) fn returned(&mut self, member: &str, generation: u64) {
        if let Some(m) = self.members.get_mut(member) {
            m.leaving.retain(|&g| g != generation);
        }
    }

    /// Ends the grace period `generation` of `member`; true if the member is now gone (so
    /// `leave` must be broadcast), false if it came back, still has another subscription or
    /// another grace period running, or the timer is stale.
    pub(crate) fn expire(&mut self, member: &str, generation: u64) -> bool {
        let Some(m) = self.members.get_mut(member) else {
            return false;
        };
        let Some(at) = m.leaving.iter().position(|&g| g == generation) else {
            return false;
        };
        m.leaving.swap_remove(at);
        if m.subscriptions > 0 || !m.leaving.is_empty() {
            return false;
        }
        self.members.remove(member);
        true
    }

    /// Every present member (including those in their grace period), sorted so snapshots
    /// are stable.
    pub(crate) fn snapshot(&self) -> Vec<String> {
        let mut members: Vec<String> = self.members.keys().map(|m| m.to_string()).collect();
        members.sort_unstable();
        members
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn first_arrival_joins_and_last_departure_leaves() {
        let mut p = Presence::default();
        assert!(p.arrive(&id("a")));
        assert!(!p.arrive(&id("a")), "second tab: already present");
        assert_eq!(p.depart("a", None), Departure::Stays);
        assert_eq!(p.depart("a", None), Departure::Left);
        assert!(p.is_empty());
    }

    #[test]
    fn a_return_within_grace_is_invisible() {
        let mut p = Presence::default();
        p.arrive(&id("a"));
        let Departure::Leaving(generation) = p.depart("a", Some(1)) else {
            panic!("expected a grace period");
        };
        assert_eq!(
            p.snapshot(),
            vec!["a".to_owned()],
            "still present while leaving"
        );
        assert!(!p.arrive(&id("a")), "no join for the return");
        assert!(
            !p.expire("a", generation),
            "the timer ends with the member back"
        );
        assert_eq!(p.snapshot(), vec!["a".to_owned()]);
    }

    #[test]
    fn grace_expiry_removes_the_member() {
        let mut p = Presence::default();
        p.arrive(&id("a"));
        p.arrive(&id("b"));
        let Departure::Leaving(generation) = p.depart("a", Some(2)) else {
            panic!("expected a grace period");
        };
        assert!(p.expire("a", generation));
        assert!(!p.expire("a", generation), "only once");
        assert_eq!(p.snapshot(), vec!["b".to_owned()]);
    }

    #[test]
    fn an_older_grace_period_cannot_end_a_newer_one() {
        let mut p = Presence::default();
        p.arrive(&id("a"));
        let Departure::Leaving(first) = p.depart("a", Some(3)) else {
            panic!("expected a grace period");
        };
        p.arrive(&id("a"));
        let Departure::Leaving(second) = p.depart("a", Some(4)) else {
            panic!("expected a grace period");
        };
        assert!(!p.expire("a", first));
        assert!(p.expire("a", second));
    }

    #[test]
    fn a_drop_while_another_tab_stays_still_starts_a_grace_period() {
        let mut p = Presence::default();
        p.arrive(&id("a"));
        p.arrive(&id("a"));
        // Tab 1 drops; tab 2 leaves on purpose before tab 1 is back: no leave yet.
        assert_eq!(p.depart("a", Some(5)), Departure::Leaving(5));
        assert_eq!(p.depart("a", None), Departure::Stays);
        assert_eq!(p.snapshot(), vec!["a".to_owned()]);
        // Tab 1 returns within the grace period: nothing anyone can see.
        assert!(!p.arrive(&id("a")));
        assert!(!p.expire("a", 5), "tab 1 is back");
        assert_eq!(p.depart("a", None), Departure::Left);
    }

    #[test]
    fn a_grace_period_that_ends_without_a_return_removes_the_member() {
        let mut p = Presence::default();
        p.arrive(&id("a"));
        p.arrive(&id("a"));
        assert_eq!(p.depart("a", Some(6)), Departure::Leaving(6));
        assert_eq!(p.depart("a", None), Departure::Stays);
        assert!(p.expire("a", 6));
        assert!(p.is_empty());
    }

    #[test]
    fn a_grace_period_ended_while_another_tab_stays_is_over() {
        let mut p = Presence::default();
        p.arrive(&id("a"));
        p.arrive(&id("a"));
        assert_eq!(p.depart("a", Some(7)), Departure::Leaving(7));
        assert!(!p.expire("a", 7), "tab 2 is still here");
        // The grace period is over: tab 2 leaving on purpose now leaves at once.
        assert_eq!(p.depart("a", None), Departure::Left);
    }

    #[test]
    fn unknown_members_are_ignored() {
        let mut p = Presence::default();
        assert_eq!(p.depart("ghost", Some(1)), Departure::Stays);
        assert!(!p.expire("ghost", 1));
    }

    // The arrival of *another* connection of the member must not end the grace period of a
    // dropped one that has not come back (or the member would leave at once when its other
    // connections leave on purpose, and the dropped tab's return would be a visible `join`).
    #[test]
    fn another_tabs_arrival_does_not_end_a_dropped_tabs_grace_period() {
        let mut p = Presence::default();
        p.arrive(&id("a")); // tab 1
        p.arrive(&id("a")); // tab 2
        assert_eq!(p.depart("a", Some(5)), Departure::Leaving(5)); // tab 1 drops
        assert!(!p.arrive(&id("a"))); // tab 3 opens
        assert_eq!(p.depart("a", None), Departure::Stays); // tab 3 closes
                                                           // Tab 2 closes on purpose while tab 1 (dropped) is still expected back.
        assert_eq!(
            p.depart("a", None),
            Departure::Stays,
            "tab 1 is still in grace"
        );
    }

    // The same with both tabs dropping together (one network): tab 2 comes back
    // first and then closes on purpose; tab 1 is still within its grace period.
    #[test]
    fn a_shared_drop_keeps_the_slower_tabs_grace_period() {
        let mut p = Presence::default();
        p.arrive(&id("a"));
        p.arrive(&id("a"));
        assert_eq!(p.depart("a", Some(5)), Departure::Leaving(5)); // tab 1 drops
        assert_eq!(p.depart("a", Some(6)), Departure::Leaving(6)); // tab 2 drops
        assert!(!p.arrive(&id("a"))); // tab 2 is back
        assert_eq!(
            p.depart("a", None),
            Departure::Stays,
            "tab 1 is still in grace"
        );
    }

    // With two grace periods pending, the member stays until the later one ends.
    #[test]
    fn the_member_stays_until_its_last_grace_period_ends() {
        let mut p = Presence::default();
        p.arrive(&id("a"));
        p.arrive(&id("a"));
        assert_eq!(p.depart("a", Some(8)), Departure::Leaving(8));
        assert_eq!(p.depart("a", Some(9)), Departure::Leaving(9));
        assert!(!p.expire("a", 8), "grace period 9 is still running");
        assert_eq!(p.snapshot(), vec!["a".to_owned()]);
        assert!(p.expire("a", 9));
        assert!(p.is_empty());
    }

    // A known return (the newer connection of the same client instance) ends its grace period:
    // the member then leaves at once when its last subscription ends on purpose.
    #[test]
    fn a_known_return_ends_its_grace_period() {
        let mut p = Presence::default();
        p.arrive(&id("a"));
        assert_eq!(p.depart("a", Some(10)), Departure::Leaving(10));
        assert!(!p.arrive(&id("a")));
        p.returned("a", 10);
        assert_eq!(p.depart("a", None), Departure::Left);
        assert!(!p.expire("a", 10));
    }
}
