//! OpenAI chat completion requests to and from the canonical form.

use serde_json::{json, Map, Value};

use crate::error::GatewayError;
use crate::providers::canonical::*;
use crate::providers::util::*;

/// Top-level fields read into the canonical form (or harmless to leave behind).
const KNOWN: &[&str] = &[
    "model",
    "messages",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "n",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "stream",
    "stream_options",
    "user",
    "reasoning_effort",
    // Bookkeeping on OpenAI's side, meaningless elsewhere.
    "store",
    "metadata",
    "service_tier",
];

/// Parses an OpenAI `/chat/completions` body.
pub fn decode_request(body: &Value) -> Result<ChatRequest, GatewayError> {
    let obj = object(body, "body")?;
    let mut req = ChatRequest {
        model: req_str(obj, "model", "")?.to_owned(),
        ..ChatRequest::default()
    };
    let messages = array(
        get(obj, "messages").ok_or_else(|| missing("messages"))?,
        "messages",
    )?;
    let mut system: Vec<String> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        decode_message(message, &format!("messages[{i}]"), &mut req, &mut system)?;
    }
    if !system.is_empty() {
        req.system = Some(system.join("\n\n"));
    }
    if let Some(tools) = get(obj, "tools") {
        for (i, tool) in array(tools, "tools")?.iter().enumerate() {
            let path = format!("tools[{i}]");
            let tool = object(tool, &path)?;
            match opt_str(tool, "type", &path)? {
                Some("function") | None => {}
                Some(_) => {
                    req.unsupported.push(format!("{path}.type"));
                    continue;
                }
            }
            let fpath = join(&path, "function");
            let f = object(
                get(tool, "function").ok_or_else(|| missing(&fpath))?,
                &fpath,
            )?;
            req.tools.push(Tool {
                name: req_str(f, "name", &fpath)?.to_owned(),
                description: opt_str(f, "description", &fpath)?.map(str::to_owned),
                parameters: get(f, "parameters")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            });
        }
    }
    req.tool_choice = match get(obj, "tool_choice") {
        None => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => {
                return Err(bad(
                    "tool_choice",
                    "\"auto\", \"none\", \"required\" or a function",
                ))
            }
        }),
        Some(Value::Object(choice)) => {
            let name = choice
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| missing("tool_choice.function.name"))?;
            Some(ToolChoice::Function(name.to_owned()))
        }
        Some(_) => return Err(bad("tool_choice", "a string or an object")),
    };
    req.parallel_tool_calls = opt_bool(obj, "parallel_tool_calls", "")?;
    req.max_tokens = match opt_u64(obj, "max_completion_tokens")? {
        Some(n) => Some(n),
        None => opt_u64(obj, "max_tokens")?,
    };
    req.temperature = opt_f64(obj, "temperature")?;
    req.top_p = opt_f64(obj, "top_p")?;
    req.stop = match get(obj, "stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad("stop", "strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("stop", "a string or an array of strings")),
    };
    req.seed = match get(obj, "seed") {
        None => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| bad("seed", "an integer"))?),
    };
    req.n = opt_u64(obj, "n")?;
    req.presence_penalty = opt_f64(obj, "presence_penalty")?;
    req.frequency_penalty = opt_f64(obj, "frequency_penalty")?;
    req.response_format = match get(obj, "response_format") {
        None => None,
        Some(format) => Some(decode_format(object(format, "response_format")?)?),
    };
    req.stream = opt_bool(obj, "stream", "")?.unwrap_or(false);
    req.include_usage = get(obj, "stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    req.user = opt_str(obj, "user", "")?.map(str::to_owned);
    req.thinking = match opt_str(obj, "reasoning_effort", "")? {
        None => None,
        Some("none") => Some(Thinking::Off),
        Some(name) => Some(Thinking::Effort(Effort::parse(name).ok_or_else(|| {
            bad(
                "reasoning_effort",
                "none, minimal, low, medium, high or xhigh",
            )
        })?)),
    };
    for (key, value) in obj {
        let falsy = value.is_null() || value == &Value::Bool(false);
        if !KNOWN.contains(&key.as_str()) && !falsy {
            req.unsupported.push(key.clone());
        }
    }
    Ok(req)
}

fn decode_format(format: &Map<String, Value>) -> Result<ResponseFormat, GatewayError> {
    Ok(match req_str(format, "type", "response_format")? {
        "text" => ResponseFormat::Text,
        "json_object" => ResponseFormat::JsonObject,
        "json_schema" => {
            let path = "response_format.json_schema";
            let spec = object(
                get(format, "json_schema").ok_or_else(|| missing(path))?,
                path,
            )?;
            ResponseFormat::JsonSchema {
                name: opt_str(spec, "name", path)?
                    .unwrap_or("response")
                    .to_owned(),
                schema: get(spec, "schema").cloned().unwrap_or(json!({})),
            }
        }
        _ => {
            return Err(bad(
                "response_format.type",
                "text, json_object or json_schema",
            ))
        }
    })
}

