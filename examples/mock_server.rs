//! Runs the mock provider on `MOCK_LISTEN` (default `127.0.0.1:9090`) until Ctrl-C or
//! SIGTERM, for benches and manual tests: point any OpenAI client at the printed URL
//! plus `/v1`, and script it with `x-mock-*` headers (see `tollgate::testing`).
//!
//! ```text
//! cargo run --release --example mock_server --features testing
//! ```

use std::io::Write as _;
use std::net::SocketAddr;

use tollgate::testing::{MockProvider, MockServer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::var("MOCK_LISTEN").unwrap_or_else(|_| "127.0.0.1:9090".to_owned());
    let addr: SocketAddr = listen.parse().map_err(|err| {
        format!("MOCK_LISTEN={listen:?} is not an address like 127.0.0.1:9090: {err}")
    })?;
    let server = MockServer::bind(addr, MockProvider::new()).await?;

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{}", server.addr())?;
    stdout.flush()?;
    drop(stdout);

    shutdown_signal().await;
    Ok(())
}

/// Resolves on Ctrl-C, or on SIGTERM where there is one.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
