//! The balancer program of a running daemon: adopted from a previous
//! daemon when one left it attached (or pinned), loaded otherwise;
//! attached to the configured interfaces; detached and unpinned on a
//! graceful stop.
use std::{
    ffi::CString,
    io,
    net::IpAddr,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use aya::programs::ProgramInfo;
use lb_common::{names, stats};
use tracing::{info, warn};

use crate::{
    config,
    dataplane::{Balancer, LoadOptions, XdpMode, attach, maps::Counters},
    status::{DataplaneStatus, InterfaceStatus, NamedCounter},
};

/// `statfs` magic number of the BPF filesystem.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// One interface the program is attached to.
struct Interface {
    name: String,
    ifindex: u32,
    mode: XdpMode,
}

/// The balancer program, its maps and where it is attached.
pub struct Dataplane {
    balancer: Balancer,
    interfaces: Vec<Interface>,
    /// Where the program is pinned, if `pin_path` is on a bpffs.
    pin: Option<PathBuf>,
}

impl Dataplane {
    /// Adopts the balancer attached to one of the interfaces (or pinned
    /// under `pin_path`) with its maps and flow tables, or loads a new one;
    /// then attaches it wherever it is not attached yet. `backends` (the
    /// config's backend count) sizes the backend slots.
    pub fn start(config: &config::Dataplane, backends: usize) -> Result<Self> {
        let mut interfaces = Vec::new();
        for name in &config.interfaces {
            let ifindex = attach::ifindex(name)?;
            interfaces.push((name.clone(), ifindex));
        }
        let pin = pin_location(&config.pin_path);
        let balancer = match find_previous(&interfaces, pin.as_deref())? {
            Some(id) => {
                let balancer = Balancer::adopt(id).context("adopting the running balancer")?;
                info!(
                    program = id,
                    virtual_servers = balancer.programmer().vips().count(),
                    "adopted the balancer program and its flow tables"
                );
                warn_if_sized_differently(&balancer, config);
                balancer
            }
            None => {
                let balancer = Balancer::load(&load_options(config, backends))?;
                info!(
                    program = balancer.id(),
                    verified_instructions = balancer.verified_instructions()?.unwrap_or(0),
                    "loaded the balancer program"
                );
                balancer
            }
        };
        let mut attached = Vec::new();
        for (name, ifindex) in interfaces {
            let mode = if attach::attached(ifindex)? == Some(balancer.id()) {
                config.xdp_mode
            } else {
                let mode = balancer
                    .attach(ifindex, config.xdp_mode)
                    .with_context(|| format!("attaching to {name}"))?;
                info!(interface = %name, ?mode, "attached");
                mode
            };
            attached.push(Interface {
                name,
                ifindex,
                mode,
            });
        }
        let mut dataplane = Self {
            balancer,
            interfaces: attached,
            pin: None,
        };
        if let Some(path) = pin {
            dataplane.pin_at(path);
        }
        Ok(dataplane)
    }

    fn pin_at(&mut self, path: PathBuf) {
        if path.exists() {
            self.pin = Some(path);
            return;
        }
        match self.balancer.pin(&path) {
            Ok(()) => self.pin = Some(path),
            Err(error) => warn!(path = %path.display(), %error, "cannot pin the program"),
        }
    }

    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }

    pub fn balancer_mut(&mut self) -> &mut Balancer {
        &mut self.balancer
    }

    /// Whether `ifindex` is one the program is attached to.
    pub fn serves(&self, ifindex: u32) -> bool {
        self.interfaces.iter().any(|i| i.ifindex == ifindex)
    }

    /// Counters summed over CPUs.
    pub fn counters(&self) -> Result<Counters> {
        Ok(self.balancer.maps().counters()?)
    }

    /// Packets and bytes of the backend `address` of the virtual server
    /// `id`: from `counters` (a snapshot) or, without one, read now.
    pub fn backend_traffic(
        &self,
        counters: Option<&Counters>,
        id: &crate::dataplane::programmer::VipId,
        address: IpAddr,
    ) -> (u64, u64) {
        let Some(backend) = self.balancer.programmer().backend_id(id, &address) else {
            return (0, 0);
        };
        let counter = match counters {
            Some(counters) => counters.backends.get(backend as usize).copied(),
            None => self.balancer.maps().backend_traffic(backend).ok(),
        };
        counter.map_or((0, 0), |c| (c.packets, c.bytes))
    }

    pub fn status(&self, counters: &Counters) -> DataplaneStatus {
        DataplaneStatus {
            interfaces: self
                .interfaces
                .iter()
                .map(|i| InterfaceStatus {
                    name: i.name.clone(),
                    mode: match i.mode {
                        XdpMode::Generic => "generic",
                        XdpMode::Driver | XdpMode::Auto => "driver",
                    }
                    .to_owned(),
                    program_id: attach::attached(i.ifindex).ok().flatten(),
                })
                .collect(),
            verified_instructions: self.balancer.verified_instructions().ok().flatten(),
            counters: stats::NAMES
                .iter()
                .zip(&counters.stats)
                .map(|(name, c)| NamedCounter {
                    name: (*name).to_owned(),
                    packets: c.packets,
                    bytes: c.bytes,
                })
                .collect(),
        }
    }

    /// A graceful stop: detaches the program and removes its pin, so that
    /// nothing of the balancer remains.
    pub fn stop(self) {
        for interface in &self.interfaces {
            match attach::attached(interface.ifindex) {
                Ok(Some(id)) if id == self.balancer.id() => {
                    if let Err(error) = attach::detach(interface.ifindex) {
                        warn!(interface = %interface.name, %error, "cannot detach");
                    } else {
                        info!(interface = %interface.name, "detached");
                    }
                }
                _ => {}
            }
        }
        if let Some(pin) = &self.pin
            && let Err(error) = std::fs::remove_file(pin)
        {
            warn!(path = %pin.display(), %error, "cannot remove the pin");
        }
    }
}

