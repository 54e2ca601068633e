//! Writing results: Criterion's estimates turned into
//! `control-plane.{json,md}`, and the Markdown parts of every benchmark
//! concatenated into `bench/results/README.md`.
use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

/// One Criterion benchmark's latest estimate.
#[derive(Clone, Debug)]
pub struct Estimate {
    /// `group/function[/parameter]`, as Criterion names it.
    pub id: String,
    /// Median time per iteration and its 95% confidence interval, in ns.
    pub median_ns: f64,
    pub lower_ns: f64,
    pub upper_ns: f64,
}

/// Targets the control plane is held to: (benchmark id, limit in ns, what).
pub const TARGETS: &[(&str, f64, &str)] = &[
    (
        "reload/programmer_1000x100",
        1e9,
        "reload of 1,000 VIPs × 100 backends < 1 s",
    ),
    (
        "maglev_build/1000",
        5e6,
        "Maglev build, 1,000 backends, 65,537 slots < 5 ms",
    ),
];

/// Reads every `*/new/benchmark.json` + `estimates.json` under Criterion's
/// output directory (`target/criterion`), sorted by id.
pub fn read_criterion(dir: &Path) -> Result<Vec<Estimate>> {
    let mut found = Vec::new();
    walk(dir, &mut found)?;
    let mut estimates = Vec::new();
    for new in found {
        let benchmark = read_json(&new.join("benchmark.json"))?;
        let estimate = read_json(&new.join("estimates.json"))?;
        let id = benchmark["full_id"]
            .as_str()
            .context("benchmark.json without full_id")?
            .to_owned();
        let median = &estimate["median"];
        let number = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
        estimates.push(Estimate {
            id,
            median_ns: number(&median["point_estimate"]),
            lower_ns: number(&median["confidence_interval"]["lower_bound"]),
            upper_ns: number(&median["confidence_interval"]["upper_bound"]),
        });
    }
    estimates.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(estimates)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if !path.is_dir() || path.file_name().is_some_and(|n| n == "report") {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "new") {
            if path.join("benchmark.json").is_file() {
                found.push(path);
            }
        } else {
            walk(&path, found)?;
        }
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// A duration in ns, in the unit that suits it.
pub fn human(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// `control-plane.json`: every estimate and every target with its verdict.
pub fn control_plane_json(estimates: &[Estimate]) -> Value {
    json!({
        "unit": "ns per iteration (median, 95% CI)",
        "benchmarks": estimates.iter().map(|e| json!({
            "id": e.id,
            "median_ns": e.median_ns,
            "ci95_ns": [e.lower_ns, e.upper_ns],
        })).collect::<Vec<_>>(),
        "targets": TARGETS.iter().map(|(id, limit, what)| {
            let got = estimates.iter().find(|e| e.id == *id).map(|e| e.median_ns);
            json!({
                "id": id,
                "what": what,
                "limit_ns": limit,
                "median_ns": got,
                "met": got.map(|g| g < *limit),
            })
        }).collect::<Vec<_>>(),
    })
}

/// `control-plane.md`: a table of every estimate, then the targets.
pub fn control_plane_markdown(estimates: &[Estimate]) -> String {
    let mut out = String::from("## Control plane (Criterion)\n\n");
    out.push_str("| benchmark | median | 95% CI |\n| --- | ---: | ---: |\n");
    for e in estimates {
        let _ = writeln!(
            out,
            "| {} | {} | {} – {} |",
            e.id,
            human(e.median_ns),
            human(e.lower_ns),
            human(e.upper_ns)
        );
    }
    out.push_str("\n| target | measured | met |\n| --- | ---: | :---: |\n");
    for (id, limit, what) in TARGETS {
        let got = estimates.iter().find(|e| e.id == *id);
        let (measured, met) = match got {
            Some(e) => (
                human(e.median_ns),
                if e.median_ns < *limit {
                    "yes"
                } else {
                    "**no**"
                },
            ),
            None => ("not run".to_owned(), "–"),
        };
        let _ = writeln!(out, "| {what} | {measured} | {met} |");
    }
    out.push_str(
        "\nThe reload programs 1,000 virtual servers × 100 backends into in-memory maps \
         (`MemoryMaps`): the programmer's own cost (Maglev builds in parallel, slot \
         diffs). The real daemon at that size, with the kernel's maps, is in \
         \"The daemon at scale\".\n",
    );
    out
}

/// Concatenates the Markdown parts that exist, in this order, into one
/// document under a title.
pub fn concatenate(results: &Path, parts: &[&str]) -> Result<String> {
    let mut out = String::from(
        "# Benchmark results\n\nWritten by `cargo xtask bench`; compare only figures \
         from the same run (the machine is shared and small).\n\n",
    );
    for part in parts {
        let path = results.join(part);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                out.push_str(text.trim_end());
                out.push_str("\n\n");
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
        }
    }
    Ok(out)
}
