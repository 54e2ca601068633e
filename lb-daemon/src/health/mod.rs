//! Health checks of the backends (DESIGN.md §4 `[virtual_server.health_check]`).
//!
//! ```text
//!   Config ──Supervisor::targets──▶ Vec<Target> ──Supervisor::sync──▶ one task per target
//!                                                                        │ probe every interval (±10%)
//!                                                                        │ RiseFall::record
//!   daemon ◀──────────────── mpsc::Sender<Report> ◀──────────────────────┘
//! ```
//!
//! - [`Supervisor`] owns one checker task per [`Target`] (a backend of a
//!   virtual server whose check kind is not `none`), starts, stops and
//!   restarts them on [`Supervisor::sync`], and answers
//!   [`Supervisor::health`].
//! - Each checker waits a random offset within its interval
//!   ([`jitter`]), then probes ([`probe`]) every interval ±10%, measured
//!   start to start; every result goes out as a [`Report`], whose
//!   `changed` is set when the result flipped the backend's health.
//! - [`state::RiseFall`] is the pure rise/fall counter: a new backend is
//!   **Up** and goes Down after `fall` consecutive failures; a Down one
//!   comes back Up after `rise` consecutive successes.
//! - Probes: `tcp` (connect), `http`/`https` ([`http`], [`tls`]: status
//!   in `expect_status`, optional body substring), `udp` (a reply,
//!   containing `expect` if set), `exec` (exit status 0; the process group
//!   is killed on timeout). Each is bounded by the check's timeout and
//!   fails with a typed [`Failure`].
//!
//! Checker tasks only send reports; the daemon decides what a change does
//! to the maps. Backends without a checker (kind `none`, or unknown) are
//! always Up.
pub mod http;
pub mod jitter;
pub mod probe;
mod result;
pub mod state;
pub mod tls;

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::{sync::mpsc, task::JoinHandle, time::Instant};

pub use result::{CheckResult, Failure};
pub use state::RiseFall;

use crate::{
    config::{Config, HealthCheck, HealthCheckKind},
    status::Health,
};

/// Shortest interval a checker runs at, whatever it is given (the config
/// validates intervals as positive; this only keeps a zero from spinning).
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// One backend of one virtual server to check.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub virtual_server: String,
    pub address: IpAddr,
    /// The port checked ([`crate::config::VirtualServer::health_port`]);
    /// kinds that connect fail with [`Failure::NoPort`] without one.
    pub port: Option<u16>,
    pub check: HealthCheck,
}

/// The result of one check, sent by the checker after every check.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub virtual_server: String,
    pub backend: IpAddr,
    pub result: CheckResult,
    /// How long the check took (at most about the timeout).
    pub duration: Duration,
    /// Some(new) when this result changed the backend's health.
    pub changed: Option<Health>,
}

/// Identifies a checker: (virtual server, backend address).
type Key = (String, IpAddr);

/// The running checkers.
///
/// Must be used inside a tokio runtime (with time, I/O and process
/// drivers): [`Supervisor::sync`] spawns tasks on it. Dropping the
/// supervisor stops every checker, as [`Supervisor::shutdown`] does
/// without waiting.
#[derive(Debug)]
pub struct Supervisor {
    reports: mpsc::Sender<Report>,
    checkers: HashMap<Key, Checker>,
}

#[derive(Debug)]
struct Checker {
    /// Shared with the checker's task.
    target: Arc<Target>,
    state: Arc<Mutex<RiseFall>>,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// A supervisor without checkers; reports go to `reports`. A checker
    /// waits while the channel is full (its next check is delayed, none is
    /// lost), and stops when the receiver is gone.
    pub fn new(reports: mpsc::Sender<Report>) -> Self {
        Self {
            reports,
            checkers: HashMap::new(),
        }
    }

    /// Targets of a config: one per backend of each virtual server (kind
    /// none: none).
    pub fn targets(config: &Config) -> Vec<Target> {
        config
            .virtual_servers
            .iter()
            .filter(|vs| vs.health_check.kind != HealthCheckKind::None)
            .flat_map(|vs| {
                vs.backends.iter().map(|backend| Target {
                    virtual_server: vs.name.clone(),
                    address: backend.address,
                    port: vs.health_port(backend),
                    check: vs.health_check.clone(),
                })
            })
            .collect()
    }

