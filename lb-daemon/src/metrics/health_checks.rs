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

/// What one backend's checks came to. Counts of 32 bits: a backend
/// checked every second takes 136 years to wrap one.
#[derive(Clone, Debug, Default)]
struct Observed {
    /// Checks by result, in the order of [`CheckResult::LABELS`].
    results: [u32; CheckResult::LABELS.len()],
    /// Checks that took at most `BUCKETS[i]` and more than the bound
    /// before it (made cumulative when exported).
    buckets: [u32; BUCKETS.len()],
    count: u32,
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
        if let Some(bucket) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            observed.buckets[bucket] = observed.buckets[bucket].wrapping_add(1);
        }
        observed.count = observed.count.wrapping_add(1);
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
        let virtual_servers = self.lock();
        let mut checks = Vec::new();
        let mut durations = Vec::new();
        let observations = virtual_servers
            .iter()
            .flat_map(|(name, backends)| backends.iter().map(move |b| (name, b)));
        for (virtual_server, (backend, observed)) in observations {
            let backend = backend.to_string();
            for (result, &count) in CheckResult::LABELS.iter().zip(&observed.results) {
                if count > 0 {
                    let labels = [virtual_server.as_str(), &backend, result];
                    checks.push(Sample::new(&labels, count as f64));
                }
            }
            let mut cumulative = 0;
            let buckets = BUCKETS
                .iter()
                .zip(&observed.buckets)
                .map(|(&bound, &count)| {
                    cumulative += u64::from(count);
                    (bound, cumulative)
                })
                .collect();
            let histogram = Histogram {
                buckets,
                count: observed.count.into(),
                sum: observed.sum,
            };
            durations.push(Sample::histogram(&[virtual_server, &backend], histogram));
        }
        (checks, durations)
    }
}
