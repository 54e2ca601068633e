//! What the daemon knows about each backend beyond the config: its health
//! and its checks by result, whether an operator drained it, and the
//! Ethernet address packets to it are sent to. Turns a virtual server into
//! the data plane's specs. Pure.
use std::{collections::HashMap, net::IpAddr};

use crate::{
    config::{Backend, Config, VirtualServer},
    dataplane::{BackendSpec, VipSpec, programmer::VipId},
    health::Report,
    status::{BackendStatus, CheckCounts, Health},
};

/// Runtime state of one backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendState {
    pub health: Health,
    pub drained: bool,
    /// Ethernet destination (the backend in dsr mode, the next hop in
    /// tunnel mode); `None` until the kernel has resolved it.
    pub mac: Option<[u8; 6]>,
    /// Its health checks since they started.
    pub checks: CheckCounts,
}

impl BackendState {
    /// The status of `backend` in this state, with its (packets, bytes).
    fn status(&self, backend: &Backend, (packets, bytes): (u64, u64)) -> BackendStatus {
        BackendStatus {
            address: backend.address,
            weight: backend.weight,
            drained: self.drained,
            health: self.health,
            next_hop: self.mac.is_some(),
            packets,
            bytes,
            checks: self.checks,
        }
    }
}

impl Default for BackendState {
    /// A new backend is up until its health check says otherwise (it goes
    /// down after `fall` failures), as HAProxy and keepalived start them.
    fn default() -> Self {
        Self {
            health: Health::Up,
            drained: false,
            mac: None,
            checks: CheckCounts::default(),
        }
    }
}

/// The state of every backend of a config: per virtual server, sorted
/// by address (a few bytes per backend, and no allocation per lookup).
#[derive(Clone, Debug, Default)]
pub struct Backends {
    states: HashMap<String, Vec<(IpAddr, BackendState)>>,
}

impl Backends {
    /// Keeps the state of backends still in `config`, forgets the others,
    /// and adds the new ones with the default state.
    pub fn sync(&mut self, config: &Config) {
        let mut states = HashMap::with_capacity(config.virtual_servers.len());
        for vs in &config.virtual_servers {
            let old = self.states.remove(&vs.name).unwrap_or_default();
            let mut new: Vec<_> = vs
                .backends
                .iter()
                .map(|b| {
                    let known = position(&old, b.address).map(|i| old[i].1);
                    (b.address, known.unwrap_or_default())
                })
                .collect();
            new.sort_unstable_by_key(|(address, _)| *address);
            states.insert(vs.name.clone(), new);
        }
        self.states = states;
    }

    pub fn get(&self, virtual_server: &str, address: IpAddr) -> Option<&BackendState> {
        let states = self.states.get(virtual_server)?;
        Some(&states[position(states, address)?].1)
    }

    pub fn get_mut(&mut self, virtual_server: &str, address: IpAddr) -> Option<&mut BackendState> {
        let states = self.states.get_mut(virtual_server)?;
        let i = position(states, address)?;
        Some(&mut states[i].1)
    }

    /// Counts a health-check result with its backend and takes the
    /// verdict it changed to, if any. Whether the backend's health changed;
    /// a result for a backend not in the config (a reload removed it while
    /// it was checked) counts nowhere.
    pub fn apply_check(&mut self, report: &Report) -> bool {
        let Some(state) = self.get_mut(&report.virtual_server, report.backend) else {
            return false;
        };
        state.checks.count(&report.result);
        match report.changed {
            Some(health) if health != state.health => {
                state.health = health;
                true
            }
            _ => false,
        }
    }

    /// Starts the check counts of `backend` of `virtual_server` over (its
    /// checks stopped).
    pub fn forget_checks(&mut self, virtual_server: &str, backend: IpAddr) {
        if let Some(state) = self.get_mut(virtual_server, backend) {
            state.checks = CheckCounts::default();
        }
    }

