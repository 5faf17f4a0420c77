//! Streams across dialects, event by event, however the bytes are split.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use tollgate::providers::{StreamEncoder, TranslateStream};
use tollgate::Dialect;

use super::{parse_sse, sse, translate_stream};

/// An Anthropic stream: text, then two parallel tool calls, with a ping, an unknown
/// event type, and usage split between message_start and message_delta.
fn anthropic_stream() -> String {
    sse(&[
        (
            Some("message_start"),
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "content": [], "stop_reason": null,
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5, "output_tokens": 1}}}),
        ),
        (
            Some("content_block_start"),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        (Some("ping"), json!({"type": "ping"})),
        (
            Some("content_block_delta"),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
        ),
        (
            Some("content_block_delta"),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " there"}}),
        ),
        (
            Some("content_block_stop"),
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            Some("content_block_start"),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {}}}),
        ),
        (
            Some("content_block_delta"),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}),
        ),
        (
            Some("content_block_delta"),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"Oslo\"}"}}),
        ),
        (
            Some("content_block_stop"),
            json!({"type": "content_block_stop", "index": 1}),
        ),
        (
            Some("some_future_event"),
            json!({"type": "some_future_event", "x": 1}),
        ),
        (
            Some("content_block_start"),
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_b", "name": "time", "input": {}}}),
        ),
        (
            Some("content_block_delta"),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
        ),
        (
            Some("content_block_stop"),
            json!({"type": "content_block_stop", "index": 2}),
        ),
        (
            Some("message_delta"),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 30}}),
        ),
        (Some("message_stop"), json!({"type": "message_stop"})),
    ])
}

/// The `delta` and `finish_reason` of each OpenAI chunk, the usage chunk, and `[DONE]`.
fn openai_view(events: &[(Option<String>, Value)]) -> Vec<Value> {
    events
        .iter()
        .map(|(name, data)| {
            assert!(name.is_none(), "OpenAI streams have no event names");
            match data {
                Value::String(s) => json!(s),
                chunk if chunk["choices"] == json!([]) => json!({"usage": chunk["usage"]}),
                chunk => {
                    assert_eq!(chunk["object"], "chat.completion.chunk");
                    json!([
                        chunk["choices"][0]["delta"],
                        chunk["choices"][0]["finish_reason"]
                    ])
                }
            }
        })
        .collect()
}

