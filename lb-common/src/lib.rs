//! Types shared by the XDP programs (`lb-ebpf`) and the daemon (`lb-daemon`).
//!
//! Every map key and value here is `#[repr(C)]`, holds only fixed-width
//! integers and byte arrays, and spells its padding out as a zeroed field:
//! the kernel hashes keys byte for byte, so garbage padding would make
//! lookups miss. A `const` assertion pins the size of each type.
//!
//! Byte order is part of the name: `_be` fields hold network byte order
//! exactly as on the wire; addresses are byte arrays in wire order.
#![no_std]

pub mod bench;
pub mod flow_table;
pub mod hash;
pub mod stats;

pub use hash::{flow_hash_v4, flow_hash_v6, ring_slot, vip_filter_slot_v4, vip_filter_slot_v6};

/// IP protocol numbers used by the data plane.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const IPIP: u8 = 4;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const IPV6: u8 = 41;
    pub const IPV6_FRAGMENT: u8 = 44;
    pub const ICMPV6: u8 = 58;
}

/// Names of the maps and globals in the balancer object (`lb-balancer`).
pub mod names {
    pub const PROGRAM: &str = "lb_balancer";
    pub const VIPS_V4: &str = "VIPS_V4";
    pub const VIPS_V6: &str = "VIPS_V6";
    pub const RINGS: &str = "RINGS";
    pub const BACKENDS: &str = "BACKENDS";
    pub const VIP_FILTER: &str = "VIP_FILTER";
    pub const FLOWS_V4: &str = "FLOWS_V4";
    pub const FLOWS_V6: &str = "FLOWS_V6";
    pub const STATS: &str = "STATS";
    /// Per-CPU [`crate::Traffic`]: entry `id` for backend `id`, entry
    /// `max_backends + i` for virtual server index `i` (what backends that
    /// left it had; the daemon alone writes these).
    pub const TRAFFIC: &str = "TRAFFIC";
    /// Globals: `sets - 1` of each flow table (`flow_table::sets`).
    pub const FLOW_SET_MASK_V4: &str = "FLOW_SET_MASK_V4";
    pub const FLOW_SET_MASK_V6: &str = "FLOW_SET_MASK_V6";
    /// Global: number of slots in one Maglev ring (a prime).
    pub const RING_SIZE: &str = "RING_SIZE";
    /// Global: base of the IPv4 tunnel source addresses (`[u8; 4]`); the
    /// low 16 bits are replaced by the flow hash.
    pub const TUNNEL_SOURCE_V4: &str = "TUNNEL_SOURCE_V4";
    /// Global: base of the IPv6 tunnel source addresses (`[u8; 16]`); the
    /// low 32 bits are replaced by the flow hash.
    pub const TUNNEL_SOURCE_V6: &str = "TUNNEL_SOURCE_V6";

    /// The backend-side decapsulation object (`lb-decap`).
    pub const DECAP_PROGRAM: &str = "lb_decap";
    pub const DECAP_VIPS_V4: &str = "DECAP_VIPS_V4";
    pub const DECAP_VIPS_V6: &str = "DECAP_VIPS_V6";
    pub const DECAP_STATS: &str = "DECAP_STATS";
}

/// `BPF_F_MMAPABLE`: an array userspace maps into its memory. `RINGS` is
/// one, so that the daemon writes ring slots with plain stores instead of
/// one system call per slot.
pub const MAP_F_MMAPABLE: u32 = 1 << 10;

/// Ring slots per `RINGS` element. The kernel stores array values in
/// 8-byte units, so the slots (backend ids, 4 bytes) are grouped into
/// elements of one cache line: 4 bytes per slot, and the array is then
/// one flat run of u32 slots in memory (and in the daemon's mapping).
pub const RING_BLOCK_SLOTS: usize = 16;

