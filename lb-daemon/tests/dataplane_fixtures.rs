//! The balancer program on crafted packets through BPF_PROG_TEST_RUN:
//! for each fixture, the verdict, the exact bytes that come out, and the
//! counter that accounts for it. Runs as root.
mod support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{IpNumber, Ipv4Header, Ipv4Options};
use lb_common::{Traffic, flow_table, proto, ring_slot, stats};
use lb_daemon::dataplane::{
    BackendSpec, Balancer, Forwarding, LoadOptions, VipSpec,
    programmer::VipId,
    test_run::{self, action},
};
use support::packets::{self, CLIENT_V4, CLIENT_V6, hash4, hash6, hex};

const RING: u32 = 1009;
const VIP4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const VIP4_ANY_PORT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 101);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
const VIP6_ANY_PORT: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x101);

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

fn v6(last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last))
}

fn backend(address: IpAddr) -> BackendSpec {
    let last = match address {
        IpAddr::V4(a) => a.octets()[3],
        IpAddr::V6(a) => a.octets()[15],
    };
    BackendSpec {
        address,
        mac: [
            0x02,
            0xbe,
            0,
            0,
            if address.is_ipv4() { 4 } else { 6 },
            last,
        ],
        weight: 100,
        up: true,
        drained: false,
    }
}

fn vip(address: IpAddr, port: u16, protocol: u8, forwarding: Forwarding) -> VipSpec {
    VipSpec {
        id: VipId {
            address,
            port,
            protocol,
        },
        forwarding,
    }
}

/// The virtual servers every fixture runs against.
struct Setup {
    balancer: Balancer,
    web4: VipSpec,
    dns4: VipSpec,
    web6: VipSpec,
    any4: VipSpec,
    any6: VipSpec,
}

fn setup() -> Setup {
    support::require_root();
    let mut balancer = Balancer::load(&LoadOptions {
        ring_size: RING,
        max_vips: 8,
        max_backends: 64,
        flow_table_size: 4096,
        ..LoadOptions::default()
    })
    .expect("load the balancer");
    let web4 = vip(IpAddr::V4(VIP4), 80, proto::TCP, Forwarding::Tunnel);
    let dns4 = vip(IpAddr::V4(VIP4), 53, proto::UDP, Forwarding::Dsr);
    let web6 = vip(IpAddr::V6(VIP6), 80, proto::TCP, Forwarding::Tunnel);
    // Port 0: all ports. IPv4 VIP with an IPv6 backend (4in6) and the
    // other way round (6in4).
    let any4 = vip(IpAddr::V4(VIP4_ANY_PORT), 0, proto::TCP, Forwarding::Tunnel);
    let any6 = vip(IpAddr::V6(VIP6_ANY_PORT), 0, proto::UDP, Forwarding::Tunnel);
    let p = balancer.programmer_mut();
    p.set(web4, &[backend(v4(11)), backend(v4(12)), backend(v4(13))])
        .unwrap();
    p.set(dns4, &[backend(v4(11)), backend(v4(12))]).unwrap();
    p.set(web6, &[backend(v6(0x11)), backend(v6(0x12))])
        .unwrap();
    p.set(any4, &[backend(v6(0x13))]).unwrap();
    p.set(any6, &[backend(v4(14))]).unwrap();
    Setup {
        balancer,
        web4,
        dns4,
        web6,
        any4,
        any6,
    }
}

impl Setup {
    /// The backend the ring of `spec` gives for `hash`.
    fn ring_backend(&self, spec: &VipSpec, hash: u32, candidates: &[IpAddr]) -> BackendSpec {
        let p = self.balancer.programmer();
        let ring = p.ring(&spec.id).expect("ring");
        let id = ring[ring_slot(hash, RING) as usize];
        let address = candidates
            .iter()
            .find(|a| p.backend_id(&spec.id, a) == Some(id))
            .expect("ring slot names one of the backends");
        backend(*address)
    }

    /// A client port whose flow from `CLIENT_V4` to web4 the ring sends to
    /// `backend`.
    fn web4_port_to(&self, backend: IpAddr) -> u16 {
        let backends = [v4(11), v4(12), v4(13)];
        (30000u16..40000)
            .find(|p| {
                let hash = hash4(CLIENT_V4, *p, VIP4, 80, proto::TCP);
                self.ring_backend(&self.web4, hash, &backends).address == backend
            })
            .expect("a port to that backend")
    }

