//! Circuit breaker, passive health, key cool-downs and the retry budget, driven by
//! paused tokio time through Routing + Failover + in-process mocks.

use std::time::Duration;

use http::{Request, Response, StatusCode};
use tollgate::error::GatewayError;
use tollgate::failover::FailoverLayer;
use tollgate::routing::{Channel, Health, HealthPolicy, Priority, Router, RoutingLayer};
use tollgate::testing::MockProvider;
use tollgate::upstream::{ApiKey, Target};
use tollgate::{Body, Dialect};
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};

use super::{bytes, chat, dispatch, header, target, Svc};

/// Channels `a` (priority 0) and `b` (priority 1) serving `m`.
fn two(policy: HealthPolicy) -> Router {
    Router::builder()
        .channel(Channel::builder("a", target("a")).model("m").priority(0))
        .channel(Channel::builder("b", target("b")).model("m").priority(1))
        .strategy(Priority::with_seed(1))
        .health(policy)
        .build()
        .unwrap()
}

fn stack(router: &Router, failover: FailoverLayer, inner: Svc) -> Svc {
    BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(RoutingLayer::new(router.clone()))
            .layer(failover)
            .service(inner),
    )
}

async fn served_by(svc: &Svc) -> (StatusCode, String, String) {
    let res = svc.clone().oneshot(chat("m", false)).await.unwrap();
    let target = res
        .headers()
        .get("x-tollgate-target")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        res.status(),
        target,
        header(&res, "x-tollgate-attempts").to_owned(),
    )
}

#[tokio::test(start_paused = true)]
async fn circuit_opens_half_opens_and_closes() {
    let (a, b) = (MockProvider::new(), MockProvider::new());
    a.set_script([("x-mock-status", "500")]);
    let policy = HealthPolicy::new()
        .failure_threshold(3)
        .open_for(Duration::from_secs(10))
        .half_open_trials(1);
    let router = two(policy);
    let svc = stack(
        &router,
        FailoverLayer::new(),
        dispatch(&[("a", &a), ("b", &b)]),
    );
    let channel = router.channel("a").unwrap().clone();

    for _ in 0..3 {
        assert_eq!(
            served_by(&svc).await,
            (StatusCode::OK, "b".into(), "2".into())
        );
    }
    assert_eq!(a.request_count(), 3);
    assert_eq!(channel.health(), Health::CircuitOpen);

    // Open: `a` gets no traffic at all.
    for _ in 0..5 {
        assert_eq!(
            served_by(&svc).await,
            (StatusCode::OK, "b".into(), "1".into())
        );
    }
    assert_eq!(a.request_count(), 3);

    // Half-open after the open time; a failed trial opens it again.
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(channel.health(), Health::Probation);
    assert_eq!(
        served_by(&svc).await,
        (StatusCode::OK, "b".into(), "2".into())
    );
    assert_eq!(a.request_count(), 4);
    assert_eq!(channel.health(), Health::CircuitOpen);
    assert_eq!(served_by(&svc).await.1, "b");
    assert_eq!(a.request_count(), 4);

    // A successful trial closes it.
    tokio::time::advance(Duration::from_secs(10)).await;
    a.clear_script();
    assert_eq!(
        served_by(&svc).await,
        (StatusCode::OK, "a".into(), "1".into())
    );
    assert_eq!(channel.health(), Health::Healthy);
    assert_eq!(served_by(&svc).await.1, "a");
}

#[tokio::test(start_paused = true)]
async fn half_open_lets_a_bounded_number_of_trials_through() {
    let router = two(HealthPolicy::new()
        .failure_threshold(1)
        .open_for(Duration::from_secs(5))
        .half_open_trials(2));
    let channel = router.channel("a").unwrap().clone();
    // Open the circuit with one failure recorded through a stack.
    let a = MockProvider::new();
    a.set_script([("x-mock-status", "503")]);
    let b = MockProvider::new();
    let svc = stack(
        &router,
        FailoverLayer::new(),
        dispatch(&[("a", &a), ("b", &b)]),
    );
    served_by(&svc).await;
    assert_eq!(channel.health(), Health::CircuitOpen);
    tokio::time::advance(Duration::from_secs(5)).await;

    // Two routed requests hold the two trial slots; a third does not get `a`.
    let first = router.resolve("m").unwrap();
    let second = router.resolve("m").unwrap();
    let third = router.resolve("m").unwrap();
    assert_eq!(first.first().unwrap().channel().id(), "a");
    assert_eq!(second.first().unwrap().channel().id(), "a");
    assert_eq!(third.first().unwrap().channel().id(), "b");
    assert_eq!(third.len(), 1);
    // Slots come back when the requests end.
    drop((first, second, third));
    assert_eq!(
        router.resolve("m").unwrap().first().unwrap().channel().id(),
        "a"
    );
}

