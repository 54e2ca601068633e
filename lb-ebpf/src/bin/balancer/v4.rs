//! IPv4: TCP and UDP to virtual servers, fragments, and ICMP
//! "fragmentation needed" about VIP flows.
use aya_ebpf::programs::XdpContext;
use lb_common::{
    Backend, VIP_FILTER_ANY_PORT, VIP_FILTER_PORT, VIP_KIND_FRAGMENT, VIP_KIND_PORT, Vip4Key,
    VipMeta, flow_hash_v4, flow_table::Way4, proto, stats, vip_filter_slot_v4,
};
use lb_ebpf::{
    headers::{
        ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, ICMP_LEN, IPV4_LEN, IPV4_MF_OFFSET_MASK_BE, IcmpHdr,
        Ipv4Hdr, PortsHdr,
    },
    packet::{Truncated, ptr_at},
};

use crate::{
    Verdict,
    forward::{INNER_V4, Inner, send},
    maps::{FLOWS_V4, VIPS_V4, flow_set_mask_v4, vip_filter},
    select::{self, Flow, Ports, Selected},
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
fn header(ctx: &XdpContext, off: usize, frame_len: usize) -> Result<Option<Header>, Truncated> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, off)?;
    // SAFETY: bounds-checked packet memory.
    let ip = unsafe { &*ip };
    let header_len = ((ip.version_ihl & 0x0f) as usize) * 4;
    let total_len = u16::from_be(ip.total_len_be) as usize;
    if ip.version_ihl >> 4 != 4
        || header_len < IPV4_LEN
        || total_len < header_len
        || off + total_len > frame_len
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

/// The virtual server of `addr:port_be` (`proto`): the entry of that port,
/// else the address's all-ports entry. `filter` (the address's
/// `VIP_FILTER` flags) skips lookups that cannot match.
#[inline(always)]
fn vip(addr: [u8; 4], port_be: u16, proto: u8, filter: u32) -> Option<&'static VipMeta> {
    let mut key = Vip4Key {
        addr,
        port_be,
        proto,
        kind: VIP_KIND_PORT,
    };
    if filter & VIP_FILTER_PORT != 0 {
        // SAFETY: VIP entries are replaced whole by the daemon, never
        // mutated in place, and this program only reads them.
        if let Some(meta) = unsafe { VIPS_V4.get(&key) } {
            return Some(meta);
        }
    }
    if filter & VIP_FILTER_ANY_PORT == 0 {
        return None;
    }
    key.port_be = 0;
    // SAFETY: as above.
    unsafe { VIPS_V4.get(&key) }
}

/// An IPv4 TCP or UDP flow, its addresses and ports as loaded from the
/// packet.
// Aligned so that the values returned around it (`quoted_flow`) sit on
// aligned stack slots: the verifier rejects misaligned stack stores.
#[repr(C, align(8))]
struct Key4 {
    src: [u8; 4],
    dst: [u8; 4],
    src_port_be: u16,
    dst_port_be: u16,
    proto: u8,
}

impl Flow for Key4 {
    type Way = Way4;
    const WAYS: usize = lb_common::flow_table::WAYS_V4;

    #[inline(always)]
    fn transport(&self) -> Ports {
        Ports::new(self.src_port_be, self.dst_port_be, self.proto)
    }

    #[inline(always)]
    fn to_address_of(&self, backend: &Backend) -> bool {
        let vip_addr = [
            backend.vip_addr[0],
            backend.vip_addr[1],
            backend.vip_addr[2],
            backend.vip_addr[3],
        ];
        u32::from_ne_bytes(vip_addr) == u32::from_ne_bytes(self.dst)
    }

    #[inline(always)]
    fn hash(&self) -> u32 {
        flow_hash_v4(
            self.src,
            self.dst,
            self.src_port_be,
            self.dst_port_be,
            self.proto,
        )
    }

    #[inline(always)]
    fn vip(&self, filter: u32) -> Option<&'static VipMeta> {
        vip(self.dst, self.dst_port_be, self.proto, filter)
    }

    #[inline(always)]
    fn set(hash: u32) -> *mut Way4 {
        match FLOWS_V4.get_ptr_mut(hash & flow_set_mask_v4()) {
            Some(set) => set.cast(),
            None => core::ptr::null_mut(),
        }
    }

    #[inline(always)]
    fn held_in(&self, way: *const Way4) -> bool {
        // SAFETY: a way inside a set; a racing writer is caught by the
        // caller's second read of the tail.
        let (src, dst) = unsafe {
            (
                core::ptr::read_volatile(&raw const (*way).src),
                core::ptr::read_volatile(&raw const (*way).dst),
            )
        };
        src == u32::from_ne_bytes(self.src) && dst == u32::from_ne_bytes(self.dst)
    }

    #[inline(always)]
    fn write_to(&self, way: *mut Way4) {
        // SAFETY: a way inside a set, claimed by the caller.
        unsafe {
            core::ptr::write_volatile(&raw mut (*way).src, u32::from_ne_bytes(self.src));
            core::ptr::write_volatile(&raw mut (*way).dst, u32::from_ne_bytes(self.dst));
        }
    }
}

