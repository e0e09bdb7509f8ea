//! The numbers: attempts per 100 ms bucket, the reconnect window, peak/mean, and the times
//! at which clients were back — and their table, JSON and CSV forms.
//!
//! Buckets are aligned on the relay's failure (bucket `k` covers `[k × 100 ms, (k+1) × 100 ms)`).
//! The reconnect window is every bucket that overlaps `[relay back, 99% of clients back]`;
//! peak/mean is the busiest bucket in it divided by the window's mean attempts per bucket. A
//! perfectly even spread scores 1; a crowd arriving in one bucket scores the number of buckets.

use super::sim::Micros;
use serde_json::{json, Value};
use std::fmt::Write as _;

/// Width of one bucket.
pub(crate) const BUCKET: Micros = 100_000;

/// Share of clients that must be back for the window to close.
const QUORUM: f64 = 0.99;

/// What happened over time in one run (or one shard of it).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Timeline {
    /// Clients simulated.
    pub(crate) clients: u64,
    /// Attempts started in each bucket.
    pub(crate) attempts: Vec<u64>,
    /// When each client that came back opened its connection (sorted after `finish`).
    pub(crate) back: Vec<Micros>,
}

impl Timeline {
    pub(crate) fn new(clients: u64) -> Self {
        Timeline {
            clients,
            attempts: Vec::new(),
            back: Vec::with_capacity(usize::try_from(clients).unwrap_or(0)),
        }
    }

    pub(crate) fn record_attempt(&mut self, at: Micros) {
        let bucket = bucket_of(at);
        if self.attempts.len() <= bucket {
            self.attempts.resize(bucket + 1, 0);
        }
        self.attempts[bucket] += 1;
    }

    pub(crate) fn record_back(&mut self, at: Micros) {
        self.back.push(at);
    }

    /// Adds a shard's results (clients are disjoint, so counts simply add up).
    pub(crate) fn merge(&mut self, other: Timeline) {
        if self.attempts.len() < other.attempts.len() {
            self.attempts.resize(other.attempts.len(), 0);
        }
        for (mine, theirs) in self.attempts.iter_mut().zip(other.attempts) {
            *mine += theirs;
        }
        self.back.extend(other.back);
    }

    /// Sorts the return times; call once after the last `merge`.
    pub(crate) fn finish(&mut self) {
        self.back.sort_unstable();
    }

    pub(crate) fn total_attempts(&self) -> u64 {
        self.attempts.iter().sum()
    }

    /// The time by which `share` of all clients were back, if they were.
    pub(crate) fn time_until(&self, share: f64) -> Option<Micros> {
        let needed = ((self.clients as f64) * share).ceil().max(1.0) as usize;
        self.back.get(needed.checked_sub(1)?).copied()
    }
}

fn bucket_of(at: Micros) -> usize {
    usize::try_from(at / BUCKET).unwrap_or(usize::MAX)
}

/// The reconnect window's statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Window {
    /// First and last bucket of the window (inclusive).
    pub(crate) first: usize,
    pub(crate) last: usize,
    /// Attempts started in the window.
    pub(crate) attempts: u64,
    /// The busiest bucket in the window.
    pub(crate) peak: u64,
}

impl Window {
    /// Statistics of the buckets overlapping `[from, to]`.
    pub(crate) fn over(attempts: &[u64], from: Micros, to: Micros) -> Window {
        let first = bucket_of(from.min(to));
        let last = bucket_of(to.max(from));
        let slice = attempts
            .get(first..attempts.len().min(last + 1))
            .unwrap_or(&[]);
        Window {
            first,
            last,
            attempts: slice.iter().sum(),
            peak: slice.iter().copied().max().unwrap_or(0),
        }
    }

    pub(crate) fn buckets(&self) -> usize {
        self.last - self.first + 1
    }

    /// Mean attempts per bucket.
    pub(crate) fn mean(&self) -> f64 {
        self.attempts as f64 / self.buckets() as f64
    }

    /// Peak over mean; `None` when nobody attempted anything in the window.
    pub(crate) fn peak_over_mean(&self) -> Option<f64> {
        (self.attempts > 0).then(|| self.peak as f64 / self.mean())
    }
}

/// Everything reported for one strategy.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Metrics {
    pub(crate) total_attempts: u64,
    /// The busiest bucket of the whole run: (attempts, bucket index).
    pub(crate) peak: (u64, usize),
    /// `None` if fewer than 99% of clients were back by the horizon.
    pub(crate) window: Option<Window>,
    /// When 99% were back (since the relay failed).
    pub(crate) t99: Option<Micros>,
    /// When the last client was back, if all were.
    pub(crate) t_all: Option<Micros>,
    /// Clients not back by the horizon.
    pub(crate) not_back: u64,
}

