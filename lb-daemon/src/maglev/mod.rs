//! Maglev consistent hashing (Eisenbud et al., NSDI 2016, §3.4), weighted.
//!
//! [`build`] fills a lookup table of a prime size `m` with backend ids.
//! Each backend walks its own permutation of the slots (an offset and a
//! skip derived from its key) and claims the first free slot on its turn;
//! a backend of weight `w` gets `w / max_weight` turns per round, so its
//! share of slots is proportional to its weight. When one of N backends
//! leaves, about 1/N of the slots change owner and the rest stay put.
//!
//! The result depends only on the set of (key, weight, id), not on the
//! order it is given in, so every balancer with the same backend set
//! builds the same table and a failover keeps flows on their backends.
//! It must not change between versions either (a pair of balancers may
//! run two versions during an upgrade): `tests.rs` pins tables.
//!
//! A [`Builder`] keeps its working memory between builds; `probe.rs` finds
//! a member's next free slot, several slots at a time where the CPU
//! allows.
mod probe;

use probe::Walker;

/// One backend as Maglev sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// What the backend is written as in the table.
    pub id: u32,
    /// Stable identity that seeds its permutation (see [`key_of`]).
    pub key: u64,
    /// Relative share; 0 takes no slots.
    pub weight: u32,
}

/// Written in slots no backend claims (no member has a weight).
pub const EMPTY: u32 = 0;

/// A stable 64-bit key for a backend address: FNV-1a over the bytes. It
/// must never change between versions, or mixed-version pairs of balancers
/// would pick different backends.
pub fn key_of(addr: &std::net::IpAddr) -> u64 {
    match addr {
        std::net::IpAddr::V4(a) => fnv1a(&a.octets()),
        std::net::IpAddr::V6(a) => fnv1a(&a.octets()),
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// MurmurHash3's 64-bit finaliser, to derive offset and skip from a key.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Whether `n` is prime (table sizes are validated with this).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u32;
    while u64::from(d) * u64::from(d) <= u64::from(n) {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

/// Builds a table of `size` slots (a prime) from `members`. Members with
/// weight 0 or id [`EMPTY`] take no slots.
pub fn build(members: &[Member], size: u32) -> Vec<u32> {
    let mut table = Vec::new();
    Builder::default().build_into(members, size, &mut table);
    table
}

/// Builds Maglev tables, reusing its working memory from one build to
/// the next (one per thread that builds).
#[derive(Debug, Default)]
pub struct Builder {
    walkers: Vec<Walker>,
    /// Which slots are taken, one bit each: probes read this (8 KiB for
    /// 65,537 slots, in L1) instead of the table.
    taken: Vec<u32>,
}

impl Builder {
    /// [`build`] into `table` (resized to `size` slots; its old contents
    /// do not matter).
    pub fn build_into(&mut self, members: &[Member], size: u32, table: &mut Vec<u32>) {
        if self.prepare(members, size, table) {
            probe::fill(self.fill(table, size));
        }
    }

    /// Sizes `table`, turns the members that take slots into walkers in
    /// turn order and clears the bitset; false when no slot is to be
    /// claimed (the table is then all [`EMPTY`]).
    fn prepare(&mut self, members: &[Member], size: u32, table: &mut Vec<u32>) -> bool {
        table.clear();
        table.resize(size as usize, EMPTY);
        self.walkers.clear();
        self.walkers.extend(
            members
                .iter()
                .filter(|b| b.weight > 0 && b.id != EMPTY)
                .map(|b| Walker::new(b, size)),
        );
        if self.walkers.is_empty() || size == 0 {
            return false;
        }
        // Turn order must not depend on the order of the configuration.
        self.walkers.sort_by_key(|w| (w.key, w.id));
        self.taken.clear();
        self.taken.resize((size as usize).div_ceil(32), 0);
        true
    }

    fn fill<'a>(&'a mut self, table: &'a mut [u32], size: u32) -> probe::Fill<'a> {
        probe::Fill {
            walkers: &mut self.walkers,
            taken: &mut self.taken,
            table,
            size,
        }
    }
}

/// The first slot of a member's permutation and the step between its
/// slots (never 0, so the walk visits every slot of a prime table).
fn permutation(key: u64, size: u32) -> (u32, u32) {
    let m = u64::from(size);
    let offset = mix(key) % m;
    let skip = mix(key ^ 0x9e37_79b9_7f4a_7c15) % (m - 1).max(1) + 1;
    // Both are below `size`, a u32.
    (offset as u32, skip as u32)
}

/// `(a + b) mod m` for `a, b < m`.
#[inline(always)]
fn add_mod(a: u32, b: u32, m: u32) -> u32 {
    let (sum, m) = (u64::from(a) + u64::from(b), u64::from(m));
    // Below `m`, a u32.
    (if sum >= m { sum - m } else { sum }) as u32
}

#[cfg(test)]
mod tests;
