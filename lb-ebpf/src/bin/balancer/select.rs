//! Backend selection: the flow table first, the VIP's Maglev ring for new
//! flows and for flows whose backend went away.
//!
//! Every packet hashes its flow and reads the one cache line of the flow
//! table that may hold it (`lb_common::flow_table`). An established flow
//! then costs the read of its backend's entry: no VIP lookup. The backend
//! entry names the virtual server it serves, so the packet is checked
//! against it instead (`Flow::served_by`). A flow that is not in its set,
//! or whose backend is gone, takes the backend of its VIP's ring and is
//! written into the same line. A retransmitted SYN finds its flow like any
//! other packet, so it keeps the backend its first copy got.
use core::intrinsics::{AtomicOrdering, atomic_cxchg, atomic_xchg};

use aya_ebpf::helpers::generated::bpf_jiffies64;
use lb_common::{
    BACKEND_FLAG_UP, Backend, RING_BLOCK_SLOTS, VipMeta,
    flow_table::{Victim, Way, meta, meta_of, ports_of, ports_word, tail},
    ring_slot, stats,
};

use crate::maps::{BACKENDS, RINGS, ring_size};

/// No event to count (any index of `stats::COUNT` or more).
pub const NO_EVENT: u32 = stats::COUNT;

/// A flow's ports and protocol, as loaded from the packet.
#[derive(Clone, Copy)]
pub struct Ports {
    pub src_port_be: u16,
    pub dst_port_be: u16,
    pub proto: u8,
}

impl Ports {
    #[inline(always)]
    pub const fn new(src_port_be: u16, dst_port_be: u16, proto: u8) -> Self {
        Self {
            src_port_be,
            dst_port_be,
            proto,
        }
    }
}

/// A flow of one family: its key, and how it sits in that family's flow
/// table.
pub trait Flow {
    /// A way of this family's flow table.
    type Way: Way;
    /// Ways of a set.
    const WAYS: usize;
    /// The flow's ports and protocol.
    fn transport(&self) -> Ports;
    /// The backend's virtual server has this flow's destination address.
    fn to_address_of(&self, backend: &Backend) -> bool;
    /// The flow hash (`lb_common::flow_hash_v4` / `_v6`).
    fn hash(&self) -> u32;
    /// The flow's virtual server; `filter` holds the `VIP_FILTER` flags of
    /// the destination address.
    fn vip(&self, filter: u32) -> Option<&'static VipMeta>;
    /// The first way of the set of flow hash `hash`; null if the table has
    /// no such set.
    fn set(hash: u32) -> *mut Self::Way;
    /// `way` holds this flow's addresses.
    fn held_in(&self, way: *const Self::Way) -> bool;
    /// Writes this flow's addresses into `way`.
    fn write_to(&self, way: *mut Self::Way);

    /// `backend` serves the virtual server this flow is addressed to: its
    /// address, protocol and port (or all ports).
    #[inline(always)]
    fn served_by(&self, backend: &Backend) -> bool {
        let t = self.transport();
        self.to_address_of(backend)
            && backend.vip_proto == t.proto
            && (backend.vip_port_be == t.dst_port_be || backend.vip_port_be == 0)
    }

    /// The flow is UDP (else TCP).
    #[inline(always)]
    fn udp(&self) -> bool {
        self.transport().proto == lb_common::proto::UDP
    }

    /// The flow's ports as a way holds them (`flow_table::ports_word`).
    #[inline(always)]
    fn ports(&self) -> u32 {
        let t = self.transport();
        ports_word(t.src_port_be, t.dst_port_be)
    }
}

/// The tail of way `way` of the set at `set`.
#[inline(always)]
fn tail_of<W: Way>(set: *mut W, way: usize) -> *mut u64 {
    // SAFETY: callers pass `way` < the set's ways, so the way is inside
    // the set.
    unsafe { W::tail(set.add(way)) }
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
    /// The flow hash.
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
    let flat = vip.ring_id * size + ring_slot(hash, size);
    let Some(block) = RINGS.get(flat / RING_BLOCK_SLOTS as u32) else {
        return (0, core::ptr::null());
    };
    let id = block.slots[flat as usize % RING_BLOCK_SLOTS];
    let backend = up(id);
    // SAFETY: non-null pointers from `up` point into BACKENDS.
    if backend.is_null() || unsafe { (*backend).vip_index } != vip.vip_index {
        return (0, core::ptr::null());
    }
    (id, backend)
}

