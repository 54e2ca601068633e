//! Defaults, each rule, and the location of each error.
use std::{
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    time::Duration,
};

use crate::config::{
    ConfigError, HealthCheckKind, Protocol, Track, VrrpVersion, defaults, model::*, parse,
    parse_checked,
};

const FILE: &str = "lb.toml";

/// A valid config with one virtual server and one backend.
const MINIMAL: &str = crate::config::test_configs::ONE_BACKEND;

fn valid(text: &str) -> Config {
    match parse(text, FILE) {
        Ok(config) => config,
        Err(errors) => panic!("expected a valid config, got:\n{errors}"),
    }
}

/// The errors, as displayed.
fn invalid(text: &str) -> Vec<String> {
    match parse(text, FILE) {
        Ok(config) => panic!("expected errors, got {config:#?}"),
        Err(errors) => errors.errors().iter().map(ToString::to_string).collect(),
    }
}

/// Asserts that one error is at `line` (1-based) on `field` and says
/// `words`.
#[track_caller]
fn assert_error(errors: &[String], line: usize, field: &str, words: &str) {
    let prefix = format!("{FILE}:{line}:");
    let found = errors.iter().any(|e| {
        e.starts_with(&prefix) && e.contains(&format!(": {field}: ")) && e.contains(words)
    });
    assert!(
        found,
        "no error at line {line} on {field} saying {words:?} in:\n{}",
        errors.join("\n")
    );
}

/// `MINIMAL` with `extra` lines appended to the virtual server's table
/// (before its backend), so line numbers stay predictable: the first
/// extra line is line 9.
fn vs_with(extra: &str) -> String {
    MINIMAL.replace("port = 80\n", &format!("port = 80\n{extra}\n"))
}

#[test]
fn defaults_fill_every_absent_field() {
    let config = valid(MINIMAL);
    assert_eq!(config.metrics.listen, defaults::METRICS_LISTEN);
    assert_eq!(config.admin.listen.to_string(), "127.0.0.1:9180");
    let dataplane = config.dataplane.as_ref().unwrap();
    assert_eq!(dataplane.interfaces, ["eth0"]);
    assert_eq!(dataplane.xdp_mode, XdpMode::Auto);
    assert_eq!(dataplane.flow_table_size, 1_048_576);
    assert_eq!(dataplane.maglev_table_size, 65_537);
    assert_eq!(dataplane.pin_path, PathBuf::from("/sys/fs/bpf/lb"));
    assert_eq!(dataplane.max_virtual_servers, 64);
    assert_eq!(dataplane.tunnel_source_v4.to_string(), "172.16.0.0/16");
    assert_eq!(dataplane.tunnel_source_v6.to_string(), "fd00:1b::/96");

    let vs = &config.virtual_servers[0];
    assert_eq!(vs.protocol, Protocol::Tcp);
    assert_eq!(vs.forwarding, Forwarding::Tunnel);
    assert_eq!(vs.scheduler, Scheduler::Maglev);
    assert_eq!(vs.health_check, HealthCheck::default());
    assert_eq!(vs.health_check.kind, HealthCheckKind::Tcp);
    assert_eq!(vs.health_check.interval, Duration::from_secs(2));
    assert_eq!(vs.health_check.timeout, Duration::from_secs(1));
    assert_eq!((vs.health_check.rise, vs.health_check.fall), (2, 3));
    let backend = &vs.backends[0];
    assert_eq!(backend.weight, 100);
    assert_eq!(backend.port, None);
    assert_eq!(vs.health_port(backend), Some(80));

    let port_default =
        valid(&MINIMAL.replace("port = 80\n", "health_check = { kind = \"none\" }\n"));
    assert_eq!(port_default.virtual_servers[0].port, 0);
}

