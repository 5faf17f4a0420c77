//! [`MemoryKeyStore`]: keys held in the process (from configuration, or for tests).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::{KeyStore, KeyStoreError, StoreFuture};
use crate::auth::{KeyHash, KeyRecord};

/// Keys in memory: for keys from a configuration file, tests and single-process
/// gateways that do not need keys to survive a restart. Clones share the keys.
#[derive(Debug, Clone, Default)]
pub struct MemoryKeyStore {
    inner: Arc<RwLock<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<String, KeyRecord>,
    by_hash: HashMap<KeyHash, String>,
    order: Vec<String>,
}

impl MemoryKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a record at once (for keys from configuration); replaces one with the same
    /// id.
    pub fn with_record(self, record: KeyRecord) -> Self {
        {
            let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
            if let Some(old) = inner.by_id.get(&record.id).map(|r| r.hash) {
                inner.by_hash.remove(&old);
            } else {
                inner.order.push(record.id.clone());
            }
            inner.by_hash.insert(record.hash, record.id.clone());
            inner.by_id.insert(record.id.clone(), record);
        }
        self
    }

    /// Replaces every key at once with `records` (in this order), for every clone: a
    /// configuration reload uses it for the file's keys. Lookups see either the old set
    /// or the new one, never a mix. Clear the cache of the [`Keys`](crate::auth::Keys)
    /// in front of it ([`Keys::clear_cache`](crate::auth::Keys::clear_cache)) so a
    /// removed key stops working at once.
    pub fn replace_all(&self, records: impl IntoIterator<Item = KeyRecord>) {
        let mut fresh = Inner::default();
        for record in records {
            if let Some(old) = fresh.by_id.get(&record.id).map(|r| r.hash) {
                fresh.by_hash.remove(&old);
            } else {
                fresh.order.push(record.id.clone());
            }
            fresh.by_hash.insert(record.hash, record.id.clone());
            fresh.by_id.insert(record.id.clone(), record);
        }
        *self.inner.write().unwrap_or_else(|e| e.into_inner()) = fresh;
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl KeyStore for MemoryKeyStore {
    fn insert<'a>(&'a self, record: &'a KeyRecord) -> StoreFuture<'a, ()> {
        let result = {
            let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
            if inner.by_id.contains_key(&record.id) || inner.by_hash.contains_key(&record.hash) {
                Err(KeyStoreError::new(format!(
                    "key `{}` exists already",
                    record.id
                )))
            } else {
                inner.by_hash.insert(record.hash, record.id.clone());
                inner.order.push(record.id.clone());
                inner.by_id.insert(record.id.clone(), record.clone());
                Ok(())
            }
        };
        Box::pin(std::future::ready(result))
    }

    fn find_by_hash<'a>(&'a self, hash: &'a KeyHash) -> StoreFuture<'a, Option<KeyRecord>> {
        let inner = self.read();
        let found = inner
            .by_hash
            .get(hash)
            .and_then(|id| inner.by_id.get(id))
            .cloned();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<KeyRecord>> {
        Box::pin(std::future::ready(Ok(self.read().by_id.get(id).cloned())))
    }

    fn list(&self) -> StoreFuture<'_, Vec<KeyRecord>> {
        let inner = self.read();
        let all = inner
            .order
            .iter()
            .filter_map(|id| inner.by_id.get(id))
            .cloned()
            .collect();
        Box::pin(std::future::ready(Ok(all)))
    }

    fn update<'a>(&'a self, record: &'a KeyRecord) -> StoreFuture<'a, bool> {
        let result = {
            let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
            match inner.by_id.get(&record.id).map(|r| r.hash) {
                None => Ok(false),
                Some(old) => {
                    if old != record.hash {
                        if inner.by_hash.contains_key(&record.hash) {
                            return Box::pin(std::future::ready(Err(KeyStoreError::new(format!(
                                "key `{}`: the new secret is in use",
                                record.id
                            )))));
                        }
                        inner.by_hash.remove(&old);
                        inner.by_hash.insert(record.hash, record.id.clone());
                    }
                    inner.by_id.insert(record.id.clone(), record.clone());
                    Ok(true)
                }
            }
        };
        Box::pin(std::future::ready(result))
    }
}
