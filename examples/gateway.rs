//! The example gateway (work in progress).
fn main() {}
