//! When checks fire: spread over time so that the checks of many backends
//! (all configured with the same interval, all started at the same
//! reload) do not fire in lockstep.
//!
//! - The first check of a checker waits a random [`first_delay`] within
//!   one interval.
//! - Each later check follows the previous one's start by the interval
//!   scaled by a random factor in `[1 - SPREAD, 1 + SPREAD]`
//!   ([`next_delay`]), like HAProxy's `spread-checks`.
//!
//! The functions are pure: the randomness comes in as a number in
//! `[0, 1)`, so tests can pin it.
use std::time::Duration;

/// Relative spread of the interval between checks: ±10%.
pub const SPREAD: f64 = 0.1;

/// Delay before the first check: `unit * interval`, within `[0, interval]`.
pub fn first_delay(interval: Duration, unit: f64) -> Duration {
    interval.mul_f64(clamp_unit(unit))
}

/// Delay between the starts of two consecutive checks: `interval` scaled
/// into `[1 - SPREAD, 1 + SPREAD]` by `unit`.
pub fn next_delay(interval: Duration, unit: f64) -> Duration {
    let factor = 1.0 - SPREAD + 2.0 * SPREAD * clamp_unit(unit);
    interval.mul_f64(factor)
}

/// Longest delay [`next_delay`] can return for `interval`, for callers
/// (and tests) that bound how long `n` checks take.
pub fn max_delay(interval: Duration) -> Duration {
    interval.mul_f64(1.0 + SPREAD)
}

/// A random number in `[0, 1)` for the functions above.
pub fn random_unit() -> f64 {
    fastrand::f64()
}

/// Maps anything outside `[0, 1]` (including NaN) into it, so that a bad
/// input cannot make `Duration::mul_f64` panic.
fn clamp_unit(unit: f64) -> f64 {
    if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(2);

    #[test]
    fn first_delay_covers_one_interval() {
        assert_eq!(first_delay(INTERVAL, 0.0), Duration::ZERO);
        assert_eq!(first_delay(INTERVAL, 0.5), Duration::from_secs(1));
        assert!(first_delay(INTERVAL, 0.999_999) < INTERVAL);
        assert_eq!(first_delay(INTERVAL, 1.0), INTERVAL);
    }

    #[test]
    fn next_delay_spreads_ten_percent_each_way() {
        assert_eq!(next_delay(INTERVAL, 0.0), Duration::from_millis(1800));
        assert_eq!(next_delay(INTERVAL, 0.5), INTERVAL);
        let top = next_delay(INTERVAL, 0.999_999_9);
        assert!(top < Duration::from_millis(2200), "{top:?}");
        assert!(top > Duration::from_millis(2199), "{top:?}");
        assert_eq!(max_delay(INTERVAL), Duration::from_millis(2200));
    }

    #[test]
    fn out_of_range_units_are_clamped_not_panics() {
        for unit in [-1.0, 1.0, 7.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let first = first_delay(INTERVAL, unit);
            let next = next_delay(INTERVAL, unit);
            assert!(first <= INTERVAL, "{unit}: {first:?}");
            assert!(
                (Duration::from_millis(1800)..=Duration::from_millis(2200)).contains(&next),
                "{unit}: {next:?}"
            );
        }
    }

    #[test]
    fn random_delays_stay_in_range_and_are_spread() {
        let firsts: Vec<Duration> = (0..1000)
            .map(|_| first_delay(INTERVAL, random_unit()))
            .collect();
        let nexts: Vec<Duration> = (0..1000)
            .map(|_| next_delay(INTERVAL, random_unit()))
            .collect();
        assert!(firsts.iter().all(|d| *d <= INTERVAL));
        assert!(
            nexts
                .iter()
                .all(|d| (Duration::from_millis(1800)..=Duration::from_millis(2200)).contains(d))
        );
        // 1000 draws land in every tenth of the range (each misses with
        // probability 0.9^1000, about 1e-46).
        for (delays, low, width) in [
            (&firsts, Duration::ZERO, INTERVAL),
            (
                &nexts,
                Duration::from_millis(1800),
                Duration::from_millis(400),
            ),
        ] {
            let mut buckets = [0u32; 10];
            for d in delays {
                let i = ((*d - low).as_secs_f64() / width.as_secs_f64() * 10.0) as usize;
                buckets[i.min(9)] += 1;
            }
            assert!(buckets.iter().all(|&n| n > 0), "{buckets:?}");
        }
    }
}
