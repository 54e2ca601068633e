//! Real TCP connections through the balancer in network namespaces: a
//! client, a balancer with the XDP program attached to its veth in driver
//! mode, and three backends with the VIP on loopback (and, in tunnel mode,
//! the decapsulation program attached by `lb-daemon decap`), all joined by
//! a bridge in a namespace of its own. Runs as root.
mod support;

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use lb_common::{proto, stats};
use lb_daemon::dataplane::{
    BackendSpec, Balancer, Forwarding, LoadOptions, VipSpec, XdpMode, attach, decap::Pass,
    programmer::VipId,
};
use support::netns::{Netns, link_to_bridge};

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const CONNECTIONS: usize = 60;

struct Backend {
    ns: Netns,
    name: String,
    address: Ipv4Addr,
    accepted: Arc<AtomicU64>,
}

struct Lab {
    backends: Vec<Backend>,
    client: Netns,
    lb: Netns,
    bridge: Netns,
    stop: Arc<AtomicBool>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn lab(tag: &str) -> Lab {
    support::require_root();
    let prefix = format!("lbf{}{tag}", std::process::id() % 100_000);
    let bridge = Netns::create(&format!("{prefix}-br"));
    bridge.ip(&["link", "add", "br0", "type", "bridge"]);
    bridge.ip(&["link", "set", "br0", "up"]);

    let client = Netns::create(&format!("{prefix}-client"));
    link_to_bridge(&bridge, "pc", &client, 1500);
    client.ip(&["addr", "add", "192.0.2.1/24", "dev", "eth0"]);

    let lb = Netns::create(&format!("{prefix}-lb"));
    link_to_bridge(&bridge, "plb", &lb, 1600);
    lb.ip(&["addr", "add", "192.0.2.2/24", "dev", "eth0"]);
    // The balancer owns the VIP on the segment (VRRP's job in production).
    lb.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "eth0"]);

    let stop = Arc::new(AtomicBool::new(false));
    let mut backends = Vec::new();
    for n in 1..=3u8 {
        let name = format!("be-{n}");
        let ns = Netns::create(&format!("{prefix}-{name}"));
        link_to_bridge(&bridge, &format!("pb{n}"), &ns, 1600);
        let address = Ipv4Addr::new(192, 0, 2, 10 + n);
        ns.ip(&["addr", "add", &format!("{address}/24"), "dev", "eth0"]);
        ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
        // Never answer ARP for the VIP; source ARP from eth0's address.
        for scope in ["all", "eth0"] {
            ns.sysctl(&format!("net.ipv4.conf.{scope}.arp_ignore"), "1");
            ns.sysctl(&format!("net.ipv4.conf.{scope}.arp_announce"), "2");
            ns.sysctl(&format!("net.ipv4.conf.{scope}.rp_filter"), "0");
        }
        let accepted = serve_http(&ns, &name, stop.clone());
        backends.push(Backend {
            ns,
            name,
            address,
            accepted,
        });
    }
    Lab {
        backends,
        client,
        lb,
        bridge,
        stop,
    }
}

/// A tiny HTTP server on port 80 answering with the backend's name.
fn serve_http(ns: &Netns, name: &str, stop: Arc<AtomicBool>) -> Arc<AtomicU64> {
    let accepted = Arc::new(AtomicU64::new(0));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let count = accepted.clone();
    let body = format!("{name}\n");
    ns.spawn(move || {
        let listener = TcpListener::bind("0.0.0.0:80").expect("bind :80");
        listener.set_nonblocking(true).unwrap();
        ready_tx.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    count.fetch_add(1, Ordering::SeqCst);
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(2)))
                        .unwrap();
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let response = format!(
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("server ready");
    accepted
}

/// One HTTP/1.0 request from the client namespace; the body.
fn http_get(target: SocketAddr) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(3))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    response
        .split("\r\n\r\n")
        .nth(1)
        .map(|b| b.trim().to_owned())
        .ok_or_else(|| format!("no body in {response:?}"))
}

