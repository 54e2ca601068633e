//! The load balancer daemon as a library: the binary (`src/main.rs`), the
//! tests and the benchmarks all use these modules.

pub mod admin;
pub mod cmd;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod health;
pub mod maglev;
pub mod memory;
pub mod metrics;
pub mod neighbour;
pub mod netlink;
pub mod status;
pub mod vrrp;
