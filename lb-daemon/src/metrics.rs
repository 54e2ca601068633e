//! Prometheus metrics (DESIGN.md §5): prefix `lb_`, base units, `_total`
//! counters, text exposition format 0.0.4.
//!
//! Two sources feed a scrape:
//! - the [`Status`] snapshot, read at scrape time: packet and byte counters
//!   of VIPs and backends, data-plane verdicts and flow-table results (BPF
//!   per-CPU counters, already summed by the daemon), backend health and
//!   weight, VRRP state and counters. [`StatusCollector`] turns a snapshot
//!   into metric families;
//! - live observations the daemon reports as they happen: health-check
//!   results and durations ([`Metrics::observe_health_check`]).
//!
//! [`METRICS`] lists every family with its type and labels; the Grafana
//! dashboard test checks its queries against it.
use std::{collections::HashMap, net::IpAddr, time::Duration};

use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
    core::{Collector, Desc},
    proto::{self, MetricFamily, MetricType},
};

use crate::{
    health::CheckResult,
    status::{Health, Status, VrrpState},
};

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the health-check duration histogram: checks
/// take from well under a millisecond (TCP connect on a LAN) to their
/// timeout (seconds).
const HEALTH_CHECK_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Type of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    /// Exposed as `NAME_bucket` (with an extra `le` label), `NAME_sum` and
    /// `NAME_count`.
    Histogram,
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
    const fn counter(
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

    const fn gauge(
        name: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Self {
        Self {
            kind: MetricKind::Gauge,
            ..Self::counter(name, labels, help)
        }
    }

    const fn histogram(
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
    BACKEND_LABELS,
    "Time a health check took, whatever its result.",
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

/// Families read from a [`Status`] snapshot, in exposition order.
const SNAPSHOT_METRICS: [MetricInfo; 13] = [
    VIP_PACKETS,
    VIP_BYTES,
    VIP_FLOWS,
    BACKEND_PACKETS,
    BACKEND_BYTES,
    BACKEND_UP,
    BACKEND_WEIGHT,
    VRRP_STATE,
    VRRP_TRANSITIONS,
    VRRP_ADVERTS,
    VRRP_ADVERTS_DISCARDED,
    XDP_PACKETS,
    FLOW_TABLE_LOOKUPS,
];

/// Families observed as they happen (health checks) or constant.
const LIVE_METRICS: [MetricInfo; 3] = [HEALTH_CHECKS, HEALTH_CHECK_DURATION, BUILD_INFO];

/// Every metric family the daemon exports.
pub const METRICS: [MetricInfo; 16] = concat(SNAPSHOT_METRICS, LIVE_METRICS);

const fn concat(snapshot: [MetricInfo; 13], live: [MetricInfo; 3]) -> [MetricInfo; 16] {
    let mut all = [BUILD_INFO; 16];
    let mut i = 0;
    while i < all.len() {
        all[i] = if i < snapshot.len() {
            snapshot[i]
        } else {
            live[i - snapshot.len()]
        };
        i += 1;
    }
    all
}

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

/// The daemon's metrics: live health-check observations plus the
/// descriptors of the families read from a [`Status`] at scrape time.
pub struct Metrics {
    registry: Registry,
    health_checks: IntCounterVec,
    health_check_duration: HistogramVec,
    snapshot_descs: Vec<Desc>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        // The names, help texts, labels and buckets below are constants;
        // prometheus rejects them only if they are malformed, which the
        // unit tests would show.
        const VALID: &str = "metric definitions are constants checked by the unit tests";
        let registry = Registry::new();
        let health_checks = IntCounterVec::new(
            Opts::new(HEALTH_CHECKS.name, HEALTH_CHECKS.help),
            HEALTH_CHECKS.labels,
        )
        .expect(VALID);
        let health_check_duration = HistogramVec::new(
            HistogramOpts::new(HEALTH_CHECK_DURATION.name, HEALTH_CHECK_DURATION.help)
                .buckets(HEALTH_CHECK_BUCKETS.to_vec()),
            HEALTH_CHECK_DURATION.labels,
        )
        .expect(VALID);
        let build_info = IntGaugeVec::new(
            Opts::new(BUILD_INFO.name, BUILD_INFO.help),
            BUILD_INFO.labels,
        )
        .expect(VALID);
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry
            .register(Box::new(health_checks.clone()))
            .expect(VALID);
        registry
            .register(Box::new(health_check_duration.clone()))
            .expect(VALID);
        registry.register(Box::new(build_info)).expect(VALID);
        let snapshot_descs = SNAPSHOT_METRICS
            .iter()
            .map(|info| {
                Desc::new(
                    info.name.to_owned(),
                    info.help.to_owned(),
                    info.labels.iter().map(|l| (*l).to_owned()).collect(),
                    HashMap::new(),
                )
                .expect(VALID)
            })
            .collect();
        Metrics {
            registry,
            health_checks,
            health_check_duration,
            snapshot_descs,
        }
    }

    /// Records one health check of `backend` of `virtual_server`:
    /// `result` is its outcome as a label (`success`, `failure`,
    /// `timeout`, ...), `duration` how long it took.
    pub fn observe_health_check(
        &self,
        virtual_server: &str,
        backend: IpAddr,
        result: &str,
        duration: Duration,
    ) {
        let backend = backend.to_string();
        self.health_checks
            .with_label_values(&[virtual_server, &backend, result])
            .inc();
        self.health_check_duration
            .with_label_values(&[virtual_server, backend.as_str()])
            .observe(duration.as_secs_f64());
    }

    /// Drops the health-check series of a backend whose checks stopped
    /// (removed by a reload, or its check set to none).
    pub fn forget_backend(&self, virtual_server: &str, backend: IpAddr) {
        let backend = backend.to_string();
        for result in CheckResult::LABELS {
            let _ = self
                .health_checks
                .remove_label_values(&[virtual_server, &backend, result]);
        }
        let _ = self
            .health_check_duration
            .remove_label_values(&[virtual_server, &backend]);
    }

    /// Every family, live and from `status`, sorted by name.
    pub fn gather(&self, status: &Status) -> Vec<MetricFamily> {
        let mut families = self.registry.gather();
        let collector = StatusCollector {
            descs: &self.snapshot_descs,
            status,
        };
        families.extend(collector.collect());
        families.retain(|family| !family.get_metric().is_empty());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        families
    }

    /// The text exposition (format 0.0.4, [`CONTENT_TYPE`]) of every family.
    pub fn render(&self, status: &Status) -> String {
        let families = self.gather(status);
        let mut out = Vec::new();
        // The text encoder fails only on a family without samples or name,
        // which `gather` never returns, and writing into a Vec cannot fail.
        if let Err(error) = TextEncoder::new().encode(&families, &mut out) {
            tracing::error!(%error, "encoding metrics");
        }
        String::from_utf8(out).unwrap_or_else(|error| {
            // Labels come from Rust strings: always UTF-8.
            String::from_utf8_lossy(error.as_bytes()).into_owned()
        })
    }
}

/// A [`Collector`] building the snapshot families from one [`Status`]:
/// VIP, backend, VRRP and data-plane families.
pub struct StatusCollector<'a> {
    descs: &'a [Desc],
    status: &'a Status,
}

impl Collector for StatusCollector<'_> {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let status = self.status;
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); SNAPSHOT_METRICS.len()];
        let [
            vip_packets,
            vip_bytes,
            vip_flows,
            backend_packets,
            backend_bytes,
            backend_up,
            backend_weight,
            vrrp_state,
            vrrp_transitions,
            vrrp_adverts,
            vrrp_discarded,
            xdp_packets,
            flow_lookups,
        ] = samples.as_mut_slice()
        else {
            unreachable!("one sample list per snapshot family")
        };

        for vs in &status.virtual_servers {
            let vip = vec![
                vs.address.to_string(),
                vs.port.to_string(),
                vs.protocol.clone(),
            ];
            vip_packets.push(Sample::new(&vip, vs.packets as f64));
            vip_bytes.push(Sample::new(&vip, vs.bytes as f64));
            vip_flows.push(Sample::new(&vip, vs.flows as f64));
            for backend in &vs.backends {
                let labels = vec![vs.name.clone(), backend.address.to_string()];
                backend_packets.push(Sample::new(&labels, backend.packets as f64));
                backend_bytes.push(Sample::new(&labels, backend.bytes as f64));
                let up = if backend.health == Health::Up {
                    1.0
                } else {
                    0.0
                };
                backend_up.push(Sample::new(&labels, up));
                backend_weight.push(Sample::new(&labels, backend.effective_weight().into()));
            }
        }

        for instance in &status.vrrp {
            let name = instance.name.as_str();
            for state in VrrpState::ALL {
                let value = if instance.state == state { 1.0 } else { 0.0 };
                vrrp_state.push(Sample::new(&[name, state.as_str()], value));
            }
            let transitions = instance.transitions;
            for (to, count) in [
                (VrrpState::Backup, transitions.backup),
                (VrrpState::Master, transitions.master),
                (VrrpState::Fault, transitions.fault),
            ] {
                vrrp_transitions.push(Sample::new(&[name, to.as_str()], count as f64));
            }
            vrrp_adverts.push(Sample::new(&[name, "sent"], instance.adverts_sent as f64));
            vrrp_adverts.push(Sample::new(
                &[name, "received"],
                instance.adverts_received as f64,
            ));
            vrrp_discarded.push(Sample::new(&[name], instance.adverts_discarded as f64));
        }

        if let Some(dataplane) = &status.dataplane {
            let counter = |name: &str| {
                dataplane
                    .counters
                    .iter()
                    .filter(|c| c.name == name)
                    .map(|c| c.packets)
                    .sum::<u64>()
            };
            for action in XDP_ACTIONS {
                let packets: u64 = dataplane
                    .counters
                    .iter()
                    .filter(|c| c.name.split('_').next() == Some(action))
                    .map(|c| c.packets)
                    .sum();
                xdp_packets.push(Sample::new(&[action], packets as f64));
            }
            for (result, name) in FLOW_RESULTS {
                flow_lookups.push(Sample::new(&[result], counter(name) as f64));
            }
        }

        SNAPSHOT_METRICS
            .iter()
            .zip(samples)
            .filter(|(_, samples)| !samples.is_empty())
            .map(|(info, samples)| family(info, samples))
            .collect()
    }
}

