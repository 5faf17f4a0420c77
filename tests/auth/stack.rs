//! Auth in a stack: per-key rate limits from the Principal, key and team in usage
//! records.
#![cfg(all(feature = "ratelimit", feature = "metering"))]

use http_body_util::BodyExt;
use tollgate::auth::{AuthLayer, KeyLimits, KeySpec, Keys, MemoryKeyStore};
use tollgate::metering::{MemoryLedger, MeteringLayer};
use tollgate::ratelimit::RateLimitLayer;
use tollgate::testing::MockProvider;
use tower::{ServiceBuilder, ServiceExt};

use super::chat;

#[tokio::test]
async fn per_key_limits_and_metered_key_and_team() {
    let keys = Keys::new(MemoryKeyStore::new());
    let mut spec = KeySpec::default();
    spec.team = Some("search".into());
    spec.limits = KeyLimits::new().rpm(2);
    let limited = keys.create(spec).await.unwrap();
    let free = keys.create(KeySpec::default()).await.unwrap();
    let ledger = MemoryLedger::new();
    let svc = ServiceBuilder::new()
        .layer(AuthLayer::keys(keys))
        .layer(RateLimitLayer::new())
        .layer(MeteringLayer::new(ledger.clone()))
        .service(MockProvider::new());

    let call = |key: &str| {
        let auth = format!("Bearer {key}");
        let svc = svc.clone();
        async move {
            let res = svc
                .oneshot(chat(
                    "/v1/chat/completions",
                    "mock/echo",
                    &[("authorization", &auth)],
                ))
                .await
                .unwrap();
            let status = res.status().as_u16();
            res.into_body().collect().await.unwrap();
            status
        }
    };
    let limited_key = limited.secret.expose();
    assert_eq!(call(limited_key).await, 200);
    assert_eq!(call(limited_key).await, 200);
    assert_eq!(
        call(limited_key).await,
        429,
        "the key's rpm=2 did not apply"
    );
    // Another key is not limited by the first one's scope.
    for _ in 0..5 {
        assert_eq!(call(free.secret.expose()).await, 200);
    }
    let records = ledger.records();
    let mine: Vec<_> = records
        .iter()
        .filter(|r| r.key_id.as_deref() == Some(limited.record.id.as_str()))
        .collect();
    assert_eq!(mine.len(), 2, "{records:?}");
    assert!(mine.iter().all(|r| r.team.as_deref() == Some("search")));
    assert_eq!(
        records
            .iter()
            .filter(|r| r.key_id.as_deref() == Some(free.record.id.as_str()) && r.team.is_none())
            .count(),
        5
    );
}
