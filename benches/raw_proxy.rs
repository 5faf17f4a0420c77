//! The baseline of the end-to-end bench: the thinnest reverse proxy hyper allows.
//!
//! Forwards method, path, headers and body to `RAW_PROXY_UPSTREAM` and streams the answer
//! back frame by frame. `benches/e2e.sh` compares the gateway against it.
//!
//! ```sh
//! RAW_PROXY_LISTEN=127.0.0.1:0 RAW_PROXY_UPSTREAM=http://127.0.0.1:9090 \
//!     cargo run --release --features full --example raw_proxy
//! ```

// The example gateway's allocator (mimalloc) and runtime, so the bench compares like
// with like.
#[path = "../examples/common/allocator.rs"]
mod allocator;
#[path = "../examples/common/runtime.rs"]
mod runtime;
#[global_allocator]
static ALLOCATOR: allocator::MiMalloc = allocator::MiMalloc;

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http::{
    header::HOST,
    uri::{Authority, PathAndQuery, Scheme},
    Request, Response, StatusCode, Uri,
};
use http_body_util::{Either, Empty};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::net::TcpListener;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Proxy {
    client: Client<HttpConnector, Incoming>,
    scheme: Scheme,
    authority: Authority,
}

async fn forward(
    proxy: Arc<Proxy>,
    mut req: Request<Incoming>,
) -> Result<Response<Either<Incoming, Empty<Bytes>>>, Infallible> {
    let path = req.uri().path_and_query().cloned();
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(proxy.scheme.clone());
    uri.authority = Some(proxy.authority.clone());
    uri.path_and_query = Some(path.unwrap_or_else(|| PathAndQuery::from_static("/")));
    *req.uri_mut() = Uri::from_parts(uri).expect("scheme, authority and path make a uri");
    // The client writes the upstream's own `Host`.
    req.headers_mut().remove(HOST);
    match proxy.client.request(req).await {
        Ok(res) => Ok(res.map(Either::Left)),
        Err(err) => {
            eprintln!("raw_proxy: upstream error: {err}");
            let mut res = Response::new(Either::Right(Empty::new()));
            *res.status_mut() = StatusCode::BAD_GATEWAY;
            Ok(res)
        }
    }
}

fn main() -> Result<(), BoxError> {
    runtime::runtime()?.block_on(run())
}

async fn run() -> Result<(), BoxError> {
    let listen = std::env::var("RAW_PROXY_LISTEN").unwrap_or_else(|_| "127.0.0.1:8081".into());
    let upstream: Uri = std::env::var("RAW_PROXY_UPSTREAM")
        .unwrap_or_else(|_| "http://127.0.0.1:9090".into())
        .parse()?;
    let (Some(scheme), Some(authority)) = (upstream.scheme(), upstream.authority()) else {
        return Err("RAW_PROXY_UPSTREAM must look like http://HOST:PORT".into());
    };
    let (scheme, authority) = (scheme.clone(), authority.clone());

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new()).build(connector);
    let proxy = Arc::new(Proxy {
        client,
        scheme,
        authority,
    });

    let listener = TcpListener::bind(&listen).await?;
    println!("listening on http://{}", listener.local_addr()?);

    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                eprintln!("raw_proxy: accept error: {err}");
                continue;
            }
        };
        if let Err(err) = stream.set_nodelay(true) {
            eprintln!("raw_proxy: TCP_NODELAY: {err}");
        }
        let proxy = Arc::clone(&proxy);
        tokio::spawn(async move {
            let service = service_fn(move |req| forward(Arc::clone(&proxy), req));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
