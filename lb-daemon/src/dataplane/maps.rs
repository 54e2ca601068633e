//! The interface through which the map-programming code writes, so that
//! the [`super::Programmer`] runs the same against the kernel's maps
//! ([`BpfMaps`]) and in memory in unit tests ([`MemoryMaps`]).
use std::collections::HashMap;

use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, PerCpuArray};
use lb_common::{Backend, Counter, Stats, Traffic, Vip4Key, Vip6Key, VipMeta, names, stats};

use super::{Error, Result, map_err, rings::Rings};

/// A key of either VIP map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VipKey {
    V4(Vip4Key),
    V6(Vip6Key),
}

/// Writes to the balancer's maps. Each call leaves the maps consistent for
/// the program: one atomic map update, or (the counters) updates the
/// program never reads.
pub trait MapWriter {
    fn set_vip(&mut self, key: VipKey, meta: VipMeta) -> Result<()>;
    fn remove_vip(&mut self, key: VipKey) -> Result<()>;
    fn set_backend(&mut self, id: u32, backend: Backend) -> Result<()>;
    /// Writes `table` into the flat `RINGS` array from slot `base`: only
    /// the slots that differ from what the array holds. Returns how many
    /// slots were written.
    fn write_ring(&mut self, base: u32, table: &[u32]) -> Result<usize>;
    /// Sets the `VIP_FILTER` flags of one slot.
    fn set_filter_slot(&mut self, slot: u32, flags: u32) -> Result<()>;
    /// Moves the traffic counted for backends `ids`, which left the
    /// virtual server of index `vip_index`, into that virtual server's own
    /// counter (read and written once, however many left), and zeroes
    /// the backends': the virtual server's total stays whole, and an id
    /// starts from zero when it is given out again.
    fn retire_backend_traffic(&mut self, ids: &[u32], vip_index: u32) -> Result<()>;
    /// Zeroes the counter of backend `id`, whose virtual server is gone
    /// (the id starts from zero when it is given out again).
    fn clear_backend_traffic(&mut self, id: u32) -> Result<()>;
    /// Zeroes the own counter of virtual server index `vip_index` (the
    /// virtual server is gone; its index starts from zero when reused).
    fn clear_vip_traffic(&mut self, vip_index: u32) -> Result<()>;
}

/// What the maps hold: the VIP entries and the backend slots in use.
/// A restarted daemon rebuilds its [`super::Programmer`] from this.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contents {
    pub vips: Vec<(VipKey, VipMeta)>,
    /// Slots with a backend (family set), by id.
    pub backends: Vec<(u32, Backend)>,
}

/// Counters summed over all CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Indexed by `lb_common::stats`.
    pub stats: Vec<Counter>,
    /// The traffic of backends that left each virtual server, by VIP
    /// index (the VIPs' `TRAFFIC` entries; see [`super::Programmer::vip_traffic`] for a
    /// virtual server's whole traffic).
    pub vips: Vec<Traffic>,
    /// Indexed by backend id.
    pub backends: Vec<Traffic>,
}

/// A per-CPU traffic counter summed over CPUs.
fn sum_traffic(values: &aya::maps::PerCpuValues<Traffic>) -> Traffic {
    values.iter().fold(Traffic::default(), |a, c| a.plus(*c))
}

/// Per-CPU values, one per possible CPU (`cpus`): `first` for the first
/// CPU, zero for the others.
fn on_first_cpu(first: Traffic, cpus: usize) -> Result<aya::maps::PerCpuValues<Traffic>> {
    let mut values = vec![Traffic::default(); cpus.max(1)];
    values[0] = first;
    aya::maps::PerCpuValues::try_from(values)
        .map_err(|error| Error::Invalid(format!("per-CPU values: {error}")))
}

/// The balancer's maps in the kernel.
pub struct BpfMaps {
    vips_v4: BpfHashMap<MapData, Vip4Key, VipMeta>,
    vips_v6: BpfHashMap<MapData, Vip6Key, VipMeta>,
    backends: Array<MapData, Backend>,
    rings: Rings,
    vip_filter: Array<MapData, u32>,
    stats: PerCpuArray<MapData, Stats>,
    /// Backends' entries, then virtual servers' (`names::TRAFFIC`).
    traffic: PerCpuArray<MapData, Traffic>,
    /// Possible CPUs: the values of a per-CPU entry.
    cpus: usize,
}

