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

use super::account::{Account, Accounts, Refusal};
use super::{Money, PriceTable, UsageRecord};
use crate::error::{ErrorKind, GatewayError};
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
/// Reads: [`LlmRequest`] (parsed here if no layer did yet), `x-request-id`, the
/// [`Payer`] (or the auth layer's `Principal`, feature `auth`), and from the
/// response: the [`Outcome`] (created here if absent), [`ServedBy`], `x-tollgate-cache`.
/// Writes: nothing to the request; the record goes to the ledger when the outcome
/// resolves. Requests that are not for an LLM endpoint pass through unmetered.
#[must_use]
pub struct MeteringLayer<L> {
    ledger: L,
    prices: Arc<PriceTable>,
    unknown: UnknownPrice,
    accounts: Option<Accounts>,
    output_reserve: u64,
}

/// Who pays for a request: put it in the request extensions (authentication does) to
/// fill the record's key and team and to apply their balances and budgets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Payer {
    /// The client key's id.
    pub key_id: Option<String>,
    /// The key's team.
    pub team: Option<String>,
    /// The key's own budget, applied when the layer has [`Accounts`].
    pub key_budget: Option<super::Budget>,
}

impl Payer {
    /// A payer with a key and, optionally, a team.
    pub fn new(key_id: Option<String>, team: Option<String>) -> Self {
        Payer {
            key_id,
            team,
            key_budget: None,
        }
    }

    fn accounts(&self) -> Vec<Account> {
        let key = self.key_id.clone().map(Account::Key);
        let team = self.team.clone().map(Account::Team);
        key.into_iter().chain(team).collect()
    }
}

impl<L> MeteringLayer<L> {
    /// Meters into `ledger` with the shipped price table.
    pub fn new(ledger: L) -> Self {
        MeteringLayer {
            ledger,
            prices: Arc::new(PriceTable::builtin()),
            unknown: UnknownPrice::default(),
            accounts: None,
            output_reserve: 4096,
        }
    }

    /// Applies these prepaid balances and budgets (see [`Accounts`]) to the
    /// [`Payer`] of each request.
    pub fn accounts(mut self, accounts: Accounts) -> Self {
        self.accounts = Some(accounts);
        self
    }

    /// Output tokens reserved against a prepaid balance when the request sets no
    /// `max_tokens` (default 4096).
    pub fn output_reserve(mut self, tokens: u64) -> Self {
        self.output_reserve = tokens;
        self
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
            accounts: self.accounts.clone(),
            output_reserve: self.output_reserve,
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
            layer: Arc::new(self.clone()),
        }
    }
}

