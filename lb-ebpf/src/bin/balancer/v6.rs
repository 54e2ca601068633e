//! IPv6: TCP and UDP to virtual servers, fragments, and ICMPv6 "packet too
//! big" about VIP flows.
use aya_ebpf::programs::XdpContext;
use lb_common::{
    Backend, VIP_FILTER_ANY_PORT, VIP_FILTER_PORT, VIP_KIND_FRAGMENT, VIP_KIND_PORT, Vip6Key,
    VipMeta, flow_hash_v6,
    flow_table::{Way6, fold_v6},
    proto, stats, vip_filter_slot_v6,
};
use lb_ebpf::{
    headers::{ICMP_LEN, ICMPV6_PACKET_TOO_BIG, IPV6_LEN, IcmpHdr, Ipv6FragHdr, Ipv6Hdr, PortsHdr},
    packet::{Truncated, ptr_at},
};

use crate::{
    Verdict,
    forward::{INNER_V6, Inner, send},
    maps::{FLOWS_V6, VIPS_V6, flow_set_mask_v6, vip_filter},
    select::{self, Flow, Ports, Selected},
};

/// Extension headers that may precede the transport header. Only the
/// Fragment header is walked; with any of these the packet is passed to
/// the kernel (counted as unsupported).
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const DESTINATION_OPTIONS: u8 = 60;

/// As the IPv4 `vip`: the port's entry, else the all-ports entry, with
/// the lookups `filter` rules out skipped.
#[inline(always)]
fn vip(addr: &[u8; 16], port_be: u16, proto: u8, filter: u32) -> Option<&'static VipMeta> {
    let mut key = Vip6Key {
        addr: *addr,
        port_be,
        proto,
        kind: VIP_KIND_PORT,
    };
    if filter & VIP_FILTER_PORT != 0 {
        // SAFETY: VIP entries are replaced whole by the daemon, never
        // mutated in place, and this program only reads them.
        if let Some(meta) = unsafe { VIPS_V6.get(&key) } {
            return Some(meta);
        }
    }
    if filter & VIP_FILTER_ANY_PORT == 0 {
        return None;
    }
    key.port_be = 0;
    // SAFETY: as above.
    unsafe { VIPS_V6.get(&key) }
}

/// The 16 address bytes as two words, for comparisons without `bcmp`.
#[inline(always)]
fn words(addr: &[u8; 16]) -> (u64, u64) {
    let lo = [
        addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], addr[6], addr[7],
    ];
    let hi = [
        addr[8], addr[9], addr[10], addr[11], addr[12], addr[13], addr[14], addr[15],
    ];
    (u64::from_ne_bytes(lo), u64::from_ne_bytes(hi))
}

/// The 16 address bytes as four words in memory order, as the flow table
/// keeps them.
#[inline(always)]
fn quads(addr: &[u8; 16]) -> [u32; 4] {
    let (lo, hi) = words(addr);
    [lo as u32, (lo >> 32) as u32, hi as u32, (hi >> 32) as u32]
}

/// An IPv6 TCP or UDP flow: its addresses (in the packet) and ports.
// Aligned so that the values returned around it (`quoted_flow`) sit on
// aligned stack slots: the verifier rejects misaligned stack stores.
#[repr(C, align(8))]
struct Key6<'a> {
    src: &'a [u8; 16],
    dst: &'a [u8; 16],
    src_port_be: u16,
    dst_port_be: u16,
    proto: u8,
}

