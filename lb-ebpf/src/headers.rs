//! Wire layouts of the headers the programs read and write. Multi-byte
//! integers are in network byte order (`_be`); the structs are read and
//! written in place through [`crate::packet`] pointers.

pub const ETH_P_IPV4_BE: u16 = 0x0800u16.to_be();
pub const ETH_P_IPV6_BE: u16 = 0x86ddu16.to_be();
pub const ETH_P_8021Q_BE: u16 = 0x8100u16.to_be();
pub const ETH_P_8021AD_BE: u16 = 0x88a8u16.to_be();

/// Ethernet II header.
#[repr(C)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ether_type_be: u16,
}
pub const ETH_LEN: usize = 14;

/// 802.1Q tag, after the MAC addresses: TCI then the inner EtherType.
#[repr(C)]
pub struct VlanHdr {
    pub tci_be: u16,
    pub ether_type_be: u16,
}
pub const VLAN_LEN: usize = 4;

/// IPv4 header without options (RFC 791 §3.1).
#[repr(C)]
pub struct Ipv4Hdr {
    pub version_ihl: u8,
    pub tos: u8,
    pub total_len_be: u16,
    pub id_be: u16,
    pub frag_off_be: u16,
    pub ttl: u8,
    pub proto: u8,
    pub check: u16,
    pub src: [u8; 4],
    pub dst: [u8; 4],
}
pub const IPV4_LEN: usize = 20;
/// "More fragments" flag and fragment offset bits of `frag_off_be`.
pub const IPV4_MF_OFFSET_MASK_BE: u16 = 0x3fffu16.to_be();

/// IPv6 fixed header (RFC 8200 §3).
#[repr(C)]
pub struct Ipv6Hdr {
    /// Version (4 bits), traffic class (8), flow label (20).
    pub vtc_flow_be: u32,
    pub payload_len_be: u16,
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}
pub const IPV6_LEN: usize = 40;

/// IPv6 Fragment extension header (RFC 8200 §4.5).
#[repr(C)]
pub struct Ipv6FragHdr {
    pub next_header: u8,
    pub reserved: u8,
    pub frag_off_be: u16,
    pub id_be: u32,
}
pub const IPV6_FRAG_LEN: usize = 8;

/// The first four bytes of TCP and UDP: the ports.
#[repr(C)]
pub struct PortsHdr {
    pub src_be: u16,
    pub dst_be: u16,
}

/// TCP header without options (RFC 9293 §3.1).
#[repr(C)]
pub struct TcpHdr {
    pub src_be: u16,
    pub dst_be: u16,
    pub seq_be: u32,
    pub ack_be: u32,
    /// Data offset (4 bits) and reserved bits.
    pub data_off: u8,
    pub flags: u8,
    pub window_be: u16,
    pub check: u16,
    pub urgent_be: u16,
}
pub const TCP_LEN: usize = 20;
/// `TcpHdr::flags` bits.
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// ICMP / ICMPv6 header; errors are followed by the offending packet.
#[repr(C)]
pub struct IcmpHdr {
    pub kind: u8,
    pub code: u8,
    pub check: u16,
    pub rest: u32,
}
pub const ICMP_LEN: usize = 8;
/// ICMP destination unreachable, code "fragmentation needed" (RFC 1191).
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_FRAG_NEEDED: u8 = 4;
/// ICMPv6 "packet too big" (RFC 4443 §3.2).
pub const ICMPV6_PACKET_TOO_BIG: u8 = 2;
