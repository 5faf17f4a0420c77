//! `CacheLayer` in process against the mock provider: keys and tenants, policy and
//! per-request controls, what is never stored, stream replay, single-flight, readiness
//! and the Redis store.
#![cfg(all(feature = "cache", feature = "testing"))]

mod basics;
mod flight;
mod models;
mod readiness;
#[cfg(feature = "redis")]
mod redis;
mod semantic;
mod streams;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use tollgate::cache::{Cache, CacheLayer, CacheStore, DefaultMakeCacheKey};
use tollgate::testing::MockProvider;
use tollgate::Body;
use tower::{Layer, ServiceExt};

/// A deterministic request (temperature 0).
pub(crate) const DET: &str =
    r#"{"model":"mock/echo","temperature":0,"messages":[{"role":"user","content":"hello there"}]}"#;

/// The same stream request.
pub(crate) const DET_STREAM: &str = r#"{"model":"mock/echo","temperature":0,"stream":true,"messages":[{"role":"user","content":"hello there"}]}"#;

pub(crate) fn chat(body: &str) -> Request<Body> {
    Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

pub(crate) fn with_header(
    mut req: Request<Body>,
    name: &'static str,
    value: &str,
) -> Request<Body> {
    req.headers_mut().append(name, value.parse().unwrap());
    req
}

pub(crate) fn cache_status(res: &Response<Body>) -> &str {
    res.headers()
        .get("x-tollgate-cache")
        .map_or("(none)", |v| v.to_str().unwrap())
}

pub(crate) async fn bytes(res: Response<Body>) -> Bytes {
    res.into_body().collect().await.unwrap().to_bytes()
}

pub(crate) type Svc<C> = Cache<MockProvider, C, DefaultMakeCacheKey>;

/// A cache over a fresh mock.
pub(crate) fn setup() -> (Svc<tollgate::cache::MemoryStore>, MockProvider) {
    setup_with(CacheLayer::new())
}

pub(crate) fn setup_with<C: CacheStore + Clone>(layer: CacheLayer<C>) -> (Svc<C>, MockProvider) {
    let mock = MockProvider::new();
    (layer.layer(mock.clone()), mock)
}

/// Sends one request and reads the whole answer: (cache status, status code, body).
pub(crate) async fn send<C: CacheStore>(svc: &Svc<C>, req: Request<Body>) -> (String, u16, Bytes) {
    let res = svc.clone().oneshot(req).await.unwrap();
    let status = cache_status(&res).to_owned();
    let code = res.status().as_u16();
    (status, code, bytes(res).await)
}
