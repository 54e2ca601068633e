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
    net::{Ipv4Addr, Ipv6Addr},
};

use anyhow::{Context as _, Result, ensure};

mod host;

use host::disable_rp_filter;
pub use host::{Host, Role};

use crate::{Bridge, delete_with_prefix, link};

/// The prefix of the lab that `cargo xtask lab up/down` and `cargo xtask
/// run` build and remove. [`crate::unique_prefix`] never returns it.
pub const LAB_PREFIX: &str = "lblab";
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
            host.into_ns().persist();
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
        self.hosts().find(|host| host.name() == name)
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
            link::wait_up(host.ns(), HOST_INTERFACE, TIMEOUT)?;
            link::wait_up(self.bridge.ns(), host.bridge_port(), TIMEOUT)?;
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
                host.ns().name(),
                link::format_mac(host.mac()),
                host.ipv4(),
                host.ipv6(),
                host.mtu(),
                host.bridge_port()
            )?;
        }
        Ok(())
    }
}
