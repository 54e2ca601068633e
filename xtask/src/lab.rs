//! `cargo xtask lab up|down`: the lab of DESIGN.md §7 with its processes,
//! kept after xtask exits.
//!
//! `up` builds the namespaces ([`lb_lab::Topology`]), attaches XDP_PASS to
//! the bridge ports facing the balancers and the decapsulation program on
//! every backend, and starts, detached, one HTTP server per backend (`xtask
//! lab serve-http`, answering with the backend's name) and `lb-daemon run`
//! on lb-a and lb-b (a VRRP pair for the VIP, lb-a preferred): the web
//! service of [`lb_lab::web`], as the end-to-end tests run it. Configs,
//! logs and the PIDs of the processes (with their start times, so that a
//! reused PID is never signalled) are kept in `/run/lb-lab/PREFIX/`.
//!
//! `down` stops exactly those processes (SIGTERM, so that the daemons
//! leave gracefully, then SIGKILL), removes the namespaces whose names
//! start with `PREFIX-` (killing whatever still runs in them: a lab left
//! behind by a crash goes too) and the state directory.
use std::{
    fmt::Write as _,
    fs,
    net::{IpAddr, SocketAddr},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, bail, ensure};
use lb_lab::{
    DaemonLog, Forwarding, HealthKind, HttpBackend, Netns, RUNNING, Topology, TopologyOptions,
    VIRTUAL_SERVER, VrrpConfig, WEB_LISTEN, WEB_PORT, run_command, wait_http, wait_until,
};

/// Where each lab keeps its configs, logs and PIDs.
pub const STATE_ROOT: &str = "/run/lb-lab";
/// VRRP priorities: lb-a is preferred.
const PRIORITY_A: u8 = 150;
const PRIORITY_B: u8 = 100;
/// How long the daemons get to start and the VIP to answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a process gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// Name of the file listing the lab's processes.
const PROCESSES_FILE: &str = "processes";

/// What `lab up` builds.
#[derive(Debug, Clone)]
pub struct LabOptions {
    pub prefix: String,
    pub forwarding: Forwarding,
    pub health: HealthKind,
    /// lb-a alone holds the VIP (added by hand), no lb-b daemon.
    pub no_vrrp: bool,
    /// The `lb-daemon` binary to run.
    pub lb_daemon: PathBuf,
}

/// A process of the lab, as recorded in the state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `lb-a`, `be-2`, ... (the host it runs on).
    pub host: String,
    /// `daemon` or `http`.
    pub kind: String,
    pub pid: u32,
    /// Field 22 of /proc/PID/stat: tells a reused PID apart.
    pub start_time: u64,
}

impl Record {
    fn line(&self) -> String {
        format!(
            "{} {} {} {}\n",
            self.host, self.kind, self.pid, self.start_time
        )
    }

    fn parse(line: &str) -> Result<Record> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [host, kind, pid, start_time] = fields[..] else {
            bail!("bad process record {line:?}");
        };
        Ok(Record {
            host: host.to_owned(),
            kind: kind.to_owned(),
            pid: pid.parse()?,
            start_time: start_time.parse()?,
        })
    }

    /// Whether the recorded process still runs (and is not a zombie).
    pub fn alive(&self) -> bool {
        matches!(proc_stat(self.pid), Some((start, state)) if start == self.start_time && state != 'Z')
    }

    /// Sends `signal` if the recorded process (not a PID reuse) still runs.
    pub fn signal(&self, signal: libc::c_int) -> bool {
        if !self.alive() {
            return false;
        }
        let Ok(pid) = libc::pid_t::try_from(self.pid) else {
            return false;
        };
        // SAFETY: kill has no memory-safety preconditions; the start time
        // just matched, so the PID is still the process we started.
        unsafe { libc::kill(pid, signal) == 0 }
    }
}

/// The start time and state of a process, from /proc/PID/stat.
fn proc_stat(pid: u32) -> Option<(u64, char)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let after = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state); start time is field 22.
    let state = fields.first()?.chars().next()?;
    Some((fields.get(19)?.parse().ok()?, state))
}

/// The state directory of the lab `prefix`.
pub fn state_dir(prefix: &str) -> PathBuf {
    Path::new(STATE_ROOT).join(prefix)
}

/// A lab that is up: its topology (names and addresses) and processes.
pub struct Lab {
    pub options: LabOptions,
    pub dir: PathBuf,
    pub vip: IpAddr,
    /// (name, namespace, address) of each backend.
    pub backends: Vec<(String, String, IpAddr)>,
    /// (name, namespace) of each balancer.
    pub balancers: Vec<(String, String)>,
    pub client_ns: String,
    /// Processes started by this xtask, with their handles (to reap them).
    pub children: Vec<(Record, Child)>,
    pub table: String,
}

