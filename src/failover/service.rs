//! [`Failover`]: the service and its attempt loop.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Request, Response, StatusCode};
use tokio::time::Instant;
use tower::retry::budget::Budget;
use tower::ServiceExt;
use tower_service::Service;

use super::layer::{Config, FailoverLayer, Hedge};
use crate::error::{ErrorKind, GatewayError};
use crate::extension::ServedBy;
use crate::header_names::{X_TOLLGATE_ATTEMPTS, X_TOLLGATE_TARGET};
use crate::request::LlmRequest;
use crate::routing::{
    record_attempt, retry_after, AttemptResult, Candidate, Candidates, Health, InFlight, Recorded,
};
use crate::upstream::redact::redact;
use crate::upstream::{ApiKey, Target};
use crate::{Body, BoxError, Dialect};

/// The fail-over service. See the [module docs](super).
#[derive(Clone)]
pub struct Failover<S> {
    pub(crate) inner: S,
    pub(crate) config: Arc<Config>,
}

impl<S> Failover<S> {
    /// Wraps `inner` with the default [`FailoverLayer`].
    pub fn new(inner: S) -> Self {
        tower_layer::Layer::layer(&FailoverLayer::new(), inner)
    }

    /// A [`FailoverLayer`] to configure.
    pub fn layer() -> FailoverLayer {
        FailoverLayer::new()
    }

    crate::macros::inner_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for Failover<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failover")
            .field("inner", &self.inner)
            .field("max_attempts", &self.config.max_attempts)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for Failover<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: fmt::Display + Send + 'static,
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
        ResponseFuture::new(failover(inner, self.config.clone(), req.map(Body::new)))
    }
}

crate::macros::boxed_response_future! {
    /// Response future of [`Failover`].
}

/// One failed attempt, for the final error.
struct Failure {
    channel: Arc<str>,
    status: Option<StatusCode>,
    reason: String,
    retry_after: Option<Duration>,
}

