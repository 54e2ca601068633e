//! `cargo xtask`: the project's developer and operator commands.
//!
//! - `setup`: install what building and testing need (idempotent).
//! - `test`: everything CI runs, as root.
//! - `lab up|down`, `run`, `bench`: see their modules.

mod bench;
mod setup;
mod test;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install the eBPF toolchain and test dependencies that are missing.
    Setup,
    /// Set up, build, and run every test (unit, BPF_PROG_TEST_RUN,
    /// network-namespace and interop tests). Must run as root.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Per-packet cost of the data plane (BPF_PROG_TEST_RUN, net of an
    /// XDP_PASS program measured the same way). Must run as root.
    Bench,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Setup => setup::run(),
        Command::Test { args } => test::run(&args),
        Command::Bench => bench::run(),
    }
}
