//! Protocol translation: one module per dialect, each converting requests,
//! responses, stream events and errors to and from one canonical form.
//!
//! ```text
//! client dialect ──decode──► canonical ──encode──► provider dialect
//! ```
//!
//! | module | API | stream terminal |
//! |---|---|---|
//! | [`openai`] | `/chat/completions` (and every OpenAI-compatible provider) | `data: [DONE]` |
//! | [`anthropic`] | `/v1/messages` | `event: message_stop` |
//! | [`gemini`] | `models/{m}:generateContent`, `:streamGenerateContent?alt=sse` | the chunk with a `finishReason` |
//!
//! The canonical types live in this module: [`ChatRequest`], [`ChatResponse`] and
//! [`StreamEvent`]. Streams convert **event by event as they arrive** with a
//! [`StreamDecoder`] of the provider's dialect feeding a [`StreamEncoder`] of the
//! client's ([`TranslateStream`] does it on a body), holding at most one partial event.
//!
//! Reasoning travels too: the request setting ([`Thinking`]: OpenAI `reasoning_effort`,
//! Anthropic `thinking`, Gemini `thinkingConfig`), reasoning parts of answers and of
//! earlier turns ([`Reasoning`], with Anthropic's signature), and reasoning in streams
//! ([`StreamEvent::Reasoning`]). Each dialect module says what it sends and keeps.
//!
//! A request feature the target cannot express (`n > 1` to Anthropic, an image URL to
//! Gemini, a server tool, `logprobs`, ...) is a 400 naming the field, never a silent
//! drop. [`Upstream`](crate::upstream::Upstream) uses this module when the client's
//! dialect and the target's differ; the same dialect stays a byte pass-through.
//!
//! ```
//! use bytes::BytesMut;
//! use serde_json::json;
//! use tollgate::providers::{self, StreamDecoder, StreamEncoder};
//! use tollgate::sse::Decoder;
//! use tollgate::Dialect;
//!
//! // An OpenAI request, for an Anthropic provider.
//! let body = json!({"model": "claude-x", "messages": [
//!     {"role": "system", "content": "Be brief."},
//!     {"role": "user", "content": "hi"},
//! ]});
//! let canonical = providers::decode_request(Dialect::OpenAi, &body).unwrap();
//! let anthropic = providers::encode_request(Dialect::Anthropic, &canonical).unwrap();
//! assert_eq!(anthropic["system"], "Be brief.");
//! assert_eq!(anthropic["max_tokens"], providers::anthropic::DEFAULT_MAX_TOKENS);
//!
//! // `n: 2` cannot be expressed: a 400 naming the field.
//! let two = json!({"model": "claude-x", "n": 2, "messages": [{"role": "user", "content": "hi"}]});
//! let err = providers::encode_request(Dialect::Anthropic,
//!     &providers::decode_request(Dialect::OpenAi, &two).unwrap()).unwrap_err();
//! assert_eq!(err.status(), 400);
//!
//! // An Anthropic stream, event by event, to an OpenAI client.
//! let mut sse = Decoder::new();
//! let mut from = StreamDecoder::new(Dialect::Anthropic);
//! let mut to = StreamEncoder::new(Dialect::OpenAi, false);
//! let mut out = BytesMut::new();
//! sse.push(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\
//!            \"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n");
//! while let Some(event) = sse.next_event() {
//!     from.decode(&event, &mut |e| to.encode(&e, &mut out));
//! }
//! assert!(std::str::from_utf8(&out).unwrap().contains(r#""content":"Hello""#));
//! ```

pub mod anthropic;
mod canonical;
pub mod gemini;
pub mod openai;
mod translate;
mod util;
pub(crate) mod wire;

use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde_json::Value;

pub use canonical::*;
#[cfg(feature = "upstream")]
pub(crate) use translate::Replace;
pub use translate::TranslateStream;

use crate::error::GatewayError;
use crate::sse::Event;
use crate::Dialect;

/// The fields of a provider's error body, whatever its dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProviderError {
    /// The message.
    pub message: String,
    /// OpenAI/Anthropic `type`, Gemini `status`.
    pub error_type: Option<String>,
    /// OpenAI `code`.
    pub code: Option<String>,
    /// OpenAI `param`.
    pub param: Option<String>,
}

/// Parses a request body of `dialect` into the canonical form (Gemini's model, which
/// travels in the URL, is read from a `model` field if there is one).
pub fn decode_request(dialect: Dialect, body: &Value) -> Result<ChatRequest, GatewayError> {
    match dialect {
        Dialect::OpenAi => openai::decode_request(body),
        Dialect::Anthropic => anthropic::decode_request(body),
        Dialect::Gemini => {
            let model = body
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or_default();
            gemini::decode_request(body, model, false)
        }
    }
}

/// Builds the request body of `dialect`; a 400 naming the field for what it cannot
/// express.
pub fn encode_request(dialect: Dialect, req: &ChatRequest) -> Result<Value, GatewayError> {
    match dialect {
        Dialect::OpenAi => openai::encode_request(req),
        Dialect::Anthropic => anthropic::encode_request(req),
        Dialect::Gemini => gemini::encode_request(req),
    }
}