impl BpfMaps {
    /// Takes the maps out of a map lookup by name (a freshly loaded object
    /// or the maps of an adopted program).
    pub fn new(mut take: impl FnMut(&'static str) -> Option<Map>) -> Result<Self> {
        fn typed<T: TryFrom<Map, Error = aya::maps::MapError>>(
            take: &mut impl FnMut(&'static str) -> Option<Map>,
            name: &'static str,
        ) -> Result<T> {
            let map = take(name).ok_or(Error::Missing(name))?;
            T::try_from(map).map_err(map_err(name))
        }
        Ok(Self {
            vips_v4: typed(&mut take, names::VIPS_V4)?,
            vips_v6: typed(&mut take, names::VIPS_V6)?,
            backends: typed(&mut take, names::BACKENDS)?,
            rings: Rings::new(take(names::RINGS).ok_or(Error::Missing(names::RINGS))?)?,
            vip_filter: typed(&mut take, names::VIP_FILTER)?,
            stats: typed(&mut take, names::STATS)?,
            traffic: typed(&mut take, names::TRAFFIC)?,
            cpus: aya::util::nr_cpus()
                .map_err(|(path, error)| Error::Invalid(format!("reading {path}: {error}")))?,
        })
    }

    /// All counters, summed over CPUs.
    pub fn counters(&self) -> Result<Counters> {
        let mut out = Counters {
            stats: self.stats()?,
            ..Counters::default()
        };
        let backends = self.backends.len();
        for entry in 0..self.traffic.len() {
            let traffic = self.traffic_entry(entry)?;
            if entry < backends {
                out.backends.push(traffic);
            } else {
                out.vips.push(traffic);
            }
        }
        Ok(out)
    }

    /// The traffic of backend `id`, summed over CPUs.
    pub fn backend_traffic(&self, id: u32) -> Result<Traffic> {
        self.traffic_entry(id)
    }

    /// The `TRAFFIC` entry of VIP index `index`.
    fn vip_entry(&self, index: u32) -> u32 {
        self.backends.len() + index
    }

    /// `TRAFFIC` entry `entry`, summed over CPUs.
    fn traffic_entry(&self, entry: u32) -> Result<Traffic> {
        let values = self
            .traffic
            .get(&entry, 0)
            .map_err(map_err(names::TRAFFIC))?;
        Ok(sum_traffic(&values))
    }

    /// Sets `TRAFFIC` entry `entry` to `traffic` (on the first CPU).
    fn set_traffic_entry(&mut self, entry: u32, traffic: Traffic) -> Result<()> {
        self.traffic
            .set(entry, on_first_cpu(traffic, self.cpus)?, 0)
            .map_err(map_err(names::TRAFFIC))
    }

    /// The verdict and event counters (indexed by `lb_common::stats`),
    /// summed over CPUs.
    fn stats(&self) -> Result<Vec<Counter>> {
        let values = self.stats.get(&0, 0).map_err(map_err(names::STATS))?;
        let mut out = vec![Counter::default(); stats::COUNT as usize];
        for cpu in values.iter() {
            for (sum, counter) in out.iter_mut().zip(cpu.counters.iter()) {
                sum.packets += counter.packets;
                sum.bytes += counter.bytes;
            }
        }
        Ok(out)
    }

    /// One verdict or event counter, summed over CPUs.
    pub fn stat(&self, index: u32) -> Result<Counter> {
        Ok(self
            .stats()?
            .get(index as usize)
            .copied()
            .unwrap_or_default())
    }

    /// The VIP entries and occupied backend slots.
    pub fn contents(&self) -> Result<Contents> {
        let mut contents = Contents::default();
        for entry in self.vips_v4.iter() {
            let (key, meta) = entry.map_err(map_err(names::VIPS_V4))?;
            contents.vips.push((VipKey::V4(key), meta));
        }
        for entry in self.vips_v6.iter() {
            let (key, meta) = entry.map_err(map_err(names::VIPS_V6))?;
            contents.vips.push((VipKey::V6(key), meta));
        }
        for (id, backend) in self.backends.iter().enumerate() {
            let backend = backend.map_err(map_err(names::BACKENDS))?;
            if backend.family != 0 {
                contents.backends.push((id as u32, backend));
            }
        }
        Ok(contents)
    }

    /// Records the ring size in `RINGS`, for a daemon that adopts the
    /// program.
    pub fn record_ring_size(&mut self, ring_size: u32) -> Result<()> {
        self.rings.record_ring_size(ring_size)
    }

    /// The ring size recorded at load.
    pub fn ring_size(&self) -> Result<u32> {
        self.rings.ring_size()
    }

    /// Number of backend slots (the `BACKENDS` map size).
    pub fn backend_capacity(&self) -> u32 {
        self.backends.len()
    }
}

impl MapWriter for BpfMaps {
    fn set_vip(&mut self, key: VipKey, meta: VipMeta) -> Result<()> {
        match key {
            VipKey::V4(key) => self
                .vips_v4
                .insert(key, meta, 0)
                .map_err(map_err(names::VIPS_V4)),
            VipKey::V6(key) => self
                .vips_v6
                .insert(key, meta, 0)
                .map_err(map_err(names::VIPS_V6)),
        }
    }

    fn remove_vip(&mut self, key: VipKey) -> Result<()> {
        match key {
            VipKey::V4(key) => self.vips_v4.remove(&key).map_err(map_err(names::VIPS_V4)),
            VipKey::V6(key) => self.vips_v6.remove(&key).map_err(map_err(names::VIPS_V6)),
        }
    }

    fn set_backend(&mut self, id: u32, backend: Backend) -> Result<()> {
        self.backends
            .set(id, backend, 0)
            .map_err(map_err(names::BACKENDS))
    }

    fn write_ring(&mut self, base: u32, table: &[u32]) -> Result<usize> {
        self.rings.write(base, table)
    }

    fn set_filter_slot(&mut self, slot: u32, flags: u32) -> Result<()> {
        self.vip_filter
            .set(slot, flags, 0)
            .map_err(map_err(names::VIP_FILTER))
    }

    // Called once the backends' entries are cleared: no packet counts
    // against them any more, except one already past its lookup on another
    // CPU in these microseconds, which may be counted to the id afterwards.
    fn retire_backend_traffic(&mut self, ids: &[u32], vip_index: u32) -> Result<()> {
        let mut retired = Traffic::default();
        let mut counted = Vec::new();
        for &id in ids {
            let traffic = self.backend_traffic(id)?;
            if traffic != Traffic::default() {
                retired = retired.plus(traffic);
                counted.push(id);
            }
        }
        if counted.is_empty() {
            return Ok(());
        }
        let entry = self.vip_entry(vip_index);
        let total = self.traffic_entry(entry)?.plus(retired);
        self.set_traffic_entry(entry, total)?;
        counted
            .into_iter()
            .try_for_each(|id| self.set_traffic_entry(id, Traffic::default()))
    }

    fn clear_backend_traffic(&mut self, id: u32) -> Result<()> {
        self.set_traffic_entry(id, Traffic::default())
    }

    fn clear_vip_traffic(&mut self, vip_index: u32) -> Result<()> {
        self.set_traffic_entry(self.vip_entry(vip_index), Traffic::default())
    }
}

/// The maps as plain collections, for tests of the programming logic.
#[derive(Debug, Default)]
pub struct MemoryMaps {
    pub vips: HashMap<VipKey, VipMeta>,
    pub backends: HashMap<u32, Backend>,
    /// The flat `RINGS` array, grown as it is written.
    pub rings: Vec<u32>,
    /// Number of ring slots written so far (to check minimal updates).
    pub ring_writes: usize,
    /// Number of backend entries written so far.
    pub backend_writes: usize,
    /// `VIP_FILTER` slots written (slots never written hold 0).
    pub filter: HashMap<u32, u32>,
    /// Backends' `TRAFFIC` by id (absent: zero); tests count traffic into
    /// it as the program would.
    pub backend_traffic: HashMap<u32, Traffic>,
    /// Virtual servers' `TRAFFIC` by VIP index (absent: zero).
    pub vip_traffic: HashMap<u32, Traffic>,
    /// Number of virtual servers' `TRAFFIC` entries written so far.
    pub vip_traffic_writes: usize,
}

impl MemoryMaps {
    /// The VIP entries and occupied backend slots, as [`BpfMaps::contents`].
    pub fn contents(&self) -> Contents {
        let mut backends: Vec<(u32, Backend)> = self
            .backends
            .iter()
            .filter(|(_, b)| b.family != 0)
            .map(|(id, b)| (*id, *b))
            .collect();
        backends.sort_by_key(|(id, _)| *id);
        Contents {
            vips: self.vips.iter().map(|(k, m)| (*k, *m)).collect(),
            backends,
        }
    }
}

impl MapWriter for MemoryMaps {
    fn set_vip(&mut self, key: VipKey, meta: VipMeta) -> Result<()> {
        self.vips.insert(key, meta);
        Ok(())
    }

    fn remove_vip(&mut self, key: VipKey) -> Result<()> {
        self.vips.remove(&key);
        Ok(())
    }

    fn set_backend(&mut self, id: u32, backend: Backend) -> Result<()> {
        self.backends.insert(id, backend);
        self.backend_writes += 1;
        Ok(())
    }

    fn write_ring(&mut self, base: u32, table: &[u32]) -> Result<usize> {
        let base = base as usize;
        if self.rings.len() < base + table.len() {
            self.rings.resize(base + table.len(), 0);
        }
        let mut written = 0;
        for (slot, id) in self.rings[base..].iter_mut().zip(table) {
            if slot != id {
                *slot = *id;
                written += 1;
            }
        }
        self.ring_writes += written;
        Ok(written)
    }

    fn set_filter_slot(&mut self, slot: u32, flags: u32) -> Result<()> {
        self.filter.insert(slot, flags);
        Ok(())
    }

    fn retire_backend_traffic(&mut self, ids: &[u32], vip_index: u32) -> Result<()> {
        let retired = ids
            .iter()
            .filter_map(|id| self.backend_traffic.remove(id))
            .fold(Traffic::default(), Traffic::plus);
        if retired != Traffic::default() {
            let total = self.vip_traffic.entry(vip_index).or_default();
            *total = total.plus(retired);
            self.vip_traffic_writes += 1;
        }
        Ok(())
    }

    fn clear_backend_traffic(&mut self, id: u32) -> Result<()> {
        self.backend_traffic.remove(&id);
        Ok(())
    }

    fn clear_vip_traffic(&mut self, vip_index: u32) -> Result<()> {
        self.vip_traffic.remove(&vip_index);
        self.vip_traffic_writes += 1;
        Ok(())
    }
}
