//! `Vrrp` in-process on a thread inside a lab namespace, adverts injected
//! with a raw socket from the peer's namespace: malformed ones (wrong TTL,
//! bad checksum, wrong version, truncated, a bogus priority-255 claim,
//! wrong address count) are discarded and counted per reason while the
//! master keeps its role; then tracking through the API, a reload, and a
//! well-formed higher-priority advert that does take mastership (so the
//! injection path is proven to reach the instance).
//!
//! Must run as root (`cargo xtask test`); fails otherwise.
mod support;

use std::{
    fs,
    net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use ipnet::IpNet;
use lb_daemon::{
    config::{Track, VrrpInstance, VrrpVersion},
    status::{VrrpState, VrrpStatus},
    vrrp::{
        InstanceCounters, Vrrp, addresses,
        packet::{self, Advert, Version},
    },
};
use lb_lab::{Netns, TempDir, Topology, TopologyOptions, unique_prefix, wait_until};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use support::require_root;

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
const TIMEOUT: Duration = Duration::from_secs(5);
/// The second link between lb-a and lb-b.
const SIDE_A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const SIDE_B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

fn instance(name: &str, vrid: u8, vip: Ipv4Addr, notify: &Path) -> VrrpInstance {
    VrrpInstance {
        name: name.into(),
        interface: "eth0".into(),
        vrid,
        version: VrrpVersion::V3,
        priority: 150,
        advert_interval: Duration::from_millis(100),
        preempt: true,
        preempt_delay: Duration::ZERO,
        virtual_addresses: vec![IpNet::new(vip.into(), 24).unwrap()],
        unicast_peers: Vec::new(),
        notify: Some(notify.to_owned()),
        track: vec![
            Track::VirtualServer {
                name: "web".into(),
                weight: -60,
            },
            Track::Interface {
                name: "eth1".into(),
                weight: -30,
            },
        ],
    }
}

enum Command {
    Snapshot(std::sync::mpsc::Sender<(Vec<VrrpStatus>, Vec<InstanceCounters>)>),
    Healthy(&'static str, bool),
    Reload(Vec<VrrpInstance>, std::sync::mpsc::Sender<String>),
    Stop,
}

/// `Vrrp` on a current-thread runtime on a thread inside `ns`: all its
/// sockets and netlink requests belong to that namespace.
struct InProcess {
    commands: tokio::sync::mpsc::UnboundedSender<Command>,
    thread: Option<JoinHandle<anyhow::Result<anyhow::Result<()>>>>,
}

impl InProcess {
    fn start(ns: &Netns, instances: Vec<VrrpInstance>) -> InProcess {
        let (commands, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let thread = ns
            .spawn_thread(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let mut vrrp = Vrrp::start(instances).await?;
                    while let Some(command) = rx.recv().await {
                        match command {
                            Command::Snapshot(reply) => {
                                let _ = reply.send((vrrp.status(), vrrp.counters()));
                            }
                            Command::Healthy(name, healthy) => {
                                vrrp.set_virtual_server_healthy(name, healthy);
                            }
                            Command::Reload(instances, reply) => {
                                let result = vrrp.reload(instances).await;
                                let _ = reply.send(format!("{result:?}"));
                            }
                            Command::Stop => break,
                        }
                    }
                    vrrp.shutdown().await;
                    Ok(())
                })
            })
            .unwrap();
        InProcess {
            commands,
            thread: Some(thread),
        }
    }

    fn snapshot(&self) -> (Vec<VrrpStatus>, Vec<InstanceCounters>) {
        let (tx, rx) = std::sync::mpsc::channel();
        self.commands.send(Command::Snapshot(tx)).unwrap();
        rx.recv_timeout(TIMEOUT).expect("the VRRP thread answers")
    }

    fn status(&self, name: &str) -> VrrpStatus {
        self.snapshot()
            .0
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no instance {name}"))
    }

    fn discards(&self, name: &str) -> Vec<(&'static str, u64)> {
        self.snapshot()
            .1
            .into_iter()
            .find(|c| c.name == name)
            .unwrap()
            .discards
    }

    fn wait(&self, what: &str, mut f: impl FnMut(&VrrpStatus) -> bool) -> VrrpStatus {
        wait_until(TIMEOUT, what, || {
            let status = self.status("VI_1");
            Ok(f(&status).then_some(status))
        })
        .unwrap_or_else(|e| panic!("{e:#}: {:#?}", self.snapshot()))
    }

    fn stop(mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap().unwrap().unwrap();
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An IPv4 packet of protocol 112 from `src` to the VRRP group with `ttl`.
fn ipv4(src: Ipv4Addr, ttl: u8, message: &[u8]) -> Vec<u8> {
    ipv4_to(src, GROUP, ttl, message)
}

fn ipv4_to(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, message: &[u8]) -> Vec<u8> {
    let mut packet = vec![0x45, 0xc0, 0, 0, 0, 0, 0, 0, ttl, packet::PROTOCOL, 0, 0];
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    packet.extend_from_slice(message);
    let len = packet.len() as u16;
    packet[2..4].copy_from_slice(&len.to_be_bytes());
    packet
}

/// Sends `packets` out of `eth0` of `ns`, 10 ms apart (a bounded burst).
fn inject(ns: &Netns, packets: &[Vec<u8>]) {
    inject_to(ns, "eth0", GROUP, packets);
}

/// A raw socket that sends whole IPv4 packets (VRRP, headers included)
/// out of `interface` of the namespace it is made in, and where to send
/// them: `dst`.
fn raw_vrrp_socket(interface: &str, dst: Ipv4Addr) -> std::io::Result<(Socket, SockAddr)> {
    let socket = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(i32::from(packet::PROTOCOL))),
    )?;
    socket.set_header_included_v4(true)?;
    socket.bind_device(Some(interface.as_bytes()))?;
    Ok((socket, SocketAddr::V4(SocketAddrV4::new(dst, 0)).into()))
}