    /// Runs `frame`, checks verdict, output and that exactly `stat` (and
    /// no other verdict counter) went up by one.
    fn check(&self, name: &str, frame: &[u8], want_action: u32, want: &[u8], stat: u32) {
        let before = self.balancer.maps().counters().unwrap();
        let program = self.balancer.program().unwrap();
        let out = test_run::run(program, frame).unwrap();
        let after = self.balancer.maps().counters().unwrap();
        assert_eq!(
            action::name(out.action),
            action::name(want_action),
            "{name}: verdict\ninput:\n{}",
            hex(frame)
        );
        assert!(
            out.packet == want,
            "{name}: output differs\ngot:\n{}\nwant:\n{}",
            hex(&out.packet),
            hex(want)
        );
        for index in 0..stats::FIRST_EVENT {
            let delta = after.stats[index as usize].packets - before.stats[index as usize].packets;
            let expected = u64::from(index == stat);
            assert_eq!(
                delta,
                expected,
                "{name}: counter {} moved by {delta}",
                stats::NAMES[index as usize]
            );
        }
    }

    fn tx(&self, name: &str, frame: &[u8], want: &[u8], stat: u32) {
        self.check(name, frame, action::TX, want, stat);
    }

    fn pass(&self, name: &str, frame: &[u8], stat: u32) {
        self.check(name, frame, action::PASS, frame, stat);
    }

    fn drop(&self, name: &str, frame: &[u8], stat: u32) {
        self.check(name, frame, action::DROP, frame, stat);
    }
}

#[test]
fn tunnel_ipv4_tcp() {
    let s = setup();
    let backends = [v4(11), v4(12), v4(13)];
    for sport in [40000u16, 40001, 40002, 51515, 60000] {
        let hash = hash4(CLIENT_V4, sport, VIP4, 80, proto::TCP);
        let b = s.ring_backend(&s.web4, hash, &backends);
        let syn = packets::tcp(CLIENT_V4.into(), sport, VIP4.into(), 80, true);
        let want = packets::tunnelled(&syn, b.address, b.mac, hash);
        s.tx("ipv4 syn", &syn, &want, stats::TX_TUNNEL);
        let data = packets::tcp(CLIENT_V4.into(), sport, VIP4.into(), 80, false);
        let want = packets::tunnelled(&data, b.address, b.mac, hash);
        s.tx("ipv4 established", &data, &want, stats::TX_TUNNEL);
    }
}

#[test]
fn tunnel_outer_ipv4_checksum_is_valid() {
    let s = setup();
    let syn = packets::tcp(CLIENT_V4.into(), 41000, VIP4.into(), 80, true);
    let out = test_run::run(s.balancer.program().unwrap(), &syn).unwrap();
    let (outer, _) = Ipv4Header::from_slice(&out.packet[14..]).unwrap();
    assert_eq!(outer.header_checksum, outer.calc_header_checksum());
    assert_eq!(outer.protocol, IpNumber::IPV4);
    assert_eq!(usize::from(outer.total_len), out.packet.len() - 14);
}

#[test]
fn tunnel_ipv4_vlan_tagged() {
    let s = setup();
    let hash = hash4(CLIENT_V4, 42000, VIP4, 80, proto::TCP);
    let b = s.ring_backend(&s.web4, hash, &[v4(11), v4(12), v4(13)]);
    let frame = packets::vlan_tagged(
        &packets::tcp(CLIENT_V4.into(), 42000, VIP4.into(), 80, true),
        42,
    );
    let want = packets::tunnelled(&frame, b.address, b.mac, hash);
    s.tx("vlan-tagged ipv4 syn", &frame, &want, stats::TX_TUNNEL);
}

#[test]
fn tunnel_ipv4_with_options() {
    let s = setup();
    let sport = 43000;
    let hash = hash4(CLIENT_V4, sport, VIP4, 80, proto::TCP);
    let b = s.ring_backend(&s.web4, hash, &[v4(11), v4(12), v4(13)]);
    let tcp = packets::tcp_header_bytes(sport, 80);
    let mut header = Ipv4Header::new(
        tcp.len() as u16,
        64,
        IpNumber::TCP,
        CLIENT_V4.octets(),
        VIP4.octets(),
    )
    .unwrap();
    // Router alert (RFC 2113) plus padding: IHL 6.
    header.options = Ipv4Options::from([0x94, 0x04, 0x00, 0x00]);
    let frame = packets::ipv4_raw(header, &tcp);
    let want = packets::tunnelled(&frame, b.address, b.mac, hash);
    s.tx("ipv4 with options", &frame, &want, stats::TX_TUNNEL);
}

#[test]
fn tunnel_ipv6_tcp() {
    let s = setup();
    for sport in [40000u16, 40001, 45000] {
        let hash = hash6(CLIENT_V6, sport, VIP6, 80, proto::TCP);
        let b = s.ring_backend(&s.web6, hash, &[v6(0x11), v6(0x12)]);
        for syn in [true, false] {
            let frame = packets::tcp(CLIENT_V6.into(), sport, VIP6.into(), 80, syn);
            let want = packets::tunnelled(&frame, b.address, b.mac, hash);
            s.tx("ipv6 tcp", &frame, &want, stats::TX_TUNNEL);
        }
    }
}

