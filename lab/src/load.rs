//! Steady client traffic for demos and for tests that change something
//! under load (failover, reload, drain): workers in the client's namespace
//! send `GET /` on a new connection each time (so every request is a new
//! flow) and count the answers per backend.
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::Result;

use crate::{Netns, http::get_here};

/// How [`HttpLoad`] drives traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLoadOptions {
    /// Concurrent workers, each with one request in flight.
    pub workers: usize,
    /// Pause of a worker between two requests (paces the load when
    /// `rate` is `None`).
    pub pause: Duration,
    /// New connections per second over all workers, evenly spaced; a
    /// worker that falls behind skips the requests it missed rather than
    /// bursting. `None`: as fast as `pause` allows.
    pub rate: Option<u32>,
    /// Longest a request may take before it counts as failed.
    pub request_timeout: Duration,
    /// The load stops by itself after this long, even if never stopped.
    pub max_duration: Duration,
}

impl Default for HttpLoadOptions {
    /// 4 workers, 10 ms pause, 1 s request timeout, 10 minutes at most.
    fn default() -> HttpLoadOptions {
        HttpLoadOptions {
            workers: 4,
            pause: Duration::from_millis(10),
            rate: None,
            request_timeout: Duration::from_secs(1),
            max_duration: Duration::from_secs(600),
        }
    }
}

/// What the load has seen so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadStats {
    /// Successful requests by answering backend name.
    pub answers: BTreeMap<String, u64>,
    /// Failed requests (refused, reset, timed out, not 200).
    pub errors: u64,
    /// The most recent failure, for the test's message.
    pub last_error: Option<String>,
}

impl LoadStats {
    /// Successful requests in all.
    pub fn successes(&self) -> u64 {
        self.answers.values().sum()
    }
}

/// Client traffic to one address running in the background; stopped on
/// drop.
#[derive(Debug)]
pub struct HttpLoad {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<Result<()>>>,
}

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    stats: Mutex<LoadStats>,
}

impl HttpLoad {
    /// Starts `options.workers` workers inside `ns` sending `GET /` to
    /// `addr`.
    pub fn start(ns: &Netns, addr: SocketAddr, options: &HttpLoadOptions) -> Result<HttpLoad> {
        let shared = Arc::new(Shared::default());
        let mut load = HttpLoad {
            shared: Arc::clone(&shared),
            workers: Vec::with_capacity(options.workers),
        };
        for index in 0..options.workers {
            let shared = Arc::clone(&shared);
            let options = options.clone();
            // On error, `load` is dropped and stops the workers started.
            load.workers
                .push(ns.spawn_thread(move || work(addr, &options, &shared, index))?);
        }
        Ok(load)
    }

    /// The counts so far.
    pub fn stats(&self) -> LoadStats {
        self.shared.lock_stats().clone()
    }

    /// Forgets the counts so far (to measure from now on).
    pub fn reset(&self) {
        *self.shared.lock_stats() = LoadStats::default();
    }

    /// Stops the workers and returns the final counts.
    pub fn stop(mut self) -> LoadStats {
        self.join();
        self.stats()
    }

    fn join(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for worker in self.workers.drain(..) {
            // A worker that could not enter the namespace counted nothing.
            let _ = worker.join();
        }
    }
}

impl Drop for HttpLoad {
    fn drop(&mut self) {
        self.join();
    }
}

impl Shared {
    fn lock_stats(&self) -> MutexGuard<'_, LoadStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One worker: requests until stopped or `max_duration` is over.
fn work(addr: SocketAddr, options: &HttpLoadOptions, shared: &Shared, index: usize) {
    let start = Instant::now();
    let end = start + options.max_duration;
    // With a rate, worker `index` of n sends request k at
    // (k * n + index) / rate seconds.
    let period = options
        .rate
        .filter(|rate| *rate > 0)
        .map(|rate| Duration::from_secs_f64(options.workers as f64 / f64::from(rate)));
    let offset = period.map(|period| period.mul_f64(index as f64 / options.workers as f64));
    let mut next = start + offset.unwrap_or_default();
    while !shared.stop.load(Ordering::Relaxed) && Instant::now() < end {
        if let Some(period) = period {
            let now = Instant::now();
            if next > now {
                // Short sleeps, so that a stop is seen promptly.
                std::thread::sleep((next - now).min(Duration::from_millis(100)));
                continue;
            }
            while next <= now {
                next += period;
            }
        }
        let result = get_here(addr, options.request_timeout);
        let mut stats = shared.lock_stats();
        match result {
            Ok(body) => *stats.answers.entry(body.trim_end().to_owned()).or_default() += 1,
            Err(error) => {
                stats.errors += 1;
                stats.last_error = Some(format!("{error:#}"));
            }
        }
        drop(stats);
        if period.is_none() {
            std::thread::sleep(options.pause);
        }
    }
}
