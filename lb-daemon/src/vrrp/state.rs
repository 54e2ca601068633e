//! The VRRP state machine (RFC 5798 §6.4, RFC 3768 §6.4) as a pure
//! function: [`Machine::step`] takes the machine, one [`Event`] and the
//! current time, and returns the next machine and the [`Action`]s the
//! caller performs (send an advert, add or remove the virtual addresses,
//! announce them, run the notify command). No sockets, no clock: every
//! timer is a deadline the caller sleeps until and then reports as
//! [`Event::Timer`].
//!
//! ```text
//!             Startup (priority 255)          higher-priority advert
//!   Initialize ──────────────────────► Master ─────────────────────► Backup
//!        │  Startup                      ▲   Master_Down_Timer fires   │
//!        └──────────────────────► Backup ┴─────────────────────────────┘
//!   any state ── tracked weight-0 failure ──► Fault ── recovery ──► as Startup
//!   Master/Backup ── Shutdown ──► Initialize (a master sends priority 0)
//! ```
//!
//! Fault is keepalived's, not the RFC's: a tracked object with weight 0
//! failed and the instance takes no part until it recovers.
use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use super::packet::Version;
use crate::status::VrrpState;

/// What the machine is configured with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    pub version: Version,
    /// The configured priority, 1..=255 (255: address owner).
    pub priority: u8,
    /// Advertisement_Interval in centiseconds.
    pub advert_interval_cs: u16,
    pub preempt: bool,
    /// After startup, lower-priority masters are not preempted for this long.
    pub preempt_delay: Duration,
    /// This router's primary address on the interface (tie-break, §6.4.3).
    pub primary: IpAddr,
}

/// The armed timer, if any (§6.2: a router runs one of the two).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// Backup: Master_Down_Timer.
    MasterDown(Instant),
    /// Master: Adver_Timer.
    Advert(Instant),
}

/// One input to the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// §6.4.1: the instance starts.
    Startup,
    /// §6.4.2/§6.4.3 "Shutdown event": the instance stops.
    Shutdown,
    /// The armed timer's deadline has passed ([`Machine::deadline`]).
    Timer,
    /// A validated advert for this virtual router (see `validate`).
    Advert {
        src: IpAddr,
        priority: u8,
        interval_cs: u16,
    },
    /// Tracking changed: the priority to advertise, and whether a
    /// weight-0 tracked object fails (Fault).
    Track { effective_priority: u8, fault: bool },
}

/// What the caller must do, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send an advert with this priority (0: the master resigns, §6.4.3).
    SendAdvert { priority: u8 },
    /// Add the virtual addresses to the interface.
    AddAddresses,
    /// Remove them.
    RemoveAddresses,
    /// Gratuitous ARP (IPv4) or unsolicited Neighbor Advertisements (IPv6)
    /// for every virtual address (§6.4.1 (a), §6.4.2).
    Announce,
    /// The state changed: count it, log it, run the notify command.
    Transition { from: VrrpState, to: VrrpState },
}

/// The state of one virtual router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    params: Params,
    state: VrrpState,
    effective_priority: u8,
    fault: bool,
    /// Master_Adver_Interval (v3 learns it from the master's adverts).
    master_adver_interval_cs: u16,
    timer: Option<Timer>,
    /// The current master's primary address, when known.
    master: Option<IpAddr>,
    /// Lower-priority masters are preempted only from this moment on.
    preempt_after: Option<Instant>,
}

