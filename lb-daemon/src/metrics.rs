//! Prometheus metrics (DESIGN.md §5): prefix `lb_`, base units, `_total`
//! counters, text exposition format 0.0.4.
//!
//! Two sources feed a scrape:
//! - the [`Status`] snapshot, read at scrape time: packet and byte counters
//!   of VIPs and backends, data-plane verdicts and flow-table results (BPF
//!   per-CPU counters, already summed by the daemon), backend health,
//!   weight and checks by result, VRRP state and counters;
//! - the durations of health checks, observed as they end
//!   ([`Metrics::observe_check_duration`]), per virtual server.
//!
//! A scrape is written straight into its text ([`exposition`]), sample by
//! sample from the snapshot: at 100,000 backends it is half a million
//! samples, and nothing but the text is built for them.
//!
//! [`METRICS`] lists every family with its type and labels, in exposition
//! order; the Grafana dashboard test checks its queries against it.
use std::{fmt::Display, time::Duration};

use crate::status::{BackendStatus, Health, Status, VirtualServerStatus, VrrpState};

mod check_durations;
mod exposition;

use check_durations::CheckDurations;
use exposition::{Exposition, Number};

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Type of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    /// Exposed as `NAME_bucket` (with an extra `le` label), `NAME_sum` and
    /// `NAME_count`.
    Histogram,
}

impl MetricKind {
    /// The type as a `# TYPE` line names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// Name, help, type and labels of one metric family.
#[derive(Clone, Copy, Debug)]
pub struct MetricInfo {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
    pub labels: &'static [&'static str],
}

