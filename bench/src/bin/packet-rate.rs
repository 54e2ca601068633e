//! `packet-rate [--quick] [--out DIR]`: the end-to-end packet-rate
//! benchmark (see `lb_bench::rate`); writes `packet-rate.json`,
//! `packet-rate.md` and `packet-rate.svg` into DIR (default
//! `bench/results`). Runs as root; creates and removes its own network
//! namespaces.
use lb_bench::{
    rate::{self, Options, output},
    results::{self, RunArgs},
};

fn main() -> anyhow::Result<()> {
    let RunArgs { quick, out } = RunArgs::from_env("packet-rate")?;
    let prefix = lb_lab::unique_prefix("rate");
    let options = if quick {
        Options::quick(prefix)
    } else {
        Options::full(prefix)
    }
    .narrowed_by_env()?;
    let run = rate::run(&options)?;
    let markdown = output::markdown(&run);
    results::write_pair(&out, "packet-rate", &output::json(&run), &markdown)?;
    results::write(&out.join("packet-rate.svg"), &output::svg(&run))?;
    println!("{markdown}");
    Ok(())
}
