//! The validated configuration the daemon runs from. Every value here has
//! passed validation: ranges hold, names are unique, references
//! resolve, and defaults are filled in.
use std::{net::IpAddr, net::SocketAddr, path::PathBuf, time::Duration};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

pub use crate::dataplane::{Forwarding, XdpMode};

/// The defaults of absent fields, and the limits values are checked
/// against. `docs/configuration.md` lists the same values.
pub mod defaults {
    use std::{
        net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
        time::Duration,
    };

    use ipnet::{Ipv4Net, Ipv6Net};

    pub const METRICS_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9100);
    pub const ADMIN_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9180);

    pub const FLOW_TABLE_SIZE: u32 = 1_048_576;
    pub const MAGLEV_TABLE_SIZE: u32 = 65_537;
    pub const PIN_PATH: &str = "/sys/fs/bpf/lb";
    pub const MAX_VIRTUAL_SERVERS: u32 = 64;
    /// The data plane replaces the low 16 bits with the flow hash.
    pub const TUNNEL_SOURCE_V4: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(172, 16, 0, 0), 16);
    /// `fd00:1b::/96` ("lb"); the data plane replaces the low 32 bits.
    pub const TUNNEL_SOURCE_V6: Ipv6Net =
        Ipv6Net::new_assert(Ipv6Addr::new(0xfd00, 0x1b, 0, 0, 0, 0, 0, 0), 96);
    /// Prefix lengths of the tunnel source ranges (see above).
    pub const TUNNEL_SOURCE_V4_PREFIX: u8 = 16;
    pub const TUNNEL_SOURCE_V6_PREFIX: u8 = 96;

    pub const VRRP_VERSION: u8 = 3;
    pub const VRRP_PRIORITY: u8 = 100;
    pub const ADVERT_INTERVAL: Duration = Duration::from_secs(1);
    pub const PREEMPT: bool = true;
    pub const PREEMPT_DELAY: Duration = Duration::ZERO;
    /// VRRPv3 carries the interval in 12 bits of centiseconds (RFC 5798 5.2.7).
    pub const ADVERT_INTERVAL_V3_MAX: Duration = Duration::from_millis(40_950);
    /// VRRPv2 carries it in 8 bits of seconds (RFC 3768 5.3.7).
    pub const ADVERT_INTERVAL_V2_MAX: Duration = Duration::from_secs(255);
    pub const TRACK_WEIGHT: i32 = 0;
    /// Track weights are bounded like keepalived's.
    pub const TRACK_WEIGHT_MAX: i32 = 254;
    pub const TRACK_SCRIPT_INTERVAL: Duration = Duration::from_secs(1);

    pub const PORT: u16 = 0;
    pub const WEIGHT: u32 = 100;
    /// Largest backend weight.
    pub const WEIGHT_MAX: u32 = 65_535;

    pub const HEALTH_INTERVAL: Duration = Duration::from_secs(2);
    pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
    pub const HEALTH_RISE: u32 = 2;
    pub const HEALTH_FALL: u32 = 3;
    /// Largest `rise` and `fall`.
    pub const HEALTH_COUNT_MAX: u32 = 100;
    pub const HTTP_PATH: &str = "/";
    pub const HTTP_EXPECT_STATUS: u16 = 200;
    pub const HTTPS_VERIFY: bool = true;

    /// Longest name of a virtual server or VRRP instance.
    pub const NAME_MAX: usize = 64;
}

/// The whole configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `None`: no `[dataplane]` and no virtual servers: a pure VRRP daemon.
    pub dataplane: Option<Dataplane>,
    pub metrics: Metrics,
    pub admin: Admin,
    pub vrrp: Vec<VrrpInstance>,
    pub virtual_servers: Vec<VirtualServer>,
}

impl Config {
    /// The virtual server named `name`.
    pub fn virtual_server(&self, name: &str) -> Option<&VirtualServer> {
        self.virtual_servers.iter().find(|vs| vs.name == name)
    }

    /// Backends across all virtual servers.
    pub fn backend_count(&self) -> usize {
        self.virtual_servers
            .iter()
            .map(|vs| vs.backends.len())
            .sum()
    }
}

/// `[dataplane]`: the XDP program and the sizes of its maps.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataplane {
    /// Interfaces the balancer program is attached to.
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    /// Flows of each flow table (IPv4 and IPv6; rounded up to a power of
    /// two of sets, at most 2^28).
    pub flow_table_size: u32,
    /// Slots of each Maglev ring; a prime.
    pub maglev_table_size: u32,
    /// Where maps and links are pinned.
    pub pin_path: PathBuf,
    /// Virtual servers the maps are sized for.
    pub max_virtual_servers: u32,
    /// Outer IPv4 source range of tunnelled packets (a /16).
    pub tunnel_source_v4: Ipv4Net,
    /// Outer IPv6 source range of tunnelled packets (a /96).
    pub tunnel_source_v6: Ipv6Net,
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metrics {
    pub listen: SocketAddr,
}

/// `[admin]`: the JSON API of `lb-daemon status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admin {
    pub listen: SocketAddr,
}

