//! The example gateway as a product, driven over loopback HTTP: request ids, metrics,
//! configuration files, secrets that never leak, reload under load and graceful
//! shutdown. Each test starts the built `examples/gateway` binary on 127.0.0.1:0 and
//! stops it at the end. `cargo test --all-features` builds the binary first; to run only
//! these tests, build it before: `cargo build --all-features --example gateway`.
#![cfg(all(
    feature = "upstream",
    feature = "testing",
    feature = "ratelimit",
    feature = "redis",
    feature = "auth",
    feature = "jwt",
    feature = "admin",
    feature = "sqlite",
    feature = "postgres",
    feature = "cache",
    feature = "config",
    feature = "metrics"
))]

mod accounts;
mod harness;
mod product;
mod reload;
mod shutdown;
