//! Gemini `generateContent` requests to and from the canonical form.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use crate::error::GatewayError;
use crate::providers::canonical::*;
use crate::providers::util::*;
use crate::Dialect;

/// Builds a Gemini `generateContent` body (the model goes in the URL, see
/// [`path`](super::path)). Fails with a 400 naming the field for what Gemini cannot
/// express: `n > 1`, images by URL, `parallel_tool_calls: false`, and fields the
/// source dialect had no canonical form for.
pub fn encode_request(req: &ChatRequest) -> Result<Value, GatewayError> {
    let target = Dialect::Gemini;
    if let Some(field) = req.unsupported.first() {
        return Err(unsupported(field, target, ""));
    }
    if req.n.is_some_and(|n| n > 1) {
        return Err(unsupported(
            "n",
            target,
            "streams of several candidates are not translated",
        ));
    }
    if req.parallel_tool_calls == Some(false) {
        return Err(unsupported(
            "parallel_tool_calls",
            target,
            "it cannot forbid parallel calls",
        ));
    }
    // Gemini answers tool results by function name, not by call id.
    let names: HashMap<&str, &str> = req
        .messages
        .iter()
        .flat_map(|m| &m.content)
        .filter_map(|p| match p {
            Part::ToolCall(c) => Some((c.id.as_str(), c.name.as_str())),
            _ => None,
        })
        .collect();
    let mut contents: Vec<Value> = Vec::with_capacity(req.messages.len());
    for (i, message) in req.messages.iter().enumerate() {
        let role = match message.role {
            Role::User => "user",
            Role::Assistant => "model",
        };
        let mut parts = Vec::with_capacity(message.content.len());
        for (j, part) in message.content.iter().enumerate() {
            let path = format!("messages[{i}].content[{j}]");
            parts.push(match part {
                // Gemini's thoughts are output only, and it could not check another
                // provider's signature: earlier reasoning is not sent.
                Part::Reasoning(_) => continue,
                Part::Text(text) => json!({"text": text}),
                Part::Image(Image::Base64 { media_type, data }) => {
                    json!({"inlineData": {"mimeType": media_type, "data": data}})
                }
                Part::Image(Image::Url(_)) => {
                    return Err(unsupported(
                        &path,
                        target,
                        "Gemini takes images inline: send a base64 data: URL",
                    ))
                }
                Part::ToolCall(call) => json!({"functionCall": {
                    "name": call.name,
                    "args": arguments_value(&call.arguments, &path)?,
                }}),
                Part::ToolResult(result) => {
                    let Some(name) = names.get(result.call_id.as_str()) else {
                        return Err(bad(
                            &path,
                            "a tool result answering a tool call of this conversation",
                        ));
                    };
                    json!({"functionResponse": {
                        "name": name,
                        "response": result_object(&result.content),
                    }})
                }
            });
        }
        if parts.is_empty() {
            continue;
        }
        match contents.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(existing) = last["parts"].as_array_mut() {
                    existing.extend(parts);
                }
            }
            _ => contents.push(json!({"role": role, "parts": parts})),
        }
    }
    let mut out = Map::new();
    out.insert("contents".into(), Value::Array(contents));
    if let Some(system) = &req.system {
        out.insert(
            "systemInstruction".into(),
            json!({"parts": [{"text": system}]}),
        );
    }
    if !req.tools.is_empty() {
        let declarations: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut f = json!({"name": t.name, "parametersJsonSchema": t.parameters});
                if let Some(d) = &t.description {
                    f["description"] = json!(d);
                }
                f
            })
            .collect();
        out.insert(
            "tools".into(),
            json!([{"functionDeclarations": declarations}]),
        );
    }
    if let Some(choice) = &req.tool_choice {
        let config = match choice {
            ToolChoice::Auto => json!({"mode": "AUTO"}),
            ToolChoice::None => json!({"mode": "NONE"}),
            ToolChoice::Required => json!({"mode": "ANY"}),
            ToolChoice::Function(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
        };
        out.insert(
            "toolConfig".into(),
            json!({"functionCallingConfig": config}),
        );
    }
    let mut config = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            config.insert(key.into(), value);
        }
    };
    put("maxOutputTokens", req.max_tokens.map(Value::from));
    put("temperature", req.temperature.map(Value::from));
    put("topP", req.top_p.map(Value::from));
    put("topK", req.top_k.map(Value::from));
    put("seed", req.seed.map(Value::from));
    put("presencePenalty", req.presence_penalty.map(Value::from));
    put("frequencyPenalty", req.frequency_penalty.map(Value::from));
    if !req.stop.is_empty() {
        config.insert("stopSequences".into(), json!(req.stop));
    }
    match &req.response_format {
        Some(ResponseFormat::JsonObject) => {
            config.insert("responseMimeType".into(), json!("application/json"));
        }
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            config.insert("responseMimeType".into(), json!("application/json"));
            config.insert("responseJsonSchema".into(), schema.clone());
        }
        Some(ResponseFormat::Text) | None => {}
    }
    let thinking = match req.thinking {
        None => None,
        Some(Thinking::Off) => Some(json!({"thinkingBudget": 0})),
        Some(Thinking::Dynamic) => Some(json!({"thinkingBudget": -1, "includeThoughts": true})),
        Some(other) => {
            let budget = other.budget().unwrap_or_default();
            Some(json!({"thinkingBudget": budget, "includeThoughts": true}))
        }
    };
    if let Some(thinking) = thinking {
        config.insert("thinkingConfig".into(), thinking);
    }
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(Value::Object(out))
}