async fn failover<S>(
    mut inner: S,
    config: Arc<Config>,
    mut req: Request<Body>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone,
    S::Future: Send + 'static,
    S::Error: fmt::Display,
{
    let Some(candidates) = req.extensions().get::<Candidates>().cloned() else {
        // Nothing to fail over across: one attempt, as is.
        return inner.call(req).await;
    };
    let llm = match LlmRequest::extract(&mut req).await {
        Ok(llm) => llm,
        Err(err) => return Ok(err.to_response(Dialect::from_path(req.uri().path()))),
    };
    let (mut parts, _) = req.into_parts();
    // Each attempt carries a copy of the extensions: not the candidates (routing's, read
    // here) nor routing's target (replaced per attempt).
    parts.extensions.remove::<Candidates>();
    parts.extensions.remove::<Target>();
    // The last attempt takes the parts instead of a copy (headers and every extension
    // cloned): with a single candidate, the only attempt copies nothing.
    let mut parts = Some(parts);
    let body = llm.raw().clone();
    let clock = candidates.list[0].channel.inner.clock;
    let n = candidates.len();
    let max = if config.revisit {
        config.max_attempts as usize
    } else {
        (config.max_attempts as usize).min(n)
    };
    config.budget.deposit();

    let mut failures: Vec<Failure> = Vec::new();
    let mut last: Option<(Response<Body>, &Candidate)> = None;
    let mut budget_exhausted = false;
    let mut made = 0u32;
    let mut attempt = 0usize;
    while attempt < max {
        let candidate = &candidates.list[attempt % n];
        let channel = &candidate.channel;
        let round = attempt / n;
        attempt += 1;
        if attempt > 1 {
            match channel.health() {
                Health::CircuitOpen | Health::Down => continue,
                _ if !channel.is_enabled() => continue,
                _ => {}
            }
            let mut wait = Duration::ZERO;
            if round > 0 {
                wait = backoff(&config, round);
                let now = clock.now_ms();
                if candidate.retarget(now).is_none() {
                    let left = channel.cooldown_left(now);
                    if left > config.max_retry_wait {
                        continue;
                    }
                    wait = wait.max(left);
                }
            }
            if !config.budget.withdraw() {
                budget_exhausted = true;
                break;
            }
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            inner.ready().await?;
        }
        let Some((key, target)) = candidate.retarget(clock.now_ms()) else {
            continue;
        };
        made += 1;
        let these = if attempt >= max {
            parts.take()
        } else {
            parts.clone()
        }
        .expect("the parts are taken by the last attempt only");
        let mut primary = std::pin::pin!(start(
            &mut inner, these, &body, candidate, key, target, &config
        ));

        // Hedging: the first attempt (on the first candidate) is slow to answer; start
        // the next candidate too.
        let hedge = match (config.hedge, candidates.list.get(1)) {
            (Some(hedge), Some(next)) if attempt == 1 && max >= 2 => {
                let delay = match hedge {
                    Hedge::Fixed(delay) => delay,
                    Hedge::Latency { factor, min } => {
                        channel.latency_estimate(clock.now_ms()).map_or(min, |ns| {
                            Duration::from_nanos((ns * factor) as u64).max(min)
                        })
                    }
                    Hedge::Percentile { p, min } => {
                        channel.ttfb_percentile(p, 16).map_or(min, |d| d.max(min))
                    }
                };
                Some((delay, next))
            }
            _ => None,
        };
        let outcome = match hedge {
            None => primary.await,
            Some((delay, next)) => match tokio::time::timeout(delay, primary.as_mut()).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    let now = clock.now_ms();
                    let hedged = match next.retarget(now) {
                        Some(pick)
                            if next.channel.is_enabled()
                                && !matches!(
                                    next.channel.health(),
                                    Health::CircuitOpen | Health::Down
                                )
                                && config.budget.withdraw() =>
                        {
                            Some(pick)
                        }
                        _ => None,
                    };
                    match hedged {
                        None => primary.await,
                        Some((key, target)) => {
                            let mut second = inner.clone();
                            second.ready().await?;
                            made += 1;
                            attempt = 2;
                            // Hedging starts on the first of at least two attempts:
                            // the parts are still here.
                            let parts = parts
                                .clone()
                                .expect("the parts are taken by the last attempt only");
                            // Boxed: inline, this rare second attempt doubled the
                            // size of every request's fail-over future.
                            let mut other = Box::pin(start(
                                &mut second,
                                parts,
                                &body,
                                next,
                                key,
                                target,
                                &config,
                            ));
                            let (mut a, mut b) = (None, None);
                            let winner = std::future::poll_fn(|cx| {
                                if a.is_none() {
                                    if let Poll::Ready(x) = primary.as_mut().poll(cx) {
                                        a = Some(x);
                                    }
                                }
                                if b.is_none() {
                                    if let Poll::Ready(x) = other.as_mut().poll(cx) {
                                        b = Some(x);
                                    }
                                }
                                match (&a, &b) {
                                    (Some(Attempted::Final(_)), _) => Poll::Ready(0),
                                    (_, Some(Attempted::Final(_))) => Poll::Ready(1),
                                    (Some(_), Some(_)) => Poll::Ready(2),
                                    _ => Poll::Pending,
                                }
                            })
                            .await;
                            // The loser, if still running, is dropped (cancelled) on
                            // return; metering records what it may have cost.
                            let (a_running, b_running) = (a.is_none(), b.is_none());
                            match (winner, a, b) {
                                (0, Some(Attempted::Final(res)), _) => {
                                    let res = finish(res, candidate, made);
                                    return Ok(cancelled(res, b_running.then_some(next)));
                                }
                                (1, _, Some(Attempted::Final(res))) => {
                                    let res = finish(res, next, made);
                                    return Ok(cancelled(res, a_running.then_some(candidate)));
                                }
                                (
                                    _,
                                    Some(Attempted::Failed(f1, r1)),
                                    Some(Attempted::Failed(f2, r2)),
                                ) => {
                                    failures.push(f1);
                                    failures.push(f2);
                                    last = r2.map(|r| (r, next)).or(r1.map(|r| (r, candidate)));
                                    continue;
                                }
                                _ => unreachable!(
                                    "the race ends with a final answer or two failures"
                                ),
                            }
                        }
                    }
                }
            },
        };
        match outcome {
            Attempted::Final(res) => return Ok(finish(res, candidate, made)),
            Attempted::Failed(failure, res) => {
                failures.push(failure);
                if let Some(res) = res {
                    last = Some((res, candidate));
                }
            }
        }
    }

    // Every attempt failed. One attempt: its own answer, as if there were no fail-over.
    if let (1, Some((res, candidate))) = (failures.len(), last.take()) {
        return Ok(finish(res, candidate, made));
    }
    let model = llm.model();
    let mut message = format!(
        "Every upstream attempt for the model `{model}` failed ({} attempt{}): ",
        made,
        if made == 1 { "" } else { "s" }
    );
    for (i, f) in failures.iter().enumerate() {
        if i > 0 {
            message.push_str("; ");
        }
        let status = f
            .status
            .map_or("error".to_owned(), |s| s.as_u16().to_string());
        message.push_str(&format!(
            "{}. `{}` ({status}): {}",
            i + 1,
            f.channel,
            f.reason
        ));
    }
    if failures.is_empty() {
        message.push_str("no candidate could be tried");
    }
    if budget_exhausted {
        message.push_str("; retries stopped: the retry budget is exhausted");
    }
    message.push('.');
    let all_throttled = !failures.is_empty()
        && failures
            .iter()
            .all(|f| f.status == Some(StatusCode::TOO_MANY_REQUESTS));
    let err = if all_throttled {
        let wait = failures
            .iter()
            .filter_map(|f| f.retry_after)
            .min()
            .unwrap_or(Duration::from_secs(1));
        GatewayError::new(ErrorKind::RateLimited, message).with_retry_after(wait.as_secs().max(1))
    } else {
        GatewayError::upstream(message)
    };
    let mut res = err.to_response(llm.dialect());
    set_attempt_headers(&mut res, None, made);
    res.extensions_mut().insert(Recorded);
    Ok(res)
}

