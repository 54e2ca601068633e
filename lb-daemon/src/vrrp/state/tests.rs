//! One test per rule of RFC 5798 §6.4 (and RFC 3768 where v2 differs),
//! with the time passed in: no sockets, no sleeping.
use super::*;

const SECOND: Duration = Duration::from_secs(1);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn params(priority: u8) -> Params {
    Params {
        version: Version::V3,
        priority,
        advert_interval_cs: 100,
        preempt: true,
        preempt_delay: Duration::ZERO,
        primary: ip("192.0.2.2"),
    }
}

fn advert(src: &str, priority: u8) -> Event {
    Event::Advert {
        src: ip(src),
        priority,
        interval_cs: 100,
    }
}

/// Feeds `events` in order at `now`, returning the last actions.
fn run(machine: &mut Machine, event: Event, now: Instant) -> Vec<Action> {
    let (next, actions) = machine.step(event, now);
    *machine = next;
    actions
}

fn started(params: Params, t0: Instant) -> Machine {
    let mut m = Machine::new(params);
    run(&mut m, Event::Startup, t0);
    m
}

fn transition(from: VrrpState, to: VrrpState) -> Action {
    Action::Transition { from, to }
}

fn become_master(priority: u8) -> Vec<Action> {
    vec![
        Action::SendAdvert { priority },
        Action::AddAddresses,
        Action::Announce,
        transition(VrrpState::Backup, VrrpState::Master),
    ]
}

/// Brings a machine to Master by letting its Master_Down_Timer expire.
fn master(params: Params, t0: Instant) -> (Machine, Instant) {
    let mut m = started(params, t0);
    let at = m.deadline().unwrap();
    run(&mut m, Event::Timer, at);
    assert_eq!(m.state(), VrrpState::Master);
    (m, at)
}

#[test]
fn skew_and_master_down_interval_follow_the_formulas() {
    // §6.1: Skew_Time = ((256 - 100) * 100 cs) / 256 = 60.9375 cs.
    let m = Machine::new(params(100));
    assert_eq!(m.skew_time(), Duration::from_micros(609_375));
    assert_eq!(m.master_down_interval(), Duration::from_micros(3_609_375));
    // 100 ms adverts: 3 * 100 ms + 60.9375 ms.
    let mut fast = params(100);
    fast.advert_interval_cs = 10;
    assert_eq!(
        Machine::new(fast).master_down_interval(),
        Duration::from_micros(360_937)
    );
    // RFC 3768 §6.1: v2 skew is (256 - priority) / 256 seconds whatever
    // the interval.
    let mut v2 = params(200);
    v2.version = Version::V2;
    v2.advert_interval_cs = 300;
    let m = Machine::new(v2);
    assert_eq!(m.skew_time(), Duration::from_micros(218_750));
    assert_eq!(m.master_down_interval(), Duration::from_micros(9_218_750));
}

#[test]
fn startup_as_backup_arms_the_master_down_timer() {
    // §6.4.1: not the owner -> Backup, Master_Down_Timer = Master_Down_Interval.
    let t0 = Instant::now();
    let mut m = Machine::new(params(100));
    let actions = run(&mut m, Event::Startup, t0);
    assert_eq!(
        actions,
        [
            Action::RemoveAddresses,
            transition(VrrpState::Initialize, VrrpState::Backup)
        ]
    );
    assert_eq!(m.state(), VrrpState::Backup);
    assert_eq!(
        m.timer(),
        Some(Timer::MasterDown(t0 + Duration::from_micros(3_609_375)))
    );
    assert_eq!(m.master(), None);
}

#[test]
fn startup_as_owner_becomes_master_at_once() {
    // §6.4.1: priority 255 -> send an advert, announce, Adver_Timer, Master.
    let t0 = Instant::now();
    let mut m = Machine::new(params(255));
    let actions = run(&mut m, Event::Startup, t0);
    assert_eq!(
        actions,
        [
            Action::SendAdvert { priority: 255 },
            Action::AddAddresses,
            Action::Announce,
            transition(VrrpState::Initialize, VrrpState::Master),
        ]
    );
    assert_eq!(m.timer(), Some(Timer::Advert(t0 + SECOND)));
    assert_eq!(m.master(), Some(ip("192.0.2.2")));
}

