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
