//! The balancer's maps. Sizes here are defaults; the daemon resizes them
//! at load time from its configuration.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use lb_common::{
    Backend, MAP_F_MMAPABLE, RingBlock, Stats, Traffic, Vip4Key, Vip6Key, VipMeta,
    flow_table::{self, Set4, Set6, WAYS_V4, WAYS_V6},
    limits, ring_blocks,
};

/// Virtual servers by (address, port, protocol, kind). Two entries per
/// virtual server at most: its own and the fragment entry of its address.
#[map]
pub static VIPS_V4: HashMap<Vip4Key, VipMeta> = HashMap::with_max_entries(2 * limits::MAX_VIPS, 0);
#[map]
pub static VIPS_V6: HashMap<Vip6Key, VipMeta> = HashMap::with_max_entries(2 * limits::MAX_VIPS, 0);

/// Which destination addresses may be VIPs: `lb_common::VIP_FILTER_*`
/// flags by `vip_filter_slot_v4/v6` of the address. Every packet reads
/// one slot; most traffic that is not for a VIP stops there.
#[map]
pub static VIP_FILTER: Array<u32> = Array::with_max_entries(limits::VIP_FILTER_SLOTS, 0);

/// The Maglev rings of all VIPs, flat: slot `s` of ring `r` is flat slot
/// `r * RING_SIZE + s`, in element `flat / RING_BLOCK_SLOTS`, and holds a
/// backend id (0: empty).
#[map]
pub static RINGS: Array<RingBlock> = Array::with_max_entries(
    ring_blocks(2 * limits::MAX_VIPS * limits::RING_SIZE),
    MAP_F_MMAPABLE,
);

/// Backends by id.
#[map]
pub static BACKENDS: Array<Backend> = Array::with_max_entries(limits::MAX_BACKENDS, 0);

/// Flow tables: the backend each flow is pinned to, in sets of one cache
/// line (`lb_common::flow_table`). Mappable so that the kernel places the
/// values on a page boundary: each set is then exactly one cache line.
const FLOW_SETS_V4: u32 = flow_table::sets(limits::FLOW_TABLE_SIZE, WAYS_V4);
const FLOW_SETS_V6: u32 = flow_table::sets(limits::FLOW_TABLE_SIZE, WAYS_V6);
#[map]
pub static FLOWS_V4: Array<Set4> = Array::with_max_entries(FLOW_SETS_V4, MAP_F_MMAPABLE);
#[map]
pub static FLOWS_V6: Array<Set6> = Array::with_max_entries(FLOW_SETS_V6, MAP_F_MMAPABLE);

/// Verdict and event counters: one per-CPU value holding all of them,
/// indexed by `lb_common::stats`.
#[map]
pub static STATS: PerCpuArray<Stats> = PerCpuArray::with_max_entries(1, 0);
/// Traffic forwarded to each backend, indexed by backend id: the one
/// counter a forwarded packet updates. The entries past the backends' hold
/// what backends that left each virtual server had; only the daemon writes
/// those (a virtual server's traffic is that plus its backends').
#[map]
pub static TRAFFIC: PerCpuArray<Traffic> =
    PerCpuArray::with_max_entries(limits::MAX_BACKENDS + limits::MAX_VIPS, 0);

/// Number of slots of one ring; set by the daemon at load time.
#[unsafe(no_mangle)]
static RING_SIZE: u32 = limits::RING_SIZE;
/// `sets - 1` of each flow table; set by the daemon at load time with the
/// tables' sizes.
#[unsafe(no_mangle)]
static FLOW_SET_MASK_V4: u32 = FLOW_SETS_V4 - 1;
#[unsafe(no_mangle)]
static FLOW_SET_MASK_V6: u32 = FLOW_SETS_V6 - 1;
/// Base of the IPv4 tunnel sources; the low 16 bits come from the flow hash.
/// Declared as words in memory order (the daemon writes the 4 address
/// bytes) so that it is read with one aligned load.
#[unsafe(no_mangle)]
static TUNNEL_SOURCE_V4: [u16; 2] = [u16::from_le_bytes([172, 16]), 0];
/// Base of the IPv6 tunnel sources; the low 32 bits come from the flow hash.
/// Declared as words (the daemon writes the 16 address bytes) so that it is
/// read with three loads.
#[unsafe(no_mangle)]
static TUNNEL_SOURCE_V6: [u32; 4] = [u32::from_le_bytes([0xfd, 0, 0, 0]), 0, 0, 0];

#[inline(always)]
pub fn ring_size() -> u32 {
    // SAFETY: a read of a plain static; volatile so that the value patched
    // into .rodata at load time is read instead of the default above.
    unsafe { core::ptr::read_volatile(&RING_SIZE) }
}

/// The IPv4 flow table's set mask.
#[inline(always)]
pub fn flow_set_mask_v4() -> u32 {
    // SAFETY: as in `ring_size`.
    unsafe { core::ptr::read_volatile(&FLOW_SET_MASK_V4) }
}

/// The IPv6 flow table's set mask.
#[inline(always)]
pub fn flow_set_mask_v6() -> u32 {
    // SAFETY: as in `ring_size`.
    unsafe { core::ptr::read_volatile(&FLOW_SET_MASK_V6) }
}

/// The IPv4 tunnel source base, as its first two bytes in memory order.
#[inline(always)]
pub fn tunnel_source_v4_prefix() -> u16 {
    // SAFETY: as in `ring_size`.
    unsafe { core::ptr::read_volatile(&TUNNEL_SOURCE_V4[0]) }
}

/// The first 12 bytes of the IPv6 tunnel source base, as three words in
/// memory order.
#[inline(always)]
pub fn tunnel_source_v6_prefix() -> [u32; 3] {
    let base = TUNNEL_SOURCE_V6.as_ptr();
    // SAFETY: as in `ring_size`; three words inside the static.
    unsafe {
        [
            core::ptr::read_volatile(base),
            core::ptr::read_volatile(base.add(1)),
            core::ptr::read_volatile(base.add(2)),
        ]
    }
}

/// The flags of the `VIP_FILTER` slot `slot` (0 when out of range).
#[inline(always)]
pub fn vip_filter(slot: u32) -> u32 {
    match VIP_FILTER.get(slot) {
        Some(flags) => *flags,
        None => 0,
    }
}

/// Adds one packet of `bytes` (and `new_flow`) to the traffic of backend
/// `id`.
#[inline(always)]
pub fn count_backend(id: u32, bytes: u64, new_flow: bool) {
    if let Some(counter) = TRAFFIC.get_ptr_mut(id) {
        // SAFETY: the pointer is this CPU's slot of the array, valid for
        // the whole program run; XDP does not preempt itself on one CPU.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += bytes;
            (*counter).flows += new_flow as u64;
        }
    }
}

/// Counts a packet's verdict (packets and bytes) and up to two events
/// (packets; an index of `stats::COUNT` or more counts nothing), through a
/// single lookup of this CPU's `STATS` value.
#[inline(always)]
pub fn count_stats(verdict: u32, bytes: u64, event: u32, extra_event: u32) {
    let Some(stats) = STATS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's value, as in `count_backend`.
    let counters = unsafe { &mut (*stats).counters };
    if let Some(counter) = counters.get_mut(verdict as usize) {
        counter.packets += 1;
        counter.bytes += bytes;
    }
    if let Some(counter) = counters.get_mut(event as usize) {
        counter.packets += 1;
    }
    if let Some(counter) = counters.get_mut(extra_event as usize) {
        counter.packets += 1;
    }
}
