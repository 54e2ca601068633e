//! Health checks against real servers: each test creates a network
//! namespace with lb_lab, runs a single-threaded tokio runtime on a thread
//! that entered it, and starts its servers on the namespace's own
//! loopback, so no packet leaves the namespace. The namespace is deleted
//! when the test ends, failed or not. Runs as root (as `cargo xtask test`
//! and CI do); fails rather than skips otherwise.
use std::{
    future::Future,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU16, Ordering},
    },
    time::Duration,
};

use lb_daemon::{
    config::{HealthCheck, HealthCheckKind, HttpCheck},
    health::{
        CheckResult, Failure, Report, Supervisor, Target,
        jitter::max_delay,
        probe::{self, exec, http, https, tcp, udp},
    },
    status::Health,
};
use lb_lab::{Netns, unique_prefix};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::mpsc,
    task::JoinHandle,
    time::Instant,
};

/// Timeout of single probes meant to time out.
const TIMEOUT: Duration = Duration::from_millis(300);
/// Timeout of single probes meant to get an answer (a success, a refusal,
/// a bad status...): room for a loaded machine, where a short one could
/// turn the answer expected into a timeout.
const ANSWERED: Duration = Duration::from_secs(5);
/// Slack for scheduling on a loaded 2-CPU machine.
const MARGIN: Duration = Duration::from_millis(700);
/// How long a lingering HTTP server keeps a connection open after its
/// answer.
const LINGER: Duration = Duration::from_secs(30);
/// The namespace's loopback (not the host's: the thread is inside).
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "health-check tests create namespaces: run as root");
}

/// Runs `test` on a current-thread runtime inside a fresh namespace;
/// every socket and process the test makes lives there.
fn in_namespace<F, Fut>(tag: &str, test: F)
where
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = ()>,
{
    require_root();
    let ns = Netns::create(&format!("{}-hc", unique_prefix(tag))).expect("create namespace");
    ns.enter(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(test());
    });
}

fn http_check(statuses: &[u16], body: Option<&str>) -> HttpCheck {
    HttpCheck {
        path: "/healthz".into(),
        expect_status: statuses.to_vec(),
        body_contains: body.map(str::to_owned),
    }
}

/// A server task, aborted (its sockets closed) on drop.
struct Task(JoinHandle<()>);

impl Task {
    /// Aborts the task and waits until its sockets are closed.
    async fn stop(mut self) {
        self.0.abort();
        let _ = (&mut self.0).await;
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A TCP server that accepts and closes every connection.
async fn tcp_server(addr: SocketAddr) -> (SocketAddr, Task) {
    let listener = TcpListener::bind(addr).await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    (addr, Task(task))
}

/// A TCP server that accepts connections and never answers or closes.
async fn silent_server() -> (SocketAddr, Task) {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (addr, Task(task))
}

/// What the HTTP test server answers; `status` can change while it runs.
#[derive(Clone)]
struct Answer {
    status: Arc<AtomicU16>,
    /// Raw bytes after the head's status line and CRLF: the rest of the
    /// head and the body.
    rest: Arc<Mutex<Vec<u8>>>,
    /// The requests' heads, as received.
    requests: Arc<Mutex<Vec<String>>>,
    /// Keep the connection open for [`LINGER`] after answering (ignoring
    /// `Connection: close`).
    linger: bool,
}

impl Answer {
    fn new(status: u16, body: &str) -> Self {
        let rest = format!("Content-Length: {}\r\n\r\n{body}", body.len());
        Self::raw(status, rest.as_bytes())
    }

    fn raw(status: u16, rest: &[u8]) -> Self {
        Self {
            status: Arc::new(AtomicU16::new(status)),
            rest: Arc::new(Mutex::new(rest.to_vec())),
            requests: Arc::default(),
            linger: false,
        }
    }

    fn response(&self) -> Vec<u8> {
        let status = self.status.load(Ordering::SeqCst);
        let mut response = format!("HTTP/1.1 {status} Whatever\r\n").into_bytes();
        response.extend_from_slice(&self.rest.lock().unwrap());
        response
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// Reads one request head from `stream` and answers it.
    async fn serve<S>(&self, mut stream: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        self.requests
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&head).into_owned());
        if stream.write_all(&self.response()).await.is_err() {
            return;
        }
        if self.linger {
            let _ = stream.flush().await;
            tokio::time::sleep(LINGER).await;
        }
        let _ = stream.shutdown().await;
    }
}

async fn http_server(answer: Answer) -> (SocketAddr, Task) {
    http_server_on(LOCALHOST, answer).await
}

async fn http_server_on(ip: IpAddr, answer: Answer) -> (SocketAddr, Task) {
    let listener = TcpListener::bind((ip, 0)).await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move { answer.serve(stream).await });
        }
    });
    (addr, Task(task))
}

