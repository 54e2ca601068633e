//! A snapshot of a running daemon: what `GET /api/v1/status` returns as
//! JSON, what `lb-daemon status` and the lab's live view print, and what
//! the Prometheus metrics are read from.
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::health::CheckResult;

/// The whole daemon.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The daemon's version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// `None` for a pure VRRP daemon (no `[dataplane]`).
    pub dataplane: Option<DataplaneStatus>,
    pub virtual_servers: Vec<VirtualServerStatus>,
    pub vrrp: Vec<VrrpStatus>,
}

/// The XDP program and its counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DataplaneStatus {
    pub interfaces: Vec<InterfaceStatus>,
    /// Instructions the verifier processed when the program was loaded
    /// (`None` when the kernel does not report it or the program was adopted).
    pub verified_instructions: Option<u32>,
    /// Packets per data-plane counter, by the names of
    /// `lb_common::stats::NAMES` (`tx_tunnel`, `flow_hit`, ...).
    pub counters: Vec<NamedCounter>,
}

/// One interface the balancer program is attached to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceStatus {
    pub name: String,
    /// `driver` or `generic`.
    pub mode: String,
    /// Kernel id of the attached program.
    pub program_id: Option<u32>,
}

/// A data-plane counter summed over CPUs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedCounter {
    pub name: String,
    pub packets: u64,
    pub bytes: u64,
}

/// One `[[virtual_server]]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VirtualServerStatus {
    pub name: String,
    pub address: IpAddr,
    /// 0: all ports.
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// `tunnel` or `dsr`.
    pub forwarding: String,
    pub packets: u64,
    pub bytes: u64,
    /// New flows (flow-table misses that picked a backend).
    pub flows: u64,
    pub backends: Vec<BackendStatus>,
}

impl VirtualServerStatus {
    /// Backends that are healthy and take new flows.
    pub fn active_backends(&self) -> usize {
        self.backends.iter().filter(|b| b.takes_new_flows()).count()
    }
}

/// One backend of a virtual server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendStatus {
    pub address: IpAddr,
    /// The configured weight.
    pub weight: u32,
    /// Drained through the admin API (no new flows, established ones stay).
    pub drained: bool,
    pub health: Health,
    /// Its Ethernet next hop is known; without one it gets no packets.
    pub next_hop: bool,
    pub packets: u64,
    pub bytes: u64,
    /// Its health checks by result since its checks started: all 0 for a
    /// backend not checked (check kind `none`); they start over when its
    /// checks stop (a reload to kind `none`) or when it leaves the config,
    /// and go on when its check changes.
    #[serde(default)]
    pub checks: CheckCounts,
}

/// Health checks by result (`lb_health_checks_total`), in 32 bits: 136
/// years at one a second; Prometheus takes a wrap for a counter reset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckCounts {
    pub success: u32,
    pub failure: u32,
    pub timeout: u32,
}

impl CheckCounts {
    /// The counts in the order of `CheckResult::LABELS` (and of
    /// `CheckResult::index`).
    fn counts(&mut self) -> [&mut u32; 3] {
        [&mut self.success, &mut self.failure, &mut self.timeout]
    }

    /// Counts one check that came to `result`.
    pub fn count(&mut self, result: &CheckResult) {
        if let Some(count) = self.counts().into_iter().nth(result.index()) {
            *count = count.wrapping_add(1);
        }
    }

    /// Each result's label (`CheckResult::label`) with its count.
    pub fn by_result(mut self) -> [(&'static str, u32); 3] {
        let counts = self.counts().map(|count| *count);
        std::array::from_fn(|i| (CheckResult::LABELS[i], counts[i]))
    }
}

impl BackendStatus {
    /// The weight the Maglev table is built with: 0 when drained.
    pub fn effective_weight(&self) -> u32 {
        if self.drained { 0 } else { self.weight }
    }

    /// Whether new flows may be sent to this backend (as the data plane
    /// is programmed: healthy, next hop known, weight above 0).
    pub fn takes_new_flows(&self) -> bool {
        self.health == Health::Up && self.next_hop && self.effective_weight() > 0
    }
}

/// Health-check verdict of a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Up,
    Down,
}

/// One `[[vrrp.instance]]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VrrpStatus {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    /// 2 or 3.
    pub version: u8,
    pub state: VrrpState,
    /// The configured priority.
    pub priority: u8,
    /// The priority after tracking adjustments; the one advertised.
    pub effective_priority: u8,
    /// The current master's primary address, when known (ourselves when Master).
    pub master: Option<IpAddr>,
    pub virtual_addresses: Vec<String>,
    pub adverts_sent: u64,
    pub adverts_received: u64,
    /// Received adverts discarded by validation, all reasons together.
    pub adverts_discarded: u64,
    pub transitions: TransitionCounts,
}

