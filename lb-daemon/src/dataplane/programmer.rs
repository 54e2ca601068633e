//! Turns virtual servers and their backends into the balancer's map
//! entries: VIP entries, backend slots and Maglev rings.
//!
//! Ring swaps are atomic: each VIP owns two rings; a change is written into
//! the inactive one (see [`MapWriter::write_ring`]) and then the VIP entry
//! is replaced with one naming it, in one map update. A packet sees either
//! the whole old ring or the whole new one.
//!
//! Order of writes on a change: new backends first, then the ring, then the
//! VIP entry, and only then are removed backends marked down, so no packet
//! is ever pointed at a backend slot that is not yet, or no longer, valid.
use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    net::IpAddr,
};

use lb_common::{
    BACKEND_FLAG_DRAINED, BACKEND_FLAG_DSR, BACKEND_FLAG_UP, Backend, FAMILY_V4, FAMILY_V6,
    Traffic, VIP_FILTER_ANY_PORT, VIP_FILTER_PORT, VIP_FLAG_DSR, VIP_KIND_FRAGMENT, VIP_KIND_PORT,
    Vip4Key, Vip6Key, VipMeta, vip_filter_slot_v4, vip_filter_slot_v6,
};

use super::{
    Error, Result,
    builds::Builds,
    maps::{Contents, Counters, MapWriter, VipKey},
};
use crate::maglev;

/// How packets reach the backends of a virtual server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forwarding {
    /// IP-in-IP or IPv6 tunnel to the backend (any L3 path).
    Tunnel,
    /// Destination MAC rewritten to the backend's (same L2 segment).
    Dsr,
}

impl Forwarding {
    /// The name the configuration uses (and status shows).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tunnel => "tunnel",
            Self::Dsr => "dsr",
        }
    }
}

/// A virtual server as the data plane sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VipId {
    pub address: IpAddr,
    /// 0: all ports.
    pub port: u16,
    /// IP protocol number (TCP or UDP).
    pub protocol: u8,
}

/// A virtual server: where it listens and how it forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VipSpec {
    pub id: VipId,
    pub forwarding: Forwarding,
}

/// A backend of a virtual server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendSpec {
    pub address: IpAddr,
    /// Ethernet destination towards it (itself in dsr mode, the next hop
    /// in tunnel mode).
    pub mac: [u8; 6],
    /// Maglev weight; 0 drains: no new flows, established flows stay.
    pub weight: u32,
    /// Health: a backend that is down gets no packets, and its flows move.
    pub up: bool,
    /// An operator drained it: recorded in its map entry, for a restarted
    /// daemon (the weight says what the data plane does).
    pub drained: bool,
}

/// Sizes of the maps the programmer writes into.
#[derive(Clone, Copy, Debug)]
pub struct Capacity {
    pub ring_size: u32,
    pub max_vips: u32,
    pub max_backends: u32,
}

struct VipState {
    spec: VipSpec,
    index: u32,
    /// Which of the VIP's two rings (0 or 1) the VIP entry names.
    active: u32,
    /// Its backends with their ids, sorted by address.
    backends: Vec<(u32, BackendSpec)>,
    /// Whether the active ring is the table of `backends` (not known
    /// after adoption, until the next `set`).
    ring_known: bool,
}

impl VipState {
    /// Where the backend `address` is in `backends`.
    fn position(&self, address: &IpAddr) -> Result<usize, usize> {
        self.backends
            .binary_search_by_key(address, |(_, backend)| backend.address)
    }

    /// The Maglev members of its ring: the backends that are up.
    fn members(&self) -> Vec<maglev::Member> {
        self.backends
            .iter()
            .filter(|(_, b)| b.up)
            .map(|(id, b)| maglev::Member {
                id: *id,
                key: maglev::key_of(&b.address),
                weight: b.weight,
            })
            .collect()
    }
}

/// One `VIP_FILTER` slot: how many virtual servers have an address that
/// hashes to it, and what it holds, so that its flags are known without
/// looking at every virtual server.
#[derive(Clone, Copy, Debug, Default)]
struct FilterSlot {
    /// Virtual servers of one port.
    port: u32,
    /// Virtual servers of all ports (port 0).
    any_port: u32,
    /// The flags written into the slot (0: never written).
    written: u32,
}

impl FilterSlot {
    /// The flags the slot should hold.
    fn flags(&self) -> u32 {
        let port = if self.port > 0 { VIP_FILTER_PORT } else { 0 };
        let any_port = if self.any_port > 0 {
            VIP_FILTER_ANY_PORT
        } else {
            0
        };
        port | any_port
    }

    /// The count virtual server `id` belongs to.
    fn count_of(&mut self, id: &VipId) -> &mut u32 {
        if id.port == 0 {
            &mut self.any_port
        } else {
            &mut self.port
        }
    }

    /// Whether no virtual server hashes to it and it holds nothing.
    fn is_empty(&self) -> bool {
        self.port == 0 && self.any_port == 0 && self.written == 0
    }
}

/// Programs virtual servers into a [`MapWriter`].
pub struct Programmer<M> {
    maps: M,
    capacity: Capacity,
    vips: BTreeMap<VipId, VipState>,
    free_vip_indices: VecDeque<u32>,
    /// Backend ids are reused as late as possible (FIFO), id 0 never.
    free_backend_ids: VecDeque<u32>,
    /// The `VIP_FILTER` slots of the virtual servers' addresses and the
    /// slots that hold flags (absent: no virtual server, holds 0).
    filter: HashMap<u32, FilterSlot>,
    /// Builds the tables of [`Self::set`], into `table`.
    builder: maglev::Builder,
    table: Vec<u32>,
}