/// An HTTPS server with a fresh self-signed certificate for 127.0.0.1.
async fn https_server(answer: Answer) -> (SocketAddr, Task) {
    let certified = rcgen::generate_simple_self_signed(vec![LOCALHOST.to_string()])
        .expect("self-signed certificate");
    let chain = vec![CertificateDer::from(certified.cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that rejects the certificate aborts the handshake.
                if let Ok(tls) = acceptor.accept(stream).await {
                    answer.serve(tls).await;
                }
            });
        }
    });
    (addr, Task(task))
}

/// A UDP server answering "pong " + the datagram.
async fn udp_echo() -> (SocketAddr, Task) {
    udp_echo_on(LOCALHOST).await
}

async fn udp_echo_on(ip: IpAddr) -> (SocketAddr, Task) {
    let socket = UdpSocket::bind((ip, 0)).await.expect("bind");
    let addr = socket.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            let reply = [b"pong ".as_slice(), &buf[..n]].concat();
            let _ = socket.send_to(&reply, peer).await;
        }
    });
    (addr, Task(task))
}

/// Runs `probe` and checks that it took no longer than `limit`.
async fn timed<F: Future<Output = CheckResult>>(limit: Duration, probe: F) -> CheckResult {
    let started = Instant::now();
    let result = probe.await;
    let took = started.elapsed();
    assert!(took <= limit, "{result:?} took {took:?}, limit {limit:?}");
    result
}

#[test]
fn tcp_connect_refused_and_timeout_in_time() {
    in_namespace("tcp", || async {
        let (addr, server) = tcp_server((LOCALHOST, 0).into()).await;
        assert_eq!(tcp(addr, ANSWERED).await, CheckResult::Success);
        server.stop().await;
        assert_eq!(tcp(addr, ANSWERED).await, Failure::Refused.into());
        // A listener whose accept queue (backlog 0) is full drops further
        // SYNs: the connection neither succeeds nor fails in time.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((LOCALHOST, 0).into()).unwrap();
        let full = socket.listen(0).unwrap();
        let full_addr = full.local_addr().unwrap();
        let _queued = TcpStream::connect(full_addr)
            .await
            .expect("first connection queued");
        let result = timed(TIMEOUT + MARGIN, tcp(full_addr, TIMEOUT)).await;
        assert_eq!(result, CheckResult::Timeout);
        assert_eq!(result.label(), "timeout");
    });
}

