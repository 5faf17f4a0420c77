//! Tests of routing and fail-over (issue 8): model resolution, strategies, circuit
//! breakers and health with paused time, key cool-downs, the retry budget, faults
//! injected by mock providers over loopback, and the composed stack end to end.
#![cfg(all(feature = "routing", feature = "failover", feature = "testing"))]

mod compose;
mod discipline;
mod faults;
mod health;
mod hedging;
mod probes;
mod resolve;
mod strategies;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response};
use http_body_util::BodyExt;
use serde_json::Value;
use tollgate::testing::MockProvider;
use tollgate::upstream::Target;
use tollgate::Body;
use tower::util::BoxCloneSyncService;
use tower::ServiceExt;

/// An OpenAI-dialect target at an address nothing listens on (in-process tests never
/// connect).
fn target(name: &str) -> Target {
    Target::openai_compatible(name, "http://127.0.0.1:9/v1").unwrap()
}

/// A chat completion request for `model`.
fn chat(model: &str, stream: bool) -> Request<Body> {
    let body = serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "hello there"}],
    });
    Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// An Anthropic messages request for `model`.
fn messages(model: &str, stream: bool) -> Request<Body> {
    let body = serde_json::json!({
        "model": model,
        "max_tokens": 64,
        "stream": stream,
        "messages": [{"role": "user", "content": "hello there"}],
    });
    Request::post("/v1/messages")
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .body(Body::from(body.to_string()))
        .unwrap()
}

type Svc = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// An in-process inner service sending each attempt to the mock named like its
/// target (the channel id), as `Upstream` would send it to the channel's provider.
fn dispatch(mocks: &[(&str, &MockProvider)]) -> Svc {
    let mocks: Arc<HashMap<String, MockProvider>> = Arc::new(
        mocks
            .iter()
            .map(|(name, mock)| (name.to_string(), (*mock).clone()))
            .collect(),
    );
    BoxCloneSyncService::new(tower::service_fn(move |req: Request<Body>| {
        let mocks = mocks.clone();
        async move {
            let name = req
                .extensions()
                .get::<Target>()
                .expect("fail-over sets a target")
                .name()
                .to_owned();
            let mock = mocks.get(&name).expect("a mock per channel").clone();
            mock.oneshot(req).await
        }
    }))
}

/// The whole body as bytes.
async fn bytes(res: Response<Body>) -> bytes::Bytes {
    res.into_body().collect().await.unwrap().to_bytes()
}

/// The whole body as JSON.
async fn json(res: Response<Body>) -> Value {
    serde_json::from_slice(&bytes(res).await).unwrap()
}

/// A response header as text.
fn header<'a>(res: &'a Response<Body>, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .to_str()
        .unwrap()
}
