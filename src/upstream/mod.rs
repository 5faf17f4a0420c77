//! [`Upstream`]: the leaf service that talks to the providers.
//!
//! A pooled HTTP/1.1 and HTTP/2 client over rustls (no OpenSSL), with `TCP_NODELAY`
//! and three timeouts: connect, first byte (response head and, for streams, the first
//! event) and idle between frames. For each request it:
//!
//! - sends the client's bytes untouched to a same-dialect provider (unknown fields
//!   survive); the body is re-serialised only to rename the model
//!   ([`Target::with_model`]) or to ask for stream usage;
//! - translates between dialects when the client's and the target's differ (an OpenAI
//!   client to [`Target::anthropic`] or [`Target::gemini`], an Anthropic client to any
//!   target) with [`providers`](crate::providers): the request, the answer, streams event
//!   by event, and errors; what the target cannot express is a 400 naming the field;
//! - strips the client's credentials and hop-by-hop headers, asks for an uncompressed
//!   answer, and injects the [`Target`]'s key the way its dialect expects
//!   (`Authorization: Bearer`, `x-api-key` with `anthropic-version`, `x-goog-api-key`),
//!   marked sensitive;
//! - streams the answer frame by frame, committing a stream to the client only after
//!   its first event arrived (until then a failure is still a clean error response);
//! - asks OpenAI-dialect providers for usage in streams and hides that extra chunk
//!   from a client that did not ask for it;
//! - answers provider errors in the client's dialect with key-like strings redacted
//!   (an upstream 401 becomes a 502: the client's key is not the one at fault), and
//!   ends a stream that fails midway with a last error event;
//! - puts an [`Outcome`](crate::outcome::Outcome) on every response and an
//!   `x-tollgate-target` header on provider answers.
//!
//! When the client goes away, dropping the response body drops the provider's
//! connection, so the provider stops generating.
//!
//! ```no_run
//! use tollgate::upstream::{ApiKey, Target, Upstream};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let openai = Target::openai_compatible("openai", "https://api.openai.com/v1")?
//!     .with_api_key(ApiKey::new(std::env::var("OPENAI_API_KEY")?));
//! let upstream = Upstream::new(openai);
//! // `upstream` is a `Service<Request<B>, Response = Response<tollgate::Body>>`:
//! // put tollgate layers in front of it, or mount it in axum with `route_service`.
//! # let _ = upstream; Ok(()) }
//! ```
//!
//! Any OpenAI-compatible base URL works (DeepSeek, GLM, Qwen, vLLM, Ollama).

mod body;
pub(crate) mod redact;
mod service;
mod target;

pub use body::IdleTimeout;
pub use service::{ResponseFuture, Upstream, UpstreamBuilder};
pub use target::{ApiKey, InvalidBaseUrl, Target};
