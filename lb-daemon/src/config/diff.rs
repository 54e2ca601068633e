//! What changed between two valid configs, for a reload (SIGHUP) that
//! touches only what changed. Pure: no I/O, no state.
//!
//! Virtual servers and VRRP instances are matched by name, backends within
//! a virtual server by address.
use std::net::IpAddr;

use super::model::{Backend, Config, Dataplane, VirtualServer, VrrpInstance};

/// The differences from an old config to a new one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfigDiff {
    /// Names of virtual servers only in the new config.
    pub virtual_servers_added: Vec<String>,
    /// Names of virtual servers only in the old config.
    pub virtual_servers_removed: Vec<String>,
    /// Virtual servers in both that differ.
    pub virtual_servers_changed: Vec<VirtualServerDiff>,
    pub dataplane: DataplaneChange,
    /// Names of VRRP instances only in the new config.
    pub vrrp_added: Vec<String>,
    /// Names of VRRP instances only in the old config.
    pub vrrp_removed: Vec<String>,
    /// Names of VRRP instances in both with any setting changed.
    pub vrrp_changed: Vec<String>,
    /// `metrics.listen` changed.
    pub metrics_changed: bool,
    /// `admin.listen` changed.
    pub admin_changed: bool,
}

impl ConfigDiff {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether the XDP program must be loaded (or unloaded) again: every
    /// `[dataplane]` setting is fixed when the program is loaded and
    /// attached. Established flows do not survive a reload that changes
    /// the flow table.
    pub fn needs_program_reload(&self) -> bool {
        self.dataplane != DataplaneChange::Unchanged
    }
}

/// A change of `[dataplane]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DataplaneChange {
    #[default]
    Unchanged,
    /// The section appeared: load and attach the program.
    Added,
    /// The section is gone: detach the program (a pure VRRP daemon now).
    Removed,
    /// These settings changed.
    Changed(Vec<DataplaneSetting>),
}

/// A setting of `[dataplane]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataplaneSetting {
    Interfaces,
    XdpMode,
    FlowTableSize,
    MaglevTableSize,
    PinPath,
    MaxVirtualServers,
    TunnelSourceV4,
    TunnelSourceV6,
}

/// How one virtual server (same name in both configs) changed.
#[derive(Clone, Debug, PartialEq)]
pub struct VirtualServerDiff {
    pub name: String,
    /// Address, port or protocol changed: the VIP entry is replaced, and
    /// flows to the old one end.
    pub listener: bool,
    pub forwarding: bool,
    pub scheduler: bool,
    pub health_check: bool,
    /// Backends (by address) only in the new config.
    pub backends_added: Vec<Backend>,
    /// Backends (by address) only in the old config.
    pub backends_removed: Vec<Backend>,
    /// Backends in both whose weight or health-check port changed.
    pub backends_changed: Vec<BackendChange>,
}

impl VirtualServerDiff {
    /// Backends whose weight changed (the ring must be rebuilt).
    pub fn backends_reweighted(&self) -> impl Iterator<Item = &BackendChange> {
        self.backends_changed.iter().filter(|c| c.reweighted())
    }

    /// Whether the Maglev ring or the VIP entry must be rewritten.
    pub fn touches_maps(&self) -> bool {
        self.listener
            || self.forwarding
            || self.scheduler
            || !self.backends_added.is_empty()
            || !self.backends_removed.is_empty()
            || self.backends_reweighted().next().is_some()
    }
}

/// A backend present in both configs with different settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendChange {
    pub old: Backend,
    pub new: Backend,
}

impl BackendChange {
    pub fn address(&self) -> IpAddr {
        self.new.address
    }

    pub fn reweighted(&self) -> bool {
        self.old.weight != self.new.weight
    }
}

/// The changes that turn `old` into `new`.
pub fn diff(old: &Config, new: &Config) -> ConfigDiff {
    let mut out = ConfigDiff {
        dataplane: dataplane(old.dataplane.as_ref(), new.dataplane.as_ref()),
        metrics_changed: old.metrics != new.metrics,
        admin_changed: old.admin != new.admin,
        ..ConfigDiff::default()
    };
    for vs in &new.virtual_servers {
        match old.virtual_server(&vs.name) {
            None => out.virtual_servers_added.push(vs.name.clone()),
            Some(before) => {
                if let Some(change) = virtual_server(before, vs) {
                    out.virtual_servers_changed.push(change);
                }
            }
        }
    }
    out.virtual_servers_removed = old
        .virtual_servers
        .iter()
        .filter(|vs| new.virtual_server(&vs.name).is_none())
        .map(|vs| vs.name.clone())
        .collect();

    let find = |list: &'_ [VrrpInstance], name: &str| list.iter().position(|i| i.name == name);
    for instance in &new.vrrp {
        match find(&old.vrrp, &instance.name).map(|i| &old.vrrp[i]) {
            None => out.vrrp_added.push(instance.name.clone()),
            Some(before) if before != instance => out.vrrp_changed.push(instance.name.clone()),
            Some(_) => {}
        }
    }
    out.vrrp_removed = old
        .vrrp
        .iter()
        .filter(|i| find(&new.vrrp, &i.name).is_none())
        .map(|i| i.name.clone())
        .collect();
    out
}