/// Parses a complete answer of `dialect`; a 502 when it is malformed.
pub fn decode_response(dialect: Dialect, body: &[u8]) -> Result<ChatResponse, GatewayError> {
    match dialect {
        Dialect::OpenAi => openai::decode_response(body),
        Dialect::Anthropic => anthropic::decode_response(body),
        Dialect::Gemini => gemini::decode_response(body),
    }
}

/// Builds a complete answer of `dialect`.
pub fn encode_response(dialect: Dialect, res: &ChatResponse) -> Value {
    match dialect {
        Dialect::OpenAi => openai::encode_response(res),
        Dialect::Anthropic => anthropic::encode_response(res),
        Dialect::Gemini => gemini::encode_response(res),
    }
}

/// Reads an error body of `dialect`; `None` when it does not have that shape.
pub fn decode_error(dialect: Dialect, body: &[u8]) -> Option<ProviderError> {
    match dialect {
        Dialect::OpenAi => openai::decode_error(body),
        Dialect::Anthropic => anthropic::decode_error(body),
        Dialect::Gemini => gemini::decode_error(body),
    }
}

/// Reads a stream of one dialect into canonical events.
#[derive(Debug)]
pub enum StreamDecoder {
    /// OpenAI chunks.
    OpenAi(openai::StreamDecoder),
    /// Anthropic events.
    Anthropic(anthropic::StreamDecoder),
    /// Gemini chunks.
    Gemini(gemini::StreamDecoder),
}

impl StreamDecoder {
    /// A decoder for `dialect`.
    pub fn new(dialect: Dialect) -> Self {
        match dialect {
            Dialect::OpenAi => StreamDecoder::OpenAi(openai::StreamDecoder::new()),
            Dialect::Anthropic => StreamDecoder::Anthropic(anthropic::StreamDecoder::new()),
            Dialect::Gemini => StreamDecoder::Gemini(gemini::StreamDecoder::new()),
        }
    }

    /// Decodes one SSE event, calling `emit` with each canonical event it holds. An
    /// event that cannot be parsed is a [`StreamEvent::Error`]; unknown event types are
    /// skipped.
    pub fn decode(&mut self, event: &Event, emit: &mut dyn FnMut(StreamEvent<'_>)) {
        match self {
            StreamDecoder::OpenAi(d) => d.decode(event, emit),
            StreamDecoder::Anthropic(d) => d.decode(event, emit),
            StreamDecoder::Gemini(d) => d.decode(event, emit),
        }
    }
}

/// Writes canonical events as a stream of one dialect.
#[derive(Debug)]
pub enum StreamEncoder {
    /// OpenAI chunks.
    OpenAi(openai::StreamEncoder),
    /// Anthropic events.
    Anthropic(anthropic::StreamEncoder),
    /// Gemini chunks.
    Gemini(gemini::StreamEncoder),
}

impl StreamEncoder {
    /// An encoder for `dialect`; `include_usage` is whether an OpenAI client asked for
    /// the usage chunk (the other dialects always report usage).
    pub fn new(dialect: Dialect, include_usage: bool) -> Self {
        match dialect {
            Dialect::OpenAi => StreamEncoder::OpenAi(openai::StreamEncoder::new(include_usage)),
            Dialect::Anthropic => StreamEncoder::Anthropic(anthropic::StreamEncoder::new()),
            Dialect::Gemini => StreamEncoder::Gemini(gemini::StreamEncoder::new()),
        }
    }

    /// Encodes one event, appending the SSE bytes to `out`. Nothing is written after
    /// the terminal event or an error.
    pub fn encode(&mut self, event: &StreamEvent<'_>, out: &mut BytesMut) {
        match self {
            StreamEncoder::OpenAi(e) => e.encode(event, out),
            StreamEncoder::Anthropic(e) => e.encode(event, out),
            StreamEncoder::Gemini(e) => e.encode(event, out),
        }
    }

    /// Whether the terminal event (or an error event) was written.
    pub fn is_done(&self) -> bool {
        match self {
            StreamEncoder::OpenAi(e) => e.is_done(),
            StreamEncoder::Anthropic(e) => e.is_done(),
            StreamEncoder::Gemini(e) => e.is_done(),
        }
    }
}

/// Writes one SSE event with a JSON `data:` line straight into `out`.
pub(crate) fn write_event<T: Serialize + ?Sized>(
    out: &mut BytesMut,
    event: Option<&str>,
    data: &T,
) {
    if let Some(event) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.as_bytes());
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"data: ");
    // Compact JSON escapes newlines inside strings, so it is one line. Serialising
    // plain data structures into memory cannot fail.
    let _ = serde_json::to_writer((&mut *out).writer(), data);
    out.extend_from_slice(b"\n\n");
}

/// The error for a stream event that cannot be parsed.
pub(crate) fn malformed_event() -> GatewayError {
    GatewayError::upstream("The provider sent a malformed stream event.")
}
