//! `lb-daemon run` in the lab: it forwards real TCP streams to the VIP,
//! and `kill -9` followed by a restart neither interrupts them nor loses a
//! byte (the program stays attached; the new daemon adopts it with its
//! flow table); SIGTERM detaches it. Runs as root (CI does).
mod support;

use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use lb_daemon::dataplane::attach;
use lb_lab::{
    ADMIN, BalancerConfig, Daemon, EchoBackend, EchoStream, HealthKind, TempDir, Topology,
    TopologyOptions, http_request, read_settled, unique_prefix, wait_until,
};
use support::{e2e::START_TIMEOUT, lb_daemon};

const PORT: u16 = 7000;
const TIMEOUT: Duration = Duration::from_secs(5);
/// Exchanges of 1 KiB every stream must make before the kill, while no
/// daemon runs, and after the restart.
const EXCHANGES: u64 = 50;
/// Longest wait for every stream to make [`EXCHANGES`] exchanges.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(20);

/// A thread keeping one stream busy: the exchanges it made so far, and
/// its outcome (bytes verified, the longest exchange).
struct Worker {
    exchanges: Arc<AtomicU64>,
    thread: JoinHandle<anyhow::Result<(u64, Duration)>>,
}

/// Each worker's exchanges so far.
fn exchanges(workers: &[Worker]) -> Vec<u64> {
    workers
        .iter()
        .map(|w| w.exchanges.load(Ordering::SeqCst))
        .collect()
}

/// Waits until every stream has made [`EXCHANGES`] more exchanges than it
/// had made at `since` (`what` happened then). A stream that broke fails
/// the wait at once.
fn wait_for_progress(workers: &[Worker], since: &[u64], what: &str) {
    let waited = wait_until(
        PROGRESS_TIMEOUT,
        &format!("every stream to make {EXCHANGES} exchanges {what}"),
        || {
            if workers.iter().any(|w| w.thread.is_finished()) {
                anyhow::bail!("a stream stopped {what} (its error comes when it is joined)");
            }
            let now = exchanges(workers);
            let done = now.iter().zip(since).all(|(n, s)| n - s >= EXCHANGES);
            Ok(done.then_some(()))
        },
    );
    if let Err(e) = waited {
        panic!(
            "{e:#}: exchanges {:?}, {since:?} {what}",
            exchanges(workers)
        );
    }
}