impl Metrics {
    /// Computes the metrics of `timeline` for a relay back at `relay_back`.
    pub(crate) fn of(timeline: &Timeline, relay_back: Micros) -> Metrics {
        let peak = timeline
            .attempts
            .iter()
            .enumerate()
            // The earliest bucket wins a tie.
            .fold(
                (0, 0),
                |best, (i, &n)| if n > best.0 { (n, i) } else { best },
            );
        let t99 = timeline.time_until(QUORUM);
        let not_back = timeline.clients.saturating_sub(timeline.back.len() as u64);
        Metrics {
            total_attempts: timeline.total_attempts(),
            peak,
            window: t99.map(|t| Window::over(&timeline.attempts, relay_back, t)),
            t99,
            t_all: if not_back == 0 {
                timeline.back.last().copied()
            } else {
                None
            },
            not_back,
        }
    }

    pub(crate) fn peak_over_mean(&self) -> Option<f64> {
        self.window.and_then(|w| w.peak_over_mean())
    }
}

/// Seconds with one decimal, from microseconds.
pub(crate) fn secs(us: Micros) -> f64 {
    us as f64 / 1e6
}

/// `1234567` → `1,234,567`.
pub(crate) fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// One strategy's results with the names they are reported under.
#[derive(Debug)]
pub(crate) struct Row<'a> {
    pub(crate) name: &'a str,
    pub(crate) description: String,
    pub(crate) metrics: Metrics,
}

