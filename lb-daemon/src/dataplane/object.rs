//! The XDP objects built by `build.rs` from `lb-ebpf`, embedded in the
//! binary so the daemon is one file to deploy.
use aya::include_bytes_aligned;

/// The balancer (`lb_balancer`).
pub static BALANCER: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-balancer"));
/// The backend-side decapsulation program (`lb_decap`).
pub static DECAP: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-decap"));
/// XDP_PASS only (`lb_pass`): lab bridge ports and benchmark baseline.
pub static PASS: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-pass"));

/// Benchmark programs (not used by the daemon; a few kilobytes): the
/// packet generator and the counting sink (`lb_trafficgen`, `lb_sink`).
pub static TRAFFICGEN: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-trafficgen"));
/// Benchmark baseline: Ethernet MAC swap and XDP_TX (`lb_macswap`).
pub static MACSWAP: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-macswap"));
/// Benchmark floor of stateful forwarding: the MAC swap plus the read of
/// one flow-table line (`lb_flow_floor`).
pub static FLOW_FLOOR: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-flow-floor"));