#[test]
fn anthropic_to_openai_parallel_tools_and_split_usage() {
    let input = anthropic_stream();
    let expected = vec![
        json!([{"role": "assistant", "content": "Hi"}, null]),
        json!([{"content": " there"}, null]),
        json!([{"tool_calls": [{"index": 0, "id": "toolu_a", "type": "function", "function": {"name": "weather", "arguments": ""}}]}, null]),
        json!([{"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}, null]),
        json!([{"tool_calls": [{"index": 0, "function": {"arguments": "\"Oslo\"}"}}]}, null]),
        json!([{"tool_calls": [{"index": 1, "id": "toolu_b", "type": "function", "function": {"name": "time", "arguments": ""}}]}, null]),
        json!([{"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}, null]),
        json!([{}, "tool_calls"]),
        json!({"usage": {"prompt_tokens": 115, "completion_tokens": 30, "total_tokens": 145, "prompt_tokens_details": {"cached_tokens": 100}}}),
        json!("[DONE]"),
    ];
    for split in [1, 7, input.len()] {
        let out = translate_stream(&input, Dialect::Anthropic, Dialect::OpenAi, true, split);
        assert_eq!(openai_view(&out), expected, "split {split}");
    }
    // Without include_usage the client sees no usage chunk.
    let out = translate_stream(&input, Dialect::Anthropic, Dialect::OpenAi, false, 64);
    assert_eq!(openai_view(&out).len(), expected.len() - 1);
}

#[test]
fn openai_parallel_tool_calls_to_anthropic() {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "c1", "object": "chat.completion.chunk", "model": "gpt-x",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let input = sse(&[
        (None, chunk(json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "weather", "arguments": ""}}]}), Value::Null)),
        (None, chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":\"Oslo\"}"}}]}), Value::Null)),
        (None, chunk(json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "time", "arguments": "{}"}}]}), Value::Null)),
        (None, chunk(json!({}), json!("tool_calls"))),
        (None, json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 12, "prompt_tokens_details": {"cached_tokens": 32}}})),
        (None, json!("[DONE]")),
    ]).replace("data: \"[DONE]\"", "data: [DONE]");
    let out = translate_stream(&input, Dialect::OpenAi, Dialect::Anthropic, false, 5);
    let names: Vec<&str> = out
        .iter()
        .map(|(n, _)| n.as_deref().expect("event: line"))
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for (name, data) in &out {
        assert_eq!(
            data["type"],
            name.as_deref().unwrap(),
            "data.type matches the event name"
        );
    }
    assert_eq!(out[0].1["message"]["id"], "c1");
    assert_eq!(
        out[1].1["content_block"],
        json!({"type": "tool_use", "id": "call_a", "name": "weather", "input": {}})
    );
    assert_eq!(
        out[2].1["delta"],
        json!({"type": "input_json_delta", "partial_json": "{\"city\":\"Oslo\"}"})
    );
    assert_eq!(out[4].1["index"], 1);
    assert_eq!(out[5].1["index"], 1);
    assert_eq!(out[7].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(
        out[7].1["usage"],
        json!({"input_tokens": 8, "cache_read_input_tokens": 32, "cache_creation_input_tokens": 0, "output_tokens": 12})
    );
}

fn gemini_stream() -> String {
    let chunk = |parts: Value, finish: Option<&str>, candidates: u64| {
        let mut c = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if let Some(f) = finish {
            c["finishReason"] = json!(f);
        }
        json!({"candidates": [c], "modelVersion": "gemini-x", "responseId": "r9",
               "usageMetadata": {"promptTokenCount": 50, "cachedContentTokenCount": 20, "candidatesTokenCount": candidates}})
    };
    sse(&[
        (None, chunk(json!([{"text": "Hel"}]), None, 1)),
        (None, chunk(json!([{"text": "lo"}]), None, 2)),
        (None, chunk(json!([{"text": "!"}]), Some("STOP"), 3)),
    ])
}

#[test]
fn gemini_cumulative_usage_is_counted_once() {
    let out = translate_stream(&gemini_stream(), Dialect::Gemini, Dialect::OpenAi, true, 3);
    let view = openai_view(&out);
    assert_eq!(
        view[0],
        json!([{"role": "assistant", "content": "Hel"}, null])
    );
    assert_eq!(view[3], json!([{}, "stop"]));
    assert_eq!(
        view[4],
        json!({"usage": {"prompt_tokens": 50, "completion_tokens": 3, "total_tokens": 53, "prompt_tokens_details": {"cached_tokens": 20}}})
    );
    assert_eq!(view[5], json!("[DONE]"));

    let out = translate_stream(
        &gemini_stream(),
        Dialect::Gemini,
        Dialect::Anthropic,
        false,
        11,
    );
    // Gemini reports input usage from the first chunk: message_start has it.
    assert_eq!(out[0].1["message"]["usage"]["input_tokens"], 30);
    assert_eq!(out[0].1["message"]["usage"]["cache_read_input_tokens"], 20);
    let last_delta = out
        .iter()
        .find(|(n, _)| n.as_deref() == Some("message_delta"))
        .unwrap();
    assert_eq!(last_delta.1["usage"]["output_tokens"], 3);
    assert_eq!(last_delta.1["delta"]["stop_reason"], "end_turn");
    assert_eq!(out.last().unwrap().0.as_deref(), Some("message_stop"));
}

