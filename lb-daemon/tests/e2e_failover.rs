//! End to end, DESIGN.md §5: a VRRP failover keeps established flows.
//! 200 long-lived (kept-alive) HTTP connections go through the master
//! lb-a; its daemon is killed (`kill -9`; in a second lab SIGTERM; in a
//! third `kill -9` and its link cut, as when the machine dies and its
//! still-attached program can no longer forward anything);
//! lb-b takes the VIP over (gratuitous ARP) and at least 99% of the
//! connections carry on, on the same backend (Maglev: both balancers pick
//! the same one). Measures the takeover time. Runs as root (CI does).
//!
//! Observed with the link cut: the bridge forgets lb-a's MAC when its port
//! loses carrier and floods frames for it, and lb-b's XDP program forwards
//! them even before lb-b takes the VIP (the balancer does not check the
//! destination MAC), so no request stalls; a switch does the same.
mod support;

use std::{
    net::IpAddr,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use lb_lab::{HttpSession, VrrpConfig, link::neighbour, wait_http, wait_until};
use support::e2e::{E2e, START_TIMEOUT};

const SESSIONS: usize = 200;
const THREADS: usize = 8;
/// Pause between two rounds of requests on a thread's sessions.
const ROUND_PAUSE: Duration = Duration::from_millis(100);
/// A request may stall this long (TCP retransmits across the failover).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Traffic goes on this long after the takeover.
const AFTER: Duration = Duration::from_secs(3);
/// Both tests time a failover: one at a time on two shared CPUs.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn kill_9_of_the_master_keeps_established_connections() {
    failover("fok", libc::SIGKILL, "kill -9", false);
}

#[test]
fn sigterm_of_the_master_keeps_established_connections() {
    failover("fot", libc::SIGTERM, "SIGTERM", false);
}

#[test]
fn a_dead_master_machine_keeps_established_connections() {
    failover("fod", libc::SIGKILL, "kill -9 and link down", true);
}

/// What became of one long-lived connection.
struct Outcome {
    backend: String,
    /// Why it stopped carrying on, if it did.
    failed: Option<String>,
    requests_after: u64,
    longest: Duration,
}

