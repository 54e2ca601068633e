//! The running daemon (`lb-daemon run`): the data plane programmed from the
//! config, backends' health and next hops kept current in the maps, VRRP,
//! the admin API and the metrics, reloads on SIGHUP and a graceful stop on
//! SIGTERM or SIGINT.
//!
//! - [`api`]: what the admin API and the metrics endpoint see, and their
//!   servers.
//! - [`backends`]: health, check counts, drain and next hop of each
//!   backend; the specs the maps are programmed from (pure).
//! - [`dataplane`]: the balancer program adopted or loaded, attached,
//!   detached on a graceful stop.
//! - [`next_hops`]: backends' Ethernet next hops from the kernel, cached.
//! - [`state`]: the daemon's state behind one lock, and every change to it.
//!
//! Health checks ([`crate::health`]) report to the main loop, which takes
//! the reports waiting in batches: it counts them with their backends and
//! applies changed verdicts to the maps at once (one lock per batch), and
//! feeds VRRP tracking.
pub mod api;
pub mod backends;
pub mod dataplane;
pub mod next_hops;
pub mod state;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Result;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};
use tracing::{error, info, warn};

use crate::{
    config::{self, Config},
    health::{Report, Supervisor},
    metrics::Metrics,
    vrrp::Vrrp,
};
use api::{DaemonControl, Servers};
use state::Shared;

/// How often next hops are looked up again (and stale ones re-confirmed).
const NEIGHBOUR_REFRESH: Duration = Duration::from_secs(1);

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(path: &Path, config: Config) -> Result<()> {
    let vrrp_instances = config.vrrp.clone();
    let targets = Supervisor::targets(&config);
    let (admin_listen, metrics_listen) = (config.admin.listen, config.metrics.listen);
    let shared = Arc::new(tokio::task::block_in_place(|| Shared::start(config))?);
    let vrrp = Vrrp::start(vrrp_instances).await?;
    let metrics = Arc::new(Metrics::new());
    let control = Arc::new(DaemonControl {
        shared: shared.clone(),
        vrrp: vrrp.view(),
    });
    let servers = Servers::start(admin_listen, metrics_listen, control, metrics.clone()).await?;
    let (reports_tx, reports) = mpsc::channel(REPORT_QUEUE);
    let mut health = Supervisor::new(reports_tx);
    health.sync(targets);
    let mut daemon = Daemon {
        path: path.to_owned(),
        shared,
        vrrp,
        health,
        metrics,
        servers,
    };
    daemon.track_virtual_servers();
    crate::memory::release_free_memory();
    daemon.serve(reports).await?;
    daemon.stop().await
}

/// Health reports waiting to be applied before the checks wait.
const REPORT_QUEUE: usize = 1024;
/// Most reports applied under one lock of the daemon's state.
const REPORT_BATCH: usize = 256;

struct Daemon {
    path: PathBuf,
    shared: Arc<Shared>,
    vrrp: Vrrp,
    health: Supervisor,
    metrics: Arc<Metrics>,
    servers: Servers,
}

impl Daemon {
    async fn serve(&mut self, mut reports: mpsc::Receiver<Report>) -> Result<()> {
        let mut batch = Vec::with_capacity(REPORT_BATCH);
        let mut hangup = signal(SignalKind::hangup())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut refresh = tokio::time::interval(NEIGHBOUR_REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        info!("running");
        loop {
            tokio::select! {
                _ = hangup.recv() => self.reload().await,
                _ = terminate.recv() => return Ok(()),
                _ = interrupt.recv() => return Ok(()),
                received = reports.recv_many(&mut batch, REPORT_BATCH) => {
                    // 0 only once every sender is gone: the supervisor,
                    // which lives as long as this loop.
                    if received > 0 {
                        self.health_reports(&mut batch);
                    }
                }
                _ = refresh.tick() => {
                    let shared = self.shared.clone();
                    let result = tokio::task::spawn_blocking(move || shared.refresh_next_hops()).await;
                    if let Ok(Err(error)) = result {
                        warn!("refreshing next hops: {error:#}");
                    }
                }
            }
        }
    }

    /// Health-check results: counted with their backends; a changed
    /// verdict reprograms its virtual server (within this call, so within
    /// one interval of the check) and updates VRRP tracking.
    fn health_reports(&self, batch: &mut Vec<Report>) {
        // A late report of a check a reload stopped is not counted.
        batch.retain(|report| {
            self.health
                .is_checked(&report.virtual_server, report.backend)
        });
        let mut verdicts_changed = false;
        for report in batch.iter() {
            self.metrics
                .observe_check_duration(&report.virtual_server, report.duration);
            if let Some(health) = report.changed {
                verdicts_changed = true;
                info!(
                    virtual_server = %report.virtual_server,
                    backend = %report.backend,
                    health = ?health,
                    result = %report.result,
                    "backend health changed"
                );
            }
        }
        // The state's lock may be held for a while (a scrape reads every
        // counter under it): the worker's other tasks move on meanwhile.
        let applied = tokio::task::block_in_place(|| self.shared.apply_checks(batch));
        if let Err(error) = applied {
            error!("applying health checks: {error:#}");
        }
        batch.clear();
        if verdicts_changed {
            self.track_virtual_servers();
        }
    }

    /// Feeds VRRP tracking: which virtual servers have a healthy backend.
    fn track_virtual_servers(&self) {
        for (name, healthy) in self.shared.virtual_server_health() {
            self.vrrp.set_virtual_server_healthy(&name, healthy);
        }
    }

    /// SIGHUP: the new file is applied if valid; otherwise the old config
    /// stays in force.
    async fn reload(&mut self) {
        let config = match config::load(&self.path) {
            Ok(config) => config,
            Err(errors) => {
                error!("reload rejected, the running config stays in force:\n{errors}");
                return;
            }
        };
        if let Err(error) = self.vrrp.reload(config.vrrp.clone()).await {
            error!("VRRP reload incomplete: {error:#}");
        }
        let shared = self.shared.clone();
        match tokio::task::spawn_blocking(move || shared.reload(config)).await {
            Ok(Ok(())) => info!("reloaded"),
            Ok(Err(error)) => error!("reload failed: {error:#}"),
            Err(error) => error!("reload failed: {error}"),
        }
        // Checks follow the config in force (the old one if the reload
        // failed before taking the new one); a backend whose check went
        // away (kind none) is up again.
        let targets = tokio::task::block_in_place(|| self.shared.check_targets());
        let stopped = self.health.sync(targets);
        tokio::task::block_in_place(|| self.shared.forget_checks(&stopped));
        self.metrics
            .retain_check_durations(|virtual_server| self.health.is_checking(virtual_server));
        let health = &self.health;
        let result = tokio::task::block_in_place(|| {
            self.shared
                .reconcile_health(|vs, backend| health.health(vs, backend))
        });
        if let Err(error) = result {
            error!("applying health after reload: {error:#}");
        }
        self.track_virtual_servers();
        crate::memory::release_free_memory();
        info!("reload complete");
    }

    /// Masters hand over (priority 0) and remove their addresses, checks
    /// and servers stop, then the program is detached.
    async fn stop(self) -> Result<()> {
        info!("stopping");
        self.vrrp.shutdown().await;
        self.health.shutdown().await;
        self.servers.stop().await;
        tokio::task::block_in_place(|| self.shared.stop());
        info!("stopped");
        Ok(())
    }
}
