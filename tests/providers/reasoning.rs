//! Reasoning across dialects: the request setting (OpenAI `reasoning_effort`, Anthropic
//! `thinking`, Gemini `thinkingConfig`), reasoning in answers and earlier turns, in
//! streams, and reasoning tokens in usage. Fixtures follow the providers' published
//! formats (Anthropic extended thinking, DeepSeek's `reasoning_content`, LiteLLM's
//! `thinking_blocks`, Gemini thought summaries).

use serde_json::{json, Value};
use tollgate::outcome::Usage;
use tollgate::providers::*;
use tollgate::Dialect;

use super::{sse, translate_stream};

fn request(
    from: Dialect,
    to: Dialect,
    body: &Value,
) -> Result<Value, tollgate::error::GatewayError> {
    encode_request(to, &decode_request(from, body)?)
}

fn answer(from: Dialect, to: Dialect, body: &Value) -> Value {
    encode_response(
        to,
        &decode_response(from, body.to_string().as_bytes()).unwrap(),
    )
}

// ===== requests =====

/// An Anthropic tool loop with thinking on: the assistant turn starts with its signed
/// thinking block and a redacted one, as Anthropic asks them back.
fn anthropic_thinking_loop() -> Value {
    json!({
        "model": "claude-x", "max_tokens": 16000,
        "thinking": {"type": "enabled", "budget_tokens": 10000},
        "tools": [{"name": "weather", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "I should call the tool.", "signature": "EqQBsig"},
                {"type": "redacted_thinking", "data": "EmwKAhgB"},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}},
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "rain"}]},
        ],
    })
}

#[test]
fn anthropic_thinking_request_to_openai_and_gemini() {
    let body = anthropic_thinking_loop();
    let openai = request(Dialect::Anthropic, Dialect::OpenAi, &body).unwrap();
    assert_eq!(openai["reasoning_effort"], "medium", "10000 tokens");
    assert_eq!(openai["max_tokens"], 16000);
    // Earlier reasoning is not sent to an OpenAI-dialect provider.
    assert_eq!(
        openai["messages"][1],
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}},
        ]})
    );

    let gemini = request(Dialect::Anthropic, Dialect::Gemini, &body).unwrap();
    assert_eq!(
        gemini["generationConfig"],
        json!({"maxOutputTokens": 16000, "thinkingConfig": {"thinkingBudget": 10000, "includeThoughts": true}})
    );
    assert_eq!(
        gemini["contents"][1],
        json!({"role": "model", "parts": [{"functionCall": {"name": "weather", "args": {"city": "Oslo"}}}]})
    );

    let off = json!({"model": "claude-x", "max_tokens": 100, "thinking": {"type": "disabled"},
                     "messages": [{"role": "user", "content": "hi"}]});
    let openai = request(Dialect::Anthropic, Dialect::OpenAi, &off).unwrap();
    assert_eq!(openai.get("reasoning_effort"), None);
    let gemini = request(Dialect::Anthropic, Dialect::Gemini, &off).unwrap();
    assert_eq!(
        gemini["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 0})
    );
}