    /// The states of the backends of `virtual_server`, sorted by address
    /// (empty for one not synced).
    pub fn of_mut(&mut self, virtual_server: &str) -> &mut [(IpAddr, BackendState)] {
        self.states
            .get_mut(virtual_server)
            .map_or(&mut [][..], Vec::as_mut_slice)
    }

    /// The state of each backend of `vs` by address (the default state
    /// for one not synced yet).
    fn of(&self, vs: &VirtualServer) -> impl Fn(IpAddr) -> BackendState + '_ {
        let states = self.states.get(&vs.name).map_or(&[][..], Vec::as_slice);
        move |address| position(states, address).map_or_else(BackendState::default, |i| states[i].1)
    }

    /// How many backends have no Ethernet next hop yet.
    pub fn unresolved(&self) -> usize {
        self.states
            .values()
            .flatten()
            .filter(|(_, s)| s.mac.is_none())
            .count()
    }

    /// Whether at least one backend of `vs` is healthy (a VRRP track input).
    pub fn any_healthy(&self, vs: &VirtualServer) -> bool {
        let state = self.of(vs);
        vs.backends
            .iter()
            .any(|b| state(b.address).health == Health::Up)
    }

    /// The data plane's view of `vs`: a backend takes packets when it is
    /// healthy and its Ethernet address is known; drained or weight-0
    /// backends keep their flows but get no new ones.
    pub fn specs(&self, vs: &VirtualServer) -> (VipSpec, Vec<BackendSpec>) {
        let spec = VipSpec {
            id: vip_id(vs),
            forwarding: vs.forwarding,
        };
        let state_of = self.of(vs);
        let backends = vs
            .backends
            .iter()
            .map(|b| {
                let state = state_of(b.address);
                // The status's rules, so that what it shows is what is programmed.
                let status = state.status(b, (0, 0));
                BackendSpec {
                    address: b.address,
                    mac: state.mac.unwrap_or_default(),
                    weight: status.effective_weight(),
                    up: status.health == Health::Up && status.next_hop,
                    drained: state.drained,
                }
            })
            .collect();
        (spec, backends)
    }

    /// The status of each backend of `vs`, with packet counters from `counter`.
    pub fn status(
        &self,
        vs: &VirtualServer,
        mut counter: impl FnMut(IpAddr) -> (u64, u64),
    ) -> Vec<BackendStatus> {
        let state = self.of(vs);
        vs.backends
            .iter()
            .map(|b| state(b.address).status(b, counter(b.address)))
            .collect()
    }
}

/// Where `address` is in states sorted by address.
fn position(states: &[(IpAddr, BackendState)], address: IpAddr) -> Option<usize> {
    states.binary_search_by_key(&address, |(a, _)| *a).ok()
}

