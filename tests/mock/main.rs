//! Tests of the mock provider (`tollgate::testing`): in-process through `tower` and over
//! loopback HTTP.
#![cfg(feature = "testing")]

mod chat;
mod embeddings;
mod scripting;
mod server;
mod stream;

use http::{Request, Response};
use http_body_util::BodyExt;
use serde_json::Value;
use tollgate::testing::MockProvider;
use tollgate::Body;
use tower::ServiceExt;

/// A `POST /v1/<path>` request with a JSON body and extra headers.
fn post(path: &str, body: &Value, headers: &[(&str, &str)]) -> Request<Body> {
    let mut req = Request::post(format!("/v1/{path}"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(Body::from(body.to_string())).unwrap()
}

/// A chat request with one user message.
fn chat(text: &str) -> Value {
    serde_json::json!({ "model": "mock/echo", "messages": [{ "role": "user", "content": text }] })
}

/// Calls the mock in-process.
async fn call(mock: &MockProvider, req: Request<Body>) -> Response<Body> {
    mock.clone().oneshot(req).await.unwrap()
}

/// The whole body as JSON.
async fn json(res: Response<Body>) -> Value {
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// The `data:` of every event of a complete stream body.
async fn events(res: Response<Body>) -> Vec<String> {
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    decode(&bytes)
}

/// The `data:` of every complete event in `bytes`.
fn decode(bytes: &[u8]) -> Vec<String> {
    let mut decoder = tollgate::sse::Decoder::new();
    decoder.push(bytes);
    std::iter::from_fn(|| decoder.next_event())
        .map(|event| event.data().unwrap_or_default().to_owned())
        .collect()
}

/// The JSON chunks of a stream, without the final `[DONE]` (asserted present).
fn chunks(events: &[String]) -> Vec<Value> {
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    events[..events.len() - 1]
        .iter()
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}
