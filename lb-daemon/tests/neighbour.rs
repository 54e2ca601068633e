//! Next-hop resolution against the kernel of a namespace pair: a neighbour
//! that was never contacted is solicited and then found, directly and
//! behind a gateway, for IPv4 and IPv6. Runs as root (CI does).
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use lb_daemon::{
    daemon::next_hops::NextHops,
    neighbour::{self, Route},
};
use lb_lab::{Netns, link, unique_prefix, wait_until};

#[test]
fn next_hop_is_solicited_then_found_directly_and_behind_a_gateway() {
    let prefix = unique_prefix("nbr");
    let a = Netns::create(&format!("{prefix}-a")).unwrap();
    let b = Netns::create(&format!("{prefix}-b")).unwrap();
    // IPv6 addresses usable at once, as in the lab's hosts: with duplicate
    // address detection, they stay tentative (neither soliciting nor
    // answering) for a second or more after the link comes up.
    for ns in [&a, &b] {
        for scope in ["all", "default"] {
            ns.sysctl(&format!("net.ipv6.conf.{scope}.accept_dad"), "0")
                .unwrap();
        }
    }
    link::veth(&a, "eth0", &b, "eth0").unwrap();
    let (a4, b4) = (Ipv4Addr::new(10, 9, 0, 1), Ipv4Addr::new(10, 9, 0, 2));
    let (a6, b6): (Ipv6Addr, Ipv6Addr) = ("fd09::1".parse().unwrap(), "fd09::2".parse().unwrap());
    for (ns, v4, v6) in [(&a, a4, a6), (&b, b4, b6)] {
        link::add_address(ns, "eth0", v4.into(), 24).unwrap();
        link::add_address(ns, "eth0", v6.into(), 64).unwrap();
        link::set_up(ns, "eth0").unwrap();
    }
    a.ip(&["route", "add", "198.51.100.0/24", "via", "10.9.0.2"])
        .unwrap();
    a.ip(&["-6", "route", "add", "2001:db8:99::/64", "via", "fd09::2"])
        .unwrap();
    link::wait_up(&a, "eth0", Duration::from_secs(5)).unwrap();
    let b_mac = link::mac(&b, "eth0").unwrap();
    let eth0 = link::ifindex(&a, "eth0").unwrap();

    a.enter(|| {
        let mut hops = NextHops::default();
        let mut resolve =
            |destination: IpAddr| hops.round(std::time::Instant::now()).next_hop(destination);
        let cases: [(IpAddr, IpAddr); 4] = [
            (b4.into(), b4.into()),
            (Ipv4Addr::new(198, 51, 100, 7).into(), b4.into()),
            (b6.into(), b6.into()),
            ("2001:db8:99::7".parse().unwrap(), b6.into()),
        ];
        for (destination, hop) in cases {
            let route = neighbour::route(destination).unwrap();
            assert_eq!(
                route,
                Route {
                    ifindex: eth0,
                    next_hop: hop
                }
            );
            let mac = wait_until(Duration::from_secs(10), "the next hop's MAC", || {
                Ok(resolve(destination).ok().map(|(_, mac)| mac))
            })
            .unwrap_or_else(|e| panic!("{destination} never resolved: {e:#}"));
            assert_eq!(mac, b_mac, "{destination}");
        }
        // Nothing answers for an unused address: no entry, no error.
        let silent = IpAddr::from(Ipv4Addr::new(10, 9, 0, 77));
        let unresolved = resolve(silent).unwrap_err();
        assert!(unresolved.contains("not resolved"), "{unresolved}");
        assert!(neighbour::route("203.0.113.1".parse().unwrap()).is_err());
    });
}
