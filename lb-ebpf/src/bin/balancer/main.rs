//! The load balancer's XDP program.
//!
//! Per packet: parse Ethernet (one optional 802.1Q tag) and IP, stop at the
//! VIP filter if the destination cannot be a VIP, find the flow's backend
//! in the flow table (or, for a new flow, the virtual server and its
//! Maglev ring), and send the packet to it with XDP_TX, encapsulated
//! (tunnel mode) or with its MAC rewritten (dsr mode). Everything that is
//! not for a virtual server passes to the kernel untouched. Every packet
//! bumps exactly one verdict counter in `STATS`.
#![no_std]
#![no_main]
// Compare-and-exchange on flow-table ways (`select::swap_tail`): the BPF
// target has atomics without `compare_exchange`, but BPF_CMPXCHG exists.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod forward;
mod maps;
mod select;
mod v4;
mod v6;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::stats;
use lb_ebpf::{
    headers::{
        ETH_LEN, ETH_P_8021AD_BE, ETH_P_8021Q_BE, ETH_P_IPV4_BE, ETH_P_IPV6_BE, EthHdr, PortsHdr,
        TCP_ACK, TCP_RST, TCP_SYN, TcpHdr, VLAN_LEN, VlanHdr,
    },
    packet::{Truncated, frame_len, ptr_at},
};

use crate::select::NO_EVENT;

/// An XDP action, the `STATS` counter that accounts for it, and up to two
/// event counters (`select::NO_EVENT`: none).
pub struct Verdict {
    pub action: u32,
    pub stat: u32,
    /// The flow-table result (`stats::FLOW_*`).
    pub event: u32,
    /// A special path (`stats::FRAGMENTS`, `stats::ICMP_ERRORS`).
    pub extra_event: u32,
}

impl Verdict {
    #[inline(always)]
    pub const fn new(action: u32, stat: u32) -> Self {
        Self {
            action,
            stat,
            event: NO_EVENT,
            extra_event: NO_EVENT,
        }
    }

    #[inline(always)]
    pub const fn pass(stat: u32) -> Self {
        Self::new(xdp_action::XDP_PASS, stat)
    }

    #[inline(always)]
    pub const fn drop(stat: u32) -> Self {
        Self::new(xdp_action::XDP_DROP, stat)
    }

    #[inline(always)]
    pub const fn with_event(self, event: u32) -> Self {
        Self { event, ..self }
    }

    #[inline(always)]
    pub const fn with_extra_event(self, extra_event: u32) -> Self {
        Self {
            extra_event,
            ..self
        }
    }
}

#[xdp]
pub fn lb_balancer(ctx: XdpContext) -> u32 {
    let bytes = frame_len(&ctx);
    // A header cut short by the end of the frame is malformed: drop it
    // rather than guess.
    let verdict = balance(&ctx, bytes as usize).unwrap_or(Verdict::drop(stats::DROP_MALFORMED));
    maps::count_stats(verdict.stat, bytes, verdict.event, verdict.extra_event);
    verdict.action
}

#[inline(always)]
fn balance(ctx: &XdpContext, frame_len: usize) -> Result<Verdict, Truncated> {
    let eth: *const EthHdr = ptr_at(ctx, 0)?;
    // SAFETY: bounds-checked packet memory.
    let mut ether_type = unsafe { (*eth).ether_type_be };
    let mut l3_off = ETH_LEN;
    if ether_type == ETH_P_8021Q_BE {
        let vlan: *const VlanHdr = ptr_at(ctx, ETH_LEN)?;
        // SAFETY: bounds-checked packet memory.
        ether_type = unsafe { (*vlan).ether_type_be };
        l3_off = ETH_LEN + VLAN_LEN;
    }
    match ether_type {
        ETH_P_IPV4_BE => v4::balance(ctx, l3_off, frame_len),
        ETH_P_IPV6_BE => v6::balance(ctx, l3_off, frame_len),
        // Stacked tags (802.1ad, or Q-in-Q) are the kernel's to untangle.
        ETH_P_8021Q_BE | ETH_P_8021AD_BE => Ok(Verdict::pass(stats::PASS_UNSUPPORTED)),
        _ => Ok(Verdict::pass(stats::PASS_NOT_IP)),
    }
}

/// The ports of a TCP or UDP header, and whether a TCP segment opens a
/// connection (SYN without ACK or RST).
pub struct Transport {
    pub src_port_be: u16,
    pub dst_port_be: u16,
    pub syn: bool,
}

/// Reads the `proto` (TCP or UDP) header at `l4_off`. A header cut short
/// (a TCP header without its 20 bytes) is malformed.
#[inline(always)]
pub fn transport(ctx: &XdpContext, l4_off: usize, proto: u8) -> Result<Transport, Truncated> {
    if proto == lb_common::proto::TCP {
        let tcp: *const TcpHdr = ptr_at(ctx, l4_off)?;
        // SAFETY: bounds-checked packet memory.
        let (src_port_be, dst_port_be, flags) =
            unsafe { ((*tcp).src_be, (*tcp).dst_be, (*tcp).flags) };
        return Ok(Transport {
            src_port_be,
            dst_port_be,
            syn: flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN,
        });
    }
    let ports: *const PortsHdr = ptr_at(ctx, l4_off)?;
    // SAFETY: bounds-checked packet memory.
    let (src_port_be, dst_port_be) = unsafe { ((*ports).src_be, (*ports).dst_be) };
    Ok(Transport {
        src_port_be,
        dst_port_be,
        syn: false,
    })
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