#[test]
fn gemini_function_call_stream_to_openai() {
    let input = sse(&[(
        None,
        json!({"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "weather", "args": {"city": "Oslo"}}},
        {"functionCall": {"name": "time", "args": {}}},
    ]}, "finishReason": "STOP"}], "responseId": "r2", "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 4}}),
    )]);
    let view = openai_view(&translate_stream(
        &input,
        Dialect::Gemini,
        Dialect::OpenAi,
        false,
        1000,
    ));
    assert_eq!(view[0][0]["tool_calls"][0]["id"], "call_r2_0");
    assert_eq!(
        view[1][0]["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Oslo\"}"
    );
    assert_eq!(view[2][0]["tool_calls"][0]["index"], 1);
    assert_eq!(view[4], json!([{}, "tool_calls"]));
}

/// Garbage from an upstream in each dialect ends cleanly in the client's dialect.
#[test]
fn garbage_ends_with_an_error_event_in_the_client_dialect() {
    let anthropic_start = sse(&[(
        Some("message_start"),
        json!({"type": "message_start", "message": {"id": "m", "model": "x", "usage": {"input_tokens": 1}}}),
    )]);
    let openai_start = sse(&[(
        None,
        json!({"id": "c", "choices": [{"index": 0, "delta": {"content": "a"}}]}),
    )]);
    let cases = [
        (Dialect::OpenAi, format!("{openai_start}data: {{\"choices\":[{{\"delta\n\n")),
        (Dialect::OpenAi, format!("{openai_start}data: {{\"error\":{{\"message\":\"boom\",\"type\":\"server_error\"}}}}\n\n")),
        (Dialect::Anthropic, format!("{anthropic_start}event: content_block_delta\ndata: {{\"type\":\"content_block_delta\"\n\n")),
        (Dialect::Anthropic, format!("{anthropic_start}event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}}}\n\n")),
        (Dialect::Gemini, "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]}\n\ndata: {\"candidates\": [\n\n".to_owned()),
        (Dialect::Gemini, "data: {\"error\":{\"code\":500,\"message\":\"Internal\",\"status\":\"INTERNAL\"}}\n\n".to_owned()),
    ];
    for (from, input) in cases {
        // Trailing events after the error are ignored.
        let input = format!("{input}{openai_start}");
        let openai = translate_stream(&input, from, Dialect::OpenAi, true, 4);
        let (_, last) = openai.last().unwrap();
        assert!(
            last["error"]["message"].is_string(),
            "{from:?} → OpenAI: {openai:?}"
        );
        assert!(
            !openai.iter().any(|(_, d)| d == "[DONE]"),
            "no [DONE] after an error"
        );

        let anthropic = translate_stream(&input, from, Dialect::Anthropic, true, 4);
        let (name, last) = anthropic.last().unwrap();
        assert_eq!(
            name.as_deref(),
            Some("error"),
            "{from:?} → Anthropic: {anthropic:?}"
        );
        assert_eq!(last["type"], "error");
        assert!(last["error"]["message"].is_string());
    }
}

#[tokio::test]
async fn translate_stream_body_ends_a_cut_stream_with_an_error_event() {
    // A stream that stops before message_stop.
    let cut = anthropic_stream();
    let cut = &cut[..cut.find("event: message_delta").unwrap()];
    let body = TranslateStream::new(
        Full::new(Bytes::from(cut.to_owned())),
        Dialect::Anthropic,
        StreamEncoder::new(Dialect::OpenAi, false),
    );
    let bytes = body.collect().await.unwrap().to_bytes();
    let events = parse_sse(std::str::from_utf8(&bytes).unwrap());
    let (_, last) = events.last().unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ended before"),
        "{last}"
    );
    // The complete stream translates with no error event.
    let body = TranslateStream::new(
        Full::new(Bytes::from(anthropic_stream())),
        Dialect::Anthropic,
        StreamEncoder::new(Dialect::OpenAi, false),
    );
    let bytes = body.collect().await.unwrap().to_bytes();
    assert!(std::str::from_utf8(&bytes)
        .unwrap()
        .ends_with("data: [DONE]\n\n"));
}
