//! Faults injected by mock providers over loopback, through Routing + Failover +
//! `Upstream`: each with the attempts made and the answer the client gets.

use std::time::Duration;

use http::StatusCode;
use tollgate::failover::FailoverLayer;
use tollgate::outcome::{End, Outcome};
use tollgate::routing::{Channel, Priority, Router, RoutingLayer};
use tollgate::testing::{MockProvider, MockServer};
use tollgate::upstream::{Target, Upstream};
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};

use super::{bytes, chat, header, json, Svc};

struct Setup {
    a: MockServer,
    b: MockServer,
    router: Router,
    svc: Svc,
}

/// Channel `a` (first) and `b` (second), each on its own loopback mock.
async fn setup(failover: FailoverLayer) -> Setup {
    let a = MockServer::start().await.unwrap();
    let b = MockServer::start().await.unwrap();
    let channel = |id: &str, server: &MockServer, priority: u32| {
        Channel::builder(
            id,
            Target::openai_compatible(id, &server.base_url()).unwrap(),
        )
        .model("m")
        .priority(priority)
    };
    let router = Router::builder()
        .channel(channel("a", &a, 0))
        .channel(channel("b", &b, 1))
        .strategy(Priority::with_seed(1))
        .build()
        .unwrap();
    let svc = BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(RoutingLayer::new(router.clone()))
            .layer(failover)
            .service(Upstream::builder().build()),
    );
    Setup { a, b, router, svc }
}

fn a(s: &Setup) -> &MockProvider {
    s.a.provider()
}

/// `a` scripted with `script`: the request fails over to `b`, which answers.
async fn fails_over(script: &[(&str, &str)], failover: FailoverLayer) -> Setup {
    let s = setup(failover).await;
    a(&s).set_script(script.iter().copied());
    for stream in [false, true] {
        let res = s.svc.clone().oneshot(chat("m", stream)).await.unwrap();
        assert_eq!(res.status(), 200, "{script:?} stream={stream}");
        assert_eq!(header(&res, "x-tollgate-target"), "b");
        assert_eq!(header(&res, "x-tollgate-attempts"), "2");
        let body = String::from_utf8(bytes(res).await.to_vec()).unwrap();
        if stream {
            assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
        } else {
            assert!(body.contains("Mock answer to: hello there"), "{body}");
        }
    }
    assert_eq!(a(&s).request_count(), 2, "{script:?}");
    assert_eq!(s.b.provider().request_count(), 2);
    s
}

#[tokio::test]
async fn status_500_fails_over() {
    let s = fails_over(&[("x-mock-status", "500")], FailoverLayer::new()).await;
    assert_eq!(s.router.channel("a").unwrap().stats().failures, 2);
}

#[tokio::test]
async fn status_503_fails_over() {
    fails_over(&[("x-mock-status", "503")], FailoverLayer::new()).await;
}

#[tokio::test]
async fn status_429_fails_over_and_cools_the_key_down() {
    let s = setup(FailoverLayer::new()).await;
    a(&s).set_script([("x-mock-status", "429")]);
    let res = s.svc.clone().oneshot(chat("m", false)).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-tollgate-attempts"), "2");
    let key = s.router.channel("a").unwrap().key_stats()[0];
    assert_eq!(key.throttled, 1);
    // The mock's `retry-after: 1`.
    assert!(key.cooldown.is_some_and(|d| d <= Duration::from_secs(1)));
    // While `a` cools down, requests go straight to `b`.
    let res = s.svc.clone().oneshot(chat("m", false)).await.unwrap();
    assert_eq!(header(&res, "x-tollgate-attempts"), "1");
    assert_eq!(a(&s).request_count(), 1);
}

#[tokio::test]
async fn reset_before_the_first_byte_fails_over() {
    // Non-stream: the connection is cut before the body's first byte.
    let s = setup(FailoverLayer::new()).await;
    a(&s).set_script([("x-mock-reset-after", "0")]);
    let res = s.svc.clone().oneshot(chat("m", false)).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-tollgate-target"), "b");
    assert_eq!(header(&res, "x-tollgate-attempts"), "2");
    assert_eq!(
        json(res).await["choices"][0]["message"]["content"],
        "Mock answer to: hello there"
    );
}

