//! IPv6: TCP and UDP to virtual servers, fragments, and ICMPv6 "packet too
//! big" about VIP flows.
use aya_ebpf::programs::XdpContext;
use lb_common::{
    Flow6Key, VIP_KIND_FRAGMENT, VIP_KIND_PORT, Vip6Key, VipMeta, flow_hash_v6, proto, stats,
};
use lb_ebpf::{
    headers::{ICMP_LEN, ICMPV6_PACKET_TOO_BIG, IPV6_LEN, IcmpHdr, Ipv6FragHdr, Ipv6Hdr, PortsHdr},
    packet::{Truncated, frame_len, ptr_at},
};

use crate::{
    Verdict,
    forward::{INNER_V6, Inner, send},
    maps::{FLOWS_V6, STATS, VIPS_V6, count},
    select::{self, Selected},
};

/// Extension headers that may precede the transport header. Only the
/// Fragment header is walked; with any of these the packet is passed to
/// the kernel (counted as unsupported).
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const DESTINATION_OPTIONS: u8 = 60;

#[inline(always)]
fn vip(addr: &[u8; 16], port_be: u16, proto: u8) -> Option<&'static VipMeta> {
    let mut key = Vip6Key {
        addr: *addr,
        port_be,
        proto,
        kind: VIP_KIND_PORT,
    };
    // SAFETY: VIP entries are replaced whole by the daemon, never mutated
    // in place, and this program only reads them.
    if let Some(meta) = unsafe { VIPS_V6.get(&key) } {
        return Some(meta);
    }
    key.port_be = 0;
    // SAFETY: as above.
    unsafe { VIPS_V6.get(&key) }
}

#[inline(always)]
fn traffic_class(vtc_flow_be: u32) -> u8 {
    (u32::from_be(vtc_flow_be) >> 20) as u8
}

/// The backend of flow `src:src_port -> dst:dst_port` through the flow
/// table, and the flow's hash.
#[inline(always)]
fn flow(
    src: &[u8; 16],
    dst: &[u8; 16],
    src_port_be: u16,
    dst_port_be: u16,
    proto: u8,
    vip: &VipMeta,
) -> (Selected, u32) {
    let key = Flow6Key {
        src: *src,
        dst: *dst,
        src_port_be,
        dst_port_be,
        proto,
        _pad: [0; 3],
    };
    let hash = flow_hash_v6(src, dst, src_port_be, dst_port_be, proto);
    (select::for_flow(&FLOWS_V6, &key, vip, hash), hash)
}

pub fn balance(ctx: &XdpContext, l3_off: usize) -> Result<Verdict, Truncated> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, l3_off)?;
    // SAFETY: bounds-checked packet memory.
    let ip = unsafe { &*ip };
    let payload_len = u16::from_be(ip.payload_len_be) as usize;
    if u32::from_be(ip.vtc_flow_be) >> 28 != 6
        || l3_off + IPV6_LEN + payload_len > frame_len(ctx) as usize
    {
        return Ok(Verdict::drop(stats::DROP_MALFORMED));
    }
    let tos = traffic_class(ip.vtc_flow_be);
    let l4_off = l3_off + IPV6_LEN;
    match ip.next_header {
        proto::TCP | proto::UDP => {}
        proto::ICMPV6 => return icmp(ctx, l3_off, ip, l4_off),
        proto::IPV6_FRAGMENT => return fragment(ctx, l3_off, ip, l4_off),
        HOP_BY_HOP | ROUTING | DESTINATION_OPTIONS => {
            return Ok(Verdict::pass(stats::PASS_UNSUPPORTED));
        }
        _ => return Ok(Verdict::pass(stats::PASS_NOT_VIP)),
    }
    let ports: *const PortsHdr = ptr_at(ctx, l4_off)?;
    // SAFETY: bounds-checked packet memory.
    let (src_port_be, dst_port_be) = unsafe { ((*ports).src_be, (*ports).dst_be) };
    let Some(vip) = vip(&ip.dst, dst_port_be, ip.next_header) else {
        return Ok(Verdict::pass(stats::PASS_NOT_VIP));
    };
    let (selected, hash) = flow(
        &ip.src,
        &ip.dst,
        src_port_be,
        dst_port_be,
        ip.next_header,
        vip,
    );
    send(ctx, vip, selected, &Inner::new(l3_off, INNER_V6, tos, hash))
}

