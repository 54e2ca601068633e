//! Layout of the flow tables: the backend each flow is pinned to.
//!
//! A flow table is an array of sets, each one cache line, indexed by the
//! low bits of the flow hash. A set holds a few ways (four IPv4 flows or
//! two IPv6 flows); a way is a flow's key and one 32-bit `meta` word with
//! its backend id, its protocol and a coarse time stamp. Looking a flow up
//! reads one cache line, and a new flow is written into the same line:
//! into an empty way, else over the way used least recently.
//!
//! The set is shared by all CPUs. The ports and the meta word of a way
//! form one aligned 64-bit word, its [`tail`]. A writer claims a way by
//! swapping its tail for one with the meta word [`meta::BUSY`] with
//! compare-and-exchange, writes the addresses, then stores the new tail;
//! readers skip ways whose backend id is 0 and re-read the tail after
//! comparing the addresses, so that addresses rewritten under them are
//! never paired with the tail of another flow. A lost race only means that the flow is not pinned for now: the
//! next packet tries again, and until then the Maglev ring, which is
//! consistent, picks the same backend unless the ring changed meanwhile.
//!
//! The IPv6 way keeps the source address whole and the destination folded
//! to 64 bits. A fold that matches a different VIP address can only pair
//! a flow with a backend of another virtual server, and every backend
//! entry names its virtual server, which the program checks on every
//! packet: such a pair is treated as a miss, never as a forwarding.

/// Ways of an IPv4 set.
pub const WAYS_V4: usize = 4;
/// Ways of an IPv6 set.
pub const WAYS_V6: usize = 2;

/// One IPv4 flow: addresses and ports as loaded from the packet (memory
/// order), and the meta word. `ports` and `meta` form the way's [`tail`].
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Way4 {
    pub src: u32,
    pub dst: u32,
    /// `src_port_be | dst_port_be << 16`.
    pub ports: u32,
    pub meta: u32,
}

/// One IPv6 flow: the source address, the destination folded to two
/// words ([`fold_v6`]), the ports as in [`Way4`] and the meta word.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Way6 {
    pub src: [u32; 4],
    pub dst_fold: [u32; 2],
    pub ports: u32,
    pub meta: u32,
}

/// One set of the IPv4 flow table: one cache line.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Set4 {
    pub ways: [Way4; WAYS_V4],
}

/// One set of the IPv6 flow table: one cache line.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Set6 {
    pub ways: [Way6; WAYS_V6],
}

const _: () = {
    assert!(core::mem::size_of::<Set4>() == 64);
    assert!(core::mem::size_of::<Set6>() == 64);
    assert!(core::mem::offset_of!(Way4, ports) % 8 == 0);
    assert!(core::mem::offset_of!(Way4, meta) == core::mem::offset_of!(Way4, ports) + 4);
    assert!(core::mem::offset_of!(Way6, ports) % 8 == 0);
    assert!(core::mem::offset_of!(Way6, meta) == core::mem::offset_of!(Way6, ports) + 4);
};

/// A way of either flow table: where its [`tail`] is.
pub trait Way {
    /// The tail (ports and meta word) of the way at `way`.
    ///
    /// # Safety
    /// `way` points to a way inside a set.
    unsafe fn tail(way: *mut Self) -> *mut u64;
}

impl Way for Way4 {
    #[inline(always)]
    unsafe fn tail(way: *mut Self) -> *mut u64 {
        // SAFETY: the caller's; `ports` is 8-aligned and `meta` follows it
        // (asserted above).
        unsafe { (&raw mut (*way).ports).cast() }
    }
}

impl Way for Way6 {
    #[inline(always)]
    unsafe fn tail(way: *mut Self) -> *mut u64 {
        // SAFETY: as for `Way4`.
        unsafe { (&raw mut (*way).ports).cast() }
    }
}

/// The ports and meta word of a way as the one 64-bit word they form in
/// memory (little-endian: the ports are the low half).
#[inline(always)]
pub const fn tail(ports: u32, meta: u32) -> u64 {
    ports as u64 | ((meta as u64) << 32)
}

/// The meta word of a [`tail`].
#[inline(always)]
pub const fn meta_of(tail: u64) -> u32 {
    (tail >> 32) as u32
}

