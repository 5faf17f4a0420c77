//! [`Keys`]: a key store behind a short-lived cache, and the key operations of the
//! admin API.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use moka::sync::Cache;
use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::{
    Budget, IpNet, KeyHash, KeyLimits, KeyRecord, KeySecret, KeyStore, KeyStoreError, ModelPattern,
    Principal, Rejection, Role,
};
use crate::auth::record::KeyState;

/// How long a looked-up key is trusted before the store is asked again: the bound on
/// how long a key revoked on another replica keeps working.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(2);

/// Keys kept in the cache (known and unknown counted separately).
pub const DEFAULT_CACHE_CAPACITY: u64 = 100_000;

/// Store lookups in flight at once; more cold keys wait for a turn.
pub const DEFAULT_MAX_LOOKUPS: usize = 16;

/// How long a cold lookup may take (waiting for a turn included) before the request
/// is answered 503.
pub const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// What a new key may do: every field the admin API accepts at creation.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct KeySpec {
    /// A human name.
    pub name: Option<String>,
    /// The team (created on first use).
    pub team: Option<String>,
    /// The role (default developer).
    pub role: Role,
    /// Allowed models (globs); empty means every model.
    pub models: Vec<ModelPattern>,
    /// Allowed client addresses; empty means any.
    pub ip_allow: Vec<IpNet>,
    /// Rate limits.
    pub limits: KeyLimits,
    /// Spending budget.
    pub budget: Option<Budget>,
    /// Free-form metadata.
    pub metadata: Map<String, Value>,
    /// When the key stops working.
    pub expires_at: Option<SystemTime>,
}

/// A key just created or rotated: its record and the plaintext, which is never
/// available again.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CreatedKey {
    /// The stored record.
    pub record: KeyRecord,
    /// The plaintext key, to show once.
    pub secret: KeySecret,
}

/// A looked-up key, cached with the time it was read.
#[derive(Clone)]
struct Cached {
    key: Option<Arc<CachedKey>>,
    read_at: Instant,
}

struct CachedKey {
    record: KeyRecord,
    principal: Principal,
}

/// A [`KeyStore`] behind an in-process cache, with the operations of the admin API.
/// Clones share the cache.
///
/// - A key found in the store is trusted for the cache TTL (default
///   [`DEFAULT_CACHE_TTL`], 2 s): a key revoked, disabled or rotated on another
///   replica stops working here within that time; on this replica, at once.
/// - An unknown key is remembered as unknown for the same TTL, in a cache of its own
///   with a bounded size, so a client repeating a bad key never reaches the store and
///   a flood of random keys cannot evict the good ones.
/// - Concurrent lookups of one cold key make one store query; at most
///   [`DEFAULT_MAX_LOOKUPS`] queries run at once, each bounded by a timeout after
///   which the request gets a 503 (the store being down fails closed).
/// - Expiry is checked on every request against the clock, not cached.
#[derive(Clone)]
pub struct Keys {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn KeyStore>,
    /// Read without an `await` on the hot path (moka's synchronous cache: a read is a
    /// hash lookup, where the asynchronous one is a state machine around it).
    known: Cache<KeyHash, Cached>,
    unknown: Cache<KeyHash, Instant>,
    /// Cold lookups in flight, so concurrent requests for one key share one query.
    loading: moka::future::Cache<KeyHash, Cached>,
    ttl: Duration,
    lookups: Semaphore,
    lookup_timeout: Duration,
    clock: Arc<dyn Fn() -> SystemTime + Send + Sync>,
    store_lookups: AtomicU64,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("store", &self.inner.store)
            .field("ttl", &self.inner.ttl)
            .finish_non_exhaustive()
    }
}

/// Builds [`Keys`] with non-default cache settings.
#[must_use]
pub struct KeysBuilder {
    store: Arc<dyn KeyStore>,
    ttl: Duration,
    capacity: u64,
    negative_capacity: u64,
    max_lookups: usize,
    lookup_timeout: Duration,
    clock: Arc<dyn Fn() -> SystemTime + Send + Sync>,
}

impl fmt::Debug for KeysBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeysBuilder")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .field("negative_capacity", &self.negative_capacity)
            .field("max_lookups", &self.max_lookups)
            .finish_non_exhaustive()
    }
}

impl KeysBuilder {
    /// How long a lookup is trusted (default 2 s; the revocation bound across replicas).
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How many known keys are cached (default 100,000).
    pub fn cache_capacity(mut self, keys: u64) -> Self {
        self.capacity = keys;
        self
    }

    /// How many unknown keys are remembered (default 100,000).
    pub fn negative_cache_capacity(mut self, keys: u64) -> Self {
        self.negative_capacity = keys;
        self
    }

    /// Store lookups in flight at once (default 16, at least 1).
    pub fn max_concurrent_lookups(mut self, n: usize) -> Self {
        self.max_lookups = n.max(1);
        self
    }