#[test]
fn openai_reasoning_effort_to_anthropic_budgets() {
    let base = |extra: Value| {
        let mut body =
            json!({"model": "claude-x", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let cases = [
        // No max_tokens: the answer keeps the default on top of the budget.
        (
            json!({"reasoning_effort": "high"}),
            json!({"type": "enabled", "budget_tokens": 24576}),
            24576 + anthropic::DEFAULT_MAX_TOKENS,
        ),
        (
            json!({"reasoning_effort": "low", "max_tokens": 3000}),
            json!({"type": "enabled", "budget_tokens": 1024}),
            3000,
        ),
        (
            json!({"reasoning_effort": "minimal", "max_completion_tokens": 5000}),
            json!({"type": "enabled", "budget_tokens": 1024}),
            5000,
        ),
        // A limit under the budget lowers the budget: both count reasoning within it.
        (
            json!({"reasoning_effort": "medium", "max_tokens": 2000}),
            json!({"type": "enabled", "budget_tokens": 1999}),
            2000,
        ),
        (
            json!({"reasoning_effort": "none", "max_tokens": 50}),
            json!({"type": "disabled"}),
            50,
        ),
    ];
    for (extra, thinking, max_tokens) in cases {
        let out = request(Dialect::OpenAi, Dialect::Anthropic, &base(extra.clone())).unwrap();
        assert_eq!(out["thinking"], thinking, "{extra}");
        assert_eq!(out["max_tokens"], max_tokens, "{extra}");
    }
    // Too small a limit for Anthropic's smallest budget: a 400 naming the field.
    let err = request(
        Dialect::OpenAi,
        Dialect::Anthropic,
        &base(json!({"reasoning_effort": "low", "max_tokens": 1000})),
    )
    .unwrap_err();
    assert_eq!(err.status(), 400);
    assert_eq!(err.to_json(Dialect::OpenAi)["error"]["param"], "max_tokens");
    // An effort OpenAI does not define is a 400 naming the field.
    let err = decode_request(
        Dialect::OpenAi,
        &base(json!({"reasoning_effort": "extreme"})),
    )
    .unwrap_err();
    assert_eq!(
        err.to_json(Dialect::OpenAi)["error"]["param"],
        "reasoning_effort"
    );
}

#[test]
fn openai_reasoning_effort_to_gemini() {
    for (effort, config) in [
        (
            "low",
            json!({"thinkingBudget": 1024, "includeThoughts": true}),
        ),
        (
            "medium",
            json!({"thinkingBudget": 8192, "includeThoughts": true}),
        ),
        (
            "high",
            json!({"thinkingBudget": 24576, "includeThoughts": true}),
        ),
        ("none", json!({"thinkingBudget": 0})),
    ] {
        let body = json!({"model": "gemini-x", "reasoning_effort": effort,
                          "messages": [{"role": "user", "content": "hi"}]});
        let out = request(Dialect::OpenAi, Dialect::Gemini, &body).unwrap();
        assert_eq!(
            out["generationConfig"]["thinkingConfig"], config,
            "{effort}"
        );
    }
}

#[test]
fn gemini_thinking_config_to_openai_and_anthropic() {
    let body = |config: Value| {
        json!({"model": "gemini-x", "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
               "generationConfig": {"thinkingConfig": config}})
    };
    let dynamic = body(json!({"thinkingBudget": -1, "includeThoughts": true}));
    let openai = request(Dialect::Gemini, Dialect::OpenAi, &dynamic).unwrap();
    assert_eq!(openai["reasoning_effort"], "medium");
    let anthropic = request(Dialect::Gemini, Dialect::Anthropic, &dynamic).unwrap();
    assert_eq!(
        anthropic["thinking"],
        json!({"type": "enabled", "budget_tokens": 8192})
    );

    let level = body(json!({"thinkingLevel": "HIGH"}));
    let openai = request(Dialect::Gemini, Dialect::OpenAi, &level).unwrap();
    assert_eq!(openai["reasoning_effort"], "high");

    let budget = body(json!({"thinkingBudget": 512}));
    let anthropic = request(Dialect::Gemini, Dialect::Anthropic, &budget).unwrap();
    assert_eq!(
        anthropic["thinking"]["budget_tokens"],
        anthropic::MIN_THINKING_BUDGET,
        "raised to Anthropic's smallest budget"
    );
    assert_eq!(
        request(Dialect::Gemini, Dialect::OpenAi, &budget).unwrap()["reasoning_effort"],
        "low"
    );

    let bad = body(json!({"thinkingBudget": -7}));
    let err = decode_request(Dialect::Gemini, &bad).unwrap_err();
    assert_eq!(
        err.to_json(Dialect::OpenAi)["error"]["param"],
        "generationConfig.thinkingConfig.thinkingBudget"
    );
}

/// An OpenAI client running a tool loop against an Anthropic model sends back the
/// `thinking_blocks` it received: Anthropic gets its signed blocks, in front.
#[test]
fn openai_thinking_blocks_go_back_to_anthropic_signed() {
    let body = json!({"model": "claude-x", "reasoning_effort": "low", "max_tokens": 4000, "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": null,
         "reasoning_content": "I should call the tool.",
         "thinking_blocks": [
            {"type": "thinking", "thinking": "I should call the tool.", "signature": "EqQBsig"},
            {"type": "redacted_thinking", "data": "EmwKAhgB"},
         ],
         "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "rain"},
        // A DeepSeek-style turn: reasoning without a signature cannot go to Anthropic.
        {"role": "assistant", "content": "Rain.", "reasoning_content": "Easy."},
        {"role": "user", "content": "Thanks"},
    ]});
    let out = request(Dialect::OpenAi, Dialect::Anthropic, &body).unwrap();
    assert_eq!(
        out["messages"][1]["content"],
        json!([
            {"type": "thinking", "thinking": "I should call the tool.", "signature": "EqQBsig"},
            {"type": "redacted_thinking", "data": "EmwKAhgB"},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}},
        ])
    );
    assert_eq!(
        out["messages"][3]["content"],
        json!([{"type": "text", "text": "Rain."}])
    );
    // The same loop from an Anthropic client reaches Anthropic unchanged through the
    // canonical form.
    let anthropic = anthropic_thinking_loop();
    let back = request(Dialect::Anthropic, Dialect::Anthropic, &anthropic).unwrap();
    assert_eq!(back["messages"][1], anthropic["messages"][1]);
    assert_eq!(back["thinking"], anthropic["thinking"]);
}

