//! [`RedisStore`]: the ledger shared by a fleet, in Redis.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{Cmd, ErrorKind, RedisError, ServerErrorKind};
use tokio::sync::mpsc;

use super::gcra::Gauge;
use super::store::{tighten, Backend, Decision, Denial, Dimension, Grant, Plan, Reserve, Snapshot};
use super::{Limits, RateLimitStore};

const RESERVE: &str = include_str!("lua/reserve.lua");
const SETTLE: &str = include_str!("lua/settle.lua");

/// The default wait for Redis before the [`FailMode`] applies.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(50);

/// What a request gets when Redis does not answer within the timeout (or fails).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Admit it without counting it (the default: an outage of the limiter is not an
    /// outage of the gateway).
    #[default]
    Open,
    /// Refuse it with a 503 in the client's dialect.
    Closed,
}

pub use crate::redis_conn::RedisStoreError;

/// The rate-limit ledger in Redis, shared by every replica that points at the same
/// server. Cheap to clone.
///
/// - **Reserve**: one atomic Lua script for all the request's scopes, on the server's
///   clock (`TIME`), so replicas with skewed clocks agree: one round trip before the
///   call.
/// - **Settle**: one script per request, queued and sent in pipelined batches by a
///   background task (off the request path). The task ends when the last clone of the
///   store is dropped.
/// - **Failure**: a reservation that takes longer than the timeout (default 50 ms) or
///   fails follows the [`FailMode`]; the event is counted
///   ([`failures`](RedisStore::failures)) and logged (a warning when Redis goes away,
///   an info line when it is back). Nothing waits longer than the timeout.
/// - **Concurrency** slots are leases with a deadline (default 10 minutes), so the
///   slots of a replica that died are freed by themselves.
///
/// Keys are `PREFIX:SCOPE` (a hash) and `PREFIX:SCOPE:inflight` (a sorted set), with
/// `PREFIX` `tollgate:rl` by default; they expire once their buckets are full again.
/// One request's keys are used by one script, so a Redis Cluster is not supported.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    fail: FailMode,
    lease: Duration,
    reserve_sha: String,
    settle_sha: String,
    settle_tx: mpsc::Sender<Cmd>,
    failures: AtomicU64,
    healthy: AtomicBool,
    lease_ids: AtomicU64,
    lease_base: u64,
}

/// Builds a [`RedisStore`]. See [`RedisStore::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
    fail: FailMode,
    lease: Duration,
}

impl RedisStore {
    /// A builder for a store at `url` (`redis://host:port/db`).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            prefix: "tollgate:rl".into(),
            timeout: DEFAULT_REDIS_TIMEOUT,
            fail: FailMode::Open,
            lease: Duration::from_secs(600),
        }
    }

    /// Connects with the defaults (50 ms timeout, fail open).
    pub async fn connect(url: impl Into<String>) -> Result<RedisStore, RedisStoreError> {
        Self::builder(url).connect().await
    }

    /// Reservations that timed out or failed and followed the [`FailMode`], plus
    /// settlements that could not be sent.
    pub fn failures(&self) -> u64 {
        self.inner.failures.load(Ordering::Relaxed)
    }
}

impl RedisStoreBuilder {
    /// The key prefix (default `tollgate:rl`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a reservation may wait for Redis (default 50 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What happens when Redis does not answer in time (default [`FailMode::Open`]).
    pub fn fail_mode(mut self, fail: FailMode) -> Self {
        self.fail = fail;
        self
    }

