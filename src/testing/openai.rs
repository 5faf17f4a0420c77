//! The OpenAI dialect: chat completions (plain, streamed, tool calls), the model list
//! and OpenAI-shaped errors.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Method, Response, StatusCode, Uri};
use serde_json::{json, Map, Value};

use super::body::Events;
use super::provider::{BadRequest, Ctx, Reply};
use crate::sse;
use crate::Body;

/// The fake key a scripted 401 echoes, so redaction of provider error bodies can be
/// tested.
pub(crate) const FAKE_KEY: &str = "sk-mock-1234567890abcdef";

/// The model ids `GET /models` lists.
const MODELS: [&str; 3] = ["mock/echo", "mock/chat", "mock/embed"];

// ===== errors =====

/// An OpenAI error response: `{"error": {"message", "type", "param", "code"}}`.
fn error_response(
    status: StatusCode,
    message: String,
    error_type: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Response<Body> {
    let body = json!({
        "error": { "message": message, "type": error_type, "param": param, "code": code }
    });
    let mut res = Response::new(Body::from(body.to_string()));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// A 4xx `invalid_request_error` naming the field (or header) at fault.
pub(crate) fn error(status: StatusCode, message: String, param: Option<&str>) -> Response<Body> {
    error_response(status, message, "invalid_request_error", param, None)
}

/// 404 for a method and path the mock does not serve, worded like OpenAI's.
pub(crate) fn invalid_url(method: &Method, uri: &Uri) -> Response<Body> {
    let message = format!("Invalid URL ({method} {})", uri.path());
    error(StatusCode::NOT_FOUND, message, None)
}

/// The answer to `x-mock-status`: the error body OpenAI sends with that status.
pub(crate) fn scripted_error(status: StatusCode, body: &[u8]) -> Response<Body> {
    let code = status.as_u16();
    match code {
        401 => error_response(
            status,
            format!(
                "Incorrect API key provided: {FAKE_KEY}. You can find your API key at \
                 https://platform.openai.com/account/api-keys."
            ),
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        ),
        403 => error_response(
            status,
            "You are not allowed to use this model (x-mock-status: 403).".to_owned(),
            "invalid_request_error",
            None,
            Some("permission_denied"),
        ),
        404 => {
            let model = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("model")?.as_str().map(str::to_owned))
                .unwrap_or_default();
            error_response(
                status,
                format!("The model `{model}` does not exist or you do not have access to it."),
                "invalid_request_error",
                Some("model"),
                Some("model_not_found"),
            )
        }
        429 => {
            let mut res = error_response(
                status,
                "Rate limit reached for requests (x-mock-status: 429). Please try again in 1s."
                    .to_owned(),
                "requests",
                None,
                Some("rate_limit_exceeded"),
            );
            res.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            res
        }
        503 => error_response(
            status,
            "The server is overloaded, please try again later (x-mock-status: 503).".to_owned(),
            "server_error",
            None,
            Some("overloaded"),
        ),
        500..=599 => error_response(
            status,
            format!(
                "The server had an error while processing your request (x-mock-status: {code})."
            ),
            "server_error",
            None,
            Some("server_error"),
        ),
        _ => error(
            status,
            format!("Scripted error (x-mock-status: {code})."),
            None,
        ),
    }
}

// ===== shared request helpers =====

/// The body as a JSON object, or the 400 OpenAI sends for anything else.
pub(crate) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, BadRequest> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(BadRequest::new(
            "The request body must be a JSON object.",
            "body",
        )),
        Err(err) => Err(BadRequest::new(
            format!("We could not parse the JSON body of your request ({err})."),
            "body",
        )),
    }
}

/// The required `model` string.
pub(crate) fn model(req: &Map<String, Value>) -> Result<&str, BadRequest> {
    req.get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| BadRequest::new("You must provide a model parameter (a string).", "model"))
}

/// The mock's token count: whitespace-separated words.
pub(crate) fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Seconds since the epoch, for `created`.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Splits `text` into exactly `n` pieces of roughly equal length (in characters) whose
/// concatenation is `text`; pieces are empty when `text` has fewer than `n` characters.
pub(crate) fn split(text: &str, n: usize) -> Vec<&str> {
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    let chars = bounds.len() - 1;
    (0..n)
        .map(|i| &text[bounds[i * chars / n]..bounds[(i + 1) * chars / n]])
        .collect()
}

// ===== chat completions =====

