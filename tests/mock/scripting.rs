//! The `x-mock-*` headers on plain requests: latency, status, reset, malformed, bad values.

use std::time::Duration;

use http_body_util::BodyExt;
use tokio::time::Instant;
use tollgate::testing::MockProvider;

use super::{call, chat, json, post};

#[tokio::test(start_paused = true)]
async fn latency_delays_the_head() {
    let mock = MockProvider::new();
    let start = Instant::now();
    let req = post(
        "chat/completions",
        &chat("x"),
        &[("x-mock-latency-ms", "1500")],
    );
    let res = call(&mock, req).await;
    assert_eq!(res.status(), 200);
    assert_eq!(start.elapsed(), Duration::from_millis(1500));
    // The request is recorded as soon as it arrives, before the delay.
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test]
async fn status_answers_provider_shaped_errors() {
    let mock = MockProvider::new();
    let cases = [
        (400, "invalid_request_error", None),
        (401, "invalid_request_error", Some("invalid_api_key")),
        (403, "invalid_request_error", Some("permission_denied")),
        (404, "invalid_request_error", Some("model_not_found")),
        (418, "invalid_request_error", None),
        (429, "requests", Some("rate_limit_exceeded")),
        (500, "server_error", Some("server_error")),
        (502, "server_error", Some("server_error")),
        (503, "server_error", Some("overloaded")),
    ];
    for (status, error_type, code) in cases {
        let status_header = status.to_string();
        let req = post(
            "chat/completions",
            &chat("x"),
            &[("x-mock-status", &status_header)],
        );
        let res = call(&mock, req).await;
        assert_eq!(res.status(), status);
        assert_eq!(res.headers()["content-type"], "application/json");
        let retry_after = res.headers().get("retry-after").cloned();
        assert_eq!(retry_after.is_some(), status == 429, "{status}");
        let v = json(res).await;
        assert_eq!(v["error"]["type"], error_type, "{status}");
        assert_eq!(v["error"]["code"].as_str(), code, "{status}");
        let message = v["error"]["message"].as_str().unwrap();
        match status {
            401 => assert!(message.contains("sk-mock-1234567890abcdef"), "{message}"),
            404 => assert!(message.contains("`mock/echo`"), "{message}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn status_applies_to_every_route_even_with_a_bad_body() {
    let mock = MockProvider::new();
    let req = http::Request::post("/v1/embeddings")
        .header("x-mock-status", "503")
        .body(tollgate::Body::from("garbage"))
        .unwrap();
    assert_eq!(call(&mock, req).await.status(), 503);
}

#[tokio::test]
async fn reset_after_fails_a_plain_body_at_once() {
    let mock = MockProvider::new();
    let req = post(
        "chat/completions",
        &chat("x"),
        &[("x-mock-reset-after", "0")],
    );
    let res = call(&mock, req).await;
    assert_eq!(res.status(), 200);
    let err = res.into_body().collect().await.unwrap_err();
    assert!(err.to_string().contains("reset"), "{err}");
}

#[tokio::test]
async fn malformed_plain_body_is_truncated_json() {
    let mock = MockProvider::new();
    let req = post(
        "chat/completions",
        &chat("x"),
        &[("x-mock-malformed", "true")],
    );
    let res = call(&mock, req).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&bytes[..], br#"{"id":"chatcmpl-broken","choices":["#);
    assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_err());
}

#[tokio::test]
async fn cached_tokens_are_reported() {
    let mock = MockProvider::new();
    let req = post(
        "chat/completions",
        &chat("a b c"),
        &[("x-mock-cached-tokens", "2")],
    );
    let v = json(call(&mock, req).await).await;
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
}

#[tokio::test]
async fn invalid_header_values_are_400_naming_the_header() {
    let mock = MockProvider::new();
    let cases = [
        ("x-mock-latency-ms", "soon"),
        ("x-mock-chunk-delay-ms", "-5"),
        ("x-mock-chunks", "0"),
        ("x-mock-status", "200"),
        ("x-mock-reset-after", "many"),
        ("x-mock-malformed", "perhaps"),
        ("x-mock-hold-last", "2"),
        ("x-mock-cached-tokens", "-1"),
    ];
    for (header, value) in cases {
        let req = post("chat/completions", &chat("x"), &[(header, value)]);
        let res = call(&mock, req).await;
        assert_eq!(res.status(), 400, "{header}: {value}");
        let v = json(res).await;
        assert_eq!(v["error"]["param"], header);
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(header) && message.contains(value),
            "{message}"
        );
    }
}

#[tokio::test]
async fn instance_scripts_apply_per_mock() {
    let failing = MockProvider::new();
    let healthy = MockProvider::new();
    failing.set_script([("x-mock-status", "500")]);
    let req = || post("chat/completions", &chat("x"), &[]);
    assert_eq!(call(&failing, req()).await.status(), 500);
    assert_eq!(call(&healthy, req()).await.status(), 200);

    // Queued scripts go first, one per request; the request's own headers win.
    failing.queue_script([("x-mock-status", "429")]);
    failing.queue_script([("x-mock-status", "503"), ("x-mock-latency-ms", "0")]);
    assert_eq!(call(&failing, req()).await.status(), 429);
    assert_eq!(call(&failing, req()).await.status(), 503);
    assert_eq!(call(&failing, req()).await.status(), 500);
    let own = post("chat/completions", &chat("x"), &[("x-mock-status", "418")]);
    assert_eq!(call(&failing, own).await.status(), 418);

    // Clearing restores the plain mock; a clone shares the script.
    failing.clear_script();
    assert_eq!(call(&failing.clone(), req()).await.status(), 200);
    healthy.clone().set_script([("x-mock-malformed", "true")]);
    let res = call(&healthy, req()).await;
    assert_eq!(res.status(), 200);
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_err());
}
