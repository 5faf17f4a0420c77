//! Anthropic Messages requests to and from the canonical form.

use serde_json::{json, Map, Value};

use crate::error::GatewayError;
use crate::providers::canonical::*;
use crate::providers::util::*;
use crate::Dialect;

/// `max_tokens` sent to Anthropic (where it is required) when the client set none.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

const KNOWN: &[&str] = &[
    "model",
    "messages",
    "system",
    "max_tokens",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "metadata",
    "service_tier",
    "thinking",
];

/// Anthropic's smallest `budget_tokens`.
pub const MIN_THINKING_BUDGET: u64 = 1024;

/// Parses an Anthropic `/v1/messages` body.
pub fn decode_request(body: &Value) -> Result<ChatRequest, GatewayError> {
    let obj = object(body, "body")?;
    let mut req = ChatRequest {
        model: req_str(obj, "model", "")?.to_owned(),
        ..ChatRequest::default()
    };
    req.system = match get(obj, "system") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::new();
            for (i, block) in blocks.iter().enumerate() {
                let path = format!("system[{i}]");
                texts.push(req_str(object(block, &path)?, "text", &path)?);
            }
            Some(texts.join("\n\n"))
        }
        Some(_) => return Err(bad("system", "a string or an array of text blocks")),
    };
    let messages = array(
        get(obj, "messages").ok_or_else(|| missing("messages"))?,
        "messages",
    )?;
    for (i, message) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let m = object(message, &path)?;
        let role = match req_str(m, "role", &path)? {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            _ => return Err(bad(&join(&path, "role"), "user or assistant")),
        };
        let cpath = join(&path, "content");
        let content = match get(m, "content") {
            Some(Value::String(s)) => vec![Part::Text(s.clone())],
            Some(Value::Array(blocks)) => decode_blocks(blocks, &cpath, &mut req)?,
            _ => return Err(bad(&cpath, "a string or an array of content blocks")),
        };
        req.messages.push(Message::new(role, content));
    }
    req.max_tokens = opt_u64(obj, "max_tokens")?;
    req.stop = match get(obj, "stop_sequences") {
        None => Vec::new(),
        Some(v) => array(v, "stop_sequences")?
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad("stop_sequences", "strings"))
            })
            .collect::<Result<_, _>>()?,
    };
    req.stream = opt_bool(obj, "stream", "")?.unwrap_or(false);
    req.include_usage = true;
    req.temperature = opt_f64(obj, "temperature")?;
    req.top_p = opt_f64(obj, "top_p")?;
    req.top_k = opt_u64(obj, "top_k")?;
    if let Some(tools) = get(obj, "tools") {
        for (i, tool) in array(tools, "tools")?.iter().enumerate() {
            let path = format!("tools[{i}]");
            let t = object(tool, &path)?;
            match opt_str(t, "type", &path)? {
                None | Some("custom") => {}
                Some(_) => {
                    req.unsupported.push(join(&path, "type"));
                    continue;
                }
            }
            req.tools.push(Tool {
                name: req_str(t, "name", &path)?.to_owned(),
                description: opt_str(t, "description", &path)?.map(str::to_owned),
                parameters: get(t, "input_schema")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            });
        }
    }
    if let Some(choice) = get(obj, "tool_choice") {
        let c = object(choice, "tool_choice")?;
        req.tool_choice = Some(match req_str(c, "type", "tool_choice")? {
            "auto" => ToolChoice::Auto,
            "any" => ToolChoice::Required,
            "none" => ToolChoice::None,
            "tool" => ToolChoice::Function(req_str(c, "name", "tool_choice")?.to_owned()),
            _ => return Err(bad("tool_choice.type", "auto, any, tool or none")),
        });
        if opt_bool(c, "disable_parallel_tool_use", "tool_choice")? == Some(true) {
            req.parallel_tool_calls = Some(false);
        }
    }
    if let Some(meta) = get(obj, "metadata") {
        req.user = opt_str(object(meta, "metadata")?, "user_id", "metadata")?.map(str::to_owned);
    }
    if let Some(thinking) = get(obj, "thinking") {
        let t = object(thinking, "thinking")?;
        req.thinking = match req_str(t, "type", "thinking")? {
            "enabled" => Some(Thinking::Budget(
                opt_u64(t, "budget_tokens")?.ok_or_else(|| missing("thinking.budget_tokens"))?,
            )),
            "disabled" => Some(Thinking::Off),
            _ => {
                req.unsupported.push("thinking.type".into());
                None
            }
        };
    }
    for (key, value) in obj {
        if !KNOWN.contains(&key.as_str()) && !value.is_null() {
            req.unsupported.push(key.clone());
        }
    }
    Ok(req)
}

