//! A Linux bridge alone in a namespace of its own, so that joining the lab's
//! hosts never touches the machine's own network.
use anyhow::{Context as _, Result};

use crate::{Netns, link};

/// The bridge device `br0` inside its own namespace; dropping it deletes
/// the namespace, the bridge and every port.
#[derive(Debug)]
pub struct Bridge {
    ns: Netns,
}

impl Bridge {
    /// The bridge device's name inside its namespace.
    pub const DEVICE: &str = "br0";

    /// Creates the namespace `ns_name` holding an up bridge `br0` without
    /// STP (ports forward at once) and without multicast snooping (IPv6
    /// neighbour discovery floods like ARP).
    pub fn create(ns_name: &str) -> Result<Bridge> {
        Bridge::in_namespace(Netns::create(ns_name)?)
    }

    /// Creates `br0` in an existing namespace, which the bridge then owns.
    ///
    /// IPv6 is disabled in the namespace so that the bridge and its ports
    /// never send packets of their own (router solicitations, MLD reports)
    /// into the lab; bridging IPv6 frames is unaffected.
    pub fn in_namespace(ns: Netns) -> Result<Bridge> {
        for scope in ["all", "default"] {
            ns.sysctl(&format!("net.ipv6.conf.{scope}.disable_ipv6"), "1")?;
        }
        ns.ip(&[
            "link",
            "add",
            Bridge::DEVICE,
            "type",
            "bridge",
            "stp_state",
            "0",
            "mcast_snooping",
            "0",
        ])
        .with_context(|| format!("creating bridge in {}", ns.name()))?;
        link::set_up(&ns, Bridge::DEVICE)?;
        Ok(Bridge { ns })
    }

    /// The namespace holding the bridge (to attach programs to its ports).
    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    /// Enslaves the existing interface `port` (in the bridge's namespace)
    /// to `br0` and brings it up.
    pub fn attach(&self, port: &str) -> Result<()> {
        self.ns
            .ip(&["link", "set", "dev", port, "master", Bridge::DEVICE])
            .with_context(|| format!("adding {port} to {}", Bridge::DEVICE))?;
        link::set_up(&self.ns, port)
    }

    /// Joins `host_if` in `host` to the bridge through a veth pair whose
    /// bridge end is `port`: both ends get `mtu`, transmit checksum offload
    /// off (see [`link::disable_tx_offload`]) and are brought up.
    pub fn connect(&self, port: &str, host: &Netns, host_if: &str, mtu: u32) -> Result<()> {
        link::veth(&self.ns, port, host, host_if)?;
        for (ns, interface) in [(&self.ns, port), (host, host_if)] {
            link::set_mtu(ns, interface, mtu)?;
            link::disable_tx_offload(ns, interface)?;
        }
        self.attach(port)?;
        link::set_up(host, host_if)
    }

    /// Keeps the bridge's namespace after the guard is gone (for `lab up`)
    /// and returns its name.
    pub fn persist(self) -> String {
        self.ns.persist()
    }
}
