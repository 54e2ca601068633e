//! The packet-rate results as JSON, Markdown and an SVG plot of the rate
//! against the number of flows. A device's rate at a point is the median
//! over rounds; a balancer mode's ratio to the baseline is the median of
//! the per-round ratios, each of a balancer and a baseline measurement of
//! the same round ([`stats`](super::stats)).
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{Point, Run, dut::Kind, frame::Protocol, stats};

/// The balancer should reach this share of the MAC-swap baseline.
pub const TARGET_RATIO: f64 = 0.9;

fn find(run: &Run, dut: Kind, protocol: Protocol, flows: u32) -> Option<&Point> {
    run.points
        .iter()
        .find(|p| p.dut == dut && p.protocol == protocol && p.flows == flows)
}

fn protocols(run: &Run) -> Vec<Protocol> {
    let mut out: Vec<Protocol> = Vec::new();
    for p in &run.points {
        if !out.contains(&p.protocol) {
            out.push(p.protocol);
        }
    }
    out
}

fn flows(run: &Run) -> Vec<u32> {
    let mut out: Vec<u32> = run.points.iter().map(|p| p.flows).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// A balancer mode against the baseline at one (protocol, flows).
#[derive(Clone, Debug, PartialEq)]
struct Ratio {
    protocol: Protocol,
    flows: u32,
    /// The median of `rounds`.
    median: f64,
    /// `(round, balancer pps / baseline pps of that round)`, for every
    /// round that measured both.
    rounds: Vec<(usize, f64)>,
}

impl Ratio {
    /// The lowest and the highest per-round ratio.
    fn range(&self) -> (f64, f64) {
        self.rounds
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(_, r)| {
                (lo.min(r), hi.max(r))
            })
    }
}

/// `balancer` against the baseline, per (protocol, flows) where both
/// were measured in at least one common round.
fn ratios(run: &Run, balancer: Kind) -> Vec<Ratio> {
    let mut out = Vec::new();
    for protocol in protocols(run) {
        for flows in flows(run) {
            out.extend(ratio(run, balancer, protocol, flows));
        }
    }
    out
}

fn ratio(run: &Run, balancer: Kind, protocol: Protocol, flows: u32) -> Option<Ratio> {
    let b = find(run, balancer, protocol, flows)?;
    let m = find(run, Kind::MacSwap, protocol, flows)?;
    let rounds = stats::paired_ratios(&b.pps_by_round(), &m.pps_by_round());
    let median = stats::median(&rounds.iter().map(|&(_, r)| r).collect::<Vec<_>>())?;
    Some(Ratio {
        protocol,
        flows,
        median,
        rounds,
    })
}

/// The lowest of `balancer`'s median ratios, if it was measured.
fn worst(run: &Run, balancer: Kind) -> Option<f64> {
    ratios(run, balancer)
        .iter()
        .map(|r| r.median)
        .reduce(f64::min)
}

/// Whether `balancer` ran right before or after the baseline in every
/// round (neighbours in the order of turns, which odd rounds reverse).
fn back_to_back(run: &Run, balancer: Kind) -> bool {
    let at = |kind| run.devices.iter().position(|&k| k == kind);
    matches!((at(balancer), at(Kind::MacSwap)), (Some(b), Some(m)) if b.abs_diff(m) == 1)
}

/// `count` and `noun`, plural unless one.
fn counted(count: usize, noun: &str) -> String {
    format!("{count} {noun}{}", if count == 1 { "" } else { "s" })
}

/// The name of `kind` in the text and the table's head.
fn label(kind: Kind) -> &'static str {
    match kind {
        Kind::Balancer => "balancer (tunnel)",
        Kind::BalancerDsr => "balancer (dsr)",
        Kind::MacSwap => "XDP MAC swap",
        Kind::FlowFloor => "flow-read floor",
        Kind::Nftables => "nftables DNAT",
    }
}

