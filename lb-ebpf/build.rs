//! Rebuild the eBPF objects when bpf-linker changes (it is the linker of the
//! bpfel-unknown-none target, so cargo would not notice otherwise), and
//! have LLVM turn copies into inline word loads and stores.
//!
//! - `--disable-expand-memcpy-in-order`: bpf-linker otherwise passes
//!   `-bpf-expand-memcpy-in-order`, which makes LLVM's BPF backend lower
//!   every `memmove` and `memset` (and some `memcpy`) to a call of the
//!   byte-at-a-time loops of compiler-builtins: a BPF-to-BPF call and a
//!   loop for each copied MAC address, IP address or key padding.
//! - `allows-misaligned-mem-access`: packet headers sit at 2-byte offsets
//!   (14 bytes of Ethernet), so without it LLVM splits 4- and 8-byte
//!   accesses to addresses into half-words or bytes. x86-64 and arm64 load
//!   unaligned words at full speed, and the verifier accepts unaligned
//!   packet and map-value accesses there
//!   (`CONFIG_HAVE_EFFICIENT_UNALIGNED_ACCESS`); stack slots stay aligned.
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-link-arg=--disable-expand-memcpy-in-order");
    println!("cargo:rustc-link-arg=--cpu-features=+allows-misaligned-mem-access");
}