impl Lab {
    /// `lab up`. On error, whatever was built is removed again.
    pub fn up(options: &LabOptions) -> Result<Lab> {
        ensure!(
            options.lb_daemon.is_file(),
            "{} does not exist (build it: cargo build --release -p lb-daemon)",
            options.lb_daemon.display()
        );
        let mut options = options.clone();
        options.lb_daemon = fs::canonicalize(&options.lb_daemon)?;
        let options = &options;
        let dir = state_dir(&options.prefix);
        ensure!(
            !dir.exists(),
            "lab {} is already up ({} exists): `cargo xtask lab down` first",
            options.prefix,
            dir.display()
        );
        let topology = Topology::create(&TopologyOptions::new(options.prefix.as_str()))?;
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut lab = Lab {
            options: options.clone(),
            dir,
            vip: topology.vip_v4().into(),
            backends: topology
                .backends()
                .iter()
                .map(|be| {
                    (
                        be.name().to_owned(),
                        be.ns().name().to_owned(),
                        be.ipv4().into(),
                    )
                })
                .collect(),
            balancers: topology
                .balancers()
                .iter()
                .map(|lb| (lb.name().to_owned(), lb.ns().name().to_owned()))
                .collect(),
            client_ns: topology.client().ns().name().to_owned(),
            children: Vec::new(),
            table: topology.to_string(),
        };
        // From here on the processes outlive this value: on error, `down`
        // removes them and the namespaces.
        let result = lab.populate(&topology);
        topology.persist();
        if let Err(error) = result {
            let logs = lab.log_tails();
            let _ = lab.reap();
            let _ = down(&options.prefix);
            return Err(error.context(logs));
        }
        Ok(lab)
    }

    fn populate(&mut self, topology: &Topology) -> Result<()> {
        topology.pass_on_balancer_ports(&self.options.lb_daemon)?;
        topology.decap_on_backends(&self.options.lb_daemon)?;
        for be in topology.backends() {
            self.start_http(be.name())?;
        }
        for (index, lb) in topology.balancers().iter().enumerate() {
            let mut config = topology.web_config(topology.backends().len());
            config.forwarding = self.options.forwarding;
            config.health.kind = self.options.health;
            if self.options.no_vrrp {
                if index > 0 {
                    continue;
                }
                lb.hold_vip(self.vip)?;
            } else {
                let priority = if index == 0 { PRIORITY_A } else { PRIORITY_B };
                config.vrrp = Some(VrrpConfig::new(priority));
            }
            let path = self.dir.join(format!("{}.toml", lb.name()));
            fs::write(&path, config.to_toml())
                .with_context(|| format!("writing {}", path.display()))?;
            self.start_daemon(lb.name())?;
        }
        for (name, ..) in self.balancers.clone() {
            if self.options.no_vrrp && name != "lb-a" {
                continue;
            }
            self.wait_daemon(&name, 1)?;
        }
        let client = Netns::existing(&self.client_ns)?;
        let vip = SocketAddr::new(self.vip, WEB_PORT);
        wait_http(&client, vip, START_TIMEOUT).context("the VIP does not answer")?;
        self.write_summary()
    }

    /// Starts the HTTP server of backend `host`, detached.
    pub fn start_http(&mut self, host: &str) -> Result<()> {
        let ns = self.ns_of(host)?;
        let xtask = std::env::current_exe().context("locating the xtask binary")?;
        let mut command = Command::new(xtask);
        command.args([
            "lab",
            "serve-http",
            "--netns",
            &ns,
            "--name",
            host,
            "--listen",
            &WEB_LISTEN.to_string(),
        ]);
        self.spawn(host, "http", &ns, command)
    }

    /// Starts `lb-daemon run` on balancer `host`, detached.
    pub fn start_daemon(&mut self, host: &str) -> Result<()> {
        let ns = self.ns_of(host)?;
        let config = self.dir.join(format!("{host}.toml"));
        let command = run_command(&self.options.lb_daemon, &config);
        self.spawn(host, "daemon", &ns, command)
    }

    /// Waits until the daemon on `host` logs that it runs for the
    /// `starts`-th time.
    pub fn wait_daemon(&self, host: &str, starts: usize) -> Result<()> {
        let log = DaemonLog::new(self.log_path(host, "daemon"));
        log.wait(RUNNING, starts, START_TIMEOUT, || {
            let record = self.record(host, "daemon").context("no daemon record")?;
            Ok((!record.alive()).then(|| format!("pid {}", record.pid)))
        })
        .with_context(|| format!("lb-daemon on {host}"))
    }

    fn ns_of(&self, host: &str) -> Result<String> {
        self.balancers
            .iter()
            .map(|(name, ns)| (name, ns))
            .chain(self.backends.iter().map(|(name, ns, _)| (name, ns)))
            .find(|(name, _)| *name == host)
            .map(|(_, ns)| ns.clone())
            .with_context(|| format!("no host {host} in the lab"))
    }