fn forwards_real_connections(forwarding: Forwarding, tag: &str) {
    let lab = lab(tag);
    let mut balancer = Balancer::load(&LoadOptions {
        ring_size: 65_537,
        max_vips: 4,
        max_backends: 64,
        flow_table_size: 65_536,
        ..LoadOptions::default()
    })
    .expect("load the balancer");
    let spec = VipSpec {
        id: VipId {
            address: IpAddr::V4(VIP),
            port: 80,
            protocol: proto::TCP,
        },
        forwarding,
    };
    let backends: Vec<BackendSpec> = lab
        .backends
        .iter()
        .map(|b| BackendSpec {
            address: IpAddr::V4(b.address),
            mac: b.ns.mac("eth0"),
            weight: 100,
            up: true,
        })
        .collect();
    balancer.programmer_mut().set(spec, &backends).unwrap();

    // XDP_TX into a veth is delivered promptly only if the peer runs XDP.
    let pass = Pass::load().unwrap();
    let pass_fd = pass.program().unwrap().fd().unwrap().as_fd().as_raw_fd();
    lab.bridge.enter(|| {
        // SAFETY: `pass` outlives this call; the fd stays open.
        let fd = unsafe { BorrowedFd::borrow_raw(pass_fd) };
        attach::attach(attach::ifindex("plb").unwrap(), fd, XdpMode::Driver).unwrap();
    });
    let lb_fd = balancer
        .program()
        .unwrap()
        .fd()
        .unwrap()
        .as_fd()
        .as_raw_fd();
    lab.lb.enter(|| {
        // SAFETY: `balancer` outlives this call; the fd stays open.
        let fd = unsafe { BorrowedFd::borrow_raw(lb_fd) };
        let mode = attach::attach(attach::ifindex("eth0").unwrap(), fd, XdpMode::Driver).unwrap();
        assert_eq!(mode, XdpMode::Driver);
        let attached = attach::attached(attach::ifindex("eth0").unwrap()).unwrap();
        assert!(attached.is_some(), "program visible on eth0");
    });
    if forwarding == Forwarding::Tunnel {
        // The decapsulation program, attached by the CLI, which exits.
        for b in &lab.backends {
            let out = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    b.ns.name(),
                    env!("CARGO_BIN_EXE_lb-daemon"),
                ])
                .args(["decap", "--interface", "eth0", "--vip", &VIP.to_string()])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "decap: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    let before = balancer.maps().counters().unwrap();
    let target = SocketAddr::new(IpAddr::V4(VIP), 80);
    let answers: Vec<Result<String, String>> = lab
        .client
        .enter(|| (0..CONNECTIONS).map(|_| http_get(target)).collect());
    let after = balancer.maps().counters().unwrap();

    let mut by_backend: BTreeMap<String, usize> = BTreeMap::new();
    for answer in &answers {
        match answer {
            Ok(name) => *by_backend.entry(name.clone()).or_default() += 1,
            Err(e) => panic!("{forwarding:?}: request failed: {e}; answers so far {by_backend:?}"),
        }
    }
    println!("{forwarding:?}: {CONNECTIONS} connections -> {by_backend:?}");
    assert!(
        by_backend.len() >= 2,
        "more than one backend answered: {by_backend:?}"
    );
    for b in &lab.backends {
        let served = by_backend.get(&b.name).copied().unwrap_or(0);
        assert_eq!(
            b.accepted.load(Ordering::SeqCst) as usize,
            served,
            "{} accepted",
            b.name
        );
    }

    // The counters agree with what was sent.
    let delta =
        |index: u32| after.stats[index as usize].packets - before.stats[index as usize].packets;
    let tx = match forwarding {
        Forwarding::Tunnel => stats::TX_TUNNEL,
        Forwarding::Dsr => stats::TX_DSR,
    };
    let index = balancer.programmer().vip_index(&spec.id).unwrap() as usize;
    let vip_packets = after.vips[index].packets - before.vips[index].packets;
    let vip_flows = after.vips[index].flows - before.vips[index].flows;
    let backend_packets: u64 = (0..after.backends.len())
        .map(|i| after.backends[i].packets - before.backends[i].packets)
        .sum();
    println!(
        "{forwarding:?}: {} packets forwarded, {vip_flows} flows, drops: malformed {} no-backend {}",
        delta(tx),
        delta(stats::DROP_MALFORMED),
        delta(stats::DROP_NO_BACKEND)
    );
    assert_eq!(vip_flows, CONNECTIONS as u64, "one new flow per connection");
    assert!(
        delta(tx) >= 4 * CONNECTIONS as u64,
        "SYN, ACK, request, FIN, ACK per connection"
    );
    assert_eq!(vip_packets, delta(tx));
    assert_eq!(backend_packets, delta(tx));
    assert_eq!(
        delta(stats::DROP_MALFORMED)
            + delta(stats::DROP_NO_BACKEND)
            + delta(stats::DROP_ENCAP_FAILED),
        0
    );
    drop(pass);
}

#[test]
fn tunnel_mode_balances_real_connections() {
    forwards_real_connections(Forwarding::Tunnel, "t");
}

#[test]
fn dsr_mode_balances_real_connections() {
    forwards_real_connections(Forwarding::Dsr, "d");
}
