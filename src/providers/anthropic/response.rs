//! Anthropic messages (non-stream), usage and errors to and from the canonical form.

use serde_json::{json, Value};

use crate::error::GatewayError;
use crate::outcome::Usage;
use crate::providers::canonical::*;
use crate::providers::ProviderError;

/// Parses an Anthropic `message`.
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, GatewayError> {
    let malformed = || GatewayError::upstream("The provider returned a malformed message.");
    let v: Value = serde_json::from_slice(body).map_err(|_| malformed())?;
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(malformed)?;
    let s = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let mut res = ChatResponse::new(s(&v, "id"), s(&v, "model"));
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => res.content.push(Part::Text(s(block, "text"))),
            Some("tool_use") => res.content.push(Part::ToolCall(ToolCall {
                id: s(block, "id"),
                name: s(block, "name"),
                arguments: block
                    .get("input")
                    .map_or_else(|| "{}".into(), Value::to_string),
            })),
            Some("thinking") => res.content.push(Part::Reasoning(Reasoning {
                text: s(block, "thinking"),
                signature: Some(s(block, "signature")).filter(|s| !s.is_empty()),
                redacted: None,
            })),
            Some("redacted_thinking") => {
                res.content
                    .push(Part::Reasoning(Reasoning::redacted(s(block, "data"))));
            }
            _ => {} // server-tool blocks have no canonical form
        }
    }
    res.finish = v
        .get("stop_reason")
        .and_then(Value::as_str)
        .map(decode_stop);
    res.usage = v.get("usage").map(|u| decode_usage(WireUsage::of(u), None));
    Ok(res)
}

/// Anthropic `usage`, read without a `Value` in streams.
#[derive(Debug, Default, Clone, Copy, serde::Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

impl WireUsage {
    fn of(usage: &Value) -> WireUsage {
        let n = |k: &str| usage.get(k).and_then(Value::as_u64);
        WireUsage {
            input_tokens: n("input_tokens"),
            cache_read_input_tokens: n("cache_read_input_tokens"),
            cache_creation_input_tokens: n("cache_creation_input_tokens"),
            output_tokens: n("output_tokens"),
        }
    }
}

/// Anthropic `usage`. `input_tokens` excludes cache reads and writes, so the
/// canonical prompt count adds them back. `base` is what earlier events reported
/// (a `message_delta` carries only what changed).
pub(crate) fn decode_usage(usage: WireUsage, base: Option<Usage>) -> Usage {
    let mut out = base.unwrap_or_default();
    let input = usage.input_tokens;
    let read = usage.cache_read_input_tokens;
    let write = usage.cache_creation_input_tokens;
    if input.is_some() || read.is_some() || write.is_some() {
        let fresh = input.unwrap_or(out.prompt_tokens - out.cached_tokens - out.cache_write_tokens);
        out.cached_tokens = read.unwrap_or(out.cached_tokens);
        out.cache_write_tokens = write.unwrap_or(out.cache_write_tokens);
        out.prompt_tokens = fresh + out.cached_tokens + out.cache_write_tokens;
    }
    if let Some(output) = usage.output_tokens {
        out.completion_tokens = output;
    }
    out
}

pub(crate) fn encode_usage(usage: &Usage) -> Value {
    let fresh = usage
        .prompt_tokens
        .saturating_sub(usage.cached_tokens + usage.cache_write_tokens);
    json!({
        "input_tokens": fresh,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "output_tokens": usage.completion_tokens,
    })
}

pub(crate) fn decode_stop(reason: &str) -> FinishReason {
    match reason {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

pub(crate) fn encode_stop(reason: &FinishReason) -> &str {
    match reason {
        FinishReason::Stop => "end_turn",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter => "refusal",
        FinishReason::Other(_) => "end_turn",
    }
}

/// Builds an Anthropic `message`.
pub fn encode_response(res: &ChatResponse) -> Value {
    let content: Vec<Value> = res
        .content
        .iter()
        .filter_map(|part| match part {
            Part::Text(text) => Some(json!({"type": "text", "text": text})),
            Part::Reasoning(r) => Some(encode_reasoning(r)),
            Part::ToolCall(call) => Some(json!({
                "type": "tool_use",
                "id": call.id,
                "name": call.name,
                "input": serde_json::from_str::<Value>(&call.arguments).unwrap_or_else(|_| json!({})),
            })),
            _ => None,
        })
        .collect();
    json!({
        "id": res.id,
        "type": "message",
        "role": "assistant",
        "model": res.model,
        "content": content,
        "stop_reason": res.finish.as_ref().map(encode_stop).unwrap_or("end_turn"),
        "stop_sequence": null,
        "usage": encode_usage(&res.usage.unwrap_or_default()),
    })
}

/// A thinking block (its signature empty when the reasoning came from another
/// provider: the SDKs' types want the field), or a redacted one.
pub(crate) fn encode_reasoning(r: &Reasoning) -> Value {
    match &r.redacted {
        Some(data) => json!({"type": "redacted_thinking", "data": data}),
        None => json!({
            "type": "thinking",
            "thinking": r.text,
            "signature": r.signature.as_deref().unwrap_or_default(),
        }),
    }
}

/// Reads an Anthropic error body: `{"type": "error", "error": {"type", "message"}}`.
pub fn decode_error(body: &[u8]) -> Option<ProviderError> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let error = v.get("error")?;
    Some(ProviderError {
        message: error.get("message")?.as_str()?.to_owned(),
        error_type: error.get("type").and_then(Value::as_str).map(str::to_owned),
        code: None,
        param: None,
    })
}
