//! The flow hash: one function for every balancer node and for the daemon.
//!
//! Maglev only keeps a flow on its backend across a failover if every node
//! hashes the flow to the same ring slot, so the hash is fixed here, shared
//! by the XDP program and userspace, and independent of the CPU's byte
//! order: wire bytes are read as little-endian integers.
//!
//! The construction is a multiply-rotate absorption of 64-bit words followed
//! by the MurmurHash3 64-bit finaliser; it needs no tables and no loops, so
//! it costs a few dozen instructions in the verifier and in the JIT.

const SEED: u64 = 0x9e37_79b9_7f4a_7c15;
const K1: u64 = 0xff51_afd7_ed55_8ccd;
const K2: u64 = 0xc4ce_b9fe_1a85_ec53;

#[inline(always)]
fn absorb(h: u64, word: u64) -> u64 {
    (h ^ word).wrapping_mul(K1).rotate_left(31)
}

/// MurmurHash3's `fmix64`.
#[inline(always)]
fn finish(mut h: u64) -> u32 {
    h ^= h >> 33;
    h = h.wrapping_mul(K1);
    h ^= h >> 33;
    h = h.wrapping_mul(K2);
    h ^= h >> 33;
    h as u32
}

#[inline(always)]
fn ports_word(src_port_be: u16, dst_port_be: u16, proto: u8) -> u64 {
    let src = u16::from_le_bytes(src_port_be.to_ne_bytes()) as u64;
    let dst = u16::from_le_bytes(dst_port_be.to_ne_bytes()) as u64;
    src | (dst << 16) | ((proto as u64) << 32)
}