/// Reads the tail at `tail`: one aligned 64-bit load.
#[inline(always)]
fn read_tail(tail: *mut u64) -> u64 {
    // SAFETY: `tail` is an aligned word inside a flow-table set, which
    // lives as long as the program.
    unsafe { core::ptr::read_volatile(tail) }
}

/// Swaps the tail at `tail` from `old` to `new` if it still reads `old`
/// (BPF_CMPXCHG, fully ordered).
#[inline(always)]
fn swap_tail(tail: *mut u64, old: u64, new: u64) -> bool {
    // SAFETY: as in `read_tail`.
    unsafe {
        atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(tail, old, new)
            .1
    }
}

/// Stores `new` at `tail` after every earlier store (BPF_XCHG, fully
/// ordered): readers that see the tail also see the addresses written
/// before it.
#[inline(always)]
fn publish_tail(tail: *mut u64, new: u64) {
    // SAFETY: as in `read_tail`.
    unsafe { atomic_xchg::<u64, { AtomicOrdering::SeqCst }>(tail, new) };
}

/// What the flow's set holds for it.
struct Probe {
    /// The way holding the flow; `usize::MAX` if none does.
    found: usize,
    /// Its tail.
    found_tail: u64,
    /// The way a new entry would take; `usize::MAX` if every way is busy.
    victim: usize,
    /// Its tail, as read.
    victim_tail: u64,
}

impl Probe {
    const NONE: Self = Self {
        found: usize::MAX,
        found_tail: 0,
        victim: usize::MAX,
        victim_tail: 0,
    };
}

/// Reads the set at `set` for `key`. A way counts as holding the flow if
/// its tail names a backend, the flow's ports and protocol, and is the
/// same before and after the addresses are compared, so that a way
/// rewritten meanwhile is not believed.
#[inline(always)]
fn probe<K: Flow>(key: &K, set: *mut K::Way, now: u32) -> Probe {
    let mut seen = Probe::NONE;
    if set.is_null() {
        return seen;
    }
    let mut victim = Victim::NONE;
    let udp = if key.udp() { meta::UDP } else { 0 };
    let ports = key.ports();
    for way in 0..K::WAYS {
        let tail_ptr = tail_of(set, way);
        let t = read_tail(tail_ptr);
        let m = meta_of(t);
        if meta::backend(m) != 0
            && ports_of(t) == ports
            && m & meta::UDP == udp
            // SAFETY: `way` < K::WAYS, inside the set.
            && key.held_in(unsafe { set.add(way) })
            && read_tail(tail_ptr) == t
        {
            seen.found = way;
            seen.found_tail = t;
            break;
        }
        victim.consider(way, m, now);
        if victim.way == way {
            seen.victim = way;
            seen.victim_tail = t;
        }
    }
    seen
}

/// Writes `key` to `backend_id` at time stamp `now` into `way` of `set`,
/// whose tail read `seen`: claims the way by swapping `seen` for a busy
/// tail, so that of two CPUs writing one way only one does, then writes
/// the addresses and publishes the tail. Gives up if the way changed
/// since it was read.
#[inline(always)]
fn pin<K: Flow>(key: &K, set: *mut K::Way, way: usize, seen: u64, backend_id: u32, now: u32) {
    if set.is_null() || way >= K::WAYS {
        return;
    }
    let tail_ptr = tail_of(set, way);
    if !swap_tail(tail_ptr, seen, tail(0, meta::BUSY)) {
        return;
    }
    // SAFETY: `way` < K::WAYS, inside the set.
    key.write_to(unsafe { set.add(way) });
    let new_meta = meta::new(backend_id, key.udp(), now);
    publish_tail(tail_ptr, tail(key.ports(), new_meta));
}

/// The backend of an entry's meta word, if it is up and serves the flow's
/// virtual server; null otherwise.
#[inline(always)]
fn established<K: Flow>(key: &K, found_meta: u32) -> *const Backend {
    let backend = up(meta::backend(found_meta));
    // SAFETY: non-null pointers from `up` point into BACKENDS.
    if backend.is_null() || !key.served_by(unsafe { &*backend }) {
        return core::ptr::null();
    }
    backend
}

