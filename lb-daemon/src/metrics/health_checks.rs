//! The health-check observations of every checked backend, kept compact:
//! per backend a few counters and the duration histogram's buckets, about
//! 100 bytes, turned into the `lb_health_checks_total` and
//! `lb_health_check_duration_seconds` samples at scrape time. (A labelled
//! series of the prometheus crate costs kilobytes, which at 100,000
//! checked backends was hundreds of megabytes.)
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use super::{Histogram, Sample};
use crate::health::CheckResult;

/// Upper bounds (seconds) of the duration histogram: checks take from
/// well under a millisecond (TCP connect on a LAN) to their timeout
/// (seconds).
pub const BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// What one backend's checks came to, in counts of 32 bits: a backend
/// checked every second wraps one in 136 years, every 10 ms in 497 days;
/// Prometheus takes a wrap for a counter reset. The histogram's count is
/// the sum of its buckets, so that a wrap never leaves a bucket above it.
#[derive(Clone, Copy, Debug, Default)]
struct Observed {
    /// Checks by result, in the order of [`CheckResult::LABELS`].
    results: [u32; CheckResult::LABELS.len()],
    /// Checks that took at most `BUCKETS[i]` and more than the bound
    /// before it (made cumulative when exported).
    buckets: [u32; BUCKETS.len()],
    /// Checks that took longer than the last bound.
    over: u32,
    /// Seconds.
    sum: f64,
}

/// Backends by address.
type Backends = HashMap<IpAddr, Observed>;

/// The observations of every checked backend, by virtual server and
/// backend.
#[derive(Debug, Default)]
pub struct HealthChecks {
    virtual_servers: Mutex<HashMap<String, Backends>>,
}

impl HealthChecks {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Backends>> {
        // Every update leaves the map consistent: a panic elsewhere
        // cannot have left it half-written.
        self.virtual_servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one check of `backend` of `virtual_server` with result label
    /// `result` (one of [`CheckResult::LABELS`]) that took `duration`.
    pub fn observe(&self, virtual_server: &str, backend: IpAddr, result: &str, duration: Duration) {
        let Some(index) = CheckResult::LABELS.iter().position(|l| *l == result) else {
            tracing::error!(result, "health check result without a label: not counted");
            return;
        };
        let seconds = duration.as_secs_f64();
        let mut virtual_servers = self.lock();
        let backends = match virtual_servers.get_mut(virtual_server) {
            Some(backends) => backends,
            None => virtual_servers
                .entry(virtual_server.to_owned())
                .or_default(),
        };
        let observed = backends.entry(backend).or_default();
        observed.results[index] = observed.results[index].wrapping_add(1);
        let slot = match BUCKETS.iter().position(|&bound| seconds <= bound) {
            Some(bucket) => &mut observed.buckets[bucket],
            None => &mut observed.over,
        };
        *slot = slot.wrapping_add(1);
        observed.sum += seconds;
    }

    /// Forgets `backend` of `virtual_server` (its checks stopped).
    pub fn forget(&self, virtual_server: &str, backend: IpAddr) {
        let mut virtual_servers = self.lock();
        if let Some(backends) = virtual_servers.get_mut(virtual_server) {
            backends.remove(&backend);
            if backends.is_empty() {
                virtual_servers.remove(virtual_server);
            }
        }
    }

    /// The samples of `lb_health_checks_total` (labels virtual server,
    /// backend, result; results seen only) and of
    /// `lb_health_check_duration_seconds` (virtual server, backend).
    pub fn samples(&self) -> (Vec<Sample>, Vec<Sample>) {
        // Copied under the lock and formatted outside it, so that a scrape
        // of many backends does not hold up the recording of checks.
        let observations: Vec<(String, Vec<(IpAddr, Observed)>)> = self
            .lock()
            .iter()
            .map(|(name, backends)| {
                let backends = backends.iter().map(|(a, o)| (*a, *o)).collect();
                (name.clone(), backends)
            })
            .collect();
        let mut checks = Vec::new();
        let mut durations = Vec::new();
        for (virtual_server, backends) in &observations {
            for (backend, observed) in backends {
                let backend = backend.to_string();
                for (result, &count) in CheckResult::LABELS.iter().zip(&observed.results) {
                    if count > 0 {
                        let labels = [virtual_server.as_str(), &backend, result];
                        checks.push(Sample::new(&labels, f64::from(count)));
                    }
                }
                durations.push(Sample::histogram(
                    &[virtual_server, &backend],
                    histogram(observed),
                ));
            }
        }
        (checks, durations)
    }
}

/// The exported histogram of `observed`: cumulative buckets, the count
/// (every observation, those over the last bound too) and the sum.
fn histogram(observed: &Observed) -> Histogram {
    let mut cumulative = 0;
    let buckets = BUCKETS
        .iter()
        .zip(&observed.buckets)
        .map(|(&bound, &count)| {
            cumulative += u64::from(count);
            (bound, cumulative)
        })
        .collect();
    Histogram {
        buckets,
        count: cumulative + u64::from(observed.over),
        sum: observed.sum,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A check slower than the last bound counts in the total only, and
    /// the total is never below a bucket.
    #[test]
    fn a_check_over_the_last_bound_counts_in_the_total_only() {
        let checks = HealthChecks::default();
        let backend: IpAddr = "10.0.0.11".parse().unwrap();
        checks.observe("web", backend, "success", Duration::from_millis(2));
        checks.observe("web", backend, "timeout", Duration::from_secs(7));
        let (results, durations) = checks.samples();
        assert_eq!(results.len(), 2);
        let [sample] = durations.as_slice() else {
            panic!("one histogram")
        };
        let super::super::Value::Histogram(histogram) = &sample.value else {
            panic!("a histogram")
        };
        assert_eq!(histogram.count, 2);
        assert_eq!(histogram.buckets.last(), Some(&(5.0, 1)));
        assert!((histogram.sum - 7.002).abs() < 1e-9);
    }
}
