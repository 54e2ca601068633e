//! The lab of DESIGN.md §7: a client, one or two balancers and backends,
//! each in its own namespace with an `eth0` joined to a bridge that lives in
//! a namespace of its own.
//!
//! ```text
//!   {prefix}-client  {prefix}-lb-a  {prefix}-lb-b  {prefix}-be-1 .. be-N
//!        eth0            eth0           eth0           eth0
//!         |               |              |              |
//!      p-client        p-lb-a         p-lb-b         p-be-1 ..   ({prefix}-br)
//!         +---------------+------ br0 ---+--------------+
//! ```
//!
//! Addresses: 192.0.2.0/24 and 2001:db8::/64 with the same host number in
//! both families, spelled with the same digits: client .1 / ::1, lb-a .2 /
//! ::2, lb-b .3 / ::3, be-N .(10+N) / ::(10+N) (be-1 is 192.0.2.11 and
//! 2001:db8::11). The VIP defaults to 192.0.2.100 and 2001:db8::100.
use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use anyhow::{Context as _, Result, ensure};

use crate::{Bridge, Netns, delete_with_prefix, link};

/// The default IPv4 VIP.
pub const DEFAULT_VIP_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
/// The default IPv6 VIP.
pub const DEFAULT_VIP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
/// Every host's interface towards the bridge.
pub const HOST_INTERFACE: &str = "eth0";
/// MTU of balancers, backends and their bridge ports: room for a tunnel
/// header on top of the client's 1500 (lab fact).
pub const FABRIC_MTU: u32 = 1600;
/// MTU of the client and its bridge port.
pub const CLIENT_MTU: u32 = 1500;

const PREFIX_LEN_V4: u8 = 24;
const PREFIX_LEN_V6: u8 = 64;
/// Backends are numbered from 1; host numbers 11.. stay below the VIP's.
const MAX_BACKENDS: u8 = 89;

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyOptions {
    /// Start of every namespace name (see [`crate::unique_prefix`]).
    pub prefix: String,
    /// Number of backends `be-1..be-N` (1 to 89).
    pub backends: u8,
    /// Whether the standby balancer `lb-b` exists.
    pub lb_b: bool,
    /// The IPv4 VIP, put on the backends' `lo`.
    pub vip_v4: Ipv4Addr,
    /// The IPv6 VIP, put on the backends' `lo`.
    pub vip_v6: Ipv6Addr,
}

impl TopologyOptions {
    /// The full lab of DESIGN.md §7: client, lb-a, lb-b, three backends,
    /// default VIPs.
    pub fn new(prefix: impl Into<String>) -> TopologyOptions {
        TopologyOptions {
            prefix: prefix.into(),
            backends: 3,
            lb_b: true,
            vip_v4: DEFAULT_VIP_V4,
            vip_v6: DEFAULT_VIP_V6,
        }
    }
}

/// What a host is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends traffic to the VIP.
    Client,
    /// Runs the balancer (lb-a, lb-b).
    Balancer,
    /// Serves the VIP (VIP on `lo`, never answers ARP for it).
    Backend,
}

/// One host of the lab: a namespace with `eth0` on the bridge.
#[derive(Debug)]
pub struct Host {
    name: String,
    role: Role,
    ns: Netns,
    ipv4: Ipv4Addr,
    ipv6: Ipv6Addr,
    mac: [u8; 6],
    mtu: u32,
    bridge_port: String,
}

impl Host {
    /// The host's short name: `client`, `lb-a`, `lb-b`, `be-N`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the host is for.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The host's namespace (`{prefix}-{name}`).
    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    /// The interface towards the bridge ([`HOST_INTERFACE`]).
    pub fn interface(&self) -> &str {
        HOST_INTERFACE
    }

    /// The IPv4 address of the interface.
    pub fn ipv4(&self) -> Ipv4Addr {
        self.ipv4
    }

    /// The IPv6 address of the interface.
    pub fn ipv6(&self) -> Ipv6Addr {
        self.ipv6
    }

    /// The interface's address of the same family as `like`.
    pub fn addr_like(&self, like: IpAddr) -> IpAddr {
        match like {
            IpAddr::V4(_) => self.ipv4.into(),
            IpAddr::V6(_) => self.ipv6.into(),
        }
    }

