//! One host of the lab: its namespace, `eth0` on the bridge, addresses,
//! and the settings its role needs.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context as _, Result};

use super::{CLIENT_MTU, FABRIC_MTU, HOST_INTERFACE, TopologyOptions};
use crate::{Bridge, Netns, link};

/// The lab's subnets: 192.0.2.0/24 and 2001:db8::/64.
const PREFIX_LEN_V4: u8 = 24;
const PREFIX_LEN_V6: u8 = 64;

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

    /// Gives `vip` to this host by hand (a balancer without VRRP): a
    /// host address (/32, /128) on its interface.
    pub fn hold_vip(&self, vip: IpAddr) -> Result<()> {
        let host_bits = if vip.is_ipv4() { 32 } else { 128 };
        link::add_address(&self.ns, HOST_INTERFACE, vip, host_bits)
            .with_context(|| format!("adding the VIP {vip} on {}", self.name))
    }

    /// Gives up the host, keeping its namespace guard.
    pub(super) fn into_ns(self) -> Netns {
        self.ns
    }

    /// The name of the bridge port (in the bridge's namespace) that faces
    /// this host; an XDP_PASS program belongs on those facing balancers.
    pub fn bridge_port(&self) -> &str {
        &self.bridge_port
    }
}

impl Host {
    /// Creates the namespace `{prefix}-{name}` and joins it to `bridge`
    /// as host `number` (the last byte of its addresses).
    pub(super) fn build(
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
pub(super) fn disable_rp_filter(ns: &Netns) -> Result<()> {
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
