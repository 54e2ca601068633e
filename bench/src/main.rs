//! `cargo xtask bench`: per-packet cost of the balancer program through
//! BPF_PROG_TEST_RUN, each scenario net of an XDP_PASS program measured the
//! same way in the same run. Writes `bench/results/per-packet.json` and
//! `bench/results/per-packet.md`.
//!
//! Method: the median of many single calls (repeat = 1). With repeat > 1
//! the kernel does not restore the packet between iterations, so a program
//! that rewrites the packet would time its own output; single calls get a
//! fresh copy of the input every time. Calls of the scenario and of the
//! XDP_PASS baseline alternate, so both see the same machine load. The
//! whole set runs [`ROUNDS`] times; a scenario's figure is the median of
//! its per-round net medians, and the spread of those is reported too.
//!
//! Each scenario's verdict and output bytes are checked before it is
//! timed. Maps as in production: VIPs with 100 backends each, a Maglev
//! ring of 65,537 slots, a flow table of 1M entries.
use std::{
    collections::HashMap,
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use anyhow::{Context as _, ensure};
use lb_bench::results;
use lb_common::{flow_table, proto, ring_slot};
use lb_daemon::dataplane::{
    BackendSpec, Balancer, Forwarding, LoadOptions, VipSpec,
    decap::Pass,
    programmer::VipId,
    test_run::{self, action},
};

#[path = "../../lb-daemon/tests/support/packets.rs"]
mod packets;
use packets::{hash4, hash6};

/// Timed calls per scenario and round (each paired with a baseline call).
const CALLS: usize = 10_000;
/// Rounds over all scenarios.
const ROUNDS: usize = 5;
/// Flows of the cycling scenario.
const CYCLING_FLOWS: usize = 65_536;
/// Flows each flow table holds, as in production.
const FLOW_TABLE_SIZE: u32 = 1 << 20;
/// Sets of the flow table (64 KiB of it) and slots of the ring (16 KiB of
/// the kernel's array) that the new flows of the SYN scenarios fall into;
/// see [`warm_syns`].
const WARM_SETS: u32 = 1024;
const WARM_SLOTS: u32 = 4096;
const RING_SIZE: u32 = 65_537;
const BACKENDS: u32 = 100;
const VIP4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
const NOT_VIP4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);

/// A scenario: its name, Katran's cost measured the same way (ns net of
/// XDP_PASS, where known), and the target (20% below Katran).
struct Scenario {
    name: &'static str,
    katran_ns: Option<u64>,
    /// The packet of the scenario's call `i`, counted over its rounds
    /// (SYN scenarios take a new flow for each).
    packet: Box<dyn Fn(usize) -> Vec<u8>>,
}

impl Scenario {
    fn target_ns(&self) -> Option<u64> {
        self.katran_ns.map(|k| k * 8 / 10)
    }
}

/// Results of one scenario over all rounds.
struct Row {
    name: &'static str,
    katran_ns: Option<u64>,
    target_ns: Option<u64>,
    /// Per round: (median of the scenario, median of the baseline).
    rounds: Vec<(u64, u64)>,
}

impl Row {
    fn nets(&self) -> Vec<u64> {
        let mut nets: Vec<u64> = self
            .rounds
            .iter()
            .map(|(ns, base)| ns.saturating_sub(*base))
            .collect();
        nets.sort_unstable();
        nets
    }

    fn net(&self) -> u64 {
        let nets = self.nets();
        nets[nets.len() / 2]
    }

    fn median(&self) -> u64 {
        let mut all: Vec<u64> = self.rounds.iter().map(|(ns, _)| *ns).collect();
        all.sort_unstable();
        all[all.len() / 2]
    }

    fn baseline(&self) -> u64 {
        let mut all: Vec<u64> = self.rounds.iter().map(|(_, base)| *base).collect();
        all.sort_unstable();
        all[all.len() / 2]
    }

    fn meets_target(&self) -> Option<bool> {
        self.target_ns.map(|t| self.net() <= t)
    }
}

/// The virtual servers the scenarios run against, with their backends.
struct Setup {
    balancer: Balancer,
    pass: Pass,
    web4: (VipSpec, Vec<BackendSpec>),
    web6: (VipSpec, Vec<BackendSpec>),
    dns4: (VipSpec, Vec<BackendSpec>),
    /// Each virtual server's ring and the backend of each id, read once
    /// (the programmer rebuilds a ring each time it is asked).
    rings: HashMap<VipId, (Vec<u32>, HashMap<u32, BackendSpec>)>,
}