#[test]
fn master_down_timer_expiry_makes_the_backup_master() {
    // §6.4.2: Master_Down_Timer fires -> advert, announce, Master.
    let t0 = Instant::now();
    let mut m = started(params(100), t0);
    let deadline = m.deadline().unwrap();
    // A wake-up before the deadline changes nothing.
    assert!(run(&mut m, Event::Timer, deadline - Duration::from_millis(1)).is_empty());
    assert_eq!(m.state(), VrrpState::Backup);
    assert_eq!(run(&mut m, Event::Timer, deadline), become_master(100));
    assert_eq!(m.timer(), Some(Timer::Advert(deadline + SECOND)));
}

#[test]
fn master_sends_an_advert_every_interval() {
    // §6.4.3: Adver_Timer fires -> send an advert, reset the timer.
    let (mut m, at) = master(params(100), Instant::now());
    let next = at + SECOND;
    assert!(run(&mut m, Event::Timer, next - Duration::from_millis(1)).is_empty());
    assert_eq!(
        run(&mut m, Event::Timer, next),
        [Action::SendAdvert { priority: 100 }]
    );
    assert_eq!(m.timer(), Some(Timer::Advert(next + SECOND)));
}

#[test]
fn backup_resets_its_timer_on_adverts_from_a_higher_priority_master() {
    // §6.4.2: priority >= local -> reset Master_Down_Timer, learn the master.
    let t0 = Instant::now();
    let mut m = started(params(100), t0);
    let t1 = t0 + 3 * SECOND;
    assert!(run(&mut m, advert("192.0.2.3", 150), t1).is_empty());
    assert_eq!(m.deadline(), Some(t1 + m.master_down_interval()));
    assert_eq!(m.master(), Some(ip("192.0.2.3")));
    // An equal priority also keeps it Backup (">= the local Priority").
    let t2 = t1 + 3 * SECOND;
    assert!(run(&mut m, advert("192.0.2.1", 100), t2).is_empty());
    assert_eq!(m.deadline(), Some(t2 + m.master_down_interval()));
    assert_eq!(m.state(), VrrpState::Backup);
}

#[test]
fn v3_backup_learns_the_masters_interval_and_v2_does_not() {
    // RFC 5798 §6.4.2: Master_Adver_Interval := the advert's interval.
    let t0 = Instant::now();
    let mut m = started(params(100), t0);
    let fast = Event::Advert {
        src: ip("192.0.2.3"),
        priority: 200,
        interval_cs: 10,
    };
    run(&mut m, fast, t0);
    assert_eq!(m.deadline(), Some(t0 + Duration::from_micros(360_937)));
    // RFC 3768: v2 has no Master_Adver_Interval; its own interval counts.
    let mut v2 = params(100);
    v2.version = Version::V2;
    let mut m = started(v2, t0);
    run(&mut m, fast, t0);
    assert_eq!(m.deadline(), Some(t0 + Duration::from_micros(3_609_375)));
}

#[test]
fn priority_zero_makes_the_backup_take_over_after_skew_time() {
    // §6.4.2: priority 0 -> Master_Down_Timer := Skew_Time.
    let t0 = Instant::now();
    let mut m = started(params(100), t0);
    run(&mut m, advert("192.0.2.3", 200), t0);
    let t1 = t0 + SECOND;
    assert!(run(&mut m, advert("192.0.2.3", 0), t1).is_empty());
    let skew = Duration::from_micros(609_375);
    assert_eq!(m.deadline(), Some(t1 + skew));
    assert!(m.deadline().unwrap() < t1 + m.master_down_interval());
    assert_eq!(run(&mut m, Event::Timer, t1 + skew), become_master(100));
}

#[test]
fn preempting_backup_ignores_a_lower_priority_master() {
    // §6.4.2: preempt and lower priority -> discard, so the timer expires.
    let t0 = Instant::now();
    let mut m = started(params(150), t0);
    let deadline = m.deadline().unwrap();
    for i in 1..=3 {
        run(&mut m, advert("192.0.2.3", 100), t0 + i * SECOND);
        assert_eq!(m.deadline(), Some(deadline), "advert {i} reset the timer");
    }
    assert_eq!(run(&mut m, Event::Timer, deadline), become_master(150));
}