#[test]
fn vrrp_defaults_and_a_pure_vrrp_config() {
    let config = valid(
        r#"
[[vrrp.instance]]
name = "VI_1"
interface = "eth0"
vrid = 51
virtual_addresses = ["192.0.2.10/24", "192.0.2.11"]
"#,
    );
    assert!(config.dataplane.is_none());
    assert!(config.virtual_servers.is_empty());
    let instance = &config.vrrp[0];
    assert_eq!(instance.version, VrrpVersion::V3);
    assert_eq!(instance.priority, 100);
    assert_eq!(instance.advert_interval, Duration::from_secs(1));
    assert!(instance.preempt);
    assert_eq!(instance.preempt_delay, Duration::ZERO);
    assert!(instance.unicast_peers.is_empty());
    assert_eq!(instance.notify, None);
    assert!(instance.track.is_empty());
    assert_eq!(instance.virtual_addresses[0].to_string(), "192.0.2.10/24");
    assert_eq!(instance.virtual_addresses[1].to_string(), "192.0.2.11/32");
    assert!(!instance.is_ipv6());
}

#[test]
fn every_health_check_kind_with_its_fields() {
    let kind = |table: &str| {
        valid(&vs_with(&format!("health_check = {{ {table} }}")))
            .virtual_servers
            .remove(0)
            .health_check
            .kind
    };
    assert_eq!(
        kind(r#"kind = "http""#),
        HealthCheckKind::Http(HttpCheck {
            path: "/".into(),
            expect_status: vec![200],
            body_contains: None,
        })
    );
    assert_eq!(
        kind(
            r#"kind = "https", path = "/up", expect_status = [200, 204], body_contains = "ok", verify = false"#
        ),
        HealthCheckKind::Https {
            http: HttpCheck {
                path: "/up".into(),
                expect_status: vec![200, 204],
                body_contains: Some("ok".into()),
            },
            verify: false,
        }
    );
    assert_eq!(
        kind(r#"kind = "udp", payload = "ping", expect = "pong""#),
        HealthCheckKind::Udp {
            payload: b"ping".to_vec(),
            expect: Some(b"pong".to_vec()),
        }
    );
    assert_eq!(
        kind(r#"kind = "exec", command = ["/bin/check", "-q"]"#),
        HealthCheckKind::Exec {
            command: vec!["/bin/check".into(), "-q".into()],
        }
    );
    assert_eq!(kind(r#"kind = "none""#), HealthCheckKind::None);
}

#[test]
fn tracks_of_each_kind() {
    let mut config = valid(&format!(
        r#"{MINIMAL}
[[vrrp.instance]]
name = "VI_1"
interface = "eth0"
vrid = 51
virtual_addresses = ["192.0.2.10/24"]
track = [ {{ virtual_server = "web", weight = -60 }},
          {{ interface = "eth1" }},
          {{ script = "/bin/true", weight = 10, interval = "5s" }} ]
"#
    ));
    let track = config.vrrp.remove(0).track;
    assert_eq!(
        track,
        [
            Track::VirtualServer {
                name: "web".into(),
                weight: -60
            },
            Track::Interface {
                name: "eth1".into(),
                weight: 0
            },
            Track::Script {
                path: "/bin/true".into(),
                weight: 10,
                interval: Duration::from_secs(5)
            },
        ]
    );
}

#[test]
fn unknown_fields_are_errors_with_their_path() {
    let errors = invalid(&MINIMAL.replace(
        "address = \"10.0.0.11\"",
        "address = \"10.0.0.11\"\nwieght = 5",
    ));
    assert_error(
        &errors,
        12,
        "virtual_server[0].backend[0].wieght",
        "unknown field",
    );
    let errors = invalid(&format!("{MINIMAL}\n[metrics]\nport = 1\n"));
    assert_error(&errors, 14, "metrics.port", "unknown field");
}

#[test]
fn wrong_types_name_the_field() {
    let errors = invalid(&MINIMAL.replace("port = 80", "port = \"80\""));
    assert_error(&errors, 8, "virtual_server[0].port", "expected an integer");
}

#[test]
fn syntax_errors_have_a_line() {
    let errors = invalid("[dataplane\ninterfaces = []\n");
    assert!(errors[0].starts_with("lb.toml:1:"), "{errors:?}");
    assert!(errors[0].contains("syntax error"), "{errors:?}");
}

#[test]
fn missing_required_fields_point_at_their_table() {
    let errors = invalid(
        "[dataplane]\n\n[[virtual_server]]\nport = 80\n\n[[virtual_server.backend]]\nweight = 1\n",
    );
    assert_error(&errors, 1, "dataplane.interfaces", "missing required field");
    assert_error(
        &errors,
        3,
        "virtual_server[0].name",
        "missing required field",
    );
    assert_error(
        &errors,
        3,
        "virtual_server[0].address",
        "missing required field",
    );
    assert_error(
        &errors,
        6,
        "virtual_server[0].backend[0].address",
        "missing required field",
    );
}

#[test]
fn all_semantic_errors_are_reported_together() {
    let errors = invalid(&vs_with(
        "protocol = \"sctp\"\nforwarding = \"nat\"\nscheduler = \"rr\"",
    ));
    assert_error(
        &errors,
        9,
        "virtual_server[0].protocol",
        "\"sctp\" is not one of",
    );
    assert_error(&errors, 10, "virtual_server[0].forwarding", "\"nat\"");
    assert_error(&errors, 11, "virtual_server[0].scheduler", "\"rr\"");
    assert_eq!(errors.len(), 3, "{errors:#?}");
}

#[test]
fn every_semantic_error_has_file_line_column_and_field() {
    let errors = parse(&vs_with("protocol = \"sctp\""), FILE).unwrap_err();
    for error in errors.errors() {
        let ConfigError::Invalid {
            file,
            position,
            field,
            ..
        } = error
        else {
            panic!("not a located error: {error}");
        };
        assert_eq!(file, FILE);
        assert_eq!((position.line, position.column), (9, 12));
        assert_eq!(field, "virtual_server[0].protocol");
    }
}

#[test]
fn duplicate_virtual_server_names_and_listeners() {
    let second = "\n[[virtual_server]]\nname = \"web\"\naddress = \"192.0.2.10\"\nport = 80\nhealth_check = { kind = \"none\" }\n";
    let errors = invalid(&format!("{MINIMAL}{second}"));
    assert_error(
        &errors,
        14,
        "virtual_server[1].name",
        "already the name of the virtual server on line 6",
    );
    assert_error(
        &errors,
        15,
        "virtual_server[1].address",
        "192.0.2.10 port 80 tcp is already the virtual server on line 7",
    );
    // Same address and port over udp is another virtual server.
    valid(&format!(
        "{MINIMAL}{}",
        second
            .replace("\"web\"", "\"dns\"")
            .replace("port = 80", "port = 80\nprotocol = \"udp\"")
    ));
}

#[test]
fn backend_family_rules() {
    // Tunnel mode may mix families.
    let v6 = MINIMAL.replace("address = \"10.0.0.11\"", "address = \"2001:db8::11\"");
    valid(&v6);
    // DSR may not.
    let errors = invalid(&v6.replace("port = 80", "port = 80\nforwarding = \"dsr\""));
    assert_error(
        &errors,
        12,
        "virtual_server[0].backend[0].address",
        "needs backends of the VIP's family (IPv4)",
    );
}

#[test]
fn duplicate_backends_and_the_vip_as_a_backend() {
    let text = format!(
        "{MINIMAL}\n[[virtual_server.backend]]\naddress = \"10.0.0.11\"\nport = 8080\n\n[[virtual_server.backend]]\naddress = \"192.0.2.10\"\n"
    );
    let errors = invalid(&text);
    assert_error(
        &errors,
        14,
        "virtual_server[0].backend[1].address",
        "listed twice in this virtual server (also on line 11)",
    );
    assert_error(
        &errors,
        18,
        "virtual_server[0].backend[2].address",
        "the virtual server's own address",
    );
}

#[test]
fn backend_weights_and_ports_are_bounded() {
    let errors = invalid(&MINIMAL.replace(
        "address = \"10.0.0.11\"",
        "address = \"10.0.0.11\"\nweight = 65536\nport = 70000",
    ));
    assert_error(
        &errors,
        12,
        "virtual_server[0].backend[0].weight",
        "65536 is out of range 0..=65535",
    );
    assert_error(
        &errors,
        13,
        "virtual_server[0].backend[0].port",
        "out of range 1..=65535",
    );
    let drained = valid(&MINIMAL.replace(
        "address = \"10.0.0.11\"",
        "address = \"10.0.0.11\"\nweight = 0",
    ));
    assert_eq!(drained.virtual_servers[0].backends[0].weight, 0);
}

#[test]
fn port_zero_needs_a_backend_port_for_checks_that_connect() {
    let all_ports = MINIMAL.replace("port = 80\n", "");
    let errors = invalid(&all_ports);
    assert_error(
        &errors,
        9,
        "virtual_server[0].backend[0].port",
        "port 0 (all ports)",
    );
    let config = valid(&all_ports.replace(
        "address = \"10.0.0.11\"",
        "address = \"10.0.0.11\"\nport = 8080",
    ));
    let vs = &config.virtual_servers[0];
    assert_eq!(vs.health_port(&vs.backends[0]), Some(8080));
    valid(&all_ports.replace(
        "address = \"192.0.2.10\"",
        "address = \"192.0.2.10\"\nhealth_check = { kind = \"none\" }",
    ));
}

#[test]
fn health_check_rules() {
    let errors = invalid(&vs_with(
        r#"[virtual_server.health_check]
kind = "tcp"
path = "/x"
interval = "1s"
timeout = "2s"
rise = 0
fall = 101
[[virtual_server.backend]]
address = "10.0.0.12""#,
    ));
    assert_error(
        &errors,
        11,
        "virtual_server[0].health_check.path",
        "belongs to kind http or https, not to kind \"tcp\"",
    );
    assert_error(
        &errors,
        13,
        "virtual_server[0].health_check.timeout",
        "must not exceed interval",
    );
    assert_error(
        &errors,
        14,
        "virtual_server[0].health_check.rise",
        "out of range 1..=100",
    );
    assert_error(
        &errors,
        15,
        "virtual_server[0].health_check.fall",
        "out of range 1..=100",
    );

    let errors = invalid(&vs_with(
        r#"health_check = { kind = "http", path = "up", expect_status = [99], interval = "soon" }"#,
    ));
    assert_error(
        &errors,
        9,
        "virtual_server[0].health_check.path",
        "must start with '/'",
    );
    assert_error(
        &errors,
        9,
        "virtual_server[0].health_check.expect_status[0]",
        "out of range 100..=599",
    );
    assert_error(
        &errors,
        9,
        "virtual_server[0].health_check.interval",
        "is not a duration",
    );

    let errors = invalid(&vs_with(
        r#"health_check = { kind = "exec", command = ["check"] }"#,
    ));
    assert_error(
        &errors,
        9,
        "virtual_server[0].health_check.command[0]",
        "not an absolute path",
    );
    let errors = invalid(&vs_with(r#"health_check = { kind = "exec" }"#));
    assert_error(
        &errors,
        9,
        "virtual_server[0].health_check.command",
        "needs command",
    );
    let errors = invalid(&vs_with(r#"health_check = { kind = "icmp" }"#));
    assert_error(
        &errors,
        9,
        "virtual_server[0].health_check.kind",
        "\"icmp\" is not one of",
    );
}

#[test]
fn an_http_check_path_must_make_a_request_target() {
    // Percent-encoded, 30,000 'ü's are 180,000 bytes: more than a
    // request target may hold.
    let path = format!("/{}", "\u{fc}".repeat(30_000));
    let errors = invalid(&vs_with(&format!(
        r#"health_check = {{ kind = "https", path = "{path}" }}"#
    )));
    assert_error(
        &errors,
        9,
        "virtual_server[0].health_check.path",
        "makes no valid request target",
    );
    // Anything else is percent-encoded into one.
    let path = format!("/{}?q=<\"#`>{{}}", "a".repeat(20_000));
    let config = valid(&vs_with(&format!(
        r#"health_check = {{ kind = "http", path = '{path}' }}"#
    )));
    let HealthCheckKind::Http(http) = &config.virtual_servers[0].health_check.kind else {
        panic!("an http check");
    };
    assert_eq!(http.path, path);
}

#[test]
fn addresses_must_be_unicast() {
    let errors = invalid(
        &MINIMAL
            .replace("192.0.2.10", "224.0.0.1")
            .replace("10.0.0.11", "0.0.0.0"),
    );
    assert_error(
        &errors,
        7,
        "virtual_server[0].address",
        "not a unicast address",
    );
    assert_error(
        &errors,
        11,
        "virtual_server[0].backend[0].address",
        "not a unicast address",
    );
    let errors = invalid(&MINIMAL.replace("10.0.0.11", "10.0.0"));
    assert_error(
        &errors,
        11,
        "virtual_server[0].backend[0].address",
        "\"10.0.0\" is not an IP address",
    );
}

#[test]
fn virtual_servers_need_a_dataplane() {
    let errors = invalid(&MINIMAL.replace("[dataplane]\ninterfaces = [\"eth0\"]\n", ""));
    assert_error(
        &errors,
        3,
        "dataplane",
        "virtual servers need a [dataplane] section",
    );
}

#[test]
fn an_empty_file_is_an_error() {
    let errors = invalid("# nothing\n");
    assert_error(&errors, 1, "(config)", "configures nothing");
}

#[test]
fn flow_table_size_has_an_upper_bound() {
    let config = |size: u64| {
        MINIMAL.replace(
            "interfaces = [\"eth0\"]",
            &format!("interfaces = [\"eth0\"]\nflow_table_size = {size}"),
        )
    };
    let errors = invalid(&config((1 << 28) + 1));
    assert_error(&errors, 4, "dataplane.flow_table_size", "out of range");
    let dataplane = valid(&config(1 << 28)).dataplane.expect("a dataplane");
    assert_eq!(dataplane.flow_table_size, 1 << 28);
}

#[test]
fn dataplane_rules() {
    let errors = invalid(&MINIMAL.replace(
        "interfaces = [\"eth0\"]",
        r#"interfaces = ["eth0", "eth0", "a/b"]
xdp_mode = "fast"
flow_table_size = 0
maglev_table_size = 65536
pin_path = "bpf/lb"
max_virtual_servers = 0
tunnel_source_v4 = "172.16.0.0/24"
tunnel_source_v6 = "fd00::1/96""#,
    ));
    assert_error(&errors, 3, "dataplane.interfaces[1]", "listed twice");
    assert_error(
        &errors,
        3,
        "dataplane.interfaces[2]",
        "not a valid interface name",
    );
    assert_error(
        &errors,
        4,
        "dataplane.xdp_mode",
        "\"fast\" is not one of \"auto\", \"driver\", \"generic\"",
    );
    assert_error(&errors, 5, "dataplane.flow_table_size", "out of range");
    assert_error(
        &errors,
        6,
        "dataplane.maglev_table_size",
        "65536 is not a prime (the next prime is 65537)",
    );
    assert_error(&errors, 7, "dataplane.pin_path", "not an absolute path");
    assert_error(
        &errors,
        8,
        "dataplane.max_virtual_servers",
        "out of range 1..=65536",
    );
    assert_error(&errors, 9, "dataplane.tunnel_source_v4", "must be a /16");
    assert_error(
        &errors,
        10,
        "dataplane.tunnel_source_v6",
        "host bits set; did you mean fd00::/96?",
    );

    let errors = invalid(&MINIMAL.replace("interfaces = [\"eth0\"]", "interfaces = []"));
    assert_error(&errors, 3, "dataplane.interfaces", "at least one");
    let errors = invalid(&MINIMAL.replace(
        "interfaces = [\"eth0\"]",
        "interfaces = [\"eth0\"]\nmax_virtual_servers = 65536\nmaglev_table_size = 65537",
    ));
    assert_error(
        &errors,
        5,
        "dataplane.maglev_table_size",
        "exceeds the 2^32 entries",
    );
}

#[test]
fn more_virtual_servers_than_the_maps_hold() {
    let errors = invalid(&format!(
        "{}\n[[virtual_server]]\nname = \"two\"\naddress = \"192.0.2.11\"\nhealth_check = {{ kind = \"none\" }}\n",
        MINIMAL.replace(
            "interfaces = [\"eth0\"]",
            "interfaces = [\"eth0\"]\nmax_virtual_servers = 1"
        )
    ));
    assert_error(
        &errors,
        14,
        "virtual_server[1]",
        "exceed dataplane.max_virtual_servers = 1",
    );
}

#[test]
fn maglev_table_must_exceed_the_backend_count() {
    let errors = invalid(&format!(
        "{}\n[[virtual_server.backend]]\naddress = \"10.0.0.12\"\n\n[[virtual_server.backend]]\naddress = \"10.0.0.13\"\n",
        MINIMAL.replace(
            "interfaces = [\"eth0\"]",
            "interfaces = [\"eth0\"]\nmaglev_table_size = 3"
        )
    ));
    assert_error(
        &errors,
        6,
        "virtual_server[0].backend",
        "3 backends need a maglev_table_size larger than 3",
    );
}

#[test]
fn listen_addresses() {
    let errors = invalid(&format!(
        "{MINIMAL}\n[metrics]\nlisten = \"localhost\"\n\n[admin]\nlisten = \"127.0.0.1:9100\"\n"
    ));
    assert_error(&errors, 14, "metrics.listen", "not an address and port");
    // The bad metrics address falls back to its default, which admin repeats.
    assert_error(&errors, 17, "admin.listen", "is also metrics.listen");
    let config = valid(&format!("{MINIMAL}\n[admin]\nlisten = \"[::1]:9999\"\n"));
    assert_eq!(config.admin.listen.to_string(), "[::1]:9999");
}

const INSTANCE: &str = r#"
[[vrrp.instance]]
name = "VI_1"
interface = "eth0"
vrid = 51
virtual_addresses = ["192.0.2.10/24"]
"#;

#[test]
fn vrrp_ranges() {
    let errors = invalid(&INSTANCE.replace(
        "vrid = 51",
        "vrid = 0\nversion = 4\npriority = 256\npreempt_delay = \"2h\"\nnotify = \"notify.sh\"",
    ));
    assert_error(
        &errors,
        5,
        "vrrp.instance[0].vrid",
        "0 is out of range 1..=255",
    );
    assert_error(&errors, 6, "vrrp.instance[0].version", "4 is not 2 or 3");
    assert_error(
        &errors,
        7,
        "vrrp.instance[0].priority",
        "256 is out of range 1..=255",
    );
    assert_error(&errors, 8, "vrrp.instance[0].preempt_delay", "at most 1h");
    assert_error(
        &errors,
        9,
        "vrrp.instance[0].notify",
        "not an absolute path",
    );
    let errors = invalid("[[vrrp.instance]]\nname = \"bad name\"\n");
    assert_error(&errors, 2, "vrrp.instance[0].name", "not a valid name");
    assert_error(
        &errors,
        1,
        "vrrp.instance[0].interface",
        "missing required field",
    );
    assert_error(
        &errors,
        1,
        "vrrp.instance[0].vrid",
        "missing required field",
    );
    assert_error(
        &errors,
        1,
        "vrrp.instance[0].virtual_addresses",
        "missing required field",
    );
}

#[test]
fn advert_interval_ranges_per_version() {
    let with = |extra: &str| INSTANCE.replace("vrid = 51", &format!("vrid = 51\n{extra}"));
    let interval = |extra: &str| valid(&with(extra)).vrrp.remove(0).advert_interval;
    assert_eq!(
        interval("advert_interval = \"40s 950ms\""),
        Duration::from_millis(40_950)
    );
    assert_eq!(
        interval("advert_interval = \"10ms\""),
        Duration::from_millis(10)
    );
    assert_eq!(
        interval("version = 2\nadvert_interval = \"255s\""),
        Duration::from_secs(255)
    );

    let field = "vrrp.instance[0].advert_interval";
    assert_error(
        &invalid(&with("advert_interval = \"41s\"")),
        6,
        field,
        "at most 40.95s",
    );
    assert_error(
        &invalid(&with("advert_interval = \"15ms\"")),
        6,
        field,
        "multiple of 10ms",
    );
    assert_error(
        &invalid(&with("advert_interval = \"0s\"")),
        6,
        field,
        "from 10ms",
    );
    assert_error(
        &invalid(&with("version = 2\nadvert_interval = \"1500ms\"")),
        7,
        field,
        "whole seconds",
    );
    assert_error(
        &invalid(&with("version = 2\nadvert_interval = \"256s\"")),
        7,
        field,
        "at most 255s",
    );
}

#[test]
fn vrrp_address_families() {
    let errors = invalid(&INSTANCE.replace(
        "[\"192.0.2.10/24\"]",
        "[\"192.0.2.10/24\", \"2001:db8::1/64\", \"192.0.2.10\", \"x\"]\nunicast_peers = [\"2001:db8::2\", \"192.0.2.2\", \"192.0.2.2\"]",
    ));
    let field = "vrrp.instance[0].virtual_addresses";
    assert_error(&errors, 6, &format!("{field}[1]"), "mixes IPv4 and IPv6");
    assert_error(&errors, 6, &format!("{field}[2]"), "listed twice");
    assert_error(&errors, 6, &format!("{field}[3]"), "not an address");
    assert_error(&errors, 7, "vrrp.instance[0].unicast_peers[0]", "family");
    assert_error(
        &errors,
        7,
        "vrrp.instance[0].unicast_peers[2]",
        "listed twice",
    );
    let errors = invalid(
        &INSTANCE
            .replace("vrid = 51", "vrid = 51\nversion = 2")
            .replace("192.0.2.10/24", "2001:db8::1"),
    );
    assert_error(&errors, 7, &format!("{field}[0]"), "IPv4 only");
    let errors = invalid(&INSTANCE.replace("[\"192.0.2.10/24\"]", "[]"));
    assert_error(&errors, 6, field, "at least one");
    let v6 = valid(&INSTANCE.replace("192.0.2.10/24", "2001:db8::10/64"));
    assert!(v6.vrrp[0].is_ipv6());
}

#[test]
fn vrids_may_repeat_across_interfaces_and_families_only() {
    let second = |interface: &str, address: &str| {
        INSTANCE
            .replace("VI_1", "VI_2")
            .replace("eth0", interface)
            .replace("192.0.2.10/24", address)
    };
    valid(&format!("{INSTANCE}{}", second("eth1", "192.0.2.20/24")));
    valid(&format!("{INSTANCE}{}", second("eth0", "2001:db8::20/64")));
    let errors = invalid(&format!("{INSTANCE}{}", second("eth0", "192.0.2.20/24")));
    assert_error(
        &errors,
        11,
        "vrrp.instance[1].vrid",
        "vrid 51 on eth0 (IPv4) is already used by the instance on line 5",
    );
}

#[test]
fn vrrp_names_and_addresses_are_unique() {
    let second = INSTANCE.replace("eth0", "eth1");
    let errors = invalid(&format!("{INSTANCE}{second}"));
    assert_error(
        &errors,
        9,
        "vrrp.instance[1].name",
        "already the name of the instance on line 3",
    );
    assert_error(
        &errors,
        12,
        "vrrp.instance[1].virtual_addresses[0]",
        "192.0.2.10 is also in vrrp.instance[0]",
    );
}

#[test]
fn track_rules() {
    let with = |track: &str| format!("{}track = [ {track} ]\n", INSTANCE);
    let errors = invalid(&with(r#"{ virtual_server = "web", weight = -60 }"#));
    assert_error(
        &errors,
        7,
        "vrrp.instance[0].track[0].virtual_server",
        "no virtual server named \"web\"",
    );
    let errors = invalid(&with(
        r#"{ interface = "eth1", script = "/bin/true" }, { weight = 1 }"#,
    ));
    assert_error(&errors, 7, "vrrp.instance[0].track[0]", "exactly one of");
    assert_error(&errors, 7, "vrrp.instance[0].track[1]", "exactly one of");
    let errors = invalid(&with(
        r#"{ interface = "eth1", weight = 255, interval = "1s" }"#,
    ));
    assert_error(
        &errors,
        7,
        "vrrp.instance[0].track[0].weight",
        "out of range -254..=254",
    );
    assert_error(
        &errors,
        7,
        "vrrp.instance[0].track[0].interval",
        "only a script",
    );
    let errors = invalid(&with(r#"{ script = "check.sh", interval = "0s" }"#));
    assert_error(
        &errors,
        7,
        "vrrp.instance[0].track[0].script",
        "not an absolute path",
    );
    assert_error(
        &errors,
        7,
        "vrrp.instance[0].track[0].interval",
        "more than 0s",
    );
}

#[test]
fn warnings_do_not_fail_the_config() {
    let checked = parse_checked(MINIMAL, FILE).unwrap();
    let warning = checked.warnings[0].to_string();
    assert!(
        warning.starts_with(
            "lb.toml:7:11: warning: virtual_server[0].address: 192.0.2.10 is in no vrrp instance"
        ),
        "{warning}"
    );

    let with_vrrp = format!("{MINIMAL}{INSTANCE}");
    assert!(parse_checked(&with_vrrp, FILE).unwrap().warnings.is_empty());

    let no_backends = "[dataplane]\ninterfaces = [\"eth0\"]\n[[virtual_server]]\nname = \"a\"\naddress = \"192.0.2.10\"\n";
    let checked = parse_checked(&format!("{no_backends}{INSTANCE}"), FILE).unwrap();
    assert!(
        checked.warnings[0]
            .to_string()
            .contains("virtual_server[0].backend: no backends")
    );
}

#[test]
fn the_design_example_is_valid() {
    let text = include_str!("../../../tests/fixtures/config/full.toml");
    let config = valid(text);
    assert_eq!(config.virtual_servers.len(), 1);
    assert_eq!(config.backend_count(), 1);
    let instance = &config.vrrp[0];
    assert_eq!(instance.priority, 150);
    assert_eq!(
        instance.notify,
        Some(PathBuf::from("/usr/local/bin/lb-notify"))
    );
    assert_eq!(instance.track.len(), 2);
    let vs = config.virtual_server("web").unwrap();
    assert_eq!(vs.address, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)));
    assert_eq!(vs.protocol.number(), 6);
    let HealthCheckKind::Http(http) = &vs.health_check.kind else {
        panic!("{:?}", vs.health_check.kind);
    };
    assert_eq!(http.path, "/healthz");
}

#[test]
fn arbitrary_bytes_never_panic() {
    // Truncations of a valid file at every character: each is either
    // valid or a list of located errors.
    let text = include_str!("../../../tests/fixtures/config/full.toml");
    for (end, _) in text.char_indices() {
        if let Err(errors) = parse(&text[..end], FILE) {
            assert!(!errors.is_empty());
            assert!(errors.to_string().starts_with("lb.toml:"));
        }
    }
}
