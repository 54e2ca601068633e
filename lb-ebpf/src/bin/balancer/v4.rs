//! IPv4: TCP and UDP to virtual servers, fragments, and ICMP
//! "fragmentation needed" about VIP flows.
use aya_ebpf::programs::XdpContext;
use lb_common::{
    Flow4Key, VIP_KIND_FRAGMENT, VIP_KIND_PORT, Vip4Key, VipMeta, flow_hash_v4, proto, stats,
};
use lb_ebpf::{
    headers::{
        ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, ICMP_LEN, IPV4_LEN, IPV4_MF_OFFSET_MASK_BE, IcmpHdr,
        Ipv4Hdr, PortsHdr,
    },
    packet::{Truncated, frame_len, ptr_at},
};

use crate::{
    Verdict,
    forward::{INNER_V4, Inner, send},
    maps::{FLOWS_V4, STATS, VIPS_V4, count},
    select::{self, Selected},
};

/// A validated IPv4 header: its addresses, protocol and where L4 starts.
struct Header {
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    tos: u8,
    fragment: bool,
    l4_off: usize,
}

/// Reads the IPv4 header at `off`: version 4, IHL of at least 5 words,
/// and a total length that covers the header and fits in the frame.
#[inline(always)]
fn header(ctx: &XdpContext, off: usize) -> Result<Option<Header>, Truncated> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, off)?;
    // SAFETY: bounds-checked packet memory.
    let ip = unsafe { &*ip };
    let header_len = ((ip.version_ihl & 0x0f) as usize) * 4;
    let total_len = u16::from_be(ip.total_len_be) as usize;
    if ip.version_ihl >> 4 != 4
        || header_len < IPV4_LEN
        || total_len < header_len
        || off + total_len > frame_len(ctx) as usize
    {
        return Ok(None);
    }
    Ok(Some(Header {
        src: ip.src,
        dst: ip.dst,
        proto: ip.proto,
        tos: ip.tos,
        fragment: ip.frag_off_be & IPV4_MF_OFFSET_MASK_BE != 0,
        l4_off: off + header_len,
    }))
}

#[inline(always)]
fn vip(addr: [u8; 4], port_be: u16, proto: u8) -> Option<&'static VipMeta> {
    let mut key = Vip4Key {
        addr,
        port_be,
        proto,
        kind: VIP_KIND_PORT,
    };
    // SAFETY: VIP entries are replaced whole by the daemon, never mutated
    // in place, and this program only reads them.
    if let Some(meta) = unsafe { VIPS_V4.get(&key) } {
        return Some(meta);
    }
    key.port_be = 0;
    // SAFETY: as above.
    unsafe { VIPS_V4.get(&key) }
}

/// The backend of flow `src:src_port -> dst:dst_port` through the flow
/// table, and the flow's hash.
#[inline(always)]
fn flow(
    src: [u8; 4],
    dst: [u8; 4],
    src_port_be: u16,
    dst_port_be: u16,
    proto: u8,
    vip: &VipMeta,
) -> (Selected, u32) {
    let key = Flow4Key {
        src,
        dst,
        src_port_be,
        dst_port_be,
        proto,
        _pad: [0; 3],
    };
    let hash = flow_hash_v4(src, dst, src_port_be, dst_port_be, proto);
    (select::for_flow(&FLOWS_V4, &key, vip, hash), hash)
}

pub fn balance(ctx: &XdpContext, l3_off: usize) -> Result<Verdict, Truncated> {
    let Some(ip) = header(ctx, l3_off)? else {
        return Ok(Verdict::drop(stats::DROP_MALFORMED));
    };
    if ip.fragment {
        return fragment(ctx, l3_off, &ip);
    }
    match ip.proto {
        proto::TCP | proto::UDP => {}
        proto::ICMP => return icmp(ctx, l3_off, &ip),
        _ => return Ok(Verdict::pass(stats::PASS_NOT_VIP)),
    }
    let ports: *const PortsHdr = ptr_at(ctx, ip.l4_off)?;
    // SAFETY: bounds-checked packet memory.
    let (src_port_be, dst_port_be) = unsafe { ((*ports).src_be, (*ports).dst_be) };
    let Some(vip) = vip(ip.dst, dst_port_be, ip.proto) else {
        return Ok(Verdict::pass(stats::PASS_NOT_VIP));
    };
    let (selected, hash) = flow(ip.src, ip.dst, src_port_be, dst_port_be, ip.proto, vip);
    send(
        ctx,
        vip,
        selected,
        &Inner::new(l3_off, INNER_V4, ip.tos, hash),
    )
}

