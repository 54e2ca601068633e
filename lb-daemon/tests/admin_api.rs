//! The admin API and the metrics endpoint over real HTTP, served from an
//! in-memory [`Control`] inside a network namespace the test creates (the
//! host's loopback is never used), and `lb-daemon status` against it.
//! Runs as root.
mod support;

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, mpsc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use hyper::Method;
use lb_daemon::{
    admin::{
        self, Control, ControlError, ErrorBody,
        client::{self, Reply},
    },
    metrics::Metrics,
    status::{BackendStatus, Health, Status},
};
use lb_lab::{Netns, unique_prefix};

const TIMEOUT: Duration = Duration::from_secs(10);

/// The daemon as the API sees it: a status in memory.
struct FakeControl {
    status: Mutex<Status>,
}

/// A virtual server whose changes the fake refuses to apply, as a daemon
/// whose map update failed would.
const FROZEN: &str = "frozen";

impl Control for FakeControl {
    fn status(&self) -> Status {
        self.status.lock().unwrap().clone()
    }

    fn set_drained(
        &self,
        virtual_server: &str,
        backend: IpAddr,
        drained: bool,
    ) -> Result<BackendStatus, ControlError> {
        if virtual_server == FROZEN {
            return Err(ControlError::Failed("the maps are read-only".to_owned()));
        }
        let mut status = self.status.lock().unwrap();
        let vs = status
            .virtual_servers
            .iter_mut()
            .find(|vs| vs.name == virtual_server)
            .ok_or_else(|| ControlError::UnknownVirtualServer(virtual_server.to_owned()))?;
        let entry = vs
            .backends
            .iter_mut()
            .find(|b| b.address == backend)
            .ok_or_else(|| ControlError::UnknownBackend {
                virtual_server: virtual_server.to_owned(),
                backend,
            })?;
        entry.drained = drained;
        Ok(entry.clone())
    }
}

/// Both servers on a thread inside a fresh namespace; shut down and the
/// namespace deleted on drop.
struct Server {
    admin: SocketAddr,
    metrics: SocketAddr,
    metrics_registry: Arc<Metrics>,
    shutdown: tokio::sync::watch::Sender<bool>,
    thread: Option<JoinHandle<anyhow::Result<std::io::Result<()>>>>,
    // Dropped last, after the server thread has ended.
    ns: Netns,
}

impl Server {
    fn start(tag: &str) -> Server {
        support::require_root();
        let ns = Netns::create(&unique_prefix(tag)).expect("creating the test namespace");
        let control = Arc::new(FakeControl {
            status: Mutex::new(Status::example()),
        });
        let metrics = Arc::new(Metrics::new());
        let (shutdown, watch) = tokio::sync::watch::channel(false);
        let (ready, addresses) = mpsc::channel();
        let serve_metrics = Arc::clone(&metrics);
        let thread = ns
            .spawn_thread(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                    let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                    let _ =
                        ready.send((admin_listener.local_addr()?, metrics_listener.local_addr()?));
                    let stopped = |mut watch: tokio::sync::watch::Receiver<bool>| async move {
                        // A dropped sender (the test panicked) stops too.
                        let _ = watch.wait_for(|stop| *stop).await;
                    };
                    let control: Arc<dyn Control> = control;
                    tokio::try_join!(
                        admin::serve_admin(
                            admin_listener,
                            Arc::clone(&control),
                            stopped(watch.clone())
                        ),
                        admin::serve_metrics(
                            metrics_listener,
                            control,
                            serve_metrics,
                            stopped(watch)
                        ),
                    )?;
                    Ok(())
                })
            })
            .expect("starting the server thread");
        let (admin, metrics_addr) = addresses
            .recv_timeout(TIMEOUT)
            .expect("the servers did not start");
        Server {
            admin,
            metrics: metrics_addr,
            metrics_registry: metrics,
            shutdown,
            thread: Some(thread),
            ns,
        }
    }

    /// `method path` against `addr`, from inside the namespace.
    fn call(&self, addr: SocketAddr, method: Method, path: &str) -> Reply {
        self.ns.enter(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime
                .block_on(client::request(addr, method, path, TIMEOUT))
                .unwrap_or_else(|error| panic!("{path}: {error}"))
        })
    }

    fn admin(&self, method: Method, path: &str) -> Reply {
        self.call(self.admin, method, path)
    }

    fn status(&self) -> Status {
        let reply = self.admin(Method::GET, "/api/v1/status");
        reply.json().expect("a status")
    }

    /// `lb-daemon ARGS` run inside the namespace.
    fn lb_daemon(&self, args: &[&str]) -> std::process::Output {
        self.ns
            .exec(env!("CARGO_BIN_EXE_lb-daemon"), args)
            .expect("running lb-daemon")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = Instant::now() + TIMEOUT;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !thread.is_finished() {
            eprintln!("admin_api: the server thread did not stop within {TIMEOUT:?}");
            return;
        }
        let result = thread.join();
        if !std::thread::panicking() {
            match result {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error))) => panic!("server failed: {error}"),
                Ok(Err(error)) => panic!("server thread failed: {error:#}"),
                Err(_) => panic!("server thread panicked"),
            }
        }
    }
}

