use std::collections::BTreeMap;

use super::*;
use crate::{
    health::Failure,
    status::{BackendStatus, Status},
};

/// A parsed exposition: samples by `name{label="value",...}` (labels
/// sorted by name, see [`canonical`]), and the HELP and TYPE line of each
/// family.
#[derive(Default)]
struct Exposition {
    samples: BTreeMap<String, f64>,
    help: BTreeMap<String, String>,
    types: BTreeMap<String, String>,
}

fn parse(text: &str) -> Exposition {
    let mut out = Exposition::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(
                out.help.insert(name.into(), help.into()).is_none(),
                "{line}"
            );
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                out.types.insert(name.into(), kind.into()).is_none(),
                "{line}"
            );
        } else {
            let (series, value) = line.rsplit_once(' ').expect("sample: series value");
            let value = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
            assert!(
                out.samples.insert(canonical(series), value).is_none(),
                "{line}"
            );
        }
    }
    out
}

/// `name{b="2",a="1"}` as `name{a="1",b="2"}`: the live registry sorts
/// labels by name, the snapshot families keep the documented order.
fn canonical(series: &str) -> String {
    let Some((name, labels)) = series.split_once('{') else {
        return series.to_owned();
    };
    let labels = labels.strip_suffix('}').expect("series ends with }");
    let mut pairs = Vec::new();
    let mut rest = labels;
    while !rest.is_empty() {
        let (label, after) = rest.split_once("=\"").expect("label=\"value\"");
        // The value ends at the first quote not escaped by a backslash.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let end = end.expect("closing quote");
        pairs.push(format!("{label}=\"{}\"", &after[..end]));
        rest = after[end + 1..].trim_start_matches(',');
    }
    pairs.sort();
    format!("{name}{{{}}}", pairs.join(","))
}

fn sample(exposition: &Exposition, series: &str) -> f64 {
    *exposition
        .samples
        .get(&canonical(series))
        .unwrap_or_else(|| panic!("no sample {series} in {:#?}", exposition.samples.keys()))
}

