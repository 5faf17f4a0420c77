//! [`MeteringLayer`] and [`Metering`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::{Money, PriceTable, UsageRecord};
use crate::error::GatewayError;
use crate::extension::ServedBy;
use crate::outcome::{observe, ObserveOptions, Outcome, Report};
use crate::request::LlmRequest;
use crate::{Body, BoxError, Dialect, Endpoint};

/// What to do with a model that has no price.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnknownPrice {
    /// Serve it, record a zero cost with `priced: false`, and log a warning (once per
    /// model and process).
    #[default]
    ZeroWithWarning,
    /// Refuse the request before the call with a 400 naming the model.
    Reject,
}

/// Writes one [`UsageRecord`] per LLM response to a [`Ledger`](super::Ledger). See
/// the [module docs](crate::metering).
///
/// Reads: [`LlmRequest`] (parsed here if no layer did yet), `x-request-id`, the auth
/// layer's `Principal` (key id and team of the record; feature `auth`), and from the
/// response: the [`Outcome`] (created here if absent), [`ServedBy`], `x-tollgate-cache`.
/// Writes: nothing to the request; the record goes to the ledger when the outcome
/// resolves. Requests that are not for an LLM endpoint pass through unmetered.
#[must_use]
pub struct MeteringLayer<L> {
    ledger: L,
    prices: Arc<PriceTable>,
    unknown: UnknownPrice,
}

impl<L> MeteringLayer<L> {
    /// Meters into `ledger` with the shipped price table.
    pub fn new(ledger: L) -> Self {
        MeteringLayer {
            ledger,
            prices: Arc::new(PriceTable::builtin()),
            unknown: UnknownPrice::default(),
        }
    }

    /// Uses this price table instead of the shipped one.
    pub fn prices(mut self, prices: PriceTable) -> Self {
        self.prices = Arc::new(prices);
        self
    }

    /// Sets the policy for models without a price.
    pub fn unknown_price(mut self, policy: UnknownPrice) -> Self {
        self.unknown = policy;
        self
    }
}

impl<L: Clone> Clone for MeteringLayer<L> {
    fn clone(&self) -> Self {
        MeteringLayer {
            ledger: self.ledger.clone(),
            prices: self.prices.clone(),
            unknown: self.unknown,
        }
    }
}

impl<L> fmt::Debug for MeteringLayer<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeteringLayer")
            .field("unknown", &self.unknown)
            .finish_non_exhaustive()
    }
}

impl<S, L: Clone> Layer<S> for MeteringLayer<L> {
    type Service = Metering<S, L>;