pub fn json(run: &Run) -> Value {
    // Per round, from 0: null where that round has no value.
    let by_round = |value: &dyn Fn(usize) -> Option<f64>| -> Vec<Option<f64>> {
        (0..run.rounds).map(value).collect()
    };
    let vs_baseline = |balancer| {
        ratios(run, balancer)
            .iter()
            .map(|ratio| {
                json!({
                    "protocol": ratio.protocol.name(),
                    "flows": ratio.flows,
                    "ratio": ratio.median,
                    "round_ratios": by_round(&|round| {
                        ratio.rounds.iter().find(|(r, _)| *r == round).map(|&(_, v)| v)
                    }),
                })
            })
            .collect::<Vec<_>>()
    };
    let met = |balancer| worst(run, balancer).map(|w| w >= TARGET_RATIO);
    json!({
        "frame_bytes": lb_common::bench::FRAME_LEN,
        "cpus": run.cpus,
        "kernel": run.kernel,
        "warmup_seconds": run.warmup.as_secs_f64(),
        "measure_seconds": run.measure.as_secs_f64(),
        "rounds": run.rounds,
        "statistics": {
            "mpps": "median over rounds",
            "offered_mpps": "median over rounds",
            "seconds": "median over rounds",
            "expected_share": "lowest over rounds",
            "ratio": "median over rounds of device pps / baseline pps of the same round",
        },
        "devices": super::TURNS.iter().map(|k| json!({
            "name": k.name(),
            "description": k.description(),
        })).collect::<Vec<_>>(),
        "turns": run.devices.iter().map(|k| k.name()).collect::<Vec<_>>(),
        "points": run.points.iter().map(|p| json!({
            "device": p.dut.name(),
            "protocol": p.protocol.name(),
            "flows": p.flows,
            "mpps": p.pps().map(|pps| pps / 1e6),
            "rounds_mpps": by_round(&|round| p.round(round).map(|m| m.pps / 1e6)),
            "offered_mpps": p.offered_pps().map(|pps| pps / 1e6),
            "expected_share": p.rounds.iter().map(|m| m.expected_share).reduce(f64::min),
            "seconds": stats::median(&p.rounds.iter().map(|m| m.seconds).collect::<Vec<_>>()),
        })).collect::<Vec<_>>(),
        "balancer_vs_baseline": vs_baseline(Kind::Balancer),
        "balancer_dsr_vs_baseline": vs_baseline(Kind::BalancerDsr),
        "flow_floor_vs_baseline": vs_baseline(Kind::FlowFloor),
        "target": {
            "ratio": TARGET_RATIO,
            "statistic": "lowest median ratio over the points",
            "met": met(Kind::Balancer),
            "met_dsr": met(Kind::BalancerDsr),
        },
        "verifier_instructions": run.verified.iter()
            .map(|(name, count)| (name.clone(), json!(count)))
            .collect::<serde_json::Map<_, _>>(),
    })
}

