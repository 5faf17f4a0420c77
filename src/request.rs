//! The parse-once request: [`LlmRequest`] and the [`ParseLayer`] that produces it.
//!
//! The first layer that needs the JSON body calls [`LlmRequest::extract`]. It buffers
//! the body under a limit (default 10 MiB; a larger `content-length` is refused with
//! 413 before a byte of the body is read), checks it is JSON, validates the fields the
//! gateway relies on, and stores the result in the request extensions. The body is put
//! back as the same bytes, so inner services and a same-dialect upstream see exactly
//! what the client sent (unknown fields survive). Every later caller gets the stored
//! value; the JSON tree ([`LlmRequest::json`]) is built once, when a layer first asks.
//!
//! Put [`ParseLayer`] at the top of a stack to parse up front and answer malformed
//! requests with a 400/413 in the client's dialect before any other work:
//!
//! ```
//! use tollgate::request::{LlmRequest, ParseLayer};
//! use tollgate::Body;
//! use tower::{ServiceBuilder, ServiceExt};
//! use http::{Request, Response};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let svc = ServiceBuilder::new()
//!     .layer(ParseLayer::new().limit(1024 * 1024))
//!     .service_fn(|req: Request<Body>| async move {
//!         let llm = req.extensions().get::<LlmRequest>().expect("parsed by ParseLayer");
//!         Ok::<_, std::convert::Infallible>(Response::new(Body::from(llm.model().to_owned())))
//!     });
//!
//! let req = Request::post("/v1/chat/completions")
//!     .body(Body::from(r#"{"model":"mock/echo","messages":[]}"#))?;
//! let res = svc.oneshot(req).await?;
//! assert_eq!(res.status(), 200);
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::GatewayError;
use crate::providers::wire::{self, Str};
use crate::{Body, BoxError};

/// The default request body limit: 10 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 10 * 1024 * 1024;

/// A provider's wire protocol: how requests, responses, streams and errors look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dialect {
    /// OpenAI and every OpenAI-compatible API (DeepSeek, GLM, Qwen, vLLM, Ollama, ...).
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
    /// Google's Gemini `generateContent` API.
    Gemini,
}

impl Dialect {
    /// The dialect a client speaks on this path: Anthropic for `.../messages`, OpenAI
    /// otherwise. Used to shape errors for requests that could not be parsed.
    pub fn from_path(path: &str) -> Dialect {
        Endpoint::from_path(path).map_or(Dialect::OpenAi, Endpoint::dialect)
    }
}

/// The API operation a request is for, known from its route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// OpenAI `POST /v1/chat/completions`.
    ChatCompletions,
    /// OpenAI `POST /v1/embeddings`.
    Embeddings,
    /// Anthropic `POST /v1/messages`.
    Messages,
}

impl Endpoint {
    /// Recognises the endpoint from the end of a path, so that prefixes such as
    /// `/v1`, `/openai/v1` or a nested router do not matter.
    pub fn from_path(path: &str) -> Option<Endpoint> {
        let path = path.trim_end_matches('/');
        if path.ends_with("/chat/completions") {
            Some(Endpoint::ChatCompletions)
        } else if path.ends_with("/embeddings") {
            Some(Endpoint::Embeddings)
        } else if path.ends_with("/messages") {
            Some(Endpoint::Messages)
        } else {
            None
        }
    }

    /// The dialect of this endpoint.
    pub fn dialect(self) -> Dialect {
        match self {
            Endpoint::ChatCompletions | Endpoint::Embeddings => Dialect::OpenAi,
            Endpoint::Messages => Dialect::Anthropic,
        }
    }

    /// The path of this endpoint below a provider's base URL (`/chat/completions`).
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Messages => "/messages",
        }
    }
}

/// The request body limit [`LlmRequest::extract`] applies, when a layer put one in the
/// request extensions; otherwise [`DEFAULT_BODY_LIMIT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit(pub usize);

/// Sampling parameters that change the answer (and so the cache key and the price).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Sampling {
    /// `temperature`.
    pub temperature: Option<f64>,
    /// `top_p`.
    pub top_p: Option<f64>,
    /// Anthropic's `top_k`.
    pub top_k: Option<u64>,
    /// OpenAI's `seed`.
    pub seed: Option<i64>,
    /// OpenAI's `n` (number of choices).
    pub n: Option<u64>,
}

