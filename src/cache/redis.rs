//! [`RedisStore`]: cached answers in Redis, shared by a fleet.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use super::store::{CacheStore, Entry, Lookup};
use super::CacheKey;

/// The default wait for Redis on a lookup before it counts as a miss: 50 ms.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(50);

/// The default largest entry written to Redis: 1 MiB.
pub const DEFAULT_REDIS_MAX_ENTRY_BYTES: usize = 1024 * 1024;

/// Bytes of entries waiting to be written at most; beyond it writes are dropped.
const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;

pub use crate::redis_conn::RedisStoreError;

/// Cached answers in Redis, shared by every replica that points at the same server.
/// Cheap to clone.
///
/// - **Keys** are `PREFIX:HEX` (`tollgate:cache` by default), each with Redis's own
///   expiry (`SET .. PX`) set to the entry's time to live.
/// - **Reads** wait at most the timeout (default 50 ms); a slow or failing Redis is a
///   miss: the request goes upstream and the gateway keeps serving (fail open). The
///   event is counted ([`failures`](RedisStore::failures)) and logged when Redis goes
///   away and when it is back.
/// - **Writes** are queued (bounded by bytes; dropped beyond) and sent by a background
///   task, off the request path; the task ends when the last clone of the store is
///   dropped. Entries larger than the cap (default 1 MiB) are not written.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    max_entry_bytes: usize,
    writes: mpsc::UnboundedSender<(String, Bytes, u64)>,
    queued: Arc<AtomicUsize>,
    failures: AtomicU64,
    healthy: AtomicBool,
}

/// Builds a [`RedisStore`]. See [`RedisStore::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
    max_entry_bytes: usize,
}

impl RedisStore {
    /// A builder for a store at `url` (`redis://host:port/db`).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            prefix: "tollgate:cache".into(),
            timeout: DEFAULT_REDIS_TIMEOUT,
            max_entry_bytes: DEFAULT_REDIS_MAX_ENTRY_BYTES,
        }
    }

    /// Connects with the defaults.
    pub async fn connect(url: impl Into<String>) -> Result<RedisStore, RedisStoreError> {
        Self::builder(url).connect().await
    }

    /// Lookups and writes that failed or timed out.
    pub fn failures(&self) -> u64 {
        self.inner.failures.load(Ordering::Relaxed)
    }
}

impl RedisStoreBuilder {
    /// The key prefix (default `tollgate:cache`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a lookup may wait for Redis (default 50 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest entry written, in bytes (default 1 MiB).
    pub fn max_entry_bytes(mut self, bytes: usize) -> Self {
        self.max_entry_bytes = bytes;
        self
    }

    /// Connects (within 5 s) and starts the writer task. Must run inside a tokio
    /// runtime.
    pub async fn connect(self) -> Result<RedisStore, RedisStoreError> {
        let conn = crate::redis_conn::connect(&self.url, "cache")
            .await
            .map_err(RedisStoreError)?;
        let (writes, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let inner = Arc::new(Inner {
            conn,
            prefix: self.prefix,
            timeout: self.timeout,
            max_entry_bytes: self.max_entry_bytes,
            writes,
            queued: queued.clone(),
            failures: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
        });
        tokio::spawn(writer(Arc::downgrade(&inner), rx, queued));
        Ok(RedisStore { inner })
    }
}

impl Inner {
    fn key(&self, key: &CacheKey) -> String {
        format!("{}:{}", self.prefix, key.to_hex())
    }

    fn failed(&self, what: &str, err: &dyn fmt::Display) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if self.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!(error = %err, "cache Redis {what} failed: serving uncached until it is back");
        }
    }

    fn ok(&self) {
        if !self.healthy.swap(true, Ordering::Relaxed) {
            tracing::info!("cache Redis is back");
        }
    }
}

impl CacheStore for RedisStore {
    fn get(&self, key: &CacheKey) -> Lookup {
        let inner = self.inner.clone();
        let key = inner.key(key);
        Lookup::pending(async move {
            let mut conn = inner.conn.clone();
            let mut cmd = redis::cmd("GET");
            cmd.arg(&key);
            let get = cmd.query_async::<Option<Vec<u8>>>(&mut conn);
            match tokio::time::timeout(inner.timeout, get).await {
                Ok(Ok(found)) => {
                    inner.ok();
                    Entry::decode(Bytes::from(found?)).filter(Entry::is_fresh)
                }
                Ok(Err(err)) => {
                    inner.failed("lookup", &err);
                    None
                }
                Err(elapsed) => {
                    inner.failed("lookup", &elapsed);
                    None
                }
            }
        })
    }

    fn put(&self, key: CacheKey, entry: Entry) {
        let ttl_ms = u64::try_from(entry.ttl().as_millis()).unwrap_or(u64::MAX);
        if ttl_ms == 0 || entry.body().len() > self.inner.max_entry_bytes {
            return;
        }
        let value = entry.encode();
        let len = value.len();
        if self.inner.queued.fetch_add(len, Ordering::Relaxed) + len > MAX_QUEUED_BYTES {
            self.inner.queued.fetch_sub(len, Ordering::Relaxed);
            self.inner.failures.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self
            .inner
            .writes
            .send((self.inner.key(&key), value, ttl_ms))
            .is_err()
        {
            self.inner.queued.fetch_sub(len, Ordering::Relaxed);
        }
    }
}

/// Sends queued writes, one at a time, each within a second. Ends with the store.
async fn writer(
    store: Weak<Inner>,
    mut rx: mpsc::UnboundedReceiver<(String, Bytes, u64)>,
    queued: Arc<AtomicUsize>,
) {
    while let Some((key, value, ttl_ms)) = rx.recv().await {
        queued.fetch_sub(value.len(), Ordering::Relaxed);
        let Some(inner) = store.upgrade() else { return };
        let mut conn = inner.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key).arg(value.as_ref()).arg("PX").arg(ttl_ms);
        let set = cmd.query_async::<()>(&mut conn);
        match tokio::time::timeout(Duration::from_secs(1), set).await {
            Ok(Ok(())) => inner.ok(),
            Ok(Err(err)) => inner.failed("write", &err),
            Err(elapsed) => inner.failed("write", &elapsed),
        }
    }
}

/// Hides a password in a Redis URL.
impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .field("failures", &self.failures())
            .finish_non_exhaustive()
    }
}