impl Flow for Key6<'_> {
    type Way = Way6;
    const WAYS: usize = lb_common::flow_table::WAYS_V6;

    #[inline(always)]
    fn transport(&self) -> Ports {
        Ports::new(self.src_port_be, self.dst_port_be, self.proto)
    }

    #[inline(always)]
    fn to_address_of(&self, backend: &Backend) -> bool {
        words(&backend.vip_addr) == words(self.dst)
    }

    #[inline(always)]
    fn hash(&self) -> u32 {
        flow_hash_v6(
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
    fn set(hash: u32) -> *mut Way6 {
        match FLOWS_V6.get_ptr_mut(hash & flow_set_mask_v6()) {
            Some(set) => set.cast(),
            None => core::ptr::null_mut(),
        }
    }

    #[inline(always)]
    fn held_in(&self, way: *const Way6) -> bool {
        // SAFETY: a way inside a set; a racing writer is caught by the
        // caller's second read of the tail.
        let (src, dst_fold) = unsafe {
            (
                core::ptr::read_volatile(&raw const (*way).src),
                core::ptr::read_volatile(&raw const (*way).dst_fold),
            )
        };
        src == quads(self.src) && dst_fold == fold_v6(quads(self.dst))
    }

    #[inline(always)]
    fn write_to(&self, way: *mut Way6) {
        // SAFETY: a way inside a set, claimed by the caller.
        unsafe {
            core::ptr::write_volatile(&raw mut (*way).src, quads(self.src));
            core::ptr::write_volatile(&raw mut (*way).dst_fold, fold_v6(quads(self.dst)));
        }
    }
}

#[inline(always)]
fn traffic_class(vtc_flow_be: u32) -> u8 {
    (u32::from_be(vtc_flow_be) >> 20) as u8
}

#[inline(always)]
pub fn balance(ctx: &XdpContext, l3_off: usize, frame_len: usize) -> Result<Verdict, Truncated> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, l3_off)?;
    // SAFETY: bounds-checked packet memory.
    let ip = unsafe { &*ip };
    let payload_len = u16::from_be(ip.payload_len_be) as usize;
    if u32::from_be(ip.vtc_flow_be) >> 28 != 6 || l3_off + IPV6_LEN + payload_len > frame_len {
        return Ok(Verdict::drop(stats::DROP_MALFORMED));
    }
    let l4_off = l3_off + IPV6_LEN;
    match ip.next_header {
        proto::TCP | proto::UDP | proto::ICMPV6 => {}
        proto::IPV6_FRAGMENT => return fragment(ctx, l3_off, ip, l4_off),
        HOP_BY_HOP | ROUTING | DESTINATION_OPTIONS => {
            return Ok(Verdict::pass(stats::PASS_UNSUPPORTED));
        }
        _ => return Ok(Verdict::pass(stats::PASS_NOT_VIP)),
    }
    // An ICMPv6 error about a VIP flow is addressed to the VIP too.
    let filter = vip_filter(vip_filter_slot_v6(&ip.dst));
    if filter == 0 {
        return Ok(Verdict::pass(stats::PASS_NOT_VIP));
    }
    // The flow of the packet: its own, or the one an ICMPv6 error quotes.
    let (key, icmp_error, syn) = match ip.next_header {
        proto::TCP | proto::UDP => {
            let transport = crate::transport(ctx, l4_off, ip.next_header)?;
            let key = Key6 {
                src: &ip.src,
                dst: &ip.dst,
                src_port_be: transport.src_port_be,
                dst_port_be: transport.dst_port_be,
                proto: ip.next_header,
            };
            (key, false, transport.syn)
        }
        _ => match quoted_flow(ctx, ip, l4_off)? {
            Ok(key) => (key, true, false),
            Err(verdict) => return Ok(verdict),
        },
    };
    let selected = select::for_flow(&key, filter, syn);
    if icmp_error && selected.not_vip {
        return Ok(Verdict::pass(stats::PASS_NOT_VIP));
    }
    let tos = traffic_class(ip.vtc_flow_be);
    let verdict = send(ctx, &selected, &Inner::new(l3_off, INNER_V6, tos))?;
    Ok(if icmp_error {
        verdict.with_extra_event(stats::ICMP_ERRORS)
    } else {
        verdict
    })
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
    if vip_filter(vip_filter_slot_v6(&ip.dst)) == 0 {
        return Ok(Verdict::pass(stats::PASS_NOT_VIP));
    }
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
    let (id, backend) = select::from_ring(vip, hash);
    let selected = Selected {
        backend,
        id,
        hash,
        event: select::NO_EVENT,
        ..Selected::NO_BACKEND
    };
    let tos = traffic_class(ip.vtc_flow_be);
    let verdict = send(ctx, &selected, &Inner::new(l3_off, INNER_V6, tos))?;
    Ok(verdict.with_extra_event(stats::FRAGMENTS))
}

/// ICMPv6 "packet too big" (RFC 4443 §3.2, RFC 8201) about a packet a
/// backend sent from a VIP goes to that backend. The quoted packet runs
/// VIP -> client, so its flow is the reverse of it. Any other ICMPv6
/// message, or one quoting something else, gets its verdict instead.
#[inline(always)]
fn quoted_flow<'a>(
    ctx: &XdpContext,
    ip: &Ipv6Hdr,
    l4_off: usize,
) -> Result<Result<Key6<'a>, Verdict>, Truncated> {
    let icmp: *const IcmpHdr = ptr_at(ctx, l4_off)?;
    // SAFETY: bounds-checked packet memory.
    if unsafe { (*icmp).kind } != ICMPV6_PACKET_TOO_BIG {
        return Ok(Err(Verdict::pass(stats::PASS_NOT_VIP)));
    }
    let quoted_off = l4_off + ICMP_LEN;
    let quoted: *const Ipv6Hdr = ptr_at(ctx, quoted_off)?;
    // SAFETY: bounds-checked packet memory, valid while the program runs.
    let quoted: &'a Ipv6Hdr = unsafe { &*quoted };
    if u32::from_be(quoted.vtc_flow_be) >> 28 != 6 {
        return Ok(Err(Verdict::drop(stats::DROP_MALFORMED)));
    }
    let upper = quoted.next_header;
    if (upper != proto::TCP && upper != proto::UDP) || words(&quoted.src) != words(&ip.dst) {
        return Ok(Err(Verdict::pass(stats::PASS_NOT_VIP)));
    }
    let ports: *const PortsHdr = ptr_at(ctx, quoted_off + IPV6_LEN)?;
    // SAFETY: bounds-checked packet memory.
    let (vip_port_be, client_port_be) = unsafe { ((*ports).src_be, (*ports).dst_be) };
    Ok(Ok(Key6 {
        src: &quoted.dst,
        dst: &quoted.src,
        src_port_be: client_port_be,
        dst_port_be: vip_port_be,
        proto: upper,
    }))
}