/// The data plane's key of a virtual server.
pub fn vip_id(vs: &VirtualServer) -> VipId {
    VipId {
        address: vs.address,
        port: vs.port,
        protocol: vs.protocol.number(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::{self, test_configs::one_backend_and},
        health::{CheckResult, Failure},
    };

    /// "web" with a second backend, 10.0.0.12, of weight 0.
    fn web() -> String {
        one_backend_and(
            r#"
[[virtual_server.backend]]
address = "10.0.0.12"
weight = 0
"#,
        )
    }

    fn config(text: &str) -> Config {
        config::parse(text, "test.toml").unwrap()
    }

    /// The state of every backend of `config`, new.
    fn synced(config: &Config) -> Backends {
        let mut backends = Backends::default();
        backends.sync(config);
        backends
    }

    #[test]
    fn backends_take_packets_when_healthy_and_resolved_and_new_flows_when_weighted() {
        let config = config(&web());
        let vs = &config.virtual_servers[0];
        let (a, b) = (vs.backends[0].address, vs.backends[1].address);
        let mut backends = synced(&config);

        let (spec, specs) = backends.specs(vs);
        assert_eq!(spec.id.port, 80);
        assert_eq!(spec.id.protocol, 6);
        assert!(specs.iter().all(|s| !s.up), "no MAC yet: no packets");

        for address in [a, b] {
            backends.get_mut("web", address).unwrap().mac = Some([2, 0, 0, 0, 0, 1]);
        }
        let (_, specs) = backends.specs(vs);
        assert!(specs.iter().all(|s| s.up));
        assert_eq!((specs[0].weight, specs[1].weight), (100, 0));

        backends.get_mut("web", a).unwrap().drained = true;
        backends.get_mut("web", b).unwrap().health = Health::Down;
        let (_, specs) = backends.specs(vs);
        assert_eq!((specs[0].weight, specs[0].up), (0, true), "drained");
        assert!(!specs[1].up, "down");
        assert!(backends.any_healthy(vs));
        backends.get_mut("web", a).unwrap().health = Health::Down;
        assert!(!backends.any_healthy(vs));

        let status = backends.status(vs, |addr| (u64::from(addr == a), 7));
        assert_eq!(status[0].packets, 1);
        assert!(status[0].drained && !status[0].takes_new_flows());
        assert_eq!(status[1].health, Health::Down);
    }

    /// A check result is counted with its backend and its verdict taken;
    /// a backend removed from the config counts nothing; the counts go on
    /// through a reload that keeps the backend, and start over when its
    /// checks stop or it leaves.
    #[test]
    fn check_results_are_counted_with_their_backend() {
        let old = config(&web());
        let vs = &old.virtual_servers[0];
        let (a, b) = (vs.backends[0].address, vs.backends[1].address);
        let mut backends = synced(&old);
        let report = |backend, result: CheckResult, changed| Report {
            virtual_server: "web".into(),
            backend,
            result,
            duration: std::time::Duration::from_millis(1),
            changed,
        };
        assert!(!backends.apply_check(&report(a, CheckResult::Success, None)));
        assert!(!backends.apply_check(&report(a, CheckResult::Timeout, None)));
        let down = report(a, Failure::Refused.into(), Some(Health::Down));
        assert!(backends.apply_check(&down), "a verdict change");
        assert!(!backends.apply_check(&down), "already down");
        let counts = |backends: &Backends, address| backends.get("web", address).unwrap().checks;
        let expected = CheckCounts {
            success: 1,
            failure: 2,
            timeout: 1,
        };
        assert_eq!(counts(&backends, a), expected);
        assert_eq!(backends.get("web", a).unwrap().health, Health::Down);
        assert_eq!(counts(&backends, b), CheckCounts::default());

        let gone: IpAddr = "10.0.0.99".parse().unwrap();
        assert!(!backends.apply_check(&report(gone, CheckResult::Success, Some(Health::Up))));
        assert!(backends.get("web", gone).is_none());

        // A reload that keeps `a` and drops `b` keeps `a`'s counts.
        backends.apply_check(&report(b, CheckResult::Success, None));
        backends.sync(&config(&web().replace("10.0.0.12", "10.0.0.13")));
        assert_eq!(counts(&backends, a), expected);
        assert!(backends.get("web", b).is_none());
        backends.sync(&old);
        assert_eq!(counts(&backends, b), CheckCounts::default(), "back anew");
        backends.forget_checks("web", a);
        assert_eq!(counts(&backends, a), CheckCounts::default());
    }

    #[test]
    fn sync_keeps_known_backends_and_forgets_removed_ones() {
        let old = config(&web());
        let mut backends = synced(&old);
        let a = old.virtual_servers[0].backends[0].address;
        let b = old.virtual_servers[0].backends[1].address;
        backends.get_mut("web", a).unwrap().drained = true;
        let new = config(&web().replace("10.0.0.12", "10.0.0.13"));
        backends.sync(&new);
        assert!(backends.get("web", a).unwrap().drained);
        assert!(backends.get("web", b).is_none());
        let c = new.virtual_servers[0].backends[1].address;
        assert_eq!(backends.get("web", c), Some(&BackendState::default()));
    }
}
