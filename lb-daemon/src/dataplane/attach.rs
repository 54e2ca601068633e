//! XDP attachment through rtnetlink (`RTM_SETLINK` with `IFLA_XDP`).
//!
//! A program attached this way belongs to the interface, not to a file
//! descriptor of ours: it keeps forwarding when the daemon exits or is
//! killed, in any network namespace, without a bpffs to pin a link in.
//! A restarted daemon finds it again with [`attached`] and adopts it.
//! Interfaces are looked up in the calling thread's network namespace.
use std::os::fd::{AsRawFd, BorrowedFd};

use super::{Error, Result};
use crate::netlink::{self, Message, Socket, find_attribute};

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
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// The ifindex of `name` in this thread's network namespace.
pub fn ifindex(name: &str) -> Result<u32> {
    netlink::ifindex(name).map_err(|_| Error::NoInterface(name.to_owned()))
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
    let mut request = Message::new(libc::RTM_GETLINK, 0);
    request.ifinfo(ifindex);
    let mut program = None;
    Socket::open()
        .and_then(|socket| {
            socket.query(request, |reply| {
                if reply.kind != libc::RTM_NEWLINK {
                    return;
                }
                let Some(xdp) = reply
                    .payload
                    .get(16..)
                    .and_then(|a| find_attribute(a, IFLA_XDP))
                else {
                    return;
                };
                let attached = find_attribute(xdp, IFLA_XDP_ATTACHED).and_then(|v| v.first());
                if attached.is_some_and(|mode| *mode != 0) {
                    program = find_attribute(xdp, IFLA_XDP_PROG_ID)
                        .and_then(|v| v.get(..4))
                        .map(|v| u32::from_ne_bytes([v[0], v[1], v[2], v[3]]));
                }
            })
        })
        .map_err(Error::Netlink)?;
    Ok(program)
}

fn set(ifindex: u32, fd: i32, flags: u32) -> Result<()> {
    let mut request = Message::new(libc::RTM_SETLINK, 0);
    request.ifinfo(ifindex);
    let nest = request.begin_nested(IFLA_XDP);
    request.attribute(IFLA_XDP_FD, &fd.to_ne_bytes());
    request.attribute(IFLA_XDP_FLAGS, &flags.to_ne_bytes());
    request.end_nested(nest);
    Socket::open()
        .and_then(|socket| socket.execute(request))
        .map_err(Error::Netlink)
}
