//! The end-to-end packet-rate harness: 64-byte UDP and TCP frames from a
//! pool of flows, sent by an XDP generator (BPF_PROG_RUN, live frames)
//! through a veth into a device under test, which forwards them back to a
//! counting sink. See [`wire`] for the lab and [`dut`] for the devices:
//! the balancer in tunnel and in dsr mode, an XDP MAC swap (the
//! baseline) and nftables DNAT.
//!
//! Every point is measured in a few rounds, the devices taking turns in
//! each, so that each balancer mode and the baseline run back to back and
//! their ratio can be taken per round ([`stats`]). Every measurement is a
//! warm-up and a measurement of a few seconds at most; everything created
//! (namespaces, programs, nftables table) is removed by guards, also on
//! error.
pub mod dut;
pub mod frame;
pub mod output;
pub mod stats;
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
    /// The devices under test, in the order they take turns (reversed
    /// every other round).
    pub devices: Vec<Kind>,
    pub warmup: Duration,
    pub measure: Duration,
    /// Measurements of each point; the median counts.
    pub rounds: usize,
    /// Namespace names start with this.
    pub prefix: String,
}

/// Every device, in the order they take turns in: the baseline between
/// the two balancer modes, so that each mode runs right before or after
/// it.
pub const TURNS: [Kind; 5] = [
    Kind::FlowFloor,
    Kind::Balancer,
    Kind::MacSwap,
    Kind::BalancerDsr,
    Kind::Nftables,
];

impl Options {
    /// 5 devices × 2 protocols × 4 flow counts × 5 rounds × 1.3 s: 4.3
    /// minutes of traffic, about 5 with attaching and detaching.
    pub fn full(prefix: String) -> Options {
        Options {
            flows: vec![1, 64, 4096, 65_536],
            protocols: vec![Protocol::Udp, Protocol::Tcp],
            devices: TURNS.to_vec(),
            warmup: Duration::from_millis(300),
            measure: Duration::from_millis(1000),
            rounds: 5,
            prefix,
        }
    }

    /// For profiling one point (`perf record`): `LB_RATE_FLOWS=<n,..>`,
    /// `LB_RATE_PROTOCOLS=udp|tcp`, `LB_RATE_DEVICES=<name,..>` keep only
    /// those (the devices in the order of [`TURNS`]; without the baseline
    /// no ratio is reported), `LB_RATE_SECONDS=<s>` sets the measurement
    /// and `LB_RATE_ROUNDS=<n>` the rounds.
    pub fn narrowed_by_env(mut self) -> Result<Options> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let list = |value: String| -> Vec<String> {
            value.split(',').map(|v| v.trim().to_owned()).collect()
        };
        if let Some(flows) = var("LB_RATE_FLOWS") {
            self.flows = list(flows)
                .iter()
                .map(|v| v.parse().with_context(|| format!("LB_RATE_FLOWS: {v:?}")))
                .collect::<Result<_>>()?;
        }
        if let Some(protocols) = var("LB_RATE_PROTOCOLS") {
            self.protocols = list(protocols)
                .iter()
                .map(|v| Protocol::parse(v).with_context(|| format!("LB_RATE_PROTOCOLS: {v:?}")))
                .collect::<Result<_>>()?;
        }
        if let Some(devices) = var("LB_RATE_DEVICES") {
            let named = list(devices)
                .iter()
                .map(|v| Kind::parse(v).with_context(|| format!("LB_RATE_DEVICES: {v:?}")))
                .collect::<Result<Vec<_>>>()?;
            self.devices = in_turns(&named);
        }
        if let Some(seconds) = var("LB_RATE_SECONDS") {
            let seconds: f64 = seconds.parse().context("LB_RATE_SECONDS")?;
            ensure!(
                (0.1..=60.0).contains(&seconds),
                "LB_RATE_SECONDS: 0.1 to 60"
            );
            self.measure = Duration::from_secs_f64(seconds);
        }
        if let Some(rounds) = var("LB_RATE_ROUNDS") {
            self.rounds = rounds.parse().context("LB_RATE_ROUNDS")?;
            ensure!((1..=50).contains(&self.rounds), "LB_RATE_ROUNDS: 1 to 50");
        }
        Ok(self)
    }

    /// 5 devices × 2 protocols × 2 flow counts × 3 rounds × 0.7 s.
    pub fn quick(prefix: String) -> Options {
        Options {
            flows: vec![1, 65_536],
            protocols: vec![Protocol::Udp, Protocol::Tcp],
            devices: TURNS.to_vec(),
            warmup: Duration::from_millis(200),
            measure: Duration::from_millis(500),
            rounds: 3,
            prefix,
        }
    }
}

/// The devices of `named`, each once, in the order of [`TURNS`].
fn in_turns(named: &[Kind]) -> Vec<Kind> {
    TURNS.into_iter().filter(|k| named.contains(k)).collect()
}

/// One measurement of one device at one point.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// The round, from 0.
    pub round: usize,
    /// Frames per second the sink received.
    pub pps: f64,
    /// Frames per second the generator sent.
    pub offered_pps: f64,
    /// Share of received frames shaped as this device's output.
    pub expected_share: f64,
    pub seconds: f64,
}

/// One device at one (protocol, flows): every round's measurement.
#[derive(Clone, Debug)]
pub struct Point {
    pub dut: Kind,
    pub protocol: Protocol,
    pub flows: u32,
    /// In the order measured, at most one per round.
    pub rounds: Vec<Measurement>,
}

