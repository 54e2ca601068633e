//! The end-to-end set-up of DESIGN.md §7 for the e2e_* tests: the lab
//! topology, XDP_PASS on the bridge ports facing balancers, on every
//! backend the decapsulation program and an HTTP server answering with the
//! backend's name on the VIP's port, and `lb-daemon run` on the balancers
//! with configs from [`lb_lab::BalancerConfig`].
//!
//! Everything is removed on drop (daemons, servers, namespaces, the
//! directory of configs and logs), also when a test fails.
use std::{
    collections::BTreeMap,
    fs,
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv6Addr, SocketAddr, TcpStream},
    time::Duration,
};

use lb_daemon::status::Status;

use lb_lab::{
    BalancerConfig, Host, HttpBackend, Topology, TopologyOptions, unique_prefix, wait_http,
};

use super::daemon::{BINARY, Daemon, TempDir, pass_on_balancer_ports};

/// The virtual server's port and name.
pub const PORT: u16 = 80;
pub const VIRTUAL_SERVER: &str = "web";
/// The admin API inside each balancer's namespace.
pub const ADMIN: &str = "127.0.0.1:9180";
/// Longest wait for a daemon to start or the VIP to answer.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A lab with HTTP servers on its backends; daemons are started by the test.
pub struct E2e {
    /// Declared first so that they stop before the namespaces go.
    pub daemons: BTreeMap<String, Daemon>,
    pub servers: Vec<HttpBackend>,
    pub dir: TempDir,
    pub lab: Topology,
}

impl E2e {
    /// The lab with `backends` backends and, if `lb_b`, the second
    /// balancer; each backend serves HTTP on `[::]:80` and decapsulates
    /// tunnelled packets to the VIPs.
    pub fn new(tag: &str, backends: u8, lb_b: bool) -> E2e {
        super::require_root();
        let prefix = unique_prefix(tag);
        let mut options = TopologyOptions::new(prefix.as_str());
        options.backends = backends;
        options.lb_b = lb_b;
        let lab = Topology::create(&options).expect("create the lab");
        pass_on_balancer_ports(&lab);
        let vips = [lab.vip_v4().to_string(), lab.vip_v6().to_string()];
        let servers = lab
            .backends()
            .iter()
            .map(|be| {
                be.ns()
                    .exec_ok(
                        BINARY,
                        &[
                            "decap",
                            "--interface",
                            be.interface(),
                            "--vip",
                            &vips[0],
                            "--vip",
                            &vips[1],
                        ],
                    )
                    .expect("lb-daemon decap");
                let any = SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), PORT);
                HttpBackend::start(be.ns(), any, be.name()).expect("HTTP server")
            })
            .collect();
        E2e {
            daemons: BTreeMap::new(),
            servers,
            dir: TempDir::new(&prefix),
            lab,
        }
    }

    /// The IPv4 VIP.
    pub fn vip(&self) -> IpAddr {
        self.lab.vip_v4().into()
    }

    /// The VIP's HTTP address.
    pub fn vip_addr(&self) -> SocketAddr {
        SocketAddr::new(self.vip(), PORT)
    }

    /// A config over the first `backends` backends (tunnel mode, tcp
    /// checks, no VRRP).
    pub fn config(&self, backends: usize) -> BalancerConfig {
        let addresses: Vec<IpAddr> = self.lab.backends()[..backends]
            .iter()
            .map(|be| be.ipv4().into())
            .collect();
        let mut config = BalancerConfig::new(VIRTUAL_SERVER, self.vip(), PORT, &addresses);
        config.admin = ADMIN.to_owned();
        config
    }

    /// The balancer called `name` (`lb-a`, `lb-b`).
    pub fn balancer(&self, name: &str) -> &Host {
        self.lab.host(name).expect("no such balancer")
    }

    /// Gives the VIP to `balancer` by hand (for tests without VRRP).
    pub fn hold_vip(&self, balancer: &str) {
        let host = self.balancer(balancer);
        host.ns()
            .ip(&[
                "addr",
                "add",
                &format!("{}/32", self.vip()),
                "dev",
                host.interface(),
            ])
            .expect("add the VIP");
    }

    /// Starts `lb-daemon run` on `balancer` with `config` and waits until
    /// it runs.
    pub fn start_daemon(&mut self, balancer: &str, config: &BalancerConfig) {
        let ns = self.balancer(balancer).ns();
        let daemon = Daemon::start(ns, &self.dir.0, balancer, &config.to_toml());
        let starts = daemon.log_text().matches(" running").count();
        daemon.wait_log(" running", starts + 1, START_TIMEOUT);
        self.daemons.insert(balancer.to_owned(), daemon);
    }

    /// The daemon on `balancer`.
    pub fn daemon(&self, balancer: &str) -> &Daemon {
        &self.daemons[balancer]
    }

    /// Rewrites `balancer`'s config file (for a reload).
    pub fn rewrite_config(&self, balancer: &str, config: &BalancerConfig) {
        fs::write(&self.daemon(balancer).config, config.to_toml()).expect("write the config");
    }

    /// Waits until the VIP answers from the client.
    pub fn wait_vip(&self) -> String {
        wait_http(self.lab.client().ns(), self.vip_addr(), START_TIMEOUT)
            .unwrap_or_else(|e| panic!("the VIP does not answer: {e:#}\n{}", self.logs()))
    }

    /// Every daemon's log, for failure messages.
    pub fn logs(&self) -> String {
        self.daemons
            .iter()
            .map(|(name, daemon)| format!("--- {name} log:\n{}", daemon.log_text()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The backends' names, in order.
    pub fn backend_names(&self) -> Vec<String> {
        self.lab
            .backends()
            .iter()
            .map(|be| be.name().to_owned())
            .collect()
    }
}

impl E2e {
    /// One request to the admin API of `balancer` (from inside its
    /// namespace); returns the status code and body.
    pub fn admin(&self, balancer: &str, method: &str, path: &str) -> (u16, String) {
        let admin: SocketAddr = ADMIN.parse().unwrap();
        let answer = self
            .balancer(balancer)
            .ns()
            .enter(|| -> std::io::Result<String> {
                let mut stream = TcpStream::connect_timeout(&admin, Duration::from_secs(2))?;
                stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                // HTTP/1.0: no chunks, the answer ends with the connection.
                write!(
                    stream,
                    "{method} {path} HTTP/1.0\r\nHost: {admin}\r\nContent-Length: 0\r\n\r\n"
                )?;
                let mut answer = String::new();
                stream.read_to_string(&mut answer)?;
                Ok(answer)
            })
            .unwrap_or_else(|e| panic!("{method} {path} on {balancer}: {e}\n{}", self.logs()));
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status in {answer:?}"));
        (code, body.to_owned())
    }

    /// `GET /api/v1/status` of `balancer`.
    pub fn status(&self, balancer: &str) -> Status {
        let (code, body) = self.admin(balancer, "GET", "/api/v1/status");
        assert_eq!(code, 200, "status: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("status JSON: {e}: {body}"))
    }

    /// The VRRP state of `balancer`'s first instance, from its log
    /// (works also while the admin API is busy or the daemon is gone).
    pub fn vrrp_state_logged(&self, balancer: &str) -> Option<String> {
        let log = self.daemon(balancer).log_text();
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains("VRRP state change"))?;
        let to = line.split("to=").nth(1)?;
        Some(to.split_whitespace().next()?.trim_matches('"').to_owned())
    }
}

/// How many times each name occurs.
pub fn tally<'a>(names: impl IntoIterator<Item = &'a String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for name in names {
        *counts.entry(name.clone()).or_default() += 1;
    }
    counts
}
