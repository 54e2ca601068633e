//! `cargo xtask bench [--quick]`: builds the benchmarks in release mode and
//! runs, in one go,
//!
//! 1. the per-packet cost through BPF_PROG_TEST_RUN (`lb-bench`, which
//!    writes `bench/results/per-packet.*`),
//! 2. the end-to-end packet rate in network namespaces (`packet-rate`:
//!    `bench/results/packet-rate.{json,md,svg}`),
//! 3. the control-plane benchmarks (Criterion, `benches/control_plane.rs`;
//!    `bench-report` turns the estimates into `control-plane.{json,md}`),
//! 4. the real daemon at 1,000 virtual servers × 100 backends
//!    (`daemon-scale`: start, reload and resident memory,
//!    `daemon-scale.{json,md}`),
//!
//! then concatenates the Markdown parts into `bench/results/README.md`.
//! A failing part does not stop the others; the command fails at the end.
//! `--quick` shortens every part (fewer points, shorter measurements).
use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};

pub fn run(quick: bool) -> anyhow::Result<()> {
    if !crate::setup::is_root() {
        bail!("cargo xtask bench loads BPF programs: run it as root");
    }
    crate::setup::run()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?;
    let results = root.join("bench/results");
    let criterion = root.join("target/criterion-lb");
    std::fs::create_dir_all(&results)?;

    cargo(
        root,
        &["build", "--release", "--package", "lb-bench", "--bins"],
    )?;
    cargo(root, &["build", "--release", "--package", "lb-daemon"])?;
    let bin = |name: &str| root.join("target/release").join(name);
    let quick_arg: &[&str] = if quick { &["--quick"] } else { &[] };
    let mut failed = Vec::new();

    println!("\n== per-packet cost (BPF_PROG_TEST_RUN)");
    // It writes bench/results/per-packet.{json,md} itself.
    if !status(Command::new(bin("lb-bench")).current_dir(root)) {
        failed.push("per-packet");
    }

    println!("\n== packet rate, end to end");
    if !status(
        Command::new(bin("packet-rate"))
            .args(quick_arg)
            .arg("--out")
            .arg(&results),
    ) {
        failed.push("packet-rate");
    }

    println!("\n== control plane (Criterion)");
    if criterion.exists() {
        std::fs::remove_dir_all(&criterion)?;
    }
    let mut bench = Command::new("cargo");
    bench
        .current_dir(root)
        .env("CRITERION_HOME", &criterion)
        .args([
            "bench",
            "--package",
            "lb-bench",
            "--bench",
            "control_plane",
            "--",
        ])
        .args(quick_arg);
    let criterion_ok = status(&mut bench);
    if !criterion_ok {
        failed.push("control-plane");
    }

    println!("\n== the daemon at scale");
    if !status(
        Command::new(bin("daemon-scale"))
            .args(quick_arg)
            .arg("--out")
            .arg(&results),
    ) {
        failed.push("daemon-scale");
    }

    let mut report = Command::new(bin("bench-report"));
    report.arg("--results").arg(&results);
    if criterion.exists() {
        report.arg("--criterion").arg(&criterion);
    }
    if !status(&mut report) {
        failed.push("report");
    }
    println!("\nresults: {}", results.display());
    if !failed.is_empty() {
        bail!("benchmarks failed: {}", failed.join(", "));
    }
    Ok(())
}

fn cargo(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    if !status(Command::new("cargo").current_dir(root).args(args)) {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

fn status(command: &mut Command) -> bool {
    match command.status() {
        Ok(status) => status.success(),
        Err(error) => {
            eprintln!("cannot run {:?}: {error}", command.get_program());
            false
        }
    }
}
