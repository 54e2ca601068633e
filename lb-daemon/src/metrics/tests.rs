use std::collections::BTreeMap;

use super::*;
use crate::status::{BackendStatus, CheckCounts, Status};

/// A parsed exposition: samples by `name{label="value",...}`, the HELP
/// and TYPE line of each family, and the families in order.
#[derive(Default)]
struct Exposition {
    samples: BTreeMap<String, f64>,
    help: BTreeMap<String, String>,
    types: BTreeMap<String, String>,
    order: Vec<String>,
}

fn parse(text: &str) -> Exposition {
    let mut out = Exposition::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            out.order.push(name.into());
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
            assert!(out.samples.insert(series.into(), value).is_none(), "{line}");
        }
    }
    out
}

fn sample(exposition: &Exposition, series: &str) -> f64 {
    *exposition
        .samples
        .get(series)
        .unwrap_or_else(|| panic!("no sample {series} in {:#?}", exposition.samples.keys()))
}

#[test]
fn snapshot_families_render_with_values_and_labels() {
    let metrics = Metrics::new();
    let text = metrics.render(&Status::example());
    let exp = parse(&text);

    let expected: [(&str, f64); 26] = [
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
        (
            r#"lb_health_checks_total{virtual_server="web",backend="10.0.0.11",result="success"}"#,
            12.0,
        ),
        (
            r#"lb_health_checks_total{virtual_server="web",backend="10.0.0.13",result="success"}"#,
            4.0,
        ),
        (
            r#"lb_health_checks_total{virtual_server="web",backend="10.0.0.13",result="failure"}"#,
            3.0,
        ),
        (
            r#"lb_health_checks_total{virtual_server="web",backend="10.0.0.13",result="timeout"}"#,
            2.0,
        ),
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

    // 2 VIPs x 3 + 4 backends x 4 + 2 instances x (4 + 3 + 2 + 1) + 3 + 3
    // + 1, and the results seen of the two checked backends (not those
    // never seen, nor any of the unchecked backends).
    assert_eq!(exp.samples.len(), 6 + 16 + 20 + 7 + 4, "{text}");
}

#[test]
fn every_family_has_help_and_type() {
    let metrics = Metrics::new();
    metrics.observe_check_duration("web", Duration::from_millis(3));
    let exp = parse(&metrics.render(&Status::example()));
    let names: Vec<&str> = METRICS.iter().map(|info| info.name).collect();
    assert_eq!(exp.order, names, "families in the order of METRICS");
    for info in METRICS {
        assert_eq!(
            exp.help.get(info.name).map(String::as_str),
            Some(info.help),
            "{}",
            info.name
        );
        assert_eq!(
            exp.types.get(info.name).map(String::as_str),
            Some(info.kind.as_str()),
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
fn health_checks_are_counted_by_backend_and_timed_by_virtual_server() {
    let metrics = Metrics::new();
    // Checks of two backends of "web" go into the same histogram.
    for millis in [1, 3, 700, 1000] {
        metrics.observe_check_duration("web", Duration::from_millis(millis));
    }
    let mut status = Status::example();
    let checked = &mut status.virtual_servers[0].backends[1];
    checked.checks = CheckCounts {
        success: 2,
        failure: 0,
        timeout: u32::MAX,
    };
    let exp = parse(&metrics.render(&status));

    let labels = r#"virtual_server="web",backend="10.0.0.12""#;
    let checks = |result: &str| {
        let series = format!(r#"lb_health_checks_total{{{labels},result="{result}"}}"#);
        exp.samples.get(&series).copied()
    };
    assert_eq!(checks("success"), Some(2.0));
    assert_eq!(checks("timeout"), Some(f64::from(u32::MAX)));
    assert_eq!(checks("failure"), None, "a result never seen");
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
    metrics.observe_check_duration("web", Duration::from_millis(5));
    let mut status = Status::example();
    let text = metrics.render(&status);
    assert!(
        text.contains(r#"backend="10.0.0.13",result="failure""#),
        "{text}"
    );

    // A reload removed the backend and stopped the checks of "web".
    status.virtual_servers[0]
        .backends
        .retain(|b: &BackendStatus| b.address.to_string() != "10.0.0.13");
    metrics.retain_check_durations(|name| name != "web");
    let text = metrics.render(&status);
    assert!(!text.contains("10.0.0.13"), "{text}");
    assert!(!text.contains("lb_health_check_duration"), "{text}");
}

/// Every sample carries its family's labels, in the documented order
/// (`le` last on buckets), and a number as its value.
#[test]
fn every_sample_has_the_labels_of_its_family() {
    let metrics = Metrics::new();
    metrics.observe_check_duration("web", Duration::from_millis(5));
    let text = metrics.render(&Status::example());
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("series value");
        assert!(value.parse::<f64>().is_ok(), "{line}");
        let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
        let info = METRICS
            .iter()
            .find(|info| match info.kind {
                MetricKind::Histogram => ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| name.strip_suffix(suffix) == Some(info.name)),
                _ => name == info.name,
            })
            .unwrap_or_else(|| panic!("{line}: not a family of METRICS"));
        let names: Vec<&str> = labels
            .strip_suffix('}')
            .expect("labels end with }")
            .split("\",")
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').expect("label=value").0)
            .collect();
        let mut expected = info.labels.to_vec();
        if name.ends_with("_bucket") {
            expected.push("le");
        }
        assert_eq!(names, expected, "{line}");
    }
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
