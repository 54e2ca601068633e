//! Writes into the `RINGS` array. The array is created mmap-able
//! (`lb_common::MAP_F_MMAPABLE`), so slots are written with plain 32-bit
//! stores into a shared mapping: programming a thousand rings of 65,537
//! slots takes milliseconds, not a system call per slot. Only the pages a
//! write touches are mapped, and only while it lasts, so the daemon's
//! resident memory does not grow with the rings. A map without the flag
//! (adopted from an older program) is written slot by slot.
//!
//! The kernel lays array elements out 8 bytes apart (`round_up(value_size,
//! 8)`), so slot `i` is the u32 at byte `8 * i` of the array.
use std::{
    io,
    os::fd::{AsFd, AsRawFd},
    sync::atomic::{AtomicU32, Ordering, fence},
};

use aya::maps::{Array, Map, MapData};
use lb_common::names;

use super::{Error, Result, map_err};

/// Bytes between consecutive elements of a BPF array of u32.
const ELEMENT_STRIDE: usize = 8;

pub enum Rings {
    Mapped(Mappable),
    Syscalls(Array<MapData, u32>),
}

impl Rings {
    pub fn new(map: Map) -> Result<Self> {
        let Map::Array(data) = map else {
            return Err(Error::Invalid(format!("{} is not an array", names::RINGS)));
        };
        let info = data.info().map_err(map_err(names::RINGS))?;
        let mappable = Mappable {
            data,
            entries: info.max_entries() as usize,
        };
        if mappable.write(&[]).is_ok() {
            return Ok(Self::Mapped(mappable));
        }
        let array = Array::try_from(Map::Array(mappable.data)).map_err(map_err(names::RINGS))?;
        Ok(Self::Syscalls(array))
    }

    /// Writes `(index, backend id)` pairs; they are visible to the program
    /// once this returns.
    pub fn set(&mut self, slots: &[(u32, u32)]) -> Result<()> {
        match self {
            Self::Mapped(mappable) => mappable.write(slots).map_err(|error| {
                Error::Invalid(format!(
                    "writing {} through its mapping: {error}",
                    names::RINGS
                ))
            }),
            Self::Syscalls(array) => {
                for (index, id) in slots {
                    array.set(*index, *id, 0).map_err(map_err(names::RINGS))?;
                }
                Ok(())
            }
        }
    }
}

/// An mmap-able array of u32.
pub struct Mappable {
    data: MapData,
    entries: usize,
}

impl Mappable {
    /// Maps the pages that hold `slots`, stores them, unmaps. With no
    /// slots, maps the first page: a check that the map can be mapped.
    fn write(&self, slots: &[(u32, u32)]) -> io::Result<()> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let low = slots.iter().map(|(i, _)| *i as usize).min().unwrap_or(0);
        let high = slots.iter().map(|(i, _)| *i as usize).max().unwrap_or(0);
        if high >= self.entries.max(1) {
            return Err(io::Error::other(format!("slot {high} out of range")));
        }
        let start = low * ELEMENT_STRIDE / page * page;
        let end = ((high + 1) * ELEMENT_STRIDE).div_ceil(page) * page;
        let len = end - start;
        // SAFETY: a shared mapping of the map's fd, which we hold; the
        // kernel checks that the map is mmap-able and the range fits.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.data.fd().as_fd().as_raw_fd(),
                start as libc::off_t,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        for (index, id) in slots {
            let offset = *index as usize * ELEMENT_STRIDE - start;
            // SAFETY: `offset` lies in the mapping (low..=high are inside
            // start..end) and is 8-byte aligned in the page-aligned mapping.
            let slot = unsafe { &*address.cast::<u8>().add(offset).cast::<AtomicU32>() };
            slot.store(*id, Ordering::Relaxed);
        }
        // Before the caller flips the VIP entry to this ring.
        fence(Ordering::SeqCst);
        // SAFETY: unmapping exactly what was mapped above.
        unsafe { libc::munmap(address, len) };
        Ok(())
    }
}