#[test]
fn tunnel_across_families_and_port_zero() {
    let s = setup();
    // IPv4 client to an all-ports IPv4 VIP, IPv6 backend: IPv4-in-IPv6.
    let hash = hash4(CLIENT_V4, 44000, VIP4_ANY_PORT, 8443, proto::TCP);
    let frame = packets::tcp(CLIENT_V4.into(), 44000, VIP4_ANY_PORT.into(), 8443, true);
    let b = backend(v6(0x13));
    let want = packets::tunnelled(&frame, b.address, b.mac, hash);
    s.tx("4in6 port 0", &frame, &want, stats::TX_TUNNEL);
    // IPv6 UDP to an all-ports IPv6 VIP, IPv4 backend: 6in4.
    let hash = hash6(CLIENT_V6, 5353, VIP6_ANY_PORT, 9999, proto::UDP);
    let frame = packets::udp(CLIENT_V6.into(), 5353, VIP6_ANY_PORT.into(), 9999);
    let b = backend(v4(14));
    let want = packets::tunnelled(&frame, b.address, b.mac, hash);
    s.tx("6in4 port 0", &frame, &want, stats::TX_TUNNEL);
    let _ = (&s.any4, &s.any6);
}

#[test]
fn dsr_ipv4_udp() {
    let s = setup();
    for sport in [5000u16, 5001, 5002, 5003] {
        let hash = hash4(CLIENT_V4, sport, VIP4, 53, proto::UDP);
        let b = s.ring_backend(&s.dns4, hash, &[v4(11), v4(12)]);
        let frame = packets::udp(CLIENT_V4.into(), sport, VIP4.into(), 53);
        s.tx(
            "dsr udp",
            &frame,
            &packets::dsr(&frame, b.mac),
            stats::TX_DSR,
        );
        let tagged = packets::vlan_tagged(&frame, 7);
        s.tx(
            "dsr udp vlan",
            &tagged,
            &packets::dsr(&tagged, b.mac),
            stats::TX_DSR,
        );
    }
}

#[test]
fn not_for_a_vip_passes_untouched() {
    let s = setup();
    let other = Ipv4Addr::new(192, 0, 2, 50);
    s.pass(
        "other address",
        &packets::tcp(CLIENT_V4.into(), 1, other.into(), 80, true),
        stats::PASS_NOT_VIP,
    );
    s.pass(
        "vip, other port",
        &packets::tcp(CLIENT_V4.into(), 1, VIP4.into(), 22, true),
        stats::PASS_NOT_VIP,
    );
    s.pass(
        "vip, other protocol",
        &packets::udp(CLIENT_V4.into(), 1, VIP4.into(), 80),
        stats::PASS_NOT_VIP,
    );
    s.pass(
        "ipv6 other",
        &packets::tcp(CLIENT_V6.into(), 1, v6(0x50), 80, true),
        stats::PASS_NOT_VIP,
    );
    let mut arp = packets::udp(CLIENT_V4.into(), 1, VIP4.into(), 53);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    s.pass("arp", &arp, stats::PASS_NOT_IP);
    let qinq = packets::vlan_tagged(
        &packets::vlan_tagged(&packets::tcp(CLIENT_V4.into(), 1, VIP4.into(), 80, true), 5),
        6,
    );
    s.pass("stacked vlan tags", &qinq, stats::PASS_UNSUPPORTED);
    // ICMP echo to a VIP is the kernel's (the VRRP master answers pings).
    let echo = Ipv4Header::new(8, 64, IpNumber::ICMP, CLIENT_V4.octets(), VIP4.octets()).unwrap();
    s.pass(
        "ping to vip",
        &packets::ipv4_raw(echo, &[8, 0, 0xf7, 0xff, 0, 0, 0, 0]),
        stats::PASS_NOT_VIP,
    );
}

