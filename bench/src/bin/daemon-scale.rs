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
//!   `RssAnon`, its own heap);
//! - a second daemon of the same size that health-checks every backend
//!   over TCP every [`HEALTH_INTERVAL`]: the checks completed per second,
//!   the daemon's CPU time and its resident memory, over one interval
//!   after the first (by then every checker has started). The backends
//!   are a listener in the gateway namespace, where all of 10.0.0.0/8 is
//!   local, that accepts and closes every connection and counts them.
//!   Then one Prometheus scrape of that daemon: its size, how long it
//!   took, the daemon's memory after it and its peak during it (`VmHWM`,
//!   reset before the scrape; its peak before, from the start, too).
//!
//! Writes `daemon-scale.{json,md}` into DIR (default `bench/results`).
//! Runs as root with the release `lb-daemon` next to this binary (or
//! `$LB_DAEMON`); removes what it created.
use std::{
    fmt::Write as _,
    fs, io,
    net::{Ipv4Addr, TcpListener},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
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
/// How often the health-checking daemon probes each backend.
const HEALTH_INTERVAL: Duration = Duration::from_secs(10);
/// The port the backends are checked on: the virtual servers' (see
/// `fixtures::config_toml`).
const CHECK_PORT: u16 = 80;

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
    // The gateway owns every backend address, so health checks are
    // answered there (by `Backends`) and go nowhere else.
    gw.ip(&["route", "add", "local", "10.0.0.0/8", "dev", "lo"])?;

    let dir = TempDir::new(&prefix)?;
    let figures = measure(&lb, &gw, &daemon, dir.path(), virtual_servers)?;

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
    checked: Checked,
}

/// The health-checking daemon over one interval.
struct Checked {
    /// Connections the backends accepted.
    accepted: u64,
    window: Duration,
    /// The daemon's CPU time (user and system).
    cpu: Duration,
    /// At the end of the window.
    memory: Memory,
    scrape: Scrape,
}

/// One `GET /metrics` of the health-checking daemon.
struct Scrape {
    bytes: usize,
    /// Sample lines.
    samples: usize,
    duration: Duration,
    /// Right after it.
    memory: Memory,
    /// The daemon's peak resident memory from its start to the scrape
    /// (`VmHWM`).
    peak_before_kib: u64,
    /// Its peak resident memory during the scrape (`VmHWM`, reset just
    /// before it).
    peak_during_kib: u64,
}

impl Checked {
    fn checks_per_second(&self) -> f64 {
        self.accepted as f64 / self.window.as_secs_f64()
    }

    /// The daemon's share of one CPU.
    fn cpu_share(&self) -> f64 {
        self.cpu.as_secs_f64() / self.window.as_secs_f64()
    }
}

#[derive(Clone, Copy)]
struct Memory {
    rss_kib: u64,
    anon_kib: u64,
}

fn measure(
    lb: &Netns,
    gw: &Netns,
    daemon_path: &Path,
    dir: &Path,
    virtual_servers: usize,
) -> anyhow::Result<Figures> {
    let config = config_text(virtual_servers, 0);
    let started = Instant::now();
    let daemon = Daemon::start_running(lb, daemon_path, dir, "lb", &config, TIMEOUT)?;
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

    stop(daemon)?;
    let checked = measure_health_checks(lb, gw, daemon_path, dir, virtual_servers)?;
    Ok(Figures {
        virtual_servers,
        backends: virtual_servers * BACKENDS,
        start,
        start_memory,
        reload,
        reload_memory,
        checked,
    })
}

/// Stops `daemon` with SIGTERM; an error unless it exits cleanly.
fn stop(daemon: Daemon) -> anyhow::Result<()> {
    let status = daemon.child.terminate(Duration::from_secs(30))?;
    if !status.success() {
        bail!("lb-daemon exited with {status}");
    }
    Ok(())
}

