//! The in-memory store's bounds, without the layer.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::store::{Backend, Decision, Grant, Plan, Reserve};
use super::{Limits, MemoryStore, Scope};

fn ip(i: u32) -> Scope {
    Scope::ClientIp(IpAddr::V4(Ipv4Addr::from(i)))
}

fn reserve(store: &MemoryStore, scope: Scope, limits: Limits) -> Grant {
    let plan = Plan {
        scopes: vec![(scope, limits)],
        tokens: 0,
        input: 0,
    };
    match store.reserve(plan) {
        Reserve::Ready(Decision::Admit(grant)) => grant,
        other => panic!("not admitted: {:?}", matches!(other, Reserve::Ready(_))),
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_flood_of_a_million_distinct_keys_stays_bounded() {
    let store = MemoryStore::with_capacity(10_000);
    let limits = Limits::new().requests_per_minute(10).max_parallel(2);
    for i in 0..1_000_000 {
        let grant = reserve(&store, ip(i), limits);
        store.settle(grant, 0);
    }
    assert!(store.len() <= 10_048, "{} scopes held", store.len());
    assert!(store.evictions() >= 990_000 - 10_048);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn idle_scopes_are_dropped_without_capacity_pressure() {
    let store = MemoryStore::new();
    let limits = Limits::new().requests_per_minute(10);
    for i in 0..10_000 {
        store.settle(reserve(&store, ip(i), limits), 0);
    }
    let before = store.len();
    assert!(before > 9_000, "{before}");
    tokio::time::advance(Duration::from_secs(61)).await;
    for i in 10_000..20_000 {
        store.settle(reserve(&store, ip(i), limits), 0);
    }
    assert!(store.len() < 15_000, "idle scopes swept: {}", store.len());
    assert_eq!(
        store.evictions(),
        0,
        "full buckets are dropped, not evicted"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn eviction_spares_requests_in_flight() {
    let store = MemoryStore::with_capacity(256);
    let limits = Limits::new().max_parallel(1);
    let held = reserve(&store, ip(u32::MAX), limits);
    for i in 0..10_000 {
        store.settle(reserve(&store, ip(i), limits.requests_per_minute(5)), 0);
    }
    assert!(store.evictions() > 0);
    assert_eq!(store.in_flight(&ip(u32::MAX)), 1);
    let plan = Plan {
        scopes: vec![(ip(u32::MAX), limits)],
        tokens: 0,
        input: 0,
    };
    assert!(matches!(
        store.reserve(plan),
        Reserve::Ready(Decision::Deny(_))
    ));
    store.settle(held, 0);
    assert_eq!(store.in_flight(&ip(u32::MAX)), 0);
}

/// A request refused by one scope takes nothing from the others (all or nothing),
/// whether the refusing scope comes before or after them, known or new.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_refusal_takes_nothing_from_the_other_scopes() {
    let store = MemoryStore::new();
    let wide = Limits::new().requests_per_minute(100).max_parallel(10);
    let narrow = Limits::new().max_parallel(1);
    let plan = |scopes: Vec<(Scope, Limits)>| Plan {
        scopes,
        tokens: 0,
        input: 0,
    };
    // The wide scope is known (one request so far); the narrow one is full.
    let first = reserve(&store, ip(1), wide);
    store.settle(first, 0);
    let _held = reserve(&store, ip(2), narrow);
    for scopes in [
        vec![(ip(1), wide), (ip(2), narrow)],
        vec![(ip(2), narrow), (ip(1), wide)],
        vec![(ip(3), wide), (ip(2), narrow)],
    ] {
        let decision = store.reserve(plan(scopes));
        assert!(matches!(decision, Reserve::Ready(Decision::Deny(_))));
        assert_eq!(store.in_flight(&ip(1)), 0);
        assert_eq!(store.in_flight(&ip(3)), 0);
        assert_eq!(store.in_flight(&ip(2)), 1);
    }
    // The wide scope's request budget is untouched too: 99 more requests pass.
    for _ in 0..99 {
        let grant = reserve(&store, ip(1), wide);
        store.settle(grant, 0);
    }
    let last = store.reserve(plan(vec![(ip(1), wide)]));
    assert!(
        matches!(last, Reserve::Ready(Decision::Deny(_))),
        "the 101st is refused"
    );
}