impl<M: MapWriter> Programmer<M> {
    pub fn new(maps: M, capacity: Capacity) -> Self {
        Self {
            maps,
            capacity,
            vips: BTreeMap::new(),
            free_vip_indices: (0..capacity.max_vips).collect(),
            free_backend_ids: (1..capacity.max_backends).collect(),
            filter: HashMap::new(),
            builder: maglev::Builder::default(),
            table: Vec::new(),
        }
    }

    /// Takes over maps that a previous daemon programmed (`contents` read
    /// from them): the virtual servers keep their indices, rings and
    /// backend ids, so that programming the same configuration again
    /// changes nothing a packet could see and established flows keep
    /// their backends. Backend weights are not stored in the maps: the
    /// next [`Self::set`] supplies them. Entries that do not fit
    /// `capacity` are left out (the next `set` or `remove` rewrites them).
    pub fn adopt(maps: M, capacity: Capacity, contents: &Contents) -> Self {
        let mut programmer = Self::new(maps, capacity);
        let mut backends_of: HashMap<u32, Vec<(u32, BackendSpec)>> = HashMap::new();
        for (id, backend) in &contents.backends {
            if *id != 0
                && *id < capacity.max_backends
                && let Some(spec) = backend_spec(backend)
            {
                backends_of
                    .entry(backend.vip_index)
                    .or_default()
                    .push((*id, spec));
            }
        }
        for (key, meta) in &contents.vips {
            let Some(id) = vip_id(key) else { continue };
            let index = meta.vip_index;
            let active = meta.ring_id.wrapping_sub(2 * index);
            if index >= capacity.max_vips || active > 1 {
                continue;
            }
            let spec = VipSpec {
                id,
                forwarding: if meta.flags & VIP_FLAG_DSR != 0 {
                    Forwarding::Dsr
                } else {
                    Forwarding::Tunnel
                },
            };
            // By address; of two slots with one address, the later counts.
            let mut backends = backends_of.remove(&index).unwrap_or_default();
            backends.reverse();
            backends.sort_by_key(|(_, b)| b.address);
            backends.dedup_by_key(|(_, b)| b.address);
            programmer.free_vip_indices.retain(|i| *i != index);
            programmer.vips.insert(
                id,
                VipState {
                    spec,
                    index,
                    active,
                    backends,
                    ring_known: false,
                },
            );
        }
        let used: std::collections::HashSet<u32> = programmer
            .vips
            .values()
            .flat_map(|v| v.backends.iter().map(|(id, _)| *id))
            .collect();
        programmer.free_backend_ids.retain(|id| !used.contains(id));
        // The previous daemon wrote the filter of these virtual servers.
        let ids: Vec<VipId> = programmer.vips.keys().copied().collect();
        for id in &ids {
            programmer.count_in_filter(id, true);
        }
        for slot in programmer.filter.values_mut() {
            slot.written = slot.flags();
        }
        programmer
    }

    /// Gives the maps back.
    pub fn into_maps(self) -> M {
        self.maps
    }

    pub fn maps(&self) -> &M {
        &self.maps
    }

    pub fn capacity(&self) -> Capacity {
        self.capacity
    }

    /// Adds or updates a virtual server with exactly these backends.
    pub fn set(&mut self, spec: VipSpec, backends: &[BackendSpec]) -> Result<()> {
        let staged = self.stage(spec, backends)?;
        let mut table = std::mem::take(&mut self.table);
        self.builder
            .build_into(&staged.members, self.capacity.ring_size, &mut table);
        let committed = self.commit(staged, &table);
        self.table = table;
        committed
    }

    /// [`Self::set`] for many virtual servers: their Maglev tables are
    /// built on every core (see `builds.rs`) while this thread switches
    /// each virtual server as `set` does, one after the other. On an
    /// error the virtual servers before the failing one are programmed.
    pub fn set_many(&mut self, items: &[(VipSpec, Vec<BackendSpec>)]) -> Result<()> {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        if workers < 2 || items.len() < 2 {
            return items
                .iter()
                .try_for_each(|(spec, backends)| self.set(*spec, backends));
        }
        let size = self.capacity.ring_size;
        std::thread::scope(|scope| {
            let mut builds = Builds::start(scope, workers, size);
            let mut items = items.iter();
            let mut failed = None;
            loop {
                while failed.is_none() && builds.has_room() {
                    let Some((spec, backends)) = items.next() else {
                        break;
                    };
                    match self.stage(*spec, backends) {
                        Ok(staged) => builds.submit(staged),
                        Err(error) => failed = Some(error),
                    }
                }
                let Some((staged, table)) = builds.next() else {
                    return failed.map_or(Ok(()), Err);
                };
                self.commit(staged, &table)?;
                builds.recycle(table);
            }
        })
    }

