//! Code shared by the XDP programs: bounds-checked packet access, header
//! layouts and checksums. The programs are the binaries under `src/bin`:
//! `lb-balancer` (the load balancer), `lb-decap` (backend-side tunnel
//! decapsulation) and `lb-pass` (XDP_PASS, for lab bridge ports and as the
//! benchmark baseline); for the packet-rate benchmark, `lb-trafficgen`
//! (generator and counting sink) and `lb-macswap` (the XDP baseline).
#![no_std]

pub mod checksum;
pub mod headers;
pub mod packet;
