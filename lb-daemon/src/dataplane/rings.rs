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
        if mappable.write(0, &[]).is_ok() {
            return Ok(Self::Mapped(mappable));
        }
        let array = Array::try_from(Map::Array(mappable.data)).map_err(map_err(names::RINGS))?;
        Ok(Self::Syscalls(array))
    }

    /// Writes `table` from slot `base`; visible to the program once this
    /// returns. Through the mapping only the slots that differ are
    /// stored; without it every slot is written. Returns the slots written.
    pub fn write(&mut self, base: u32, table: &[u32]) -> Result<usize> {
        match self {
            Self::Mapped(mappable) => mappable.write(base as usize, table).map_err(|error| {
                Error::Invalid(format!(
                    "writing {} through its mapping: {error}",
                    names::RINGS
                ))
            }),
            Self::Syscalls(array) => {
                for (slot, id) in table.iter().enumerate() {
                    array
                        .set(base + slot as u32, *id, 0)
                        .map_err(map_err(names::RINGS))?;
                }
                Ok(table.len())
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
    /// Maps the pages that hold slots `base..base + table.len()`, stores
    /// the slots that differ from `table`, unmaps. With an empty table,
    /// maps one page: a check that the map can be mapped.
    fn write(&self, base: usize, table: &[u32]) -> io::Result<usize> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let end_slot = base + table.len().max(1);
        if end_slot > self.entries.max(1) {
            return Err(io::Error::other(format!(
                "slot {} out of range",
                end_slot - 1
            )));
        }
        let start = base * ELEMENT_STRIDE / page * page;
        let end = (end_slot * ELEMENT_STRIDE).div_ceil(page) * page;
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
        let mut written = 0;
        for (i, id) in table.iter().enumerate() {
            let offset = (base + i) * ELEMENT_STRIDE - start;
            // SAFETY: `offset` lies in the mapping (the slots are inside
            // start..end) and is 8-byte aligned in the page-aligned mapping.
            let slot = unsafe { &*address.cast::<u8>().add(offset).cast::<AtomicU32>() };
            if slot.load(Ordering::Relaxed) != *id {
                slot.store(*id, Ordering::Relaxed);
                written += 1;
            }
        }
        // Before the caller flips the VIP entry to this ring.
        fence(Ordering::SeqCst);
        // SAFETY: unmapping exactly what was mapped above.
        unsafe { libc::munmap(address, len) };
        Ok(written)
    }
}
