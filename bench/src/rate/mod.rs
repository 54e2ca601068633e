//! The end-to-end packet-rate harness: 64-byte UDP and TCP frames from a
//! pool of flows, sent by an XDP generator (BPF_PROG_RUN, live frames)
//! through a veth into a device under test, which forwards them back to a
//! counting sink. See [`wire`] for the lab and [`dut`] for the devices:
//! the balancer, an XDP MAC swap (the baseline) and nftables DNAT.
//!
//! Every point runs for a warm-up and a measurement of a few seconds at
//! most; everything created (namespaces, programs, nftables table) is
//! removed by guards, also on error.
pub mod dut;
pub mod frame;
pub mod output;
pub mod traffic;
pub mod wire;

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use etherparse::{NetSlice, SlicedPacket, TransportSlice};

use dut::{Dut, Kind};
use frame::{Endpoints, Protocol};
use traffic::Traffic;
use wire::Wire;

/// What to measure.
#[derive(Clone, Debug)]
pub struct Options {
    pub flows: Vec<u32>,
    pub protocols: Vec<Protocol>,
    pub warmup: Duration,
    pub measure: Duration,
    /// Measurements of each point; the best counts.
    pub rounds: usize,
    /// Namespace names start with this.
    pub prefix: String,
}

impl Options {
    pub fn full(prefix: String) -> Options {
        Options {
            flows: vec![1, 64, 4096, 65_536],
            protocols: vec![Protocol::Udp, Protocol::Tcp],
            warmup: Duration::from_millis(500),
            measure: Duration::from_millis(1500),
            rounds: 2,
            prefix,
        }
    }

    pub fn quick(prefix: String) -> Options {
        Options {
            flows: vec![1, 65_536],
            protocols: vec![Protocol::Udp, Protocol::Tcp],
            warmup: Duration::from_millis(300),
            measure: Duration::from_millis(700),
            rounds: 1,
            prefix,
        }
    }
}

/// One measured point.
#[derive(Clone, Debug)]
pub struct Point {
    pub dut: Kind,
    pub protocol: Protocol,
    pub flows: u32,
    /// Frames per second the sink received.
    pub pps: f64,
    /// Frames per second the generator sent.
    pub offered_pps: f64,
    /// Share of received frames shaped as this device's output.
    pub expected_share: f64,
    pub seconds: f64,
}

/// A whole run.
#[derive(Clone, Debug)]
pub struct Run {
    pub cpus: usize,
    pub points: Vec<Point>,
    pub kernel: String,
    /// Verifier-processed instructions of the new programs.
    pub verified: Vec<(String, Option<u32>)>,
    pub warmup: Duration,
    pub measure: Duration,
    pub rounds: usize,
}

pub fn run(options: &Options) -> Result<Run> {
    dut::check_nft()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let wire = Wire::create(&options.prefix, cpus).context("creating the packet-rate lab")?;
    let endpoints = Endpoints {
        src_mac: wire.gen_mac,
        dst_mac: wire.dut_mac,
        src: wire::CLIENTS,
        dst: dut::VIP,
        dst_port: 0,
    };
    let mut traffic = Traffic::load(&wire, dut::VIP.octets())?;
    let mut verified: Vec<(String, Option<u32>)> = traffic
        .verified_instructions()?
        .into_iter()
        .map(|(name, count)| (name.to_owned(), count))
        .collect();
    let mut duts = Kind::ALL
        .iter()
        .map(|&kind| Dut::load(&wire, kind).with_context(|| format!("loading {}", kind.name())))
        .collect::<Result<Vec<_>>>()?;
    for dut in &duts {
        verified.push((dut.kind().name().to_owned(), dut.verified_instructions()?));
    }
    let mut points: Vec<Point> = Vec::new();
    for &protocol in &options.protocols {
        let endpoints = Endpoints {
            dst_port: match protocol {
                Protocol::Udp => dut::UDP_PORT,
                Protocol::Tcp => dut::TCP_PORT,
            },
            ..endpoints
        };
        for &flows in &options.flows {
            traffic.configure(frame::config(&endpoints, protocol, flows))?;
            check_sample(&traffic.sample()?, &endpoints, protocol)?;
            // The devices take turns, each round, so that the load the
            // machine is under falls on all alike; the best round counts.
            for round in 0..options.rounds {
                for dut in &mut duts {
                    let point = measure(&traffic, dut, options, protocol, flows, round)?;
                    match points
                        .iter_mut()
                        .find(|p| p.dut == point.dut && p.protocol == protocol && p.flows == flows)
                    {
                        Some(best) if best.pps >= point.pps => {}
                        Some(best) => *best = point,
                        None => points.push(point),
                    }
                }
            }
        }
    }
    Ok(Run {
        cpus,
        points,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        verified,
        warmup: options.warmup,
        measure: options.measure,
        rounds: options.rounds,
    })
}