#[test]
fn flow_keeps_its_backend_until_the_backend_goes() {
    let mut s = setup();
    let backends = [v4(11), v4(12), v4(13)];
    // Find a flow on .11, open it, then drain .11 (weight 0): the flow
    // stays; a new flow hashing to the same slot now goes elsewhere.
    let sport = s.web4_port_to(v4(11));
    let hash = hash4(CLIENT_V4, sport, VIP4, 80, proto::TCP);
    let program_out =
        |s: &Setup, frame: &[u8]| test_run::run(s.balancer.program().unwrap(), frame).unwrap();
    let syn = packets::tcp(CLIENT_V4.into(), sport, VIP4.into(), 80, true);
    let first = program_out(&s, &syn);
    assert_eq!(
        first.packet,
        packets::tunnelled(&syn, v4(11), backend(v4(11)).mac, hash)
    );

    let mut drained = backend(v4(11));
    drained.weight = 0;
    s.balancer
        .programmer_mut()
        .set(s.web4, &[drained, backend(v4(12)), backend(v4(13))])
        .unwrap();
    let data = packets::tcp(CLIENT_V4.into(), sport, VIP4.into(), 80, false);
    let out = program_out(&s, &data);
    assert_eq!(
        out.packet,
        packets::tunnelled(&data, v4(11), drained.mac, hash),
        "drained backend keeps its flow"
    );
    let hits = s.balancer.maps().stat(stats::FLOW_HIT).unwrap().packets;
    assert!(hits >= 1);

    // Down (failed health check): the flow moves to the ring's backend.
    let mut down = drained;
    down.up = false;
    s.balancer
        .programmer_mut()
        .set(s.web4, &[down, backend(v4(12)), backend(v4(13))])
        .unwrap();
    let rehash_before = s.balancer.maps().stat(stats::FLOW_REHASH).unwrap().packets;
    let out = program_out(&s, &data);
    let now = s.ring_backend(&s.web4, hash, &backends);
    assert_ne!(now.address, v4(11));
    assert_eq!(
        out.packet,
        packets::tunnelled(&data, now.address, now.mac, hash)
    );
    assert_eq!(
        s.balancer.maps().stat(stats::FLOW_REHASH).unwrap().packets,
        rehash_before + 1
    );
}

/// A forwarded packet counts only against its backend; the virtual
/// server's traffic is its backends' plus what backends that left it had,
/// so removing a backend loses nothing, and its id starts from zero when
/// given out again.
#[test]
fn traffic_of_a_removed_backend_stays_with_its_virtual_server() {
    let mut s = setup();
    let run =
        |s: &Setup, frame: &[u8]| test_run::run(s.balancer.program().unwrap(), frame).unwrap();
    let sport = s.web4_port_to(v4(11));
    let syn = packets::tcp(CLIENT_V4.into(), sport, VIP4.into(), 80, true);
    let data = packets::tcp(CLIENT_V4.into(), sport, VIP4.into(), 80, false);
    for frame in [&syn, &data, &data] {
        assert_eq!(run(&s, frame).action, action::TX);
    }
    let id = s
        .balancer
        .programmer()
        .backend_id(&s.web4.id, &v4(11))
        .unwrap();
    let bytes = (syn.len() + 2 * data.len()) as u64;
    let want = Traffic {
        packets: 3,
        bytes,
        flows: 1,
    };
    assert_eq!(s.balancer.maps().backend_traffic(id).unwrap(), want);
    let counters = s.balancer.maps().counters().unwrap();
    let index = s.balancer.programmer().vip_index(&s.web4.id).unwrap() as usize;
    assert_eq!(
        counters.vips[index],
        Traffic::default(),
        "nothing retired yet"
    );
    assert_eq!(
        s.balancer.programmer().vip_traffic(&s.web4.id, &counters),
        want
    );

    // .11 leaves: its flow moves, its traffic stays with web4.
    s.balancer
        .programmer_mut()
        .set(s.web4, &[backend(v4(12)), backend(v4(13))])
        .unwrap();
    assert_eq!(
        s.balancer.maps().backend_traffic(id).unwrap(),
        Traffic::default()
    );
    let counters = s.balancer.maps().counters().unwrap();
    assert_eq!(
        counters.vips[index], want,
        "retired into web4's own counter"
    );
    assert_eq!(
        s.balancer.programmer().vip_traffic(&s.web4.id, &counters),
        want
    );
    assert_eq!(run(&s, &data).action, action::TX);
    let counters = s.balancer.maps().counters().unwrap();
    let total = s.balancer.programmer().vip_traffic(&s.web4.id, &counters);
    assert_eq!(
        (total.packets, total.flows),
        (4, 2),
        "the moved flow counts as a new flow of another backend"
    );

    // The virtual server goes: its own counter is cleared with it.
    s.balancer.programmer_mut().remove(&s.web4.id).unwrap();
    let counters = s.balancer.maps().counters().unwrap();
    assert_eq!(counters.vips[index], Traffic::default());
    assert!(
        counters.backends.iter().all(|b| *b == Traffic::default()),
        "web4's backends were the only ones with traffic, and are cleared"
    );
}

