//! `Upstream` translating between dialects, against the mock provider speaking each
//! dialect over real loopback HTTP: usage exact in the `Outcome`, credentials in each
//! provider's header, provider errors and garbage in the client's dialect.
#![cfg(all(feature = "upstream", feature = "testing"))]

use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tollgate::outcome::{End, Outcome, Usage};
use tollgate::testing::MockServer;
use tollgate::upstream::{ApiKey, Target, Upstream};
use tollgate::{Body, Dialect};
use tower::ServiceExt;

const HANG_GUARD: Duration = Duration::from_secs(20);
const SECRET: &str = "sk-upstream-secret-0123456789";

fn target(mock: &MockServer, dialect: Dialect) -> Target {
    Target::with_dialect(format!("mock-{dialect:?}"), &mock.base_url(), dialect)
        .unwrap()
        .with_api_key(ApiKey::new(SECRET))
}

fn request(client: Dialect, body: Value, headers: &[(&str, &str)]) -> Request<Body> {
    let path = match client {
        Dialect::Anthropic => "/v1/messages",
        _ => "/v1/chat/completions",
    };
    let mut builder = Request::post(path).header("content-type", "application/json");
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder.body(Body::from(body.to_string())).unwrap()
}

/// "hello there world" with a system prompt of two words: 5 prompt tokens.
fn chat(client: Dialect, stream: bool, tools: bool) -> Value {
    match client {
        Dialect::Anthropic => {
            let mut body = json!({"model": "mock/x", "max_tokens": 50, "stream": stream, "system": "be brief",
                "messages": [{"role": "user", "content": "hello there world"}]});
            if tools {
                body["tools"] = json!([{"name": "lookup", "input_schema": {"type": "object"}}]);
            }
            body
        }
        _ => {
            let mut body = json!({"model": "mock/x", "stream": stream, "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hello there world"}]});
            if stream {
                body["stream_options"] = json!({"include_usage": true});
            }
            if tools {
                body["tools"] = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]);
            }
            body
        }
    }
}

