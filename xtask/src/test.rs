//! `cargo xtask test`: set up, then run every test of the workspace as
//! root. Privileged tests (BPF loading, network namespaces, keepalived
//! interop) are part of the normal test run and fail, never skip.
use std::process::Command;

use anyhow::{Context as _, bail};

pub fn run(extra: &[String]) -> anyhow::Result<()> {
    if !crate::setup::is_root() {
        bail!("cargo xtask test loads BPF programs and creates network namespaces: run it as root");
    }
    crate::setup::run()?;
    let ok = Command::new("cargo")
        .args([
            "test",
            "--workspace",
            "--exclude",
            "lb-ebpf",
            "--no-fail-fast",
        ])
        .args(extra)
        .status()
        .context("cargo test")?
        .success();
    if !ok {
        bail!("tests failed");
    }
    Ok(())
}
