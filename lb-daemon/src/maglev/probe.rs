//! The fill loop of a build: members take turns (a member of weight `w`
//! gets `w / max_weight` turns per round) and on its turn each claims the
//! next free slot of its permutation.
//!
//! Finding that slot is where the time goes: once most slots are taken,
//! a member steps over many taken ones (about `size × ln size` steps per
//! table in all). With AVX2 or AVX-512 a member tests the next 8 or 16
//! slots of its permutation at once, their bits gathered from the bitset
//! by one instruction; the first free one among them is the slot the
//! one-at-a-time walk would have found. Every path claims the same slots
//! (`tests.rs` compares them); the scalar walk is the reference, and the
//! only one on other CPUs.
use super::{Member, add_mod, permutation};

/// Slots the widest path tests at once.
const LANES: usize = 16;

/// A member during a build.
#[derive(Clone, Copy, Debug)]
pub(super) struct Walker {
    /// `k × skip mod size` for `k < LANES`: where the next slots of the
    /// permutation lie, counted from `position`.
    steps: [u32; LANES],
    /// `LANES × skip mod size`.
    stride: u32,
    /// The next slot of its permutation.
    position: u32,
    /// Turns are taken while this reaches the largest weight.
    credit: u64,
    weight: u32,
    pub(super) id: u32,
    pub(super) key: u64,
}

impl Walker {
    pub(super) fn new(member: &Member, size: u32) -> Self {
        let (offset, skip) = permutation(member.key, size);
        let mut steps = [0u32; LANES];
        let mut step = 0;
        for slot in &mut steps {
            *slot = step;
            step = add_mod(step, skip, size);
        }
        Self {
            steps,
            stride: step,
            position: offset,
            credit: 0,
            weight: member.weight,
            id: member.id,
            key: member.key,
        }
    }

    /// The step between consecutive slots of its permutation.
    fn skip(&self) -> u32 {
        self.steps[1]
    }
}

/// A table to fill: `taken` clear (one bit per slot), `walkers` sorted
/// into turn order, every one with a weight.
pub(super) struct Fill<'a> {
    pub(super) walkers: &'a mut [Walker],
    pub(super) taken: &'a mut [u32],
    pub(super) table: &'a mut [u32],
    pub(super) size: u32,
}

/// Fills every slot of the table, on the widest path the CPU has.
pub(super) fn fill(fill: Fill<'_>) {
    #[cfg(target_arch = "x86_64")]
    if fill.size <= x86::MAX_SIZE {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { x86::fill_avx512(fill) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { x86::fill_avx2(fill) };
        }
    }
    fill.run(next_free);
}

impl Fill<'_> {
    /// The fill loop, with `next_free(taken, walker, size)` finding the
    /// next free slot of a walker whose `position` is taken. Inlined into
    /// each caller, so that the vector paths are compiled with their
    /// features.
    #[inline(always)]
    fn run(self, next_free: impl Fn(&[u32], &Walker, u32) -> u32) {
        let Self {
            walkers,
            taken,
            table,
            size,
        } = self;
        let max_weight = walkers.iter().map(|w| u64::from(w.weight)).max();
        let Some(max_weight) = max_weight.filter(|w| *w > 0) else {
            return;
        };
        let mut left = table.len();
        loop {
            for walker in walkers.iter_mut() {
                walker.credit += u64::from(walker.weight);
                while walker.credit >= max_weight {
                    walker.credit -= max_weight;
                    let slot = if is_taken(taken, walker.position) {
                        next_free(taken, walker, size)
                    } else {
                        walker.position
                    };
                    taken[(slot / 32) as usize] |= 1 << (slot % 32);
                    table[slot as usize] = walker.id;
                    walker.position = add_mod(slot, walker.skip(), size);
                    left -= 1;
                    if left == 0 {
                        return;
                    }
                }
            }
        }
    }
}

fn is_taken(taken: &[u32], slot: u32) -> bool {
    taken[(slot / 32) as usize] >> (slot % 32) & 1 == 1
}

