//! Rebuild the eBPF objects when bpf-linker changes (it is the linker of the
//! bpfel-unknown-none target, so cargo would not notice otherwise).
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