/// `thinkingConfig`: `thinkingBudget` 0 is off, -1 dynamic; Gemini 3's `thinkingLevel`
/// is an effort. `includeThoughts` has no canonical form: the other dialects show the
/// reasoning they do, and the gateway asks Gemini for it whenever reasoning is on.
fn decode_thinking(c: &Obj) -> Result<Option<Thinking>, GatewayError> {
    let path = "generationConfig.thinkingConfig";
    if let Some(level) = opt_str(c, "thinkingLevel", path)? {
        let effort = Effort::parse(level)
            .ok_or_else(|| bad(&join(path, "thinkingLevel"), "MINIMAL, LOW, MEDIUM or HIGH"))?;
        return Ok(Some(Thinking::Effort(effort)));
    }
    Ok(match get(c, "thinkingBudget") {
        None => None,
        Some(n) => match n.as_i64() {
            Some(0) => Some(Thinking::Off),
            Some(-1) => Some(Thinking::Dynamic),
            Some(n) if n > 0 => Some(Thinking::Budget(n as u64)),
            _ => return Err(bad(&join(path, "thinkingBudget"), "-1, 0 or a token count")),
        },
    })
}

/// Parses a Gemini `generateContent` body for `model` (which Gemini carries in the
/// URL). Function calls get the ids `call_<k>` (Gemini has none) and tool results
/// answer the latest call of the same name.
pub fn decode_request(
    body: &Value,
    model: &str,
    stream: bool,
) -> Result<ChatRequest, GatewayError> {
    let obj = object(body, "body")?;
    let mut req = ChatRequest {
        model: model.to_owned(),
        stream,
        include_usage: true,
        ..ChatRequest::default()
    };
    let mut calls = 0usize;
    let mut last_call: HashMap<String, String> = HashMap::new();
    let contents = array(
        get(obj, "contents").ok_or_else(|| missing("contents"))?,
        "contents",
    )?;
    for (i, content) in contents.iter().enumerate() {
        let path = format!("contents[{i}]");
        let c = object(content, &path)?;
        let role = match opt_str(c, "role", &path)?.unwrap_or("user") {
            "model" => Role::Assistant,
            _ => Role::User,
        };
        let ppath = join(&path, "parts");
        let mut parts = Vec::new();
        for (j, part) in array(get(c, "parts").ok_or_else(|| missing(&ppath))?, &ppath)?
            .iter()
            .enumerate()
        {
            let path = format!("{ppath}[{j}]");
            let p = object(part, &path)?;
            let thought = opt_bool(p, "thought", &path)? == Some(true);
            if let (true, Some(text)) = (thought, opt_str(p, "text", &path)?) {
                parts.push(Part::Reasoning(Reasoning::text(text)));
            } else if let Some(text) = opt_str(p, "text", &path)? {
                parts.push(Part::Text(text.to_owned()));
            } else if let Some(data) = get(p, "inlineData") {
                let d = object(data, &path)?;
                parts.push(Part::Image(Image::Base64 {
                    media_type: req_str(d, "mimeType", &path)?.to_owned(),
                    data: req_str(d, "data", &path)?.to_owned(),
                }));
            } else if let Some(call) = get(p, "functionCall") {
                let f = object(call, &path)?;
                let name = req_str(f, "name", &path)?.to_owned();
                let id = format!("call_{calls}");
                calls += 1;
                last_call.insert(name.clone(), id.clone());
                parts.push(Part::ToolCall(ToolCall {
                    id,
                    name,
                    arguments: get(f, "args").map_or_else(|| "{}".into(), Value::to_string),
                }));
            } else if let Some(response) = get(p, "functionResponse") {
                let f = object(response, &path)?;
                let name = req_str(f, "name", &path)?;
                let result = get(f, "response").cloned().unwrap_or(json!({}));
                let content = match result.get("result").and_then(Value::as_str) {
                    Some(text) if result.as_object().is_some_and(|o| o.len() == 1) => {
                        text.to_owned()
                    }
                    _ => result.to_string(),
                };
                parts.push(Part::ToolResult(ToolResult {
                    call_id: last_call
                        .get(name)
                        .cloned()
                        .unwrap_or_else(|| name.to_owned()),
                    content,
                    is_error: false,
                }));
            } else {
                req.unsupported.push(path);
            }
        }
        req.messages.push(Message::new(role, parts));
    }
    if let Some(system) = get(obj, "systemInstruction") {
        let texts: Vec<&str> = system
            .get("parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        req.system = Some(texts.join("\n\n"));
    }
    for tool in get(obj, "tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for f in tool
            .get("functionDeclarations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let f = object(f, "tools")?;
            req.tools.push(Tool {
                name: req_str(f, "name", "tools")?.to_owned(),
                description: opt_str(f, "description", "tools")?.map(str::to_owned),
                parameters: get(f, "parametersJsonSchema")
                    .or_else(|| get(f, "parameters"))
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            });
        }
    }
    if let Some(config) = get(obj, "toolConfig").and_then(|c| c.get("functionCallingConfig")) {
        let allowed = config
            .get("allowedFunctionNames")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str);
        req.tool_choice = match (config.get("mode").and_then(Value::as_str), allowed) {
            (Some("ANY"), Some(name)) => Some(ToolChoice::Function(name.to_owned())),
            (Some("ANY"), None) => Some(ToolChoice::Required),
            (Some("NONE"), _) => Some(ToolChoice::None),
            (Some("AUTO"), _) => Some(ToolChoice::Auto),
            _ => None,
        };
    }
    if let Some(config) = get(obj, "generationConfig") {
        let c = object(config, "generationConfig")?;
        req.max_tokens = opt_u64(c, "maxOutputTokens")?;
        req.temperature = opt_f64(c, "temperature")?;
        req.top_p = opt_f64(c, "topP")?;
        req.top_k = opt_u64(c, "topK")?;
        req.seed = get(c, "seed").and_then(Value::as_i64);
        req.presence_penalty = opt_f64(c, "presencePenalty")?;
        req.frequency_penalty = opt_f64(c, "frequencyPenalty")?;
        req.stop = get(c, "stopSequences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect();
        req.response_format = match (get(c, "responseMimeType"), get(c, "responseJsonSchema")) {
            (_, Some(schema)) => Some(ResponseFormat::JsonSchema {
                name: "response".into(),
                schema: schema.clone(),
            }),
            (Some(mime), None) if mime == "application/json" => Some(ResponseFormat::JsonObject),
            _ => None,
        };
        if let Some(thinking) = get(c, "thinkingConfig") {
            req.thinking = decode_thinking(object(thinking, "generationConfig.thinkingConfig")?)?;
        }
    }
    Ok(req)
}
