//! Health checks of the backends (DESIGN.md §4 `[virtual_server.health_check]`).
//!
//! ```text
//!   Config ──Supervisor::targets──▶ Vec<Target> ──Supervisor::sync──▶ one group per virtual server
//!                                                                      and check, one task each
//!                                                                        │ probe each member every interval (±10%)
//!                                                                        │ RiseFall::record
//!   daemon ◀──────────────── mpsc::Sender<Report> ◀──────────────────────┘
//! ```
//!
//! - [`Supervisor`] keeps the checked backends ([`Target`]s: backends of
//!   virtual servers whose check kind is not `none`) in groups, one per
//!   virtual server and check ([`group`]); it adds, removes and replaces
//!   members on [`Supervisor::sync`] and answers [`Supervisor::health`].
//! - A group's task checks each member after a random offset within its
//!   interval ([`jitter`]), then every interval ±10%, measured start to
//!   start, with [`probe`]; every result goes out as a [`Report`], whose
//!   `changed` is set when the result flipped the backend's health. An
//!   idle member is a few dozen bytes: 100,000 checked backends cost the
//!   daemon megabytes, not a task each.
//! - [`state::RiseFall`] is the pure rise/fall counter: a new backend is
//!   **Up** and goes Down after `fall` consecutive failures; a Down one
//!   comes back Up after `rise` consecutive successes.
//! - Probes: `tcp` (connect), `http`/`https` ([`http`], [`tls`]: status
//!   in `expect_status`, optional body substring), `udp` (a reply,
//!   containing `expect` if set), `exec` (exit status 0; the process group
//!   is killed on timeout). Each is bounded by the check's timeout and
//!   fails with a typed [`Failure`].
//!
//! Group tasks only send reports; the daemon decides what a change does
//! to the maps. Backends that are not checked (kind `none`, or unknown)
//! are always Up.
mod group;
pub mod http;
pub mod jitter;
pub mod probe;
mod result;
pub mod state;
pub mod tls;

use std::{collections::HashMap, net::IpAddr, sync::Arc, time::Duration};

use group::{Group, Member};
use tokio::{sync::mpsc, task::JoinHandle};

pub use result::{CheckResult, Failure};
pub use state::RiseFall;

use crate::{
    config::{Config, HealthCheck, HealthCheckKind},
    status::Health,
};

/// Shortest interval a check runs at, whatever it is given (the config
/// validates intervals as positive; this only keeps a zero from spinning).
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// One backend of one virtual server to check. The name and the check
/// are shared by the virtual server's targets (and its group's probes):
/// a target costs no allocation of its own.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub virtual_server: Arc<str>,
    pub address: IpAddr,
    /// The port checked ([`crate::config::VirtualServer::health_port`]);
    /// kinds that connect fail with [`Failure::NoPort`] without one.
    pub port: Option<u16>,
    pub check: Arc<HealthCheck>,
}

/// The result of one check, sent by its group after every check.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub virtual_server: Arc<str>,
    pub backend: IpAddr,
    pub result: CheckResult,
    /// How long the check took (at most about the timeout).
    pub duration: Duration,
    /// Some(new) when this result changed the backend's health.
    pub changed: Option<Health>,
}

/// Identifies a checked backend: (virtual server, backend address).
type Key = (Arc<str>, IpAddr);

/// The running groups of checks.
///
/// Must be used inside a tokio runtime (with time, I/O and process
/// drivers): [`Supervisor::sync`] spawns tasks on it. Dropping the
/// supervisor stops every check, as [`Supervisor::shutdown`] does without
/// waiting.
#[derive(Debug)]
pub struct Supervisor {
    reports: mpsc::Sender<Report>,
    /// By virtual server: its groups, one per distinct check (one, unless
    /// targets were given different checks).
    groups: HashMap<Arc<str>, Vec<Running>>,
    /// The generation of the last member added.
    generation: group::Generation,
}

