//! `lb-daemon run` processes inside lab namespaces, with their config and
//! log in a directory of their own, and the lab set-up they need: XDP_PASS
//! on the bridge ports facing balancers (lab fact), the decapsulation
//! program and an echo server on every backend.
use std::{
    fs,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use lb_daemon::dataplane::{attach, decap::Pass};
use lb_lab::{EchoBackend, NsChild, Topology, wait_until};

pub const BINARY: &str = env!("CARGO_BIN_EXE_lb-daemon");

/// A daemon process and where its config and log are.
pub struct Daemon {
    pub child: NsChild,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `lb-daemon run` in `host`'s namespace with `config`, logging
    /// to `dir/NAME.log` (appended, so restarts keep one log).
    pub fn start(ns: &lb_lab::Netns, dir: &Path, name: &str, config: &str) -> Daemon {
        let config_path = dir.join(format!("{name}.toml"));
        fs::write(&config_path, config).unwrap();
        let log = dir.join(format!("{name}.log"));
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut command = Command::new(BINARY);
        command
            .args(["run", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "info")
            // Plain logs: tests search them.
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(file);
        let child = ns.spawn(command).expect("start lb-daemon");
        Daemon {
            child,
            config: config_path,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle` `count` times.
    pub fn wait_log(&self, needle: &str, count: usize, timeout: Duration) {
        wait_until(timeout, needle, || {
            if let Ok(Some(status)) = self.child.try_wait() {
                anyhow::bail!("lb-daemon exited with {status}:\n{}", self.log_text());
            }
            Ok((self.log_text().matches(needle).count() >= count).then_some(()))
        })
        .unwrap_or_else(|e| panic!("{e:#}\nlog:\n{}", self.log_text()));
    }
}

/// A directory for configs and logs, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("lb-test-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// XDP_PASS on the bridge ports that face balancers, so frames the
/// balancers send with XDP_TX are delivered promptly (lab fact).
pub fn pass_on_balancer_ports(lab: &Topology) {
    let ports: Vec<String> = lab.balancer_ports().iter().map(|p| p.to_string()).collect();
    lab.bridge().ns().enter(|| {
        let pass = Pass::load().expect("load pass");
        for port in &ports {
            let ifindex = attach::ifindex(port).unwrap();
            pass.attach(ifindex, lb_daemon::dataplane::XdpMode::Driver)
                .unwrap();
        }
    });
}

/// On every backend: the decapsulation program for `vip` (through
/// `lb-daemon decap`, as an operator runs it) and an echo server on
/// `vip:port`.
pub fn backends_with_echo(lab: &Topology, vip: IpAddr, port: u16) -> Vec<EchoBackend> {
    lab.backends()
        .iter()
        .map(|be| {
            be.ns()
                .exec_ok(
                    BINARY,
                    &["decap", "--interface", "eth0", "--vip", &vip.to_string()],
                )
                .expect("lb-daemon decap");
            EchoBackend::start(be.ns(), SocketAddr::new(vip, port)).expect("echo server")
        })
        .collect()
}
