//! The strategies: weighted random (chi-square), round robin, smooth weighted round
//! robin, priority, lowest latency (traffic leaves a slowed mock), highest success
//! rate, lowest cost and the composite score.

use std::collections::HashMap;
use std::time::Duration;

use tollgate::failover::FailoverLayer;
use tollgate::metering::{Price, PriceTable};
use tollgate::routing::{
    Channel, Composite, HighestSuccessRate, LowestCost, LowestLatency, Priority, RoundRobin,
    RouteStrategy, Router, RoutingLayer, SmoothWeightedRoundRobin, WeightedRandom,
};
use tollgate::testing::MockProvider;
use tower::{ServiceBuilder, ServiceExt};

use super::{chat, dispatch, header, target};

fn weighted(strategy: impl RouteStrategy, weights: &[(&str, u32)]) -> Router {
    let mut builder = Router::builder().strategy(strategy);
    for (id, weight) in weights {
        builder = builder.channel(Channel::builder(*id, target(id)).model("m").weight(*weight));
    }
    builder.build().unwrap()
}

fn firsts(router: &Router, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let candidates = router.resolve("m").unwrap();
            assert_eq!(
                candidates.len(),
                router.channels().len(),
                "every channel is a candidate"
            );
            candidates.first().unwrap().channel().id().to_owned()
        })
        .collect()
}

#[test]
fn weighted_random_follows_the_weights() {
    let weights = [("a", 1), ("b", 2), ("c", 3), ("d", 4)];
    let router = weighted(WeightedRandom::with_seed(42), &weights);
    let n = 20_000;
    let mut counts: HashMap<String, u64> = HashMap::new();
    for id in firsts(&router, n) {
        *counts.entry(id).or_default() += 1;
    }
    let total: u32 = weights.iter().map(|w| w.1).sum();
    let chi2: f64 = weights
        .iter()
        .map(|(id, w)| {
            let expected = n as f64 * f64::from(*w) / f64::from(total);
            let observed = counts.get(*id).copied().unwrap_or(0) as f64;
            (observed - expected).powi(2) / expected
        })
        .sum();
    // 3 degrees of freedom: 16.27 is the 99.9th percentile.
    assert!(chi2 < 16.27, "chi-square {chi2} for {counts:?}");
}

#[test]
fn weight_zero_is_only_a_fallback() {
    let router = weighted(WeightedRandom::with_seed(1), &[("main", 1), ("spare", 0)]);
    for _ in 0..200 {
        let c = router.resolve("m").unwrap();
        let ids: Vec<&str> = c.iter().map(|c| c.channel().id()).collect();
        assert_eq!(ids, ["main", "spare"]);
    }
}

#[test]
fn round_robin_takes_turns() {
    let router = weighted(RoundRobin::new(), &[("a", 1), ("b", 1), ("c", 1)]);
    assert_eq!(firsts(&router, 7), ["a", "b", "c", "a", "b", "c", "a"]);
    // The rest of the list follows in order, for fail-over.
    let ids: Vec<String> = router
        .resolve("m")
        .unwrap()
        .iter()
        .map(|c| c.channel().id().to_owned())
        .collect();
    assert_eq!(ids, ["b", "c", "a"]);
}

#[test]
fn smooth_weighted_round_robin_interleaves() {
    let router = weighted(
        SmoothWeightedRoundRobin::new(),
        &[("a", 5), ("b", 1), ("c", 1)],
    );
    assert_eq!(
        firsts(&router, 14),
        ["a", "a", "b", "a", "c", "a", "a", "a", "a", "b", "a", "c", "a", "a"]
    );
}

#[test]
fn priority_is_an_ordered_chain() {
    let router = Router::builder()
        .channel(Channel::builder("last", target("x")).model("m").priority(2))
        .channel(
            Channel::builder("first", target("x"))
                .model("m")
                .priority(0),
        )
        .channel(
            Channel::builder("second-a", target("x"))
                .model("m")
                .priority(1),
        )
        .channel(
            Channel::builder("second-b", target("x"))
                .model("m")
                .priority(1),
        )
        .strategy(Priority::with_seed(3))
        .build()
        .unwrap();
    let mut seen_second = HashMap::new();
    for _ in 0..100 {
        let ids: Vec<String> = router
            .resolve("m")
            .unwrap()
            .iter()
            .map(|c| c.channel().id().to_owned())
            .collect();
        assert_eq!(ids[0], "first");
        assert!(ids[1].starts_with("second") && ids[2].starts_with("second"));
        assert_eq!(ids[3], "last");
        *seen_second.entry(ids[1].clone()).or_insert(0) += 1;
    }
    // Equal priorities share by weight.
    assert_eq!(seen_second.len(), 2, "{seen_second:?}");
}