#[test]
fn retransmitted_syn_keeps_its_backend() {
    let mut s = setup();
    let backends = [v4(11), v4(12), v4(13)];
    let sport = s.web4_port_to(v4(12));
    let hash = hash4(CLIENT_V4, sport, VIP4, 80, proto::TCP);
    let syn = packets::tcp(CLIENT_V4.into(), sport, VIP4.into(), 80, true);
    let b = backend(v4(12));
    s.tx(
        "syn",
        &syn,
        &packets::tunnelled(&syn, b.address, b.mac, hash),
        stats::TX_TUNNEL,
    );
    // Drained before the SYN is retransmitted: the ring no longer names
    // .12, but the flow entry the first SYN wrote does.
    let mut drained = b;
    drained.weight = 0;
    s.balancer
        .programmer_mut()
        .set(s.web4, &[backend(v4(11)), drained, backend(v4(13))])
        .unwrap();
    assert_ne!(s.ring_backend(&s.web4, hash, &backends).address, v4(12));
    let hits = s.balancer.maps().stat(stats::FLOW_HIT).unwrap().packets;
    s.tx(
        "retransmitted syn",
        &syn,
        &packets::tunnelled(&syn, b.address, b.mac, hash),
        stats::TX_TUNNEL,
    );
    assert_eq!(
        s.balancer.maps().stat(stats::FLOW_HIT).unwrap().packets,
        hits + 1
    );
}

#[test]
fn flows_of_a_removed_virtual_server_pass() {
    let mut s = setup();
    let data = packets::tcp(CLIENT_V4.into(), 46000, VIP4.into(), 80, false);
    let out = test_run::run(s.balancer.program().unwrap(), &data).unwrap();
    assert_eq!(action::name(out.action), "XDP_TX");
    s.balancer.programmer_mut().remove(&s.web4.id).unwrap();
    // The flow entry is still there, but its backend no longer serves a
    // virtual server at this address and port.
    s.pass("flow of a removed vip", &data, stats::PASS_NOT_VIP);
}

#[test]
fn ring_change_does_not_move_established_flows() {
    let mut s = setup();
    let backends = [v4(11), v4(12), v4(13), v4(15)];
    let flows: Vec<u16> = (20000..20200).collect();
    let mut first = Vec::new();
    for sport in &flows {
        let frame = packets::tcp(CLIENT_V4.into(), *sport, VIP4.into(), 80, true);
        first.push(
            test_run::run(s.balancer.program().unwrap(), &frame)
                .unwrap()
                .packet[..6]
                .to_vec(),
        );
    }
    // A fourth backend joins: about a quarter of the ring moves to it,
    // but flows already in the table stay where they are.
    s.balancer
        .programmer_mut()
        .set(
            s.web4,
            &backends.iter().map(|a| backend(*a)).collect::<Vec<_>>(),
        )
        .unwrap();
    let mut new_flows_to_new_backend = 0;
    for (i, sport) in flows.iter().enumerate() {
        let frame = packets::tcp(CLIENT_V4.into(), *sport, VIP4.into(), 80, false);
        let out = test_run::run(s.balancer.program().unwrap(), &frame).unwrap();
        assert_eq!(out.packet[..6], first[i][..], "flow {sport} moved");
        let fresh = packets::tcp(CLIENT_V4.into(), *sport + 1000, VIP4.into(), 80, true);
        let out = test_run::run(s.balancer.program().unwrap(), &fresh).unwrap();
        new_flows_to_new_backend += usize::from(out.packet[..6] == backend(v4(15)).mac);
    }
    assert!(
        new_flows_to_new_backend > 20,
        "new flows reach the new backend ({new_flows_to_new_backend}/200)"
    );
}

