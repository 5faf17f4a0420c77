//! [`CacheLayer`]: configuration only.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::flight::Flights;
use super::{
    Cache, CachePolicy, CacheStore, DefaultMakeCacheKey, MakeCacheKey, MemoryStore, ResolveModel,
};

/// The default time to live of an entry: one hour.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// The default cap on the time to live a request may ask for: one day.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// The default largest answer stored (and shared by single-flight): 2 MiB.
pub const DEFAULT_MAX_ENTRY_BYTES: usize = 2 * 1024 * 1024;

/// Caches complete answers per tenant, shares identical in-flight calls and replays
/// hits. See the [module docs](crate::cache).
#[must_use]
pub struct CacheLayer<C = MemoryStore, K = DefaultMakeCacheKey> {
    pub(crate) store: C,
    pub(crate) make_key: K,
    pub(crate) config: Config,
    pub(crate) flights: Arc<Flights>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    pub(crate) policy: CachePolicy,
    pub(crate) ttl: Duration,
    pub(crate) max_ttl: Duration,
    pub(crate) max_entry_bytes: usize,
    pub(crate) single_flight: bool,
}

impl CacheLayer {
    /// A layer on a fresh [`MemoryStore`] of the default size, caching deterministic
    /// requests for [`DEFAULT_TTL`], with single-flight on.
    pub fn new() -> Self {
        CacheLayer {
            store: MemoryStore::new(),
            make_key: DefaultMakeCacheKey::new(),
            config: Config {
                policy: CachePolicy::default(),
                ttl: DEFAULT_TTL,
                max_ttl: DEFAULT_MAX_TTL,
                max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
                single_flight: true,
            },
            flights: Arc::default(),
        }
    }
}

impl Default for CacheLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<C, K> CacheLayer<C, K> {
    /// Keeps the answers in `store` (a [`MemoryStore`] to share between layers, a
    /// `RedisStore` to share between processes, or `Arc<dyn CacheStore>`).
    pub fn store<C2: CacheStore>(self, store: C2) -> CacheLayer<C2, K> {
        CacheLayer {
            store,
            make_key: self.make_key,
            config: self.config,
            flights: self.flights,
        }
    }

    /// Replaces how keys (and so tenant scopes) are made; return `None` from it to
    /// bypass the cache for a request.
    pub fn make_key_with<K2: MakeCacheKey>(self, make_key: K2) -> CacheLayer<C, K2> {
        CacheLayer {
            store: self.store,
            make_key,
            config: self.config,
            flights: self.flights,
        }
    }

    /// Which requests are cached (default [`CachePolicy::Deterministic`]).
    pub fn policy(mut self, policy: CachePolicy) -> Self {
        self.config.policy = policy;
        self
    }

    /// How long an answer is kept when the request does not say (default
    /// [`DEFAULT_TTL`]).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.config.ttl = ttl;
        self
    }

    /// The longest time to live `x-tollgate-cache-ttl` may ask for (default
    /// [`DEFAULT_MAX_TTL`]).
    pub fn max_ttl(mut self, max_ttl: Duration) -> Self {
        self.config.max_ttl = max_ttl;
        self
    }

    /// The largest answer kept, in bytes (default [`DEFAULT_MAX_ENTRY_BYTES`]); larger
    /// answers are forwarded and not stored.
    pub fn max_entry_bytes(mut self, bytes: usize) -> Self {
        self.config.max_entry_bytes = bytes;
        self
    }

    /// Whether identical requests in flight at the same time share one upstream call
    /// (default on).
    pub fn single_flight(mut self, on: bool) -> Self {
        self.config.single_flight = on;
        self
    }
}

impl<C> CacheLayer<C, DefaultMakeCacheKey> {
    /// Keys answers by the model a request's model name resolves to (an alias's
    /// target), as `resolve` says, instead of the name itself (the default). Pass the
    /// `Router` (feature `routing`) of the routing layer below (the same
    /// configuration): an alias and its target then share entries, and when a reload
    /// points the alias elsewhere, the new layer misses instead of replaying the old
    /// model's answers. See [`DefaultMakeCacheKey::resolve_model`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tollgate::cache::CacheLayer;
    ///
    /// // `gpt4` is an alias of `gpt-4o`: both share entries.
    /// let layer = CacheLayer::new()
    ///     .resolve_model(|model: &str| (model == "gpt4").then(|| Arc::<str>::from("gpt-4o")));
    /// # let _ = layer;
    /// ```
    pub fn resolve_model(mut self, resolve: impl ResolveModel) -> Self {
        self.make_key = self.make_key.resolve_model(resolve);
        self
    }
}

impl<C: Clone, K: Clone> Clone for CacheLayer<C, K> {
    fn clone(&self) -> Self {
        CacheLayer {
            store: self.store.clone(),
            make_key: self.make_key.clone(),
            config: self.config,
            flights: self.flights.clone(),
        }
    }
}

impl<C: fmt::Debug, K> fmt::Debug for CacheLayer<C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheLayer")
            .field("store", &self.store)
            .field("make_key", &std::any::type_name::<K>())
            .field("config", &self.config)
            .finish()
    }
}

impl<S, C, K> Layer<S> for CacheLayer<C, K>
where
    C: CacheStore + Clone,
    K: MakeCacheKey + Clone,
{
    type Service = Cache<S, C, K>;

    fn layer(&self, inner: S) -> Cache<S, C, K> {
        Cache {
            inner,
            shared: Arc::new(super::service::Shared {
                store: Arc::new(self.store.clone()),
                make_key: self.make_key.clone(),
                config: self.config,
                flights: self.flights.clone(),
            }),
        }
    }
}
