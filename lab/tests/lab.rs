//! The lab against the real kernel. These tests create network namespaces
//! and must run as root (as `cargo xtask test` and CI do); they fail rather
//! than skip otherwise.
use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr},
    process::{Command, Stdio},
    time::Duration,
};

use lb_lab::{
    EchoBackend, EchoStream, HttpBackend, HttpLoad, HttpLoadOptions, Netns, Role, Topology,
    TopologyOptions, connect, http_get, http_get_many, link::neighbour, list_netns, unique_prefix,
    wait_http, wait_until,
};

const TIMEOUT: Duration = Duration::from_secs(5);

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "lab tests create namespaces and must run as root");
}

fn namespaces_with(prefix: &str) -> Vec<String> {
    list_netns()
        .expect("list namespaces")
        .into_iter()
        .filter(|name| name.starts_with(prefix))
        .collect()
}

#[test]
fn client_reaches_each_backend_over_both_families_and_drop_cleans_up() {
    require_root();
    let prefix = unique_prefix("topo");
    {
        let lab = Topology::create(&TopologyOptions::new(prefix.as_str())).expect("create lab");
        assert_eq!(namespaces_with(&format!("{prefix}-")).len(), 7);
        assert_eq!(lab.balancer_ports(), ["p-lb-a", "p-lb-b"]);
        assert_eq!(lab.client().mtu(), 1500);
        assert_eq!(lab.backends().len(), 3);
        let mut servers = Vec::new();
        for backend in lab.backends() {
            assert_eq!(backend.role(), Role::Backend);
            for ip in [IpAddr::from(backend.ipv4()), backend.ipv6().into()] {
                let addr = SocketAddr::new(ip, 8080);
                servers.push(HttpBackend::start(backend.ns(), addr, backend.name()).unwrap());
                let body = http_get(lab.client().ns(), addr, TIMEOUT)
                    .unwrap_or_else(|e| panic!("GET {addr}: {e:#}"));
                assert_eq!(body, format!("{}\n", backend.name()));
            }
        }
        assert!(servers.iter().all(|server| server.requests() == 1));
        // The VIP is on the backends' loopback, and they keep quiet about it.
        let be = &lab.backends()[0];
        let lo = be.ns().ip(&["addr", "show", "dev", "lo"]).unwrap();
        assert!(
            lo.contains("192.0.2.100/32") && lo.contains("2001:db8::100/128"),
            "{lo}"
        );
        let arp_ignore = be
            .ns()
            .exec_ok("cat", &["/proc/sys/net/ipv4/conf/eth0/arp_ignore"])
            .unwrap();
        assert_eq!(arp_ignore.trim(), "1");
    }
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new());
}

#[test]
fn distinct_connections_and_keep_alive_reach_one_server() {
    require_root();
    let mut options = TopologyOptions::new(unique_prefix("many"));
    options.backends = 1;
    options.lb_b = false;
    let lab = Topology::create(&options).expect("create lab");
    assert!(lab.lb_b().is_none());
    let be = &lab.backends()[0];
    let server = HttpBackend::start(be.ns(), SocketAddr::new(be.ipv4().into(), 0), "solo").unwrap();
    let names = http_get_many(lab.client().ns(), server.addr(), 20, TIMEOUT).unwrap();
    assert_eq!(names, vec!["solo"; 20]);
    assert_eq!(server.connections(), 20);
    assert_eq!(server.requests(), 20);

    // Two pipelined requests on one kept-alive connection.
    let mut stream = connect(lab.client().ns(), server.addr(), TIMEOUT).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answers = String::new();
    stream.read_to_string(&mut answers).unwrap();
    assert_eq!(answers.matches("HTTP/1.1 200 OK").count(), 2, "{answers}");
    assert_eq!(server.connections(), 21);
    assert_eq!(server.requests(), 22);
}

