//! The speed-of-light baseline of the packet-rate benchmark: swaps the
//! Ethernet source and destination and sends the frame back out with
//! XDP_TX, the action the balancer forwards with, and does nothing else.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_ebpf::{headers::EthHdr, packet::ptr_at};

#[xdp]
pub fn lb_macswap(ctx: XdpContext) -> u32 {
    let Ok(eth) = ptr_at::<EthHdr>(&ctx, 0) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: the Ethernet header is inside the packet (ptr_at).
    unsafe {
        let dst = (*eth).dst;
        (*eth).dst = (*eth).src;
        (*eth).src = dst;
    }
    xdp_action::XDP_TX
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