// ===== answers =====

#[test]
fn anthropic_thinking_answer_to_openai_and_gemini() {
    let message = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [
            {"type": "thinking", "thinking": "Two plus two.", "signature": "EqQBsig"},
            {"type": "redacted_thinking", "data": "EmwKAhgB"},
            {"type": "text", "text": "4"},
        ],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 50},
    });
    let out = answer(Dialect::Anthropic, Dialect::OpenAi, &message);
    let m = &out["choices"][0]["message"];
    assert_eq!(m["content"], "4");
    assert_eq!(m["reasoning_content"], "Two plus two.");
    assert_eq!(
        m["thinking_blocks"],
        json!([
            {"type": "thinking", "thinking": "Two plus two.", "signature": "EqQBsig"},
            {"type": "redacted_thinking", "data": "EmwKAhgB"},
        ])
    );
    // Anthropic does not count thinking apart: no reasoning_tokens claimed.
    assert_eq!(out["usage"]["completion_tokens"], 50);
    assert_eq!(out["usage"].get("completion_tokens_details"), None);

    let out = answer(Dialect::Anthropic, Dialect::Gemini, &message);
    assert_eq!(
        out["candidates"][0]["content"]["parts"],
        json!([{"text": "Two plus two.", "thought": true}, {"text": "4"}])
    );
}

/// DeepSeek's reasoner: `reasoning_content` next to `content`, reasoning tokens in
/// `completion_tokens_details` (and inside `completion_tokens`).
fn deepseek_answer() -> Value {
    json!({
        "id": "ds-1", "object": "chat.completion", "created": 1, "model": "deepseek-reasoner",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": "9.11 < 9.8", "reasoning_content": "Compare decimals."}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 70, "total_tokens": 90,
                  "completion_tokens_details": {"reasoning_tokens": 60}},
    })
}

#[test]
fn openai_reasoning_content_answer_to_anthropic_and_gemini() {
    let out = answer(Dialect::OpenAi, Dialect::Anthropic, &deepseek_answer());
    assert_eq!(
        out["content"],
        json!([
            {"type": "thinking", "thinking": "Compare decimals.", "signature": ""},
            {"type": "text", "text": "9.11 < 9.8"},
        ])
    );
    assert_eq!(
        out["usage"]["output_tokens"], 70,
        "thinking is billed output"
    );

    let out = answer(Dialect::OpenAi, Dialect::Gemini, &deepseek_answer());
    assert_eq!(
        out["candidates"][0]["content"]["parts"],
        json!([{"text": "Compare decimals.", "thought": true}, {"text": "9.11 < 9.8"}])
    );
    // Gemini counts thoughts apart from the candidates; the two add up to the bill.
    assert_eq!(
        out["usageMetadata"],
        json!({"promptTokenCount": 20, "candidatesTokenCount": 10, "thoughtsTokenCount": 60,
               "totalTokenCount": 90, "cachedContentTokenCount": 0})
    );
    let back = decode_response(Dialect::Gemini, out.to_string().as_bytes()).unwrap();
    assert_eq!(back.usage, Some(Usage::new(20, 70).with_reasoning(60)));
}

