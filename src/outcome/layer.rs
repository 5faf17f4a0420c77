//! [`ObserveLayer`]: observe the responses of any service.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use pin_project::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::body::{observe, ObserveOptions};
use crate::request::LlmRequest;
use crate::{Body, BoxError, Endpoint};

/// Puts an [`Outcome`](super::Outcome) on every response of the inner service that
/// does not have one yet. See the [module docs](crate::outcome).
///
/// Reads: [`LlmRequest`] (or the path) for the dialect. Writes: `Outcome` into the
/// response extensions. Layers that need the outcome (metering, rate limits, cache)
/// call [`observe`] themselves, so this layer is only needed to observe a service of
/// your own; `tollgate::upstream::Upstream` observes its responses already.
#[derive(Debug, Clone, Copy, Default)]
#[must_use]
pub struct ObserveLayer {
    _priv: (),
}

impl ObserveLayer {
    /// A new layer.
    pub const fn new() -> Self {
        ObserveLayer { _priv: () }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe { inner }
    }
}

/// The service made by [`ObserveLayer`].
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
}

impl<S> Observe<S> {
    /// Observes the responses of `inner`.
    pub const fn new(inner: S) -> Self {
        Observe { inner }
    }

    crate::macros::inner_accessors!();
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Observe<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let endpoint = req
            .extensions()
            .get::<LlmRequest>()
            .map(LlmRequest::endpoint)
            .or_else(|| req.extensions().get::<Endpoint>().copied())
            .or_else(|| Endpoint::from_path(req.uri().path()));
        let options = ObserveOptions::new(Instant::now()).endpoint(endpoint);
        ResponseFuture {
            inner: self.inner.call(req),
            options,
        }
    }
}

/// Response future of [`Observe`].
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    options: ObserveOptions,
}

impl<F, ResB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx))?;
        Poll::Ready(Ok(observe(res, *this.options)))
    }
}