fn error_of(reply: &Reply) -> String {
    assert_eq!(
        reply.content_type.as_deref(),
        Some("application/json"),
        "{reply:?}"
    );
    serde_json::from_str::<ErrorBody>(&reply.body)
        .unwrap_or_else(|e| panic!("error body {:?}: {e}", reply.body))
        .error
}

#[test]
fn status_is_served_as_json() {
    let server = Server::start("adst");
    let reply = server.admin(Method::GET, "/api/v1/status");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.content_type.as_deref(), Some("application/json"));
    assert_eq!(reply.json::<Status>().unwrap(), Status::example());
}

#[test]
fn drain_and_undrain_a_backend() {
    let server = Server::start("addr");
    let reply = server.admin(Method::POST, "/api/v1/backends/web/10.0.0.11/drain");
    assert_eq!(reply.status, 200, "{reply:?}");
    let backend: BackendStatus = reply.json().unwrap();
    assert_eq!(backend.address, "10.0.0.11".parse::<IpAddr>().unwrap());
    assert!(backend.drained);
    assert_eq!(backend.effective_weight(), 0);
    assert_eq!(backend.health, Health::Up);

    let status = server.status();
    let web = &status.virtual_servers[0];
    assert!(web.backends[0].drained, "{web:?}");
    // 10.0.0.12 was drained already and 10.0.0.13 is down.
    assert_eq!(web.active_backends(), 0);

    // IPv6 addresses go into the path as they are.
    for (action, drained) in [("drain", true), ("undrain", false)] {
        let reply = server.admin(
            Method::POST,
            &format!("/api/v1/backends/dns6/2001:db8:1::1/{action}"),
        );
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.json::<BackendStatus>().unwrap().drained, drained);
    }

    let reply = server.admin(Method::POST, "/api/v1/backends/web/10.0.0.11/undrain");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(!reply.json::<BackendStatus>().unwrap().drained);
    assert_eq!(server.status(), Status::example());
}

