//! [`MemoryStore`]: the in-process cache, bounded by bytes.

use std::fmt;
use std::time::{Duration, Instant};

use super::store::{CacheStore, Entry, Lookup};
use super::CacheKey;

/// The default memory budget of a [`MemoryStore`]: 256 MiB.
pub const DEFAULT_MEMORY_BYTES: u64 = 256 * 1024 * 1024;

/// Answers kept in this process, bounded by the bytes they take (each entry weighs its
/// body plus a fixed overhead) and evicted by their time to live, then by least use.
/// Cheap to clone: clones share the entries.
#[derive(Clone)]
pub struct MemoryStore {
    cache: moka::sync::Cache<CacheKey, Entry, hashbrown::DefaultHashBuilder>,
    capacity: u64,
}

struct PerEntryTtl;

impl moka::Expiry<CacheKey, Entry> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        entry: &Entry,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(entry.ttl())
    }
}

impl MemoryStore {
    /// A store of at most [`DEFAULT_MEMORY_BYTES`].
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_MEMORY_BYTES)
    }

    /// A store of at most `bytes`.
    pub fn with_capacity(bytes: u64) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(bytes)
            .weigher(|_key: &CacheKey, entry: &Entry| {
                u32::try_from(entry.weight()).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            // A seeded foldhash over 8 bytes of the digest instead of SipHash over 32:
            // moka hashes every key again when it rehashes its table, which a full
            // store does every few thousand evictions.
            .build_with_hasher(hashbrown::DefaultHashBuilder::default());
        MemoryStore {
            cache,
            capacity: bytes,
        }
    }

    /// The bytes the entries weigh now (after pending maintenance).
    pub fn weighted_size(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }

    /// The number of entries now (after pending maintenance).
    pub fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("capacity", &self.capacity)
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl CacheStore for MemoryStore {
    fn get(&self, key: &CacheKey) -> Lookup {
        Lookup::ready(self.cache.get(key).filter(Entry::is_fresh))
    }

    fn put(&self, key: CacheKey, entry: Entry) {
        if entry.ttl().is_zero() || entry.weight() as u64 > self.capacity {
            return;
        }
        self.cache.insert(key, entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::StatusCode;

    fn entry(len: usize, ttl: Duration) -> Entry {
        Entry::new(StatusCode::OK, None, Bytes::from(vec![b'x'; len]), ttl)
    }

    #[tokio::test]
    async fn bounded_by_bytes() {
        let store = MemoryStore::with_capacity(100_000);
        for i in 0..100u8 {
            store.put(
                CacheKey::from_bytes([i; 32]),
                entry(10_000, Duration::from_secs(60)),
            );
        }
        assert!(
            store.weighted_size() <= 100_000,
            "{}",
            store.weighted_size()
        );
        assert!(store.entry_count() <= 10);
        // Larger than the whole store: never kept.
        store.put(
            CacheKey::from_bytes([200; 32]),
            entry(200_000, Duration::from_secs(60)),
        );
        assert!(store.get(&CacheKey::from_bytes([200; 32])).await.is_none());
    }

    #[tokio::test]
    async fn ttl_per_entry() {
        let store = MemoryStore::new();
        let key = CacheKey::from_bytes([1; 32]);
        store.put(key, entry(10, Duration::from_secs(60)));
        assert_eq!(store.get(&key).await.unwrap().body().len(), 10);
        store.put(key, entry(10, Duration::ZERO)); // zero: not stored (the old one stays)
        assert!(store.get(&key).await.is_some());
        let short = CacheKey::from_bytes([2; 32]);
        store.put(short, entry(10, Duration::from_millis(30)));
        assert!(store.get(&short).await.is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(store.get(&short).await.is_none());
    }
}
