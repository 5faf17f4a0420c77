//! tollgate turns an axum or hyper service into an LLM API gateway, one
//! [`tower`](https://docs.rs/tower) layer per concern.
//!
//! Every piece is an `async fn(Request<Body>) -> Result<Response<Body>, E>` middleware:
//! stack the ones you need with `tower::ServiceBuilder` in your own app, in front of
//! [`upstream::Upstream`] (the leaf that talks to the providers) or any service of your
//! own. Two per-request artifacts let the layers compose in any subset and order
//! without parsing anything twice:
//!
//! - [`LlmRequest`](request::LlmRequest), the request body parsed once
//!   (see [`request`]);
//! - [`Outcome`](outcome::Outcome), the response observed once as it streams: status,
//!   usage, time to first byte, how it ended (see [`outcome`]).
//!
//! Errors are answered in the client's dialect (OpenAI, Anthropic or Gemini error JSON)
//! from one [`GatewayError`](error::GatewayError).
//!
//! # Feature flags
//!
//! | feature | enables |
//! |---|---|
//! | `upstream` | [`upstream::Upstream`]: pooled HTTP/1.1 + HTTP/2 client over rustls |
//! | `metering` | [`metering`]: prices, costs, usage records, the ledger trait |
//! | `sqlite` | the SQLite usage ledger (the embedded default); with `auth`, the SQLite key store |
//! | `testing` | [`testing`]: the mock provider (in-process service and loopback server) |
//! | `ratelimit` | [`ratelimit`]: requests, tokens and concurrency per scope, in memory |
//! | `cache` | [`cache`]: the response cache (exact, tenant-scoped, single-flight, stream replay), in memory |
//! | `redis` | with `ratelimit`: the Redis rate-limit store shared by a fleet; with `cache`: the Redis cache store |
//! | `auth` | [`auth`]: `AuthLayer`, hashed virtual keys, the in-memory key store and its cache |
//! | `jwt` | with `auth`: JWT bearer tokens (HS256, RS256, ES256; keys from code or a JWKS file) |
//! | `admin` | `admin`: the admin API (keys) as an axum `Router` (pulls in axum) |
//! | `postgres` | with `auth`: the PostgreSQL key store |
//! | `routing` | [`routing`]: channels, key pools, model resolution, strategies, circuit breakers, passive health |
//! | `failover` | [`failover`]: retries across routing's candidates with backoff and a retry budget |
//! | `config` | [`config`]: the gateway's typed TOML configuration (`${ENV}` secrets, errors naming the field) |
//! | `alerts` | [`alerts`]: `Alert` and the `WebhookNotifier` (bounded queue, retries with backoff, never blocks a request) |
//! | `guardrails` | [`guardrails`]: `GuardrailLayer` (block or redact prompts and answers, streams over a sliding window) and the regex `PiiRedactor` |
//! | `otel` | the example gateway exports the [`telemetry`] spans over OTLP (the library itself needs no feature for them) |
//! | `metrics` | [`metrics`]: `MetricsLayer` and the Prometheus exposition of requests, latency, tokens, cost, cache and rate limits |
//! | `full` | all of the above |
//!
//! The core (request parsing, outcome, errors, SSE) needs no feature.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

mod body;
#[cfg(feature = "sqlite")]
mod db;
mod header_names;
mod macros;
#[cfg(all(
    feature = "redis",
    any(feature = "ratelimit", feature = "cache", feature = "metering")
))]
mod redis_conn;

#[cfg(feature = "admin")]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
pub mod admin;
#[cfg(feature = "alerts")]
#[cfg_attr(docsrs, doc(cfg(feature = "alerts")))]
pub mod alerts;
#[cfg(feature = "auth")]
#[cfg_attr(docsrs, doc(cfg(feature = "auth")))]
pub mod auth;
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub mod cache;
#[cfg(feature = "config")]
#[cfg_attr(docsrs, doc(cfg(feature = "config")))]
pub mod config;
pub mod error;
pub mod extension;
#[cfg(feature = "failover")]
#[cfg_attr(docsrs, doc(cfg(feature = "failover")))]
pub mod failover;
#[cfg(feature = "guardrails")]
#[cfg_attr(docsrs, doc(cfg(feature = "guardrails")))]
pub mod guardrails;
#[cfg(feature = "metering")]
#[cfg_attr(docsrs, doc(cfg(feature = "metering")))]
pub mod metering;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
pub mod outcome;
pub mod providers;
#[cfg(feature = "ratelimit")]
#[cfg_attr(docsrs, doc(cfg(feature = "ratelimit")))]
pub mod ratelimit;
pub mod request;
#[cfg(feature = "routing")]
#[cfg_attr(docsrs, doc(cfg(feature = "routing")))]
pub mod routing;
pub mod sse;
pub mod telemetry;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
#[cfg(feature = "upstream")]
#[cfg_attr(docsrs, doc(cfg(feature = "upstream")))]
pub mod upstream;

pub use body::Body;
pub use request::{Dialect, Endpoint};

/// The boxed error type used at the upstream client boundary.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
