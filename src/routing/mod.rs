//! Routing: which provider channel serves a request.
//!
//! A [`Channel`] is one way to reach models: a provider dialect and base URL (from a
//! [`Target`](crate::upstream::Target)), one or more upstream keys, the models it
//! serves (with a per-channel name mapping such as `gpt-4o` → `my-azure-deployment`),
//! a weight, a priority and an optional cost. A [`Router`] holds the channels, aliases
//! (model groups) and a [`RouteStrategy`]; [`RoutingLayer`] asks it, for every request,
//! which channels may serve the requested model, best first, and stores the answer as
//! the [`Candidates`] request extension.
//!
//! It sits after the layers that admit and account for a request (auth, rate limit,
//! metering, cache) and before [`FailoverLayer`](crate::failover::FailoverLayer), which
//! tries the candidates in order, and the leaf [`Upstream`](crate::upstream::Upstream).
//! Without fail-over below it, routing also puts the first candidate's
//! [`Target`](crate::upstream::Target) in the request, so `Upstream` sends it there.
//!
//! ```
//! use http::{Request, Response};
//! use tollgate::routing::{Channel, Router, RoutingLayer, RoundRobin};
//! use tollgate::upstream::{ApiKey, Target};
//! use tollgate::Body;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tollgate::BoxError> {
//! let router = Router::builder()
//!     .channel(
//!         Channel::builder("azure", Target::openai_compatible("azure", "https://example.openai.azure.com/v1")?)
//!             .key(ApiKey::new("key-1"))
//!             .model_as("gpt-4o", "my-gpt-4o-deployment"),
//!     )
//!     .channel(
//!         Channel::builder("openai", Target::openai_compatible("openai", "https://api.openai.com/v1")?)
//!             .keys([ApiKey::new("sk-a"), ApiKey::new("sk-b")])
//!             .model("gpt-4o")
//!             .any_model(),
//!     )
//!     .alias("smart", ["gpt-4o"])
//!     .strategy(RoundRobin::new())
//!     .build()?;
//!
//! // Any service can stand in for `Upstream`: this one answers with the target it got.
//! let svc = ServiceBuilder::new()
//!     .layer(RoutingLayer::new(router.clone()))
//!     .service_fn(|req: Request<Body>| async move {
//!         let target = req.extensions().get::<Target>().expect("routed");
//!         let text = format!("{} {}", target.name(), target.model().unwrap_or("-"));
//!         Ok::<_, std::convert::Infallible>(Response::new(Body::from(text)))
//!     });
//!
//! let ask = |model: &str| {
//!     let body = format!(r#"{{"model":"{model}","messages":[]}}"#);
//!     Request::post("/v1/chat/completions").body(Body::from(body)).unwrap()
//! };
//! use http_body_util::BodyExt;
//! let text = |res: Response<Body>| async { res.into_body().collect().await.unwrap().to_bytes() };
//! assert_eq!(text(svc.clone().oneshot(ask("smart")).await?).await, "azure my-gpt-4o-deployment");
//! assert_eq!(text(svc.clone().oneshot(ask("gpt-4o")).await?).await, "openai -");
//! assert_eq!(text(svc.clone().oneshot(ask("openai/o3")).await?).await, "openai o3");
//!
//! // Disabled at run time: the alias now goes to `openai`, renamed to what it stands for.
//! router.channel("azure").unwrap().set_enabled(false);
//! assert_eq!(text(svc.clone().oneshot(ask("smart")).await?).await, "openai gpt-4o");
//! assert_eq!(svc.clone().oneshot(ask("nope")).await?.status(), 404);
//! # Ok(()) }
//! ```
//!
//! # Resolving the model
//!
//! In order, the first that finds a channel wins:
//!
//! 1. an **alias** (model group) defined with [`RouterBuilder::alias`]: every channel
//!    serving any of its models;
//! 2. `auto`: every channel with [`auto`](ChannelBuilder::auto) on, each with its
//!    first listed model;
//! 3. the **exact name**, among the models channels list (so names that contain `/`,
//!    such as `mock/echo`, work as listed);
//! 4. a **prefix** declared with [`model_prefix`](ChannelBuilder::model_prefix)
//!    (`claude-`, `mock/`; `""` catches the rest): the longest that matches, every
//!    channel declaring it, the name sent unchanged;
//! 5. `provider/model`: channels whose id or provider name is `provider` and that list
//!    `model` (or serve [`any_model`](ChannelBuilder::any_model), which passes it
//!    through);
//! 6. `model:provider`, likewise.
//!
//! Nothing serves it: 404 `model_not_found` in the client's dialect. Then channels are
//! dropped when disabled, down, with an open circuit (or on probation with every trial
//! slot taken), or with every key cooling down after a 429; nothing left: 503
//! `no_healthy_upstream` naming the model and why each channel was skipped. The
//! [`RouteStrategy`] orders the rest; degraded channels go after healthy ones.
//!
//! # Strategies
//!
//! [`WeightedRandom`] (default), [`RoundRobin`], [`SmoothWeightedRoundRobin`],
//! [`Priority`] (an ordered fail-over chain), [`LowestLatency`] (peak-EWMA of the
//! time to first byte with power of two choices and exploration),
//! [`HighestSuccessRate`], [`LowestCost`] (from [`ChannelBuilder::cost`] or a price
//! table), [`Composite`] (weighted latency, errors and cost). A closure
//! `Fn(&mut [Choice])` is a strategy too.
//!
//! # Health
//!
//! Every attempt's result feeds its channel: time to the response head (for streams,
//! the first event), success or failure (connect error, timeout, 5xx; a stream cut
//! after its head counts too, read from its [`Outcome`](crate::outcome::Outcome)), and
//! 429s, which cool the key down for its `retry-after`. Per channel, a **circuit
//! breaker** opens after consecutive failures and goes half-open after a while, letting
//! a bounded number of trial requests through; a **passive health check** judges the
//! error ratio over a sliding window (with a minimum number of attempts): healthy,
//! degraded, or down for a while, then trials again. Thresholds are in
//! [`HealthPolicy`]. **Active probes** ([`Router::spawn_probes`], opt-in) send a
//! one-token request per channel on an interval straight to the leaf service, so they
//! never count against users' limits or bills; they reach down channels too and bring
//! them back as soon as one succeeds. The state is in memory, per process (per replica in a fleet).
//! Time is the tokio clock, so tests drive it with paused time.
//!
//! # Extensions
//!
//! Reads the [`LlmRequest`](crate::request::LlmRequest) (parsing it if no layer did).
//! Writes [`Candidates`] and the first candidate's
//! [`Target`](crate::upstream::Target) into the request extensions.

// Fail-over uses the retry helpers; without it they are unused.
#![cfg_attr(not(feature = "failover"), allow(dead_code))]

mod candidates;
mod channel;
mod health;
mod layer;
mod probe;
mod router;
mod service;
mod strategy;

pub use candidates::{Candidate, Candidates};
pub use channel::{Channel, ChannelBuilder, ChannelStats, KeyStats};
pub use health::{Health, HealthPolicy};
pub use layer::RoutingLayer;
pub use probe::{ProbeConfig, ProbeHandle};
pub use router::{Router, RouterBuilder, RouterError};
pub use service::{ResponseFuture, Routing};
pub use strategy::{
    Choice, Composite, HighestSuccessRate, LowestCost, LowestLatency, Priority, RoundRobin,
    RouteStrategy, SmoothWeightedRoundRobin, WeightedRandom,
};

pub(crate) use router::Clock;
#[cfg(feature = "failover")]
pub(crate) use {
    candidates::{record_attempt, retry_after},
    channel::{AttemptResult, InFlight},
    service::Recorded,
    strategy::Rng,
};
