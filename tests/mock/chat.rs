//! Plain (non-stream) chat completions, tools, routes and recording.

use http::Request;
use serde_json::json;
use tollgate::testing::MockProvider;
use tollgate::Body;

use super::{call, chat, json, post};

#[tokio::test]
async fn answers_the_last_user_message_with_usage() {
    let mock = MockProvider::new();
    let body = json!({
        "model": "some-vendor/Model-X",
        "messages": [
            { "role": "system", "content": "be brief" },
            { "role": "user", "content": "first question" },
            { "role": "assistant", "content": "first answer" },
            { "role": "user", "content": [
                { "type": "text", "text": "what is" },
                { "type": "image_url", "image_url": { "url": "data:," } },
                { "type": "text", "text": "this?" }
            ] }
        ]
    });
    let res = call(&mock, post("chat/completions", &body, &[])).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let v = json(res).await;
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["id"], "chatcmpl-mock-1");
    assert_eq!(v["model"], "some-vendor/Model-X");
    let choice = &v["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(
        choice["message"]["content"],
        "Mock answer to: what is this?"
    );
    assert_eq!(choice["finish_reason"], "stop");
    // 2 + 2 + 2 + 3 words in, 6 words out.
    assert_eq!(v["usage"]["prompt_tokens"], 9);
    assert_eq!(v["usage"]["completion_tokens"], 6);
    assert_eq!(v["usage"]["total_tokens"], 15);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
}

#[tokio::test]
async fn answers_are_deterministic() {
    let mock = MockProvider::new();
    let a = json(call(&mock, post("chat/completions", &chat("same"), &[])).await).await;
    let b = json(call(&mock, post("chat/completions", &chat("same"), &[])).await).await;
    assert_eq!(a["choices"], b["choices"]);
    assert_eq!(a["usage"], b["usage"]);
    assert_eq!(b["id"], "chatcmpl-mock-2");
}

fn tools() -> serde_json::Value {
    json!([
        { "type": "function", "function": { "name": "get_weather", "parameters": { "type": "object" } } },
        { "type": "function", "function": { "name": "other" } }
    ])
}

#[tokio::test]
async fn calls_the_first_tool() {
    let mock = MockProvider::new();
    let mut body = chat("weather in \"Paris\"?");
    body["tools"] = tools();
    let v = json(call(&mock, post("chat/completions", &body, &[])).await).await;
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert!(choice["message"]["content"].is_null());
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["id"], "call_mock_1");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: serde_json::Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({ "echo": "weather in \"Paris\"?" }));
}

#[tokio::test]
async fn echoes_a_tool_result() {
    let mock = MockProvider::new();
    let body = json!({
        "model": "mock/echo",
        "tools": tools(),
        "messages": [
            { "role": "user", "content": "weather?" },
            { "role": "assistant", "content": null, "tool_calls": [{ "id": "call_mock_1", "type": "function",
              "function": { "name": "get_weather", "arguments": "{}" } }] },
            { "role": "tool", "tool_call_id": "call_mock_1", "content": "sunny, 21 C" }
        ]
    });
    let v = json(call(&mock, post("chat/completions", &body, &[])).await).await;
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Tool said: sunny, 21 C"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn bad_requests_are_openai_errors() {
    let mock = MockProvider::new();
    let cases = [
        (Body::from("{not json"), "body"),
        (Body::from("[1, 2]"), "body"),
        (
            Body::from(r#"{"messages": [{"role": "user", "content": "x"}]}"#),
            "model",
        ),
        (Body::from(r#"{"model": "m", "messages": []}"#), "messages"),
        (Body::from(r#"{"model": "m"}"#), "messages"),
    ];
    for (body, param) in cases {
        let req = Request::post("/v1/chat/completions").body(body).unwrap();
        let res = call(&mock, req).await;
        assert_eq!(res.status(), 400);
        let v = json(res).await;
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], param);
        assert!(v["error"]["message"].is_string());
        assert!(v["error"].get("code").is_some());
    }
}

#[tokio::test]
async fn unknown_routes_are_404() {
    let mock = MockProvider::new();
    for (method, path) in [
        ("POST", "/v1/completions"),
        ("GET", "/v1/chat/completions"),
        ("POST", "/v1/models"),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let res = call(&mock, req).await;
        assert_eq!(res.status(), 404, "{method} {path}");
        let v = json(res).await;
        assert_eq!(
            v["error"]["message"],
            format!("Invalid URL ({method} {path})")
        );
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
}

#[tokio::test]
async fn lists_models_under_any_prefix() {
    let mock = MockProvider::new();
    let req = Request::get("/openai/v1/models/")
        .body(Body::empty())
        .unwrap();
    let v = json(call(&mock, req).await).await;
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"mock/echo"), "{ids:?}");
    assert_eq!(v["data"][0]["object"], "model");
    assert_eq!(v["data"][0]["owned_by"], "tollgate-mock");
}

#[tokio::test]
async fn records_the_last_64_requests() {
    let mock = MockProvider::new();
    for i in 0..70 {
        let req = post(
            "chat/completions",
            &chat(&format!("q{i}")),
            &[("x-trace", "t")],
        );
        call(&mock, req).await;
    }
    assert_eq!(mock.request_count(), 70);
    let requests = mock.requests();
    assert_eq!(requests.len(), 64);
    let first = &requests[0];
    assert_eq!(first.method, http::Method::POST);
    assert_eq!(first.uri.path(), "/v1/chat/completions");
    assert_eq!(first.headers["x-trace"], "t");
    assert_eq!(first.body, chat("q6").to_string());
    assert_eq!(requests[63].body, chat("q69").to_string());
}