/// Sends `packets` out of `interface` of `ns` to `dst`, 10 ms apart.
fn inject_to(ns: &Netns, interface: &str, dst: Ipv4Addr, packets: &[Vec<u8>]) {
    ns.enter(|| {
        let (socket, to) = raw_vrrp_socket(interface, dst).unwrap();
        for packet in packets {
            socket.send_to(packet, &to).unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
    });
}

/// Sends one packet out of `eth0` of a namespace to the VRRP group every
/// `every`, from a thread of its own, until stopped (or for at most a
/// minute); stopped on drop.
struct Repeater {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<anyhow::Result<u64>>>>,
}

impl Repeater {
    fn start(ns: &Netns, packet: Vec<u8>, every: Duration) -> Repeater {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            ns.spawn_thread(move || -> anyhow::Result<u64> {
                let (socket, to) = raw_vrrp_socket("eth0", GROUP)?;
                let until = Instant::now() + Duration::from_secs(60);
                let mut sent = 0;
                while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                    socket.send_to(&packet, &to)?;
                    sent += 1;
                    std::thread::sleep(every);
                }
                Ok(sent)
            })
            .unwrap()
        };
        Repeater {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sending; the number of packets sent.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread.take().expect("running");
        thread.join().unwrap().unwrap().expect("the packets sent")
    }
}

