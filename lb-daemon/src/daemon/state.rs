//! The daemon's state behind one lock: the config in force, the backends'
//! runtime state and the data plane. Every change (reload, health result,
//! drain, next-hop change) goes through here and reprograms exactly the
//! virtual servers it touches.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use tracing::{info, warn};

use super::{
    backends::{Backends, vip_id},
    dataplane::Dataplane,
    next_hops::{NextHop, NextHops},
};
use crate::{
    admin::ControlError,
    config::{Config, Forwarding, VirtualServer, diff},
    health::{Report, Supervisor, Target},
    status::{BackendStatus, Health, Status, VirtualServerStatus},
};

struct Inner {
    config: Config,
    backends: Backends,
    dataplane: Option<Dataplane>,
    next_hops: NextHops,
}

/// The daemon's state, shared by its tasks.
pub struct Shared {
    inner: Mutex<Inner>,
}

impl Shared {
    /// Adopts or loads the data plane and programs every virtual server;
    /// virtual servers an adopted program has but the config lacks are removed.
    pub fn start(config: Config) -> Result<Self> {
        let dataplane = config
            .dataplane
            .as_ref()
            .map(|d| Dataplane::start(d, config.backend_count()))
            .transpose()?;
        let mut backends = Backends::default();
        backends.sync(&config);
        if let Some(dataplane) = &dataplane {
            keep_adopted_drains(&mut backends, &config, dataplane);
        }
        let shared = Self {
            inner: Mutex::new(Inner {
                config,
                backends,
                dataplane,
                next_hops: NextHops::default(),
            }),
        };
        {
            let mut inner = shared.lock();
            resolve_first_next_hops(&mut inner);
            remove_unconfigured(&mut inner)?;
            let names: BTreeSet<String> = inner
                .config
                .virtual_servers
                .iter()
                .map(|vs| vs.name.clone())
                .collect();
            program_all(&mut inner, &names)?;
        }
        Ok(shared)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies a new, valid config: virtual servers added, removed or
    /// changed are reprogrammed; the others are not touched, so their flows
    /// go on. A `[dataplane]` change reloads the program.
    pub fn reload(&self, config: Config) -> Result<()> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let changes = diff::diff(&inner.config, &config);
        if changes.is_empty() {
            info!("reload: nothing changed");
            return Ok(());
        }
        if changes.metrics_changed || changes.admin_changed {
            warn!("reload: the admin and metrics listeners keep their addresses until a restart");
        }
        if changes.needs_program_reload() {
            warn!("reload: [dataplane] changed; the program is loaded again and flows start over");
            if let Some(dataplane) = inner.dataplane.take() {
                dataplane.stop();
            }
            inner.dataplane = config
                .dataplane
                .as_ref()
                .map(|d| Dataplane::start(d, config.backend_count()))
                .transpose()?;
        }
        let mut touched: BTreeSet<String> = changes.virtual_servers_added.iter().cloned().collect();
        touched.extend(
            changes
                .virtual_servers_changed
                .iter()
                .filter(|c| c.touches_maps())
                .map(|c| c.name.clone()),
        );
        if changes.needs_program_reload() {
            touched.extend(config.virtual_servers.iter().map(|vs| vs.name.clone()));
        }
        inner.backends.sync(&config);
        let old = std::mem::replace(&mut inner.config, config);
        touched.extend(resolve_next_hops(inner));
        // Removed virtual servers go, and so does the old VIP entry of one
        // whose address, port or protocol changed.
        let gone = changes.virtual_servers_removed.iter().chain(
            changes
                .virtual_servers_changed
                .iter()
                .filter(|c| c.listener)
                .map(|c| &c.name),
        );
        if let Some(dataplane) = &mut inner.dataplane {
            for vs in gone.filter_map(|name| old.virtual_server(name)) {
                dataplane
                    .balancer_mut()
                    .programmer_mut()
                    .remove(&vip_id(vs))?;
            }
        }
        program_all(inner, &touched)?;
        info!(
            added = changes.virtual_servers_added.len(),
            removed = changes.virtual_servers_removed.len(),
            reprogrammed = touched.len(),
            "reload applied"
        );
        Ok(())
    }

    /// Looks the next hops up again; reprograms the virtual servers whose
    /// backends' Ethernet addresses changed.
    pub fn refresh_next_hops(&self) -> Result<()> {
        let mut inner = self.lock();
        let changed = resolve_next_hops(&mut inner);
        program_all(&mut inner, &changed)
    }

