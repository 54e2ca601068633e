//! Types of the benchmark programs (`lb-trafficgen`, `lb-macswap`,
//! `lb-flow-floor`): the packet generator's configuration and the sink's
//! counters.

/// Bytes of every generated frame (Ethernet + IPv4 + UDP or TCP + zero
/// payload; 64 bytes as on the wire minus nothing: veth has no FCS).
pub const FRAME_LEN: usize = 64;

/// The generator's configuration, entry 0 of `GEN_CONFIG`.
///
/// Every call writes the whole `template` over the frame (the kernel does
/// not restore recycled pages, and the device under test rewrites them),
/// then makes frame `n` of each CPU flow `n % flows`: the low 16 bits of
/// the IPv4 source are `0x8000 + flow / 32768` and the L4 source port
/// `1024 + flow % 32768`. Checksums are completed from partial sums taken
/// with those fields zero.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GenConfig {
    /// Number of distinct flows (at least 1).
    pub flows: u32,
    /// Zero (explicit padding).
    pub reserved: u32,
    /// Ones'-complement sum (unfolded) of the IPv4 header with its
    /// checksum and the low 16 bits of the source zero.
    pub ip_partial: u32,
    /// Same for the L4 pseudo-header, header and payload, with the source
    /// port, the checksum and the low 16 bits of the source zero.
    pub l4_partial: u32,
    pub template: [u8; FRAME_LEN],
}

/// Offsets in the frame (Ethernet, then a 20-byte IPv4 header).
pub mod offset {
    pub const IPV4_CHECK: usize = 14 + 10;
    pub const IPV4_SOURCE_LOW: usize = 14 + 14;
    pub const L4_SOURCE_PORT: usize = 14 + 20;
    pub const UDP_CHECK: usize = 14 + 20 + 6;
    pub const TCP_CHECK: usize = 14 + 20 + 16;
}

/// What the sink counts, indices of `SINK_STATS`.
pub mod sink {
    /// Every frame.
    pub const TOTAL: u32 = 0;
    /// IPv4 carrying IPv4 (the balancer's tunnel).
    pub const IPIP: u32 = 1;
    /// IPv4 to the address in `SINK_VIP` (unchanged destination).
    pub const TO_VIP: u32 = 2;
    /// Any other IPv4 (a destination rewritten, e.g. by DNAT).
    pub const OTHER_IPV4: u32 = 3;
    /// Not IPv4.
    pub const NOT_IPV4: u32 = 4;
    pub const COUNT: u32 = 5;
}

/// Names in the `lb-trafficgen`, `lb-macswap` and `lb-flow-floor` objects.
pub mod names {
    pub const GENERATOR: &str = "lb_trafficgen";
    pub const GEN_CONFIG: &str = "GEN_CONFIG";
    /// Per-CPU `u64`: frames this CPU generated.
    pub const GEN_SENT: &str = "GEN_SENT";
    pub const SINK: &str = "lb_sink";
    /// Per-CPU `u64` counters indexed by [`super::sink`].
    pub const SINK_STATS: &str = "SINK_STATS";
    /// Global `[u8; 4]`: the VIP, for [`super::sink::TO_VIP`].
    pub const SINK_VIP: &str = "SINK_VIP";
    pub const MACSWAP: &str = "lb_macswap";
    pub const FLOW_FLOOR: &str = "lb_flow_floor";
}

const _: () = assert!(core::mem::size_of::<GenConfig>() == 16 + FRAME_LEN);

#[cfg(feature = "user")]
// SAFETY: repr(C), only integers and byte arrays, no padding (asserted).
unsafe impl aya::Pod for GenConfig {}
