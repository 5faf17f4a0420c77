//! Fail-over: try a request's candidates in order until one answers.
//!
//! [`FailoverLayer`] sits between [`RoutingLayer`](crate::routing::RoutingLayer) and
//! [`Upstream`](crate::upstream::Upstream). It reads the
//! [`Candidates`](crate::routing::Candidates) routing wrote and, for each attempt,
//! sends a fresh copy of the request (the buffered body is a `Bytes` clone) with that
//! candidate's [`Target`](crate::upstream::Target) to the inner service.
//!
//! - **What is retried**: answers with a status in the retry list (default 429, 500,
//!   502, 503, 504: `Upstream` answers connect errors with 502 and timeouts with 504),
//!   errors of the inner service, and attempts over the
//!   [`attempt_timeout`](FailoverLayer::attempt_timeout). Streams through `Upstream`
//!   are committed only after their first event, so a stream that fails before it is
//!   retried too; once a response head is returned it is never retried: a stream that
//!   fails later ends with an error event (its [`Outcome`](crate::outcome::Outcome)
//!   says `UpstreamError`) and counts against its channel's health.
//! - **Order and waits**: the next candidate is tried at once; when the attempts
//!   outnumber the candidates, the list is tried again from the top after an
//!   exponential backoff with jitter, waiting for a key's `retry-after` up to
//!   [`max_retry_wait`](FailoverLayer::max_retry_wait). Candidates whose circuit opened
//!   or that went down meanwhile are skipped; a key that answered 429 cools down and the
//!   channel's next key is used.
//! - **Limits**: a per-request attempt cap (with [`revisit(false)`](FailoverLayer::revisit),
//!   at most one attempt per candidate) and a retry budget shared by the layer's
//!   services (tower's `TpsBudget`), so retries cannot multiply an outage.
//! - **Hedging** (opt-in): when the first attempt has no response head after
//!   [`hedge_after`](FailoverLayer::hedge_after) (or a multiple of the channel's usual
//!   time to first byte, [`hedge_after_latency`](FailoverLayer::hedge_after_latency)),
//!   the next candidate starts too; the first answer wins and the other attempt is
//!   dropped, cancelling its provider request (its usage is not metered).
//! - **The answer**: the first that is not retried, with `x-tollgate-target` (the
//!   channel id) and `x-tollgate-attempts`, and [`ServedBy`](crate::extension::ServedBy)
//!   naming the channel with its attempt count (metering records both). When every
//!   attempt failed: a single attempt's own answer; several: 502 in the client's
//!   dialect listing each attempt's channel, status and reason (credentials
//!   redacted), or 429 when every attempt was throttled.
//!
//! Every attempt feeds its channel's statistics, circuit and health (see
//! [`routing`](crate::routing)). Without `Candidates` the request goes through once,
//! untouched.
//!
//! ```
//! use http::{Request, Response};
//! use tollgate::failover::FailoverLayer;
//! use tollgate::routing::{Channel, Priority, Router, RoutingLayer};
//! use tollgate::upstream::Target;
//! use tollgate::Body;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tollgate::BoxError> {
//! let router = Router::builder()
//!     .channel(Channel::builder("primary", Target::openai_compatible("a", "http://127.0.0.1:1/v1")?).model("m").priority(0))
//!     .channel(Channel::builder("backup", Target::openai_compatible("b", "http://127.0.0.1:2/v1")?).model("m").priority(1))
//!     .strategy(Priority::new())
//!     .build()?;
//!
//! // A stand-in for `Upstream`: the primary fails with 503, the backup answers.
//! let svc = ServiceBuilder::new()
//!     .layer(RoutingLayer::new(router))
//!     .layer(FailoverLayer::new())
//!     .service_fn(|req: Request<Body>| async move {
//!         let target = req.extensions().get::<Target>().expect("set per attempt");
//!         let mut res = Response::new(Body::from("{}"));
//!         if target.name() == "primary" {
//!             *res.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
//!         }
//!         Ok::<_, std::convert::Infallible>(res)
//!     });
//!
//! let req = Request::post("/v1/chat/completions")
//!     .body(Body::from(r#"{"model":"m","messages":[]}"#))?;
//! let res = svc.oneshot(req).await?;
//! assert_eq!(res.status(), 200);
//! assert_eq!(res.headers()["x-tollgate-target"], "backup");
//! assert_eq!(res.headers()["x-tollgate-attempts"], "2");
//! # Ok(()) }
//! ```

mod layer;
mod service;

pub use layer::FailoverLayer;
pub use service::{Failover, ResponseFuture};
