//! The floor of stateful forwarding, for the packet-rate benchmark: the
//! MAC swap of `lb-macswap` plus the one thing every flow-table balancer
//! does per packet, reading the cache line of the packet's flow from a
//! table sized like the balancer's (1M IPv4 flows, 16 MiB) and taking its
//! destination MAC from what that line names. It keeps no flows and
//! counts nothing: what it costs over the MAC swap is the cost of the
//! per-flow memory read alone.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::Array,
    programs::XdpContext,
};
use lb_common::{
    MAP_F_MMAPABLE, flow_hash_v4,
    flow_table::{Set4, WAYS_V4, meta, sets},
};
use lb_ebpf::{
    headers::{ETH_LEN, ETH_P_IPV4_BE, EthHdr, Ipv4Hdr, PortsHdr},
    packet::ptr_at,
};

/// Sets of the table: as many as the balancer's for 1M IPv4 flows.
const SETS: u32 = sets(1 << 20, WAYS_V4);

#[map]
static FLOOR_FLOWS: Array<Set4> = Array::with_max_entries(SETS, MAP_F_MMAPABLE);
/// Destination MACs by backend id (all zero but the shape of the lookup).
#[map]
static FLOOR_MACS: Array<[u8; 8]> = Array::with_max_entries(256, 0);

#[xdp]
pub fn lb_flow_floor(ctx: XdpContext) -> u32 {
    forward(&ctx).unwrap_or(xdp_action::XDP_DROP)
}

#[inline(always)]
fn forward(ctx: &XdpContext) -> Option<u32> {
    let eth: *mut EthHdr = ptr_at(ctx, 0).ok()?;
    let ip: *const Ipv4Hdr = ptr_at(ctx, ETH_LEN).ok()?;
    let ports: *const PortsHdr = ptr_at(ctx, ETH_LEN + 20).ok()?;
    // SAFETY: bounds-checked packet memory (ptr_at).
    let hash = unsafe {
        if (*eth).ether_type_be != ETH_P_IPV4_BE {
            return Some(xdp_action::XDP_PASS);
        }
        flow_hash_v4(
            (*ip).src,
            (*ip).dst,
            (*ports).src_be,
            (*ports).dst_be,
            (*ip).proto,
        )
    };
    let set = FLOOR_FLOWS.get_ptr_mut(hash & (SETS - 1))?;
    // SAFETY: way 0's meta word inside the set; volatile, so the load is
    // made.
    let meta_word = unsafe { core::ptr::read_volatile(&raw const (*set).ways[0].meta) };
    // The MAC lookup's index depends on the loaded line, as a balancer's
    // backend lookup does.
    let mac = FLOOR_MACS.get(meta::backend(meta_word) & 0xff)?;
    // SAFETY: bounds-checked packet memory.
    unsafe {
        let dst = (*eth).dst;
        (*eth).dst = (*eth).src;
        (*eth).src = dst;
        (*eth).dst[0] ^= mac[0];
    }
    Some(xdp_action::XDP_TX)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