#[test]
fn echo_stream_checks_every_byte_and_sees_the_server_stop() {
    require_root();
    let mut options = TopologyOptions::new(unique_prefix("echo"));
    options.backends = 1;
    options.lb_b = false;
    let lab = Topology::create(&options).expect("create lab");
    let be = &lab.backends()[0];
    let mut server = EchoBackend::start(be.ns(), SocketAddr::new(be.ipv6().into(), 0)).unwrap();
    let mut stream = EchoStream::connect(lab.client().ns(), server.addr(), TIMEOUT).unwrap();
    for _ in 0..10 {
        stream.exchange(100_000).unwrap();
    }
    assert_eq!(stream.verified(), 1_000_000);
    assert_eq!(server.bytes(), 1_000_000);
    assert_eq!(server.open_connections(), 1);
    server.stop();
    assert!(stream.exchange(10).is_err());
}

#[test]
fn processes_and_threads_run_inside_and_die_with_the_namespace() {
    require_root();
    let prefix = unique_prefix("proc");
    let ns = Netns::create(&format!("{prefix}-x")).unwrap();
    let mut sleep = Command::new("sleep");
    sleep.arg("600").stdin(Stdio::null());
    let child = ns.spawn(sleep).unwrap();
    assert_eq!(ns.pids().unwrap(), [child.pid()]);
    // /sys shows this namespace, as under `ip netns exec`.
    let mut ls = Command::new("ls");
    ls.arg("/sys/class/net").stdout(Stdio::piped());
    let lister = ns.spawn(ls).unwrap();
    let status = lister.wait_timeout(TIMEOUT).unwrap().expect("ls exited");
    assert!(status.success());
    let mut listing = String::new();
    std::io::Read::read_to_string(&mut lister.take_stdout().unwrap(), &mut listing).unwrap();
    assert_eq!(listing.split_whitespace().collect::<Vec<_>>(), ["lo"]);
    let index = lb_lab::link::ifindex(&ns, "lo").unwrap();
    assert_eq!(index, 1);
    assert_eq!(child.wait_timeout(Duration::from_millis(50)).unwrap(), None);
    // A child the test forgot: the namespace guard stops it.
    let pid = child.pid();
    std::mem::forget(child);
    drop(ns);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new());
}

#[test]
fn down_removes_a_persisted_lab() {
    require_root();
    let prefix = unique_prefix("down");
    let mut options = TopologyOptions::new(prefix.as_str());
    options.backends = 1;
    Topology::create(&options).unwrap().persist();
    assert_eq!(namespaces_with(&format!("{prefix}-")).len(), 5);
    let removed = Topology::down(&prefix).unwrap();
    assert_eq!(removed.len(), 5);
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new());
}

#[test]
fn load_counts_answers_and_failures_and_neighbours_are_learned() {
    require_root();
    let mut options = TopologyOptions::new(unique_prefix("load"));
    options.backends = 2;
    options.lb_b = false;
    let lab = Topology::create(&options).expect("create lab");
    let be = &lab.backends()[1];
    let addr = SocketAddr::new(be.ipv4().into(), 80);
    let mut server = HttpBackend::start(be.ns(), addr, be.name()).unwrap();
    assert_eq!(
        wait_http(lab.client().ns(), addr, TIMEOUT).unwrap(),
        "be-2\n"
    );
    let client = lab.client().ns();
    assert_eq!(neighbour(client, be.ipv4().into()).unwrap(), Some(be.mac()));
    assert_eq!(
        neighbour(client, lab.backends()[0].ipv4().into()).unwrap(),
        None
    );

    let load = HttpLoad::start(client, addr, &HttpLoadOptions::default()).unwrap();
    wait_until(TIMEOUT, "50 answers", || {
        Ok((load.stats().successes() >= 50).then_some(()))
    })
    .unwrap();
    server.stop();
    wait_until(TIMEOUT, "failures after the server stopped", || {
        Ok((load.stats().errors > 0).then_some(()))
    })
    .unwrap();
    let stats = load.stop();
    assert_eq!(stats.answers.keys().collect::<Vec<_>>(), ["be-2"]);
    assert!(stats.last_error.is_some());
    let table = lab.to_string();
    assert!(
        table.contains("192.0.2.12") && table.contains("p-be-2"),
        "{table}"
    );
}
