//! End to end, DESIGN.md §5: a backend whose server dies fails its
//! health check and, within fall × interval plus one interval (and a
//! margin for a loaded machine's scheduling), gets no new connection;
//! connections to the other backends are not disturbed.
//! Runs as root (CI does).
mod support;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use lb_lab::{HttpSession, http_get, wait_until};
use support::e2e::E2e;

const SESSIONS: usize = 30;
/// Pause between two new connections of the client.
const PAUSE: Duration = Duration::from_millis(10);
/// Longest a request may take (a connection to the dead backend is
/// refused at once; this is room for a loaded machine).
const TIMEOUT: Duration = Duration::from_secs(5);
/// Added to fall × interval + one interval for the daemon's timers, the
/// probe's reply and reprogramming the maps to be scheduled on a busy
/// machine (the daemon under test is a debug build).
const SCHEDULING: Duration = Duration::from_secs(1);
/// Traffic goes on at least this long after the deadline...
const AFTER: Duration = Duration::from_secs(3);
/// ... and until more than this many new connections started after it...
const AFTER_CONNECTIONS: usize = 100;
/// ... but no longer than this after the kill.
const LONGEST: Duration = Duration::from_secs(30);

#[test]
fn a_dead_backend_gets_no_new_connections_within_fall_intervals_plus_one() {
    let mut e2e = E2e::new("bdn", 3, false);
    e2e.hold_vip("lb-a");
    let config = e2e.config(3);
    let health = config.health.clone();
    e2e.start_daemon("lb-a", &config);
    e2e.wait_vip();
    let client = e2e.lab.client().ns();
    let vip = e2e.vip_addr();
    // Every backend up according to the daemon first.
    wait_until(Duration::from_secs(10), "three healthy backends", || {
        let status = e2e.status("lb-a");
        Ok((status.virtual_servers[0].active_backends() == 3).then_some(()))
    })
    .unwrap();

    let mut sessions: Vec<(HttpSession, String)> = (0..SESSIONS)
        .map(|_| {
            let mut session = HttpSession::connect(client, vip, TIMEOUT).unwrap();
            let backend = session.get().unwrap();
            (session, backend)
        })
        .collect();
    // New connections, each stamped with when it started.
    type Results = Vec<(Instant, Result<String, String>)>;
    let stop = Arc::new(AtomicBool::new(false));
    let results: Arc<Mutex<Results>> = Arc::default();
    let loader = {
        let stop = Arc::clone(&stop);
        let results = Arc::clone(&results);
        let ns = lb_lab::Netns::existing(client.name()).unwrap();
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let started = Instant::now();
                let result = http_get(&ns, vip, TIMEOUT).map(|body| body.trim_end().to_owned());
                let result = result.map_err(|e| format!("{e:#}"));
                results.lock().unwrap().push((started, result));
                thread::sleep(PAUSE);
            }
        })
    };
    thread::sleep(Duration::from_millis(500));
    e2e.servers[1].stop();
    let killed = Instant::now();
    let allowed = health.interval * health.fall + health.interval;
    let deadline = killed + allowed + SCHEDULING;
    let started_after_deadline = || {
        let results = results.lock().unwrap();
        results.iter().filter(|(at, _)| *at > deadline).count()
    };
    let mut asked = 0;
    while (Instant::now() < deadline + AFTER || started_after_deadline() <= AFTER_CONNECTIONS)
        && killed.elapsed() < LONGEST
    {
        for (session, backend) in sessions.iter_mut().filter(|(_, be)| be != "be-2") {
            let answer = session
                .get()
                .unwrap_or_else(|e| panic!("a connection to {backend} broke: {e:#}"));
            assert_eq!(&answer, backend, "a connection moved");
            asked += 1;
        }
        thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    loader.join().unwrap();
    let results = std::mem::take(&mut *results.lock().unwrap());

    let failures: Vec<&(Instant, Result<String, String>)> =
        results.iter().filter(|(_, r)| r.is_err()).collect();
    let last_failure = failures
        .iter()
        .map(|(at, _)| at.saturating_duration_since(killed))
        .max();
    let late: Vec<_> = failures.iter().filter(|(at, _)| *at > deadline).collect();
    let after_deadline = results.iter().filter(|(at, _)| *at > deadline).count();
    let to_be2 = results
        .iter()
        .filter(|(at, r)| *at > killed && r.as_deref() == Ok("be-2"))
        .count();
    let status = e2e.status("lb-a");
    let be2 = &status.virtual_servers[0].backends[1];
    println!(
        "be-2 killed; {} new connections failed, the last one started {:?} after the kill \
         (allowed: fall {} x interval {:?} + one interval = {allowed:?}, \
         + {SCHEDULING:?} for scheduling); {after_deadline} new connections after that, \
         {} failed",
        failures.len(),
        last_failure.unwrap_or_default(),
        health.fall,
        health.interval,
        late.len()
    );
    println!(
        "{} connections to be-1 and be-3 answered {asked} requests without a break; \
         daemon reports be-2 {:?}",
        sessions.iter().filter(|(_, be)| be != "be-2").count(),
        be2.health
    );
    assert!(
        late.is_empty(),
        "{} new connections failed after {:?}, first: {:?}",
        late.len(),
        allowed + SCHEDULING,
        late.first().map(|(_, r)| r)
    );
    assert_eq!(to_be2, 0, "be-2 answered after its server was killed");
    assert!(
        after_deadline > AFTER_CONNECTIONS,
        "too little traffic after the deadline: {after_deadline} new connections"
    );
    assert_eq!(be2.health, lb_daemon::status::Health::Down);
}