impl Machine {
    /// A machine in Initialize; feed it [`Event::Startup`].
    pub fn new(params: Params) -> Machine {
        Machine {
            effective_priority: params.priority,
            master_adver_interval_cs: params.advert_interval_cs,
            params,
            state: VrrpState::Initialize,
            fault: false,
            timer: None,
            master: None,
            preempt_after: None,
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn state(&self) -> VrrpState {
        self.state
    }

    /// The priority this router advertises (configured, then tracked).
    pub fn effective_priority(&self) -> u8 {
        self.effective_priority
    }

    /// Whether a weight-0 tracked object fails (see [`Event::Track`]).
    pub fn fault(&self) -> bool {
        self.fault
    }

    /// The master's primary address, when known (ours when Master).
    pub fn master(&self) -> Option<IpAddr> {
        self.master
    }

    pub fn timer(&self) -> Option<Timer> {
        self.timer
    }

    /// When the caller must feed [`Event::Timer`].
    pub fn deadline(&self) -> Option<Instant> {
        match self.timer? {
            Timer::MasterDown(at) | Timer::Advert(at) => Some(at),
        }
    }

    /// Skew_Time: v3 `((256 - Priority) * Master_Adver_Interval) / 256`
    /// (RFC 5798 §6.1), v2 `(256 - Priority) / 256` seconds (RFC 3768 §6.1).
    pub fn skew_time(&self) -> Duration {
        let weight = u64::from(256 - u16::from(self.effective_priority));
        let unit_us = match self.params.version {
            Version::V3 => u64::from(self.master_adver_interval_cs) * 10_000,
            Version::V2 => 1_000_000,
        };
        Duration::from_micros(weight * unit_us / 256)
    }

    /// Master_Down_Interval: `3 * Master_Adver_Interval + Skew_Time`.
    pub fn master_down_interval(&self) -> Duration {
        self.interval(self.master_adver_interval_cs) * 3 + self.skew_time()
    }

    fn interval(&self, cs: u16) -> Duration {
        Duration::from_millis(u64::from(cs) * 10)
    }

    /// The pure transition function: the machine after `event` at `now`,
    /// and what to do.
    pub fn step(&self, event: Event, now: Instant) -> (Machine, Vec<Action>) {
        let mut next = self.clone();
        let mut actions = Vec::new();
        next.apply(event, now, &mut actions);
        (next, actions)
    }

    fn apply(&mut self, event: Event, now: Instant, out: &mut Vec<Action>) {
        match (self.state, event) {
            (VrrpState::Initialize, Event::Startup) => {
                self.preempt_after = Some(now + self.params.preempt_delay);
                self.start(now, out);
            }
            (VrrpState::Master, Event::Shutdown) => {
                // §6.4.3: cancel the Adver_Timer, send priority 0.
                self.resign(VrrpState::Initialize, out);
            }
            (VrrpState::Backup | VrrpState::Fault, Event::Shutdown) => {
                self.enter(VrrpState::Initialize, None, out);
            }
            (VrrpState::Backup, Event::Timer) => {
                if matches!(self.timer, Some(Timer::MasterDown(at)) if at <= now) {
                    self.become_master(now, out);
                }
            }
            (VrrpState::Master, Event::Timer) => {
                if matches!(self.timer, Some(Timer::Advert(at)) if at <= now) {
                    out.push(Action::SendAdvert {
                        priority: self.effective_priority,
                    });
                    self.arm_advert(now);
                }
            }
            (
                VrrpState::Backup,
                Event::Advert {
                    src,
                    priority,
                    interval_cs,
                },
            ) => self.backup_advert(src, priority, interval_cs, now),
            (
                VrrpState::Master,
                Event::Advert {
                    src,
                    priority,
                    interval_cs,
                },
            ) => self.master_advert(src, priority, interval_cs, now, out),
            (
                _,
                Event::Track {
                    effective_priority,
                    fault,
                },
            ) => self.track(effective_priority, fault, now, out),
            // Adverts and timers outside Backup and Master, a second
            // Startup, Shutdown in Initialize: nothing to do.
            _ => {}
        }
    }

    /// §6.4.1, and leaving Fault.
    /// A router that does not start as Master makes sure it holds none of
    /// the addresses (a predecessor killed without cleaning up may have
    /// left them), as keepalived does at startup.
    fn start(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.fault {
            out.push(Action::RemoveAddresses);
            self.enter(VrrpState::Fault, None, out);
        } else if self.effective_priority == 255 {
            self.become_master(now, out);
        } else {
            self.master_adver_interval_cs = self.params.advert_interval_cs;
            out.push(Action::RemoveAddresses);
            self.enter(VrrpState::Backup, None, out);
            self.arm_master_down(now);
        }
    }

    /// §6.4.1 (priority 255) and §6.4.2 (Master_Down_Timer fires).
    fn become_master(&mut self, now: Instant, out: &mut Vec<Action>) {
        out.push(Action::SendAdvert {
            priority: self.effective_priority,
        });
        out.push(Action::AddAddresses);
        out.push(Action::Announce);
        self.enter(VrrpState::Master, Some(self.params.primary), out);
        self.arm_advert(now);
    }

    /// §6.4.2: an advert while Backup.
    fn backup_advert(&mut self, src: IpAddr, priority: u8, interval_cs: u16, now: Instant) {
        if priority == 0 {
            // The master resigned: take over after Skew_Time.
            self.timer = Some(Timer::MasterDown(now + self.skew_time()));
            return;
        }
        let preempting = self.params.preempt
            && priority < self.effective_priority
            && self.preempt_after.is_none_or(|after| now >= after);
        if preempting {
            // Discard: the Master_Down_Timer runs out and this router
            // takes over.
            return;
        }
        if self.params.version == Version::V3 {
            self.master_adver_interval_cs = interval_cs;
        }
        self.master = Some(src);
        self.arm_master_down(now);
    }

    /// §6.4.3: an advert while Master.
    fn master_advert(
        &mut self,
        src: IpAddr,
        priority: u8,
        interval_cs: u16,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if priority == 0 {
            // Another router resigned: assert mastership at once.
            out.push(Action::SendAdvert {
                priority: self.effective_priority,
            });
            self.arm_advert(now);
            return;
        }
        let ours = self.effective_priority;
        let wins = priority > ours || (priority == ours && higher(src, self.params.primary));
        if !wins {
            return;
        }
        if self.params.version == Version::V3 {
            self.master_adver_interval_cs = interval_cs;
        }
        out.push(Action::RemoveAddresses);
        self.enter(VrrpState::Backup, Some(src), out);
        self.arm_master_down(now);
    }

    /// A master steps down: a priority-0 advert (the backup takes over
    /// after Skew_Time), its addresses removed, then `to`.
    fn resign(&mut self, to: VrrpState, out: &mut Vec<Action>) {
        out.push(Action::SendAdvert { priority: 0 });
        out.push(Action::RemoveAddresses);
        self.enter(to, None, out);
    }

    fn track(&mut self, effective_priority: u8, fault: bool, now: Instant, out: &mut Vec<Action>) {
        let changed = effective_priority != self.effective_priority;
        self.effective_priority = effective_priority;
        self.fault = fault;
        match self.state {
            VrrpState::Initialize => {}
            VrrpState::Fault if !fault => self.start(now, out),
            VrrpState::Fault => {}
            VrrpState::Master if fault => {
                // Resign at once, as keepalived does, rather than make the
                // backup wait for Master_Down_Interval.
                self.resign(VrrpState::Fault, out);
            }
            VrrpState::Backup if fault => self.enter(VrrpState::Fault, None, out),
            VrrpState::Master if changed => {
                // Tell the backups now rather than at the next interval.
                out.push(Action::SendAdvert {
                    priority: self.effective_priority,
                });
                self.arm_advert(now);
            }
            VrrpState::Master | VrrpState::Backup => {}
        }
    }

    fn enter(&mut self, to: VrrpState, master: Option<IpAddr>, out: &mut Vec<Action>) {
        self.master = master;
        self.timer = None;
        if to != self.state {
            out.push(Action::Transition {
                from: self.state,
                to,
            });
            self.state = to;
        }
    }

    fn arm_master_down(&mut self, now: Instant) {
        self.timer = Some(Timer::MasterDown(now + self.master_down_interval()));
    }

    fn arm_advert(&mut self, now: Instant) {
        self.timer = Some(Timer::Advert(
            now + self.interval(self.params.advert_interval_cs),
        ));
    }
}

/// §6.4.3: "the primary IP address of the sender is greater than the
/// local primary IP address" (compared as unsigned integers).
fn higher(theirs: IpAddr, ours: IpAddr) -> bool {
    match (theirs, ours) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a > b,
        (IpAddr::V6(a), IpAddr::V6(b)) => a > b,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
