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