fn backends(v6: bool, net: u8) -> Vec<BackendSpec> {
    (0..BACKENDS)
        .map(|i| BackendSpec {
            address: if v6 {
                IpAddr::V6(Ipv6Addr::new(
                    0xfd00,
                    0,
                    0,
                    u16::from(net),
                    0,
                    0,
                    0,
                    i as u16 + 1,
                ))
            } else {
                IpAddr::V4(Ipv4Addr::new(10, net, (i >> 8) as u8, i as u8 + 1))
            },
            mac: [2, 0xbe, 0, net, (i >> 8) as u8, i as u8],
            weight: 100,
            up: true,
            drained: false,
        })
        .collect()
}

fn vip(address: IpAddr, port: u16, protocol: u8) -> VipSpec {
    VipSpec {
        id: VipId {
            address,
            port,
            protocol,
        },
        forwarding: Forwarding::Tunnel,
    }
}

impl Setup {
    fn new() -> anyhow::Result<Self> {
        let mut balancer = Balancer::load(&LoadOptions {
            ring_size: RING_SIZE,
            max_vips: 8,
            max_backends: 1024,
            flow_table_size: FLOW_TABLE_SIZE,
            ..LoadOptions::default()
        })
        .context("load the balancer (run as root)")?;
        let web4 = (vip(VIP4.into(), 80, proto::TCP), backends(false, 1));
        let web6 = (vip(VIP6.into(), 80, proto::TCP), backends(true, 2));
        let dns4 = (vip(VIP4.into(), 53, proto::UDP), backends(false, 3));
        let mut rings = HashMap::new();
        for (spec, list) in [&web4, &web6, &dns4] {
            balancer.programmer_mut().set(*spec, list)?;
            let p = balancer.programmer();
            let ring = p.ring(&spec.id).context("ring")?;
            let ids = list
                .iter()
                .filter_map(|b| Some((p.backend_id(&spec.id, &b.address)?, *b)))
                .collect();
            rings.insert(spec.id, (ring, ids));
        }
        Ok(Self {
            balancer,
            pass: Pass::load()?,
            web4,
            web6,
            dns4,
            rings,
        })
    }

    /// What the balancer must send for `frame` of a flow with `hash` to
    /// virtual server `vs`: tunnelled to the backend of the ring slot.
    fn expected(
        &self,
        vs: &(VipSpec, Vec<BackendSpec>),
        frame: &[u8],
        hash: u32,
    ) -> anyhow::Result<Vec<u8>> {
        let (ring, ids) = self.rings.get(&vs.0.id).context("ring")?;
        let id = ring[ring_slot(hash, RING_SIZE) as usize];
        let backend = ids.get(&id).context("ring slot names a backend")?;
        Ok(packets::tunnelled(
            frame,
            backend.address,
            backend.mac,
            hash,
        ))
    }

    /// Runs `frame` once and checks verdict and output.
    fn check(&self, name: &str, frame: &[u8], want_action: u32, want: &[u8]) -> anyhow::Result<()> {
        let out = test_run::run(self.balancer.program()?, frame)?;
        ensure!(
            out.action == want_action,
            "{name}: {} instead of {}",
            action::name(out.action),
            action::name(want_action)
        );
        ensure!(
            out.packet == want,
            "{name}: output differs\ngot:\n{}\nwant:\n{}",
            packets::hex(&out.packet),
            packets::hex(want)
        );
        Ok(())
    }
}

/// Client `i` of the SYN scenarios: a distinct (address, port) per call.
fn syn_client4(i: usize) -> (Ipv4Addr, u16) {
    let a = (i >> 8) as u32;
    (
        Ipv4Addr::from(0x0a80_0000 | (a & 0x7f_ffff)),
        1024 + (i as u16 & 0xff) * 200,
    )
}

fn syn_client6(i: usize) -> (Ipv6Addr, u16) {
    let a = (i >> 8) as u32;
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0xc1, 0, 0, 0, (a >> 16) as u16, a as u16),
        1024 + (i as u16 & 0xff) * 200,
    )
}