#[test]
fn bad_requests_get_json_errors() {
    let server = Server::start("aderr");
    let cases: [(Method, &str, u16, &str); 10] = [
        (
            Method::POST,
            "/api/v1/backends/nosuch/10.0.0.11/drain",
            404,
            "no virtual server named \"nosuch\"",
        ),
        (
            Method::POST,
            "/api/v1/backends/no%20such/10.0.0.11/drain",
            404,
            "no virtual server named \"no such\"",
        ),
        (
            Method::POST,
            "/api/v1/backends/web/10.9.9.9/undrain",
            404,
            "virtual server \"web\" has no backend 10.9.9.9",
        ),
        (
            Method::POST,
            "/api/v1/backends/web/10.0.0.256/drain",
            400,
            "\"10.0.0.256\" is not an IPv4 or IPv6 address",
        ),
        (
            Method::POST,
            "/api/v1/backends/web/backend-1/drain",
            400,
            "\"backend-1\" is not an IPv4 or IPv6 address",
        ),
        // Percent-encoding that is not UTF-8.
        (
            Method::POST,
            "/api/v1/backends/%FF/10.0.0.11/drain",
            400,
            "UTF-8",
        ),
        (
            Method::GET,
            "/api/v1/backends/web/10.0.0.11/drain",
            405,
            "method not allowed",
        ),
        (Method::POST, "/api/v1/status", 405, "method not allowed"),
        (
            Method::POST,
            "/api/v1/backends/web/10.0.0.11/restart",
            404,
            "no such endpoint",
        ),
        (
            Method::POST,
            &format!("/api/v1/backends/{FROZEN}/10.0.0.11/drain"),
            500,
            "the maps are read-only",
        ),
    ];
    for (method, path, code, message) in cases {
        let reply = server.admin(method.clone(), path);
        assert_eq!(reply.status, code, "{method} {path}: {reply:?}");
        let error = error_of(&reply);
        assert!(
            error.contains(message),
            "{method} {path}: {error:?} lacks {message:?}"
        );
    }
    // Nothing changed.
    assert_eq!(server.status(), Status::example());
}

#[test]
fn metrics_are_served_in_text_format() {
    let server = Server::start("admet");
    server
        .metrics_registry
        .observe_check_duration("web", Duration::from_millis(2));
    let reply = server.call(server.metrics, Method::GET, "/metrics");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.content_type.as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    for line in [
        "# TYPE lb_vip_packets_total counter",
        r#"lb_vip_packets_total{vip="192.0.2.10",port="80",protocol="tcp"} 1500"#,
        r#"lb_backend_up{virtual_server="web",backend="10.0.0.13"} 0"#,
        r#"lb_health_checks_total{virtual_server="web",backend="10.0.0.11",result="success"} 12"#,
        r#"lb_health_check_duration_seconds_count{virtual_server="web"} 1"#,
        r#"lb_vrrp_state{instance="VI_1",state="master"} 1"#,
    ] {
        assert!(
            reply.body.lines().any(|l| l == line),
            "no line {line:?} in\n{}",
            reply.body
        );
    }

    // A drain through the admin API shows in the next scrape.
    let reply = server.admin(Method::POST, "/api/v1/backends/web/10.0.0.11/drain");
    assert_eq!(reply.status, 200, "{reply:?}");
    let body = server.call(server.metrics, Method::GET, "/metrics").body;
    assert!(
        body.lines()
            .any(|l| l == r#"lb_backend_weight{virtual_server="web",backend="10.0.0.11"} 0"#),
        "{body}"
    );

    let reply = server.call(server.metrics, Method::POST, "/metrics");
    assert_eq!(reply.status, 405, "{reply:?}");
    let reply = server.call(server.metrics, Method::GET, "/api/v1/status");
    assert_eq!(
        reply.status, 404,
        "the metrics listener serves only /metrics"
    );
}

#[test]
fn lb_daemon_status_prints_tables_and_json() {
    let server = Server::start("adcli");
    let admin = server.admin.to_string();

    let output = server.lb_daemon(&["status", "--admin", &admin]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{output:?}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout,
        lb_daemon::cmd::status::render(&Status::example()),
        "{stdout}"
    );

    let output = server.lb_daemon(&["status", "--admin", &admin, "--json"]);
    assert!(output.status.success(), "{output:?}");
    let status: Status = serde_json::from_slice(&output.stdout).expect("JSON status");
    assert_eq!(status, Status::example());
}

#[test]
fn lb_daemon_status_reports_an_unreachable_daemon() {
    let server = Server::start("adun");
    // A port nobody listens on inside the namespace: bind one, then free it.
    let free = server.ns.enter(|| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("binding a port")
    });
    let output = server.lb_daemon(&["status", "--admin", &free.to_string()]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("lb-daemon: cannot reach the admin API at {free}"))
            && stderr.contains("Connection refused"),
        "{stderr}"
    );
}
