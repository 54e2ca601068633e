//! The Internet checksum (RFC 1071) of the headers the programs write.

/// Folds a 32-bit one's-complement sum to 16 bits and complements it.
#[inline(always)]
pub fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// The checksum of a 20-byte IPv4 header without options whose
/// identification and fragment words are zero, from its other words in
/// memory order: version/IHL and TOS, total length, TTL and protocol, and
/// the addresses as 32-bit words. Memory order works because the
/// one's-complement sum is byte-order independent (RFC 1071 §2(B)); the
/// result is stored as it is.
#[inline(always)]
pub fn ipv4_header_sum(
    version_tos: u16,
    total_len: u16,
    ttl_proto: u16,
    src: u32,
    dst: u32,
) -> u16 {
    let sum = version_tos as u32
        + total_len as u32
        + ttl_proto as u32
        + (src & 0xffff)
        + (src >> 16)
        + (dst & 0xffff)
        + (dst >> 16);
    fold(sum)
}