/// Two CPUs hammer one set of the flow table with eight flows (twice as
/// many as it holds), so that ways are evicted and claimed by both at
/// once. The flows differ only in their client address, which is written
/// apart from the ports and the backend (the way's tail): no packet may go
/// anywhere but to its flow's ring backend, so a way read while another
/// CPU rewrites it must never pair one flow's address with another flow's
/// tail. Each call runs the program many times on its packet (dsr mode
/// rewrites only the MACs, so every run is the same flow); the
/// per-backend counters then show where every run went.
#[test]
fn concurrent_writers_never_pair_a_flow_with_another_flows_backend() {
    let s = setup();
    let backends = [v4(11), v4(12)];
    let sets = flow_table::sets(4096, flow_table::WAYS_V4);
    let client = |i: u32| Ipv4Addr::from(0x0a00_0000 | i);
    let hash = |i: u32| hash4(client(i), 5000, VIP4, 53, proto::UDP);
    let set = hash(0) & (sets - 1);
    let flows: Vec<(Ipv4Addr, BackendSpec)> = (0u32..1 << 20)
        .filter(|i| hash(*i) & (sets - 1) == set)
        .take(2 * flow_table::WAYS_V4)
        .map(|i| (client(i), s.ring_backend(&s.dns4, hash(i), &backends)))
        .collect();
    assert_eq!(flows.len(), 2 * flow_table::WAYS_V4);
    assert!(
        flows.iter().any(|(_, b)| b.address == backends[0])
            && flows.iter().any(|(_, b)| b.address == backends[1]),
        "the flows use both backends, so a misdirected one shows"
    );
    const CALLS: usize = 200;
    const REPEAT: u32 = 500;
    let ids: Vec<u32> = backends
        .iter()
        .map(|a| s.balancer.programmer().backend_id(&s.dns4.id, a).unwrap())
        .collect();
    let before: Vec<u64> = ids
        .iter()
        .map(|id| s.balancer.maps().backend_traffic(*id).unwrap().packets)
        .collect();
    let rehash_before = s.balancer.maps().stat(stats::FLOW_REHASH).unwrap().packets;
    let program = s.balancer.program().unwrap();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        for (cpu, mine) in flows.chunks(flow_table::WAYS_V4).enumerate() {
            scope.spawn(move || {
                // SAFETY: a zeroed cpu_set_t is valid; we set one bit of it
                // and pin this thread only.
                unsafe {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(cpu % cpus, &mut set);
                    libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
                }
                for call in 0..CALLS {
                    let (src, backend) = &mine[call % mine.len()];
                    let frame = packets::udp((*src).into(), 5000, VIP4.into(), 53);
                    let out = test_run::run_repeat(program, &frame, REPEAT).unwrap();
                    assert_eq!(out.action, action::TX);
                    assert_eq!(out.packet[..6], backend.mac, "flow from {src}");
                }
            });
        }
    });
    // Each flow got CALLS / WAYS calls of REPEAT runs.
    let runs_per_flow = (CALLS / flow_table::WAYS_V4) as u64 * u64::from(REPEAT);
    for (i, id) in ids.iter().enumerate() {
        let flows_here = flows.iter().filter(|(_, b)| b.address == backends[i]);
        let want = flows_here.count() as u64 * runs_per_flow;
        let got = s.balancer.maps().backend_traffic(*id).unwrap().packets - before[i];
        assert_eq!(got, want, "runs that reached {}", backends[i]);
    }
    assert_eq!(
        s.balancer.maps().stat(stats::FLOW_REHASH).unwrap().packets,
        rehash_before,
        "no flow found a way naming another virtual server's backend"
    );
}

/// A set holds `flow_table::WAYS_V4` flows: a new flow in a full set takes
/// the way idle longest (of equals, the first), and the other flows of the
/// set stay pinned.
#[test]
fn a_full_set_gives_its_oldest_way_to_a_new_flow() {
    let mut s = setup();
    let old = [v4(11), v4(12), v4(13)];
    let new = [v4(11), v4(12), v4(13), v4(15)];
    let specs = |list: &[IpAddr]| list.iter().map(|a| backend(*a)).collect::<Vec<_>>();
    // The ring after a fifth backend joins, then the ring before it.
    s.balancer
        .programmer_mut()
        .set(s.web4, &specs(&new))
        .unwrap();
    let new_ring = s.balancer.programmer().ring(&s.web4.id).unwrap();
    s.balancer
        .programmer_mut()
        .set(s.web4, &specs(&old))
        .unwrap();
    let sets = flow_table::sets(4096, flow_table::WAYS_V4);
    let hash = |sport: u16| hash4(CLIENT_V4, sport, VIP4, 80, proto::TCP);
    // Five flows of one set, each sent elsewhere by the new ring than by
    // the old one, so that a pinned flow and a re-hashed one differ.
    let set = hash(20000) & (sets - 1);
    let flows: Vec<u16> = (20000u16..=u16::MAX)
        .filter(|p| hash(*p) & (sets - 1) == set)
        .filter(|p| {
            let before = s.ring_backend(&s.web4, hash(*p), &old).address;
            let id = new_ring[ring_slot(hash(*p), RING) as usize];
            s.balancer.programmer().backend_id(&s.web4.id, &before) != Some(id)
        })
        .take(flow_table::WAYS_V4 + 1)
        .collect();
    assert_eq!(flows.len(), flow_table::WAYS_V4 + 1, "flows of one set");
    let pinned: Vec<BackendSpec> = flows
        .iter()
        .map(|p| s.ring_backend(&s.web4, hash(*p), &old))
        .collect();
    for sport in &flows {
        let syn = packets::tcp(CLIENT_V4.into(), *sport, VIP4.into(), 80, true);
        test_run::run(s.balancer.program().unwrap(), &syn).unwrap();
    }
    s.balancer
        .programmer_mut()
        .set(s.web4, &specs(&new))
        .unwrap();
    // The replaced flow last: it takes a way again when it is sent.
    for i in (1..flows.len()).chain([0]) {
        let sport = &flows[i];
        let data = packets::tcp(CLIENT_V4.into(), *sport, VIP4.into(), 80, false);
        let out = test_run::run(s.balancer.program().unwrap(), &data).unwrap();
        let want = if i == 0 {
            // Replaced by the fifth flow: the new ring decides.
            s.ring_backend(&s.web4, hash(*sport), &new)
        } else {
            pinned[i]
        };
        assert_eq!(
            out.packet,
            packets::tunnelled(&data, want.address, want.mac, hash(*sport)),
            "flow {i} of the set"
        );
    }
}