#[test]
fn http_status_and_body_match_and_mismatch() {
    in_namespace("http", || async {
        let ok = Answer::new(200, "service ready\n");
        let (addr, _server) = http_server(ok.clone()).await;
        assert_eq!(
            http(addr, &http_check(&[200], Some("ready")), ANSWERED).await,
            CheckResult::Success
        );
        assert_eq!(
            http(addr, &http_check(&[204, 200], None), ANSWERED).await,
            CheckResult::Success
        );
        assert_eq!(
            http(addr, &http_check(&[200], Some("draining")), ANSWERED).await,
            Failure::BodyMismatch.into()
        );
        assert_eq!(
            http(addr, &http_check(&[204], None), ANSWERED).await,
            Failure::BadStatus(200).into()
        );
        let requests = ok.requests();
        assert_eq!(requests.len(), 4);
        let host = format!("\r\nHost: 127.0.0.1:{}\r\n", addr.port());
        for request in &requests {
            assert!(
                request.starts_with("GET /healthz HTTP/1.1\r\n"),
                "{request}"
            );
            assert!(request.contains(&host), "{request}");
            assert!(request.contains("\r\nConnection: close\r\n"), "{request}");
        }

        let unavailable = Answer::new(503, "ready but overloaded");
        let (addr, _server) = http_server(unavailable.clone()).await;
        let result = http(addr, &http_check(&[200], Some("ready")), ANSWERED).await;
        assert_eq!(result, Failure::BadStatus(503).into());
        assert_eq!(result.to_string(), "failure: bad status 503");
        unavailable.status.store(200, Ordering::SeqCst);
        assert_eq!(
            http(addr, &http_check(&[200], Some("ready")), ANSWERED).await,
            CheckResult::Success
        );

        // Chunked, the text split across chunks.
        let chunked = Answer::raw(
            200,
            b"Transfer-Encoding: chunked\r\n\r\n6\r\nall re\r\n3\r\nady\r\n0\r\n\r\n",
        );
        let (addr, _server) = http_server(chunked).await;
        assert_eq!(
            http(addr, &http_check(&[200], Some("ready")), ANSWERED).await,
            CheckResult::Success
        );

        // A server that keeps the connection open after a complete answer:
        // the check does not wait for the close. Its timeout is long, but
        // shorter than the server's linger: a check that waited for the
        // close would time out instead of succeeding. (No bound on how
        // long the success took: that depends on the machine's load.)
        let mut lingering = Answer::new(200, "ready");
        lingering.linger = true;
        let (addr, _server) = http_server(lingering).await;
        let timeout = Duration::from_secs(10);
        assert!(timeout < LINGER);
        let result = http(addr, &http_check(&[200], Some("ready")), timeout).await;
        assert_eq!(result, CheckResult::Success);

        // Not HTTP at all.
        let (addr, _server) = tcp_garbage_server().await;
        assert!(matches!(
            http(addr, &http_check(&[200], None), ANSWERED).await,
            CheckResult::Failure(Failure::BadResponse(_))
        ));
    });
}

/// A TCP server that answers every connection with an SSH banner.
async fn tcp_garbage_server() -> (SocketAddr, Task) {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        }
    });
    (addr, Task(task))
}

#[test]
fn http_refused_and_silent_server_times_out() {
    in_namespace("hsil", || async {
        let (addr, server) = tcp_server((LOCALHOST, 0).into()).await;
        server.stop().await;
        assert_eq!(
            http(addr, &http_check(&[200], None), ANSWERED).await,
            Failure::Refused.into()
        );
        // Accepted, never answered: the timeout bounds the check.
        let (addr, _server) = silent_server().await;
        let result = timed(
            TIMEOUT + MARGIN,
            http(addr, &http_check(&[200], None), TIMEOUT),
        )
        .await;
        assert_eq!(result, CheckResult::Timeout);
        // A server that closes without answering.
        let (addr, _server) = tcp_server((LOCALHOST, 0).into()).await;
        let result = http(addr, &http_check(&[200], None), ANSWERED).await;
        assert_eq!(result, Failure::Reset.into());
    });
}

