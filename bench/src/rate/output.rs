//! The packet-rate results as JSON, Markdown and an SVG plot of the rate
//! against the number of flows.
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{Point, Run, dut::Kind, frame::Protocol};

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

/// Rate of `balancer` over the baseline's, per (protocol, flows).
fn ratios(run: &Run, balancer: Kind) -> Vec<(Protocol, u32, f64)> {
    let mut out = Vec::new();
    for protocol in protocols(run) {
        for flows in flows(run) {
            if let Some(ratio) = ratio(run, balancer, protocol, flows) {
                out.push((protocol, flows, ratio));
            }
        }
    }
    out
}

fn ratio(run: &Run, balancer: Kind, protocol: Protocol, flows: u32) -> Option<f64> {
    let b = find(run, balancer, protocol, flows)?;
    let m = find(run, Kind::MacSwap, protocol, flows)?;
    Some(b.pps / m.pps)
}

/// The lowest of `balancer`'s ratios, if it was measured.
fn worst(run: &Run, balancer: Kind) -> Option<f64> {
    ratios(run, balancer)
        .iter()
        .map(|(_, _, r)| *r)
        .reduce(f64::min)
}

pub fn json(run: &Run) -> Value {
    let vs_baseline = |balancer| {
        ratios(run, balancer)
            .iter()
            .map(|(protocol, flows, ratio)| {
                json!({
                    "protocol": protocol.name(),
                    "flows": flows,
                    "ratio": ratio,
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
        "devices": Kind::ALL.iter().map(|k| json!({
            "name": k.name(),
            "description": k.description(),
        })).collect::<Vec<_>>(),
        "points": run.points.iter().map(|p| json!({
            "device": p.dut.name(),
            "protocol": p.protocol.name(),
            "flows": p.flows,
            "mpps": p.pps / 1e6,
            "offered_mpps": p.offered_pps / 1e6,
            "expected_share": p.expected_share,
            "seconds": p.seconds,
        })).collect::<Vec<_>>(),
        "balancer_vs_baseline": vs_baseline(Kind::Balancer),
        "balancer_dsr_vs_baseline": vs_baseline(Kind::BalancerDsr),
        "target": {
            "ratio": TARGET_RATIO,
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
    let _ = writeln!(
        out,
        "{}-byte frames from an XDP generator (BPF_PROG_RUN live frames, one thread per \
         CPU) through a veth into the device under test, forwarded back to an XDP sink; \
         {} CPUs shared by generator, device and sink; kernel {}. Each point: {:.1} s \
         after {:.1} s of warm-up, the devices taking turns, best of {} round(s). Mpps \
         received by the sink. Compare only figures of one run: the machine is shared.\n",
        lb_common::bench::FRAME_LEN,
        run.cpus,
        run.kernel,
        run.measure.as_secs_f64(),
        run.warmup.as_secs_f64(),
        run.rounds
    );
    for protocol in protocols(run) {
        let _ = writeln!(
            out,
            "### {}\n\n| flows | balancer (tunnel) | balancer (dsr) | XDP MAC swap (baseline) \
             | nftables DNAT | tunnel / baseline | dsr / baseline |\n\
             | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            protocol.name().to_uppercase()
        );
        for flows in flows(run) {
            let cell = |kind| {
                find(run, kind, protocol, flows)
                    .map_or("–".to_owned(), |p| format!("{:.2}", p.pps / 1e6))
            };
            let share = |kind| {
                ratio(run, kind, protocol, flows)
                    .map_or("–".to_owned(), |r| format!("{:.0}%", 100.0 * r))
            };
            let _ = writeln!(
                out,
                "| {flows} | {} | {} | {} | {} | {} | {} |",
                cell(Kind::Balancer),
                cell(Kind::BalancerDsr),
                cell(Kind::MacSwap),
                cell(Kind::Nftables),
                share(Kind::Balancer),
                share(Kind::BalancerDsr)
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
            "Target: balancer ≥ {:.0}% of the baseline at every point: {}.\n",
            100.0 * TARGET_RATIO,
            verdicts.join("; ")
        );
    }
    out.push_str("![packet rate against flows](packet-rate.svg)\n");
    out
}

const COLORS: [(Kind, &str); 4] = [
    (Kind::Balancer, "#1f77b4"),
    (Kind::BalancerDsr, "#9467bd"),
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
    let peak = run.points.iter().map(|p| p.pps / 1e6).fold(1.0, f64::max);
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
        r#"<text transform="translate(20 {:.1}) rotate(-90)" text-anchor="middle">Mpps at the sink</text>"#,
        top + plot_h / 2.0
    );
    let mut legend_y = top + 10.0;
    for protocol in protocols(run) {
        let dash = if protocol == Protocol::Tcp {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        for (kind, color) in COLORS {
            let mut line: Vec<&Point> = run
                .points
                .iter()
                .filter(|p| p.dut == kind && p.protocol == protocol)
                .collect();
            if line.is_empty() {
                continue;
            }
            line.sort_by_key(|p| p.flows);
            let path = line
                .iter()
                .map(|p| format!("{:.1},{:.1}", x(p.flows), y(p.pps / 1e6)))
                .collect::<Vec<_>>()
                .join(" ");
            let _ = writeln!(
                s,
                r#"<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#
            );
            for p in &line {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                    x(p.flows),
                    y(p.pps / 1e6)
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

    #[test]
    fn reports_ratios_and_draws_every_series() {
        let mut points = Vec::new();
        for (dut, mpps) in [
            (Kind::Balancer, 9.5),
            (Kind::BalancerDsr, 8.5),
            (Kind::MacSwap, 10.0),
            (Kind::Nftables, 2.0),
        ] {
            for flows in [1, 65_536] {
                points.push(Point {
                    dut,
                    protocol: Protocol::Udp,
                    flows,
                    pps: mpps * 1e6,
                    offered_pps: mpps * 1e6,
                    expected_share: 1.0,
                    seconds: 1.0,
                });
            }
        }
        let run = Run {
            cpus: 2,
            points,
            kernel: "6.18".into(),
            verified: vec![],
            warmup: Duration::from_millis(300),
            measure: Duration::from_secs(1),
            rounds: 1,
        };
        let json = json(&run);
        assert_eq!(json["target"]["met"], true);
        assert_eq!(json["target"]["met_dsr"], false);
        assert!((json["balancer_vs_baseline"][0]["ratio"].as_f64().unwrap() - 0.95).abs() < 1e-9);
        assert!(
            (json["balancer_dsr_vs_baseline"][1]["ratio"]
                .as_f64()
                .unwrap()
                - 0.85)
                .abs()
                < 1e-9
        );
        let md = markdown(&run);
        assert!(
            md.contains("| 65536 | 9.50 | 8.50 | 10.00 | 2.00 | 95% | 85% |"),
            "{md}"
        );
        assert!(
            md.contains("tunnel mode **met** (lowest 95%); dsr mode **not met** (lowest 85%)"),
            "{md}"
        );
        let svg = svg(&run);
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(svg.ends_with("</svg>\n"));
    }
}
