//! Shared code of the benchmarks: generated configurations for the
//! control-plane benchmarks ([`fixtures`]), the end-to-end packet-rate
//! harness ([`rate`]) and the report writers ([`report`]).
//!
//! The per-packet benchmark (`src/main.rs`) stands alone.

pub mod fixtures;
pub mod rate;
pub mod report;
