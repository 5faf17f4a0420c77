//! Keys behind the cache: revocation bound, expiry, negative cache, single flight,
//! store failures.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tollgate::auth::{
    KeyHash, KeyRecord, KeySpec, KeyStore, KeyStoreError, Keys, MemoryKeyStore, StoreFuture,
};

/// Counts the store's lookups, and can be made to fail or stall.
#[derive(Debug, Clone, Default)]
struct Probe {
    inner: MemoryKeyStore,
    lookups: Arc<AtomicUsize>,
    mode: Arc<AtomicUsize>, // 0 ok, 1 fail, 2 stall, 3 slow (50 ms)
}

impl KeyStore for Probe {
    fn insert<'a>(&'a self, record: &'a KeyRecord) -> StoreFuture<'a, ()> {
        self.inner.insert(record)
    }
    fn find_by_hash<'a>(&'a self, hash: &'a KeyHash) -> StoreFuture<'a, Option<KeyRecord>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        match self.mode.load(Ordering::SeqCst) {
            1 => Box::pin(async { Err(KeyStoreError::new("database is down")) }),
            2 => Box::pin(std::future::pending()),
            3 => Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                self.inner.find_by_hash(hash).await
            }),
            _ => self.inner.find_by_hash(hash),
        }
    }
    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<KeyRecord>> {
        self.inner.get(id)
    }
    fn list(&self) -> StoreFuture<'_, Vec<KeyRecord>> {
        self.inner.list()
    }
    fn update<'a>(&'a self, record: &'a KeyRecord) -> StoreFuture<'a, bool> {
        self.inner.update(record)
    }
}

#[tokio::test(start_paused = true)]
async fn revocation_on_another_replica_is_seen_within_the_ttl() {
    let probe = Probe::default();
    // Two replicas sharing one store, each with its own cache.
    let a = Keys::new(probe.clone());
    let b = Keys::new(probe.clone());
    let created = a.create(KeySpec::default()).await.unwrap();
    let key = created.secret.expose();
    assert!(b.verify(key).await.is_ok());
    let lookups = probe.lookups.load(Ordering::SeqCst);
    for _ in 0..100 {
        assert!(b.verify(key).await.is_ok());
    }
    assert_eq!(
        probe.lookups.load(Ordering::SeqCst),
        lookups,
        "cached: no store query"
    );

    a.revoke(&created.record.id).await.unwrap().unwrap();
    // The revoking replica refuses at once.
    let err = a.verify(key).await.unwrap_err();
    assert_eq!(err.error().status(), 401);
    assert!(err.error().message().contains("revoked"));
    // The other one within the documented bound (2 s), not before its cache ages out.
    tokio::time::advance(Duration::from_millis(1900)).await;
    assert!(
        b.verify(key).await.is_ok(),
        "served from cache within the TTL"
    );
    tokio::time::advance(Duration::from_millis(101)).await;
    assert!(
        b.verify(key).await.is_err(),
        "revocation not seen after 2 s"
    );
}

#[tokio::test(start_paused = true)]
async fn expiry_follows_the_clock_not_the_cache() {
    let now = Arc::new(AtomicI64::new(1_000_000));
    let clock = {
        let now = now.clone();
        move || SystemTime::UNIX_EPOCH + Duration::from_secs(now.load(Ordering::SeqCst) as u64)
    };
    let keys = Keys::builder(MemoryKeyStore::new()).clock(clock).build();
    let mut spec = KeySpec::default();
    spec.expires_at = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_060));
    let created = keys.create(spec).await.unwrap();
    let key = created.secret.expose();
    assert!(keys.verify(key).await.is_ok());
    now.store(1_000_060, Ordering::SeqCst);
    let err = keys.verify(key).await.unwrap_err();
    assert!(err.error().message().contains("expired"));
}