/// One measurement of `dut`: attach, send, detach.
fn measure(
    traffic: &Traffic<'_>,
    dut: &mut Dut<'_>,
    options: &Options,
    protocol: Protocol,
    flows: u32,
    round: usize,
) -> Result<Point> {
    let kind = dut.kind();
    dut.attach()
        .with_context(|| format!("attaching {}", kind.name()))?;
    let before = dut.forwarded()?;
    let measured = traffic.measure(options.warmup, options.measure, kind.expected());
    let after = dut.forwarded()?;
    dut.detach()?;
    let measured = measured?;
    let point = Point {
        dut: kind,
        protocol,
        flows,
        pps: measured.received as f64 / measured.seconds,
        offered_pps: measured.sent as f64 / measured.seconds,
        expected_share: measured.expected as f64 / measured.received.max(1) as f64,
        seconds: measured.seconds,
    };
    eprintln!(
        "packet-rate: round {round} {:<14} {} {:>6} flows: {:6.2} Mpps (offered {:6.2}, {:.1}% as expected{})",
        kind.name(),
        protocol.name(),
        flows,
        point.pps / 1e6,
        point.offered_pps / 1e6,
        100.0 * point.expected_share,
        match (before, after) {
            (Some(b), Some(a)) => format!(", device counted {}", a - b),
            _ => String::new(),
        }
    );
    ensure!(
        measured.received > 0 && point.expected_share > 0.99,
        "{} {} {flows} flows: {} of {} frames reached the sink as expected",
        kind.name(),
        protocol.name(),
        measured.expected,
        measured.received
    );
    Ok(point)
}

/// Checks one generated frame: length, addresses, ports, both checksums.
fn check_sample(frame: &[u8], endpoints: &Endpoints, protocol: Protocol) -> Result<()> {
    ensure!(
        frame.len() == lb_common::bench::FRAME_LEN,
        "frame of {} bytes",
        frame.len()
    );
    let packet = SlicedPacket::from_ethernet(frame).context("generated frame does not parse")?;
    let Some(NetSlice::Ipv4(ip)) = &packet.net else {
        anyhow::bail!("generated frame is not IPv4");
    };
    let header = ip.header().to_header();
    ensure!(
        header.header_checksum == header.calc_header_checksum(),
        "bad IPv4 checksum"
    );
    ensure!(
        header.destination == endpoints.dst.octets(),
        "wrong destination"
    );
    let first = frame::flow_source(endpoints, 0).0.octets();
    ensure!(
        header.source[..2] == first[..2] && header.source[2] >= 0x80,
        "source {:?} outside the clients' range",
        header.source
    );
    let payload = &frame[14 + 20..];
    let ok = match (&packet.transport, protocol) {
        (Some(TransportSlice::Udp(udp)), Protocol::Udp) => {
            let h = udp.to_header();
            h.destination_port == endpoints.dst_port
                && h.checksum == h.calc_checksum_ipv4(&header, &payload[8..])?
        }
        (Some(TransportSlice::Tcp(tcp)), Protocol::Tcp) => {
            let h = tcp.to_header();
            h.destination_port == endpoints.dst_port
                && h.checksum == h.calc_checksum_ipv4(&header, tcp.payload())?
        }
        _ => false,
    };
    ensure!(
        ok,
        "generated {} frame has a wrong port or checksum",
        protocol.name()
    );
    Ok(())
}