pub fn markdown(run: &Run) -> String {
    let mut out = String::from("## Packet rate, end to end (network namespaces)\n\n");
    let rounds = counted(run.rounds, "round");
    let order = run
        .devices
        .iter()
        .map(|&k| label(k))
        .collect::<Vec<_>>()
        .join(", ");
    let reversed = if run.rounds > 1 && run.devices.len() > 1 {
        ", reversed in every other round"
    } else {
        ""
    };
    let _ = write!(
        out,
        "{}-byte frames from an XDP generator (BPF_PROG_RUN live frames, one thread per \
         CPU) through a veth into the device under test, forwarded back to an XDP sink; \
         {} CPUs shared by generator, device and sink; kernel {}. Each point is measured \
         in {rounds}. In each round the devices run one after the other, each for {:.1} s \
         after {:.1} s of warm-up, in the order {order}{reversed}. Mpps: frames per second \
         received by the sink, the median of the {rounds}.",
        lb_common::bench::FRAME_LEN,
        run.cpus,
        run.kernel,
        run.measure.as_secs_f64(),
        run.warmup.as_secs_f64(),
    );
    let compared: Vec<Kind> = Kind::COMPARED
        .into_iter()
        .filter(|&k| !ratios(run, k).is_empty())
        .collect();
    if !compared.is_empty() {
        let adjacent = if compared
            .iter()
            .filter(|k| Kind::BALANCERS.contains(k))
            .all(|&k| back_to_back(run, k))
        {
            ", the two measured back to back"
        } else {
            ""
        };
        let spread = if run.rounds > 1 {
            "; in brackets the lowest and the highest of them"
        } else {
            ""
        };
        let _ = write!(
            out,
            " Balancer / baseline: in each round, the balancer's rate divided by the XDP \
             MAC swap's rate of the same round{adjacent}; the figure is the median of these \
             per-round ratios{spread}. It is not the quotient of the two Mpps columns, \
             whose medians may come from different rounds. The flow-read floor is the MAC \
             swap plus the read of the packet's line of a flow table sized for 1M flows, \
             whose address the program waits for: what any balancer that keeps per-flow \
             state pays at least; its share is taken the same way."
        );
    }
    out.push_str(" Compare only figures of one run: the machine is shared.\n\n");
    for protocol in protocols(run) {
        let _ = writeln!(
            out,
            "### {}\n\n| flows | balancer (tunnel) | balancer (dsr) | flow-read floor \
             | XDP MAC swap (baseline) | nftables DNAT | tunnel / baseline | dsr / baseline \
             | floor / baseline |\n\
             | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            protocol.name().to_uppercase()
        );
        for flows in flows(run) {
            let cell = |kind| {
                find(run, kind, protocol, flows)
                    .and_then(Point::pps)
                    .map_or("–".to_owned(), |pps| format!("{:.2}", pps / 1e6))
            };
            let share = |kind| {
                ratio(run, kind, protocol, flows).map_or("–".to_owned(), |r| {
                    let (lo, hi) = r.range();
                    if r.rounds.len() > 1 {
                        format!(
                            "{:.0}% ({:.0}–{:.0}%)",
                            100.0 * r.median,
                            100.0 * lo,
                            100.0 * hi
                        )
                    } else {
                        format!("{:.0}%", 100.0 * r.median)
                    }
                })
            };
            let _ = writeln!(
                out,
                "| {flows} | {} | {} | {} | {} | {} | {} | {} | {} |",
                cell(Kind::Balancer),
                cell(Kind::BalancerDsr),
                cell(Kind::FlowFloor),
                cell(Kind::MacSwap),
                cell(Kind::Nftables),
                share(Kind::Balancer),
                share(Kind::BalancerDsr),
                share(Kind::FlowFloor)
            );
        }
        out.push('\n');
    }
    let verdicts: Vec<String> = [(Kind::Balancer, "tunnel"), (Kind::BalancerDsr, "dsr")]
        .iter()
        .filter_map(|&(kind, mode)| {
            let worst = worst(run, kind)?;
            let met = if worst >= TARGET_RATIO {
                "met"
            } else {
                "not met"
            };
            Some(format!(
                "{mode} mode **{met}** (lowest {:.0}%)",
                100.0 * worst
            ))
        })
        .collect();
    if !verdicts.is_empty() {
        let _ = writeln!(
            out,
            "Target: the median ratio of the balancer to the baseline ≥ {:.0}% at every \
             point: {}.\n",
            100.0 * TARGET_RATIO,
            verdicts.join("; ")
        );
    }
    out.push_str("![packet rate against flows](packet-rate.svg)\n");
    out
}

const COLORS: [(Kind, &str); 5] = [
    (Kind::Balancer, "#1f77b4"),
    (Kind::BalancerDsr, "#9467bd"),
    (Kind::FlowFloor, "#8c564b"),
    (Kind::MacSwap, "#2ca02c"),
    (Kind::Nftables, "#d62728"),
];

