//! The XDP data plane: loading, attaching and programming the BPF maps.
