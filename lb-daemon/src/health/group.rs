//! The checked backends of one virtual server that share one check, and
//! the one task that checks them all.
//!
//! A group holds per backend only its port, its [`RiseFall`] state and a
//! generation (about 50 bytes); its task keeps the schedule (a heap of due
//! times) and the probes in flight, each boxed for as long as it runs. So
//! an idle checked backend costs a few dozen bytes, not a task of its own:
//! 100,000 of them fit in a few megabytes.
//!
//! The supervisor changes the members under the group's lock and wakes
//! the task ([`Group::changed`]); the task schedules newcomers at a random
//! point of their first interval and forgets due times and results of
//! members that went away or were replaced since (their generation
//! moved on).
use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    net::IpAddr,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use futures_util::{StreamExt as _, stream::FuturesUnordered};
use tokio::{
    sync::{Notify, mpsc},
    time::Instant,
};

use super::{CheckResult, MIN_INTERVAL, Report, RiseFall, Target, jitter, probe};
use crate::config::HealthCheck;

/// One checked backend.
#[derive(Clone, Copy, Debug)]
pub struct Member {
    /// The port checked (see [`Target::port`]).
    pub port: Option<u16>,
    pub state: RiseFall,
    /// Unique per member: a replaced member gets a new one, so that what
    /// the task still holds for its predecessor is dropped.
    pub generation: u64,
    /// The task has put it on its schedule.
    pub scheduled: bool,
}

/// The backends of one virtual server checked with one check.
#[derive(Debug)]
pub struct Group {
    pub virtual_server: String,
    pub check: HealthCheck,
    members: Mutex<HashMap<IpAddr, Member>>,
    /// Woken by the supervisor after it changed `members`.
    pub changed: Notify,
}

impl Group {
    pub fn new(virtual_server: String, check: HealthCheck) -> Self {
        Self {
            virtual_server,
            check,
            members: Mutex::new(HashMap::new()),
            changed: Notify::new(),
        }
    }

    /// The members, locked. Every change leaves them consistent, so a
    /// panic elsewhere cannot have left them half-written.
    pub fn members(&self) -> MutexGuard<'_, HashMap<IpAddr, Member>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The target of `address` checked on `port`, as the probes take it.
    pub fn target(&self, address: IpAddr, port: Option<u16>) -> Target {
        Target {
            virtual_server: self.virtual_server.clone(),
            address,
            port,
            check: self.check.clone(),
        }
    }
}

/// A due check: when, of whom, of which generation.
pub(super) type Due = Reverse<(Instant, IpAddr, u64)>;

/// A probe in flight: its backend and generation, when it started, how
/// long it took and its result.
type Probe = Pin<Box<dyn Future<Output = (IpAddr, u64, Instant, Duration, CheckResult)> + Send>>;

/// Checks the members of `group`, each every interval (±10%, start to
/// start) after a random first delay, records each result in its state and
/// sends it as a [`Report`]; runs until aborted or until the receiver of
/// reports is gone.
pub async fn run(group: Arc<Group>, reports: mpsc::Sender<Report>) {
    let interval = group.check.interval.max(MIN_INTERVAL);
    let mut schedule: BinaryHeap<Due> = BinaryHeap::new();
    let mut running: FuturesUnordered<Probe> = FuturesUnordered::new();
    let mut newcomers = true;
    loop {
        if newcomers {
            schedule_newcomers(&group, &mut schedule, interval);
            newcomers = false;
        }
        let next = schedule.peek().map(|Reverse((at, _, _))| *at);
        tokio::select! {
            () = group.changed.notified() => newcomers = true,
            Some((address, generation, started, duration, result)) = running.next(),
                if !running.is_empty() =>
            {
                let Some(report) = record(&group, address, generation, duration, result) else {
                    continue;
                };
                let Ok(permit) = reports.reserve().await else {
                    tracing::debug!(virtual_server = %group.virtual_server, "report receiver gone: checks stop");
                    return;
                };
                permit.send(report);
                let at = started + jitter::next_delay(interval, jitter::random_unit());
                schedule.push(Reverse((at, address, generation)));
            }
            () = sleep_until(next), if next.is_some() => {
                start_due(&group, &mut schedule, &mut running);
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// Puts every member not yet on the schedule on it, at a random point of
/// its first interval.
fn schedule_newcomers(group: &Group, schedule: &mut BinaryHeap<Due>, interval: Duration) {
    let now = Instant::now();
    for (address, member) in group.members().iter_mut() {
        if !member.scheduled {
            member.scheduled = true;
            let at = now + jitter::first_delay(interval, jitter::random_unit());
            schedule.push(Reverse((at, *address, member.generation)));
        }
    }
}

/// Starts the probes of the members due by now; drops due times of
/// members gone or replaced.
fn start_due(group: &Group, schedule: &mut BinaryHeap<Due>, running: &mut FuturesUnordered<Probe>) {
    let now = Instant::now();
    let members = group.members();
    while let Some(Reverse((at, address, generation))) = schedule.peek().copied() {
        if at > now {
            break;
        }
        schedule.pop();
        let Some(member) = members.get(&address) else {
            continue;
        };
        if member.generation != generation {
            continue;
        }
        let target = group.target(address, member.port);
        running.push(Box::pin(async move {
            let started = Instant::now();
            let result = probe::probe(&target).await;
            (address, generation, started, started.elapsed(), result)
        }));
    }
}

/// Records a result in its member's state; the report to send, unless the
/// member went away or was replaced while the probe ran.
fn record(
    group: &Group,
    address: IpAddr,
    generation: u64,
    duration: Duration,
    result: CheckResult,
) -> Option<Report> {
    let (changed, streak) = {
        let mut members = group.members();
        let member = members
            .get_mut(&address)
            .filter(|m| m.generation == generation)?;
        let changed = member.state.record(result.is_success());
        (changed, member.state.streak())
    };
    let virtual_server = &group.virtual_server;
    match changed {
        Some(health) => {
            tracing::info!(%virtual_server, backend = %address, ?health, %result, "backend health changed");
        }
        None => {
            tracing::debug!(%virtual_server, backend = %address, %result, streak, "health check");
        }
    }
    Some(Report {
        virtual_server: virtual_server.clone(),
        backend: address,
        result,
        duration,
        changed,
    })
}
