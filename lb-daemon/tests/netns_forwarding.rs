//! Real TCP connections through the balancer in network namespaces (the
//! lab of `lb-lab`): a client, a balancer with the XDP program attached to
//! its veth in driver mode by this test, and three backends with the VIP on
//! loopback (and, in tunnel mode, the decapsulation program attached by
//! `lb-daemon decap`), all joined by a bridge in a namespace of its own.
//! Runs as root.
mod support;

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use lb_common::{proto, stats};
use lb_daemon::dataplane::{
    BackendSpec, Balancer, Forwarding, LoadOptions, VipSpec, XdpMode, attach, maps::Counters,
    programmer::VipId,
};
use lb_lab::{HttpBackend, Topology, TopologyOptions, http_get, read_settled, unique_prefix};
use support::lb_daemon;

const CONNECTIONS: usize = 60;
const PORT: u16 = 80;

fn forwards_real_connections(forwarding: Forwarding, tag: &str) {
    support::require_root();
    let mut options = TopologyOptions::new(unique_prefix(tag));
    options.lb_b = false;
    let lab = Topology::create(&options).unwrap();
    let vip = lab.vip_v4();
    let servers: Vec<HttpBackend> = lab
        .backends()
        .iter()
        .map(|b| HttpBackend::start(b.ns(), SocketAddr::new(vip.into(), PORT), b.name()).unwrap())
        .collect();
    // The balancer owns the VIP on the segment (VRRP's job in production).
    lab.lb_a().hold_vip(vip.into()).unwrap();
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
            address: IpAddr::V4(vip),
            port: PORT,
            protocol: proto::TCP,
        },
        forwarding,
    };
    let backends: Vec<BackendSpec> = lab
        .backends()
        .iter()
        .map(|b| BackendSpec {
            address: IpAddr::V4(b.ipv4()),
            mac: b.mac(),
            weight: 100,
            up: true,
            drained: false,
        })
        .collect();
    balancer.programmer_mut().set(spec, &backends).unwrap();

    lab.pass_on_balancer_ports(lb_daemon()).unwrap();
    lab.lb_a().ns().enter(|| {
        let eth0 = attach::ifindex("eth0").unwrap();
        let mode = balancer.attach(eth0, XdpMode::Driver).unwrap();
        assert_eq!(mode, XdpMode::Driver);
        assert_eq!(attach::attached(eth0).unwrap(), Some(balancer.id()));
    });
    if forwarding == Forwarding::Tunnel {
        // The decapsulation program, attached by the CLI, which exits.
        lab.decap_on_backends(lb_daemon()).unwrap();
    }

    let before = balancer.maps().counters().unwrap();
    let target = SocketAddr::new(IpAddr::V4(vip), PORT);
    let answers: Vec<anyhow::Result<String>> = (0..CONNECTIONS)
        .map(|_| http_get(lab.client().ns(), target, Duration::from_secs(3)))
        .collect();

    let mut by_backend: BTreeMap<String, usize> = BTreeMap::new();
    for answer in &answers {
        match answer {
            Ok(name) => *by_backend.entry(name.trim().to_owned()).or_default() += 1,
            Err(e) => {
                panic!("{forwarding:?}: request failed: {e:#}; answers so far {by_backend:?}")
            }
        }
    }
    println!("{forwarding:?}: {CONNECTIONS} connections -> {by_backend:?}");
    assert!(
        by_backend.len() >= 2,
        "more than one backend answered: {by_backend:?}"
    );
    for server in &servers {
        let served = by_backend.get(server.name()).copied().unwrap_or(0);
        assert_eq!(
            server.requests() as usize,
            served,
            "{} served",
            server.name()
        );
    }

    // The counters agree with what was sent. A snapshot reads the maps one
    // after the other, and the last connections' closing packets (the
    // client's final ACKs) may still be passing the program after the last
    // answer: the counters are compared in a snapshot taken once the
    // traffic has settled, when the verdict, virtual server and backend
    // counters agree (or, if they never do, in the last one taken).
    let tx = match forwarding {
        Forwarding::Tunnel => stats::TX_TUNNEL,
        Forwarding::Dsr => stats::TX_DSR,
    };
    // (packets sent by the verdict counter, the VIP's packets, the
    // backends' packets) since `before`.
    let packets = |after: &Counters| -> (u64, u64, u64) {
        let sent = after.stats[tx as usize].packets - before.stats[tx as usize].packets;
        let vip = balancer.programmer().vip_traffic(&spec.id, after).packets
            - balancer.programmer().vip_traffic(&spec.id, &before).packets;
        let backends: u64 = (0..after.backends.len())
            .map(|i| after.backends[i].packets - before.backends[i].packets)
            .sum();
        (sent, vip, backends)
    };
    let after = read_settled(
        Duration::from_secs(5),
        || {
            balancer
                .maps()
                .counters()
                .unwrap_or_else(|error| panic!("reading the counters: {error:#}"))
        },
        |counters| {
            let (sent, vip, backends) = packets(counters);
            vip == sent && backends == sent
        },
    );
    let delta =
        |index: u32| after.stats[index as usize].packets - before.stats[index as usize].packets;
    let (_, vip_packets, backend_packets) = packets(&after);
    let (vip_before, vip_after) = (
        balancer.programmer().vip_traffic(&spec.id, &before),
        balancer.programmer().vip_traffic(&spec.id, &after),
    );
    let vip_flows = vip_after.flows - vip_before.flows;
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
}

#[test]
fn tunnel_mode_balances_real_connections() {
    forwards_real_connections(Forwarding::Tunnel, "fwt");
}

#[test]
fn dsr_mode_balances_real_connections() {
    forwards_real_connections(Forwarding::Dsr, "fwd");
}
