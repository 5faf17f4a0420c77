//! Cache cost per request in memory, with a 4 KiB answer and an instant inner service:
//! a hit (key, lookup, replay, body read), and a miss (key, lookup, single-flight, fill,
//! store) next to the same stack without the layer (`observe_only`: the miss path adds
//! the difference), in the default store and in a small one; and the key alone. Run:
//! `cargo bench --bench cache --features cache,testing`.

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use http_body_util::BodyExt;
use tollgate::cache::{CacheLayer, CacheScope, DefaultMakeCacheKey, MakeCacheKey, MemoryStore};
use tollgate::outcome::ObserveLayer;
use tollgate::request::LlmRequest;
use tollgate::{Body, Endpoint};
use tower::{Service, ServiceBuilder, ServiceExt};

const REQUEST: &str = r#"{"model":"mock/echo","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark in a few words."}],"temperature":0,"max_tokens":64}"#;

/// An OpenAI answer of about 4 KiB.
fn answer() -> Bytes {
    let text = "lorem ipsum ".repeat(330);
    Bytes::from(
        serde_json::json!({
            "id": "chatcmpl-bench", "object": "chat.completion", "model": "mock/echo",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 660}
        })
        .to_string(),
    )
}

fn request(parsed: &LlmRequest, scope: Option<Arc<str>>) -> Request<Body> {
    let mut req = Request::post("/v1/chat/completions")
        .body(Body::from(parsed.raw().clone()))
        .unwrap();
    req.extensions_mut().insert(parsed.clone());
    if let Some(scope) = scope {
        req.extensions_mut().insert(CacheScope(scope));
    }
    req
}

async fn drive<S>(svc: &mut S, req: Request<Body>)
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    black_box(res.into_body().collect().await.unwrap());
}

fn cache(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let parsed = LlmRequest::parse(
        Endpoint::ChatCompletions,
        Bytes::from_static(REQUEST.as_bytes()),
    )
    .unwrap();
    let answer = answer();
    assert!((4000..4400).contains(&answer.len()), "{}", answer.len());
    let inner = move |_req: Request<Body>| {
        let answer = answer.clone();
        async move {
            let mut res = Response::new(Body::from(answer));
            res.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            Ok::<_, Infallible>(res)
        }
    };

    let mut group = c.benchmark_group("cache");
    // The default key alone (tenant scope, model, canonical body, SHA-256).
    let keyed = request(&parsed, Some(Arc::from("tenant")));
    let make_key = DefaultMakeCacheKey::new();
    group.bench_function("key", |b| {
        b.iter(|| black_box(make_key.make_cache_key(black_box(&keyed), &parsed)))
    });
    let mut observe = ServiceBuilder::new()
        .layer(ObserveLayer::new())
        .service_fn(inner.clone());
    group.bench_function("observe_only", |b| {
        b.iter(|| rt.block_on(drive(&mut observe, request(&parsed, None))))
    });

    let mut cached = ServiceBuilder::new()
        .layer(CacheLayer::new())
        .service_fn(inner.clone());
    rt.block_on(drive(&mut cached, request(&parsed, None)));
    group.bench_function("hit_4k", |b| {
        b.iter(|| rt.block_on(drive(&mut cached, request(&parsed, None))))
    });

    // A scope per request: every one misses, fills and stores. The default store (256
    // MiB) is full after ~60,000 of these answers, so most iterations also evict; its
    // index is then larger than the CPU caches. `miss_4k_16mib` is the same miss into a
    // store whose index stays in cache: the difference is the memory traffic of the
    // store's hash table at that size (see benches/README.md).
    let scopes: Vec<Arc<str>> = (0..4096).map(|i| Arc::from(format!("s{i}"))).collect();
    for (name, store) in [
        ("miss_4k", MemoryStore::new()),
        ("miss_4k_16mib", MemoryStore::with_capacity(16 << 20)),
    ] {
        let mut missing = ServiceBuilder::new()
            .layer(CacheLayer::new().store(store))
            .service_fn(inner.clone());
        let mut i = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                let scope = scopes[i % scopes.len()].clone();
                // Recycled scopes would hit: count on the bench's own iteration count.
                let scope = if i < scopes.len() {
                    scope
                } else {
                    Arc::from(format!("s{i}"))
                };
                rt.block_on(drive(&mut missing, request(&parsed, Some(scope))))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, cache);
criterion_main!(benches);
