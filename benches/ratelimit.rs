//! Rate-limit cost per request in memory: reserve (three scopes: client address, model,
//! global; requests, tokens and concurrency) plus the settlement when the body ends,
//! measured as the difference between the layer over an observing stack and the same
//! stack without it: without the rate-limit headers (`check_settle`) and with them
//! (`reserve_settle`, the default). Run: `cargo bench --bench ratelimit --features ratelimit`.

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use http_body_util::BodyExt;
use tollgate::extension::ClientAddr;
use tollgate::outcome::ObserveLayer;
use tollgate::ratelimit::{Limits, RateLimitLayer};
use tollgate::request::LlmRequest;
use tollgate::{Body, Endpoint};
use tower::{Service, ServiceBuilder, ServiceExt};

const REQUEST: &str = r#"{"model":"mock/echo","messages":[{"role":"user","content":"Say hello to the benchmark."}],"max_tokens":64}"#;
const ANSWER: &str = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"Hello."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":2}}"#;

fn request(parsed: &LlmRequest, client: u8) -> Request<Body> {
    let mut req = Request::post("/v1/chat/completions")
        .body(Body::from(parsed.raw().clone()))
        .unwrap();
    req.extensions_mut().insert(parsed.clone());
    req.extensions_mut()
        .insert(ClientAddr(SocketAddr::from(([10, 0, 0, client], 5000))));
    req
}

async fn drive<S>(svc: &mut S, req: Request<Body>)
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    black_box(res.into_body().collect().await.unwrap());
}

fn ratelimit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
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
    // Limits far above what the bench sends: every request is admitted and settled.
    let wide = Limits::new()
        .requests_per_minute(1 << 40)
        .tokens_per_minute(1 << 50)
        .max_parallel(1 << 20);

    let mut group = c.benchmark_group("ratelimit");
    let mut observe = ServiceBuilder::new()
        .layer(ObserveLayer::new())
        .service_fn(inner.clone());
    let mut client = 0u8;
    group.bench_function("observe_only", |b| {
        b.iter(|| {
            client = client.wrapping_add(1);
            rt.block_on(drive(&mut observe, request(&parsed, client)))
        })
    });

    let _guard = rt.enter(); // the store reads tokio's clock
    let mut global = ServiceBuilder::new()
        .layer(RateLimitLayer::new().global(Limits::new().requests_per_minute(1 << 40)))
        .layer(ObserveLayer::new())
        .service_fn(inner.clone());
    group.bench_function("memory_global_requests_reserve_settle", |b| {
        b.iter(|| {
            client = client.wrapping_add(1);
            rt.block_on(drive(&mut global, request(&parsed, client)))
        })
    });

    let three = RateLimitLayer::new()
        .per_client_ip(wide)
        .model("mock/echo", wide)
        .global(wide);
    // The check and the settlement alone (the issue's target), then with the six
    // rate-limit headers every response carries by default.
    for (name, layer) in [
        (
            "memory_three_scopes_check_settle",
            three.clone().headers(false),
        ),
        ("memory_three_scopes_reserve_settle", three),
    ] {
        let mut limited = ServiceBuilder::new()
            .layer(layer)
            .layer(ObserveLayer::new())
            .service_fn(inner.clone());
        group.bench_function(name, |b| {
            b.iter(|| {
                client = client.wrapping_add(1);
                rt.block_on(drive(&mut limited, request(&parsed, client)))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, ratelimit);
criterion_main!(benches);