#[test]
fn gemini_thoughts_usage_is_exact_in_every_dialect() {
    let response = json!({
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "Let me think.", "thought": true},
            {"text": "Yes."},
        ]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 2, "thoughtsTokenCount": 30, "totalTokenCount": 40},
        "modelVersion": "gemini-x", "responseId": "r1",
    });
    let res = decode_response(Dialect::Gemini, response.to_string().as_bytes()).unwrap();
    assert_eq!(res.usage, Some(Usage::new(8, 32).with_reasoning(30)));
    let out = answer(Dialect::Gemini, Dialect::OpenAi, &response);
    assert_eq!(out["usage"]["completion_tokens"], 32);
    assert_eq!(
        out["usage"]["completion_tokens_details"]["reasoning_tokens"],
        30
    );
    assert_eq!(
        out["choices"][0]["message"]["reasoning_content"],
        "Let me think."
    );
    let out = answer(Dialect::Gemini, Dialect::Anthropic, &response);
    assert_eq!(out["usage"]["output_tokens"], 32);
    assert_eq!(out["content"][0]["type"], "thinking");
}

// ===== streams =====

/// An Anthropic stream with thinking: `thinking_delta`s, a `signature_delta`, then text.
fn anthropic_thinking_stream() -> String {
    let delta = |index: u32, delta: Value| {
        (
            Some("content_block_delta"),
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
        )
    };
    sse(&[
        (
            Some("message_start"),
            json!({"type": "message_start", "message": {"id": "msg_t", "type": "message", "role": "assistant",
            "model": "claude-x", "content": [], "stop_reason": null, "usage": {"input_tokens": 12, "output_tokens": 1}}}),
        ),
        (
            Some("content_block_start"),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
        ),
        delta(0, json!({"type": "thinking_delta", "thinking": "Two plus"})),
        delta(0, json!({"type": "thinking_delta", "thinking": " two."})),
        delta(
            0,
            json!({"type": "signature_delta", "signature": "EqQBsig"}),
        ),
        (
            Some("content_block_stop"),
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            Some("content_block_start"),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "EmwKAhgB"}}),
        ),
        (
            Some("content_block_stop"),
            json!({"type": "content_block_stop", "index": 1}),
        ),
        (
            Some("content_block_start"),
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}}),
        ),
        delta(2, json!({"type": "text_delta", "text": "4"})),
        (
            Some("content_block_stop"),
            json!({"type": "content_block_stop", "index": 2}),
        ),
        (
            Some("message_delta"),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 40}}),
        ),
        (Some("message_stop"), json!({"type": "message_stop"})),
    ])
}

fn deltas(events: &[(Option<String>, Value)]) -> Vec<Value> {
    events
        .iter()
        .filter(|(_, d)| d["choices"].get(0).is_some())
        .map(|(_, d)| d["choices"][0]["delta"].clone())
        .collect()
}

#[test]
fn anthropic_thinking_stream_to_openai() {
    let input = anthropic_thinking_stream();
    let expected = vec![
        json!({"role": "assistant", "reasoning_content": "Two plus"}),
        json!({"reasoning_content": " two."}),
        json!({"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": "EqQBsig"}]}),
        json!({"thinking_blocks": [{"type": "redacted_thinking", "data": "EmwKAhgB"}]}),
        json!({"content": "4"}),
        json!({}),
    ];
    for split in [1, 9, input.len()] {
        let out = translate_stream(&input, Dialect::Anthropic, Dialect::OpenAi, true, split);
        assert_eq!(deltas(&out), expected, "split {split}");
    }
}