/// How one attempt ended.
enum Attempted {
    /// An answer that ends the request: a success, or a status that is not retried.
    Final(Response<Body>),
    /// A failure worth another candidate, with the answer when there was one.
    Failed(Failure, Option<Response<Body>>),
}

/// Sends one attempt to `candidate` through `inner` (which must be ready) and returns
/// the future of its outcome; the attempt feeds its channel's statistics when it ends.
/// Dropping the future cancels the attempt (nothing is recorded).
fn start<S>(
    inner: &mut S,
    parts: http::request::Parts,
    body: &Bytes,
    candidate: &Candidate,
    key: usize,
    target: Target,
    config: &Arc<Config>,
) -> impl std::future::Future<Output = Attempted> + Send + 'static
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: fmt::Display,
{
    let secret = target.api_key().cloned();
    let mut req = Request::from_parts(parts, Body::from(body.clone()));
    // Routing left the first candidate's target here: overwritten in place rather
    // than boxed into the map again.
    match req.extensions_mut().get_mut::<Target>() {
        Some(slot) => *slot = target,
        None => {
            req.extensions_mut().insert(target);
        }
    }
    let channel = candidate.channel.clone();
    let in_flight = channel.start(key);
    let started = Instant::now();
    Attempt {
        call: TimeLimited::new(inner.call(req), config.attempt_timeout),
        pending: Some(Pending {
            in_flight,
            started,
            channel,
            key,
            config: config.clone(),
            secret,
        }),
    }
}

/// One attempt in flight: a named future rather than an `async` block, which kept the
/// inner call twice (captured, and again where it was awaited).
#[pin_project::pin_project]
struct Attempt<F> {
    #[pin]
    call: TimeLimited<F>,
    pending: Option<Pending>,
}

/// What an attempt needs once its answer is in.
struct Pending {
    /// Counted in flight on the channel until the answer (or the failure) is in.
    in_flight: InFlight,
    started: Instant,
    channel: crate::routing::Channel,
    key: usize,
    config: Arc<Config>,
    /// A reference count, not a copy of the key: it is only read to redact an error.
    secret: Option<ApiKey>,
}

impl<F, E> Future for Attempt<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
    E: fmt::Display,
{
    type Output = Attempted;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Attempted> {
        let this = self.project();
        let result = std::task::ready!(this.call.poll(cx));
        let pending = this
            .pending
            .take()
            .expect("Attempt polled after completion");
        Poll::Ready(pending.settle(result))
    }
}

