//! [`MetricsLayer`] and its service.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use pin_project::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::registry::{InFlight, Observation, Registry};
use crate::error::GatewayError;
use crate::extension::ServedBy;
use crate::outcome::{observe, ObserveOptions, Outcome};
use crate::request::{LlmRequest, ParsedSlot};
use crate::{Body, BoxError, Endpoint};

/// Records every response of the inner service in a [`Registry`]. See the
/// [module docs](crate::metrics).
#[derive(Debug, Clone)]
#[must_use]
pub struct MetricsLayer {
    registry: Registry,
    #[cfg(feature = "metering")]
    prices: Option<std::sync::Arc<crate::metering::PriceTable>>,
}

impl MetricsLayer {
    /// Records into `registry`.
    pub fn new(registry: Registry) -> Self {
        MetricsLayer {
            registry,
            #[cfg(feature = "metering")]
            prices: None,
        }
    }

    /// Records the cost of each answer (`tollgate_cost_usd_total`) at these prices,
    /// looked up by the model sent to the provider, else the one requested.
    #[cfg(feature = "metering")]
    pub fn prices(mut self, prices: crate::metering::PriceTable) -> Self {
        self.prices = Some(std::sync::Arc::new(prices));
        self
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Metrics<S> {
        Metrics {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`MetricsLayer`].
#[derive(Debug, Clone)]
pub struct Metrics<S> {
    inner: S,
    layer: MetricsLayer,
}

impl<S> Metrics<S> {
    /// Records the responses of `inner` into `registry`.
    pub fn new(inner: S, registry: Registry) -> Self {
        Metrics {
            inner,
            layer: MetricsLayer::new(registry),
        }
    }

    crate::macros::inner_accessors!();
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Metrics<S>
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

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let started = Instant::now();
        let endpoint = req
            .extensions()
            .get::<Endpoint>()
            .copied()
            .or_else(|| Endpoint::from_path(req.uri().path()));
        let slot = match req.extensions().get::<LlmRequest>() {
            Some(_) => None,
            None => {
                let slot = ParsedSlot::new();
                req.extensions_mut().insert(slot.clone());
                Some(slot)
            }
        };
        let parsed = req.extensions().get::<LlmRequest>().cloned();
        let in_flight = self.layer.registry.in_flight(super::route(endpoint));
        ResponseFuture {
            inner: self.inner.call(req),
            state: Some(Pending {
                layer: self.layer.clone(),
                started,
                endpoint,
                parsed,
                slot,
                in_flight,
            }),
        }
    }
}

struct Pending {
    layer: MetricsLayer,
    started: Instant,
    endpoint: Option<Endpoint>,
    parsed: Option<LlmRequest>,
    slot: Option<ParsedSlot>,
    /// Counted until the answer ends: the callback owns it, and a future dropped
    /// before its answer drops it.
    in_flight: InFlight,
}

/// Response future of [`Metrics`].
#[pin_project]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    state: Option<Pending>,
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
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
        let pending = this
            .state
            .take()
            .expect("ResponseFuture polled after completion");
        let res = observe(
            res,
            ObserveOptions::new(pending.started).endpoint(pending.endpoint),
        );
        if let Some(outcome) = res.extensions().get::<Outcome>() {
            let status = res.status();
            let served = res.extensions().get::<ServedBy>().cloned();
            let error = res
                .extensions()
                .get::<GatewayError>()
                .map(GatewayError::kind);
            let cache = res
                .headers()
                .get(crate::header_names::X_TOLLGATE_CACHE)
                .and_then(|v| match v.as_bytes() {
                    b"hit" => Some("hit"),
                    b"miss" => Some("miss"),
                    b"bypass" => Some("bypass"),
                    _ => None,
                });
            outcome.on_resolve(move |report| {
                let elapsed = pending.started.elapsed();
                // The report's times count from the innermost observer's start: shift
                // them to this layer's.
                let offset = elapsed.saturating_sub(report.elapsed);
                let llm = pending
                    .parsed
                    .as_ref()
                    .or_else(|| pending.slot.as_ref().and_then(ParsedSlot::get));
                let endpoint = llm.map(LlmRequest::endpoint).or(pending.endpoint);
                let model = llm.map(LlmRequest::model);
                let provider = served.as_ref().map(|s| &*s.provider);
                #[cfg(feature = "metering")]
                let cost_usd = pending.layer.prices.as_ref().and_then(|prices| {
                    let usage = report.usage?;
                    let sent = served.as_ref().and_then(|s| s.model.as_deref());
                    let priced = sent.and_then(|m| prices.get(m)).or_else(|| {
                        // Looked up again only when the request named another model.
                        model
                            .filter(|m| Some(*m) != sent)
                            .and_then(|m| prices.get(m))
                    })?;
                    Some(priced.cost(&usage).nanos() as f64 / 1e9)
                });
                #[cfg(not(feature = "metering"))]
                let cost_usd = None;
                let obs = Observation {
                    route: super::route(endpoint),
                    operation: match endpoint {
                        Some(Endpoint::Embeddings) => "embeddings",
                        _ => "chat",
                    },
                    model,
                    provider,
                    error,
                    status,
                    cache,
                    elapsed,
                    ttfb: report.ttfb.map(|t| t + offset),
                    cost_usd,
                };
                pending.layer.registry.record(&obs, report);
                drop(pending.in_flight);
            });
        }
        Poll::Ready(Ok(res))
    }
}