/// Where a layer in front of the parsing one learns the parsed request.
///
/// Request extensions do not travel back out with the response, so a layer that sits
/// before the body is parsed (metrics and access logs sit outside authentication, which
/// never reads a body) inserts a `ParsedSlot` in the request extensions and keeps a
/// clone; [`LlmRequest::extract`] fills it when it parses the body. The slot stays empty
/// for requests that were never parsed (refused before, or not an LLM endpoint).
#[derive(Clone, Default)]
pub struct ParsedSlot(Arc<std::sync::OnceLock<LlmRequest>>);

impl ParsedSlot {
    /// An empty slot.
    pub fn new() -> Self {
        ParsedSlot::default()
    }

    /// The parsed request, once a layer further in has parsed it.
    pub fn get(&self) -> Option<&LlmRequest> {
        self.0.get()
    }
}

impl fmt::Debug for ParsedSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ParsedSlot").field(&self.get()).finish()
    }
}

/// A parsed LLM API request. See the [module docs](crate::request).
///
/// Cheap to clone (one `Arc`). The raw bytes are kept for byte-exact pass-through; the
/// JSON tree ([`json`](LlmRequest::json)) is built the first time a layer asks for it
/// (translation, a cache key) and kept, so no layer parses the body into a tree twice.
#[derive(Clone)]
pub struct LlmRequest(Arc<Inner>);

struct Inner {
    endpoint: Endpoint,
    model: String,
    stream: bool,
    include_usage: bool,
    /// The body has a `stream_options` key (even `null`).
    has_stream_options: bool,
    max_tokens: Option<u64>,
    sampling: Sampling,
    /// The body as a `Value`, parsed only when asked for (see [`LlmRequest::json`]).
    json: OnceLock<Value>,
    raw: Bytes,
    /// [`LlmRequest::estimated_input_tokens`], counted by the pass that checks the body
    /// (it reads every string anyway; rate limits, budgets and prices all ask).
    input_estimate: u64,
}

impl LlmRequest {
    /// Returns the request stored in the extensions, or buffers the body (under the
    /// [`BodyLimit`] extension, else [`DEFAULT_BODY_LIMIT`]), parses it, stores it and
    /// puts the same bytes back as the body.
    ///
    /// Errors are ready to send in the client's dialect: 400 for malformed JSON or a
    /// field of the wrong type, 413 for a body over the limit, 404 for a path that is
    /// not an LLM endpoint (insert an [`Endpoint`] extension to name it explicitly).
    pub async fn extract<B>(req: &mut Request<B>) -> Result<LlmRequest, GatewayError>
    where
        B: http_body::Body + From<Bytes> + Default,
        B::Error: Into<BoxError>,
    {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map_or(DEFAULT_BODY_LIMIT, |l| l.0);
        Self::extract_with_limit(req, limit).await
    }

