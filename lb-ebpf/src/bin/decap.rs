//! Backend-side decapsulation: removes the outer IPv4 or IPv6 header that
//! the balancer's tunnel mode put around a packet to a virtual address, and
//! passes the inner packet to the kernel, as if it had arrived unwrapped.
//! Backends need no ipip/ip6_tunnel module (kernels without modules have
//! none). Only packets whose inner destination is a configured VIP are
//! touched: a tunnel to any other address passes through unchanged.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_xdp_adjust_head,
    macros::{map, xdp},
    maps::{HashMap, PerCpuArray},
    programs::XdpContext,
};
use lb_common::{Counter, limits, proto, stats::decap as stat};
use lb_ebpf::{
    headers::{
        ETH_LEN, ETH_P_8021Q_BE, ETH_P_IPV4_BE, ETH_P_IPV6_BE, EthHdr, IPV4_LEN, IPV6_LEN, Ipv4Hdr,
        Ipv6Hdr, VLAN_LEN, VlanHdr,
    },
    packet::{Truncated, frame_len, ptr_at},
};

/// VIP addresses (value unused) whose tunnelled packets are unwrapped.
#[map]
static DECAP_VIPS_V4: HashMap<[u8; 4], u32> = HashMap::with_max_entries(limits::DECAP_VIPS, 0);
#[map]
static DECAP_VIPS_V6: HashMap<[u8; 16], u32> = HashMap::with_max_entries(limits::DECAP_VIPS, 0);
/// Counters indexed by `lb_common::stats::decap`.
#[map]
static DECAP_STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(stat::COUNT, 0);

#[xdp]
pub fn lb_decap(ctx: XdpContext) -> u32 {
    let bytes = frame_len(&ctx);
    let (action, index) = match decap(&ctx) {
        Ok(Some(())) => (xdp_action::XDP_PASS, stat::DECAPSULATED),
        Ok(None) => (xdp_action::XDP_PASS, stat::PASS_OTHER),
        Err(Malformed) => (xdp_action::XDP_DROP, stat::DROP_MALFORMED),
    };
    if let Some(counter) = DECAP_STATS.get_ptr_mut(index) {
        // SAFETY: this CPU's slot of a per-CPU array.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += bytes;
        }
    }
    action
}

/// A tunnel packet whose headers do not add up.
struct Malformed;

impl From<Truncated> for Malformed {
    fn from(_: Truncated) -> Self {
        Malformed
    }
}

/// Where the inner packet starts, and its family.
struct Outer {
    len: usize,
    inner_v4: bool,
}

/// `Ok(None)`: not ours, left alone. `Ok(Some(()))`: unwrapped.
#[inline(always)]
fn decap(ctx: &XdpContext) -> Result<Option<()>, Malformed> {
    let Ok(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return Ok(None);
    };
    // SAFETY: bounds-checked packet memory.
    let mut ether_type = unsafe { (*eth).ether_type_be };
    let mut l3_off = ETH_LEN;
    if ether_type == ETH_P_8021Q_BE {
        let Ok(vlan) = ptr_at::<VlanHdr>(ctx, ETH_LEN) else {
            return Ok(None);
        };
        // SAFETY: bounds-checked packet memory.
        ether_type = unsafe { (*vlan).ether_type_be };
        l3_off = ETH_LEN + VLAN_LEN;
    }
    let outer = match ether_type {
        ETH_P_IPV4_BE => outer_v4(ctx, l3_off)?,
        ETH_P_IPV6_BE => outer_v6(ctx, l3_off)?,
        _ => None,
    };
    let Some(outer) = outer else {
        return Ok(None);
    };
    let inner_off = l3_off + outer.len;
    let for_vip = if outer.inner_v4 {
        let inner: *const Ipv4Hdr = ptr_at(ctx, inner_off)?;
        // SAFETY: bounds-checked packet memory; the map is only read.
        unsafe { DECAP_VIPS_V4.get(&(*inner).dst).is_some() }
    } else {
        let inner: *const Ipv6Hdr = ptr_at(ctx, inner_off)?;
        // SAFETY: as above.
        unsafe { DECAP_VIPS_V6.get(&(*inner).dst).is_some() }
    };
    if !for_vip {
        return Ok(None);
    }
    strip(ctx, l3_off, &outer)?;
    Ok(Some(()))
}