/// As for IPv4: every fragment of a datagram is balanced on (source,
/// destination, protocol) through the address's fragment entry.
#[inline(always)]
fn fragment(
    ctx: &XdpContext,
    l3_off: usize,
    ip: &Ipv6Hdr,
    frag_off: usize,
) -> Result<Verdict, Truncated> {
    let frag: *const Ipv6FragHdr = ptr_at(ctx, frag_off)?;
    // SAFETY: bounds-checked packet memory.
    let upper = unsafe { (*frag).next_header };
    let key = Vip6Key {
        addr: ip.dst,
        port_be: 0,
        proto: upper,
        kind: VIP_KIND_FRAGMENT,
    };
    // SAFETY: as in `vip`.
    let Some(vip) = (unsafe { VIPS_V6.get(&key) }) else {
        return Ok(Verdict::pass(stats::PASS_NOT_VIP));
    };
    let hash = flow_hash_v6(&ip.src, &ip.dst, 0, 0, upper);
    let selected = Selected {
        new_flow: false,
        ..select::from_ring(vip, hash)
    };
    count(&STATS, stats::FRAGMENTS, 0);
    let tos = traffic_class(ip.vtc_flow_be);
    send(ctx, vip, selected, &Inner::new(l3_off, INNER_V6, tos, hash))
}

/// ICMPv6 "packet too big" (RFC 4443 §3.2, RFC 8201) about a packet a
/// backend sent from a VIP goes to that backend. The quoted packet runs
/// VIP -> client, so the flow is the reverse of it.
#[inline(always)]
fn icmp(
    ctx: &XdpContext,
    l3_off: usize,
    ip: &Ipv6Hdr,
    l4_off: usize,
) -> Result<Verdict, Truncated> {
    let icmp: *const IcmpHdr = ptr_at(ctx, l4_off)?;
    // SAFETY: bounds-checked packet memory.
    if unsafe { (*icmp).kind } != ICMPV6_PACKET_TOO_BIG {
        return Ok(Verdict::pass(stats::PASS_NOT_VIP));
    }
    let quoted_off = l4_off + ICMP_LEN;
    let quoted: *const Ipv6Hdr = ptr_at(ctx, quoted_off)?;
    // SAFETY: bounds-checked packet memory.
    let quoted = unsafe { &*quoted };
    if u32::from_be(quoted.vtc_flow_be) >> 28 != 6 {
        return Ok(Verdict::drop(stats::DROP_MALFORMED));
    }
    let upper = quoted.next_header;
    if (upper != proto::TCP && upper != proto::UDP) || quoted.src != ip.dst {
        return Ok(Verdict::pass(stats::PASS_NOT_VIP));
    }
    let ports: *const PortsHdr = ptr_at(ctx, quoted_off + IPV6_LEN)?;
    // SAFETY: bounds-checked packet memory.
    let (vip_port_be, client_port_be) = unsafe { ((*ports).src_be, (*ports).dst_be) };
    let Some(vip) = vip(&quoted.src, vip_port_be, upper) else {
        return Ok(Verdict::pass(stats::PASS_NOT_VIP));
    };
    let (selected, hash) = flow(
        &quoted.dst,
        &quoted.src,
        client_port_be,
        vip_port_be,
        upper,
        vip,
    );
    count(&STATS, stats::ICMP_ERRORS, 0);
    let tos = traffic_class(ip.vtc_flow_be);
    send(ctx, vip, selected, &Inner::new(l3_off, INNER_V6, tos, hash))
}
