//! Bounds-checked access to the packet: every read and write of packet
//! memory goes through [`ptr_at`], which is the check the verifier needs.
use aya_ebpf::programs::XdpContext;

/// The packet is shorter than a header that must be there.
#[derive(Clone, Copy)]
pub struct Truncated;

/// A pointer to a `T` at `offset` bytes into the packet, or [`Truncated`]
/// when the packet ends before the whole `T`.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*mut T, Truncated> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return Err(Truncated);
    }
    Ok((start + offset) as *mut T)
}

/// Length of the frame in bytes.
#[inline(always)]
pub fn frame_len(ctx: &XdpContext) -> u64 {
    (ctx.data_end() - ctx.data()) as u64
}
