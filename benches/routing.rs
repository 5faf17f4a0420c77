//! Routing + fail-over cost per request on the healthy path: model resolution over
//! four channels (weighted random), the candidates and target extensions, one attempt
//! through `Failover` (a fresh request from the buffered bytes), statistics and health
//! fed from the answer, and the attempt headers; the inner service answers at once.
//! The request arrives parsed (`LlmRequest` in its extensions), as it does behind the
//! layers that parse it. Run: `cargo bench --bench routing --features routing,failover`.

use std::convert::Infallible;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use tollgate::failover::FailoverLayer;
use tollgate::request::LlmRequest;
use tollgate::routing::{Channel, LowestLatency, Router, RoutingLayer, WeightedRandom};
use tollgate::upstream::{ApiKey, Target};
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

criterion_group!(benches, routing);
criterion_main!(benches);