    fn layer(&self, inner: S) -> Metering<S, L> {
        Metering {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`MeteringLayer`].
pub struct Metering<S, L> {
    inner: S,
    layer: MeteringLayer<L>,
}

impl<S, L> Metering<S, L> {
    crate::macros::inner_accessors!();
}

impl<S: Clone, L: Clone> Clone for Metering<S, L> {
    fn clone(&self) -> Self {
        Metering {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, L> fmt::Debug for Metering<S, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metering")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, L, B, ResB> Service<Request<B>> for Metering<S, L>
where
    S: Service<Request<Body>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    L: super::Ledger + Clone,
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
        let layer = self.layer.clone();
        let mut req = req.map(Body::new);
        ResponseFuture::new(async move {
            let started = Instant::now();
            let is_llm = req.extensions().get::<LlmRequest>().is_some()
                || req.extensions().get::<Endpoint>().is_some()
                || Endpoint::from_path(req.uri().path()).is_some();
            if !is_llm {
                return Ok(inner.call(req).await?.map(Body::new));
            }
            let llm = match LlmRequest::extract(&mut req).await {
                Ok(llm) => llm,
                Err(err) => return Ok(err.to_response(Dialect::from_path(req.uri().path()))),
            };
            let priced = layer.prices.get(llm.model()).is_some();
            if !priced && layer.unknown == UnknownPrice::Reject {
                let err = GatewayError::invalid_request(format!(
                    "The model `{}` has no price configured, and this gateway refuses unpriced models; \
                     add it to the price table.",
                    llm.model()
                ))
                .with_param("model");
                return Ok(err.to_response(llm.dialect()));
            }
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map_or_else(generated_id, str::to_owned);
            #[cfg(feature = "auth")]
            let principal = req
                .extensions()
                .get::<crate::auth::Principal>()
                .map(|p| (p.key_id.to_string(), p.team.as_deref().map(str::to_owned)));
            #[cfg(not(feature = "auth"))]
            let principal: Option<(String, Option<String>)> = None;
            let res = inner.call(req).await?;
            let res = observe(
                res,
                ObserveOptions::new(started).endpoint(Some(llm.endpoint())),
            );
            let pending = Pending {
                id,
                principal,
                time_ms: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64),
                requested_model: llm.model().to_owned(),
                served: res.extensions().get::<ServedBy>().cloned(),
                cache_hit: res
                    .headers()
                    .get("x-tollgate-cache")
                    .is_some_and(|v| v == "hit"),
            };
            if let Some(outcome) = res.extensions().get::<Outcome>() {
                let ledger = layer.ledger.clone();
                let prices = layer.prices.clone();
                outcome
                    .on_resolve(move |report| ledger.record(pending.into_record(report, &prices)));
            }
            Ok(res)
        })
    }
}

crate::macros::boxed_response_future! {
    /// Response future of [`Metering`].
}

/// What is known of a request before its outcome.
struct Pending {
    id: String,
    /// The key id and team, from the auth layer's `Principal`.
    principal: Option<(String, Option<String>)>,
    time_ms: i64,
    requested_model: String,
    served: Option<ServedBy>,
    cache_hit: bool,
}

impl Pending {
    fn into_record(self, report: &Report, prices: &PriceTable) -> UsageRecord {
        let (provider, model, attempts) = match self.served {
            Some(s) => (
                Some(s.provider.to_string()),
                s.model
                    .map_or_else(|| self.requested_model.clone(), |m| m.to_string()),
                s.attempts,
            ),
            None => (None, self.requested_model.clone(), 1),
        };
        let usage = report.usage.unwrap_or_default();
        let completion_tokens = report.completion_tokens();
        let price = prices
            .get(&model)
            .or_else(|| prices.get(&self.requested_model));
        if price.is_none() {
            warn_unpriced(&model);
        }
        let cost = match (price, self.cache_hit) {
            (Some(price), false) => price.cost_of(
                usage.prompt_tokens,
                usage.cached_tokens,
                usage.cache_write_tokens,
                completion_tokens,
            ),
            _ => Money::ZERO,
        };
        UsageRecord {
            id: self.id,
            time_ms: self.time_ms,
            key_id: self.principal.as_ref().map(|p| p.0.clone()),
            team: self.principal.and_then(|p| p.1),
            requested_model: self.requested_model,
            provider,
            model,
            attempts,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens,
            cached_tokens: usage.cached_tokens,
            cache_write_tokens: usage.cache_write_tokens,
            cost,
            priced: price.is_some(),
            latency_us: report.elapsed.as_micros() as u64,
            ttfb_us: report.ttfb.map(|t| t.as_micros() as u64),
            status: report.status.as_u16(),
            end: report.end,
            cache_hit: self.cache_hit,
            exact: report.usage_is_exact(),
        }
    }
}

/// Warns once per model: a busy gateway must not log the same line per request.
fn warn_unpriced(model: &str) {
    static WARNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if warned.len() < 1000 && !warned.iter().any(|m| m == model) {
        warned.push(model.to_owned());
        tracing::warn!(
            model,
            "no price for this model: its usage is recorded with a zero cost (priced = false)"
        );
    }
}

/// A unique id for requests that came without `x-request-id`: the time, a per-process
/// random seed and a counter.
fn generated_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish()
    });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!(
        "tg-{now:x}-{seed:016x}-{:x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