/// `count` new flows for a SYN scenario: clients from `client(first)` on
/// whose flow `hash` falls into the first [`WARM_SETS`] sets of a table of
/// `ways`-way sets and the first [`WARM_SLOTS`] slots of the ring, found
/// before the timing starts. Each call's set is then full of older flows,
/// so the SYN takes the whole new-flow path (probe, VIP lookup, ring,
/// replacing the way idle longest), on memory that stays in cache as it
/// does when one SYN is sent over and over. The "over the whole table"
/// scenario spreads its new flows over every set and slot: there each
/// call waits for memory.
fn warm_syns<A>(
    first: usize,
    count: usize,
    client: fn(usize) -> (A, u16),
    hash: fn(A, u16) -> u32,
    ways: usize,
) -> Vec<(A, u16)>
where
    A: Copy,
{
    let sets = flow_table::sets(FLOW_TABLE_SIZE, ways);
    (first..)
        .map(client)
        .filter(|&(address, port)| {
            let hash = hash(address, port);
            hash & (sets - 1) < WARM_SETS && ring_slot(hash, RING_SIZE) < WARM_SLOTS
        })
        .take(count)
        .collect()
}

/// The scenarios of SYNs that open flows in warm sets ([`warm_syns`]).
const SYN4: &str = "IPv4 TCP SYN (new flow)";
const SYN6: &str = "IPv6 TCP SYN (new flow)";

/// The hash of a SYN client's flow to the web VIP.
fn syn_hash4(src: Ipv4Addr, sport: u16) -> u32 {
    hash4(src, sport, VIP4, 80, proto::TCP)
}

fn syn_hash6(src: Ipv6Addr, sport: u16) -> u32 {
    hash6(src, sport, VIP6, 80, proto::TCP)
}

/// The flow of the cycling scenario's call `i`, in an order that visits
/// all flows but not in the order they were created (multiplying by an
/// odd number permutes 0..65,536), so neither the flow entries nor their
/// buckets are touched in address order.
fn cycling_flow(i: usize) -> usize {
    i.wrapping_mul(40_503) % CYCLING_FLOWS
}

fn cycling_packet(flow: usize) -> Vec<u8> {
    let src = Ipv4Addr::from(0xc633_0000 | (flow as u32 >> 8));
    let sport = 2000 + (flow as u16 & 0xff);
    packets::tcp(src.into(), sport, VIP4.into(), 80, false)
}

