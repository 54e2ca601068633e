use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

/// An eBPF/XDP layer-4 load balancer with VRRP failover.
#[derive(Parser)]
#[command(name = "lb-daemon", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground (logs to stderr).
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file; print every error with its line; exit 1 on error.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show VIPs, backends and VRRP instances from a running daemon.
    Status {
        /// Address of the daemon's admin API.
        #[arg(long, default_value = "127.0.0.1:9180")]
        admin: SocketAddr,
        /// Print the status as JSON (as the API returns it) instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// On a backend: attach (or with --detach remove) the tunnel
    /// decapsulation program; it stays attached after this command exits.
    Decap {
        #[arg(long)]
        interface: String,
        /// Virtual addresses whose tunnelled packets are decapsulated.
        #[arg(long = "vip")]
        vips: Vec<std::net::IpAddr>,
        /// Attach in generic (skb) mode instead of native driver mode.
        #[arg(long)]
        generic: bool,
        #[arg(long)]
        detach: bool,
        /// Attach a program that passes every packet instead (labs: a
        /// veth delivers XDP_TX frames promptly only when its peer has an
        /// XDP program).
        #[arg(long, hide = true, conflicts_with_all = ["vips", "detach"])]
        pass: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => lb_daemon::cmd::run::run(&config),
        Command::Check { config } => lb_daemon::cmd::check::check(&config),
        Command::Status { admin, json } => lb_daemon::cmd::status::status(admin, json),
        Command::Decap {
            interface,
            vips,
            generic,
            detach,
            pass,
        } => lb_daemon::cmd::decap::decap(&interface, &vips, generic, detach, pass),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("lb-daemon: {error:#}");
            ExitCode::FAILURE
        }
    }
}
