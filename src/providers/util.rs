//! Small helpers shared by the dialect modules: reading JSON with field paths in the
//! errors, and the errors themselves.

use serde_json::{Map, Value};

use crate::error::GatewayError;
use crate::Dialect;

pub(crate) type Obj = Map<String, Value>;

/// A 400 naming `path`: it is not of the expected type.
pub(crate) fn bad(path: &str, what: &str) -> GatewayError {
    GatewayError::invalid_request(format!("`{path}` must be {what}.")).with_param(path.to_owned())
}

/// A 400 naming `path`: the field is missing.
pub(crate) fn missing(path: &str) -> GatewayError {
    GatewayError::invalid_request(format!("Missing required parameter `{path}`."))
        .with_param(path.to_owned())
}

/// A 400 naming `field`: the target dialect cannot express it.
pub(crate) fn unsupported(field: &str, target: Dialect, why: &str) -> GatewayError {
    let name = dialect_name(target);
    let why = if why.is_empty() {
        String::new()
    } else {
        format!(" ({why})")
    };
    GatewayError::invalid_request(format!(
        "`{field}` cannot be translated for this model's provider, which speaks the \
         {name} API{why}; remove it or pick a model served in your API's dialect."
    ))
    .with_param(field.to_owned())
    .with_code("unsupported_parameter")
}

/// A human name for a dialect.
pub(crate) fn dialect_name(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::OpenAi => "OpenAI",
        Dialect::Anthropic => "Anthropic",
        Dialect::Gemini => "Gemini",
    }
}

/// The value as an object, or a 400 naming `path`.
pub(crate) fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Obj, GatewayError> {
    value.as_object().ok_or_else(|| bad(path, "an object"))
}

/// The value as an array, or a 400 naming `path`.
pub(crate) fn array<'a>(value: &'a Value, path: &str) -> Result<&'a [Value], GatewayError> {
    value
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| bad(path, "an array"))
}

/// An optional field; `null` counts as absent.
pub(crate) fn get<'a>(obj: &'a Obj, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// An optional string field.
pub(crate) fn opt_str<'a>(
    obj: &'a Obj,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, GatewayError> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(&join(path, key), "a string")),
    }
}

/// A required string field.
pub(crate) fn req_str<'a>(obj: &'a Obj, key: &str, path: &str) -> Result<&'a str, GatewayError> {
    opt_str(obj, key, path)?.ok_or_else(|| missing(&join(path, key)))
}

/// An optional number field.
pub(crate) fn opt_f64(obj: &Obj, key: &str) -> Result<Option<f64>, GatewayError> {
    match get(obj, key) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| bad(key, "a number")),
    }
}

/// An optional non-negative integer field.
pub(crate) fn opt_u64(obj: &Obj, key: &str) -> Result<Option<u64>, GatewayError> {
    match get(obj, key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| bad(key, "a non-negative integer")),
    }
}

/// An optional boolean field.
pub(crate) fn opt_bool(obj: &Obj, key: &str, path: &str) -> Result<Option<bool>, GatewayError> {
    match get(obj, key) {
        None => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .ok_or_else(|| bad(&join(path, key), "a boolean")),
    }
}

/// `path.key`, or `key` at the top level.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Splits a `data:` URL into its media type and base64 data.
pub(crate) fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some((media_type, data))
}

/// Arguments JSON text as a JSON value (an object for providers that want one);
/// empty text is `{}`.
pub(crate) fn arguments_value(arguments: &str, path: &str) -> Result<Value, GatewayError> {
    if arguments.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_str(arguments).map_err(|_| bad(path, "valid JSON arguments"))
}

/// Tool result text as the object Gemini wants: a JSON object as is, anything else
/// under `"result"`.
pub(crate) fn result_object(content: &str) -> Value {
    match serde_json::from_str::<Value>(content) {
        Ok(Value::Object(map)) => Value::Object(map),
        _ => serde_json::json!({ "result": content }),
    }
}
