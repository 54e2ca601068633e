//! The checked backends of one virtual server that share one check, and
//! the one task that checks them all.
//!
//! A group holds per backend only its port, its [`RiseFall`] state and a
//! generation; its task keeps the schedule (a heap of due times) and the
//! probes in flight, each boxed for as long as it runs. So an idle checked
//! backend is a map entry and a due time, about 100 bytes with the maps'
//! slack, not a task of its own. Both shrink when most members leave.
//!
//! The supervisor changes the members under the group's lock and wakes
//! the task ([`Group::changed`]); the task schedules newcomers at a random
//! point of their first interval and forgets due times and results of
//! members that went away or were replaced since (their generation
//! moved on).
use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, VecDeque},
    net::IpAddr,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use futures_util::{
    FutureExt as _, StreamExt as _,
    future::{AbortHandle, abortable},
    stream::FuturesUnordered,
};
use tokio::{
    sync::{Notify, mpsc},
    time::Instant,
};

use super::{CheckResult, Failure, MIN_INTERVAL, Report, RiseFall, Target, jitter, probe};
use crate::config::HealthCheck;

/// Tells members of one address apart over time ([`Member::generation`]).
pub type Generation = u32;

/// One checked backend.
#[derive(Clone, Copy, Debug)]
pub struct Member {
    /// The port checked (see [`Target::port`]).
    pub port: Option<u16>,
    pub state: RiseFall,
    /// Unique per member: a replaced member gets a new one, so that what
    /// the task still holds for its predecessor is dropped. (32 bits: what
    /// the task holds of a member lasts an interval, and 4 billion members
    /// are not added in one.)
    pub generation: Generation,
    /// The task has put it on its schedule.
    pub scheduled: bool,
}

/// The backends of one virtual server checked with one check.
#[derive(Debug)]
pub struct Group {
    pub virtual_server: Arc<str>,
    pub check: Arc<HealthCheck>,
    members: Mutex<HashMap<IpAddr, Member>>,
    /// Woken by the supervisor after it changed `members`.
    pub changed: Notify,
}

impl Group {
    pub fn new(virtual_server: Arc<str>, check: Arc<HealthCheck>) -> Self {
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
            virtual_server: Arc::clone(&self.virtual_server),
            address,
            port,
            check: Arc::clone(&self.check),
        }
    }
}

/// A due check: when, of whom, of which generation.
pub(super) type Due = Reverse<(Instant, IpAddr, Generation)>;

/// A probe that finished: its backend and generation, when it started,
/// how long it took and its result.
pub(super) struct Done {
    pub address: IpAddr,
    pub generation: Generation,
    pub started: Instant,
    pub duration: Duration,
    pub result: CheckResult,
}

/// A probe in flight; `None` when it was aborted (its member went away or
/// was replaced).
type Probe = Pin<Box<dyn Future<Output = Option<Done>> + Send>>;

/// A recorded result waiting for room in the report channel, and when its
/// member's next check is due once it is sent.
struct Unsent {
    report: Report,
    generation: Generation,
    next: Instant,
}

/// Checks the members of `group`, each every interval (±10%, start to
/// start) after a random first delay, records each result in its state and
/// sends it as a [`Report`]; runs until aborted or until the receiver of
/// reports is gone.
///
/// A full report channel delays the next check of the members whose
/// reports wait (each has at most one waiting), and loses none; probes
/// in flight and other members' checks go on meanwhile, so a slow
/// receiver never makes a probe overrun its timeout.
pub async fn run(group: Arc<Group>, reports: mpsc::Sender<Report>) {
    let interval = group.check.interval.max(MIN_INTERVAL);
    let mut schedule: BinaryHeap<Due> = BinaryHeap::new();
    let mut running: FuturesUnordered<Probe> = FuturesUnordered::new();
    let mut in_flight: HashMap<IpAddr, (Generation, AbortHandle)> = HashMap::new();
    let mut unsent: VecDeque<Unsent> = VecDeque::new();
    let mut changed = true;
    loop {
        if changed {
            schedule_newcomers(&group, &mut schedule, interval);
            abort_stale(&group, &mut in_flight);
            changed = false;
        }
        let next = schedule.peek().map(|Reverse((at, _, _))| *at);
        tokio::select! {
            () = group.changed.notified() => changed = true,
            Some(done) = running.next(), if !running.is_empty() => {
                let Some(done) = done else { continue };
                if in_flight.get(&done.address).is_some_and(|(g, _)| *g == done.generation) {
                    in_flight.remove(&done.address);
                }
                let next = done.started + jitter::next_delay(interval, jitter::random_unit());
                let generation = done.generation;
                if let Some(report) = record(&group, done) {
                    unsent.push_back(Unsent { report, generation, next });
                }
            }
            permit = reports.reserve(), if !unsent.is_empty() => {
                let Ok(permit) = permit else {
                    tracing::debug!(virtual_server = %group.virtual_server, "report receiver gone: checks stop");
                    return;
                };
                let Some(Unsent { report, generation, next }) = unsent.pop_front() else {
                    continue;
                };
                // A member replaced or removed meanwhile has moved on: its
                // old result is not news, and its successor has its own
                // schedule.
                if is_current(&group, report.backend, generation) {
                    let address = report.backend;
                    permit.send(report);
                    schedule.push(Reverse((next, address, generation)));
                }
            }
            () = sleep_until(next), if next.is_some() => {
                start_due(&group, &mut schedule, &mut running, &mut in_flight);
            }
        }
    }
}

