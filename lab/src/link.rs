//! Interfaces inside namespaces: veth pairs, addresses, MTU, offloads, and
//! looking up MAC addresses and interface indices.
use std::{ffi::CString, net::IpAddr, time::Duration};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{Netns, wait::wait_until};

/// Longest interface name the kernel accepts (`IFNAMSIZ` - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// Creates a veth pair: `a_if` in `a`, its peer `b_if` in `b`. Both ends
/// stay down; see [`set_up`].
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    check_ifname(a_if)?;
    check_ifname(b_if)?;
    a.ip(&[
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])
    .with_context(|| format!("creating veth {}:{a_if} <-> {}:{b_if}", a.name(), b.name()))?;
    Ok(())
}

/// Errors unless `name` is a valid interface name (1 to 15 bytes, no `/`,
/// no whitespace).
pub fn check_ifname(name: &str) -> Result<()> {
    ensure!(
        !name.is_empty() && name.len() <= MAX_IFNAME_LEN,
        "interface name {name:?} must be 1 to {MAX_IFNAME_LEN} bytes long"
    );
    ensure!(
        !name.contains(|c: char| c == '/' || c == ':' || c.is_whitespace()),
        "invalid interface name {name:?}"
    );
    Ok(())
}

/// Brings `interface` up.
pub fn set_up(ns: &Netns, interface: &str) -> Result<()> {
    ns.ip(&["link", "set", "dev", interface, "up"])?;
    Ok(())
}

/// Sets the MTU of `interface`.
pub fn set_mtu(ns: &Netns, interface: &str, mtu: u32) -> Result<()> {
    ns.ip(&["link", "set", "dev", interface, "mtu", &mtu.to_string()])?;
    Ok(())
}

/// Adds `addr/prefix_len` to `interface`. IPv6 addresses are added with
/// `nodad`, so they are usable at once.
pub fn add_address(ns: &Netns, interface: &str, addr: IpAddr, prefix_len: u8) -> Result<()> {
    let cidr = format!("{addr}/{prefix_len}");
    let mut args = vec!["addr", "add", cidr.as_str(), "dev", interface];
    if addr.is_ipv6() {
        args.push("nodad");
    }
    ns.ip(&args)?;
    Ok(())
}

/// Turns transmit checksum offload off (`ethtool -K IF tx off`).
///
/// Lab fact: CHECKSUM_PARTIAL packets that an XDP program forwards with
/// XDP_TX reach the receiver with bad TCP checksums, and bulk transfers
/// stall, unless the veth ends compute checksums in software.
pub fn disable_tx_offload(ns: &Netns, interface: &str) -> Result<()> {
    ns.exec_ok("ethtool", &["-K", interface, "tx", "off"])
        .with_context(|| format!("turning tx offload off on {interface} in {}", ns.name()))?;
    Ok(())
}

/// The MAC address of `interface`.
pub fn mac(ns: &Netns, interface: &str) -> Result<[u8; 6]> {
    let out = ns.ip(&["-o", "link", "show", "dev", interface])?;
    let text = out
        .split_whitespace()
        .skip_while(|word| *word != "link/ether")
        .nth(1)
        .with_context(|| format!("no link/ether address in `{}`", out.trim()))?;
    parse_mac(text)
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Result<[u8; 6]> {
    let mut mac = [0; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts
            .next()
            .with_context(|| format!("short MAC {text:?}"))?;
        *byte = u8::from_str_radix(part, 16).with_context(|| format!("bad MAC {text:?}"))?;
    }
    if parts.next().is_some() {
        bail!("long MAC {text:?}");
    }
    Ok(mac)
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.map(|byte| format!("{byte:02x}")).join(":")
}

/// The interface index of `interface` in `ns`.
pub fn ifindex(ns: &Netns, interface: &str) -> Result<u32> {
    let c_name = CString::new(interface).context("interface name contains NUL")?;
    ns.enter(|| {
        // SAFETY: if_nametoindex reads a NUL-terminated string.
        match unsafe { libc::if_nametoindex(c_name.as_ptr()) } {
            // errno is per thread: read it on the thread that failed.
            0 => Err(std::io::Error::last_os_error()),
            index => Ok(index),
        }
    })
    .with_context(|| format!("no interface {interface} in {}", ns.name()))
}

/// The MAC address `ns` has in its neighbour (ARP / NDP) table for `ip`, if
/// any entry with a link-layer address exists (to check that a gratuitous
/// ARP or unsolicited NA moved a VIP).
pub fn neighbour(ns: &Netns, ip: IpAddr) -> Result<Option<[u8; 6]>> {
    let out = ns.ip(&["neigh", "show", "to", &ip.to_string()])?;
    out.lines()
        .filter_map(|line| {
            line.split_whitespace()
                .skip_while(|word| *word != "lladdr")
                .nth(1)
        })
        .map(parse_mac)
        .next()
        .transpose()
}

/// Waits until `interface` is operationally up (carrier on both ends of a
/// veth), at most `timeout`.
pub fn wait_up(ns: &Netns, interface: &str, timeout: Duration) -> Result<()> {
    wait_until(
        timeout,
        &format!("{interface} in {} to come up", ns.name()),
        || {
            let out = ns.ip(&["-br", "link", "show", "dev", interface])?;
            Ok((out.split_whitespace().nth(1) == Some("UP")).then_some(()))
        },
    )
}
