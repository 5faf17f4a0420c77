//! Tool calls: arguments in answers (JSON and streamed, both dialects) and tool calls
//! and results in prompts are checked and redacted like text, and stay valid JSON.

use super::*;

const REDACTED: &str = "Please reach [EMAIL] or [PHONE] about card [CARD] today";

fn openai_tools(stream: bool) -> Value {
    json!({"model": "mock/echo", "stream": stream,
        "tools": [{"type": "function", "function": {"name": "lookup"}}],
        "messages": [{"role": "user", "content": PROMPT}]})
}

fn anthropic_tools(stream: bool) -> Value {
    json!({"model": "mock/echo", "max_tokens": 100, "stream": stream,
        "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": PROMPT}]})
}

/// The arguments of an OpenAI stream's first tool call: its deltas joined.
fn openai_stream_arguments(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v.pointer("/choices/0/delta/tool_calls/0/function/arguments")?
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// The input of an Anthropic stream's tool_use block: its `partial_json` joined.
fn anthropic_stream_input(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v.pointer("/delta/partial_json")?
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// The answers' side only: the mock echoes the prompt into the tool call's arguments.
fn answers(mode: PiiMode) -> GuardrailLayer {
    GuardrailLayer::new(PiiRedactor::new().mode(mode).sides(false, true))
}

#[tokio::test]
async fn tool_call_arguments_in_answers_are_redacted_and_stay_json() {
    let mock = MockProvider::new();
    let layer = answers(PiiMode::Redact);

    let (status, body) = send(
        &layer,
        &mock,
        "/v1/chat/completions",
        openai_tools(false),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    let arguments = answer["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap();
    let arguments: Value = serde_json::from_str(arguments).expect("valid JSON");
    assert_eq!(arguments, json!({"echo": REDACTED}));

    let (status, body) = send(&layer, &mock, "/v1/messages", anthropic_tools(false), &[]).await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["content"][0]["type"], "tool_use");
    assert_eq!(answer["content"][0]["input"], json!({"echo": REDACTED}));

    // Streamed, in pieces small enough to split every match across events.
    for chunks in ["1", "7", "40"] {
        let headers = [("x-mock-chunks", chunks)];
        let (status, body) = send(
            &layer,
            &mock,
            "/v1/chat/completions",
            openai_tools(true),
            &headers,
        )
        .await;
        assert_eq!(status, 200);
        let text = String::from_utf8_lossy(&body);
        assert!(
            !text.contains("jane.doe") && !text.contains("4111"),
            "{text}"
        );
        assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
        let arguments: Value =
            serde_json::from_str(&openai_stream_arguments(&body)).expect("valid JSON");
        assert_eq!(arguments, json!({"echo": REDACTED}), "{chunks} chunks");
        // The rest of the arguments comes before the chunk with the finish reason.
        let finish = text.find("\"finish_reason\":\"tool_calls\"").unwrap();
        assert!(text[finish..].find("arguments").is_none(), "{text}");

        let (status, body) = send(
            &layer,
            &mock,
            "/v1/messages",
            anthropic_tools(true),
            &headers,
        )
        .await;
        assert_eq!(status, 200);
        let text = String::from_utf8_lossy(&body);
        assert!(
            !text.contains("jane.doe") && !text.contains("4111"),
            "{text}"
        );
        let input: Value =
            serde_json::from_str(&anthropic_stream_input(&body)).expect("valid JSON");
        assert_eq!(input, json!({"echo": REDACTED}), "{chunks} chunks");
        let stop = text.find("content_block_stop").unwrap();
        assert!(text[stop..].find("partial_json").is_none(), "{text}");
        assert!(text.contains("event: message_stop"));
    }
}

#[tokio::test]
async fn pii_in_tool_call_arguments_blocks_the_answer() {
    let mock = MockProvider::new();
    let layer = answers(PiiMode::Block);
    let (status, body) = send(
        &layer,
        &mock,
        "/v1/chat/completions",
        openai_tools(false),
        &[],
    )
    .await;
    assert_eq!(status, 400);
    assert!(!String::from_utf8_lossy(&body).contains("jane.doe"));
    let err: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(err["error"]["code"], "content_policy_violation");

    let (status, _) = send(&layer, &mock, "/v1/messages", anthropic_tools(false), &[]).await;
    assert_eq!(status, 400);

    let headers = [("x-mock-chunks", "20")];
    let (_, body) = send(
        &layer,
        &mock,
        "/v1/chat/completions",
        openai_tools(true),
        &headers,
    )
    .await;
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("content_policy_violation"), "{text}");
    assert!(
        !text.contains("jane.doe") && !text.contains("[DONE]"),
        "{text}"
    );
    let (_, body) = send(
        &layer,
        &mock,
        "/v1/messages",
        anthropic_tools(true),
        &headers,
    )
    .await;
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("event: error") && !text.contains("jane.doe"),
        "{text}"
    );
}

#[tokio::test]
async fn tool_calls_and_results_in_prompts_are_checked() {
    let mock = MockProvider::new();
    let layer = GuardrailLayer::new(PiiRedactor::new().sides(true, false));
    let arguments = json!({"to": EMAIL, "note": "call +44 20 7946 0958", "n": 4}).to_string();
    let openai = json!({"model": "mock/echo", "messages": [
        {"role": "user", "content": "mail her"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "send", "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": "c1", "content": format!("sent to {EMAIL}")},
    ]});
    let (status, _) = send(&layer, &mock, "/v1/chat/completions", openai.clone(), &[]).await;
    assert_eq!(status, 200);
    let sent: Value = serde_json::from_slice(&mock.requests()[0].body).unwrap();
    let args = sent["messages"][1]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(args).expect("valid JSON"),
        json!({"to": "[EMAIL]", "note": "call [PHONE]", "n": 4})
    );
    assert_eq!(sent["messages"][2]["content"], "sent to [EMAIL]");

    let anthropic = json!({"model": "mock/echo", "max_tokens": 100, "messages": [
        {"role": "user", "content": "mail her"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "send",
            "input": {"to": [EMAIL], "n": 4}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
            "content": [{"type": "text", "text": format!("sent to {EMAIL}")}]}]},
    ]});
    let (status, _) = send(&layer, &mock, "/v1/messages", anthropic.clone(), &[]).await;
    assert_eq!(status, 200);
    let sent = String::from_utf8(mock.requests()[1].body.to_vec()).unwrap();
    assert!(!sent.contains("jane.doe"), "{sent}");
    let sent: Value = serde_json::from_str(&sent).unwrap();
    let input = sent
        .pointer("/messages/1/content/0/input")
        .or_else(|| sent.pointer("/messages/1/tool_calls/0/function/arguments"))
        .cloned()
        .unwrap();
    let input = match input {
        Value::String(args) => serde_json::from_str(&args).unwrap(),
        other => other,
    };
    assert_eq!(input, json!({"to": ["[EMAIL]"], "n": 4}));

    // Blocking: the request goes no further.
    let block = GuardrailLayer::new(PiiRedactor::new().mode(PiiMode::Block).sides(true, false));
    let before = mock.requests().len();
    for (path, body) in [
        ("/v1/chat/completions", openai),
        ("/v1/messages", anthropic),
    ] {
        let (status, body) = send(&block, &mock, path, body, &[]).await;
        assert_eq!(status, 400, "{path}");
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("error") && !text.contains("jane.doe"),
            "{text}"
        );
    }
    assert_eq!(mock.requests().len(), before);
}
