//! `MetricsLayer` overhead: ns per request through parse + observe with and without the
//! metrics layer in front, with an instant inner service, JSON and SSE answers (the
//! outcome resolves and is recorded inside each iteration). Run:
//! `cargo bench --features metrics,metering --bench metrics`.

use std::convert::Infallible;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use http_body_util::BodyExt;
use tollgate::extension::ServedBy;
use tollgate::metering::PriceTable;
use tollgate::metrics::{MetricsLayer, Registry};
use tollgate::outcome::ObserveLayer;
use tollgate::request::ParseLayer;
use tollgate::Body;
use tower::{Service, ServiceBuilder, ServiceExt};

const REQUEST: &str = r#"{"model":"mock/echo","messages":[{"role":"user","content":"Say hello to the benchmark in a few words."}],"temperature":0,"max_tokens":64}"#;
const JSON_ANSWER: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":0,"model":"mock/echo","choices":[{"index":0,"message":{"role":"assistant","content":"Hello, benchmark."},"finish_reason":"stop"}],"usage":{"prompt_tokens":24,"completion_tokens":4,"total_tokens":28}}"#;

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

fn answer(body: Bytes, content_type: &'static str) -> Response<Body> {
    let mut res = Response::new(Body::from(body));
    res.headers_mut()
        .insert("content-type", content_type.parse().unwrap());
    res.extensions_mut().insert(ServedBy::new("mock", None));
    res
}

async fn drive<S>(svc: &mut S)
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(REQUEST))
        .unwrap();
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    black_box(res.into_body().collect().await.unwrap());
}

fn metrics(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("metrics");
    for (name, body, content_type) in [
        (
            "json",
            Bytes::from_static(JSON_ANSWER.as_bytes()),
            "application/json",
        ),
        ("sse", sse_answer(), "text/event-stream"),
    ] {
        let inner = move |_req: Request<Body>| {
            let body = body.clone();
            async move { Ok::<_, Infallible>(answer(body, content_type)) }
        };
        let mut without = ServiceBuilder::new()
            .layer(ParseLayer::new())
            .layer(ObserveLayer::new())
            .service_fn(inner.clone());
        group.bench_function(format!("{name}/parse_observe"), |b| {
            b.iter(|| rt.block_on(drive(&mut without)))
        });
        let registry = Registry::new();
        let mut with = ServiceBuilder::new()
            .layer(MetricsLayer::new(registry.clone()).prices(PriceTable::builtin()))
            .layer(ParseLayer::new())
            .layer(ObserveLayer::new())
            .service_fn(inner);
        group.bench_function(format!("{name}/metrics_parse_observe"), |b| {
            b.iter(|| rt.block_on(drive(&mut with)))
        });
        assert!(registry.render().contains("tollgate_requests_total"));
    }
    let registry = Registry::new();
    group.bench_function("render_small_registry", |b| {
        b.iter(|| black_box(registry.render()))
    });
    group.finish();
}

criterion_group!(benches, metrics);
criterion_main!(benches);
