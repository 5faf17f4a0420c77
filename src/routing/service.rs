//! [`Routing`]: the service.

use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tokio::time::Instant;
use tower_service::Service;

use super::candidates::record_attempt;
use super::{Router, RoutingLayer};
use crate::request::LlmRequest;
use crate::upstream::Target;
use crate::{Body, BoxError, Dialect};

/// Marks a response whose attempts were already recorded in the channels' statistics
/// (by fail-over), so routing does not record it again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Recorded;

/// The routing service. See the [module docs](super).
#[derive(Debug, Clone)]
pub struct Routing<S> {
    inner: S,
    router: Router,
}

impl<S> Routing<S> {
    /// Wraps `inner`, routing with `router`.
    pub fn new(inner: S, router: Router) -> Self {
        Routing { inner, router }
    }

    /// A [`RoutingLayer`] on `router`.
    pub fn layer(router: Router) -> RoutingLayer {
        RoutingLayer::new(router)
    }

    crate::macros::inner_accessors!();
}

impl<S, B> Service<Request<B>> for Routing<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // Move the service that was made ready into the future; leave its clone.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let router = self.router.clone();
        ResponseFuture::new(route(inner, router, req.map(Body::new)))
    }
}

crate::macros::boxed_response_future! {
    /// Response future of [`Routing`].
}

async fn route<S>(
    mut inner: S,
    router: Router,
    mut req: Request<Body>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    let llm = match LlmRequest::extract(&mut req).await {
        Ok(llm) => llm,
        Err(err) => return Ok(err.to_response(Dialect::from_path(req.uri().path()))),
    };
    let candidates = match router.resolve(llm.model()) {
        Ok(candidates) => candidates,
        Err(err) => return Ok(err.to_response(llm.dialect())),
    };
    let first = candidates
        .first()
        .expect("resolve never returns an empty list");
    let (channel, key) = (first.channel.clone(), first.key);
    req.extensions_mut()
        .insert::<Target>(first.target().clone());
    req.extensions_mut().insert(candidates);
    let started = Instant::now();
    let res = inner.call(req).await?;
    if res.extensions().get::<Recorded>().is_none() {
        // No fail-over below: the one attempt went to the first candidate.
        drop(channel.start(key));
        record_attempt(&channel, key, &res, started.elapsed());
    }
    Ok(res)
}
