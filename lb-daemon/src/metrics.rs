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
//!   results and durations ([`Metrics::observe_health_check`]), kept in a
//!   compact form ([`health_checks`]: results per backend, durations per
//!   virtual server).
//!
//! [`METRICS`] lists every family with its type and labels; the Grafana
//! dashboard test checks its queries against it.
use std::{collections::HashMap, net::IpAddr, time::Duration};

use prometheus::{
    Encoder as _, IntGaugeVec, Opts, Registry, TextEncoder,
    core::{Collector, Desc},
    proto::{self, MetricFamily, MetricType},
};

use crate::{
    health::CheckResult,
    status::{Health, Status, VrrpState},
};

mod health_checks;

use health_checks::HealthChecks;

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
    /// The constant families (build information).
    registry: Registry,
    health_checks: HealthChecks,
    snapshot_descs: Vec<Desc>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        // The names, help texts and labels below are constants; prometheus
        // rejects them only if they are malformed, which the unit tests
        // would show.
        const VALID: &str = "metric definitions are constants checked by the unit tests";
        let registry = Registry::new();
        let build_info = IntGaugeVec::new(
            Opts::new(BUILD_INFO.name, BUILD_INFO.help),
            BUILD_INFO.labels,
        )
        .expect(VALID);
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
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
            health_checks: HealthChecks::default(),
            snapshot_descs,
        }
    }

    /// Records one health check of `backend` of `virtual_server`: its
    /// `result`, and `duration`, how long it took.
    pub fn observe_health_check(
        &self,
        virtual_server: &str,
        backend: IpAddr,
        result: &CheckResult,
        duration: Duration,
    ) {
        self.health_checks
            .observe(virtual_server, backend, result, duration);
    }

    /// Drops the health-check series of a backend whose checks stopped
    /// (removed by a reload, or its check set to none).
    pub fn forget_backend(&self, virtual_server: &str, backend: IpAddr) {
        self.health_checks.forget(virtual_server, backend);
    }

    /// Every family, live and from `status`, sorted by name.
    pub fn gather(&self, status: &Status) -> Vec<MetricFamily> {
        let mut families = self.registry.gather();
        let collector = StatusCollector {
            descs: &self.snapshot_descs,
            status,
        };
        families.extend(collector.collect());
        let (checks, durations) = self.health_checks.samples();
        families.push(family(&HEALTH_CHECKS, checks));
        families.push(family(&HEALTH_CHECK_DURATION, durations));
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
        // With 100,000 backends the families are hundreds of megabytes of
        // small allocations.
        drop(families);
        crate::memory::release_free_memory();
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

/// One sample: label values in the order of the family's labels, and the
/// value.
#[derive(Clone)]
struct Sample {
    labels: Vec<String>,
    value: Value,
}

/// The value of a counter or gauge, or a histogram.
#[derive(Clone)]
enum Value {
    Scalar(f64),
    Histogram(Histogram),
}

/// A histogram's value: `(upper bound, observations up to it)` per bucket
/// (the `+Inf` bucket is `count`), the count and the sum.
#[derive(Clone, Debug)]
struct Histogram {
    buckets: Vec<(f64, u64)>,
    count: u64,
    sum: f64,
}

impl Sample {
    fn new<S: AsRef<str>>(labels: &[S], value: f64) -> Sample {
        Self::with_value(labels, Value::Scalar(value))
    }

    fn histogram<S: AsRef<str>>(labels: &[S], histogram: Histogram) -> Sample {
        Self::with_value(labels, Value::Histogram(histogram))
    }

    fn with_value<S: AsRef<str>>(labels: &[S], value: Value) -> Sample {
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
        .filter_map(|sample| {
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
            match (info.kind, sample.value) {
                (MetricKind::Counter, Value::Scalar(value)) => {
                    let mut counter = proto::Counter::default();
                    counter.set_value(value);
                    metric.set_counter(counter);
                }
                (MetricKind::Gauge, Value::Scalar(value)) => {
                    let mut gauge = proto::Gauge::default();
                    gauge.set_value(value);
                    metric.set_gauge(gauge);
                }
                (MetricKind::Histogram, Value::Histogram(histogram)) => {
                    metric.set_histogram(histogram_of(histogram));
                }
                (kind, _) => {
                    tracing::error!(
                        family = info.name,
                        ?kind,
                        "sample of another type: left out"
                    );
                    return None;
                }
            }
            Some(metric)
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

fn histogram_of(value: Histogram) -> proto::Histogram {
    let buckets = value
        .buckets
        .into_iter()
        .map(|(bound, count)| {
            let mut bucket = proto::Bucket::default();
            bucket.set_upper_bound(bound);
            bucket.set_cumulative_count(count);
            bucket
        })
        .collect();
    let mut histogram = proto::Histogram::default();
    histogram.set_sample_count(value.count);
    histogram.set_sample_sum(value.sum);
    histogram.set_bucket(buckets);
    histogram
}

#[cfg(test)]
mod tests;
