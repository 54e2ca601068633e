//! `lb-daemon check` on fixture files: the real binary, its exit status
//! and what it prints.
use std::process::Command;

struct Output {
    success: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn check(path: &str) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_lb-daemon"))
        .args(["check", "--config", path])
        .output()
        .expect("lb-daemon runs");
    Output {
        success: output.status.success(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/config/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn example(name: &str) -> String {
    format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[track_caller]
fn assert_valid(path: &str, summary: &str) {
    let out = check(path);
    assert!(out.success, "{path} should be valid:\n{}", out.stderr);
    assert_eq!(out.stdout, format!("{path}: OK ({summary})\n"));
}

#[track_caller]
fn assert_invalid(path: &str) -> String {
    let out = check(path);
    assert!(!out.success, "{path} should be invalid:\n{}", out.stdout);
    assert_eq!(out.code, Some(1));
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    out.stderr
}

#[track_caller]
fn assert_line(stderr: &str, expected: &str) {
    assert!(
        stderr.lines().any(|line| line.starts_with(expected)),
        "no line starting with {expected:?} in:\n{stderr}"
    );
}

#[test]
fn the_design_example_is_valid() {
    assert_valid(
        &fixture("full.toml"),
        "1 virtual servers, 1 backends, 1 VRRP instances",
    );
}

#[test]
fn a_pure_vrrp_config_is_valid() {
    assert_valid(
        &fixture("vrrp-only.toml"),
        "0 virtual servers, 0 backends, 2 VRRP instances",
    );
}

#[test]
fn the_shipped_examples_are_valid() {
    assert_valid(
        &example("lb.toml"),
        "3 virtual servers, 6 backends, 2 VRRP instances",
    );
    assert_valid(
        &example("vrrp-only.toml"),
        "0 virtual servers, 0 backends, 2 VRRP instances",
    );
    // Every VIP of the example is held by a VRRP instance: no warnings.
    assert_eq!(check(&example("lb.toml")).stderr, "");
}

#[test]
fn an_unknown_field_names_file_line_and_field() {
    let path = fixture("unknown-field.toml");
    let stderr = assert_invalid(&path);
    assert_line(
        &stderr,
        &format!("{path}:11:1: virtual_server[0].backend[0].wieght: unknown field `wieght`"),
    );
    assert!(stderr.ends_with(&format!("{path}: 1 error\n")), "{stderr}");
}

#[test]
fn a_syntax_error_names_file_and_line() {
    let path = fixture("syntax.toml");
    let stderr = assert_invalid(&path);
    assert_line(&stderr, &format!("{path}:5:8: syntax error: "));
    assert!(stderr.contains("syntax error"), "{stderr}");
}

#[test]
fn every_semantic_error_is_listed_one_per_line() {
    let path = fixture("semantic.toml");
    let stderr = assert_invalid(&path);
    for expected in [
        ":3:21: dataplane.maglev_table_size: 65536 is not a prime",
        ":9:19: vrrp.instance[0].advert_interval:",
        ":11:30: vrrp.instance[0].track[0].virtual_server: there is no virtual server named \"api\"",
        ":20:10: virtual_server[0].backend[0].weight: 70000 is out of range 0..=65535",
        ":23:11: virtual_server[0].backend[1].address: backend 10.0.0.11 is listed twice",
        ":26:8: virtual_server[1].name: \"web\" is already the name of the virtual server on line 14",
        ":27:11: virtual_server[1].address: 192.0.2.10 port 80 tcp is already the virtual server on line 15",
        ":30:25: virtual_server[1].backend[0].address: forwarding = \"dsr\" needs backends of the VIP's family",
    ] {
        assert_line(&stderr, &format!("{path}{expected}"));
    }
    assert!(stderr.ends_with(&format!("{path}: 8 errors\n")), "{stderr}");
}

#[test]
fn a_missing_file_is_an_error() {
    let stderr = assert_invalid("/nonexistent/lb.toml");
    assert_line(&stderr, "/nonexistent/lb.toml: cannot read the file");
}