impl Drop for Repeater {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn count(discards: &[(&'static str, u64)], reason: &str) -> u64 {
    discards
        .iter()
        .find(|(name, _)| *name == reason)
        .unwrap_or_else(|| panic!("no reason {reason}"))
        .1
}

#[test]
fn malformed_adverts_are_counted_and_the_master_keeps_its_role() {
    require_root();
    let mut options = TopologyOptions::new(unique_prefix("vrdi"));
    options.backends = 1;
    let lab = Topology::create(&options).expect("create lab");
    let (a, b) = (lab.lb_a(), lab.lb_b().unwrap());
    let peer = b.ipv4();
    // A second link between the two, which the instance must ignore
    // (and tracks: down lowers the priority by 30).
    lb_lab::veth(a.ns(), "eth1", b.ns(), "eth1").unwrap();
    let side = [(a.ns(), SIDE_A), (b.ns(), SIDE_B)];
    for (ns, address) in side {
        lb_lab::link::add_address(ns, "eth1", address.into(), 24).unwrap();
        lb_lab::link::set_up(ns, "eth1").unwrap();
    }
    for (ns, _) in side {
        lb_lab::link::wait_up(ns, "eth1", TIMEOUT).unwrap();
    }
    let dir = TempDir::new("vrrp-discards").unwrap();
    let notify = dir.path().join("notify.sh");
    let notified = dir.path().join("notified");
    fs::write(
        &notify,
        format!("#!/bin/sh\necho \"$1 $2\" >> {}\n", notified.display()),
    )
    .unwrap();
    fs::set_permissions(&notify, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let vrrp = InProcess::start(a.ns(), vec![instance("VI_1", 51, VIP, &notify)]);

    // Alone on the segment it becomes master after Master_Down_Interval.
    let master = vrrp.wait("master", |s| s.state == VrrpState::Master);
    assert_eq!(master.master, Some(IpAddr::V4(a.ipv4())));
    assert_eq!(master.transitions.master, 1);
    let ifindex = lb_lab::link::ifindex(a.ns(), "eth0").unwrap();
    assert!(
        a.ns()
            .enter(|| addresses::has(ifindex, VIP.into()).unwrap())
    );

    // A higher priority than the master's, so that any of these, if
    // accepted, would make it step down.
    let good = Advert {
        version: Version::V3,
        vrid: 51,
        priority: 200,
        interval_cs: 10,
        addresses: vec![VIP.into()],
    };
    let encode = |advert: &Advert| packet::encode(advert, peer.into(), GROUP.into()).unwrap();
    let mut bad_checksum = encode(&good);
    bad_checksum[7] ^= 0x5a;
    let mut v2 = good.clone();
    v2.version = Version::V2;
    v2.interval_cs = 100;
    let mut version_4 = encode(&good);
    version_4[0] = 0x41;
    let mut owner = good.clone();
    owner.priority = 255;
    let mut two = good.clone();
    two.addresses.push(Ipv4Addr::new(192, 0, 2, 101).into());
    let cases: [(&str, Vec<u8>); 7] = [
        ("ttl", ipv4(peer, 64, &encode(&good))),
        ("checksum", ipv4(peer, 255, &bad_checksum)),
        ("version", ipv4(peer, 255, &encode(&v2))),
        ("version", ipv4(peer, 255, &version_4)),
        ("truncated", ipv4(peer, 255, &encode(&good)[..6])),
        ("owner_claim", ipv4(peer, 255, &encode(&owner))),
        ("address_count", ipv4(peer, 255, &encode(&two))),
    ];
    const ROUNDS: u64 = 5;
    let burst: Vec<Vec<u8>> = (0..ROUNDS)
        .flat_map(|_| cases.iter().map(|(_, p)| p.clone()))
        .collect();
    inject(b.ns(), &burst);
    let expected =
        |reason: &str| ROUNDS * cases.iter().filter(|(r, _)| *r == reason).count() as u64;
    wait_until(TIMEOUT, "every injected advert counted", || {
        let discards = vrrp.discards("VI_1");
        Ok(cases
            .iter()
            .all(|(reason, _)| count(&discards, reason) >= expected(reason))
            .then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}: {:?}", vrrp.discards("VI_1")));
    let discards = vrrp.discards("VI_1");
    for (reason, _) in &cases {
        assert_eq!(
            count(&discards, reason),
            expected(reason),
            "{reason}: {discards:?}"
        );
    }
    let status = vrrp.status("VI_1");
    assert_eq!(status.state, VrrpState::Master, "{status:#?}");
    assert_eq!(status.transitions.master, 1);
    assert_eq!(status.transitions.backup, 1); // the startup one
    assert_eq!(status.adverts_received, 0);
    assert_eq!(status.adverts_discarded, ROUNDS * cases.len() as u64);
    assert!(status.adverts_sent > 0);

    // A well-formed advert of priority 200 on another interface is not
    // for this instance (it listens on eth0 only).
    let elsewhere: Vec<Vec<u8>> = (0..5)
        .map(|_| {
            let message = packet::encode(&good, SIDE_B.into(), SIDE_A.into()).unwrap();
            ipv4_to(SIDE_B, SIDE_A, 255, &message)
        })
        .collect();
    inject_to(b.ns(), "eth1", SIDE_A, &elsewhere);
    std::thread::sleep(Duration::from_millis(200));
    let status = vrrp.status("VI_1");
    assert_eq!(status.state, VrrpState::Master, "{status:#?}");
    assert_eq!(status.adverts_received, 0);

    // Tracking: the tracked interface going down lowers the priority.
    a.ns().ip(&["link", "set", "eth1", "down"]).unwrap();
    vrrp.wait("priority 120", |s| s.effective_priority == 120);
    a.ns().ip(&["link", "set", "eth1", "up"]).unwrap();
    vrrp.wait("priority 150", |s| s.effective_priority == 150);

    // Tracking through the API: no healthy backend lowers the priority.
    vrrp.commands.send(Command::Healthy("web", false)).unwrap();
    vrrp.wait("priority 90", |s| s.effective_priority == 90);
    vrrp.commands.send(Command::Healthy("web", true)).unwrap();
    vrrp.wait("priority 150", |s| s.effective_priority == 150);

    // Reload: the unchanged instance is untouched, a new one starts.
    let (tx, rx) = std::sync::mpsc::channel();
    let both = vec![
        instance("VI_1", 51, VIP, &notify),
        instance("VI_2", 52, Ipv4Addr::new(192, 0, 2, 102), &notify),
    ];
    vrrp.commands.send(Command::Reload(both, tx)).unwrap();
    assert_eq!(rx.recv_timeout(TIMEOUT).unwrap(), "Ok(())");
    assert_eq!(vrrp.snapshot().0.len(), 2);
    wait_until(TIMEOUT, "VI_2 master", || {
        Ok((vrrp.status("VI_2").state == VrrpState::Master).then_some(()))
    })
    .unwrap();
    let unchanged = vrrp.status("VI_1");
    assert_eq!(unchanged.transitions, status.transitions);
    assert_eq!(unchanged.state, VrrpState::Master);

    // A well-formed advert of priority 200 does take mastership. The
    // "peer" keeps advertising, every 100 ms as it says, while it is
    // checked (without its adverts the instance would take over again
    // about 340 ms after the last).
    let peer_adverts = Repeater::start(
        b.ns(),
        ipv4(peer, 255, &encode(&good)),
        Duration::from_millis(100),
    );
    let backup = vrrp.wait("backup", |s| s.state == VrrpState::Backup);
    assert_eq!(backup.master, Some(IpAddr::V4(peer)));
    assert!(backup.adverts_received >= 1);
    wait_until(TIMEOUT, "the VIP removed", || {
        Ok((!a
            .ns()
            .enter(|| addresses::has(ifindex, VIP.into()).unwrap()))
        .then_some(()))
    })
    .unwrap();
    assert_eq!(vrrp.status("VI_1").state, VrrpState::Backup);
    assert!(peer_adverts.stop() > 0);

    // Its own interface down: Fault, as keepalived; back up: it starts over.
    let before = vrrp.status("VI_1").transitions;
    a.ns().ip(&["link", "set", "eth0", "down"]).unwrap();
    let fault = vrrp.wait("fault", |s| s.state == VrrpState::Fault);
    assert_eq!(fault.transitions.fault, before.fault + 1);
    a.ns().ip(&["link", "set", "eth0", "up"]).unwrap();
    vrrp.wait("master again", |s| s.state == VrrpState::Master);
    vrrp.stop();

    // The notify command ran on every transition, keepalived-style.
    let lines = wait_until(TIMEOUT, "notify lines", || {
        let text = fs::read_to_string(&notified).unwrap_or_default();
        let done = text.contains("VI_1 INITIALIZE") && text.contains("VI_2 INITIALIZE");
        Ok(done.then_some(text))
    })
    .unwrap();
    let vi_1: Vec<&str> = lines.lines().filter(|l| l.starts_with("VI_1 ")).collect();
    assert_eq!(
        vi_1[..3],
        ["VI_1 BACKUP", "VI_1 MASTER", "VI_1 BACKUP"],
        "{lines}"
    );
    assert!(lines.contains("VI_2 MASTER"), "{lines}");
}