    /// Starts checkers for new targets, stops removed ones, restarts
    /// changed ones; a target whose check did not change keeps its health
    /// state and counters.
    ///
    /// A target identified by (virtual server, address) whose port or
    /// check changed gets a new checker that keeps the backend's current
    /// health and counts its streak afresh with the new rise and fall (a
    /// Down backend is not brought Up by a reload). Targets of kind `none`
    /// get no checker. When one (virtual server, address) appears twice,
    /// the last one counts.
    ///
    /// # Panics
    /// Outside a tokio runtime (the checkers are spawned on it).
    ///
    /// Returns the (virtual server, backend) pairs whose checks stopped.
    pub fn sync(&mut self, targets: Vec<Target>) -> Vec<(String, IpAddr)> {
        let mut wanted: HashMap<Key, Target> = HashMap::new();
        for target in targets {
            if target.check.kind != HealthCheckKind::None {
                wanted.insert((target.virtual_server.clone(), target.address), target);
            }
        }
        let mut old = std::mem::take(&mut self.checkers);
        for (key, target) in wanted {
            let checker = match old.remove(&key) {
                Some(checker) if *checker.target == target => checker,
                Some(checker) => {
                    checker.task.abort();
                    let health = lock(&checker.state).health();
                    tracing::info!(
                        virtual_server = %target.virtual_server,
                        backend = %target.address,
                        ?health,
                        "health check changed: restarting its checker"
                    );
                    self.spawn(target, health)
                }
                None => self.spawn(target, Health::Up),
            };
            self.checkers.insert(key, checker);
        }
        old.into_iter()
            .map(|(key, checker)| {
                checker.task.abort();
                key
            })
            .collect()
    }

    /// Whether `backend` of `virtual_server` is being checked.
    pub fn is_checked(&self, virtual_server: &str, backend: IpAddr) -> bool {
        self.checkers
            .contains_key(&(virtual_server.to_owned(), backend))
    }

    fn spawn(&self, target: Target, health: Health) -> Checker {
        let state = Arc::new(Mutex::new(RiseFall::with_health(
            target.check.rise,
            target.check.fall,
            health,
        )));
        let target = Arc::new(target);
        // No span per checker: with 100,000 of them it would cost tens of
        // megabytes; the events name the backend instead.
        let task = tokio::spawn(run(
            Arc::clone(&target),
            Arc::clone(&state),
            self.reports.clone(),
        ));
        Checker {
            target,
            state,
            task,
        }
    }

    /// The health of `backend` in `virtual_server`: Up when it has no
    /// checker (kind `none`, or not a target).
    pub fn health(&self, virtual_server: &str, backend: IpAddr) -> Health {
        self.checkers
            .get(&(virtual_server.to_owned(), backend))
            .map_or(Health::Up, |checker| lock(&checker.state).health())
    }

    /// The targets being checked, in no particular order.
    pub fn targets_checked(&self) -> impl Iterator<Item = &Target> {
        self.checkers.values().map(|checker| &*checker.target)
    }