/// A group and its task.
#[derive(Debug)]
struct Running {
    group: Arc<Group>,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// A supervisor without checks; reports go to `reports`. A backend
    /// whose report waits for room in the channel is not checked again
    /// until it is sent (none is lost); other checks go on. A group's
    /// task stops when the receiver is gone.
    pub fn new(reports: mpsc::Sender<Report>) -> Self {
        Self {
            reports,
            groups: HashMap::new(),
            generation: 0,
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
                let name: Arc<str> = vs.name.as_str().into();
                let check = Arc::new(vs.health_check.clone());
                vs.backends.iter().map(move |backend| Target {
                    virtual_server: Arc::clone(&name),
                    address: backend.address,
                    port: vs.health_port(backend),
                    check: Arc::clone(&check),
                })
            })
            .collect()
    }

    /// Starts checks of new targets, stops removed ones, restarts changed
    /// ones; a target whose check did not change keeps its schedule, its
    /// rise/fall state (its health and its streak).
    ///
    /// A target identified by (virtual server, address) whose port or
    /// check changed is checked afresh: it keeps the backend's current
    /// health and counts its streak anew with the new rise and fall (a
    /// Down backend is not brought Up by a reload). Targets of kind `none`
    /// are not checked. When one (virtual server, address) appears twice,
    /// the last one counts.
    ///
    /// # Panics
    /// Outside a tokio runtime (group tasks are spawned on it).
    ///
    /// Returns the (virtual server, backend) pairs whose checks stopped.
    pub fn sync(&mut self, targets: Vec<Target>) -> Vec<(String, IpAddr)> {
        let mut wanted: HashMap<Key, Target> = HashMap::with_capacity(targets.len());
        for target in targets {
            if target.check.kind != HealthCheckKind::None {
                wanted.insert((Arc::clone(&target.virtual_server), target.address), target);
            }
        }
        let mut stopped = Vec::new();
        // The health of members whose port or check changed: they are
        // checked afresh, in the group of their new check.
        let mut moving: HashMap<Key, Health> = HashMap::new();
        for (name, groups) in &self.groups {
            for running in groups {
                running.group.members().retain(|address, member| {
                    let key = (Arc::clone(name), *address);
                    match wanted.get(&key) {
                        Some(t) if t.check == running.group.check && t.port == member.port => true,
                        Some(_) => {
                            moving.insert(key, member.state.health());
                            false
                        }
                        None => {
                            stopped.push((key.0.to_string(), key.1));
                            false
                        }
                    }
                });
            }
        }
        for (key, target) in wanted {
            let group = self.group_of(&target);
            let mut members = group.members();
            if members.contains_key(&target.address) {
                continue;
            }
            let health = match moving.remove(&key) {
                Some(health) => {
                    tracing::info!(
                        virtual_server = %target.virtual_server,
                        backend = %target.address,
                        ?health,
                        "health check changed: checking afresh"
                    );
                    health
                }
                None => Health::Up,
            };
            self.generation = self.generation.wrapping_add(1);
            let member = Member {
                port: target.port,
                state: RiseFall::with_health(target.check.rise, target.check.fall, health),
                generation: self.generation,
                scheduled: false,
            };
            members.insert(target.address, member);
        }
        self.settle();
        stopped
    }

    /// The group of `target`'s virtual server and check, started if new.
    fn group_of(&mut self, target: &Target) -> Arc<Group> {
        let groups = self
            .groups
            .entry(Arc::clone(&target.virtual_server))
            .or_default();
        if let Some(running) = groups.iter().find(|r| r.group.check == target.check) {
            return Arc::clone(&running.group);
        }
        let group = Arc::new(Group::new(
            Arc::clone(&target.virtual_server),
            Arc::clone(&target.check),
        ));
        let task = tokio::spawn(group::run(Arc::clone(&group), self.reports.clone()));
        groups.push(Running {
            group: Arc::clone(&group),
            task,
        });
        group
    }

    /// Stops groups left without members and wakes the others, whose
    /// members may have changed; a group that lost most of its members
    /// gives their room back.
    fn settle(&mut self) {
        for groups in self.groups.values_mut() {
            groups.retain(|running| {
                let mut members = running.group.members();
                let empty = members.is_empty();
                if empty {
                    running.task.abort();
                } else {
                    if members.capacity() > 2 * members.len() {
                        members.shrink_to_fit();
                    }
                    running.group.changed.notify_one();
                }
                !empty
            });
        }
        self.groups.retain(|_, groups| !groups.is_empty());
    }

    /// The member `backend` of `virtual_server`, if it is checked.
    fn member(&self, virtual_server: &str, backend: IpAddr) -> Option<Member> {
        self.groups
            .get(virtual_server)?
            .iter()
            .find_map(|running| running.group.members().get(&backend).copied())
    }

    /// Whether some backend of `virtual_server` is being checked.
    pub fn is_checking(&self, virtual_server: &str) -> bool {
        self.groups.contains_key(virtual_server)
    }

    /// Whether `backend` of `virtual_server` is being checked.
    pub fn is_checked(&self, virtual_server: &str, backend: IpAddr) -> bool {
        self.member(virtual_server, backend).is_some()
    }

    /// The health of `backend` in `virtual_server`: Up when it is not
    /// checked (kind `none`, or not a target).
    pub fn health(&self, virtual_server: &str, backend: IpAddr) -> Health {
        self.member(virtual_server, backend)
            .map_or(Health::Up, |member| member.state.health())
    }

    /// The targets being checked, in no particular order.
    pub fn targets_checked(&self) -> Vec<Target> {
        self.groups
            .values()
            .flatten()
            .flat_map(|running| {
                let group = &running.group;
                let members: Vec<(IpAddr, Option<u16>)> = group
                    .members()
                    .iter()
                    .map(|(address, member)| (*address, member.port))
                    .collect();
                members
                    .into_iter()
                    .map(|(address, port)| group.target(address, port))
            })
            .collect()
    }

    /// Stops every check and waits until the group tasks are gone
    /// (commands of exec checks killed: a probe in flight is dropped with
    /// its task).
    pub async fn shutdown(mut self) {
        let groups = std::mem::take(&mut self.groups);
        let running: Vec<Running> = groups.into_values().flatten().collect();
        for r in &running {
            r.task.abort();
        }
        for r in running {
            // Cancelled is the expected outcome; a task that panicked has
            // nothing left to clean up either.
            let _ = r.task.await;
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        for running in self.groups.values().flatten() {
            running.task.abort();
        }
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
            assert_eq!(&*target.virtual_server, "web");
            assert_eq!(target.address, address.parse::<IpAddr>().unwrap());
            assert_eq!(target.port, Some(port));
            assert_eq!(target.check.kind, expected_kind);
        }
    }

    /// An idle checked backend is a group member and one due time on its
    /// group's schedule, for the whole life of the daemon: no task, and
    /// no probe state (an HTTPS exchange alone is about 13 KB; a task per
    /// backend holding one made 100,000 checked backends take 1.5 GB).
    #[test]
    fn an_idle_checked_backend_is_small() {
        let member = std::mem::size_of::<(IpAddr, Member)>();
        let due = std::mem::size_of::<group::Due>();
        assert!(member + due <= 128, "{member} + {due} bytes");
    }

    /// A backend whose port and check changed is checked afresh under
    /// the new check, keeping its verdict until a check of the new kind
    /// changes it.
    #[tokio::test]
    async fn a_new_port_is_checked_afresh_with_the_old_verdict() {
        let (tx, mut rx) = mpsc::channel(64);
        let mut supervisor = Supervisor::new(tx);
        let mut a = target("web", "10.0.0.1", EXEC_INTERVAL_MS);
        supervisor.sync(vec![a.clone()]);
        tokio::time::timeout(Duration::from_secs(5), async {
            while rx.recv().await.expect("channel open").changed != Some(Health::Down) {}
        })
        .await
        .expect("a goes down in time");
        let before = supervisor.member("web", a.address).expect("checked");

        a.port = Some(8080);
        // `true` with rise 1 would bring it up at once: the verdict must
        // come from a check, not from the reload.
        Arc::make_mut(&mut a.check).kind = exec(&["true"]);
        assert_eq!(supervisor.sync(vec![a.clone()]), vec![]);
        let after = supervisor.member("web", a.address).expect("still checked");
        assert_eq!(
            (after.port, after.state.health()),
            (Some(8080), Health::Down)
        );
        assert_ne!(after.generation, before.generation);
        assert_eq!(supervisor.targets_checked(), vec![a.clone()]);
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let report = rx.recv().await.expect("channel open");
                if report.result == CheckResult::Success {
                    assert_eq!(report.changed, Some(Health::Up));
                    break;
                }
            }
        })
        .await
        .expect("a comes up under its new check");
        supervisor.shutdown().await;
    }

    /// A receiver that falls behind delays checks but does not stall the
    /// probes in flight: each is timed (and bounded by its timeout) as it
    /// runs, not as long as nobody read, and none is lost.
    #[tokio::test]
    async fn a_full_report_channel_does_not_stall_probes() {
        // The interval and timeout: room for a 0.1 s script to run on a
        // loaded machine.
        const INTERVAL_MS: u64 = 1000;
        let (tx, mut rx) = mpsc::channel(1);
        let mut supervisor = Supervisor::new(tx);
        let targets: Vec<Target> = (1..=4)
            .map(|i| {
                let mut t = target("web", &format!("10.0.0.{i}"), INTERVAL_MS);
                Arc::make_mut(&mut t.check).kind = exec(&["sh", "-c", "sleep 0.1"]);
                t
            })
            .collect();
        supervisor.sync(targets.clone());
        // Nobody reads for three timeouts.
        tokio::time::sleep(Duration::from_millis(3 * INTERVAL_MS)).await;
        let mut seen: HashMap<IpAddr, u32> = HashMap::new();
        tokio::time::timeout(Duration::from_secs(10), async {
            while seen.len() < targets.len() {
                let report = rx.recv().await.expect("channel open");
                assert_eq!(report.result, CheckResult::Success, "{report:?}");
                // A probe of 0.1 s, not the time nobody read.
                assert!(
                    report.duration < Duration::from_millis(2 * INTERVAL_MS),
                    "{report:?}"
                );
                *seen.entry(report.backend).or_default() += 1;
            }
        })
        .await
        .expect("every backend reported");
        supervisor.shutdown().await;
    }

    /// A result is recorded and reported only for the member whose probe
    /// it is: a replaced member's old result is dropped.
    #[tokio::test]
    async fn a_replaced_members_old_result_is_dropped() {
        let (tx, _rx) = mpsc::channel(1);
        let mut supervisor = Supervisor::new(tx);
        let mut a = target("web", "10.0.0.1", 60_000);
        supervisor.sync(vec![a.clone()]);
        let old = supervisor.member("web", a.address).expect("checked");
        a.port = Some(8080);
        supervisor.sync(vec![a.clone()]);
        let new = supervisor.member("web", a.address).expect("checked");
        let group = Arc::clone(&supervisor.groups["web"][0].group);
        assert!(!group::is_current(&group, a.address, old.generation));
        assert!(group::is_current(&group, a.address, new.generation));
        let done = |generation| group::Done {
            address: a.address,
            generation,
            started: tokio::time::Instant::now(),
            duration: Duration::from_millis(1),
            result: Failure::Refused.into(),
        };
        assert_eq!(group::record(&group, done(old.generation)), None);
        assert_eq!(
            supervisor.member("web", a.address).unwrap().state,
            new.state
        );
        let report = group::record(&group, done(new.generation)).expect("current");
        assert_eq!(
            (report.backend, report.changed),
            (a.address, Some(Health::Down))
        );
        supervisor.shutdown().await;
    }

    /// One task checks every member of a group, each once per interval.
    #[tokio::test]
    async fn one_group_checks_all_its_backends() {
        let (tx, mut rx) = mpsc::channel(256);
        let mut supervisor = Supervisor::new(tx);
        let targets: Vec<Target> = (1..=20)
            .map(|i| target("web", &format!("10.0.0.{i}"), 50))
            .collect();
        supervisor.sync(targets.clone());
        assert_eq!(supervisor.groups["web"].len(), 1, "one check, one group");
        let mut checks: HashMap<IpAddr, u32> = HashMap::new();
        tokio::time::timeout(Duration::from_secs(10), async {
            while checks.len() < targets.len() || checks.values().any(|&n| n < 2) {
                let report = rx.recv().await.expect("channel open");
                *checks.entry(report.backend).or_default() += 1;
            }
        })
        .await
        .expect("every backend checked twice in time");
        for target in &targets {
            assert_eq!(supervisor.health("web", target.address), Health::Down);
        }
        supervisor.shutdown().await;
    }

    /// An exec check of `argv`.
    fn exec(argv: &[&str]) -> HealthCheckKind {
        HealthCheckKind::Exec {
            command: argv.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    /// An interval (and timeout) of exec checks whose result matters: room
    /// for spawning a process on a loaded machine, where 20 ms could time
    /// `false` out instead of failing it with its exit status.
    const EXEC_INTERVAL_MS: u64 = 250;

    /// A backend of `vs` checked by `false` (rise 1, fall 1) every
    /// `interval_ms`, with that timeout.
    fn target(vs: &str, address: &str, interval_ms: u64) -> Target {
        Target {
            virtual_server: vs.into(),
            address: address.parse().unwrap(),
            port: None,
            check: Arc::new(HealthCheck {
                kind: exec(&["false"]),
                interval: Duration::from_millis(interval_ms),
                timeout: Duration::from_millis(interval_ms),
                rise: 1,
                fall: 1,
            }),
        }
    }

    /// A reload that leaves a group a few of its many members gives the
    /// room of the others back (the checks are hours apart: none runs).
    #[tokio::test]
    async fn a_group_that_lost_most_members_shrinks() {
        let (tx, _rx) = mpsc::channel(64);
        let mut supervisor = Supervisor::new(tx);
        let hour = 3_600_000;
        let many: Vec<Target> = (0..1000u32)
            .map(|i| target("web", &IpAddr::from(i.to_be_bytes()).to_string(), hour))
            .collect();
        let few = many[..10].to_vec();
        let capacity = |supervisor: &Supervisor| {
            let groups = &supervisor.groups["web"];
            groups[0].group.members().capacity()
        };
        supervisor.sync(many);
        assert!(capacity(&supervisor) >= 1000);
        supervisor.sync(few);
        assert_eq!(supervisor.targets_checked().len(), 10);
        assert!(capacity(&supervisor) < 64, "{}", capacity(&supervisor));
    }

    #[tokio::test]
    async fn sync_keeps_unchanged_restarts_changed_and_stops_removed() {
        let (tx, mut rx) = mpsc::channel(64);
        let mut supervisor = Supervisor::new(tx);
        let a = target("web", "10.0.0.1", EXEC_INTERVAL_MS);
        let b = target("web", "10.0.0.2", EXEC_INTERVAL_MS);
        let mut none = target("web", "10.0.0.3", EXEC_INTERVAL_MS);
        Arc::make_mut(&mut none.check).kind = HealthCheckKind::None;
        supervisor.sync(vec![a.clone(), b.clone(), none.clone()]);
        assert_eq!(supervisor.targets_checked().len(), 2);
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
        Arc::make_mut(&mut b2.check).kind = exec(&["true"]);
        let c = target("web", "10.0.0.4", EXEC_INTERVAL_MS);
        let generation = |s: &Supervisor, address| s.member("web", address).map(|m| m.generation);
        let a_generation = generation(&supervisor, a.address);
        let b_generation = generation(&supervisor, b.address);
        supervisor.sync(vec![a.clone(), b2.clone(), c.clone()]);
        assert_eq!(
            generation(&supervisor, a.address),
            a_generation,
            "an unchanged target keeps its schedule and state"
        );
        assert_ne!(generation(&supervisor, b.address), b_generation);
        assert_eq!(supervisor.groups["web"].len(), 2, "b's new check");
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
        assert_eq!(supervisor.targets_checked(), vec![c.clone()]);
        assert_eq!(
            supervisor.groups["web"].len(),
            1,
            "a group without members stops"
        );
        assert_eq!(supervisor.health("web", a.address), Health::Up);
        supervisor.shutdown().await;
        // Every group is gone, so the channel closes once drained.
        tokio::time::timeout(Duration::from_secs(5), async {
            while rx.recv().await.is_some() {}
        })
        .await
        .expect("all senders dropped");
    }
}
