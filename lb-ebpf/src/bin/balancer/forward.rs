//! Sending a packet to its backend: L2 DSR (rewrite the destination MAC) or
//! a tunnel (prepend an outer IPv4 or IPv6 header), both with XDP_TX out of
//! the interface the packet came in on.
use aya_ebpf::{bindings::xdp_action, helpers::bpf_xdp_adjust_head, programs::XdpContext};
use lb_common::{Backend, FAMILY_V4, VIP_FLAG_DSR, VipMeta, proto, stats};
use lb_ebpf::{
    checksum,
    headers::{
        ETH_P_8021Q_BE, ETH_P_IPV4_BE, ETH_P_IPV6_BE, EthHdr, IPV4_LEN, IPV6_LEN, Ipv4Hdr, Ipv6Hdr,
        VlanHdr,
    },
    packet::{Truncated, frame_len, ptr_at},
};

use crate::{
    Verdict,
    maps::{BACKEND_STATS, count, count_vip, tunnel_source_v4, tunnel_source_v6},
    select::Selected,
};

/// Hop limit of the outer header.
const OUTER_TTL: u8 = 64;

/// What the tunnel header needs to know about the packet it wraps.
pub struct Inner {
    /// Offset of the inner IP header (after Ethernet and an optional tag).
    pub l3_off: usize,
    /// `proto::IPIP` for an IPv4 packet, `proto::IPV6` for IPv6.
    pub proto: u8,
    /// IPv4 TOS / IPv6 traffic class, copied to the outer header.
    pub tos: u8,
    /// Flow hash: picks the outer source (and IPv6 flow label) so that the
    /// backend's NIC spreads tunnelled flows over its receive queues.
    pub hash: u32,
}

impl Inner {
    #[inline(always)]
    pub const fn new(l3_off: usize, proto: u8, tos: u8, hash: u32) -> Self {
        Self {
            l3_off,
            proto,
            tos,
            hash,
        }
    }
}

/// Counts the packet against its VIP and backend and forwards it; without
/// a backend the packet is dropped and counted.
#[inline(always)]
pub fn send(
    ctx: &XdpContext,
    vip: &VipMeta,
    selected: Selected,
    inner: &Inner,
) -> Result<Verdict, Truncated> {
    if selected.backend.is_null() {
        return Ok(Verdict::drop(stats::DROP_NO_BACKEND));
    }
    // SAFETY: non-null pointers in `Selected` come from BACKENDS lookups
    // and stay valid for the program run (array values are never freed).
    let backend = unsafe { &*selected.backend };
    let bytes = frame_len(ctx);
    count_vip(vip.vip_index, bytes, selected.new_flow);
    count(&BACKEND_STATS, selected.id, bytes);
    forward(ctx, vip, backend, inner)
}

/// Forwards the packet to `backend` as the VIP's mode says.
#[inline(always)]
fn forward(
    ctx: &XdpContext,
    vip: &VipMeta,
    backend: &Backend,
    inner: &Inner,
) -> Result<Verdict, Truncated> {
    if vip.flags & VIP_FLAG_DSR != 0 {
        let eth: *mut EthHdr = ptr_at(ctx, 0)?;
        // SAFETY: `eth` is bounds-checked packet memory.
        unsafe {
            (*eth).src = (*eth).dst;
            (*eth).dst = backend.mac;
        }
        return Ok(Verdict::new(xdp_action::XDP_TX, stats::TX_DSR));
    }
    tunnel(ctx, backend, inner)
}