/// One sample of a counter or gauge: label values in the order of the
/// family's labels, and the value.
#[derive(Clone)]
struct Sample {
    labels: Vec<String>,
    value: f64,
}

impl Sample {
    fn new<S: AsRef<str>>(labels: &[S], value: f64) -> Sample {
        Sample {
            labels: labels.iter().map(|l| l.as_ref().to_owned()).collect(),
            value,
        }
    }
}

fn family(info: &MetricInfo, samples: Vec<Sample>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(info.name.to_owned());
    family.set_help(info.help.to_owned());
    let metrics = samples
        .into_iter()
        .map(|sample| {
            debug_assert_eq!(sample.labels.len(), info.labels.len(), "{}", info.name);
            let pairs = info
                .labels
                .iter()
                .zip(sample.labels)
                .map(|(name, value)| {
                    let mut pair = proto::LabelPair::default();
                    pair.set_name((*name).to_owned());
                    pair.set_value(value);
                    pair
                })
                .collect();
            let mut metric = proto::Metric::from_label(pairs);
            match info.kind {
                MetricKind::Counter => {
                    let mut counter = proto::Counter::default();
                    counter.set_value(sample.value);
                    metric.set_counter(counter);
                }
                MetricKind::Gauge => {
                    let mut gauge = proto::Gauge::default();
                    gauge.set_value(sample.value);
                    metric.set_gauge(gauge);
                }
                MetricKind::Histogram => {
                    unreachable!("snapshot families are counters and gauges (unit-tested)")
                }
            }
            metric
        })
        .collect();
    family.set_field_type(match info.kind {
        MetricKind::Counter => MetricType::COUNTER,
        MetricKind::Gauge => MetricType::GAUGE,
        MetricKind::Histogram => MetricType::HISTOGRAM,
    });
    family.set_metric(metrics);
    family
}

#[cfg(test)]
mod tests;