    /// Counts health-check results with their backends and applies the
    /// verdict changes among them: each virtual server whose backends'
    /// health changed is reprogrammed once. A result for a backend a reload
    /// removed counts nowhere.
    pub fn apply_checks(&self, reports: &[Report]) -> Result<()> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let mut changed = BTreeSet::new();
        for report in reports {
            if inner.backends.apply_check(report) {
                changed.insert(report.virtual_server.to_string());
            }
        }
        program_all(inner, &changed)
    }

    /// The health-check targets of the config in force (the new one after
    /// a reload, even one that failed part way, or the old one if it
    /// failed before taking the new one).
    pub fn check_targets(&self) -> Vec<Target> {
        Supervisor::targets(&self.lock().config)
    }

    /// Forgets the check counts of backends whose checks stopped (their
    /// check kind went to none): they are no longer exported.
    pub fn forget_checks(&self, stopped: &[(String, IpAddr)]) {
        let mut inner = self.lock();
        for (virtual_server, backend) in stopped {
            inner.backends.forget_checks(virtual_server, *backend);
        }
    }

    /// Sets every backend's health to what `health` says (after the
    /// checks were changed by a reload); reprograms where it changed.
    pub fn reconcile_health(&self, health: impl Fn(&str, IpAddr) -> Health) -> Result<()> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let mut changed = BTreeSet::new();
        for vs in &inner.config.virtual_servers {
            for backend in &vs.backends {
                let now = health(&vs.name, backend.address);
                if let Some(state) = inner.backends.get_mut(&vs.name, backend.address)
                    && state.health != now
                {
                    state.health = now;
                    changed.insert(vs.name.clone());
                }
            }
        }
        program_all(inner, &changed)
    }

    /// Each virtual server and whether it has a healthy backend (VRRP
    /// tracking).
    pub fn virtual_server_health(&self) -> Vec<(String, bool)> {
        let inner = self.lock();
        inner
            .config
            .virtual_servers
            .iter()
            .map(|vs| (vs.name.clone(), inner.backends.any_healthy(vs)))
            .collect()
    }

    /// Drains (no new flows, established ones stay) or undrains a backend.
    pub fn set_drained(
        &self,
        virtual_server: &str,
        backend: IpAddr,
        drained: bool,
    ) -> Result<BackendStatus, ControlError> {
        let unknown_backend = || ControlError::UnknownBackend {
            virtual_server: virtual_server.to_owned(),
            backend,
        };
        let mut inner = self.lock();
        if inner.config.virtual_server(virtual_server).is_none() {
            return Err(ControlError::UnknownVirtualServer(
                virtual_server.to_owned(),
            ));
        }
        let state = inner
            .backends
            .get_mut(virtual_server, backend)
            .ok_or_else(unknown_backend)?;
        state.drained = drained;
        program(&mut inner, virtual_server).map_err(|e| ControlError::Failed(format!("{e:#}")))?;
        info!(virtual_server, %backend, drained, "drain state changed");
        let vs = inner
            .config
            .virtual_server(virtual_server)
            .ok_or_else(unknown_backend)?;
        let id = vip_id(vs);
        // Counters of this backend only, not a snapshot of all.
        let counter = |address: IpAddr| match &inner.dataplane {
            Some(dataplane) if address == backend => dataplane.backend_traffic(None, &id, address),
            _ => (0, 0),
        };
        inner
            .backends
            .status(vs, counter)
            .into_iter()
            .find(|b| b.address == backend)
            .ok_or_else(unknown_backend)
    }

    /// Virtual servers and the data plane, with counters (VRRP is added by
    /// the caller).
    pub fn status(&self) -> Status {
        status_of(&self.lock())
    }

    /// A graceful stop: the program is detached.
    pub fn stop(&self) {
        if let Some(dataplane) = self.lock().dataplane.take() {
            dataplane.stop();
        }
    }
}

/// Programs one virtual server from the config and the backends' state.
fn program(inner: &mut Inner, name: &str) -> Result<()> {
    program_all(inner, &BTreeSet::from([name.to_owned()]))
}

/// Programs these virtual servers (their Maglev tables built in parallel).
fn program_all(inner: &mut Inner, names: &BTreeSet<String>) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let Inner {
        config,
        backends,
        dataplane,
        ..
    } = inner;
    let Some(dataplane) = dataplane else {
        return Ok(());
    };
    let by_name: HashMap<&str, &VirtualServer> = config
        .virtual_servers
        .iter()
        .map(|vs| (vs.name.as_str(), vs))
        .collect();
    let items: Vec<_> = names
        .iter()
        .filter_map(|name| by_name.get(name.as_str()))
        .map(|vs| backends.specs(vs))
        .collect();
    dataplane
        .balancer_mut()
        .programmer_mut()
        .set_many(&items)
        .with_context(|| format!("programming {} virtual servers", items.len()))
}

/// Drains an operator made through the admin API of the daemon before this
/// one stay in force: an adopted program's backend entries record them
/// (`lb_common::BACKEND_FLAG_DRAINED`).
fn keep_adopted_drains(backends: &mut Backends, config: &Config, dataplane: &Dataplane) {
    let programmer = dataplane.balancer().programmer();
    for vs in &config.virtual_servers {
        let id = vip_id(vs);
        for backend in &vs.backends {
            if programmer.drained(&id, &backend.address)
                && let Some(state) = backends.get_mut(&vs.name, backend.address)
            {
                state.drained = true;
                info!(virtual_server = %vs.name, backend = %backend.address, "kept the drain recorded by the previous daemon");
            }
        }
    }
}

