//! Rate limiting: one reservation ledger for requests, tokens and concurrency, per
//! scope, with headers in the client's dialect.
//!
//! [`RateLimitLayer`] sits after authentication (it reads who is calling) and before
//! metering, the cache and routing:
//!
//! ```text
//! client ─► Auth ─► RateLimit ─► Metering ─► Cache ─► Routing ─► Failover ─► Upstream
//! ```
//!
//! ```
//! use std::net::SocketAddr;
//! use http::Request;
//! use tollgate::extension::ClientAddr;
//! use tollgate::ratelimit::{Limits, RateLimitLayer};
//! use tollgate::testing::MockProvider;
//! use tollgate::Body;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tollgate::BoxError> {
//! let svc = ServiceBuilder::new()
//!     .layer(
//!         RateLimitLayer::new()
//!             .per_client_ip(Limits::new().requests_per_minute(2))
//!             .model("mock/echo", Limits::new().tokens_per_minute(10_000).max_parallel(8))
//!             .global(Limits::new().requests_per_minute(1_000)),
//!     )
//!     .service(MockProvider::new());
//!
//! let request = || {
//!     let mut req = Request::post("/v1/chat/completions")
//!         .body(Body::from(r#"{"model":"mock/echo","messages":[{"role":"user","content":"hi"}]}"#))
//!         .unwrap();
//!     // The server inserts the client's address (the example gateway does).
//!     req.extensions_mut().insert(ClientAddr(SocketAddr::from(([10, 0, 0, 7], 4242))));
//!     req
//! };
//! for remaining in ["1", "0"] {
//!     let res = svc.clone().oneshot(request()).await?; // clones share the counters
//!     assert_eq!(res.status(), 200);
//!     assert_eq!(res.headers()["x-ratelimit-remaining-requests"], remaining);
//! }
//! let res = svc.oneshot(request()).await?;
//! assert_eq!(res.status(), 429);
//! assert_eq!(res.headers()["retry-after"], "30");
//! # Ok(()) }
//! ```
//!
//! # Scopes
//!
//! A request counts against every scope that applies, and is admitted only if all of
//! them admit it (nothing is consumed otherwise):
//!
//! | scope | from | limits |
//! |---|---|---|
//! | key, team | the [`MakeRateLimitKey`] policy (the auth layer's `Principal`, once it exists) | per key or team |
//! | client IP | [`DefaultMakeRateLimitKey`]: the [`ClientAddr`](crate::extension::ClientAddr) extension, IPv6 grouped by /64 — the documented default when no identity is present | [`RateLimitLayer::per_client_ip`] |
//! | model | the [`LlmRequest`](crate::request::LlmRequest)'s `model` | [`RateLimitLayer::model`], [`RateLimitLayer::each_model`] |
//! | global | every request | [`RateLimitLayer::global`] |
//!
//! # Dimensions
//!
//! - **Requests** per window (usually a minute and a day) and **tokens** per window,
//!   as GCRA buckets: a full bucket admits its whole amount at once, then refills
//!   continuously, so no window edge lets a client through twice the limit.
//! - **Tokens** are reserved before the call: the input estimate
//!   ([`LlmRequest::estimated_input_tokens`](crate::request::LlmRequest::estimated_input_tokens))
//!   plus `max_tokens`, capped at [`RateLimitLayer::output_reserve`] (also what is
//!   reserved without `max_tokens`; nothing for embeddings). When the response's
//!   [`Outcome`](crate::outcome::Outcome) resolves, the reservation is settled with
//!   the provider's usage; without usage (a client gone mid-stream), with the input
//!   estimate plus the output streamed so far; an error answer without usage costs
//!   nothing. Spending more than reserved leaves a debt that later requests wait for.
//!   A reservation larger than a whole bucket waits for a full bucket.
//! - **Concurrency** (`max_parallel`): a slot is held from admission until the
//!   response's outcome resolves (the body ended, failed, or the client went away).
//!
//! An admitted request carries a [`Reservation`] in its extensions (the scopes, the
//! tokens reserved, whether a concurrency slot was taken) for the layers after this one.
//!
//! If the response future is dropped, or the inner service fails, before there is a
//! response, the reservation is settled at once, charging the input estimate.
//!
//! # Responses
//!
//! A refused request gets a 429 in the client's dialect with `retry-after` (whole
//! seconds, at least 1). Every response of a limited scope, refused or not, carries the
//! tightest request and token windows of its scopes: OpenAI's
//! `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` (reset as `1s`, `6m0s`; also
//! used for Gemini routes) or Anthropic's
//! `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}` (reset as an RFC 3339
//! time) for `/v1/messages`. [`RateLimitLayer::headers`]`(false)` leaves them out
//! (the limits stay private to the gateway; a 429 keeps `retry-after`).
//!
//! # Readiness and bodies
//!
//! `poll_ready` delegates to the inner service; decisions are taken in `call` and
//! refusals are responses, never errors or a `Pending`. The layer reads the
//! [`LlmRequest`](crate::request::LlmRequest) if one is in the extensions; it parses
//! the body itself (answering 400/413 in dialect) only when a model or token limit
//! needs it. It writes the [`Outcome`](crate::outcome::Outcome) if the response has
//! none yet.
//!
//! # Stores
//!
//! [`MemoryStore`] (the default) keeps the counters in the process, bounded and
//! self-evicting. With the `redis` feature, `RedisStore` keeps them in Redis, shared by
//! a fleet: one atomic script per reservation (one round trip before the call, on the
//! server's clock) and one per settlement (queued and pipelined off the request
//! path), with a fail-open or fail-closed policy when Redis is slow or down.

mod future;
mod gcra;
mod headers;
mod layer;
mod limits;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod reservation;
mod scope;
mod service;
mod store;

pub use future::ResponseFuture;
pub use layer::{RateLimitLayer, DEFAULT_OUTPUT_RESERVE};
pub use limits::{Limits, ParseLimitsError, Rate};
pub use memory::MemoryStore;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{FailMode, RedisStore, RedisStoreBuilder, RedisStoreError, DEFAULT_REDIS_TIMEOUT};
pub use reservation::Reservation;
pub use scope::{DefaultMakeRateLimitKey, MakeRateLimitKey, RateLimitKey, Scope};
pub use service::RateLimit;
pub use store::RateLimitStore;

#[cfg(test)]
mod tests;
