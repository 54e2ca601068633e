//! `lb-daemon run`.
use std::{path::Path, process::ExitCode};

pub fn run(_config: &Path) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
