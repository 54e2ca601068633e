//! The running daemon (`lb-daemon run`): the data plane programmed from the
//! config, backends' health and next hops kept current in the maps, VRRP,
//! the admin API and the metrics, reloads on SIGHUP and a graceful stop on
//! SIGTERM or SIGINT.
//!
//! - [`backends`]: health, drain and next hop of each backend; the specs
//!   the maps are programmed from (pure).
//! - [`dataplane`]: the balancer program adopted or loaded, attached,
//!   detached on a graceful stop.
//! - [`state`]: the daemon's state behind one lock, and every change to it.
pub mod backends;
pub mod dataplane;
pub mod state;

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use crate::{
    config::{self, Config},
    vrrp::Vrrp,
};
use state::Shared;

/// How often next hops are looked up again (and stale ones re-confirmed).
const NEIGHBOUR_REFRESH: Duration = Duration::from_secs(1);

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(path: &Path, config: Config) -> Result<()> {
    let vrrp_instances = config.vrrp.clone();
    let shared = Arc::new(tokio::task::block_in_place(|| Shared::start(config))?);
    let mut vrrp = Vrrp::start(vrrp_instances).await?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut refresh = tokio::time::interval(NEIGHBOUR_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!("running");
    loop {
        tokio::select! {
            _ = hangup.recv() => reload(path, &shared, &mut vrrp).await,
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = refresh.tick() => {
                for vs in shared.config().virtual_servers {
                    vrrp.set_virtual_server_healthy(&vs.name, shared.any_healthy(&vs.name));
                }
                let shared = shared.clone();
                let result = tokio::task::spawn_blocking(move || shared.refresh_next_hops()).await;
                if let Ok(Err(error)) = result {
                    warn!("refreshing next hops: {error:#}");
                }
            }
        }
    }
    info!("stopping");
    // Masters hand over (priority 0) and remove their addresses first.
    vrrp.shutdown().await;
    let shared = Arc::into_inner(shared).context("the daemon's state is still shared")?;
    tokio::task::block_in_place(|| shared.stop());
    Ok(())
}

/// SIGHUP: the new file is applied if valid; otherwise the old config stays.
async fn reload(path: &Path, shared: &Arc<Shared>, vrrp: &mut Vrrp) {
    let config = match config::load(path) {
        Ok(config) => config,
        Err(errors) => {
            error!("reload rejected, the running config stays in force:\n{errors}");
            return;
        }
    };
    if let Err(error) = vrrp.reload(config.vrrp.clone()).await {
        error!("VRRP reload incomplete: {error:#}");
    }
    let shared = shared.clone();
    match tokio::task::spawn_blocking(move || shared.reload(config)).await {
        Ok(Ok(())) => info!("reloaded"),
        Ok(Err(error)) => error!("reload failed: {error:#}"),
        Err(error) => error!("reload failed: {error}"),
    }
}