    /// Like [`extract`](LlmRequest::extract) with an explicit body limit in bytes.
    pub async fn extract_with_limit<B>(
        req: &mut Request<B>,
        limit: usize,
    ) -> Result<LlmRequest, GatewayError>
    where
        B: http_body::Body + From<Bytes> + Default,
        B::Error: Into<BoxError>,
    {
        if let Some(parsed) = req.extensions().get::<LlmRequest>() {
            return Ok(parsed.clone());
        }
        let endpoint = match req.extensions().get::<Endpoint>() {
            Some(endpoint) => *endpoint,
            None => Endpoint::from_path(req.uri().path()).ok_or_else(|| {
                GatewayError::new(
                    crate::error::ErrorKind::NotFound,
                    format!(
                        "`{}` is not an LLM API endpoint this gateway understands \
                         (chat/completions, embeddings, messages).",
                        req.uri().path()
                    ),
                )
            })?,
        };
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return Err(GatewayError::payload_too_large(limit));
        }
        let body = std::mem::take(req.body_mut());
        let raw = match read_body(body, limit).await {
            Ok(raw) => raw,
            Err(err)
                if err
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return Err(GatewayError::payload_too_large(limit));
            }
            Err(err) => {
                return Err(GatewayError::invalid_request(format!(
                    "The request body could not be read: {err}."
                )));
            }
        };
        let parsed = LlmRequest::parse(endpoint, raw.clone())?;
        *req.body_mut() = B::from(raw);
        if let Some(slot) = req.extensions().get::<ParsedSlot>() {
            let _ = slot.0.set(parsed.clone());
        }
        req.extensions_mut().insert(parsed.clone());
        Ok(parsed)
    }

    /// Parses and validates a complete body for `endpoint`.
    pub fn parse(endpoint: Endpoint, raw: Bytes) -> Result<LlmRequest, GatewayError> {
        let json = OnceLock::new();
        let fields = match wire::from_slice::<TopLevel>(&raw) {
            Ok(TopLevel(Some(fields))) => fields,
            Ok(TopLevel(None)) => return Err(not_an_object()),
            // Only serde_json's private map keys make this pass refuse a body (see
            // `Key`); the `Value` is parsed as before, with their special meaning.
            Err(err) if err.is_data() => {
                let value: Value = serde_json::from_slice(&raw).map_err(not_json)?;
                let fields = Fields::of(value.as_object().ok_or_else(not_an_object)?);
                let _ = json.set(value);
                fields
            }
            Err(err) => return Err(not_json(err)),
        };
        fields.into_request(endpoint, json, raw)
    }

    /// The operation requested.
    pub fn endpoint(&self) -> Endpoint {
        self.0.endpoint
    }

    /// The dialect the client speaks (errors are answered in it).
    pub fn dialect(&self) -> Dialect {
        self.0.endpoint.dialect()
    }

    /// The `model` field as the client sent it.
    pub fn model(&self) -> &str {
        &self.0.model
    }

    /// Whether the client asked for a stream (`"stream": true`).
    pub fn is_stream(&self) -> bool {
        self.0.stream
    }

    /// Whether the client asked for usage in the stream
    /// (`stream_options.include_usage`).
    pub fn include_usage(&self) -> bool {
        self.0.include_usage
    }

    /// Whether the body has a `stream_options` key at all (`null` included): the
    /// upstream can then splice its own in without parsing the body.
    #[cfg_attr(not(feature = "upstream"), allow(dead_code))]
    pub(crate) fn has_stream_options(&self) -> bool {
        self.0.has_stream_options
    }

    /// `max_completion_tokens`, else `max_tokens`.
    pub fn max_tokens(&self) -> Option<u64> {
        self.0.max_tokens
    }

    /// The sampling parameters.
    pub fn sampling(&self) -> &Sampling {
        &self.0.sampling
    }

    /// The parsed body.
    ///
    /// Built on first use (a translation, a cache key, a guardrail, the prompt
    /// estimate): a same-dialect pass-through never needs it, and building one costs
    /// more than the rest of the parse.
    pub fn json(&self) -> &Value {
        self.0.json.get_or_init(|| {
            wire::from_slice(&self.0.raw)
                .expect("LlmRequest::parse checked that the body is JSON a Value accepts")
        })
    }

    /// The body exactly as the client sent it.
    pub fn raw(&self) -> &Bytes {
        &self.0.raw
    }

    /// A cheap estimate of the input tokens (about four characters of text per token,
    /// plus a few tokens of framing per message), for reservations made before the
    /// provider reports the real count.
    pub fn estimated_input_tokens(&self) -> u64 {
        self.0.input_estimate
    }
}

impl fmt::Debug for LlmRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The body can hold user data: show only the routing facts.
        f.debug_struct("LlmRequest")
            .field("endpoint", &self.0.endpoint)
            .field("model", &self.0.model)
            .field("stream", &self.0.stream)
            .field("max_tokens", &self.0.max_tokens)
            .field("bytes", &self.0.raw.len())
            .finish_non_exhaustive()
    }
}

/// Reads a body to its end under `limit` bytes (over it, `Limited`'s error). A body in
/// one frame, as most requests are, is kept as that frame's bytes: unlike `Collected`,
/// no buffer list is allocated and nothing is copied.
async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, BoxError>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(Limited::new(body, limit));
    let mut whole = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    while let Some(frame) = body.as_mut().frame().await {
        // Trailers are dropped, as `Collected::to_bytes` drops them.
        let Ok(mut data) = frame?.into_data() else {
            continue;
        };
        let data = data.copy_to_bytes(data.remaining());
        match &mut joined {
            Some(buf) => buf.extend_from_slice(&data),
            None if whole.is_empty() => whole = data,
            None if data.is_empty() => {}
            None => {
                let mut buf = BytesMut::from(&whole[..]);
                buf.extend_from_slice(&data);
                joined = Some(buf);
            }
        }
    }
    Ok(joined.map_or(whole, BytesMut::freeze))
}

fn not_json(err: serde_json::Error) -> GatewayError {
    GatewayError::invalid_request(format!(
        "The request body is not valid JSON ({err}); send a JSON object."
    ))
}

fn not_an_object() -> GatewayError {
    GatewayError::invalid_request("The request body must be a JSON object.")
}

fn wrong_type(field: &'static str, what: &str) -> GatewayError {
    GatewayError::invalid_request(format!("`{field}` must be {what}.")).with_param(field)
}

