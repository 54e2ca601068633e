//! The devices under test, each attached to `d0` in the DUT namespace and
//! removed again: the balancer in tunnel mode and in dsr mode, the MAC-swap
//! baseline, and nftables DNAT in the kernel.
use std::{
    fmt::Write as _,
    io::Write as _,
    net::{IpAddr, Ipv4Addr},
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail, ensure};
use aya::{Ebpf, EbpfLoader, programs::Xdp};
use lb_common::{bench::names, proto, stats};
use lb_daemon::dataplane::{
    BackendSpec, Balancer, Forwarding, LoadOptions, VipSpec, XdpMode, attach, decap::Pass, object,
    programmer::VipId,
};

use super::{TURNS, wire::Wire};

/// The VIP and its ports, one virtual server per protocol.
pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
pub const UDP_PORT: u16 = 9000;
pub const TCP_PORT: u16 = 80;
/// Backends per virtual server (as in the per-packet benchmark).
pub const BACKENDS: u32 = 100;
/// The nftables table the kernel configuration lives in.
const NFT_TABLE: &str = "lb_bench";

/// Which device under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The balancer, tunnel mode, one VIP per protocol with 100 backends.
    Balancer,
    /// The same in dsr mode (the destination MAC rewritten, no outer
    /// header).
    BalancerDsr,
    /// Ethernet MAC swap + XDP_TX: the speed of light of this path.
    MacSwap,
    /// The MAC swap plus a read of the packet's flow-table line (table
    /// sized for 1M flows): the floor of any balancer that keeps flows.
    FlowFloor,
    /// The kernel: nftables DNAT (`numgen random mod 100`) and forwarding.
    Nftables,
}

impl Kind {
    /// The balancer's modes, each compared with the baseline.
    pub const BALANCERS: [Kind; 2] = [Kind::Balancer, Kind::BalancerDsr];
    /// The devices compared with the baseline: the balancer's modes and
    /// the floor.
    pub const COMPARED: [Kind; 3] = [Kind::Balancer, Kind::BalancerDsr, Kind::FlowFloor];

    /// The device of [`Kind::name`] `name`.
    pub fn parse(name: &str) -> Option<Kind> {
        TURNS.into_iter().find(|k| k.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Balancer => "balancer",
            Kind::BalancerDsr => "balancer-dsr",
            Kind::MacSwap => "xdp-macswap",
            Kind::FlowFloor => "xdp-flow-floor",
            Kind::Nftables => "nftables-dnat",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Kind::Balancer => "lb balancer (XDP, tunnel mode, 100 backends)",
            Kind::BalancerDsr => "lb balancer (XDP, dsr mode, 100 backends)",
            Kind::MacSwap => "XDP MAC swap + XDP_TX (baseline)",
            Kind::FlowFloor => {
                "XDP MAC swap + read of the flow's line of a 1M-flow table (floor of stateful forwarding)"
            }
            Kind::Nftables => "nftables DNAT numgen mod 100 + kernel forwarding",
        }
    }

    /// The sink counter that forwarded frames of this device land in.
    pub fn expected(self) -> u32 {
        use lb_common::bench::sink;
        match self {
            Kind::Balancer => sink::IPIP,
            Kind::BalancerDsr | Kind::MacSwap | Kind::FlowFloor => sink::TO_VIP,
            Kind::Nftables => sink::OTHER_IPV4,
        }
    }
}

/// A device under test, loaded once and attached to `d0` for each
/// measurement (so that the devices take turns under the same load);
/// detached and removed on drop.
pub struct Dut<'w> {
    wire: &'w Wire,
    kind: Kind,
    program: Loaded,
    attached: bool,
}

enum Loaded {
    Balancer(Box<Balancer>),
    /// An object and the name of its program.
    Object(Ebpf, &'static str),
    Pass(Pass),
}

/// Loads program `name` of `object`.
fn object_program(object: &[u8], name: &'static str) -> Result<Loaded> {
    let mut ebpf = EbpfLoader::new().load(object)?;
    let program: &mut Xdp = ebpf
        .program_mut(name)
        .with_context(|| format!("no {name} program"))?
        .try_into()?;
    program.load()?;
    Ok(Loaded::Object(ebpf, name))
}

fn backend_address(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, (i >> 8) as u8, (i & 0xff) as u8 + 1)
}