/// One slot at a time (adding and wrapping instead of `(offset + j ×
/// skip) % size` keeps a division out of the loop).
fn next_free(taken: &[u32], walker: &Walker, size: u32) -> u32 {
    let mut slot = walker.position;
    while is_taken(taken, slot) {
        slot = add_mod(slot, walker.skip(), size);
    }
    slot
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Fill, Walker, add_mod};

    /// Largest table the vector paths handle: slot numbers plus a step
    /// stay below 2^32 in a 32-bit lane.
    pub(super) const MAX_SIZE: u32 = 1 << 31;

    /// [`super::fill`] testing 8 slots at a time.
    #[target_feature(enable = "avx2")]
    pub(super) fn fill_avx2(fill: Fill<'_>) {
        fill.run(|taken, walker, size| next_free_avx2(taken, walker, size));
    }

    /// [`super::fill`] testing 16 slots at a time.
    #[target_feature(enable = "avx512f")]
    pub(super) fn fill_avx512(fill: Fill<'_>) {
        fill.run(|taken, walker, size| next_free_avx512(taken, walker, size));
    }

    /// The first free slot among `position + steps[k]` (k < 8), then the
    /// 8 after those, and so on.
    #[target_feature(enable = "avx2")]
    fn next_free_avx2(taken: &[u32], walker: &Walker, size: u32) -> u32 {
        // SAFETY: `steps` holds 16 u32, the load reads the first 8.
        let steps = unsafe { _mm256_loadu_si256(walker.steps.as_ptr().cast()) };
        let size_lanes = _mm256_set1_epi32(size as i32);
        let stride = walker.steps[8];
        let mut base = walker.position;
        loop {
            // Slots base + steps[k], wrapped: `min(s, s - size)` as unsigned.
            let sum = _mm256_add_epi32(_mm256_set1_epi32(base as i32), steps);
            let slots = _mm256_min_epu32(sum, _mm256_sub_epi32(sum, size_lanes));
            // SAFETY: every slot is below `size`, so every word index
            // (slot / 32) is inside `taken`.
            let words = unsafe {
                _mm256_i32gather_epi32::<4>(taken.as_ptr().cast(), _mm256_srli_epi32::<5>(slots))
            };
            let bits = _mm256_srlv_epi32(words, _mm256_and_si256(slots, _mm256_set1_epi32(31)));
            // Each lane's bit moved to its sign, the signs collected.
            let taken_lanes =
                _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_slli_epi32::<31>(bits)));
            let free = !taken_lanes as u32 & 0xff;
            if free != 0 {
                return add_mod(base, walker.steps[free.trailing_zeros() as usize], size);
            }
            base = add_mod(base, stride, size);
        }
    }

    /// [`next_free_avx2`] 16 slots at a time.
    #[target_feature(enable = "avx512f")]
    fn next_free_avx512(taken: &[u32], walker: &Walker, size: u32) -> u32 {
        // SAFETY: `steps` holds 16 u32.
        let steps = unsafe { _mm512_loadu_si512(walker.steps.as_ptr().cast()) };
        let size_lanes = _mm512_set1_epi32(size as i32);
        let mut base = walker.position;
        loop {
            let sum = _mm512_add_epi32(_mm512_set1_epi32(base as i32), steps);
            let slots = _mm512_min_epu32(sum, _mm512_sub_epi32(sum, size_lanes));
            // SAFETY: as in `next_free_avx2`.
            let words = unsafe {
                _mm512_i32gather_epi32::<4>(_mm512_srli_epi32::<5>(slots), taken.as_ptr().cast())
            };
            let bits = _mm512_srlv_epi32(words, _mm512_and_si512(slots, _mm512_set1_epi32(31)));
            let taken_lanes = _mm512_test_epi32_mask(bits, _mm512_set1_epi32(1));
            let free = u32::from(!taken_lanes);
            if free != 0 {
                return add_mod(base, walker.steps[free.trailing_zeros() as usize], size);
            }
            base = add_mod(base, walker.stride, size);
        }
    }
}

/// A way to fill a table, by name.
#[cfg(test)]
pub(super) type Path = (&'static str, fn(Fill<'_>));

/// Every way this CPU can fill a table: the scalar walk first.
#[cfg(test)]
pub(super) fn paths() -> Vec<Path> {
    let mut paths: Vec<Path> = vec![("scalar", |fill| fill.run(next_free))];
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            paths.push(("avx2", |fill| unsafe { x86::fill_avx2(fill) }));
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            paths.push(("avx512", |fill| unsafe { x86::fill_avx512(fill) }));
        }
    }
    paths
}
