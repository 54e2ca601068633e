//! VRRP (RFC 5798 v3, RFC 3768 v2).
//!
//! - [`packet`]: advertisement encode/decode and checksums, pure.
//! - [`validate`]: receive validation (§7.1), one discard reason each.
//! - [`state`]: the state machine as a pure function of (state, event, now).

pub mod packet;
pub mod state;
pub mod validate;