impl Pending {
    /// Records the attempt on its channel and says whether it ends the request.
    fn settle<E: fmt::Display>(
        self,
        result: Result<Result<Response<Body>, E>, Duration>,
    ) -> Attempted {
        let Pending {
            in_flight,
            started,
            channel,
            key,
            config,
            secret,
        } = self;
        drop(in_flight);
        let redact_key =
            |text: &str| redact(text, &secret.iter().map(|k| k.expose()).collect::<Vec<_>>());
        let id = channel.inner.id.clone();
        match result {
            Err(limit) => {
                channel.record(key, AttemptResult::Failure);
                let failure = Failure {
                    channel: id,
                    status: Some(StatusCode::GATEWAY_TIMEOUT),
                    reason: format!("no response head within {limit:?}"),
                    retry_after: None,
                };
                Attempted::Failed(failure, None)
            }
            Ok(Err(err)) => {
                channel.record(key, AttemptResult::Failure);
                let failure = Failure {
                    channel: id,
                    status: None,
                    reason: redact_key(&err.to_string()),
                    retry_after: None,
                };
                Attempted::Failed(failure, None)
            }
            Ok(Ok(res)) => {
                record_attempt(&channel, key, &res, started.elapsed());
                if !config.retry_on.contains(&res.status()) {
                    return Attempted::Final(res);
                }
                let reason = match res.extensions().get::<GatewayError>() {
                    Some(err) => redact_key(err.message()),
                    None => res
                        .status()
                        .canonical_reason()
                        .unwrap_or("error")
                        .to_owned(),
                };
                let failure = Failure {
                    channel: id,
                    status: Some(res.status()),
                    reason,
                    retry_after: retry_after(&res),
                };
                Attempted::Failed(failure, Some(res))
            }
        }
    }
}

/// An attempt with its optional time limit, awaited at one place: a `match` awaiting
/// `timeout(limit, call)` in one arm and `call` in the other kept two copies of the
/// attempt in the future, and the limit's timer is only made when one is set.
#[pin_project::pin_project]
struct TimeLimited<F> {
    #[pin]
    call: F,
    #[pin]
    limit: Option<tokio::time::Sleep>,
    duration: Duration,
}

impl<F> TimeLimited<F> {
    fn new(call: F, limit: Option<Duration>) -> Self {
        TimeLimited {
            call,
            limit: limit.map(tokio::time::sleep),
            duration: limit.unwrap_or_default(),
        }
    }
}

impl<F: Future> Future for TimeLimited<F> {
    /// The attempt's output, or the limit that passed first.
    type Output = Result<F::Output, Duration>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.call.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        match this.limit.as_pin_mut() {
            Some(limit) => limit.poll(cx).map(|()| Err(*this.duration)),
            None => Poll::Pending,
        }
    }
}

fn backoff(config: &Config, round: usize) -> Duration {
    let exp = config
        .backoff_base
        .saturating_mul(1u32 << (round - 1).min(16))
        .min(config.backoff_max);
    // Equal jitter: between half and all of it.
    exp.mul_f64(0.5 + 0.5 * config.rng.f64())
}

/// The answer of the attempt that ends the request, with the attempt headers.
fn finish(mut res: Response<Body>, candidate: &Candidate, attempts: u32) -> Response<Body> {
    set_attempt_headers(&mut res, candidate.channel.inner.header.clone(), attempts);
    let served = res.extensions_mut().get_mut::<ServedBy>();
    match served {
        Some(served) => served.attempts = attempts,
        None => {
            let model = candidate.renamed.then(|| candidate.model.clone());
            let mut served = ServedBy::new(candidate.channel.inner.id.clone(), model);
            served.attempts = attempts;
            res.extensions_mut().insert(served);
        }
    }
    res.extensions_mut().insert(Recorded);
    res
}

/// Notes the hedged attempt that lost the race and was cancelled, for metering.
fn cancelled(mut res: Response<Body>, loser: Option<&Candidate>) -> Response<Body> {
    if let Some(loser) = loser {
        let model = loser.renamed.then(|| loser.model.clone());
        let attempt = ServedBy::new(loser.channel.inner.id.clone(), model);
        res.extensions_mut()
            .get_or_insert_default::<crate::extension::CancelledAttempts>()
            .0
            .push(attempt);
    }
    res
}

fn set_attempt_headers(res: &mut Response<Body>, target: Option<HeaderValue>, attempts: u32) {
    let headers = res.headers_mut();
    if let Some(value) = target {
        headers.insert(X_TOLLGATE_TARGET, value);
    }
    // Nearly every answer took one attempt: a static value, not a formatted one.
    let attempts = match attempts {
        1 => HeaderValue::from_static("1"),
        n => HeaderValue::from(n),
    };
    headers.insert(X_TOLLGATE_ATTEMPTS, attempts);
}
