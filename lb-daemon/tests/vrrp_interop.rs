//! VRRP against keepalived (the peer operators replace) in lab namespaces
//! joined by a bridge: election both ways, failover after `kill -9` of the
//! master, preemption back, graceful SIGTERM handover (priority 0), with
//! VRRPv3 at 100 ms, VRRPv2 at 1 s, and IPv6. Each scenario prints the
//! takeover times it measured, and the same scenario between two
//! keepalived nodes is measured the same way as the reference.
//!
//! The virtual address is watched on both nodes every 2 ms through
//! netlink; takeover is the time from the signal to the first sample with
//! the address on the other node. At no sampled moment may both live
//! nodes hold it for longer than one advert interval.
//!
//! Must run as root (`cargo xtask test`); fails otherwise. Scenarios run
//! one at a time (timing), each removing its namespaces and processes.
mod support;

use std::{
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use lb_daemon::vrrp::addresses;
use lb_lab::{
    Daemon, Netns, NsChild, TempDir, Topology, TopologyOptions, link::neighbour, unique_prefix,
    wait_until,
};
use support::{lb_daemon, require_root};

const KEEPALIVED: &str = "/usr/sbin/keepalived";
const VIP_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const VIP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
const HIGH: u8 = 150;
const LOW: u8 = 100;
/// How often the watchers sample the address.
const SAMPLE: Duration = Duration::from_millis(2);
/// Longest a watcher runs (every loop is bounded).
const WATCH_LIMIT: Duration = Duration::from_secs(120);

/// Timing-sensitive scenarios run one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ours,
    Keepalived,
}

#[derive(Clone, Copy, Debug)]
struct Setup {
    version: u8,
    interval: Duration,
    v6: bool,
    /// Adverts to the peer's address instead of the multicast group.
    unicast: bool,
}

impl Setup {
    fn vip(&self) -> IpAddr {
        if self.v6 {
            VIP_V6.into()
        } else {
            VIP_V4.into()
        }
    }

    fn prefix_len(&self) -> u8 {
        if self.v6 { 64 } else { 24 }
    }

    /// Skew_Time of a router of `priority` (RFC 5798 §6.1; RFC 3768 for v2).
    fn skew(&self, priority: u8) -> Duration {
        let unit = if self.version == 2 {
            Duration::from_secs(1)
        } else {
            self.interval
        };
        unit * u32::from(256 - u16::from(priority)) / 256
    }

    fn master_down(&self, priority: u8) -> Duration {
        self.interval * 3 + self.skew(priority)
    }

    /// `lb-daemon run`'s config; `peer`: the other node's address, used
    /// when the setup is unicast.
    fn ours(&self, priority: u8, peer: IpAddr) -> String {
        let peers = if self.unicast {
            format!("unicast_peers = [\"{peer}\"]\n")
        } else {
            String::new()
        };
        format!(
            "[[vrrp.instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 51\n\
             version = {}\npriority = {priority}\nadvert_interval = \"{}ms\"\n\
             virtual_addresses = [\"{}/{}\"]\n{peers}",
            self.version,
            self.interval.as_millis(),
            self.vip(),
            self.prefix_len()
        )
    }

    fn keepalived(&self, priority: u8, own: IpAddr, peer: IpAddr) -> String {
        let interval = self.interval.as_secs_f64();
        let peers = if self.unicast {
            // keepalived sends IPv6 unicast adverts with hop limit 64 and
            // skips the check unless told: lb checks 255 (DESIGN.md §5).
            format!(
                "  unicast_src_ip {own}\n  unicast_ttl 255\n  unicast_peer {{\n    {peer}\n  }}\n"
            )
        } else {
            String::new()
        };
        format!(
            "global_defs {{\n  vrrp_version {}\n}}\nvrrp_instance VI_1 {{\n  state BACKUP\n  \
             interface eth0\n  virtual_router_id 51\n  priority {priority}\n  advert_int {interval}\n  \
             virtual_ipaddress {{\n    {}/{}\n  }}\n{peers}}}\n",
            self.version,
            self.vip(),
            self.prefix_len()
        )
    }
}