fn dataplane(old: Option<&Dataplane>, new: Option<&Dataplane>) -> DataplaneChange {
    let (old, new) = match (old, new) {
        (None, None) => return DataplaneChange::Unchanged,
        (None, Some(_)) => return DataplaneChange::Added,
        (Some(_), None) => return DataplaneChange::Removed,
        (Some(old), Some(new)) => (old, new),
    };
    let checks = [
        (
            old.interfaces != new.interfaces,
            DataplaneSetting::Interfaces,
        ),
        (old.xdp_mode != new.xdp_mode, DataplaneSetting::XdpMode),
        (
            old.flow_table_size != new.flow_table_size,
            DataplaneSetting::FlowTableSize,
        ),
        (
            old.maglev_table_size != new.maglev_table_size,
            DataplaneSetting::MaglevTableSize,
        ),
        (old.pin_path != new.pin_path, DataplaneSetting::PinPath),
        (
            old.max_virtual_servers != new.max_virtual_servers,
            DataplaneSetting::MaxVirtualServers,
        ),
        (
            old.tunnel_source_v4 != new.tunnel_source_v4,
            DataplaneSetting::TunnelSourceV4,
        ),
        (
            old.tunnel_source_v6 != new.tunnel_source_v6,
            DataplaneSetting::TunnelSourceV6,
        ),
    ];
    let changed: Vec<_> = checks
        .into_iter()
        .filter_map(|(changed, setting)| changed.then_some(setting))
        .collect();
    if changed.is_empty() {
        DataplaneChange::Unchanged
    } else {
        DataplaneChange::Changed(changed)
    }
}

