//! Sending a packet to its backend: L2 DSR (rewrite the destination MAC) or
//! a tunnel (prepend an outer IPv4 or IPv6 header), both with XDP_TX out of
//! the interface the packet came in on.
use aya_ebpf::{bindings::xdp_action, helpers::bpf_xdp_adjust_head, programs::XdpContext};
use lb_common::{BACKEND_FLAG_DSR, Backend, FAMILY_V4, proto, stats};
use lb_ebpf::{
    checksum,
    headers::{
        ETH_LEN, ETH_P_8021Q_BE, ETH_P_IPV4_BE, ETH_P_IPV6_BE, EthHdr, IPV4_LEN, IPV6_LEN, Ipv4Hdr,
        Ipv6Hdr, VlanHdr,
    },
    packet::{Truncated, frame_len, ptr_at},
};

use crate::{
    Verdict,
    maps::{count_backend, tunnel_source_v4_prefix, tunnel_source_v6_prefix},
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
}

impl Inner {
    #[inline(always)]
    pub const fn new(l3_off: usize, proto: u8, tos: u8) -> Self {
        Self { l3_off, proto, tos }
    }
}

/// Counts the packet against its backend and forwards it; without
/// a backend the packet passes (not for a VIP) or is dropped.
#[inline(always)]
pub fn send(ctx: &XdpContext, selected: &Selected, inner: &Inner) -> Result<Verdict, Truncated> {
    if selected.backend.is_null() {
        let verdict = if selected.not_vip {
            Verdict::pass(stats::PASS_NOT_VIP)
        } else {
            Verdict::drop(stats::DROP_NO_BACKEND)
        };
        return Ok(verdict.with_event(selected.event));
    }
    // SAFETY: non-null pointers in `Selected` come from BACKENDS lookups
    // and stay valid for the program run (array values are never freed).
    let backend = unsafe { &*selected.backend };
    let bytes = frame_len(ctx);
    count_backend(selected.id, bytes, selected.new_flow);
    let verdict = if backend.flags & BACKEND_FLAG_DSR != 0 {
        dsr(ctx, backend)?
    } else {
        tunnel(ctx, backend, inner, selected.hash)?
    };
    Ok(verdict.with_event(selected.event))
}

/// L2 DSR: the frame goes to the backend's MAC, from ours.
#[inline(always)]
fn dsr(ctx: &XdpContext, backend: &Backend) -> Result<Verdict, Truncated> {
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    // SAFETY: `eth` is bounds-checked packet memory.
    unsafe {
        (*eth).src = (*eth).dst;
        (*eth).dst = backend.mac;
    }
    Ok(Verdict::new(xdp_action::XDP_TX, stats::TX_DSR))
}

#[inline(always)]
fn tunnel(
    ctx: &XdpContext,
    backend: &Backend,
    inner: &Inner,
    hash: u32,
) -> Result<Verdict, Truncated> {
    let tagged = inner.l3_off != ETH_LEN;
    // Save what survives of the old L2 header: our MAC (the destination
    // the packet came to) and the VLAN tag.
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    // SAFETY: bounds-checked packet memory.
    let our_mac = unsafe { (*eth).dst };
    let tci_be = if tagged {
        let vlan: *mut VlanHdr = ptr_at(ctx, ETH_LEN)?;
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
        return Ok(Verdict::drop(stats::DROP_ENCAP_FAILED));
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
        let vlan: *mut VlanHdr = ptr_at(ctx, ETH_LEN)?;
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
        let header = ipv4_outer(backend, inner, hash, (IPV4_LEN + inner_len) as u16);
        // SAFETY: bounds-checked packet memory.
        unsafe { *outer = header };
    } else {
        let outer: *mut Ipv6Hdr = ptr_at(ctx, inner.l3_off)?;
        let header = ipv6_outer(backend, inner, hash, inner_len as u16);
        // SAFETY: bounds-checked packet memory.
        unsafe { *outer = header };
    }
    Ok(Verdict::new(xdp_action::XDP_TX, stats::TX_TUNNEL))
}

/// The outer IPv4 header of IP-in-IP (RFC 2003) or 6in4 (RFC 4213). The
/// source is the configured base with the low 16 bits from the flow hash.
#[inline(always)]
fn ipv4_outer(backend: &Backend, inner: &Inner, hash: u32, total_len: u16) -> Ipv4Hdr {
    // Memory-order 16-bit words: the base's first two bytes, then the low
    // 16 bits of the hash in network order.
    let src_hi = tunnel_source_v4_prefix();
    let src_lo = (hash as u16).to_be();
    let src = ((src_lo as u32) << 16) | src_hi as u32;
    let dst = [
        backend.addr[0],
        backend.addr[1],
        backend.addr[2],
        backend.addr[3],
    ];
    let total_len_be = total_len.to_be();
    // RFC 1071 sum of the ten header words in memory order (the zero id,
    // fragment and checksum words left out).
    let check = checksum::ipv4_header_sum(
        u16::from_le_bytes([0x45, inner.tos]),
        total_len_be,
        u16::from_le_bytes([OUTER_TTL, inner.proto]),
        src,
        u32::from_ne_bytes(dst),
    );
    Ipv4Hdr {
        version_ihl: 0x45,
        tos: inner.tos,
        total_len_be,
        id_be: 0,
        frag_off_be: 0,
        ttl: OUTER_TTL,
        proto: inner.proto,
        check,
        src: src.to_le_bytes(),
        dst,
    }
}

/// The outer IPv6 header of IPv6-in-IPv6 or IPv4-in-IPv6 (RFC 2473). The
/// source is the configured base with the low 32 bits from the flow hash;
/// the flow label is the hash's low 20 bits.
#[inline(always)]
fn ipv6_outer(backend: &Backend, inner: &Inner, hash: u32, payload_len: u16) -> Ipv6Hdr {
    let [w0, w1, w2] = tunnel_source_v6_prefix();
    let w3 = hash.to_be();
    let vtc_flow = (6u32 << 28) | ((inner.tos as u32) << 20) | (hash & 0x000f_ffff);
    let src: [u32; 4] = [w0, w1, w2, w3];
    Ipv6Hdr {
        vtc_flow_be: vtc_flow.to_be(),
        payload_len_be: payload_len.to_be(),
        next_header: inner.proto,
        hop_limit: OUTER_TTL,
        // SAFETY: four words are sixteen bytes in memory order.
        src: unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>(src) },
        dst: backend.addr,
    }
}

/// `Inner::proto` for an IPv4 inner packet.
pub const INNER_V4: u8 = proto::IPIP;
/// `Inner::proto` for an IPv6 inner packet.
pub const INNER_V6: u8 = proto::IPV6;