/// A VRRP router process in a lab namespace: `lb-daemon run` or keepalived.
struct Node {
    name: String,
    process: Option<Process>,
}

enum Process {
    Ours(Daemon),
    Keepalived {
        child: NsChild,
        vrrp_pid: std::path::PathBuf,
    },
}

impl Node {
    fn start(
        kind: Kind,
        ns: &Netns,
        dir: &Path,
        name: &str,
        setup: &Setup,
        (priority, own, peer): (u8, IpAddr, IpAddr),
    ) -> Node {
        let process = match kind {
            Kind::Ours => Process::Ours(
                Daemon::start(ns, lb_daemon(), dir, name, &setup.ours(priority, peer))
                    .expect("start lb-daemon"),
            ),
            Kind::Keepalived => {
                let config = dir.join(format!("{name}.conf"));
                fs::write(&config, setup.keepalived(priority, own, peer)).unwrap();
                let log = fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(format!("{name}.log")))
                    .unwrap();
                let vrrp_pid = dir.join(format!("{name}.vrrp.pid"));
                let _ = fs::remove_file(&vrrp_pid);
                let mut command = Command::new(KEEPALIVED);
                // In the foreground, VRRP only, logging to the console,
                // not respawning its VRRP child (kill -9 must stay a death).
                command
                    .args(["--dont-fork", "--log-console", "--log-detail", "--vrrp"])
                    .arg("--dont-respawn")
                    .arg("--use-file")
                    .arg(&config)
                    .arg("--pid")
                    .arg(dir.join(format!("{name}.pid")))
                    .arg("--vrrp_pid")
                    .arg(&vrrp_pid)
                    .stdout(log.try_clone().unwrap())
                    .stderr(log);
                let child = ns.spawn(command).expect("start keepalived");
                Process::Keepalived { child, vrrp_pid }
            }
        };
        Node {
            name: name.to_owned(),
            process: Some(process),
        }
    }

    /// Sends `signal` to the process that speaks VRRP: ours, or
    /// keepalived's VRRP child (its parent would otherwise pass SIGTERM on
    /// gracefully even for a kill -9 test).
    fn signal(&self, signal: libc::c_int) {
        match self.process.as_ref().expect("running") {
            Process::Ours(daemon) => daemon.child.kill(signal).unwrap(),
            Process::Keepalived { child, vrrp_pid } => {
                let pid = wait_until(Duration::from_secs(5), "keepalived's VRRP pid file", || {
                    Ok(fs::read_to_string(vrrp_pid)
                        .ok()
                        .and_then(|text| text.trim().parse::<libc::pid_t>().ok()))
                })
                .unwrap();
                assert!(child.try_wait().unwrap().is_none(), "keepalived has exited");
                // SAFETY: kill has no memory-safety preconditions; the PID
                // is keepalived's VRRP child, a descendant of our running
                // keepalived, read from the pid file it wrote.
                assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill {pid}");
            }
        }
    }

    /// Waits for the process to exit after a signal, then forgets it.
    fn reap(&mut self) {
        match self.process.take() {
            Some(Process::Ours(daemon)) => {
                let _ = daemon.child.wait_timeout(Duration::from_secs(5));
            }
            Some(Process::Keepalived { child, .. }) => {
                let _ = child.wait_timeout(Duration::from_secs(5));
            }
            None => {}
        }
    }
}

/// Intervals during which a node held the VIP.
type Intervals = Vec<(Instant, Instant)>;
/// The same while sampling: the last one may still be open.
type Samples = Arc<Mutex<Vec<(Instant, Option<Instant>)>>>;

/// The sampled presence of the VIP on one node: the intervals it was there.
struct Watch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<Intervals>>>,
    present: Samples,
}