/// The ports of a [`tail`].
#[inline(always)]
pub const fn ports_of(tail: u64) -> u32 {
    tail as u32
}

/// The two ports of a flow as one word, as [`Way4::ports`] holds them.
#[inline(always)]
pub const fn ports_word(src_port_be: u16, dst_port_be: u16) -> u32 {
    src_port_be as u32 | ((dst_port_be as u32) << 16)
}

/// An IPv6 destination address (as four words in memory order) folded to
/// the two words [`Way6::dst_fold`] keeps.
#[inline(always)]
pub const fn fold_v6(dst: [u32; 4]) -> [u32; 2] {
    [dst[0] ^ dst[2], dst[1] ^ dst[3]]
}

/// Sets of a table that holds at least `entries` flows in sets of `ways`
/// ways: a power of two, so that the set of a hash is `hash & (sets - 1)`.
pub const fn sets(entries: u32, ways: usize) -> u32 {
    let sets = entries.div_ceil(ways as u32);
    if sets <= 1 {
        1
    } else {
        sets.next_power_of_two()
    }
}

/// The meta word of a way: backend id (bits 0..20; 0 means the way holds
/// no flow), whether the flow is UDP (bit 20, else TCP) and the time stamp
/// of its last packet (bits 21..32, in [`meta::stamp`] units).
pub mod meta {
    /// Bits of the backend id; ids run from 1 to `BACKEND_MASK`.
    pub const BACKEND_MASK: u32 = (1 << 20) - 1;
    pub const UDP: u32 = 1 << 20;
    const STAMP_SHIFT: u32 = 21;
    const STAMP_MASK: u32 = (1 << 11) - 1;
    /// A way being rewritten: no backend, so readers skip it, and not 0,
    /// so other writers do not take it as empty.
    pub const BUSY: u32 = !BACKEND_MASK;
    /// An empty way.
    pub const EMPTY: u32 = 0;

    /// The meta word of a flow to `backend_id` (at most `BACKEND_MASK`)
    /// seen at `stamp`.
    #[inline(always)]
    pub const fn new(backend_id: u32, udp: bool, stamp: u32) -> u32 {
        (backend_id & BACKEND_MASK)
            | if udp { UDP } else { 0 }
            | ((stamp & STAMP_MASK) << STAMP_SHIFT)
    }

    /// The backend id; 0 for an empty or busy way.
    #[inline(always)]
    pub const fn backend(meta: u32) -> u32 {
        meta & BACKEND_MASK
    }

    /// `meta` with its time stamp replaced by `stamp`.
    #[inline(always)]
    pub const fn restamped(meta: u32, stamp: u32) -> u32 {
        (meta & (BACKEND_MASK | UDP)) | ((stamp & STAMP_MASK) << STAMP_SHIFT)
    }

    /// The time stamp of `meta`.
    #[inline(always)]
    pub const fn stamp_of(meta: u32) -> u32 {
        meta >> STAMP_SHIFT
    }

    /// The time stamp of jiffies `jiffies`: units of 256 jiffies (a quarter
    /// of a second at HZ=1000, a second at HZ=250), kept modulo 2,048.
    /// Only the order of a set's ways matters, so the unit is coarse: a
    /// flow's way is rewritten at most once per unit.
    #[inline(always)]
    pub const fn stamp(jiffies: u64) -> u32 {
        (jiffies >> 8) as u32 & STAMP_MASK
    }

    /// Units since `meta` was stamped, at `now` (wrapping: a way idle for
    /// longer than 2,048 units may look younger than it is).
    #[inline(always)]
    pub const fn age(meta: u32, now: u32) -> u32 {
        now.wrapping_sub(stamp_of(meta)) & STAMP_MASK
    }
}

/// The way a new flow should take in a set, chosen one way at a time: the
/// first empty way, else the one idle longest (the first of equals); never
/// a busy way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Victim {
    /// The way chosen so far; `usize::MAX` while there is none.
    pub way: usize,
    age: u32,
    empty: bool,
}

impl Victim {
    pub const NONE: Self = Self {
        way: usize::MAX,
        age: 0,
        empty: false,
    };