/// Mpps against flows (log scale), one line per device and protocol.
pub fn svg(run: &Run) -> String {
    let (width, height) = (760.0, 440.0);
    let (left, right, top, bottom) = (70.0, 230.0, 40.0, 60.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let flows = flows(run);
    let max_log = flows
        .iter()
        .map(|f| f64::from(*f).log2())
        .fold(1.0, f64::max);
    let x = |f: u32| left + plot_w * f64::from(f).log2() / max_log;
    let peak = run
        .points
        .iter()
        .filter_map(Point::pps)
        .map(|pps| pps / 1e6)
        .fold(1.0, f64::max);
    let step = nice_step(peak / 5.0);
    let y_max = (peak / step).ceil() * step;
    let y = |mpps: f64| top + plot_h * (1.0 - mpps / y_max);

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">Packet rate against number of flows ({}-byte frames, {} CPUs)</text>"#,
        left + plot_w / 2.0,
        lb_common::bench::FRAME_LEN,
        run.cpus
    );
    let mut tick = 0.0;
    while tick <= y_max + 1e-9 {
        let ty = y(tick);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{tick}</text>"##,
            left + plot_w,
            left - 6.0,
            ty + 4.0
        );
        tick += step;
    }
    for &f in &flows {
        let tx = x(f);
        let _ = writeln!(
            s,
            r##"<line x1="{tx:.1}" y1="{top}" x2="{tx:.1}" y2="{:.1}" stroke="#eee"/><text x="{tx:.1}" y="{:.1}" text-anchor="middle">{f}</text>"##,
            top + plot_h,
            top + plot_h + 18.0
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">flows (log scale)</text>"#,
        left + plot_w / 2.0,
        height - 18.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(20 {:.1}) rotate(-90)" text-anchor="middle">Mpps at the sink (median of {})</text>"#,
        top + plot_h / 2.0,
        counted(run.rounds, "round")
    );
    let mut legend_y = top + 10.0;
    for protocol in protocols(run) {
        let dash = if protocol == Protocol::Tcp {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        for (kind, color) in COLORS {
            // (flows, median Mpps)
            let mut line: Vec<(u32, f64)> = run
                .points
                .iter()
                .filter(|p| p.dut == kind && p.protocol == protocol)
                .filter_map(|p| Some((p.flows, p.pps()? / 1e6)))
                .collect();
            if line.is_empty() {
                continue;
            }
            line.sort_by_key(|&(flows, _)| flows);
            let path = line
                .iter()
                .map(|&(flows, mpps)| format!("{:.1},{:.1}", x(flows), y(mpps)))
                .collect::<Vec<_>>()
                .join(" ");
            let _ = writeln!(
                s,
                r#"<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#
            );
            for &(flows, mpps) in &line {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                    x(flows),
                    y(mpps)
                );
            }
            let lx = left + plot_w + 15.0;
            let _ = writeln!(
                s,
                r#"<line x1="{lx}" y1="{legend_y}" x2="{:.1}" y2="{legend_y}" stroke="{color}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{} {}</text>"#,
                lx + 28.0,
                lx + 34.0,
                legend_y + 4.0,
                kind.name(),
                protocol.name().to_uppercase()
            );
            legend_y += 20.0;
        }
    }
    s.push_str("</svg>\n");
    s
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let power = 10f64.powf(raw.max(1e-9).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * power)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::rate::{Measurement, TURNS, record};

    /// A UDP run at 1 and 65,536 flows: per device its Mpps in each
    /// round, `None` where the round did not measure it.
    fn run_of(devices: &[Kind], series: &[(Kind, &[Option<f64>])]) -> Run {
        let rounds = series.iter().map(|(_, r)| r.len()).max().unwrap_or(0);
        let mut points = Vec::new();
        for round in 0..rounds {
            for flows in [1, 65_536] {
                for &(dut, mpps) in series {
                    if let Some(Some(mpps)) = mpps.get(round) {
                        let measurement = Measurement {
                            round,
                            pps: mpps * 1e6,
                            offered_pps: 30e6,
                            expected_share: 1.0 - 0.001 * round as f64,
                            seconds: 1.0,
                        };
                        record(&mut points, dut, Protocol::Udp, flows, measurement);
                    }
                }
            }
        }
        Run {
            cpus: 2,
            points,
            kernel: "6.18".into(),
            verified: vec![],
            devices: devices.to_vec(),
            warmup: Duration::from_millis(300),
            measure: Duration::from_secs(1),
            rounds,
        }
    }

    fn close(value: &Value, expected: f64) -> bool {
        value.as_f64().is_some_and(|v| (v - expected).abs() < 1e-9)
    }

    #[test]
    fn the_ratio_is_the_median_of_paired_ratios_not_the_ratio_of_medians() {
        // The balancer hit a slow moment in round 2, the dsr mode a fast
        // one in round 1: the ratios of the medians (0.80 and 0.90) would
        // call the tunnel mode failed and the dsr mode passed.
        let run = run_of(
            &TURNS,
            &[
                (Kind::Balancer, &[Some(7.6), Some(18.4), Some(11.2)]),
                (Kind::BalancerDsr, &[Some(6.8), Some(17.0), Some(12.6)]),
                (Kind::MacSwap, &[Some(8.0), Some(20.0), Some(14.0)]),
                (Kind::FlowFloor, &[Some(4.0), Some(14.0), Some(9.8)]),
                (Kind::Nftables, &[Some(2.0), Some(2.2), Some(1.8)]),
            ],
        );
        let json = json(&run);
        assert_eq!(json["target"]["met"], true);
        assert_eq!(json["target"]["met_dsr"], false);
        let tunnel = &json["balancer_vs_baseline"][1];
        assert_eq!(tunnel["flows"], 65_536);
        assert!(close(&tunnel["ratio"], 0.92), "{tunnel}");
        let per_round = tunnel["round_ratios"].as_array().unwrap();
        assert_eq!(per_round.len(), 3);
        for (value, expected) in per_round.iter().zip([0.95, 0.92, 0.8]) {
            assert!(close(value, expected), "{tunnel}");
        }
        assert!(close(&json["balancer_dsr_vs_baseline"][0]["ratio"], 0.85));
        // Floor ratios 0.5, 0.7, 0.7; no target of its own.
        assert!(close(&json["flow_floor_vs_baseline"][0]["ratio"], 0.7));
        let balancer = &json["points"][0];
        assert_eq!(balancer["device"], "balancer");
        assert!(close(&balancer["mpps"], 11.2), "{balancer}");
        let rounds_mpps = balancer["rounds_mpps"].as_array().unwrap();
        for (value, expected) in rounds_mpps.iter().zip([7.6, 18.4, 11.2]) {
            assert!(close(value, expected), "{balancer}");
        }
        assert!(close(&balancer["expected_share"], 0.998));

        let md = markdown(&run);
        assert!(
            md.contains(
                "| 65536 | 11.20 | 12.60 | 9.80 | 14.00 | 2.00 | 92% (80–95%) | 85% (85–90%) \
                 | 70% (50–70%) |"
            ),
            "{md}"
        );
        assert!(md.contains("Each point is measured in 3 rounds."), "{md}");
        assert!(
            md.contains(
                "in the order flow-read floor, balancer (tunnel), XDP MAC swap, balancer (dsr), \
                 nftables DNAT, reversed in every other round. Mpps: frames per second received by the sink, \
                 the median of the 3 rounds."
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "of the same round, the two measured back to back; the figure is the median"
            ),
            "{md}"
        );
        assert!(
            md.contains("tunnel mode **met** (lowest 92%); dsr mode **not met** (lowest 85%)"),
            "{md}"
        );
        let svg = svg(&run);
        assert_eq!(svg.matches("<polyline").count(), 5);
        assert!(svg.contains("median of 3 rounds"));
        assert!(svg.ends_with("</svg>\n"));
    }

    #[test]
    fn of_an_even_count_of_rounds_the_middle_two_are_averaged() {
        let run = run_of(
            // The tunnel mode not next to the baseline.
            &[Kind::Balancer, Kind::BalancerDsr, Kind::MacSwap],
            &[
                (
                    Kind::Balancer,
                    &[Some(9.0), Some(8.0), Some(9.6), Some(7.0)],
                ),
                (
                    Kind::MacSwap,
                    &[Some(10.0), Some(10.0), Some(10.0), Some(10.0)],
                ),
            ],
        );
        let json = json(&run);
        // Ratios 0.9, 0.8, 0.96, 0.7: median (0.8 + 0.9) / 2.
        assert!(close(&json["balancer_vs_baseline"][0]["ratio"], 0.85));
        assert!(close(&json["points"][0]["mpps"], 8.5));
        assert_eq!(json["target"]["met"], false);
        assert_eq!(json["target"]["met_dsr"], Value::Null);
        assert_eq!(json["balancer_dsr_vs_baseline"], json!([]));
        let md = markdown(&run);
        assert!(
            md.contains("| 1 | 8.50 | – | – | 10.00 | – | 85% (70–96%) | – | – |"),
            "{md}"
        );
        assert!(!md.contains("back to back"), "{md}");
        assert!(md.contains("tunnel mode **not met** (lowest 85%)."), "{md}");
        assert!(!md.contains("dsr mode"), "{md}");
    }

    #[test]
    fn a_round_without_the_baseline_gives_no_ratio_for_that_round() {
        let run = run_of(
            &TURNS,
            &[
                (Kind::Balancer, &[Some(9.0), Some(5.0), Some(9.6)]),
                (Kind::MacSwap, &[Some(10.0), None, Some(10.0)]),
            ],
        );
        let json = json(&run);
        let tunnel = &json["balancer_vs_baseline"][0];
        // Round 1 would have given 0.5 and made the median 0.9.
        assert!(close(&tunnel["ratio"], 0.93), "{tunnel}");
        let per_round = tunnel["round_ratios"].as_array().unwrap();
        assert!(close(&per_round[0], 0.9) && close(&per_round[2], 0.96));
        assert_eq!(per_round[1], Value::Null);
        let baseline = json["points"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["device"] == "xdp-macswap")
            .unwrap();
        assert_eq!(baseline["rounds_mpps"], json!([10.0, null, 10.0]));
        assert_eq!(json["target"]["met"], true);
        let md = markdown(&run);
        assert!(
            md.contains("| 1 | 9.00 | – | – | 10.00 | – | 93% (90–96%) | – | – |"),
            "{md}"
        );
    }

    #[test]
    fn without_the_baseline_no_ratio_and_no_verdict() {
        let devices = [Kind::Balancer, Kind::Nftables];
        let run = run_of(
            &devices,
            &[
                (Kind::Balancer, &[Some(9.0), Some(8.0), Some(9.5)]),
                (Kind::Nftables, &[Some(2.0), Some(2.0), Some(2.0)]),
            ],
        );
        let json = json(&run);
        assert_eq!(json["balancer_vs_baseline"], json!([]));
        assert_eq!(json["target"]["met"], Value::Null);
        assert_eq!(json["turns"], json!(["balancer", "nftables-dnat"]));
        let md = markdown(&run);
        assert!(
            md.contains("| 65536 | 9.00 | – | – | – | 2.00 | – | – | – |"),
            "{md}"
        );
        assert!(!md.contains("Balancer / baseline"), "{md}");
        assert!(!md.contains("Target:"), "{md}");
        assert_eq!(svg(&run).matches("<polyline").count(), 2);
    }

    #[test]
    fn one_round_states_no_range_and_no_reversal() {
        let run = run_of(
            &TURNS,
            &[
                (Kind::Balancer, &[Some(9.5)]),
                (Kind::MacSwap, &[Some(10.0)]),
            ],
        );
        let md = markdown(&run);
        assert!(
            md.contains("| 1 | 9.50 | – | – | 10.00 | – | 95% | – | – |"),
            "{md}"
        );
        assert!(md.contains("Each point is measured in 1 round."), "{md}");
        assert!(!md.contains("reversed"), "{md}");
        assert!(!md.contains("in brackets"), "{md}");
    }
}
