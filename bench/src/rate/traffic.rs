//! The traffic: the generator driven by BPF_PROG_RUN in live-frames mode
//! (one thread per CPU, inside the generator namespace), and the sink.
use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray},
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp},
};
use lb_common::bench::{FRAME_LEN, GenConfig, names, sink};
use lb_daemon::dataplane::{XdpMode, attach, object};

use super::wire::Wire;

/// Frames per BPF_PROG_RUN call; the stop flag is checked between calls.
const FRAMES_PER_CALL: u32 = 1 << 18;
/// Frames the kernel handles between two flushes (its default).
const BATCH: u32 = 64;
/// No generator thread sends more than this in one measurement.
const MAX_FRAMES_PER_THREAD: u64 = 1 << 30;

/// The generator and sink programs, loaded; the sink attached to `g0`.
pub struct Traffic<'w> {
    wire: &'w Wire,
    ebpf: Ebpf,
}

/// Counter snapshot: frames sent and the sink's counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    pub sent: u64,
    pub sink: [u64; sink::COUNT as usize],
}

/// What one measurement saw.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    pub seconds: f64,
    pub sent: u64,
    pub received: u64,
    /// Received frames in the sink counter the device's output belongs to.
    pub expected: u64,
}

impl<'w> Traffic<'w> {
    pub fn load(wire: &'w Wire, vip: [u8; 4]) -> Result<Traffic<'w>> {
        let mut ebpf = EbpfLoader::new()
            .override_global(names::SINK_VIP, &vip, true)
            .load(object::TRAFFICGEN)
            .context("loading lb-trafficgen")?;
        for name in [names::GENERATOR, names::SINK] {
            let program: &mut Xdp = ebpf
                .program_mut(name)
                .with_context(|| format!("no program {name}"))?
                .try_into()?;
            program.load().with_context(|| format!("loading {name}"))?;
        }
        let traffic = Traffic { wire, ebpf };
        let fd = traffic.program(names::SINK)?.fd()?.try_clone()?;
        let ifindex = wire.gen_ifindex;
        wire.gen_ns
            .enter(|| attach::attach(ifindex, std::os::fd::AsFd::as_fd(&fd), XdpMode::Driver))?;
        Ok(traffic)
    }

    fn program(&self, name: &str) -> Result<&Xdp> {
        Ok(self
            .ebpf
            .program(name)
            .with_context(|| format!("no program {name}"))?
            .try_into()?)
    }

    /// Instructions the verifier processed, per program.
    pub fn verified_instructions(&self) -> Result<Vec<(&'static str, Option<u32>)>> {
        Ok(vec![
            (
                names::GENERATOR,
                self.program(names::GENERATOR)?
                    .info()?
                    .verified_instruction_count(),
            ),
            (
                names::SINK,
                self.program(names::SINK)?
                    .info()?
                    .verified_instruction_count(),
            ),
        ])
    }

    pub fn configure(&mut self, config: GenConfig) -> Result<()> {
        let mut map: Array<&mut MapData, GenConfig> = Array::try_from(
            self.ebpf
                .map_mut(names::GEN_CONFIG)
                .context("no GEN_CONFIG map")?,
        )?;
        map.set(0, config, 0)?;
        Ok(())
    }

    /// One frame through the generator without sending it (an ordinary
    /// BPF_PROG_TEST_RUN): what it would send.
    pub fn sample(&self) -> Result<Vec<u8>> {
        let input = [0u8; FRAME_LEN];
        let mut out = [0u8; FRAME_LEN + 64];
        let result = self.program(names::GENERATOR)?.test_run(TestRunOptions {
            data_in: Some(&input),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        })?;
        ensure!(
            result.return_value == 3,
            "generator returned {}",
            result.return_value
        );
        Ok(out[..result.data_size_out as usize].to_vec())
    }

    pub fn snapshot(&self) -> Result<Snapshot> {
        let sent: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map(names::GEN_SENT).context("no GEN_SENT")?)?;
        let stats: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map(names::SINK_STATS).context("no SINK_STATS")?)?;
        let mut snapshot = Snapshot {
            sent: sent.get(&0, 0)?.iter().sum(),
            ..Snapshot::default()
        };
        for (i, slot) in snapshot.sink.iter_mut().enumerate() {
            *slot = stats.get(&(i as u32), 0)?.iter().sum();
        }
        Ok(snapshot)
    }

    /// Sends from every CPU for `warmup + measure`, and returns the rate
    /// seen by the sink over `measure`. Stops by itself.
    pub fn measure(&self, warmup: Duration, measure: Duration, expected: u32) -> Result<Measured> {
        let program = self.program(names::GENERATOR)?;
        let stop = AtomicBool::new(false);
        let deadline = Instant::now() + warmup + measure + Duration::from_secs(2);
        let wire = self.wire;
        let result = std::thread::scope(|scope| -> Result<Measured> {
            let threads: Vec<_> = (0..wire.queues)
                .map(|cpu| {
                    let stop = &stop;
                    scope.spawn(move || {
                        wire.gen_ns
                            .enter(|| generate(program, wire, cpu, stop, deadline))
                    })
                })
                .collect();
            let measured = (|| {
                std::thread::sleep(warmup);
                let (t0, s0) = (Instant::now(), self.snapshot()?);
                std::thread::sleep(measure);
                let (t1, s1) = (Instant::now(), self.snapshot()?);
                Ok(Measured {
                    seconds: (t1 - t0).as_secs_f64(),
                    sent: s1.sent - s0.sent,
                    received: s1.sink[sink::TOTAL as usize] - s0.sink[sink::TOTAL as usize],
                    expected: s1.sink[expected as usize] - s0.sink[expected as usize],
                })
            })();
            stop.store(true, Ordering::SeqCst);
            for thread in threads {
                match thread.join() {
                    Ok(result) => result?,
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            measured
        })?;
        Ok(result)
    }
}

impl Drop for Traffic<'_> {
    fn drop(&mut self) {
        let ifindex = self.wire.gen_ifindex;
        if let Err(error) = self.wire.gen_ns.enter(|| attach::detach(ifindex)) {
            eprintln!("packet-rate: detaching the sink: {error}");
        }
    }
}

/// One generator thread: pinned to `cpu`, sends through `g0` until told
/// to stop, the deadline passes or it has sent its maximum.
fn generate(
    program: &Xdp,
    wire: &Wire,
    cpu: usize,
    stop: &AtomicBool,
    deadline: Instant,
) -> Result<()> {
    pin_to(cpu)?;
    let input = [0u8; FRAME_LEN];
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
    // rx_queue_index, egress_ifindex (include/uapi/linux/bpf.h).
    let mut context = [0u8; 24];
    context[4..8].copy_from_slice(&(FRAME_LEN as u32).to_ne_bytes());
    context[12..16].copy_from_slice(&wire.gen_ifindex.to_ne_bytes());
    context[16..20].copy_from_slice(&((cpu % wire.queues) as u32).to_ne_bytes());
    let mut sent = 0u64;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline && sent < MAX_FRAMES_PER_THREAD
    {
        program
            .test_run(TestRunOptions {
                data_in: Some(&input),
                ctx_in: Some(&context),
                repeat: FRAMES_PER_CALL,
                attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                ..TestRunOptions::default()
            })
            .context("BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES")?;
        sent += u64::from(FRAMES_PER_CALL);
    }
    Ok(())
}

fn pin_to(cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
    // sched_setaffinity (this thread) only touch it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!("pinning to CPU {cpu}: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}
