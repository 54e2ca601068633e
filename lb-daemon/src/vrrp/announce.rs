//! Announcing the virtual addresses on becoming Master (RFC 5798 §6.4.1,
//! §6.4.2): a gratuitous ARP request per IPv4 address (RFC 5227 §3) and an
//! unsolicited Neighbor Advertisement per IPv6 address (RFC 4861 §7.2.6),
//! built here and sent as whole Ethernet frames through an `AF_PACKET`
//! socket on the instance's interface.
use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use super::packet::pseudo_header_checksum;

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const BROADCAST: [u8; 6] = [0xff; 6];
/// 33:33 + the low 32 bits of ff02::1 (RFC 2464 §7).
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const IPPROTO_ICMPV6: u8 = 58;
const NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// Shortest Ethernet frame without the FCS.
const MIN_FRAME: usize = 60;

/// A gratuitous ARP request for `address` from `mac`: sender and target
/// protocol address are both `address`, sent to the broadcast address.
pub fn gratuitous_arp(mac: [u8; 6], address: Ipv4Addr) -> Vec<u8> {
    let mut frame = ethernet(BROADCAST, mac, ETH_P_ARP);
    frame.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]); // Ethernet, IPv4, request
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&address.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&address.octets());
    frame.resize(MIN_FRAME, 0);
    frame
}

/// An unsolicited Neighbor Advertisement for `address` to all nodes, with
/// the Override flag and the target link-layer address option.
pub fn unsolicited_na(mac: [u8; 6], address: Ipv6Addr) -> Vec<u8> {
    let mut icmp = vec![NEIGHBOR_ADVERTISEMENT, 0, 0, 0, 0x20, 0, 0, 0]; // O flag
    icmp.extend_from_slice(&address.octets());
    icmp.extend_from_slice(&[2, 1]); // target link-layer address, 8 bytes
    icmp.extend_from_slice(&mac);
    let sum = pseudo_header_checksum(IPPROTO_ICMPV6, &icmp, address.into(), ALL_NODES.into());
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());

    let mut frame = ethernet(ALL_NODES_MAC, mac, ETH_P_IPV6);
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    frame.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    frame.extend_from_slice(&[IPPROTO_ICMPV6, 255]);
    frame.extend_from_slice(&address.octets());
    frame.extend_from_slice(&ALL_NODES.octets());
    frame.extend_from_slice(&icmp);
    frame
}

fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut frame = Vec::with_capacity(86);
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame
}

/// The announcement frame for each address.
pub fn frames(mac: [u8; 6], addresses: &[IpAddr]) -> Vec<Vec<u8>> {
    addresses
        .iter()
        .map(|address| match address {
            IpAddr::V4(a) => gratuitous_arp(mac, *a),
            IpAddr::V6(a) => unsolicited_na(mac, *a),
        })
        .collect()
}

/// Sends whole Ethernet `frames` out of interface `ifindex`.
pub fn send(ifindex: u32, frames: &[Vec<u8>]) -> io::Result<()> {
    // SAFETY: plain socket(2); the result is checked. Protocol 0: this
    // socket only sends.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that we own.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    for frame in frames {
        // SAFETY: sockaddr_ll is plain data; zeroed is valid.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_ifindex = ifindex as i32;
        address.sll_halen = 6;
        address.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: valid buffer and address for the duration of the call.
        let sent = unsafe {
            libc::sendto(
                socket.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&address as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];

    #[test]
    fn gratuitous_arp_bytes() {
        let frame = gratuitous_arp(MAC, Ipv4Addr::new(192, 0, 2, 100));
        let expected = "ffffffffffff02000000000a0806\
                        0001080006040001 02000000000a c0000264 000000000000 c0000264";
        let expected: String = expected.split_whitespace().collect();
        let hex: String = frame[..42].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
        assert_eq!(frame.len(), MIN_FRAME);
    }

    #[test]
    fn unsolicited_na_parses_with_a_valid_checksum() {
        let vip: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let frame = unsolicited_na(MAC, vip);
        let parsed = etherparse::SlicedPacket::from_ethernet(&frame).unwrap();
        let Some(etherparse::NetSlice::Ipv6(ip)) = parsed.net else {
            panic!("not IPv6: {parsed:?}");
        };
        assert_eq!(ip.header().hop_limit(), 255);
        assert_eq!(ip.header().destination_addr(), ALL_NODES);
        let Some(etherparse::TransportSlice::Icmpv6(icmp)) = parsed.transport else {
            panic!("not ICMPv6");
        };
        assert_eq!(
            icmp.icmp_type(),
            etherparse::Icmpv6Type::NeighborAdvertisement(
                etherparse::icmpv6::NeighborAdvertisementHeader {
                    router: false,
                    solicited: false,
                    r#override: true,
                }
            )
        );
        let icmp_bytes = &frame[54..];
        assert_eq!(
            pseudo_header_checksum(IPPROTO_ICMPV6, icmp_bytes, vip.into(), ALL_NODES.into()),
            0
        );
        assert_eq!(&icmp_bytes[8..24], &vip.octets());
        assert_eq!(&icmp_bytes[24..], &[2, 1, 2, 0, 0, 0, 0, 0x0a]);
    }
}
