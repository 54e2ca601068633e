//! `lb-daemon run` configs for the lab's balancers, written as the TOML of
//! docs/configuration.md: one virtual server over the lab's backends and,
//! for a VRRP pair, one instance moving the VIP.
//!
//! ```
//! use std::net::{IpAddr, Ipv4Addr};
//! use lb_lab::{BalancerConfig, HealthKind};
//!
//! let vip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100));
//! let backends = [Ipv4Addr::new(192, 0, 2, 11).into()];
//! let mut config = BalancerConfig::new("web", vip, 80, &backends);
//! config.health.kind = HealthKind::Http;
//! config.vrrp = Some(lb_lab::VrrpConfig::new(150));
//! let toml = config.to_toml();
//! assert!(toml.contains("kind = \"http\""));
//! assert!(toml.contains("priority = 150"));
//! ```
use std::{fmt::Write as _, net::IpAddr, time::Duration};

/// How the balancer reaches its backends (`forwarding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarding {
    /// IPIP / IPv6-in-IPv6 to the backend (the default).
    Tunnel,
    /// Destination MAC rewritten, same L2.
    Dsr,
}

impl Forwarding {
    /// The config's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Forwarding::Tunnel => "tunnel",
            Forwarding::Dsr => "dsr",
        }
    }
}

/// The health check's `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthKind {
    /// A TCP connect to the backend's port.
    Tcp,
    /// `GET /` answered with 200.
    Http,
    /// No check: backends are always up.
    None,
}

impl HealthKind {
    /// The config's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthKind::Tcp => "tcp",
            HealthKind::Http => "http",
            HealthKind::None => "none",
        }
    }
}

/// `[virtual_server.health_check]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    pub kind: HealthKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

impl Default for HealthConfig {
    /// tcp, every 500 ms, 500 ms timeout, rise 2, fall 2: a dead backend
    /// is out within about a second, which suits a lab. The timeout is the
    /// longest the config allows (the interval), so that a healthy backend
    /// on a loaded machine does not go down mid-test; a stopped server is
    /// refused at once, so it does not delay detection.
    fn default() -> HealthConfig {
        HealthConfig {
            kind: HealthKind::Tcp,
            interval: Duration::from_millis(500),
            timeout: Duration::from_millis(500),
            rise: 2,
            fall: 2,
        }
    }
}

/// One `[[vrrp.instance]]` holding the virtual server's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpConfig {
    pub name: String,
    pub vrid: u8,
    pub priority: u8,
    pub advert_interval: Duration,
    pub preempt: bool,
}

impl VrrpConfig {
    /// Instance `VI_1`, vrid 51, adverts every 200 ms (takeover in well
    /// under a second), preempting.
    pub fn new(priority: u8) -> VrrpConfig {
        VrrpConfig {
            name: "VI_1".to_owned(),
            vrid: 51,
            priority,
            advert_interval: Duration::from_millis(200),
            preempt: true,
        }
    }
}

/// A balancer's whole config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalancerConfig {
    /// The interface the program is attached to, VRRP runs on and the VIP
    /// is added to.
    pub interface: String,
    pub xdp_mode: &'static str,
    pub flow_table_size: u32,
    /// The virtual server's name (admin API paths, metrics labels).
    pub name: String,
    pub vip: IpAddr,
    pub port: u16,
    pub forwarding: Forwarding,
    pub health: HealthConfig,
    /// Backends and their weights.
    pub backends: Vec<(IpAddr, u32)>,
    /// `None`: no VRRP; the VIP must reach the balancer another way.
    pub vrrp: Option<VrrpConfig>,
    /// `[admin] listen`, inside the balancer's namespace.
    pub admin: String,
    /// `[metrics] listen`, inside the balancer's namespace.
    pub metrics: String,
}

impl BalancerConfig {
    /// A tcp virtual server `name` on `vip:port` over `backends` (weight
    /// 100 each), tunnel mode, the default health check, no VRRP, on
    /// `eth0` in driver mode, the admin API on [`crate::ADMIN`].
    pub fn new(name: &str, vip: IpAddr, port: u16, backends: &[IpAddr]) -> BalancerConfig {
        BalancerConfig {
            interface: crate::HOST_INTERFACE.to_owned(),
            xdp_mode: "driver",
            flow_table_size: 65_536,
            name: name.to_owned(),
            vip,
            port,
            forwarding: Forwarding::Tunnel,
            health: HealthConfig::default(),
            backends: backends.iter().map(|addr| (*addr, 100)).collect(),
            vrrp: None,
            admin: crate::ADMIN.to_string(),
            metrics: "127.0.0.1:9100".to_owned(),
        }
    }

