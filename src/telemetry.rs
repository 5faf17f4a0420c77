//! Tracing spans that follow the OpenTelemetry GenAI semantic conventions.
//!
//! [`GenAiSpanLayer`] opens one span per LLM request, named `"{operation} {model}"`
//! (`chat gpt-4o`) through the `otel.name` field, with the request's
//! `gen_ai.operation.name` and `gen_ai.request.model`; when the answer ends (the
//! stream's last event, not the response head) it records `gen_ai.provider.name`,
//! `gen_ai.response.model`, `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`
//! and `http.response.status_code`, and the span closes then, so its duration is the
//! whole answer's. Everything below runs inside it: an upstream attempt's span is its
//! child.
//!
//! The spans are plain `tracing` spans: any subscriber sees them, and
//! `tracing-opentelemetry` exports them as OpenTelemetry spans with these attributes
//! (the example gateway does, over OTLP, with the feature `otel`).
//!
//! ```
//! use tollgate::telemetry::GenAiSpanLayer;
//! use tollgate::testing::MockProvider;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tollgate::BoxError> {
//! let svc = ServiceBuilder::new()
//!     .layer(GenAiSpanLayer::new())
//!     .service(MockProvider::new());
//! let req = http::Request::post("/v1/chat/completions").body(tollgate::Body::from(
//!     r#"{"model":"mock/echo","messages":[{"role":"user","content":"hi"}]}"#,
//! ))?;
//! let res = svc.oneshot(req).await?;
//! assert_eq!(res.status(), 200);
//! # Ok(()) }
//! ```

use std::fmt;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;
use tracing::field::Empty;
use tracing::Instrument;

use crate::extension::ServedBy;
use crate::outcome::{observe, ObserveOptions, Outcome};
use crate::request::LlmRequest;
use crate::{Body, BoxError, Dialect, Endpoint};

/// Opens a GenAI span per LLM request. See the [module docs](crate::telemetry).
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct GenAiSpanLayer {
    _priv: (),
}

impl GenAiSpanLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for GenAiSpanLayer {
    type Service = GenAiSpan<S>;

    fn layer(&self, inner: S) -> GenAiSpan<S> {
        GenAiSpan { inner }
    }
}

/// The service made by [`GenAiSpanLayer`].
#[derive(Clone)]
pub struct GenAiSpan<S> {
    inner: S,
}

impl<S> GenAiSpan<S> {
    crate::macros::inner_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for GenAiSpan<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenAiSpan")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<S, B, ResB> Service<Request<B>> for GenAiSpan<S>
where
    S: Service<Request<Body>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let mut req = req.map(Body::new);
        ResponseFuture::new(async move {
            let Some(endpoint) = Endpoint::from_path(req.uri().path()) else {
                return Ok(inner.call(req).await?.map(Body::new));
            };
            let started = Instant::now();
            let llm = match LlmRequest::extract(&mut req).await {
                Ok(llm) => llm,
                Err(err) => return Ok(err.to_response(Dialect::from_path(req.uri().path()))),
            };
            let operation = match endpoint {
                Endpoint::Embeddings => "embeddings",
                _ => "chat",
            };
            let span = tracing::info_span!(
                "gen_ai",
                otel.name = %format_args!("{operation} {}", llm.model()),
                gen_ai.operation.name = operation,
                gen_ai.request.model = llm.model(),
                gen_ai.provider.name = Empty,
                gen_ai.response.model = Empty,
                gen_ai.usage.input_tokens = Empty,
                gen_ai.usage.output_tokens = Empty,
                http.response.status_code = Empty,
            );
            // Inside the span both when the inner service is called (it may open its own
            // span right there) and while its future runs.
            if span.is_disabled() {
                // No subscriber wants the span: nothing to enter, nor to record when the
                // answer ends.
                let res = inner.call(req).await?;
                return Ok(observe(
                    res,
                    ObserveOptions::new(started).endpoint(Some(endpoint)),
                ));
            }
            let call = span.in_scope(|| inner.call(req));
            let res = call.instrument(span.clone()).await?;
            let res = observe(res, ObserveOptions::new(started).endpoint(Some(endpoint)));
            if let Some(served) = res.extensions().get::<ServedBy>() {
                span.record("gen_ai.provider.name", &*served.provider);
                span.record(
                    "gen_ai.response.model",
                    served.model.as_deref().unwrap_or(llm.model()),
                );
            }
            if let Some(outcome) = res.extensions().get::<Outcome>() {
                // The span lives until the answer ends: its duration is the stream's.
                // Integers as i64: OpenTelemetry has no unsigned attribute type.
                let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                outcome.on_resolve(move |report| {
                    span.record(
                        "http.response.status_code",
                        i64::from(report.status.as_u16()),
                    );
                    if let Some(usage) = report.usage {
                        span.record("gen_ai.usage.input_tokens", int(usage.prompt_tokens));
                    }
                    span.record(
                        "gen_ai.usage.output_tokens",
                        int(report.completion_tokens()),
                    );
                    drop(span);
                });
            }
            Ok(res)
        })
    }
}

crate::macros::boxed_response_future! {
    /// Response future of [`GenAiSpan`].
}