/// An IPv4 header carrying IPv4 (protocol 4) or IPv6 (41), unfragmented.
#[inline(always)]
fn outer_v4(ctx: &XdpContext, off: usize) -> Result<Option<Outer>, Malformed> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, off)?;
    // SAFETY: bounds-checked packet memory.
    let ip = unsafe { &*ip };
    if ip.proto != proto::IPIP && ip.proto != proto::IPV6 {
        return Ok(None);
    }
    let len = ((ip.version_ihl & 0x0f) as usize) * 4;
    let total_len = u16::from_be(ip.total_len_be) as usize;
    if ip.version_ihl >> 4 != 4
        || len < IPV4_LEN
        || total_len < len
        || off + total_len > frame_len(ctx) as usize
        || ip.frag_off_be & lb_ebpf::headers::IPV4_MF_OFFSET_MASK_BE != 0
    {
        return Err(Malformed);
    }
    Ok(Some(Outer {
        len,
        inner_v4: ip.proto == proto::IPIP,
    }))
}

/// An IPv6 header whose next header is IPv6 (41) or IPv4 (4).
#[inline(always)]
fn outer_v6(ctx: &XdpContext, off: usize) -> Result<Option<Outer>, Malformed> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, off)?;
    // SAFETY: bounds-checked packet memory.
    let ip = unsafe { &*ip };
    if ip.next_header != proto::IPIP && ip.next_header != proto::IPV6 {
        return Ok(None);
    }
    let payload_len = u16::from_be(ip.payload_len_be) as usize;
    if off + IPV6_LEN + payload_len > frame_len(ctx) as usize {
        return Err(Malformed);
    }
    Ok(Some(Outer {
        len: IPV6_LEN,
        inner_v4: ip.next_header == proto::IPIP,
    }))
}

/// Moves the L2 header forward over the outer IP header and drops it.
#[inline(always)]
fn strip(ctx: &XdpContext, l3_off: usize, outer: &Outer) -> Result<(), Malformed> {
    let eth: *const EthHdr = ptr_at(ctx, 0)?;
    // SAFETY: bounds-checked packet memory.
    let (dst, src) = unsafe { ((*eth).dst, (*eth).src) };
    let tagged = l3_off != ETH_LEN;
    let tci_be = if tagged {
        let vlan: *const VlanHdr = ptr_at(ctx, ETH_LEN)?;
        // SAFETY: bounds-checked packet memory.
        unsafe { (*vlan).tci_be }
    } else {
        0
    };
    // SAFETY: the helper only moves `data`; pointers are re-derived below.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, outer.len as i32) } != 0 {
        return Err(Malformed);
    }
    let inner_type_be = if outer.inner_v4 {
        ETH_P_IPV4_BE
    } else {
        ETH_P_IPV6_BE
    };
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    // SAFETY: bounds-checked packet memory.
    unsafe {
        (*eth).dst = dst;
        (*eth).src = src;
    }
    if tagged {
        let vlan: *mut VlanHdr = ptr_at(ctx, ETH_LEN)?;
        // SAFETY: bounds-checked packet memory.
        unsafe {
            (*eth).ether_type_be = ETH_P_8021Q_BE;
            (*vlan).tci_be = tci_be;
            (*vlan).ether_type_be = inner_type_be;
        }
    } else {
        // SAFETY: bounds-checked packet memory.
        unsafe { (*eth).ether_type_be = inner_type_be };
    }
    Ok(())
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