    /// Stops every checker and waits until they are gone (commands of
    /// exec checks killed).
    pub async fn shutdown(mut self) {
        let checkers = std::mem::take(&mut self.checkers);
        for checker in checkers.values() {
            checker.task.abort();
        }
        for checker in checkers.into_values() {
            // Cancelled is the expected outcome; a checker that panicked
            // has nothing left to clean up either.
            let _ = checker.task.await;
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        for checker in self.checkers.values() {
            checker.task.abort();
        }
    }
}

fn lock(state: &Mutex<RiseFall>) -> MutexGuard<'_, RiseFall> {
    // The counter is always consistent: a panic elsewhere cannot have
    // left it half-updated.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A checker: probe, record, report, forever (until aborted or the
/// receiver of reports is gone).
async fn run(target: Arc<Target>, state: Arc<Mutex<RiseFall>>, reports: mpsc::Sender<Report>) {
    let interval = target.check.interval.max(MIN_INTERVAL);
    tokio::time::sleep(jitter::first_delay(interval, jitter::random_unit())).await;
    loop {
        let started = Instant::now();
        // Boxed: the probe's state (an HTTPS exchange is about 13 KB) is
        // then held only while it runs, not by every idle checker; with
        // 100,000 checkers that is the difference between tens of
        // megabytes and more than a gigabyte.
        let result = Box::pin(probe::probe(&target)).await;
        let duration = started.elapsed();
        let (changed, streak) = {
            let mut state = lock(&state);
            let changed = state.record(result.is_success());
            (changed, state.streak())
        };
        let (virtual_server, backend) = (&target.virtual_server, target.address);
        match changed {
            Some(health) => {
                tracing::info!(%virtual_server, %backend, ?health, %result, "backend health changed");
            }
            None => tracing::debug!(%virtual_server, %backend, %result, streak, "health check"),
        }
        // The report is made once the channel has room, so that an idle
        // checker's state does not hold one.
        let Ok(permit) = reports.reserve().await else {
            tracing::debug!(%virtual_server, %backend, "report receiver gone: checker stops");
            return;
        };
        permit.send(Report {
            virtual_server: virtual_server.clone(),
            backend,
            result,
            duration,
            changed,
        });
        let next = started + jitter::next_delay(interval, jitter::random_unit());
        tokio::time::sleep_until(next).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HttpCheck, test_configs::one_backend_and};

    /// "web" checked by HTTP, with a second backend on another port, and
    /// "dns", not checked.
    const MORE: &str = r#"
[virtual_server.health_check]
kind = "http"
path = "/healthz"

[[virtual_server.backend]]
address = "10.0.0.12"
port = 8080

[[virtual_server]]
name = "dns"
address = "192.0.2.10"
port = 53
protocol = "udp"

[virtual_server.health_check]
kind = "none"

[[virtual_server.backend]]
address = "10.0.0.21"
"#;

    #[test]
    fn targets_cover_checked_backends_with_their_ports() {
        let config =
            crate::config::parse(&one_backend_and(MORE), "test.toml").expect("valid config");
        let targets = Supervisor::targets(&config);
        assert_eq!(targets.len(), 2);
        let expected_kind = HealthCheckKind::Http(HttpCheck {
            path: "/healthz".into(),
            expect_status: vec![200],
            body_contains: None,
        });
        for (target, (address, port)) in
            targets.iter().zip([("10.0.0.11", 80), ("10.0.0.12", 8080)])
        {
            assert_eq!(target.virtual_server, "web");
            assert_eq!(target.address, address.parse::<IpAddr>().unwrap());
            assert_eq!(target.port, Some(port));
            assert_eq!(target.check.kind, expected_kind);
        }
    }

    /// An idle checker holds its task's state for the whole life of the
    /// daemon, one per checked backend: it must not carry the state of a
    /// probe (an HTTPS exchange alone is about 13 KB, which made 100,000
    /// checkers take 1.5 GB).
    #[test]
    fn an_idle_checker_is_small() {
        let config =
            crate::config::parse(&one_backend_and(MORE), "test.toml").expect("valid config");
        let target = Supervisor::targets(&config).remove(0);
        let state = Arc::new(Mutex::new(RiseFall::with_health(2, 3, Health::Up)));
        let (reports, _) = mpsc::channel(1);
        let checker = run(Arc::new(target), state, reports);
        let size = std::mem::size_of_val(&checker);
        assert!(size <= 512, "an idle checker holds {size} bytes");
    }

    fn target(vs: &str, address: &str, interval_ms: u64) -> Target {
        Target {
            virtual_server: vs.into(),
            address: address.parse().unwrap(),
            port: None,
            check: HealthCheck {
                kind: HealthCheckKind::Exec {
                    command: vec!["false".into()],
                },
                interval: Duration::from_millis(interval_ms),
                timeout: Duration::from_millis(interval_ms),
                rise: 1,
                fall: 1,
            },
        }
    }

    #[tokio::test]
    async fn sync_keeps_unchanged_restarts_changed_and_stops_removed() {
        let (tx, mut rx) = mpsc::channel(64);
        let mut supervisor = Supervisor::new(tx);
        let a = target("web", "10.0.0.1", 20);
        let b = target("web", "10.0.0.2", 20);
        let mut none = target("web", "10.0.0.3", 20);
        none.check.kind = HealthCheckKind::None;
        supervisor.sync(vec![a.clone(), b.clone(), none.clone()]);
        assert_eq!(supervisor.targets_checked().count(), 2);
        // `false` with fall 1: both go down on their first check.
        let mut down = Vec::new();
        while down.len() < 2 {
            let report = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("a report in time")
                .expect("channel open");
            assert_eq!(report.result, Failure::ExitStatus(1).into());
            assert_eq!(report.result.label(), "failure");
            if report.changed == Some(Health::Down) {
                down.push(report.backend);
            }
        }
        for backend in [a.address, b.address] {
            assert_eq!(supervisor.health("web", backend), Health::Down);
        }
        assert_eq!(supervisor.health("web", none.address), Health::Up);
        assert_eq!(supervisor.health("other", a.address), Health::Up);

        // a unchanged, b's check changed to `true` (rise 1), c new.
        let mut b2 = b.clone();
        b2.check.kind = HealthCheckKind::Exec {
            command: vec!["true".into()],
        };
        let c = target("web", "10.0.0.4", 20);
        let a_task = supervisor.checkers[&("web".to_owned(), a.address)]
            .task
            .id();
        supervisor.sync(vec![a.clone(), b2.clone(), c.clone()]);
        assert_eq!(
            supervisor.checkers[&("web".to_owned(), a.address)]
                .task
                .id(),
            a_task,
            "an unchanged target keeps its checker"
        );
        // b keeps its Down verdict across the restart until it rises.
        assert_eq!(supervisor.health("web", b.address), Health::Down);
        assert_eq!(supervisor.health("web", a.address), Health::Down);
        assert_eq!(supervisor.health("web", c.address), Health::Up);
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let report = rx.recv().await.expect("channel open");
                if report.backend == b.address && report.changed == Some(Health::Up) {
                    break;
                }
            }
        })
        .await
        .expect("b comes up under its new check");
        assert_eq!(supervisor.health("web", b.address), Health::Up);

        // Remove everything but c.
        supervisor.sync(vec![c.clone()]);
        assert_eq!(supervisor.targets_checked().collect::<Vec<_>>(), [&c]);
        assert_eq!(supervisor.health("web", a.address), Health::Up);
        supervisor.shutdown().await;
        // Every checker is gone, so the channel closes once drained.
        tokio::time::timeout(Duration::from_secs(5), async {
            while rx.recv().await.is_some() {}
        })
        .await
        .expect("all senders dropped");
    }
}
