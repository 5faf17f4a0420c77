//! Requests: OpenAI and Anthropic ingress to every target, and refusals.

use serde_json::{json, Value};
use tollgate::providers::{decode_request, encode_request};
use tollgate::Dialect;

const PNG: &str = "iVBORw0KGgo=";

/// An agent turn in OpenAI's shape: system, an image, a parallel tool call, two tool
/// results, and a follow-up question.
fn openai_agent_request() -> Value {
    json!({
        "model": "some-model",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather here?"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}},
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "time", "arguments": "{}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_b", "content": "{\"hour\":9}"},
            {"role": "user", "content": "And tomorrow?"},
        ],
        "tools": [
            {"type": "function", "function": {"name": "weather", "description": "Weather for a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
            {"type": "function", "function": {"name": "time", "parameters": {"type": "object"}}},
        ],
        "tool_choice": "required",
        "max_completion_tokens": 300,
        "temperature": 0.5,
        "stop": "END",
        "stream": true,
        "user": "u-1",
    })
}

fn to(dialect: Dialect, from: Dialect, body: &Value) -> Value {
    encode_request(dialect, &decode_request(from, body).unwrap()).unwrap()
}

#[test]
fn openai_to_anthropic() {
    let out = to(Dialect::Anthropic, Dialect::OpenAi, &openai_agent_request());
    let expected = json!({
        "model": "some-model",
        "system": "You are terse.",
        "max_tokens": 300,
        "temperature": 0.5,
        "stop_sequences": ["END"],
        "stream": true,
        "metadata": {"user_id": "u-1"},
        "tool_choice": {"type": "any"},
        "tools": [
            {"name": "weather", "description": "Weather for a city",
             "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
            {"name": "time", "input_schema": {"type": "object"}},
        ],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather here?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            ]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "call_a", "name": "weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_b", "name": "time", "input": {}},
            ]},
            // Both tool results, then the next question, in one user turn.
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_a", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "call_b", "content": "{\"hour\":9}"},
                {"type": "text", "text": "And tomorrow?"},
            ]},
        ],
    });
    assert_eq!(out, expected);
}

#[test]
fn openai_to_gemini() {
    let out = to(Dialect::Gemini, Dialect::OpenAi, &openai_agent_request());
    let expected = json!({
        "systemInstruction": {"parts": [{"text": "You are terse."}]},
        "contents": [
            {"role": "user", "parts": [
                {"text": "Weather here?"},
                {"inlineData": {"mimeType": "image/png", "data": PNG}},
            ]},
            {"role": "model", "parts": [
                {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "time", "args": {}}},
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "weather", "response": {"result": "sunny"}}},
                {"functionResponse": {"name": "time", "response": {"hour": 9}}},
                {"text": "And tomorrow?"},
            ]},
        ],
        "tools": [{"functionDeclarations": [
            {"name": "weather", "description": "Weather for a city",
             "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}}},
            {"name": "time", "parametersJsonSchema": {"type": "object"}},
        ]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        "generationConfig": {"maxOutputTokens": 300, "temperature": 0.5, "stopSequences": ["END"]},
    });
    assert_eq!(out, expected);
    assert_eq!(
        tollgate::providers::gemini::path("gemini-2.0-flash", true),
        "/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    );
}

#[test]
fn anthropic_to_openai() {
    let body = json!({
        "model": "claude-x",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
                {"type": "text", "text": "What is this?"},
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "cat"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "a cat"}]},
            ]},
        ],
        "tools": [{"name": "lookup", "description": "Search", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "lookup", "disable_parallel_tool_use": true},
        "top_p": 0.9,
        "stream": true,
    });
    let out = to(Dialect::OpenAi, Dialect::Anthropic, &body);
    let expected = json!({
        "model": "claude-x",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                {"type": "text", "text": "What is this?"},
            ]},
            {"role": "assistant", "content": "Let me look.", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"cat\"}"}},
            ]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "a cat"},
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "Search", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        "parallel_tool_calls": false,
        "max_tokens": 100,
        "top_p": 0.9,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    assert_eq!(out, expected);
}