/// What the VIP's ring gives a flow.
#[derive(Clone, Copy)]
struct RingPick {
    /// The flow's virtual server exists.
    vip: bool,
    id: u32,
    /// Null when there is no virtual server or no usable backend.
    backend: *const Backend,
}

impl RingPick {
    const NOT_VIP: Self = Self {
        vip: false,
        id: 0,
        backend: core::ptr::null(),
    };
}

#[inline(always)]
fn ring_pick<K: Flow>(key: &K, filter: u32, hash: u32) -> RingPick {
    let Some(vip) = key.vip(filter) else {
        return RingPick::NOT_VIP;
    };
    let (id, backend) = from_ring(vip, hash);
    RingPick {
        vip: true,
        id,
        backend,
    }
}

/// The flow's backend: from the flow table if it has a usable entry, else
/// from the VIP's ring, pinning the flow to it so later packets keep this
/// backend even when the ring changes. `syn`: the packet opens a TCP
/// connection, so it is almost surely new; its ring slot is then read
/// before the flow table is, so that the two memory reads overlap instead
/// of one waiting for the other (the ring pick is dropped if the flow is
/// there after all, as for a retransmitted SYN).
#[inline(always)]
pub fn for_flow<K: Flow>(key: &K, filter: u32, syn: bool) -> Selected {
    let hash = key.hash();
    let set = K::set(hash);
    // SAFETY: a helper without arguments; the verifier inlines it.
    let now = meta::stamp(unsafe { bpf_jiffies64() });
    if syn {
        let pick = ring_pick(key, filter, hash);
        let probe = probe(key, set, now);
        match kept(key, set, &probe, hash, now) {
            Some(selected) => selected,
            None => pinned(key, set, &probe, pick, hash, now),
        }
    } else {
        let probe = probe(key, set, now);
        match kept(key, set, &probe, hash, now) {
            Some(selected) => selected,
            None => pinned(key, set, &probe, ring_pick(key, filter, hash), hash, now),
        }
    }
}

/// The flow's entry, if the set holds one with a usable backend; its time
/// stamp moves on to `now`.
#[inline(always)]
fn kept<K: Flow>(
    key: &K,
    set: *mut K::Way,
    probe: &Probe,
    hash: u32,
    now: u32,
) -> Option<Selected> {
    if probe.found >= K::WAYS {
        return None;
    }
    let found_meta = meta_of(probe.found_tail);
    let backend = established(key, found_meta);
    if backend.is_null() {
        return None;
    }
    if meta::stamp_of(found_meta) != now {
        let ptr = tail_of(set, probe.found);
        let restamped = tail(key.ports(), meta::restamped(found_meta, now));
        // Fails harmlessly if the way changed meanwhile.
        swap_tail(ptr, probe.found_tail, restamped);
    }
    Some(Selected {
        backend,
        id: meta::backend(found_meta),
        hash,
        event: stats::FLOW_HIT,
        new_flow: false,
        not_vip: false,
    })
}

/// The flow goes to the backend of its ring pick and is pinned to it: in
/// its own way if the set held it with a backend that went away (so that
/// a set never holds a flow twice), else in the set's victim.
#[inline(always)]
fn pinned<K: Flow>(
    key: &K,
    set: *mut K::Way,
    probe: &Probe,
    pick: RingPick,
    hash: u32,
    now: u32,
) -> Selected {
    let rehash = probe.found < K::WAYS;
    let event = if rehash {
        stats::FLOW_REHASH
    } else {
        stats::FLOW_MISS
    };
    if !pick.vip {
        return Selected::NOT_VIP;
    }
    if pick.backend.is_null() {
        return Selected {
            event,
            ..Selected::NO_BACKEND
        };
    }
    let (way, seen) = if rehash {
        (probe.found, probe.found_tail)
    } else {
        (probe.victim, probe.victim_tail)
    };
    pin(key, set, way, seen, pick.id, now);
    Selected {
        backend: pick.backend,
        id: pick.id,
        hash,
        event,
        new_flow: true,
        not_vip: false,
    }
}
