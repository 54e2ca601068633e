//! Backend selection: the flow table first, the VIP's Maglev ring for new
//! flows and for flows whose backend went away.
use aya_ebpf::maps::LruHashMap;
use lb_common::{BACKEND_FLAG_UP, Backend, FlowEntry, VipMeta, stats};

use crate::maps::{BACKENDS, RINGS, STATS, count, ring_size};

/// The backend a packet goes to.
pub struct Selected {
    pub id: u32,
    pub backend: &'static Backend,
    /// The packet started a flow (or moved one to a new backend).
    pub new_flow: bool,
}

/// Backend `id` if it is up and serves the VIP `vip_index`.
#[inline(always)]
fn usable(id: u32, vip_index: u32) -> Option<&'static Backend> {
    let backend = BACKENDS.get(id)?;
    if backend.flags & BACKEND_FLAG_UP != 0 && backend.vip_index == vip_index && id != 0 {
        Some(backend)
    } else {
        None
    }
}

/// The backend in ring slot `hash % RING_SIZE` of the VIP's active ring.
#[inline(always)]
pub fn from_ring(vip: &VipMeta, hash: u32) -> Option<Selected> {
    let size = ring_size();
    let slot = hash % size;
    let id = *RINGS.get(vip.ring_id * size + slot)?;
    let backend = usable(id, vip.vip_index)?;
    Some(Selected {
        id,
        backend,
        new_flow: true,
    })
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
) -> Option<Selected> {
    if let Some(entry) = flows.get_ptr(key) {
        // SAFETY: a value pointer from a successful lookup; the entry may be
        // evicted concurrently, in which case we read a stale id, which
        // `usable` validates like any other.
        let id = unsafe { (*entry).backend_id };
        if let Some(backend) = usable(id, vip.vip_index) {
            count(&STATS, stats::FLOW_HIT, 0);
            return Some(Selected {
                id,
                backend,
                new_flow: false,
            });
        }
        count(&STATS, stats::FLOW_REHASH, 0);
    } else {
        count(&STATS, stats::FLOW_MISS, 0);
    }
    let selected = from_ring(vip, hash)?;
    // An insert can only fail under memory pressure; the packet is still
    // forwarded and the next packet of the flow tries again.
    let _ = flows.insert(
        key,
        FlowEntry {
            backend_id: selected.id,
        },
        0,
    );
    Some(selected)
}