    /// Step 1 of a change: the VIP's index and its new and changed
    /// backend slots are written; returns the Maglev members of the new ring.
    fn stage(&mut self, spec: VipSpec, backends: &[BackendSpec]) -> Result<Staged> {
        check(&spec, backends)?;
        if !self.vips.contains_key(&spec.id) {
            let index = self
                .free_vip_indices
                .pop_front()
                .ok_or(Error::Full("virtual server"))?;
            self.vips.insert(
                spec.id,
                VipState {
                    spec,
                    index,
                    active: 0,
                    backends: Vec::new(),
                    ring_known: false,
                },
            );
            // The filter lets the address's packets through before its VIP
            // entry exists (and `remove` clears it only after the entry
            // went); a VIP already programmed has its filter.
            self.count_in_filter(&spec.id, true);
            self.update_filter(spec.id.address)?;
        }
        let Self {
            maps,
            vips,
            free_backend_ids,
            ..
        } = self;
        let vip = vips
            .get_mut(&spec.id)
            .ok_or(Error::Missing("virtual server"))?;
        // Backend entries carry the forwarding mode: all are rewritten
        // when it changes.
        let mode_changed = vip.spec.forwarding != spec.forwarding;
        vip.spec = spec;

        let mut removed: Vec<u32> = Vec::new();
        let wanted: BTreeMap<IpAddr, BackendSpec> =
            backends.iter().map(|b| (b.address, *b)).collect();
        vip.backends.retain(|(id, backend)| {
            let keep = wanted.contains_key(&backend.address);
            if !keep {
                removed.push(*id);
            }
            keep
        });
        for (address, backend) in &wanted {
            let position = vip.position(address);
            let entry = backend_entry(backend, vip.index, &spec);
            let id = match position {
                Ok(i) => {
                    let (id, old) = vip.backends[i];
                    // The entry holds no weight: a re-weighted backend (or
                    // an adopted one, whose weight the maps do not hold)
                    // keeps its entry, and only the ring changes.
                    if !mode_changed && backend_entry(&old, vip.index, &spec) == entry {
                        vip.backends[i] = (id, *backend);
                        continue;
                    }
                    id
                }
                Err(_) => free_backend_ids.pop_front().ok_or(Error::Full("backend"))?,
            };
            maps.set_backend(id, entry)?;
            match position {
                Ok(i) => vip.backends[i] = (id, *backend),
                Err(i) => vip.backends.insert(i, (id, *backend)),
            }
        }
        Ok(Staged {
            id: spec.id,
            members: vip.members(),
            removed,
        })
    }

    /// Steps 2 to 4: `table` into the inactive ring, the VIP entry flipped
    /// to it, then the backends that left marked down (their flows
    /// re-hash) and their ids recycled.
    fn commit(&mut self, staged: Staged, table: &[u32]) -> Result<()> {
        let Self {
            maps,
            vips,
            free_backend_ids,
            capacity,
            ..
        } = self;
        let vip = vips
            .get_mut(&staged.id)
            .ok_or(Error::Missing("virtual server"))?;
        let next = 1 - vip.active;
        let ring_id = 2 * vip.index + next;
        maps.write_ring(ring_id * capacity.ring_size, table)?;
        vip.ring_known = true;
        maps.set_vip(
            vip_key(&staged.id, VIP_KIND_PORT),
            meta(vip.index, ring_id, &vip.spec),
        )?;
        vip.active = next;
        for id in &staged.removed {
            maps.set_backend(*id, Backend::default())?;
        }
        maps.retire_backend_traffic(&staged.removed, vip.index)?;
        free_backend_ids.extend(staged.removed);
        self.update_fragment_entry(staged.id.address, staged.id.protocol)
    }

    /// Removes a virtual server: its entry first, then its backends; its
    /// counters and its backends' are zeroed for whoever reuses them.
    pub fn remove(&mut self, id: &VipId) -> Result<()> {
        let Some(vip) = self.vips.remove(id) else {
            return Ok(());
        };
        self.maps.remove_vip(vip_key(id, VIP_KIND_PORT))?;
        self.update_fragment_entry(id.address, id.protocol)?;
        self.count_in_filter(id, false);
        self.update_filter(id.address)?;
        for (backend_id, _) in &vip.backends {
            self.maps.set_backend(*backend_id, Backend::default())?;
            self.maps.clear_backend_traffic(*backend_id)?;
            self.free_backend_ids.push_back(*backend_id);
        }
        self.maps.clear_vip_traffic(vip.index)?;
        self.free_vip_indices.push_back(vip.index);
        Ok(())
    }

    /// The virtual servers currently programmed.
    pub fn vips(&self) -> impl Iterator<Item = &VipId> {
        self.vips.keys()
    }

    /// The whole traffic of virtual server `id` in `counters`: that of its
    /// backends and of the backends that left it.
    pub fn vip_traffic(&self, id: &VipId, counters: &Counters) -> Traffic {
        let Some(vip) = self.vips.get(id) else {
            return Traffic::default();
        };
        let own = counters.vips.get(vip.index as usize).copied();
        vip.backends
            .iter()
            .filter_map(|(backend, _)| counters.backends.get(*backend as usize).copied())
            .fold(own.unwrap_or_default(), Traffic::plus)
    }

    /// The VIP's index.
    pub fn vip_index(&self, id: &VipId) -> Option<u32> {
        self.vips.get(id).map(|v| v.index)
    }

    /// Backend `address` of virtual server `id`: its id and spec.
    fn backend(&self, id: &VipId, address: &IpAddr) -> Option<&(u32, BackendSpec)> {
        let vip = self.vips.get(id)?;
        let i = vip.position(address).ok()?;
        Some(&vip.backends[i])
    }

