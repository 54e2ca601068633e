//! One check of one backend, per kind. Every probe is bounded by the
//! check's timeout: when it runs out, the probe is dropped (its socket
//! closed, its command killed) and the result is [`CheckResult::Timeout`].
use std::{
    future::Future,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    process::Stdio,
    time::Duration,
};

use tokio::{
    net::{TcpStream, UdpSocket},
    process::{Child, Command},
};

use super::{
    Target, http,
    result::{CheckResult, Failure},
    tls,
};
use crate::config::{HealthCheckKind, HttpCheck};

/// Largest UDP reply read.
const MAX_DATAGRAM: usize = 64 * 1024;

/// Runs one check of `target` and returns its result. The HTTP and HTTPS
/// exchanges, whose state is kilobytes, are boxed, so that a TCP or UDP
/// check (most of them) does not allocate room for them.
pub async fn probe(target: &Target) -> CheckResult {
    let timeout = target.check.timeout;
    let addr = target
        .port
        .map(|port| SocketAddr::new(target.address, port));
    match (&target.check.kind, addr) {
        (HealthCheckKind::None, _) => CheckResult::Success,
        (HealthCheckKind::Exec { command }, _) => {
            exec(command, &environment(target), timeout).await
        }
        // Every other kind connects to a port of the backend.
        (_, None) => Failure::NoPort.into(),
        (HealthCheckKind::Tcp, Some(addr)) => tcp(addr, timeout).await,
        (HealthCheckKind::Http(check), Some(addr)) => Box::pin(http(addr, check, timeout)).await,
        (HealthCheckKind::Https { http, verify }, Some(addr)) => {
            Box::pin(https(addr, http, *verify, timeout)).await
        }
        (HealthCheckKind::Udp { payload, expect }, Some(addr)) => {
            udp(addr, payload, expect.as_deref(), timeout).await
        }
    }
}

/// Runs `check` for at most `timeout`.
async fn bounded(timeout: Duration, check: impl Future<Output = CheckResult>) -> CheckResult {
    tokio::time::timeout(timeout, check)
        .await
        .unwrap_or(CheckResult::Timeout)
}

/// `tcp`: the connection is accepted (then closed at once).
pub async fn tcp(addr: SocketAddr, timeout: Duration) -> CheckResult {
    bounded(timeout, async {
        match TcpStream::connect(addr).await {
            Ok(_) => CheckResult::Success,
            Err(e) => Failure::from_io(&e).into(),
        }
    })
    .await
}

/// `http`: a GET on `addr` answers with an expected status (and body).
pub async fn http(addr: SocketAddr, check: &HttpCheck, timeout: Duration) -> CheckResult {
    bounded(timeout, async {
        match TcpStream::connect(addr).await {
            Ok(stream) => http::check(stream, check, addr, 80).await,
            Err(e) => Failure::from_io(&e).into(),
        }
    })
    .await
}

/// `https`: the same over TLS; `verify` checks the certificate.
pub async fn https(
    addr: SocketAddr,
    check: &HttpCheck,
    verify: bool,
    timeout: Duration,
) -> CheckResult {
    bounded(timeout, async {
        let tcp = match TcpStream::connect(addr).await {
            Ok(stream) => stream,
            Err(e) => return Failure::from_io(&e).into(),
        };
        match tls::connect(tcp, addr.ip(), verify).await {
            Ok(stream) => http::check(stream, check, addr, 443).await,
            Err(reason) => reason.into(),
        }
    })
    .await
}

/// `udp`: `payload` to `addr` gets a reply (containing `expect`, if set).
/// An ICMP port unreachable in return fails the check as refused.
pub async fn udp(
    addr: SocketAddr,
    payload: &[u8],
    expect: Option<&[u8]>,
    timeout: Duration,
) -> CheckResult {
    bounded(timeout, async {
        match udp_exchange(addr, payload).await {
            Ok(reply) => match expect {
                Some(expect) if !http::contains(&reply, expect) => Failure::ReplyMismatch.into(),
                _ => CheckResult::Success,
            },
            Err(e) => Failure::from_io(&e).into(),
        }
    })
    .await
}

async fn udp_exchange(addr: SocketAddr, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let local = match addr {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
    let socket = UdpSocket::bind(local).await?;
    // Connected: only the backend's replies are received, and its ICMP
    // errors come back as ECONNREFUSED.
    socket.connect(addr).await?;
    socket.send(payload).await?;
    let mut reply = vec![0; MAX_DATAGRAM];
    let len = socket.recv(&mut reply).await?;
    reply.truncate(len);
    Ok(reply)
}

/// Environment of an exec check's command: which backend it checks.
fn environment(target: &Target) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("LB_VIRTUAL_SERVER", target.virtual_server.to_string()),
        ("LB_BACKEND", target.address.to_string()),
    ];
    if let Some(port) = target.port {
        env.push(("LB_BACKEND_PORT", port.to_string()));
    }
    env
}