/// The text of a message's `content`: a string, or the `text` parts of an array.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// What the mock answers to a conversation, whatever its dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    Text(String),
    ToolCall { name: String, arguments: String },
}

impl Answer {
    /// Decides the answer: a tool result is echoed, a user turn with tools calls the
    /// first tool, anything else echoes the last user message.
    fn new(req: &Map<String, Value>, messages: &[Value]) -> Answer {
        fn role(message: &Value) -> &str {
            message
                .get("role")
                .and_then(Value::as_str)
                .unwrap_or_default()
        }
        let last_user_text = messages
            .iter()
            .rev()
            .find(|m| role(m) == "user")
            .map(|m| content_text(m.get("content")))
            .unwrap_or_default();
        let last = messages.last().expect("messages is not empty");
        let tool_result = (role(last) == "tool").then(|| content_text(last.get("content")));
        let first_tool = req
            .get("tools")
            .and_then(Value::as_array)
            .and_then(|tools| tools.first())
            .and_then(|tool| tool.pointer("/function/name"))
            .and_then(Value::as_str);
        let tools_allowed = req.get("tool_choice").and_then(Value::as_str) != Some("none");
        Answer::decide(
            &last_user_text,
            tool_result,
            first_tool.filter(|_| tools_allowed),
            role(last) == "user",
        )
    }

    /// The mock's rule in any dialect: a tool result is echoed; a user turn with a
    /// tool allowed calls the first tool with `{"echo": <last user text>}`; anything
    /// else echoes the last user text.
    pub(crate) fn decide(
        last_user_text: &str,
        tool_result: Option<String>,
        first_tool: Option<&str>,
        last_is_user: bool,
    ) -> Answer {
        if let Some(result) = tool_result {
            return Answer::Text(format!("Tool said: {result}"));
        }
        match first_tool {
            Some(name) if last_is_user => Answer::ToolCall {
                name: name.to_owned(),
                arguments: json!({ "echo": last_user_text }).to_string(),
            },
            _ => Answer::Text(format!("Mock answer to: {last_user_text}")),
        }
    }

    /// The text the completion tokens are counted on.
    pub(crate) fn text(&self) -> &str {
        match self {
            Answer::Text(text) => text,
            Answer::ToolCall { arguments, .. } => arguments,
        }
    }

    pub(crate) fn finish_reason(&self) -> &'static str {
        match self {
            Answer::Text(_) => "stop",
            Answer::ToolCall { .. } => "tool_calls",
        }
    }
}

/// `POST .../chat/completions`.
pub(crate) fn chat_completions(ctx: &Ctx<'_>, body: &[u8]) -> Result<Reply, BadRequest> {
    let req = parse_object(body)?;
    let model = model(&req)?;
    let messages = match req.get("messages").and_then(Value::as_array) {
        Some(messages) if !messages.is_empty() => messages,
        _ => {
            let message = "`messages` must be a non-empty array of messages.";
            return Err(BadRequest::new(message, "messages"));
        }
    };
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = req
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);

    if ctx.script.malformed {
        return Ok(if stream {
            Reply::Stream(Events {
                frames: vec![sse::encode(None, "{this is not json")],
                content: 1..1,
                completes: false,
            })
        } else {
            Reply::Json(Bytes::from_static(
                b"{\"id\":\"chatcmpl-broken\",\"choices\":[",
            ))
        });
    }

    let answer = Answer::new(&req, messages);
    let prompt_tokens = messages
        .iter()
        .map(|m| words(&content_text(m.get("content"))))
        .sum::<u64>()
        .max(1);
    let completion_tokens = words(answer.text()).max(1);
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": { "cached_tokens": ctx.script.cached_tokens },
    });
    let id = format!("chatcmpl-mock-{}", ctx.n);
    let call_id = format!("call_mock_{}", ctx.n);

    if !stream {
        let message = match &answer {
            Answer::Text(text) => json!({ "role": "assistant", "content": text, "refusal": null }),
            Answer::ToolCall { name, arguments } => json!({
                "role": "assistant",
                "content": null,
                "refusal": null,
                "tool_calls": [{
                    "id": call_id,
                    "type": "function",
                    "function": { "name": name, "arguments": arguments },
                }],
            }),
        };
        let completion = json!({
            "id": id,
            "object": "chat.completion",
            "created": now(),
            "model": model,
            "system_fingerprint": "fp_mock",
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": null,
                "finish_reason": answer.finish_reason(),
            }],
            "usage": usage,
        });
        return Ok(Reply::Json(Bytes::from(completion.to_string())));
    }

    let created = now();
    // Every chunk has the same envelope; with include_usage, all but the last carry
    // `"usage": null`, as OpenAI's do.
    let envelope = |choices: Value, usage: Option<&Value>| {
        let mut chunk = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_mock",
            "choices": choices,
        });
        if include_usage {
            chunk["usage"] = usage.cloned().unwrap_or(Value::Null);
        }
        sse::encode_json(None, &chunk)
    };
    let chunk = |delta: Value, finish_reason: Option<&str>| {
        let choice = json!({
            "index": 0,
            "delta": delta,
            "logprobs": null,
            "finish_reason": finish_reason,
        });
        envelope(json!([choice]), None)
    };

    let n = ctx.script.chunks;
    let mut frames = Vec::with_capacity(n + 4);
    match &answer {
        Answer::Text(text) => {
            frames.push(chunk(json!({ "role": "assistant", "content": "" }), None));
            for piece in split(text, n) {
                frames.push(chunk(json!({ "content": piece }), None));
            }
        }
        Answer::ToolCall { name, arguments } => {
            let head = json!({
                "role": "assistant",
                "content": null,
                "tool_calls": [{
                    "index": 0,
                    "id": call_id,
                    "type": "function",
                    "function": { "name": name, "arguments": "" },
                }],
            });
            frames.push(chunk(head, None));
            for piece in split(arguments, n) {
                let delta = json!({
                    "tool_calls": [{ "index": 0, "function": { "arguments": piece } }],
                });
                frames.push(chunk(delta, None));
            }
        }
    }
    frames.push(chunk(json!({}), Some(answer.finish_reason())));
    if include_usage {
        frames.push(envelope(json!([]), Some(&usage)));
    }
    frames.push(sse::encode(None, "[DONE]"));
    Ok(Reply::Stream(Events {
        frames,
        content: 1..1 + n,
        completes: true,
    }))
}