    /// The interface's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The interface's MTU.
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// The name of the bridge port (in the bridge's namespace) that faces
    /// this host; an XDP_PASS program belongs on those facing balancers.
    pub fn bridge_port(&self) -> &str {
        &self.bridge_port
    }
}

/// The lab, removed on drop (hosts first, then the bridge).
#[derive(Debug)]
pub struct Topology {
    prefix: String,
    vip_v4: Ipv4Addr,
    vip_v6: Ipv6Addr,
    client: Host,
    /// lb-a, then lb-b if present.
    balancers: Vec<Host>,
    backends: Vec<Host>,
    /// Declared last so that it is dropped last.
    bridge: Bridge,
}

impl Topology {
    /// Builds the lab. On error, whatever was built is removed again.
    pub fn create(options: &TopologyOptions) -> Result<Topology> {
        ensure!(
            (1..=MAX_BACKENDS).contains(&options.backends),
            "between 1 and {MAX_BACKENDS} backends, not {}",
            options.backends
        );
        let prefix = &options.prefix;
        let bridge = Bridge::create(&format!("{prefix}-br"))?;
        disable_rp_filter(bridge.ns())?;
        let build = |name: &str, role, number| {
            Host::build(&bridge, options, name, role, number)
                .with_context(|| format!("building host {name} of lab {prefix}"))
        };
        let client = build("client", Role::Client, 1)?;
        let mut balancers = vec![build("lb-a", Role::Balancer, 2)?];
        if options.lb_b {
            balancers.push(build("lb-b", Role::Balancer, 3)?);
        }
        let backends = (1..=options.backends)
            .map(|n| build(&format!("be-{n}"), Role::Backend, 10 + n))
            .collect::<Result<Vec<_>>>()?;
        let topology = Topology {
            prefix: prefix.clone(),
            vip_v4: options.vip_v4,
            vip_v6: options.vip_v6,
            client,
            balancers,
            backends,
            bridge,
        };
        topology.wait_links_up()?;
        Ok(topology)
    }

    /// Removes the namespaces of a lab with this prefix left behind by a
    /// crashed run (killing the processes in them); returns their names.
    pub fn down(prefix: &str) -> Result<Vec<String>> {
        // The dash keeps `lbt1` from matching the lab `lbt12`.
        delete_with_prefix(&format!("{prefix}-"))
    }

    /// Keeps the lab after this value is gone (`cargo xtask lab up`);
    /// [`Topology::down`] removes it later.
    pub fn persist(self) {
        let Topology {
            client,
            balancers,
            backends,
            bridge,
            ..
        } = self;
        for host in std::iter::once(client).chain(balancers).chain(backends) {
            host.ns.persist();
        }
        bridge.persist();
    }

    /// The prefix of every namespace name.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The IPv4 VIP.
    pub fn vip_v4(&self) -> Ipv4Addr {
        self.vip_v4
    }

    /// The IPv6 VIP.
    pub fn vip_v6(&self) -> Ipv6Addr {
        self.vip_v6
    }

    /// The client.
    pub fn client(&self) -> &Host {
        &self.client
    }

    /// The first balancer, lb-a.
    pub fn lb_a(&self) -> &Host {
        &self.balancers[0]
    }

    /// The second balancer, lb-b, if built.
    pub fn lb_b(&self) -> Option<&Host> {
        self.balancers.get(1)
    }

    /// The balancers: lb-a, then lb-b if built.
    pub fn balancers(&self) -> &[Host] {
        &self.balancers
    }

    /// The backends be-1..be-N, in order.
    pub fn backends(&self) -> &[Host] {
        &self.backends
    }

    /// Every host: client, balancers, backends.
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        std::iter::once(&self.client)
            .chain(&self.balancers)
            .chain(&self.backends)
    }

    /// The host called `name` (`client`, `lb-a`, `be-2`, ...).
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts().find(|host| host.name == name)
    }

    /// The bridge and its namespace.
    pub fn bridge(&self) -> &Bridge {
        &self.bridge
    }

    /// The bridge ports facing balancers, in the bridge's namespace: where
    /// an XDP_PASS program must be attached for XDP_TX to be delivered
    /// promptly (lab fact).
    pub fn balancer_ports(&self) -> Vec<&str> {
        self.balancers.iter().map(Host::bridge_port).collect()
    }

    fn wait_links_up(&self) -> Result<()> {
        const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
        for host in self.hosts() {
            link::wait_up(&host.ns, HOST_INTERFACE, TIMEOUT)?;
            link::wait_up(self.bridge.ns(), &host.bridge_port, TIMEOUT)?;
        }
        Ok(())
    }
}

