//! `MetricsLayer` in front of rate limits, the cache and the real `Upstream` talking to
//! the loopback mock: scripted traffic, then the scrape parsed with a Prometheus
//! text-format parser and checked series by series.
#![cfg(all(
    feature = "metrics",
    feature = "metering",
    feature = "ratelimit",
    feature = "cache",
    feature = "upstream",
    feature = "testing"
))]

use http::Request;
use http_body_util::BodyExt;
use prometheus_parse::{Scrape, Value};
use serde_json::json;
use tollgate::cache::CacheLayer;
use tollgate::metering::PriceTable;
use tollgate::metrics::{MetricsLayer, Registry};
use tollgate::outcome::Usage;
use tollgate::ratelimit::{Limits, RateLimitLayer};
use tollgate::request::ParseLayer;
use tollgate::testing::MockServer;
use tollgate::upstream::{Target, Upstream};
use tollgate::Body;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};

type Svc = BoxCloneSyncService<Request<Body>, http::Response<Body>, std::convert::Infallible>;

fn stack(registry: &Registry, mock: &MockServer) -> Svc {
    let target = Target::openai_compatible("mock", &mock.base_url()).unwrap();
    let svc = ServiceBuilder::new()
        .layer(MetricsLayer::new(registry.clone()).prices(PriceTable::builtin()))
        .layer(ParseLayer::new())
        .layer(RateLimitLayer::new().model("mock/limited", Limits::new().requests_per_minute(1)))
        .layer(CacheLayer::new())
        .service(Upstream::new(target));
    BoxCloneSyncService::new(svc)
}

async fn send(svc: &Svc, body: serde_json::Value) -> (u16, String, Vec<u8>) {
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = svc.clone().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let cache = res
        .headers()
        .get("x-tollgate-cache")
        .map_or("-".into(), |v| v.to_str().unwrap().to_owned());
    let bytes = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, cache, bytes)
}

fn usage_of(json: &serde_json::Value) -> Usage {
    let u = &json["usage"];
    Usage::new(
        u["prompt_tokens"].as_u64().unwrap(),
        u["completion_tokens"].as_u64().unwrap(),
    )
}

/// The value of the sample `name` whose labels include all of `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert!(
        matching.len() <= 1,
        "{name} {labels:?} is ambiguous: {matching:?}"
    );
    matching.first().map(|s| match &s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
        Value::Summary(_) => panic!("no summaries here"),
    })
}

fn scrape(registry: &Registry) -> Scrape {
    let text = registry.render();
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("a valid exposition")
}

