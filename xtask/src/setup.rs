//! Provisioning: the nightly `rust-src` component, bpf-linker built against
//! Debian's LLVM 22, bpffs, and the Debian packages the tests drive
//! (iproute2, ethtool, keepalived, prometheus, nftables). Every step checks
//! first, so a machine that has everything is done in a second.
use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};

/// Debian packages: bpf-linker's LLVM, and the tools tests use.
const PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "iproute2",
    "ethtool",
    "keepalived",
    // lb-daemon/tests/prometheus.rs scrapes the daemon with a real server.
    "prometheus",
    // The kernel baseline of the packet-rate benchmark (nftables DNAT).
    "nftables",
];

pub fn run() -> anyhow::Result<()> {
    rust_src()?;
    debian_packages()?;
    bpf_linker()?;
    bpffs()?;
    println!("setup: ready");
    Ok(())
}

fn rust_src() -> anyhow::Result<()> {
    let installed = output(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    println!("setup: adding rust-src to the nightly toolchain");
    status(
        "rustup",
        &["component", "add", "rust-src", "--toolchain", "nightly"],
    )
}

fn debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(false)
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("setup: installing {}", missing.join(" "));
    status("apt-get", &["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&missing);
    let ok = Command::new("apt-get")
        .args(&args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("apt-get")?
        .success();
    if !ok {
        bail!("apt-get install {} failed", missing.join(" "));
    }
    // keepalived's and prometheus' packages start a system instance; tests
    // run their own.
    for service in ["keepalived", "prometheus"] {
        let _ = Command::new("systemctl")
            .args(["disable", "--now", service])
            .output();
    }
    Ok(())
}

fn bpf_linker() -> anyhow::Result<()> {
    if which("bpf-linker") {
        return Ok(());
    }
    println!("setup: building bpf-linker against LLVM 22 (a few minutes, once)");
    let ok = Command::new("cargo")
        .args([
            "install",
            "bpf-linker@0.13.0",
            "--no-default-features",
            "--features",
            "llvm-22",
        ])
        .env("LLVM_PREFIX", "/usr/lib/llvm-22")
        .status()
        .context("cargo install bpf-linker")?
        .success();
    if !ok {
        bail!("cargo install bpf-linker failed");
    }
    Ok(())
}

fn bpffs() -> anyhow::Result<()> {
    if !is_root() || Path::new("/sys/fs/bpf").read_dir().is_err() {
        return Ok(());
    }
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf"))
    {
        return Ok(());
    }
    status("mount", &["-t", "bpf", "bpf", "/sys/fs/bpf"])
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        || home_cargo_bin(program)
}

fn home_cargo_bin(program: &str) -> bool {
    std::env::var_os("HOME")
        .is_some_and(|home| Path::new(&home).join(".cargo/bin").join(program).is_file())
}

fn output(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn status(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let ok = Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("running {program}"))?
        .success();
    if !ok {
        bail!("{program} {} failed", args.join(" "));
    }
    Ok(())
}
