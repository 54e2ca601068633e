//! `packet-rate [--quick] [--out DIR]`: the end-to-end packet-rate
//! benchmark (see `lb_bench::rate`); writes `packet-rate.json`,
//! `packet-rate.md` and `packet-rate.svg` into DIR (default
//! `bench/results`). Runs as root; creates and removes its own network
//! namespaces.
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use lb_bench::rate::{self, Options, output};

fn main() -> anyhow::Result<()> {
    let mut quick = false;
    let mut out = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results"));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--out" => out = args.next().context("--out needs a directory")?.into(),
            other => bail!("unknown argument {other:?}; usage: packet-rate [--quick] [--out DIR]"),
        }
    }
    let prefix = lb_lab::unique_prefix("rate");
    let options = if quick {
        Options::quick(prefix)
    } else {
        Options::full(prefix)
    };
    let run = rate::run(&options)?;
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("packet-rate.json"),
        serde_json::to_string_pretty(&output::json(&run))? + "\n",
    )?;
    let markdown = output::markdown(&run);
    std::fs::write(out.join("packet-rate.md"), &markdown)?;
    std::fs::write(out.join("packet-rate.svg"), output::svg(&run))?;
    println!("{markdown}");
    Ok(())
}
