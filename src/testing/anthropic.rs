//! The Anthropic dialect: `POST .../messages` (plain, streamed, tool use) and
//! Anthropic-shaped errors. Same answers, usage and script as the OpenAI dialect.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, Response, StatusCode};
use serde_json::{json, Value};

use super::body::Events;
use super::openai::{parse_object, split, words, Answer, FAKE_KEY};
use super::provider::{BadRequest, Ctx, Reply};
use crate::sse;
use crate::Body;

/// An Anthropic error response: `{"type": "error", "error": {"type", "message"}}`.
pub(crate) fn error(status: StatusCode, error_type: &str, message: String) -> Response<Body> {
    let body = json!({"type": "error", "error": {"type": error_type, "message": message}});
    let mut res = Response::new(Body::from(body.to_string()));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// The answer to `x-mock-status`: the error body Anthropic sends with that status.
pub(crate) fn scripted_error(status: StatusCode) -> Response<Body> {
    let code = status.as_u16();
    let (kind, message) = match code {
        401 => ("authentication_error", format!("invalid x-api-key: {FAKE_KEY}")),
        403 => ("permission_error", "Your API key does not have permission to use the specified resource (x-mock-status: 403).".into()),
        404 => ("not_found_error", "model: not found (x-mock-status: 404).".into()),
        429 => ("rate_limit_error", "Number of requests has exceeded your rate limit (x-mock-status: 429).".into()),
        503 | 529 => ("overloaded_error", format!("Overloaded (x-mock-status: {code}).")),
        500..=599 => ("api_error", format!("Internal server error (x-mock-status: {code}).")),
        _ => ("invalid_request_error", format!("Scripted error (x-mock-status: {code}).")),
    };
    let mut res = error(status, kind, message);
    if code == 429 {
        res.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    res
}

/// The text of a content (a string, or text blocks and tool results' text).
fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| match b.get("type").and_then(Value::as_str) {
                Some("text") => b.get("text").and_then(Value::as_str).map(str::to_owned),
                Some("tool_result") => Some(text_of(b.get("content"))),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The last tool result of a user message, if it has one.
fn tool_result(message: &Value) -> Option<String> {
    message
        .get("content")?
        .as_array()?
        .iter()
        .rev()
        .find(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        .map(|b| text_of(b.get("content")))
}

/// `POST .../messages`.
pub(crate) fn messages(
    ctx: &Ctx<'_>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Reply, BadRequest> {
    if !headers.contains_key("anthropic-version") {
        return Err(BadRequest::new(
            "anthropic-version: header is required",
            "anthropic-version",
        ));
    }
    let req = Value::Object(parse_object(body)?);
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| BadRequest::new("model: Field required", "model"))?;
    let messages = match req.get("messages").and_then(Value::as_array) {
        Some(m) if !m.is_empty() => m,
        _ => {
            return Err(BadRequest::new(
                "messages: Field required (a non-empty array)",
                "messages",
            ))
        }
    };
    if req.get("max_tokens").and_then(Value::as_u64).is_none() {
        return Err(BadRequest::new("max_tokens: Field required", "max_tokens"));
    }
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if ctx.script.malformed {
        return Ok(if stream {
            Reply::Stream(Events {
                frames: vec![sse::encode(Some("message_start"), "{this is not json")],
                content: 1..1,
                completes: false,
            })
        } else {
            Reply::Json(Bytes::from_static(b"{\"id\":\"msg_broken\",\"content\":["))
        });
    }

    let role = |m: &Value| {
        m.get("role")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let last = messages.last().expect("messages is not empty");
    let last_user_text = messages
        .iter()
        .rev()
        .find(|m| role(m) == "user" && tool_result(m).is_none())
        .map(|m| text_of(m.get("content")))
        .unwrap_or_default();
    let result = (role(last) == "user").then(|| tool_result(last)).flatten();
    let first_tool = req
        .get("tools")
        .and_then(|t| t.get(0))
        .and_then(|t| t.get("name"))
        .and_then(Value::as_str);
    let allowed = req.pointer("/tool_choice/type").and_then(Value::as_str) != Some("none");
    let answer = Answer::decide(
        &last_user_text,
        result,
        first_tool.filter(|_| allowed),
        role(last) == "user",
    );
    let system = text_of(req.get("system"));
    let prompt_tokens = (words(&system)
        + messages
            .iter()
            .map(|m| words(&text_of(m.get("content"))))
            .sum::<u64>())
    .max(1);
    // With `thinking` enabled the answer starts with a thinking block (signed, as
    // Anthropic's are), counted in the output tokens like Anthropic counts them.
    let thinking = (req.pointer("/thinking/type").and_then(Value::as_str) == Some("enabled"))
        .then(|| format!("Thinking about: {last_user_text}"));
    let signature = format!("mock-signature-{}", ctx.n);
    let completion_tokens = words(answer.text()).max(1) + thinking.as_deref().map_or(0, words);
    let cached = ctx.script.cached_tokens;
    let usage = json!({
        "input_tokens": prompt_tokens.saturating_sub(cached),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": completion_tokens,
    });
    let id = format!("msg_mock_{}", ctx.n);
    let call_id = format!("toolu_mock_{}", ctx.n);
    let stop_reason = match answer {
        Answer::Text(_) => "end_turn",
        Answer::ToolCall { .. } => "tool_use",
    };
    let block = match &answer {
        Answer::Text(text) => json!({"type": "text", "text": text}),
        Answer::ToolCall { name, arguments } => json!({
            "type": "tool_use", "id": call_id, "name": name,
            "input": serde_json::from_str::<Value>(arguments).unwrap_or_default(),
        }),
    };
    if !stream {
        let mut content = Vec::new();
        if let Some(thinking) = &thinking {
            content.push(json!({"type": "thinking", "thinking": thinking, "signature": signature}));
        }
        content.push(block);
        let message = json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason, "stop_sequence": null,
            "usage": usage,
        });
        return Ok(Reply::Json(Bytes::from(message.to_string())));
    }

    let event = |name: &str, data: Value| sse::encode_json(Some(name), &data);
    let mut start_usage = usage;
    start_usage["output_tokens"] = json!(1);
    let n = ctx.script.chunks;
    let mut frames = Vec::with_capacity(n + 10);
    frames.push(event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": start_usage,
        }}),
    ));
    let (start_block, pieces, delta_type, delta_field) = match &answer {
        Answer::Text(text) => (
            json!({"type": "text", "text": ""}),
            split(text, n),
            "text_delta",
            "text",
        ),
        Answer::ToolCall { name, arguments } => (
            json!({"type": "tool_use", "id": call_id, "name": name, "input": {}}),
            split(arguments, n),
            "input_json_delta",
            "partial_json",
        ),
    };
    let index = usize::from(thinking.is_some());
    if let Some(thinking) = &thinking {
        let block = |delta: Value| {
            event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": delta}),
            )
        };
        frames.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "thinking", "thinking": ""}}),
        ));
        frames.push(block(
            json!({"type": "thinking_delta", "thinking": thinking}),
        ));
        frames.push(block(
            json!({"type": "signature_delta", "signature": signature}),
        ));
        frames.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ));
    }
    frames.push(event(
        "content_block_start",
        json!({"type": "content_block_start", "index": index, "content_block": start_block}),
    ));
    frames.push(event("ping", json!({"type": "ping"})));
    let first_content = frames.len();
    for piece in pieces {
        let mut delta = json!({"type": delta_type});
        delta[delta_field] = json!(piece);
        frames.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
        ));
    }
    frames.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": index}),
    ));
    frames.push(event(
        "message_delta",
        json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": completion_tokens},
        }),
    ));
    frames.push(event("message_stop", json!({"type": "message_stop"})));
    Ok(Reply::Stream(Events {
        frames,
        content: first_content..first_content + n,
        completes: true,
    }))
}