#[inline(always)]
pub fn balance(ctx: &XdpContext, l3_off: usize, frame_len: usize) -> Result<Verdict, Truncated> {
    let Some(ip) = header(ctx, l3_off, frame_len)? else {
        return Ok(Verdict::drop(stats::DROP_MALFORMED));
    };
    if ip.fragment {
        return fragment(ctx, l3_off, &ip);
    }
    if !matches!(ip.proto, proto::TCP | proto::UDP | proto::ICMP) {
        return Ok(Verdict::pass(stats::PASS_NOT_VIP));
    }
    // An ICMP error about a VIP flow is addressed to the VIP too.
    let filter = vip_filter(vip_filter_slot_v4(ip.dst));
    if filter == 0 {
        return Ok(Verdict::pass(stats::PASS_NOT_VIP));
    }
    // The flow of the packet: its own, or the one an ICMP error quotes.
    let (key, icmp_error, syn) = match ip.proto {
        proto::TCP | proto::UDP => {
            let transport = crate::transport(ctx, ip.l4_off, ip.proto)?;
            let key = Key4 {
                src: ip.src,
                dst: ip.dst,
                src_port_be: transport.src_port_be,
                dst_port_be: transport.dst_port_be,
                proto: ip.proto,
            };
            (key, false, transport.syn)
        }
        _ => match quoted_flow(ctx, &ip)? {
            Ok(key) => (key, true, false),
            Err(verdict) => return Ok(verdict),
        },
    };
    let selected = select::for_flow(&key, filter, syn);
    if icmp_error && selected.not_vip {
        return Ok(Verdict::pass(stats::PASS_NOT_VIP));
    }
    let verdict = send(ctx, &selected, &Inner::new(l3_off, INNER_V4, ip.tos))?;
    Ok(if icmp_error {
        verdict.with_extra_event(stats::ICMP_ERRORS)
    } else {
        verdict
    })
}

/// Fragments carry ports only in the first piece, so all pieces of a
/// datagram are balanced on (source, destination, protocol) through the
/// address's fragment entry, bypassing the flow table.
#[inline(always)]
fn fragment(ctx: &XdpContext, l3_off: usize, ip: &Header) -> Result<Verdict, Truncated> {
    if vip_filter(vip_filter_slot_v4(ip.dst)) == 0 {
        return Ok(Verdict::pass(stats::PASS_NOT_VIP));
    }
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
    let (id, backend) = select::from_ring(vip, hash);
    let selected = Selected {
        backend,
        id,
        hash,
        event: select::NO_EVENT,
        ..Selected::NO_BACKEND
    };
    let verdict = send(ctx, &selected, &Inner::new(l3_off, INNER_V4, ip.tos))?;
    Ok(verdict.with_extra_event(stats::FRAGMENTS))
}

/// ICMP "fragmentation needed" (RFC 1191) about a packet a backend sent
/// from a VIP goes to that backend, so its path MTU discovery works. The
/// quoted packet runs VIP -> client, so its flow is the reverse of it.
/// Any other ICMP message, or one quoting something else, gets its
/// verdict instead.
#[inline(always)]
fn quoted_flow(ctx: &XdpContext, ip: &Header) -> Result<Result<Key4, Verdict>, Truncated> {
    let icmp: *const IcmpHdr = ptr_at(ctx, ip.l4_off)?;
    // SAFETY: bounds-checked packet memory.
    let (kind, code) = unsafe { ((*icmp).kind, (*icmp).code) };
    if kind != ICMP_DEST_UNREACH || code != ICMP_FRAG_NEEDED {
        return Ok(Err(Verdict::pass(stats::PASS_NOT_VIP)));
    }
    let quoted_off = ip.l4_off + ICMP_LEN;
    let quoted: *const Ipv4Hdr = ptr_at(ctx, quoted_off)?;
    // SAFETY: bounds-checked packet memory.
    let quoted = unsafe { &*quoted };
    let quoted_len = ((quoted.version_ihl & 0x0f) as usize) * 4;
    if quoted.version_ihl >> 4 != 4 || quoted_len < IPV4_LEN {
        return Ok(Err(Verdict::drop(stats::DROP_MALFORMED)));
    }
    if (quoted.proto != proto::TCP && quoted.proto != proto::UDP)
        || u32::from_ne_bytes(quoted.src) != u32::from_ne_bytes(ip.dst)
    {
        return Ok(Err(Verdict::pass(stats::PASS_NOT_VIP)));
    }
    let ports: *const PortsHdr = ptr_at(ctx, quoted_off + quoted_len)?;
    // SAFETY: bounds-checked packet memory.
    let (vip_port_be, client_port_be) = unsafe { ((*ports).src_be, (*ports).dst_be) };
    Ok(Ok(Key4 {
        src: quoted.dst,
        dst: quoted.src,
        src_port_be: client_port_be,
        dst_port_be: vip_port_be,
        proto: quoted.proto,
    }))
}
