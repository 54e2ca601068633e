//! The interface side of an instance through rtnetlink: adding and
//! removing the virtual addresses (`RTM_NEWADDR`/`RTM_DELADDR`), finding
//! the primary address adverts are sent from, and the link's state and
//! MAC address (`RTM_GETLINK`). Everything acts in the calling thread's
//! network namespace.
use std::{io, net::IpAddr};

use ipnet::IpNet;

use crate::netlink::{self, Message, Socket};

// linux/if_addr.h
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_F_SECONDARY: u8 = 0x01;
const IFA_F_NODAD: u8 = 0x02;
// linux/if_link.h
const IFLA_ADDRESS: u16 = 1;

/// Adds `net` to interface `ifindex` (IPv6 without duplicate address
/// detection, so that it is usable at once). Already present is fine.
pub fn add(ifindex: u32, net: &IpNet) -> io::Result<()> {
    let flags = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
    match Socket::open()?.execute(address_message(libc::RTM_NEWADDR, flags, ifindex, net)) {
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        result => result,
    }
}

/// Removes `net` from interface `ifindex`. Already absent is fine.
pub fn remove(ifindex: u32, net: &IpNet) -> io::Result<()> {
    match Socket::open()?.execute(address_message(libc::RTM_DELADDR, 0, ifindex, net)) {
        Err(error)
            if matches!(
                netlink::errno(&error),
                Some(libc::EADDRNOTAVAIL | libc::ENODEV)
            ) =>
        {
            Ok(())
        }
        result => result,
    }
}

/// `struct ifaddrmsg` and the address attributes.
fn address_message(kind: u16, flags: u16, ifindex: u32, net: &IpNet) -> Message {
    let mut message = Message::new(kind, flags);
    let (family, bytes, extra_flags) = match net.addr() {
        IpAddr::V4(a) => (libc::AF_INET, a.octets().to_vec(), 0),
        IpAddr::V6(a) => (libc::AF_INET6, a.octets().to_vec(), IFA_F_NODAD),
    };
    let mut header = [0u8; 8];
    header[0] = family as u8;
    header[1] = net.prefix_len();
    header[2] = extra_flags;
    header[3] = libc::RT_SCOPE_UNIVERSE;
    header[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    message.header(&header);
    message.attribute(IFA_LOCAL, &bytes);
    message.attribute(IFA_ADDRESS, &bytes);
    message
}

/// The addresses of interface `ifindex` of one family, with whether each
/// is secondary (IPv4).
fn addresses(ifindex: u32, v6: bool) -> io::Result<Vec<(IpAddr, bool)>> {
    let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    let mut request = Message::new(libc::RTM_GETADDR, libc::NLM_F_DUMP as u16);
    request.header(&[family as u8, 0, 0, 0, 0, 0, 0, 0]);
    let mut found = Vec::new();
    Socket::open()?.query(request, |reply| {
        if reply.kind != libc::RTM_NEWADDR || reply.payload.len() < 8 {
            return;
        }
        let header = &reply.payload[..8];
        let index = u32::from_ne_bytes([header[4], header[5], header[6], header[7]]);
        if index != ifindex || header[0] != family as u8 {
            return;
        }
        let attributes = &reply.payload[8..];
        let value = netlink::find_attribute(attributes, IFA_LOCAL)
            .or_else(|| netlink::find_attribute(attributes, IFA_ADDRESS));
        if let Some(address) = value.and_then(netlink::address) {
            found.push((address, header[2] & IFA_F_SECONDARY != 0));
        }
    })?;
    Ok(found)
}

/// Whether `address` is on interface `ifindex`.
pub fn has(ifindex: u32, address: IpAddr) -> io::Result<bool> {
    Ok(addresses(ifindex, address.is_ipv6())?
        .iter()
        .any(|(a, _)| *a == address))
}

/// The primary address of `ifindex` adverts are sent from (RFC 5798
/// §5.1.1.1, §5.1.2.1): IPv4, the first primary address that is not a
/// virtual address; IPv6, the link-local address, or with `global` (unicast
/// peers that are not link-local) the first other address that is not a
/// virtual address, as keepalived's `unicast_src_ip` would be.
pub fn primary(
    ifindex: u32,
    v6: bool,
    virtual_addresses: &[IpNet],
    global: bool,
) -> io::Result<Option<IpAddr>> {
    let list = addresses(ifindex, v6)?;
    let is_virtual = |a: &IpAddr| virtual_addresses.iter().any(|net| net.addr() == *a);
    let link_local = |a: &IpAddr| matches!(a, IpAddr::V6(v6) if v6.is_unicast_link_local());
    Ok(if v6 {
        list.iter()
            .map(|(a, _)| *a)
            .find(|a| !is_virtual(a) && link_local(a) != global)
    } else {
        list.iter()
            .filter(|(a, secondary)| !secondary && !is_virtual(a))
            .chain(list.iter().filter(|(a, _)| !is_virtual(a)))
            .map(|(a, _)| *a)
            .next()
    })
}

/// A link's operational state and MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// Administratively up with carrier (`IFF_UP` and `IFF_RUNNING`).
    pub up: bool,
    pub mac: [u8; 6],
}

/// The state of interface `ifindex`.
pub fn link(ifindex: u32) -> io::Result<Link> {
    let mut request = Message::new(libc::RTM_GETLINK, 0);
    request.ifinfo(ifindex);
    let mut found = None;
    Socket::open()?.query(request, |reply| {
        if reply.kind != libc::RTM_NEWLINK || reply.payload.len() < 16 {
            return;
        }
        let p = reply.payload;
        let flags = u32::from_ne_bytes([p[8], p[9], p[10], p[11]]);
        let running = (libc::IFF_UP | libc::IFF_RUNNING) as u32;
        let mut mac = [0u8; 6];
        if let Some(value) = netlink::find_attribute(&p[16..], IFLA_ADDRESS)
            && value.len() == 6
        {
            mac.copy_from_slice(value);
        }
        found = Some(Link {
            up: flags & running == running,
            mac,
        });
    })?;
    found.ok_or_else(|| io::Error::other(format!("no link with index {ifindex}")))
}

/// The state of interface `name`; a missing interface is down.
pub fn link_up(name: &str) -> bool {
    netlink::ifindex(name).and_then(link).is_ok_and(|l| l.up)
}
