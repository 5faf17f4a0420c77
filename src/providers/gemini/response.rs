//! Gemini `GenerateContentResponse` (non-stream), usage and errors to and from the
//! canonical form.

use serde_json::{json, Value};

use crate::error::GatewayError;
use crate::outcome::Usage;
use crate::providers::canonical::*;
use crate::providers::ProviderError;

/// Parses a Gemini `GenerateContentResponse` (the first candidate). Function calls
/// get ids `call_<responseId>_<k>`, since Gemini has none.
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, GatewayError> {
    let malformed = || GatewayError::upstream("The provider returned a malformed response.");
    let v: Value = serde_json::from_slice(body).map_err(|_| malformed())?;
    let id = v
        .get("responseId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let model = v
        .get("modelVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut res = ChatResponse::new(id, model);
    let Some(candidate) = v.get("candidates").and_then(|c| c.get(0)) else {
        // A prompt blocked before generation has no candidates.
        if v.get("promptFeedback").is_some() {
            res.finish = Some(FinishReason::ContentFilter);
            res.usage = v.get("usageMetadata").map(decode_usage);
            return Ok(res);
        }
        return Err(malformed());
    };
    let mut calls = 0;
    for part in candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let thought = part.get("thought").and_then(Value::as_bool) == Some(true);
        if let (true, Some(text)) = (thought, part.get("text").and_then(Value::as_str)) {
            res.content.push(Part::Reasoning(Reasoning::text(text)));
        } else if let Some(text) = part.get("text").and_then(Value::as_str) {
            res.content.push(Part::Text(text.to_owned()));
        } else if let Some(call) = part.get("functionCall") {
            res.content.push(Part::ToolCall(ToolCall {
                id: call_id(call, id, calls),
                name: call
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                arguments: call
                    .get("args")
                    .map_or_else(|| "{}".into(), Value::to_string),
            }));
            calls += 1;
        }
    }
    res.finish = candidate
        .get("finishReason")
        .and_then(Value::as_str)
        .map(|r| decode_finish(r, calls > 0));
    res.usage = v.get("usageMetadata").map(decode_usage);
    Ok(res)
}

/// The id of a function call: Gemini's own when it sent one, else generated.
pub(crate) fn call_id(call: &Value, response_id: &str, k: u32) -> String {
    match call.get("id").and_then(Value::as_str) {
        Some(id) => id.to_owned(),
        None if response_id.is_empty() => format!("call_{k}"),
        None => format!("call_{response_id}_{k}"),
    }
}

/// Gemini `usageMetadata`: the prompt count includes cached tokens;
/// `candidatesTokenCount` leaves out the thinking tokens (`thoughtsTokenCount`), which
/// are billed as output, so the canonical completion count is their sum.
pub(crate) fn decode_usage(usage: &Value) -> Usage {
    let n = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
    let thoughts = n("thoughtsTokenCount");
    Usage::new(n("promptTokenCount"), n("candidatesTokenCount") + thoughts)
        .with_cached(n("cachedContentTokenCount"))
        .with_reasoning(thoughts)
}

/// The reverse of [`decode_usage`]: the reasoning tokens come out of the completion
/// count into `thoughtsTokenCount`, so the two add up to what was billed.
pub(crate) fn encode_usage(usage: &Usage) -> Value {
    let thoughts = usage.reasoning_tokens.min(usage.completion_tokens);
    let mut out = json!({
        "promptTokenCount": usage.prompt_tokens,
        "candidatesTokenCount": usage.completion_tokens - thoughts,
        "totalTokenCount": usage.prompt_tokens + usage.completion_tokens,
        "cachedContentTokenCount": usage.cached_tokens,
    });
    if thoughts > 0 {
        out["thoughtsTokenCount"] = json!(thoughts);
    }
    out
}

/// Gemini says `STOP` after function calls too; the canonical reason is tool calls.
pub(crate) fn decode_finish(reason: &str, called: bool) -> FinishReason {
    match reason {
        "STOP" if called => FinishReason::ToolCalls,
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            FinishReason::ContentFilter
        }
        other => FinishReason::Other(other.to_owned()),
    }
}

pub(crate) fn encode_finish(reason: &FinishReason) -> &str {
    match reason {
        FinishReason::Stop | FinishReason::ToolCalls => "STOP",
        FinishReason::Length => "MAX_TOKENS",
        FinishReason::ContentFilter => "SAFETY",
        FinishReason::Other(other) => other,
    }
}

pub(crate) fn encode_part(part: &Part) -> Option<Value> {
    match part {
        Part::Text(text) => Some(json!({"text": text})),
        // Thought summaries; redacted reasoning has no Gemini form.
        Part::Reasoning(r) if r.redacted.is_none() => {
            Some(json!({"text": r.text, "thought": true}))
        }
        Part::ToolCall(call) => Some(json!({"functionCall": {
            "name": call.name,
            "args": serde_json::from_str::<Value>(&call.arguments).unwrap_or_else(|_| json!({})),
        }})),
        _ => None,
    }
}

/// Builds a Gemini `GenerateContentResponse`.
pub fn encode_response(res: &ChatResponse) -> Value {
    let parts: Vec<Value> = res.content.iter().filter_map(encode_part).collect();
    let mut out = json!({
        "candidates": [{
            "content": {"role": "model", "parts": parts},
            "finishReason": res.finish.as_ref().map_or("STOP", encode_finish),
            "index": 0,
        }],
        "modelVersion": res.model,
        "responseId": res.id,
    });
    if let Some(usage) = &res.usage {
        out["usageMetadata"] = encode_usage(usage);
    }
    out
}

/// Reads a Gemini error body: `{"error": {"code", "message", "status"}}` (sometimes
/// wrapped in a one-element array).
pub fn decode_error(body: &[u8]) -> Option<ProviderError> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let v = v.get(0).unwrap_or(&v);
    let error = v.get("error")?;
    Some(ProviderError {
        message: error.get("message")?.as_str()?.to_owned(),
        error_type: error
            .get("status")
            .and_then(Value::as_str)
            .map(str::to_owned),
        code: None,
        param: None,
    })
}
