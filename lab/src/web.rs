//! The lab's web service, as the end-to-end tests and `cargo xtask lab`
//! run it: every backend serves HTTP on [`WEB_LISTEN`] (answering with its
//! name, [`crate::HttpBackend`]), the balancers balance the virtual server
//! [`VIRTUAL_SERVER`] on the IPv4 VIP's port [`WEB_PORT`] and answer on
//! their admin API at [`ADMIN`].
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::{BalancerConfig, Topology};

/// The virtual server's name (admin API paths, metrics labels).
pub const VIRTUAL_SERVER: &str = "web";
/// The virtual server's port.
pub const WEB_PORT: u16 = 80;
/// Where a backend's HTTP server listens: every address, both families.
pub const WEB_LISTEN: SocketAddr =
    SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, WEB_PORT, 0, 0));
/// The balancers' admin API (`[admin] listen`), inside each balancer's
/// namespace.
pub const ADMIN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9180));

impl Topology {
    /// The web service's address: the IPv4 VIP, port [`WEB_PORT`].
    pub fn web_addr(&self) -> SocketAddr {
        SocketAddr::new(self.vip_v4().into(), WEB_PORT)
    }

    /// A balancer config for the web service over the first `backends`
    /// backends (IPv4), otherwise as [`BalancerConfig::new`]: tunnel mode,
    /// tcp checks, no VRRP.
    pub fn web_config(&self, backends: usize) -> BalancerConfig {
        let addresses: Vec<IpAddr> = self.backends()[..backends]
            .iter()
            .map(|be| be.ipv4().into())
            .collect();
        let vip = self.web_addr();
        BalancerConfig::new(VIRTUAL_SERVER, vip.ip(), vip.port(), &addresses)
    }
}
