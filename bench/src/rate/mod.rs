//! The end-to-end packet-rate harness.