#[tokio::test]
async fn slow_first_byte_times_out_and_fails_over() {
    let failover = FailoverLayer::new().attempt_timeout(Duration::from_millis(300));
    let s = fails_over(&[("x-mock-latency-ms", "3000")], failover).await;
    assert_eq!(s.router.channel("a").unwrap().stats().failures, 2);
}

#[tokio::test]
async fn stream_that_fails_before_its_first_event_fails_over() {
    // A malformed first event: `Upstream` has not committed the stream yet.
    let s = setup(FailoverLayer::new()).await;
    a(&s).set_script([("x-mock-malformed", "true")]);
    let res = s.svc.clone().oneshot(chat("m", true)).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-tollgate-attempts"), "2");
    assert!(String::from_utf8(bytes(res).await.to_vec())
        .unwrap()
        .ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn reset_after_the_first_byte_is_not_retried() {
    let s = setup(FailoverLayer::new()).await;
    a(&s).set_script([("x-mock-reset-after", "2"), ("x-mock-chunks", "6")]);
    let res = s.svc.clone().oneshot(chat("m", true)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "x-tollgate-target"), "a");
    assert_eq!(header(&res, "x-tollgate-attempts"), "1");
    let outcome = res.extensions().get::<Outcome>().cloned().unwrap();
    // The client sees what was sent, then a clean error event; no [DONE].
    let body = String::from_utf8(bytes(res).await.to_vec()).unwrap();
    assert!(body.contains("\"role\":\"assistant\""), "{body}");
    assert!(body.contains("data: {\"error\""), "{body}");
    assert!(!body.contains("[DONE]"), "{body}");
    assert_eq!(outcome.resolved().await.end, End::UpstreamError);
    assert_eq!(s.b.provider().request_count(), 0);
    // The cut counts against the channel's health.
    assert_eq!(s.router.channel("a").unwrap().stats().failures, 1);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let s = setup(FailoverLayer::new()).await;
    a(&s).set_script([("x-mock-status", "400")]);
    let res = s.svc.clone().oneshot(chat("m", false)).await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(header(&res, "x-tollgate-attempts"), "1");
    assert_eq!(s.b.provider().request_count(), 0);
    assert_eq!(s.router.channel("a").unwrap().stats().failures, 0);
}

#[tokio::test]
async fn every_channel_failing_is_a_502_listing_the_attempts() {
    const CANARY: &str = "sk-canary-0d9f8e7c6b5a4f3e2d1c";
    let s = setup(FailoverLayer::new()).await;
    // 401 answers echo a key (the mock's fake one) in their message.
    a(&s).set_script([("x-mock-status", "401")]);
    s.b.provider().set_script([("x-mock-status", "500")]);
    let router = Router::builder()
        .channel(
            Channel::builder(
                "a",
                Target::openai_compatible("a", &s.a.base_url()).unwrap(),
            )
            .key(tollgate::upstream::ApiKey::new(CANARY))
            .model("m"),
        )
        .channel(
            Channel::builder(
                "b",
                Target::openai_compatible("b", &s.b.base_url()).unwrap(),
            )
            .key(tollgate::upstream::ApiKey::new(CANARY))
            .model("m")
            .priority(1),
        )
        .strategy(Priority::with_seed(1))
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(RoutingLayer::new(router))
        .layer(FailoverLayer::new().max_attempts(2))
        .service(Upstream::builder().build());
    let res = svc.oneshot(super::messages("m", false)).await.unwrap();
    assert_eq!(res.status(), 502);
    assert_eq!(header(&res, "x-tollgate-attempts"), "2");
    let body = String::from_utf8(bytes(res).await.to_vec()).unwrap();
    assert!(!body.contains(CANARY), "{body}");
    assert!(!body.contains("sk-mock-1234567890abcdef"), "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    // Anthropic ingress: the error is in Anthropic's shape.
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "api_error");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("1. `a` (502)"), "{message}");
    assert!(message.contains("2. `b` (502)"), "{message}");
    // The canary reached the providers, so it was really in play.
    let sent = a(&s).requests()[0].headers["authorization"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(sent, format!("Bearer {CANARY}"));
}