/// The human-readable table, followed by one `NAME peak/mean: X` line per strategy.
pub(crate) fn table(rows: &[Row<'_>], relay_back: Micros) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<18} {:>10} {:^24}", "", "", "-- peak per 100 ms --");
    let _ = writeln!(
        out,
        "{:<18} {:>10} {:>11} {:>12} {:>9} {:>16} {:>9}",
        "strategy", "attempts", "whole run", "after return", "peak/mean", "99% back (s)", "all (s)"
    );
    for row in rows {
        let m = &row.metrics;
        let window_peak = m.window.map_or("-".to_owned(), |w| grouped(w.peak));
        let ratio = m
            .peak_over_mean()
            .map_or("-".to_owned(), |r| format!("{r:.2}"));
        let t99 = m.t99.map_or("not reached".to_owned(), |t| {
            format!(
                "{:.2} (+{:.2})",
                secs(t),
                secs(t.saturating_sub(relay_back))
            )
        });
        let all = m
            .t_all
            .map_or(format!("{} out", m.not_back), |t| format!("{:.2}", secs(t)));
        let _ = writeln!(
            out,
            "{:<18} {:>10} {:>11} {:>12} {:>9} {:>16} {:>9}",
            row.name,
            grouped(m.total_attempts),
            grouped(m.peak.0),
            window_peak,
            ratio,
            t99,
            all
        );
    }
    out.push('\n');
    for row in rows {
        let ratio = row
            .metrics
            .peak_over_mean()
            .map_or("n/a (fewer than 99% back)".to_owned(), |r| {
                format!("{r:.2}")
            });
        let _ = writeln!(out, "{:<18} peak/mean: {ratio}", row.name);
    }
    out.push('\n');
    for row in rows {
        let _ = writeln!(out, "{:<18} {}", row.name, row.description);
    }
    out
}

/// The machine-readable form of one strategy's results.
pub(crate) fn json_row(row: &Row<'_>, relay_back: Micros) -> Value {
    let m = &row.metrics;
    json!({
        "name": row.name,
        "description": row.description,
        "attempts": m.total_attempts,
        "peak_attempts_per_100ms": m.peak.0,
        "peak_at_s": secs(m.peak.1 as u64 * BUCKET),
        "window": m.window.map(|w| json!({
            "from_s": secs(w.first as u64 * BUCKET),
            "to_s": secs((w.last as u64 + 1) * BUCKET),
            "buckets": w.buckets(),
            "attempts": w.attempts,
            "peak": w.peak,
            "mean": w.mean(),
        })),
        "peak_over_mean": m.peak_over_mean(),
        "t99_s": m.t99.map(secs),
        "t99_after_relay_back_s": m.t99.map(|t| secs(t.saturating_sub(relay_back))),
        "all_back_s": m.t_all.map(secs),
        "not_back": m.not_back,
    })
}

/// Attempts per bucket, one column per strategy: `t_s,full,none,…`.
pub(crate) fn csv(names: &[&str], timelines: &[Timeline]) -> String {
    let buckets = timelines
        .iter()
        .map(|t| t.attempts.len())
        .max()
        .unwrap_or(0);
    let mut out = String::from("t_s");
    for name in names {
        out.push(',');
        out.push_str(name);
    }
    out.push('\n');
    for b in 0..buckets {
        let _ = write!(out, "{:.1}", secs(b as u64 * BUCKET));
        for t in timelines {
            let _ = write!(out, ",{}", t.attempts.get(b).copied().unwrap_or(0));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(attempts: &[(Micros, u64)], back: &[Micros], clients: u64) -> Timeline {
        let mut t = Timeline::new(clients);
        for &(at, n) in attempts {
            for _ in 0..n {
                t.record_attempt(at);
            }
        }
        for &at in back {
            t.record_back(at);
        }
        t.finish();
        t
    }

    #[test]
    fn attempts_fall_into_100ms_buckets_aligned_on_the_failure() {
        let t = timeline(&[(0, 1), (99_999, 1), (100_000, 2), (350_000, 3)], &[], 1);
        assert_eq!(t.attempts, vec![2, 2, 0, 3]);
        assert_eq!(t.total_attempts(), 7);
    }

    #[test]
    fn the_window_covers_buckets_from_relay_back_to_the_quorum() {
        // Relay back at 1.0 s, 99% back at 1.25 s: buckets 10, 11 and 12.
        let attempts = [5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 2, 6, 4, 9];
        let w = Window::over(&attempts, 1_000_000, 1_250_000);
        assert_eq!((w.first, w.last, w.buckets()), (10, 12, 3));
        assert_eq!(w.attempts, 12);
        assert_eq!(w.peak, 6);
        assert!((w.mean() - 4.0).abs() < 1e-12);
        assert_eq!(w.peak_over_mean(), Some(1.5));
        // A window running past the recorded buckets counts them as empty.
        let w = Window::over(&[0, 4], 100_000, 350_000);
        assert_eq!((w.buckets(), w.attempts, w.peak), (3, 4, 4));
        assert_eq!(w.peak_over_mean(), Some(3.0));
        // Nobody attempting means no ratio, not a division by zero.
        assert_eq!(Window::over(&[], 0, 0).peak_over_mean(), None);
    }

    #[test]
    fn an_even_spread_scores_one_and_a_single_spike_scores_the_bucket_count() {
        let even = Window::over(&[10; 20], 0, 1_999_999);
        assert_eq!(even.peak_over_mean(), Some(1.0));
        let mut spike = vec![0; 20];
        spike[7] = 100;
        let w = Window::over(&spike, 0, 1_999_999);
        assert_eq!(w.peak_over_mean(), Some(20.0));
    }

    #[test]
    fn the_quorum_time_is_the_ceil_99_percent_client() {
        let back: Vec<Micros> = (1..=200).map(|i| i * 1000).collect();
        let t = timeline(&[], &back, 200);
        // 99% of 200 is 198: the 198th return.
        assert_eq!(t.time_until(0.99), Some(198_000));
        // With 3 clients, 99% means all 3.
        let t = timeline(&[], &[5, 7, 9], 3);
        assert_eq!(t.time_until(0.99), Some(9));
        // Not enough back: no quorum time.
        let t = timeline(&[], &[5], 3);
        assert_eq!(t.time_until(0.99), None);
    }

    #[test]
    fn metrics_report_the_run_peak_and_the_clients_left_out() {
        let t = timeline(&[(0, 8), (2_000_000, 3), (2_100_000, 1)], &[2_000_500], 2);
        let m = Metrics::of(&t, 2_000_000);
        assert_eq!(m.total_attempts, 12);
        assert_eq!(m.peak, (8, 0));
        assert_eq!(m.not_back, 1);
        assert_eq!(m.t_all, None);
        // 99% of 2 clients is 2: never reached.
        assert_eq!(m.window, None);
        assert_eq!(m.peak_over_mean(), None);
    }

    #[test]
    fn merging_shards_adds_counts() {
        let mut a = timeline(&[(0, 1), (200_000, 1)], &[3], 2);
        let b = timeline(&[(450_000, 2)], &[1], 1);
        a.merge(b);
        a.finish();
        assert_eq!(a.attempts, vec![1, 0, 1, 0, 2]);
        assert_eq!(a.back, vec![1, 3]);
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }

    #[test]
    fn csv_has_one_column_per_strategy() {
        let a = timeline(&[(0, 1)], &[], 1);
        let b = timeline(&[(150_000, 2)], &[], 1);
        assert_eq!(
            csv(&["full", "none"], &[a, b]),
            "t_s,full,none\n0.0,1,0\n0.1,0,2\n"
        );
    }
}
