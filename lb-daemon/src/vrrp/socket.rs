//! The raw IP protocol 112 socket of one instance, bound to its interface.
//!
//! IPv4: the kernel hands us whole IP packets, so TTL, source and
//! destination come from the header; we send with `IP_HDRINCL` so that
//! TTL 255 and the source address (the one the checksum covers) are ours
//! to set. IPv6: the kernel strips the header; hop limit, destination and
//! interface come as ancillary data (`IPV6_HOPLIMIT`, `IPV6_PKTINFO`), and
//! we pick the source and hop limit per packet the same way.
use std::{
    io,
    mem::{size_of, zeroed},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::AsRawFd,
};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::io::{Interest, unix::AsyncFd};

use super::{packet::PROTOCOL, validate::Received};

/// RFC 5798 §5.1.1.2 / §5.1.2.2.
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// TTL / hop limit of every advert (§5.1.1.3, §5.1.2.3).
pub const TTL: u8 = 255;
/// "Internetwork control", as keepalived sends.
const TOS: u8 = 0xc0;

/// One instance's socket.
pub struct VrrpSocket {
    fd: AsyncFd<Socket>,
    v6: bool,
    ifindex: u32,
}

impl VrrpSocket {
    /// Opens the socket on `interface` (index `ifindex`) and, if
    /// `multicast`, joins the VRRP group there.
    pub fn open(interface: &str, ifindex: u32, v6: bool, multicast: bool) -> io::Result<Self> {
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let socket = Socket::new(
            domain,
            Type::RAW.cloexec(),
            Some(Protocol::from(i32::from(PROTOCOL))),
        )?;
        socket.set_nonblocking(true)?;
        socket.bind_device(Some(interface.as_bytes()))?;
        if v6 {
            socket.set_multicast_hops_v6(u32::from(TTL))?;
            socket.set_unicast_hops_v6(u32::from(TTL))?;
            socket.set_multicast_loop_v6(false)?;
            socket.set_multicast_if_v6(ifindex)?;
            set_int(&socket, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
            set_int(&socket, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
            if multicast {
                socket.join_multicast_v6(&MULTICAST_V6, ifindex)?;
            }
        } else {
            socket.set_header_included_v4(true)?;
            socket.set_multicast_loop_v4(false)?;
            set_int(&socket, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
            if multicast {
                socket
                    .join_multicast_v4_n(&MULTICAST_V4, &InterfaceIndexOrAddress::Index(ifindex))?;
            }
        }
        // SAFETY: socket2::Socket owns its descriptor and always returns
        // the same one; the AsyncFd owns the Socket until it is dropped.
        let fd = unsafe { AsyncFd::register(socket) }.map_err(io::Error::from)?;
        Ok(Self { fd, v6, ifindex })
    }

    /// Waits for the next datagram, read into `buffer`; the VRRP
    /// message in it and what the IP layer said about it.
    pub async fn recv<'b>(&self, buffer: &'b mut [u8]) -> io::Result<Received<'b>> {
        let mut envelope = Envelope::new();
        let len = self
            .fd
            .async_io(Interest::READABLE, |socket| {
                envelope.receive(socket.as_raw_fd(), buffer)
            })
            .await?;
        let buffer: &'b [u8] = buffer;
        envelope.open(&buffer[..len], self.v6)
    }

    /// Sends `message` from `src` to `dst` with TTL 255.
    pub async fn send(&self, message: &[u8], src: IpAddr, dst: IpAddr) -> io::Result<()> {
        self.fd
            .async_io(Interest::WRITABLE, |socket| match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => send_v4(socket, message, s, d),
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    send_v6(socket.as_raw_fd(), message, s, d, self.ifindex)
                }
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "source and destination of different families",
                )),
            })
            .await
    }
}

