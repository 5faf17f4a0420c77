//! OpenAI chat completions (non-stream) and errors to and from the canonical form.

use serde_json::{json, Value};

use crate::error::GatewayError;
use crate::outcome::Usage;
use crate::providers::canonical::*;
use crate::providers::util::*;
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
    let m = message.as_object().ok_or_else(malformed)?;
    res.content = decode_reasoning(m, "message").map_err(|_| malformed())?;
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
    let reasoning = obj
        .get("completion_tokens_details")
        .and_then(|d| d.get("reasoning_tokens"));
    Some(
        Usage::new(n(obj.get("prompt_tokens")), n(obj.get("completion_tokens")))
            .with_cached(n(cached))
            .with_reasoning(n(reasoning)),
    )
}

/// The reasoning of an assistant message, as reasoning parts: LiteLLM's
/// `thinking_blocks` when there are some (they carry Anthropic's signatures and
/// redacted blocks), else the `reasoning_content` of DeepSeek, vLLM and Qwen (or
/// `reasoning`, its newer name in vLLM and OpenRouter).
pub(crate) fn decode_reasoning(m: &Obj, path: &str) -> Result<Vec<Part>, GatewayError> {
    let mut parts = Vec::new();
    if let Some(blocks) = get(m, "thinking_blocks") {
        let bpath = join(path, "thinking_blocks");
        for (i, block) in array(blocks, &bpath)?.iter().enumerate() {
            let path = format!("{bpath}[{i}]");
            let b = object(block, &path)?;
            parts.push(Part::Reasoning(match req_str(b, "type", &path)? {
                "redacted_thinking" => Reasoning::redacted(req_str(b, "data", &path)?),
                _ => Reasoning {
                    text: opt_str(b, "thinking", &path)?.unwrap_or("").to_owned(),
                    signature: opt_str(b, "signature", &path)?
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                    redacted: None,
                },
            }));
        }
        return Ok(parts);
    }
    for key in ["reasoning_content", "reasoning"] {
        if let Some(text) = opt_str(m, key, path)?.filter(|t| !t.is_empty()) {
            parts.push(Part::Reasoning(Reasoning::text(text)));
            break;
        }
    }
    Ok(parts)
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
    let mut out = json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    });
    // Only when known: Anthropic bills thinking as output without counting it apart,
    // and a 0 would claim there was none.
    if usage.reasoning_tokens > 0 {
        out["completion_tokens_details"] = json!({"reasoning_tokens": usage.reasoning_tokens});
    }
    out
}

/// An OpenAI assistant message of canonical parts: the text (null when the turn is
/// only tool calls) and its `tool_calls`. Requests (earlier turns) and answers share it;
/// `with_reasoning` (answers) adds the reasoning as `reasoning_content`, and as
/// LiteLLM's `thinking_blocks` when it is signed or redacted, so that a client can send
/// Anthropic's signed thinking back on the next turn of a tool loop.
pub(super) fn assistant_message(parts: &[Part], with_reasoning: bool) -> Value {
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
    if with_reasoning {
        add_reasoning(&mut message, parts);
    }
    message
}

fn add_reasoning(message: &mut Value, parts: &[Part]) {
    let reasoning: Vec<&Reasoning> = parts
        .iter()
        .filter_map(|p| match p {
            Part::Reasoning(r) => Some(r),
            _ => None,
        })
        .collect();
    if reasoning.is_empty() {
        return;
    }
    let text: String = reasoning.iter().map(|r| r.text.as_str()).collect();
    if !text.is_empty() {
        message["reasoning_content"] = Value::String(text);
    }
    if reasoning
        .iter()
        .any(|r| r.signature.is_some() || r.redacted.is_some())
    {
        let blocks = reasoning.iter().map(|r| match &r.redacted {
            Some(data) => json!({"type": "redacted_thinking", "data": data}),
            None => json!({
                "type": "thinking",
                "thinking": r.text,
                "signature": r.signature.as_deref().unwrap_or_default(),
            }),
        });
        message["thinking_blocks"] = blocks.collect();
    }
}

/// Builds an OpenAI `chat.completion`.
pub fn encode_response(res: &ChatResponse) -> Value {
    let mut message = assistant_message(&res.content, true);
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
