//! [`RateLimit`]: the service made by the layer.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use tower_service::Service;

use super::future::{Prepared, ResponseFuture, Setting};
use super::layer::Config;
use super::store::Reserve;
use super::{DefaultMakeRateLimitKey, MakeRateLimitKey, RateLimitLayer};
use crate::request::LlmRequest;
use crate::{Body, BoxError, Dialect, Endpoint};

/// The service made by [`RateLimitLayer`]. See the [module docs](crate::ratelimit).
#[derive(Debug, Clone)]
pub struct RateLimit<S, K = DefaultMakeRateLimitKey> {
    pub(crate) inner: S,
    pub(crate) config: Arc<Config>,
    pub(crate) make_key: K,
}

impl<S> RateLimit<S> {
    /// Wraps `inner` with a default layer (see [`RateLimitLayer::new`]).
    pub fn new(inner: S) -> Self {
        tower_layer::Layer::layer(&RateLimitLayer::new(), inner)
    }

    /// A [`RateLimitLayer`] to configure.
    pub fn layer() -> RateLimitLayer {
        RateLimitLayer::new()
    }
}

impl<S, K> RateLimit<S, K> {
    crate::macros::inner_accessors!();
}

impl<S, K, B, ResB> Service<Request<B>> for RateLimit<S, K>
where
    S: Service<Request<Body>, Response = Response<ResB>> + Clone + Send + 'static,
    K: MakeRateLimitKey<B>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let started = Instant::now();
        let key = self.make_key.make_rate_limit_key(&req);
        let mut req = req.map(Body::new);
        let llm = req.extensions().get::<LlmRequest>().cloned();
        let endpoint = llm
            .as_ref()
            .map(LlmRequest::endpoint)
            .or_else(|| req.extensions().get::<Endpoint>().copied())
            .or_else(|| Endpoint::from_path(req.uri().path()));
        let dialect =
            endpoint.map_or_else(|| Dialect::from_path(req.uri().path()), Endpoint::dialect);
        let setting = Setting {
            started,
            endpoint,
            dialect,
            store: self.config.store.clone(),
            headers: self.config.headers,
        };

        let must_parse =
            llm.is_none() && endpoint.is_some() && self.config.needs_request(key.as_ref());
        if !must_parse {
            let Some(plan) = self.config.plan(key, llm.as_ref()) else {
                return ResponseFuture::pass(self.inner.call(req));
            };
            match self.config.store.backend.reserve(plan) {
                Reserve::Ready(decision) => {
                    return ResponseFuture::decided(decision, setting, &mut self.inner, req)
                }
                Reserve::Pending(pending) => {
                    let inner = take_ready(&mut self.inner);
                    let fut = Box::pin(async move {
                        let decision = pending.await;
                        Prepared::Decided(req, decision)
                    });
                    return ResponseFuture::preparing(fut, inner, setting);
                }
            }
        }

        // The body must be read to know the model and the tokens: do it in the future.
        let inner = take_ready(&mut self.inner);
        let config = self.config.clone();
        let fut = Box::pin(async move {
            let llm = match LlmRequest::extract(&mut req).await {
                Ok(llm) => llm,
                Err(err) => return Prepared::Answered(err.to_response(dialect)),
            };
            let Some(plan) = config.plan(key, Some(&llm)) else {
                return Prepared::Unlimited(req);
            };
            let decision = match config.store.backend.reserve(plan) {
                Reserve::Ready(decision) => decision,
                Reserve::Pending(pending) => pending.await,
            };
            Prepared::Decided(req, decision)
        });
        ResponseFuture::preparing(fut, inner, setting)
    }
}

/// Moves the service that was made ready out, leaving its clone behind.
fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}