    /// The TOML text.
    pub fn to_toml(&self) -> String {
        let mut text = String::new();
        let interface = &self.interface;
        // Writing to a String cannot fail.
        let _ = writeln!(
            text,
            "# Generated by lb-lab for a lab balancer.\n\
             [dataplane]\n\
             interfaces = [\"{interface}\"]\n\
             xdp_mode = \"{}\"\n\
             flow_table_size = {}\n\
             maglev_table_size = 65537\n\
             max_virtual_servers = 8\n\
             \n\
             [admin]\n\
             listen = \"{}\"\n\
             \n\
             [metrics]\n\
             listen = \"{}\"\n",
            self.xdp_mode, self.flow_table_size, self.admin, self.metrics
        );
        if let Some(vrrp) = &self.vrrp {
            let host_bits = if self.vip.is_ipv4() { 32 } else { 128 };
            let _ = writeln!(
                text,
                "[[vrrp.instance]]\n\
                 name = \"{}\"\n\
                 interface = \"{interface}\"\n\
                 vrid = {}\n\
                 priority = {}\n\
                 advert_interval = \"{}\"\n\
                 preempt = {}\n\
                 virtual_addresses = [\"{}/{host_bits}\"]\n",
                vrrp.name,
                vrrp.vrid,
                vrrp.priority,
                humantime(vrrp.advert_interval),
                vrrp.preempt,
                self.vip,
            );
        }
        let health = &self.health;
        let _ = writeln!(
            text,
            "[[virtual_server]]\n\
             name = \"{}\"\n\
             address = \"{}\"\n\
             port = {}\n\
             protocol = \"tcp\"\n\
             forwarding = \"{}\"\n\
             \n\
             [virtual_server.health_check]\n\
             kind = \"{}\"",
            self.name,
            self.vip,
            self.port,
            self.forwarding.as_str(),
            health.kind.as_str(),
        );
        if health.kind != HealthKind::None {
            let _ = writeln!(
                text,
                "interval = \"{}\"\ntimeout = \"{}\"\nrise = {}\nfall = {}",
                humantime(health.interval),
                humantime(health.timeout),
                health.rise,
                health.fall
            );
        }
        for (address, weight) in &self.backends {
            let _ = write!(
                text,
                "\n[[virtual_server.backend]]\naddress = \"{address}\"\nweight = {weight}\n"
            );
        }
        text
    }
}

/// A duration the way the config's humantime fields read it, to the
/// millisecond.
fn humantime(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn backends() -> Vec<IpAddr> {
        (11..=13)
            .map(|n| Ipv4Addr::new(192, 0, 2, n).into())
            .collect()
    }

    #[test]
    fn without_vrrp_and_with_a_none_check() {
        let mut config = BalancerConfig::new("web", Ipv4Addr::new(192, 0, 2, 100).into(), 80, &[]);
        config.health.kind = HealthKind::None;
        let text = config.to_toml();
        assert!(!text.contains("vrrp"), "{text}");
        assert!(!text.contains("interval"), "{text}");
        assert!(text.contains("kind = \"none\""), "{text}");
        assert!(!text.contains("[[virtual_server.backend]]"), "{text}");
    }

    #[test]
    fn a_vrrp_pair_member_with_weights() {
        let mut config =
            BalancerConfig::new("web", Ipv4Addr::new(192, 0, 2, 100).into(), 80, &backends());
        config.backends[1].1 = 0;
        config.forwarding = Forwarding::Dsr;
        config.vrrp = Some(VrrpConfig::new(150));
        let text = config.to_toml();
        for expected in [
            "interfaces = [\"eth0\"]",
            "priority = 150",
            "advert_interval = \"200ms\"",
            "virtual_addresses = [\"192.0.2.100/32\"]",
            "forwarding = \"dsr\"",
            "interval = \"500ms\"",
            "fall = 2",
            "address = \"192.0.2.12\"\nweight = 0",
            "address = \"192.0.2.13\"\nweight = 100",
        ] {
            assert!(text.contains(expected), "{expected:?} missing in\n{text}");
        }
    }
}
