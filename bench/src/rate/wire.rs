//! The packet-rate lab: two network namespaces joined by one veth pair
//! with a transmit and a receive queue per CPU.
//!
//! ```text
//!   <prefix>-gen                          <prefix>-dut
//!   generator (BPF_PROG_RUN, live) ─┐
//!                                   g0 ════ d0   device under test
//!   sink (XDP, counts and drops)  ◄─┘            (XDP_TX, or kernel
//!                                                 forwarding back out d0)
//! ```
//!
//! Every device under test forwards back out of `d0` (the balancer's
//! XDP_TX, the MAC swap's XDP_TX, and kernel forwarding to backends routed
//! via `g0`), so `g0` is both the clients' and the backends' side of the
//! wire and its sink counts what was forwarded. All addresses are in the
//! benchmarking ranges (RFC 2544: 198.18.0.0/15) and TEST-NET-1 and are
//! assigned in these namespaces: clients 198.18.128.0/17 and backends
//! 198.19.0.0/16 on `g0`, the device under test 198.18.0.254 on `d0`.
//!
//! Lab facts (DESIGN.md §9): a frame sent into a veth is only delivered
//! when the peer runs XDP (the sink on `g0`; the device under test, or
//! XDP_PASS for the kernel path, on `d0`); transmit checksum offload is off
//! and the MTU is 1600 on both ends; each CPU transmits on its own queue
//! (XPS), or the kernel path halves.
use std::net::Ipv4Addr;

use anyhow::{Context as _, Result};
use lb_lab::{Netns, link};

pub const GEN_IF: &str = "g0";
pub const DUT_IF: &str = "d0";
/// `g0`'s address: next hop of the backends for the kernel path.
pub const GEN_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const DUT_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
/// Base of the clients' addresses (the generator varies the low 16 bits
/// from 0x8000 up).
pub const CLIENTS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
pub const BACKENDS_NET: &str = "198.19.0.0/16";
const MTU: u32 = 1600;

/// The two namespaces and the veth between them; dropping it deletes both.
pub struct Wire {
    pub gen_ns: Netns,
    pub dut_ns: Netns,
    pub gen_ifindex: u32,
    pub dut_ifindex: u32,
    pub gen_mac: [u8; 6],
    pub dut_mac: [u8; 6],
    /// Queues per direction (one per CPU).
    pub queues: usize,
}

impl Wire {
    pub fn create(prefix: &str, queues: usize) -> Result<Wire> {
        let gen_ns = Netns::create(&format!("{prefix}-gen"))?;
        let dut_ns = Netns::create(&format!("{prefix}-dut"))?;
        // Nothing of IPv6 (router solicitations, MLD) on the wire.
        for ns in [&gen_ns, &dut_ns] {
            for scope in ["all", "default"] {
                ns.sysctl(&format!("net.ipv6.conf.{scope}.disable_ipv6"), "1")?;
            }
        }
        let q = queues.to_string();
        gen_ns
            .ip(&[
                "link",
                "add",
                GEN_IF,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
                "type",
                "veth",
                "peer",
                "name",
                DUT_IF,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
                "netns",
                dut_ns.name(),
            ])
            .context("creating the veth pair")?;
        for (ns, interface) in [(&gen_ns, GEN_IF), (&dut_ns, DUT_IF)] {
            link::set_mtu(ns, interface, MTU)?;
            link::disable_tx_offload(ns, interface)?;
            link::set_up(ns, interface)?;
            // XPS: CPU i transmits on queue i.
            let script = (0..queues)
                .map(|i| {
                    format!(
                        "echo {:x} > /sys/class/net/{interface}/queues/tx-{i}/xps_cpus",
                        1u64 << i
                    )
                })
                .collect::<Vec<_>>()
                .join(" && ");
            ns.exec_ok("sh", &["-c", &script])
                .with_context(|| format!("XPS on {interface}"))?;
        }
        for cidr in [
            format!("{GEN_ADDRESS}/16"),
            "198.19.0.1/16".to_owned(),
            "198.18.128.1/17".to_owned(),
        ] {
            gen_ns.ip(&["addr", "add", &cidr, "dev", GEN_IF])?;
        }
        dut_ns.ip(&["addr", "add", &format!("{DUT_ADDRESS}/16"), "dev", DUT_IF])?;
        let gen_mac = link::mac(&gen_ns, GEN_IF)?;
        let dut_mac = link::mac(&dut_ns, DUT_IF)?;
        // The kernel path: backends behind g0, whose MAC is known.
        dut_ns.ip(&[
            "neigh",
            "replace",
            &GEN_ADDRESS.to_string(),
            "lladdr",
            &link::format_mac(gen_mac),
            "dev",
            DUT_IF,
            "nud",
            "permanent",
        ])?;
        dut_ns.ip(&[
            "route",
            "add",
            BACKENDS_NET,
            "via",
            &GEN_ADDRESS.to_string(),
            "dev",
            DUT_IF,
        ])?;
        for (key, value) in [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.d0.rp_filter", "0"),
            ("net.ipv4.conf.all.send_redirects", "0"),
            ("net.ipv4.conf.d0.send_redirects", "0"),
        ] {
            dut_ns.sysctl(key, value)?;
        }
        link::wait_up(&gen_ns, GEN_IF, std::time::Duration::from_secs(5))?;
        Ok(Wire {
            gen_ifindex: link::ifindex(&gen_ns, GEN_IF)?,
            dut_ifindex: link::ifindex(&dut_ns, DUT_IF)?,
            gen_ns,
            dut_ns,
            gen_mac,
            dut_mac,
            queues,
        })
    }
}
