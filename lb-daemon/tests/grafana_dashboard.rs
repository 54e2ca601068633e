//! docs/grafana/lb-dashboard.json queries only metrics the daemon exports,
//! with labels those metrics have.
//!
//! Labels are checked as Prometheus stores them: every series also has the
//! scrape target's `job` and `instance`, and a metric's own `instance`
//! label (`lb_vrrp_*`, the VRRP instance) is renamed `exported_instance`
//! on ingestion because it clashes with the target's.
use std::{collections::BTreeSet, path::Path};

use lb_daemon::metrics::{METRICS, MetricInfo, MetricKind};
use serde_json::Value;

/// Labels Prometheus attaches to every scraped series.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/grafana/lb-dashboard.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every PromQL expression of the dashboard: panel targets (`expr`) and
/// the queries of template variables of type `query`.
fn expressions(dashboard: &Value) -> Vec<String> {
    fn exprs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr", Value::String(text)) => out.push(text.clone()),
                        _ => exprs(value, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| exprs(item, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    exprs(&dashboard["panels"], &mut out);
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list");
    for variable in variables.iter().filter(|v| v["type"] == "query") {
        for query in [&variable["definition"], &variable["query"]["query"]] {
            let query = query
                .as_str()
                .unwrap_or_else(|| panic!("variable without query: {variable}"));
            out.push(query.to_owned());
        }
    }
    out
}

/// A metric referenced by an expression and the label names its selector
/// matches on.
#[derive(Debug)]
struct Selector {
    series: String,
    matchers: Vec<String>,
}

/// What an expression references: selectors, `by (...)`/`without (...)`
/// labels, and `label_values(..., LABEL)` labels.
#[derive(Debug, Default)]
struct References {
    selectors: Vec<Selector>,
    grouping: Vec<String>,
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn references(expr: &str) -> References {
    let mut refs = References::default();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '"' {
            // Skip string literals (matcher values, "$node").
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            continue;
        }
        if !is_ident(chars[i]) || (i > 0 && is_ident(chars[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && is_ident(chars[i]) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let mut j = i;
        while j < chars.len() && chars[j] == ' ' {
            j += 1;
        }
        let next = chars.get(j).copied();
        if word.starts_with("lb_") {
            let mut matchers = Vec::new();
            if next == Some('{') {
                let close = expr_find(&chars, j, '}');
                let body: String = chars[j + 1..close].iter().collect();
                for matcher in split_outside_quotes(&body) {
                    let name: String = matcher
                        .trim()
                        .chars()
                        .take_while(|c| is_ident(*c))
                        .collect();
                    assert!(!name.is_empty(), "matcher {matcher:?} in {expr}");
                    matchers.push(name);
                }
                i = close + 1;
            }
            refs.selectors.push(Selector {
                series: word,
                matchers,
            });
        } else if (word == "by" || word == "without") && next == Some('(') {
            let close = expr_find(&chars, j, ')');
            let body: String = chars[j + 1..close].iter().collect();
            refs.grouping
                .extend(body.split(',').map(|l| l.trim().to_owned()));
            i = close + 1;
        } else if word == "label_values" && next == Some('(') {
            let close = expr_find(&chars, j, ')');
            let body: String = chars[j + 1..close].iter().collect();
            let parts = split_outside_quotes(&body);
            let label = parts.last().expect("label_values(metric, label)").trim();
            refs.grouping.push(label.to_owned());
            // The selector inside is scanned on the next iterations.
            i = j + 1;
        }
    }
    refs
}

/// Index of the first `close` after `open_at`, outside string literals.
fn expr_find(chars: &[char], open_at: usize, close: char) -> usize {
    let mut in_string = false;
    let mut k = open_at + 1;
    while k < chars.len() {
        match chars[k] {
            '\\' if in_string => k += 1,
            '"' => in_string = !in_string,
            c if c == close && !in_string => return k,
            _ => {}
        }
        k += 1;
    }
    panic!("no {close:?} in {}", chars.iter().collect::<String>())
}

fn split_outside_quotes(text: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            ',' if !in_string => {
                parts.push(String::new());
                continue;
            }
            _ => {}
        }
        parts.last_mut().expect("one part").push(c);
    }
    parts
}

/// The family a series name belongs to and the labels Prometheus stores
/// on it.
fn resolve(series: &str) -> Option<(&'static MetricInfo, BTreeSet<&'static str>)> {
    let (info, le) = METRICS.iter().find_map(|info| {
        if info.name == series {
            return Some((info, false));
        }
        if info.kind != MetricKind::Histogram {
            return None;
        }
        let suffix = series.strip_prefix(info.name)?;
        match suffix {
            "_bucket" => Some((info, true)),
            "_sum" | "_count" => Some((info, false)),
            _ => None,
        }
    })?;
    let mut labels: BTreeSet<&str> = info
        .labels
        .iter()
        .map(|l| {
            if *l == "instance" {
                "exported_instance"
            } else {
                l
            }
        })
        .collect();
    labels.extend(TARGET_LABELS);
    if le {
        labels.insert("le");
    }
    Some((info, labels))
}

#[test]
fn dashboard_queries_use_exported_metrics_and_labels() {
    let exprs = expressions(&dashboard());
    assert!(exprs.len() >= 10, "{exprs:#?}");

    let mut used = BTreeSet::new();
    for expr in &exprs {
        let refs = references(expr);
        assert!(!refs.selectors.is_empty(), "no lb_ metric in {expr}");
        let mut common: Option<BTreeSet<&str>> = None;
        for selector in &refs.selectors {
            let (info, labels) = resolve(&selector.series)
                .unwrap_or_else(|| panic!("{} is not exported (in {expr})", selector.series));
            used.insert(info.name);
            for matcher in &selector.matchers {
                assert!(
                    labels.contains(matcher.as_str()),
                    "{} has no label {matcher} (in {expr}); it has {labels:?}",
                    selector.series
                );
            }
            common = Some(match common {
                None => labels,
                Some(common) => common.intersection(&labels).copied().collect(),
            });
        }
        let common = common.unwrap_or_default();
        for label in &refs.grouping {
            assert!(
                common.contains(label.as_str()),
                "grouping by {label} in {expr}, but the metrics there only have {common:?}"
            );
        }
    }

    // The panels the dashboard exists for.
    for needed in [
        "lb_vip_packets_total",
        "lb_backend_packets_total",
        "lb_backend_up",
        "lb_vrrp_state",
        "lb_health_checks_total",
        "lb_health_check_duration_seconds",
        "lb_xdp_packets_total",
    ] {
        assert!(used.contains(needed), "no panel uses {needed}");
    }
}

#[test]
fn the_checker_catches_unknown_metrics_and_labels() {
    let refs = references(r#"sum by (backend, le) (rate(lb_nope_bucket{vip=~"a,b"}[5m]))"#);
    assert_eq!(refs.grouping, ["backend", "le"]);
    assert_eq!(refs.selectors.len(), 1);
    assert_eq!(refs.selectors[0].series, "lb_nope_bucket");
    assert_eq!(refs.selectors[0].matchers, ["vip"]);
    assert!(resolve("lb_nope_bucket").is_none());

    let (_, labels) = resolve("lb_health_check_duration_seconds_bucket").unwrap();
    assert!(labels.contains("le") && labels.contains("virtual_server"));
    assert!(!labels.contains("result") && !labels.contains("backend"));
    let (_, labels) = resolve("lb_health_check_duration_seconds_count").unwrap();
    assert!(!labels.contains("le"));
    assert!(resolve("lb_backend_up_bucket").is_none());

    let (_, labels) = resolve("lb_vrrp_state").unwrap();
    assert!(labels.contains("exported_instance") && labels.contains("state"));

    let refs = references(r#"label_values(lb_backend_up{instance=~"$node"}, virtual_server)"#);
    assert_eq!(refs.grouping, ["virtual_server"]);
    assert_eq!(refs.selectors[0].matchers, ["instance"]);
}