impl<'w> Dut<'w> {
    pub fn load(wire: &'w Wire, kind: Kind) -> Result<Dut<'w>> {
        let program = match kind {
            Kind::Balancer => Loaded::Balancer(Box::new(balancer(wire, Forwarding::Tunnel)?)),
            Kind::BalancerDsr => Loaded::Balancer(Box::new(balancer(wire, Forwarding::Dsr)?)),
            Kind::MacSwap => object_program(object::MACSWAP, names::MACSWAP)?,
            Kind::FlowFloor => object_program(object::FLOW_FLOOR, names::FLOW_FLOOR)?,
            Kind::Nftables => Loaded::Pass(Pass::load()?),
        };
        Ok(Dut {
            wire,
            kind,
            program,
            attached: false,
        })
    }

    fn xdp(&self) -> Result<&Xdp> {
        Ok(match &self.program {
            Loaded::Balancer(b) => b.program()?,
            Loaded::Object(ebpf, name) => ebpf
                .program(name)
                .with_context(|| format!("no {name} program"))?
                .try_into()?,
            Loaded::Pass(pass) => pass.program()?,
        })
    }

    /// Attaches the program to `d0` (and, for the kernel path, adds the
    /// nftables table).
    pub fn attach(&mut self) -> Result<()> {
        let fd = self.xdp()?.fd()?.as_fd().as_raw_fd();
        let ifindex = self.wire.dut_ifindex;
        self.wire.dut_ns.enter(|| {
            // SAFETY: the program is owned by `self`, alive for this call.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            attach::attach(ifindex, fd, XdpMode::Driver)
        })?;
        self.attached = true;
        if self.kind == Kind::Nftables {
            nft(self.wire, &ruleset())?;
        }
        Ok(())
    }

    /// Undoes [`Dut::attach`].
    pub fn detach(&mut self) -> Result<()> {
        if !self.attached {
            return Ok(());
        }
        self.attached = false;
        if self.kind == Kind::Nftables {
            nft(self.wire, &format!("delete table ip {NFT_TABLE}\n"))?;
        }
        let ifindex = self.wire.dut_ifindex;
        self.wire.dut_ns.enter(|| attach::detach(ifindex))?;
        Ok(())
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Frames the device itself says it forwarded, where it keeps count:
    /// the balancer's tunnel or dsr counter; `None` for the others.
    pub fn forwarded(&self) -> Result<Option<u64>> {
        match &self.program {
            Loaded::Balancer(b) => {
                let counters = b.maps().counters()?;
                let stat = if self.kind == Kind::BalancerDsr {
                    stats::TX_DSR
                } else {
                    stats::TX_TUNNEL
                };
                Ok(Some(counters.stats[stat as usize].packets))
            }
            _ => Ok(None),
        }
    }

    /// Instructions the verifier processed for the XDP program.
    pub fn verified_instructions(&self) -> Result<Option<u32>> {
        Ok(self.xdp()?.info()?.verified_instruction_count())
    }
}

impl Drop for Dut<'_> {
    fn drop(&mut self) {
        if let Err(error) = self.detach() {
            eprintln!("packet-rate: removing {}: {error:#}", self.kind.name());
        }
    }
}

fn balancer(wire: &Wire, forwarding: Forwarding) -> Result<Balancer> {
    let mut balancer = Balancer::load(&LoadOptions {
        ring_size: 65_537,
        max_vips: 4,
        max_backends: 2 * BACKENDS + 1,
        flow_table_size: 1 << 20,
        // Outer sources in the benchmarking range, like everything else.
        tunnel_source_v4: Ipv4Addr::new(198, 18, 64, 0),
        ..LoadOptions::default()
    })
    .context("loading the balancer")?;
    let backends: Vec<BackendSpec> = (0..BACKENDS)
        .map(|i| BackendSpec {
            address: IpAddr::V4(backend_address(i)),
            mac: wire.gen_mac,
            weight: 100,
            up: true,
            drained: false,
        })
        .collect();
    for (port, protocol) in [(UDP_PORT, proto::UDP), (TCP_PORT, proto::TCP)] {
        let spec = VipSpec {
            id: VipId {
                address: IpAddr::V4(VIP),
                port,
                protocol,
            },
            forwarding,
        };
        balancer.programmer_mut().set(spec, &backends)?;
    }
    Ok(balancer)
}

/// DNAT of the VIP to one of the backends at random, per new connection
/// (conntrack keeps a flow on its backend).
fn ruleset() -> String {
    let mut map = String::new();
    for i in 0..BACKENDS {
        let _ = write!(
            map,
            "{}{i} : {}",
            if i == 0 { "" } else { ", " },
            backend_address(i)
        );
    }
    format!(
        "table ip {NFT_TABLE} {{\n  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    \
         ip daddr {VIP} meta l4proto {{ tcp, udp }} dnat to numgen random mod {BACKENDS} map {{ {map} }}\n  }}\n}}\n"
    )
}

/// `nft -f -` in the DUT namespace.
fn nft(wire: &Wire, script: &str) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", wire.dut_ns.name(), "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running nft (Debian package nftables; `cargo xtask setup` installs it)")?;
    child
        .stdin
        .take()
        .context("nft stdin")?
        .write_all(script.as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "nft -f failed: {}\n{script}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Errors unless `nft` can run.
pub fn check_nft() -> Result<()> {
    let ok = Command::new("nft")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    ensure!(ok, "nft not found: `cargo xtask setup` installs nftables");
    Ok(())
}
