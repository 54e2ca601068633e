//! `lb-daemon decap`.
use std::{net::IpAddr, process::ExitCode};

pub fn decap(
    _interface: &str,
    _vips: &[IpAddr],
    _generic: bool,
    _detach: bool,
) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
