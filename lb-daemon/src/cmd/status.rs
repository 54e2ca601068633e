//! `lb-daemon status`.
use std::{net::SocketAddr, process::ExitCode};

pub fn status(_admin: SocketAddr) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
