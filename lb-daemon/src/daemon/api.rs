//! The admin API's and the metrics endpoint's view of the daemon, and
//! their HTTP servers.
use std::{net::IpAddr, net::SocketAddr, sync::Arc};

use anyhow::{Context, Result};
use tokio::{sync::watch, task::JoinHandle};
use tracing::{error, info};

use super::state::Shared;
use crate::{
    admin::{self, Control, ControlError},
    metrics::Metrics,
    status::{BackendStatus, Status},
    vrrp,
};

/// [`Control`] over the daemon's state and its VRRP instances.
pub struct DaemonControl {
    pub shared: Arc<Shared>,
    pub vrrp: vrrp::View,
}

impl Control for DaemonControl {
    fn status(&self) -> Status {
        let mut status = self.shared.status();
        status.vrrp = self.vrrp.status();
        status
    }

    fn set_drained(
        &self,
        virtual_server: &str,
        backend: IpAddr,
        drained: bool,
    ) -> Result<BackendStatus, ControlError> {
        self.shared.set_drained(virtual_server, backend, drained)
    }
}

/// The admin and metrics servers, stopped together.
pub struct Servers {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Servers {
    /// Binds both listeners (an error names the address that failed) and
    /// serves them.
    pub async fn start(
        admin_listen: SocketAddr,
        metrics_listen: SocketAddr,
        control: Arc<DaemonControl>,
        metrics: Arc<Metrics>,
    ) -> Result<Servers> {
        let admin_listener = tokio::net::TcpListener::bind(admin_listen)
            .await
            .with_context(|| format!("admin API on {admin_listen}"))?;
        let metrics_listener = tokio::net::TcpListener::bind(metrics_listen)
            .await
            .with_context(|| format!("metrics on {metrics_listen}"))?;
        let (stop, stopped) = watch::channel(false);
        let until_stopped = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }
        };
        let admin_task = tokio::spawn({
            let control: Arc<dyn Control> = control.clone();
            let shutdown = until_stopped();
            async move {
                if let Err(e) = admin::serve_admin(admin_listener, control, shutdown).await {
                    error!("admin API: {e}");
                }
            }
        });
        let metrics_task = tokio::spawn({
            let control: Arc<dyn Control> = control;
            let shutdown = until_stopped();
            async move {
                if let Err(e) =
                    admin::serve_metrics(metrics_listener, control, metrics, shutdown).await
                {
                    error!("metrics: {e}");
                }
            }
        });
        info!(admin = %admin_listen, metrics = %metrics_listen, "serving");
        Ok(Servers {
            stop,
            tasks: vec![admin_task, metrics_task],
        })
    }

    /// Stops both servers; requests in progress finish.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
