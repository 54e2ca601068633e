//! Packet fixtures for the data-plane tests and benchmarks: crafted
//! frames, and the bytes the balancer must turn them into.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{
    IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header, PacketBuilder, TcpHeader, UdpHeader,
};
use lb_common::{flow_hash_v4, flow_hash_v6};

pub const CLIENT_MAC: [u8; 6] = [0x02, 0xc1, 0, 0, 0, 1];
pub const LB_MAC: [u8; 6] = [0x02, 0x1b, 0, 0, 0, 1];
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 7);

/// The data plane's flow hash of an IPv4 flow (ports in host order), as
/// the balancer computes it for the packets built here.
pub fn hash4(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, protocol: u8) -> u32 {
    flow_hash_v4(
        src.octets(),
        dst.octets(),
        sport.to_be(),
        dport.to_be(),
        protocol,
    )
}

/// [`hash4`] for IPv6.
pub fn hash6(src: Ipv6Addr, sport: u16, dst: Ipv6Addr, dport: u16, protocol: u8) -> u32 {
    flow_hash_v6(
        &src.octets(),
        &dst.octets(),
        sport.to_be(),
        dport.to_be(),
        protocol,
    )
}

/// Where the IP header starts in a frame built here.
pub fn l3_offset(frame: &[u8]) -> usize {
    if frame[12..14] == [0x81, 0x00] {
        18
    } else {
        14
    }
}

/// A TCP segment from `src` to `dst` (same family), optionally with SYN.
pub fn tcp(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, syn: bool) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC);
    let mut out = Vec::new();
    let payload = b"GET / HTTP/1.1\r\n\r\n";
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let b = eth
                .ipv4(s.octets(), d.octets(), 64)
                .tcp(sport, dport, 1000, 64240);
            let b = if syn { b.syn() } else { b.ack(1) };
            b.write(&mut out, if syn { &[] } else { payload }).unwrap();
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let b = eth
                .ipv6(s.octets(), d.octets(), 64)
                .tcp(sport, dport, 1000, 64240);
            let b = if syn { b.syn() } else { b.ack(1) };
            b.write(&mut out, if syn { &[] } else { payload }).unwrap();
        }
        _ => panic!("mixed families"),
    }
    out
}

/// A UDP datagram from `src` to `dst` (same family).
pub fn udp(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC);
    let mut out = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth
            .ipv4(s.octets(), d.octets(), 64)
            .udp(sport, dport)
            .write(&mut out, b"query")
            .unwrap(),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth
            .ipv6(s.octets(), d.octets(), 64)
            .udp(sport, dport)
            .write(&mut out, b"query")
            .unwrap(),
        _ => panic!("mixed families"),
    }
    out
}

/// The same frame with one 802.1Q tag (VLAN `vid`) inserted.
pub fn vlan_tagged(frame: &[u8], vid: u16) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&[0x81, 0x00]);
    out.extend_from_slice(&vid.to_be_bytes());
    out.extend_from_slice(&frame[12..]);
    out
}

/// An IPv4 frame built from a header and payload as given (options,
/// fragment fields and lengths untouched), checksum computed.
pub fn ipv4_raw(mut header: Ipv4Header, payload: &[u8]) -> Vec<u8> {
    header.header_checksum = header.calc_header_checksum();
    let mut out = Vec::new();
    out.extend_from_slice(&LB_MAC);
    out.extend_from_slice(&CLIENT_MAC);
    out.extend_from_slice(&[0x08, 0x00]);
    header.write(&mut out).unwrap();
    out.extend_from_slice(payload);
    out
}

/// TCP header bytes (checksum left zero: the balancer never reads it).
pub fn tcp_header_bytes(sport: u16, dport: u16) -> Vec<u8> {
    let mut out = Vec::new();
    TcpHeader::new(sport, dport, 1, 1000)
        .write(&mut out)
        .unwrap();
    out
}

pub fn udp_header_bytes(sport: u16, dport: u16, len: u16) -> Vec<u8> {
    let header = UdpHeader {
        source_port: sport,
        destination_port: dport,
        length: len,
        checksum: 0,
    };
    header.to_bytes().to_vec()
}

/// IPv4 ICMP "fragmentation needed" from `router` to `vip` about a packet
/// `vip:vip_port -> client:client_port` (the balanced flow's reply).
pub fn icmp_frag_needed(
    router: Ipv4Addr,
    vip: Ipv4Addr,
    vip_port: u16,
    client: Ipv4Addr,
    client_port: u16,
) -> Vec<u8> {
    let mut quoted = Vec::new();
    let mut q = Ipv4Header::new(40, 63, IpNumber::TCP, vip.octets(), client.octets()).unwrap();
    q.header_checksum = q.calc_header_checksum();
    q.write(&mut quoted).unwrap();
    quoted.extend_from_slice(&tcp_header_bytes(vip_port, client_port)[..8]);
    let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0x00]; // MTU 1280
    icmp.extend_from_slice(&quoted);
    let csum = internet_checksum(&icmp);
    icmp[2..4].copy_from_slice(&csum.to_be_bytes());
    let header = Ipv4Header::new(
        icmp.len() as u16,
        64,
        IpNumber::ICMP,
        router.octets(),
        vip.octets(),
    )
    .unwrap();
    ipv4_raw(header, &icmp)
}

