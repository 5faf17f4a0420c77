//! Per-layer benches (work in progress).
fn main() {}