    /// Whether backend `address` of `id` is marked drained in its map entry
    /// (for an adopted program: by the daemon before this one).
    pub fn drained(&self, id: &VipId, address: &IpAddr) -> bool {
        self.backend(id, address)
            .is_some_and(|(_, spec)| spec.drained)
    }

    /// The backend id of `address` in virtual server `id`.
    pub fn backend_id(&self, id: &VipId, address: &IpAddr) -> Option<u32> {
        self.backend(id, address).map(|(backend, _)| *backend)
    }

    /// The VIP's active ring: backend ids by slot (built again from its
    /// backends; `None` for an adopted VIP not set since).
    pub fn ring(&self, id: &VipId) -> Option<Vec<u32>> {
        let vip = self.vips.get(id)?;
        vip.ring_known
            .then(|| maglev::build(&vip.members(), self.capacity.ring_size))
    }

    /// Counts virtual server `id` in (`added`) or out of the `VIP_FILTER`
    /// slot of its address; [`Self::update_filter`] writes the slot.
    fn count_in_filter(&mut self, id: &VipId, added: bool) {
        let slot = self.filter.entry(filter_slot(id.address)).or_default();
        let count = slot.count_of(id);
        *count = if added {
            count.saturating_add(1)
        } else {
            count.saturating_sub(1)
        };
    }

    /// Rewrites the `VIP_FILTER` slot of `address` if the virtual servers
    /// hashing to it changed, and forgets it once no virtual server
    /// hashes to it and it holds 0.
    fn update_filter(&mut self, address: IpAddr) -> Result<()> {
        let key = filter_slot(address);
        let slot = self.filter.entry(key).or_default();
        let flags = slot.flags();
        if slot.written != flags {
            self.maps.set_filter_slot(key, flags)?;
            slot.written = flags;
        }
        if slot.is_empty() {
            self.filter.remove(&key);
        }
        Ok(())
    }

    /// Points the fragment entry of (address, protocol) at the port-0
    /// virtual server of that address, or else at the one with the lowest
    /// port (see `lb_common::VIP_KIND_FRAGMENT`), or removes it.
    fn update_fragment_entry(&mut self, address: IpAddr, protocol: u8) -> Result<()> {
        let key_id = VipId {
            address,
            port: 0,
            protocol: 0,
        };
        // The virtual servers of this address, by port.
        let last = VipId {
            port: u16::MAX,
            protocol: u8::MAX,
            ..key_id
        };
        let first = self
            .vips
            .range(key_id..=last)
            .map(|(_, v)| v)
            .find(|v| v.spec.id.protocol == protocol);
        let key_id = VipId { protocol, ..key_id };
        let key = vip_key(&key_id, VIP_KIND_FRAGMENT);
        match first {
            Some(vip) => {
                let ring_id = 2 * vip.index + vip.active;
                self.maps.set_vip(key, meta(vip.index, ring_id, &vip.spec))
            }
            None => self.maps.remove_vip(key),
        }
    }
}

/// A change between [`Programmer::stage`] and [`Programmer::commit`].
struct Staged {
    id: VipId,
    members: Vec<maglev::Member>,
    /// Backend ids that left the virtual server.
    removed: Vec<u32>,
}

impl AsRef<[maglev::Member]> for Staged {
    fn as_ref(&self) -> &[maglev::Member] {
        &self.members
    }
}

/// Rejects combinations the data plane cannot forward.
fn check(spec: &VipSpec, backends: &[BackendSpec]) -> Result<()> {
    for backend in backends {
        if spec.forwarding == Forwarding::Dsr
            && backend.address.is_ipv4() != spec.id.address.is_ipv4()
        {
            return Err(Error::Invalid(format!(
                "dsr virtual server {} cannot forward to {}: the families differ",
                spec.id.address, backend.address
            )));
        }
    }
    Ok(())
}

/// The virtual server of a VIP entry; `None` for fragment entries.
fn vip_id(key: &VipKey) -> Option<VipId> {
    let (address, port_be, protocol, kind) = match key {
        VipKey::V4(k) => (IpAddr::from(k.addr), k.port_be, k.proto, k.kind),
        VipKey::V6(k) => (IpAddr::from(k.addr), k.port_be, k.proto, k.kind),
    };
    (kind == VIP_KIND_PORT).then_some(VipId {
        address,
        port: u16::from_be(port_be),
        protocol,
    })
}

/// A backend as read back from its slot (weight unknown: 0).
fn backend_spec(backend: &Backend) -> Option<BackendSpec> {
    let address = match backend.family {
        FAMILY_V4 => IpAddr::from([
            backend.addr[0],
            backend.addr[1],
            backend.addr[2],
            backend.addr[3],
        ]),
        FAMILY_V6 => IpAddr::from(backend.addr),
        _ => return None,
    };
    Some(BackendSpec {
        address,
        mac: backend.mac,
        weight: 0,
        up: backend.flags & BACKEND_FLAG_UP != 0,
        drained: backend.flags & BACKEND_FLAG_DRAINED != 0,
    })
}