#[test]
fn fragments_of_a_datagram_go_to_one_backend() {
    let s = setup();
    let backends = [v4(11), v4(12)];
    // UDP to VIP4: the fragment entry of (VIP4, UDP) is the dns4 (port 53)
    // virtual server, the only UDP one on that address.
    let hash = hash4(CLIENT_V4, 0, VIP4, 0, proto::UDP);
    let b = s.ring_backend(&s.dns4, hash, &backends);
    let udp = packets::udp_header_bytes(5000, 53, 1008);
    let mut first =
        Ipv4Header::new(16, 64, IpNumber::UDP, CLIENT_V4.octets(), VIP4.octets()).unwrap();
    first.more_fragments = true;
    first.identification = 77;
    let mut payload = udp.clone();
    payload.extend_from_slice(&[0xab; 8]);
    let first = packets::ipv4_raw(first, &payload);
    let mut second =
        Ipv4Header::new(16, 64, IpNumber::UDP, CLIENT_V4.octets(), VIP4.octets()).unwrap();
    second.identification = 77;
    second.fragment_offset = etherparse::IpFragOffset::try_new(2).unwrap();
    let second = packets::ipv4_raw(second, &[0xcd; 16]);
    // dsr mode for dns4: MAC rewrite.
    s.tx(
        "first fragment",
        &first,
        &packets::dsr(&first, b.mac),
        stats::TX_DSR,
    );
    s.tx(
        "second fragment",
        &second,
        &packets::dsr(&second, b.mac),
        stats::TX_DSR,
    );
    assert!(s.balancer.maps().stat(stats::FRAGMENTS).unwrap().packets >= 2);
}

#[test]
fn icmp_errors_follow_their_flow() {
    let s = setup();
    let sport = 47000;
    let syn = packets::tcp(CLIENT_V4.into(), sport, VIP4.into(), 80, true);
    let flow_out = test_run::run(s.balancer.program().unwrap(), &syn).unwrap();
    let icmp = packets::icmp_frag_needed(Ipv4Addr::new(203, 0, 113, 1), VIP4, 80, CLIENT_V4, sport);
    let hash = hash4(CLIENT_V4, sport, VIP4, 80, proto::TCP);
    let mac: [u8; 6] = flow_out.packet[..6].try_into().unwrap();
    let b = [v4(11), v4(12), v4(13)]
        .into_iter()
        .find(|a| backend(*a).mac == mac)
        .unwrap();
    let want = packets::tunnelled(&icmp, b, mac, hash);
    s.tx("icmp frag needed", &icmp, &want, stats::TX_TUNNEL);

    let syn6 = packets::tcp(CLIENT_V6.into(), sport, VIP6.into(), 80, true);
    let flow_out = test_run::run(s.balancer.program().unwrap(), &syn6).unwrap();
    let mac: [u8; 6] = flow_out.packet[..6].try_into().unwrap();
    let b = [v6(0x11), v6(0x12)]
        .into_iter()
        .find(|a| backend(*a).mac == mac)
        .unwrap();
    let ptb = packets::icmpv6_packet_too_big(
        Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 1),
        VIP6,
        80,
        CLIENT_V6,
        sport,
    );
    let hash = hash6(CLIENT_V6, sport, VIP6, 80, proto::TCP);
    s.tx(
        "icmpv6 packet too big",
        &ptb,
        &packets::tunnelled(&ptb, b, mac, hash),
        stats::TX_TUNNEL,
    );
    assert_eq!(
        s.balancer.maps().stat(stats::ICMP_ERRORS).unwrap().packets,
        2
    );
}

