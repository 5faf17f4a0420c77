//! AuthLayer, virtual keys, key stores and their cache.
#![cfg(all(feature = "auth", feature = "testing"))]

mod admin;
mod admin_channels;
mod admin_metering;
#[cfg(feature = "jwt")]
mod jwt;
mod keys;
mod layer;
mod readiness;
mod stack;
mod stores;

use http::Request;
use http_body_util::BodyExt;
use tollgate::Body;

/// A chat request on `path` for `model` with these headers.
pub fn chat(path: &str, model: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut req = Request::post(path);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(Body::from(format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}],"max_tokens":5}}"#
    )))
    .unwrap()
}

/// The JSON body of a response.
pub async fn json(res: http::Response<Body>) -> serde_json::Value {
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}
