//! `lb-daemon run`: the daemon in the foreground, logging to stderr.
use std::{path::Path, process::ExitCode};

use anyhow::Context;

use crate::{config, daemon};

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let config = match config::load(path) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::FAILURE);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    crate::memory::limit_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(daemon::run(path, config))?;
    Ok(ExitCode::SUCCESS)
}
