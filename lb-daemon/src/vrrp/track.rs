//! Tracking: what lowers an instance's priority or puts it in Fault.
//!
//! [`effective_priority`] is the pure rule; [`run_script`] runs one
//! tracked script. Interfaces are polled by the instance task, virtual
//! server health is fed in through [`super::Vrrp::set_virtual_server_healthy`].
use std::{path::Path, process::Stdio, time::Duration};

use crate::config::Track;

/// Whether each tracked object currently fails, by its index in the
/// instance's `track` list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failures(pub Vec<bool>);

/// The priority to advertise and whether the instance is in Fault:
/// a failing weight-0 object is Fault (as keepalived); otherwise the
/// weights of the failing objects are added to the configured priority
/// and the result kept within 1..=254. Without failing weights the
/// configured priority (also 255) stands.
pub fn effective_priority(priority: u8, track: &[Track], failures: &Failures) -> (u8, bool) {
    let failing = || {
        track
            .iter()
            .zip(&failures.0)
            .filter(|(_, failed)| **failed)
            .map(|(t, _)| t.weight())
    };
    let fault = failing().any(|w| w == 0);
    let delta: i32 = failing().sum();
    if delta == 0 {
        return (priority, fault);
    }
    let adjusted = (i32::from(priority) + delta).clamp(1, 254);
    (u8::try_from(adjusted).unwrap_or(1), fault)
}

/// Runs a tracked script once: success is exit status 0 within `timeout`.
/// A script that cannot be started or runs too long fails.
pub async fn run_script(path: &Path, timeout: Duration) -> bool {
    let child = tokio::process::Command::new(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            tracing::warn!(script = %path.display(), %error, "cannot run track script");
            return false;
        }
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status.success(),
        Ok(Err(error)) => {
            tracing::warn!(script = %path.display(), %error, "waiting for track script");
            false
        }
        Err(_) => {
            tracing::warn!(script = %path.display(), ?timeout, "track script timed out");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interface(weight: i32) -> Track {
        Track::Interface {
            name: "eth1".into(),
            weight,
        }
    }

    #[test]
    fn failing_weights_add_up_within_1_and_254() {
        let track = [interface(-60), interface(-50), interface(30)];
        let f = |v: [bool; 3]| Failures(v.to_vec());
        assert_eq!(
            effective_priority(150, &track, &f([false; 3])),
            (150, false)
        );
        assert_eq!(
            effective_priority(150, &track, &f([true, false, false])),
            (90, false)
        );
        assert_eq!(
            effective_priority(150, &track, &f([true, true, false])),
            (40, false)
        );
        assert_eq!(
            effective_priority(100, &track, &f([true, true, false])),
            (1, false)
        );
        assert_eq!(
            effective_priority(250, &track, &f([false, false, true])),
            (254, false)
        );
        // The owner keeps 255 while nothing fails, and loses it otherwise.
        assert_eq!(
            effective_priority(255, &track, &f([false; 3])),
            (255, false)
        );
        assert_eq!(
            effective_priority(255, &track, &f([true, false, false])),
            (195, false)
        );
    }

    #[test]
    fn a_failing_weight_zero_object_is_fault() {
        let track = [interface(0), interface(-10)];
        assert_eq!(
            effective_priority(100, &track, &Failures(vec![true, false])),
            (100, true)
        );
        assert_eq!(
            effective_priority(100, &track, &Failures(vec![false, true])),
            (90, false)
        );
    }

    #[tokio::test]
    async fn scripts_succeed_on_exit_zero_only() {
        assert!(run_script(Path::new("/bin/true"), Duration::from_secs(5)).await);
        assert!(!run_script(Path::new("/bin/false"), Duration::from_secs(5)).await);
        assert!(!run_script(Path::new("/nonexistent/script"), Duration::from_secs(5)).await);
    }
}
