//! A small NETLINK_ROUTE client: build a request, send it, read the
//! replies (single answers, acks and multi-part dumps) and walk their
//! attributes. Used for XDP attachment, routes and neighbours, and the
//! VRRP virtual addresses; everything runs in the calling thread's
//! network namespace.
use std::{
    io,
    net::IpAddr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

pub const NLA_F_NESTED: u16 = 1 << 15;
const NETLINK_EXT_ACK: libc::c_int = 11;
const NLMSGERR_ATTR_MSG: u16 = 1;
const HEADER_LEN: usize = 16;

/// A netlink request under construction: the 16-byte header, a family
/// header (`ifinfomsg`, `ndmsg`, ...) and attributes.
pub struct Message {
    bytes: Vec<u8>,
}

impl Message {
    pub fn new(kind: u16, flags: u16) -> Self {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(&(flags | libc::NLM_F_REQUEST as u16).to_ne_bytes());
        bytes.extend_from_slice(&1u32.to_ne_bytes()); // sequence
        bytes.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
        Self { bytes }
    }

    /// Appends raw bytes (a family header); padded to 4 bytes.
    pub fn header(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
        self.bytes.resize(align4(self.bytes.len()), 0);
    }

    /// `struct ifinfomsg` for interface `index`.
    pub fn ifinfo(&mut self, index: u32) {
        let mut header = [0u8; 16];
        header[0] = libc::AF_UNSPEC as u8;
        header[4..8].copy_from_slice(&(index as i32).to_ne_bytes());
        self.header(&header);
    }

    pub fn attribute(&mut self, kind: u16, value: &[u8]) {
        let len = 4 + value.len();
        self.bytes.extend_from_slice(&(len as u16).to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(value);
        self.bytes.resize(align4(self.bytes.len()), 0);
    }

    /// Starts a nested attribute; close it with [`Self::end_nested`].
    pub fn begin_nested(&mut self, kind: u16) -> usize {
        let start = self.bytes.len();
        self.attribute(kind | NLA_F_NESTED, &[]);
        start
    }

    pub fn end_nested(&mut self, start: usize) {
        let len = (self.bytes.len() - start) as u16;
        self.bytes[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn add_flags(&mut self, flags: u16) {
        let old = u16::from_ne_bytes([self.bytes[6], self.bytes[7]]);
        self.bytes[6..8].copy_from_slice(&(old | flags).to_ne_bytes());
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.bytes.len() as u32;
        self.bytes[..4].copy_from_slice(&len.to_ne_bytes());
        self.bytes
    }
}

/// One message of a reply: its type and its payload after the header.
#[derive(Clone, Copy, Debug)]
pub struct Reply<'a> {
    pub kind: u16,
    pub payload: &'a [u8],
}

/// A NETLINK_ROUTE socket with extended acks.
pub struct Socket(OwnedFd);

impl Socket {
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
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
                    size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        Ok(socket)
    }

    /// Sends a request with `NLM_F_ACK` and waits for the ack; a kernel
    /// error comes back with the kernel's message.
    pub fn execute(&self, mut message: Message) -> io::Result<()> {
        message.add_flags(libc::NLM_F_ACK as u16);
        self.query(message, |_| {})
    }

    /// Sends a request and calls `each` for every message of the answer
    /// (one message, or all parts of a dump); an `NLMSG_ERROR` ends the
    /// answer: a kernel error is returned, an ack is success.
    pub fn query(&self, message: Message, mut each: impl FnMut(Reply<'_>)) -> io::Result<()> {
        self.send(&message.finish())?;
        let mut failed = None;
        self.receive_until_done(|reply| {
            if reply.kind == libc::NLMSG_ERROR as u16 {
                failed = error_of(reply.payload).err();
                return false;
            }
            each(reply);
            true
        })?;
        failed.map_or(Ok(()), Err)
    }

    /// Reads datagrams until a message that is not part of a multi-part
    /// answer has been seen, `NLMSG_DONE` arrives, or `each` returns false.
    fn receive_until_done(&self, mut each: impl FnMut(Reply<'_>) -> bool) -> io::Result<()> {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let received = self.receive(&mut buffer)?;
            let mut rest = &buffer[..received];
            let mut multipart = false;
            while rest.len() >= HEADER_LEN {
                let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                let kind = u16::from_ne_bytes([rest[4], rest[5]]);
                let flags = u16::from_ne_bytes([rest[6], rest[7]]);
                if len < HEADER_LEN || len > rest.len() {
                    return Err(io::Error::other("malformed netlink message"));
                }
                if kind == libc::NLMSG_DONE as u16 {
                    return Ok(());
                }
                multipart |= flags & libc::NLM_F_MULTI as u16 != 0;
                let reply = Reply {
                    kind,
                    payload: &rest[HEADER_LEN..len],
                };
                if !each(reply) {
                    return Ok(());
                }
                rest = &rest[align4(len).min(rest.len())..];
            }
            if !multipart {
                return Ok(());
            }
        }
    }

    fn send(&self, message: &[u8]) -> io::Result<()> {
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
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn receive(&self, buffer: &mut [u8]) -> io::Result<usize> {
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
            return Err(io::Error::last_os_error());
        }
        Ok(received as usize)
    }
}

/// A kernel error with the extended-ack message the kernel gave for it.
/// Carried inside an `io::Error` (whose own errno it then lacks); see [`errno`].
#[derive(Debug)]
pub struct KernelError {
    pub errno: i32,
    pub message: String,
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let error = io::Error::from_raw_os_error(self.errno);
        write!(f, "{error}: {}", self.message)
    }
}

impl std::error::Error for KernelError {}

/// The errno of an error from this module, with or without a kernel message.
pub fn errno(error: &io::Error) -> Option<i32> {
    error.raw_os_error().or_else(|| {
        error
            .get_ref()?
            .downcast_ref::<KernelError>()
            .map(|k| k.errno)
    })
}

/// The index of interface `name` in this thread's network namespace.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c_name = std::ffi::CString::new(name).map_err(io::Error::other)?;
    // SAFETY: a valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(c_name.as_ptr()) } {
        0 => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {name}"),
        )),
        index => Ok(index),
    }
}

