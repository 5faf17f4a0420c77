//! [`FailoverLayer`]: configuration only.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tower::retry::budget::TpsBudget;
use tower_layer::Layer;

use super::Failover;
use crate::routing::Rng;

/// Tries a request's [`Candidates`](crate::routing::Candidates) in order until one
/// answers. See the [module docs](super).
#[derive(Clone)]
#[must_use]
pub struct FailoverLayer {
    config: Config,
}

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) max_attempts: u32,
    pub(crate) revisit: bool,
    pub(crate) retry_on: Vec<StatusCode>,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) hedge: Option<Hedge>,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) max_retry_wait: Duration,
    pub(crate) budget: Arc<TpsBudget>,
    pub(crate) rng: Arc<Rng>,
}

impl Default for FailoverLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl FailoverLayer {
    /// The defaults: at most 3 attempts; retry on 429, 500, 502, 503, 504 (which is
    /// also how [`Upstream`](crate::upstream::Upstream) answers connect errors and
    /// timeouts) and on errors of the inner service; no attempt timeout of its own;
    /// backoff from 100 ms to 2 s with jitter, only before trying a channel again;
    /// `retry-after` honoured up to 10 s; a retry budget of 20 % of requests plus 10
    /// retries per second, over 10 s.
    pub fn new() -> Self {
        FailoverLayer {
            config: Config {
                max_attempts: 3,
                revisit: true,
                retry_on: [429, 500, 502, 503, 504]
                    .into_iter()
                    .map(|s| StatusCode::from_u16(s).expect("valid status"))
                    .collect(),
                attempt_timeout: None,
                hedge: None,
                backoff_base: Duration::from_millis(100),
                backoff_max: Duration::from_secs(2),
                max_retry_wait: Duration::from_secs(10),
                budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
                rng: Arc::new(Rng::new()),
            },
        }
    }

    fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// Attempts per request, the first included (at least 1). With fewer candidates
    /// than attempts, the list is tried again from the top, after a backoff.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.config_mut().max_attempts = attempts.max(1);
        self
    }

    /// Whether a channel already tried may be tried again when the attempts outnumber
    /// the candidates (default true). With `false`, a request makes at most one attempt
    /// per candidate: a model served by one channel is never retried, and its error is
    /// the client's answer as is.
    pub fn revisit(mut self, revisit: bool) -> Self {
        self.config_mut().revisit = revisit;
        self
    }

    /// The answer statuses that make the next candidate try (replaces the default
    /// list). Errors of the inner service and attempt timeouts always do.
    pub fn retry_on(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.config_mut().retry_on = statuses.into_iter().collect();
        self
    }

    /// Gives each attempt this long to produce its response head (for streams through
    /// `Upstream`: the first event); past it the attempt is dropped (cancelled) and the
    /// next candidate tried.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.config_mut().attempt_timeout = Some(timeout);
        self
    }

    /// Hedging (off by default): when the first attempt has no response head after
    /// `delay` (for streams through `Upstream`: no first event), a second attempt starts
    /// on the next candidate; the first to answer wins and the other is dropped, which
    /// cancels its provider request. A hedge uses the retry budget and counts as an
    /// attempt. A cancelled attempt has no answer, so its usage is not metered (the
    /// provider may still bill the prompt it read).
    pub fn hedge_after(mut self, delay: Duration) -> Self {
        self.config_mut().hedge = Some(Hedge::Fixed(delay));
        self
    }

    /// Hedging (see [`hedge_after`](Self::hedge_after)) with a delay that follows the
    /// first candidate: `factor` times its peak-EWMA time to first byte, at least
    /// `min` (and `min` while it has no recent sample). A factor of 2 to 3 hedges only
    /// the attempts clearly slower than usual.
    pub fn hedge_after_latency(mut self, factor: f64, min: Duration) -> Self {
        let factor = if factor.is_finite() {
            factor.max(0.0)
        } else {
            1.0
        };
        self.config_mut().hedge = Some(Hedge::Latency { factor, min });
        self
    }

    /// Hedging (see [`hedge_after`](Self::hedge_after)) with a delay that is the `p`-th
    /// percentile (e.g. 0.95) of the first candidate's last 64 times to first byte, at
    /// least `min` (and `min` until it has 16 samples): only the attempts slower than
    /// nearly all recent ones get a second one.
    pub fn hedge_after_percentile(mut self, p: f64, min: Duration) -> Self {
        let p = if p.is_finite() {
            p.clamp(0.0, 1.0)
        } else {
            0.95
        };
        self.config_mut().hedge = Some(Hedge::Percentile { p, min });
        self
    }

    /// Exponential backoff before a channel is tried again: `base × 2ⁿ`, at most `max`,
    /// with jitter (a random time between half and all of it). Moving on to a channel
    /// not tried yet does not wait.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        let config = self.config_mut();
        config.backoff_base = base;
        config.backoff_max = max.max(base);
        self
    }

    /// The longest `retry-after` waited for before trying a throttled channel again;
    /// a longer one skips that channel.
    pub fn max_retry_wait(mut self, wait: Duration) -> Self {
        self.config_mut().max_retry_wait = wait;
        self
    }

    /// The retry budget (tower's `TpsBudget`): retries may use `retry_ratio` (0 to
    /// 1000) of the requests seen over `ttl` (1 to 60 s, clamped) plus `min_per_sec`
    /// retries per second. An exhausted budget stops retries, so retries cannot
    /// multiply the load on a failing provider. Services made by one layer (and its
    /// clones) share one budget.
    pub fn retry_budget(mut self, ttl: Duration, min_per_sec: u32, retry_ratio: f32) -> Self {
        let ttl = ttl.clamp(Duration::from_secs(1), Duration::from_secs(60));
        let ratio = if retry_ratio.is_finite() {
            retry_ratio.clamp(0.0, 1000.0)
        } else {
            0.0
        };
        let min = min_per_sec.min(i32::MAX as u32 - 1);
        self.config_mut().budget = Arc::new(TpsBudget::new(ttl, min, ratio));
        self
    }

    /// A fixed seed for the backoff jitter (reproducible tests).
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.config_mut().rng = Arc::new(Rng::with_seed(seed));
        self
    }
}

/// When to hedge.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Hedge {
    Fixed(Duration),
    Latency { factor: f64, min: Duration },
    Percentile { p: f64, min: Duration },
}

impl<S> Layer<S> for FailoverLayer {
    type Service = Failover<S>;

    fn layer(&self, inner: S) -> Failover<S> {
        Failover {
            inner,
            config: Arc::new(self.config.clone()),
        }
    }
}

impl fmt::Debug for FailoverLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        f.debug_struct("FailoverLayer")
            .field("max_attempts", &c.max_attempts)
            .field("revisit", &c.revisit)
            .field("retry_on", &c.retry_on)
            .field("attempt_timeout", &c.attempt_timeout)
            .field("hedge", &c.hedge)
            .field("backoff_base", &c.backoff_base)
            .field("backoff_max", &c.backoff_max)
            .field("max_retry_wait", &c.max_retry_wait)
            .finish_non_exhaustive()
    }
}
