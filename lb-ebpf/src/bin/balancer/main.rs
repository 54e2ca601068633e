//! The load balancer's XDP program.
//!
//! Per packet: parse Ethernet (one optional 802.1Q tag) and IP, find the
//! virtual server by (destination, port, protocol), pick the backend from
//! the flow table or the VIP's Maglev ring, and send the packet to it with
//! XDP_TX, encapsulated (tunnel mode) or with its MAC rewritten (dsr mode).
//! Everything that is not for a virtual server passes to the kernel
//! untouched. Every packet bumps exactly one verdict counter in `STATS`.
#![no_std]
#![no_main]

mod forward;
mod maps;
mod select;
mod v4;
mod v6;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::stats;
use lb_ebpf::{
    headers::{
        ETH_LEN, ETH_P_8021AD_BE, ETH_P_8021Q_BE, ETH_P_IPV4_BE, ETH_P_IPV6_BE, EthHdr, VLAN_LEN,
        VlanHdr,
    },
    packet::{Truncated, frame_len, ptr_at},
};

/// An XDP action and the `STATS` counter that accounts for it.
pub struct Verdict {
    pub action: u32,
    pub stat: u32,
}

impl Verdict {
    #[inline(always)]
    pub const fn new(action: u32, stat: u32) -> Self {
        Self { action, stat }
    }

    #[inline(always)]
    pub const fn pass(stat: u32) -> Self {
        Self::new(xdp_action::XDP_PASS, stat)
    }

    #[inline(always)]
    pub const fn drop(stat: u32) -> Self {
        Self::new(xdp_action::XDP_DROP, stat)
    }
}

#[xdp]
pub fn lb_balancer(ctx: XdpContext) -> u32 {
    let bytes = frame_len(&ctx);
    // A header cut short by the end of the frame is malformed: drop it
    // rather than guess.
    let verdict = balance(&ctx).unwrap_or(Verdict::drop(stats::DROP_MALFORMED));
    maps::count(&maps::STATS, verdict.stat, bytes);
    verdict.action
}

#[inline(always)]
fn balance(ctx: &XdpContext) -> Result<Verdict, Truncated> {
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
        ETH_P_IPV4_BE => v4::balance(ctx, l3_off),
        ETH_P_IPV6_BE => v6::balance(ctx, l3_off),
        // Stacked tags (802.1ad, or Q-in-Q) are the kernel's to untangle.
        ETH_P_8021Q_BE | ETH_P_8021AD_BE => Ok(Verdict::pass(stats::PASS_UNSUPPORTED)),
        _ => Ok(Verdict::pass(stats::PASS_NOT_IP)),
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