impl Watch {
    /// Starts sampling; returns after the first sample.
    fn start(ns: &Netns, vip: IpAddr) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let present: Samples = Arc::default();
        let (stop2, present2) = (stop.clone(), present.clone());
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let thread = ns
            .spawn_thread(move || {
                let ifindex = lb_daemon::netlink::ifindex("eth0").unwrap();
                let start = Instant::now();
                while !stop2.load(Ordering::Relaxed) && start.elapsed() < WATCH_LIMIT {
                    let now = Instant::now();
                    let has = addresses::has(ifindex, vip).unwrap();
                    let mut list = present2.lock().unwrap();
                    match list.last_mut() {
                        Some((_, end @ None)) if !has => *end = Some(now),
                        Some((_, None)) => {}
                        _ if has => list.push((now, None)),
                        _ => {}
                    }
                    drop(list);
                    let _ = first_tx.send(());
                    std::thread::sleep(SAMPLE);
                }
                let end = Instant::now();
                let list = present2.lock().unwrap();
                list.iter().map(|(s, e)| (*s, e.unwrap_or(end))).collect()
            })
            .unwrap();
        first_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("first sample");
        Watch {
            stop,
            thread: Some(thread),
            present,
        }
    }

    fn holds(&self) -> bool {
        matches!(self.present.lock().unwrap().last(), Some((_, None)))
    }

    /// The first moment at or after `since` the VIP was seen to appear
    /// there (an address already there before `since` does not count).
    fn appeared_since(&self, since: Instant) -> Option<Instant> {
        let list = self.present.lock().unwrap();
        list.iter()
            .find(|(start, _)| *start >= since)
            .map(|(start, _)| *start)
    }

    fn wait_appeared(&self, since: Instant, timeout: Duration, what: &str) -> Duration {
        let at = wait_until(timeout, what, || Ok(self.appeared_since(since))).unwrap();
        at - since
    }

    fn wait_state(&self, holds: bool, timeout: Duration, what: &str) {
        wait_until(timeout, what, || Ok((self.holds() == holds).then_some(()))).unwrap();
    }

    fn finish(mut self) -> Intervals {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap().unwrap()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The longest time both hold the address, over two lists of intervals.
fn longest_overlap(a: &[(Instant, Instant)], b: &[(Instant, Instant)]) -> Duration {
    let mut longest = Duration::ZERO;
    for (a_start, a_end) in a {
        for (b_start, b_end) in b {
            let start = (*a_start).max(*b_start);
            let end = (*a_end).min(*b_end);
            longest = longest.max(end.saturating_duration_since(start));
        }
    }
    longest
}

/// What one scenario measured.
#[derive(Debug)]
struct Figures {
    /// One per round, sorted.
    kill_takeovers: Vec<Duration>,
    preempts: Vec<Duration>,
    graceful_takeover: Duration,
    overlap: Duration,
}

/// High-priority `high` and low-priority `low` on lb-a and lb-b:
/// 1. election: `high` holds the VIP, `low` does not;
/// 2. kill -9 of `high`: `low` takes over within its Master_Down_Interval
///    plus a margin;
/// 3. `high` restarts and preempts back;
/// 4. SIGTERM of `high`: `low` takes over within Skew_Time plus a margin
///    (priority 0 advert);
/// 5. live nodes never both held the VIP longer than one advert interval.
fn scenario(tag: &str, setup: Setup, high_kind: Kind, low_kind: Kind) -> Figures {
    require_root();
    let _serial = serial();
    let mut options = TopologyOptions::new(unique_prefix(tag));
    options.backends = 1;
    let lab = Topology::create(&options).expect("create lab");
    let temp_dir = TempDir::new(&format!("vrrp-{tag}")).unwrap();
    let dir = temp_dir.path();
    let (a, b) = (lab.lb_a().ns(), lab.lb_b().unwrap().ns());
    let vip = setup.vip();
    let margin = Duration::from_millis(100).max(setup.interval / 2);
    let label = format!(
        "v{} {}{} {:?}: high={high_kind:?} low={low_kind:?}",
        setup.version,
        if setup.v6 { "IPv6" } else { "IPv4" },
        if setup.unicast { " unicast" } else { "" },
        setup.interval
    );

    let watch_low = Watch::start(b, vip);
    let mut alive_since = Instant::now();
    let mut watch_high = Watch::start(a, vip);
    let (addr_a, addr_b) = (
        lab.lb_a().addr_like(vip),
        lab.lb_b().unwrap().addr_like(vip),
    );
    let low = Node::start(low_kind, b, dir, "low", &setup, (LOW, addr_b, addr_a));
    let mut high = Node::start(high_kind, a, dir, "high", &setup, (HIGH, addr_a, addr_b));
    let startup = setup.master_down(LOW) + Duration::from_secs(3);
    let log = |dir: &Path| {
        ["high", "low"]
            .iter()
            .map(|n| {
                format!(
                    "--- {n}.log\n{}",
                    fs::read_to_string(dir.join(format!("{n}.log"))).unwrap_or_default()
                )
            })
            .collect::<String>()
    };
    let check = |result: std::thread::Result<()>| {
        if let Err(panic) = result {
            eprintln!("{label}\n{}", log(dir));
            std::panic::resume_unwind(panic);
        }
    };

    // 1. Election: the higher priority wins, whoever runs it.
    check(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
        || {
            watch_high.wait_state(true, startup, "the high-priority node to hold the VIP");
            std::thread::sleep(setup.interval * 5);
            assert!(watch_high.holds(), "{} lost the VIP", high.name);
            assert!(!watch_low.holds(), "{} holds the VIP as backup", low.name);
        },
    )));

    // The client learns the VIP's MAC (the high node's) ...
    let client = lab.client().ns();
    let (mac_high, mac_low) = (lab.lb_a().mac(), lab.lb_b().unwrap().mac());
    check(std::panic::catch_unwind(|| {
        wait_until(
            Duration::from_secs(3),
            "the client to resolve the VIP",
            || {
                client.enter(|| {
                    let socket = UdpSocket::bind(SocketAddr::new(
                        if setup.v6 {
                            Ipv6Addr::UNSPECIFIED.into()
                        } else {
                            Ipv4Addr::UNSPECIFIED.into()
                        },
                        0,
                    ))?;
                    socket.send_to(b"x", SocketAddr::new(vip, 9))
                })?;
                std::thread::sleep(Duration::from_millis(20));
                Ok((neighbour(client, vip)? == Some(mac_high)).then_some(()))
            },
        )
        .unwrap();
    }));

    // 2. kill -9 of the master, spread over the advert cycle, `rounds`
    // times. A killed router leaves its addresses behind; while it is
    // dead they do not count (the machine is "gone").
    // 3. Each time the high-priority node comes back, removes what its
    // predecessor left (it starts as Backup) and preempts.
    let rounds: u32 = if setup.interval < Duration::from_secs(1) {
        5
    } else {
        1
    };
    let mut high_intervals: Intervals = Vec::new();
    let mut kill_takeovers = Vec::new();
    let mut preempts = Vec::new();
    let limit = setup.master_down(LOW) + margin;
    for round in 0..rounds {
        std::thread::sleep(setup.interval * 3 + setup.interval * round / rounds);
        let killed = Instant::now();
        high.signal(libc::SIGKILL);
        high_intervals.extend(
            watch_high
                .finish()
                .into_iter()
                .filter(|(start, _)| *start >= alive_since),
        );
        high.reap();
        check(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
            || {
                let takeover = watch_low.wait_appeared(killed, limit * 3, "takeover after kill -9");
                kill_takeovers.push(takeover);
                assert!(
                    takeover <= limit,
                    "takeover after kill -9 took {takeover:?}, more than Master_Down_Interval + margin = {limit:?}"
                );
            },
        )));

        if round == 0 {
            // ... and the gratuitous ARP / unsolicited NA of the new master
            // moves it.
            check(std::panic::catch_unwind(|| {
                wait_until(
                    Duration::from_secs(2),
                    "the client's neighbour entry to move",
                    || Ok((neighbour(client, vip)? == Some(mac_low)).then_some(())),
                )
                .unwrap();
            }));
        }

        watch_high = Watch::start(a, vip);
        alive_since = Instant::now();
        high = Node::start(high_kind, a, dir, "high", &setup, (HIGH, addr_a, addr_b));
        check(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
            || {
                preempts.push(watch_high.wait_appeared(alive_since, startup, "preemption back"));
                watch_low.wait_state(false, setup.interval * 3, "the low node to release the VIP");
            },
        )));
    }

    // 4. Graceful handover: SIGTERM, priority 0, takeover after Skew_Time.
    std::thread::sleep(setup.interval * 3);
    let stopped = Instant::now();
    high.signal(libc::SIGTERM);
    let limit = setup.skew(LOW) + margin;
    let mut graceful_takeover = Duration::ZERO;
    check(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
        || {
            graceful_takeover = watch_low.wait_appeared(stopped, limit * 5, "graceful takeover");
            assert!(
                graceful_takeover <= limit,
                "takeover after SIGTERM took {graceful_takeover:?}, more than Skew_Time + margin = {limit:?}"
            );
            watch_high.wait_state(
                false,
                Duration::from_secs(3),
                "the stopped node to remove the VIP",
            );
        },
    )));
    high.reap();
    std::thread::sleep(setup.interval * 2);

    // 5. Never two live masters for longer than one advert interval.
    high_intervals.extend(
        watch_high
            .finish()
            .into_iter()
            .filter(|(start, _)| *start >= alive_since),
    );
    let low_intervals = watch_low.finish();
    let overlap = longest_overlap(&high_intervals, &low_intervals);
    drop(low);
    kill_takeovers.sort();
    preempts.sort();
    let figures = Figures {
        kill_takeovers,
        preempts,
        graceful_takeover,
        overlap,
    };
    println!(
        "{label}: takeover after kill -9 {} (Master_Down_Interval {:.1} ms), \
         preemption back {} after restart, takeover after SIGTERM {:.1} ms \
         (Skew_Time {:.1} ms), longest overlap {:.1} ms",
        spread(&figures.kill_takeovers),
        ms(setup.master_down(LOW)),
        spread(&figures.preempts),
        ms(figures.graceful_takeover),
        ms(setup.skew(LOW)),
        ms(figures.overlap),
    );
    check(std::panic::catch_unwind(|| {
        assert!(
            overlap <= setup.interval,
            "both nodes held the VIP for {overlap:?}, longer than one advert interval"
        );
    }));
    figures
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `min / median / max ms (n)` of sorted samples.
fn spread(sorted: &[Duration]) -> String {
    match sorted {
        [] => "-".into(),
        [one] => format!("{:.1} ms", ms(*one)),
        _ => format!(
            "min {:.1} / median {:.1} / max {:.1} ms over {}",
            ms(sorted[0]),
            ms(sorted[sorted.len() / 2]),
            ms(sorted[sorted.len() - 1]),
            sorted.len()
        ),
    }
}