/// Fragments carry ports only in the first piece, so all pieces of a
/// datagram are balanced on (source, destination, protocol) through the
/// address's fragment entry, bypassing the flow table.
#[inline(always)]
fn fragment(ctx: &XdpContext, l3_off: usize, ip: &Header) -> Result<Verdict, Truncated> {
    let key = Vip4Key {
        addr: ip.dst,
        port_be: 0,
        proto: ip.proto,
        kind: VIP_KIND_FRAGMENT,
    };
    // SAFETY: as in `vip`.
    let Some(vip) = (unsafe { VIPS_V4.get(&key) }) else {
        return Ok(Verdict::pass(stats::PASS_NOT_VIP));
    };
    let hash = flow_hash_v4(ip.src, ip.dst, 0, 0, ip.proto);
    let selected = Selected {
        new_flow: false,
        ..select::from_ring(vip, hash)
    };
    count(&STATS, stats::FRAGMENTS, 0);
    send(
        ctx,
        vip,
        selected,
        &Inner::new(l3_off, INNER_V4, ip.tos, hash),
    )
}

/// ICMP "fragmentation needed" (RFC 1191) about a packet a backend sent
/// from a VIP goes to that backend, so its path MTU discovery works. The
/// quoted packet runs VIP -> client, so the flow is the reverse of it.
#[inline(always)]
fn icmp(ctx: &XdpContext, l3_off: usize, ip: &Header) -> Result<Verdict, Truncated> {
    let icmp: *const IcmpHdr = ptr_at(ctx, ip.l4_off)?;
    // SAFETY: bounds-checked packet memory.
    let (kind, code) = unsafe { ((*icmp).kind, (*icmp).code) };
    if kind != ICMP_DEST_UNREACH || code != ICMP_FRAG_NEEDED {
        return Ok(Verdict::pass(stats::PASS_NOT_VIP));
    }
    let quoted_off = ip.l4_off + ICMP_LEN;
    let quoted: *const Ipv4Hdr = ptr_at(ctx, quoted_off)?;
    // SAFETY: bounds-checked packet memory.
    let quoted = unsafe { &*quoted };
    let quoted_len = ((quoted.version_ihl & 0x0f) as usize) * 4;
    if quoted.version_ihl >> 4 != 4 || quoted_len < IPV4_LEN {
        return Ok(Verdict::drop(stats::DROP_MALFORMED));
    }
    if (quoted.proto != proto::TCP && quoted.proto != proto::UDP) || quoted.src != ip.dst {
        return Ok(Verdict::pass(stats::PASS_NOT_VIP));
    }
    let ports: *const PortsHdr = ptr_at(ctx, quoted_off + quoted_len)?;
    // SAFETY: bounds-checked packet memory.
    let (vip_port_be, client_port_be) = unsafe { ((*ports).src_be, (*ports).dst_be) };
    let Some(vip) = vip(quoted.src, vip_port_be, quoted.proto) else {
        return Ok(Verdict::pass(stats::PASS_NOT_VIP));
    };
    let (selected, hash) = flow(
        quoted.dst,
        quoted.src,
        client_port_be,
        vip_port_be,
        quoted.proto,
        vip,
    );
    count(&STATS, stats::ICMP_ERRORS, 0);
    send(
        ctx,
        vip,
        selected,
        &Inner::new(l3_off, INNER_V4, ip.tos, hash),
    )
}