#[tokio::test(start_paused = true)]
async fn disabled_keys_are_refused_and_can_come_back() {
    let keys = Keys::new(MemoryKeyStore::new());
    let created = keys.create(KeySpec::default()).await.unwrap();
    let key = created.secret.expose();
    keys.set_enabled(&created.record.id, false)
        .await
        .unwrap()
        .unwrap();
    let err = keys.verify(key).await.unwrap_err();
    assert!(err.error().message().contains("disabled"));
    keys.set_enabled(&created.record.id, true)
        .await
        .unwrap()
        .unwrap();
    assert!(keys.verify(key).await.is_ok());
    assert!(keys.set_enabled("key_nope", true).await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn rotation_replaces_the_secret_and_keeps_the_id() {
    let keys = Keys::new(MemoryKeyStore::new());
    let mut spec = KeySpec::default();
    spec.team = Some("t".into());
    let created = keys.create(spec).await.unwrap();
    let old = created.secret.expose().to_owned();
    assert!(keys.verify(&old).await.is_ok());
    let rotated = keys.rotate(&created.record.id).await.unwrap().unwrap();
    assert_eq!(rotated.record.id, created.record.id);
    assert_eq!(rotated.record.team.as_deref(), Some("t"));
    assert_ne!(rotated.secret.expose(), old);
    assert!(keys.verify(&old).await.is_err(), "old secret still works");
    assert_eq!(
        keys.verify(rotated.secret.expose())
            .await
            .unwrap()
            .key_id
            .as_ref(),
        created.record.id
    );
    keys.revoke(&created.record.id).await.unwrap();
    assert!(keys.rotate(&created.record.id).await.is_err());
    assert!(keys.rotate("key_missing").await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn unknown_keys_are_cached_negatively_with_a_bound() {
    let probe = Probe::default();
    let keys = Keys::builder(probe.clone())
        .negative_cache_capacity(1000)
        .build();
    let good = keys.create(KeySpec::default()).await.unwrap();
    assert!(keys.verify(good.secret.expose()).await.is_ok());
    let before = probe.lookups.load(Ordering::SeqCst);
    // The same bad key repeated: one query per TTL.
    for _ in 0..500 {
        assert!(keys.verify("tg-the-same-wrong-key").await.is_err());
    }
    assert_eq!(probe.lookups.load(Ordering::SeqCst), before + 1);
    // A flood of distinct random keys: each costs one query, the good key stays cached.
    for i in 0..20_000 {
        assert!(keys.verify(&format!("tg-random-{i}")).await.is_err());
    }
    let after_flood = probe.lookups.load(Ordering::SeqCst);
    assert!(keys.verify(good.secret.expose()).await.is_ok());
    assert_eq!(
        probe.lookups.load(Ordering::SeqCst),
        after_flood,
        "the good key was evicted"
    );
    // A key added on another replica after being cached here as unknown works within
    // the TTL (the negative cache has the same bound as the positive one).
    // (The flood may have evicted it: it is bounded. Cache it as unknown again.)
    assert!(keys.verify("tg-the-same-wrong-key").await.is_err());
    let record = KeyRecord::new(KeyHash::of("tg-the-same-wrong-key"), "tg-the-sam").unwrap();
    probe.insert(&record).await.unwrap();
    assert!(
        keys.verify("tg-the-same-wrong-key").await.is_err(),
        "still cached as unknown"
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(keys.verify("tg-the-same-wrong-key").await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_cold_key_is_looked_up_once_however_many_requests_wait() {
    let probe = Probe::default();
    let keys = Keys::new(probe.clone());
    let created = keys.create(KeySpec::default()).await.unwrap();
    let key = created.secret.expose().to_owned();
    probe.mode.store(3, Ordering::SeqCst); // slow store
    let before = probe.lookups.load(Ordering::SeqCst);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let keys = keys.clone();
            let key = key.clone();
            tokio::spawn(async move { keys.verify(&key).await.is_ok() })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap());
    }
    assert_eq!(probe.lookups.load(Ordering::SeqCst), before + 1);
    assert_eq!(keys.store_lookups(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failing_or_stalled_store_fails_closed_with_503_and_is_not_cached() {
    let probe = Probe::default();
    let keys = Keys::builder(probe.clone())
        .lookup_timeout(Duration::from_millis(300))
        .build();
    let created = keys.create(KeySpec::default()).await.unwrap();
    let key = created.secret.expose();
    probe.mode.store(1, Ordering::SeqCst);
    let err = keys.verify(key).await.unwrap_err();
    assert_eq!(err.error().status(), 503);
    assert!(
        !err.to_string().contains("database is down"),
        "internal detail leaked"
    );
    probe.mode.store(2, Ordering::SeqCst);
    let started = tokio::time::Instant::now();
    let err = keys.verify(key).await.unwrap_err();
    assert_eq!(err.error().status(), 503);
    assert!(started.elapsed() <= Duration::from_millis(400), "hung");
    probe.mode.store(0, Ordering::SeqCst);
    assert!(keys.verify(key).await.is_ok(), "a failure was cached");
}

#[tokio::test]
async fn records_never_hold_the_plaintext() {
    let keys = Keys::new(MemoryKeyStore::new());
    let created = keys.create(KeySpec::default()).await.unwrap();
    let secret = created.secret.expose();
    let record = keys.get(&created.record.id).await.unwrap().unwrap();
    assert_eq!(record.hash, KeyHash::of(secret));
    for text in [
        format!("{record:?}"),
        record.to_json().to_string(),
        format!("{created:?}"),
        format!("{keys:?}"),
        format!("{:?}", keys.verify(secret).await.unwrap()),
    ] {
        assert!(!text.contains(secret), "{text}");
        assert!(!text.contains(&secret[11..]), "{text}");
        assert!(!text.contains(&record.hash.to_hex()), "hash shown: {text}");
    }
    assert!(record.to_json().get("hash").is_none());
    assert_eq!(record.to_json()["prefix"], &secret[..11]);
}