#[test]
fn snapshot_families_render_with_values_and_labels() {
    let metrics = Metrics::new();
    let text = metrics.render(&Status::example());
    let exp = parse(&text);

    let expected: [(&str, f64); 22] = [
        (
            r#"lb_vip_packets_total{vip="192.0.2.10",port="80",protocol="tcp"}"#,
            1500.0,
        ),
        (
            r#"lb_vip_bytes_total{vip="192.0.2.10",port="80",protocol="tcp"}"#,
            150_000.0,
        ),
        (
            r#"lb_vip_flows_total{vip="2001:db8::53",port="0",protocol="udp"}"#,
            2.0,
        ),
        (
            r#"lb_backend_packets_total{virtual_server="web",backend="10.0.0.11"}"#,
            1000.0,
        ),
        (
            r#"lb_backend_bytes_total{virtual_server="dns6",backend="2001:db8:1::1"}"#,
            700.0,
        ),
        // Up and down; the drained backend is up with weight 0.
        (
            r#"lb_backend_up{virtual_server="web",backend="10.0.0.12"}"#,
            1.0,
        ),
        (
            r#"lb_backend_up{virtual_server="web",backend="10.0.0.13"}"#,
            0.0,
        ),
        (
            r#"lb_backend_weight{virtual_server="web",backend="10.0.0.12"}"#,
            0.0,
        ),
        (
            r#"lb_backend_weight{virtual_server="web",backend="10.0.0.13"}"#,
            100.0,
        ),
        (
            r#"lb_vrrp_transitions_total{instance="VI_1",to="master"}"#,
            2.0,
        ),
        (
            r#"lb_vrrp_transitions_total{instance="VI_1",to="fault"}"#,
            0.0,
        ),
        (
            r#"lb_vrrp_adverts_total{instance="VI_1",direction="sent"}"#,
            120.0,
        ),
        (
            r#"lb_vrrp_adverts_total{instance="VI_6",direction="received"}"#,
            60.0,
        ),
        (r#"lb_vrrp_adverts_discarded_total{instance="VI_1"}"#, 1.0),
        // Status::example numbers the counters 10, 20, ... in NAMES order:
        // pass_* 10+20+30, tx_* 40+50, drop_* 60+70+80; events are not
        // verdicts.
        (r#"lb_xdp_packets_total{action="pass"}"#, 60.0),
        (r#"lb_xdp_packets_total{action="tx"}"#, 90.0),
        (r#"lb_xdp_packets_total{action="drop"}"#, 210.0),
        (r#"lb_flow_table_lookups_total{result="hit"}"#, 90.0),
        (r#"lb_flow_table_lookups_total{result="miss"}"#, 100.0),
        (r#"lb_flow_table_lookups_total{result="rehash"}"#, 110.0),
        (r#"lb_vrrp_state{instance="VI_1",state="master"}"#, 1.0),
        (r#"lb_vrrp_state{instance="VI_6",state="backup"}"#, 1.0),
    ];
    for (series, value) in expected {
        assert_eq!(sample(&exp, series), value, "{series}");
    }

    // Every state of every instance, 1 only for the current one.
    for (instance, current) in [("VI_1", "master"), ("VI_6", "backup")] {
        for state in VrrpState::ALL.map(VrrpState::as_str) {
            let series = format!(r#"lb_vrrp_state{{instance="{instance}",state="{state}"}}"#);
            let expected = if state == current { 1.0 } else { 0.0 };
            assert_eq!(sample(&exp, &series), expected, "{series}");
        }
    }
    let build_info = format!(
        r#"lb_build_info{{version="{}"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&exp, &build_info), 1.0);

    // 2 VIPs x 3 + 4 backends x 4 + 2 instances x (4 + 3 + 2 + 1) + 3 + 3 + 1.
    assert_eq!(exp.samples.len(), 6 + 16 + 20 + 7, "{text}");
}

#[test]
fn every_family_has_help_and_type() {
    let metrics = Metrics::new();
    metrics.observe_health_check(
        "web",
        "10.0.0.11".parse().unwrap(),
        &CheckResult::Success,
        Duration::from_millis(3),
    );
    let exp = parse(&metrics.render(&Status::example()));
    for info in METRICS {
        assert_eq!(
            exp.help.get(info.name).map(String::as_str),
            Some(info.help),
            "{}",
            info.name
        );
        let kind = match info.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        };
        assert_eq!(
            exp.types.get(info.name).map(String::as_str),
            Some(kind),
            "{}",
            info.name
        );
        assert!(info.name.starts_with("lb_"), "{}", info.name);
        assert_eq!(
            info.kind == MetricKind::Counter,
            info.name.ends_with("_total"),
            "{}: counters and only counters end in _total",
            info.name
        );
    }
    assert_eq!(exp.help.len(), METRICS.len());
}

#[test]
fn health_checks_are_counted_and_timed() {
    let metrics = Metrics::new();
    let backend: IpAddr = "10.0.0.11".parse().unwrap();
    for millis in [1, 3] {
        metrics.observe_health_check(
            "web",
            backend,
            &CheckResult::Success,
            Duration::from_millis(millis),
        );
    }
    // Another backend's check goes into the same histogram.
    let other: IpAddr = "10.0.0.12".parse().unwrap();
    metrics.observe_health_check(
        "web",
        other,
        &CheckResult::Success,
        Duration::from_millis(700),
    );
    metrics.observe_health_check(
        "web",
        backend,
        &CheckResult::Timeout,
        Duration::from_secs(1),
    );
    let exp = parse(&metrics.render(&Status::example()));

    let labels = r#"virtual_server="web",backend="10.0.0.11""#;
    assert_eq!(
        sample(
            &exp,
            &format!(r#"lb_health_checks_total{{{labels},result="success"}}"#)
        ),
        2.0
    );
    assert_eq!(
        sample(
            &exp,
            &format!(r#"lb_health_checks_total{{{labels},result="timeout"}}"#)
        ),
        1.0
    );
    let duration = "lb_health_check_duration_seconds";
    let labels = r#"virtual_server="web""#;
    assert_eq!(sample(&exp, &format!("{duration}_count{{{labels}}}")), 4.0);
    let sum = sample(&exp, &format!("{duration}_sum{{{labels}}}"));
    assert!((sum - 1.704).abs() < 1e-9, "{sum}");
    let bucket = |le: &str| sample(&exp, &format!(r#"{duration}_bucket{{{labels},le="{le}"}}"#));
    assert_eq!(bucket("0.001"), 1.0);
    assert_eq!(bucket("0.005"), 2.0);
    assert_eq!(bucket("0.5"), 2.0);
    assert_eq!(bucket("1"), 4.0);
    assert_eq!(bucket("+Inf"), 4.0);
}

#[test]
fn health_checks_of_removed_backends_are_not_exported() {
    let metrics = Metrics::new();
    metrics.observe_health_check(
        "web",
        "10.0.0.13".parse().unwrap(),
        &Failure::Refused.into(),
        Duration::from_millis(5),
    );
    let mut status = Status::example();
    let text = metrics.render(&status);
    assert!(
        text.contains(r#"backend="10.0.0.13",result="failure""#),
        "{text}"
    );

    status.virtual_servers[0]
        .backends
        .retain(|b: &BackendStatus| b.address.to_string() != "10.0.0.13");
    // A reload stopped its checks: the daemon forgets the backend.
    metrics.forget_backend("web", "10.0.0.13".parse().unwrap());
    let text = metrics.render(&status);
    assert!(!text.contains("10.0.0.13"), "{text}");
}

#[test]
fn pure_vrrp_daemon_exports_no_dataplane_families() {
    let status = Status {
        dataplane: None,
        virtual_servers: Vec::new(),
        ..Status::example()
    };
    let exp = parse(&Metrics::new().render(&status));
    for absent in [
        "lb_xdp_packets_total",
        "lb_flow_table_lookups_total",
        "lb_vip_packets_total",
        "lb_backend_up",
    ] {
        assert!(!exp.types.contains_key(absent), "{absent}");
    }
    assert!(exp.types.contains_key("lb_vrrp_state"));
    assert!(exp.types.contains_key("lb_build_info"));
}

#[test]
fn label_values_are_escaped() {
    let mut status = Status::example();
    status.vrrp[0].name = "a\"b\\c".to_owned();
    let text = Metrics::new().render(&status);
    assert!(
        text.contains(r#"lb_vrrp_adverts_discarded_total{instance="a\"b\\c"} 1"#),
        "{text}"
    );
}

#[test]
fn snapshot_collector_describes_what_it_collects() {
    let metrics = Metrics::new();
    let status = Status::example();
    let collector = StatusCollector {
        descs: &metrics.snapshot_descs,
        status: &status,
    };
    let described: Vec<&str> = collector
        .desc()
        .iter()
        .map(|d| d.fq_name.as_str())
        .collect();
    let collected: Vec<String> = collector
        .collect()
        .iter()
        .map(|f| f.name().to_owned())
        .collect();
    assert_eq!(described, collected);
    for info in SNAPSHOT_METRICS {
        assert_ne!(info.kind, MetricKind::Histogram, "{}", info.name);
    }
    // prometheus' own consistency checks accept the descriptors next to
    // the live families.
    struct Owned(Vec<Desc>);
    impl Collector for Owned {
        fn desc(&self) -> Vec<&Desc> {
            self.0.iter().collect()
        }
        fn collect(&self) -> Vec<MetricFamily> {
            Vec::new()
        }
    }
    metrics
        .registry
        .register(Box::new(Owned(metrics.snapshot_descs.clone())))
        .expect("snapshot descriptors are valid and distinct from the live ones");
}
