//! Shared code of the benchmarks: generated configurations for the
//! control-plane benchmarks ([`fixtures`]), the end-to-end packet-rate
//! harness ([`rate`]), the report writers ([`report`]) and where results
//! go ([`results`]).
//!
//! The per-packet benchmark (`src/main.rs`) writes through [`results`] too.

pub mod fixtures;
pub mod rate;
pub mod report;
pub mod results;
