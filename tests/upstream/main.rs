//! `Upstream` against the mock provider over real loopback HTTP.
#![cfg(all(feature = "upstream", feature = "testing"))]

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tollgate::outcome::{End, Outcome};
use tollgate::testing::MockServer;
use tollgate::upstream::{ApiKey, Target, Upstream};
use tollgate::Body;
use tower::ServiceExt;

/// Guards against hangs only; no test relies on how long anything takes.
const HANG_GUARD: Duration = Duration::from_secs(20);

const SECRET: &str = "sk-upstream-secret-0123456789";

async fn setup() -> (MockServer, Upstream) {
    let mock = MockServer::start().await.unwrap();
    let target = Target::openai_compatible("mock", &mock.base_url())
        .unwrap()
        .with_api_key(ApiKey::new(SECRET));
    (mock, Upstream::new(target))
}

fn chat(body: Value) -> http::request::Builder {
    let _ = &body;
    Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", "Bearer client-key-must-not-leak")
}

fn chat_request(body: Value, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = chat(body.clone());
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder.body(Body::from(body.to_string())).unwrap()
}

fn hello(stream: bool) -> Value {
    json!({"model": "mock/echo", "stream": stream, "messages": [{"role": "user", "content": "hello there world"}]})
}

async fn call(up: &Upstream, req: Request<Body>) -> Response<Body> {
    tokio::time::timeout(HANG_GUARD, up.clone().oneshot(req))
        .await
        .expect("no hang")
        .unwrap()
}

async fn text(res: Response<Body>) -> String {
    let bytes = tokio::time::timeout(HANG_GUARD, res.into_body().collect())
        .await
        .expect("no hang");
    String::from_utf8(bytes.unwrap().to_bytes().to_vec()).unwrap()
}

fn outcome(res: &Response<Body>) -> Outcome {
    res.extensions()
        .get::<Outcome>()
        .cloned()
        .expect("every response is observed")
}