/// A daemon that health-checks every backend, observed over the second
/// [`HEALTH_INTERVAL`] after it runs.
fn measure_health_checks(
    lb: &Netns,
    gw: &Netns,
    daemon_path: &Path,
    dir: &Path,
    virtual_servers: usize,
) -> anyhow::Result<Checked> {
    let backends = Backends::start(gw)?;
    let config = fixtures::config_toml(virtual_servers, BACKENDS, &health_check(), |_, _| 100);
    let daemon = Daemon::start_running(lb, daemon_path, dir, "lb-checked", &config, TIMEOUT)?;
    let pid = daemon.child.pid();
    std::thread::sleep(HEALTH_INTERVAL);
    let (accepted, cpu, started) = (backends.accepted(), cpu_time(pid)?, Instant::now());
    std::thread::sleep(HEALTH_INTERVAL);
    let (accepted, cpu, window, memory_now) = (
        backends.accepted() - accepted,
        cpu_time(pid)?.saturating_sub(cpu),
        started.elapsed(),
        memory(pid)?,
    );
    let scrape = scrape(lb, pid)?;
    let checked = Checked {
        accepted,
        cpu,
        window,
        memory: memory_now,
        scrape,
    };
    stop(daemon)?;
    backends.stop()?;
    Ok(checked)
}

/// One Prometheus scrape of the daemon `pid` (default metrics address).
fn scrape(lb: &Netns, pid: u32) -> anyhow::Result<Scrape> {
    let peak_before_kib = status_field(pid, "VmHWM:")?;
    // "5" resets the process's peak resident size to its current one
    // (proc(5), /proc/pid/clear_refs).
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .context("resetting the daemon's VmHWM")?;
    let started = Instant::now();
    let reply = lb_lab::http_request(
        lb,
        (Ipv4Addr::LOCALHOST, 9100).into(),
        "GET",
        "/metrics",
        TIMEOUT,
    )?;
    let duration = started.elapsed();
    if reply.status != 200 {
        bail!("GET /metrics: status {}", reply.status);
    }
    Ok(Scrape {
        bytes: reply.body.len(),
        samples: reply.body.lines().filter(|l| !l.starts_with('#')).count(),
        duration,
        memory: memory(pid)?,
        peak_before_kib,
        peak_during_kib: status_field(pid, "VmHWM:")?,
    })
}

/// TCP checks every [`HEALTH_INTERVAL`], as TOML lines.
fn health_check() -> String {
    format!(
        "kind = \"tcp\"\ninterval = \"{}s\"\ntimeout = \"2s\"",
        HEALTH_INTERVAL.as_secs()
    )
}

/// Every backend's check port: one listener in the gateway namespace,
/// where all backend addresses are local, accepting and closing every
/// connection on a thread of its own and counting them.
struct Backends {
    accepted: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    thread: JoinHandle<anyhow::Result<io::Result<()>>>,
}

impl Backends {
    fn start(gw: &Netns) -> anyhow::Result<Backends> {
        let listener = gw.enter(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, CHECK_PORT)))?;
        listener.set_nonblocking(true)?;
        let accepted = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let (count, stop) = (accepted.clone(), done.clone());
        let thread = gw.spawn_thread(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok(_) => {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })?;
        Ok(Backends {
            accepted,
            done,
            thread,
        })
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Ends the accepting thread; an error if accepting failed.
    fn stop(self) -> anyhow::Result<()> {
        self.done.store(true, Ordering::Relaxed);
        let result = self
            .thread
            .join()
            .map_err(|_| anyhow::anyhow!("the backends' thread panicked"))?;
        result?.context("accepting health checks")
    }
}

/// User and system CPU time of process `pid` so far.
fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are
    // the 14th and 15th of the line, counted in clock ticks.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        Ok(fields.get(i).context("short /proc stat")?.parse()?)
    };
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second)
        .ok()
        .filter(|&t| t > 0)
        .unwrap_or(100);
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_secs_f64(total as f64 / per_second as f64))
}

/// `virtual_servers` × [`BACKENDS`] without health checks; `generation` 1
/// re-weights the first backend of each.
fn config_text(virtual_servers: usize, generation: u32) -> String {
    fixtures::config_toml(
        virtual_servers,
        BACKENDS,
        r#"kind = "none""#,
        |_, backend| {
            if backend == 0 {
                100 + 50 * generation
            } else {
                100
            }
        },
    )
}

