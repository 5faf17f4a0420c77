//! OpenAI chat completions (non-stream) and errors to and from the canonical form.

use serde_json::{json, Value};

use crate::error::GatewayError;
use crate::outcome::Usage;
use crate::providers::canonical::*;
use crate::providers::ProviderError;

/// Parses an OpenAI `chat.completion` (the first choice).
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, GatewayError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| malformed())?;
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(malformed)?;
    let mut res = ChatResponse::new(str_at(&v, "id"), str_at(&v, "model"));
    let message = choice.get("message").ok_or_else(malformed)?;
    if let Some(text) = message.get("content").and_then(Value::as_str) {
        if !text.is_empty() {
            res.content.push(Part::Text(text.to_owned()));
        }
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = call.get("function").ok_or_else(malformed)?;
        res.content.push(Part::ToolCall(ToolCall {
            id: str_at(call, "id"),
            name: str_at(f, "name"),
            arguments: str_at(f, "arguments"),
        }));
    }
    res.finish = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(decode_finish);
    res.usage = v.get("usage").and_then(decode_usage);
    Ok(res)
}

fn malformed() -> GatewayError {
    GatewayError::upstream("The provider returned a malformed chat completion.")
}

fn str_at(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// OpenAI `usage` (with `prompt_tokens_details.cached_tokens`, or DeepSeek's
/// `prompt_cache_hit_tokens`).
pub(crate) fn decode_usage(usage: &Value) -> Option<Usage> {
    let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    let obj = usage.as_object()?;
    let cached = obj
        .get("prompt_tokens_details")
        .and_then(|d| d.get("cached_tokens"))
        .or_else(|| obj.get("prompt_cache_hit_tokens"));
    Some(Usage {
        prompt_tokens: n(obj.get("prompt_tokens")),
        completion_tokens: n(obj.get("completion_tokens")),
        cached_tokens: n(cached),
        cache_write_tokens: 0,
    })
}

pub(crate) fn decode_finish(reason: &str) -> FinishReason {
    match reason {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

pub(crate) fn encode_finish(reason: &FinishReason) -> &str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::Other(other) => other,
    }
}

pub(crate) fn encode_usage(usage: &Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    })
}

/// An OpenAI assistant message of canonical parts: the text (null when the turn is
/// only tool calls) and its `tool_calls`. Requests (earlier turns) and answers share it.
pub(super) fn assistant_message(parts: &[Part]) -> Value {
    let text: String = parts
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    let calls: Vec<Value> = parts
        .iter()
        .filter_map(|p| match p {
            Part::ToolCall(c) => Some(json!({
                "id": c.id, "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            })),
            _ => None,
        })
        .collect();
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) },
    });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    message
}

/// Builds an OpenAI `chat.completion`.
pub fn encode_response(res: &ChatResponse) -> Value {
    let mut message = assistant_message(&res.content);
    message["refusal"] = Value::Null;
    let mut out = json!({
        "id": res.id,
        "object": "chat.completion",
        "created": super::stream::now(),
        "model": res.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": res.finish.as_ref().map(encode_finish).unwrap_or("stop"),
        }],
    });
    if let Some(usage) = &res.usage {
        out["usage"] = encode_usage(usage);
    }
    out
}

/// Reads an OpenAI error body: `{"error": {"message", "type", "param", "code"}}`.
pub fn decode_error(body: &[u8]) -> Option<ProviderError> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let error = v.get("error")?;
    let field = |k: &str| error.get(k).and_then(Value::as_str).map(str::to_owned);
    Some(ProviderError {
        message: field("message").or_else(|| error.as_str().map(str::to_owned))?,
        error_type: field("type"),
        code: field("code").or_else(|| {
            error
                .get("code")
                .and_then(Value::as_u64)
                .map(|c| c.to_string())
        }),
        param: field("param"),
    })
}