fn vip_key(id: &VipId, kind: u8) -> VipKey {
    let port_be = id.port.to_be();
    match id.address {
        IpAddr::V4(a) => VipKey::V4(Vip4Key {
            addr: a.octets(),
            port_be,
            proto: id.protocol,
            kind,
        }),
        IpAddr::V6(a) => VipKey::V6(Vip6Key {
            addr: a.octets(),
            port_be,
            proto: id.protocol,
            kind,
        }),
    }
}

fn meta(index: u32, ring_id: u32, spec: &VipSpec) -> VipMeta {
    VipMeta {
        vip_index: index,
        ring_id,
        flags: match spec.forwarding {
            Forwarding::Tunnel => 0,
            Forwarding::Dsr => VIP_FLAG_DSR,
        },
        _reserved: 0,
    }
}

/// The `VIP_FILTER` slot of an address.
fn filter_slot(address: IpAddr) -> u32 {
    match address {
        IpAddr::V4(a) => vip_filter_slot_v4(a.octets()),
        IpAddr::V6(a) => vip_filter_slot_v6(&a.octets()),
    }
}

/// An address in a 16-byte field: IPv4 in the first four bytes.
fn address_bytes(address: IpAddr) -> ([u8; 16], u8) {
    match address {
        IpAddr::V4(a) => {
            let mut bytes = [0u8; 16];
            bytes[..4].copy_from_slice(&a.octets());
            (bytes, FAMILY_V4)
        }
        IpAddr::V6(a) => (a.octets(), FAMILY_V6),
    }
}