impl Figures {
    fn median_kill_takeover(&self) -> Duration {
        self.kill_takeovers[self.kill_takeovers.len() / 2]
    }
}

const V3_100MS: Setup = Setup {
    version: 3,
    interval: Duration::from_millis(100),
    v6: false,
    unicast: false,
};

#[test]
fn v3_100ms_keepalived_master_ours_backup() {
    let figures = scenario("kaou", V3_100MS, Kind::Keepalived, Kind::Ours);
    // The target: a killed master is replaced in under 400 ms.
    assert!(
        figures.median_kill_takeover() < Duration::from_millis(400),
        "{figures:?}"
    );
}

#[test]
fn v3_100ms_ours_master_keepalived_backup() {
    scenario("ouka", V3_100MS, Kind::Ours, Kind::Keepalived);
}

#[test]
fn v3_100ms_ours_both() {
    let figures = scenario("ouou", V3_100MS, Kind::Ours, Kind::Ours);
    assert!(
        figures.median_kill_takeover() < Duration::from_millis(400),
        "{figures:?}"
    );
}

#[test]
fn v3_100ms_reference_keepalived_both() {
    scenario("kaka", V3_100MS, Kind::Keepalived, Kind::Keepalived);
}

const V2_1S: Setup = Setup {
    version: 2,
    interval: Duration::from_secs(1),
    v6: false,
    unicast: false,
};