#[test]
fn non_preempting_backup_follows_a_lower_priority_master() {
    // §6.4.2: Preempt_Mode False -> reset the timer whatever the priority.
    let t0 = Instant::now();
    let mut p = params(150);
    p.preempt = false;
    let mut m = started(p, t0);
    for i in 1..=10 {
        let now = t0 + i * SECOND;
        run(&mut m, advert("192.0.2.3", 100), now);
        run(&mut m, Event::Timer, now);
        assert_eq!(m.state(), VrrpState::Backup);
    }
}

#[test]
fn preempt_delay_holds_preemption_off_until_it_has_passed() {
    let t0 = Instant::now();
    let mut p = params(150);
    p.preempt_delay = 10 * SECOND;
    let mut m = started(p, t0);
    // During the delay the lower-priority master is followed.
    for i in 1..=9 {
        let now = t0 + i * SECOND;
        run(&mut m, advert("192.0.2.3", 100), now);
        assert_eq!(m.deadline(), Some(now + m.master_down_interval()));
        run(&mut m, Event::Timer, now);
        assert_eq!(m.state(), VrrpState::Backup);
    }
    // After it, its adverts are discarded and the timer runs out.
    let last_reset = m.deadline().unwrap();
    run(&mut m, advert("192.0.2.3", 100), t0 + 10 * SECOND);
    run(&mut m, advert("192.0.2.3", 100), t0 + 11 * SECOND);
    assert_eq!(m.deadline(), Some(last_reset));
    assert_eq!(run(&mut m, Event::Timer, last_reset), become_master(150));
}

#[test]
fn master_yields_to_a_higher_priority() {
    // §6.4.3: higher priority -> cancel Adver_Timer, Backup, Master_Down_Timer.
    let (mut m, at) = master(params(100), Instant::now());
    let fast = Event::Advert {
        src: ip("192.0.2.3"),
        priority: 101,
        interval_cs: 50,
    };
    assert_eq!(
        run(&mut m, fast, at),
        [
            Action::RemoveAddresses,
            transition(VrrpState::Master, VrrpState::Backup)
        ]
    );
    assert_eq!(m.master(), Some(ip("192.0.2.3")));
    // Master_Adver_Interval learnt: 3 * 50 cs + 156 * 50 / 256 cs.
    assert_eq!(
        m.timer(),
        Some(Timer::MasterDown(at + Duration::from_micros(1_804_687)))
    );
}

#[test]
fn equal_priority_is_broken_by_the_higher_primary_address() {
    // §6.4.3: equal priority and a greater primary address -> Backup.
    let (m, at) = master(params(100), Instant::now());
    let (lower, actions) = m.step(advert("192.0.2.1", 100), at);
    assert!(actions.is_empty());
    assert_eq!(lower.state(), VrrpState::Master);
    let (higher, actions) = m.step(advert("192.0.2.3", 100), at);
    assert_eq!(
        actions,
        [
            Action::RemoveAddresses,
            transition(VrrpState::Master, VrrpState::Backup)
        ]
    );
    assert_eq!(higher.state(), VrrpState::Backup);
    // Unsigned comparison: 192.0.2.10 > 192.0.2.9.
    let mut p = params(100);
    p.primary = ip("192.0.2.9");
    let (m, at) = master(p, Instant::now());
    assert_eq!(
        m.step(advert("192.0.2.10", 100), at).0.state(),
        VrrpState::Backup
    );
    // IPv6 link-local primaries compare the same way.
    let mut p = params(100);
    p.primary = ip("fe80::2");
    let (m, at) = master(p, Instant::now());
    assert_eq!(
        m.step(advert("fe80::1", 100), at).0.state(),
        VrrpState::Master
    );
    assert_eq!(
        m.step(advert("fe80::3", 100), at).0.state(),
        VrrpState::Backup
    );
}

