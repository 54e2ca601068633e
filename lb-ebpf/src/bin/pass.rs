//! XDP_PASS and nothing else: for lab bridge ports that face balancers
//! (a frame sent with XDP_TX into a veth is only delivered promptly when
//! the peer has an XDP program) and as the baseline of the benchmarks.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

#[xdp]
pub fn lb_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
