//! Dead-connection detection for one open connection: when to ping, which pong is expected,
//! how many went missing, and the round-trip time.
//!
//! Pings go out every `interval`. At each tick, if the previous ping is still unanswered and
//! nothing else arrived since it was sent (no frame, and no bytes of one still arriving), it
//! counts as missed; `max_missed` misses in a row declare the connection dead. So a silent
//! black hole is detected at the latest
//! `interval × (max_missed + 1)` after the last sign of life. Optionally each ping also has a
//! hard `pong_timeout`. A *probe* (network change, back to foreground) sends a ping at once
//! with the short `probe_timeout`, so a socket that died while the device switched networks is
//! found in seconds rather than after a full heartbeat cycle.
//!
//! In server-driven mode nothing is sent; the server must show life at least once every
//! `interval × (max_missed + 1)`.

use crate::config::{HeartbeatConfig, HeartbeatMode};
use crate::time::{deadline_after, Instant};
use std::time::Duration;

/// What the heartbeat wants the engine to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Beat {
    /// Send ping number `seq` (frame or app message, per mode).
    SendPing { seq: u64 },
    /// The connection is dead.
    Dead,
}

#[derive(Debug, Clone, Copy)]
struct Outstanding {
    seq: u64,
    sent_at: Instant,
    /// When the oldest ping still unanswered went out: this ping's `sent_at`, or for a probe
    /// that replaced an unanswered ping, that ping's. The tick judges a miss from it, so a
    /// probe cannot hide the miss of the ping it replaced (and stretch the dead-link bound).
    unanswered_since: Instant,
    /// Whether any inbound traffic arrived since this ping was sent.
    answered_by_traffic: bool,
}

/// The most pong deadlines kept (see `Heartbeat::deadlines`).
const MAX_DEADLINES: usize = 16;

#[derive(Debug)]
pub(crate) struct Heartbeat {
    mode: HeartbeatMode,
    config: HeartbeatConfig,
    next_ping: Option<Instant>,
    outstanding: Option<Outstanding>,
    /// The hard deadlines (pong timeout or probe) of the pings not yet answered, by ping
    /// number, oldest first. Each belongs to its ping: a pong answers its ping and the
    /// earlier ones (pongs come back in order), so it ends their deadlines and leaves those
    /// of later pings standing. (A single deadline for all of them judged a probe by the
    /// deadline of a ping answered before it.) At most [`MAX_DEADLINES`]: with a pong timeout
    /// many intervals long and pings unanswered (a lax `max_missed`), the latest deadlines
    /// give way, as the earlier ones decide first.
    deadlines: Vec<(u64, Instant)>,
    /// Server-driven mode: the connection is dead if nothing arrives by then.
    silence_deadline: Option<Instant>,
    missed: u32,
    seq: u64,
    /// The latest ping number a pong answered: a pong naming it or an earlier one again
    /// answers nothing new.
    answered: u64,
}

impl Heartbeat {
    pub(crate) fn new(mode: HeartbeatMode, config: HeartbeatConfig) -> Self {
        Heartbeat {
            mode,
            config,
            next_ping: None,
            outstanding: None,
            deadlines: Vec::new(),
            silence_deadline: None,
            missed: 0,
            seq: 0,
            answered: 0,
        }
    }

    pub(crate) fn mode(&self) -> HeartbeatMode {
        self.mode
    }

    fn sends_pings(&self) -> bool {
        matches!(
            self.mode,
            HeartbeatMode::PingFrame | HeartbeatMode::AppMessage
        )
    }

    fn silence_limit(&self) -> Duration {
        self.config.silence_limit()
    }

    /// A connection opened: start the cycle.
    pub(crate) fn start(&mut self, now: Instant) {
        self.stop();
        if self.sends_pings() {
            self.next_ping = deadline_after(now, self.config.interval);
        } else if self.mode == HeartbeatMode::ServerDriven {
            self.silence_deadline = Some(now + self.silence_limit());
        }
    }

    /// The connection is gone: no timers.
    pub(crate) fn stop(&mut self) {
        self.next_ping = None;
        self.outstanding = None;
        self.deadlines.clear();
        self.silence_deadline = None;
        self.missed = 0;
    }

