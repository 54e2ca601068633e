//! Shared by the integration tests.
#![allow(dead_code)]

pub mod e2e;
pub mod packets;

use std::path::Path;

/// The `lb-daemon` binary cargo built for these tests.
pub fn lb_daemon() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lb-daemon"))
}

/// Privileged tests fail loudly when not run as root: `cargo xtask test`
/// runs them as root (as CI does); they are never skipped silently.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test loads BPF programs and must run as root (cargo xtask test)"
    );
}
