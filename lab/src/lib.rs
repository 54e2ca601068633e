//! Network-namespace lab for the balancer's integration tests,
//! `cargo xtask lab up/down`, `cargo xtask run` and benchmarks.
//!
//! Everything lives in network namespaces this crate creates, named with a
//! prefix ([`unique_prefix`]) so that parallel runs and the user's own
//! namespaces never clash; the machine's own network is never touched.
//! Guards remove what they created when dropped.
//!
//! - [`Netns`]: a namespace; run `ip`, programs, processes ([`NsChild`]) and
//!   closures ([`Netns::enter`]) inside it.
//! - [`link`]: veth pairs, addresses, MTU, offloads, MAC and ifindex.
//! - [`Bridge`]: `br0` in a namespace of its own.
//! - [`Topology`]: the lab of DESIGN.md §7 (client, lb-a, lb-b, backends).
//! - [`HttpBackend`], [`http_get`], [`http_get_many`]: HTTP servers that
//!   answer with their name, and clients; [`EchoBackend`] and
//!   [`EchoStream`]: long-lived streams that check every byte;
//!   [`HttpLoad`]: steady client traffic counted per backend;
//!   [`HttpSession`]: one kept-alive connection asking again and again.
//! - [`BalancerConfig`]: `lb-daemon run` configs for the lab's balancers;
//!   [`Topology::web_config`] and the constants of [`web`]: the web
//!   service the end-to-end tests and `cargo xtask lab` balance.
//! - [`Daemon`]: `lb-daemon run` started by this process; [`run_command`]
//!   and [`DaemonLog`]: the same for a daemon started otherwise.
//!   [`Topology::pass_on_balancer_ports`] and
//!   [`Topology::decap_on_backends`]: `lb-daemon decap` where the lab
//!   needs it.
//! - [`http_request`]: one call to an HTTP API (the admin API) from inside
//!   a namespace.
//! - [`TempDir`]: configs and logs of one run, removed on drop.
//!
//! ```no_run
//! use std::{net::SocketAddr, time::Duration};
//! use lb_lab::{HttpBackend, Topology, TopologyOptions, http_get, unique_prefix};
//!
//! let lab = Topology::create(&TopologyOptions::new(unique_prefix("doc")))?;
//! let be = &lab.backends()[0];
//! let addr = SocketAddr::new(be.ipv4().into(), 80);
//! let _server = HttpBackend::start(be.ns(), addr, be.name())?;
//! let body = http_get(lab.client().ns(), addr, Duration::from_secs(5))?;
//! assert_eq!(body, "be-1\n");
//! # anyhow::Ok(())
//! ```
mod bridge;
mod cmd;
mod config;
mod daemon;
mod decap;
mod echo;
mod http;
pub mod link;
mod load;
mod netns;
mod process;
mod server;
mod temp_dir;
mod topology;
mod wait;
pub mod web;

use std::sync::atomic::{AtomicU32, Ordering};

pub use bridge::Bridge;
pub use config::{BalancerConfig, Forwarding, HealthConfig, HealthKind, VrrpConfig};
pub use daemon::{Daemon, DaemonLog, RUNNING, run_command};
pub use echo::{EchoBackend, EchoStream};
pub use http::{
    HttpBackend, HttpReply, HttpSession, connect, http_get, http_get_many, http_request, wait_http,
};
pub use link::{mac, veth};
pub use load::{HttpLoad, HttpLoadOptions, LoadStats};
pub use netns::{Netns, delete_with_prefix, list as list_netns};
pub use process::NsChild;
pub use temp_dir::TempDir;
pub use topology::{
    CLIENT_MTU, DEFAULT_VIP_V4, DEFAULT_VIP_V6, FABRIC_MTU, HOST_INTERFACE, Host, LAB_PREFIX, Role,
    Topology, TopologyOptions,
};
pub use wait::{read_settled, wait_until};
pub use web::{ADMIN, VIRTUAL_SERVER, WEB_LISTEN, WEB_PORT};

/// Longest tag [`unique_prefix`] keeps.
const MAX_TAG_LEN: usize = 4;

/// A namespace-name prefix unique to this process and call: `lb{tag}{pid}`
/// with the PID modulo 100000, then `lb{tag}{pid}n{k}` for the k-th later
/// call (tests of one binary share a PID).
///
/// Only ASCII letters and digits of `tag` are kept, at most four, so the
/// prefix stays short enough to build interface names from (15 bytes).
pub fn unique_prefix(tag: &str) -> String {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let tag: String = tag
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(MAX_TAG_LEN)
        .collect();
    let pid = std::process::id() % 100_000;
    match CALLS.fetch_add(1, Ordering::Relaxed) {
        0 => format!("lb{tag}{pid}"),
        call => format!("lb{tag}{pid}n{call}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_short_and_distinct() {
        let first = unique_prefix("t/long-tag");
        let second = unique_prefix("t/long-tag");
        assert_ne!(first, second);
        for prefix in [&first, &second] {
            assert!(prefix.starts_with("lbtlon"), "{prefix}");
            assert!(prefix.len() <= link::MAX_IFNAME_LEN, "{prefix}");
        }
    }
}