fn require(
    found: Option<Kind>,
    field: &'static str,
    ok: fn(Kind) -> bool,
    what: &str,
) -> Result<(), GatewayError> {
    match found {
        Some(kind) if ok(kind) => Ok(()),
        None | Some(Kind::Null) => Err(GatewayError::invalid_request(format!(
            "Missing required parameter `{field}`."
        ))
        .with_param(field)),
        Some(_) => Err(wrong_type(field, what)),
    }
}

fn optional<'a, T>(
    found: Option<&'a Value>,
    field: &'static str,
    get: fn(&'a Value) -> Option<T>,
    what: &str,
) -> Result<Option<T>, GatewayError> {
    match found {
        None | Some(Value::Null) => Ok(None),
        Some(v) => get(v).map(Some).ok_or_else(|| wrong_type(field, what)),
    }
}

// ===== Fields =====

/// The top-level fields [`LlmRequest::parse`] checks, read in one pass over the body
/// that checks all of it as serde_json does for a [`Value`] (same errors) without
/// building one: the `Value` tree (a map, a `String` per key and per text) cost more
/// than the rest of the parse, and a same-dialect pass-through never reads it.
///
/// Small fields are kept as `Value`s, checked by the same code as before; the big ones
/// only by their JSON type. A repeated key counts once, the last one, as in a `Value`.
#[derive(Default)]
struct Fields {
    model: Option<Value>,
    stream: Option<Value>,
    stream_options: Option<Value>,
    max_completion_tokens: Option<Value>,
    max_tokens: Option<Value>,
    temperature: Option<Value>,
    top_p: Option<Value>,
    top_k: Option<Value>,
    seed: Option<Value>,
    n: Option<Value>,
    messages: Option<Shape>,
    input: Option<Shape>,
    tools: Option<Shape>,
    stop_sequences: Option<Shape>,
    system: Option<Shape>,
}

/// The JSON type of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    String,
    Array,
    Object,
    Other,
}

/// What the checking pass keeps of a value that is not kept: its JSON type and, for the
/// prompt estimate, the bytes of text in it (its strings once unescaped, not its keys)
/// and its number of items (an array's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    kind: Kind,
    text: u64,
    items: u64,
}

impl Shape {
    const fn new(kind: Kind) -> Shape {
        Shape {
            kind,
            text: 0,
            items: 0,
        }
    }

    /// The shape of a value already parsed.
    fn of(value: &Value) -> Shape {
        match value {
            Value::Null => Shape::new(Kind::Null),
            Value::String(s) => Shape {
                text: s.len() as u64,
                ..Shape::new(Kind::String)
            },
            Value::Array(items) => Shape {
                text: items.iter().map(|v| Shape::of(v).text).sum(),
                items: items.len() as u64,
                ..Shape::new(Kind::Array)
            },
            Value::Object(map) => Shape {
                text: map.values().map(|v| Shape::of(v).text).sum(),
                ..Shape::new(Kind::Object)
            },
            _ => Shape::new(Kind::Other),
        }
    }
}

impl Fields {
    /// The fields of a body already parsed into a `Value`.
    fn of(obj: &serde_json::Map<String, Value>) -> Fields {
        let value = |name: &str| obj.get(name).cloned();
        let shape = |name: &str| obj.get(name).map(Shape::of);
        Fields {
            model: value("model"),
            stream: value("stream"),
            stream_options: value("stream_options"),
            max_completion_tokens: value("max_completion_tokens"),
            max_tokens: value("max_tokens"),
            temperature: value("temperature"),
            top_p: value("top_p"),
            top_k: value("top_k"),
            seed: value("seed"),
            n: value("n"),
            messages: shape("messages"),
            input: shape("input"),
            tools: shape("tools"),
            stop_sequences: shape("stop_sequences"),
            system: shape("system"),
        }
    }

