//! Bounded waiting: every wait in the lab polls a condition until a deadline.
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// How long to pause between two polls of a condition.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Polls `probe` until it returns `Ok(Some(value))` or `timeout` elapses.
///
/// `probe` errors end the wait at once. On timeout the error names `what`,
/// so a failing test says what it was waiting for.
///
/// ```no_run
/// # use std::time::Duration;
/// # fn link_is_up() -> bool { true }
/// lb_lab::wait_until(Duration::from_secs(5), "eth0 up", || {
///     Ok(link_is_up().then_some(()))
/// })?;
/// # anyhow::Ok(())
/// ```
pub fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe()? {
            return Ok(value);
        }
        let now = Instant::now();
        if now >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
}

/// Reads a value with `read` until `settled` holds of it or `timeout`
/// elapses, and returns the last value read: the one that settled, or
/// else the last one, for the caller's assertions to say what differs.
/// For values read in parts while traffic may still pass (counters of
/// several maps, a status and its counters).
pub fn read_settled<T>(
    timeout: Duration,
    mut read: impl FnMut() -> T,
    settled: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let value = read();
        let now = Instant::now();
        if settled(&value) || now >= deadline {
            return value;
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_settled_returns_the_value_that_settled_or_the_last_one() {
        // Reads 1, 2, 3, ...
        let counting = || {
            let mut reads = 0;
            move || {
                reads += 1;
                reads
            }
        };
        assert_eq!(
            read_settled(Duration::from_secs(5), counting(), |&n| n == 3),
            3
        );

        let started = Instant::now();
        let last = read_settled(Duration::from_millis(50), counting(), |_| false);
        assert!(started.elapsed() >= Duration::from_millis(50));
        // Read every POLL_INTERVAL until the deadline, the last time at it.
        assert!(last >= 2, "{last}");
    }
}