    /// How long a concurrency slot is held at most if it is never released (a replica
    /// that died); default 10 minutes. Longer than the longest request.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Connects (within 5 s), loads the scripts and starts the settlement task.
    /// Must run inside a tokio runtime.
    pub async fn connect(self) -> Result<RedisStore, RedisStoreError> {
        let mut conn = crate::redis_conn::connect(&self.url, "rate-limit")
            .await
            .map_err(RedisStoreError)?;
        let load = |script: &'static str| redis::cmd("SCRIPT").arg("LOAD").arg(script).clone();
        let scripts = async {
            let reserve: String = load(RESERVE).query_async(&mut conn).await?;
            let settle: String = load(SETTLE).query_async(&mut conn).await?;
            Ok::<_, RedisError>((reserve, settle))
        };
        let (reserve_sha, settle_sha) = tokio::time::timeout(Duration::from_secs(5), scripts)
            .await
            .map_err(|e| e.to_string())
            .and_then(|loaded| loaded.map_err(|e| e.to_string()))
            .map_err(|e| {
                let url = crate::redis_conn::redact(&self.url);
                RedisStoreError(format!(
                    "rate-limit Redis at {url}: loading the scripts: {e}"
                ))
            })?;
        let (settle_tx, settle_rx) = mpsc::channel(65_536);
        let seed = std::collections::hash_map::RandomState::new();
        let inner = Arc::new(Inner {
            conn,
            prefix: self.prefix,
            timeout: self.timeout,
            fail: self.fail,
            lease: self.lease,
            reserve_sha,
            settle_sha,
            settle_tx,
            failures: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            lease_ids: AtomicU64::new(0),
            lease_base: std::hash::BuildHasher::hash_one(&seed, std::process::id()),
        });
        tokio::spawn(settle_task(
            Arc::downgrade(&inner),
            inner.conn.clone(),
            settle_rx,
        ));
        Ok(RedisStore { inner })
    }
}

/// The URL without its password, for messages.
impl From<RedisStore> for RateLimitStore {
    fn from(store: RedisStore) -> Self {
        RateLimitStore::new(store)
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .field("fail", &self.inner.fail)
            .field("failures", &self.failures())
            .finish_non_exhaustive()
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn windows(rates: &[Option<super::Rate>; 2], cmd: &mut Cmd) {
    for rate in rates {
        match rate {
            Some(r) => cmd.arg(r.amount()).arg(micros(r.period())),
            None => cmd.arg(0).arg(0),
        };
    }
}

impl Inner {
    fn keys(&self, plan: &Plan, cmd: &mut Cmd) {
        for (scope, _) in &plan.scopes {
            let key = format!("{}:{}", self.prefix, scope.storage_key());
            let inflight = format!("{key}:inflight");
            cmd.arg(key).arg(inflight);
        }
    }

    fn reserve_cmd(&self, plan: &Plan, lease: u64, sha: bool) -> Cmd {
        let mut cmd = redis::cmd(if sha { "EVALSHA" } else { "EVAL" });
        cmd.arg(if sha { &self.reserve_sha } else { RESERVE })
            .arg(plan.scopes.len() * 2);
        self.keys(plan, &mut cmd);
        cmd.arg(plan.tokens)
            .arg(lease)
            .arg(u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX));
        for (_, limits) in &plan.scopes {
            windows(&limits.requests, &mut cmd);
            windows(&limits.tokens, &mut cmd);
            cmd.arg(limits.max_parallel.unwrap_or(0));
        }
        cmd
    }

    fn settle_cmd(&self, grant: &Grant, used_tokens: u64) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.settle_sha).arg(grant.plan.scopes.len() * 2);
        self.keys(&grant.plan, &mut cmd);
        let delta = if grant.plan.scopes.iter().any(|(_, l)| l.limits_tokens()) {
            grant.delta(used_tokens)
        } else {
            0
        };
        cmd.arg(delta).arg(grant.lease);
        for (_, limits) in &grant.plan.scopes {
            windows(&limits.tokens, &mut cmd);
            cmd.arg(u8::from(limits.max_parallel.is_some()));
        }
        cmd
    }

    fn failed(&self, plan: Plan, why: &dyn fmt::Display) -> Decision {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if self.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!(error = %why, fail = ?self.fail, "rate-limit Redis unavailable");
        } else {
            tracing::debug!(error = %why, fail = ?self.fail, "rate-limit Redis unavailable");
        }
        match self.fail {
            FailMode::Open => Decision::Admit(Grant {
                plan,
                lease: 0,
                backed: false,
                snapshot: Snapshot::default(),
            }),
            FailMode::Closed => Decision::Unavailable,
        }
    }
}