/// Sizes of a new program. Backend slots: room for twice the configured
/// backends (a reload replacing every backend needs both sets at once),
/// and never fewer than the default.
fn load_options(config: &config::Dataplane, backends: usize) -> LoadOptions {
    let wanted = u32::try_from(2 * backends + 1).unwrap_or(u32::MAX);
    LoadOptions {
        ring_size: config.maglev_table_size,
        max_vips: config.max_virtual_servers,
        max_backends: LoadOptions::default().max_backends.max(wanted),
        flow_table_size: config.flow_table_size,
        tunnel_source_v4: config.tunnel_source_v4.network(),
        tunnel_source_v6: config.tunnel_source_v6.network(),
    }
}

/// The program a previous daemon left: attached to one of `interfaces`,
/// or else pinned at `pin`.
fn find_previous(interfaces: &[(String, u32)], pin: Option<&Path>) -> Result<Option<u32>> {
    for (name, ifindex) in interfaces {
        if let Some(id) =
            Balancer::find_attached(*ifindex).with_context(|| format!("interface {name}"))?
        {
            return Ok(Some(id));
        }
    }
    let Some(pin) = pin.filter(|p| p.exists()) else {
        return Ok(None);
    };
    let info = ProgramInfo::from_pin(pin)
        .with_context(|| format!("reading the pinned program {}", pin.display()))?;
    Ok(Some(info.id()))
}

fn warn_if_sized_differently(balancer: &Balancer, config: &config::Dataplane) {
    let capacity = balancer.capacity();
    if capacity.ring_size != config.maglev_table_size
        || capacity.max_vips != config.max_virtual_servers
    {
        warn!(
            running_maglev_table_size = capacity.ring_size,
            running_max_virtual_servers = capacity.max_vips,
            "the adopted program keeps the sizes it was loaded with; stop the daemon \
             gracefully (which detaches it) and start it again to apply new sizes"
        );
    }
}

/// `pin_path/lb_balancer` when `pin_path` is (or can be made) a directory
/// on a bpffs; `None` otherwise (adoption then relies on the attachment).
fn pin_location(dir: &Path) -> Option<PathBuf> {
    if let Err(error) = std::fs::create_dir_all(dir) {
        warn!(path = %dir.display(), %error, "pin_path is not usable; not pinning");
        return None;
    }
    match filesystem_magic(dir) {
        Ok(BPF_FS_MAGIC) => Some(dir.join(names::PROGRAM)),
        Ok(_) => {
            warn!(path = %dir.display(), "pin_path is not on a bpffs; not pinning");
            None
        }
        Err(error) => {
            warn!(path = %dir.display(), %error, "cannot inspect pin_path; not pinning");
            None
        }
    }
}

fn filesystem_magic(path: &Path) -> io::Result<i64> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("path contains NUL"))?;
    // SAFETY: statfs with a valid path and an out-parameter we own.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c_path.as_ptr(), &mut buf) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(buf.f_type)
}