#[tokio::test(start_paused = true)]
async fn passive_health_marks_down_then_recovers() {
    let (a, b) = (MockProvider::new(), MockProvider::new());
    let policy = HealthPolicy::new()
        .failure_threshold(1000)
        .window(Duration::from_secs(10), 10)
        .degraded_ratio(0.2)
        .down_ratio(0.5)
        .down_for(Duration::from_secs(30));
    let router = two(policy);
    let svc = stack(
        &router,
        FailoverLayer::new(),
        dispatch(&[("a", &a), ("b", &b)]),
    );
    let channel = router.channel("a").unwrap().clone();

    // 7 successes then 3 failures: 30 % errors over 10 attempts, degraded.
    for _ in 0..7 {
        assert_eq!(served_by(&svc).await.1, "a");
    }
    a.set_script([("x-mock-status", "502")]);
    for _ in 0..3 {
        assert_eq!(
            served_by(&svc).await,
            (StatusCode::OK, "b".into(), "2".into())
        );
    }
    assert_eq!(channel.health(), Health::Degraded);
    // Degraded channels go after healthy ones, whatever the strategy says.
    assert_eq!(
        router.resolve("m").unwrap().first().unwrap().channel().id(),
        "b"
    );

    // Four more failures (pinned to it with `a/m`, one attempt each): at 7 of 14 it
    // is down.
    let once = stack(
        &router,
        FailoverLayer::new().max_attempts(1),
        dispatch(&[("a", &a), ("b", &b)]),
    );
    for _ in 0..4 {
        let c = router.resolve("m").unwrap();
        let ids: Vec<&str> = c.iter().map(|c| c.channel().id()).collect();
        assert_eq!(ids, ["b", "a"]);
        let r = once.clone().oneshot(chat("a/m", false)).await.unwrap();
        assert_eq!(r.status(), 502);
    }
    assert_eq!(channel.health(), Health::Down);
    let before = a.request_count();
    for _ in 0..10 {
        assert_eq!(
            served_by(&svc).await,
            (StatusCode::OK, "b".into(), "1".into())
        );
    }
    assert_eq!(
        a.request_count(),
        before,
        "a down channel receives no traffic"
    );

    // After its down time: a trial; success brings it back, history forgotten.
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(channel.health(), Health::Probation);
    a.clear_script();
    assert_eq!(
        served_by(&svc).await,
        (StatusCode::OK, "a".into(), "1".into())
    );
    assert_eq!(channel.health(), Health::Healthy);
    assert_eq!(channel.stats().success_rate, 1.0);
}

