//! `lb-daemon check`.
use std::{path::Path, process::ExitCode};

pub fn check(_config: &Path) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