    /// How long a cold lookup may take before a 503 (default 2 s).
    pub fn lookup_timeout(mut self, timeout: Duration) -> Self {
        self.lookup_timeout = timeout;
        self
    }

    /// The clock expiry is judged by (default `SystemTime::now`), for tests.
    pub fn clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The keys.
    pub fn build(self) -> Keys {
        // moka's own expiry only frees memory: freshness is judged by `read_at` on the
        // tokio clock, so tests can pause time.
        let sweep = self.ttl.saturating_mul(2).max(Duration::from_millis(1));
        Keys {
            inner: Arc::new(Inner {
                store: self.store,
                known: Cache::builder()
                    .max_capacity(self.capacity)
                    .time_to_live(sweep)
                    .build(),
                unknown: Cache::builder()
                    .max_capacity(self.negative_capacity)
                    .time_to_live(sweep)
                    .build(),
                loading: moka::future::Cache::builder()
                    .max_capacity(self.max_lookups as u64 * 64)
                    .time_to_live(self.lookup_timeout.max(Duration::from_millis(1)))
                    .build(),
                ttl: self.ttl,
                lookups: Semaphore::new(self.max_lookups),
                lookup_timeout: self.lookup_timeout,
                clock: self.clock,
                store_lookups: AtomicU64::new(0),
            }),
        }
    }
}

impl Keys {
    /// Keys in `store` with the default cache.
    pub fn new(store: impl KeyStore) -> Keys {
        Keys::builder(store).build()
    }

    /// A builder to change the cache settings.
    pub fn builder(store: impl KeyStore) -> KeysBuilder {
        KeysBuilder {
            store: Arc::new(store),
            ttl: DEFAULT_CACHE_TTL,
            capacity: DEFAULT_CACHE_CAPACITY,
            negative_capacity: DEFAULT_CACHE_CAPACITY,
            max_lookups: DEFAULT_MAX_LOOKUPS,
            lookup_timeout: DEFAULT_LOOKUP_TIMEOUT,
            clock: Arc::new(SystemTime::now),
        }
    }

    /// Queries made to the store by [`verify`](Keys::verify) so far (cache misses).
    pub fn store_lookups(&self) -> u64 {
        self.inner.store_lookups.load(Ordering::Relaxed)
    }

    /// Forgets every cached lookup, known and unknown keys alike: the next request of
    /// each key reads the store again. For when the store changed behind the admin
    /// API's back (the configuration file's keys were reloaded).
    pub fn clear_cache(&self) {
        self.inner.known.invalidate_all();
        self.inner.unknown.invalidate_all();
        self.inner.loading.invalidate_all();
    }

    /// The principal of a presented key, or the rejection to answer: 401 for an
    /// unknown, disabled, revoked or expired key, 503 when the store cannot answer.
    pub async fn verify(&self, secret: &str) -> Result<Principal, Rejection> {
        self.verify_hash(KeyHash::of(secret)).await
    }

    pub(crate) async fn verify_hash(&self, hash: KeyHash) -> Result<Principal, Rejection> {
        let key = self
            .lookup(hash)
            .await?
            .ok_or_else(Rejection::invalid_key)?;
        match key.record.state((self.inner.clock)()) {
            KeyState::Active => Ok(key.principal.clone()),
            KeyState::Disabled => Err(Rejection::unauthenticated("This API key is disabled.")),
            KeyState::Revoked => Err(Rejection::unauthenticated("This API key has been revoked.")),
            KeyState::Expired => Err(Rejection::unauthenticated("This API key has expired.")),
        }
    }

    async fn lookup(&self, hash: KeyHash) -> Result<Option<Arc<CachedKey>>, Rejection> {
        let inner = &self.inner;
        let fresh = |at: Instant| at.elapsed() < inner.ttl;
        // Known keys first: the hot path is one cache read. A hash is in at most one of
        // the two caches (a negative load clears `known`; loads happen only when
        // `unknown` has nothing fresh), so the order changes no answer.
        if let Some(cached) = inner.known.get(&hash) {
            if fresh(cached.read_at) {
                return Ok(cached.key);
            }
            inner.known.invalidate(&hash);
        }
        if let Some(at) = inner.unknown.get(&hash) {
            if fresh(at) {
                return Ok(None);
            }
            inner.unknown.invalidate(&hash);
        }
        // One query per cold key, however many requests wait for it: the first starts
        // the load, the others wait for its result.
        let this = self.clone();
        let loaded = inner
            .loading
            .try_get_with(hash, async move { this.load(hash).await })
            .await
            .map_err(|e: Arc<Rejection>| (*e).clone())?;
        // Kept in one of the two caches only (the order of the reads above then
        // changes no answer).
        match &loaded.key {
            Some(_) => {
                inner.unknown.invalidate(&hash);
                inner.known.insert(hash, loaded.clone());
            }
            None => {
                inner.known.invalidate(&hash);
                inner.unknown.insert(hash, loaded.read_at);
            }
        }
        inner.loading.invalidate(&hash).await;
        Ok(loaded.key)
    }

