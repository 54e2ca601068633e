//! A real Prometheus server (Debian's `prometheus`, installed by `cargo
//! xtask setup`) scrapes `lb-daemon run` in the lab while HTTP traffic
//! flows through the VIP; its query API then shows the daemon's series
//! with the expected labels and non-zero values. Runs as root.
//!
//! Prometheus runs in the balancer's namespace and scrapes the daemon on
//! that namespace's loopback; nothing touches the host's network.
mod support;

use std::{
    collections::BTreeMap,
    fs,
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use hyper::Method;
use lb_daemon::admin::client;
use lb_lab::{
    HealthKind, HttpLoad, HttpLoadOptions, Netns, NsChild, VIRTUAL_SERVER, VrrpConfig, WEB_PORT,
    wait_until,
};
use serde_json::Value;
use support::e2e::E2e;

const METRICS: &str = "127.0.0.1:9100";
const PROMETHEUS: &str = "127.0.0.1:9090";
const TIMEOUT: Duration = Duration::from_secs(30);

/// A Prometheus server inside a namespace, stopped when dropped.
struct Prometheus {
    ns_name: String,
    child: NsChild,
    log: std::path::PathBuf,
}

impl Prometheus {
    /// Starts Prometheus in `ns`, scraping `target` every second, with its
    /// config, data and log under `dir`.
    fn start(ns: &Netns, dir: &Path, target: &str) -> Prometheus {
        let binary = which::which("prometheus").unwrap_or_else(|error| {
            panic!("the prometheus binary: {error} (`cargo xtask setup` installs it)")
        });
        let config = dir.join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: lb\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let log = dir.join("prometheus.log");
        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address={PROMETHEUS}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap());
        let child = ns.spawn(command).expect("starting prometheus");
        Prometheus {
            ns_name: ns.name().to_owned(),
            child,
            log,
        }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET path` on Prometheus' HTTP API from inside its namespace.
    fn get(&self, ns: &Netns, path: &str) -> anyhow::Result<client::Reply> {
        assert_eq!(ns.name(), self.ns_name);
        if let Ok(Some(status)) = self.child.try_wait() {
            anyhow::bail!("prometheus exited with {status}:\n{}", self.log_text());
        }
        let addr: SocketAddr = PROMETHEUS.parse()?;
        ns.enter(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            Ok(runtime.block_on(client::request(
                addr,
                Method::GET,
                path,
                Duration::from_secs(5),
            ))?)
        })
    }

    /// The instant vector of `query`: each series' labels and value.
    fn query(
        &self,
        ns: &Netns,
        query: &str,
    ) -> anyhow::Result<Vec<(BTreeMap<String, String>, f64)>> {
        let reply = self.get(ns, &format!("/api/v1/query?query={}", url_encode(query)))?;
        anyhow::ensure!(reply.status == 200, "{query}: {reply:?}");
        let body: Value = serde_json::from_str(&reply.body)?;
        anyhow::ensure!(body["status"] == "success", "{query}: {body}");
        let result = body["data"]["result"]
            .as_array()
            .ok_or_else(|| anyhow::anyhow!("{query}: no result in {body}"))?;
        result
            .iter()
            .map(|series| {
                let labels = serde_json::from_value(series["metric"].clone())?;
                let value = series["value"][1]
                    .as_str()
                    .ok_or_else(|| anyhow::anyhow!("{query}: no value in {series}"))?
                    .parse()?;
                Ok((labels, value))
            })
            .collect()
    }

    /// Waits until `check` accepts the result of `query`.
    fn wait_query(
        &self,
        ns: &Netns,
        query: &str,
        what: &str,
        check: impl Fn(&[(BTreeMap<String, String>, f64)]) -> bool,
    ) -> Vec<(BTreeMap<String, String>, f64)> {
        let mut last = Vec::new();
        let found = wait_until(TIMEOUT, what, || {
            last = self.query(ns, query)?;
            Ok(check(&last).then(|| last.clone()))
        });
        found.unwrap_or_else(|error| {
            panic!(
                "{error:#}\nlast result of {query}: {last:#?}\nprometheus log:\n{}",
                self.log_text()
            )
        })
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986 §2.3).
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn label<'a>(series: &'a (BTreeMap<String, String>, f64), name: &str) -> &'a str {
    series.0.get(name).map_or("", String::as_str)
}

#[test]
fn prometheus_scrapes_the_daemon_under_traffic() {
    let mut e2e = E2e::new("prom", 3, false);
    let mut config = e2e.config(3);
    config.metrics = METRICS.to_owned();
    config.health.kind = HealthKind::Http;
    // VRRP moves the VIP to lb-a (alone, it becomes master) and exports
    // its state.
    config.vrrp = Some(VrrpConfig::new(150));
    e2e.start_daemon("lb-a", &config);
    e2e.wait_vip();
    let lb = e2e.balancer("lb-a").ns();

    let load = HttpLoad::start(
        e2e.lab.client().ns(),
        e2e.vip_addr(),
        &HttpLoadOptions {
            workers: 2,
            rate: Some(100),
            max_duration: Duration::from_secs(120),
            ..HttpLoadOptions::default()
        },
    )
    .unwrap();

    let prometheus = Prometheus::start(lb, e2e.dir.path(), METRICS);
    wait_until(TIMEOUT, "prometheus to be ready", || {
        Ok(prometheus
            .get(lb, "/-/ready")
            .is_ok_and(|reply| reply.status == 200)
            .then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", prometheus.log_text()));

    let up = prometheus.wait_query(lb, r#"up{job="lb"}"#, "the target to be up", |r| {
        r.len() == 1 && r[0].1 == 1.0
    });
    assert_eq!(label(&up[0], "instance"), METRICS);

    let vips = prometheus.wait_query(
        lb,
        "lb_vip_packets_total",
        "VIP packets to be counted",
        |r| r.iter().any(|s| s.1 > 0.0),
    );
    assert_eq!(vips.len(), 1, "{vips:?}");
    assert_eq!(label(&vips[0], "vip"), e2e.vip().to_string());
    assert_eq!(label(&vips[0], "port"), WEB_PORT.to_string());
    assert_eq!(label(&vips[0], "protocol"), "tcp");
    assert_eq!(label(&vips[0], "job"), "lb");

    // Every backend gets packets: many short connections spread over the
    // Maglev ring.
    let backend_count = e2e.lab.backends().len();
    let backends = prometheus.wait_query(
        lb,
        "lb_backend_packets_total",
        "packets to every backend",
        |r| r.len() == backend_count && r.iter().all(|s| s.1 > 0.0),
    );
    let mut addresses: Vec<&str> = backends.iter().map(|s| label(s, "backend")).collect();
    addresses.sort_unstable();
    let mut expected: Vec<String> = e2e
        .lab
        .backends()
        .iter()
        .map(|be| be.ipv4().to_string())
        .collect();
    expected.sort();
    assert_eq!(addresses, expected);
    assert!(
        backends
            .iter()
            .all(|s| label(s, "virtual_server") == VIRTUAL_SERVER)
    );

    prometheus.wait_query(lb, "lb_backend_up", "every backend up", |r| {
        r.len() == backend_count
            && r.iter()
                .all(|s| s.1 == 1.0 && label(s, "virtual_server") == VIRTUAL_SERVER)
    });
    prometheus.wait_query(
        lb,
        r#"lb_health_checks_total{result="success"}"#,
        "successful health checks of every backend",
        |r| r.len() == backend_count && r.iter().all(|s| s.1 > 0.0),
    );

    let actions = prometheus.wait_query(lb, "lb_xdp_packets_total", "forwarded packets", |r| {
        r.iter().any(|s| label(s, "action") == "tx" && s.1 > 0.0)
    });
    let mut names: Vec<&str> = actions.iter().map(|s| label(s, "action")).collect();
    names.sort_unstable();
    assert_eq!(names, ["drop", "pass", "tx"]);

    // The VRRP instance's name arrives as exported_instance: `instance` is
    // the scrape target's (docs/observability.md, the Grafana dashboard).
    let master = prometheus.wait_query(
        lb,
        r#"lb_vrrp_state{state="master"} == 1"#,
        "VI_1 master",
        |r| r.len() == 1,
    );
    assert_eq!(label(&master[0], "exported_instance"), "VI_1");
    assert_eq!(label(&master[0], "instance"), METRICS);

    // Counters rise between scrapes while traffic flows.
    prometheus.wait_query(
        lb,
        "sum(rate(lb_vip_packets_total[5s]))",
        "a packet rate",
        |r| r.len() == 1 && r[0].1 > 0.0,
    );

    let stats = load.stop();
    assert!(stats.successes() > 20, "{stats:?}");
    println!("load: {stats:?}\nVIP packets: {}", vips[0].1);
}