/// VRRP protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VrrpVersion {
    /// RFC 3768: IPv4 only, interval in whole seconds.
    V2,
    /// RFC 5798: IPv4 or IPv6, interval in centiseconds.
    V3,
}

/// `[[vrrp.instance]]`: one virtual router.
#[derive(Clone, Debug, PartialEq)]
pub struct VrrpInstance {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub version: VrrpVersion,
    /// 1..=255; 255 means this router owns the addresses.
    pub priority: u8,
    pub advert_interval: Duration,
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// All of one family; the prefix length is the one the address is
    /// added to the interface with.
    pub virtual_addresses: Vec<IpNet>,
    /// Empty: multicast (224.0.0.18 / ff02::12).
    pub unicast_peers: Vec<IpAddr>,
    /// Run as `notify INSTANCE STATE` on every state change.
    pub notify: Option<PathBuf>,
    pub track: Vec<Track>,
}

impl VrrpInstance {
    /// Whether the instance runs over IPv6 (its addresses are IPv6).
    pub fn is_ipv6(&self) -> bool {
        self.virtual_addresses
            .first()
            .is_some_and(|net| matches!(net, IpNet::V6(_)))
    }
}

/// Something whose failure lowers an instance's priority by `weight`
/// (or, with weight 0, puts the instance in the fault state).
#[derive(Clone, Debug, PartialEq)]
pub enum Track {
    /// Fails when the virtual server has no healthy backend.
    VirtualServer { name: String, weight: i32 },
    /// Fails when the interface is down.
    Interface { name: String, weight: i32 },
    /// Fails when the script exits non-zero; run every `interval`.
    Script {
        path: PathBuf,
        weight: i32,
        interval: Duration,
    },
}

impl Track {
    /// The priority change on failure (0: fault state).
    pub fn weight(&self) -> i32 {
        match self {
            Self::VirtualServer { weight, .. }
            | Self::Interface { weight, .. }
            | Self::Script { weight, .. } => *weight,
        }
    }
}

/// Transport protocol of a virtual server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
        }
    }

    /// The name the configuration uses (and status and metrics show).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// How a virtual server picks a backend for a new flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheduler {
    /// Weighted Maglev consistent hashing.
    Maglev,
}

/// `[[virtual_server]]`: a VIP, port and protocol with its backends.
#[derive(Clone, Debug, PartialEq)]
pub struct VirtualServer {
    pub name: String,
    pub address: IpAddr,
    /// 0: all ports.
    pub port: u16,
    pub protocol: Protocol,
    pub forwarding: Forwarding,
    pub scheduler: Scheduler,
    pub health_check: HealthCheck,
    pub backends: Vec<Backend>,
}

impl VirtualServer {
    /// The port `backend` is health-checked on: its own, else the
    /// virtual server's; `None` when both are unset (port 0).
    pub fn health_port(&self, backend: &Backend) -> Option<u16> {
        backend.port.or((self.port != 0).then_some(self.port))
    }

    /// The backend with this address.
    pub fn backend(&self, address: IpAddr) -> Option<&Backend> {
        self.backends.iter().find(|b| b.address == address)
    }
}

/// `[[virtual_server.backend]]`, identified by its address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub address: IpAddr,
    /// Health-check port; `None`: the virtual server's port.
    pub port: Option<u16>,
    /// Maglev weight, 0..=65535; 0 drains (no new flows).
    pub weight: u32,
}

/// `[virtual_server.health_check]`.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthCheck {
    pub kind: HealthCheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive successes that bring a backend up.
    pub rise: u32,
    /// Consecutive failures that take it down.
    pub fall: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            kind: HealthCheckKind::Tcp,
            interval: defaults::HEALTH_INTERVAL,
            timeout: defaults::HEALTH_TIMEOUT,
            rise: defaults::HEALTH_RISE,
            fall: defaults::HEALTH_FALL,
        }
    }
}

/// What a health check does, with the fields of its kind.
#[derive(Clone, Debug, PartialEq)]
pub enum HealthCheckKind {
    /// A TCP connection is accepted.
    Tcp,
    /// An HTTP GET answers with an expected status (and body).
    Http(HttpCheck),
    /// The same over TLS; `verify`: check the certificate.
    Https { http: HttpCheck, verify: bool },
    /// A datagram gets a reply (containing `expect`, if set).
    Udp {
        payload: Vec<u8>,
        expect: Option<Vec<u8>>,
    },
    /// A command exits with status 0 (argv, no shell).
    Exec { command: Vec<String> },
    /// No check: backends are always up.
    None,
}

impl HealthCheckKind {
    /// Whether the check connects to a port of the backend.
    pub fn needs_port(&self) -> bool {
        match self {
            Self::Tcp | Self::Http(_) | Self::Https { .. } | Self::Udp { .. } => true,
            Self::Exec { .. } | Self::None => false,
        }
    }
}

/// The request of an http or https check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCheck {
    pub path: String,
    /// Any of these statuses is a success.
    pub expect_status: Vec<u16>,
    /// If set, the body must contain it.
    pub body_contains: Option<String>,
}
