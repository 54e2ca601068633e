//! Rise/fall: turning a stream of check results into a health verdict.
//!
//! Pure bookkeeping, no I/O: [`RiseFall::record`] takes one result and says
//! whether the verdict changed.
//!
//! Counting follows HAProxy's `rise`/`fall` and keepalived's
//! `rise`/`fall` (or `retry`): an Up backend goes Down after `fall`
//! *consecutive* failed checks, a Down backend comes Up after `rise`
//! consecutive successful ones. A result that agrees with the current
//! verdict resets the opposite streak, so `S F F S F F` with `fall = 3`
//! never takes a backend down.
//!
//! A new backend starts **Up** (as in HAProxy, and keepalived without
//! `alpha`): it carries traffic from the start and goes Down only after
//! `fall` failures. A backend whose check changed on reload keeps its
//! verdict and starts counting afresh ([`RiseFall::with_health`]).
use crate::status::Health;

/// The health verdict of one backend and the streak that may change it,
/// in 4 bytes: there is one per checked backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RiseFall {
    rise: u8,
    fall: u8,
    health: Health,
    /// Consecutive results that disagree with `health` (failures while
    /// Up, successes while Down); never more than `rise` or `fall`.
    streak: u8,
}

impl RiseFall {
    /// A new backend: Up, no streak. `rise` and `fall` of 0 count as 1,
    /// above 255 as 255 (the config validates them to `1..=100`).
    pub fn new(rise: u32, fall: u32) -> Self {
        Self::with_health(rise, fall, Health::Up)
    }

    /// Starts from `health` with no streak.
    pub fn with_health(rise: u32, fall: u32, health: Health) -> Self {
        let count = |n: u32| u8::try_from(n.clamp(1, 255)).unwrap_or(u8::MAX);
        Self {
            rise: count(rise),
            fall: count(fall),
            health,
            streak: 0,
        }
    }

    /// The current verdict.
    pub fn health(&self) -> Health {
        self.health
    }

    /// Consecutive results so far that point away from the current verdict.
    pub fn streak(&self) -> u32 {
        self.streak.into()
    }

    /// Records one check result; returns the new verdict if it changed.
    pub fn record(&mut self, success: bool) -> Option<Health> {
        let (agrees, needed, other) = match self.health {
            Health::Up => (success, self.fall, Health::Down),
            Health::Down => (!success, self.rise, Health::Up),
        };
        if agrees {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        if self.streak < needed {
            return None;
        }
        self.health = other;
        self.streak = 0;
        Some(other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `results` ('S' success, 'F' failure) and returns the health
    /// after each one.
    fn run(state: &mut RiseFall, results: &str) -> Vec<Health> {
        results
            .chars()
            .map(|c| {
                state.record(c == 'S');
                state.health()
            })
            .collect()
    }

    use Health::{Down as D, Up as U};

    #[test]
    fn starts_up() {
        let state = RiseFall::new(2, 3);
        assert_eq!(state.health(), Health::Up);
        assert_eq!(state.streak(), 0);
    }

    #[test]
    fn goes_down_after_exactly_fall_consecutive_failures() {
        let mut state = RiseFall::new(2, 3);
        assert_eq!(state.record(false), None);
        assert_eq!(state.record(false), None);
        assert_eq!(state.record(false), Some(Health::Down));
        // Further failures change nothing.
        assert_eq!(state.record(false), None);
        assert_eq!(state.health(), Health::Down);
    }

    #[test]
    fn comes_up_after_exactly_rise_consecutive_successes() {
        let mut state = RiseFall::with_health(2, 3, Health::Down);
        assert_eq!(state.record(true), None);
        assert_eq!(state.record(true), Some(Health::Up));
        assert_eq!(state.record(true), None);
        assert_eq!(state.health(), Health::Up);
    }

    #[test]
    fn an_agreeing_result_resets_the_streak() {
        let mut state = RiseFall::new(2, 3);
        assert_eq!(run(&mut state, "FFSFFS"), [U, U, U, U, U, U]);
        assert_eq!(run(&mut state, "FFF"), [U, U, D]);
        // While down, a failure breaks a run of successes.
        assert_eq!(run(&mut state, "SFSFS"), [D, D, D, D, D]);
        assert_eq!(run(&mut state, "S"), [U]);
    }

    #[test]
    fn full_cycle_counts_each_direction_separately() {
        let mut state = RiseFall::new(3, 2);
        let health = run(&mut state, "FF SSS FS FF SS S".replace(' ', "").as_str());
        assert_eq!(health, [U, D, D, D, U, U, U, U, D, D, D, U]);
    }

    #[test]
    fn rise_and_fall_of_one_follow_every_result() {
        let mut state = RiseFall::new(1, 1);
        assert_eq!(state.record(false), Some(Health::Down));
        assert_eq!(state.record(true), Some(Health::Up));
        assert_eq!(state.record(false), Some(Health::Down));
    }

    #[test]
    fn zero_counts_behave_as_one() {
        let mut state = RiseFall::new(0, 0);
        assert_eq!(state.record(false), Some(Health::Down));
        assert_eq!(state.record(true), Some(Health::Up));
    }
}
