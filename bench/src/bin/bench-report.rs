//! `bench-report --criterion DIR [--results DIR]`: turns Criterion's
//! estimates into `control-plane.{json,md}` and concatenates the Markdown
//! parts of all benchmarks into `README.md` in the results directory
//! (default `bench/results`). Run by `cargo xtask bench`.
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use lb_bench::{report, results};

/// The Markdown parts of `bench/results/README.md`, in order.
const PARTS: &[&str] = &[
    "per-packet.md",
    "packet-rate.md",
    "control-plane.md",
    "daemon-scale.md",
];

fn main() -> anyhow::Result<()> {
    let mut criterion = None;
    let mut dir = results::default_dir();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--criterion" => {
                criterion = Some(PathBuf::from(args.next().context("--criterion DIR")?))
            }
            "--results" => dir = args.next().context("--results DIR")?.into(),
            other => bail!(
                "unknown argument {other:?}; usage: bench-report [--criterion DIR] [--results DIR]"
            ),
        }
    }
    if let Some(criterion) = criterion {
        let estimates = report::read_criterion(&criterion)?;
        let markdown = report::control_plane_markdown(&estimates);
        results::write_pair(
            &dir,
            "control-plane",
            &report::control_plane_json(&estimates),
            &markdown,
        )?;
        println!("{markdown}");
    }
    results::write(&dir.join("README.md"), &report::concatenate(&dir, PARTS)?)?;
    println!("wrote {}", dir.join("README.md").display());
    Ok(())
}