    /// Where the output of `kind` on `host` goes.
    pub fn log_path(&self, host: &str, kind: &str) -> PathBuf {
        self.dir.join(format!("{host}.{kind}.log"))
    }

    /// Starts `command` detached in `ns` and records it ([`spawn_recorded`]).
    fn spawn(&mut self, host: &str, kind: &str, ns: &str, command: Command) -> Result<()> {
        let log = self.log_path(host, kind);
        let (record, child) = spawn_recorded(&self.dir, host, kind, ns, &command, &log)?;
        self.children
            .retain(|(old, _)| old.host != host || old.kind != kind);
        self.children.push((record, child));
        Ok(())
    }

    /// The latest record of `kind` on `host`.
    pub fn record(&self, host: &str, kind: &str) -> Option<&Record> {
        self.children
            .iter()
            .map(|(record, _)| record)
            .rfind(|record| record.host == host && record.kind == kind)
    }

    /// Reaps the children that have exited (so that they are not left as
    /// zombies while this xtask runs).
    pub fn reap(&mut self) -> Result<()> {
        for (_, child) in &mut self.children {
            child.try_wait()?;
        }
        Ok(())
    }

    fn log_tails(&self) -> String {
        let mut text = String::new();
        for (record, _) in &self.children {
            let log =
                fs::read_to_string(self.log_path(&record.host, &record.kind)).unwrap_or_default();
            let _ = write!(
                text,
                "--- {} {} log:\n{}\n",
                record.host,
                record.kind,
                tail(&log, 15)
            );
        }
        text
    }

    fn write_summary(&self) -> Result<()> {
        let path = self.dir.join("lab.txt");
        fs::write(&path, self.summary()).with_context(|| format!("writing {}", path.display()))
    }

    /// What `lab up` prints.
    pub fn summary(&self) -> String {
        let prefix = &self.options.prefix;
        let mut text = self.table.clone();
        let _ = writeln!(
            text,
            "\nvirtual server {VIRTUAL_SERVER}: http://{}:{WEB_PORT}/ ({}, {} health checks{})",
            self.vip,
            self.options.forwarding.as_str(),
            self.options.health.as_str(),
            if self.options.no_vrrp {
                ", lb-a holds the VIP alone"
            } else {
                ", VRRP: lb-a priority 150, lb-b 100"
            }
        );
        let _ = writeln!(text, "processes:");
        for (record, _) in &self.children {
            let _ = writeln!(
                text,
                "  {:<5} {:<6} pid {:<7} log {}",
                record.host,
                record.kind,
                record.pid,
                self.log_path(&record.host, &record.kind).display()
            );
        }
        let _ = writeln!(
            text,
            "try:\n  ip netns exec {prefix}-client curl -s http://{}/\n  \
             ip netns exec {prefix}-lb-a {} status\n\
             remove: cargo xtask lab down{}",
            self.vip,
            self.options.lb_daemon.display(),
            if prefix == lb_lab::LAB_PREFIX {
                String::new()
            } else {
                format!(" --prefix {prefix}")
            }
        );
        text
    }
}

/// Runs `command` in namespace `ns` through `ip netns exec` (so it sees
/// that namespace's /sys), in a process group of its own (a Ctrl-C in the
/// terminal does not reach it), output appended to `log`, and appends its
/// record to the lab's process list in `dir`.
fn spawn_recorded(
    dir: &Path,
    host: &str,
    kind: &str,
    ns: &str,
    command: &Command,
    log: &Path,
) -> Result<(Record, Child)> {
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut full = Command::new("ip");
    full.args(["netns", "exec", ns])
        .arg(command.get_program())
        .args(command.get_args())
        .envs(
            command
                .get_envs()
                .filter_map(|(key, value)| Some((key, value?))),
        )
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .process_group(0);
    let child = full
        .spawn()
        .with_context(|| format!("starting {kind} on {host}"))?;
    // `ip netns exec` execs the program: the PID stays the same.
    let (start_time, _) = proc_stat(child.id()).context("the process vanished at once")?;
    let record = Record {
        host: host.to_owned(),
        kind: kind.to_owned(),
        pid: child.id(),
        start_time,
    };
    let path = dir.join(PROCESSES_FILE);
    let mut list = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    std::io::Write::write_all(&mut list, record.line().as_bytes())?;
    Ok((record, child))
}

