//! BPF_PROG_TEST_RUN of an XDP program on one packet: the verdict, the
//! packet that comes out, and the kernel's timing. Shared by the data
//! plane tests and the benchmarks.
use aya::programs::{TestRun, TestRunOptions, Xdp};

use super::Result;

/// What one run returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The XDP action (`XDP_PASS` = 2, `XDP_TX` = 3, `XDP_DROP` = 1, ...).
    pub action: u32,
    /// The packet after the program (as it would leave or go up).
    pub packet: Vec<u8>,
    /// Nanoseconds per run as the kernel measured them.
    pub duration_ns: u64,
}

/// Room for the largest header the balancer prepends.
const HEADROOM: usize = 64;

/// Runs `program` once on `packet`.
pub fn run(program: &Xdp, packet: &[u8]) -> Result<Outcome> {
    run_repeat(program, packet, 1)
}

/// Runs `program` `repeat` times on `packet`. The kernel does not restore
/// the packet between repetitions: a program that rewrites the packet sees
/// its own output from the second run on. Use 1 for rewriting programs.
pub fn run_repeat(program: &Xdp, packet: &[u8], repeat: u32) -> Result<Outcome> {
    let mut out = vec![0u8; packet.len() + HEADROOM];
    let result = program.test_run(TestRunOptions {
        data_in: Some(packet),
        data_out: Some(&mut out),
        repeat,
        ..TestRunOptions::default()
    })?;
    out.truncate(result.data_size_out as usize);
    Ok(Outcome {
        action: result.return_value,
        packet: out,
        duration_ns: result.duration.as_nanos() as u64,
    })
}

/// XDP actions (linux/bpf.h `enum xdp_action`).
pub mod action {
    pub const ABORTED: u32 = 0;
    pub const DROP: u32 = 1;
    pub const PASS: u32 = 2;
    pub const TX: u32 = 3;
    pub const REDIRECT: u32 = 4;

    /// The action's name, for messages.
    pub fn name(action: u32) -> &'static str {
        match action {
            ABORTED => "XDP_ABORTED",
            DROP => "XDP_DROP",
            PASS => "XDP_PASS",
            TX => "XDP_TX",
            REDIRECT => "XDP_REDIRECT",
            _ => "unknown",
        }
    }
}
