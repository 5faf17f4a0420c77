//! Routing + fail-over cost per request on the healthy path: model resolution over
//! four channels (weighted random), the candidates and target extensions, one attempt
//! through `Failover` (a fresh request from the buffered bytes), statistics and health
//! fed from the answer, and the attempt headers; the inner service answers at once.
//! The request arrives parsed (`LlmRequest` in its extensions), as it does behind the
//! layers that parse it.
//!
//! The `failover_loopback` group measures what a fail-over costs beyond the failed
//! attempt itself, over loopback HTTP to two mock providers: `a_fails_then_b` minus
//! `a_fails` (the failed attempt alone) minus `direct_b` (the successful one alone).
//!
//! Run: `cargo bench --bench routing --features routing,failover,testing`.

use std::convert::Infallible;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use std::time::Duration;
use tollgate::failover::FailoverLayer;
use tollgate::request::LlmRequest;

use http_body_util::BodyExt;
use tollgate::routing::{
    Channel, HealthPolicy, LowestLatency, Priority, Router, RoutingLayer, WeightedRandom,
};
use tollgate::testing::MockServer;
use tollgate::upstream::{ApiKey, Target, Upstream};
use tollgate::{Body, Endpoint};
use tower::{Service, ServiceBuilder, ServiceExt};

const REQUEST: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello to the benchmark."}],"max_tokens":64}"#;
const ANSWER: &str = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"Hello."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":2}}"#;

fn request(parsed: &LlmRequest) -> Request<Body> {
    let mut req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(parsed.raw().clone()))
        .unwrap();
    req.extensions_mut().insert(parsed.clone());
    req
}

async fn drive<S>(svc: &mut S, req: Request<Body>)
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    black_box(res);
}

fn router(strategy: impl tollgate::routing::RouteStrategy) -> Router {
    let mut builder = Router::builder().strategy(strategy);
    for i in 0..4 {
        let id = format!("channel-{i}");
        let target = Target::openai_compatible(id.clone(), "https://api.example.com/v1").unwrap();
        builder = builder.channel(
            Channel::builder(id, target)
                .keys([
                    ApiKey::new(format!("sk-key-{i}-a")),
                    ApiKey::new(format!("sk-key-{i}-b")),
                ])
                .model_as("gpt-4o", "gpt-4o-2024-08-06")
                .weight(i + 1),
        );
    }
    builder.build().unwrap()
}

fn routing(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter(); // the router reads tokio's clock
    let parsed = LlmRequest::parse(
        Endpoint::ChatCompletions,
        Bytes::from_static(REQUEST.as_bytes()),
    )
    .unwrap();
    let answer = Bytes::from_static(ANSWER.as_bytes());
    let inner = move |_req: Request<Body>| {
        let answer = answer.clone();
        async move {
            let mut res = Response::new(Body::from(answer));
            res.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            Ok::<_, Infallible>(res)
        }
    };

    let mut group = c.benchmark_group("routing");
    let mut bare = ServiceBuilder::new().service_fn(inner.clone());
    group.bench_function("bare_inner", |b| {
        b.iter(|| rt.block_on(drive(&mut bare, request(&parsed))))
    });

    let weighted = router(WeightedRandom::new());
    group.bench_function("resolve_only", |b| {
        b.iter(|| black_box(weighted.resolve("gpt-4o").unwrap()))
    });

    let mut routed = ServiceBuilder::new()
        .layer(RoutingLayer::new(weighted.clone()))
        .service_fn(inner.clone());
    group.bench_function("routing", |b| {
        b.iter(|| rt.block_on(drive(&mut routed, request(&parsed))))
    });

    let mut both = ServiceBuilder::new()
        .layer(RoutingLayer::new(weighted))
        .layer(FailoverLayer::new())
        .service_fn(inner.clone());
    group.bench_function("routing_failover", |b| {
        b.iter(|| rt.block_on(drive(&mut both, request(&parsed))))
    });

    let mut latency = ServiceBuilder::new()
        .layer(RoutingLayer::new(router(LowestLatency::new())))
        .layer(FailoverLayer::new())
        .service_fn(inner);
    group.bench_function("routing_failover_lowest_latency", |b| {
        b.iter(|| rt.block_on(drive(&mut latency, request(&parsed))))
    });
    group.finish();
}

/// A complete exchange: the answer read to its end.
async fn exchange<S>(svc: &mut S) -> http::StatusCode
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(REQUEST.replace("gpt-4o", "m")))
        .unwrap();
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    let status = res.status();
    black_box(res.into_body().collect().await.unwrap());
    status
}

fn failover_loopback(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let (a, b) = rt.block_on(async {
        (
            MockServer::start().await.unwrap(),
            MockServer::start().await.unwrap(),
        )
    });
    a.provider().set_script([("x-mock-status", "500")]);
    let channel = |id: &str, server: &MockServer, priority: u32| {
        Channel::builder(
            id,
            Target::openai_compatible(id, &server.base_url()).unwrap(),
        )
        .model("m")
        .priority(priority)
    };
    // The failing channel must stay in play: no circuit, no health verdicts, a budget
    // that never runs out.
    let lenient = || {
        HealthPolicy::new()
            .failure_threshold(u32::MAX)
            .window(Duration::from_secs(60), u32::MAX)
    };
    let failover = || {
        FailoverLayer::new()
            .retry_budget(Duration::from_secs(1), 10_000_000, 1000.0)
            .backoff(Duration::ZERO, Duration::ZERO)
    };
    let upstream = Upstream::builder().build();

    let mut group = c.benchmark_group("failover_loopback");
    let mut direct = Upstream::builder()
        .default_target(Target::openai_compatible("b", &b.base_url()).unwrap())
        .build();
    group.bench_function("direct_b", |bench| {
        bench.iter(|| assert_eq!(rt.block_on(exchange(&mut direct)), 200))
    });

    let only_a = Router::builder()
        .channel(channel("a", &a, 0))
        .health(lenient())
        .build()
        .unwrap();
    let mut fails = ServiceBuilder::new()
        .layer(RoutingLayer::new(only_a))
        .layer(failover().max_attempts(1))
        .service(upstream.clone());
    group.bench_function("a_fails", |bench| {
        bench.iter(|| assert_eq!(rt.block_on(exchange(&mut fails)), 502))
    });

    let both = Router::builder()
        .channel(channel("a", &a, 0))
        .channel(channel("b", &b, 1))
        .strategy(Priority::new())
        .health(lenient())
        .build()
        .unwrap();
    let mut fails_over = ServiceBuilder::new()
        .layer(RoutingLayer::new(both))
        .layer(failover())
        .service(upstream);
    group.bench_function("a_fails_then_b", |bench| {
        bench.iter(|| assert_eq!(rt.block_on(exchange(&mut fails_over)), 200))
    });
    group.finish();
}

criterion_group!(benches, routing, failover_loopback);
criterion_main!(benches);