#[test]
fn anthropic_thinking_stream_through_openai_and_back_keeps_the_signature() {
    // Anthropic → OpenAI client dialect → (another gateway hop) → Anthropic client.
    let openai = translate_stream(
        &anthropic_thinking_stream(),
        Dialect::Anthropic,
        Dialect::OpenAi,
        true,
        64,
    );
    let text: String = openai
        .iter()
        .map(|(_, d)| match d {
            Value::String(s) => format!("data: {s}\n\n"),
            d => format!("data: {d}\n\n"),
        })
        .collect();
    let anthropic = translate_stream(&text, Dialect::OpenAi, Dialect::Anthropic, false, 64);
    let view: Vec<Value> = anthropic
        .iter()
        .filter(|(n, _)| n.as_deref() != Some("message_start"))
        .map(|(n, d)| match n.as_deref() {
            Some("content_block_start") => json!(["start", d["index"], d["content_block"]]),
            Some("content_block_delta") => json!(["delta", d["index"], d["delta"]]),
            Some("content_block_stop") => json!(["stop", d["index"]]),
            other => json!([other]),
        })
        .collect();
    assert_eq!(
        view,
        vec![
            json!(["start", 0, {"type": "thinking", "thinking": "", "signature": ""}]),
            json!(["delta", 0, {"type": "thinking_delta", "thinking": "Two plus"}]),
            json!(["delta", 0, {"type": "thinking_delta", "thinking": " two."}]),
            json!(["delta", 0, {"type": "signature_delta", "signature": "EqQBsig"}]),
            json!(["stop", 0]),
            json!(["start", 1, {"type": "redacted_thinking", "data": "EmwKAhgB"}]),
            json!(["stop", 1]),
            json!(["start", 2, {"type": "text", "text": ""}]),
            json!(["delta", 2, {"type": "text_delta", "text": "4"}]),
            json!(["stop", 2]),
            json!(["message_delta"]),
            json!(["message_stop"]),
        ]
    );
}

