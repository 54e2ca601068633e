//! The balancer program: loaded from the embedded object with the map
//! sizes and globals of the configuration, or adopted from an interface it
//! is attached to (a previous daemon's, with its maps and flow tables);
//! attached through rtnetlink.
use std::{collections::HashMap, net::Ipv4Addr, net::Ipv6Addr, os::fd::AsFd};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Map, MapData, MapInfo},
    programs::{ProgramError, ProgramFd, ProgramInfo, Xdp, loaded_programs},
};
use lb_common::{flow_table, limits, names, ring_blocks};

use super::{
    Error, Result, XdpMode, another_version, attach, map_err,
    maps::BpfMaps,
    object,
    programmer::{Capacity, Programmer},
};

/// Sizes and settings fixed when the program is loaded.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Slots per Maglev ring (prime).
    pub ring_size: u32,
    /// Virtual servers the maps have room for.
    pub max_vips: u32,
    /// Backend slots (across all virtual servers).
    pub max_backends: u32,
    /// Flows each flow table (IPv4 and IPv6) holds at least: rounded up
    /// to a power of two of sets (`lb_common::flow_table::sets`).
    pub flow_table_size: u32,
    /// Outer IPv4 sources are `a.b.x.y` with `x.y` from the flow hash.
    pub tunnel_source_v4: Ipv4Addr,
    /// Outer IPv6 sources keep the first 96 bits of this address.
    pub tunnel_source_v6: Ipv6Addr,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            ring_size: limits::RING_SIZE,
            max_vips: limits::MAX_VIPS,
            max_backends: limits::MAX_BACKENDS,
            flow_table_size: limits::FLOW_TABLE_SIZE,
            tunnel_source_v4: Ipv4Addr::new(172, 16, 0, 0),
            tunnel_source_v6: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0),
        }
    }
}

impl LoadOptions {
    fn capacity(&self) -> Capacity {
        Capacity {
            ring_size: self.ring_size,
            max_vips: self.max_vips,
            max_backends: self.max_backends,
        }
    }
}

/// The balancer: its program and the programmer of its maps.
pub struct Balancer {
    /// The object, when this process loaded the program; `None` when the
    /// program was adopted.
    ebpf: Option<Ebpf>,
    /// Kernel id of the program.
    id: u32,
    programmer: Programmer<BpfMaps>,
}

impl Balancer {
    /// Loads the program into the kernel (not attached yet). A verifier
    /// rejection comes back with the verifier's log in the error.
    pub fn load(options: &LoadOptions) -> Result<Self> {
        if !crate::maglev::is_prime(options.ring_size) {
            return Err(Error::Invalid(format!(
                "ring size {} is not prime",
                options.ring_size
            )));
        }
        let rings = 2u64 * u64::from(options.max_vips) * u64::from(options.ring_size);
        let rings = u32::try_from(rings)
            .map_err(|_| Error::Invalid("max_vips * ring_size is too large".into()))?;
        let sets_v4 = flow_table::sets(options.flow_table_size, flow_table::WAYS_V4);
        let sets_v6 = flow_table::sets(options.flow_table_size, flow_table::WAYS_V6);
        let tunnel_v4 = options.tunnel_source_v4.octets();
        let tunnel_v6 = options.tunnel_source_v6.octets();
        let mut ebpf = EbpfLoader::new()
            .override_global(names::RING_SIZE, &options.ring_size, true)
            .override_global(names::FLOW_SET_MASK_V4, &(sets_v4 - 1), true)
            .override_global(names::FLOW_SET_MASK_V6, &(sets_v6 - 1), true)
            .override_global(names::TUNNEL_SOURCE_V4, &tunnel_v4, true)
            .override_global(names::TUNNEL_SOURCE_V6, &tunnel_v6, true)
            .map_max_entries(names::VIPS_V4, 2 * options.max_vips)
            .map_max_entries(names::VIPS_V6, 2 * options.max_vips)
            // One element more: the ring size, for a daemon that adopts
            // the program (`rings::Rings::record_ring_size`).
            .map_max_entries(names::RINGS, ring_blocks(rings) + 1)
            .map_max_entries(names::BACKENDS, options.max_backends)
            .map_max_entries(names::TRAFFIC, options.max_backends + options.max_vips)
            .map_max_entries(names::FLOWS_V4, sets_v4)
            .map_max_entries(names::FLOWS_V6, sets_v6)
            .load(object::BALANCER)?;
        program_mut(&mut ebpf)?.load()?;
        let mut maps = BpfMaps::new(|name| ebpf.take_map(name))?;
        maps.record_ring_size(options.ring_size)?;
        let id = program_mut(&mut ebpf)?.info()?.id();
        Ok(Self {
            ebpf: Some(ebpf),
            id,
            programmer: Programmer::new(maps, options.capacity()),
        })
    }

    /// The balancer program attached to `ifindex`, if one is: its id.
    /// Another XDP program there is an error (the daemon would replace it).
    pub fn find_attached(ifindex: u32) -> Result<Option<u32>> {
        let Some(id) = attach::attached(ifindex)? else {
            return Ok(None);
        };
        let info = program_info(id)?;
        match info.name_as_str() {
            Some(names::PROGRAM) => Ok(Some(id)),
            other => Err(Error::Invalid(format!(
                "interface {ifindex} runs another XDP program ({}, id {id}); detach it first",
                other.unwrap_or("unnamed")
            ))),
        }
    }

