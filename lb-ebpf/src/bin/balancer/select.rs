//! Backend selection: the flow table first, the VIP's Maglev ring for new
//! flows and for flows whose backend went away.
//!
//! An established flow costs one flow-table lookup and the read of its
//! backend's entry: no VIP lookup, no hashing. The backend entry names
//! the virtual server it serves, so the packet is checked against it
//! instead (`Flow::served_by`). A TCP SYN starts a flow: it skips the
//! lookup and goes to the ring, and its insert refuses to overwrite an
//! entry (a retransmitted SYN keeps the backend its first copy got).
use aya_ebpf::maps::LruHashMap;
use lb_common::{BACKEND_FLAG_UP, Backend, FlowEntry, VipMeta, ring_slot, stats};

use crate::maps::{BACKENDS, RINGS, ring_size};

/// `bpf_map_update_elem` flags (linux/bpf.h).
const BPF_ANY: u64 = 0;
const BPF_NOEXIST: u64 = 1;

/// No event to count (any index of `stats::COUNT` or more).
pub const NO_EVENT: u32 = stats::COUNT;

/// A flow-table key of one family and what selection needs from it.
pub trait Flow {
    /// `backend` serves the virtual server this flow is addressed to.
    fn served_by(&self, backend: &Backend) -> bool;
    /// The flow hash (`lb_common::flow_hash_v4` / `_v6`).
    fn hash(&self) -> u32;
    /// The flow's virtual server; `filter` holds the `VIP_FILTER` flags of
    /// the destination address.
    fn vip(&self, filter: u32) -> Option<&'static VipMeta>;
}

/// Where a packet goes. Every field is always written (no `Option` with
/// an uninitialised payload): the verifier rejects a program that copies
/// uninitialised stack slots.
#[derive(Clone, Copy)]
pub struct Selected {
    /// The backend's entry; null when there is none (see `not_vip`).
    pub backend: *const Backend,
    /// Backend id; 0 when `backend` is null.
    pub id: u32,
    /// The flow hash (from the flow entry, or computed for a new flow).
    pub hash: u32,
    /// `stats::FLOW_HIT`, `FLOW_MISS` or `FLOW_REHASH`; [`NO_EVENT`] for
    /// packets that did not go through the flow table.
    pub event: u32,
    /// The packet started a flow (or moved one to a new backend).
    pub new_flow: bool,
    /// No virtual server matched (else, with a null `backend`: it has no
    /// usable backend).
    pub not_vip: bool,
}

impl Selected {
    pub const NOT_VIP: Self = Self {
        backend: core::ptr::null(),
        id: 0,
        hash: 0,
        event: NO_EVENT,
        new_flow: false,
        not_vip: true,
    };
    pub const NO_BACKEND: Self = Self {
        not_vip: false,
        ..Self::NOT_VIP
    };
}

/// Backend `id` if it is up.
#[inline(always)]
fn up(id: u32) -> *const Backend {
    match BACKENDS.get(id) {
        Some(backend) if backend.flags & BACKEND_FLAG_UP != 0 => backend,
        _ => core::ptr::null(),
    }
}

/// The backend in ring slot `ring_slot(hash, RING_SIZE)` of the VIP's
/// active ring, with its id; null if the slot is empty or the backend is
/// not usable.
#[inline(always)]
pub fn from_ring(vip: &VipMeta, hash: u32) -> (u32, *const Backend) {
    let size = ring_size();
    let slot = ring_slot(hash, size);
    let Some(id) = RINGS.get(vip.ring_id * size + slot) else {
        return (0, core::ptr::null());
    };
    let id = *id;
    let backend = up(id);
    // SAFETY: non-null pointers from `up` point into BACKENDS.
    if backend.is_null() || unsafe { (*backend).vip_index } != vip.vip_index {
        return (0, core::ptr::null());
    }
    (id, backend)
}

/// The backend of an existing entry, if it is up and serves the flow's
/// virtual server.
#[inline(always)]
fn established<K: Flow>(key: &K, entry: *const FlowEntry) -> Selected {
    // SAFETY: a value pointer from a successful lookup. The entry may be
    // evicted and reused concurrently; then we read another flow's id,
    // which the checks below validate like any other.
    let (id, hash) = unsafe { ((*entry).backend_id, (*entry).hash) };
    let backend = up(id);
    // SAFETY: non-null pointers from `up` point into BACKENDS.
    if backend.is_null() || !key.served_by(unsafe { &*backend }) {
        return Selected::NO_BACKEND;
    }
    Selected {
        backend,
        id,
        hash,
        event: stats::FLOW_HIT,
        new_flow: false,
        not_vip: false,
    }
}

/// The flow's backend: from the flow table if it has a usable entry, else
/// from the VIP's ring, pinning the flow to it so later packets keep this
/// backend even when the ring changes. `syn`: the packet opens a TCP
/// connection.
#[inline(always)]
pub fn for_flow<K: Flow>(
    flows: &LruHashMap<K, FlowEntry>,
    key: &K,
    filter: u32,
    syn: bool,
) -> Selected {
    let mut event = stats::FLOW_MISS;
    if !syn {
        if let Some(entry) = flows.get_ptr(key) {
            let found = established(key, entry);
            if !found.backend.is_null() {
                return found;
            }
            event = stats::FLOW_REHASH;
        }
    }
    let Some(vip) = key.vip(filter) else {
        return Selected::NOT_VIP;
    };
    let hash = key.hash();
    let (id, backend) = from_ring(vip, hash);
    if backend.is_null() {
        return Selected {
            event,
            ..Selected::NO_BACKEND
        };
    }
    let entry = FlowEntry {
        backend_id: id,
        hash,
    };
    // An insert fails under memory pressure only (or, with BPF_NOEXIST,
    // when the entry exists); the packet is still forwarded and the next
    // packet of the flow tries again.
    if syn && flows.insert(key, &entry, BPF_NOEXIST).is_err() {
        if let Some(existing) = flows.get_ptr(key) {
            let found = established(key, existing);
            if !found.backend.is_null() {
                return found;
            }
            event = stats::FLOW_REHASH;
        }
        let _ = flows.insert(key, &entry, BPF_ANY);
    } else if !syn {
        let _ = flows.insert(key, &entry, BPF_ANY);
    }
    Selected {
        backend,
        id,
        hash,
        event,
        new_flow: true,
        not_vip: false,
    }
}