/// The result carried by an `NLMSG_ERROR` payload (0 is an ack).
fn error_of(payload: &[u8]) -> io::Result<()> {
    let code = payload
        .get(..4)
        .ok_or_else(|| io::Error::other("short netlink error message"))?;
    let code = i32::from_ne_bytes([code[0], code[1], code[2], code[3]]);
    if code == 0 {
        return Ok(());
    }
    let io_error = io::Error::from_raw_os_error(-code);
    let message = payload
        .get(4 + HEADER_LEN..)
        .and_then(|tlvs| find_attribute(tlvs, NLMSGERR_ATTR_MSG))
        .map(|text| {
            String::from_utf8_lossy(text)
                .trim_end_matches('\0')
                .to_owned()
        });
    Err(match message {
        Some(message) if !message.is_empty() => io::Error::new(
            io_error.kind(),
            KernelError {
                errno: -code,
                message,
            },
        ),
        _ => io_error,
    })
}

/// The attributes of a run of rtattrs: `(type without the nested flag, value)`.
pub fn attributes(mut bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if bytes.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([bytes[0], bytes[1]]) as usize;
        let kind = u16::from_ne_bytes([bytes[2], bytes[3]]) & !NLA_F_NESTED;
        if len < 4 || len > bytes.len() {
            return None;
        }
        let value = &bytes[4..len];
        bytes = &bytes[align4(len).min(bytes.len())..];
        Some((kind, value))
    })
}

/// An address attribute (`IFA_LOCAL`, `RTA_GATEWAY`, `NDA_DST`, ...):
/// 4 bytes IPv4, 16 bytes IPv6, anything else none.
pub fn address(value: &[u8]) -> Option<IpAddr> {
    match value.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(value).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(value).ok()?)),
        _ => None,
    }
}

/// The value of the first attribute of type `kind` in a run of rtattrs.
pub fn find_attribute(bytes: &[u8], kind: u16) -> Option<&[u8]> {
    attributes(bytes).find(|(k, _)| *k == kind).map(|(_, v)| v)
}

const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_walk_padded_values_and_stop_at_garbage() {
        let mut message = Message::new(0, 0);
        message.attribute(1, &[1, 2, 3]);
        let nest = message.begin_nested(2);
        message.attribute(3, &7u32.to_ne_bytes());
        message.end_nested(nest);
        let bytes = message.finish();
        let found: Vec<_> = attributes(&bytes[HEADER_LEN..]).collect();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0], (1, &[1u8, 2, 3][..]));
        assert_eq!(found[1].0, 2);
        assert_eq!(find_attribute(found[1].1, 3), Some(&7u32.to_ne_bytes()[..]));
        // A length running past the end ends the walk instead of panicking.
        assert_eq!(attributes(&[200, 0, 1, 0, 9]).count(), 0);
    }

    #[test]
    fn addresses_decode_by_length() {
        assert_eq!(address(&[192, 0, 2, 1]), Some("192.0.2.1".parse().unwrap()));
        let v6: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(address(&v6.octets()), Some(IpAddr::V6(v6)));
        for len in [0, 3, 5, 6, 15, 17] {
            assert_eq!(address(&vec![1; len]), None, "{len} bytes");
        }
    }

    #[test]
    fn error_payload_carries_errno_and_message() {
        let mut payload = (-libc::ENODEV).to_ne_bytes().to_vec();
        payload.extend_from_slice(&[0u8; HEADER_LEN]);
        payload.extend_from_slice(&[7, 0, 1, 0, b'n', b'o', b'\0', 0]);
        let error = error_of(&payload).unwrap_err();
        assert_eq!(errno(&error), Some(libc::ENODEV));
        assert!(error.to_string().ends_with(": no"), "{error}");
        assert!(error_of(&0i32.to_ne_bytes()).is_ok());
        assert!(error_of(&[1]).is_err());
    }
}