    /// Reads the value of the field `key`; the value of any other key is only checked.
    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        let value = match key {
            "model" => &mut self.model,
            "stream" => &mut self.stream,
            "stream_options" => &mut self.stream_options,
            "max_completion_tokens" => &mut self.max_completion_tokens,
            "max_tokens" => &mut self.max_tokens,
            "temperature" => &mut self.temperature,
            "top_p" => &mut self.top_p,
            "top_k" => &mut self.top_k,
            "seed" => &mut self.seed,
            "n" => &mut self.n,
            _ => {
                let shape = match key {
                    "messages" => &mut self.messages,
                    "input" => &mut self.input,
                    "tools" => &mut self.tools,
                    "stop_sequences" => &mut self.stop_sequences,
                    "system" => &mut self.system,
                    _ => return map.next_value::<Checked>().map(drop),
                };
                *shape = Some(map.next_value::<Checked>()?.0);
                return Ok(());
            }
        };
        *value = Some(map.next_value()?);
        Ok(())
    }

    /// Checks the fields the gateway relies on, in the order (and with the errors) it
    /// has always reported them.
    fn into_request(
        self,
        endpoint: Endpoint,
        json: OnceLock<Value>,
        raw: Bytes,
    ) -> Result<LlmRequest, GatewayError> {
        let input_estimate = self.input_estimate();
        let model = match self.model {
            Some(Value::String(model)) if !model.is_empty() => model,
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err(
                    GatewayError::invalid_request("You must provide a model parameter.")
                        .with_param("model"),
                )
            }
            Some(_) => return Err(wrong_type("model", "a string")),
        };
        match endpoint {
            Endpoint::ChatCompletions | Endpoint::Messages => require(
                self.messages.map(|s| s.kind),
                "messages",
                |k| k == Kind::Array,
                "an array of messages",
            )?,
            Endpoint::Embeddings => require(
                self.input.map(|s| s.kind),
                "input",
                |k| k == Kind::String || k == Kind::Array,
                "a string or an array",
            )?,
        }
        let stream =
            optional(self.stream.as_ref(), "stream", Value::as_bool, "a boolean")?.unwrap_or(false);
        let has_stream_options = self.stream_options.is_some();
        let include_usage = match &self.stream_options {
            None | Some(Value::Null) => false,
            Some(Value::Object(opts)) => optional(
                opts.get("include_usage"),
                "include_usage",
                Value::as_bool,
                "a boolean",
            )
            .map_err(|e| e.with_param("stream_options.include_usage"))?
            .unwrap_or(false),
            Some(_) => return Err(wrong_type("stream_options", "an object")),
        };
        let count = "a non-negative integer";
        let max_tokens = match optional(
            self.max_completion_tokens.as_ref(),
            "max_completion_tokens",
            Value::as_u64,
            count,
        )? {
            Some(n) => Some(n),
            None => optional(self.max_tokens.as_ref(), "max_tokens", Value::as_u64, count)?,
        };
        for (field, shape) in [
            ("tools", self.tools),
            ("stop_sequences", self.stop_sequences),
        ] {
            if !matches!(shape.map(|s| s.kind), None | Some(Kind::Null | Kind::Array)) {
                return Err(wrong_type(field, "an array"));
            }
        }
        let number = |value: &Option<Value>, field| {
            optional(value.as_ref(), field, Value::as_f64, "a number")
        };
        let sampling = Sampling {
            temperature: number(&self.temperature, "temperature")?,
            top_p: number(&self.top_p, "top_p")?,
            top_k: optional(self.top_k.as_ref(), "top_k", Value::as_u64, count)?,
            seed: optional(self.seed.as_ref(), "seed", Value::as_i64, "an integer")?,
            n: optional(self.n.as_ref(), "n", Value::as_u64, "a positive integer")?,
        };
        if sampling.n == Some(0) {
            return Err(wrong_type("n", "a positive integer"));
        }
        Ok(LlmRequest(Arc::new(Inner {
            endpoint,
            model,
            stream,
            include_usage,
            has_stream_options,
            max_tokens,
            sampling,
            json,
            raw,
            input_estimate,
        })))
    }

    /// About four bytes of text per token, plus a few tokens of framing per message.
    fn input_estimate(&self) -> u64 {
        let prompt = [self.messages, self.system, self.input, self.tools];
        let text: u64 = prompt.iter().flatten().map(|s| s.text).sum();
        let messages = self.messages.filter(|s| s.kind == Kind::Array);
        text.div_ceil(4) + 4 * messages.map_or(0, |s| s.items)
    }
}

/// A whole body, read by [`Fields`]: the fields of an object, or `None` for any other
/// JSON (checked all the same, so that malformed JSON is reported as such first).
struct TopLevel(Option<Fields>);

impl<'de> Deserialize<'de> for TopLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut fields = Fields::default();
        let check = Check {
            fields: Some(&mut fields),
        };
        let shape = deserializer.deserialize_any(check)?;
        Ok(TopLevel((shape.kind == Kind::Object).then_some(fields)))
    }
}

/// Any JSON value, checked exactly as a [`Value`] would be and dropped: only its
/// [`Shape`] is kept.
struct Checked(Shape);

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(Check { fields: None })
            .map(Checked)
    }
}