#[test]
fn malformed_and_truncated_packets_pass_or_drop_and_are_counted() {
    let s = setup();
    let good4 = packets::tcp(CLIENT_V4.into(), 1234, VIP4.into(), 80, true);
    let good6 = packets::tcp(CLIENT_V6.into(), 1234, VIP6.into(), 80, true);
    let mut cases: Vec<(&str, Vec<u8>, u32, u32)> = Vec::new();
    let drop = action::DROP;
    let malformed = stats::DROP_MALFORMED;
    cases.push((
        "ethernet header only",
        good4[..14].to_vec(),
        drop,
        malformed,
    ));
    cases.push((
        "ipv4 header cut",
        good4[..14 + 12].to_vec(),
        drop,
        malformed,
    ));
    cases.push((
        "vlan tag cut",
        packets::vlan_tagged(&good4, 1)[..16].to_vec(),
        drop,
        malformed,
    ));
    let mut bad = good4.clone();
    bad[14] = 0x44; // IHL 4
    cases.push(("ipv4 ihl < 5", bad, drop, malformed));
    let mut bad = good4.clone();
    bad[14] = 0x55; // version 5
    cases.push(("ipv4 version 5", bad, drop, malformed));
    let mut bad = good4.clone();
    bad[16..18].copy_from_slice(&2000u16.to_be_bytes());
    cases.push(("ipv4 total length beyond frame", bad, drop, malformed));
    let mut bad = good4.clone();
    bad[16..18].copy_from_slice(&10u16.to_be_bytes());
    cases.push(("ipv4 total length below header", bad, drop, malformed));
    let mut bad = good4[..14 + 20 + 2].to_vec();
    bad[16..18].copy_from_slice(&22u16.to_be_bytes());
    cases.push(("tcp ports cut", bad, drop, malformed));
    let mut bad = good4.clone();
    bad[14] = 0x4f; // IHL 15: options run past the segment
    bad[16..18].copy_from_slice(&40u16.to_be_bytes());
    cases.push(("ipv4 options past total length", bad, drop, malformed));
    cases.push((
        "ipv6 header cut",
        good6[..14 + 30].to_vec(),
        drop,
        malformed,
    ));
    let mut bad = good6.clone();
    bad[18..20].copy_from_slice(&3000u16.to_be_bytes());
    cases.push(("ipv6 payload length beyond frame", bad, drop, malformed));
    let mut bad = good6.clone();
    bad[14] = 0x40;
    cases.push(("ipv6 version 4", bad, drop, malformed));
    let mut icmp = packets::icmp_frag_needed(Ipv4Addr::new(203, 0, 113, 1), VIP4, 80, CLIENT_V4, 1);
    icmp.truncate(14 + 20 + 8 + 10);
    icmp[16..18].copy_from_slice(&38u16.to_be_bytes());
    cases.push(("icmp quoted header cut", icmp, drop, malformed));
    let mut ptb =
        packets::icmpv6_packet_too_big(v6(1).to_string().parse().unwrap(), VIP6, 80, CLIENT_V6, 1);
    ptb[14 + 40 + 8] = 0x40; // quoted header claims version 4
    cases.push(("icmpv6 quoted version wrong", ptb, drop, malformed));
    let mut ext = good6.clone();
    ext[20] = 0; // hop-by-hop options: not walked
    cases.push((
        "ipv6 extension header",
        ext,
        action::PASS,
        stats::PASS_UNSUPPORTED,
    ));

    // Not for a VIP: the kernel's to judge, however short.
    let other = packets::tcp(
        CLIENT_V4.into(),
        1234,
        Ipv4Addr::new(192, 0, 2, 50).into(),
        80,
        false,
    );
    let mut cut = other[..14 + 20 + 6].to_vec();
    cut[16..18].copy_from_slice(&26u16.to_be_bytes());
    cases.push((
        "tcp header cut, not for a VIP",
        cut,
        action::PASS,
        stats::PASS_NOT_VIP,
    ));
    // A TCP header shorter than 20 bytes to a VIP.
    let mut bad = good4[..14 + 20 + 16].to_vec();
    bad[16..18].copy_from_slice(&36u16.to_be_bytes());
    cases.push(("tcp header cut", bad, drop, malformed));

    assert!(cases.len() >= 10);
    for (name, frame, verdict, stat) in &cases {
        s.check(name, frame, *verdict, frame, *stat);
    }
}

#[test]
fn no_backend_drops_and_counts() {
    let mut s = setup();
    s.balancer.programmer_mut().set(s.web4, &[]).unwrap();
    let syn = packets::tcp(CLIENT_V4.into(), 1, VIP4.into(), 80, true);
    s.drop("no backend", &syn, stats::DROP_NO_BACKEND);
}

#[test]
fn verifier_accepts_the_program() {
    let s = setup();
    let count = s.balancer.verified_instructions().unwrap().unwrap_or(0);
    println!("balancer: verifier processed {count} instructions");
    assert!(count > 0 && count < 1_000_000, "{count}");
}

/// A program without the balancer's maps (as one of another version would
/// be) is refused with what to do, not half adopted.
#[test]
fn adopting_a_program_without_the_maps_says_to_detach_it() {
    support::require_root();
    let pass = lb_daemon::dataplane::decap::Pass::load().expect("load XDP_PASS");
    let id = pass.program().unwrap().info().unwrap().id();
    let error = match Balancer::adopt(id) {
        Ok(_) => panic!("adopted a program without the balancer's maps"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("another version") && error.contains("xdp off"),
        "{error}"
    );
}