#[test]
fn https_self_signed_accepted_without_verify_rejected_with() {
    in_namespace("tls", || async {
        let answer = Answer::new(200, "ready");
        let (addr, _server) = https_server(answer.clone()).await;
        let check = http_check(&[200], Some("ready"));
        assert_eq!(
            https(addr, &check, false, ANSWERED).await,
            CheckResult::Success
        );
        let host = format!("\r\nHost: 127.0.0.1:{}\r\n", addr.port());
        assert!(
            answer.requests()[0].contains(&host),
            "{:?}",
            answer.requests()
        );

        let result = https(addr, &check, true, ANSWERED).await;
        let CheckResult::Failure(Failure::Tls(reason)) = &result else {
            panic!("verify=true accepted a self-signed certificate: {result:?}");
        };
        assert!(reason.contains("certificate"), "{reason}");
        // The rejected handshake never reached the HTTP layer.
        assert_eq!(answer.requests().len(), 1);

        // Status and body are judged through TLS as over plain TCP.
        answer.status.store(503, Ordering::SeqCst);
        assert_eq!(
            https(addr, &check, false, ANSWERED).await,
            Failure::BadStatus(503).into()
        );

        // Something other than TLS on the port: a TLS error.
        let (plain, _server) = tcp_garbage_server().await;
        let result = https(plain, &check, false, ANSWERED).await;
        assert!(
            matches!(result, CheckResult::Failure(Failure::Tls(_))),
            "{result:?}"
        );
        // Silent server: the handshake times out.
        let (silent, _server) = silent_server().await;
        let result = timed(TIMEOUT + MARGIN, https(silent, &check, false, TIMEOUT)).await;
        assert_eq!(result, CheckResult::Timeout);
    });
}

#[test]
fn udp_reply_mismatch_refused_and_no_reply() {
    in_namespace("udp", || async {
        let (addr, _server) = udp_echo().await;
        assert_eq!(
            udp(addr, b"ping", Some(b"pong ping"), ANSWERED).await,
            CheckResult::Success
        );
        assert_eq!(
            udp(addr, b"ping", None, ANSWERED).await,
            CheckResult::Success
        );
        assert_eq!(
            udp(addr, b"ping", Some(b"nope"), ANSWERED).await,
            Failure::ReplyMismatch.into()
        );

        // Bound but silent: no reply within the timeout.
        let silent = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let result = timed(TIMEOUT + MARGIN, udp(silent_addr, b"ping", None, TIMEOUT)).await;
        assert_eq!(result, CheckResult::Timeout);
        let mut seen = [0u8; 16];
        let (n, _) = silent.try_recv_from(&mut seen).expect("the probe arrived");
        assert_eq!(&seen[..n], b"ping");

        // Nothing bound: the ICMP port unreachable fails it as refused.
        drop(silent);
        assert_eq!(
            udp(silent_addr, b"ping", None, ANSWERED).await,
            Failure::Refused.into()
        );
    });
}

#[test]
fn checks_over_ipv6() {
    in_namespace("ipv6", || async {
        let localhost6 = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
        let answer = Answer::new(200, "ready");
        let (addr, _server) = http_server_on(localhost6, answer.clone()).await;
        assert_eq!(tcp(addr, ANSWERED).await, CheckResult::Success);
        assert_eq!(
            http(addr, &http_check(&[200], Some("ready")), ANSWERED).await,
            CheckResult::Success
        );
        let host = format!("\r\nHost: [::1]:{}\r\n", addr.port());
        assert!(
            answer.requests()[0].contains(&host),
            "{:?}",
            answer.requests()
        );

        let (addr, server) = udp_echo_on(localhost6).await;
        assert_eq!(
            udp(addr, b"ping", Some(b"pong"), ANSWERED).await,
            CheckResult::Success
        );
        server.stop().await;
        assert_eq!(
            udp(addr, b"ping", None, ANSWERED).await,
            Failure::Refused.into()
        );
    });
}

