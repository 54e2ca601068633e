//! End to end, DESIGN.md §3 and §5: SIGHUP under traffic with a fourth
//! backend added. Long-lived (kept-alive) connections go on on the same
//! backend without a reset, new connections keep being answered during the
//! reload, and afterwards new connections reach the new backend. Runs as
//! root (CI does).
mod support;

use std::{
    thread,
    time::{Duration, Instant},
};

use lb_lab::{HttpLoad, HttpLoadOptions, HttpSession, http_get_many, wait_until};
use support::e2e::{E2e, START_TIMEOUT, tally};

/// Long-lived connections held across the reload.
const SESSIONS: usize = 40;
/// New connections per second during the reload.
const RATE: u32 = 50;
/// Fresh connections counted after the reload.
const AFTER: usize = 400;
const TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn sighup_adds_a_backend_without_resetting_established_connections() {
    let mut e2e = E2e::new("rld", 4, false);
    e2e.hold_vip("lb-a");
    let mut config = e2e.config(3);
    e2e.start_daemon("lb-a", &config);
    e2e.wait_vip();
    let client = e2e.lab.client().ns();
    let vip = e2e.vip_addr();

    // Long-lived connections, each on the backend of its first answer.
    let mut sessions: Vec<(HttpSession, String)> = (0..SESSIONS)
        .map(|_| {
            let mut session = HttpSession::connect(client, vip, TIMEOUT).unwrap();
            let first = session.get().unwrap();
            (session, first)
        })
        .collect();
    let on_new = sessions.iter().filter(|(_, be)| be == "be-4").count();
    assert_eq!(on_new, 0, "be-4 is not configured yet");

    let load = HttpLoad::start(
        client,
        vip,
        &HttpLoadOptions {
            workers: 4,
            rate: Some(RATE),
            // Room for a loaded machine: a request that is slow, not
            // refused or reset, is no failure of the reload.
            request_timeout: TIMEOUT,
            max_duration: Duration::from_secs(60),
            ..HttpLoadOptions::default()
        },
    )
    .unwrap();
    let ask_all = |sessions: &mut Vec<(HttpSession, String)>| {
        for (index, (session, backend)) in sessions.iter_mut().enumerate() {
            let answer = session
                .get()
                .unwrap_or_else(|e| panic!("session {index} on {backend} broke: {e:#}"));
            assert_eq!(&answer, backend, "session {index} moved");
        }
    };
    // Traffic before, during and after the reload.
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        ask_all(&mut sessions);
        thread::sleep(Duration::from_millis(50));
    }
    config = e2e.config(4);
    e2e.rewrite_config("lb-a", &config);
    let reloaded_at = Instant::now();
    e2e.daemon("lb-a").child.kill(libc::SIGHUP).unwrap();
    let daemon = e2e.daemon("lb-a");
    while !daemon.log_text().contains("reload applied") {
        assert!(
            reloaded_at.elapsed() < START_TIMEOUT,
            "no reload:\n{}",
            daemon.log_text()
        );
        ask_all(&mut sessions);
        thread::sleep(Duration::from_millis(20));
    }
    let reload_time = reloaded_at.elapsed();
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        ask_all(&mut sessions);
        thread::sleep(Duration::from_millis(50));
    }
    let during = load.stop();
    let session_requests: u64 = sessions.iter().map(|(s, _)| s.requests()).sum();

    // New connections after the reload: be-4 takes about a quarter, once
    // it is in the ring, which it joins when its next hop is resolved
    // (the daemon looks again every second).
    wait_until(START_TIMEOUT, "four active backends", || {
        let status = e2e.status("lb-a");
        Ok((status.virtual_servers[0].active_backends() == 4).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}: {:?}", e2e.status("lb-a").virtual_servers[0]));
    let names = http_get_many(client, vip, AFTER, Duration::from_secs(20)).unwrap();
    let counts = tally(&names);
    let on_be4 = counts.get("be-4").copied().unwrap_or(0);
    println!(
        "reload applied {reload_time:.2?} after SIGHUP; {SESSIONS} long-lived connections, \
         {session_requests} requests on them, none reset or moved"
    );
    println!(
        "new connections during the reload: {} answered ({:?}), {} failed",
        during.successes(),
        during.answers,
        during.errors
    );
    println!(
        "{AFTER} new connections after: {counts:?} (be-4 {:.1}%)",
        on_be4 as f64 * 100.0 / AFTER as f64
    );
    assert_eq!(
        during.errors, 0,
        "new connections failed during the reload: {:?}",
        during.last_error
    );
    assert!(during.successes() > u64::from(RATE), "too little traffic");
    assert!(
        (AFTER * 15 / 100..=AFTER * 35 / 100).contains(&on_be4),
        "be-4 got {on_be4} of {AFTER} new connections, expected about a quarter"
    );
    // Established connections still answer after the reload.
    ask_all(&mut sessions);
}