#[test]
fn master_ignores_lower_priorities_and_answers_priority_zero() {
    let (mut m, at) = master(params(100), Instant::now());
    let before = m.clone();
    assert!(run(&mut m, advert("192.0.2.3", 99), at).is_empty());
    assert_eq!(m, before);
    // §6.4.3: priority 0 -> send an advert at once, reset Adver_Timer.
    let t1 = at + Duration::from_millis(300);
    assert_eq!(
        run(&mut m, advert("192.0.2.3", 0), t1),
        [Action::SendAdvert { priority: 100 }]
    );
    assert_eq!(m.timer(), Some(Timer::Advert(t1 + SECOND)));
    assert_eq!(m.state(), VrrpState::Master);
}

#[test]
fn shutdown_of_a_master_sends_priority_zero_and_removes_the_addresses() {
    // §6.4.3 Shutdown: cancel the timer, send priority 0, Initialize.
    let (mut m, at) = master(params(100), Instant::now());
    assert_eq!(
        run(&mut m, Event::Shutdown, at),
        [
            Action::SendAdvert { priority: 0 },
            Action::RemoveAddresses,
            transition(VrrpState::Master, VrrpState::Initialize)
        ]
    );
    assert_eq!(m.timer(), None);
    assert_eq!(m.deadline(), None);
    // §6.4.2 Shutdown of a backup: no advert.
    let mut m = started(params(100), at);
    assert_eq!(
        run(&mut m, Event::Shutdown, at),
        [transition(VrrpState::Backup, VrrpState::Initialize)]
    );
}

#[test]
fn adverts_and_timers_outside_backup_and_master_do_nothing() {
    let t0 = Instant::now();
    let m = Machine::new(params(100));
    for event in [advert("192.0.2.3", 200), Event::Timer, Event::Shutdown] {
        let (next, actions) = m.step(event, t0);
        assert!(actions.is_empty());
        assert_eq!(next, m);
    }
}

#[test]
fn weight_zero_tracking_failure_is_fault_and_recovery_restarts() {
    let fault = Event::Track {
        effective_priority: 100,
        fault: true,
    };
    let healthy = Event::Track {
        effective_priority: 100,
        fault: false,
    };
    // A master resigns with priority 0, like keepalived.
    let (mut m, at) = master(params(100), Instant::now());
    assert_eq!(
        run(&mut m, fault, at),
        [
            Action::SendAdvert { priority: 0 },
            Action::RemoveAddresses,
            transition(VrrpState::Master, VrrpState::Fault)
        ]
    );
    assert_eq!(m.deadline(), None);
    // Adverts and timers are ignored in Fault.
    assert!(run(&mut m, advert("192.0.2.3", 50), at).is_empty());
    // Recovery: as at startup.
    assert_eq!(
        run(&mut m, healthy, at),
        [
            Action::RemoveAddresses,
            transition(VrrpState::Fault, VrrpState::Backup)
        ]
    );
    assert_eq!(m.deadline(), Some(at + m.master_down_interval()));
    // Failing before startup: the instance starts in Fault.
    let mut m = Machine::new(params(100));
    assert!(run(&mut m, fault, at).is_empty());
    assert_eq!(
        run(&mut m, Event::Startup, at),
        [
            Action::RemoveAddresses,
            transition(VrrpState::Initialize, VrrpState::Fault)
        ]
    );
}

#[test]
fn tracked_priority_is_advertised_and_used_for_elections() {
    let lowered = Event::Track {
        effective_priority: 40,
        fault: false,
    };
    // A master advertises its new priority at once.
    let (mut m, at) = master(params(100), Instant::now());
    assert_eq!(
        run(&mut m, lowered, at),
        [Action::SendAdvert { priority: 40 }]
    );
    assert_eq!(m.effective_priority(), 40);
    // ... and now yields to a router of priority 50.
    assert_eq!(
        run(&mut m, advert("192.0.2.1", 50), at).last(),
        Some(&transition(VrrpState::Master, VrrpState::Backup))
    );
    // A backup's Skew_Time follows its effective priority.
    let mut m = started(params(100), at);
    run(&mut m, lowered, at);
    assert_eq!(
        m.skew_time(),
        Duration::from_micros((256 - 40) * 1_000_000 / 256)
    );
    // The same priority again sends nothing.
    let (mut m, at) = master(params(100), Instant::now());
    let same = Event::Track {
        effective_priority: 100,
        fault: false,
    };
    assert!(run(&mut m, same, at).is_empty());
}
