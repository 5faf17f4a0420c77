//! The response cache: exact, tenant-scoped, with single-flight and stream replay.
//!
//! [`CacheLayer`] sits after authentication, rate limiting and metering, and before
//! routing (a hit never reaches a provider, and metering records it as a hit at no
//! upstream cost):
//!
//! ```text
//! client ─► Auth ─► RateLimit ─► Metering ─► Cache ─► Routing ─► Failover ─► Upstream
//! ```
//!
//! ```
//! use http::Request;
//! use http_body_util::BodyExt;
//! use tollgate::cache::CacheLayer;
//! use tollgate::testing::MockProvider;
//! use tollgate::Body;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tollgate::BoxError> {
//! let mock = MockProvider::new();
//! let svc = ServiceBuilder::new()
//!     .layer(CacheLayer::new())
//!     .service(mock.clone());
//!
//! let request = || {
//!     Request::post("/v1/chat/completions")
//!         .header("authorization", "Bearer sk-team-a")
//!         .body(Body::from(
//!             r#"{"model":"mock/echo","temperature":0,"messages":[{"role":"user","content":"hi"}]}"#,
//!         ))
//!         .unwrap()
//! };
//! let first = svc.clone().oneshot(request()).await?;
//! assert_eq!(first.headers()["x-tollgate-cache"], "miss");
//! let first = first.into_body().collect().await?.to_bytes(); // stored at its end
//!
//! let second = svc.oneshot(request()).await?;
//! assert_eq!(second.headers()["x-tollgate-cache"], "hit");
//! assert_eq!(second.headers()["age"], "0");
//! assert_eq!(second.into_body().collect().await?.to_bytes(), first);
//! assert_eq!(mock.request_count(), 1);
//! # Ok(()) }
//! ```
//!
//! # Semantic cache (opt-in)
//!
//! [`SemanticCacheLayer`], placed just before `CacheLayer`, serves a paraphrase the
//! answer of an earlier question of the same tenant, model and parameters when their
//! embeddings' cosine similarity reaches a threshold; it asks the exact cache for that
//! answer with `Cache-Control: only-if-cached`, which `CacheLayer` honours for any
//! client too (a stored answer, or a 504 `not_cached` without calling the provider).
//!
//! # What is cached
//!
//! - **Policy** ([`CachePolicy`]): by default only requests meant to be reproducible,
//!   `temperature: 0` or a fixed `seed` (and embeddings); [`CachePolicy::Always`] or
//!   [`CachePolicy::Never`] otherwise. A [`MakeCacheKey`] that returns `None` bypasses
//!   the cache for a request (a policy per key or route).
//! - **Per request**: `Cache-Control: no-store` bypasses the cache (no read, no write);
//!   `Cache-Control: no-cache` skips the stored answer and stores the fresh one;
//!   `x-tollgate-cache-ttl: SECONDS` sets the stored answer's time to live (`0`: do
//!   not store), capped by [`CacheLayer::max_ttl`]; a value that is not a number is a
//!   400 naming the header.
//! - **Only complete 2xx answers** are stored: never an error, a 429, a stream cut off
//!   before its terminal event, a body that failed, or one whose client left before the
//!   end (unless its terminal event had gone through, as with the `openai` SDK, which
//!   closes right after `[DONE]`). Completion is read from the response's
//!   [`Outcome`](crate::outcome::Outcome). Answers larger than
//!   [`CacheLayer::max_entry_bytes`] are forwarded and not stored.
//!
//! # Keys and tenants
//!
//! [`DefaultMakeCacheKey`] hashes (SHA-256) the tenant scope, the endpoint (so the
//! dialect), the model, the answer's shape and a canonical form of the body, so
//! whitespace, key order and `0` versus `0.0` do not matter, while any field that can
//! change the answer does. The tenant scope is the [`CacheScope`] extension when a layer
//! set one; else the authenticated key's id (the auth layer's `Principal`); otherwise the
//! SHA-256 of the caller's credential header (`authorization`, `x-api-key` or
//! `x-goog-api-key`, never stored in clear), or `public` when there is none. Two tenants
//! never share an entry.
//!
//! The model is the one the request names, unless the layer knows how routing will
//! resolve it: [`CacheLayer::resolve_model`] with the `Router` (feature `routing`)
//! of the same configuration (or any [`ResolveModel`]) keys by the resolved model, so
//! an alias and its target share entries, and an alias re-pointed by a reload misses
//! instead of replaying the old model's answers. Build the cache with each
//! configuration's router, as the example gateway does.
//!
//! # Streams
//!
//! On a miss the answer streams to the client untouched, frame by frame, while `Bytes`
//! clones of the frames fill the entry. On a hit the stored bytes are replayed as they
//! were first delivered: a stream request gets the well-formed event stream in its own
//! dialect, terminal event included (`data: [DONE]`, Anthropic's `message_stop` with
//! its `event:` lines), with the usage chunk exactly when it asked for it.
//!
//! A stream request and a non-stream request are **different entries**: the answer's
//! shape (`stream`, and OpenAI's `stream_options.include_usage`) is part of the key, so
//! a non-stream answer never serves a stream request or the reverse (a miss, never a
//! conversion). A byte-exact replay keeps every provider field (ids, `logprobs`,
//! `system_fingerprint`), which a conversion through the canonical form would drop.
//!
//! # Single-flight
//!
//! Identical requests (same key) that arrive while one is in flight share its upstream
//! call: they get its status at once and its body as it arrives (`x-tollgate-cache:
//! hit`, `age: 0`: they cost nothing upstream). If that call fails before its answer
//! starts (an upstream error, a non-2xx status), each follower goes upstream on its own.
//! The first request's client drives the shared call: followers get each chunk as soon
//! as it reads it (no task is spawned per request), so a first client that stalls
//! without disconnecting stalls its followers too. If the first client leaves while
//! others follow, a task reads the rest of the answer for them. A follower already streaming when the shared body fails, or outgrows
//! [`CacheLayer::max_entry_bytes`], ends with a body error, as the first client's
//! stream does. Turn it off with [`CacheLayer::single_flight`].
//!
//! # Headers
//!
//! Every LLM response through the layer carries `x-tollgate-cache: hit | miss | bypass`
//! ([`CACHE_STATUS_HEADER`]); hits also carry `age` (seconds since the answer was
//! stored). Metering reads the header and records a hit at zero upstream cost.
//!
//! # Stores
//!
//! [`MemoryStore`] (the default) is bounded by bytes and evicts by time to live, then by
//! least use. With the `redis` feature, `RedisStore` shares entries across a fleet; it
//! fails open (a miss, and the answer is not stored) when Redis is slow or down. Any
//! [`CacheStore`] works, `Arc<dyn CacheStore>` included.
//!
//! Reads: [`LlmRequest`](crate::request::LlmRequest) (parsed here if no layer did),
//! [`CacheScope`], `cache-control`, `x-tollgate-cache-ttl`, the credential headers.
//! Writes: `x-tollgate-cache` and `age` on the response, and an
//! [`Outcome`](crate::outcome::Outcome) on a miss (created here if absent).

mod body;
mod flight;
mod key;
mod layer;
mod memory;
mod policy;
#[cfg(feature = "redis")]
mod redis;
mod semantic;
mod service;
mod store;

pub use key::{CacheKey, CacheScope, DefaultMakeCacheKey, MakeCacheKey, ResolveModel};
pub use layer::{CacheLayer, DEFAULT_MAX_ENTRY_BYTES, DEFAULT_MAX_TTL, DEFAULT_TTL};
pub use memory::{MemoryStore, DEFAULT_MEMORY_BYTES};
pub use policy::{CachePolicy, CACHE_STATUS_HEADER, CACHE_TTL_HEADER};
#[cfg(feature = "redis")]
pub use redis::{
    RedisStore, RedisStoreBuilder, RedisStoreError, DEFAULT_REDIS_MAX_ENTRY_BYTES,
    DEFAULT_REDIS_TIMEOUT,
};
pub use semantic::{Embed, EmbeddingClient, SemanticCache, SemanticCacheLayer, SIMILARITY_HEADER};
pub use service::{Cache, ResponseFuture};
pub use store::{CacheStore, Entry, Lookup};