#[test]
fn anthropic_to_gemini_and_defaults() {
    let body = json!({"model": "claude-x", "max_tokens": 5, "top_k": 3, "messages": [{"role": "user", "content": "hi"}]});
    let out = to(Dialect::Gemini, Dialect::Anthropic, &body);
    assert_eq!(
        out["contents"],
        json!([{"role": "user", "parts": [{"text": "hi"}]}])
    );
    assert_eq!(
        out["generationConfig"],
        json!({"maxOutputTokens": 5, "topK": 3})
    );
    // Anthropic requires max_tokens: a default is filled in for clients that set none.
    let openai = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let out = to(Dialect::Anthropic, Dialect::OpenAi, &openai);
    assert_eq!(out["max_tokens"], 4096);
    assert_eq!(
        out["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    );
}

/// What a target cannot express is a 400 naming the field.
#[test]
fn unsupported_features_are_400_naming_the_field() {
    let base = |extra: Value| {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let cases = [
        (Dialect::Anthropic, json!({"n": 2}), "n"),
        (
            Dialect::Anthropic,
            json!({"presence_penalty": 0.5}),
            "presence_penalty",
        ),
        (Dialect::Anthropic, json!({"seed": 7}), "seed"),
        (
            Dialect::Anthropic,
            json!({"response_format": {"type": "json_object"}}),
            "response_format",
        ),
        (Dialect::Anthropic, json!({"logprobs": true}), "logprobs"),
        (Dialect::Gemini, json!({"n": 3}), "n"),
        (
            Dialect::Gemini,
            json!({"parallel_tool_calls": false}),
            "parallel_tool_calls",
        ),
        (
            Dialect::Gemini,
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}),
            "messages[0].content[0]",
        ),
        (
            Dialect::Gemini,
            json!({"tools": [{"type": "web_search"}]}),
            "tools[0].type",
        ),
        (
            Dialect::Gemini,
            json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}),
            "messages[0].content[0]",
        ),
    ];
    for (target, extra, param) in cases {
        let decoded = decode_request(Dialect::OpenAi, &base(extra.clone()));
        let err = decoded
            .and_then(|req| encode_request(target, &req))
            .expect_err(&format!("{extra} to {target:?}"));
        assert_eq!(err.status(), 400, "{extra}");
        let json = err.to_json(Dialect::OpenAi);
        assert_eq!(json["error"]["param"], param, "{extra}: {json}");
    }
    // A thinking mode without a canonical form cannot go to OpenAI.
    let anthropic = json!({"model": "m", "max_tokens": 5, "thinking": {"type": "someday"},
        "messages": [{"role": "user", "content": "hi"}]});
    let err = encode_request(
        Dialect::OpenAi,
        &decode_request(Dialect::Anthropic, &anthropic).unwrap(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_json(Dialect::OpenAi)["error"]["param"],
        "thinking.type"
    );
}

/// Malformed requests are 400s naming the field, never panics.
#[test]
fn malformed_requests_name_the_field() {
    let cases = [
        (
            Dialect::OpenAi,
            json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            Dialect::OpenAi,
            json!({"model": "m", "messages": [{"role": "user", "content": 5}]}),
            "messages[0].content",
        ),
        (
            Dialect::OpenAi,
            json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
            "messages[0].tool_call_id",
        ),
        (
            Dialect::OpenAi,
            json!({"model": "m", "messages": [], "tools": [{"type": "function"}]}),
            "tools[0].function",
        ),
        (
            Dialect::Anthropic,
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]}]}),
            "messages[0].content[0].source.type",
        ),
        (
            Dialect::Anthropic,
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]}),
            "messages[0].content[0].tool_use_id",
        ),
        (
            Dialect::Anthropic,
            json!({"model": "m", "messages": [], "tool_choice": {"type": "sometimes"}}),
            "tool_choice.type",
        ),
    ];
    for (dialect, body, param) in cases {
        let err = decode_request(dialect, &body).expect_err(&body.to_string());
        assert_eq!(err.status(), 400);
        assert_eq!(
            err.to_json(Dialect::OpenAi)["error"]["param"],
            param,
            "{body}"
        );
    }
    // A tool call whose arguments are not JSON cannot become an Anthropic `input`.
    let bad_args = json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]});
    let err = encode_request(
        Dialect::Anthropic,
        &decode_request(Dialect::OpenAi, &bad_args).unwrap(),
    )
    .unwrap_err();
    assert_eq!(err.status(), 400);
}

/// OpenAI's reasoning models (o-series, GPT-5) refuse `max_tokens`: a translated request
/// to them carries `max_completion_tokens`; any other model keeps `max_tokens`, which
/// every OpenAI-compatible server knows.
#[test]
fn the_output_limit_field_follows_the_target_model() {
    let anthropic = |model: &str| {
        json!({"model": model, "max_tokens": 64,
               "messages": [{"role": "user", "content": "hi"}]})
    };
    for model in [
        "o1",
        "o3-mini",
        "o4-mini-2025-04-16",
        "gpt-5",
        "gpt-5-mini",
        "gpt-5.1",
        "openai/o3",
    ] {
        let out = to(Dialect::OpenAi, Dialect::Anthropic, &anthropic(model));
        assert_eq!(out["max_completion_tokens"], 64, "{model}: {out}");
        assert!(out.get("max_tokens").is_none(), "{model}: {out}");
    }
    for model in [
        "gpt-4o",
        "gpt-4.1-mini",
        "deepseek-chat",
        "o1x-custom",
        "qwen-o3",
        "my-gpt-5x",
    ] {
        let out = to(Dialect::OpenAi, Dialect::Anthropic, &anthropic(model));
        assert_eq!(out["max_tokens"], 64, "{model}: {out}");
        assert!(out.get("max_completion_tokens").is_none(), "{model}: {out}");
    }
}
