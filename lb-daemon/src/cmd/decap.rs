//! `lb-daemon decap`: attach (or remove) the backend-side decapsulation
//! program. It is attached through rtnetlink, so it stays attached after
//! this command exits, also when run under `ip netns exec`.
use std::{net::IpAddr, process::ExitCode};

use anyhow::{Context as _, bail};

use crate::dataplane::{
    XdpMode, attach,
    decap::{Decap, Pass},
};

pub fn decap(
    interface: &str,
    vips: &[IpAddr],
    generic: bool,
    detach: bool,
    pass: bool,
) -> anyhow::Result<ExitCode> {
    let ifindex = attach::ifindex(interface)?;
    if detach {
        attach::detach(ifindex).with_context(|| format!("detaching from {interface}"))?;
        println!("detached the XDP program from {interface}");
        return Ok(ExitCode::SUCCESS);
    }
    let mode = if generic {
        XdpMode::Generic
    } else {
        XdpMode::Auto
    };
    if pass {
        let mode = Pass::load()
            .context("loading the pass program")?
            .attach(ifindex, mode)
            .with_context(|| format!("attaching to {interface}"))?;
        println!("lb_pass attached to {interface} ({mode:?} mode)");
        return Ok(ExitCode::SUCCESS);
    }
    if vips.is_empty() {
        bail!("name the virtual addresses to decapsulate with --vip ADDR (repeatable)");
    }
    let program = Decap::load(vips).context("loading the decapsulation program")?;
    let mode = program
        .attach(ifindex, mode)
        .with_context(|| format!("attaching to {interface}"))?;
    let list: Vec<String> = vips.iter().map(ToString::to_string).collect();
    println!(
        "lb_decap attached to {interface} ({mode:?} mode) for {}",
        list.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
