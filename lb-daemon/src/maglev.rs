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
    let m = size as usize;
    let mut table = vec![EMPTY; m];
    let mut members: Vec<Member> = members
        .iter()
        .copied()
        .filter(|b| b.weight > 0 && b.id != EMPTY)
        .collect();
    if members.is_empty() || m == 0 {
        return table;
    }
    // Turn order must not depend on the order of the configuration.
    members.sort_by_key(|b| (b.key, b.id));
    let max_weight = members.iter().map(|b| b.weight).max().unwrap_or(1);
    let m64 = m as u64;
    // Each member walks the table from `offset` in steps of `skip` (its
    // permutation); `position` is where its walk is now. Adding and
    // wrapping instead of `(offset + j * skip) % m` keeps a division out
    // of the inner loop.
    let skips: Vec<u64> = members
        .iter()
        .map(|b| mix(b.key ^ 0x9e37_79b9_7f4a_7c15) % (m64 - 1).max(1) + 1)
        .collect();
    let mut position: Vec<u64> = members.iter().map(|b| mix(b.key) % m64).collect();
    let mut credit = vec![0u64; members.len()];
    // Which slots are taken, one bit each: the probes read this (8 KiB
    // for 65,537 slots, in L1) instead of the table.
    let mut taken = vec![0u64; m.div_ceil(64)];
    let is_taken = |taken: &[u64], slot: u64| taken[(slot >> 6) as usize] >> (slot & 63) & 1 == 1;
    let mut filled = 0usize;
    loop {
        for (i, member) in members.iter().enumerate() {
            credit[i] += u64::from(member.weight);
            while credit[i] >= u64::from(max_weight) {
                credit[i] -= u64::from(max_weight);
                let skip = skips[i];
                let mut slot = position[i];
                while is_taken(&taken, slot) {
                    slot += skip;
                    if slot >= m64 {
                        slot -= m64;
                    }
                }
                taken[(slot >> 6) as usize] |= 1 << (slot & 63);
                table[slot as usize] = member.id;
                slot += skip;
                if slot >= m64 {
                    slot -= m64;
                }
                position[i] = slot;
                filled += 1;
                if filled == m {
                    return table;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    const M: u32 = 65_537;

    fn members(n: u32, weight: u32) -> Vec<Member> {
        (1..=n)
            .map(|i| {
                let addr = IpAddr::V4(Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8));
                Member {
                    id: i,
                    key: key_of(&addr),
                    weight,
                }
            })
            .collect()
    }

    fn shares(table: &[u32], n: u32) -> Vec<usize> {
        let mut counts = vec![0usize; n as usize + 1];
        for id in table {
            counts[*id as usize] += 1;
        }
        counts
    }

    #[test]
    fn equal_weights_balance_within_one_percent() {
        for n in [2, 3, 10, 100, 1000] {
            let table = build(&members(n, 100), M);
            let counts = shares(&table, n);
            assert_eq!(counts[0], 0, "every slot is filled");
            let ideal = f64::from(M) / f64::from(n);
            for (id, count) in counts.iter().enumerate().skip(1) {
                let error = (*count as f64 - ideal).abs() / ideal;
                assert!(
                    error < 0.01,
                    "n={n} backend {id}: {count} slots, ideal {ideal:.1}"
                );
            }
        }
    }

    #[test]
    fn unequal_weights_are_proportional() {
        let mut set = members(4, 100);
        set[1].weight = 200;
        set[2].weight = 50;
        set[3].weight = 150;
        let counts = shares(&build(&set, M), 4);
        let total: u32 = set.iter().map(|m| m.weight).sum();
        for m in &set {
            let ideal = f64::from(M) * f64::from(m.weight) / f64::from(total);
            let error = (counts[m.id as usize] as f64 - ideal).abs() / ideal;
            assert!(
                error < 0.01,
                "{m:?}: {} slots, ideal {ideal:.1}",
                counts[m.id as usize]
            );
        }
    }

    #[test]
    fn weight_zero_takes_no_slots() {
        let mut set = members(3, 100);
        set[0].weight = 0;
        let counts = shares(&build(&set, 101), 3);
        assert_eq!(counts[1], 0);
        assert_eq!(counts[2] + counts[3], 101);
    }

    #[test]
    fn empty_set_gives_empty_table() {
        assert!(build(&[], 13).iter().all(|id| *id == EMPTY));
    }

    #[test]
    fn order_of_members_does_not_matter() {
        let set = members(50, 100);
        let mut reversed = set.clone();
        reversed.reverse();
        assert_eq!(build(&set, M), build(&reversed, M));
    }

    /// Removing one of N backends moves its own slots and only a few
    /// others: the share of slots that change owner stays close to 1/N.
    #[test]
    fn removal_disrupts_about_one_nth() {
        for n in [5u32, 10, 50] {
            let set = members(n, 100);
            let before = build(&set, M);
            let after = build(&set[1..], M);
            let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
            let moved_share = moved as f64 / f64::from(M);
            let one_nth = 1.0 / f64::from(n);
            assert!(
                moved_share < one_nth * 1.6,
                "n={n}: {moved_share:.4} of slots moved, 1/N = {one_nth:.4}"
            );
            // Slots of the surviving backends mostly keep their owner.
            let kept = before
                .iter()
                .zip(&after)
                .filter(|(a, b)| **a != set[0].id && a == b)
                .count();
            let survivors = before.iter().filter(|a| **a != set[0].id).count();
            assert!(kept as f64 / survivors as f64 > 0.9, "n={n}");
        }
    }

    #[test]
    fn addition_disrupts_about_one_nth() {
        let set = members(11, 100);
        let before = build(&set[..10], M);
        let after = build(&set, M);
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        assert!((moved as f64 / f64::from(M)) < 1.6 / 11.0);
    }

    #[test]
    fn primes() {
        assert!(is_prime(65_537));
        assert!(is_prime(13));
        assert!(!is_prime(65_536));
        assert!(!is_prime(1));
    }
}
