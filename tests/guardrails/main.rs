//! `GuardrailLayer` with the PII redactor in front of the in-process mock: prompts and
//! answers, blocked and redacted, streamed and not, OpenAI and Anthropic dialects.
#![cfg(all(feature = "guardrails", feature = "testing"))]

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tollgate::guardrails::{GuardrailLayer, PiiMode, PiiRedactor};
use tollgate::testing::MockProvider;
use tollgate::Body;
use tower::{Layer, ServiceExt};

mod tools;

const EMAIL: &str = "jane.doe@example.com";
const PROMPT: &str =
    "Please reach jane.doe@example.com or +44 20 7946 0958 about card 4111 1111 1111 1111 today";

async fn send(
    layer: &GuardrailLayer,
    mock: &MockProvider,
    path: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> (u16, Bytes) {
    let mut req = Request::post(path)
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Body::from(body.to_string())).unwrap();
    let res = layer.layer(mock.clone()).oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    (status, res.into_body().collect().await.unwrap().to_bytes())
}

fn chat(stream: bool) -> Value {
    json!({"model": "mock/echo", "stream": stream, "messages": [{"role": "user", "content": PROMPT}]})
}

fn anthropic(stream: bool) -> Value {
    json!({"model": "mock/echo", "max_tokens": 100, "stream": stream,
        "system": [{"type": "text", "text": "Mail ops@example.org if stuck"}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}]})
}

/// The text of an OpenAI stream: its deltas joined.
fn openai_stream_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v.pointer("/choices/0/delta/content")?
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn prompts_are_redacted_before_the_provider_sees_them() {
    let mock = MockProvider::new();
    let layer = GuardrailLayer::new(PiiRedactor::new().sides(true, false));
    let (status, body) = send(&layer, &mock, "/v1/chat/completions", chat(false), &[]).await;
    assert_eq!(status, 200);
    let sent = String::from_utf8(mock.requests()[0].body.to_vec()).unwrap();
    assert!(
        sent.contains("Please reach [EMAIL] or [PHONE] about card [CARD] today"),
        "{sent}"
    );
    assert!(!sent.contains(EMAIL) && !sent.contains("4111"));
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "Mock answer to: Please reach [EMAIL] or [PHONE] about card [CARD] today"
    );

    // Anthropic: the system prompt and text blocks too.
    let (status, _) = send(&layer, &mock, "/v1/messages", anthropic(false), &[]).await;
    assert_eq!(status, 200);
    let sent = String::from_utf8(mock.requests()[1].body.to_vec()).unwrap();
    assert!(
        sent.contains("Mail [EMAIL] if stuck") && sent.contains("Please reach [EMAIL]"),
        "{sent}"
    );
}

#[tokio::test]
async fn blocked_prompts_never_reach_the_provider() {
    let mock = MockProvider::new();
    let layer = GuardrailLayer::new(PiiRedactor::new().mode(PiiMode::Block));
    let (status, body) = send(&layer, &mock, "/v1/chat/completions", chat(true), &[]).await;
    assert_eq!(status, 400);
    let err: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(err["error"]["code"], "content_policy_violation");
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert!(
        !String::from_utf8_lossy(&body).contains(EMAIL),
        "the reason never quotes the match"
    );

    let (status, body) = send(&layer, &mock, "/v1/messages", anthropic(false), &[]).await;
    assert_eq!(status, 400);
    let err: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test]
async fn answers_are_redacted_whole_and_streamed() {
    let mock = MockProvider::new();
    // Only answers are checked: the prompt goes through, the echo brings the PII back.
    let layer = GuardrailLayer::new(PiiRedactor::new().sides(false, true));
    let (_, body) = send(&layer, &mock, "/v1/chat/completions", chat(false), &[]).await;
    let whole: Value = serde_json::from_slice(&body).unwrap();
    let whole = whole["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        whole,
        "Mock answer to: Please reach [EMAIL] or [PHONE] about card [CARD] today"
    );
    assert!(String::from_utf8(mock.requests()[0].body.to_vec())
        .unwrap()
        .contains(EMAIL));

    // Streamed in many small chunks: every match is split across events.
    for chunks in ["3", "17", "60"] {
        let (status, body) = send(
            &layer,
            &mock,
            "/v1/chat/completions",
            chat(true),
            &[("x-mock-chunks", chunks)],
        )
        .await;
        assert_eq!(status, 200);
        let text = String::from_utf8_lossy(&body).into_owned();
        assert!(
            !text.contains("jane.doe") && !text.contains("7946"),
            "{chunks}: {text}"
        );
        assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
        assert_eq!(openai_stream_text(&body), whole, "{chunks} chunks");
    }

    // Anthropic stream: text deltas rewritten, every other event kept, with names.
    let (status, body) = send(
        &layer,
        &mock,
        "/v1/messages",
        anthropic(true),
        &[("x-mock-chunks", "25")],
    )
    .await;
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body).into_owned();
    assert!(!text.contains("jane.doe"), "{text}");
    assert!(text.contains("event: message_stop"));
    let joined: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|v| v["type"] == "content_block_delta")
        .filter_map(|v| v.pointer("/delta/text")?.as_str().map(str::to_owned))
        .collect();
    assert_eq!(joined, whole);
}

#[tokio::test]
async fn a_blocked_answer_ends_the_stream_with_an_error_event() {
    let mock = MockProvider::new();
    let layer = GuardrailLayer::new(PiiRedactor::new().mode(PiiMode::Block).sides(false, true));
    let (status, body) = send(&layer, &mock, "/v1/chat/completions", chat(false), &[]).await;
    assert_eq!(status, 400);
    let err: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(err["error"]["code"], "content_policy_violation");

    let (status, body) = send(
        &layer,
        &mock,
        "/v1/chat/completions",
        chat(true),
        &[("x-mock-chunks", "20")],
    )
    .await;
    assert_eq!(status, 200, "the stream was already committed");
    let text = String::from_utf8_lossy(&body).into_owned();
    assert!(!text.contains("jane.doe"), "{text}");
    assert!(
        !text.contains("[DONE]"),
        "a cut stream never looks complete: {text}"
    );
    let last = text.lines().rfind(|l| l.starts_with("data: ")).unwrap();
    let err: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(err["error"]["code"], "content_policy_violation");

    let (_, body) = send(&layer, &mock, "/v1/messages", anthropic(true), &[]).await;
    let text = String::from_utf8_lossy(&body).into_owned();
    assert!(text.contains("event: error"), "{text}");
    assert!(!text.contains("message_stop") && !text.contains("jane.doe"));
}

#[tokio::test]
async fn a_stream_with_several_choices_fails_closed() {
    // A provider streaming two choices (n = 2), one chunk per choice.
    let sse = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hello\"},\"finish_reason\":null}]}\n\n\
               data: {\"id\":\"c\",\"choices\":[{\"index\":1,\"delta\":{\"content\":\"mail jane.doe@example.com\"},\"finish_reason\":null}]}\n\n\
               data: [DONE]\n\n";
    let provider = tower::service_fn(move |_req: Request<Body>| async move {
        let mut res = http::Response::new(Body::from(sse));
        res.headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        Ok::<_, std::convert::Infallible>(res)
    });
    let layer = GuardrailLayer::new(PiiRedactor::new().sides(false, true));
    let mut body = chat(true);
    body["n"] = json!(2);
    let req = Request::post("/v1/chat/completions")
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = layer.layer(provider).oneshot(req).await.unwrap();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    assert!(!text.contains("jane.doe"), "{text}");
    assert!(text.contains("content_policy_violation"), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
}