fn failover(tag: &str, signal: libc::c_int, how: &str, cut_link: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut e2e = E2e::new(tag, 3, true);
    for (balancer, priority) in [("lb-a", 150), ("lb-b", 100)] {
        let mut config = e2e.config(3);
        config.vrrp = Some(VrrpConfig::new(priority));
        e2e.start_daemon(balancer, &config);
    }
    wait_until(START_TIMEOUT, "lb-a master and lb-b backup", || {
        Ok((e2e.vrrp_state_logged("lb-a").as_deref() == Some("master")
            && e2e.vrrp_state_logged("lb-b").as_deref() == Some("backup"))
        .then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", e2e.logs()));
    e2e.wait_vip();
    let client = e2e.lab.client().ns();
    let vip = e2e.vip_addr();
    let vip_ip: IpAddr = e2e.vip();
    let (mac_a, mac_b) = (e2e.balancer("lb-a").mac(), e2e.balancer("lb-b").mac());
    assert_eq!(
        neighbour(client, vip_ip).unwrap(),
        Some(mac_a),
        "lb-a holds the VIP"
    );

    let sessions: Vec<(HttpSession, String)> = (0..SESSIONS)
        .map(|index| {
            let mut session = HttpSession::connect(client, vip, REQUEST_TIMEOUT)
                .unwrap_or_else(|e| panic!("session {index}: {e:#}"));
            let backend = session.get().unwrap();
            (session, backend)
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let killed_at: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let mut groups: Vec<Vec<(HttpSession, String)>> = (0..THREADS).map(|_| Vec::new()).collect();
    for (index, session) in sessions.into_iter().enumerate() {
        groups[index % THREADS].push(session);
    }
    let workers: Vec<_> = groups
        .into_iter()
        .map(|group| {
            let stop = Arc::clone(&stop);
            let killed_at = Arc::clone(&killed_at);
            thread::spawn(move || keep_asking(group, &stop, &killed_at))
        })
        .collect();

    thread::sleep(Duration::from_secs(1));
    e2e.daemon("lb-a").child.kill(signal).unwrap();
    let killed = Instant::now();
    if cut_link {
        let lb_a = e2e.balancer("lb-a");
        lb_a.ns()
            .ip(&["link", "set", "dev", lb_a.interface(), "down"])
            .unwrap();
    }
    killed_at.set(killed).unwrap();
    wait_until(Duration::from_secs(10), "the VIP to move to lb-b", || {
        Ok((neighbour(client, vip_ip)? == Some(mac_b)).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", e2e.logs()));
    let takeover = killed.elapsed();
    let fresh = wait_http(client, vip, Duration::from_secs(10)).unwrap();
    let first_new = killed.elapsed();
    thread::sleep(AFTER);
    stop.store(true, Ordering::SeqCst);
    let outcomes: Vec<Outcome> = workers
        .into_iter()
        .flat_map(|worker| worker.join().expect("worker panicked"))
        .collect();

    let carried: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.failed.is_none() && o.requests_after > 0)
        .collect();
    let longest = outcomes.iter().map(|o| o.longest).max().unwrap_or_default();
    let requests_after: u64 = outcomes.iter().map(|o| o.requests_after).sum();
    println!(
        "{how} of lb-a's daemon: VIP on lb-b (client's ARP entry) after {takeover:.2?}, \
         first new connection answered after {first_new:.2?} (by {})",
        fresh.trim_end()
    );
    println!(
        "{} of {SESSIONS} long-lived connections carried on, on the same backend \
         ({:.1}%); {requests_after} requests on them after the failover; \
         longest request {longest:.2?}",
        carried.len(),
        carried.len() as f64 * 100.0 / SESSIONS as f64
    );
    for outcome in outcomes.iter().filter(|o| o.failed.is_some()).take(5) {
        println!(
            "  failed on {}: {}",
            outcome.backend,
            outcome.failed.as_deref().unwrap_or_default()
        );
    }
    assert_eq!(
        e2e.vrrp_state_logged("lb-b").as_deref(),
        Some("master"),
        "{}",
        e2e.logs()
    );
    if signal == libc::SIGTERM {
        let addresses = e2e
            .balancer("lb-a")
            .ns()
            .ip(&["addr", "show", "dev", "eth0"]);
        assert!(
            !addresses.unwrap().contains(&format!("{vip_ip}/")),
            "lb-a kept the VIP after SIGTERM"
        );
    }
    assert!(
        carried.len() * 100 >= SESSIONS * 99,
        "only {} of {SESSIONS} connections carried on\n{}",
        carried.len(),
        e2e.logs()
    );
}

/// Asks on every session of the group, round after round, until told to
/// stop (or a minute at most). A session that fails or moves to another
/// backend is not asked again.
fn keep_asking(
    group: Vec<(HttpSession, String)>,
    stop: &AtomicBool,
    killed_at: &OnceLock<Instant>,
) -> Vec<Outcome> {
    let mut sessions: Vec<(HttpSession, Outcome)> = group
        .into_iter()
        .map(|(session, backend)| {
            (
                session,
                Outcome {
                    backend,
                    failed: None,
                    requests_after: 0,
                    longest: Duration::ZERO,
                },
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        for (session, outcome) in sessions.iter_mut().filter(|(_, o)| o.failed.is_none()) {
            let started = Instant::now();
            match session.get() {
                Ok(name) if name == outcome.backend => {
                    outcome.longest = outcome.longest.max(started.elapsed());
                    if killed_at.get().is_some_and(|killed| started > *killed) {
                        outcome.requests_after += 1;
                    }
                }
                Ok(name) => outcome.failed = Some(format!("moved to {name}")),
                Err(error) => outcome.failed = Some(format!("{error:#}")),
            }
        }
        thread::sleep(ROUND_PAUSE);
    }
    sessions.into_iter().map(|(_, outcome)| outcome).collect()
}