async fn call(
    up: Upstream,
    target: Target,
    mut req: Request<Body>,
) -> (Response<Body>, String, Outcome) {
    req.extensions_mut().insert(target);
    let res = tokio::time::timeout(HANG_GUARD, up.oneshot(req))
        .await
        .unwrap()
        .unwrap();
    let outcome = res
        .extensions()
        .get::<Outcome>()
        .cloned()
        .expect("observed");
    let (parts, body) = res.into_parts();
    let bytes = tokio::time::timeout(HANG_GUARD, body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    (Response::from_parts(parts, Body::empty()), text, outcome)
}

const CLIENTS: [Dialect; 2] = [Dialect::OpenAi, Dialect::Anthropic];
const PROVIDERS: [Dialect; 3] = [Dialect::OpenAi, Dialect::Anthropic, Dialect::Gemini];

/// Every ingress to every provider, plain and streamed: the client gets its own
/// dialect, and the outcome has the mock's exact usage (cached tokens included).
#[tokio::test]
async fn every_pair_answers_in_the_client_dialect_with_exact_usage() {
    let mock = MockServer::start().await.unwrap();
    let up = Upstream::builder().build();
    for client in CLIENTS {
        for provider in PROVIDERS {
            for stream in [false, true] {
                let req = request(
                    client,
                    chat(client, stream, false),
                    &[("x-mock-cached-tokens", "2"), ("x-mock-chunks", "3")],
                );
                let (res, body, outcome) = call(up.clone(), target(&mock, provider), req).await;
                let what = format!("{client:?} → {provider:?} stream={stream}: {body}");
                assert_eq!(res.status(), 200, "{what}");
                let report = outcome.resolved().await;
                assert_eq!(report.end, End::Complete, "{what}");
                // "be brief" + "hello there world"; "Mock answer to: hello there world".
                assert_eq!(
                    report.usage,
                    Some(Usage::new(5, 6).with_cached(2)),
                    "{what}"
                );
                assert_eq!(report.finish_reason.as_deref(), Some("stop"), "{what}");
                let text = answer_text(client, stream, &body);
                assert_eq!(text, "Mock answer to: hello there world", "{what}");
                if stream && client == Dialect::Anthropic {
                    assert!(body.contains("event: message_stop"), "{what}");
                }
                if stream && client == Dialect::OpenAi {
                    assert!(body.ends_with("data: [DONE]\n\n"), "{what}");
                    assert!(body.contains("\"cached_tokens\":2"), "{what}");
                }
            }
        }
    }
}

/// The answer's text, from a JSON body or an SSE stream in `client`'s dialect.
fn answer_text(client: Dialect, stream: bool, body: &str) -> String {
    if !stream {
        let v: Value = serde_json::from_str(body).unwrap();
        return match client {
            Dialect::Anthropic => v["content"][0]["text"].as_str().unwrap().to_owned(),
            _ => v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_owned(),
        };
    }
    match client {
        Dialect::Anthropic => stream_text(body, "/delta/text"),
        _ => stream_text(body, "/choices/0/delta/content"),
    }
}

/// Each provider gets its own credential header and path; the client's key never goes.
#[tokio::test]
async fn credentials_and_paths_per_provider() {
    let mock = MockServer::start().await.unwrap();
    let up = Upstream::builder().build();
    let cases = [
        (
            Dialect::OpenAi,
            "authorization",
            format!("Bearer {SECRET}"),
            "/v1/chat/completions",
        ),
        (
            Dialect::Anthropic,
            "x-api-key",
            SECRET.to_owned(),
            "/v1/messages",
        ),
        (
            Dialect::Gemini,
            "x-goog-api-key",
            SECRET.to_owned(),
            "/v1/models/mock/x:streamGenerateContent",
        ),
    ];
    for (provider, header, value, path) in cases {
        let req = request(
            Dialect::Anthropic,
            chat(Dialect::Anthropic, true, false),
            &[("x-api-key", "client-key-must-not-leak")],
        );
        let (res, _, _) = call(up.clone(), target(&mock, provider), req).await;
        assert_eq!(res.status(), 200);
        let seen = mock.provider().requests().pop().unwrap();
        assert_eq!(seen.uri.path(), path);
        assert_eq!(seen.headers[header], value.as_str());
        let all = format!("{:?}", seen.headers);
        assert!(!all.contains("client-key-must-not-leak"), "{all}");
        if provider == Dialect::Anthropic {
            assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
        }
        if provider == Dialect::Gemini {
            assert_eq!(seen.uri.query(), Some("alt=sse"));
        }
    }
}

/// The two-turn tool loop, OpenAI client to the Gemini and Anthropic mocks.
#[tokio::test]
async fn tool_loop_across_dialects() {
    let mock = MockServer::start().await.unwrap();
    let up = Upstream::builder().build();
    for provider in [Dialect::Anthropic, Dialect::Gemini] {
        let req = request(Dialect::OpenAi, chat(Dialect::OpenAi, false, true), &[]);
        let (_, body, outcome) = call(up.clone(), target(&mock, provider), req).await;
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["choices"][0]["finish_reason"], "tool_calls",
            "{provider:?} {body}"
        );
        let call_ = v["choices"][0]["message"]["tool_calls"][0].clone();
        assert_eq!(call_["function"]["name"], "lookup");
        assert_eq!(
            call_["function"]["arguments"],
            "{\"echo\":\"hello there world\"}"
        );
        assert_eq!(
            outcome.resolved().await.finish_reason.as_deref(),
            Some("tool_calls")
        );
        let mut second = chat(Dialect::OpenAi, false, true);
        let messages = second["messages"].as_array_mut().unwrap();
        messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call_.clone()]}));
        messages.push(
            json!({"role": "tool", "tool_call_id": call_["id"], "content": "sunny and warm"}),
        );
        let (_, body, outcome) = call(
            up.clone(),
            target(&mock, provider),
            request(Dialect::OpenAi, second, &[]),
        )
        .await;
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["choices"][0]["message"]["content"], "Tool said: sunny and warm",
            "{provider:?}"
        );
        // 2 + 3 + 3 (the tool result) prompt words.
        assert_eq!(
            outcome.resolved().await.usage.unwrap().prompt_tokens,
            8,
            "{provider:?}"
        );
    }
}

/// Provider errors are mapped to the client's dialect and status, keys redacted.
#[tokio::test]
async fn provider_errors_in_the_client_dialect() {
    let mock = MockServer::start().await.unwrap();
    let up = Upstream::builder().build();
    for client in CLIENTS {
        for provider in PROVIDERS {
            for (status, expected) in [(429, 429), (401, 502), (404, 404), (400, 400), (503, 502)] {
                let code = status.to_string();
                let req = request(
                    client,
                    chat(client, false, false),
                    &[("x-mock-status", code.as_str())],
                );
                let (res, body, _) = call(up.clone(), target(&mock, provider), req).await;
                let what = format!("{client:?} ← {provider:?} {status}: {body}");
                assert_eq!(res.status(), expected, "{what}");
                assert!(!body.contains("1234567890abcdef"), "redacted: {what}");
                let v: Value = serde_json::from_str(&body).unwrap();
                match client {
                    Dialect::Anthropic => assert_eq!(v["type"], "error", "{what}"),
                    _ => assert!(v["error"]["message"].is_string(), "{what}"),
                }
                if status == 429 {
                    assert_eq!(res.headers()["retry-after"], "1", "{what}");
                }
            }
        }
    }
}

