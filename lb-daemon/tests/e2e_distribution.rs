//! End to end, DESIGN.md §5 and §7: 3,000 new TCP connections from the
//! client's many source ports to the VIP, through `lb-daemon run` on lb-a
//! (tunnel mode, then DSR), spread over three equal-weight backends within
//! 10% of a third each. Runs as root (CI does).
mod support;

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use lb_lab::{Forwarding, http_get_many};
use support::e2e::{E2e, tally};

const CONNECTIONS: usize = 3_000;
/// Connections open at once (each has its own source port).
const BATCH: usize = 250;
/// Allowed deviation from an equal share.
const TOLERANCE: f64 = 0.10;

/// One lab at a time: both tests open thousands of connections.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn three_thousand_connections_spread_evenly_over_three_backends() {
    spread("dist", Forwarding::Tunnel);
}

#[test]
fn three_thousand_connections_spread_evenly_in_dsr_mode() {
    spread("dsr", Forwarding::Dsr);
}

fn spread(tag: &str, forwarding: Forwarding) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut e2e = E2e::new(tag, 3, false);
    e2e.hold_vip("lb-a");
    let mut config = e2e.config(3);
    config.forwarding = forwarding;
    e2e.start_daemon("lb-a", &config);
    e2e.wait_vip();
    // Requests, not connections: tcp health checks connect without asking.
    let before: Vec<u64> = e2e.servers.iter().map(|s| s.requests()).collect();

    let started = Instant::now();
    let mut names = Vec::with_capacity(CONNECTIONS);
    while names.len() < CONNECTIONS {
        let batch = BATCH.min(CONNECTIONS - names.len());
        let answers = http_get_many(
            e2e.lab.client().ns(),
            e2e.vip_addr(),
            batch,
            Duration::from_secs(20),
        )
        .unwrap_or_else(|error| panic!("{error:#}\n{}", e2e.logs()));
        names.extend(answers);
    }
    let elapsed = started.elapsed();

    let counts = tally(&names);
    let share = CONNECTIONS as f64 / 3.0;
    println!(
        "{} mode: {CONNECTIONS} connections in {elapsed:.2?} ({:.0}/s):",
        forwarding.as_str(),
        CONNECTIONS as f64 / elapsed.as_secs_f64()
    );
    for (index, name) in e2e.backend_names().iter().enumerate() {
        let count = counts.get(name).copied().unwrap_or(0);
        let served = e2e.servers[index].requests() - before[index];
        println!(
            "  {name}: {count} connections ({:+.1}% from a third), server answered {served}",
            (count as f64 - share) / share * 100.0
        );
        // The client's count is the server's: each answer came from that
        // backend.
        assert_eq!(count as u64, served, "{name}: answers vs requests served");
        assert!(
            (count as f64 - share).abs() <= share * TOLERANCE,
            "{name} got {count} of {CONNECTIONS} connections, not within 10% of {share:.0}: {counts:?}"
        );
    }
    assert_eq!(counts.values().sum::<usize>(), CONNECTIONS);
}
