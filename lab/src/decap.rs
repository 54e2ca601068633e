//! The XDP programs the lab needs around its balancers, attached with
//! `lb-daemon decap` as an operator attaches them (through rtnetlink, so
//! they stay attached after the command exits).
use std::path::Path;

use anyhow::{Context as _, Result};

use crate::Topology;

impl Topology {
    /// XDP_PASS (`lb-daemon decap --pass`) on the bridge ports facing the
    /// balancers. Lab fact: frames a balancer sends with XDP_TX are
    /// delivered promptly only when the veth end receiving them has an XDP
    /// program.
    pub fn pass_on_balancer_ports(&self, lb_daemon: &Path) -> Result<()> {
        let program = program(lb_daemon)?;
        for port in self.balancer_ports() {
            self.bridge()
                .ns()
                .exec_ok(program, &["decap", "--interface", port, "--pass"])
                .with_context(|| format!("XDP_PASS on bridge port {port}"))?;
        }
        Ok(())
    }

    /// On every backend, the decapsulation program for both VIPs
    /// (`lb-daemon decap`), so that tunnelled packets reach the VIP on
    /// `lo`.
    pub fn decap_on_backends(&self, lb_daemon: &Path) -> Result<()> {
        let program = program(lb_daemon)?;
        let vips = [self.vip_v4().to_string(), self.vip_v6().to_string()];
        for be in self.backends() {
            be.ns()
                .exec_ok(
                    program,
                    &[
                        "decap",
                        "--interface",
                        be.interface(),
                        "--vip",
                        &vips[0],
                        "--vip",
                        &vips[1],
                    ],
                )
                .with_context(|| format!("lb-daemon decap on {}", be.name()))?;
        }
        Ok(())
    }
}

fn program(lb_daemon: &Path) -> Result<&str> {
    lb_daemon
        .to_str()
        .with_context(|| format!("{} is not UTF-8", lb_daemon.display()))
}
