//! Backend selection: the flow table first, the VIP's Maglev ring for new
//! flows and for flows whose backend went away.
use aya_ebpf::maps::LruHashMap;
use lb_common::{BACKEND_FLAG_UP, Backend, FlowEntry, VipMeta, stats};

use crate::maps::{BACKENDS, RINGS, STATS, count, ring_size};

/// The backend a packet goes to. Every field is always written (no
/// `Option` with an uninitialised payload): the verifier rejects a
/// program that copies uninitialised stack slots.
#[derive(Clone, Copy)]
pub struct Selected {
    /// Backend id; 0 when there is no usable backend.
    pub id: u32,
    /// The packet started a flow (or moved one to a new backend).
    pub new_flow: bool,
    /// The backend's entry; null when `id` is 0.
    pub backend: *const Backend,
}

impl Selected {
    pub const NONE: Self = Self {
        id: 0,
        new_flow: false,
        backend: core::ptr::null(),
    };
}

/// Backend `id` if it is up and serves the VIP `vip_index`.
#[inline(always)]
fn usable(id: u32, vip_index: u32) -> *const Backend {
    if id == 0 {
        return core::ptr::null();
    }
    match BACKENDS.get(id) {
        Some(backend) if backend.flags & BACKEND_FLAG_UP != 0 && backend.vip_index == vip_index => {
            backend
        }
        _ => core::ptr::null(),
    }
}

/// The backend in ring slot `hash % RING_SIZE` of the VIP's active ring.
#[inline(always)]
pub fn from_ring(vip: &VipMeta, hash: u32) -> Selected {
    let size = ring_size();
    // The daemon never loads a ring size of 0; checking keeps a division
    // by zero (and Rust's panic path for it) out of the program.
    let Some(slot) = hash.checked_rem(size) else {
        return Selected::NONE;
    };
    let Some(id) = RINGS.get(vip.ring_id * size + slot) else {
        return Selected::NONE;
    };
    let backend = usable(*id, vip.vip_index);
    if backend.is_null() {
        return Selected::NONE;
    }
    Selected {
        id: *id,
        new_flow: true,
        backend,
    }
}

/// The flow's backend from the flow table; a miss or a stale entry picks
/// from the ring and (re)writes the entry, so later packets of the flow
/// keep this backend even when the ring changes.
#[inline(always)]
pub fn for_flow<K>(
    flows: &LruHashMap<K, FlowEntry>,
    key: &K,
    vip: &VipMeta,
    hash: u32,
) -> Selected {
    if let Some(entry) = flows.get_ptr(key) {
        // SAFETY: a value pointer from a successful lookup; the entry may be
        // evicted concurrently, in which case we read a stale id, which
        // `usable` validates like any other.
        let id = unsafe { (*entry).backend_id };
        let backend = usable(id, vip.vip_index);
        if !backend.is_null() {
            count(&STATS, stats::FLOW_HIT, 0);
            return Selected {
                id,
                new_flow: false,
                backend,
            };
        }
        count(&STATS, stats::FLOW_REHASH, 0);
    } else {
        count(&STATS, stats::FLOW_MISS, 0);
    }
    let selected = from_ring(vip, hash);
    if selected.id != 0 {
        // An insert can only fail under memory pressure; the packet is
        // still forwarded and the next packet of the flow tries again.
        let _ = flows.insert(
            key,
            FlowEntry {
                backend_id: selected.id,
            },
            0,
        );
    }
    selected
}
