//! `cargo xtask bench`: builds and runs the benchmarks in release mode.
use std::process::Command;

use anyhow::{Context as _, bail};

pub fn run() -> anyhow::Result<()> {
    if !crate::setup::is_root() {
        bail!("cargo xtask bench loads BPF programs: run it as root");
    }
    crate::setup::run()?;
    let ok = Command::new("cargo")
        .args(["run", "--release", "--package", "lb-bench"])
        .status()
        .context("cargo run lb-bench")?
        .success();
    if !ok {
        bail!("benchmark failed");
    }
    Ok(())
}
