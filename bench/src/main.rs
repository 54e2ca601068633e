//! `cargo xtask bench`: per-packet cost of the balancer program through
//! BPF_PROG_TEST_RUN, each scenario net of an XDP_PASS program measured the
//! same way in the same run.
//!
//! Method: the median of many single calls (repeat = 1). With repeat > 1
//! the kernel does not restore the packet between iterations, so a program
//! that rewrites the packet would time its own output; single calls get a
//! fresh copy of the input every time. Each scenario's verdict is checked
//! before it is timed. Maps as in production: a VIP with 100 backends, a
//! Maglev ring of 65,537 slots, a flow table of 1M entries.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context as _, ensure};
use lb_common::proto;
use lb_daemon::dataplane::{
    BackendSpec, Balancer, Forwarding, LoadOptions, VipSpec,
    decap::Pass,
    programmer::VipId,
    test_run::{self, action},
};

#[path = "../../lb-daemon/tests/support/packets.rs"]
mod packets;

const CALLS: usize = 20_000;
const VIP4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);

fn main() -> anyhow::Result<()> {
    let mut balancer = Balancer::load(&LoadOptions {
        ring_size: 65_537,
        max_vips: 8,
        max_backends: 1024,
        flow_table_size: 1 << 20,
        ..LoadOptions::default()
    })
    .context("load the balancer (run as root)")?;
    let backends: Vec<BackendSpec> = (0..100u32)
        .map(|i| BackendSpec {
            address: IpAddr::V4(Ipv4Addr::new(10, 1, (i >> 8) as u8, i as u8)),
            mac: [2, 0xbe, 0, 0, 0, i as u8],
            weight: 100,
            up: true,
        })
        .collect();
    for address in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
        let spec = VipSpec {
            id: VipId {
                address,
                port: 80,
                protocol: proto::TCP,
            },
            forwarding: Forwarding::Tunnel,
        };
        balancer.programmer_mut().set(spec, &backends)?;
    }
    let pass = Pass::load()?;
    let program = balancer.program()?;
    let client = IpAddr::V4(packets::CLIENT_V4);
    let client6 = IpAddr::V6(packets::CLIENT_V6);

    let baseline_packet = packets::tcp(client, 40000, IpAddr::V4(VIP4), 80, false);
    let baseline = median(|_| {
        let out = test_run::run(pass.program()?, &baseline_packet)?;
        Ok(out.duration_ns)
    })?;

    let mut rows = Vec::new();
    let mut scenario =
        |name: &str, want: u32, packet: &dyn Fn(usize) -> Vec<u8>| -> anyhow::Result<()> {
            let first = test_run::run(program, &packet(0))?;
            ensure!(
                first.action == want,
                "{name}: {} instead of {}",
                action::name(first.action),
                action::name(want)
            );
            let ns = median(|i| Ok(test_run::run(program, &packet(i))?.duration_ns))?;
            rows.push((name.to_owned(), ns, ns.saturating_sub(baseline)));
            Ok(())
        };

    let established = packets::tcp(client, 40000, IpAddr::V4(VIP4), 80, false);
    scenario("IPv4 TCP established", action::TX, &|_| established.clone())?;
    scenario("IPv4 TCP SYN (new flow)", action::TX, &|i| {
        let src = Ipv4Addr::new(198, 51, (i >> 16) as u8 | 0x80, (i >> 8) as u8);
        packets::tcp(
            IpAddr::V4(src),
            1024 + (i as u16 & 0xff) * 200,
            IpAddr::V4(VIP4),
            80,
            true,
        )
    })?;
    let established6 = packets::tcp(client6, 40000, IpAddr::V6(VIP6), 80, false);
    scenario("IPv6 TCP established", action::TX, &|_| {
        established6.clone()
    })?;
    let other = packets::tcp(
        client,
        40000,
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 50)),
        80,
        false,
    );
    scenario("non-VIP packet", action::PASS, &|_| other.clone())?;

    println!("XDP_PASS baseline: {baseline} ns per call (median of {CALLS})\n");
    println!("| scenario | median ns | net of XDP_PASS |");
    println!("| --- | ---: | ---: |");
    for (name, ns, net) in &rows {
        println!("| {name} | {ns} | {net} |");
    }
    if let Some(count) = balancer.verified_instructions()? {
        println!("\nverifier: {count} instructions processed");
    }
    Ok(())
}

/// The median per-call duration over `CALLS` single calls.
fn median(mut call: impl FnMut(usize) -> anyhow::Result<u64>) -> anyhow::Result<u64> {
    let mut samples = Vec::with_capacity(CALLS);
    for i in 0..CALLS {
        samples.push(call(i)?);
    }
    samples.sort_unstable();
    Ok(samples[CALLS / 2])
}
