//! Writes into the `RINGS` array. The array is created mmap-able
//! (`lb_common::MAP_F_MMAPABLE`), so slots are written with plain 32-bit
//! stores into a shared mapping: programming a thousand rings of 65,537
//! slots takes milliseconds, not a system call per slot. Only the pages a
//! write touches are mapped, and only while it lasts, so the daemon's
//! resident memory does not grow with the rings.
//!
//! Its elements are `lb_common::RingBlock`s of 16 slots (64 bytes, so the
//! kernel adds no padding): the mapping is one flat run of u32 slots, slot
//! `i` at byte `4 * i`. One element more than the rings need holds the
//! ring size, for a daemon that adopts the program.
use std::{
    io,
    os::fd::{AsFd, AsRawFd},
    sync::atomic::{AtomicU32, Ordering, fence},
};

use aya::maps::{Map, MapData};
use lb_common::{MAP_F_MMAPABLE, RING_BLOCK_SLOTS, RingBlock, names};

use super::{Error, Result, another_version, map_err};

/// Bytes of one slot in the mapping.
const SLOT_BYTES: usize = 4;

/// The `RINGS` array, written through a mapping.
pub struct Rings(Mappable);

impl Rings {
    /// Takes `RINGS` of a program of this version: mappable, with elements
    /// of `RingBlock`. Anything else is the array of another version of
    /// the program (a daemon may adopt one attached to its interface),
    /// whose slots this daemon would write in the wrong places.
    pub fn new(map: Map) -> Result<Self> {
        let Map::Array(data) = map else {
            return Err(Error::Invalid(format!("{} is not an array", names::RINGS)));
        };
        let info = data.info().map_err(map_err(names::RINGS))?;
        if info.value_size() as usize != size_of::<RingBlock>()
            || info.map_flags() & MAP_F_MMAPABLE == 0
        {
            return Err(another_version(&format!(
                "{} has {}-byte elements (flags {:#x}), not mappable {}-byte blocks",
                names::RINGS,
                info.value_size(),
                info.map_flags(),
                size_of::<RingBlock>()
            )));
        }
        Ok(Self(Mappable {
            data,
            slots: info.max_entries() as usize * RING_BLOCK_SLOTS,
        }))
    }

    /// Writes `table` from flat slot `base`, storing only the slots that
    /// differ; visible to the program once this returns. Returns the
    /// slots written.
    pub fn write(&mut self, base: u32, table: &[u32]) -> Result<usize> {
        self.0.write(base as usize, table).map_err(mapping_error)
    }

    /// Records the ring size in the array's last element, past every ring
    /// (`lb_common::ring_blocks` of the slots plus one), where a daemon
    /// that adopts the program reads it back ([`Self::ring_size`]).
    pub fn record_ring_size(&mut self, ring_size: u32) -> Result<()> {
        self.0
            .write(self.size_slot(), &[ring_size])
            .map(drop)
            .map_err(mapping_error)
    }

    /// The ring size recorded at load ([`Self::record_ring_size`]).
    pub fn ring_size(&self) -> Result<u32> {
        self.0.read(self.size_slot()).map_err(mapping_error)
    }

    fn size_slot(&self) -> usize {
        self.0.slots - RING_BLOCK_SLOTS
    }
}

fn mapping_error(error: io::Error) -> Error {
    Error::Invalid(format!(
        "accessing {} through its mapping: {error}",
        names::RINGS
    ))
}

/// An mmap-able array holding a flat run of u32 slots.
struct Mappable {
    data: MapData,
    slots: usize,
}

impl Mappable {
    /// Maps the pages that hold slots `base..base + count`, runs `f` on
    /// those slots, unmaps.
    fn with_slots<R>(
        &self,
        base: usize,
        count: usize,
        f: impl FnOnce(&[AtomicU32]) -> R,
    ) -> io::Result<R> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let end_slot = base + count;
        if count == 0 || end_slot > self.slots {
            return Err(io::Error::other(format!(
                "slots {base}..{end_slot} out of range 0..{}",
                self.slots
            )));
        }
        let start = base * SLOT_BYTES / page * page;
        let end = (end_slot * SLOT_BYTES).div_ceil(page) * page;
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
        // SAFETY: the slots lie in the mapping (inside start..end), 4-byte
        // aligned in the page-aligned mapping; the program reads them
        // concurrently, so they are accessed as atomics only.
        let slots = unsafe {
            std::slice::from_raw_parts(
                address
                    .cast::<u8>()
                    .add(base * SLOT_BYTES - start)
                    .cast::<AtomicU32>(),
                count,
            )
        };
        let result = f(slots);
        // SAFETY: unmapping exactly what was mapped above.
        unsafe { libc::munmap(address, len) };
        Ok(result)
    }

    /// Stores the slots from `base` that differ from `table`.
    fn write(&self, base: usize, table: &[u32]) -> io::Result<usize> {
        if table.is_empty() {
            return Ok(0);
        }
        self.with_slots(base, table.len(), |slots| {
            let mut written = 0;
            for (slot, id) in slots.iter().zip(table) {
                if slot.load(Ordering::Relaxed) != *id {
                    slot.store(*id, Ordering::Relaxed);
                    written += 1;
                }
            }
            // Before the caller flips the VIP entry to this ring.
            fence(Ordering::SeqCst);
            written
        })
    }

    fn read(&self, slot: usize) -> io::Result<u32> {
        self.with_slots(slot, 1, |slots| slots[0].load(Ordering::Relaxed))
    }
}
