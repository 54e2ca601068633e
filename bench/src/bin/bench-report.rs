//! `bench-report --criterion DIR [--results DIR]`: turns Criterion's
//! estimates into `control-plane.{json,md}` and concatenates the Markdown
//! parts of all benchmarks into `README.md` in the results directory
//! (default `bench/results`). Run by `cargo xtask bench`.
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use lb_bench::report;

/// The Markdown parts of `bench/results/README.md`, in order.
const PARTS: &[&str] = &[
    "per-packet.md",
    "packet-rate.md",
    "control-plane.md",
    "daemon-scale.md",
];

fn main() -> anyhow::Result<()> {
    let mut criterion = None;
    let mut results = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results"));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--criterion" => {
                criterion = Some(PathBuf::from(args.next().context("--criterion DIR")?))
            }
            "--results" => results = args.next().context("--results DIR")?.into(),
            other => bail!(
                "unknown argument {other:?}; usage: bench-report [--criterion DIR] [--results DIR]"
            ),
        }
    }
    std::fs::create_dir_all(&results)?;
    if let Some(dir) = criterion {
        let estimates = report::read_criterion(&dir)?;
        std::fs::write(
            results.join("control-plane.json"),
            serde_json::to_string_pretty(&report::control_plane_json(&estimates))? + "\n",
        )?;
        let markdown = report::control_plane_markdown(&estimates);
        std::fs::write(results.join("control-plane.md"), &markdown)?;
        println!("{markdown}");
    }
    std::fs::write(
        results.join("README.md"),
        report::concatenate(&results, PARTS)?,
    )?;
    println!("wrote {}", results.join("README.md").display());
    Ok(())
}