/// The `BACKENDS` entry of `backend`, serving virtual server `vip`.
fn backend_entry(backend: &BackendSpec, vip_index: u32, vip: &VipSpec) -> Backend {
    let (addr, family) = address_bytes(backend.address);
    let (vip_addr, _) = address_bytes(vip.id.address);
    let mut flags = 0;
    if backend.up {
        flags |= BACKEND_FLAG_UP;
    }
    if vip.forwarding == Forwarding::Dsr {
        flags |= BACKEND_FLAG_DSR;
    }
    if backend.drained {
        flags |= BACKEND_FLAG_DRAINED;
    }
    Backend {
        addr,
        vip_addr,
        mac: backend.mac,
        family,
        flags,
        vip_index,
        vip_port_be: vip.id.port.to_be(),
        vip_proto: vip.id.protocol,
        _pad: 0,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::dataplane::maps::MemoryMaps;

    const RING: u32 = 1009;

    fn programmer() -> Programmer<MemoryMaps> {
        Programmer::new(
            MemoryMaps::default(),
            Capacity {
                ring_size: RING,
                max_vips: 4,
                max_backends: 64,
            },
        )
    }

    fn vip(port: u16) -> VipSpec {
        VipSpec {
            id: VipId {
                address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100)),
                port,
                protocol: 6,
            },
            forwarding: Forwarding::Tunnel,
        }
    }

    fn backend(last: u8, weight: u32) -> BackendSpec {
        BackendSpec {
            address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)),
            mac: [2, 0, 0, 0, 0, last],
            weight,
            up: true,
            drained: false,
        }
    }

    /// Backends .11, .12 and .13, of weight 100.
    fn three_backends() -> [BackendSpec; 3] {
        [backend(11, 100), backend(12, 100), backend(13, 100)]
    }

    fn active_meta(p: &Programmer<MemoryMaps>, spec: &VipSpec) -> VipMeta {
        p.maps().vips[&vip_key(&spec.id, VIP_KIND_PORT)]
    }

    /// What the kernel would see: the ring the VIP entry names, read from
    /// the written slots.
    fn kernel_ring(p: &Programmer<MemoryMaps>, spec: &VipSpec) -> Vec<u32> {
        let ring_id = active_meta(p, spec).ring_id;
        (0..RING)
            .map(|slot| {
                p.maps()
                    .rings
                    .get((ring_id * RING + slot) as usize)
                    .copied()
                    .unwrap_or(0)
            })
            .collect()
    }

    #[test]
    fn vip_entry_names_a_complete_ring() {
        let mut p = programmer();
        let spec = vip(80);
        p.set(
            spec,
            &[backend(11, 100), backend(12, 100), backend(13, 100)],
        )
        .unwrap();
        let ring = kernel_ring(&p, &spec);
        assert!(ring.iter().all(|id| *id != 0));
        assert_eq!(Some(ring.clone()), p.ring(&spec.id));
        for id in ring {
            let b = p.maps().backends[&id];
            assert_eq!(b.flags & BACKEND_FLAG_UP, BACKEND_FLAG_UP);
            assert_eq!(b.vip_index, p.vip_index(&spec.id).unwrap());
        }
    }

    #[test]
    fn changes_flip_rings_and_write_only_changed_slots() {
        let mut p = programmer();
        let spec = vip(80);
        let three = three_backends();
        p.set(spec, &three).unwrap();
        let first_ring = active_meta(&p, &spec).ring_id;
        p.set(spec, &three[..2]).unwrap();
        let second_ring = active_meta(&p, &spec).ring_id;
        assert_ne!(
            first_ring, second_ring,
            "a change is written into the other ring"
        );
        p.set(spec, &three).unwrap();
        assert_eq!(active_meta(&p, &spec).ring_id, first_ring);
        // Back to two: the inactive ring already holds that table, so the
        // flip writes no slot at all.
        let writes = p.maps().ring_writes;
        p.set(spec, &three[..2]).unwrap();
        assert_eq!(active_meta(&p, &spec).ring_id, second_ring);
        assert_eq!(p.maps().ring_writes, writes);
    }

    #[test]
    fn removed_backend_is_marked_down_after_the_flip() {
        let mut p = programmer();
        let spec = vip(80);
        p.set(spec, &[backend(11, 100), backend(12, 100)]).unwrap();
        let gone = p.backend_id(&spec.id, &backend(12, 100).address).unwrap();
        p.set(spec, &[backend(11, 100)]).unwrap();
        assert_eq!(p.maps().backends[&gone].flags, 0);
        assert!(!kernel_ring(&p, &spec).contains(&gone));
    }

    /// The counters `p`'s in-memory maps hold, as `BpfMaps::counters`
    /// reads them.
    fn counters(p: &Programmer<MemoryMaps>) -> Counters {
        let table = |map: &HashMap<u32, Traffic>, len: u32| {
            (0..len)
                .map(|i| map.get(&i).copied().unwrap_or_default())
                .collect()
        };
        Counters {
            stats: Vec::new(),
            vips: table(&p.maps.vip_traffic, p.capacity.max_vips),
            backends: table(&p.maps.backend_traffic, p.capacity.max_backends),
        }
    }

    #[test]
    fn traffic_of_removed_backends_stays_with_the_virtual_server() {
        let mut p = programmer();
        let (web, dns) = (vip(80), vip(53));
        p.set(web, &[backend(11, 100), backend(12, 100)]).unwrap();
        p.set(dns, &[backend(11, 100)]).unwrap();
        let traffic = |packets| Traffic {
            packets,
            bytes: 100 * packets,
            flows: 1,
        };
        for (spec, last, packets) in [(web, 11, 3), (web, 12, 5), (dns, 11, 7)] {
            let id = p.backend_id(&spec.id, &backend(last, 100).address).unwrap();
            p.maps.backend_traffic.insert(id, traffic(packets));
        }
        let whole = |p: &Programmer<MemoryMaps>, spec: &VipSpec| {
            p.vip_traffic(&spec.id, &counters(p)).packets
        };
        assert_eq!((whole(&p, &web), whole(&p, &dns)), (8, 7));

        let gone = p.backend_id(&web.id, &backend(12, 100).address).unwrap();
        p.set(web, &[backend(11, 100)]).unwrap();
        assert_eq!((whole(&p, &web), whole(&p, &dns)), (8, 7), "nothing lost");
        assert!(
            !p.maps.backend_traffic.contains_key(&gone),
            "the id is zeroed"
        );
        assert_eq!(
            counters(&p).vips[p.vip_index(&web.id).unwrap() as usize].flows,
            1
        );

        let web_index = p.vip_index(&web.id).unwrap();
        p.remove(&web.id).unwrap();
        assert_eq!(whole(&p, &web), 0);
        assert!(
            !p.maps.vip_traffic.contains_key(&web_index),
            "the index is zeroed"
        );
        assert_eq!(whole(&p, &dns), 7, "another virtual server keeps its own");
    }

    #[test]
    fn the_virtual_servers_counter_is_written_once_per_change() {
        let mut p = programmer();
        let web = vip(80);
        let three = three_backends();
        p.set(web, &three).unwrap();
        for (packets, b) in (1..).zip(&three) {
            let id = p.backend_id(&web.id, &b.address).unwrap();
            let traffic = Traffic {
                packets,
                bytes: 100 * packets,
                flows: 1,
            };
            p.maps.backend_traffic.insert(id, traffic);
        }
        let whole = |p: &Programmer<MemoryMaps>| p.vip_traffic(&web.id, &counters(p));

        // Two backends leave: their traffic is summed into the virtual
        // server's counter in one write.
        p.set(web, &three[..1]).unwrap();
        assert_eq!(p.maps.vip_traffic_writes, 1);
        assert_eq!((whole(&p).packets, whole(&p).flows), (6, 3));
        assert_eq!(p.maps.backend_traffic.len(), 1, "the others are zeroed");

        // The virtual server goes: its counter is cleared, not added to,
        // and so is its backend's.
        p.remove(&web.id).unwrap();
        assert_eq!(p.maps.vip_traffic_writes, 2);
        assert!(p.maps.vip_traffic.is_empty());
        assert!(p.maps.backend_traffic.is_empty());
    }

    #[test]
    fn only_changed_backend_entries_are_written() {
        let mut p = programmer();
        let mut spec = vip(80);
        p.set(spec, &[backend(11, 100), backend(12, 100)]).unwrap();
        assert_eq!(p.maps().backend_writes, 2);
        // The weight is not in the entry: only the ring changes.
        p.set(spec, &[backend(11, 100), backend(12, 300)]).unwrap();
        assert_eq!(p.maps().backend_writes, 2);
        let id = p.backend_id(&spec.id, &backend(12, 300).address).unwrap();
        let slots = kernel_ring(&p, &spec).iter().filter(|s| **s == id).count();
        assert!(slots > RING as usize / 2, "the new weight took effect");
        // Health and the forwarding mode are: those entries are written.
        let mut down = backend(12, 300);
        down.up = false;
        p.set(spec, &[backend(11, 100), down]).unwrap();
        assert_eq!(p.maps().backend_writes, 3);
        spec.forwarding = Forwarding::Dsr;
        p.set(spec, &[backend(11, 100), down]).unwrap();
        assert_eq!(p.maps().backend_writes, 5);
    }

    #[test]
    fn drain_keeps_backend_up_but_out_of_the_ring() {
        let mut p = programmer();
        let spec = vip(80);
        p.set(spec, &[backend(11, 100), backend(12, 0)]).unwrap();
        let drained = p.backend_id(&spec.id, &backend(12, 0).address).unwrap();
        assert_eq!(p.maps().backends[&drained].flags, BACKEND_FLAG_UP);
        assert!(!kernel_ring(&p, &spec).contains(&drained));
    }

    #[test]
    fn down_backend_is_out_of_the_ring_and_flagged() {
        let mut p = programmer();
        let spec = vip(80);
        let mut sick = backend(12, 100);
        sick.up = false;
        p.set(spec, &[backend(11, 100), sick]).unwrap();
        let id = p.backend_id(&spec.id, &sick.address).unwrap();
        assert_eq!(p.maps().backends[&id].flags, 0);
        assert!(!kernel_ring(&p, &spec).contains(&id));
    }

    #[test]
    fn fragment_entry_follows_port_zero_or_lowest_port() {
        let mut p = programmer();
        let (web, dns) = (vip(443), vip(80));
        p.set(web, &[backend(11, 100)]).unwrap();
        p.set(dns, &[backend(12, 100)]).unwrap();
        let fragment_key = vip_key(&vip(0).id, VIP_KIND_FRAGMENT);
        let lowest = p.maps().vips[&fragment_key];
        assert_eq!(lowest, active_meta(&p, &dns));
        let all = vip(0);
        p.set(all, &[backend(13, 100)]).unwrap();
        assert_eq!(p.maps().vips[&fragment_key], active_meta(&p, &all));
        for spec in [web, dns, all] {
            p.remove(&spec.id).unwrap();
        }
        assert!(p.maps().vips.is_empty());
    }

    /// A programmer that adopts what `p` wrote, as a restarted daemon does.
    fn adopted(p: Programmer<MemoryMaps>) -> Programmer<MemoryMaps> {
        let capacity = p.capacity();
        let maps = p.into_maps();
        let contents = maps.contents();
        Programmer::adopt(maps, capacity, &contents)
    }

    #[test]
    fn adopted_maps_keep_rings_and_backend_ids() {
        let mut p = programmer();
        let (web, dns) = (vip(80), vip(53));
        let three = [backend(11, 100), backend(12, 100), backend(13, 50)];
        p.set(web, &three).unwrap();
        p.set(dns, &[backend(14, 100)]).unwrap();
        p.set(web, &three).unwrap(); // the active ring is now ring 0 again
        let ring_before = kernel_ring(&p, &web);
        let ids: Vec<_> = three
            .iter()
            .map(|b| p.backend_id(&web.id, &b.address))
            .collect();
        let mut adopted = adopted(p);
        let mut vips: Vec<_> = adopted.vips().copied().collect();
        vips.sort();
        assert_eq!(vips, vec![dns.id, web.id]);
        for (b, id) in three.iter().zip(&ids) {
            assert_eq!(adopted.backend_id(&web.id, &b.address), *id);
        }
        // The same configuration again: the kernel's ring is the same
        // table, and the other half already held it: no slot is written.
        let writes = adopted.maps().ring_writes;
        adopted.set(web, &three).unwrap();
        assert_eq!(kernel_ring(&adopted, &web), ring_before);
        assert_eq!(adopted.maps().ring_writes - writes, 0);
        // New ids do not collide with adopted ones.
        adopted
            .set(dns, &[backend(14, 100), backend(15, 100)])
            .unwrap();
        let new = adopted.backend_id(&dns.id, &backend(15, 100).address);
        assert!(new.is_some() && !ids.contains(&new));
        assert_ne!(adopted.vip_index(&dns.id), adopted.vip_index(&web.id));
    }

    #[test]
    fn drains_are_recorded_in_the_entries_and_adopted() {
        let web = vip(80);
        let drained = BackendSpec {
            drained: true,
            ..backend(12, 0)
        };
        let mut p = programmer();
        p.set(web, &[backend(11, 100), drained]).unwrap();
        let id = p.backend_id(&web.id, &drained.address).unwrap();
        let flags = p.maps().backends[&id].flags;
        assert_eq!(flags, BACKEND_FLAG_UP | BACKEND_FLAG_DRAINED);
        assert!(p.drained(&web.id, &drained.address));
        assert!(!p.drained(&web.id, &backend(11, 100).address));

        let mut adopted = adopted(p);
        assert!(adopted.drained(&web.id, &drained.address));
        assert!(!adopted.drained(&web.id, &backend(11, 100).address));
        // Undrained: the flag goes.
        adopted
            .set(web, &[backend(11, 100), backend(12, 100)])
            .unwrap();
        assert!(!adopted.drained(&web.id, &drained.address));
        assert_eq!(adopted.maps().backends[&id].flags & BACKEND_FLAG_DRAINED, 0);
    }

    #[test]
    fn filter_covers_programmed_addresses_only() {
        let mut p = programmer();
        let (web, all) = (vip(80), vip(0));
        let slot = filter_slot(web.id.address);
        p.set(web, &[backend(11, 100)]).unwrap();
        assert_eq!(p.maps().filter[&slot], VIP_FILTER_PORT);
        p.set(all, &[backend(12, 100)]).unwrap();
        assert_eq!(
            p.maps().filter[&slot],
            VIP_FILTER_PORT | VIP_FILTER_ANY_PORT
        );
        p.remove(&web.id).unwrap();
        assert_eq!(p.maps().filter[&slot], VIP_FILTER_ANY_PORT);
        p.remove(&all.id).unwrap();
        assert_eq!(p.maps().filter[&slot], 0);
    }

    #[test]
    fn filter_slot_shared_by_addresses_holds_the_flags_of_all_of_them() {
        let (web, all) = (vip(80), vip(0));
        // An IPv6 address whose words fold to the IPv4 address's: the
        // same slot.
        let mut octets = [0u8; 16];
        octets[..4].copy_from_slice(&[192, 0, 2, 100]);
        let other = |port| VipSpec {
            id: VipId {
                address: IpAddr::from(octets),
                port,
                protocol: 6,
            },
            forwarding: Forwarding::Tunnel,
        };
        let slot = filter_slot(web.id.address);
        assert_eq!(filter_slot(other(0).id.address), slot);

        let mut p = programmer();
        let flags = |p: &Programmer<MemoryMaps>| p.maps().filter[&slot];
        p.set(other(443), &[]).unwrap();
        p.set(all, &[]).unwrap();
        assert_eq!(flags(&p), VIP_FILTER_PORT | VIP_FILTER_ANY_PORT);
        p.remove(&all.id).unwrap();
        assert_eq!(flags(&p), VIP_FILTER_PORT);
        p.set(web, &[]).unwrap();
        p.set(other(0), &[]).unwrap();
        assert_eq!(flags(&p), VIP_FILTER_PORT | VIP_FILTER_ANY_PORT);

        // A restarted daemon counts what it adopts.
        let mut p = adopted(p);
        p.remove(&web.id).unwrap();
        assert_eq!(flags(&p), VIP_FILTER_PORT | VIP_FILTER_ANY_PORT);
        p.remove(&other(443).id).unwrap();
        assert_eq!(flags(&p), VIP_FILTER_ANY_PORT);
        p.remove(&other(0).id).unwrap();
        assert_eq!(flags(&p), 0, "the last one gone clears the slot");
        assert!(p.filter.is_empty(), "and the slot is forgotten");
    }

    #[test]
    fn backend_entries_name_their_virtual_server_and_mode() {
        let mut p = programmer();
        let mut spec = vip(443);
        p.set(spec, &[backend(11, 100)]).unwrap();
        let id = p.backend_id(&spec.id, &backend(11, 100).address).unwrap();
        let entry = p.maps().backends[&id];
        assert_eq!(entry.vip_addr[..4], [192, 0, 2, 100]);
        assert_eq!(entry.vip_port_be, 443u16.to_be());
        assert_eq!(entry.vip_proto, 6);
        assert_eq!(entry.flags, BACKEND_FLAG_UP);
        // A change of mode rewrites the backends, whose entries carry it.
        spec.forwarding = Forwarding::Dsr;
        p.set(spec, &[backend(11, 100)]).unwrap();
        assert_eq!(
            p.maps().backends[&id].flags,
            BACKEND_FLAG_UP | BACKEND_FLAG_DSR
        );
    }

    #[test]
    fn set_many_programs_what_set_does_one_by_one() {
        let items: Vec<_> = (0..4u8)
            .map(|i| {
                let backends: Vec<_> = (0..=i).map(|j| backend(10 * i + j + 1, 100)).collect();
                (vip(80 + u16::from(i)), backends)
            })
            .collect();
        let mut one_by_one = programmer();
        for (spec, backends) in &items {
            one_by_one.set(*spec, backends).unwrap();
        }
        let mut many = programmer();
        many.set_many(&items).unwrap();
        let (a, b) = (one_by_one.maps(), many.maps());
        assert_eq!(a.vips, b.vips);
        assert_eq!(a.backends, b.backends);
        assert_eq!(a.rings, b.rings);
        assert_eq!(a.filter, b.filter);
        for (spec, _) in &items {
            assert_eq!(kernel_ring(&many, spec), many.ring(&spec.id).unwrap());
        }
    }

    #[test]
    fn set_many_programs_the_virtual_servers_before_an_error() {
        let mut p = programmer();
        let items: Vec<_> = (1..=5)
            .map(|port| (vip(port), vec![backend(11, 100)]))
            .collect();
        assert!(matches!(p.set_many(&items), Err(Error::Full(_))));
        for (spec, _) in &items[..4] {
            assert_eq!(kernel_ring(&p, spec), p.ring(&spec.id).unwrap());
        }
    }

    #[test]
    fn capacity_is_enforced() {
        let mut p = programmer();
        for port in 1..=4 {
            p.set(vip(port), &[]).unwrap();
        }
        assert!(matches!(p.set(vip(5), &[]), Err(Error::Full(_))));
        p.remove(&vip(1).id).unwrap();
        p.set(vip(5), &[]).unwrap();
    }

    #[test]
    fn dsr_needs_one_family() {
        let mut p = programmer();
        let mut spec = vip(80);
        spec.forwarding = Forwarding::Dsr;
        let mut v6 = backend(11, 100);
        v6.address = "2001:db8::11".parse().unwrap();
        assert!(matches!(p.set(spec, &[v6]), Err(Error::Invalid(_))));
    }
}