    /// Takes over the balancer program `id` (see [`Self::find_attached`])
    /// and its maps, as they are: the flow tables, the VIP entries, rings and
    /// backend slots, sized as they were loaded (`options` is not used for
    /// the sizes; [`Self::capacity`] tells them).
    pub fn adopt(id: u32) -> Result<Self> {
        let info = program_info(id)?;
        let mut maps: HashMap<String, (MapInfo, Map)> = HashMap::new();
        for map_id in info.map_ids()?.unwrap_or_default() {
            let map_info = MapInfo::from_id(map_id).map_err(map_err("adopted"))?;
            let Some(name) = map_info.name_as_str().map(str::to_owned) else {
                continue;
            };
            let data = MapData::from_id(map_id).map_err(map_err("adopted"))?;
            let map = Map::from_map_data(data).map_err(map_err("adopted"))?;
            maps.insert(name, (map_info, map));
        }
        let entries = |name: &'static str| {
            maps.get(name)
                .map(|(info, _)| info.max_entries())
                .ok_or_else(|| another_version(&format!("it has no map {name}")))
        };
        let max_backends = entries(names::BACKENDS)?;
        let max_vips = entries(names::TRAFFIC)?
            .checked_sub(max_backends)
            .ok_or_else(|| {
                Error::Invalid("the adopted program's TRAFFIC map is smaller than BACKENDS".into())
            })?;
        let maps =
            BpfMaps::new(|name| maps.remove(name).map(|(_, map)| map)).map_err(
                |error| match error {
                    Error::Missing(name) => another_version(&format!("it has no map {name}")),
                    other => other,
                },
            )?;
        let ring_size = maps.ring_size()?;
        if !crate::maglev::is_prime(ring_size) {
            return Err(Error::Invalid(format!(
                "the adopted program records ring size {ring_size}, not a prime"
            )));
        }
        let capacity = Capacity {
            ring_size,
            max_vips,
            max_backends,
        };
        let contents = maps.contents()?;
        Ok(Self {
            ebpf: None,
            id,
            programmer: Programmer::adopt(maps, capacity, &contents),
        })
    }

    /// Pins the program at `path` (on a bpffs), where a daemon started
    /// later finds it; only a program loaded by this process.
    pub fn pin(&mut self, path: &std::path::Path) -> Result<()> {
        let ebpf = self
            .ebpf
            .as_mut()
            .ok_or_else(|| Error::Invalid("an adopted program is not pinned again".into()))?;
        program_mut(ebpf)?
            .pin(path)
            .map_err(|error| Error::Invalid(format!("pinning at {}: {error}", path.display())))
    }

    /// Kernel id of the program.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Whether the program was adopted rather than loaded by this process.
    pub fn is_adopted(&self) -> bool {
        self.ebpf.is_none()
    }

    /// Sizes of the maps.
    pub fn capacity(&self) -> Capacity {
        self.programmer.capacity()
    }

    /// The XDP program (for BPF_PROG_TEST_RUN); only when loaded here.
    pub fn program(&self) -> Result<&Xdp> {
        let program = self
            .ebpf
            .as_ref()
            .and_then(|ebpf| ebpf.program(names::PROGRAM))
            .ok_or(Error::Missing(names::PROGRAM))?;
        program.try_into().map_err(Error::from)
    }

    /// Attaches to the interface `ifindex` of this thread's namespace. The
    /// program stays attached when this process exits.
    pub fn attach(&self, ifindex: u32, mode: XdpMode) -> Result<XdpMode> {
        let fd = self.fd()?;
        attach::attach(ifindex, fd.as_fd(), mode)
    }

    fn fd(&self) -> Result<ProgramFd> {
        match self.program() {
            Ok(program) => Ok(program.fd()?.try_clone().map_err(ProgramError::from)?),
            Err(_) => Ok(program_info(self.id)?.fd()?),
        }
    }

    /// Instructions the verifier processed when it accepted the program.
    pub fn verified_instructions(&self) -> Result<Option<u32>> {
        Ok(program_info(self.id)?.verified_instruction_count())
    }

    pub fn programmer(&self) -> &Programmer<BpfMaps> {
        &self.programmer
    }

    pub fn programmer_mut(&mut self) -> &mut Programmer<BpfMaps> {
        &mut self.programmer
    }

    /// The program's maps (counters).
    pub fn maps(&self) -> &BpfMaps {
        self.programmer.maps()
    }
}

fn program_info(id: u32) -> Result<ProgramInfo> {
    for info in loaded_programs() {
        let info = info?;
        if info.id() == id {
            return Ok(info);
        }
    }
    Err(Error::Invalid(format!("no BPF program with id {id}")))
}

fn program_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    let program = ebpf
        .program_mut(names::PROGRAM)
        .ok_or(Error::Missing(names::PROGRAM))?;
    program
        .try_into()
        .map_err(|e: ProgramError| Error::Program(e))
}
