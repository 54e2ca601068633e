//! The health-check observations, kept compact: per backend its checks
//! by result (12 bytes), per virtual server the duration histogram,
//! turned into the `lb_health_checks_total` and
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

/// Checks of one backend by result, in the order of
/// [`CheckResult::LABELS`] (32 bits: 136 years at one a second).
type Results = [u32; CheckResult::LABELS.len()];

/// One virtual server's observations: its backends' results and the
/// durations of all its checks. The durations are kept per virtual
/// server, not per backend: a histogram is 16 series, which at 100,000
/// backends made a scrape 2 million samples.
#[derive(Clone, Debug, Default)]
struct VirtualServer {
    durations: Durations,
    backends: HashMap<IpAddr, Results>,
}

/// The observations of every checked backend, by virtual server.
#[derive(Debug, Default)]
pub struct HealthChecks {
    virtual_servers: Mutex<HashMap<String, VirtualServer>>,
}

impl HealthChecks {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, VirtualServer>> {
        // Every update leaves the map consistent: a panic elsewhere
        // cannot have left it half-written.
        self.virtual_servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one check of `backend` of `virtual_server` that came to
    /// `result` and took `duration`.
    pub fn observe(
        &self,
        virtual_server: &str,
        backend: IpAddr,
        result: &CheckResult,
        duration: Duration,
    ) {
        let index = result.index();
        let seconds = duration.as_secs_f64();
        let mut virtual_servers = self.lock();
        let vs = match virtual_servers.get_mut(virtual_server) {
            Some(vs) => vs,
            None => virtual_servers
                .entry(virtual_server.to_owned())
                .or_default(),
        };
        let results = vs.backends.entry(backend).or_default();
        results[index] = results[index].wrapping_add(1);
        let durations = &mut vs.durations;
        let slot = match BUCKETS.iter().position(|&bound| seconds <= bound) {
            Some(bucket) => &mut durations.buckets[bucket],
            None => &mut durations.over,
        };
        *slot = slot.wrapping_add(1);
        durations.sum += seconds;
    }

    /// Forgets `backend` of `virtual_server` (its checks stopped), and the
    /// virtual server's durations with its last backend.
    pub fn forget(&self, virtual_server: &str, backend: IpAddr) {
        let mut virtual_servers = self.lock();
        if let Some(vs) = virtual_servers.get_mut(virtual_server) {
            vs.backends.remove(&backend);
            if vs.backends.is_empty() {
                virtual_servers.remove(virtual_server);
            }
        }
    }

    /// The samples of `lb_health_checks_total` (labels virtual server,
    /// backend, result; results seen only) and of
    /// `lb_health_check_duration_seconds` (virtual server).
    pub fn samples(&self) -> (Vec<Sample>, Vec<Sample>) {
        // Copied under the lock and formatted outside it, so that a scrape
        // of many backends does not hold up the recording of checks.
        let observations: Vec<(String, VirtualServer)> = self
            .lock()
            .iter()
            .map(|(name, vs)| (name.clone(), vs.clone()))
            .collect();
        let mut checks = Vec::new();
        let mut durations = Vec::with_capacity(observations.len());
        for (virtual_server, vs) in &observations {
            for (backend, results) in &vs.backends {
                let backend = backend.to_string();
                for (result, &count) in CheckResult::LABELS.iter().zip(results) {
                    if count > 0 {
                        let labels = [virtual_server.as_str(), &backend, result];
                        checks.push(Sample::new(&labels, f64::from(count)));
                    }
                }
            }
            durations.push(Sample::histogram(
                &[virtual_server],
                histogram(&vs.durations),
            ));
        }
        (checks, durations)
    }
}

/// The exported histogram of `durations`: cumulative buckets, the count
/// (every observation, those over the last bound too) and the sum.
fn histogram(durations: &Durations) -> Histogram {
    let mut cumulative = 0;
    let buckets = BUCKETS
        .iter()
        .zip(&durations.buckets)
        .map(|(&bound, &count)| {
            cumulative += u64::from(count);
            (bound, cumulative)
        })
        .collect();
    Histogram {
        buckets,
        count: cumulative + u64::from(durations.over),
        sum: durations.sum,
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
        checks.observe(
            "web",
            backend,
            &CheckResult::Success,
            Duration::from_millis(2),
        );
        checks.observe(
            "web",
            backend,
            &CheckResult::Timeout,
            Duration::from_secs(7),
        );
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