#[test]
fn v2_1s_keepalived_master_ours_backup() {
    scenario("v2ko", V2_1S, Kind::Keepalived, Kind::Ours);
}

#[test]
fn v2_1s_ours_master_keepalived_backup() {
    scenario("v2ok", V2_1S, Kind::Ours, Kind::Keepalived);
}

#[test]
fn v2_1s_reference_keepalived_both() {
    scenario("v2kk", V2_1S, Kind::Keepalived, Kind::Keepalived);
}

const V3_IPV6_100MS: Setup = Setup {
    version: 3,
    interval: Duration::from_millis(100),
    v6: true,
    unicast: false,
};

#[test]
fn v3_ipv6_100ms_keepalived_master_ours_backup() {
    scenario("v6ko", V3_IPV6_100MS, Kind::Keepalived, Kind::Ours);
}

#[test]
fn v3_ipv6_100ms_ours_master_keepalived_backup() {
    scenario("v6ok", V3_IPV6_100MS, Kind::Ours, Kind::Keepalived);
}

/// keepalived must be there: a missing peer fails the suite, never skips it.
#[test]
fn keepalived_is_installed() {
    let output = Command::new(KEEPALIVED)
        .arg("--version")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("keepalived is installed (cargo xtask setup)");
    let text = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("Keepalived v"), "{text}");
}