impl fmt::Display for Topology {
    /// A table of the hosts, for `cargo xtask lab up` and failing tests.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "lab {}: bridge {} in {}, VIP {} {}",
            self.prefix,
            Bridge::DEVICE,
            self.bridge.ns().name(),
            self.vip_v4,
            self.vip_v6
        )?;
        for host in self.hosts() {
            writeln!(
                f,
                "  {:<20} {HOST_INTERFACE} {} {:<11} {:<14} mtu {} port {}",
                host.ns.name(),
                link::format_mac(host.mac),
                host.ipv4,
                host.ipv6,
                host.mtu,
                host.bridge_port
            )?;
        }
        Ok(())
    }
}

impl Host {
    fn build(
        bridge: &Bridge,
        options: &TopologyOptions,
        name: &str,
        role: Role,
        number: u8,
    ) -> Result<Host> {
        let ns = Netns::create(&format!("{}-{name}", options.prefix))?;
        disable_rp_filter(&ns)?;
        // Addresses are usable at once, link-local ones included.
        for scope in ["all", "default"] {
            ns.sysctl(&format!("net.ipv6.conf.{scope}.accept_dad"), "0")?;
        }
        let mtu = match role {
            Role::Client => CLIENT_MTU,
            Role::Balancer | Role::Backend => FABRIC_MTU,
        };
        let bridge_port = format!("p-{name}");
        bridge.connect(&bridge_port, &ns, HOST_INTERFACE, mtu)?;
        ns.sysctl(&format!("net.ipv4.conf.{HOST_INTERFACE}.rp_filter"), "0")?;
        let ipv4 = Ipv4Addr::new(192, 0, 2, number);
        let ipv6 = host_ipv6(number);
        link::add_address(&ns, HOST_INTERFACE, ipv4.into(), PREFIX_LEN_V4)?;
        link::add_address(&ns, HOST_INTERFACE, ipv6.into(), PREFIX_LEN_V6)?;
        if role == Role::Backend {
            configure_backend(&ns, options)?;
        }
        let mac = link::mac(&ns, HOST_INTERFACE)?;
        Ok(Host {
            name: name.to_owned(),
            role,
            ns,
            ipv4,
            ipv6,
            mac,
            mtu,
            bridge_port,
        })
    }
}

/// The VIP on `lo` (both families), and ARP settings that keep the backend
/// from answering or announcing it on `eth0`: `arp_ignore=1` answers only
/// for addresses of the receiving interface, `arp_announce=2` picks ARP
/// source addresses from the outgoing interface.
fn configure_backend(ns: &Netns, options: &TopologyOptions) -> Result<()> {
    link::add_address(ns, "lo", options.vip_v4.into(), 32)?;
    link::add_address(ns, "lo", options.vip_v6.into(), 128)?;
    for scope in ["all", HOST_INTERFACE] {
        ns.sysctl(&format!("net.ipv4.conf.{scope}.arp_ignore"), "1")?;
        ns.sysctl(&format!("net.ipv4.conf.{scope}.arp_announce"), "2")?;
    }
    Ok(())
}

/// Reverse-path filtering off for existing and future interfaces: the
/// balancers' forwarded and encapsulated packets arrive asymmetrically.
fn disable_rp_filter(ns: &Netns) -> Result<()> {
    for scope in ["all", "default"] {
        ns.sysctl(&format!("net.ipv4.conf.{scope}.rp_filter"), "0")?;
    }
    Ok(())
}

/// `2001:db8::N` with N's decimal digits read as hex, so that host 11 is
/// `2001:db8::11` like `192.0.2.11`.
fn host_ipv6(number: u8) -> Ipv6Addr {
    let digits = u16::from_str_radix(&number.to_string(), 16)
        .expect("the decimal digits of a u8 are valid hex");
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_host_numbers_read_like_ipv4() {
        assert_eq!(host_ipv6(1).to_string(), "2001:db8::1");
        assert_eq!(host_ipv6(11).to_string(), "2001:db8::11");
        assert_eq!(host_ipv6(99).to_string(), "2001:db8::99");
    }
}