#[test]
fn openai_reasoning_content_stream_to_anthropic_and_gemini() {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "ds-1", "object": "chat.completion.chunk", "model": "deepseek-reasoner",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let input = sse(&[
        (
            None,
            chunk(
                json!({"role": "assistant", "content": null, "reasoning_content": "Compare"}),
                Value::Null,
            ),
        ),
        (
            None,
            chunk(
                json!({"content": null, "reasoning_content": " decimals."}),
                Value::Null,
            ),
        ),
        (
            None,
            chunk(
                json!({"content": "9.11 < 9.8", "reasoning_content": null}),
                Value::Null,
            ),
        ),
        (None, chunk(json!({}), json!("stop"))),
        (
            None,
            json!({"id": "ds-1", "choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 70,
                   "completion_tokens_details": {"reasoning_tokens": 60}}}),
        ),
    ]) + "data: [DONE]\n\n";

    let out = translate_stream(&input, Dialect::OpenAi, Dialect::Anthropic, false, 7);
    let blocks: Vec<Value> = out
        .iter()
        .filter_map(|(n, d)| match n.as_deref() {
            Some("content_block_start") => Some(d["content_block"]["type"].clone()),
            Some("content_block_delta") => Some(d["delta"].clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        blocks,
        vec![
            json!("thinking"),
            json!({"type": "thinking_delta", "thinking": "Compare"}),
            json!({"type": "thinking_delta", "thinking": " decimals."}),
            json!("text"),
            json!({"type": "text_delta", "text": "9.11 < 9.8"}),
        ]
    );
    let (_, message_delta) = out
        .iter()
        .find(|(n, _)| n.as_deref() == Some("message_delta"))
        .unwrap();
    assert_eq!(message_delta["usage"]["output_tokens"], 70);

    let out = translate_stream(&input, Dialect::OpenAi, Dialect::Gemini, false, 7);
    let parts: Vec<Value> = out
        .iter()
        .flat_map(|(_, d)| {
            d["candidates"][0]["content"]["parts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        parts,
        vec![
            json!({"text": "Compare", "thought": true}),
            json!({"text": " decimals.", "thought": true}),
            json!({"text": "9.11 < 9.8"}),
        ]
    );
    let (_, last) = out.last().unwrap();
    assert_eq!(
        last["usageMetadata"],
        json!({"promptTokenCount": 20, "candidatesTokenCount": 10, "thoughtsTokenCount": 60,
               "totalTokenCount": 90, "cachedContentTokenCount": 0})
    );
}

#[test]
fn gemini_thought_stream_to_openai_and_anthropic() {
    let chunk = |parts: Value, finish: Option<&str>, thoughts: u64, candidates: u64| {
        let mut c = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if let Some(f) = finish {
            c["finishReason"] = json!(f);
        }
        json!({"candidates": [c], "modelVersion": "gemini-x", "responseId": "r7",
               "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": candidates, "thoughtsTokenCount": thoughts}})
    };
    let input = sse(&[
        (
            None,
            chunk(
                json!([{"text": "**Planning**", "thought": true}]),
                None,
                25,
                0,
            ),
        ),
        (None, chunk(json!([{"text": "Hi"}]), None, 25, 1)),
        (None, chunk(json!([{"text": "!"}]), Some("STOP"), 25, 2)),
    ]);
    let out = translate_stream(&input, Dialect::Gemini, Dialect::OpenAi, true, 5);
    assert_eq!(
        deltas(&out),
        vec![
            json!({"role": "assistant", "reasoning_content": "**Planning**"}),
            json!({"content": "Hi"}),
            json!({"content": "!"}),
            json!({}),
        ]
    );
    let usage = out.iter().find(|(_, d)| d["choices"] == json!([])).unwrap();
    assert_eq!(
        usage.1["usage"],
        json!({"prompt_tokens": 9, "completion_tokens": 27, "total_tokens": 36,
               "prompt_tokens_details": {"cached_tokens": 0},
               "completion_tokens_details": {"reasoning_tokens": 25}})
    );

    let out = translate_stream(&input, Dialect::Gemini, Dialect::Anthropic, false, 5);
    let names: Vec<&str> = out.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        out[2].1["delta"],
        json!({"type": "thinking_delta", "thinking": "**Planning**"})
    );
    assert_eq!(out[8].1["usage"]["output_tokens"], 27);
}

// ===== round trips =====

#[test]
fn reasoning_round_trips_where_the_dialect_can_express_it() {
    let mut original = ChatResponse::new("id-1", "m");
    original.content = vec![
        Part::Reasoning(Reasoning::signed("Think.", "EqQBsig")),
        Part::Reasoning(Reasoning::redacted("EmwKAhgB")),
        Part::Text("Done.".into()),
    ];
    original.finish = Some(FinishReason::Stop);
    original.usage = Some(Usage::new(5, 40));
    for dialect in [Dialect::OpenAi, Dialect::Anthropic] {
        let wire = encode_response(dialect, &original);
        let back = decode_response(dialect, wire.to_string().as_bytes()).unwrap();
        assert_eq!(back, original, "{dialect:?}: {wire}");
    }
    // Gemini keeps the text of the reasoning only.
    let wire = encode_response(Dialect::Gemini, &original);
    let back = decode_response(Dialect::Gemini, wire.to_string().as_bytes()).unwrap();
    assert_eq!(
        back.content,
        vec![
            Part::Reasoning(Reasoning::text("Think.")),
            Part::Text("Done.".into())
        ]
    );

    // The request setting.
    for (dialect, thinking) in [
        (Dialect::OpenAi, Thinking::Effort(Effort::High)),
        (Dialect::Anthropic, Thinking::Budget(3000)),
        (Dialect::Anthropic, Thinking::Off),
        (Dialect::Gemini, Thinking::Budget(3000)),
        (Dialect::Gemini, Thinking::Dynamic),
        (Dialect::Gemini, Thinking::Off),
    ] {
        let body = json!({"model": "m", "max_tokens": 8000, "messages": [{"role": "user", "content": "hi"}]});
        let mut req = decode_request(Dialect::OpenAi, &body).unwrap();
        req.thinking = Some(thinking);
        let wire = encode_request(dialect, &req).unwrap();
        let back = match dialect {
            Dialect::Gemini => gemini::decode_request(&wire, "m", false).unwrap(),
            _ => decode_request(dialect, &wire).unwrap(),
        };
        assert_eq!(back.thinking, Some(thinking), "{dialect:?}: {wire}");
    }
}