#[inline(always)]
fn word64(bytes: &[u8; 16], half: usize) -> u64 {
    let b = &bytes[half * 8..half * 8 + 8];
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Hash of an IPv4 5-tuple. Ports are in network byte order as on the wire;
/// fragments and other port-less packets pass 0 for both.
#[inline(always)]
pub fn flow_hash_v4(
    src: [u8; 4],
    dst: [u8; 4],
    src_port_be: u16,
    dst_port_be: u16,
    proto: u8,
) -> u32 {
    let addrs = u32::from_le_bytes(src) as u64 | ((u32::from_le_bytes(dst) as u64) << 32);
    let h = absorb(SEED, addrs);
    let h = absorb(h, ports_word(src_port_be, dst_port_be, proto));
    finish(h)
}

/// Hash of an IPv6 5-tuple, as [`flow_hash_v4`].
#[inline(always)]
pub fn flow_hash_v6(
    src: &[u8; 16],
    dst: &[u8; 16],
    src_port_be: u16,
    dst_port_be: u16,
    proto: u8,
) -> u32 {
    let h = absorb(SEED, word64(src, 0));
    let h = absorb(h, word64(src, 1));
    let h = absorb(h, word64(dst, 0));
    let h = absorb(h, word64(dst, 1));
    let h = absorb(h, ports_word(src_port_be, dst_port_be, proto));
    finish(h)
}

/// The ring slot of a flow hash: `hash * ring_size / 2^32`, which spreads
/// 32-bit hashes over `0..ring_size` as evenly as `hash % ring_size` (the
/// two differ by at most one hash per slot) but costs a multiplication
/// instead of a 64-bit division. Every balancer node must use the same
/// mapping, so it lives here.
#[inline(always)]
pub fn ring_slot(hash: u32, ring_size: u32) -> u32 {
    ((u64::from(hash) * u64::from(ring_size)) >> 32) as u32
}

/// Multiplier of the VIP filter's slot hash (Fibonacci hashing).
const FILTER_MUL: u32 = 0x9e37_79b1;

/// The `VIP_FILTER` slot of an IPv4 address: the top
/// `limits::VIP_FILTER_BITS` bits of the address (read little-endian, as
/// the program loads it) times a large odd constant. Cheap enough to run
/// on every packet before any hash-map lookup.
#[inline(always)]
pub fn vip_filter_slot_v4(addr: [u8; 4]) -> u32 {
    u32::from_le_bytes(addr).wrapping_mul(FILTER_MUL) >> (32 - crate::limits::VIP_FILTER_BITS)
}

/// The `VIP_FILTER` slot of an IPv6 address: its four 32-bit words folded
/// by exclusive or, then as [`vip_filter_slot_v4`].
#[inline(always)]
pub fn vip_filter_slot_v6(addr: &[u8; 16]) -> u32 {
    let word = |i: usize| u32::from_le_bytes([addr[i], addr[i + 1], addr[i + 2], addr[i + 3]]);
    let folded = word(0) ^ word(4) ^ word(8) ^ word(12);
    folded.wrapping_mul(FILTER_MUL) >> (32 - crate::limits::VIP_FILTER_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the function: a change here would break flow stickiness between
    /// balancer nodes running different versions.
    #[test]
    fn known_values() {
        let h = flow_hash_v4(
            [10, 0, 0, 1],
            [192, 0, 2, 10],
            1234u16.to_be(),
            80u16.to_be(),
            6,
        );
        assert_eq!(
            h,
            flow_hash_v4(
                [10, 0, 0, 1],
                [192, 0, 2, 10],
                1234u16.to_be(),
                80u16.to_be(),
                6
            )
        );
        assert_ne!(
            h,
            flow_hash_v4(
                [10, 0, 0, 1],
                [192, 0, 2, 10],
                1235u16.to_be(),
                80u16.to_be(),
                6
            )
        );
        assert_ne!(
            h,
            flow_hash_v4(
                [10, 0, 0, 1],
                [192, 0, 2, 10],
                1234u16.to_be(),
                80u16.to_be(),
                17
            )
        );
        assert_ne!(
            h,
            flow_hash_v4(
                [10, 0, 0, 2],
                [192, 0, 2, 10],
                1234u16.to_be(),
                80u16.to_be(),
                6
            )
        );
    }

    /// Source ports of one client spread evenly over a prime ring.
    #[test]
    fn spreads_over_ring() {
        const BUCKETS: usize = 13;
        const N: u32 = 130_000;
        let mut counts = [0u32; BUCKETS];
        for port in 0..N {
            let src_port = (port as u16).to_be();
            let h = flow_hash_v4(
                [10, 0, 0, (port >> 16) as u8],
                [192, 0, 2, 10],
                src_port,
                80u16.to_be(),
                6,
            );
            counts[h as usize % BUCKETS] += 1;
        }
        let expected = N / BUCKETS as u32;
        for c in counts {
            assert!(c.abs_diff(expected) < expected / 50, "{counts:?}");
        }
    }

    #[test]
    fn ring_slots_stay_in_range_and_spread() {
        const SIZE: u32 = 65_537;
        assert_eq!(ring_slot(0, SIZE), 0);
        assert_eq!(ring_slot(u32::MAX, SIZE), SIZE - 1);
        let mut counts = [0u32; 17];
        for port in 0..170_000u32 {
            let h = flow_hash_v4([10, 0, 0, 1], [192, 0, 2, 10], port as u16, 80, 6);
            counts[ring_slot(h, 17) as usize] += 1;
        }
        for c in counts {
            assert!(c.abs_diff(10_000) < 200, "{counts:?}");
        }
    }

    #[test]
    fn filter_slots_stay_in_range_and_spread() {
        let slots = crate::limits::VIP_FILTER_SLOTS;
        let mut seen = [false; crate::limits::VIP_FILTER_SLOTS as usize];
        for last in 0..=255u8 {
            let slot = vip_filter_slot_v4([192, 0, 2, last]);
            assert!(slot < slots);
            seen[slot as usize] = true;
            let mut v6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            v6[15] = last;
            assert!(vip_filter_slot_v6(&v6) < slots);
        }
        // 256 neighbouring addresses land in (almost) distinct slots.
        assert!(seen.iter().filter(|s| **s).count() > 240);
    }

    #[test]
    fn v6_spreads_over_ring() {
        const BUCKETS: usize = 17;
        const N: u32 = 170_000;
        let mut counts = [0u32; BUCKETS];
        let mut src = [0u8; 16];
        src[0] = 0x20;
        src[1] = 0x01;
        let dst = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
        for i in 0..N {
            src[15] = i as u8;
            src[14] = (i >> 8) as u8;
            src[13] = (i >> 16) as u8;
            let h = flow_hash_v6(&src, &dst, 40000u16.to_be(), 443u16.to_be(), 6);
            counts[h as usize % BUCKETS] += 1;
        }
        let expected = N / BUCKETS as u32;
        for c in counts {
            assert!(c.abs_diff(expected) < expected / 50, "{counts:?}");
        }
    }
}
