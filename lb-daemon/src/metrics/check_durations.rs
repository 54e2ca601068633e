//! How long health checks take, per virtual server: the
//! `lb_health_check_duration_seconds` histogram, observed as checks end.
//! Per virtual server, not per backend: a histogram is 16 series, which
//! at 100,000 backends made a scrape 2 million samples. (The checks by
//! result are per backend and live with the backend's state.)
use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use super::exposition::Histogram;

/// Upper bounds (seconds) of the duration histogram: checks take from
/// well under a millisecond (TCP connect on a LAN) to their timeout
/// (seconds).
pub const BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The check durations of one virtual server, in counts of 32 bits: a
/// virtual server checked 1,000 times a second wraps one in 50 days;
/// Prometheus takes a wrap for a counter reset. The count is the sum of
/// the buckets, so that a wrap never leaves a bucket above it.
#[derive(Clone, Copy, Debug, Default)]
struct Durations {
    /// Checks that took at most `BUCKETS[i]` and more than the bound
    /// before it (made cumulative when exported).
    buckets: [u32; BUCKETS.len()],
    /// Checks that took longer than the last bound.
    over: u32,
    /// Seconds.
    sum: f64,
}

impl Durations {
    fn observe(&mut self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let count = match BUCKETS.iter().position(|&bound| seconds <= bound) {
            Some(bucket) => &mut self.buckets[bucket],
            None => &mut self.over,
        };
        *count = count.wrapping_add(1);
        self.sum += seconds;
    }

    /// The exported histogram: cumulative buckets, the count (every
    /// observation, those over the last bound too) and the sum.
    fn histogram(&self) -> Histogram {
        let mut cumulative = 0;
        let buckets = BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(&bound, &count)| {
                cumulative += u64::from(count);
                (bound, cumulative)
            })
            .collect();
        Histogram {
            buckets,
            count: cumulative + u64::from(self.over),
            sum: self.sum,
        }
    }
}

/// The check durations of every checked virtual server.
#[derive(Debug, Default)]
pub struct CheckDurations {
    virtual_servers: Mutex<HashMap<String, Durations>>,
}

impl CheckDurations {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Durations>> {
        // Every update leaves the map consistent: a panic elsewhere
        // cannot have left it half-written.
        self.virtual_servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a check of a backend of `virtual_server` that took `duration`.
    pub fn observe(&self, virtual_server: &str, duration: Duration) {
        let mut virtual_servers = self.lock();
        match virtual_servers.get_mut(virtual_server) {
            Some(durations) => durations.observe(duration),
            None => virtual_servers
                .entry(virtual_server.to_owned())
                .or_default()
                .observe(duration),
        }
    }

    /// Keeps the virtual servers `keep` says are still checked.
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        self.lock().retain(|name, _| keep(name));
    }

    /// Each virtual server's histogram, sorted by name.
    pub fn histograms(&self) -> Vec<(String, Histogram)> {
        let mut histograms: Vec<_> = self
            .lock()
            .iter()
            .map(|(name, durations)| (name.clone(), durations.histogram()))
            .collect();
        histograms.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        histograms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A check slower than the last bound counts in the total only, and
    /// the total is never below a bucket.
    #[test]
    fn a_check_over_the_last_bound_counts_in_the_total_only() {
        let durations = CheckDurations::default();
        durations.observe("web", Duration::from_millis(2));
        durations.observe("web", Duration::from_secs(7));
        let [(name, histogram)] = durations.histograms().try_into().expect("one histogram");
        assert_eq!(name, "web");
        assert_eq!(histogram.count, 2);
        assert_eq!(histogram.buckets.last(), Some(&(5.0, 1)));
        assert!((histogram.sum - 7.002).abs() < 1e-9);
    }

    #[test]
    fn virtual_servers_no_longer_checked_are_forgotten() {
        let durations = CheckDurations::default();
        durations.observe("web", Duration::from_millis(2));
        durations.observe("dns", Duration::from_millis(2));
        durations.retain(|name| name == "dns");
        let names: Vec<String> = durations.histograms().into_iter().map(|h| h.0).collect();
        assert_eq!(names, ["dns"]);
    }
}