/// One `RINGS` element: [`RING_BLOCK_SLOTS`] consecutive slots of the flat
/// ring array (slot `s` of ring `r` is flat slot `r * RING_SIZE + s`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingBlock {
    pub slots: [u32; RING_BLOCK_SLOTS],
}

/// `RINGS` elements that hold `slots` flat slots.
pub const fn ring_blocks(slots: u32) -> u32 {
    slots.div_ceil(RING_BLOCK_SLOTS as u32)
}

/// Default sizes of the balancer's maps; the daemon may resize them at load.
pub mod limits {
    /// Virtual servers (each owns two rings, see [`crate::VipMeta::ring_id`]).
    pub const MAX_VIPS: u32 = 64;
    /// Backend slots; id 0 is never used so that an empty ring slot reads 0.
    pub const MAX_BACKENDS: u32 = 16_384;
    /// Flows of each flow table (IPv4 and IPv6).
    pub const FLOW_TABLE_SIZE: u32 = 1 << 20;
    pub const RING_SIZE: u32 = 65_537;
    pub const DECAP_VIPS: u32 = 1024;
    /// Slots of `VIP_FILTER` (a power of two, see [`crate::vip_filter_slot_v4`]).
    pub const VIP_FILTER_SLOTS: u32 = 1 << VIP_FILTER_BITS;
    pub const VIP_FILTER_BITS: u32 = 12;
}

/// `VIP_FILTER` slot flags. The filter is an array indexed by a hash of the
/// destination address ([`vip_filter_slot_v4`], [`vip_filter_slot_v6`]);
/// a slot holds the union of the flags of every VIP address hashing to it.
/// A packet whose slot is 0 is not for a VIP and passes without a single
/// hash-map lookup; a non-zero slot may be a collision, so the VIP map
/// still decides.
///
/// Some virtual server on an address of this slot has a port.
pub const VIP_FILTER_PORT: u32 = 1 << 0;
/// Some virtual server on an address of this slot takes all ports (port 0).
pub const VIP_FILTER_ANY_PORT: u32 = 1 << 1;

/// `Vip4Key::kind` / `Vip6Key::kind`: a lookup by destination port. Port 0
/// is the catch-all entry of an address, tried when no exact port matches.
pub const VIP_KIND_PORT: u8 = 0;
/// `kind` of the entry that IP fragments of an address are balanced by.
/// Fragments after the first carry no ports, so every fragment of a datagram
/// is hashed on (source, destination, protocol) only and looked up under
/// port 0 with this kind; the daemon points this entry at the address's
/// port-0 virtual server, or else at the one with the lowest port.
pub const VIP_KIND_FRAGMENT: u8 = 1;

/// Key of the IPv4 VIP map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Vip4Key {
    pub addr: [u8; 4],
    pub port_be: u16,
    pub proto: u8,
    pub kind: u8,
}

/// Key of the IPv6 VIP map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Vip6Key {
    pub addr: [u8; 16],
    pub port_be: u16,
    pub proto: u8,
    pub kind: u8,
}

/// `VipMeta::flags`: forward by L2 DSR (rewrite the destination MAC) instead
/// of IP-in-IP / IPv6 tunnelling.
pub const VIP_FLAG_DSR: u32 = 1 << 0;

/// Value of the VIP maps.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipMeta {
    /// The VIP's index (its own `TRAFFIC` entry is `max_backends +
    /// vip_index`), and owner tag of this VIP's backends.
    pub vip_index: u32,
    /// The active ring: slots `ring_id * RING_SIZE ..` of `RINGS`. Each VIP
    /// owns rings `2 * vip_index` and `2 * vip_index + 1`; the daemon writes
    /// the inactive one and then flips this field, so no packet sees a
    /// half-written ring.
    pub ring_id: u32,
    pub flags: u32,
    pub _reserved: u32,
}

pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// `Backend::flags`: the backend may receive packets. A backend without it
/// gets no packets, even of established flows: they re-hash.
pub const BACKEND_FLAG_UP: u8 = 1 << 0;
/// `Backend::flags`: its virtual server forwards by L2 DSR (the copy of
/// [`VIP_FLAG_DSR`] that established flows read, since they skip the VIP
/// lookup).
pub const BACKEND_FLAG_DSR: u8 = 1 << 1;
/// `Backend::flags`: an operator drained the backend through the admin
/// API. The program ignores it (the ring already leaves the backend out);
/// a restarted daemon that adopts the program reads it back, so that a
/// drain outlives the daemon that made it.
pub const BACKEND_FLAG_DRAINED: u8 = 1 << 2;

/// Value of `BACKENDS`, indexed by backend id (id 0 is never used).
///
/// Established flows go from the flow table straight to this entry without
/// a VIP lookup, so the entry names the virtual server it serves
/// (`vip_addr`, `vip_port_be`, `vip_proto`): a flow entry only counts if its
/// packet is addressed to that virtual server, whatever happened to ids and
/// indices since the entry was written.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    /// IPv4 in the first four bytes, or IPv6; wire order.
    pub addr: [u8; 16],
    /// The virtual server's address: IPv4 in the first four bytes (the rest
    /// zero), or IPv6; wire order.
    pub vip_addr: [u8; 16],
    /// Ethernet destination: the backend itself (dsr) or the next hop
    /// towards it (tunnel), from the kernel's neighbour table.
    pub mac: [u8; 6],
    pub family: u8,
    pub flags: u8,
    /// The VIP this backend serves (its `VipMeta::vip_index`): owner tag
    /// for new flows and index of the per-VIP counters.
    pub vip_index: u32,
    /// The virtual server's port (0: all ports) and protocol.
    pub vip_port_be: u16,
    pub vip_proto: u8,
    pub _pad: u8,
}

/// Packets and bytes (per CPU in the maps; summed by the daemon).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// The single per-CPU value of `STATS`: one counter per `stats` index, so
/// that a packet bumps its verdict and its events through one lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub counters: [Counter; stats::COUNT as usize],
}

/// Traffic forwarded: packets, bytes and the flows it started (a new flow,
/// or one moved to a new backend). Per CPU in `TRAFFIC`: for each backend,
/// the one counter a forwarded packet updates, and for each virtual server,
/// written by the daemon alone, the traffic of the backends that left it.
/// A virtual server's traffic is that plus its backends'.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
}

impl Traffic {
    /// The sum of both.
    pub const fn plus(self, other: Self) -> Self {
        Self {
            packets: self.packets + other.packets,
            bytes: self.bytes + other.bytes,
            flows: self.flows + other.flows,
        }
    }
}

const _: () = {
    assert!(core::mem::size_of::<Vip4Key>() == 8);
    assert!(core::mem::size_of::<Vip6Key>() == 20);
    assert!(core::mem::size_of::<VipMeta>() == 16);
    assert!(core::mem::size_of::<Backend>() == 48);
    assert!(core::mem::size_of::<Counter>() == 16);
    assert!(core::mem::size_of::<RingBlock>() == 64);
    assert!(core::mem::size_of::<Traffic>() == 24);
    assert!(core::mem::size_of::<Stats>() == 16 * stats::COUNT as usize);
};

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are #[repr(C)], made only of integers and byte
    // arrays, with no implicit padding (sizes are asserted above).
    unsafe impl aya::Pod for Vip4Key {}
    unsafe impl aya::Pod for Vip6Key {}
    unsafe impl aya::Pod for VipMeta {}
    unsafe impl aya::Pod for Backend {}
    unsafe impl aya::Pod for Counter {}
    unsafe impl aya::Pod for Traffic {}
    unsafe impl aya::Pod for Stats {}
    unsafe impl aya::Pod for RingBlock {}
    unsafe impl aya::Pod for flow_table::Set4 {}
    unsafe impl aya::Pod for flow_table::Set6 {}
}