/// `None` if the two are equal.
fn virtual_server(old: &VirtualServer, new: &VirtualServer) -> Option<VirtualServerDiff> {
    if old == new {
        return None;
    }
    let backends_added = new
        .backends
        .iter()
        .filter(|b| old.backend(b.address).is_none())
        .cloned()
        .collect();
    let backends_removed = old
        .backends
        .iter()
        .filter(|b| new.backend(b.address).is_none())
        .cloned()
        .collect();
    let backends_changed = new
        .backends
        .iter()
        .filter_map(|b| {
            let before = old.backend(b.address)?;
            (before != b).then(|| BackendChange {
                old: before.clone(),
                new: b.clone(),
            })
        })
        .collect();
    let diff = VirtualServerDiff {
        name: new.name.clone(),
        listener: (old.address, old.port, old.protocol) != (new.address, new.port, new.protocol),
        forwarding: old.forwarding != new.forwarding,
        scheduler: old.scheduler != new.scheduler,
        health_check: old.health_check != new.health_check,
        backends_added,
        backends_removed,
        backends_changed,
    };
    // Only the order of the backends changed: nothing to do.
    let unchanged = !diff.listener
        && !diff.forwarding
        && !diff.scheduler
        && !diff.health_check
        && diff.backends_added.is_empty()
        && diff.backends_removed.is_empty()
        && diff.backends_changed.is_empty();
    (!unchanged).then_some(diff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    const OLD: &str = r#"
[dataplane]
interfaces = ["eth0"]

[[vrrp.instance]]
name = "VI_1"
interface = "eth0"
vrid = 51
virtual_addresses = ["192.0.2.10/24"]

[[virtual_server]]
name = "web"
address = "192.0.2.10"
port = 80
backend = [ { address = "10.0.0.11" }, { address = "10.0.0.12", weight = 50 } ]

[[virtual_server]]
name = "dns"
address = "192.0.2.10"
port = 53
protocol = "udp"
health_check = { kind = "none" }
backend = [ { address = "10.0.0.21" } ]
"#;

    fn config(text: &str) -> Config {
        parse(text, "test.toml").unwrap_or_else(|errors| panic!("{errors}"))
    }

    #[test]
    fn identical_configs_differ_in_nothing() {
        let d = diff(&config(OLD), &config(OLD));
        assert!(d.is_empty(), "{d:#?}");
        assert!(!d.needs_program_reload());
    }

    #[test]
    fn backend_order_is_not_a_change() {
        let reordered = OLD.replace(
            r#"{ address = "10.0.0.11" }, { address = "10.0.0.12", weight = 50 }"#,
            r#"{ address = "10.0.0.12", weight = 50 }, { address = "10.0.0.11" }"#,
        );
        assert!(diff(&config(OLD), &config(&reordered)).is_empty());
    }

    #[test]
    fn backends_added_removed_and_reweighted() {
        let new = OLD.replace(
            r#"{ address = "10.0.0.11" }, { address = "10.0.0.12", weight = 50 }"#,
            r#"{ address = "10.0.0.12", weight = 0 }, { address = "10.0.0.13", port = 8080 }"#,
        );
        let d = diff(&config(OLD), &config(&new));
        assert!(d.virtual_servers_added.is_empty());
        assert!(d.virtual_servers_removed.is_empty());
        assert_eq!(d.virtual_servers_changed.len(), 1);
        let web = &d.virtual_servers_changed[0];
        assert_eq!(web.name, "web");
        assert!(!web.listener && !web.forwarding && !web.scheduler && !web.health_check);
        let addresses = |list: &[Backend]| {
            list.iter()
                .map(|b| b.address.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(addresses(&web.backends_added), ["10.0.0.13"]);
        assert_eq!(addresses(&web.backends_removed), ["10.0.0.11"]);
        let reweighted: Vec<_> = web.backends_reweighted().collect();
        assert_eq!(reweighted.len(), 1);
        assert_eq!(reweighted[0].address().to_string(), "10.0.0.12");
        assert_eq!(
            (reweighted[0].old.weight, reweighted[0].new.weight),
            (50, 0)
        );
        assert!(web.touches_maps());
        assert!(!d.needs_program_reload());
    }

    #[test]
    fn a_health_port_change_does_not_touch_the_maps() {
        let new = OLD.replace(
            r#"{ address = "10.0.0.11" }"#,
            r#"{ address = "10.0.0.11", port = 8080 }"#,
        );
        let d = diff(&config(OLD), &config(&new));
        let web = &d.virtual_servers_changed[0];
        assert_eq!(web.backends_changed.len(), 1);
        assert_eq!(web.backends_reweighted().count(), 0);
        assert!(!web.touches_maps());
    }

    #[test]
    fn virtual_servers_added_removed_and_changed() {
        let new = OLD.replace("name = \"dns\"", "name = \"dns2\"").replace(
            "port = 80\n",
            "port = 8080\nforwarding = \"dsr\"\nhealth_check = { kind = \"http\" }\n",
        );
        let d = diff(&config(OLD), &config(&new));
        assert_eq!(d.virtual_servers_added, ["dns2"]);
        assert_eq!(d.virtual_servers_removed, ["dns"]);
        let web = &d.virtual_servers_changed[0];
        assert!(web.listener && web.forwarding && web.health_check);
        assert!(web.backends_added.is_empty() && web.backends_changed.is_empty());
    }

    #[test]
    fn dataplane_changes_need_a_program_reload() {
        let new = OLD.replace(
            "interfaces = [\"eth0\"]",
            "interfaces = [\"eth0\", \"eth1\"]\nmaglev_table_size = 251\ntunnel_source_v4 = \"10.99.0.0/16\"",
        );
        let d = diff(&config(OLD), &config(&new));
        assert_eq!(
            d.dataplane,
            DataplaneChange::Changed(vec![
                DataplaneSetting::Interfaces,
                DataplaneSetting::MaglevTableSize,
                DataplaneSetting::TunnelSourceV4,
            ])
        );
        assert!(d.needs_program_reload());
        assert!(d.virtual_servers_changed.is_empty());

        let vrrp_only = "[[vrrp.instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 51\nvirtual_addresses = [\"192.0.2.10/24\"]\n";
        let d = diff(&config(OLD), &config(vrrp_only));
        assert_eq!(d.dataplane, DataplaneChange::Removed);
        assert_eq!(d.virtual_servers_removed, ["web", "dns"]);
        assert!(d.vrrp_changed.is_empty(), "{d:#?}");
        assert_eq!(
            diff(&config(vrrp_only), &config(OLD)).dataplane,
            DataplaneChange::Added
        );
    }

    #[test]
    fn vrrp_and_listener_changes() {
        let new = OLD.replace("vrid = 51", "vrid = 52")
            + "\n[[vrrp.instance]]\nname = \"VI_6\"\ninterface = \"eth0\"\nvrid = 51\nvirtual_addresses = [\"2001:db8::10/64\"]\n\n[metrics]\nlisten = \"0.0.0.0:9100\"\n";
        let d = diff(&config(OLD), &config(&new));
        assert_eq!(d.vrrp_changed, ["VI_1"]);
        assert_eq!(d.vrrp_added, ["VI_6"]);
        assert!(d.vrrp_removed.is_empty());
        assert!(d.metrics_changed && !d.admin_changed);
        assert!(!d.needs_program_reload());
    }
}
