//! Control-plane benchmarks (Criterion): Maglev table builds, VRRP advert
//! encode/decode, configuration parsing and diffing, and a full "reload"
//! of 1,000 virtual servers × 100 backends through the map programmer
//! (timed by hand: one run takes seconds).
//!
//! `cargo bench -p lb-bench --bench control_plane`; `cargo xtask bench`
//! runs it and turns Criterion's estimates into
//! `bench/results/control-plane.{json,md}`.
use std::{
    hint::black_box,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Instant,
};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use lb_bench::fixtures;
use lb_common::{Backend, VipMeta};
use lb_daemon::{
    config,
    dataplane::{
        Programmer,
        maps::{MapWriter, MemoryMaps, VipKey},
        programmer::Capacity,
    },
    maglev::{self, Member},
    vrrp::packet::{self, Advert, Version},
};

const RING: u32 = 65_537;

fn members(n: u32) -> Vec<Member> {
    (1..=n)
        .map(|i| {
            let address = IpAddr::V4(Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8));
            Member {
                id: i,
                key: maglev::key_of(&address),
                weight: 100,
            }
        })
        .collect()
}

fn maglev_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("maglev_build");
    for n in [10u32, 100, 1_000, 10_000] {
        let members = members(n);
        group.throughput(Throughput::Elements(u64::from(RING)));
        group.bench_with_input(BenchmarkId::from_parameter(n), &members, |b, members| {
            b.iter(|| maglev::build(black_box(members), RING));
        });
    }
    group.finish();
}

fn vrrp(c: &mut Criterion) {
    let mut group = c.benchmark_group("vrrp");
    let v4 = (
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
        IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18)),
    );
    let v6 = (
        IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2)),
        IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12)),
    );
    let cases = [
        (
            "v3_ipv4",
            Advert {
                version: Version::V3,
                vrid: 51,
                priority: 150,
                interval_cs: 100,
                addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))],
            },
            v4,
        ),
        (
            "v2_ipv4",
            Advert {
                version: Version::V2,
                vrid: 51,
                priority: 150,
                interval_cs: 100,
                addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))],
            },
            v4,
        ),
        (
            "v3_ipv6",
            Advert {
                version: Version::V3,
                vrid: 51,
                priority: 150,
                interval_cs: 100,
                addresses: vec![IpAddr::V6(Ipv6Addr::new(
                    0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10,
                ))],
            },
            v6,
        ),
    ];
    for (name, advert, (src, dst)) in cases {
        let bytes = packet::encode(&advert, src, dst).expect("encodes");
        assert_eq!(packet::decode(&bytes, src, dst).as_ref(), Ok(&advert));
        group.bench_function(BenchmarkId::new("encode", name), |b| {
            b.iter(|| packet::encode(black_box(&advert), src, dst));
        });
        group.bench_function(BenchmarkId::new("decode", name), |b| {
            b.iter(|| packet::decode(black_box(&bytes), src, dst));
        });
    }
    group.finish();
}

/// The configuration benchmarks at the size of the targets: 1,000
/// virtual servers × 100 backends, parsed and validated, and diffed
/// against a version where every tenth virtual server re-weights one backend.
fn config(c: &mut Criterion) {
    let mut group = c.benchmark_group("config");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);

    let old_text = fixtures::config_toml(1_000, 100, r#"kind = "tcp""#, |_, _| 100);
    let new_text = fixtures::config_toml(1_000, 100, r#"kind = "tcp""#, |i, j| {
        if i % 10 == 0 && j == 0 { 50 } else { 100 }
    });
    group.throughput(Throughput::Bytes(old_text.len() as u64));
    group.bench_function("parse_1000x100", |b| {
        b.iter(|| config::parse(black_box(&old_text), "old.toml").expect("valid"));
    });
    let old = config::parse(&old_text, "old.toml").expect("valid");
    let new = config::parse(&new_text, "new.toml").expect("valid");
    let changes = config::diff(&old, &new);
    assert_eq!(changes.virtual_servers_changed.len(), 100);
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("diff_1000x100", |b| {
        b.iter(|| config::diff(black_box(&old), black_box(&new)));
    });
    group.finish();
}

