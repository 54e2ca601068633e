//! The notify command: run as `notify INSTANCE STATE` on every state
//! change (STATE is `MASTER`, `BACKUP`, `FAULT` or `INITIALIZE`, as
//! keepalived spells them), without waiting for it.
use std::{path::Path, process::Stdio};

use crate::status::VrrpState;

/// The state as the notify command receives it.
pub fn state_argument(state: VrrpState) -> &'static str {
    match state {
        VrrpState::Initialize => "INITIALIZE",
        VrrpState::Backup => "BACKUP",
        VrrpState::Master => "MASTER",
        VrrpState::Fault => "FAULT",
    }
}

/// Starts `command INSTANCE STATE`; its exit is awaited (and a failure
/// logged) on a task of its own.
pub fn notify(command: &Path, instance: &str, state: VrrpState) {
    let spawned = tokio::process::Command::new(command)
        .arg(instance)
        .arg(state_argument(state))
        .stdin(Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            tracing::warn!(instance, command = %command.display(), %error, "cannot run notify");
            return;
        }
    };
    let command = command.display().to_string();
    let instance = instance.to_owned();
    tokio::spawn(async move {
        match child.wait().await {
            Ok(status) if status.success() => {}
            Ok(status) => tracing::warn!(instance, command, %status, "notify failed"),
            Err(error) => tracing::warn!(instance, command, %error, "waiting for notify"),
        }
    });
}
