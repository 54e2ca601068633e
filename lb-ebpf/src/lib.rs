//! The XDP programs' shared code: packet access, header layouts, checksums,
//! maps. The programs themselves are the binaries in `src/bin`.
#![no_std]