#[tokio::test]
async fn scripted_traffic_shows_in_the_scrape() {
    let mock = MockServer::start().await.unwrap();
    let registry = Registry::new();
    let svc = stack(&registry, &mock);
    let det = json!({"model": "mock/echo", "temperature": 0,
        "messages": [{"role": "user", "content": "count these words please"}]});

    // One miss, then two cache hits.
    let (status, cache, body) = send(&svc, det.clone()).await;
    assert_eq!((status, cache.as_str()), (200, "miss"));
    let first = usage_of(&serde_json::from_slice(&body).unwrap());
    for _ in 0..2 {
        let (status, cache, _) = send(&svc, det.clone()).await;
        assert_eq!((status, cache.as_str()), (200, "hit"));
    }
    // A stream sampled at temperature 1 (not cached), usage asked for.
    let (status, _, body) = send(
        &svc,
        json!({"model": "mock/echo", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "a streamed answer"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    let last_usage = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .rfind(|v| v["usage"].is_object())
        .map(|v| usage_of(&v))
        .expect("the stream reports its usage");
    // Rate limit: one request per minute on this model.
    let limited = json!({"model": "mock/limited", "messages": [{"role": "user", "content": "x"}]});
    assert_eq!(send(&svc, limited.clone()).await.0, 200);
    assert_eq!(send(&svc, limited).await.0, 429);
    // Malformed JSON: refused before any model is known.
    let req = Request::post("/v1/chat/completions")
        .body(Body::from("{not json"))
        .unwrap();
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 400);
    res.into_body().collect().await.unwrap();
    // Outcomes resolve as the body's end goes through: recorded before `collect` returns.

    let s = scrape(&registry);
    let chat = "/chat/completions";
    let req = |model: &str, provider: &str, status: &str| {
        value(
            &s,
            "tollgate_requests_total",
            &[
                ("route", chat),
                ("model", model),
                ("provider", provider),
                ("status", status),
            ],
        )
    };
    // The miss and the stream reached the provider; the hits did not.
    assert_eq!(req("mock/echo", "mock", "200"), Some(2.0));
    assert_eq!(req("mock/echo", "-", "200"), Some(2.0));
    assert_eq!(req("mock/limited", "mock", "200"), Some(1.0));
    assert_eq!(req("mock/limited", "-", "429"), Some(1.0));
    assert_eq!(req("-", "-", "400"), Some(1.0));

    let cache = |result: &str| value(&s, "tollgate_cache_total", &[("result", result)]);
    assert_eq!(cache("miss"), Some(1.0));
    assert_eq!(cache("hit"), Some(2.0));

    let rejected = |reason: &str| {
        value(
            &s,
            "tollgate_rejections_total",
            &[("route", chat), ("reason", reason)],
        )
    };
    assert_eq!(rejected("rate_limited"), Some(1.0));
    assert_eq!(rejected("invalid_request"), Some(1.0));

    // Tokens: the provider's usage of the miss and of the stream, none for the hits.
    let tokens = |kind: &str| {
        value(
            &s,
            "tollgate_tokens_total",
            &[("model", "mock/echo"), ("provider", "mock"), ("type", kind)],
        )
    };
    let input = first.prompt_tokens + last_usage.prompt_tokens;
    let output = first.completion_tokens + last_usage.completion_tokens;
    assert_eq!(tokens("input"), Some(input as f64));
    assert_eq!(tokens("output"), Some(output as f64));

    // Cost at the shipped mock price, exact to the nano-dollar.
    let price = *PriceTable::builtin().get("mock/echo").unwrap();
    let expected = (price.cost(&first).nanos() + price.cost(&last_usage).nanos()) as f64 / 1e9;
    let cost = value(
        &s,
        "tollgate_cost_usd_total",
        &[("model", "mock/echo"), ("provider", "mock")],
    )
    .unwrap();
    assert!((cost - expected).abs() < 1e-12, "{cost} != {expected}");

    // The OpenTelemetry GenAI histograms: every chat answer of mock/echo is timed.
    let genai = [
        ("gen_ai_operation_name", "chat"),
        ("gen_ai_request_model", "mock/echo"),
        ("gen_ai_provider_name", "mock"),
        ("error_type", ""),
    ];
    assert_eq!(
        value(&s, "gen_ai_client_operation_duration_seconds", &genai),
        Some(2.0)
    );
    assert_eq!(
        value(&s, "gen_ai_server_time_to_first_token_seconds", &genai),
        Some(2.0)
    );
    let usage_hist = |kind: &str| {
        value(
            &s,
            "gen_ai_client_token_usage",
            &[
                ("gen_ai_request_model", "mock/echo"),
                ("gen_ai_token_type", kind),
            ],
        )
    };
    assert_eq!(usage_hist("input"), Some(2.0));
    assert_eq!(
        value(
            &s,
            "gen_ai_client_token_usage_sum",
            &[
                ("gen_ai_request_model", "mock/echo"),
                ("gen_ai_token_type", "output")
            ],
        ),
        Some(output as f64)
    );
    assert_eq!(
        value(
            &s,
            "gen_ai_client_operation_duration_seconds",
            &[
                ("gen_ai_request_model", "mock/limited"),
                ("error_type", "rate_limited")
            ],
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn model_labels_are_bounded() {
    let mock = MockServer::start().await.unwrap();
    let registry = Registry::with_max_models(2);
    let svc = stack(&registry, &mock);
    for model in ["mock/a", "mock/b", "mock/c", "mock/d"] {
        let body = json!({"model": model, "messages": [{"role": "user", "content": "x"}]});
        assert_eq!(send(&svc, body).await.0, 200);
    }
    let s = scrape(&registry);
    let count = |model: &str| {
        value(
            &s,
            "tollgate_requests_total",
            &[("model", model), ("status", "200")],
        )
    };
    assert_eq!(count("mock/a"), Some(1.0));
    assert_eq!(count("mock/b"), Some(1.0));
    assert_eq!(count("mock/c"), None);
    assert_eq!(count("other"), Some(2.0));
}

#[test]
fn series_read_at_each_scrape() {
    let registry = Registry::new();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(3));
    let read = count.clone();
    registry.counter_fn("things_done", "Things done", move || {
        read.load(std::sync::atomic::Ordering::Relaxed)
    });
    registry.gauge_fn("healthy_channels", "Channels up", || -2);
    let s = scrape(&registry);
    assert_eq!(value(&s, "things_done_total", &[]), Some(3.0));
    assert_eq!(value(&s, "healthy_channels", &[]), Some(-2.0));
    count.store(7, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        value(&scrape(&registry), "things_done_total", &[]),
        Some(7.0)
    );
}

#[tokio::test]
async fn requests_in_flight_until_their_answer_ends() {
    let mock = MockServer::start().await.unwrap();
    let registry = Registry::new();
    let svc = stack(&registry, &mock);
    let in_flight = |registry: &Registry| {
        value(
            &scrape(registry),
            "tollgate_requests_in_flight",
            &[("route", "/chat/completions")],
        )
    };
    let req = |stream: bool| {
        let body = json!({"model": "mock/echo", "stream": stream,
            "messages": [{"role": "user", "content": "x"}]});
        Request::post("/v1/chat/completions")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let first = svc.clone().oneshot(req(true)).await.unwrap();
    let second = svc.clone().oneshot(req(false)).await.unwrap();
    assert_eq!(
        in_flight(&registry),
        Some(2.0),
        "heads sent, bodies not read"
    );
    first.into_body().collect().await.unwrap();
    assert_eq!(in_flight(&registry), Some(1.0));
    drop(second); // a client gone before the end
    assert_eq!(in_flight(&registry), Some(0.0));
    // A request abandoned before its head (the provider takes its time).
    let mut slow = req(false);
    slow.headers_mut()
        .insert("x-mock-latency-ms", "10000".parse().unwrap());
    let mut pending = tokio_test::task::spawn(svc.clone().oneshot(slow));
    assert!(pending.poll().is_pending());
    assert_eq!(in_flight(&registry), Some(1.0));
    drop(pending);
    assert_eq!(in_flight(&registry), Some(0.0));
}

/// The status recorded is the one the client got, even when a layer between the
/// metrics and the provider changed it (a guardrail blocking an answer).
#[cfg(feature = "guardrails")]
#[tokio::test]
async fn the_status_recorded_is_the_clients() {
    use tollgate::guardrails::{GuardrailLayer, PiiMode, PiiRedactor};
    let mock = MockServer::start().await.unwrap();
    let registry = Registry::new();
    let target = Target::openai_compatible("mock", &mock.base_url()).unwrap();
    let svc = ServiceBuilder::new()
        .layer(MetricsLayer::new(registry.clone()))
        .layer(GuardrailLayer::new(
            PiiRedactor::new().mode(PiiMode::Block).sides(false, true),
        ))
        .service(Upstream::new(target));
    let svc = BoxCloneSyncService::new(svc);
    let body = json!({"model": "mock/echo",
        "messages": [{"role": "user", "content": "mail me at ann@example.com"}]});
    let (status, _, _) = send(&svc, body).await;
    assert_eq!(status, 400);
    let s = scrape(&registry);
    assert_eq!(
        value(
            &s,
            "tollgate_requests_total",
            &[
                ("model", "mock/echo"),
                ("provider", "mock"),
                ("status", "400")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "tollgate_requests_total", &[("status", "200")]),
        None
    );
}
