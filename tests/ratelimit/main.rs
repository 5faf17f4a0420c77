//! `RateLimitLayer` in process against the mock provider: windows, refill, headers,
//! token settlement, concurrency release, dialects and readiness.
#![cfg(all(feature = "ratelimit", feature = "testing"))]

mod memory;
mod readiness;
#[cfg(feature = "redis")]
mod redis;
mod reservation;

use std::net::SocketAddr;

use http::{Request, Response};
use http_body_util::BodyExt;
use serde_json::Value;
use tollgate::extension::ClientAddr;
use tollgate::Body;

pub(crate) fn chat(body: &str) -> Request<Body> {
    Request::post("/v1/chat/completions")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

pub(crate) fn from_ip(mut req: Request<Body>, last: u8) -> Request<Body> {
    req.extensions_mut()
        .insert(ClientAddr(SocketAddr::from(([10, 0, 0, last], 5000))));
    req
}

pub(crate) const HELLO: &str =
    r#"{"model":"mock/echo","messages":[{"role":"user","content":"hello there"}]}"#;

pub(crate) fn header<'a>(res: &'a Response<Body>, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .to_str()
        .unwrap()
}

pub(crate) fn remaining(res: &Response<Body>, what: &str) -> u64 {
    header(res, &format!("x-ratelimit-remaining-{what}"))
        .parse()
        .unwrap()
}

pub(crate) async fn json(res: Response<Body>) -> Value {
    serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap()
}
