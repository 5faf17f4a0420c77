//! Complete answers and errors across dialects.

use serde_json::{json, Value};
use tollgate::providers::{decode_error, decode_response, encode_response};
use tollgate::Dialect;

fn translate(from: Dialect, to: Dialect, body: &Value) -> Value {
    let res = decode_response(from, body.to_string().as_bytes()).unwrap();
    encode_response(to, &res)
}

#[test]
fn anthropic_parallel_tools_and_cache_usage_to_openai() {
    let message = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [
            {"type": "thinking", "thinking": "...", "signature": "s"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "toolu_b", "name": "time", "input": {}},
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 10, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5, "output_tokens": 7},
    });
    let out = translate(Dialect::Anthropic, Dialect::OpenAi, &message);
    assert_eq!(out["id"], "msg_1");
    assert_eq!(out["object"], "chat.completion");
    let choice = &out["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], "Checking.");
    assert_eq!(
        choice["message"]["tool_calls"],
        json!([
            {"id": "toolu_a", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}},
            {"id": "toolu_b", "type": "function", "function": {"name": "time", "arguments": "{}"}},
        ])
    );
    // OpenAI's prompt count includes cached tokens (and cache writes).
    assert_eq!(
        out["usage"],
        json!({"prompt_tokens": 115, "completion_tokens": 7, "total_tokens": 122,
               "prompt_tokens_details": {"cached_tokens": 100}})
    );
}

#[test]
fn gemini_parallel_calls_and_cached_usage_to_openai_and_anthropic() {
    let response = json!({
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "thinking...", "thought": true},
            {"functionCall": {"name": "weather", "args": {"city": "Oslo"}}},
            {"functionCall": {"name": "time", "args": {}}},
        ]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 120, "candidatesTokenCount": 9, "thoughtsTokenCount": 3,
                          "cachedContentTokenCount": 100, "totalTokenCount": 132},
        "modelVersion": "gemini-2.0-flash", "responseId": "r1",
    });
    let out = translate(Dialect::Gemini, Dialect::OpenAi, &response);
    let choice = &out["choices"][0];
    assert_eq!(
        choice["finish_reason"], "tool_calls",
        "Gemini says STOP after calls"
    );
    assert_eq!(choice["message"]["content"], Value::Null);
    assert_eq!(choice["message"]["reasoning_content"], "thinking...");
    assert_eq!(choice["message"]["tool_calls"][0]["id"], "call_r1_0");
    assert_eq!(
        choice["message"]["tool_calls"][1]["function"]["name"],
        "time"
    );
    assert_eq!(out["usage"]["prompt_tokens"], 120);
    assert_eq!(out["usage"]["completion_tokens"], 12, "thoughts are output");
    assert_eq!(
        out["usage"]["completion_tokens_details"]["reasoning_tokens"],
        3
    );
    assert_eq!(out["usage"]["prompt_tokens_details"]["cached_tokens"], 100);

    let out = translate(Dialect::Gemini, Dialect::Anthropic, &response);
    assert_eq!(out["stop_reason"], "tool_use");
    assert_eq!(
        out["content"][0],
        json!({"type": "thinking", "thinking": "thinking...", "signature": ""})
    );
    assert_eq!(
        out["content"][1],
        json!({"type": "tool_use", "id": "call_r1_0", "name": "weather", "input": {"city": "Oslo"}})
    );
    assert_eq!(
        out["usage"],
        json!({"input_tokens": 20, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 0, "output_tokens": 12})
    );
}

#[test]
fn openai_to_anthropic_and_gemini() {
    let completion = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x",
        "choices": [{"index": 0, "finish_reason": "length",
                     "message": {"role": "assistant", "content": "Once upon"}}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 32}},
    });
    let out = translate(Dialect::OpenAi, Dialect::Anthropic, &completion);
    assert_eq!(
        out,
        json!({
            "id": "chatcmpl-1", "type": "message", "role": "assistant", "model": "gpt-x",
            "content": [{"type": "text", "text": "Once upon"}],
            "stop_reason": "max_tokens", "stop_sequence": null,
            "usage": {"input_tokens": 18, "cache_read_input_tokens": 32, "cache_creation_input_tokens": 0, "output_tokens": 2},
        })
    );
    let out = translate(Dialect::OpenAi, Dialect::Gemini, &completion);
    assert_eq!(out["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(
        out["candidates"][0]["content"]["parts"],
        json!([{"text": "Once upon"}])
    );
    assert_eq!(out["usageMetadata"]["cachedContentTokenCount"], 32);
}

#[test]
fn garbage_answers_are_502_in_every_dialect() {
    for dialect in [Dialect::OpenAi, Dialect::Anthropic, Dialect::Gemini] {
        for body in [
            &b"{\"id\":\"x\",\"choices\":["[..],
            b"[]",
            b"null",
            b"{}",
            b"\xff\xfe",
        ] {
            let err = decode_response(dialect, body).expect_err("garbage");
            assert_eq!(err.status(), 502, "{dialect:?} {body:?}");
        }
    }
}

#[test]
fn errors_of_each_dialect() {
    let openai = json!({"error": {"message": "bad model", "type": "invalid_request_error", "param": "model", "code": "model_not_found"}});
    let e = decode_error(Dialect::OpenAi, openai.to_string().as_bytes()).unwrap();
    assert_eq!(
        (e.message.as_str(), e.param.as_deref(), e.code.as_deref()),
        ("bad model", Some("model"), Some("model_not_found"))
    );

    let anthropic =
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
    let e = decode_error(Dialect::Anthropic, anthropic.to_string().as_bytes()).unwrap();
    assert_eq!(
        (e.message.as_str(), e.error_type.as_deref()),
        ("Overloaded", Some("overloaded_error"))
    );

    let gemini = json!([{"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT"}}]);
    let e = decode_error(Dialect::Gemini, gemini.to_string().as_bytes()).unwrap();
    assert_eq!(
        (e.message.as_str(), e.error_type.as_deref()),
        ("API key not valid.", Some("INVALID_ARGUMENT"))
    );

    assert!(decode_error(Dialect::Anthropic, b"<html>502</html>").is_none());
}
