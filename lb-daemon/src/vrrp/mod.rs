//! VRRP (RFC 5798 v3, RFC 3768 v2).
//!
//! - [`packet`]: advertisement encode/decode and checksums, pure.

pub mod packet;
