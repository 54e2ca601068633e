//! VRRP (RFC 5798 v3, RFC 3768 v2), interoperable with keepalived.
//!
//! - [`packet`]: advertisement encode/decode and checksums, pure.
//! - [`validate`]: receive validation (§7.1), one discard reason each.
//! - [`state`]: the state machine as a pure function of (state, event, now).
//! - [`track`]: tracked objects to an effective priority or Fault.
//! - [`socket`]: the raw protocol-112 socket (TTL 255, interface-bound).
//! - [`addresses`]: virtual addresses and link state through rtnetlink.
//! - [`announce`]: gratuitous ARP and unsolicited Neighbor Advertisements.
//! - [`notify`]: the notify command.
//! - `instance`: one task per instance, the shell around the machine.
//!
//! [`Vrrp`] is what the daemon holds: it starts, reports on, reloads and
//! stops the instances.
pub mod addresses;
pub mod announce;
mod instance;
pub mod notify;
pub mod packet;
pub mod socket;
pub mod state;
pub mod track;
pub mod validate;

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use instance::{Control, Handle, HealthMap};

use crate::{
    config::{Track, VrrpInstance},
    status::VrrpStatus,
};

/// How long a graceful stop of one instance may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// Counters of one instance, for metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceCounters {
    pub name: String,
    pub adverts_sent: u64,
    /// Adverts that passed validation.
    pub adverts_received: u64,
    /// Discarded adverts by reason ([`validate::Discard::as_str`]), every
    /// reason listed, also at 0.
    pub discards: Vec<(&'static str, u64)>,
}

/// The running VRRP instances.
pub struct Vrrp {
    instances: Vec<Handle>,
    health: Arc<HealthMap>,
    view: View,
}

/// A read-only view of the running instances that other tasks hold (the
/// admin API, the metrics); it follows reloads.
#[derive(Clone, Default)]
pub struct View(Arc<RwLock<Vec<Arc<instance::Shared>>>>);

impl View {
    pub fn status(&self) -> Vec<VrrpStatus> {
        self.read().iter().map(|shared| shared.status()).collect()
    }

    /// Per instance: adverts sent/received, discards per reason (name,
    /// count), for metrics.
    pub fn counters(&self) -> Vec<InstanceCounters> {
        self.read()
            .iter()
            .map(|shared| {
                let status = shared.status();
                InstanceCounters {
                    name: status.name,
                    adverts_sent: status.adverts_sent,
                    adverts_received: status.adverts_received,
                    discards: shared.discards(),
                }
            })
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<instance::Shared>>> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, instances: &[Handle]) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) =
            instances.iter().map(|h| h.shared.clone()).collect();
    }
}

impl Vrrp {
    /// Starts one tokio task per instance (call inside a tokio runtime).
    /// Fails, with nothing left running, if an instance cannot start (no
    /// such interface, no address to send from, no privilege).
    pub async fn start(instances: Vec<VrrpInstance>) -> anyhow::Result<Vrrp> {
        let mut vrrp = Vrrp {
            instances: Vec::new(),
            health: Arc::default(),
            view: View::default(),
        };
        for config in instances {
            match instance::spawn(config, vrrp.health.clone()) {
                Ok(handle) => vrrp.instances.push(handle),
                Err(error) => {
                    vrrp.shutdown().await;
                    return Err(error);
                }
            }
        }
        vrrp.view.publish(&vrrp.instances);
        Ok(vrrp)
    }

    /// A view of the instances for other tasks.
    pub fn view(&self) -> View {
        self.view.clone()
    }

    pub fn status(&self) -> Vec<VrrpStatus> {
        self.view.status()
    }

    /// Per instance: adverts sent/received, discards per reason (name,
    /// count), for metrics.
    pub fn counters(&self) -> Vec<InstanceCounters> {
        self.view.counters()
    }

    /// Track input: virtual server `name` has at least one healthy
    /// backend (true) or none (false). Until told, a virtual server counts
    /// as healthy.
    pub fn set_virtual_server_healthy(&self, name: &str, healthy: bool) {
        let previous = self
            .health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), healthy);
        if previous == Some(healthy) {
            return;
        }
        for handle in &self.instances {
            let tracks = handle
                .config
                .track
                .iter()
                .any(|t| matches!(t, Track::VirtualServer { name: n, .. } if n == name));
            if tracks {
                let _ = handle.control.send(Control::Recheck);
            }
        }
    }

    /// Applies a reloaded config: instances added, removed, or changed
    /// (restarted); unchanged ones untouched. On error (a new or changed
    /// instance cannot start) the instances that could are running and
    /// the others are stopped.
    pub async fn reload(&mut self, instances: Vec<VrrpInstance>) -> anyhow::Result<()> {
        let mut keep = Vec::new();
        let mut wanted: HashMap<String, VrrpInstance> =
            instances.into_iter().map(|i| (i.name.clone(), i)).collect();
        for handle in std::mem::take(&mut self.instances) {
            match wanted.get(&handle.config.name) {
                Some(config) if *config == handle.config => {
                    wanted.remove(&handle.config.name);
                    keep.push(handle);
                }
                _ => {
                    tracing::info!(instance = handle.config.name, "stopping for reload");
                    handle.stop(STOP_TIMEOUT).await;
                }
            }
        }
        self.instances = keep;
        let mut first_error = None;
        let mut added: Vec<VrrpInstance> = wanted.into_values().collect();
        added.sort_by(|a, b| a.name.cmp(&b.name));
        for config in added {
            match instance::spawn(config, self.health.clone()) {
                Ok(handle) => self.instances.push(handle),
                Err(error) => {
                    tracing::error!(error = format!("{error:#}"), "reload");
                    first_error.get_or_insert(error);
                }
            }
        }
        self.view.publish(&self.instances);
        first_error.map_or(Ok(()), Err)
    }

    /// Graceful stop: masters send priority 0 and remove their addresses.
    pub async fn shutdown(self) {
        self.view.publish(&[]);
        let stops = self.instances.into_iter().map(|h| h.stop(STOP_TIMEOUT));
        futures_join_all(stops).await;
    }
}

/// Awaits all `futures` concurrently.
async fn futures_join_all<F: Future<Output = ()> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) {
    let mut set = tokio::task::JoinSet::new();
    for future in futures {
        set.spawn(future);
    }
    while set.join_next().await.is_some() {}
}