fn main() -> anyhow::Result<()> {
    let setup = Setup::new()?;
    let client = packets::CLIENT_V4;
    let client6 = packets::CLIENT_V6;

    // Verify every scenario's verdict and bytes before timing anything.
    let est4 = packets::tcp(client.into(), 40000, VIP4.into(), 80, false);
    let want = setup.expected(
        &setup.web4,
        &est4,
        hash4(client, 40000, VIP4, 80, proto::TCP),
    )?;
    setup.check(
        "IPv4 established (creates the flow)",
        &est4,
        action::TX,
        &want,
    )?;
    setup.check("IPv4 established", &est4, action::TX, &want)?;

    for i in [0usize, 1, 255, 256, 70_000] {
        let (src, sport) = syn_client4(i + 1_000_000);
        let syn = packets::tcp(src.into(), sport, VIP4.into(), 80, true);
        let want = setup.expected(&setup.web4, &syn, hash4(src, sport, VIP4, 80, proto::TCP))?;
        setup.check("IPv4 SYN", &syn, action::TX, &want)?;
        let (src, sport) = syn_client6(i + 1_000_000);
        let syn = packets::tcp(src.into(), sport, VIP6.into(), 80, true);
        let want = setup.expected(&setup.web6, &syn, hash6(src, sport, VIP6, 80, proto::TCP))?;
        setup.check("IPv6 SYN", &syn, action::TX, &want)?;
    }

    let est6 = packets::tcp(client6.into(), 40000, VIP6.into(), 80, false);
    let want = setup.expected(
        &setup.web6,
        &est6,
        hash6(client6, 40000, VIP6, 80, proto::TCP),
    )?;
    setup.check(
        "IPv6 established (creates the flow)",
        &est6,
        action::TX,
        &want,
    )?;
    setup.check("IPv6 established", &est6, action::TX, &want)?;

    let udp = packets::udp(client.into(), 5353, VIP4.into(), 53);
    let want = setup.expected(&setup.dns4, &udp, hash4(client, 5353, VIP4, 53, proto::UDP))?;
    setup.check("UDP (creates the flow)", &udp, action::TX, &want)?;
    setup.check("UDP", &udp, action::TX, &want)?;

    let other = packets::tcp(client.into(), 40000, NOT_VIP4.into(), 80, false);
    setup.check("non-VIP", &other, action::PASS, &other)?;

    // The cycling flows: created once, each checked.
    let cycling: Vec<Vec<u8>> = (0..CYCLING_FLOWS).map(cycling_packet).collect();
    for (flow, frame) in cycling.iter().enumerate() {
        let src = Ipv4Addr::from(0xc633_0000 | (flow as u32 >> 8));
        let sport = 2000 + (flow as u16 & 0xff);
        let want = setup.expected(&setup.web4, frame, hash4(src, sport, VIP4, 80, proto::TCP))?;
        setup.check("cycling flow", frame, action::TX, &want)?;
    }

    // For profiling one scenario (`perf record`): LB_BENCH_ONLY=<part of
    // its name> runs only the matching ones, LB_BENCH_CALLS=<n> sets the
    // calls per round. The result files are written only by full runs.
    let only = std::env::var("LB_BENCH_ONLY").ok();
    let calls = std::env::var("LB_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CALLS);

    let selected = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    // New flows for the SYN scenarios: clients from 2,000,000 on (those
    // checked above are below), so every call opens a new flow. The search
    // takes seconds; a run without the scenario skips it.
    let syn_flows = |name| if selected(name) { calls * ROUNDS } else { 0 };
    let warm4 = warm_syns(
        2_000_000,
        syn_flows(SYN4),
        syn_client4,
        syn_hash4,
        flow_table::WAYS_V4,
    );
    let warm6 = warm_syns(
        2_000_000,
        syn_flows(SYN6),
        syn_client6,
        syn_hash6,
        flow_table::WAYS_V6,
    );
    let scenarios = [
        Scenario {
            name: "IPv4 TCP established",
            katran_ns: Some(79),
            packet: Box::new(move |_| est4.clone()),
        },
        Scenario {
            name: SYN4,
            katran_ns: Some(173),
            packet: Box::new(move |i| {
                let (src, sport) = warm4[i % warm4.len()];
                packets::tcp(src.into(), sport, VIP4.into(), 80, true)
            }),
        },
        Scenario {
            name: "IPv4 TCP SYN, new flows over the whole table",
            katran_ns: None,
            packet: Box::new(move |i| {
                let (src, sport) = syn_client4(i);
                packets::tcp(src.into(), sport, VIP4.into(), 80, true)
            }),
        },
        Scenario {
            name: "IPv6 TCP established",
            katran_ns: Some(73),
            packet: Box::new(move |_| est6.clone()),
        },
        Scenario {
            name: SYN6,
            katran_ns: None,
            packet: Box::new(move |i| {
                let (src, sport) = warm6[i % warm6.len()];
                packets::tcp(src.into(), sport, VIP6.into(), 80, true)
            }),
        },
        Scenario {
            name: "IPv4 UDP (established flow)",
            katran_ns: None,
            packet: Box::new(move |_| udp.clone()),
        },
        Scenario {
            name: "non-VIP packet",
            katran_ns: Some(29),
            packet: Box::new(move |_| other.clone()),
        },
        Scenario {
            name: "IPv4 TCP established, 65,536 flows cycling",
            katran_ns: Some(248),
            packet: Box::new(move |i| cycling[cycling_flow(i)].clone()),
        },
    ];

    let program = setup.balancer.program()?;
    let pass = setup.pass.program()?;
    let baseline_packet = packets::tcp(client.into(), 40000, VIP4.into(), 80, false);
    let mut rows: Vec<Row> = scenarios
        .iter()
        .map(|s| Row {
            name: s.name,
            katran_ns: s.katran_ns,
            target_ns: s.target_ns(),
            rounds: Vec::new(),
        })
        .collect();
    for round in 0..ROUNDS {
        for (scenario, row) in scenarios.iter().zip(rows.iter_mut()) {
            if !selected(scenario.name) {
                continue;
            }
            let mut samples = Vec::with_capacity(calls);
            let mut baseline = Vec::with_capacity(calls);
            for call in round * calls..(round + 1) * calls {
                let frame = (scenario.packet)(call);
                baseline.push(test_run::run(pass, &baseline_packet)?.duration_ns);
                samples.push(test_run::run(program, &frame)?.duration_ns);
            }
            row.rounds.push((median(samples), median(baseline)));
        }
    }

    let verified = setup.balancer.verified_instructions()?;
    if only.is_some() || calls != CALLS {
        rows.retain(|row| !row.rounds.is_empty());
        print!("{}", markdown(&rows, verified));
        return Ok(());
    }
    let markdown = markdown(&rows, verified);
    print!("{markdown}");
    let dir = results::default_dir();
    results::write_pair(&dir, "per-packet", &json(&rows, verified), &markdown)?;
    println!("\nwritten: {}/per-packet.{{md,json}}", dir.display());
    Ok(())
}

fn median(mut samples: Vec<u64>) -> u64 {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

fn opt(value: Option<u64>) -> String {
    value.map_or("—".into(), |v| v.to_string())
}

fn markdown(rows: &[Row], verified: Option<u32>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Per-packet cost of `lb_balancer` (BPF_PROG_TEST_RUN)\n"
    );
    let _ = writeln!(
        out,
        "Median of {CALLS} single calls (repeat = 1) per round, {ROUNDS} rounds; each call \
         alternates with an XDP_PASS call whose median is subtracted (\"net\"). The net figure \
         is the median of the rounds' nets; \"spread\" is their range. Ring {RING_SIZE} slots, \
         {BACKENDS} backends per VIP, flow table 1M entries, kernel {}. Katran: the same \
         measurement of Katran's balancer; target: 20% below Katran.\n\n\
         SYN (new flow): every call opens a flow never seen before, whose flow-table set is \
         full of older flows, so it takes the whole new-flow path (probe, VIP lookup, ring, \
         replacing the way idle longest). These new flows fall into {WARM_SETS} sets of the \
         table (64 KiB) and {WARM_SLOTS} slots of the ring (16 KiB), which stay in cache as \
         when one SYN is sent over and over; \"over the whole table\" spreads them over every \
         set and slot, so that each call also waits for memory.\n",
        kernel_release()
    );
    let _ = writeln!(
        out,
        "| scenario | median ns | XDP_PASS ns | net ns | spread | Katran net ns | target ns | met |"
    );
    let _ = writeln!(
        out,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | :---: |"
    );
    for row in rows {
        let nets = row.nets();
        let met = match row.meets_target() {
            Some(true) => "yes",
            Some(false) => "no",
            None => "—",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {}–{} | {} | {} | {} |",
            row.name,
            row.median(),
            row.baseline(),
            row.net(),
            nets[0],
            nets[nets.len() - 1],
            opt(row.katran_ns),
            opt(row.target_ns),
            met
        );
    }
    if let Some(count) = verified {
        let _ = writeln!(
            out,
            "\nVerifier: {count} instructions processed (kernel {}).",
            kernel_release()
        );
    }
    out
}

fn json(rows: &[Row], verified: Option<u32>) -> serde_json::Value {
    let scenarios: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let rounds: Vec<serde_json::Value> = row
                .rounds
                .iter()
                .map(|(ns, base)| serde_json::json!({"median_ns": ns, "xdp_pass_ns": base}))
                .collect();
            serde_json::json!({
                "name": row.name,
                "median_ns": row.median(),
                "xdp_pass_ns": row.baseline(),
                "net_ns": row.net(),
                "katran_net_ns": row.katran_ns,
                "target_net_ns": row.target_ns,
                "meets_target": row.meets_target(),
                "rounds": rounds,
            })
        })
        .collect();
    serde_json::json!({
        "method": "BPF_PROG_TEST_RUN, repeat 1; median of single calls, net of interleaved XDP_PASS calls; median over rounds",
        "kernel": kernel_release(),
        "calls_per_round": CALLS,
        "rounds": ROUNDS,
        "ring_size": RING_SIZE,
        "backends_per_vip": BACKENDS,
        "flow_table_size": FLOW_TABLE_SIZE,
        "verified_instructions": verified,
        "scenarios": scenarios,
    })
}
