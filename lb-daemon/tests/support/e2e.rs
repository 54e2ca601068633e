//! The end-to-end set-up of DESIGN.md §7 for the e2e_* tests: the lab
//! topology running the web service of [`lb_lab::web`] (XDP_PASS on the
//! bridge ports facing balancers, on every backend the decapsulation
//! program and an HTTP server answering with the backend's name), and
//! `lb-daemon run` on the balancers ([`lb_lab::Daemon`]) with configs from
//! [`lb_lab::Topology::web_config`]; the admin API through
//! [`lb_lab::http_request`].
//!
//! Everything is removed on drop (daemons, servers, namespaces, the
//! directory of configs and logs), also when a test fails.
use std::{
    collections::BTreeMap,
    fs,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use lb_daemon::status::Status;

use lb_lab::{
    ADMIN, BalancerConfig, Daemon, Host, HttpBackend, TempDir, Topology, TopologyOptions,
    WEB_LISTEN, http_request, unique_prefix, wait_http,
};

use super::lb_daemon;

/// Longest wait for a daemon to start or the VIP to answer.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for an admin API call.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// balancer; each backend serves HTTP on [`WEB_LISTEN`] and
    /// decapsulates tunnelled packets to the VIPs.
    pub fn new(tag: &str, backends: u8, lb_b: bool) -> E2e {
        super::require_root();
        let prefix = unique_prefix(tag);
        let mut options = TopologyOptions::new(prefix.as_str());
        options.backends = backends;
        options.lb_b = lb_b;
        let lab = Topology::create(&options).expect("create the lab");
        lab.pass_on_balancer_ports(lb_daemon())
            .expect("XDP_PASS on the bridge ports");
        lab.decap_on_backends(lb_daemon()).expect("lb-daemon decap");
        let servers = lab
            .backends()
            .iter()
            .map(|be| HttpBackend::start(be.ns(), WEB_LISTEN, be.name()).expect("HTTP server"))
            .collect();
        E2e {
            daemons: BTreeMap::new(),
            servers,
            dir: TempDir::new(&prefix).expect("a directory for configs and logs"),
            lab,
        }
    }

    /// The IPv4 VIP.
    pub fn vip(&self) -> IpAddr {
        self.vip_addr().ip()
    }

    /// The VIP's HTTP address.
    pub fn vip_addr(&self) -> SocketAddr {
        self.lab.web_addr()
    }

    /// A config over the first `backends` backends (tunnel mode, tcp
    /// checks, no VRRP).
    pub fn config(&self, backends: usize) -> BalancerConfig {
        self.lab.web_config(backends)
    }

    /// The balancer called `name` (`lb-a`, `lb-b`).
    pub fn balancer(&self, name: &str) -> &Host {
        self.lab.host(name).expect("no such balancer")
    }

    /// Gives the VIP to `balancer` by hand (for tests without VRRP).
    pub fn hold_vip(&self, balancer: &str) {
        self.balancer(balancer)
            .hold_vip(self.vip())
            .expect("add the VIP");
    }

    /// Starts `lb-daemon run` on `balancer` with `config` and waits until
    /// it runs.
    pub fn start_daemon(&mut self, balancer: &str, config: &BalancerConfig) {
        let ns = self.balancer(balancer).ns();
        let daemon = Daemon::start_running(
            ns,
            lb_daemon(),
            self.dir.path(),
            balancer,
            &config.to_toml(),
            START_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("lb-daemon on {balancer}: {e:#}"));
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
        let ns = self.balancer(balancer).ns();
        let reply = http_request(ns, ADMIN, method, path, ADMIN_TIMEOUT)
            .unwrap_or_else(|e| panic!("{method} {path} on {balancer}: {e:#}\n{}", self.logs()));
        (reply.status, reply.body)
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