    /// The earliest moment the heartbeat needs a `tick`.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let pong_deadline = self.deadlines.iter().map(|(_, at)| *at).min();
        [self.next_ping, pong_deadline, self.silence_deadline]
            .into_iter()
            .flatten()
            .min()
    }

    /// Advances to `now`. At most one beat per call; call again while it returns `Some`.
    pub(crate) fn tick(&mut self, now: Instant) -> Option<Beat> {
        if self.silence_deadline.is_some_and(|at| at <= now) {
            return Some(Beat::Dead);
        }
        // Deadlines still here are those of pings nothing has answered (see `activity`).
        if self.deadlines.iter().any(|(_, at)| *at <= now) {
            return Some(Beat::Dead);
        }
        match self.next_ping {
            Some(at) if at <= now => {
                // A ping younger than an interval is a probe sent since the last tick: it
                // has its own deadline and has not had the time a regular ping gets, so it
                // is not a miss yet (with `max_missed` 1, counting it killed a healthy
                // connection whose network changed just before the tick). A probe that
                // replaced an unanswered ping is judged from that ping's time (`probe`).
                let due = self.outstanding.filter(|out| {
                    now.saturating_duration_since(out.unanswered_since) >= self.config.interval
                });
                if let Some(out) = due {
                    let alive = out.answered_by_traffic && self.config.any_frame_is_liveness;
                    self.missed = if alive { 0 } else { self.missed + 1 };
                    if self.missed >= self.config.max_missed {
                        return Some(Beat::Dead);
                    }
                }
                // At the clock's end no later ping: one due at once would be due for ever.
                self.next_ping = deadline_after(now, self.config.interval);
                let deadline = self.config.pong_timeout.map(|t| now + t);
                Some(self.send_ping(now, deadline, now))
            }
            _ => None,
        }
    }

    fn send_ping(
        &mut self,
        now: Instant,
        deadline: Option<Instant>,
        unanswered_since: Instant,
    ) -> Beat {
        self.seq += 1;
        self.outstanding = Some(Outstanding {
            seq: self.seq,
            sent_at: now,
            unanswered_since,
            answered_by_traffic: false,
        });
        // A pending probe deadline survives a regular ping: it was a promise to decide soon.
        if let Some(at) = deadline {
            self.deadlines.push((self.seq, at));
            if self.deadlines.len() > MAX_DEADLINES {
                let latest = (0..self.deadlines.len()).max_by_key(|&i| self.deadlines[i].1);
                if let Some(i) = latest {
                    self.deadlines.remove(i);
                }
            }
        }
        Beat::SendPing { seq: self.seq }
    }

    /// Check liveness now with a short deadline (network changed, back in foreground).
    /// Returns the ping to send, if this mode can solicit one.
    pub(crate) fn probe(&mut self, now: Instant) -> Option<Beat> {
        if !self.sends_pings() || self.next_ping.is_none() {
            return None;
        }
        let deadline = now + self.config.probe_timeout;
        // The ping the probe replaces is judged now: unanswered, its time keeps running for
        // the next tick; answered by traffic, that traffic proved the link alive, which the
        // tick can no longer see on the probe.
        let unanswered_since = match self.outstanding {
            Some(out) if out.answered_by_traffic && self.config.any_frame_is_liveness => {
                self.missed = 0;
                now
            }
            Some(out) => out.unanswered_since,
            None => now,
        };
        Some(self.send_ping(now, Some(deadline), unanswered_since))
    }

    /// A pong arrived. Returns the round-trip time when it answers the latest ping.
    pub(crate) fn pong(&mut self, now: Instant, seq: Option<u64>) -> Option<Duration> {
        // A number that names no ping awaited (none had it, or its ping was answered
        // already: a server that does not echo the ping's data) answers nothing; counted as
        // an answer, it would keep a connection whose pings go unanswered alive.
        if seq.is_some_and(|s| s > self.seq || s <= self.answered) {
            return None;
        }
        self.missed = 0;
        let out = self.outstanding?;
        if let Some(s) = seq.filter(|s| *s != out.seq) {
            // An answer to an older ping still proves the connection alive. It answers that
            // ping and the ones before it, not the later ones: their deadlines stand.
            self.deadlines.retain(|(ping, _)| *ping > s);
            self.answered = s;
            self.outstanding = Some(Outstanding {
                answered_by_traffic: true,
                ..out
            });
            return None;
        }
        self.outstanding = None;
        self.deadlines.clear();
        self.answered = out.seq;
        Some(now.saturating_duration_since(out.sent_at))
    }

    /// Any inbound traffic (a frame, a ping from the server, or bytes of a message still
    /// arriving: `Engine::bytes_received`).
    pub(crate) fn activity(&mut self, now: Instant) {
        if self.mode == HeartbeatMode::ServerDriven {
            self.silence_deadline = Some(now + self.silence_limit());
        }
        if let Some(out) = self.outstanding.as_mut() {
            out.answered_by_traffic = true;
        }
        // Every ping still awaited was sent before this: traffic answers them all.
        if self.config.any_frame_is_liveness {
            self.deadlines.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(max_missed: u32) -> Heartbeat {
        Heartbeat::new(
            HeartbeatMode::PingFrame,
            HeartbeatConfig {
                interval: Duration::from_secs(10),
                max_missed,
                ..HeartbeatConfig::default()
            },
        )
    }

    fn at(s: u64) -> Instant {
        Instant::from_millis(s * 1000)
    }

    #[test]
    fn black_hole_is_dead_after_interval_times_missed_plus_one() {
        let mut h = hb(2);
        h.start(at(0));
        assert_eq!(h.deadline(), Some(at(10)));
        assert_eq!(h.tick(at(10)), Some(Beat::SendPing { seq: 1 }));
        assert_eq!(h.tick(at(20)), Some(Beat::SendPing { seq: 2 }));
        assert_eq!(h.tick(at(30)), Some(Beat::Dead));
    }

    #[test]
    fn pongs_keep_it_alive_and_measure_rtt() {
        let mut h = hb(1);
        h.start(at(0));
        assert_eq!(h.tick(at(10)), Some(Beat::SendPing { seq: 1 }));
        let rtt = h.pong(at(10) + Duration::from_millis(30), Some(1));
        assert_eq!(rtt, Some(Duration::from_millis(30)));
        assert_eq!(h.tick(at(20)), Some(Beat::SendPing { seq: 2 }));
    }

    #[test]
    fn traffic_counts_as_liveness() {
        let mut h = hb(1);
        h.start(at(0));
        h.tick(at(10));
        h.activity(at(15));
        assert_eq!(h.tick(at(20)), Some(Beat::SendPing { seq: 2 }));
        assert_eq!(h.tick(at(30)), Some(Beat::Dead));
    }

    #[test]
    fn probe_has_a_short_deadline() {
        let mut h = hb(2);
        h.start(at(0));
        assert_eq!(h.probe(at(3)), Some(Beat::SendPing { seq: 1 }));
        assert_eq!(h.deadline(), Some(at(8)));
        assert_eq!(h.tick(at(8)), Some(Beat::Dead));
    }

    #[test]
    fn a_probe_just_before_the_tick_is_not_a_miss_but_keeps_its_deadline() {
        let mut h = hb(1);
        h.start(at(0));
        let just_before = at(10) - Duration::from_millis(5);
        assert_eq!(h.probe(just_before), Some(Beat::SendPing { seq: 1 }));
        assert_eq!(
            h.tick(at(10)),
            Some(Beat::SendPing { seq: 2 }),
            "5 ms is no time to answer"
        );
        // Answered (the probe's pong names the older ping): its deadline is over, and the
        // next one is the regular tick's.
        assert_eq!(h.pong(at(10) + Duration::from_millis(15), Some(1)), None);
        let probe_deadline = just_before + Duration::from_secs(5);
        assert_eq!(h.deadline(), Some(at(20)));
        assert_eq!(h.tick(probe_deadline), None);
        // Unanswered, the probe's own deadline still decides.
        let mut h = hb(1);
        h.start(at(0));
        h.probe(just_before);
        h.tick(at(10));
        assert_eq!(h.deadline(), Some(just_before + Duration::from_secs(5)));
        assert_eq!(
            h.tick(just_before + Duration::from_secs(5)),
            Some(Beat::Dead)
        );
    }

    #[test]
    fn a_probe_does_not_hide_the_miss_of_the_unanswered_ping_it_replaces() {
        // Pings at 10 and 20 s unanswered; a probe at 29 s. The tick at 30 s still judges
        // the ping of 20 s, a full interval old: dead at the bound, interval × (2 + 1), not
        // at the probe's own deadline (34 s).
        let mut h = hb(2);
        h.start(at(0));
        assert_eq!(h.tick(at(10)), Some(Beat::SendPing { seq: 1 }));
        assert_eq!(h.tick(at(20)), Some(Beat::SendPing { seq: 2 }));
        assert_eq!(h.probe(at(29)), Some(Beat::SendPing { seq: 3 }));
        assert_eq!(h.tick(at(30)), Some(Beat::Dead));
        // Traffic after the ping of 20 s answered it: the probe is then judged on its own.
        let mut h = hb(2);
        h.start(at(0));
        h.tick(at(10));
        h.tick(at(20));
        h.activity(at(21));
        h.probe(at(29));
        h.activity(at(29) + Duration::from_millis(500));
        assert_eq!(h.tick(at(30)), Some(Beat::SendPing { seq: 4 }));
        // And the traffic that answered the ping the probe replaced reset the count of
        // misses: one miss at 40 s (the ping of 30 s), not two. It was dead at 40 s, 10.5 s
        // after the last sign of life (the probe's answer), where the bound is 30 s.
        assert_eq!(h.tick(at(40)), Some(Beat::SendPing { seq: 5 }));
        assert_eq!(h.tick(at(50)), Some(Beat::Dead));
    }

    #[test]
    fn a_pong_ends_the_deadlines_of_its_ping_and_earlier_ones_not_of_later_ones() {
        let mut h = Heartbeat::new(
            HeartbeatMode::PingFrame,
            HeartbeatConfig {
                interval: Duration::from_secs(10),
                pong_timeout: Some(Duration::from_secs(3)),
                probe_timeout: Duration::from_secs(5),
                any_frame_is_liveness: false,
                ..HeartbeatConfig::default()
            },
        );
        h.start(at(0));
        assert_eq!(h.tick(at(10)), Some(Beat::SendPing { seq: 1 }));
        assert_eq!(h.probe(at(11)), Some(Beat::SendPing { seq: 2 }));
        assert_eq!(h.deadline(), Some(at(13)));
        assert_eq!(h.pong(at(11) + Duration::from_millis(100), Some(1)), None);
        assert_eq!(h.deadline(), Some(at(16)), "the probe's own");
        assert_eq!(h.tick(at(13)), None);
        // Unanswered, the probe's deadline decides; traffic does not count here.
        h.activity(at(15));
        assert_eq!(h.tick(at(16)), Some(Beat::Dead));
    }

    fn lax(pong_timeout: Duration, max_missed: u32) -> Heartbeat {
        Heartbeat::new(
            HeartbeatMode::PingFrame,
            HeartbeatConfig {
                interval: Duration::from_secs(1),
                pong_timeout: Some(pong_timeout),
                any_frame_is_liveness: false,
                max_missed,
                ..HeartbeatConfig::default()
            },
        )
    }

    // A pong timeout many intervals long with a lax `max_missed`: one deadline per unanswered
    // ping would pile up for as long as the connection lasts (and every tick scans them all).
    // The earliest are the ones that decide; they are kept.
    #[test]
    fn unanswered_pings_keep_a_bounded_number_of_deadlines_the_earliest() {
        let year = Duration::from_secs(365 * 24 * 3600);
        let mut h = lax(year, u32::MAX);
        h.start(at(0));
        for s in 1..=1000 {
            assert_eq!(h.tick(at(s)), Some(Beat::SendPing { seq: s }));
        }
        assert!(
            h.deadlines.len() <= MAX_DEADLINES,
            "{} deadlines",
            h.deadlines.len()
        );
        assert_eq!(h.deadline(), Some(at(1001)), "the next ping");
        assert_eq!(
            h.deadlines.iter().map(|(_, at)| *at).min(),
            Some(at(1) + year)
        );
        // A probe's short deadline is kept too, whatever is listed.
        assert_eq!(
            h.probe(at(1000) + Duration::from_millis(500)),
            Some(Beat::SendPing { seq: 1001 })
        );
        let probe_deadline =
            at(1000) + Duration::from_millis(500) + HeartbeatConfig::default().probe_timeout;
        assert_eq!(h.deadline(), Some(probe_deadline.min(at(1001))));
        assert!(
            h.deadlines.iter().any(|(seq, _)| *seq == 1001),
            "the probe's deadline"
        );
    }

    // Only pongs count, and a server answers every ping with a number that answers no ping
    // awaited: one above every ping sent, 0 (no ping has it), or the first ping's again
    // (answered already). That answers nothing, so the misses add up and the connection is
    // dead, instead of each such pong resetting the count (and deadlines piling up).
    #[test]
    fn a_pong_numbered_for_no_ping_awaited_is_not_an_answer() {
        let year = Duration::from_secs(365 * 24 * 3600);
        for (case, number) in [
            ("above", Some(u64::MAX)),
            ("zero", Some(0)),
            ("repeated", None),
        ] {
            let mut h = lax(year, 3);
            h.start(at(0));
            let mut verdict = None;
            for s in 1..=10 {
                match h.tick(at(s)) {
                    Some(Beat::SendPing { seq }) => {
                        // "repeated": the first ping is answered, then its number again.
                        let answer = number.unwrap_or(1);
                        let rtt = h.pong(at(s), Some(answer));
                        assert_eq!(rtt.is_some(), seq == 1 && answer == 1, "{case}");
                    }
                    other => {
                        verdict = other.map(|beat| (s, beat));
                        break;
                    }
                }
            }
            let expected = if number.is_none() { 5 } else { 4 };
            assert_eq!(
                verdict,
                Some((expected, Beat::Dead)),
                "{case}: dead after max_missed unanswered pings"
            );
        }
    }

    #[test]
    fn server_driven_waits_for_silence() {
        let mut h = Heartbeat::new(
            HeartbeatMode::ServerDriven,
            HeartbeatConfig {
                interval: Duration::from_secs(10),
                max_missed: 2,
                ..HeartbeatConfig::default()
            },
        );
        h.start(at(0));
        assert_eq!(h.deadline(), Some(at(30)));
        h.activity(at(25));
        assert_eq!(h.tick(at(30)), None);
        assert_eq!(h.tick(at(55)), Some(Beat::Dead));
        assert_eq!(h.probe(at(1)), None);
    }
}
