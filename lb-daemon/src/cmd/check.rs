//! `lb-daemon check`: validates a config file without running anything.
use std::{path::Path, process::ExitCode};

use crate::config;

/// Prints `FILE: OK (N virtual servers, M backends, K VRRP instances)`
/// (warnings on stderr), or every error one per line on stderr as
/// `file:line:column: field: message` and exits with status 1.
pub fn check(config: &Path) -> anyhow::Result<ExitCode> {
    match config::load_checked(config) {
        Ok(checked) => {
            for warning in &checked.warnings {
                eprintln!("{warning}");
            }
            let loaded = &checked.config;
            println!(
                "{}: OK ({} virtual servers, {} backends, {} VRRP instances)",
                config.display(),
                loaded.virtual_servers.len(),
                loaded.backend_count(),
                loaded.vrrp.len(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!("{errors}");
            let plural = if errors.len() == 1 { "" } else { "s" };
            eprintln!("{}: {} error{plural}", config.display(), errors.len());
            Ok(ExitCode::FAILURE)
        }
    }
}
