//! The file as written: serde structures that mirror the TOML one to one.
//!
//! Every field is optional here and keeps its span, and values with a
//! grammar of their own (addresses, durations, enumerations) stay strings
//! and integers stay `i64`: serde stops at the first error, so anything
//! that can be checked later is checked later, in `validate`,
//! where all errors are collected. Unknown fields are rejected here
//! (`deny_unknown_fields`). The defaults applied to absent fields are in
//! [`super::model::defaults`] and are named in each field's comment.
use serde::Deserialize;
use toml::Spanned;

/// A value with its byte range in the file.
pub type S<T> = Spanned<T>;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Absent: no XDP program (a pure VRRP daemon).
    pub dataplane: Option<S<RawDataplane>>,
    pub metrics: Option<S<RawListen>>,
    pub admin: Option<S<RawListen>>,
    pub vrrp: Option<S<RawVrrp>>,
    #[serde(default)]
    pub virtual_server: Vec<S<RawVirtualServer>>,
}

/// `[dataplane]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDataplane {
    /// Required, at least one.
    pub interfaces: Option<S<Vec<S<String>>>>,
    /// Default `"auto"`.
    pub xdp_mode: Option<S<String>>,
    /// Default 1048576.
    pub flow_table_size: Option<S<i64>>,
    /// Default 65537; a prime.
    pub maglev_table_size: Option<S<i64>>,
    /// Default `"/sys/fs/bpf/lb"`.
    pub pin_path: Option<S<String>>,
    /// Default 64.
    pub max_virtual_servers: Option<S<i64>>,
    /// Default `"172.16.0.0/16"`.
    pub tunnel_source_v4: Option<S<String>>,
    /// Default `"fd00:1b::/96"`.
    pub tunnel_source_v6: Option<S<String>>,
}

/// `[metrics]` and `[admin]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    /// Defaults `"127.0.0.1:9100"` (metrics), `"127.0.0.1:9180"` (admin).
    pub listen: Option<S<String>>,
}

/// `[vrrp]`, which only holds the `[[vrrp.instance]]` array.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVrrp {
    #[serde(default)]
    pub instance: Vec<S<RawVrrpInstance>>,
}

/// `[[vrrp.instance]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVrrpInstance {
    /// Required.
    pub name: Option<S<String>>,
    /// Required.
    pub interface: Option<S<String>>,
    /// Required, 1..=255.
    pub vrid: Option<S<i64>>,
    /// Default 3.
    pub version: Option<S<i64>>,
    /// Default 100.
    pub priority: Option<S<i64>>,
    /// Default `"1s"`.
    pub advert_interval: Option<S<String>>,
    /// Default true.
    pub preempt: Option<S<bool>>,
    /// Default `"0s"`.
    pub preempt_delay: Option<S<String>>,
    /// Required, at least one.
    pub virtual_addresses: Option<S<Vec<S<String>>>>,
    /// Default empty (multicast).
    pub unicast_peers: Option<S<Vec<S<String>>>>,
    /// Default none.
    pub notify: Option<S<String>>,
    /// Default empty.
    pub track: Option<S<Vec<S<RawTrack>>>>,
}

/// One entry of `track`: exactly one of `virtual_server`, `interface` or
/// `script`, with a weight.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrack {
    pub virtual_server: Option<S<String>>,
    pub interface: Option<S<String>>,
    pub script: Option<S<String>>,
    /// Default 0 (a failure puts the instance in the fault state).
    pub weight: Option<S<i64>>,
    /// Scripts only; default `"1s"`.
    pub interval: Option<S<String>>,
}

/// `[[virtual_server]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVirtualServer {
    /// Required.
    pub name: Option<S<String>>,
    /// Required.
    pub address: Option<S<String>>,
    /// Default 0 (all ports).
    pub port: Option<S<i64>>,
    /// Default `"tcp"`.
    pub protocol: Option<S<String>>,
    /// Default `"tunnel"`.
    pub forwarding: Option<S<String>>,
    /// Default `"maglev"`.
    pub scheduler: Option<S<String>>,
    /// Default: a tcp check with the default timings.
    pub health_check: Option<S<RawHealthCheck>>,
    #[serde(default)]
    pub backend: Vec<S<RawBackend>>,
}

/// `[virtual_server.health_check]`. The fields after `fall` belong to
/// particular kinds; giving one to another kind is an error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    /// Default `"tcp"`.
    pub kind: Option<S<String>>,
    /// Default `"2s"`.
    pub interval: Option<S<String>>,
    /// Default `"1s"`.
    pub timeout: Option<S<String>>,
    /// Default 2.
    pub rise: Option<S<i64>>,
    /// Default 3.
    pub fall: Option<S<i64>>,
    /// http, https; default `"/"`.
    pub path: Option<S<String>>,
    /// http, https; default `[200]`.
    pub expect_status: Option<S<Vec<S<i64>>>>,
    /// http, https; default none.
    pub body_contains: Option<S<String>>,
    /// https; default true.
    pub verify: Option<S<bool>>,
    /// udp; default `""`.
    pub payload: Option<S<String>>,
    /// udp; default none (any reply).
    pub expect: Option<S<String>>,
    /// exec; required for it.
    pub command: Option<S<Vec<S<String>>>>,
}

/// `[[virtual_server.backend]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    /// Required.
    pub address: Option<S<String>>,
    /// Default: the virtual server's port.
    pub port: Option<S<i64>>,
    /// Default 100.
    pub weight: Option<S<i64>>,
}