/// The service made by [`MeteringLayer`].
pub struct Metering<S, L> {
    inner: S,
    // Shared: the service is cloned for every request, and the layer holds several
    // reference counts (ledger queue, prices, accounts); one count is cheaper.
    layer: Arc<MeteringLayer<L>>,
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
            let price = layer.prices.get(llm.model());
            if price.is_none() && layer.unknown == UnknownPrice::Reject {
                let err = GatewayError::invalid_request(format!(
                    "The model `{}` has no price configured, and this gateway refuses unpriced models; \
                     add it to the price table.",
                    llm.model()
                ))
                .with_param("model");
                return Ok(err.to_response(llm.dialect()));
            }
            let payer = payer_of(&req);
            let hold = match &layer.accounts {
                Some(accounts) => {
                    if let (Some(key), Some(budget)) = (&payer.key_id, payer.key_budget) {
                        accounts.set_budget(Account::Key(key.clone()), budget);
                    }
                    let worst = price.map_or(Money::ZERO, |p| {
                        let output = llm.max_tokens().unwrap_or(layer.output_reserve);
                        p.cost_of(llm.estimated_input_tokens(), 0, 0, output)
                    });
                    match accounts.acquire(&payer.accounts(), worst).await {
                        Ok(hold) => Some(hold),
                        Err(refusal) => return Ok(refused(refusal).to_response(llm.dialect())),
                    }
                }
                None => None,
            };
            let id = req
                .headers()
                .get(crate::header_names::X_REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .map_or_else(generated_id, str::to_owned);
            let res = inner.call(req).await?;
            let res = observe(
                res,
                ObserveOptions::new(started).endpoint(Some(llm.endpoint())),
            );
            let pending = Pending {
                id,
                time_ms: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64),
                requested_model: llm.model().to_owned(),
                requested_price: price.copied(),
                served: res.extensions().get::<ServedBy>().cloned(),
                payer,
                cache_hit: res
                    .headers()
                    .get(crate::header_names::X_TOLLGATE_CACHE)
                    .is_some_and(|v| v == "hit"),
            };
            // Hedged attempts that lost their race: billed input, as far as we know.
            let cancelled = res
                .extensions()
                .get::<crate::extension::CancelledAttempts>()
                .map(|c| {
                    pending.cancelled_records(
                        &c.0,
                        llm.estimated_input_tokens(),
                        started,
                        &layer.prices,
                    )
                })
                .unwrap_or_default();
            let cancelled_cost = cancelled
                .iter()
                .fold(Money::ZERO, |sum, r| sum.saturating_add(r.cost));
            for record in cancelled {
                layer.ledger.record(record);
            }
            if let Some(outcome) = res.extensions().get::<Outcome>() {
                outcome.on_resolve(move |report| {
                    let record = pending.into_record(report, &layer.prices);
                    if let Some(hold) = hold {
                        hold.settle(record.cost.saturating_add(cancelled_cost));
                    }
                    layer.ledger.record(record);
                });
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
    time_ms: i64,
    requested_model: String,
    /// The requested model's price, looked up when the request came in.
    requested_price: Option<super::Price>,
    served: Option<ServedBy>,
    payer: Payer,
    cache_hit: bool,
}

/// The status recorded for an attempt the gateway cancelled (nginx's "client closed
/// request": no HTTP status was ever received).
const CANCELLED_STATUS: u16 = 499;

impl Pending {
    /// One estimated record per hedged attempt that was cancelled: the input estimate
    /// at the attempt's model price, no output, ended `client_gone`.
    fn cancelled_records(
        &self,
        attempts: &[ServedBy],
        input_tokens: u64,
        started: Instant,
        prices: &PriceTable,
    ) -> Vec<UsageRecord> {
        attempts
            .iter()
            .enumerate()
            .map(|(i, attempt)| {
                let model = attempt
                    .model
                    .as_deref()
                    .unwrap_or(&self.requested_model)
                    .to_owned();
                let price = prices
                    .get(&model)
                    .or_else(|| prices.get(&self.requested_model));
                UsageRecord {
                    id: format!("{}-cancelled-{}", self.id, i + 1),
                    time_ms: self.time_ms,
                    key_id: self.payer.key_id.clone(),
                    team: self.payer.team.clone(),
                    requested_model: self.requested_model.clone(),
                    provider: Some(attempt.provider.to_string()),
                    model,
                    attempts: 1,
                    prompt_tokens: input_tokens,
                    completion_tokens: 0,
                    cached_tokens: 0,
                    cache_write_tokens: 0,
                    cost: price.map_or(Money::ZERO, |p| p.cost_of(input_tokens, 0, 0, 0)),
                    priced: price.is_some(),
                    latency_us: started.elapsed().as_micros() as u64,
                    ttfb_us: None,
                    status: CANCELLED_STATUS,
                    end: crate::outcome::End::ClientGone,
                    cache_hit: false,
                    exact: false,
                }
            })
            .collect()
    }

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
        // The served model's price, else the requested one's (looked up on the way in).
        let price = if model == self.requested_model {
            self.requested_price
        } else {
            prices.get(&model).copied().or(self.requested_price)
        };
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
            key_id: self.payer.key_id,
            team: self.payer.team,
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

/// Who pays: the [`Payer`] extension if a layer set one, else the key and team of the
/// auth layer's `Principal` (feature `auth`), else nobody (postpaid, no budget).
fn payer_of(req: &Request<Body>) -> Payer {
    if let Some(payer) = req.extensions().get::<Payer>() {
        return payer.clone();
    }
    #[cfg(feature = "auth")]
    if let Some(p) = req.extensions().get::<crate::auth::Principal>() {
        let mut payer = Payer::new(
            Some(p.key_id.to_string()),
            p.team.as_deref().map(str::to_owned),
        );
        payer.key_budget = p.budget.as_ref().and_then(key_budget);
        return payer;
    }
    Payer::default()
}

/// A key's budget as set through the admin API, in metering's terms.
#[cfg(feature = "auth")]
pub(crate) fn key_budget(budget: &crate::auth::Budget) -> Option<super::Budget> {
    use crate::auth::BudgetPeriod;
    let limit: Money = budget.amount.parse().ok()?;
    let period = match budget.period {
        BudgetPeriod::Daily => super::Period::Daily,
        BudgetPeriod::Weekly => super::Period::Weekly,
        BudgetPeriod::Monthly => super::Period::Monthly,
        BudgetPeriod::Total => super::Period::Total,
    };
    Some(super::Budget::new(limit, period))
}

/// The 429 `insufficient_quota` for a refusal, saying what to do.
fn refused(refusal: Refusal) -> GatewayError {
    let err = match refusal {
        Refusal::Unavailable => {
            return GatewayError::new(
                ErrorKind::NoHealthyUpstream,
                "The shared balance store is unreachable, so prepaid balances and budgets cannot be checked; try again shortly.",
            )
            .with_code("balance_store_unavailable")
            .with_retry_after(1)
        }
        Refusal::Balance(account) => GatewayError::new(
            ErrorKind::InsufficientQuota,
            format!(
                "The prepaid balance of {account} is used up; credit it with POST /admin/balances/<key or team>."
            ),
        ),
        Refusal::Budget { account, resets_ms } => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
            let wait = ((resets_ms - now).max(0) as u64).div_ceil(1000);
            GatewayError::new(
                ErrorKind::InsufficientQuota,
                format!("The budget of {account} for this period is spent; it resets in {wait} s."),
            )
            .with_retry_after(wait)
        }
    };
    err.with_type("insufficient_quota")
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