// ===== models =====

/// `GET .../models`.
pub(crate) fn models(ctx: &Ctx<'_>) -> Reply {
    if ctx.script.malformed {
        return Reply::Json(Bytes::from_static(b"{\"object\":\"list\",\"data\":["));
    }
    let data: Vec<Value> = MODELS
        .iter()
        .map(|id| json!({ "id": id, "object": "model", "created": 0, "owned_by": "tollgate-mock" }))
        .collect();
    Reply::Json(Bytes::from(
        json!({ "object": "list", "data": data }).to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_exact_and_even() {
        let text = "Mock answer to: héllo wörld";
        for n in 1..40 {
            let pieces = split(text, n);
            assert_eq!(pieces.len(), n);
            assert_eq!(pieces.concat(), text);
            let lens: Vec<usize> = pieces.iter().map(|p| p.chars().count()).collect();
            let (min, max) = (lens.iter().min().unwrap(), lens.iter().max().unwrap());
            assert!(max - min <= 1, "{lens:?}");
        }
        assert_eq!(split("", 3), ["", "", ""]);
    }

    #[test]
    fn answers() {
        let req = |v: Value| v.as_object().unwrap().clone();
        let user = json!({"role": "user", "content": [{"type": "text", "text": "a b"}, {"type": "image_url"}, {"type": "text", "text": "c"}]});
        let plain = req(json!({ "messages": [user] }));
        let messages = plain["messages"].as_array().unwrap();
        assert_eq!(
            Answer::new(&plain, messages),
            Answer::Text("Mock answer to: a b c".into())
        );

        let tools = json!([{"type": "function", "function": {"name": "lookup"}}, {"type": "function", "function": {"name": "other"}}]);
        let with_tools = req(json!({ "messages": [user], "tools": tools }));
        assert_eq!(
            Answer::new(&with_tools, messages),
            Answer::ToolCall {
                name: "lookup".into(),
                arguments: r#"{"echo":"a b c"}"#.into()
            }
        );
        let none = req(json!({ "messages": [user], "tools": tools, "tool_choice": "none" }));
        assert!(matches!(Answer::new(&none, messages), Answer::Text(_)));

        let turn = json!([user, {"role": "assistant", "tool_calls": []}, {"role": "tool", "tool_call_id": "x", "content": "42 degrees"}]);
        let result = req(json!({ "messages": turn, "tools": tools }));
        assert_eq!(
            Answer::new(&result, turn.as_array().unwrap()),
            Answer::Text("Tool said: 42 degrees".into())
        );
    }
}
