//! XDP attachment through rtnetlink (`RTM_SETLINK` with `IFLA_XDP`).
//!
//! A program attached this way belongs to the interface, not to a file
//! descriptor of ours: it keeps forwarding when the daemon exits or is
//! killed, in any network namespace, without a bpffs to pin a link in.
//! A restarted daemon finds it again with [`attached`] and adopts it.
//! Interfaces are looked up in the calling thread's network namespace.
use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

use super::{Error, Result};

/// How the program is attached (`xdp_mode` in the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum XdpMode {
    /// Native (driver) mode if the driver has it, generic otherwise.
    #[default]
    Auto,
    /// Native mode in the driver; an error if the driver lacks it.
    Driver,
    /// Generic (skb) mode: works everywhere, slower.
    Generic,
}

// linux/if_link.h
const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
const NLA_F_NESTED: u16 = 1 << 15;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
// linux/netlink.h
const NETLINK_EXT_ACK: libc::c_int = 11;
const NLMSGERR_ATTR_MSG: u16 = 1;

/// The ifindex of `name` in this thread's network namespace.
pub fn ifindex(name: &str) -> Result<u32> {
    let c_name = CString::new(name).map_err(|_| Error::NoInterface(name.to_owned()))?;
    // SAFETY: a valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(c_name.as_ptr()) } {
        0 => Err(Error::NoInterface(name.to_owned())),
        index => Ok(index),
    }
}

/// Attaches `program` to `ifindex`, replacing whatever is attached in that
/// mode. With [`XdpMode::Auto`], driver mode is tried first.
pub fn attach(ifindex: u32, program: BorrowedFd<'_>, mode: XdpMode) -> Result<XdpMode> {
    match mode {
        XdpMode::Driver => set(ifindex, program.as_raw_fd(), XDP_FLAGS_DRV_MODE).map(|_| mode),
        XdpMode::Generic => set(ifindex, program.as_raw_fd(), XDP_FLAGS_SKB_MODE).map(|_| mode),
        XdpMode::Auto => match set(ifindex, program.as_raw_fd(), XDP_FLAGS_DRV_MODE) {
            Ok(()) => Ok(XdpMode::Driver),
            Err(_) => {
                set(ifindex, program.as_raw_fd(), XDP_FLAGS_SKB_MODE).map(|_| XdpMode::Generic)
            }
        },
    }
}

/// Removes the XDP program of `ifindex` in both modes (no error if none).
pub fn detach(ifindex: u32) -> Result<()> {
    set(ifindex, -1, XDP_FLAGS_DRV_MODE)?;
    set(ifindex, -1, XDP_FLAGS_SKB_MODE)
}

/// The id of the program attached to `ifindex`, if any.
pub fn attached(ifindex: u32) -> Result<Option<u32>> {
    let socket = Socket::open()?;
    let mut request = Message::new(libc::RTM_GETLINK, libc::NLM_F_REQUEST as u16);
    request.ifinfo(ifindex);
    socket.send(&request.finish())?;
    let reply = socket.receive()?;
    let (kind, payload) = first_message(&reply)?;
    if kind == libc::NLMSG_ERROR as u16 {
        return Err(error_of(payload).unwrap_err());
    }
    // ifinfomsg is 16 bytes; attributes follow.
    let attributes = payload.get(16..).ok_or_else(short)?;
    let Some(xdp) = find_attribute(attributes, IFLA_XDP) else {
        return Ok(None);
    };
    let attached = find_attribute(xdp, IFLA_XDP_ATTACHED).and_then(|v| v.first().copied());
    if attached.unwrap_or(0) == 0 {
        return Ok(None);
    }
    Ok(find_attribute(xdp, IFLA_XDP_PROG_ID)
        .and_then(|v| v.get(..4))
        .map(|v| u32::from_ne_bytes([v[0], v[1], v[2], v[3]])))
}