    async fn load(&self, hash: KeyHash) -> Result<Cached, Rejection> {
        let inner = &self.inner;
        let query = async {
            let _turn = inner.lookups.acquire().await.ok();
            inner.store_lookups.fetch_add(1, Ordering::Relaxed);
            let read_at = Instant::now();
            inner.store.find_by_hash(&hash).await.map(|record| Cached {
                key: record.map(|record| {
                    Arc::new(CachedKey {
                        principal: record.to_principal(),
                        record,
                    })
                }),
                read_at,
            })
        };
        match tokio::time::timeout(inner.lookup_timeout, query).await {
            Ok(Ok(cached)) => Ok(cached),
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "key store lookup failed: answering 503");
                Err(Rejection::unavailable())
            }
            Err(_) => {
                tracing::warn!(
                    timeout_ms = inner.lookup_timeout.as_millis() as u64,
                    "key store lookup timed out: answering 503"
                );
                Err(Rejection::unavailable())
            }
        }
    }

    async fn forget(&self, hash: KeyHash) {
        self.inner.known.invalidate(&hash);
        self.inner.unknown.invalidate(&hash);
        self.inner.loading.invalidate(&hash).await;
    }

    /// Creates a key: a fresh secret, stored as its hash. The plaintext is in the
    /// result and nowhere else.
    pub async fn create(&self, spec: KeySpec) -> Result<CreatedKey, KeyStoreError> {
        let secret = KeySecret::generate().map_err(|e| KeyStoreError::new(e.to_string()))?;
        let mut record = KeyRecord::new(secret.hash(), secret.visible_prefix())
            .map_err(|e| KeyStoreError::new(e.to_string()))?;
        record.name = spec.name;
        record.team = spec.team;
        record.role = spec.role;
        record.models = spec.models;
        record.ip_allow = spec.ip_allow;
        record.limits = spec.limits;
        record.budget = spec.budget;
        record.metadata = spec.metadata;
        record.expires_at = spec
            .expires_at
            .map(|t| crate::auth::record::from_unix_millis(crate::auth::record::unix_millis(t)));
        self.inner.store.insert(&record).await?;
        self.forget(record.hash).await;
        Ok(CreatedKey { record, secret })
    }

    /// The record with this id.
    pub async fn get(&self, id: &str) -> Result<Option<KeyRecord>, KeyStoreError> {
        self.inner.store.get(id).await
    }

    /// Every record, oldest first.
    pub async fn list(&self) -> Result<Vec<KeyRecord>, KeyStoreError> {
        self.inner.store.list().await
    }

    /// Revokes a key for good (the record stays, for usage history). `None` if there
    /// is no such key.
    pub async fn revoke(&self, id: &str) -> Result<Option<KeyRecord>, KeyStoreError> {
        self.modify(id, |r| {
            if r.revoked_at.is_none() {
                r.revoked_at = Some(crate::auth::record::now_millis());
            }
        })
        .await
    }

    /// Disables (`false`) or enables (`true`) a key. `None` if there is no such key.
    pub async fn set_enabled(
        &self,
        id: &str,
        enabled: bool,
    ) -> Result<Option<KeyRecord>, KeyStoreError> {
        self.modify(id, |r| r.enabled = enabled).await
    }

    /// Replaces a key's secret, keeping its id and settings; the old secret stops
    /// working (on other replicas within the cache TTL). `None` if there is no such
    /// key; an error for a revoked one.
    pub async fn rotate(&self, id: &str) -> Result<Option<CreatedKey>, KeyStoreError> {
        let Some(mut record) = self.inner.store.get(id).await? else {
            return Ok(None);
        };
        if record.revoked_at.is_some() {
            return Err(KeyStoreError::new(format!(
                "key `{id}` is revoked and cannot be rotated"
            )));
        }
        let secret = KeySecret::generate().map_err(|e| KeyStoreError::new(e.to_string()))?;
        let old = record.hash;
        record.hash = secret.hash();
        record.prefix = secret.visible_prefix();
        if !self.inner.store.update(&record).await? {
            return Ok(None);
        }
        self.forget(old).await;
        self.forget(record.hash).await;
        Ok(Some(CreatedKey { record, secret }))
    }

    async fn modify(
        &self,
        id: &str,
        change: impl FnOnce(&mut KeyRecord),
    ) -> Result<Option<KeyRecord>, KeyStoreError> {
        let Some(mut record) = self.inner.store.get(id).await? else {
            return Ok(None);
        };
        change(&mut record);
        if !self.inner.store.update(&record).await? {
            return Ok(None);
        }
        self.forget(record.hash).await;
        Ok(Some(record))
    }
}
