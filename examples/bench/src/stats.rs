//! Figures from one measured phase, and medians over repeats.

use std::time::Duration;

/// One phase of `n` messages.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Messages per second (echoes received / wall time).
    pub msgs_per_s: f64,
    /// Median per-message latency, µs.
    pub p50_us: f64,
    /// 99th percentile per-message latency, µs.
    pub p99_us: f64,
    /// Client CPU time (all threads of the bench process) per message, µs.
    pub cpu_us: f64,
}

impl Sample {
    pub fn new(mut latencies: Vec<Duration>, wall: Duration, cpu: Duration) -> Sample {
        latencies.sort_unstable();
        let n = latencies.len().max(1) as f64;
        Sample {
            msgs_per_s: latencies.len() as f64 / wall.as_secs_f64().max(1e-9),
            p50_us: micros(percentile(&latencies, 0.50)),
            p99_us: micros(percentile(&latencies, 0.99)),
            cpu_us: cpu.as_secs_f64() * 1e6 / n,
        }
    }

    /// The median of each figure over `samples` (each figure on its own).
    pub fn median(samples: &[Sample]) -> Sample {
        let pick = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
        Sample {
            msgs_per_s: pick(|s| s.msgs_per_s),
            p50_us: pick(|s| s.p50_us),
            p99_us: pick(|s| s.p99_us),
            cpu_us: pick(|s| s.cpu_us),
        }
    }

    /// Spread of `figure` over `samples`: (max - min) / median.
    pub fn spread(samples: &[Sample], figure: fn(&Sample) -> f64) -> f64 {
        let values: Vec<f64> = samples.iter().map(figure).collect();
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mid = median(values);
        if mid > 0.0 {
            (hi - lo) / mid
        } else {
            0.0
        }
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile<T: Copy + Default>(sorted: &[T], q: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median of `values` (mean of the middle two for an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
