//! [`GuardrailLayer`] and its service.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{Request, Response};
use http_body_util::BodyExt;
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;

use super::check::{apply, blocked, ContentCheck, Side};
use super::stream::GuardedBody;
use crate::error::GatewayError;
use crate::request::LlmRequest;
use crate::{Body, BoxError, Dialect, Endpoint};

/// Checks prompts before the inner service sees them, and answers before the client
/// does, with a [`ContentCheck`]. See the [module docs](crate::guardrails).
#[derive(Clone)]
#[must_use]
pub struct GuardrailLayer {
    check: Arc<dyn ContentCheck>,
}

impl std::fmt::Debug for GuardrailLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardrailLayer").finish_non_exhaustive()
    }
}

impl GuardrailLayer {
    /// Guards with `check`.
    pub fn new(check: impl ContentCheck) -> Self {
        GuardrailLayer {
            check: Arc::new(check),
        }
    }
}

impl<S> Layer<S> for GuardrailLayer {
    type Service = Guardrail<S>;

    fn layer(&self, inner: S) -> Guardrail<S> {
        Guardrail {
            inner,
            check: self.check.clone(),
        }
    }
}

/// The service made by [`GuardrailLayer`].
#[derive(Clone)]
pub struct Guardrail<S> {
    inner: S,
    check: Arc<dyn ContentCheck>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Guardrail<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guardrail")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Guardrail<S> {
    /// Guards `inner` with `check`.
    pub fn new(inner: S, check: impl ContentCheck) -> Self {
        Guardrail {
            inner,
            check: Arc::new(check),
        }
    }

    crate::macros::inner_accessors!();
}

fn policy_error(reason: &str) -> GatewayError {
    GatewayError::invalid_request(reason.to_owned()).with_code("content_policy_violation")
}

impl<S, B, ResB> Service<Request<B>> for Guardrail<S>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: http_body::Body + From<Bytes> + Default + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The readied service goes into the future; its clone stays for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let check = self.check.clone();
        ResponseFuture::new(async move {
            let dialect = Dialect::from_path(req.uri().path());
            let llm = match LlmRequest::extract(&mut req).await {
                Ok(llm) => llm,
                Err(err) => return Ok(err.to_response(dialect)),
            };
            let dialect = llm.dialect();
            let endpoint = llm.endpoint();
            let mut json = llm.json().clone();
            let mut refused = None;
            let mut changed = false;
            request_texts(endpoint, &mut json, &mut |text| {
                if refused.is_some() {
                    return;
                }
                let findings = check.scan(text, Side::Request);
                if let Some(reason) = blocked(&findings) {
                    refused = Some(reason.to_owned());
                } else if !findings.is_empty() {
                    *text = apply(text, &findings);
                    changed = true;
                }
            });
            if let Some(reason) = refused {
                return Ok(policy_error(&reason).to_response(dialect));
            }
            if changed {
                let raw = Bytes::from(serde_json::to_vec(&json).expect("JSON serialises"));
                let redacted = match LlmRequest::parse(endpoint, raw.clone()) {
                    Ok(parsed) => parsed,
                    Err(err) => return Ok(err.to_response(dialect)),
                };
                req.headers_mut().remove(CONTENT_LENGTH);
                *req.body_mut() = B::from(raw);
                req.extensions_mut().insert(redacted);
            }
            let res = inner.call(req).await?;
            Ok(guard_response(res, check, dialect, endpoint).await)
        })
    }
}

crate::macros::boxed_response_future! {
    /// Response future of [`Guardrail`].
}

/// Checks a successful answer: whole for JSON, event by event for streams.
async fn guard_response<ResB>(
    res: Response<ResB>,
    check: Arc<dyn ContentCheck>,
    dialect: Dialect,
    endpoint: Endpoint,
) -> Response<Body>
where
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    let content_type = res
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !res.status().is_success() || endpoint == Endpoint::Embeddings {
        return res.map(Body::new);
    }
    if content_type.starts_with("text/event-stream") {
        let (parts, body) = res.into_parts();
        return Response::from_parts(parts, Body::new(GuardedBody::new(body, check, dialect)));
    }
    if !content_type.starts_with("application/json") {
        return res.map(Body::new);
    }
    // A JSON answer arrives whole (the upstream reads it whole before sending it).
    let (mut parts, body) = res.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            let err: BoxError = err.into();
            tracing::warn!(error = %err, "guardrail: the answer could not be read");
            return GatewayError::upstream("The upstream answer could not be read.")
                .to_response(dialect);
        }
    };
    let Ok(mut json) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let mut refused = None;
    let mut changed = false;
    response_texts(dialect, &mut json, &mut |text| {
        if refused.is_some() {
            return;
        }
        let findings = check.scan(text, Side::Response);
        if let Some(reason) = blocked(&findings) {
            refused = Some(reason.to_owned());
        } else if !findings.is_empty() {
            *text = apply(text, &findings);
            changed = true;
        }
    });
    if let Some(reason) = refused {
        let mut blocked = policy_error(&reason).to_response(dialect);
        // Keep what outer layers read (the outcome, who served it) next to the error.
        let error = std::mem::replace(blocked.extensions_mut(), parts.extensions);
        blocked.extensions_mut().extend(error);
        return blocked;
    }
    if !changed {
        return Response::from_parts(parts, Body::from(bytes));
    }
    parts.headers.remove(CONTENT_LENGTH);
    let body = serde_json::to_vec(&json).expect("JSON serialises");
    Response::from_parts(parts, Body::from(body))
}

