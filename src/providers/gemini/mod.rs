//! Google's Gemini API, native: `POST {base}/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`, authenticated with `x-goog-api-key`.
//!
//! - Requests: `contents` of `user`/`model` turns with `text`, `inlineData` (base64
//!   images; Gemini takes no image URLs), `functionCall` and `functionResponse`
//!   parts; `systemInstruction`; `tools[].functionDeclarations` (with
//!   `parametersJsonSchema`, the full JSON Schema); `toolConfig`; `generationConfig`.
//!   Tool results are matched to their call by name, since Gemini has no call ids;
//!   a tool result that is not a JSON object is sent as `{"result": <text>}`.
//!   `generationConfig.thinkingConfig`: `thinkingBudget` (0 off, -1 dynamic) or
//!   `thinkingLevel`; translated requests that turn reasoning on also set
//!   `includeThoughts: true`.
//! - Reasoning: parts with `thought: true` (thought summaries) are reasoning parts.
//!   Earlier reasoning is not sent to Gemini (its thoughts are output only), and its
//!   `thoughtSignature`s are not kept when translating: they only matter when a Gemini
//!   answer goes back to Gemini, a byte pass-through.
//! - Streams: every chunk is a complete `GenerateContentResponse`; function calls
//!   arrive whole; the chunk with a `finishReason` is the last.
//! - Usage: `promptTokenCount` (cached included), `candidatesTokenCount` plus
//!   `thoughtsTokenCount` (which `candidatesTokenCount` leaves out; both are billed as
//!   output), `cachedContentTokenCount`; cumulative in streams.

mod request;
mod response;
mod stream;

pub use request::{decode_request, encode_request};
pub use response::{decode_error, decode_response, encode_response};
pub use stream::{StreamDecoder, StreamEncoder};

/// The path below the base URL for `model`: `/models/{model}:generateContent`, or
/// `/models/{model}:streamGenerateContent?alt=sse` for a stream.
pub fn path(model: &str, stream: bool) -> String {
    let model = model.strip_prefix("models/").unwrap_or(model);
    if stream {
        format!("/models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("/models/{model}:generateContent")
    }
}
