//! An existing axum app that puts tollgate in front of one route.
//!
//! `cargo run --features full --example embed`, then POST an OpenAI chat request to
//! `http://127.0.0.1:3000/v1/chat/completions` with model `mock/echo`.

use axum::{routing::get, Router};
use tollgate::{outcome::ObserveLayer, request::ParseLayer, testing::MockProvider};
use tower::ServiceBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The provider: the mock here; `tollgate::upstream::Upstream` in production.
    let llm = ServiceBuilder::new()
        .layer(ParseLayer::new().limit(1024 * 1024)) // 413 beyond 1 MiB, 400 on bad JSON
        .layer(ObserveLayer::new()) // an Outcome (usage, TTFB, end) on every answer
        .service(MockProvider::new());
    let app = Router::new()
        .route("/", get(|| async { "my app" }))
        .route_service("/v1/chat/completions", llm);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