/// `lab down`: stops the recorded processes, removes the namespaces and
/// the state directory; returns what it did, for printing.
pub fn down(prefix: &str) -> Result<String> {
    ensure!(!prefix.is_empty(), "an empty prefix would match everything");
    let dir = state_dir(prefix);
    let mut report = String::new();
    let records: Vec<Record> = match fs::read_to_string(dir.join(PROCESSES_FILE)) {
        Ok(text) => text.lines().map(Record::parse).collect::<Result<_>>()?,
        Err(_) => Vec::new(),
    };
    // Daemons first, gracefully: they detach their program and, as VRRP
    // masters, say goodbye.
    for kind in ["daemon", "http"] {
        let stopping: Vec<&Record> = records
            .iter()
            .filter(|r| r.kind == kind && r.signal(libc::SIGTERM))
            .collect();
        let _ = wait_until(STOP_GRACE, "processes to stop", || {
            Ok(stopping.iter().all(|r| !r.alive()).then_some(()))
        });
        for record in stopping {
            if record.signal(libc::SIGKILL) {
                let _ = writeln!(
                    report,
                    "killed {} {} (pid {})",
                    record.host, record.kind, record.pid
                );
            } else {
                let _ = writeln!(
                    report,
                    "stopped {} {} (pid {})",
                    record.host, record.kind, record.pid
                );
            }
        }
    }
    let removed = Topology::down(prefix)?;
    let _ = writeln!(
        report,
        "removed {} namespaces{}",
        removed.len(),
        if removed.is_empty() {
            String::new()
        } else {
            format!(": {}", removed.join(" "))
        }
    );
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        let _ = writeln!(report, "removed {}", dir.display());
    }
    Ok(report)
}

/// `lab serve-http`: the backend's HTTP server, until killed.
pub fn serve_http(netns: &str, name: &str, listen: SocketAddr) -> Result<()> {
    let ns = Netns::existing(netns)?;
    let server = HttpBackend::start(&ns, listen, name)?;
    println!("{name}: serving http on {} in {netns}", server.addr());
    loop {
        // SIGTERM or SIGKILL end the process; nothing to do meanwhile.
        std::thread::park();
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let record = Record {
            host: "be-2".to_owned(),
            kind: "http".to_owned(),
            pid: 4242,
            start_time: 987_654,
        };
        assert_eq!(Record::parse(&record.line()).unwrap(), record);
        assert!(Record::parse("be-2 http x 1").is_err());
    }

    #[test]
    fn reads_its_own_start_time() {
        let (start, state) = proc_stat(std::process::id()).unwrap();
        assert!(start > 0);
        assert_ne!(state, 'Z');
        let me = Record {
            host: "x".to_owned(),
            kind: "test".to_owned(),
            pid: std::process::id(),
            start_time: start + 1,
        };
        assert!(!me.alive(), "a different start time is another process");
    }

    /// The crash case: a lab whose xtask is gone, with a recorded process,
    /// a process nobody recorded, and a record whose PID now belongs to
    /// someone else (this test process). `down` stops the first two,
    /// leaves the third alone and removes everything.
    #[test]
    fn down_cleans_up_after_a_crash_and_never_signals_a_reused_pid() {
        assert!(crate::setup::is_root(), "creates namespaces: run as root");
        let prefix = lb_lab::unique_prefix("xdn");
        let mut options = TopologyOptions::new(prefix.as_str());
        options.backends = 1;
        options.lb_b = false;
        let topology = Topology::create(&options).unwrap();
        let dir = state_dir(&prefix);
        fs::create_dir_all(&dir).unwrap();
        let mut sleep = Command::new("sleep");
        sleep.arg("600");
        let client = topology.client().ns().name().to_owned();
        let (recorded, mut child) =
            spawn_recorded(&dir, "client", "http", &client, &sleep, &dir.join("x.log")).unwrap();
        let backend = topology.backends()[0].ns().name().to_owned();
        let (stray, mut stray_child) =
            spawn_recorded(&dir, "be-1", "http", &backend, &sleep, &dir.join("y.log")).unwrap();
        // Forget the stray one: only `ip netns pids` can find it now.
        fs::write(dir.join(PROCESSES_FILE), recorded.line()).unwrap();
        let (start, _) = proc_stat(std::process::id()).unwrap();
        let reused = Record {
            host: "lb-a".to_owned(),
            kind: "daemon".to_owned(),
            pid: std::process::id(),
            start_time: start + 1,
        };
        let mut list = fs::OpenOptions::new()
            .append(true)
            .open(dir.join(PROCESSES_FILE))
            .unwrap();
        std::io::Write::write_all(&mut list, reused.line().as_bytes()).unwrap();
        topology.persist();

        let report = down(&prefix).unwrap();
        assert!(child.wait().unwrap().code().is_none(), "killed by a signal");
        assert!(stray_child.wait().unwrap().code().is_none());
        assert!(!stray.alive());
        assert!(report.contains("removed 4 namespaces"), "{report}");
        assert!(!dir.exists());
        let left: Vec<String> = lb_lab::list_netns()
            .unwrap()
            .into_iter()
            .filter(|name| name.starts_with(&prefix))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