fn set_int(socket: &Socket, level: i32, name: i32, value: libc::c_int) -> io::Result<()> {
    // SAFETY: setsockopt with a valid int option on a valid socket.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An IPv4 header (no options) in front of `message`; the kernel fills
/// in the total length, identification and header checksum.
fn send_v4(socket: &Socket, message: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> io::Result<()> {
    let mut packet = Vec::with_capacity(20 + message.len());
    let total = (20 + message.len()) as u16;
    packet.extend_from_slice(&[0x45, TOS]);
    packet.extend_from_slice(&total.to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0, 0, TTL, PROTOCOL, 0, 0]);
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    packet.extend_from_slice(message);
    let to = SocketAddr::V4(SocketAddrV4::new(dst, 0));
    socket.send_to(&packet, &to.into()).map(|_| ())
}

/// `sendmsg` with `IPV6_PKTINFO` (source, interface) and `IPV6_HOPLIMIT`.
fn send_v6(fd: i32, message: &[u8], src: Ipv6Addr, dst: Ipv6Addr, ifindex: u32) -> io::Result<()> {
    let to = SocketAddrV6::new(dst, 0, 0, ifindex);
    let to = socket2::SockAddr::from(to);
    let mut iov = libc::iovec {
        iov_base: message.as_ptr() as *mut _,
        iov_len: message.len(),
    };
    let info = libc::in6_pktinfo {
        ipi6_addr: libc::in6_addr {
            s6_addr: src.octets(),
        },
        ipi6_ifindex: ifindex,
    };
    let hops: libc::c_int = i32::from(TTL);
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain data; every pointer below outlives the call
    // and the control buffer is large and aligned enough for both
    // messages (checked by CMSG_NXTHDR returning non-null).
    unsafe {
        let mut header: libc::msghdr = zeroed();
        header.msg_name = to.as_ptr() as *mut _;
        header.msg_namelen = to.len();
        header.msg_iov = &mut iov;
        header.msg_iovlen = 1;
        header.msg_control = control.as_mut_ptr().cast();
        header.msg_controllen = libc::CMSG_SPACE(size_of::<libc::in6_pktinfo>() as u32) as usize
            + libc::CMSG_SPACE(size_of::<libc::c_int>() as u32) as usize;
        let first = libc::CMSG_FIRSTHDR(&header);
        (*first).cmsg_level = libc::IPPROTO_IPV6;
        (*first).cmsg_type = libc::IPV6_PKTINFO;
        (*first).cmsg_len = libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(first).cast(), info);
        let second = libc::CMSG_NXTHDR(&header, first);
        if second.is_null() {
            return Err(io::Error::other("control buffer too small"));
        }
        (*second).cmsg_level = libc::IPPROTO_IPV6;
        (*second).cmsg_type = libc::IPV6_HOPLIMIT;
        (*second).cmsg_len = libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(second).cast(), hops);
        if libc::sendmsg(fd, &header, 0) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// What `recvmsg` returns besides the data: the sender's address and
/// the ancillary data (interface, and for IPv6 destination and hop limit).
struct Envelope {
    from: libc::sockaddr_in6,
    control: [u64; 16],
    control_len: usize,
}

impl Envelope {
    fn new() -> Self {
        Self {
            // SAFETY: sockaddr_in6 is plain data; all zeroes is valid.
            from: unsafe { zeroed() },
            control: [0; 16],
            control_len: 0,
        }
    }

    /// `recvmsg` of one datagram into `buffer`; returns its length.
    fn receive(&mut self, fd: i32, buffer: &mut [u8]) -> io::Result<usize> {
        let mut iov = libc::iovec {
            iov_base: buffer.as_mut_ptr().cast(),
            iov_len: buffer.len(),
        };
        // SAFETY: msghdr is plain data; every pointer in it is valid for
        // the call and the lengths are those of the buffers.
        unsafe {
            let mut header: libc::msghdr = zeroed();
            header.msg_name = (&mut self.from as *mut libc::sockaddr_in6).cast();
            header.msg_namelen = size_of::<libc::sockaddr_in6>() as u32;
            header.msg_iov = &mut iov;
            header.msg_iovlen = 1;
            header.msg_control = self.control.as_mut_ptr().cast();
            header.msg_controllen = size_of_val(&self.control);
            let received = libc::recvmsg(fd, &mut header, 0);
            if received < 0 {
                return Err(io::Error::last_os_error());
            }
            self.control_len = header.msg_controllen;
            Ok(received as usize)
        }
    }

    /// The datagram `data` as received: IPv6 from the ancillary data,
    /// IPv4 from the packet's own header.
    fn open<'a>(&self, data: &'a [u8], v6: bool) -> io::Result<Received<'a>> {
        let mut ifindex = 0;
        let mut ttl = None;
        let mut dst = None;
        // SAFETY: the walk stays within the control length the kernel
        // set; the header only carries the control buffer, read-only.
        unsafe {
            let mut header: libc::msghdr = zeroed();
            header.msg_control = self.control.as_ptr().cast_mut().cast();
            header.msg_controllen = self.control_len;
            let mut cmsg = libc::CMSG_FIRSTHDR(&header);
            while !cmsg.is_null() {
                let data = libc::CMSG_DATA(cmsg);
                match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                    (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                        let info: libc::in_pktinfo = std::ptr::read_unaligned(data.cast());
                        ifindex = info.ipi_ifindex as u32;
                    }
                    (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                        let info: libc::in6_pktinfo = std::ptr::read_unaligned(data.cast());
                        ifindex = info.ipi6_ifindex;
                        dst = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
                    }
                    (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT) => {
                        let hops: libc::c_int = std::ptr::read_unaligned(data.cast());
                        ttl = u8::try_from(hops).ok();
                    }
                    _ => {}
                }
                cmsg = libc::CMSG_NXTHDR(&header, cmsg);
            }
        }
        if !v6 {
            return parse_ipv4(data, ifindex);
        }
        Ok(Received {
            message: data,
            src: IpAddr::V6(Ipv6Addr::from(self.from.sin6_addr.s6_addr)),
            dst: dst.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
            ttl: ttl.unwrap_or(0),
            ifindex,
        })
    }
}