/// State changes of a VRRP instance, counted by the state entered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionCounts {
    pub backup: u64,
    pub master: u64,
    pub fault: u64,
}

/// State of a VRRP instance (RFC 5798 §6.4, plus Fault as keepalived has
/// it: a tracked object with weight 0 failed, the instance does not take part).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VrrpState {
    Initialize,
    Backup,
    Master,
    Fault,
}

impl VrrpState {
    pub const ALL: [Self; 4] = [Self::Initialize, Self::Backup, Self::Master, Self::Fault];

    /// Lower-case name, as in metrics labels and the JSON status (the
    /// notify command gets keepalived's upper-case names, see
    /// `vrrp::notify`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initialize => "initialize",
            Self::Backup => "backup",
            Self::Master => "master",
            Self::Fault => "fault",
        }
    }
}

impl Status {
    /// A small, fully populated snapshot: two virtual servers (IPv4 tunnel
    /// with a drained and a failed backend, two of them health-checked,
    /// IPv6 DSR on all ports), two
    /// VRRP instances and data-plane counters. For tests and examples of
    /// the API, the metrics and `lb-daemon status`.
    pub fn example() -> Status {
        let backend = |address: &str, weight, drained, health, packets: u64| BackendStatus {
            address: address.parse().expect("literal address"),
            weight,
            drained,
            health,
            next_hop: true,
            packets,
            bytes: packets * 100,
            checks: CheckCounts::default(),
        };
        let counters = lb_common::stats::NAMES
            .iter()
            .zip(1u64..)
            .map(|(name, n)| NamedCounter {
                name: (*name).to_owned(),
                packets: n * 10,
                bytes: n * 1000,
            })
            .collect();
        Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            dataplane: Some(DataplaneStatus {
                interfaces: vec![InterfaceStatus {
                    name: "eth0".to_owned(),
                    mode: "driver".to_owned(),
                    program_id: Some(42),
                }],
                verified_instructions: Some(12345),
                counters,
            }),
            virtual_servers: vec![
                VirtualServerStatus {
                    name: "web".to_owned(),
                    address: "192.0.2.10".parse().expect("literal address"),
                    port: 80,
                    protocol: "tcp".to_owned(),
                    forwarding: "tunnel".to_owned(),
                    packets: 1500,
                    bytes: 150_000,
                    flows: 30,
                    backends: vec![
                        BackendStatus {
                            checks: CheckCounts {
                                success: 12,
                                ..CheckCounts::default()
                            },
                            ..backend("10.0.0.11", 100, false, Health::Up, 1000)
                        },
                        backend("10.0.0.12", 50, true, Health::Up, 500),
                        BackendStatus {
                            checks: CheckCounts {
                                success: 4,
                                failure: 3,
                                timeout: 2,
                            },
                            ..backend("10.0.0.13", 100, false, Health::Down, 0)
                        },
                    ],
                },
                VirtualServerStatus {
                    name: "dns6".to_owned(),
                    address: "2001:db8::53".parse().expect("literal address"),
                    port: 0,
                    protocol: "udp".to_owned(),
                    forwarding: "dsr".to_owned(),
                    packets: 7,
                    bytes: 700,
                    flows: 2,
                    backends: vec![backend("2001:db8:1::1", 1, false, Health::Up, 7)],
                },
            ],
            vrrp: vec![
                VrrpStatus {
                    name: "VI_1".to_owned(),
                    interface: "eth0".to_owned(),
                    vrid: 51,
                    version: 3,
                    state: VrrpState::Master,
                    priority: 150,
                    effective_priority: 90,
                    master: Some("10.0.0.2".parse().expect("literal address")),
                    virtual_addresses: vec!["192.0.2.10/24".to_owned()],
                    adverts_sent: 120,
                    adverts_received: 3,
                    adverts_discarded: 1,
                    transitions: TransitionCounts {
                        backup: 1,
                        master: 2,
                        fault: 0,
                    },
                },
                VrrpStatus {
                    name: "VI_6".to_owned(),
                    interface: "eth1".to_owned(),
                    vrid: 52,
                    version: 2,
                    state: VrrpState::Backup,
                    priority: 100,
                    effective_priority: 100,
                    master: None,
                    virtual_addresses: vec!["2001:db8::53/64".to_owned()],
                    adverts_sent: 0,
                    adverts_received: 60,
                    adverts_discarded: 0,
                    transitions: TransitionCounts {
                        backup: 1,
                        master: 0,
                        fault: 0,
                    },
                },
            ],
        }
    }
}
