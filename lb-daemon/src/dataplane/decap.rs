//! The backend-side decapsulation program: loading, VIP list, attaching.
use std::{net::IpAddr, os::fd::AsFd};

use aya::{Ebpf, EbpfLoader, maps::HashMap, programs::Xdp};
use lb_common::names;

use super::{Error, Result, XdpMode, attach, map_err, object};

/// The loaded decapsulation program.
pub struct Decap {
    ebpf: Ebpf,
}

impl Decap {
    /// Loads the program and fills its VIP list.
    pub fn load(vips: &[IpAddr]) -> Result<Self> {
        let mut ebpf = EbpfLoader::new().load(object::DECAP)?;
        let program: &mut Xdp = ebpf
            .program_mut(names::DECAP_PROGRAM)
            .ok_or(Error::Missing(names::DECAP_PROGRAM))?
            .try_into()?;
        program.load()?;
        let mut v4: HashMap<_, [u8; 4], u32> = HashMap::try_from(
            ebpf.map_mut(names::DECAP_VIPS_V4)
                .ok_or(Error::Missing(names::DECAP_VIPS_V4))?,
        )
        .map_err(map_err(names::DECAP_VIPS_V4))?;
        for vip in vips.iter().filter_map(|v| match v {
            IpAddr::V4(a) => Some(a.octets()),
            IpAddr::V6(_) => None,
        }) {
            v4.insert(vip, 1, 0)
                .map_err(map_err(names::DECAP_VIPS_V4))?;
        }
        let mut v6: HashMap<_, [u8; 16], u32> = HashMap::try_from(
            ebpf.map_mut(names::DECAP_VIPS_V6)
                .ok_or(Error::Missing(names::DECAP_VIPS_V6))?,
        )
        .map_err(map_err(names::DECAP_VIPS_V6))?;
        for vip in vips.iter().filter_map(|v| match v {
            IpAddr::V6(a) => Some(a.octets()),
            IpAddr::V4(_) => None,
        }) {
            v6.insert(vip, 1, 0)
                .map_err(map_err(names::DECAP_VIPS_V6))?;
        }
        Ok(Self { ebpf })
    }

    pub fn program(&self) -> Result<&Xdp> {
        self.ebpf
            .program(names::DECAP_PROGRAM)
            .ok_or(Error::Missing(names::DECAP_PROGRAM))?
            .try_into()
            .map_err(Error::from)
    }

    /// Attaches to `ifindex`; it stays attached after this process exits.
    pub fn attach(&self, ifindex: u32, mode: XdpMode) -> Result<XdpMode> {
        let fd = self.program()?.fd()?;
        attach::attach(ifindex, fd.as_fd(), mode)
    }
}

/// The XDP_PASS program, loaded.
pub struct Pass {
    ebpf: Ebpf,
}

impl Pass {
    pub fn load() -> Result<Self> {
        let mut ebpf = EbpfLoader::new().load(object::PASS)?;
        let program: &mut Xdp = ebpf
            .program_mut("lb_pass")
            .ok_or(Error::Missing("lb_pass"))?
            .try_into()?;
        program.load()?;
        Ok(Self { ebpf })
    }

    pub fn program(&self) -> Result<&Xdp> {
        self.ebpf
            .program("lb_pass")
            .ok_or(Error::Missing("lb_pass"))?
            .try_into()
            .map_err(Error::from)
    }

    /// Attaches to `ifindex`; it stays attached after this process exits.
    pub fn attach(&self, ifindex: u32, mode: XdpMode) -> Result<XdpMode> {
        let fd = self.program()?.fd()?;
        attach::attach(ifindex, fd.as_fd(), mode)
    }
}