fn memory(pid: u32) -> anyhow::Result<Memory> {
    Ok(Memory {
        rss_kib: status_field(pid, "VmRSS:")?,
        anon_kib: status_field(pid, "RssAnon:")?,
    })
}

/// Field `name` (kB) of `/proc/pid/status`.
fn status_field(pid: u32, name: &str) -> anyhow::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(name))
        .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("malformed status line")?
        .parse()?)
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
    /// Every backend once per interval.
    fn expected_checks_per_second(&self) -> f64 {
        self.backends as f64 / HEALTH_INTERVAL.as_secs_f64()
    }

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
            "health_checks": {
                "kind": "tcp",
                "interval_seconds": HEALTH_INTERVAL.as_secs_f64(),
                "window_seconds": self.checked.window.as_secs_f64(),
                "checks_per_second": self.checked.checks_per_second(),
                "expected_checks_per_second": self.expected_checks_per_second(),
                "daemon_cpu_share": self.checked.cpu_share(),
                "rss_kib": self.checked.memory.rss_kib,
                "rss_anon_kib": self.checked.memory.anon_kib,
                "scrape": {
                    "bytes": self.checked.scrape.bytes,
                    "samples": self.checked.scrape.samples,
                    "seconds": self.checked.scrape.duration.as_secs_f64(),
                    "rss_kib_after": self.checked.scrape.memory.rss_kib,
                    "peak_rss_kib_before": self.checked.scrape.peak_before_kib,
                    "peak_rss_kib_during": self.checked.scrape.peak_during_kib,
                },
            },
            "targets": { "reload_seconds": 1.0, "rss_mb": 50 },
        })
    }

    fn markdown(&self) -> String {
        let mib = |kib: u64| kib as f64 / 1024.0;
        let mut text = format!(
            "## The daemon at scale\n\n`lb-daemon run` with {} virtual servers × {BACKENDS} backends \
             ({} backends, Maglev table 65537) in a network namespace, health checks off; the \
             rows \"while checking\" are of a second daemon of the same size checking every \
             backend.\n\n\
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
        let checked = &self.checked;
        let _ = writeln!(
            text,
            "| while checking: TCP checks of every backend every {} s, completed per second | {:.0} (expected {:.0}) | |",
            HEALTH_INTERVAL.as_secs(),
            checked.checks_per_second(),
            self.expected_checks_per_second()
        );
        let _ = writeln!(
            text,
            "| while checking: the daemon's CPU time, share of one CPU | {:.0}% | |",
            100.0 * checked.cpu_share()
        );
        let scrape = &checked.scrape;
        let _ = writeln!(
            text,
            "| while checking: one Prometheus scrape | {:.0} MB, {} samples, {:.2} s | |",
            scrape.bytes as f64 / 1e6,
            scrape.samples,
            scrape.duration.as_secs_f64()
        );
        for (when, m) in [
            ("after start", self.start_memory),
            ("after reload", self.reload_memory),
            ("while checking", checked.memory),
            ("right after the scrape", scrape.memory),
        ] {
            let _ = writeln!(
                text,
                "| resident memory {when} (VmRSS / RssAnon) | {:.1} MiB ({:.1} MB) / {:.1} MiB | < 50 MB |",
                mib(m.rss_kib),
                m.rss_kib as f64 * 1024.0 / 1e6,
                mib(m.anon_kib)
            );
        }
        let _ = writeln!(
            text,
            "| peak resident memory of the checking daemon from its start (VmHWM) | {:.1} MiB | |",
            mib(scrape.peak_before_kib)
        );
        let _ = writeln!(
            text,
            "| peak resident memory of the checking daemon during the scrape (VmHWM, reset before it) | {:.1} MiB | |",
            mib(scrape.peak_during_kib)
        );
        text.push_str(
            "\nThe rings live in the kernel's `RINGS` map (4 bytes per slot); the daemon maps only \
             the pages it writes, while it writes them, so they are not part of its resident memory.\n",
        );
        text
    }
}