/// Garbage from each provider dialect ends cleanly in the client's dialect.
#[tokio::test]
async fn garbage_and_resets_end_cleanly_in_the_client_dialect() {
    let mock = MockServer::start().await.unwrap();
    let up = Upstream::builder().build();
    for client in CLIENTS {
        for provider in PROVIDERS {
            // Malformed: a clean 502 whether streamed or not (nothing was committed).
            for stream in [false, true] {
                let req = request(
                    client,
                    chat(client, stream, false),
                    &[("x-mock-malformed", "true")],
                );
                let (res, body, _) = call(up.clone(), target(&mock, provider), req).await;
                assert_eq!(
                    res.status(),
                    502,
                    "{client:?} ← {provider:?} stream={stream}: {body}"
                );
            }
            // A reset mid-stream: committed, so it ends with an error event.
            let req = request(
                client,
                chat(client, true, false),
                &[("x-mock-reset-after", "1"), ("x-mock-chunks", "4")],
            );
            let (res, body, outcome) = call(up.clone(), target(&mock, provider), req).await;
            let what = format!("{client:?} ← {provider:?}: {body}");
            assert_eq!(res.status(), 200, "{what}");
            match client {
                Dialect::Anthropic => {
                    assert!(body.contains("event: error\ndata: {\"error\""), "{what}")
                }
                _ => assert!(
                    body.trim_end().ends_with("}}") && body.contains("data: {\"error\""),
                    "{what}"
                ),
            }
            assert!(
                !body.contains("[DONE]") && !body.contains("message_stop"),
                "{what}"
            );
            assert_eq!(outcome.resolved().await.end, End::UpstreamError, "{what}");
        }
    }
}

/// Same dialect in and out stays a byte pass-through for Anthropic too.
#[tokio::test]
async fn anthropic_to_anthropic_is_byte_for_byte() {
    let mock = MockServer::start().await.unwrap();
    let up = Upstream::builder().build();
    let raw = r#"{"model":"mock/x","max_tokens":5,  "messages":[{"role":"user","content":"hi"}],"x_vendor":{"keep":1}}"#;
    let req = Request::post("/v1/messages")
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "some-beta")
        .body(Body::from(raw))
        .unwrap();
    let (res, body, outcome) = call(up, target(&mock, Dialect::Anthropic), req).await;
    assert_eq!(res.status(), 200, "{body}");
    let seen = mock.provider().requests().pop().unwrap();
    assert_eq!(seen.body.as_ref(), raw.as_bytes());
    assert_eq!(seen.headers["anthropic-beta"], "some-beta");
    assert_eq!(outcome.resolved().await.usage, Some(Usage::new(1, 4)));
}

/// The string at `pointer` in every event of an SSE stream, concatenated.
fn stream_text(body: &str, pointer: &str) -> String {
    body.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter_map(|v| v.pointer(pointer)?.as_str().map(str::to_owned))
        .collect()
}

/// The concatenated `field` of every OpenAI stream chunk's first choice delta.
fn openai_deltas(body: &str, field: &str) -> String {
    stream_text(body, &format!("/choices/0/delta/{field}"))
}

/// An OpenAI client asking a Claude-dialect provider to reason: `reasoning_effort`
/// becomes Anthropic `thinking`, and the thinking comes back as `reasoning_content`
/// (plain and streamed) with its signature in `thinking_blocks`, counted in the
/// completion tokens the outcome meters.
#[tokio::test]
async fn reasoning_reaches_an_openai_client_from_a_thinking_provider() {
    let mock = MockServer::start().await.unwrap();
    let up = Upstream::builder().build();
    for stream in [false, true] {
        let mut body = chat(Dialect::OpenAi, stream, false);
        body["reasoning_effort"] = json!("low");
        let req = request(Dialect::OpenAi, body, &[("x-mock-chunks", "3")]);
        let (res, body, outcome) = call(up.clone(), target(&mock, Dialect::Anthropic), req).await;
        let what = format!("stream={stream}: {body}");
        assert_eq!(res.status(), 200, "{what}");

        // The provider was asked to think.
        let sent = mock.provider().requests();
        let sent: Value = serde_json::from_slice(&sent.last().unwrap().body).unwrap();
        assert_eq!(sent["thinking"]["type"], "enabled", "{sent}");
        assert!(sent["thinking"]["budget_tokens"].as_u64().unwrap() >= 1024);
        assert!(sent["max_tokens"].as_u64() > sent["thinking"]["budget_tokens"].as_u64());

        let (reasoning, text) = if stream {
            (
                openai_deltas(&body, "reasoning_content"),
                openai_deltas(&body, "content"),
            )
        } else {
            let v: Value = serde_json::from_str(&body).unwrap();
            let message = &v["choices"][0]["message"];
            assert_eq!(
                message["thinking_blocks"][0]["signature"]
                    .as_str()
                    .map(|s| s.starts_with("mock-signature-")),
                Some(true),
                "{what}"
            );
            (
                message["reasoning_content"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                message["content"].as_str().unwrap_or_default().to_owned(),
            )
        };
        assert_eq!(reasoning, "Thinking about: hello there world", "{what}");
        assert_eq!(text, "Mock answer to: hello there world", "{what}");
        if stream {
            assert!(
                body.contains("mock-signature-"),
                "the signature travels: {what}"
            );
        }
        // Thinking is output: 6 words of answer and 5 of thinking.
        let report = outcome.resolved().await;
        assert_eq!(
            report.usage.map(|u| u.completion_tokens),
            Some(11),
            "{what}"
        );
        assert_eq!(report.end, End::Complete, "{what}");
    }
}
