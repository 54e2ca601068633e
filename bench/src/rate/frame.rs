//! The generator's frame template and the partial checksums that let the
//! XDP generator complete each frame's checksums in a few instructions.
use std::net::Ipv4Addr;

use lb_common::{
    bench::{FRAME_LEN, GenConfig},
    proto,
};

/// The generated traffic: who sends it where.
#[derive(Clone, Copy, Debug)]
pub struct Endpoints {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// Source addresses are `a.b.x.y` with `x.y = 0x8000 + flow / 32768`.
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub dst_port: u16,
}

/// The L4 protocol of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Udp,
    Tcp,
}

impl Protocol {
    /// The protocol of [`Protocol::name`] `name`.
    pub fn parse(name: &str) -> Option<Protocol> {
        [Protocol::Udp, Protocol::Tcp]
            .into_iter()
            .find(|p| p.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
        }
    }

    pub fn number(self) -> u8 {
        match self {
            Protocol::Udp => proto::UDP,
            Protocol::Tcp => proto::TCP,
        }
    }
}

const ETH: usize = 14;
const IP: usize = 20;

/// The generator's configuration for `flows` flows of `protocol` between
/// `endpoints`: a template with the varying fields zero, and the
/// ones'-complement sums of everything else.
pub fn config(endpoints: &Endpoints, protocol: Protocol, flows: u32) -> GenConfig {
    let mut frame = [0u8; FRAME_LEN];
    frame[0..6].copy_from_slice(&endpoints.dst_mac);
    frame[6..12].copy_from_slice(&endpoints.src_mac);
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());

    let ip_len = (FRAME_LEN - ETH) as u16;
    let l4_len = ip_len - IP as u16;
    let mut src = endpoints.src.octets();
    src[2] = 0;
    src[3] = 0;
    let ip = &mut frame[ETH..ETH + IP];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // don't fragment
    ip[8] = 64;
    ip[9] = protocol.number();
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&endpoints.dst.octets());

    let l4 = &mut frame[ETH + IP..];
    l4[2..4].copy_from_slice(&endpoints.dst_port.to_be_bytes());
    match protocol {
        Protocol::Udp => l4[4..6].copy_from_slice(&l4_len.to_be_bytes()),
        Protocol::Tcp => {
            l4[4..8].copy_from_slice(&1u32.to_be_bytes()); // sequence
            l4[8..12].copy_from_slice(&1u32.to_be_bytes()); // acknowledgement
            l4[12] = 5 << 4; // data offset: 5 words
            l4[13] = 0x10; // ACK: traffic of established connections
            l4[14..16].copy_from_slice(&0xffffu16.to_be_bytes()); // window
        }
    }

    let ip_partial = sum(&frame[ETH..ETH + IP]);
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&src);
    pseudo[4..8].copy_from_slice(&endpoints.dst.octets());
    pseudo[9] = protocol.number();
    pseudo[10..12].copy_from_slice(&l4_len.to_be_bytes());
    let l4_partial = sum(&pseudo) + sum(&frame[ETH + IP..]);
    GenConfig {
        flows: flows.max(1),
        reserved: 0,
        ip_partial,
        l4_partial,
        template: frame,
    }
}

/// The ones'-complement sum of big-endian 16-bit words, unfolded.
fn sum(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum()
}

/// The source address and port of flow `flow`, as the generator makes them.
pub fn flow_source(endpoints: &Endpoints, flow: u32) -> (Ipv4Addr, u16) {
    let low = 0x8000 + (flow >> 15);
    let mut src = endpoints.src.octets();
    src[2] = (low >> 8) as u8;
    src[3] = low as u8;
    (Ipv4Addr::from(src), 1024 + (flow & 0x7fff) as u16)
}

#[cfg(test)]
mod tests {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    use super::*;
    use lb_common::bench::offset;

    /// What `lb_trafficgen` does to the template for flow `flow`.
    fn complete(config: &GenConfig, flow: u32) -> [u8; FRAME_LEN] {
        let fold = |sum: u32| {
            let sum = (sum & 0xffff) + (sum >> 16);
            ((sum & 0xffff) + (sum >> 16)) as u16
        };
        let mut frame = config.template;
        let source_low = 0x8000 + (flow >> 15);
        let port = 1024 + (flow & 0x7fff);
        let put = |frame: &mut [u8; FRAME_LEN], at: usize, value: u16| {
            frame[at..at + 2].copy_from_slice(&value.to_be_bytes());
        };
        put(&mut frame, offset::IPV4_SOURCE_LOW, source_low as u16);
        put(&mut frame, offset::L4_SOURCE_PORT, port as u16);
        put(
            &mut frame,
            offset::IPV4_CHECK,
            !fold(config.ip_partial + source_low),
        );
        let l4 = !fold(config.l4_partial + source_low + port);
        if frame[ETH + 9] == proto::UDP {
            put(
                &mut frame,
                offset::UDP_CHECK,
                if l4 == 0 { 0xffff } else { l4 },
            );
        } else {
            put(&mut frame, offset::TCP_CHECK, l4);
        }
        frame
    }

    #[test]
    fn partial_sums_complete_to_valid_checksums() {
        let endpoints = Endpoints {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: Ipv4Addr::new(198, 18, 0, 0),
            dst: Ipv4Addr::new(192, 0, 2, 100),
            dst_port: 80,
        };
        for protocol in [Protocol::Udp, Protocol::Tcp] {
            let config = config(&endpoints, protocol, 65_536);
            for flow in [0, 1, 32_767, 32_768, 65_535] {
                let frame = complete(&config, flow);
                let packet = SlicedPacket::from_ethernet(&frame).unwrap();
                let Some(NetSlice::Ipv4(ip)) = &packet.net else {
                    panic!("not IPv4");
                };
                let ip = ip.header().to_header();
                assert_eq!(ip.header_checksum, ip.calc_header_checksum());
                let (source, port) = flow_source(&endpoints, flow);
                assert_eq!(ip.source, source.octets());
                match &packet.transport {
                    Some(TransportSlice::Udp(udp)) => {
                        let h = udp.to_header();
                        assert_eq!(h.source_port, port);
                        assert_eq!(
                            h.checksum,
                            h.calc_checksum_ipv4(&ip, udp.payload()).unwrap()
                        );
                    }
                    Some(TransportSlice::Tcp(tcp)) => {
                        let h = tcp.to_header();
                        assert_eq!(h.source_port, port);
                        assert_eq!(
                            h.checksum,
                            h.calc_checksum_ipv4(&ip, tcp.payload()).unwrap()
                        );
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
    }
}
