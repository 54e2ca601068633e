//! Generated inputs for the control-plane benchmarks: large configurations
//! as TOML and the equivalent data-plane specs.
use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr},
};

use lb_common::proto;
use lb_daemon::dataplane::{BackendSpec, Forwarding, VipSpec, programmer::VipId};

/// The address of virtual server `i` (distinct for `i < 65536`).
pub fn vip_address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, (i >> 8) as u8, i as u8)
}

/// The address of backend `j` of virtual server `i` (distinct per server).
pub fn backend_address(i: usize, j: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, (i >> 8) as u8, i as u8, 1 + (j % 250) as u8)
        .to_bits()
        .wrapping_add(((j / 250) as u32) << 24)
        .into()
}

/// A configuration with `vips` virtual servers of `backends` backends each
/// (TCP port 80, tunnel mode, the health check of TOML lines
/// `health_check`, e.g. `kind = "tcp"`).
/// `weight_of(i, j)` gives the weight of backend `j` of server `i`, so that
/// two calls can differ.
pub fn config_toml(
    vips: usize,
    backends: usize,
    health_check: &str,
    weight_of: impl Fn(usize, usize) -> u32,
) -> String {
    let mut out = String::with_capacity(vips * (200 + backends * 50));
    let _ = writeln!(
        out,
        "[dataplane]\ninterfaces = [\"eth0\"]\nmax_virtual_servers = {}\n",
        vips.max(1)
    );
    for i in 0..vips {
        let _ = writeln!(
            out,
            "[[virtual_server]]\nname = \"vs-{i}\"\naddress = \"{}\"\nport = 80\n\
             protocol = \"tcp\"\nforwarding = \"tunnel\"\n\
             [virtual_server.health_check]\n{health_check}\n",
            vip_address(i)
        );
        for j in 0..backends {
            let _ = writeln!(
                out,
                "[[virtual_server.backend]]\naddress = \"{}\"\nweight = {}\n",
                backend_address(i, j),
                weight_of(i, j)
            );
        }
    }
    out
}

/// The data-plane view of [`config_toml`] with weight 100 everywhere:
/// one spec and its backends per virtual server.
pub fn dataplane_specs(vips: usize, backends: usize) -> Vec<(VipSpec, Vec<BackendSpec>)> {
    (0..vips)
        .map(|i| {
            let spec = VipSpec {
                id: VipId {
                    address: IpAddr::V4(vip_address(i)),
                    port: 80,
                    protocol: proto::TCP,
                },
                forwarding: Forwarding::Tunnel,
            };
            let list = (0..backends)
                .map(|j| BackendSpec {
                    address: IpAddr::V4(backend_address(i, j)),
                    mac: [2, 0, 0, 0, 0, 1],
                    weight: 100,
                    up: true,
                    drained: false,
                })
                .collect();
            (spec, list)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_config_is_valid_up_to_the_backend_limit() {
        let text = config_toml(100, 16, r#"kind = "tcp""#, |_, _| 100);
        let config = lb_daemon::config::parse(&text, "gen.toml").expect("valid");
        assert_eq!(config.virtual_servers.len(), 100);
        assert_eq!(config.backend_count(), 1600);
    }

    #[test]
    fn backend_addresses_are_distinct_per_server() {
        let set: std::collections::HashSet<_> = (0..1000).map(|j| backend_address(3, j)).collect();
        assert_eq!(set.len(), 1000);
    }
}