#[test]
fn exec_status_and_kill_at_timeout() {
    in_namespace("exec", || async {
        let argv = |args: &[&str]| -> Vec<String> { args.iter().map(|s| (*s).into()).collect() };
        assert_eq!(
            exec(&argv(&["true"]), &[], ANSWERED).await,
            CheckResult::Success
        );
        let result = exec(&argv(&["false"]), &[], ANSWERED).await;
        assert_eq!(result, Failure::ExitStatus(1).into());
        assert_eq!(result.to_string(), "failure: exit status 1");

        // A script whose child sleeps: both die at the timeout (long enough
        // for the script to write its child's pid on a loaded machine).
        const EXEC_TIMEOUT: Duration = Duration::from_secs(2);
        let pid_file = PidFile::new();
        let script = pid_file.script();
        let result = timed(
            EXEC_TIMEOUT + MARGIN,
            exec(&argv(&["sh", "-c", &script]), &[], EXEC_TIMEOUT),
        )
        .await;
        assert_eq!(result, CheckResult::Timeout);
        let pid = pid_file.read().await;
        assert!(gone(pid).await, "sleep {pid} survived the check's timeout");

        // A check cancelled mid-run (checker stopped) kills the group too.
        let pid_file = PidFile::new();
        let script = pid_file.script();
        let check = tokio::spawn(async move {
            exec(&argv(&["sh", "-c", &script]), &[], Duration::from_secs(60)).await
        });
        let pid = pid_file.read().await;
        check.abort();
        assert!(check.await.is_err_and(|e| e.is_cancelled()));
        assert!(gone(pid).await, "sleep {pid} survived its cancelled check");
    });
}

/// A temporary file an exec check's script writes its child's pid into.
struct PidFile(std::path::PathBuf);

impl PidFile {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!(
            "lb-health-exec-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        )))
    }

    /// A shell script that starts `sleep 30`, writes its pid here and
    /// waits for it.
    fn script(&self) -> String {
        format!("sleep 30 & echo $! > {}; wait", self.0.display())
    }

