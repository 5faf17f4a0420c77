//! [`MockServer`]: a [`MockProvider`] served over loopback HTTP.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tower_service::Service as _;

use super::MockProvider;

/// A loopback HTTP server (HTTP/1.1, and HTTP/2 with prior knowledge) serving a
/// [`MockProvider`], for tests that need a real socket: an upstream client, a gateway
/// binary, a benchmark.
///
/// Dropping the server stops accepting and closes every open connection, mid-stream
/// ones included. Accepted sockets have `TCP_NODELAY` set.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let server = tollgate::testing::MockServer::start().await?;
/// println!("OPENAI_BASE_URL={}", server.base_url()); // http://127.0.0.1:PORT/v1
/// # Ok(()) }
/// ```
pub struct MockServer {
    addr: SocketAddr,
    provider: MockProvider,
    accept: JoinHandle<()>,
}

impl MockServer {
    /// Serves a fresh [`MockProvider`] on `127.0.0.1` at a free port.
    pub async fn start() -> io::Result<MockServer> {
        Self::start_with(MockProvider::new()).await
    }

    /// Serves `provider` on `127.0.0.1` at a free port.
    pub async fn start_with(provider: MockProvider) -> io::Result<MockServer> {
        Self::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), provider).await
    }

    /// Serves `provider` on `addr`.
    pub async fn bind(addr: SocketAddr, provider: MockProvider) -> io::Result<MockServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let accept = tokio::spawn(accept_loop(listener, provider.clone()));
        Ok(MockServer {
            addr,
            provider,
            accept,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The OpenAI-style base URL, `http://ADDR/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The provider behind the server, to script holds and read what it received.
    pub fn provider(&self) -> &MockProvider {
        &self.provider
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        // The accept task owns the connection tasks: aborting it drops its `JoinSet`,
        // which aborts every connection.
        self.accept.abort();
    }
}

impl fmt::Debug for MockServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockServer")
            .field("addr", &self.addr)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

async fn accept_loop(listener: TcpListener, provider: MockProvider) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %err, "mock server: accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "mock server: could not set TCP_NODELAY");
        }
        let provider = provider.clone();
        let service = service_fn(move |req: hyper::Request<Incoming>| provider.clone().call(req));
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        connections.spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "mock server: connection ended with an error");
            }
        });
    }
}