fn decode_blocks(
    blocks: &[Value],
    path: &str,
    req: &mut ChatRequest,
) -> Result<Vec<Part>, GatewayError> {
    let mut parts = Vec::with_capacity(blocks.len());
    for (j, block) in blocks.iter().enumerate() {
        let bpath = format!("{path}[{j}]");
        let b = object(block, &bpath)?;
        match req_str(b, "type", &bpath)? {
            "text" => parts.push(Part::Text(req_str(b, "text", &bpath)?.to_owned())),
            "image" => parts.push(Part::Image(decode_image(b, &bpath)?)),
            "tool_use" => parts.push(Part::ToolCall(ToolCall {
                id: req_str(b, "id", &bpath)?.to_owned(),
                name: req_str(b, "name", &bpath)?.to_owned(),
                arguments: get(b, "input").map_or_else(|| "{}".to_owned(), Value::to_string),
            })),
            "tool_result" => {
                let rpath = join(&bpath, "content");
                let content = match get(b, "content") {
                    None => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(items)) => {
                        let mut text = Vec::new();
                        for (k, item) in items.iter().enumerate() {
                            let ipath = format!("{rpath}[{k}]");
                            let item = object(item, &ipath)?;
                            match opt_str(item, "type", &ipath)? {
                                Some("text") => text.push(req_str(item, "text", &ipath)?),
                                _ => req.unsupported.push(ipath),
                            }
                        }
                        text.concat()
                    }
                    Some(_) => return Err(bad(&rpath, "a string or an array of blocks")),
                };
                parts.push(Part::ToolResult(ToolResult {
                    call_id: req_str(b, "tool_use_id", &bpath)?.to_owned(),
                    content,
                    is_error: opt_bool(b, "is_error", &bpath)?.unwrap_or(false),
                }));
            }
            "thinking" => parts.push(Part::Reasoning(Reasoning {
                text: req_str(b, "thinking", &bpath)?.to_owned(),
                signature: opt_str(b, "signature", &bpath)?
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
                redacted: None,
            })),
            "redacted_thinking" => parts.push(Part::Reasoning(Reasoning::redacted(req_str(
                b, "data", &bpath,
            )?))),
            _ => req.unsupported.push(bpath),
        }
    }
    Ok(parts)
}

fn decode_image(block: &Obj, path: &str) -> Result<Image, GatewayError> {
    let spath = join(path, "source");
    let source = object(get(block, "source").ok_or_else(|| missing(&spath))?, &spath)?;
    match req_str(source, "type", &spath)? {
        "base64" => Ok(Image::Base64 {
            media_type: req_str(source, "media_type", &spath)?.to_owned(),
            data: req_str(source, "data", &spath)?.to_owned(),
        }),
        "url" => Ok(Image::Url(req_str(source, "url", &spath)?.to_owned())),
        _ => Err(bad(&join(&spath, "type"), "base64 or url")),
    }
}

