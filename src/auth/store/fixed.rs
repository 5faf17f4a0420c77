//! [`FixedKeys`]: keys from a configuration file in front of a database store.

use super::{KeyStore, KeyStoreError, MemoryKeyStore, StoreFuture};
use crate::auth::{KeyHash, KeyRecord};

/// Keys fixed by configuration, consulted before `store` (where the admin API creates
/// keys). Lookups find either kind; new keys go to `store`; a fixed key cannot be
/// changed through the API (revoke, disable or rotate it in the file).
#[derive(Debug, Clone)]
pub struct FixedKeys<S> {
    fixed: MemoryKeyStore,
    store: S,
}

impl<S> FixedKeys<S> {
    /// `fixed` (build it with [`MemoryKeyStore::with_record`]) in front of `store`.
    pub fn new(fixed: MemoryKeyStore, store: S) -> Self {
        FixedKeys { fixed, store }
    }
}

impl<S: KeyStore> KeyStore for FixedKeys<S> {
    fn insert<'a>(&'a self, record: &'a KeyRecord) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if self.fixed.get(&record.id).await?.is_some() {
                return Err(KeyStoreError::read_only(format!(
                    "the key id `{}` is taken by a key of the configuration file",
                    record.id
                )));
            }
            self.store.insert(record).await
        })
    }

    fn find_by_hash<'a>(&'a self, hash: &'a KeyHash) -> StoreFuture<'a, Option<KeyRecord>> {
        Box::pin(async move {
            match self.fixed.find_by_hash(hash).await? {
                Some(record) => Ok(Some(record)),
                None => self.store.find_by_hash(hash).await,
            }
        })
    }

    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<KeyRecord>> {
        Box::pin(async move {
            match self.fixed.get(id).await? {
                Some(record) => Ok(Some(record)),
                None => self.store.get(id).await,
            }
        })
    }

    fn list(&self) -> StoreFuture<'_, Vec<KeyRecord>> {
        Box::pin(async move {
            let mut all = self.fixed.list().await?;
            all.extend(self.store.list().await?);
            Ok(all)
        })
    }

    fn update<'a>(&'a self, record: &'a KeyRecord) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            if self.fixed.get(&record.id).await?.is_some() {
                return Err(KeyStoreError::read_only(format!(
                    "the key `{}` comes from the configuration file: change it there",
                    record.id
                )));
            }
            self.store.update(record).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::KeySecret;

    fn record(secret: &KeySecret, id: &str) -> KeyRecord {
        let mut record = KeyRecord::new(secret.hash(), secret.visible_prefix()).unwrap();
        record.id = id.into();
        record
    }

    #[tokio::test]
    async fn fixed_keys_come_first_and_stay_read_only() {
        let (a, b) = (
            KeySecret::generate().unwrap(),
            KeySecret::generate().unwrap(),
        );
        let fixed = MemoryKeyStore::new().with_record(record(&a, "from-file"));
        let keys = FixedKeys::new(fixed, MemoryKeyStore::new());
        keys.insert(&record(&b, "from-api")).await.unwrap();

        assert_eq!(
            keys.find_by_hash(&a.hash()).await.unwrap().unwrap().id,
            "from-file"
        );
        assert_eq!(
            keys.find_by_hash(&b.hash()).await.unwrap().unwrap().id,
            "from-api"
        );
        assert_eq!(keys.list().await.unwrap().len(), 2);
        let mut changed = keys.get("from-file").await.unwrap().unwrap();
        changed.enabled = false;
        let err = keys.update(&changed).await.unwrap_err().to_string();
        assert!(err.contains("configuration file"), "{err}");
        assert!(keys.insert(&record(&b, "from-file")).await.is_err());
        let mut api = keys.get("from-api").await.unwrap().unwrap();
        api.enabled = false;
        assert!(keys.update(&api).await.unwrap());
    }

    #[tokio::test]
    async fn replaced_fixed_keys_apply_at_once_once_the_cache_is_cleared() {
        let (a, b) = (
            KeySecret::generate().unwrap(),
            KeySecret::generate().unwrap(),
        );
        let fixed = MemoryKeyStore::new().with_record(record(&a, "old"));
        let keys = crate::auth::Keys::new(FixedKeys::new(fixed.clone(), MemoryKeyStore::new()));
        assert!(keys.verify(a.expose()).await.is_ok());
        assert!(keys.verify(b.expose()).await.is_err(), "cached as unknown");
        fixed.replace_all([record(&b, "new")]);
        keys.clear_cache();
        assert!(
            keys.verify(a.expose()).await.is_err(),
            "the removed key is refused"
        );
        assert_eq!(
            keys.verify(b.expose()).await.unwrap().key_id.to_string(),
            "new"
        );
        assert_eq!(fixed.len(), 1);
    }
}