/// A reload from nothing: 1,000 virtual servers × 100 backends (a Maglev
/// ring of 65,537 slots each, atomic swaps) through the map programmer,
/// into `MemoryMaps` (the in-memory maps of the tests) and into a writer
/// that only counts (the programmer's own cost). Target: under one second.
///
/// One run takes seconds, too long for Criterion's ten samples of
/// several iterations each: this times a few single runs and stores them
/// where Criterion stores its estimates, so the report reads both alike.
fn reload(runs: usize) {
    let specs = fixtures::dataplane_specs(1_000, 100);
    let capacity = Capacity {
        ring_size: RING,
        max_vips: 1_000,
        max_backends: 100_001,
    };
    let measure = |name: &str, run: &dyn Fn() -> usize| {
        let mut samples: Vec<f64> = (0..runs)
            .map(|_| {
                let start = Instant::now();
                let slots = black_box(run());
                let elapsed = start.elapsed().as_nanos() as f64;
                assert!(slots >= 1_000 * RING as usize, "{slots} ring slots written");
                elapsed
            })
            .collect();
        samples.sort_by(f64::total_cmp);
        let median = samples[samples.len() / 2];
        println!(
            "reload/{name}: median {:.3} s of {runs} runs (min {:.3} s, max {:.3} s)",
            median / 1e9,
            samples[0] / 1e9,
            samples[samples.len() - 1] / 1e9
        );
        if let Err(error) = store(
            &format!("reload/{name}"),
            median,
            samples[0],
            samples[samples.len() - 1],
        ) {
            eprintln!("cannot store reload/{name}: {error}");
        }
    };
    measure("programmer_1000x100", &|| {
        let mut programmer = Programmer::new(MemoryMaps::default(), capacity);
        programmer.set_many(&specs).expect("fits");
        programmer.maps().ring_writes
    });
    measure("programmer_1000x100_counting_writer", &|| {
        let mut programmer = Programmer::new(CountingWriter::default(), capacity);
        programmer.set_many(&specs).expect("fits");
        programmer.maps().slots
    });
}

/// A map writer that only counts ring slots.
#[derive(Default)]
struct CountingWriter {
    slots: usize,
}

impl MapWriter for CountingWriter {
    fn set_vip(&mut self, _: VipKey, _: VipMeta) -> lb_daemon::dataplane::Result<()> {
        Ok(())
    }
    fn remove_vip(&mut self, _: VipKey) -> lb_daemon::dataplane::Result<()> {
        Ok(())
    }
    fn set_backend(&mut self, _: u32, _: Backend) -> lb_daemon::dataplane::Result<()> {
        Ok(())
    }
    fn write_ring(&mut self, _: u32, table: &[u32]) -> lb_daemon::dataplane::Result<usize> {
        self.slots += black_box(table).len();
        Ok(table.len())
    }
    fn set_filter_slot(&mut self, _: u32, _: u32) -> lb_daemon::dataplane::Result<()> {
        Ok(())
    }
    fn retire_backend_traffic(&mut self, _: &[u32], _: u32) -> lb_daemon::dataplane::Result<()> {
        Ok(())
    }
    fn clear_backend_traffic(&mut self, _: u32) -> lb_daemon::dataplane::Result<()> {
        Ok(())
    }
    fn clear_vip_traffic(&mut self, _: u32) -> lb_daemon::dataplane::Result<()> {
        Ok(())
    }
}

/// Writes a measurement as Criterion lays out its own
/// (`<id>/new/{benchmark,estimates}.json` under `CRITERION_HOME`).
fn store(id: &str, median: f64, low: f64, high: f64) -> std::io::Result<()> {
    let home = std::env::var_os("CRITERION_HOME").map_or_else(
        || std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/criterion")),
        std::path::PathBuf::from,
    );
    let dir = home.join(id).join("new");
    std::fs::create_dir_all(&dir)?;
    let estimate = serde_json::json!({
        "confidence_interval": {"confidence_level": 0.95, "lower_bound": low, "upper_bound": high},
        "point_estimate": median,
        "standard_error": 0.0,
    });
    std::fs::write(
        dir.join("benchmark.json"),
        serde_json::json!({"full_id": id, "title": id}).to_string(),
    )?;
    std::fs::write(
        dir.join("estimates.json"),
        serde_json::json!({"median": estimate, "mean": estimate}).to_string(),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut criterion = Criterion::default().configure_from_args();
    maglev_build(&mut criterion);
    vrrp(&mut criterion);
    config(&mut criterion);
    criterion.final_summary();
    // `cargo bench` passes --bench; `cargo test --benches` does not and
    // only wants each benchmark run once, which Criterion did above.
    if args.iter().any(|a| a == "--bench") {
        reload(if args.iter().any(|a| a == "--quick") {
            1
        } else {
            3
        });
    }
}