/// Builds an Anthropic `/v1/messages` body. Fails with a 400 naming the field for
/// what Anthropic cannot express: `n > 1`, penalties, `seed`, `response_format`, and
/// fields the source dialect had no canonical form for.
pub fn encode_request(req: &ChatRequest) -> Result<Value, GatewayError> {
    let target = Dialect::Anthropic;
    if let Some(field) = req.unsupported.first() {
        return Err(unsupported(field, target, ""));
    }
    if req.n.is_some_and(|n| n > 1) {
        return Err(unsupported(
            "n",
            target,
            "it returns one choice per request",
        ));
    }
    for (field, set) in [
        ("presence_penalty", req.presence_penalty.is_some()),
        ("frequency_penalty", req.frequency_penalty.is_some()),
        ("seed", req.seed.is_some()),
    ] {
        if set {
            return Err(unsupported(field, target, ""));
        }
    }
    if matches!(
        req.response_format,
        Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. })
    ) {
        return Err(unsupported(
            "response_format",
            target,
            "use a tool for structured output",
        ));
    }
    let mut messages: Vec<Value> = Vec::with_capacity(req.messages.len());
    for (i, message) in req.messages.iter().enumerate() {
        let role = match message.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        let mut blocks = Vec::with_capacity(message.content.len());
        // Tool results first: Anthropic wants them at the start of the user turn.
        let (results, rest): (Vec<&Part>, Vec<&Part>) = message
            .content
            .iter()
            .partition(|p| matches!(p, Part::ToolResult(_)));
        for (j, part) in results.into_iter().chain(rest).enumerate() {
            // Anthropic checks the signature of earlier thinking and refuses a block
            // without one; reasoning from another provider cannot be signed, so it stays
            // behind (Anthropic would only have used it in the current tool loop).
            if let Part::Reasoning(r) = part {
                if r.signature.is_none() && r.redacted.is_none() {
                    continue;
                }
            }
            blocks.push(encode_part(part, &format!("messages[{i}].content[{j}]"))?);
        }
        if blocks.is_empty() {
            continue;
        }
        // Consecutive turns of one role merge into one message.
        match messages.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(content) = last["content"].as_array_mut() {
                    content.extend(blocks);
                }
            }
            _ => messages.push(json!({"role": role, "content": blocks})),
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(req.model));
    out.insert("messages".into(), Value::Array(messages));
    let (max_tokens, thinking) = encode_thinking(req)?;
    out.insert("max_tokens".into(), json!(max_tokens));
    if let Some(thinking) = thinking {
        out.insert("thinking".into(), thinking);
    }
    if let Some(system) = &req.system {
        out.insert("system".into(), json!(system));
    }
    if !req.tools.is_empty() {
        let tools = req.tools.iter().map(|t| {
            let mut tool = json!({"name": t.name, "input_schema": t.parameters});
            if let Some(d) = &t.description {
                tool["description"] = json!(d);
            }
            tool
        });
        out.insert("tools".into(), tools.collect());
    }
    let choice = match &req.tool_choice {
        Some(ToolChoice::Auto) => Some(json!({"type": "auto"})),
        Some(ToolChoice::None) => Some(json!({"type": "none"})),
        Some(ToolChoice::Required) => Some(json!({"type": "any"})),
        Some(ToolChoice::Function(name)) => Some(json!({"type": "tool", "name": name})),
        None if req.parallel_tool_calls == Some(false) => Some(json!({"type": "auto"})),
        None => None,
    };
    if let Some(mut choice) = choice {
        if req.parallel_tool_calls == Some(false) && choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = json!(true);
        }
        out.insert("tool_choice".into(), choice);
    }
    if !req.stop.is_empty() {
        out.insert("stop_sequences".into(), json!(req.stop));
    }
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            out.insert(key.into(), value);
        }
    };
    put("temperature", req.temperature.map(Value::from));
    put("top_p", req.top_p.map(Value::from));
    put("top_k", req.top_k.map(Value::from));
    put("metadata", req.user.as_ref().map(|u| json!({"user_id": u})));
    if req.stream {
        out.insert("stream".into(), Value::Bool(true));
    }
    Ok(Value::Object(out))
}

/// `max_tokens` and `thinking` for Anthropic. Its budget counts within `max_tokens` and
/// must be below it, and at least [`MIN_THINKING_BUDGET`]:
///
/// - a budget (or an effort's budget, see [`Effort::budget`]) under the minimum is raised
///   to it; `Dynamic` is 8192 tokens (medium);
/// - without a client `max_tokens`, the answer keeps [`DEFAULT_MAX_TOKENS`] on top of
///   the budget;
/// - a client `max_tokens` at or under the budget lowers the budget to `max_tokens - 1`
///   (OpenAI and Gemini count reasoning within the limit too), and is a 400 naming
///   `max_tokens` when that leaves less than the minimum.
fn encode_thinking(req: &ChatRequest) -> Result<(u64, Option<Value>), GatewayError> {
    let budget = match req.thinking {
        None => return Ok((req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS), None)),
        Some(Thinking::Off) => {
            let off = json!({"type": "disabled"});
            return Ok((req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS), Some(off)));
        }
        Some(Thinking::Dynamic) => Effort::Medium.budget(),
        Some(other) => other.budget().unwrap_or_default(),
    };
    let budget = budget.max(MIN_THINKING_BUDGET);
    let (max_tokens, budget) = match req.max_tokens {
        None => (budget + DEFAULT_MAX_TOKENS, budget),
        Some(max) if max > budget => (max, budget),
        Some(max) if max > MIN_THINKING_BUDGET => (max, max - 1),
        Some(_) => {
            return Err(unsupported(
                "max_tokens",
                Dialect::Anthropic,
                "with reasoning on, Anthropic needs more than 1024 tokens",
            ))
        }
    };
    let thinking = json!({"type": "enabled", "budget_tokens": budget});
    Ok((max_tokens, Some(thinking)))
}

fn encode_part(part: &Part, path: &str) -> Result<Value, GatewayError> {
    Ok(match part {
        Part::Text(text) => json!({"type": "text", "text": text}),
        Part::Image(Image::Url(url)) => {
            json!({"type": "image", "source": {"type": "url", "url": url}})
        }
        Part::Image(Image::Base64 { media_type, data }) => json!({
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }),
        Part::ToolCall(call) => json!({
            "type": "tool_use",
            "id": call.id,
            "name": call.name,
            "input": arguments_value(&call.arguments, path)?,
        }),
        Part::Reasoning(r) => super::response::encode_reasoning(r),
        Part::ToolResult(result) => {
            let mut block = json!({
                "type": "tool_result",
                "tool_use_id": result.call_id,
                "content": result.content,
            });
            if result.is_error {
                block["is_error"] = json!(true);
            }
            block
        }
    })
}
