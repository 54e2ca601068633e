//! The XDP data plane from userspace: the embedded objects, loading and
//! attaching them, and programming their maps.
//!
//! - [`object`]: the compiled XDP objects embedded in the binary.
//! - [`attach`]: XDP attachment through rtnetlink, which keeps a program
//!   attached after the daemon exits (and works under `ip netns exec`).
//! - [`balancer`]: the balancer program with its maps, loaded or adopted.
//! - `builds`: Maglev tables built on every core, handed back in order.
//! - [`maps`]: [`maps::MapWriter`], the interface the map programming code
//!   writes through, with the BPF implementation and an in-memory one.
//! - [`programmer`]: virtual servers and backends to VIP entries, backend
//!   slots and Maglev rings, with atomic ring swaps and minimal writes.
//! - [`rings`]: the `RINGS` array written through a shared mapping.
//! - [`decap`]: the backend-side decapsulation program.
//! - [`test_run`]: BPF_PROG_TEST_RUN for tests and benchmarks.

pub mod attach;
pub mod balancer;
mod builds;
pub mod decap;
pub mod maps;
pub mod object;
pub mod programmer;
pub mod rings;
pub mod test_run;

pub use attach::XdpMode;
pub use balancer::{Balancer, LoadOptions};
pub use programmer::{BackendSpec, Forwarding, Programmer, VipSpec};

/// Errors of the data plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("loading the BPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("BPF program: {0}")]
    Program(#[from] aya::programs::ProgramError),
    #[error("BPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("the object has no map or program named {0}")]
    Missing(&'static str),
    #[error("interface {0} does not exist")]
    NoInterface(String),
    #[error("netlink: {0}")]
    Netlink(std::io::Error),
    #[error("no free {0} slot: the configured maximum is reached")]
    Full(&'static str),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An attached balancer program whose maps this daemon cannot read
/// (`what` says how): one of another version, to be detached.
pub(crate) fn another_version(what: &str) -> Error {
    Error::Invalid(format!(
        "{what}: the balancer program is from another version; detach it from the \
         interface (ip link set dev IFACE xdp off) and start again"
    ))
}

/// Maps a map error to [`Error::Map`] with the map's name.
pub(crate) fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> Error {
    move |source| Error::Map { name, source }
}