/// An inner service answering 429 (retry-after 30) for `key-one` and 200 otherwise.
fn throttles_key_one() -> Svc {
    BoxCloneSyncService::new(tower::service_fn(|req: Request<Body>| async move {
        let target = req.extensions().get::<Target>().unwrap();
        let key = target.api_key().unwrap().expose().to_owned();
        let res = if key == "key-one" {
            GatewayError::new(tollgate::error::ErrorKind::RateLimited, "slow down")
                .with_retry_after(30)
                .to_response(Dialect::OpenAi)
        } else {
            Response::new(Body::from(format!(r#"{{"key":"{key}"}}"#)))
        };
        Ok(res)
    }))
}

#[tokio::test(start_paused = true)]
async fn a_throttled_key_cools_down_and_is_skipped() {
    let router = Router::builder()
        .channel(
            Channel::builder("a", target("a"))
                .keys([ApiKey::new("key-one"), ApiKey::new("key-two")])
                .model("m"),
        )
        .build()
        .unwrap();
    let failover =
        FailoverLayer::new().backoff(Duration::from_millis(50), Duration::from_millis(50));
    let svc = stack(&router, failover, throttles_key_one());
    let channel = router.channel("a").unwrap().clone();

    // First request: key-one answers 429, the retry uses key-two.
    let res = svc.clone().oneshot(chat("m", false)).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-tollgate-attempts"), "2");
    assert_eq!(bytes(res).await, r#"{"key":"key-two"}"#);

    // While it cools down, every request goes straight to key-two.
    for _ in 0..6 {
        let res = svc.clone().oneshot(chat("m", false)).await.unwrap();
        assert_eq!(header(&res, "x-tollgate-attempts"), "1");
        assert_eq!(bytes(res).await, r#"{"key":"key-two"}"#);
    }
    let keys = channel.key_stats();
    assert_eq!((keys[0].requests, keys[0].throttled), (1, 1));
    assert!(keys[0].cooldown.unwrap() > Duration::from_secs(29));
    assert_eq!((keys[1].requests, keys[1].successes), (7, 7));
    // A 429 is not a health failure.
    assert_eq!(channel.health(), Health::Healthy);

    // After the retry-after, key-one is used again.
    tokio::time::advance(Duration::from_secs(30)).await;
    let mut seen_one = false;
    for _ in 0..2 {
        let res = svc.clone().oneshot(chat("m", false)).await.unwrap();
        seen_one |= res.status() == 200 && header(&res, "x-tollgate-attempts") == "2";
    }
    assert!(seen_one, "key-one was tried again after its cool-down");
}

#[tokio::test(start_paused = true)]
async fn cooldown_is_capped() {
    let router = Router::builder()
        .channel(
            Channel::builder("a", target("a"))
                .key(ApiKey::new("key-one"))
                .model("m"),
        )
        .channel(
            Channel::builder("b", target("b"))
                .key(ApiKey::new("key-b"))
                .model("m")
                .priority(1),
        )
        .strategy(Priority::with_seed(2))
        .health(HealthPolicy::new().cooldown(Duration::from_secs(1), Duration::from_secs(5)))
        .build()
        .unwrap();
    let svc = stack(&router, FailoverLayer::new(), throttles_key_one());
    assert_eq!(
        served_by(&svc).await,
        (StatusCode::OK, "b".into(), "2".into())
    );
    let cooldown = router.channel("a").unwrap().key_stats()[0]
        .cooldown
        .unwrap();
    assert!(cooldown <= Duration::from_secs(5), "{cooldown:?}");
    // All keys of `a` cooling: routing skips it.
    assert_eq!(
        served_by(&svc).await,
        (StatusCode::OK, "b".into(), "1".into())
    );
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(
        router.resolve("m").unwrap().first().unwrap().channel().id(),
        "a"
    );
}

#[tokio::test(start_paused = true)]
async fn an_exhausted_retry_budget_stops_retries() {
    let (a, b) = (MockProvider::new(), MockProvider::new());
    a.set_script([("x-mock-status", "500")]);
    let router = two(HealthPolicy::new()
        .failure_threshold(1000)
        .window(Duration::from_secs(60), 1000));
    // No reserve and no share of requests: no retry at all.
    let failover = FailoverLayer::new().retry_budget(Duration::from_secs(1), 0, 0.0);
    let svc = stack(&router, failover, dispatch(&[("a", &a), ("b", &b)]));
    for _ in 0..5 {
        // A single attempt's own answer comes back.
        assert_eq!(
            served_by(&svc).await,
            (StatusCode::INTERNAL_SERVER_ERROR, "a".into(), "1".into())
        );
    }
    assert_eq!(b.request_count(), 0);

    // A budget of 50 % of requests: about half of them are retried.
    let failover = FailoverLayer::new().retry_budget(Duration::from_secs(10), 0, 0.5);
    let svc = stack(&router, failover, dispatch(&[("a", &a), ("b", &b)]));
    let mut retried = 0;
    for _ in 0..20 {
        let (status, _, attempts) = served_by(&svc).await;
        if attempts == "2" {
            assert_eq!(status, 200);
            retried += 1;
        }
    }
    assert!((8..=11).contains(&retried), "{retried} of 20 retried");
    assert_eq!(b.request_count(), retried);
}

#[tokio::test(start_paused = true)]
async fn all_failed_lists_attempts_without_secrets() {
    const CANARY: &str = "sk-canary-7f3a9c2e41b84d0f9e6a";
    let router = Router::builder()
        .channel(
            Channel::builder("a", target("a"))
                .key(ApiKey::new(CANARY))
                .model("m"),
        )
        .channel(
            Channel::builder("b", target("b"))
                .key(ApiKey::new(CANARY))
                .model("m")
                .priority(1),
        )
        .strategy(Priority::with_seed(1))
        .build()
        .unwrap();
    // An inner service that (wrongly) echoes the key in its errors.
    let leaky = BoxCloneSyncService::new(tower::service_fn(|req: Request<Body>| async move {
        let target = req.extensions().get::<Target>().unwrap();
        let key = target.api_key().unwrap().expose();
        let status = if target.name() == "a" { 503 } else { 500 };
        let err = GatewayError::upstream(format!("Incorrect API key provided: {key}."))
            .with_status(StatusCode::from_u16(status).unwrap());
        Ok(err.to_response(Dialect::OpenAi))
    }));
    let svc = stack(&router, FailoverLayer::new().max_attempts(2), leaky);
    let res = svc.clone().oneshot(chat("m", false)).await.unwrap();
    assert_eq!(res.status(), 502);
    assert_eq!(header(&res, "x-tollgate-attempts"), "2");
    let body = String::from_utf8(bytes(res).await.to_vec()).unwrap();
    assert!(!body.contains(CANARY), "{body}");
    assert!(!body.contains("7f3a9c2e41b84d0f9e6a"), "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("`m`"), "{message}");
    assert!(message.contains("1. `a` (503)"), "{message}");
    assert!(message.contains("2. `b` (500)"), "{message}");
    assert_eq!(v["error"]["code"], "upstream_error");
}

#[tokio::test(start_paused = true)]
async fn all_throttled_is_429_with_the_shortest_wait() {
    let router = Router::builder()
        .channel(
            Channel::builder("a", target("a"))
                .key(ApiKey::new("key-one"))
                .model("m"),
        )
        .channel(
            Channel::builder("b", target("b"))
                .key(ApiKey::new("key-one"))
                .model("m"),
        )
        .build()
        .unwrap();
    let svc = stack(&router, FailoverLayer::new(), throttles_key_one());
    let res = svc.clone().oneshot(chat("m", false)).await.unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "30");
    assert_eq!(header(&res, "x-tollgate-attempts"), "2");
    // Both channels now cool down: nothing is left to route to.
    let res = svc.clone().oneshot(chat("m", false)).await.unwrap();
    assert_eq!(res.status(), 503);
}

#[tokio::test(start_paused = true)]
async fn a_channel_with_health_off_is_never_blocked_and_revisit_off_tries_once() {
    let (a, b) = (MockProvider::new(), MockProvider::new());
    a.set_script([("x-mock-status", "500")]);
    let router = Router::builder()
        .channel(
            Channel::builder("a", target("a"))
                .model("m")
                .health(HealthPolicy::new().off()),
        )
        .channel(Channel::builder("b", target("b")).model("other"))
        .health(HealthPolicy::new().failure_threshold(1))
        .build()
        .unwrap();
    let svc = stack(
        &router,
        FailoverLayer::new().max_attempts(3).revisit(false),
        dispatch(&[("a", &a), ("b", &b)]),
    );
    for _ in 0..30 {
        // One candidate, no revisit: one attempt, the provider's own answer.
        assert_eq!(
            served_by(&svc).await,
            (StatusCode::INTERNAL_SERVER_ERROR, "a".into(), "1".into())
        );
    }
    assert_eq!(a.request_count(), 30);
    assert_eq!(router.channel("a").unwrap().health(), Health::Healthy);
    assert_eq!(router.channel("a").unwrap().stats().failures, 30);
}
