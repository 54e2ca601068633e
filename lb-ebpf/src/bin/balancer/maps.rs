//! The balancer's maps. Sizes here are defaults; the daemon resizes them
//! at load time from its configuration.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use lb_common::{
    Backend, Counter, Flow4Key, Flow6Key, FlowEntry, Vip4Key, Vip6Key, VipCounter, VipMeta, limits,
    stats,
};

/// `BPF_F_NO_COMMON_LRU`: one LRU list per CPU, so flow-table inserts on
/// different CPUs never contend for a shared list lock.
const BPF_F_NO_COMMON_LRU: u32 = 1 << 1;

/// Virtual servers by (address, port, protocol, kind). Two entries per
/// virtual server at most: its own and the fragment entry of its address.
#[map]
pub static VIPS_V4: HashMap<Vip4Key, VipMeta> = HashMap::with_max_entries(2 * limits::MAX_VIPS, 0);
#[map]
pub static VIPS_V6: HashMap<Vip6Key, VipMeta> = HashMap::with_max_entries(2 * limits::MAX_VIPS, 0);

/// The Maglev rings of all VIPs, flat: slot `s` of ring `r` is entry
/// `r * RING_SIZE + s` and holds a backend id (0: empty).
#[map]
pub static RINGS: Array<u32> = Array::with_max_entries(2 * limits::MAX_VIPS * limits::RING_SIZE, 0);

/// Backends by id.
#[map]
pub static BACKENDS: Array<Backend> = Array::with_max_entries(limits::MAX_BACKENDS, 0);

/// Connection tables: the backend each flow is pinned to.
#[map]
pub static FLOWS_V4: LruHashMap<Flow4Key, FlowEntry> =
    LruHashMap::with_max_entries(limits::FLOW_TABLE_SIZE, BPF_F_NO_COMMON_LRU);
#[map]
pub static FLOWS_V6: LruHashMap<Flow6Key, FlowEntry> =
    LruHashMap::with_max_entries(limits::FLOW_TABLE_SIZE, BPF_F_NO_COMMON_LRU);

/// Verdict and event counters, indexed by `lb_common::stats`.
#[map]
pub static STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(stats::COUNT, 0);
/// Per-VIP counters, indexed by `VipMeta::vip_index`.
#[map]
pub static VIP_STATS: PerCpuArray<VipCounter> = PerCpuArray::with_max_entries(limits::MAX_VIPS, 0);
/// Per-backend counters, indexed by backend id.
#[map]
pub static BACKEND_STATS: PerCpuArray<Counter> =
    PerCpuArray::with_max_entries(limits::MAX_BACKENDS, 0);

/// Number of slots of one ring; set by the daemon at load time.
#[unsafe(no_mangle)]
static RING_SIZE: u32 = limits::RING_SIZE;
/// Base of the IPv4 tunnel sources; the low 16 bits come from the flow hash.
#[unsafe(no_mangle)]
static TUNNEL_SOURCE_V4: [u8; 4] = [172, 16, 0, 0];
/// Base of the IPv6 tunnel sources; the low 32 bits come from the flow hash.
#[unsafe(no_mangle)]
static TUNNEL_SOURCE_V6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

#[inline(always)]
pub fn ring_size() -> u32 {
    // SAFETY: a read of a plain static; volatile so that the value patched
    // into .rodata at load time is read instead of the default above.
    unsafe { core::ptr::read_volatile(&RING_SIZE) }
}

#[inline(always)]
pub fn tunnel_source_v4() -> [u8; 4] {
    // SAFETY: as in `ring_size`.
    unsafe { core::ptr::read_volatile(&TUNNEL_SOURCE_V4) }
}

#[inline(always)]
pub fn tunnel_source_v6() -> [u8; 16] {
    // SAFETY: as in `ring_size`.
    unsafe { core::ptr::read_volatile(&TUNNEL_SOURCE_V6) }
}

/// Adds one packet of `bytes` to counter `index` of a per-CPU array.
#[inline(always)]
pub fn count(map: &PerCpuArray<Counter>, index: u32, bytes: u64) {
    if let Some(counter) = map.get_ptr_mut(index) {
        // SAFETY: the pointer is this CPU's slot of the array, valid for
        // the whole program run; XDP does not preempt itself on one CPU.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += bytes;
        }
    }
}

/// Adds one packet (and `new_flow`) to the counters of VIP `vip_index`.
#[inline(always)]
pub fn count_vip(vip_index: u32, bytes: u64, new_flow: bool) {
    if let Some(counter) = VIP_STATS.get_ptr_mut(vip_index) {
        // SAFETY: as in `count`.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += bytes;
            (*counter).flows += new_flow as u64;
        }
    }
}
