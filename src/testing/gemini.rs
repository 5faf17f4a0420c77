//! The Gemini dialect: `POST .../models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`, and Gemini-shaped errors. Same answers, usage and
//! script as the OpenAI dialect.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::body::Events;
use super::openai::{parse_object, split, words, Answer, FAKE_KEY};
use super::provider::{BadRequest, Ctx, Reply};
use crate::sse;
use crate::Body;

/// A Gemini error response: `{"error": {"code", "message", "status"}}`.
pub(crate) fn error(status: StatusCode, message: String) -> Response<Body> {
    let name = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        500..=599 => "INTERNAL",
        _ => "FAILED_PRECONDITION",
    };
    let body = json!({"error": {"code": status.as_u16(), "message": message, "status": name}});
    let mut res = Response::new(Body::from(body.to_string()));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// The answer to `x-mock-status`.
pub(crate) fn scripted_error(status: StatusCode) -> Response<Body> {
    let code = status.as_u16();
    let message = match code {
        401 => format!("API key not valid: {FAKE_KEY}. Please pass a valid API key."),
        _ => format!("Scripted error (x-mock-status: {code})."),
    };
    let mut res = error(status, message);
    if code == 429 {
        res.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    res
}

/// The model and whether the request streams, from `.../models/{model}:{method}`.
pub(crate) fn route(path: &str) -> Option<(String, bool)> {
    let (_, rest) = path.rsplit_once("/models/")?;
    let (model, method) = rest.split_once(':')?;
    match method {
        "generateContent" => Some((model.to_owned(), false)),
        "streamGenerateContent" => Some((model.to_owned(), true)),
        _ => None,
    }
}

/// The text of one part: `text`, or a function response's `result` (its JSON text
/// when it holds more).
fn part_text(part: &Value) -> Option<String> {
    if let Some(text) = part.get("text").and_then(Value::as_str) {
        return Some(text.to_owned());
    }
    let response = part.pointer("/functionResponse/response")?;
    match response.get("result").and_then(Value::as_str) {
        Some(text) if response.as_object().is_some_and(|o| o.len() == 1) => Some(text.to_owned()),
        _ => Some(response.to_string()),
    }
}

fn content_text(content: &Value) -> String {
    content
        .get("parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(part_text)
        .collect::<Vec<_>>()
        .join(" ")
}

fn tool_result(content: &Value) -> Option<String> {
    let parts = content.get("parts")?.as_array()?;
    let part = parts
        .iter()
        .rev()
        .find(|p| p.get("functionResponse").is_some())?;
    part_text(part)
}

/// `POST .../models/{model}:generateContent` or `:streamGenerateContent?alt=sse`.
pub(crate) fn generate(
    ctx: &Ctx<'_>,
    model: &str,
    stream: bool,
    query: Option<&str>,
    body: &[u8],
) -> Result<Reply, BadRequest> {
    if stream && !query.is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse")) {
        return Err(BadRequest::new(
            "The mock streams only with ?alt=sse.",
            "alt",
        ));
    }
    let req = Value::Object(parse_object(body)?);
    let contents = match req.get("contents").and_then(Value::as_array) {
        Some(c) if !c.is_empty() => c,
        _ => {
            return Err(BadRequest::new(
                "* GenerateContentRequest.contents: contents is not specified",
                "contents",
            ))
        }
    };
    if ctx.script.malformed {
        return Ok(if stream {
            Reply::Stream(Events {
                frames: vec![sse::encode(None, "{this is not json")],
                content: 1..1,
                completes: false,
            })
        } else {
            Reply::Json(Bytes::from_static(b"{\"candidates\":[{\"content\":"))
        });
    }
    let role = |c: &Value| {
        c.get("role")
            .and_then(Value::as_str)
            .unwrap_or("user")
            .to_owned()
    };
    let last = contents.last().expect("contents is not empty");
    let last_user_text = contents
        .iter()
        .rev()
        .find(|c| role(c) == "user" && tool_result(c).is_none())
        .map(content_text)
        .unwrap_or_default();
    let result = (role(last) == "user").then(|| tool_result(last)).flatten();
    let first_tool = req
        .pointer("/tools/0/functionDeclarations/0/name")
        .and_then(Value::as_str);
    let allowed = req
        .pointer("/toolConfig/functionCallingConfig/mode")
        .and_then(Value::as_str)
        != Some("NONE");
    let answer = Answer::decide(
        &last_user_text,
        result,
        first_tool.filter(|_| allowed),
        role(last) == "user",
    );
    let system = req
        .get("systemInstruction")
        .map(content_text)
        .unwrap_or_default();
    let prompt_tokens = (words(&system)
        + contents
            .iter()
            .map(|c| words(&content_text(c)))
            .sum::<u64>())
    .max(1);
    let completion_tokens = words(answer.text()).max(1);
    let usage = |candidates: u64| {
        let mut usage = json!({
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": candidates,
            "totalTokenCount": prompt_tokens + candidates,
        });
        if ctx.script.cached_tokens > 0 {
            usage["cachedContentTokenCount"] = json!(ctx.script.cached_tokens);
        }
        usage
    };
    let response_id = format!("mock-{}", ctx.n);
    let chunk = |parts: Value, finish: bool, candidates: u64| {
        let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if finish {
            candidate["finishReason"] = json!("STOP");
        }
        json!({
            "candidates": [candidate],
            "usageMetadata": usage(candidates),
            "modelVersion": model,
            "responseId": response_id,
        })
    };
    let call = |name: &str, arguments: &str| {
        let args = serde_json::from_str::<Value>(arguments).unwrap_or_default();
        json!([{"functionCall": {"name": name, "args": args}}])
    };
    if !stream {
        let parts = match &answer {
            Answer::Text(text) => json!([{"text": text}]),
            Answer::ToolCall { name, arguments } => call(name, arguments),
        };
        let body = chunk(parts, true, completion_tokens);
        return Ok(Reply::Json(Bytes::from(body.to_string())));
    }
    let frames: Vec<Bytes> = match &answer {
        Answer::Text(text) => {
            let n = ctx.script.chunks;
            let mut so_far = String::new();
            split(text, n)
                .into_iter()
                .enumerate()
                .map(|(i, piece)| {
                    so_far.push_str(piece);
                    let last = i + 1 == n;
                    // Cumulative, as Gemini reports it: the last chunk has the total.
                    let candidates = if last {
                        completion_tokens
                    } else {
                        words(&so_far)
                    };
                    sse::encode_json(None, &chunk(json!([{"text": piece}]), last, candidates))
                })
                .collect()
        }
        Answer::ToolCall { name, arguments } => {
            vec![sse::encode_json(
                None,
                &chunk(call(name, arguments), true, completion_tokens),
            )]
        }
    };
    let len = frames.len();
    Ok(Reply::Stream(Events {
        frames,
        content: 0..len,
        completes: true,
    }))
}