    /// The pid, once written (waits up to 5 s).
    async fn read(&self) -> i32 {
        let read = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Ok(text) = std::fs::read_to_string(&self.0)
                    && let Ok(pid) = text.trim().parse()
                {
                    return pid;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        read.await.expect("the script wrote its child's pid")
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Whether process `pid` is gone, or a zombie awaiting its reaper,
/// within 5 s (killed, it goes at once; left alive, it sleeps 30 s).
async fn gone(pid: i32) -> bool {
    let dead = async {
        loop {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return;
            };
            // The state follows the parenthesised command name.
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            if state.starts_with('Z') {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), dead)
        .await
        .is_ok()
}

/// A tcp check of `addr`; its timeout is the interval (the longest the
/// config allows), so that a connection on a loaded machine does not time
/// out where a success or a refusal is expected.
fn tcp_target(addr: SocketAddr, interval: Duration, rise: u32, fall: u32) -> Target {
    Target {
        virtual_server: "web".into(),
        address: addr.ip(),
        port: Some(addr.port()),
        check: Arc::new(HealthCheck {
            kind: HealthCheckKind::Tcp,
            interval,
            timeout: interval,
            rise,
            fall,
        }),
    }
}

async fn next_report(reports: &mut mpsc::Receiver<Report>, deadline: Instant) -> Report {
    tokio::time::timeout_at(deadline, reports.recv())
        .await
        .expect("a report before the deadline")
        .expect("the supervisor is running")
}

#[test]
fn supervisor_takes_a_backend_down_after_fall_and_up_after_rise() {
    in_namespace("rise", || async {
        const INTERVAL: Duration = Duration::from_millis(200);
        const RISE: u32 = 2;
        const FALL: u32 = 3;
        let (addr, server) = tcp_server((LOCALHOST, 0).into()).await;
        let (tx, mut reports) = mpsc::channel(64);
        let mut supervisor = Supervisor::new(tx);
        supervisor.sync(vec![tcp_target(addr, INTERVAL, RISE, FALL)]);
        assert_eq!(supervisor.health("web", LOCALHOST), Health::Up, "starts up");

        // Up: successes that change nothing.
        let deadline = Instant::now() + Duration::from_secs(5);
        for _ in 0..3 {
            let report = next_report(&mut reports, deadline).await;
            assert_eq!(report.result, CheckResult::Success);
            assert_eq!(report.result.label(), "success");
            assert_eq!(
                (&*report.virtual_server, report.backend),
                ("web", LOCALHOST)
            );
            assert_eq!(report.changed, None);
        }

        // Server gone: down on exactly the FALL-th consecutive failure,
        // within FALL checks (plus one in flight) and a margin.
        server.stop().await;
        let stopped = Instant::now();
        let limit = max_delay(INTERVAL) * (FALL + 1) + MARGIN;
        let mut failures = 0;
        loop {
            let report = next_report(&mut reports, stopped + limit).await;
            match report.result {
                // A check that raced the stop.
                CheckResult::Success => {
                    assert_eq!(failures, 0, "success after a refusal");
                    assert_eq!(report.changed, None);
                }
                CheckResult::Failure(Failure::Refused) => {
                    failures += 1;
                    if failures < FALL {
                        assert_eq!(report.changed, None, "down after {failures} failures");
                        assert_eq!(supervisor.health("web", LOCALHOST), Health::Up);
                    } else {
                        assert_eq!(report.changed, Some(Health::Down));
                        break;
                    }
                }
                other => panic!("unexpected result {other:?}"),
            }
        }
        assert_eq!(supervisor.health("web", LOCALHOST), Health::Down);
        // Staying down: further failures change nothing.
        let report = next_report(&mut reports, Instant::now() + limit).await;
        assert_eq!(report.result, Failure::Refused.into());
        assert_eq!(report.changed, None);

        // Back on the same port: up on exactly the RISE-th success.
        let (_, _server) = tcp_server(addr).await;
        let restarted = Instant::now();
        let limit = max_delay(INTERVAL) * (RISE + 1) + MARGIN;
        let mut successes = 0;
        loop {
            let report = next_report(&mut reports, restarted + limit).await;
            match report.result {
                CheckResult::Failure(Failure::Refused) => assert_eq!(successes, 0),
                CheckResult::Success => {
                    successes += 1;
                    if successes < RISE {
                        assert_eq!(report.changed, None);
                        assert_eq!(supervisor.health("web", LOCALHOST), Health::Down);
                    } else {
                        assert_eq!(report.changed, Some(Health::Up));
                        break;
                    }
                }
                other => panic!("unexpected result {other:?}"),
            }
        }
        assert_eq!(supervisor.health("web", LOCALHOST), Health::Up);
        supervisor.shutdown().await;
    });
}

#[test]
fn supervisor_reports_http_status_changes_and_timeouts() {
    in_namespace("sup", || async {
        // The silent backend's check is meant to time out: a short timeout.
        const SLOW_INTERVAL: Duration = Duration::from_millis(50);
        const SLOW_TIMEOUT: Duration = Duration::from_millis(30);
        // The answering backend's check is meant to get its answer: its
        // timeout is its interval, room for a loaded machine.
        const API_INTERVAL: Duration = Duration::from_millis(300);
        let answer = Answer::new(200, "ready");
        let (addr, _server) = http_server(answer.clone()).await;
        let (silent, _silent) = silent_server().await;
        let http_target = |addr: SocketAddr, virtual_server: &str, interval, timeout| Target {
            virtual_server: virtual_server.into(),
            address: addr.ip(),
            port: Some(addr.port()),
            check: Arc::new(HealthCheck {
                kind: HealthCheckKind::Http(http_check(&[200], Some("ready"))),
                interval,
                timeout,
                rise: 1,
                fall: 2,
            }),
        };
        let api = http_target(addr, "api", API_INTERVAL, API_INTERVAL);
        let slow = http_target(silent, "slow", SLOW_INTERVAL, SLOW_TIMEOUT);
        let (tx, mut reports) = mpsc::channel(64);
        let mut supervisor = Supervisor::new(tx);
        supervisor.sync(vec![api.clone(), slow]);
        assert_eq!(supervisor.targets_checked().len(), 2);

        let deadline = Instant::now() + Duration::from_secs(10);
        // The silent backend times out and goes down after two timeouts.
        let mut slow_down = false;
        let mut api_ok = 0;
        while !(slow_down && api_ok >= 2) {
            let report = next_report(&mut reports, deadline).await;
            match &*report.virtual_server {
                "slow" => {
                    assert_eq!(report.result, CheckResult::Timeout);
                    assert_eq!(report.result.label(), "timeout");
                    assert!(report.duration >= SLOW_TIMEOUT);
                    slow_down |= report.changed == Some(Health::Down);
                }
                "api" => {
                    assert_eq!(report.result, CheckResult::Success);
                    api_ok += 1;
                }
                other => panic!("report for {other}"),
            }
        }
        assert_eq!(supervisor.health("slow", LOCALHOST), Health::Down);
        assert_eq!(supervisor.health("api", LOCALHOST), Health::Up);

        // The server starts answering 503: down after two bad statuses
        // (within three checks: one may be in flight).
        answer.status.store(503, Ordering::SeqCst);
        let deadline = Instant::now() + max_delay(API_INTERVAL) * 3 + MARGIN;
        loop {
            let report = next_report(&mut reports, deadline).await;
            if &*report.virtual_server != "api" {
                continue;
            }
            if report.result == Failure::BadStatus(503).into()
                && report.changed == Some(Health::Down)
            {
                break;
            }
        }
        assert_eq!(supervisor.health("api", LOCALHOST), Health::Down);

        // Dropping the silent backend from the targets stops its checks:
        // reports sent before the sync may still wait in the channel (the
        // runtime has one thread, so none is sent while these are taken);
        // none of the silent backend comes after them.
        supervisor.sync(vec![api.clone()]);
        assert_eq!(supervisor.health("slow", LOCALHOST), Health::Up);
        while reports.try_recv().is_ok() {}
        let until = Instant::now() + SLOW_INTERVAL * 10;
        while let Ok(Some(report)) = tokio::time::timeout_at(until, reports.recv()).await {
            assert_eq!(&*report.virtual_server, "api", "a stopped checker reported");
        }
        supervisor.shutdown().await;
        // Kind none is never checked and always up.
        let (tx, _reports) = mpsc::channel(1);
        let mut supervisor = Supervisor::new(tx);
        let mut none = api;
        none.virtual_server = "none".into();
        Arc::make_mut(&mut none.check).kind = HealthCheckKind::None;
        supervisor.sync(vec![none]);
        assert_eq!(supervisor.targets_checked().len(), 0);
        assert_eq!(supervisor.health("none", LOCALHOST), Health::Up);
        supervisor.shutdown().await;
    });
}

#[test]
fn probe_dispatches_by_kind() {
    in_namespace("kind", || async {
        let (tcp_addr, _tcp) = tcp_server((LOCALHOST, 0).into()).await;
        let (http_addr, _http) = http_server(Answer::new(200, "ready")).await;
        let (udp_addr, _udp) = udp_echo().await;
        let target = |addr: SocketAddr, kind: HealthCheckKind| Target {
            virtual_server: "vs".into(),
            address: addr.ip(),
            port: Some(addr.port()),
            check: Arc::new(HealthCheck {
                kind,
                ..HealthCheck::default()
            }),
        };
        let cases = [
            target(tcp_addr, HealthCheckKind::Tcp),
            target(
                http_addr,
                HealthCheckKind::Http(http_check(&[200], Some("ready"))),
            ),
            target(
                udp_addr,
                HealthCheckKind::Udp {
                    payload: b"hi".to_vec(),
                    expect: Some(b"pong hi".to_vec()),
                },
            ),
            target(
                tcp_addr,
                HealthCheckKind::Exec {
                    command: vec![
                        "sh".into(),
                        "-c".into(),
                        r#"test "$LB_BACKEND:$LB_BACKEND_PORT" = "127.0.0.1:$0""#.into(),
                        tcp_addr.port().to_string(),
                    ],
                },
            ),
            target(tcp_addr, HealthCheckKind::None),
        ];
        for case in &cases {
            assert_eq!(probe::probe(case).await, CheckResult::Success, "{case:?}");
        }
        let mut no_port = cases[0].clone();
        no_port.port = None;
        assert_eq!(probe::probe(&no_port).await, Failure::NoPort.into());
    });
}
