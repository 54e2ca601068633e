//! Ethernet next hops from the kernel: the route towards an address and
//! the neighbour-table entry of its next hop, through netlink. A missing or
//! stale entry is refreshed by asking the kernel to resolve it (`NTF_USE`),
//! so the daemon never sends probe traffic of its own.
use std::{io, net::IpAddr};

use crate::netlink::{Message, Reply, Socket, address, attributes};

// linux/rtnetlink.h, linux/neighbour.h
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NTF_USE: u8 = 0x01;
const NUD_REACHABLE: u16 = 0x02;
const NUD_STALE: u16 = 0x04;
const NUD_DELAY: u16 = 0x08;
const NUD_PROBE: u16 = 0x10;
const NUD_NOARP: u16 = 0x40;
const NUD_PERMANENT: u16 = 0x80;
/// States whose link-layer address can be used.
const NUD_VALID: u16 =
    NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_NOARP | NUD_PERMANENT;
/// Valid states that the kernel will not confirm by itself, since XDP
/// traffic does not count as use: refreshed by the daemon.
const NUD_UNCONFIRMED: u16 = NUD_STALE;

/// Where packets towards an address leave: the interface and the address
/// whose link-layer address they go to (a gateway or the address itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    pub ifindex: u32,
    pub next_hop: IpAddr,
}

/// A neighbour-table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub mac: [u8; 6],
    /// The kernel has not confirmed it lately.
    pub stale: bool,
}

/// The route the kernel would use towards `destination`.
pub fn route(destination: IpAddr) -> io::Result<Route> {
    let (family, bits, bytes) = family_of(destination);
    let mut request = Message::new(libc::RTM_GETROUTE, 0);
    request.header(&[family, bits, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    request.attribute(RTA_DST, &bytes);
    let mut found = None;
    Socket::open()?.query(request, |reply| {
        if reply.kind == libc::RTM_NEWROUTE {
            found = parse_route(reply, destination);
        }
    })?;
    found.ok_or_else(|| io::Error::other(format!("no route to {destination}")))
}

fn parse_route(reply: Reply<'_>, destination: IpAddr) -> Option<Route> {
    let mut route = Route {
        ifindex: 0,
        next_hop: destination,
    };
    for (kind, value) in attributes(reply.payload.get(12..)?) {
        match kind {
            RTA_OIF => route.ifindex = u32::from_ne_bytes(value.get(..4)?.try_into().ok()?),
            RTA_GATEWAY => route.next_hop = address(value)?,
            _ => {}
        }
    }
    (route.ifindex != 0).then_some(route)
}

/// The neighbour entry of `address` on `ifindex`, if it has a usable
/// link-layer address.
pub fn lookup(ifindex: u32, address: IpAddr) -> io::Result<Option<Neighbour>> {
    let mut request = Message::new(libc::RTM_GETNEIGH, 0);
    request.header(&ndmsg(address, ifindex, 0, 0));
    request.attribute(NDA_DST, &family_of(address).2);
    let mut found = None;
    let result = Socket::open()?.query(request, |reply| {
        if reply.kind == libc::RTM_NEWNEIGH {
            found = parse_neighbour(reply);
        }
    });
    match result {
        Ok(()) => Ok(found),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

fn parse_neighbour(reply: Reply<'_>) -> Option<Neighbour> {
    let state = u16::from_ne_bytes(reply.payload.get(8..10)?.try_into().ok()?);
    if state & NUD_VALID == 0 {
        return None;
    }
    let (_, lladdr) = attributes(reply.payload.get(12..)?).find(|(k, _)| *k == NDA_LLADDR)?;
    Some(Neighbour {
        mac: lladdr.get(..6)?.try_into().ok()?,
        stale: state & NUD_UNCONFIRMED != 0,
    })
}

/// Asks the kernel to resolve (or confirm) `address` on `ifindex`, as if a
/// packet were sent there; the answer lands in the neighbour table.
pub fn solicit(ifindex: u32, address: IpAddr) -> io::Result<()> {
    let mut request = Message::new(
        libc::RTM_NEWNEIGH,
        (libc::NLM_F_CREATE | libc::NLM_F_REPLACE) as u16,
    );
    request.header(&ndmsg(address, ifindex, 0, NTF_USE));
    request.attribute(NDA_DST, &family_of(address).2);
    Socket::open()?.execute(request)
}

/// `struct ndmsg`.
fn ndmsg(address: IpAddr, ifindex: u32, state: u16, flags: u8) -> [u8; 12] {
    let mut header = [0u8; 12];
    header[0] = family_of(address).0;
    header[4..8].copy_from_slice(&(ifindex as i32).to_ne_bytes());
    header[8..10].copy_from_slice(&state.to_ne_bytes());
    header[10] = flags;
    header
}

fn family_of(address: IpAddr) -> (u8, u8, Vec<u8>) {
    match address {
        IpAddr::V4(a) => (libc::AF_INET as u8, 32, a.octets().to_vec()),
        IpAddr::V6(a) => (libc::AF_INET6 as u8, 128, a.octets().to_vec()),
    }
}