/// The member of `address` in `members` if it is still of generation
/// `generation`.
fn current(
    members: &mut HashMap<IpAddr, Member>,
    address: IpAddr,
    generation: Generation,
) -> Option<&mut Member> {
    members
        .get_mut(&address)
        .filter(|m| m.generation == generation)
}

/// Whether `address` is still the member of generation `generation`.
pub(super) fn is_current(group: &Group, address: IpAddr, generation: Generation) -> bool {
    current(&mut group.members(), address, generation).is_some()
}

/// Aborts the probes of members that went away or were replaced (an exec
/// check's command is killed with its probe).
fn abort_stale(group: &Group, in_flight: &mut HashMap<IpAddr, (Generation, AbortHandle)>) {
    in_flight.retain(|address, (generation, handle)| {
        let current = is_current(group, *address, *generation);
        if !current {
            handle.abort();
        }
        current
    });
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// Puts every member not yet on the schedule on it, at a random point of
/// its first interval. A schedule left much larger than the members (most
/// of them went away) drops their due times and gives their room back.
fn schedule_newcomers(group: &Group, schedule: &mut BinaryHeap<Due>, interval: Duration) {
    let now = Instant::now();
    let mut members = group.members();
    if schedule.capacity() > 2 * members.len() {
        schedule.retain(|Reverse((_, address, generation))| {
            current(&mut members, *address, *generation).is_some()
        });
        schedule.shrink_to_fit();
    }
    // Grown to what the members need, not to the next power of two.
    let newcomers = members.values().filter(|m| !m.scheduled).count();
    schedule.reserve_exact(newcomers);
    for (address, member) in members.iter_mut() {
        if !member.scheduled {
            member.scheduled = true;
            let at = now + jitter::first_delay(interval, jitter::random_unit());
            schedule.push(Reverse((at, *address, member.generation)));
        }
    }
}

/// Starts the probes of the members due by now; drops due times of
/// members gone or replaced.
fn start_due(
    group: &Group,
    schedule: &mut BinaryHeap<Due>,
    running: &mut FuturesUnordered<Probe>,
    in_flight: &mut HashMap<IpAddr, (Generation, AbortHandle)>,
) {
    let now = Instant::now();
    let mut members = group.members();
    while let Some(Reverse((at, address, generation))) = schedule.peek().copied() {
        if at > now {
            break;
        }
        schedule.pop();
        let Some(member) = current(&mut members, address, generation) else {
            continue;
        };
        let target = group.target(address, member.port);
        let (probe, handle) = abortable(async move {
            let started = Instant::now();
            // A panic in a probe fails that check, not the group's task.
            let result = AssertUnwindSafe(probe::probe(&target))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Failure::Internal("the probe panicked".into()).into());
            Done {
                address,
                generation,
                started,
                duration: started.elapsed(),
                result,
            }
        });
        in_flight.insert(address, (generation, handle));
        running.push(Box::pin(probe.map(Result::ok)));
    }
}

/// Records a result in its member's state; the report to send, unless the
/// member went away or was replaced while the probe ran.
pub(super) fn record(group: &Group, done: Done) -> Option<Report> {
    let Done {
        address,
        generation,
        duration,
        result,
        ..
    } = done;
    let (changed, streak) = {
        let mut members = group.members();
        let member = current(&mut members, address, generation)?;
        let changed = member.state.record(result.is_success());
        (changed, member.state.streak())
    };
    let virtual_server = &group.virtual_server;
    // The daemon logs a change of verdict when it applies it.
    tracing::debug!(%virtual_server, backend = %address, %result, streak, ?changed, "health check");
    Some(Report {
        virtual_server: Arc::clone(virtual_server),
        backend: address,
        result,
        duration,
        changed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A schedule left with many due times of members gone or replaced
    /// keeps those of the current members and gives the rest of its room
    /// back.
    #[test]
    fn a_schedule_larger_than_its_members_keeps_only_theirs() {
        let group = Group::new("web".into(), Arc::new(HealthCheck::default()));
        let address = |i: u8| IpAddr::from([10, 0, 0, i]);
        for (i, generation) in [(1, 7), (2, 8)] {
            let member = Member {
                port: None,
                state: RiseFall::new(1, 1),
                generation,
                scheduled: true,
            };
            group.members().insert(address(i), member);
        }
        let now = Instant::now();
        let mut schedule: BinaryHeap<Due> =
            (3..=20).map(|i| Reverse((now, address(i), 1))).collect();
        schedule.push(Reverse((now, address(1), 7)));
        schedule.push(Reverse((now, address(2), 8)));
        // A due time of a replaced member: its address, an old generation.
        schedule.push(Reverse((now, address(1), 6)));
        schedule_newcomers(&group, &mut schedule, Duration::from_secs(1));
        let mut left: Vec<(IpAddr, Generation)> = schedule
            .iter()
            .map(|Reverse((_, address, generation))| (*address, *generation))
            .collect();
        left.sort();
        assert_eq!(left, [(address(1), 7), (address(2), 8)]);
        assert!(schedule.capacity() <= 4, "{}", schedule.capacity());
    }
}
