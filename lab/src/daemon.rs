//! `lb-daemon run` in the lab: its command line, its log and waiting on
//! it, and [`Daemon`], a daemon started by this process (tests,
//! benchmarks). `cargo xtask lab` starts the same command detached and
//! waits on the same log.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::{Netns, NsChild, wait_until};

/// The line `lb-daemon run` logs once it serves, with its target: "running"
/// alone also stands in other lines (a rejected reload, the size warning of
/// an adopting daemon). A restart appends to the same log, so starts are
/// told apart by counting it.
pub const RUNNING: &str = "lb_daemon::daemon: running";

/// `lb-daemon run --config CONFIG` logging at info level without colours
/// (the lab searches the log); stdio is left to the caller.
pub fn run_command(lb_daemon: &Path, config: &Path) -> Command {
    let mut command = Command::new(lb_daemon);
    command
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    command
}

/// A daemon's log file.
#[derive(Debug, Clone)]
pub struct DaemonLog {
    path: PathBuf,
}

impl DaemonLog {
    pub fn new(path: impl Into<PathBuf>) -> DaemonLog {
        DaemonLog { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The log so far (empty before the daemon has written it).
    pub fn text(&self) -> String {
        fs::read_to_string(&self.path).unwrap_or_default()
    }

    /// How many times the log holds `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.text().matches(needle).count()
    }

    /// Waits up to `timeout` until the log holds `needle` `count` times.
    /// `exited` says whether the daemon has exited (and how), which ends
    /// the wait at once. The error carries the log.
    pub fn wait(
        &self,
        needle: &str,
        count: usize,
        timeout: Duration,
        mut exited: impl FnMut() -> Result<Option<String>>,
    ) -> Result<()> {
        wait_until(timeout, &format!("{needle:?} in the log"), || {
            if let Some(how) = exited()? {
                bail!("lb-daemon exited ({how})");
            }
            Ok((self.count(needle) >= count).then_some(()))
        })
        .map_err(|error| anyhow!("{error:#}\n--- {}:\n{}", self.path.display(), self.text()))
    }
}

/// `lb-daemon run` started by this process inside a namespace, with its
/// config in `DIR/NAME.toml` and its log in `DIR/NAME.log` (appended, so
/// that a restart keeps one log); stopped when dropped.
#[derive(Debug)]
pub struct Daemon {
    pub child: NsChild,
    pub config: PathBuf,
    pub log: DaemonLog,
}

impl Daemon {
    /// Writes `config` and starts `lb_daemon run` with it in `ns`, without
    /// waiting.
    pub fn start(
        ns: &Netns,
        lb_daemon: &Path,
        dir: &Path,
        name: &str,
        config: &str,
    ) -> Result<Daemon> {
        let config_path = dir.join(format!("{name}.toml"));
        fs::write(&config_path, config)
            .with_context(|| format!("writing {}", config_path.display()))?;
        let log = log_of(dir, name);
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log.path())
            .with_context(|| format!("opening {}", log.path().display()))?;
        let mut command = run_command(lb_daemon, &config_path);
        command.stdout(Stdio::null()).stderr(file);
        let child = ns
            .spawn(command)
            .with_context(|| format!("starting lb-daemon {name}"))?;
        Ok(Daemon {
            child,
            config: config_path,
            log,
        })
    }

    /// [`Daemon::start`], then waits up to `timeout` until the daemon logs
    /// [`RUNNING`] (once more than its log held before).
    pub fn start_running(
        ns: &Netns,
        lb_daemon: &Path,
        dir: &Path,
        name: &str,
        config: &str,
        timeout: Duration,
    ) -> Result<Daemon> {
        let starts = log_of(dir, name).count(RUNNING);
        let daemon = Daemon::start(ns, lb_daemon, dir, name, config)?;
        daemon.wait_log(RUNNING, starts + 1, timeout)?;
        Ok(daemon)
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        self.log.text()
    }

    /// Waits up to `timeout` until the log holds `needle` `count` times;
    /// an error at once if the daemon exits.
    pub fn wait_log(&self, needle: &str, count: usize, timeout: Duration) -> Result<()> {
        self.log.wait(needle, count, timeout, || {
            Ok(self.child.try_wait()?.map(|status| status.to_string()))
        })
    }
}

/// The log of the daemon `name` in `dir`.
fn log_of(dir: &Path, name: &str) -> DaemonLog {
    DaemonLog::new(dir.join(format!("{name}.log")))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::TempDir;

    #[test]
    fn the_log_is_counted_and_waited_on() {
        let dir = TempDir::new("dlog").unwrap();
        let log = DaemonLog::new(dir.path().join("lb.log"));
        assert_eq!(log.count(RUNNING), 0, "no log yet");
        // Two starts, and lines that mention "running" otherwise.
        fs::write(
            log.path(),
            "INFO lb_daemon::daemon: running\n\
             WARN lb_daemon::daemon::dataplane: adopted program differs running_max_virtual_servers=8\n\
             ERROR lb_daemon::daemon: reload rejected, the running config stays in force\n\
             INFO lb_daemon::daemon: running\n",
        )
        .unwrap();
        assert_eq!(log.count(RUNNING), 2);
        log.wait(RUNNING, 2, Duration::ZERO, || Ok(None)).unwrap();

        let error = log
            .wait(RUNNING, 3, Duration::from_millis(30), || Ok(None))
            .unwrap_err()
            .to_string();
        assert!(error.contains("timed out"), "{error}");
        assert!(error.contains("reload rejected"), "the log: {error}");

        let polls = Cell::new(0);
        let error = log
            .wait(RUNNING, 3, Duration::from_secs(60), || {
                polls.set(polls.get() + 1);
                Ok((polls.get() == 2).then(|| "signal: 9".to_owned()))
            })
            .unwrap_err()
            .to_string();
        assert!(error.contains("exited (signal: 9)"), "{error}");
    }

    #[test]
    fn runs_with_the_config_and_plain_info_logs() {
        let command = run_command(Path::new("/bin/lb-daemon"), Path::new("/etc/lb.toml"));
        let args: Vec<_> = command.get_args().collect();
        assert_eq!(args, ["run", "--config", "/etc/lb.toml"]);
        let envs: Vec<_> = command.get_envs().collect();
        assert!(envs.contains(&("RUST_LOG".as_ref(), Some("info".as_ref()))));
        assert!(envs.contains(&("NO_COLOR".as_ref(), Some("1".as_ref()))));
    }
}