/// Visits a JSON value the way a [`Value`] is built (each value through
/// `deserialize_any`, each string and key read and checked, numbers converted, the
/// same recursion limit) without keeping it. serde's `IgnoredAny` would be cheaper but
/// lets through what a `Value` refuses (floats out of range, invalid UTF-8, nesting
/// past the limit). The fields of an object go into `fields` when there is one.
struct Check<'f> {
    fields: Option<&'f mut Fields>,
}

impl<'de> Visitor<'de> for Check<'_> {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let mut shape = Shape::new(Kind::Object);
        match self.fields {
            Some(fields) => {
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    fields.read(&key.0, &mut map)?;
                }
            }
            None => {
                while map.next_key::<Key<'de>>()?.is_some() {
                    shape.text += map.next_value::<Checked>()?.0.text;
                }
            }
        }
        Ok(shape)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        let mut shape = Shape::new(Kind::Array);
        while let Some(item) = seq.next_element::<Checked>()? {
            shape.text += item.0.text;
            shape.items += 1;
        }
        Ok(shape)
    }

    fn visit_str<E>(self, s: &str) -> Result<Shape, E> {
        Ok(Shape {
            text: s.len() as u64,
            ..Shape::new(Kind::String)
        })
    }

    fn visit_unit<E>(self) -> Result<Shape, E> {
        Ok(Shape::new(Kind::Null))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
        Ok(Shape::new(Kind::Other))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
        Ok(Shape::new(Kind::Other))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
        Ok(Shape::new(Kind::Other))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
        Ok(Shape::new(Kind::Other))
    }
}

/// An object key, borrowed from the body when it has no escapes.
///
/// serde_json gives two private keys a meaning when it builds a `Value` (with its
/// `raw_value` or `arbitrary_precision` feature, a map whose first key is one of them
/// is read as the value it holds). They are refused here with a data error, the only
/// one this pass makes, and [`LlmRequest::parse`] then builds the `Value` as before.
struct Key<'a>(Str<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let key = Str::deserialize(deserializer)?;
        if key.starts_with("$serde_json::private::") {
            return Err(serde::de::Error::custom("a serde_json private key"));
        }
        Ok(Key(key))
    }
}

// ===== ParseLayer =====

/// Parses the [`LlmRequest`] up front and answers bad requests in the client's
/// dialect. See the [module docs](crate::request).
///
/// Reads: the request body. Writes: [`LlmRequest`] into the request extensions.
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct ParseLayer {
    limit: usize,
}

impl ParseLayer {
    /// A layer with the default 10 MiB body limit.
    pub const fn new() -> Self {
        ParseLayer {
            limit: DEFAULT_BODY_LIMIT,
        }
    }

    /// Sets the body limit in bytes; larger bodies get 413.
    pub const fn limit(mut self, bytes: usize) -> Self {
        self.limit = bytes;
        self
    }
}

impl Default for ParseLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for ParseLayer {
    type Service = Parse<S>;

    fn layer(&self, inner: S) -> Parse<S> {
        Parse {
            inner,
            limit: self.limit,
        }
    }
}

/// The service made by [`ParseLayer`].
#[derive(Debug, Clone)]
pub struct Parse<S> {
    inner: S,
    limit: usize,
}

impl<S> Parse<S> {
    /// Wraps `inner` with the default limit.
    pub const fn new(inner: S) -> Self {
        Parse {
            inner,
            limit: DEFAULT_BODY_LIMIT,
        }
    }

    crate::macros::inner_accessors!();
}

impl<S, B, ResB> Service<Request<B>> for Parse<S>
where
    S: Service<Request<Body>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
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

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // Move the service that was made ready into the future; leave its clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limit = self.limit;
        let mut req = req.map(Body::new);
        ResponseFuture::new(async move {
            if let Err(err) = LlmRequest::extract_with_limit(&mut req, limit).await {
                return Ok(err.to_response(Dialect::from_path(req.uri().path())));
            }
            let res = inner.call(req).await?;
            Ok(res.map(Body::new))
        })
    }
}

