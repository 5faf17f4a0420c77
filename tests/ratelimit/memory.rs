//! The in-memory store through the layer, on paused time.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use tollgate::outcome::{End, Outcome};
use tollgate::ratelimit::{Limits, MemoryStore, RateLimit, RateLimitLayer, Scope};
use tollgate::request::LlmRequest;
use tollgate::testing::MockProvider;
use tollgate::{Body, Endpoint};
use tower::{Service, ServiceBuilder, ServiceExt};

use crate::{chat, from_ip, header, json, remaining, HELLO};

type Svc = RateLimit<MockProvider>;

async fn send<S>(svc: &mut S, req: Request<Body>) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Error: std::fmt::Debug,
{
    svc.ready().await.unwrap().call(req).await.unwrap()
}

fn stack(layer: RateLimitLayer) -> (Svc, MockProvider) {
    let mock = MockProvider::new();
    (layer.layer_service(mock.clone()), mock)
}

trait LayerService {
    fn layer_service(&self, mock: MockProvider) -> Svc;
}

impl LayerService for RateLimitLayer {
    fn layer_service(&self, mock: MockProvider) -> Svc {
        ServiceBuilder::new().layer(self.clone()).service(mock)
    }
}

fn input_estimate(body: &str) -> u64 {
    LlmRequest::parse(Endpoint::ChatCompletions, Bytes::from(body.to_owned()))
        .unwrap()
        .estimated_input_tokens()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn request_window_refills_steadily_without_edge_bursts() {
    let (mut svc, _) =
        stack(RateLimitLayer::new().per_client_ip(Limits::new().requests_per_minute(3)));
    for (left, reset) in [(2, "20s"), (1, "40s"), (0, "1m0s")] {
        let res = send(&mut svc, from_ip(chat(HELLO), 1)).await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "x-ratelimit-limit-requests"), "3");
        assert_eq!(remaining(&res, "requests"), left);
        assert_eq!(header(&res, "x-ratelimit-reset-requests"), reset);
        assert!(res.headers().get("x-ratelimit-limit-tokens").is_none());
    }
    let res = send(&mut svc, from_ip(chat(HELLO), 1)).await;
    assert_eq!(res.status(), 429);
    assert_eq!(header(&res, "retry-after"), "20");
    assert_eq!(remaining(&res, "requests"), 0);
    let body = json(res).await;
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded_requests");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("3 requests per minute"));

    // Another client has its own bucket.
    let res = send(&mut svc, from_ip(chat(HELLO), 2)).await;
    assert_eq!(remaining(&res, "requests"), 2);

    // 20 s later exactly one request has refilled.
    tokio::time::advance(Duration::from_secs(20)).await;
    let res = send(&mut svc, from_ip(chat(HELLO), 1)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(remaining(&res, "requests"), 0);
    assert_eq!(send(&mut svc, from_ip(chat(HELLO), 1)).await.status(), 429);

    // Across a window edge a full bucket admits the limit once, not twice.
    tokio::time::advance(Duration::from_secs(61)).await;
    let mut admitted = 0;
    for _ in 0..6 {
        if send(&mut svc, from_ip(chat(HELLO), 1)).await.status() == 200 {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 3);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn daily_window_holds_after_the_minute_refills() {
    let limits = Limits::new().requests_per_minute(2).requests_per_day(3);
    let (mut svc, _) = stack(RateLimitLayer::new().global(limits));
    assert_eq!(send(&mut svc, chat(HELLO)).await.status(), 200);
    assert_eq!(send(&mut svc, chat(HELLO)).await.status(), 200);
    tokio::time::advance(Duration::from_secs(60)).await;
    let res = send(&mut svc, chat(HELLO)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        header(&res, "x-ratelimit-limit-requests"),
        "3",
        "the tighter window"
    );
    let res = send(&mut svc, chat(HELLO)).await;
    assert_eq!(res.status(), 429);
    let retry: u64 = header(&res, "retry-after").parse().unwrap();
    assert!(
        (28_000..=28_800).contains(&retry),
        "a day's refill per request: {retry}"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn tokens_are_settled_with_the_real_usage() {
    let body = r#"{"model":"mock/echo","max_tokens":50,"messages":[{"role":"user","content":"hello there"}]}"#;
    let layer = RateLimitLayer::new().model("mock/echo", Limits::new().tokens_per_minute(1_000));
    let (mut svc, _) = stack(layer);
    let reserved = input_estimate(body) + 50;

    let first = send(&mut svc, chat(body)).await;
    assert_eq!(header(&first, "x-ratelimit-limit-tokens"), "1000");
    assert_eq!(remaining(&first, "tokens"), 1_000 - reserved);
    let outcome = first.extensions().get::<Outcome>().cloned().unwrap();
    first.into_body().collect().await.unwrap();
    let usage = outcome.resolved().await.usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (2, 5));

    // Settled: the reservation gave way to the 7 tokens really used.
    let second = send(&mut svc, chat(body)).await;
    assert_eq!(remaining(&second, "tokens"), 1_000 - 7 - reserved);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn tokens_are_settled_with_the_output_seen_when_the_client_leaves() {
    let body = r#"{"model":"mock/echo","stream":true,"max_tokens":50,"messages":[{"role":"user","content":"hello there"}]}"#;
    let layer = RateLimitLayer::new().model("mock/echo", Limits::new().tokens_per_minute(1_000));
    let (mut svc, mock) = stack(layer);
    let input = input_estimate(body);
    let reserved = input + 50;

    let mut req = chat(body);
    req.headers_mut()
        .insert("x-mock-chunks", "4".parse().unwrap());
    req.headers_mut()
        .insert("x-mock-hold-last", "true".parse().unwrap());
    let res = send(&mut svc, req).await;
    assert_eq!(remaining(&res, "tokens"), 1_000 - reserved);
    let outcome = res.extensions().get::<Outcome>().cloned().unwrap();
    let mut body_stream = res.into_body();
    let mut seen = Vec::new();
    while seen.windows(5).filter(|w| w == b"data:").count() < 4 {
        let frame = body_stream.frame().await.unwrap().unwrap();
        seen.extend_from_slice(frame.data_ref().unwrap());
    }
    drop(body_stream); // the client hangs up before the last chunk
    let report = outcome.resolved().await;
    assert_eq!(report.end, End::ClientGone);
    assert!(report.usage.is_none());
    let used = input + report.completion_tokens();
    assert!(report.completion_tokens() > 0);

    let again = send(&mut svc, chat(body)).await;
    assert_eq!(remaining(&again, "tokens"), 1_000 - used - reserved);
    mock.release_held(1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn spending_more_than_reserved_leaves_a_debt() {
    let words = "a ".repeat(200);
    let body =
        format!(r#"{{"model":"mock/echo","messages":[{{"role":"user","content":"{words}"}}]}}"#);
    let layer = RateLimitLayer::new()
        .output_reserve(1)
        .global(Limits::new().tokens_per_minute(300));
    let (mut svc, _) = stack(layer);
    let res = send(&mut svc, chat(&body)).await;
    assert_eq!(res.status(), 200, "the estimate fits");
    res.into_body().collect().await.unwrap(); // usage: 200 + 203 tokens
    let res = send(&mut svc, chat(&body)).await;
    assert_eq!(res.status(), 429);
    assert_eq!(remaining(&res, "tokens"), 0);
    assert_eq!(
        json(res).await["error"]["code"],
        "rate_limit_exceeded_tokens"
    );
}

fn held_stream() -> Request<Body> {
    let mut req =
        chat(r#"{"model":"mock/echo","stream":true,"messages":[{"role":"user","content":"hi"}]}"#);
    req.headers_mut()
        .insert("x-mock-hold-last", "true".parse().unwrap());
    req
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn concurrency_is_released_when_the_outcome_resolves() {
    let store = MemoryStore::new();
    let layer = RateLimitLayer::new()
        .store(store.clone())
        .model("mock/echo", Limits::new().max_parallel(1));
    let (mut svc, mock) = stack(layer);
    let scope = Scope::Model("mock/echo".into());

    // Normal end.
    let res = send(&mut svc, held_stream()).await;
    assert_eq!(store.in_flight(&scope), 1);
    let refused = send(&mut svc, chat(HELLO)).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(
        json(refused).await["error"]["code"],
        "rate_limit_exceeded_concurrency"
    );
    mock.release_held(1);
    res.into_body().collect().await.unwrap();
    assert_eq!(store.in_flight(&scope), 0);

    // Upstream error mid-stream.
    let mut req = held_stream();
    req.headers_mut().remove("x-mock-hold-last");
    req.headers_mut()
        .insert("x-mock-reset-after", "1".parse().unwrap());
    let res = send(&mut svc, req).await;
    assert_eq!(res.status(), 200);
    assert_eq!(store.in_flight(&scope), 1);
    let outcome = res.extensions().get::<Outcome>().cloned().unwrap();
    assert!(res.into_body().collect().await.is_err());
    assert_eq!(outcome.resolved().await.end, End::UpstreamError);
    assert_eq!(store.in_flight(&scope), 0);

    // Client disconnect.
    let res = send(&mut svc, held_stream()).await;
    assert_eq!(store.in_flight(&scope), 1);
    let mut body = res.into_body();
    body.frame().await.unwrap().unwrap();
    drop(body);
    assert_eq!(store.in_flight(&scope), 0);

    // The response future dropped before there is a response (parsed up front, so
    // the reservation is taken in `call`).
    let mut req = held_stream();
    LlmRequest::extract(&mut req).await.unwrap();
    let fut = ServiceExt::<Request<Body>>::ready(&mut svc)
        .await
        .unwrap()
        .call(req);
    assert_eq!(store.in_flight(&scope), 1);
    drop(fut);
    assert_eq!(store.in_flight(&scope), 0);

    assert_eq!(send(&mut svc, chat(HELLO)).await.status(), 200);
    mock.release_held(8);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn anthropic_clients_get_anthropic_headers_and_errors() {
    let (mut svc, _) =
        stack(RateLimitLayer::new().per_client_ip(Limits::new().requests_per_minute(1)));
    let messages = || {
        from_ip(
            Request::post("/v1/messages")
                .body(Body::from(
                    r#"{"model":"claude-x","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#,
                ))
                .unwrap(),
            9,
        )
    };
    let first = send(&mut svc, messages()).await;
    assert_eq!(header(&first, "anthropic-ratelimit-requests-limit"), "1");
    assert_eq!(
        header(&first, "anthropic-ratelimit-requests-remaining"),
        "0"
    );
    let reset = header(&first, "anthropic-ratelimit-requests-reset");
    assert!(reset.len() == 20 && reset.ends_with('Z'), "{reset}");
    assert!(first.headers().get("x-ratelimit-limit-requests").is_none());

    let refused = send(&mut svc, messages()).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "retry-after"), "60");
    assert_eq!(
        header(&refused, "anthropic-ratelimit-requests-remaining"),
        "0"
    );
    let body = json(refused).await;
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn headers_off_still_limits_and_says_when_to_retry() {
    let (mut svc, _) = stack(
        RateLimitLayer::new()
            .per_client_ip(
                Limits::new()
                    .requests_per_minute(1)
                    .tokens_per_minute(1_000_000),
            )
            .headers(false),
    );
    let first = send(&mut svc, from_ip(chat(HELLO), 3)).await;
    assert_eq!(first.status(), 200);
    let refused = send(&mut svc, from_ip(chat(HELLO), 3)).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "retry-after"), "60");
    for res in [&first, &refused] {
        let names: Vec<_> = res
            .headers()
            .keys()
            .filter(|name| name.as_str().contains("ratelimit"))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }
    assert_eq!(
        json(refused).await["error"]["code"],
        "rate_limit_exceeded_requests"
    );
}

#[tokio::test]
async fn reads_the_body_only_when_a_limit_needs_it() {
    let (mut svc, mock) =
        stack(RateLimitLayer::new().model("mock/echo", Limits::new().requests_per_minute(5)));
    let res = send(&mut svc, chat("{oops")).await;
    assert_eq!(res.status(), 400);
    assert!(json(res).await["error"]["message"].is_string());
    assert_eq!(mock.request_count(), 0, "refused before the provider");
    let res = send(&mut svc, chat(HELLO)).await;
    assert_eq!(remaining(&res, "requests"), 4);
    let other = HELLO.replace("mock/echo", "mock/other");
    let res = send(&mut svc, chat(&other)).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers().get("x-ratelimit-limit-requests").is_none(),
        "no scope applies"
    );

    // No limit at all: passes through untouched.
    let (mut open, _) = stack(RateLimitLayer::new());
    let res = send(&mut open, chat(HELLO)).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("x-ratelimit-limit-requests").is_none());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn each_model_has_its_own_bucket_and_scopes_all_must_admit() {
    let layer = RateLimitLayer::new()
        .each_model(Limits::new().requests_per_minute(1))
        .global(Limits::new().requests_per_minute(2));
    let (mut svc, _) = stack(layer);
    let other = HELLO.replace("mock/echo", "mock/other");
    let third = HELLO.replace("mock/echo", "mock/third");
    assert_eq!(send(&mut svc, chat(HELLO)).await.status(), 200);
    // The model's bucket is empty: refused, and the global bucket is not charged.
    assert_eq!(send(&mut svc, chat(HELLO)).await.status(), 429);
    assert_eq!(send(&mut svc, chat(&other)).await.status(), 200);
    let res = send(&mut svc, chat(&third)).await;
    assert_eq!(res.status(), 429, "the global bucket is empty");
    assert!(json(res).await["error"]["message"]
        .as_str()
        .unwrap()
        .contains("the gateway"));
}
