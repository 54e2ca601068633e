//! Indices of the counters in the balancer's per-CPU `STATS` value
//! (`lb_common::Stats::counters`). Each packet bumps exactly one verdict
//! counter; the event counters below them count flow table results and
//! special paths in addition (packets only).

/// Not IPv4 or IPv6 (ARP, LLDP, ...): passed to the kernel.
pub const PASS_NOT_IP: u32 = 0;
/// IP, but not for a virtual server (other addresses, other ports or
/// protocols of a VIP address, ICMP that is not an error about a VIP flow,
/// such as a ping the VRRP master answers): passed untouched.
pub const PASS_NOT_VIP: u32 = 1;
/// Headers the balancer does not parse (stacked VLAN tags, IPv6 extension
/// headers other than Fragment): passed to the kernel.
pub const PASS_UNSUPPORTED: u32 = 2;
/// Encapsulated to a backend and transmitted.
pub const TX_TUNNEL: u32 = 3;
/// MAC rewritten to a backend's (L2 DSR) and transmitted.
pub const TX_DSR: u32 = 4;
/// Truncated or inconsistent headers: dropped.
pub const DROP_MALFORMED: u32 = 5;
/// The virtual server has no usable backend for this packet: dropped.
pub const DROP_NO_BACKEND: u32 = 6;
/// The packet could not be grown for the tunnel header: dropped.
pub const DROP_ENCAP_FAILED: u32 = 7;

/// Flow table: entry found and its backend used.
pub const FLOW_HIT: u32 = 8;
/// Flow table: no entry; backend picked from the ring.
pub const FLOW_MISS: u32 = 9;
/// Flow table: entry found but its backend is down or gone; re-hashed.
pub const FLOW_REHASH: u32 = 10;
/// IP fragments forwarded (balanced on addresses only).
pub const FRAGMENTS: u32 = 11;
/// ICMP "fragmentation needed" / ICMPv6 "packet too big" forwarded to the
/// backend of the flow they are about.
pub const ICMP_ERRORS: u32 = 12;

pub const COUNT: u32 = 13;

/// Metric label of each index, in order.
pub const NAMES: [&str; COUNT as usize] = [
    "pass_not_ip",
    "pass_not_vip",
    "pass_unsupported",
    "tx_tunnel",
    "tx_dsr",
    "drop_malformed",
    "drop_no_backend",
    "drop_encap_failed",
    "flow_hit",
    "flow_miss",
    "flow_rehash",
    "fragments",
    "icmp_errors",
];

/// The first index that is an event rather than a verdict.
pub const FIRST_EVENT: u32 = FLOW_HIT;

/// Indices of the decapsulation program's `DECAP_STATS` array.
pub mod decap {
    /// Not a tunnel packet for a configured VIP: passed untouched.
    pub const PASS_OTHER: u32 = 0;
    /// Outer header removed; inner packet passed to the kernel.
    pub const DECAPSULATED: u32 = 1;
    /// A tunnel packet with truncated or inconsistent headers: dropped.
    pub const DROP_MALFORMED: u32 = 2;
    pub const COUNT: u32 = 3;
    pub const NAMES: [&str; COUNT as usize] = ["pass_other", "decapsulated", "drop_malformed"];
}