#[inline(always)]
fn tunnel(ctx: &XdpContext, backend: &Backend, inner: &Inner) -> Result<Verdict, Truncated> {
    let tagged = inner.l3_off != lb_ebpf::headers::ETH_LEN;
    // Save what survives of the old L2 header: our MAC (the destination
    // the packet came to) and the VLAN tag.
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    // SAFETY: bounds-checked packet memory.
    let our_mac = unsafe { (*eth).dst };
    let tci_be = if tagged {
        let vlan: *mut VlanHdr = ptr_at(ctx, lb_ebpf::headers::ETH_LEN)?;
        // SAFETY: bounds-checked packet memory.
        unsafe { (*vlan).tci_be }
    } else {
        0
    };
    let inner_len = frame_len(ctx) as usize - inner.l3_off;
    let outer_v4 = backend.family == FAMILY_V4;
    let outer_len = if outer_v4 { IPV4_LEN } else { IPV6_LEN };

    // SAFETY: the helper only moves `data`; every pointer is re-derived and
    // re-checked below.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(outer_len as i32)) } != 0 {
        return Ok(Verdict::new(xdp_action::XDP_DROP, stats::DROP_ENCAP_FAILED));
    }

    let outer_type_be = if outer_v4 {
        ETH_P_IPV4_BE
    } else {
        ETH_P_IPV6_BE
    };
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    // SAFETY: bounds-checked packet memory.
    unsafe {
        (*eth).dst = backend.mac;
        (*eth).src = our_mac;
    }
    if tagged {
        let vlan: *mut VlanHdr = ptr_at(ctx, lb_ebpf::headers::ETH_LEN)?;
        // SAFETY: bounds-checked packet memory.
        unsafe {
            (*eth).ether_type_be = ETH_P_8021Q_BE;
            (*vlan).tci_be = tci_be;
            (*vlan).ether_type_be = outer_type_be;
        }
    } else {
        // SAFETY: bounds-checked packet memory.
        unsafe { (*eth).ether_type_be = outer_type_be };
    }

    if outer_v4 {
        let outer: *mut Ipv4Hdr = ptr_at(ctx, inner.l3_off)?;
        let header = ipv4_outer(backend, inner, (IPV4_LEN + inner_len) as u16);
        // SAFETY: bounds-checked packet memory.
        unsafe { *outer = header };
    } else {
        let outer: *mut Ipv6Hdr = ptr_at(ctx, inner.l3_off)?;
        let header = ipv6_outer(backend, inner, inner_len as u16);
        // SAFETY: bounds-checked packet memory.
        unsafe { *outer = header };
    }
    Ok(Verdict::new(xdp_action::XDP_TX, stats::TX_TUNNEL))
}

/// The outer IPv4 header of IP-in-IP (RFC 2003) or 6in4 (RFC 4213).
#[inline(always)]
fn ipv4_outer(backend: &Backend, inner: &Inner, total_len: u16) -> Ipv4Hdr {
    let base = tunnel_source_v4();
    let hash = inner.hash.to_be_bytes();
    let mut header = Ipv4Hdr {
        version_ihl: 0x45,
        tos: inner.tos,
        total_len_be: total_len.to_be(),
        id_be: 0,
        frag_off_be: 0,
        ttl: OUTER_TTL,
        proto: inner.proto,
        check: 0,
        src: [base[0], base[1], hash[2], hash[3]],
        dst: [
            backend.addr[0],
            backend.addr[1],
            backend.addr[2],
            backend.addr[3],
        ],
    };
    // SAFETY: Ipv4Hdr is 20 bytes of plain integers, the same size and
    // alignment (2) as [u16; 10].
    let words: [u16; 10] = unsafe { core::mem::transmute_copy(&header) };
    header.check = checksum::ipv4_header(&words);
    header
}

/// The outer IPv6 header of IPv6-in-IPv6 or IPv4-in-IPv6 (RFC 2473).
#[inline(always)]
fn ipv6_outer(backend: &Backend, inner: &Inner, payload_len: u16) -> Ipv6Hdr {
    let mut src = tunnel_source_v6();
    let hash = inner.hash.to_be_bytes();
    src[12] = hash[0];
    src[13] = hash[1];
    src[14] = hash[2];
    src[15] = hash[3];
    let vtc_flow = (6u32 << 28) | ((inner.tos as u32) << 20) | (inner.hash & 0x000f_ffff);
    Ipv6Hdr {
        vtc_flow_be: vtc_flow.to_be(),
        payload_len_be: payload_len.to_be(),
        next_header: inner.proto,
        hop_limit: OUTER_TTL,
        src,
        dst: backend.addr,
    }
}

/// `Inner::proto` for an IPv4 inner packet.
pub const INNER_V4: u8 = proto::IPIP;
/// `Inner::proto` for an IPv6 inner packet.
pub const INNER_V6: u8 = proto::IPV6;
