//! Embedding tollgate in an axum app (work in progress).
fn main() {}