impl MetricInfo {
    pub(crate) const fn counter(
        name: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Self {
        Self {
            name,
            help,
            kind: MetricKind::Counter,
            labels,
        }
    }

    pub(crate) const fn gauge(
        name: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Self {
        Self {
            kind: MetricKind::Gauge,
            ..Self::counter(name, labels, help)
        }
    }

    pub(crate) const fn histogram(
        name: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Self {
        Self {
            kind: MetricKind::Histogram,
            ..Self::counter(name, labels, help)
        }
    }
}

const VIP_LABELS: &[&str] = &["vip", "port", "protocol"];
const BACKEND_LABELS: &[&str] = &["virtual_server", "backend"];

const VIP_PACKETS: MetricInfo = MetricInfo::counter(
    "lb_vip_packets_total",
    VIP_LABELS,
    "Packets to the virtual server forwarded to a backend by the data plane.",
);
const VIP_BYTES: MetricInfo = MetricInfo::counter(
    "lb_vip_bytes_total",
    VIP_LABELS,
    "Bytes (as received, before encapsulation) to the virtual server forwarded to a backend.",
);
const VIP_FLOWS: MetricInfo = MetricInfo::counter(
    "lb_vip_flows_total",
    VIP_LABELS,
    "New flows to the virtual server (flow-table misses that picked a backend).",
);
const BACKEND_PACKETS: MetricInfo = MetricInfo::counter(
    "lb_backend_packets_total",
    BACKEND_LABELS,
    "Packets the data plane forwarded to the backend.",
);
const BACKEND_BYTES: MetricInfo = MetricInfo::counter(
    "lb_backend_bytes_total",
    BACKEND_LABELS,
    "Bytes (as received, before encapsulation) the data plane forwarded to the backend.",
);
const BACKEND_UP: MetricInfo = MetricInfo::gauge(
    "lb_backend_up",
    BACKEND_LABELS,
    "1 when the backend passes its health check, 0 when it fails it.",
);
const BACKEND_WEIGHT: MetricInfo = MetricInfo::gauge(
    "lb_backend_weight",
    BACKEND_LABELS,
    "Weight the consistent-hash table is built with (the configured weight; 0 when drained).",
);
const HEALTH_CHECKS: MetricInfo = MetricInfo::counter(
    "lb_health_checks_total",
    &["virtual_server", "backend", "result"],
    "Health checks run, by result.",
);
const HEALTH_CHECK_DURATION: MetricInfo = MetricInfo::histogram(
    "lb_health_check_duration_seconds",
    &["virtual_server"],
    "Time the health checks of the virtual server's backends took, whatever their result.",
);
const VRRP_STATE: MetricInfo = MetricInfo::gauge(
    "lb_vrrp_state",
    &["instance", "state"],
    "1 for the VRRP instance's current state, 0 for the others.",
);
const VRRP_TRANSITIONS: MetricInfo = MetricInfo::counter(
    "lb_vrrp_transitions_total",
    &["instance", "to"],
    "VRRP state changes, by the state entered.",
);
const VRRP_ADVERTS: MetricInfo = MetricInfo::counter(
    "lb_vrrp_adverts_total",
    &["instance", "direction"],
    "VRRP advertisements sent and received.",
);
const VRRP_ADVERTS_DISCARDED: MetricInfo = MetricInfo::counter(
    "lb_vrrp_adverts_discarded_total",
    &["instance"],
    "Received VRRP advertisements discarded by validation (TTL, checksum, authentication, interval, ...).",
);
const XDP_PACKETS: MetricInfo = MetricInfo::counter(
    "lb_xdp_packets_total",
    &["action"],
    "Packets seen by the XDP balancer, by verdict: pass (to the kernel), tx (forwarded), drop.",
);
const FLOW_TABLE_LOOKUPS: MetricInfo = MetricInfo::counter(
    "lb_flow_table_lookups_total",
    &["result"],
    "Flow-table lookups: hit (entry used), miss (backend picked from the ring), rehash (entry's backend unusable).",
);
const BUILD_INFO: MetricInfo = MetricInfo::gauge(
    "lb_build_info",
    &["version"],
    "Always 1; the version of the running lb-daemon is in the labels.",
);

/// Every metric family the daemon exports, in exposition order.
pub const METRICS: [MetricInfo; 16] = [
    VIP_PACKETS,
    VIP_BYTES,
    VIP_FLOWS,
    BACKEND_PACKETS,
    BACKEND_BYTES,
    BACKEND_UP,
    BACKEND_WEIGHT,
    HEALTH_CHECKS,
    HEALTH_CHECK_DURATION,
    VRRP_STATE,
    VRRP_TRANSITIONS,
    VRRP_ADVERTS,
    VRRP_ADVERTS_DISCARDED,
    XDP_PACKETS,
    FLOW_TABLE_LOOKUPS,
    BUILD_INFO,
];

/// Data-plane verdict counters are named `ACTION_reason`
/// (`lb_common::stats::NAMES`); `lb_xdp_packets_total` sums them by action.
const XDP_ACTIONS: [&str; 3] = ["pass", "tx", "drop"];

/// `lb_flow_table_lookups_total` results and the data-plane counters they
/// are read from.
const FLOW_RESULTS: [(&str, &str); 3] = [
    ("hit", "flow_hit"),
    ("miss", "flow_miss"),
    ("rehash", "flow_rehash"),
];

/// Bytes of text a scrape reserves per backend and per virtual server: a
/// sample line is about 80 bytes, a backend has four to seven. Reserved
/// pages the text does not reach are never touched, so a generous guess
/// costs no memory, and a short one only a copy.
const BYTES_PER_BACKEND: usize = 640;
const BYTES_PER_VIRTUAL_SERVER: usize = 2048;

/// The daemon's metrics: what a scrape adds to a [`Status`] snapshot.
#[derive(Debug, Default)]
pub struct Metrics {
    check_durations: CheckDurations,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Records a health check of a backend of `virtual_server` that took
    /// `duration`, whatever its result (the result is counted with the
    /// backend's state).
    pub fn observe_check_duration(&self, virtual_server: &str, duration: Duration) {
        self.check_durations.observe(virtual_server, duration);
    }

    /// Drops the check durations of virtual servers `checked` says are no
    /// longer checked (removed by a reload, or their check set to none).
    pub fn retain_check_durations(&self, checked: impl FnMut(&str) -> bool) {
        self.check_durations.retain(checked);
    }

    /// The text exposition (format 0.0.4, [`CONTENT_TYPE`]) of every family.
    pub fn render(&self, status: &Status) -> String {
        let backends: usize = status
            .virtual_servers
            .iter()
            .map(|vs| vs.backends.len())
            .sum();
        let mut out = Exposition::with_capacity(
            BYTES_PER_BACKEND * backends
                + BYTES_PER_VIRTUAL_SERVER * (status.virtual_servers.len() + 1),
        );
        virtual_server_families(&mut out, &status.virtual_servers);
        backend_families(&mut out, &status.virtual_servers);
        let mut durations = out.family(&HEALTH_CHECK_DURATION);
        for (virtual_server, histogram) in self.check_durations.histograms() {
            durations.histogram(&[&virtual_server], &histogram);
        }
        vrrp_families(&mut out, status);
        dataplane_families(&mut out, status);
        out.family(&BUILD_INFO)
            .sample(&[&env!("CARGO_PKG_VERSION")], 1u64);
        out.into_text()
    }
}

/// A family whose samples are one value of each `T` of the snapshot.
type PerItem<T> = (&'static MetricInfo, fn(&T) -> Number);

fn virtual_server_families(out: &mut Exposition, virtual_servers: &[VirtualServerStatus]) {
    let counters: [PerItem<VirtualServerStatus>; 3] = [
        (&VIP_PACKETS, |vs| vs.packets.into()),
        (&VIP_BYTES, |vs| vs.bytes.into()),
        (&VIP_FLOWS, |vs| vs.flows.into()),
    ];
    for (info, value) in counters {
        let mut family = out.family(info);
        for vs in virtual_servers {
            family.sample(&[&vs.address, &vs.port, &vs.protocol], value(vs));
        }
    }
}

fn backend_families(out: &mut Exposition, virtual_servers: &[VirtualServerStatus]) {
    let values: [PerItem<BackendStatus>; 4] = [
        (&BACKEND_PACKETS, |b| b.packets.into()),
        (&BACKEND_BYTES, |b| b.bytes.into()),
        (&BACKEND_UP, |b| (b.health == Health::Up).into()),
        (&BACKEND_WEIGHT, |b| b.effective_weight().into()),
    ];
    for (info, value) in values {
        let mut family = out.family(info);
        for vs in virtual_servers {
            for backend in &vs.backends {
                family.sample(&[&vs.name, &backend.address], value(backend));
            }
        }
    }
    // The results a backend's checks came to (none for an unchecked one).
    let mut checks = out.family(&HEALTH_CHECKS);
    for vs in virtual_servers {
        for backend in &vs.backends {
            for (result, count) in backend.checks.by_result() {
                if count > 0 {
                    checks.sample(&[&vs.name, &backend.address, &result], count);
                }
            }
        }
    }
}

fn vrrp_families(out: &mut Exposition, status: &Status) {
    let mut state = out.family(&VRRP_STATE);
    for instance in &status.vrrp {
        for s in VrrpState::ALL {
            state.sample(&[&instance.name, &s.as_str()], instance.state == s);
        }
    }
    let mut transitions = out.family(&VRRP_TRANSITIONS);
    for instance in &status.vrrp {
        let counts = instance.transitions;
        for (to, count) in [
            (VrrpState::Backup, counts.backup),
            (VrrpState::Master, counts.master),
            (VrrpState::Fault, counts.fault),
        ] {
            transitions.sample(&[&instance.name, &to.as_str()], count);
        }
    }
    let mut adverts = out.family(&VRRP_ADVERTS);
    for instance in &status.vrrp {
        adverts.sample(&[&instance.name, &"sent"], instance.adverts_sent);
        adverts.sample(&[&instance.name, &"received"], instance.adverts_received);
    }
    let mut discarded = out.family(&VRRP_ADVERTS_DISCARDED);
    for instance in &status.vrrp {
        discarded.sample(&[&instance.name], instance.adverts_discarded);
    }
}

fn dataplane_families(out: &mut Exposition, status: &Status) {
    let Some(dataplane) = &status.dataplane else {
        return;
    };
    let packets = |matches: &dyn Fn(&str) -> bool| -> u64 {
        dataplane
            .counters
            .iter()
            .filter(|c| matches(&c.name))
            .map(|c| c.packets)
            .sum()
    };
    let mut xdp = out.family(&XDP_PACKETS);
    for action in XDP_ACTIONS {
        let of_action = |name: &str| name.split('_').next() == Some(action);
        xdp.sample(&[&action as &dyn Display], packets(&of_action));
    }
    let mut lookups = out.family(&FLOW_TABLE_LOOKUPS);
    for (result, counter) in FLOW_RESULTS {
        lookups.sample(&[&result], packets(&|name: &str| name == counter));
    }
}

#[cfg(test)]
mod tests;
