//! Active probes with paused time: a down channel gets probes but no traffic, and a
//! successful probe brings it back.

use std::time::Duration;

use tollgate::failover::FailoverLayer;
use tollgate::routing::{
    Channel, Health, HealthPolicy, Priority, ProbeConfig, Router, RoutingLayer,
};
use tollgate::testing::MockProvider;
use tower::{ServiceBuilder, ServiceExt};

use super::{chat, dispatch, header, target};

/// Lets spawned probe tasks run to completion at the current (paused) time.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn probes_reach_a_down_channel_and_bring_it_back() {
    let (a, b) = (MockProvider::new(), MockProvider::new());
    let router = Router::builder()
        .channel(
            Channel::builder("a", target("a"))
                .model_as("m", "a-model")
                .priority(0),
        )
        .channel(Channel::builder("b", target("b")).model("m").priority(1))
        .strategy(Priority::with_seed(1))
        .health(
            HealthPolicy::new()
                .failure_threshold(2)
                .open_for(Duration::from_secs(600)),
        )
        .build()
        .unwrap();
    let leaf = dispatch(&[("a", &a), ("b", &b)]);
    let svc = ServiceBuilder::new()
        .layer(RoutingLayer::new(router.clone()))
        .layer(FailoverLayer::new())
        .service(leaf.clone());

    a.set_script([("x-mock-status", "500")]);
    for _ in 0..2 {
        let res = svc.clone().oneshot(chat("m", false)).await.unwrap();
        assert_eq!(header(&res, "x-tollgate-target"), "b");
    }
    let channel = router.channel("a").unwrap().clone();
    assert_eq!(channel.health(), Health::CircuitOpen);
    assert_eq!(a.request_count(), 2);

    let probes = router.spawn_probes(leaf, ProbeConfig::new(Duration::from_secs(5)));
    settle().await; // the first tick is immediate
    assert_eq!(a.request_count(), 3, "the open channel is probed");
    assert_eq!(b.request_count(), 3);
    // The probe is a one-token request for the channel's model, sent as mapped.
    let probe = a.requests().pop().unwrap();
    let body: serde_json::Value = serde_json::from_slice(&probe.body).unwrap();
    assert_eq!(body["max_tokens"], 1);
    assert_eq!(probe.uri.path(), "/v1/chat/completions");

    // Requests still avoid it; probes keep coming.
    for _ in 0..3 {
        let res = svc.clone().oneshot(chat("m", false)).await.unwrap();
        assert_eq!(header(&res, "x-tollgate-target"), "b");
    }
    tokio::time::advance(Duration::from_secs(5)).await;
    settle().await;
    assert_eq!(a.request_count(), 4);
    assert_eq!(channel.health(), Health::CircuitOpen);

    // The provider recovers: the next probe closes the circuit long before its time.
    a.clear_script();
    tokio::time::advance(Duration::from_secs(5)).await;
    settle().await;
    assert_eq!(a.request_count(), 5);
    assert_eq!(channel.health(), Health::Healthy);
    let res = svc.clone().oneshot(chat("m", false)).await.unwrap();
    assert_eq!(header(&res, "x-tollgate-target"), "a");

    // Dropping the handle stops the probes.
    drop(probes);
    let before = a.request_count();
    tokio::time::advance(Duration::from_secs(60)).await;
    settle().await;
    assert_eq!(a.request_count(), before);
}