fn set(ifindex: u32, fd: i32, flags: u32) -> Result<()> {
    let socket = Socket::open()?;
    let mut request = Message::new(
        libc::RTM_SETLINK,
        (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16,
    );
    request.ifinfo(ifindex);
    let nest = request.begin_nested(IFLA_XDP | NLA_F_NESTED);
    request.attribute(IFLA_XDP_FD, &fd.to_ne_bytes());
    request.attribute(IFLA_XDP_FLAGS, &flags.to_ne_bytes());
    request.end_nested(nest);
    socket.send(&request.finish())?;
    let reply = socket.receive()?;
    let (kind, payload) = first_message(&reply)?;
    if kind != libc::NLMSG_ERROR as u16 {
        return Err(Error::Netlink(io::Error::other("unexpected netlink reply")));
    }
    error_of(payload)
}

fn short() -> Error {
    Error::Netlink(io::Error::other("short netlink message"))
}

/// The first message of a reply: (type, payload).
fn first_message(reply: &[u8]) -> Result<(u16, &[u8])> {
    let header = reply.get(..16).ok_or_else(short)?;
    let len = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let kind = u16::from_ne_bytes([header[4], header[5]]);
    let payload = reply.get(16..len.min(reply.len())).ok_or_else(short)?;
    Ok((kind, payload))
}

/// An `NLMSG_ERROR` payload: error code, the echoed request header, and
/// with extended ack the kernel's message.
fn error_of(payload: &[u8]) -> Result<()> {
    let code = payload.get(..4).ok_or_else(short)?;
    let code = i32::from_ne_bytes([code[0], code[1], code[2], code[3]]);
    if code == 0 {
        return Ok(());
    }
    let io_error = io::Error::from_raw_os_error(-code);
    // With NLM_F_CAPPED only the 16-byte request header is echoed.
    let message = payload
        .get(4 + 16..)
        .and_then(|tlvs| find_attribute(tlvs, NLMSGERR_ATTR_MSG))
        .map(|text| {
            String::from_utf8_lossy(text)
                .trim_end_matches('\0')
                .to_owned()
        });
    Err(Error::Netlink(match message {
        Some(message) if !message.is_empty() => {
            io::Error::new(io_error.kind(), format!("{io_error}: {message}"))
        }
        _ => io_error,
    }))
}

/// The value of the first attribute of type `kind` in a run of rtattrs.
fn find_attribute(mut attributes: &[u8], kind: u16) -> Option<&[u8]> {
    while attributes.len() >= 4 {
        let len = u16::from_ne_bytes([attributes[0], attributes[1]]) as usize;
        let this = u16::from_ne_bytes([attributes[2], attributes[3]]) & !NLA_F_NESTED;
        if len < 4 || len > attributes.len() {
            return None;
        }
        if this == kind {
            return Some(&attributes[4..len]);
        }
        attributes = &attributes[align4(len).min(attributes.len())..];
    }
    None
}

const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// A netlink request under construction.
struct Message {
    bytes: Vec<u8>,
}

impl Message {
    fn new(kind: u16, flags: u16) -> Self {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(&flags.to_ne_bytes());
        bytes.extend_from_slice(&1u32.to_ne_bytes()); // sequence
        bytes.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
        Self { bytes }
    }

    /// `struct ifinfomsg` for interface `index`.
    fn ifinfo(&mut self, index: u32) {
        self.bytes.extend_from_slice(&[libc::AF_UNSPEC as u8, 0]);
        self.bytes.extend_from_slice(&0u16.to_ne_bytes()); // type
        self.bytes.extend_from_slice(&(index as i32).to_ne_bytes());
        self.bytes.extend_from_slice(&0u32.to_ne_bytes()); // flags
        self.bytes.extend_from_slice(&0u32.to_ne_bytes()); // change mask
    }

    fn attribute(&mut self, kind: u16, value: &[u8]) {
        let len = 4 + value.len();
        self.bytes.extend_from_slice(&(len as u16).to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(value);
        self.bytes.resize(align4(self.bytes.len()), 0);
    }

    fn begin_nested(&mut self, kind: u16) -> usize {
        let start = self.bytes.len();
        self.attribute(kind, &[]);
        start
    }

    fn end_nested(&mut self, start: usize) {
        let len = (self.bytes.len() - start) as u16;
        self.bytes[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.bytes.len() as u32;
        self.bytes[..4].copy_from_slice(&len.to_ne_bytes());
        self.bytes
    }
}

/// A NETLINK_ROUTE socket with extended acks.
struct Socket(OwnedFd);

impl Socket {
    fn open() -> Result<Self> {
        // SAFETY: plain socket(2); the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(Error::Netlink(io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a fresh descriptor that we own.
        let socket = Self(unsafe { OwnedFd::from_raw_fd(fd) });
        let one: libc::c_int = 1;
        for option in [NETLINK_EXT_ACK, libc::NETLINK_CAP_ACK] {
            // SAFETY: setsockopt with a valid int option; failure (old
            // kernels) only costs the kernel's error message.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_NETLINK,
                    option,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        Ok(socket)
    }

    fn send(&self, message: &[u8]) -> Result<()> {
        // SAFETY: sockaddr_nl zeroed is the kernel as destination.
        let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        address.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: valid buffer and address for the duration of the call.
        let sent = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                message.as_ptr().cast(),
                message.len(),
                0,
                (&address as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(Error::Netlink(io::Error::last_os_error()));
        }
        Ok(())
    }

    fn receive(&self) -> Result<Vec<u8>> {
        let mut buffer = vec![0u8; 32 * 1024];
        // SAFETY: valid buffer for the duration of the call.
        let received = unsafe {
            libc::recv(
                self.0.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                0,
            )
        };
        if received < 0 {
            return Err(Error::Netlink(io::Error::last_os_error()));
        }
        buffer.truncate(received as usize);
        Ok(buffer)
    }
}
