//! Benchmark traffic: a packet generator and a counting sink.
//!
//! `lb_trafficgen` is run by BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES
//! (the kernel's live-frames mode, net/bpf/test_run.c): each run it turns
//! the frame into the next of a pool of flows (see
//! `lb_common::bench::GenConfig`) and returns XDP_TX, which that mode
//! turns into a transmit on the interface named in the run's context.
//!
//! `lb_sink` is attached to the interface that forwarded frames come back
//! to: it sorts them (tunnelled, to the VIP, other) in per-CPU counters and
//! drops them.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};
use lb_common::{
    bench::{FRAME_LEN, GenConfig, offset, sink},
    proto,
};
use lb_ebpf::{
    headers::{ETH_LEN, ETH_P_IPV4_BE, EthHdr, Ipv4Hdr},
    packet::ptr_at,
};

#[map]
static GEN_CONFIG: Array<GenConfig> = Array::with_max_entries(1, 0);
#[map]
static GEN_SENT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);
#[map]
static SINK_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(sink::COUNT, 0);

/// The VIP of the run, set at load time.
#[unsafe(no_mangle)]
static SINK_VIP: [u8; 4] = [0; 4];

#[xdp]
pub fn lb_trafficgen(ctx: XdpContext) -> u32 {
    match generate(&ctx) {
        Some(()) => xdp_action::XDP_TX,
        None => xdp_action::XDP_ABORTED,
    }
}

#[inline(always)]
fn generate(ctx: &XdpContext) -> Option<()> {
    let config = GEN_CONFIG.get(0)?;
    let frame: *mut [u64; FRAME_LEN / 8] = ptr_at(ctx, 0).ok()?;
    // SAFETY: `frame` is FRAME_LEN bytes inside the packet (ptr_at), the
    // template is FRAME_LEN bytes of a map value; unaligned accesses to
    // packet memory are allowed for XDP.
    unsafe {
        let template = config.template.as_ptr() as *const [u64; FRAME_LEN / 8];
        core::ptr::write_unaligned(frame, core::ptr::read_unaligned(template));
    }

    let sent = GEN_SENT.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot of a per-CPU array.
    let n = unsafe {
        let n = *sent;
        *sent = n + 1;
        n
    };
    let flows = u64::from(config.flows).max(1);
    let flow = (n % flows) as u32;
    let source_low = 0x8000 + (flow >> 15);
    let port = 1024 + (flow & 0x7fff);
    let ip_check = !fold(config.ip_partial + source_low);
    let mut l4_check = !fold(config.l4_partial + source_low + port);

    // The pointer ptr_at checked, not a fresh ctx.data(): the verifier
    // knows the bounds of this one only.
    let base = frame as usize;
    // SAFETY: every offset below is inside the FRAME_LEN bytes checked
    // by ptr_at above.
    unsafe {
        let at = |offset: usize| (base + offset) as *mut u16;
        at(offset::IPV4_SOURCE_LOW).write_unaligned((source_low as u16).to_be());
        at(offset::L4_SOURCE_PORT).write_unaligned((port as u16).to_be());
        at(offset::IPV4_CHECK).write_unaligned(ip_check.to_be());
        if config.template[ETH_LEN + 9] == proto::UDP {
            // RFC 768: a computed zero is sent as all ones.
            if l4_check == 0 {
                l4_check = 0xffff;
            }
            at(offset::UDP_CHECK).write_unaligned(l4_check.to_be());
        } else {
            at(offset::TCP_CHECK).write_unaligned(l4_check.to_be());
        }
    }
    Some(())
}

/// Folds a 32-bit ones'-complement sum to 16 bits (RFC 1071).
#[inline(always)]
fn fold(sum: u32) -> u16 {
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

#[xdp]
pub fn lb_sink(ctx: XdpContext) -> u32 {
    count(sink::TOTAL);
    count(classify(&ctx));
    xdp_action::XDP_DROP
}

#[inline(always)]
fn classify(ctx: &XdpContext) -> u32 {
    let Ok(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return sink::NOT_IPV4;
    };
    let Ok(ip) = ptr_at::<Ipv4Hdr>(ctx, ETH_LEN) else {
        return sink::NOT_IPV4;
    };
    // SAFETY: both headers are inside the packet (ptr_at).
    unsafe {
        if (*eth).ether_type_be != ETH_P_IPV4_BE {
            sink::NOT_IPV4
        } else if (*ip).proto == proto::IPIP {
            sink::IPIP
        } else if (*ip).dst == core::ptr::read_volatile(&SINK_VIP) {
            sink::TO_VIP
        } else {
            sink::OTHER_IPV4
        }
    }
}

#[inline(always)]
fn count(index: u32) {
    if let Some(counter) = SINK_STATS.get_ptr_mut(index) {
        // SAFETY: this CPU's slot of a per-CPU array.
        unsafe { *counter += 1 };
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
