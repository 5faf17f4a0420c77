//! Per-layer cost: ns per request through each tollgate layer with an instant inner
//! service, next to the bare service. Run: `cargo bench --bench layers`.

use std::convert::Infallible;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use http_body_util::BodyExt;
use tollgate::outcome::{ObserveLayer, Outcome};
use tollgate::request::ParseLayer;
use tollgate::Body;
use tower::{Service, ServiceBuilder, ServiceExt};

const REQUEST: &str = r#"{"model":"mock/echo","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark in a few words."}],"temperature":0,"max_tokens":64}"#;
const JSON_ANSWER: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":0,"model":"mock/echo","choices":[{"index":0,"message":{"role":"assistant","content":"Hello, benchmark."},"finish_reason":"stop"}],"usage":{"prompt_tokens":24,"completion_tokens":4,"total_tokens":28}}"#;

/// The example gateway's end-to-end bench: the loadgen's request and the mock provider's
/// answer (issue 3's per-request profile).
const GATEWAY_REQUEST: &str =
    r#"{"model": "bench-model", "messages": [{"role": "user", "content": "hello bench"}]}"#;
const GATEWAY_ANSWER: &str = r#"{"choices":[{"finish_reason":"stop","index":0,"logprobs":null,"message":{"content":"Mock answer to: hello bench","refusal":null,"role":"assistant"}}],"created":1795498067,"id":"chatcmpl-mock-1","model":"bench-model","object":"chat.completion","system_fingerprint":"fp_mock","usage":{"completion_tokens":5,"prompt_tokens":2,"prompt_tokens_details":{"cached_tokens":0},"total_tokens":7}}"#;

fn sse_answer() -> Bytes {
    let mut out = String::new();
    for i in 0..8 {
        out.push_str(&format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i} \"}}}}],\"usage\":null}}\n\n"
        ));
    }
    out.push_str("data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":24,\"completion_tokens\":8}}\n\ndata: [DONE]\n\n");
    Bytes::from(out)
}

fn request(body: &'static str) -> Request<Body> {
    Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

fn answer(body: Bytes, content_type: &'static str) -> Response<Body> {
    let mut res = Response::new(Body::from(body));
    res.headers_mut()
        .insert("content-type", content_type.parse().unwrap());
    res
}

async fn drive<S>(svc: &mut S)
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    drive_with(svc, REQUEST).await
}

async fn drive_with<S>(svc: &mut S, body: &'static str)
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(request(body))
        .await
        .unwrap();
    let outcome = res.extensions().get::<Outcome>().cloned();
    black_box(res.into_body().collect().await.unwrap());
    black_box(outcome.map(|o| o.report()));
}

fn layers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let json = Bytes::from_static(JSON_ANSWER.as_bytes());
    let sse = sse_answer();
    let gateway_json = Bytes::from_static(GATEWAY_ANSWER.as_bytes());

    let inner = {
        move |_req: Request<Body>| {
            let json = json.clone();
            async move { Ok::<_, Infallible>(answer(json, "application/json")) }
        }
    };
    let inner_gateway = {
        move |_req: Request<Body>| {
            let json = gateway_json.clone();
            async move { Ok::<_, Infallible>(answer(json, "application/json")) }
        }
    };
    let inner_sse = {
        move |_req: Request<Body>| {
            let sse = sse.clone();
            async move { Ok::<_, Infallible>(answer(sse, "text/event-stream")) }
        }
    };

    let mut group = c.benchmark_group("layers");
    let mut bare = tower::service_fn(inner.clone());
    group.bench_function("bare_service", |b| b.iter(|| rt.block_on(drive(&mut bare))));

    let mut parse = ServiceBuilder::new()
        .layer(ParseLayer::new())
        .service_fn(inner.clone());
    group.bench_function("parse", |b| b.iter(|| rt.block_on(drive(&mut parse))));

    let mut observe_json = ServiceBuilder::new()
        .layer(ObserveLayer::new())
        .service_fn(inner.clone());
    group.bench_function("observe_json", |b| {
        b.iter(|| rt.block_on(drive(&mut observe_json)))
    });

    // The end-to-end bench's request and answer (issue 3).
    let mut parse_gateway = ServiceBuilder::new()
        .layer(ParseLayer::new())
        .service_fn(inner.clone());
    group.bench_function("parse_gateway_request", |b| {
        b.iter(|| rt.block_on(drive_with(&mut parse_gateway, GATEWAY_REQUEST)))
    });
    let mut observe_gateway = ServiceBuilder::new()
        .layer(ObserveLayer::new())
        .service_fn(inner_gateway);
    group.bench_function("observe_json_gateway_answer", |b| {
        b.iter(|| rt.block_on(drive(&mut observe_gateway)))
    });

    let mut bare_sse = tower::service_fn(inner_sse.clone());
    group.bench_function("bare_service_sse", |b| {
        b.iter(|| rt.block_on(drive(&mut bare_sse)))
    });

    let mut observe_sse = ServiceBuilder::new()
        .layer(ObserveLayer::new())
        .service_fn(inner_sse);
    group.bench_function("observe_sse", |b| {
        b.iter(|| rt.block_on(drive(&mut observe_sse)))
    });

    let mut stack = ServiceBuilder::new()
        .layer(ParseLayer::new())
        .layer(ObserveLayer::new())
        .service_fn(inner);
    group.bench_function("parse_observe_stack", |b| {
        b.iter(|| rt.block_on(drive(&mut stack)))
    });
    group.finish();
}

criterion_group!(benches, layers);
criterion_main!(benches);