#[tokio::test(start_paused = true)]
async fn lowest_latency_moves_traffic_off_a_slowed_mock() {
    let fast = MockProvider::new();
    let slow = MockProvider::new();
    fast.set_script([("x-mock-latency-ms", "20")]);
    slow.set_script([("x-mock-latency-ms", "20")]);
    let router = weighted(LowestLatency::with_seed(9), &[("fast", 1), ("slow", 1)]);
    let svc = ServiceBuilder::new()
        .layer(RoutingLayer::new(router.clone()))
        .layer(FailoverLayer::new())
        .service(dispatch(&[("fast", &fast), ("slow", &slow)]));

    let count = |n: usize| {
        let svc = svc.clone();
        async move {
            let mut by: HashMap<String, usize> = HashMap::new();
            for _ in 0..n {
                let res = svc.clone().oneshot(chat("m", false)).await.unwrap();
                assert_eq!(res.status(), 200);
                *by.entry(header(&res, "x-tollgate-target").to_owned())
                    .or_default() += 1;
            }
            by
        }
    };
    // Equal latency: both get traffic.
    let before = count(100).await;
    assert!(before.get("slow").copied().unwrap_or(0) >= 20, "{before:?}");
    assert!(before.get("fast").copied().unwrap_or(0) >= 20, "{before:?}");

    slow.set_script([("x-mock-latency-ms", "400")]);
    let after = count(200).await;
    let to_slow = after.get("slow").copied().unwrap_or(0);
    // The slowed channel keeps only exploration traffic (5 %), and some of it.
    assert!(to_slow <= 25, "{after:?}");
    assert!(to_slow >= 1, "exploration keeps measuring it: {after:?}");
    let stats = router.channel("slow").unwrap().stats();
    assert!(
        stats.latency.unwrap() >= Duration::from_millis(300),
        "{stats:?}"
    );
    assert!(router.channel("fast").unwrap().stats().latency.unwrap() < Duration::from_millis(30));
}

#[tokio::test(start_paused = true)]
async fn highest_success_rate_prefers_the_reliable_channel() {
    let flaky = MockProvider::new();
    let steady = MockProvider::new();
    flaky.set_script([("x-mock-status", "500")]);
    let router = weighted(
        HighestSuccessRate::with_seed(5),
        &[("flaky", 1), ("steady", 1)],
    );
    let svc = ServiceBuilder::new()
        .layer(RoutingLayer::new(router.clone()))
        .layer(FailoverLayer::new())
        .service(dispatch(&[("flaky", &flaky), ("steady", &steady)]));
    for _ in 0..4 {
        let res = svc.clone().oneshot(chat("m", false)).await.unwrap();
        assert_eq!(res.status(), 200);
    }
    assert!(router.channel("flaky").unwrap().stats().success_rate < 1.0);
    for _ in 0..20 {
        let first = router
            .resolve("m")
            .unwrap()
            .first()
            .unwrap()
            .channel()
            .id()
            .to_owned();
        assert_eq!(first, "steady");
    }
}

#[test]
fn lowest_cost_picks_the_cheapest() {
    let mut prices = PriceTable::empty();
    prices.insert(
        "cheap-model",
        Price::new("0.10".parse().unwrap(), "0.30".parse().unwrap()),
    );
    prices.insert(
        "dear-model",
        Price::new("5.00".parse().unwrap(), "15.00".parse().unwrap()),
    );
    let make = |cost_strategy: bool| {
        let builder = Router::builder()
            .channel(
                Channel::builder("dear", target("x"))
                    .model_as("m", "dear-model")
                    .weight(100),
            )
            .channel(
                Channel::builder("unknown", target("x"))
                    .model("m")
                    .weight(100),
            )
            .channel(Channel::builder("fixed", target("x")).model("m").cost(2.0))
            .channel(
                Channel::builder("cheap", target("x"))
                    .model_as("m", "deployment-7")
                    .price_ref("cheap-model"),
            )
            .prices(&prices);
        if cost_strategy {
            builder.strategy(LowestCost::with_seed(1)).build().unwrap()
        } else {
            builder
                .strategy(Composite::new(0.0, 0.0, 1.0).with_seed(1))
                .build()
                .unwrap()
        }
    };
    for router in [make(true), make(false)] {
        for _ in 0..50 {
            let ids: Vec<String> = router
                .resolve("m")
                .unwrap()
                .iter()
                .map(|c| c.channel().id().to_owned())
                .collect();
            assert_eq!(ids, ["cheap", "fixed", "dear", "unknown"]);
        }
    }
}

#[test]
fn a_closure_is_a_strategy() {
    let router = Router::builder()
        .channel(Channel::builder("a", target("x")).model("m"))
        .channel(Channel::builder("b", target("x")).model("m"))
        .strategy(|choices: &mut [tollgate::routing::Choice<'_>]| choices.reverse())
        .build()
        .unwrap();
    let ids: Vec<String> = router
        .resolve("m")
        .unwrap()
        .iter()
        .map(|c| c.channel().id().to_owned())
        .collect();
    assert_eq!(ids, ["b", "a"]);
}