/// Removes the virtual servers an adopted program serves that the config
/// does not name.
fn remove_unconfigured(inner: &mut Inner) -> Result<()> {
    let Some(dataplane) = &mut inner.dataplane else {
        return Ok(());
    };
    let wanted: BTreeSet<_> = inner.config.virtual_servers.iter().map(vip_id).collect();
    let programmer = dataplane.balancer_mut().programmer_mut();
    let stale: Vec<_> = programmer
        .vips()
        .filter(|id| !wanted.contains(id))
        .copied()
        .collect();
    for id in stale {
        info!(vip = %id.address, port = id.port, "removing a virtual server the config no longer has");
        programmer.remove(&id)?;
    }
    Ok(())
}

/// How long a starting daemon waits for the kernel to resolve next hops
/// before it programs the maps (backends still unresolved then get their
/// packets from the first refresh that finds them).
const FIRST_RESOLUTION: Duration = Duration::from_secs(2);

/// At start: resolves next hops, waiting up to [`FIRST_RESOLUTION`] for
/// the solicited ones to answer, so the first rings already hold the
/// backends.
fn resolve_first_next_hops(inner: &mut Inner) {
    let deadline = Instant::now() + FIRST_RESOLUTION;
    loop {
        resolve_next_hops(inner);
        let unresolved = inner.backends.unresolved();
        if unresolved == 0 || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Resolves every backend's Ethernet next hop; returns the names of the
/// virtual servers where one changed. Changes are logged in one line,
/// with an example of each reason a next hop is missing.
fn resolve_next_hops(inner: &mut Inner) -> BTreeSet<String> {
    let mut changed = BTreeSet::new();
    let Inner {
        config,
        backends,
        dataplane: Some(dataplane),
        next_hops,
    } = inner
    else {
        return changed;
    };
    let mut round = next_hops.round(Instant::now());
    let (mut found, mut lost) = (0usize, BTreeMap::<String, (usize, IpAddr)>::new());
    for vs in &config.virtual_servers {
        // In the order of their addresses, as the states are.
        for (address, state) in backends.of_mut(&vs.name) {
            let hop = round.next_hop(*address);
            let mac = usable(dataplane, vs, *address, hop);
            let unchanged = match (&state.mac, &mac) {
                (Some(known), Ok(mac)) => known == mac,
                (None, Err(_)) => true,
                _ => false,
            };
            if unchanged {
                continue;
            }
            match &mac {
                Ok(_) => found += 1,
                Err(reason) => lost.entry(reason.clone()).or_insert((0, *address)).0 += 1,
            }
            state.mac = mac.ok();
            changed.insert(vs.name.clone());
        }
    }
    if found > 0 {
        info!(
            backends = found,
            virtual_servers = changed.len(),
            "next hops resolved"
        );
    }
    for (reason, (count, example)) in lost {
        warn!(backends = count, %example, reason, "no next hop: these backends get no packets");
    }
    changed
}

/// The MAC packets to `backend` go to, if the data plane can send them there.
fn usable(
    dataplane: &Dataplane,
    vs: &VirtualServer,
    backend: IpAddr,
    hop: NextHop,
) -> Result<[u8; 6], String> {
    let (route, mac) = hop?;
    if !dataplane.serves(route.ifindex) {
        return Err("the route leaves through an interface the balancer is not attached to".into());
    }
    if vs.forwarding == Forwarding::Dsr && route.next_hop != backend {
        return Err(
            "dsr needs the backend on the balancer's link, but it is behind a gateway".into(),
        );
    }
    Ok(mac)
}

fn status_of(inner: &Inner) -> Status {
    let counters = inner
        .dataplane
        .as_ref()
        .map(|d| d.counters())
        .transpose()
        .unwrap_or_else(|error| {
            warn!("reading counters: {error:#}");
            None
        });
    let virtual_servers = inner
        .config
        .virtual_servers
        .iter()
        .map(|vs| {
            let id = vip_id(vs);
            let (packets, bytes, flows, backends) = match (&inner.dataplane, &counters) {
                (Some(dataplane), Some(counters)) => {
                    let vip = dataplane.balancer().programmer().vip_traffic(&id, counters);
                    let backends = inner.backends.status(vs, |address| {
                        dataplane.backend_traffic(Some(counters), &id, address)
                    });
                    (vip.packets, vip.bytes, vip.flows, backends)
                }
                _ => (0, 0, 0, inner.backends.status(vs, |_| (0, 0))),
            };
            VirtualServerStatus {
                name: vs.name.clone(),
                address: vs.address,
                port: vs.port,
                protocol: vs.protocol.as_str().to_owned(),
                forwarding: vs.forwarding.as_str().to_owned(),
                packets,
                bytes,
                flows,
                backends,
            }
        })
        .collect();
    Status {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        dataplane: match (&inner.dataplane, &counters) {
            (Some(d), Some(c)) => Some(d.status(c)),
            _ => None,
        },
        virtual_servers,
        vrrp: Vec::new(),
    }
}