/// The IPv4 header of a raw-socket datagram.
fn parse_ipv4(packet: &[u8], ifindex: u32) -> io::Result<Received<'_>> {
    let short = || io::Error::new(io::ErrorKind::InvalidData, "short IPv4 packet");
    let header = packet.get(..20).ok_or_else(short)?;
    let ihl = usize::from(header[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if ihl < 20 || total < ihl || packet.len() < ihl {
        return Err(short());
    }
    let address = |at: usize| {
        IpAddr::V4(Ipv4Addr::new(
            header[at],
            header[at + 1],
            header[at + 2],
            header[at + 3],
        ))
    };
    Ok(Received {
        message: &packet[ihl..total.min(packet.len())],
        src: address(12),
        dst: address(16),
        ttl: header[8],
        ifindex,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A whole IPv4 packet from keepalived v2.2.7 (VRRPv3, priority 100).
    #[test]
    fn keepalived_ipv4_packet() {
        let packet: Vec<u8> = (0..64)
            .step_by(2)
            .map(|i| {
                let hex = "45c0002000010000ff701897c0000203e00000123133640100640570c0000264";
                u8::from_str_radix(&hex[i..i + 2], 16).unwrap()
            })
            .collect();
        let d = parse_ipv4(&packet, 2).unwrap();
        assert_eq!((d.message, d.ttl), (&packet[20..32], TTL));
        let advert = super::super::packet::decode(d.message, d.src, d.dst).unwrap();
        assert_eq!((advert.vrid, advert.priority), (51, 100));
    }

    #[test]
    fn ipv4_header_fields_and_short_packets() {
        let mut packet = vec![
            0x45, 0xc0, 0, 32, 0, 0, 0, 0, 254, 112, 0, 0, 192, 0, 2, 3, 224, 0, 0, 18,
        ];
        packet.extend_from_slice(&[0xaa; 12]);
        let d = parse_ipv4(&packet, 7).unwrap();
        assert_eq!((d.message, d.ttl, d.ifindex), (&packet[20..32], 254, 7));
        assert_eq!(d.src, "192.0.2.3".parse::<IpAddr>().unwrap());
        assert_eq!(d.dst, IpAddr::V4(MULTICAST_V4));
        // Trailing padding beyond the total length is not part of it.
        packet.extend_from_slice(&[0; 4]);
        assert_eq!(parse_ipv4(&packet, 7).unwrap().message.len(), 12);
        for len in 0..20 {
            assert!(parse_ipv4(&packet[..len], 7).is_err());
        }
        packet[0] = 0x44;
        assert!(parse_ipv4(&packet, 7).is_err());
    }
}