/// Calls `f` on every prompt text of a request body.
fn request_texts(endpoint: Endpoint, json: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match endpoint {
        Endpoint::ChatCompletions => {
            if let Some(messages) = json.get_mut("messages").and_then(Value::as_array_mut) {
                for message in messages {
                    // Tool results (`role: tool`) are text contents too.
                    if let Some(content) = message.get_mut("content") {
                        text_or_blocks(content, f);
                    }
                    // Earlier assistant turns' tool calls go back to the provider.
                    tool_calls(message, f);
                }
            }
        }
        Endpoint::Messages => {
            if let Some(system) = json.get_mut("system") {
                text_or_blocks(system, f);
            }
            if let Some(messages) = json.get_mut("messages").and_then(Value::as_array_mut) {
                for message in messages {
                    if let Some(content) = message.get_mut("content") {
                        text_or_blocks(content, f);
                    }
                }
            }
        }
        Endpoint::Embeddings => match json.get_mut("input") {
            Some(Value::String(text)) => f(text),
            Some(Value::Array(items)) => {
                for item in items {
                    if let Value::String(text) = item {
                        f(text);
                    }
                }
            }
            _ => {}
        },
    }
}

/// A string, or an array of blocks: `{"type": "text", "text": ...}`, Anthropic
/// `tool_use` (every string inside its `input`) and `tool_result` (its content, a
/// string or text blocks).
fn text_or_blocks(value: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match value {
        Value::String(text) => f(text),
        Value::Array(blocks) => {
            for block in blocks {
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(Value::String(text)) = block.get_mut("text") {
                            f(text);
                        }
                    }
                    Some("tool_use") => {
                        if let Some(input) = block.get_mut("input") {
                            json_strings(input, f);
                        }
                    }
                    Some("tool_result") => {
                        if let Some(content) = block.get_mut("content") {
                            text_or_blocks(content, f);
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// Every string value inside a JSON value (object keys are names, not content).
fn json_strings(value: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match value {
        Value::String(text) => f(text),
        Value::Array(items) => items.iter_mut().for_each(|v| json_strings(v, f)),
        Value::Object(map) => map.values_mut().for_each(|v| json_strings(v, f)),
        _ => {}
    }
}

/// The arguments of an OpenAI message's `tool_calls`: JSON text, whose string values
/// are checked one by one and written back as valid JSON (arguments that are not JSON
/// are checked as plain text).
fn tool_calls(message: &mut Value, f: &mut dyn FnMut(&mut String)) {
    let Some(calls) = message.get_mut("tool_calls").and_then(Value::as_array_mut) else {
        return;
    };
    for call in calls {
        let Some(Value::String(arguments)) = call.pointer_mut("/function/arguments") else {
            continue;
        };
        match serde_json::from_str::<Value>(arguments) {
            Ok(mut parsed) => {
                let before = parsed.clone();
                json_strings(&mut parsed, f);
                if parsed != before {
                    *arguments = parsed.to_string();
                }
            }
            Err(_) => f(arguments),
        }
    }
}

/// Calls `f` on every text of a JSON answer in `dialect`.
fn response_texts(dialect: Dialect, json: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match dialect {
        Dialect::Anthropic => {
            if let Some(content) = json.get_mut("content") {
                text_or_blocks(content, f);
            }
        }
        _ => {
            if let Some(choices) = json.get_mut("choices").and_then(Value::as_array_mut) {
                for choice in choices {
                    if let Some(content) = choice.pointer_mut("/message/content") {
                        text_or_blocks(content, f);
                    }
                    if let Some(message) = choice.get_mut("message") {
                        tool_calls(message, f);
                    }
                }
            }
        }
    }
}