impl Point {
    /// The median over rounds of the frames per second received; `None`
    /// without a measurement.
    pub fn pps(&self) -> Option<f64> {
        stats::median(&self.rounds.iter().map(|m| m.pps).collect::<Vec<_>>())
    }

    /// The median over rounds of the frames per second sent.
    pub fn offered_pps(&self) -> Option<f64> {
        stats::median(
            &self
                .rounds
                .iter()
                .map(|m| m.offered_pps)
                .collect::<Vec<_>>(),
        )
    }

    /// `(round, pps)` of every round measured.
    pub fn pps_by_round(&self) -> Vec<(usize, f64)> {
        self.rounds.iter().map(|m| (m.round, m.pps)).collect()
    }

    /// The measurement of `round`, if there was one.
    pub fn round(&self, round: usize) -> Option<&Measurement> {
        self.rounds.iter().find(|m| m.round == round)
    }
}

/// Adds `measurement` to the point of (`dut`, `protocol`, `flows`),
/// creating the point on its first round.
pub fn record(
    points: &mut Vec<Point>,
    dut: Kind,
    protocol: Protocol,
    flows: u32,
    measurement: Measurement,
) {
    match points
        .iter_mut()
        .find(|p| p.dut == dut && p.protocol == protocol && p.flows == flows)
    {
        Some(point) => point.rounds.push(measurement),
        None => points.push(Point {
            dut,
            protocol,
            flows,
            rounds: vec![measurement],
        }),
    }
}

/// A whole run.
#[derive(Clone, Debug)]
pub struct Run {
    pub cpus: usize,
    pub points: Vec<Point>,
    pub kernel: String,
    /// Verifier-processed instructions of the new programs.
    pub verified: Vec<(String, Option<u32>)>,
    /// The devices, in the order they took turns in even rounds (odd
    /// rounds reverse it).
    pub devices: Vec<Kind>,
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
    let mut duts = options
        .devices
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
            // machine is under falls on all alike, and each balancer mode
            // runs right before or after the baseline (see `TURNS`). Every
            // other round reverses the order, so that no device is always
            // the first after the traffic changed. Every round is kept:
            // the report takes medians and per-round ratios.
            for round in 0..options.rounds {
                let mut turns: Vec<usize> = (0..duts.len()).collect();
                if round % 2 == 1 {
                    turns.reverse();
                }
                for turn in turns {
                    let dut = &mut duts[turn];
                    let measurement = measure(&traffic, dut, options, protocol, flows, round)?;
                    record(&mut points, dut.kind(), protocol, flows, measurement);
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
        devices: options.devices.clone(),
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
) -> Result<Measurement> {
    let kind = dut.kind();
    dut.attach()
        .with_context(|| format!("attaching {}", kind.name()))?;
    let before = dut.forwarded()?;
    let measured = traffic.measure(options.warmup, options.measure, kind.expected());
    let after = dut.forwarded()?;
    dut.detach()?;
    let measured = measured?;
    let point = Measurement {
        round,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn measurement(round: usize, mpps: f64) -> Measurement {
        Measurement {
            round,
            pps: mpps * 1e6,
            offered_pps: 2.0 * mpps * 1e6,
            expected_share: 1.0,
            seconds: 1.0,
        }
    }

    #[test]
    fn named_devices_take_turns_with_the_baseline_between_the_balancer_modes() {
        assert_eq!(
            in_turns(&[
                Kind::Nftables,
                Kind::BalancerDsr,
                Kind::Balancer,
                Kind::MacSwap,
                Kind::FlowFloor,
            ]),
            TURNS.to_vec()
        );
        assert_eq!(
            in_turns(&[Kind::BalancerDsr, Kind::MacSwap, Kind::BalancerDsr]),
            vec![Kind::MacSwap, Kind::BalancerDsr]
        );
        assert_eq!(in_turns(&[]), vec![]);
    }

    #[test]
    fn every_round_is_kept_per_point_and_the_median_counts() {
        let mut points = Vec::new();
        for (round, mpps) in [(0, 10.0), (1, 14.0), (2, 11.0)] {
            record(
                &mut points,
                Kind::MacSwap,
                Protocol::Udp,
                1,
                measurement(round, mpps),
            );
            record(
                &mut points,
                Kind::MacSwap,
                Protocol::Tcp,
                1,
                measurement(round, mpps / 2.0),
            );
        }
        record(
            &mut points,
            Kind::Balancer,
            Protocol::Udp,
            1,
            measurement(1, 9.0),
        );
        assert_eq!(points.len(), 3);
        let udp = &points[0];
        assert_eq!((udp.dut, udp.protocol), (Kind::MacSwap, Protocol::Udp));
        assert_eq!(udp.pps_by_round(), vec![(0, 10e6), (1, 14e6), (2, 11e6)]);
        assert_eq!(udp.pps(), Some(11e6));
        assert_eq!(udp.offered_pps(), Some(22e6));
        assert_eq!(points[1].pps(), Some(5.5e6));
        // Measured in round 1 only.
        assert_eq!(points[2].pps(), Some(9e6));
        assert_eq!(points[2].round(0), None);
        assert_eq!(points[2].round(1), Some(&measurement(1, 9.0)));
    }
}