/// The text of a `content` that may only hold text (string or text parts).
fn text_only(content: &Value, path: &str, req: &mut ChatRequest) -> Result<String, GatewayError> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut out = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                let ppath = format!("{path}[{j}]");
                let part = object(part, &ppath)?;
                match opt_str(part, "type", &ppath)? {
                    Some("text") => out.push(req_str(part, "text", &ppath)?),
                    _ => req.unsupported.push(ppath),
                }
            }
            Ok(out.concat())
        }
        Value::Null => Ok(String::new()),
        _ => Err(bad(path, "a string or an array of content parts")),
    }
}

fn decode_message(
    message: &Value,
    path: &str,
    req: &mut ChatRequest,
    system: &mut Vec<String>,
) -> Result<(), GatewayError> {
    let m = object(message, path)?;
    let content = get(m, "content");
    let cpath = join(path, "content");
    match req_str(m, "role", path)? {
        "system" | "developer" => {
            system.push(text_only(content.unwrap_or(&Value::Null), &cpath, req)?);
        }
        "user" => {
            let parts = decode_user_content(content.unwrap_or(&Value::Null), &cpath, req)?;
            req.messages.push(Message::new(Role::User, parts));
        }
        "assistant" => {
            let mut parts = super::response::decode_reasoning(m, path)?;
            let text = text_only(content.unwrap_or(&Value::Null), &cpath, req)?;
            if !text.is_empty() {
                parts.push(Part::Text(text));
            }
            if let Some(calls) = get(m, "tool_calls") {
                let tpath = join(path, "tool_calls");
                for (j, call) in array(calls, &tpath)?.iter().enumerate() {
                    let cpath = format!("{tpath}[{j}]");
                    let call = object(call, &cpath)?;
                    let fpath = join(&cpath, "function");
                    let f = object(
                        get(call, "function").ok_or_else(|| missing(&fpath))?,
                        &fpath,
                    )?;
                    parts.push(Part::ToolCall(ToolCall {
                        id: req_str(call, "id", &cpath)?.to_owned(),
                        name: req_str(f, "name", &fpath)?.to_owned(),
                        arguments: opt_str(f, "arguments", &fpath)?.unwrap_or("").to_owned(),
                    }));
                }
            }
            if get(m, "function_call").is_some() {
                req.unsupported.push(join(path, "function_call"));
            }
            req.messages.push(Message::new(Role::Assistant, parts));
        }
        "tool" => {
            let result = ToolResult {
                call_id: req_str(m, "tool_call_id", path)?.to_owned(),
                content: text_only(content.unwrap_or(&Value::Null), &cpath, req)?,
                is_error: false,
            };
            // Consecutive tool results share one user turn, as in the other dialects.
            match req.messages.last_mut() {
                Some(last)
                    if last.role == Role::User
                        && matches!(last.content.last(), Some(Part::ToolResult(_))) =>
                {
                    last.content.push(Part::ToolResult(result))
                }
                _ => req
                    .messages
                    .push(Message::new(Role::User, vec![Part::ToolResult(result)])),
            }
        }
        _ => {
            return Err(bad(
                &join(path, "role"),
                "system, developer, user, assistant or tool",
            ))
        }
    }
    Ok(())
}

fn decode_user_content(
    content: &Value,
    path: &str,
    req: &mut ChatRequest,
) -> Result<Vec<Part>, GatewayError> {
    let parts = match content {
        Value::String(s) => return Ok(vec![Part::Text(s.clone())]),
        Value::Array(parts) => parts,
        _ => return Err(bad(path, "a string or an array of content parts")),
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let ppath = format!("{path}[{j}]");
        let p = object(part, &ppath)?;
        match req_str(p, "type", &ppath)? {
            "text" => out.push(Part::Text(req_str(p, "text", &ppath)?.to_owned())),
            "image_url" => {
                let ipath = join(&ppath, "image_url");
                let url = match get(p, "image_url") {
                    Some(Value::String(url)) => url.as_str(),
                    Some(Value::Object(image)) => req_str(image, "url", &ipath)?,
                    _ => return Err(missing(&join(&ipath, "url"))),
                };
                out.push(Part::Image(match parse_data_url(url) {
                    Some((media_type, data)) => Image::Base64 {
                        media_type: media_type.to_owned(),
                        data: data.to_owned(),
                    },
                    None => Image::Url(url.to_owned()),
                }));
            }
            _ => req.unsupported.push(ppath),
        }
    }
    Ok(out)
}