/// The JSON objects of the `data:` events of an SSE body.
fn events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn non_stream_is_forwarded_byte_for_byte_with_the_target_credential() {
    let (mock, up) = setup().await;
    let raw = r#"{"model":"mock/echo",  "messages":[{"role":"user","content":"hi"}],"x_vendor_field":{"keep":true}}"#;
    let req = chat(Value::Null).body(Body::from(raw)).unwrap();
    let res = call(&up, req).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-tollgate-target"], "mock");
    let out = outcome(&res);
    let body: Value = serde_json::from_str(&text(res).await).unwrap();
    assert!(body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("hi"));

    let seen = mock.provider().requests().pop().unwrap();
    assert_eq!(
        seen.body,
        Bytes::from(raw),
        "unknown fields and spacing survive"
    );
    assert_eq!(seen.headers["authorization"], format!("Bearer {SECRET}"));
    assert!(seen.headers.get("accept-encoding").is_none());

    let report = out.resolved().await;
    assert_eq!(report.end, End::Complete);
    let usage = report.usage.expect("usage read from the JSON body");
    assert_eq!(
        usage.prompt_tokens,
        body["usage"]["prompt_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        usage.completion_tokens,
        body["usage"]["completion_tokens"].as_u64().unwrap()
    );
}

#[tokio::test]
async fn stream_usage_is_metered_and_hidden_from_a_client_that_did_not_ask() {
    let (mock, up) = setup().await;
    let res = call(&up, chat_request(hello(true), &[])).await;
    assert_eq!(res.status(), 200);
    let out = outcome(&res);
    let body = text(res).await;
    let events = events(&body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(
        events.iter().all(|e| !e.contains("\"prompt_tokens\"")),
        "usage chunk hidden: {body}"
    );
    // The gateway asked the provider for usage on the client's behalf.
    let sent: Value =
        serde_json::from_slice(&mock.provider().requests().pop().unwrap().body).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let report = out.resolved().await;
    assert_eq!(report.end, End::Complete);
    assert!(
        report
            .usage
            .expect("metered from the hidden chunk")
            .completion_tokens
            > 0
    );
}

#[tokio::test]
async fn stream_usage_is_requested_when_the_client_said_false() {
    let (mock, up) = setup().await;
    let mut body = hello(true);
    body["stream_options"] = json!({"include_usage": false});
    let res = call(&up, chat_request(body, &[])).await;
    let out = outcome(&res);
    let text = text(res).await;
    assert!(!text.contains("\"prompt_tokens\""), "still hidden: {text}");
    let sent: Value =
        serde_json::from_slice(&mock.provider().requests().pop().unwrap().body).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    assert!(out.resolved().await.usage.is_some());
}

#[tokio::test]
async fn stream_usage_is_shown_when_the_client_asked() {
    let (_mock, up) = setup().await;
    let mut body = hello(true);
    body["stream_options"] = json!({"include_usage": true});
    let res = call(&up, chat_request(body, &[])).await;
    let out = outcome(&res);
    let body = text(res).await;
    let events = events(&body);
    let usage_chunk: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    let report = out.resolved().await;
    assert_eq!(
        report.usage.unwrap().completion_tokens,
        usage_chunk["usage"]["completion_tokens"].as_u64().unwrap()
    );
}

#[tokio::test]
async fn stream_frames_reach_the_client_before_the_provider_finishes() {
    let (mock, up) = setup().await;
    let res = call(
        &up,
        chat_request(
            hello(true),
            &[("x-mock-hold-last", "true"), ("x-mock-chunks", "4")],
        ),
    )
    .await;
    let mut body = res.into_body();
    // Role chunk plus the three first content chunks arrive while the last is held.
    let mut seen = String::new();
    while seen.matches("data: ").count() < 4 {
        let frame = tokio::time::timeout(HANG_GUARD, body.frame())
            .await
            .expect("chunks arrive while held");
        seen.push_str(std::str::from_utf8(&frame.unwrap().unwrap().into_data().unwrap()).unwrap());
    }
    assert!(!seen.contains("[DONE]"));
    mock.provider().release_held(1);
    let rest = tokio::time::timeout(HANG_GUARD, body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert!(String::from_utf8_lossy(&rest).ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn client_disconnect_cancels_the_provider_request() {
    let (mock, up) = setup().await;
    let res = call(
        &up,
        chat_request(
            hello(true),
            &[("x-mock-hold-last", "true"), ("x-mock-chunks", "4")],
        ),
    )
    .await;
    let out = outcome(&res);
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    drop(body); // the client goes away mid-stream
    tokio::time::timeout(HANG_GUARD, mock.provider().wait_for_cancelled(1))
        .await
        .expect("the provider saw the connection close");
    let report = out.resolved().await;
    assert_eq!(report.end, End::ClientGone);
    assert!(report.usage.is_none());
    assert!(report.bytes > 0);
}

#[tokio::test]
async fn provider_errors_come_back_in_the_client_dialect_without_keys() {
    let (_mock, up) = setup().await;
    let cases = [(401, 502), (429, 429), (500, 502), (503, 502), (400, 400)];
    for (mock_status, expected) in cases {
        let res = call(
            &up,
            chat_request(hello(false), &[("x-mock-status", &mock_status.to_string())]),
        )
        .await;
        assert_eq!(res.status().as_u16(), expected, "mock status {mock_status}");
        if mock_status == 429 {
            assert!(res.headers().contains_key("retry-after"));
        }
        let out = outcome(&res);
        let body = text(res).await;
        let json: Value = serde_json::from_str(&body).unwrap();
        assert!(json["error"]["message"].is_string(), "{body}");
        assert!(
            !body.contains("sk-mock") && !body.contains(SECRET),
            "no key in {body}"
        );
        assert_eq!(out.resolved().await.status.as_u16(), expected);
    }
}

#[tokio::test]
async fn anthropic_route_errors_are_anthropic_shaped() {
    let (_mock, up) = setup().await;
    let req = Request::post("/v1/messages")
        .body(Body::from("{broken"))
        .unwrap();
    let res = call(&up, req).await;
    assert_eq!(res.status(), 400);
    let json: Value = serde_json::from_str(&text(res).await).unwrap();
    assert_eq!(json["type"], "error");
    assert_eq!(json["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn reset_mid_stream_ends_cleanly_with_an_error_event() {
    let (_mock, up) = setup().await;
    let res = call(
        &up,
        chat_request(hello(true), &[("x-mock-reset-after", "2")]),
    )
    .await;
    assert_eq!(res.status(), 200, "committed after the first event");
    let out = outcome(&res);
    let body = text(res).await;
    let last: Value = serde_json::from_str(events(&body).last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "upstream_error", "{body}");
    assert!(!body.contains("[DONE]"));
    assert_eq!(out.resolved().await.end, End::UpstreamError);
}

#[tokio::test]
async fn garbage_from_the_provider_is_a_502() {
    let (_mock, up) = setup().await;
    for stream in [false, true] {
        let res = call(
            &up,
            chat_request(hello(stream), &[("x-mock-malformed", "true")]),
        )
        .await;
        assert_eq!(res.status(), StatusCode::BAD_GATEWAY, "stream: {stream}");
        let json: Value = serde_json::from_str(&text(res).await).unwrap();
        assert!(json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("malformed"));
    }
    let res = call(
        &up,
        chat_request(hello(false), &[("x-mock-reset-after", "0")]),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn unreachable_provider_is_a_502_and_slow_one_a_504() {
    // A port nothing listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = Target::openai_compatible("dead", &format!("http://127.0.0.1:{port}/v1")).unwrap();
    let res = call(&Upstream::new(dead), chat_request(hello(false), &[])).await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);

    let mock = MockServer::start().await.unwrap();
    let target = Target::openai_compatible("slow", &mock.base_url()).unwrap();
    let up = Upstream::builder()
        .default_target(target)
        .first_byte_timeout(Duration::from_millis(200))
        .idle_timeout(Duration::from_millis(200))
        .build();
    let res = call(
        &up,
        chat_request(hello(false), &[("x-mock-latency-ms", "10000")]),
    )
    .await;
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);

    // Idle mid-stream: the stream ends with a timeout event instead of hanging.
    let res = call(
        &up,
        chat_request(hello(true), &[("x-mock-chunk-delay-ms", "10000")]),
    )
    .await;
    assert_eq!(res.status(), 200);
    let body = text(res).await;
    let last: Value = serde_json::from_str(events(&body).last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "timeout_error", "{body}");
}

#[tokio::test]
async fn model_rename_rewrites_only_the_model() {
    let mock = MockServer::start().await.unwrap();
    let target = Target::openai_compatible("mock", &mock.base_url())
        .unwrap()
        .with_model("deployment-1");
    let res = call(&Upstream::new(target), chat_request(hello(false), &[])).await;
    assert_eq!(res.status(), 200);
    let sent: Value =
        serde_json::from_slice(&mock.provider().requests().pop().unwrap().body).unwrap();
    assert_eq!(sent["model"], "deployment-1");
    assert_eq!(sent["messages"], hello(false)["messages"]);
}

/// The provider URL is the target's base URL and the endpoint's path, with the client's
/// query string when there is one (the URL without one is made once per target).
#[tokio::test]
async fn the_provider_url_keeps_the_base_path_and_the_query() {
    let mock = MockServer::start().await.unwrap();
    let target = Target::openai_compatible("mock", &mock.base_url()).unwrap();
    let up = Upstream::new(target);
    for (path, expected) in [
        ("/v1/chat/completions", "/v1/chat/completions"),
        (
            "/v1/chat/completions?api-version=2024-10-21",
            "/v1/chat/completions?api-version=2024-10-21",
        ),
    ] {
        let body = hello(false);
        let req = Request::post(path)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        assert_eq!(call(&up, req).await.status(), 200);
        let sent = mock.provider().requests().pop().unwrap();
        assert_eq!(sent.uri.path_and_query().unwrap().as_str(), expected);
    }
}

/// An answer's `content-length`, when it has one, is its body's: kept from the provider
/// for an answer passed on as it is, made anew for a translated one. The provider gets
/// the `host` header of the target's address (made once for a plain-HTTP target).
#[tokio::test]
async fn answers_carry_their_own_length_and_the_provider_its_host() {
    let (mock, up) = setup().await;
    let anthropic = Request::post("/v1/messages")
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"model": "mock/echo", "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}]})
                .to_string(),
        ))
        .unwrap();
    for req in [chat_request(hello(false), &[]), anthropic] {
        let res = call(&up, req).await;
        assert_eq!(res.status(), 200);
        let length = res
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .map(|v| v.to_str().unwrap().parse::<usize>().unwrap());
        let body = text(res).await;
        if let Some(length) = length {
            assert_eq!(length, body.len(), "{body}");
        }
        let seen = mock.provider().requests().pop().unwrap();
        assert_eq!(seen.headers["host"], mock.addr().to_string());
        assert_eq!(seen.headers.get_all("host").iter().count(), 1);
    }
}