crate::macros::boxed_response_future! {
    /// Response future of [`Parse`].
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, body: &'static str) -> Request<Body> {
        Request::post(path).body(Body::from(body)).unwrap()
    }

    #[tokio::test]
    async fn parses_once_and_keeps_bytes() {
        let raw = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":5,"temperature":0,"seed":3,"x_unknown":{"a":1}}"#;
        let mut r = req("/v1/chat/completions", raw);
        let parsed = LlmRequest::extract(&mut r).await.unwrap();
        assert_eq!(parsed.model(), "m");
        assert!(parsed.is_stream() && parsed.include_usage());
        assert_eq!(parsed.max_tokens(), Some(5));
        assert_eq!(parsed.sampling().temperature, Some(0.0));
        assert_eq!(parsed.sampling().seed, Some(3));
        assert_eq!(parsed.raw().as_ref(), raw.as_bytes());
        // The body is the same bytes again, and a second extract does not read it.
        let again = LlmRequest::extract(&mut r).await.unwrap();
        assert!(Arc::ptr_eq(&parsed.0, &again.0));
        let body = std::mem::take(r.body_mut())
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(body.as_ref(), raw.as_bytes());
    }

    #[test]
    fn the_value_is_built_on_first_use() {
        let raw =
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream_options":null}"#;
        let parsed = LlmRequest::parse(Endpoint::ChatCompletions, Bytes::from(raw)).unwrap();
        // "user" + "hi": 6 bytes, 2 tokens, plus 4 for the message; no `Value` needed.
        assert_eq!(parsed.estimated_input_tokens(), 6);
        assert!(parsed.0.json.get().is_none());
        assert!(parsed.has_stream_options());
        let value: Value = serde_json::from_str(raw).unwrap();
        assert_eq!(parsed.json(), &value);
        assert!(parsed.0.json.get().is_some());
        let bare = r#"{"model":"m","messages":[]}"#;
        let parsed = LlmRequest::parse(Endpoint::ChatCompletions, Bytes::from(bare)).unwrap();
        assert!(!parsed.has_stream_options());
    }

    /// The prompt estimate as it was worked out from the `Value`.
    fn estimate_from_value(json: &Value) -> u64 {
        fn chars(v: &Value) -> u64 {
            match v {
                Value::String(s) => s.len() as u64,
                Value::Array(items) => items.iter().map(chars).sum(),
                Value::Object(map) => map.values().map(chars).sum(),
                _ => 0,
            }
        }
        let text: u64 = ["messages", "system", "input", "tools"]
            .iter()
            .filter_map(|name| json.get(name))
            .map(chars)
            .sum();
        let messages = json["messages"].as_array().map_or(0, Vec::len) as u64;
        text.div_ceil(4) + 4 * messages
    }

    /// The one pass accepts and refuses what a `Value` does, with the same message,
    /// and `json()` is that `Value`.
    #[test]
    fn bodies_are_checked_as_a_value_would_be() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let bodies: Vec<Vec<u8>> = vec![
            br#"{"model":"m","messages":[],"x":1e400}"#.to_vec(),
            br#"{"model":"m","messages":[{"content":"\ud800"}]}"#.to_vec(),
            b"{\"model\":\"m\",\"messages\":[\"\xff\"]}".to_vec(),
            b"{\"model\":\"m\",\"messages\":[],\"x\":\"\xff\"}".to_vec(),
            format!(r#"{{"model":"m","messages":[],"x":{deep}}}"#).into_bytes(),
            br#"{"mod\u0065l":"m","messages":[]}"#.to_vec(),
            br#"{"model":"a","messages":"x","model":"b","messages":[]}"#.to_vec(),
            br#"{"model":"m","messages":[]} x"#.to_vec(),
            br#"{"model":"m","messages":[{"$serde_json::private::RawValue":"1"}]}"#.to_vec(),
            br#"{"model":"m","messages":[{"$serde_json::private::RawValue":"no"}]}"#.to_vec(),
            br#"{"$serde_json::private::RawValue":"{\"model\":\"m\",\"messages\":[]}"}"#.to_vec(),
            br#"{"model":"m","messages":[],"x":{"a":[1,-2,3.5,true,null,"s\n",{}]}}"#.to_vec(),
            br#"{"model":"m","system":"be \"brief\"","messages":[{"role":"user","content":[{"type":"text","text":"caf\u00e9"}]}],"tools":[{"name":"t","parameters":{"a":1}}],"input":"xyz"}"#.to_vec(),
            br#"{"model":"m","messages":[{"content":"long text here"}],"messages":[]}"#.to_vec(),
            b"[1,2".to_vec(),
            b"[1,2]".to_vec(),
            b"  ".to_vec(),
        ];
        for body in bodies {
            let shown = String::from_utf8_lossy(&body).into_owned();
            let parsed = LlmRequest::parse(Endpoint::ChatCompletions, Bytes::from(body.clone()));
            match serde_json::from_slice::<Value>(&body) {
                Ok(value) if value.is_object() => {
                    let parsed = parsed.expect(&shown);
                    assert_eq!(Some(parsed.model()), value["model"].as_str(), "{shown}");
                    assert_eq!(parsed.json(), &value, "{shown}");
                    let estimate = estimate_from_value(&value);
                    assert_eq!(parsed.estimated_input_tokens(), estimate, "{shown}");
                }
                Ok(_) => {
                    let err = parsed.unwrap_err().to_json(Dialect::OpenAi);
                    let message = &err["error"]["message"];
                    assert_eq!(
                        message, "The request body must be a JSON object.",
                        "{shown}"
                    );
                }
                Err(expected) => {
                    let err = parsed.unwrap_err().to_json(Dialect::OpenAi);
                    let expected = not_json(expected).to_json(Dialect::OpenAi);
                    assert_eq!(err["error"]["message"], expected["error"]["message"]);
                }
            }
        }
    }

    #[tokio::test]
    async fn bad_input_is_a_400_naming_the_field() {
        let cases = [
            ("{not json", None),
            ("[1,2]", None),
            (r#"{"messages":[]}"#, Some("model")),
            (r#"{"model":5,"messages":[]}"#, Some("model")),
            (r#"{"model":"m","messages":"hi"}"#, Some("messages")),
            (
                r#"{"model":"m","messages":[],"stream":"yes"}"#,
                Some("stream"),
            ),
            (
                r#"{"model":"m","messages":[],"max_tokens":-1}"#,
                Some("max_tokens"),
            ),
            (
                r#"{"model":"m","messages":[],"temperature":"hot"}"#,
                Some("temperature"),
            ),
            (
                r#"{"model":"m","messages":[],"stream_options":{"include_usage":1}}"#,
                Some("stream_options.include_usage"),
            ),
        ];
        for (body, param) in cases {
            let err = LlmRequest::extract(&mut req("/v1/chat/completions", body))
                .await
                .unwrap_err();
            assert_eq!(err.status(), 400, "{body}");
            let json = err.to_json(Dialect::OpenAi);
            assert_eq!(json["error"]["param"].as_str(), param, "{body}");
        }
    }

    /// A body that sends its frames one by one.
    struct Frames(std::collections::VecDeque<http_body::Frame<Bytes>>);

    impl http_body::Body for Frames {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    #[tokio::test]
    async fn a_body_in_frames_is_joined_under_the_limit() {
        let frames = |parts: &[&'static str]| {
            let mut frames: std::collections::VecDeque<_> = parts
                .iter()
                .map(|p| http_body::Frame::data(Bytes::from_static(p.as_bytes())))
                .collect();
            frames.push_back(http_body::Frame::trailers(http::HeaderMap::new()));
            Frames(frames)
        };
        let parts = ["", r#"{"model":"m","#, "", r#""messages":[]}"#];
        let raw = read_body(frames(&parts), 100).await.unwrap();
        assert_eq!(raw, parts.concat());
        let one = read_body(frames(&["", "{}", ""]), 100).await.unwrap();
        assert_eq!(one, "{}");
        let err = read_body(frames(&parts), 20).await.unwrap_err();
        assert!(err.is::<http_body_util::LengthLimitError>());
    }

    #[tokio::test]
    async fn over_limit_is_413_by_header_or_by_reading() {
        let mut r = req("/v1/chat/completions", r#"{"model":"m","messages":[]}"#);
        r.extensions_mut().insert(BodyLimit(8));
        assert_eq!(LlmRequest::extract(&mut r).await.unwrap_err().status(), 413);

        let mut r = req("/v1/chat/completions", "{}");
        r.headers_mut().insert(CONTENT_LENGTH, 1_000_000.into());
        let err = LlmRequest::extract_with_limit(&mut r, 10)
            .await
            .unwrap_err();
        assert_eq!(err.status(), 413);
    }

    #[test]
    fn endpoints_from_paths() {
        assert_eq!(
            Endpoint::from_path("/v1/chat/completions"),
            Some(Endpoint::ChatCompletions)
        );
        assert_eq!(
            Endpoint::from_path("/openai/v1/embeddings/"),
            Some(Endpoint::Embeddings)
        );
        assert_eq!(
            Endpoint::from_path("/v1/messages"),
            Some(Endpoint::Messages)
        );
        assert_eq!(Endpoint::from_path("/v1/models"), None);
        assert_eq!(Dialect::from_path("/v1/messages"), Dialect::Anthropic);
    }

    #[test]
    fn estimate_counts_text() {
        let raw = Bytes::from_static(
            br#"{"model":"m","messages":[{"role":"user","content":"aaaaaaaa"}]}"#,
        );
        let r = LlmRequest::parse(Endpoint::ChatCompletions, raw).unwrap();
        // "user" + "aaaaaaaa" = 12 chars -> 3 tokens, plus 4 for the message.
        assert_eq!(r.estimated_input_tokens(), 7);
    }
}
