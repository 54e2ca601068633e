//! The balancers' admin API as the live view uses it: `GET
//! /api/v1/status` and the drain endpoints, at [`lb_lab::ADMIN`] from
//! inside a balancer's namespace ([`lb_lab::http_request`]).
//!
//! The status types mirror the fields of `lb_daemon::status::Status` that
//! the view shows (xtask does not link the daemon: it must build before the
//! eBPF toolchain is installed). Unknown fields are ignored.
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use lb_lab::{ADMIN, Netns, http_request};
use serde::Deserialize;

const TIMEOUT: Duration = Duration::from_millis(800);

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Status {
    pub virtual_servers: Vec<VirtualServer>,
    pub vrrp: Vec<Vrrp>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct VirtualServer {
    pub name: String,
    pub packets: u64,
    pub backends: Vec<Backend>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Backend {
    pub address: String,
    pub weight: u32,
    pub drained: bool,
    /// `up` or `down`.
    pub health: String,
    pub packets: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Vrrp {
    pub name: String,
    /// `initialize`, `backup`, `master`, `fault`.
    pub state: String,
    pub priority: u8,
    pub effective_priority: u8,
}

/// `GET /api/v1/status` from inside `ns`.
pub fn status(ns: &Netns) -> Result<Status> {
    let body = request(ns, "GET", "/api/v1/status")?;
    serde_json::from_str(&body).context("decoding the status")
}

/// `POST /api/v1/backends/{vs}/{addr}/drain` (or `undrain`).
pub fn drain(ns: &Netns, vs: &str, backend: &str, drain: bool) -> Result<()> {
    let action = if drain { "drain" } else { "undrain" };
    request(
        ns,
        "POST",
        &format!("/api/v1/backends/{vs}/{backend}/{action}"),
    )
    .map(drop)
}

/// One request; the body of a 2xx answer, an error otherwise.
fn request(ns: &Netns, method: &str, path: &str) -> Result<String> {
    let reply = http_request(ns, ADMIN, method, path, TIMEOUT)?;
    ensure!(
        (200..300).contains(&reply.status),
        "{method} {path}: {} {}",
        reply.status,
        reply.body.trim()
    );
    Ok(reply.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_daemon_status_ignoring_other_fields() {
        let json = r#"{"version":"0.1.0","dataplane":null,
            "virtual_servers":[{"name":"web","address":"192.0.2.100","port":80,
              "protocol":"tcp","forwarding":"tunnel","packets":10,"bytes":1,"flows":2,
              "backends":[{"address":"192.0.2.11","weight":100,"drained":false,
                "health":"up","packets":7,"bytes":700}]}],
            "vrrp":[{"name":"VI_1","interface":"eth0","vrid":51,"version":3,
              "state":"master","priority":150,"effective_priority":150,"master":null,
              "virtual_addresses":[],"adverts_sent":1,"adverts_received":0,
              "adverts_discarded":0,"transitions":{"backup":1,"master":1,"fault":0}}]}"#;
        let status: Status = serde_json::from_str(json).unwrap();
        assert_eq!(status.virtual_servers[0].backends[0].packets, 7);
        assert_eq!(status.virtual_servers[0].backends[0].health, "up");
        assert_eq!(status.vrrp[0].state, "master");
    }
}
