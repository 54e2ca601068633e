//! `daemon-scale [--quick] [--out DIR]`: the real daemon at the size of the
//! control-plane targets, 1,000 virtual servers × 100 backends (`--quick`:
//! 100 × 100), in a network namespace of its own. Measures
//!
//! - start: from `lb-daemon run` to "running": the program loaded and
//!   attached, every Maglev ring built and written into the kernel's map,
//!   every backend's next hop resolved;
//! - a SIGHUP reload that re-weights one backend of every virtual server
//!   (every ring rebuilt, only its changed slots written): from the signal
//!   to "reload applied";
//! - the daemon's resident memory after each has completed (`VmRSS`, and
//!   `RssAnon`, its own heap).
//!
//! Writes `daemon-scale.{json,md}` into DIR (default `bench/results`).
//! Runs as root with the release `lb-daemon` next to this binary (or
//! `$LB_DAEMON`); removes what it created.
use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use lb_bench::{
    fixtures,
    results::{self, RunArgs},
};
use lb_lab::{Daemon, Netns, TempDir, link, unique_prefix};
use serde_json::json;

/// Backends per virtual server.
const BACKENDS: usize = 100;
const TIMEOUT: Duration = Duration::from_secs(300);

fn main() -> anyhow::Result<()> {
    let RunArgs { quick, out } = RunArgs::from_env("daemon-scale")?;
    let virtual_servers = if quick { 100 } else { 1000 };
    let daemon = daemon_binary()?;
    let prefix = unique_prefix("scale");
    let lb = Netns::create(&format!("{prefix}-lb"))?;
    let gw = Netns::create(&format!("{prefix}-gw"))?;
    link::veth(&lb, "eth0", &gw, "eth0")?;
    link::add_address(&lb, "eth0", "192.168.77.1".parse()?, 24)?;
    link::add_address(&gw, "eth0", "192.168.77.2".parse()?, 24)?;
    link::set_up(&lb, "eth0")?;
    link::set_up(&gw, "eth0")?;
    // Every backend sits behind one gateway: the next-hop lookups are
    // real, the neighbour table holds one entry.
    lb.ip(&["route", "add", "10.0.0.0/8", "via", "192.168.77.2"])?;

    let dir = TempDir::new(&prefix)?;
    let figures = measure(&lb, &daemon, dir.path(), virtual_servers)?;

    let markdown = figures.markdown();
    results::write_pair(&out, "daemon-scale", &figures.json(), &markdown)?;
    println!("{markdown}");
    Ok(())
}

struct Figures {
    virtual_servers: usize,
    backends: usize,
    start: Duration,
    start_memory: Memory,
    reload: Duration,
    reload_memory: Memory,
}

#[derive(Clone, Copy)]
struct Memory {
    rss_kib: u64,
    anon_kib: u64,
}

fn measure(
    lb: &Netns,
    daemon: &Path,
    dir: &Path,
    virtual_servers: usize,
) -> anyhow::Result<Figures> {
    let config = config_text(virtual_servers, 0);
    let started = Instant::now();
    let daemon = Daemon::start_running(lb, daemon, dir, "lb", &config, TIMEOUT)?;
    let start = started.elapsed();
    let start_memory = memory(daemon.child.pid())?;

    fs::write(&daemon.config, config_text(virtual_servers, 1))?;
    let signalled = Instant::now();
    daemon.child.kill(libc::SIGHUP)?;
    daemon.wait_log("reload applied", 1, TIMEOUT)?;
    let reload = signalled.elapsed();
    // Health checks and VRRP follow the new file, freed memory is returned.
    daemon.wait_log("reload complete", 1, TIMEOUT)?;
    let reload_memory = memory(daemon.child.pid())?;

    let status = daemon.child.terminate(Duration::from_secs(30))?;
    if !status.success() {
        bail!("lb-daemon exited with {status}");
    }
    Ok(Figures {
        virtual_servers,
        backends: virtual_servers * BACKENDS,
        start,
        start_memory,
        reload,
        reload_memory,
    })
}

/// `virtual_servers` × [`BACKENDS`] without health checks; `generation` 1
/// re-weights the first backend of each.
fn config_text(virtual_servers: usize, generation: u32) -> String {
    fixtures::config_toml(virtual_servers, BACKENDS, "none", |_, backend| {
        if backend == 0 {
            100 + 50 * generation
        } else {
            100
        }
    })
}

fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        Ok(line
            .split_whitespace()
            .nth(1)
            .context("malformed status line")?
            .parse()?)
    };
    Ok(Memory {
        rss_kib: field("VmRSS:")?,
        anon_kib: field("RssAnon:")?,
    })
}

fn daemon_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("LB_DAEMON") {
        return Ok(path.into());
    }
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name("lb-daemon");
    if !path.exists() {
        bail!(
            "{} not found: build it (cargo build --release -p lb-daemon) or set LB_DAEMON",
            path.display()
        );
    }
    Ok(path)
}

impl Figures {
    fn json(&self) -> serde_json::Value {
        json!({
            "virtual_servers": self.virtual_servers,
            "backends": self.backends,
            "maglev_table_size": 65537,
            "start_seconds": self.start.as_secs_f64(),
            "reload_seconds": self.reload.as_secs_f64(),
            "rss_kib_after_start": self.start_memory.rss_kib,
            "rss_anon_kib_after_start": self.start_memory.anon_kib,
            "rss_kib_after_reload": self.reload_memory.rss_kib,
            "rss_anon_kib_after_reload": self.reload_memory.anon_kib,
            "targets": { "reload_seconds": 1.0, "rss_mib": 50 },
        })
    }

    fn markdown(&self) -> String {
        let mib = |kib: u64| kib as f64 / 1024.0;
        let mut text = format!(
            "## The daemon at scale\n\n`lb-daemon run` with {} virtual servers × {BACKENDS} backends \
             ({} backends, Maglev table 65537), health checks off, in a network namespace.\n\n\
             | measure | value | target |\n| --- | --- | --- |\n",
            self.virtual_servers, self.backends
        );
        let _ = writeln!(
            text,
            "| start to running (load, attach, {} rings built and written, next hops) | {:.2} s | |",
            self.virtual_servers,
            self.start.as_secs_f64()
        );
        let _ = writeln!(
            text,
            "| SIGHUP reload re-weighting one backend per virtual server | {:.3} s | < 1 s |",
            self.reload.as_secs_f64()
        );
        for (when, m) in [
            ("after start", self.start_memory),
            ("after reload", self.reload_memory),
        ] {
            let _ = writeln!(
                text,
                "| resident memory {when} (VmRSS / RssAnon) | {:.1} MiB / {:.1} MiB | < 50 MiB |",
                mib(m.rss_kib),
                mib(m.anon_kib)
            );
        }
        text.push_str(
            "\nThe rings live in the kernel's `RINGS` map (4 bytes per slot); the daemon maps only \
             the pages it writes, while it writes them, so they are not part of its resident memory.\n",
        );
        text
    }
}
