//! Prometheus metrics: [`MetricsLayer`] records every response in a [`Registry`], which
//! renders the Prometheus text exposition for a `/metrics` route.
//!
//! Put the layer outermost (in front of authentication), so refused requests are
//! counted too. It never reads a body: it puts a [`ParsedSlot`](crate::request::ParsedSlot)
//! in the request extensions, and learns the model when a layer further in parses the
//! request. It reads, when the response resolves (a stream at its end):
//!
//! - the [`Outcome`](crate::outcome::Outcome) (it observes responses that have none):
//!   status, usage, time to first byte, how the body ended;
//! - [`ServedBy`](crate::extension::ServedBy): the provider;
//! - [`GatewayError`](crate::error::GatewayError) in the response extensions: the kind of
//!   error (a rate-limit 429, an exhausted budget, an unknown key...);
//! - the cache layer's `x-tollgate-cache` header.
//!
//! | series | type | labels |
//! |---|---|---|
//! | `tollgate_requests_total` | counter | `route`, `model`, `provider`, `status` |
//! | `gen_ai_client_operation_duration_seconds` | histogram | `gen_ai_operation_name` (`chat`, `embeddings`), `gen_ai_request_model`, `gen_ai_provider_name`, `error_type` (empty on success) |
//! | `gen_ai_server_time_to_first_token_seconds` | histogram | the same (2xx answers only) |
//! | `gen_ai_client_token_usage` | histogram | the same without `error_type`, plus `gen_ai_token_type` (`input`, `output`) |
//! | `tollgate_tokens_total` | counter | `model`, `provider`, `type` (`input`, `output`, `cached`) |
//! | `tollgate_cost_usd_total` | counter | `model`, `provider` (with [`MetricsLayer::prices`]) |
//! | `tollgate_cache_total` | counter | `result` (`hit`, `miss`, `bypass`) |
//! | `tollgate_requests_in_flight` | gauge | `route`: requests whose answer has not ended (streams count until their end) |
//! | `tollgate_rejections_total` | counter | `route`, `reason` (`rate_limited`, `insufficient_quota`, `authentication`, `permission_denied`, `invalid_request`, `payload_too_large`, `model_not_found`) |
//!
//! [`Registry::counter_fn`] and [`Registry::gauge_fn`] add series read at each scrape
//! (the example gateway exposes its usage ledger's `tollgate_ledger_written_total`,
//! `tollgate_ledger_spooled_total` and `tollgate_ledger_replayed_total` this way).
//!
//! The GenAI series follow the OpenTelemetry semantic conventions
//! (`gen_ai.client.operation.duration`, `gen_ai.server.time_to_first_token`,
//! `gen_ai.client.token.usage`), named the way OpenTelemetry names them in Prometheus:
//! dots become underscores and the unit is a suffix. Durations start when the request
//! reaches this layer; tokens and cost are not counted for cache hits. `route` is the
//! LLM endpoint (`/chat/completions`, `/embeddings`, `/messages`) or `other`, and at most
//! 1,000 distinct models are labelled (the rest are `other`), so clients cannot grow the
//! scrape without bound. No label ever holds a credential.
//!
//! ```
//! use tollgate::metrics::{MetricsLayer, Registry};
//! use tollgate::request::ParseLayer;
//! use tollgate::testing::MockProvider;
//! use tollgate::Body;
//! use http::Request;
//! use http_body_util::BodyExt;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main] async fn main() -> Result<(), tollgate::BoxError> {
//! let registry = Registry::new();
//! let svc = ServiceBuilder::new()
//!     .layer(MetricsLayer::new(registry.clone()))
//!     .layer(ParseLayer::new()) // or any layer that parses: auth, rate limits, cache...
//!     .service(MockProvider::new());
//!
//! let body = r#"{"model":"mock/echo","messages":[{"role":"user","content":"hi"}]}"#;
//! let req = Request::post("/v1/chat/completions").body(Body::from(body))?;
//! let res = svc.oneshot(req).await?;
//! res.into_body().collect().await?;
//!
//! let text = registry.render();
//! assert!(text.contains(r#"tollgate_requests_total{route="/chat/completions",model="mock/echo",provider="-",status="200"} 1"#));
//! # Ok(()) }
//! ```

mod layer;
mod registry;

pub use layer::{Metrics, MetricsLayer, ResponseFuture};
pub use registry::Registry;

use crate::Endpoint;

/// The `route` label of requests that are not for an LLM endpoint.
pub(crate) const OTHER_ROUTE: &str = "other";

fn route(endpoint: Option<Endpoint>) -> &'static str {
    endpoint.map_or(OTHER_ROUTE, Endpoint::path)
}