#[test]
fn kill_and_restart_keeps_streams_flowing_without_losing_a_byte() {
    support::require_root();
    let prefix = unique_prefix("rst");
    let mut options = TopologyOptions::new(prefix.as_str());
    options.lb_b = false;
    let lab = Topology::create(&options).unwrap();
    let vip = IpAddr::from(lab.vip_v4());
    lab.pass_on_balancer_ports(lb_daemon()).unwrap();
    lab.decap_on_backends(lb_daemon()).unwrap();
    let _echo: Vec<EchoBackend> = lab
        .backends()
        .iter()
        .map(|be| EchoBackend::start(be.ns(), SocketAddr::new(vip, PORT)).expect("echo server"))
        .collect();
    // The balancer owns the VIP on the segment (VRRP's job in the full lab).
    lab.lb_a().hold_vip(vip).unwrap();
    let dir = TempDir::new(&prefix).unwrap();
    let backends: Vec<IpAddr> = lab.backends().iter().map(|b| b.addr_like(vip)).collect();
    let mut config = BalancerConfig::new("echo", vip, PORT, &backends);
    config.health.kind = HealthKind::None;
    let config = config.to_toml();
    let start = || {
        Daemon::start_running(
            lab.lb_a().ns(),
            lb_daemon(),
            dir.path(),
            "lb-a",
            &config,
            START_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("{e:#}"))
    };
    let first = start();

    let client = lab.client().ns();
    let addr = SocketAddr::new(vip, PORT);
    let streams: Vec<EchoStream> = (0..8)
        .map(|_| {
            wait_until(START_TIMEOUT, "a connection to the VIP", || {
                Ok(EchoStream::connect(client, addr, TIMEOUT).ok())
            })
            .unwrap()
        })
        .collect();

    // Keep every stream busy until told to stop; any error is a failure.
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<Worker> = streams
        .into_iter()
        .map(|mut stream| {
            let stop = stop.clone();
            let exchanges = Arc::new(AtomicU64::new(0));
            let counted = Arc::clone(&exchanges);
            let thread = thread::spawn(move || -> anyhow::Result<(u64, Duration)> {
                let mut longest_wait = Duration::ZERO;
                let deadline = Instant::now() + Duration::from_secs(300);
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    let started = Instant::now();
                    stream.exchange(1024)?;
                    counted.fetch_add(1, Ordering::SeqCst);
                    longest_wait = longest_wait.max(started.elapsed());
                    thread::sleep(Duration::from_millis(5));
                }
                Ok((stream.verified(), longest_wait))
            });
            Worker { exchanges, thread }
        })
        .collect();

    wait_for_progress(&workers, &vec![0; workers.len()], "before the kill");
    // An operator drains the last backend: the drain outlives the daemon.
    let drained = backends[backends.len() - 1];
    let reply = http_request(
        lab.lb_a().ns(),
        ADMIN,
        "POST",
        &format!("/api/v1/backends/echo/{drained}/drain"),
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    first.child.kill(libc::SIGKILL).unwrap();
    first.child.wait_timeout(TIMEOUT).unwrap().expect("killed");
    let attached = |ns: &lb_lab::Netns| {
        ns.enter(|| attach::attached(attach::ifindex("eth0").unwrap()).unwrap())
    };
    let program = attached(lab.lb_a().ns()).expect("the program outlives the daemon");
    // The streams go on without a daemon.
    wait_for_progress(&workers, &exchanges(&workers), "while no daemon ran");

    let second = start();
    let restarted = exchanges(&workers);
    assert!(
        second.log_text().contains("adopted the balancer program"),
        "{}",
        second.log_text()
    );
    assert_eq!(attached(lab.lb_a().ns()), Some(program), "not replaced");
    // New connections work through the adopted program too.
    let mut fresh = EchoStream::connect(client, addr, TIMEOUT).unwrap();
    fresh.exchange(4096).unwrap();

    // Every stream kept going through the restart, and goes on after it.
    wait_for_progress(&workers, &restarted, "since the restart");
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        let (verified, longest) = worker.thread.join().unwrap().expect("stream broke");
        println!("stream: {verified} bytes verified, longest exchange {longest:?}");
    }
    drop(fresh);

    // The new daemon's admin API counts the adopted traffic. The only
    // virtual server's packets are all the program sent, by the verdict
    // counters, which are kept apart from the traffic ones. The two are
    // read a moment apart, so they are compared once the last packets of
    // the closed streams have passed.
    let status_of_lb_a = || -> lb_daemon::status::Status {
        let json = lab
            .lb_a()
            .ns()
            .exec_ok(lb_daemon().to_str().unwrap(), &["status", "--json"])
            .unwrap();
        serde_json::from_str(&json).unwrap()
    };
    let sent_by = |status: &lb_daemon::status::Status| -> u64 {
        status
            .dataplane
            .as_ref()
            .expect("data plane status")
            .counters
            .iter()
            .filter(|c| c.name == "tx_tunnel" || c.name == "tx_dsr")
            .map(|c| c.packets)
            .sum()
    };
    let status = read_settled(TIMEOUT, status_of_lb_a, |status| {
        status.virtual_servers[0].packets == sent_by(status)
    });
    let sent = sent_by(&status);
    let echo = &status.virtual_servers[0];
    assert_eq!(echo.packets, sent, "every packet sent counted to the VIP");
    assert!(echo.packets > 0 && echo.flows >= 9, "{echo:?}");
    for backend in &echo.backends {
        assert_eq!(
            backend.drained,
            backend.address == drained,
            "drains after the restart: {echo:?}"
        );
    }
    assert!(
        second.log_text().contains("kept the drain"),
        "{}",
        second.log_text()
    );
    let metrics = lab.lb_a().ns().enter(|| {
        let mut stream = std::net::TcpStream::connect("127.0.0.1:9100").unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    });
    let vip_line = metrics
        .lines()
        .find(|l| l.starts_with("lb_vip_packets_total{") && l.contains(&format!("\"{vip}\"")))
        .unwrap_or_else(|| panic!("no lb_vip_packets_total for {vip}:\n{metrics}"));
    let value: f64 = vip_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(value > 0.0, "{vip_line}");

    // A graceful stop detaches the program.
    second.child.kill(libc::SIGTERM).unwrap();
    let status = second.child.wait_timeout(TIMEOUT).unwrap().expect("exited");
    assert!(status.success(), "{status}:\n{}", second.log_text());
    assert_eq!(attached(lab.lb_a().ns()), None);
}