/// ICMPv6 "packet too big" from `router` to `vip` about `vip -> client`.
pub fn icmpv6_packet_too_big(
    router: Ipv6Addr,
    vip: Ipv6Addr,
    vip_port: u16,
    client: Ipv6Addr,
    client_port: u16,
) -> Vec<u8> {
    let mut quoted = Vec::new();
    Ipv6Header {
        traffic_class: 0,
        flow_label: Ipv6FlowLabel::ZERO,
        payload_length: 20,
        next_header: IpNumber::TCP,
        hop_limit: 63,
        source: vip.octets(),
        destination: client.octets(),
    }
    .write(&mut quoted)
    .unwrap();
    quoted.extend_from_slice(&tcp_header_bytes(vip_port, client_port));
    let mut icmp = vec![2, 0, 0, 0, 0, 0, 0x05, 0x00];
    icmp.extend_from_slice(&quoted);
    let mut out = Vec::new();
    out.extend_from_slice(&LB_MAC);
    out.extend_from_slice(&CLIENT_MAC);
    out.extend_from_slice(&[0x86, 0xdd]);
    Ipv6Header {
        traffic_class: 0,
        flow_label: Ipv6FlowLabel::ZERO,
        payload_length: icmp.len() as u16,
        next_header: IpNumber::IPV6_ICMP,
        hop_limit: 64,
        source: router.octets(),
        destination: vip.octets(),
    }
    .write(&mut out)
    .unwrap();
    out.extend_from_slice(&icmp);
    out
}

/// RFC 1071 checksum of `bytes`.
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum = 0u32;
    for chunk in bytes.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What tunnel mode must make of `frame` for a backend at `backend`
/// (MAC `mac`): Ethernet to the backend from the balancer's MAC (keeping
/// a VLAN tag), an outer header from the tunnel source derived from
/// `hash`, and the original IP packet unchanged.
pub fn tunnelled(frame: &[u8], backend: IpAddr, mac: [u8; 6], hash: u32) -> Vec<u8> {
    let l3 = l3_offset(frame);
    let inner = &frame[l3..];
    let inner_v4 = inner[0] >> 4 == 4;
    let tos = if inner_v4 {
        inner[1]
    } else {
        ((u16::from_be_bytes([inner[0], inner[1]]) >> 4) & 0xff) as u8
    };
    let inner_proto = if inner_v4 {
        IpNumber::IPV4
    } else {
        IpNumber::IPV6
    };
    let mut out = Vec::new();
    out.extend_from_slice(&mac);
    out.extend_from_slice(&frame[0..6]);
    if l3 == 18 {
        out.extend_from_slice(&frame[12..16]);
    }
    let h = hash.to_be_bytes();
    match backend {
        IpAddr::V4(b) => {
            out.extend_from_slice(&[0x08, 0x00]);
            let mut outer = Ipv4Header::new(
                inner.len() as u16,
                64,
                inner_proto,
                [172, 16, h[2], h[3]],
                b.octets(),
            )
            .unwrap();
            outer.dont_fragment = false;
            outer.dscp = etherparse::IpDscp::try_new(tos >> 2).unwrap();
            outer.ecn = etherparse::IpEcn::try_new(tos & 3).unwrap();
            outer.header_checksum = outer.calc_header_checksum();
            outer.write(&mut out).unwrap();
        }
        IpAddr::V6(b) => {
            out.extend_from_slice(&[0x86, 0xdd]);
            let mut src = [0u8; 16];
            src[0] = 0xfd;
            src[12..].copy_from_slice(&h);
            Ipv6Header {
                traffic_class: tos,
                flow_label: Ipv6FlowLabel::try_new(hash & 0xfffff).unwrap(),
                payload_length: inner.len() as u16,
                next_header: inner_proto,
                hop_limit: 64,
                source: src,
                destination: b.octets(),
            }
            .write(&mut out)
            .unwrap();
        }
    }
    out.extend_from_slice(inner);
    out
}

/// What dsr mode must make of `frame`: only the MACs change.
pub fn dsr(frame: &[u8], mac: [u8; 6]) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[0..6].copy_from_slice(&mac);
    out[6..12].copy_from_slice(&frame[0..6]);
    out
}

/// A readable dump for failure messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .enumerate()
        .map(|(i, row)| {
            let cells: Vec<String> = row.iter().map(|b| format!("{b:02x}")).collect();
            format!("{:04x}  {}", i * 16, cells.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}