/// OpenAI's o-series and GPT-5 models (with or without a `provider/` prefix), which take
/// `max_completion_tokens` only.
fn is_reasoning_model(model: &str) -> bool {
    let name = model.rsplit('/').next().unwrap_or(model);
    let series = |prefix: &str| {
        name.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['-', '.']))
    };
    ["o1", "o3", "o4", "gpt-5"].into_iter().any(series)
}

/// Builds an OpenAI `/chat/completions` body. Streams always ask for usage (the
/// gateway meters them); the encoder of the client's dialect decides what it shows.
pub fn encode_request(req: &ChatRequest) -> Result<Value, GatewayError> {
    if let Some(field) = req.unsupported.first() {
        return Err(unsupported(field, crate::Dialect::OpenAi, ""));
    }
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = &req.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    for message in &req.messages {
        match message.role {
            Role::User => {
                let mut parts = Vec::new();
                for part in &message.content {
                    match part {
                        Part::ToolResult(r) => messages.push(json!({
                            "role": "tool", "tool_call_id": r.call_id, "content": r.content,
                        })),
                        Part::Text(text) => parts.push(json!({"type": "text", "text": text})),
                        Part::Image(image) => {
                            let url = match image {
                                Image::Url(url) => url.clone(),
                                Image::Base64 { media_type, data } => {
                                    format!("data:{media_type};base64,{data}")
                                }
                            };
                            parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
                        }
                        Part::ToolCall(_) | Part::Reasoning(_) => {}
                    }
                }
                let content = match parts.as_slice() {
                    [] => continue,
                    [one] if one["type"] == "text" => one["text"].clone(),
                    _ => Value::Array(parts),
                };
                messages.push(json!({"role": "user", "content": content}));
            }
            Role::Assistant => {
                // Earlier reasoning is not sent back: OpenAI's models do not take it and
                // refuse unknown message fields, and DeepSeek's reasoner refuses
                // `reasoning_content` in its input.
                messages.push(super::response::assistant_message(&message.content, false));
            }
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(req.model));
    out.insert("messages".into(), Value::Array(messages));
    if !req.tools.is_empty() {
        let tools = req.tools.iter().map(|t| {
            let mut f = json!({"name": t.name, "parameters": t.parameters});
            if let Some(d) = &t.description {
                f["description"] = json!(d);
            }
            json!({"type": "function", "function": f})
        });
        out.insert("tools".into(), tools.collect());
    }
    if let Some(choice) = &req.tool_choice {
        let choice = match choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Function(name) => json!({"type": "function", "function": {"name": name}}),
        };
        out.insert("tool_choice".into(), choice);
    }
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            out.insert(key.into(), value);
        }
    };
    put(
        "parallel_tool_calls",
        req.parallel_tool_calls.map(Value::from),
    );
    // OpenAI's reasoning models refuse `max_tokens`; every other OpenAI-compatible
    // server knows `max_tokens`, and not all of them know `max_completion_tokens`.
    let limit_field = if is_reasoning_model(&req.model) {
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    put(limit_field, req.max_tokens.map(Value::from));
    put("temperature", req.temperature.map(Value::from));
    put("top_p", req.top_p.map(Value::from));
    put("seed", req.seed.map(Value::from));
    put("n", req.n.map(Value::from));
    put("presence_penalty", req.presence_penalty.map(Value::from));
    put("frequency_penalty", req.frequency_penalty.map(Value::from));
    put("user", req.user.clone().map(Value::from));
    // No `none` for `Off`: only the newest models take it, and leaving the field out
    // is what a client that never asked for reasoning sends.
    let effort = match req.thinking {
        None | Some(Thinking::Off) => None,
        Some(Thinking::Effort(effort)) => Some(effort),
        Some(Thinking::Budget(budget)) => Some(Effort::from_budget(budget)),
        Some(Thinking::Dynamic) => Some(Effort::Medium),
    };
    put("reasoning_effort", effort.map(|e| Value::from(e.as_str())));
    if req.top_k.is_some() {
        return Err(unsupported("top_k", crate::Dialect::OpenAi, ""));
    }
    if !req.stop.is_empty() {
        out.insert("stop".into(), json!(req.stop));
    }
    if let Some(format) = &req.response_format {
        let format = match format {
            ResponseFormat::Text => json!({"type": "text"}),
            ResponseFormat::JsonObject => json!({"type": "json_object"}),
            ResponseFormat::JsonSchema { name, schema } => {
                json!({"type": "json_schema", "json_schema": {"name": name, "schema": schema}})
            }
        };
        out.insert("response_format".into(), format);
    }
    if req.stream {
        out.insert("stream".into(), Value::Bool(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(Value::Object(out))
}
