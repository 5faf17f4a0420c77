//! The ledger behind the layer: one trait, an in-memory and a Redis implementation.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::gcra::Gauge;
use super::{Limits, MemoryStore, Rate, Scope};

/// Where the layer keeps its counters: [`MemoryStore`] (one process, the default) or,
/// with the `redis` feature, `RedisStore` (shared by a fleet). Cheap to clone.
#[derive(Clone)]
pub struct RateLimitStore {
    pub(crate) backend: Arc<dyn Backend>,
}

impl RateLimitStore {
    pub(crate) fn new(backend: impl Backend) -> Self {
        RateLimitStore {
            backend: Arc::new(backend),
        }
    }
}

impl fmt::Debug for RateLimitStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.backend.fmt(f)
    }
}

impl Default for RateLimitStore {
    fn default() -> Self {
        MemoryStore::new().into()
    }
}

/// One request's reservation: every scope it counts against, and its token estimate.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) scopes: Vec<(Scope, Limits)>,
    pub(crate) tokens: u64,
    /// The part of `tokens` that estimates the input.
    pub(crate) input: u64,
}

/// What the headers show: the tightest request and token windows of all scopes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) requests: Option<Gauge>,
    pub(crate) tokens: Option<Gauge>,
}

/// An admitted request's reservation, settled exactly once.
#[derive(Debug)]
pub(crate) struct Grant {
    pub(crate) plan: Plan,
    /// Identifies the request's concurrency lease (Redis).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) lease: u64,
    /// False when a store that was down admitted the request without counting it.
    pub(crate) backed: bool,
    pub(crate) snapshot: Snapshot,
}

impl Grant {
    /// Whether settling it has anything to undo or adjust.
    pub(crate) fn needs_settle(&self, used_tokens: u64) -> bool {
        self.backed
            && self.plan.scopes.iter().any(|(_, l)| {
                l.max_parallel.is_some() || (l.limits_tokens() && used_tokens != self.plan.tokens)
            })
    }

    /// The settled difference in tokens.
    pub(crate) fn delta(&self, used_tokens: u64) -> i64 {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        clamp(used_tokens) - clamp(self.plan.tokens)
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dimension {
    Requests(Rate),
    Tokens(Rate),
    Parallel(u32),
}

/// A refused request.
#[derive(Debug, Clone)]
pub(crate) struct Denial {
    pub(crate) scope: Scope,
    pub(crate) dimension: Dimension,
    pub(crate) retry_after: Duration,
    pub(crate) snapshot: Snapshot,
}

/// The store's answer.
#[derive(Debug)]
pub(crate) enum Decision {
    Admit(Grant),
    Deny(Denial),
    /// The store is unreachable and the policy is to fail closed.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Unavailable,
}

pub(crate) type DecisionFuture = Pin<Box<dyn Future<Output = Decision> + Send>>;

/// A decision now (in memory) or after a round trip (Redis).
pub(crate) enum Reserve {
    Ready(Decision),
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Pending(DecisionFuture),
}

/// A ledger backend. Settling never blocks: a remote backend queues it.
pub(crate) trait Backend: fmt::Debug + Send + Sync + 'static {
    fn reserve(&self, plan: Plan) -> Reserve;
    fn settle(&self, grant: Grant, used_tokens: u64);
}

/// Keeps the tighter gauge of each dimension.
pub(crate) fn tighten(snapshot: &mut Option<Gauge>, gauge: Gauge) {
    *snapshot = Some(Gauge::tighter(*snapshot, gauge));
}