/// `exec`: `command` (argv, no shell) exits with status 0 within
/// `timeout`. The command runs in a process group of its own with
/// stdin, stdout and stderr on /dev/null, and `LB_VIRTUAL_SERVER`,
/// `LB_BACKEND` and `LB_BACKEND_PORT` (when there is a port) set. On
/// timeout, or when the check is cancelled, the whole group is killed,
/// so a script's children die with it.
pub async fn exec(
    command: &[String],
    env: &[(&'static str, String)],
    timeout: Duration,
) -> CheckResult {
    let Some((program, args)) = command.split_first() else {
        return Failure::Spawn("empty command".into()).into();
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => return Failure::Spawn(format!("{program}: {e}")).into(),
    };
    let mut group = Group::new(child);
    let status = tokio::time::timeout(timeout, group.child.wait()).await;
    match status {
        Ok(Ok(status)) => {
            group.reaped = true;
            if status.success() {
                CheckResult::Success
            } else if let Some(code) = status.code() {
                Failure::ExitStatus(code).into()
            } else {
                use std::os::unix::process::ExitStatusExt as _;
                Failure::Signal(status.signal().unwrap_or(0)).into()
            }
        }
        Ok(Err(e)) => Failure::Io(format!("waiting for {program}: {e}")).into(),
        Err(_elapsed) => {
            group.kill();
            // Reap the leader now (SIGKILL cannot be ignored, so this is
            // quick); bounded all the same.
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_secs(1), group.child.wait()).await
            {
                group.reaped = true;
            }
            CheckResult::Timeout
        }
    }
}

/// A child leading its own process group; the group is killed on drop
/// unless the leader was reaped (after which its id may be reused).
struct Group {
    child: Child,
    /// The leader's pid, which is the group's id (`process_group(0)`).
    pgid: Option<i32>,
    reaped: bool,
}

impl Group {
    fn new(child: Child) -> Self {
        let pgid = child.id().and_then(|id| i32::try_from(id).ok());
        Self {
            child,
            pgid,
            reaped: false,
        }
    }

    /// SIGKILL to every process of the group.
    fn kill(&self) {
        if let Some(pgid) = self.pgid.filter(|&id| id > 0) {
            // SAFETY: kill has no memory-safety preconditions. The group
            // is the one this check created, and its leader is not reaped
            // yet, so the id cannot have been reused.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn argv(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    const TIMEOUT: Duration = Duration::from_secs(5);

    /// Every probe in flight is allocated at the size of the largest
    /// kind's state: HTTPS, 12.6 KB when inlined, is boxed on its own.
    #[test]
    fn a_probe_in_flight_is_small() {
        let config = crate::config::parse(
            &crate::config::test_configs::one_backend_and(""),
            "test.toml",
        )
        .expect("valid config");
        let target = crate::health::Supervisor::targets(&config)
            .pop()
            .expect("a checked backend");
        let size = std::mem::size_of_val(&probe(&target));
        assert!(size <= 2048, "a probe holds {size} bytes");
    }

    #[tokio::test]
    async fn exec_exit_statuses() {
        assert_eq!(
            exec(&argv(&["true"]), &[], TIMEOUT).await,
            CheckResult::Success
        );
        assert_eq!(
            exec(&argv(&["false"]), &[], TIMEOUT).await,
            Failure::ExitStatus(1).into()
        );
        assert_eq!(
            exec(&argv(&["sh", "-c", "kill -TERM $$"]), &[], TIMEOUT).await,
            Failure::Signal(libc::SIGTERM).into()
        );
        assert!(matches!(
            exec(&argv(&["/nonexistent/check"]), &[], TIMEOUT).await,
            CheckResult::Failure(Failure::Spawn(_))
        ));
        assert!(matches!(
            exec(&[], &[], TIMEOUT).await,
            CheckResult::Failure(Failure::Spawn(_))
        ));
    }

    #[tokio::test]
    async fn exec_sees_the_backend_in_its_environment() {
        let env = [
            ("LB_VIRTUAL_SERVER", "web".to_owned()),
            ("LB_BACKEND", "10.0.0.1".to_owned()),
        ];
        let script = argv(&[
            "sh",
            "-c",
            r#"test "$LB_VIRTUAL_SERVER/$LB_BACKEND" = web/10.0.0.1"#,
        ]);
        assert_eq!(exec(&script, &env, TIMEOUT).await, CheckResult::Success);
        assert_eq!(
            exec(&script, &env[..1], TIMEOUT).await,
            Failure::ExitStatus(1).into()
        );
    }

    #[test]
    fn ports_are_required_where_the_kind_connects() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut target = Target {
            virtual_server: "web".into(),
            address: "192.0.2.1".parse().unwrap(),
            port: None,
            check: Arc::default(),
        };
        let http = HttpCheck {
            path: "/".into(),
            expect_status: vec![200],
            body_contains: None,
        };
        let connecting = [
            HealthCheckKind::Tcp,
            HealthCheckKind::Http(http.clone()),
            HealthCheckKind::Https { http, verify: true },
            HealthCheckKind::Udp {
                payload: b"ping".to_vec(),
                expect: None,
            },
        ];
        for kind in connecting {
            Arc::make_mut(&mut target.check).kind = kind;
            assert!(target.check.kind.needs_port());
            let result = runtime.block_on(probe(&target));
            assert_eq!(result, Failure::NoPort.into(), "{:?}", target.check.kind);
        }
        Arc::make_mut(&mut target.check).kind = HealthCheckKind::Exec {
            command: vec!["true".into()],
        };
        assert_eq!(runtime.block_on(probe(&target)), CheckResult::Success);
        Arc::make_mut(&mut target.check).kind = HealthCheckKind::None;
        assert_eq!(runtime.block_on(probe(&target)), CheckResult::Success);
        assert_eq!(
            environment(&target),
            [
                ("LB_VIRTUAL_SERVER", "web".to_owned()),
                ("LB_BACKEND", "192.0.2.1".to_owned())
            ]
        );
    }
}