/// Reads the reserve script's answer.
fn decide(plan: Plan, lease: u64, reply: &[i64]) -> Option<Decision> {
    let (&[admitted, scope, slot, retry], rest) = reply.split_first_chunk::<4>()?;
    let mut snapshot = Snapshot::default();
    for w in rest.chunks_exact(5) {
        let gauge = Gauge {
            limit: w[2].try_into().ok()?,
            remaining: w[3].max(0).try_into().ok()?,
            reset: Duration::from_micros(w[4].max(0).try_into().ok()?),
        };
        match w[1] {
            1 | 2 => tighten(&mut snapshot.requests, gauge),
            _ => tighten(&mut snapshot.tokens, gauge),
        }
    }
    if admitted == 1 {
        return Some(Decision::Admit(Grant {
            plan,
            lease,
            backed: true,
            snapshot,
        }));
    }
    let (scope, limits): &(super::Scope, Limits) = plan
        .scopes
        .get(usize::try_from(scope).ok()?.checked_sub(1)?)?;
    let dimension = match slot {
        1 | 2 => Dimension::Requests(limits.requests[(slot - 1) as usize]?),
        3 | 4 => Dimension::Tokens(limits.tokens[(slot - 3) as usize]?),
        _ => Dimension::Parallel(limits.max_parallel?),
    };
    Some(Decision::Deny(Denial {
        scope: scope.clone(),
        dimension,
        retry_after: Duration::from_micros(retry.max(0).try_into().ok()?),
        snapshot,
    }))
}

fn is_noscript(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

impl Backend for RedisStore {
    fn reserve(&self, plan: Plan) -> Reserve {
        let inner = self.inner.clone();
        Reserve::Pending(Box::pin(async move {
            let lease = inner.lease_base ^ inner.lease_ids.fetch_add(1, Ordering::Relaxed);
            let mut conn = inner.conn.clone();
            let call = async {
                let reply: Result<Vec<i64>, RedisError> = inner
                    .reserve_cmd(&plan, lease, true)
                    .query_async(&mut conn)
                    .await;
                match reply {
                    Err(e) if is_noscript(&e) => {
                        inner
                            .reserve_cmd(&plan, lease, false)
                            .query_async(&mut conn)
                            .await
                    }
                    other => other,
                }
            };
            match tokio::time::timeout(inner.timeout, call).await {
                Ok(Ok(reply)) => {
                    if !inner.healthy.swap(true, Ordering::Relaxed) {
                        tracing::info!("rate-limit Redis is back");
                    }
                    let fallback = plan.clone();
                    decide(plan, lease, &reply).unwrap_or_else(|| {
                        inner.failed(fallback, &"unexpected reply from the reserve script")
                    })
                }
                Ok(Err(e)) => inner.failed(plan, &e),
                Err(_) => inner.failed(plan, &format_args!("no answer within {:?}", inner.timeout)),
            }
        }))
    }

    fn settle(&self, grant: Grant, used_tokens: u64) {
        if !grant.needs_settle(used_tokens) {
            return;
        }
        let cmd = self.inner.settle_cmd(&grant, used_tokens);
        if self.inner.settle_tx.try_send(cmd).is_err() {
            self.inner.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("rate-limit settlement queue full: settlement dropped");
        }
    }
}

/// Sends queued settlements in pipelined batches until the store is dropped.
async fn settle_task(
    inner: std::sync::Weak<Inner>,
    mut conn: ConnectionManager,
    mut rx: mpsc::Receiver<Cmd>,
) {
    let mut batch = Vec::with_capacity(128);
    while rx.recv_many(&mut batch, 128).await > 0 {
        let mut pipe = redis::pipe();
        for cmd in batch.drain(..) {
            pipe.add_command(cmd).ignore();
        }
        let send = async {
            match pipe.query_async::<()>(&mut conn).await {
                Err(e) if is_noscript(&e) => {
                    redis::cmd("SCRIPT")
                        .arg("LOAD")
                        .arg(SETTLE)
                        .query_async::<String>(&mut conn)
                        .await?;
                    pipe.query_async::<()>(&mut conn).await
                }
                other => other,
            }
        };
        if let Err(e) = tokio::time::timeout(Duration::from_secs(2), send)
            .await
            .unwrap_or_else(|_| Err(RedisError::from((ErrorKind::Io, "timed out"))))
        {
            if let Some(inner) = inner.upgrade() {
                inner.failures.fetch_add(1, Ordering::Relaxed);
            }
            tracing::warn!(error = %e, "rate-limit settlements could not be sent to Redis");
        }
    }
}