    /// Considers way `way`, whose meta word is `meta`, at time stamp `now`.
    #[inline(always)]
    pub fn consider(&mut self, way: usize, meta: u32, now: u32) {
        if self.empty {
            return;
        }
        if meta == meta::EMPTY {
            *self = Self {
                way,
                age: 0,
                empty: true,
            };
            return;
        }
        if meta::backend(meta) == 0 {
            return;
        }
        let age = meta::age(meta, now);
        if self.way == usize::MAX || age > self.age {
            self.way = way;
            self.age = age;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`Victim`] over a whole set's meta words, as the program walks a
    /// set; `None` when every way is busy.
    fn victim(metas: &[u32], now: u32) -> Option<usize> {
        let mut victim = Victim::NONE;
        for (way, &m) in metas.iter().enumerate() {
            victim.consider(way, m, now);
        }
        (victim.way != usize::MAX).then_some(victim.way)
    }

    #[test]
    fn meta_round_trips() {
        let m = meta::new(meta::BACKEND_MASK, true, 2047);
        assert_eq!(meta::backend(m), meta::BACKEND_MASK);
        assert_ne!(m & meta::UDP, 0);
        assert_eq!(meta::stamp_of(m), 2047);
        let m = meta::new(7, false, 5);
        assert_eq!(
            (meta::backend(m), m & meta::UDP, meta::stamp_of(m)),
            (7, 0, 5)
        );
        let r = meta::restamped(m, 9);
        assert_eq!(
            (meta::backend(r), r & meta::UDP, meta::stamp_of(r)),
            (7, 0, 9)
        );
    }

    #[test]
    fn tail_splits_into_ports_and_meta() {
        let t = tail(0x1234_5678, 0x9abc_def0);
        assert_eq!((ports_of(t), meta_of(t)), (0x1234_5678, 0x9abc_def0));
        let way = Way4 {
            ports: 0x1234_5678,
            meta: 0x9abc_def0,
            ..Way4::default()
        };
        // SAFETY: Way4 is repr(C) with `ports` 8-aligned and `meta` after it.
        let word = unsafe { *(&raw const way.ports).cast::<u64>() };
        assert_eq!(word, t);
    }

    #[test]
    fn busy_and_empty_hold_no_backend() {
        assert_eq!(meta::backend(meta::BUSY), 0);
        assert_ne!(meta::BUSY, meta::EMPTY);
        assert_eq!(meta::backend(meta::EMPTY), 0);
    }

    #[test]
    fn age_wraps_with_the_stamp() {
        assert_eq!(meta::age(meta::new(1, false, 10), 12), 2);
        assert_eq!(meta::age(meta::new(1, false, 2046), 1), 3);
        assert_eq!(meta::stamp(256 * 2049), 1);
    }

    #[test]
    fn victim_prefers_empty_then_oldest() {
        let now = 100;
        let old = meta::new(3, false, 10);
        let young = meta::new(4, false, 99);
        assert_eq!(victim(&[young, meta::EMPTY, old, young], now), Some(1));
        assert_eq!(victim(&[young, old, young, old], now), Some(1));
        assert_eq!(victim(&[meta::BUSY, young], now), Some(1));
        assert_eq!(victim(&[meta::BUSY, meta::BUSY], now), None);
        // Stamps from before the wrap are older than recent ones.
        let recent = meta::new(4, false, 1);
        let before_wrap = meta::new(5, false, 2040);
        assert_eq!(victim(&[recent, before_wrap], 3), Some(1));
    }

    #[test]
    fn sets_are_powers_of_two_holding_the_entries() {
        assert_eq!(sets(1 << 20, WAYS_V4), 1 << 18);
        assert_eq!(sets(1 << 20, WAYS_V6), 1 << 19);
        assert_eq!(sets(1000, WAYS_V4), 256);
        assert_eq!(sets(0, WAYS_V4), 1);
        assert_eq!(sets(3, WAYS_V6), 2);
    }

    #[test]
    fn fold_keeps_distinct_halves() {
        assert_eq!(fold_v6([1, 2, 4, 8]), [5, 10]);
        assert_ne!(fold_v6([1, 2, 3, 4]), fold_v6([1, 2, 3, 5]));
    }
}