const V3_UNICAST_100MS: Setup = Setup {
    version: 3,
    interval: Duration::from_millis(100),
    v6: false,
    unicast: true,
};

#[test]
fn v3_unicast_100ms_keepalived_master_ours_backup() {
    scenario("unko", V3_UNICAST_100MS, Kind::Keepalived, Kind::Ours);
}

#[test]
fn v3_unicast_100ms_ours_master_keepalived_backup() {
    scenario("unok", V3_UNICAST_100MS, Kind::Ours, Kind::Keepalived);
}

/// SIGHUP: a raised priority takes effect (ours preempts keepalived), an
/// invalid file is rejected and the instance keeps running as it was.
#[test]
fn sighup_reload_applies_a_new_priority_and_rejects_an_invalid_file() {
    require_root();
    let _serial = serial();
    let setup = V3_100MS;
    let mut options = TopologyOptions::new(unique_prefix("vrhup"));
    options.backends = 1;
    let lab = Topology::create(&options).expect("create lab");
    let temp_dir = TempDir::new("vrrp-hup").unwrap();
    let dir = temp_dir.path();
    let (a, b) = (lab.lb_a().ns(), lab.lb_b().unwrap().ns());
    let vip = setup.vip();
    let peer_of_b = lab.lb_a().addr_like(vip);
    let peer_of_a = lab.lb_b().unwrap().addr_like(vip);
    let watch_a = Watch::start(a, vip);
    let watch_b = Watch::start(b, vip);
    let _keepalived = Node::start(
        Kind::Keepalived,
        a,
        dir,
        "keepalived",
        &setup,
        (HIGH, peer_of_b, peer_of_a),
    );
    let ours = Daemon::start(b, lb_daemon(), dir, "ours", &setup.ours(LOW, peer_of_b))
        .expect("start lb-daemon");
    watch_a.wait_state(true, Duration::from_secs(5), "keepalived master");
    std::thread::sleep(setup.interval * 5);
    assert!(!watch_b.holds(), "ours holds the VIP as backup");

    fs::write(&ours.config, setup.ours(200, peer_of_b)).unwrap();
    let reloaded = Instant::now();
    ours.child.kill(libc::SIGHUP).unwrap();
    let took = watch_b.wait_appeared(reloaded, Duration::from_secs(5), "ours to preempt");
    watch_a.wait_state(false, Duration::from_secs(2), "keepalived to step down");
    println!("SIGHUP with priority 200: master after {:.1} ms", ms(took));

    fs::write(&ours.config, "[[vrrp.instance]]\nname = 3\n").unwrap();
    ours.child.kill(libc::SIGHUP).unwrap();
    ours.wait_log("reload rejected", 1, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e:#}"));
    std::thread::sleep(setup.interval * 5);
    assert!(watch_b.holds(), "ours lost the VIP after a rejected reload");
    assert!(!watch_a.holds());
    assert!(
        ours.child.try_wait().unwrap().is_none(),
        "{}",
        ours.log_text()
    );
}

const V3_IPV6_UNICAST_100MS: Setup = Setup {
    version: 3,
    interval: Duration::from_millis(100),
    v6: true,
    unicast: true,
};

#[test]
fn v3_ipv6_unicast_100ms_keepalived_master_ours_backup() {
    scenario("u6ko", V3_IPV6_UNICAST_100MS, Kind::Keepalived, Kind::Ours);
}
