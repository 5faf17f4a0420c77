//! Hedging with paused time: a slow first attempt gets a second one on the next
//! candidate; the first to answer wins and the other is cancelled.

use std::time::Duration;

use tokio::time::Instant;
use tollgate::failover::FailoverLayer;
use tollgate::routing::{Channel, Priority, Router, RoutingLayer};
use tollgate::testing::MockProvider;
use tower::{ServiceBuilder, ServiceExt};

use super::{bytes, chat, dispatch, header, target, Svc};

fn stack(a: &MockProvider, b: &MockProvider, failover: FailoverLayer) -> (Router, Svc) {
    let router = Router::builder()
        .channel(Channel::builder("a", target("a")).model("m").priority(0))
        .channel(Channel::builder("b", target("b")).model("m").priority(1))
        .strategy(Priority::with_seed(1))
        .build()
        .unwrap();
    let svc = tower::util::BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(RoutingLayer::new(router.clone()))
            .layer(failover)
            .service(dispatch(&[("a", a), ("b", b)])),
    );
    (router, svc)
}

#[tokio::test(start_paused = true)]
async fn the_hedge_wins_and_the_slow_attempt_is_cancelled() {
    let (a, b) = (MockProvider::new(), MockProvider::new());
    a.set_script([("x-mock-latency-ms", "5000")]);
    b.set_script([("x-mock-latency-ms", "50")]);
    let (router, svc) = stack(
        &a,
        &b,
        FailoverLayer::new().hedge_after(Duration::from_millis(200)),
    );

    for stream in [false, true] {
        let started = Instant::now();
        let res = svc.clone().oneshot(chat("m", stream)).await.unwrap();
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(250),
            "hedge after 200 ms + 50 ms"
        );
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "x-tollgate-target"), "b");
        assert_eq!(header(&res, "x-tollgate-attempts"), "2");
        let body = String::from_utf8(bytes(res).await.to_vec()).unwrap();
        if stream {
            assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
            assert_eq!(b.streams_completed(), 1);
        }
    }
    // The slow attempts were dropped while the mock waited: cancelled, not counted.
    assert_eq!(a.requests_cancelled(), 2);
    assert_eq!(b.requests_cancelled(), 0);
    let stats = router.channel("a").unwrap().stats();
    assert_eq!((stats.in_flight, stats.failures), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn the_first_attempt_can_still_win() {
    let (a, b) = (MockProvider::new(), MockProvider::new());
    a.set_script([("x-mock-latency-ms", "300")]);
    b.set_script([("x-mock-latency-ms", "1000")]);
    let (_, svc) = stack(
        &a,
        &b,
        FailoverLayer::new().hedge_after(Duration::from_millis(200)),
    );
    let started = Instant::now();
    let res = svc.clone().oneshot(chat("m", false)).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    assert_eq!(header(&res, "x-tollgate-target"), "a");
    assert_eq!(header(&res, "x-tollgate-attempts"), "2");
    assert_eq!(b.request_count(), 1);
    assert_eq!(b.requests_cancelled(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_fast_first_attempt_is_not_hedged_and_failures_fall_through() {
    let (a, b) = (MockProvider::new(), MockProvider::new());
    let (_, svc) = stack(
        &a,
        &b,
        FailoverLayer::new().hedge_after(Duration::from_millis(200)),
    );
    let res = svc.clone().oneshot(chat("m", false)).await.unwrap();
    assert_eq!(header(&res, "x-tollgate-attempts"), "1");
    assert_eq!(b.request_count(), 0);

    // Both hedged attempts fail: the next attempt (a third) goes on, then 502.
    a.set_script([("x-mock-latency-ms", "300"), ("x-mock-status", "500")]);
    b.set_script([("x-mock-status", "503")]);
    let res = svc.clone().oneshot(chat("m", false)).await.unwrap();
    assert_eq!(res.status(), 502);
    assert_eq!(header(&res, "x-tollgate-attempts"), "3");
}

#[tokio::test(start_paused = true)]
async fn the_hedge_delay_can_follow_the_channel_latency() {
    let (a, b) = (MockProvider::new(), MockProvider::new());
    a.set_script([("x-mock-latency-ms", "100")]);
    b.set_script([("x-mock-latency-ms", "10")]);
    let failover = FailoverLayer::new().hedge_after_latency(2.0, Duration::from_millis(150));
    let (_, svc) = stack(&a, &b, failover);
    // Usual latency 100 ms: answers within twice that are not hedged.
    for _ in 0..3 {
        let res = svc.clone().oneshot(chat("m", false)).await.unwrap();
        assert_eq!(header(&res, "x-tollgate-attempts"), "1");
    }
    assert_eq!(b.request_count(), 0);
    // Much slower now: hedged after 2 × 100 ms.
    a.set_script([("x-mock-latency-ms", "5000")]);
    let started = Instant::now();
    let res = svc.clone().oneshot(chat("m", false)).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(210));
    assert_eq!(header(&res, "x-tollgate-target"), "b");
}
