//! `cargo xtask`: the project's developer and operator commands.
//!
//! - `setup`: install what building and testing need (idempotent).
//! - `test`: everything CI runs, as root.
//! - `lab up|down`: the lab of DESIGN.md §7, kept until removed ([`lab`]).
//! - `run`: set up, build, lab up, client traffic and a live view until
//!   Ctrl-C or the time limit, lab down ([`run`]); `run -- --config FILE`
//!   runs one daemon on the host.
//! - `bench`: see its module.

mod admin;
mod bench;
mod lab;
mod run;
mod setup;
mod test;
mod view;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use lb_lab::{Forwarding, HealthKind, LAB_PREFIX};

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
    /// Data-plane and control-plane benchmarks: per-packet cost
    /// (BPF_PROG_TEST_RUN), end-to-end packet rate in network namespaces
    /// against an XDP baseline and nftables, and Criterion control-plane
    /// benchmarks; writes bench/results/. Must run as root.
    Bench {
        /// A short run: fewer points, shorter measurements.
        #[arg(long)]
        quick: bool,
    },
    /// The lab topology alone (namespaces, balancers, backends), kept
    /// until `lab down`. Must run as root.
    Lab {
        #[command(subcommand)]
        command: LabCommand,
    },
    /// Set up, build, start the lab and drive client traffic to the VIP
    /// with a live view until Ctrl-C or --duration; then remove the lab.
    /// `cargo xtask run -- --config FILE` runs one daemon on this host
    /// instead. Must run as root.
    Run(RunArgs),
}

#[derive(Subcommand)]
enum LabCommand {
    /// Build the lab: client, lb-a and lb-b (a VRRP pair running
    /// lb-daemon), be-1..be-3 (VIP on lo, decapsulation, HTTP server).
    Up {
        #[command(flatten)]
        lab: LabArgs,
        /// The lb-daemon binary to run (default: build the release one).
        #[arg(long)]
        lb_daemon: Option<PathBuf>,
    },
    /// Stop the lab's processes and remove its namespaces (also after a
    /// crash).
    Down {
        /// Start of the lab's namespace names.
        #[arg(long, default_value = LAB_PREFIX)]
        prefix: String,
    },
    /// (internal) The HTTP server of a lab backend, run by `lab up`.
    #[command(hide = true)]
    ServeHttp {
        #[arg(long)]
        netns: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        listen: SocketAddr,
    },
}

#[derive(Args, Clone)]
struct LabArgs {
    /// Start of the lab's namespace names.
    #[arg(long, default_value = LAB_PREFIX)]
    prefix: String,
    /// Direct server return (MAC rewrite) instead of the IPIP tunnel.
    #[arg(long)]
    dsr: bool,
    /// The backends' health check.
    #[arg(long, value_enum, default_value_t = Health::Tcp)]
    health: Health,
    /// lb-a alone holds the VIP (added by hand); no VRRP, no lb-b daemon.
    #[arg(long)]
    no_vrrp: bool,
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Run one lb-daemon on this host with this config instead of the lab.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    lab: LabArgs,
    /// Stop the traffic and remove the lab after this long.
    #[arg(long, value_parser = humantime_duration, default_value = "10m")]
    duration: Duration,
    /// New HTTP connections per second.
    #[arg(long, default_value_t = 20)]
    rate: u32,
    /// Long-lived (kept-alive) HTTP connections, each asking 4 times a
    /// second.
    #[arg(long, default_value_t = 8)]
    sessions: usize,
    /// The lb-daemon binary to run (default: build the release one).
    #[arg(long)]
    lb_daemon: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy)]
enum Health {
    Tcp,
    Http,
}

impl LabArgs {
    fn options(&self, lb_daemon: PathBuf) -> lab::LabOptions {
        lab::LabOptions {
            prefix: self.prefix.clone(),
            forwarding: if self.dsr {
                Forwarding::Dsr
            } else {
                Forwarding::Tunnel
            },
            health: match self.health {
                Health::Tcp => HealthKind::Tcp,
                Health::Http => HealthKind::Http,
            },
            no_vrrp: self.no_vrrp,
            lb_daemon,
        }
    }
}

/// `10m`, `90s`, `1m30s`, `500ms`.
fn humantime_duration(text: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err("empty duration".to_owned());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("bad duration {text:?}"))?;
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        total += match &rest[..unit] {
            "ms" => Duration::from_millis(number),
            "s" | "" => Duration::from_secs(number),
            "m" => Duration::from_secs(number * 60),
            "h" => Duration::from_secs(number * 3600),
            other => return Err(format!("unknown unit {other:?} in {text:?} (ms, s, m, h)")),
        };
        rest = &rest[unit..];
    }
    Ok(total)
}

fn main() -> anyhow::Result<()> {
    // `cargo xtask run -- --config FILE`: the `--` only separates cargo's
    // arguments from ours.
    let mut args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("run")
        && args.get(2).map(String::as_str) == Some("--")
    {
        args.remove(2);
    }
    match Cli::parse_from(args).command {
        Command::Setup => setup::run(),
        Command::Test { args } => test::run(&args),
        Command::Bench { quick } => bench::run(quick),
        Command::Lab { command } => match command {
            LabCommand::Up { lab, lb_daemon } => {
                run::require_root("cargo xtask lab up")?;
                let binary = match lb_daemon {
                    Some(path) => path,
                    None => run::build_lb_daemon()?,
                };
                let up = lab::Lab::up(&lab.options(binary))?;
                print!("{}", up.summary());
                Ok(())
            }
            LabCommand::Down { prefix } => {
                run::require_root("cargo xtask lab down")?;
                print!("{}", lab::down(&prefix)?);
                Ok(())
            }
            LabCommand::ServeHttp {
                netns,
                name,
                listen,
            } => lab::serve_http(&netns, &name, listen),
        },
        Command::Run(args) => run::run(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(humantime_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(humantime_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(humantime_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(humantime_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(humantime_duration("3 days").is_err());
        assert!(humantime_duration("").is_err());
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::parse_from(["xtask", "run", "--duration", "30s", "--dsr"]);
        let Command::Run(args) = cli.command else {
            panic!("not run");
        };
        assert_eq!(args.duration, Duration::from_secs(30));
        assert!(args.lab.dsr);
    }
}
