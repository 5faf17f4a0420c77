//! Guardrails: [`GuardrailLayer`] checks prompts and answers with a [`ContentCheck`], and
//! blocks or redacts what it finds. [`PiiRedactor`] is the shipped check (emails, phone
//! numbers, payment card numbers).
//!
//! - **Prompts** (OpenAI chat `messages[].content`, tool results included, and earlier
//!   assistant turns' `tool_calls[].function.arguments`; Anthropic `system` and
//!   `messages[].content` text, `tool_use` input and `tool_result` blocks; embedding
//!   `input`s) are checked before the inner service sees them. A `Block` answers 400 `content_policy_violation` in the client's
//!   dialect and the request goes no further; `Replace` rewrites the body (and the
//!   parsed [`LlmRequest`](crate::request::LlmRequest)), so the cache key, the provider
//!   and the ledger only ever see the redacted text.
//! - **JSON answers** (OpenAI `choices[].message.content` and `tool_calls[].function.arguments`,
//!   Anthropic `content[]` text and `tool_use` input) are checked whole: a `Block`
//!   becomes the same 400, a `Replace` rewrites the body.
//! - **Tool-call arguments** are JSON: each string value inside them is checked on its
//!   own, and the arguments are written back as valid JSON (arguments that are not JSON
//!   are checked as text).
//! - **Streams** are checked over a sliding window: the last
//!   [`window`](ContentCheck::window) characters of the text are held back until more
//!   arrives, so an email split across two events is still caught, and the rest goes out
//!   redacted as it streams; the tail is sent when the message ends. A `Block` ends the
//!   stream with an error event in the client's dialect (`data: {"error": ...}` for
//!   OpenAI, `event: error` for Anthropic). Streamed tool-call arguments (OpenAI
//!   `tool_calls[].function.arguments` deltas, Anthropic `input_json_delta`) get a window
//!   of their own per tool call, checked over their JSON text as it streams; a
//!   replacement is kept clear of escape sequences, so a match inside a JSON string
//!   leaves the arguments valid JSON. Nothing else in the stream changes (usage, other
//!   events).
//!
//! Not checked (yet): image inputs, text hidden behind `\u` escapes in streamed
//! arguments, and the text of Gemini-dialect clients (the gateway's clients speak
//! OpenAI or Anthropic).
//!
//! Place it after authentication and rate limiting, so refused clients cost nothing,
//! and in front of the cache, so every prompt is checked and every answer, cache hits
//! included, passes the check in force; the cache key is computed on the redacted
//! prompt. The cache then holds answers as the provider sent them (redacted again on
//! each hit): put the layer inside the cache instead to keep them out of the store, at
//! the cost of hits skipping the check.
//!
//! ```
//! use tollgate::guardrails::{GuardrailLayer, PiiRedactor};
//! use tollgate::testing::MockProvider;
//! use tollgate::Body;
//! use http::Request;
//! use http_body_util::BodyExt;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main] async fn main() -> Result<(), tollgate::BoxError> {
//! let mock = MockProvider::new();
//! let svc = ServiceBuilder::new()
//!     .layer(GuardrailLayer::new(PiiRedactor::new()))
//!     .service(mock.clone());
//! let body = r#"{"model":"mock/echo","messages":[{"role":"user","content":"I am bob@example.com"}]}"#;
//! let res = svc.oneshot(Request::post("/v1/chat/completions").body(Body::from(body))?).await?;
//! res.into_body().collect().await?;
//! let sent = String::from_utf8(mock.requests()[0].body.to_vec())?;
//! assert!(sent.contains("I am [EMAIL]") && !sent.contains("bob@"));
//! # Ok(()) }
//! ```

mod check;
mod layer;
mod pii;
mod stream;

pub use check::{Action, ContentCheck, Finding, Side};
pub use layer::{Guardrail, GuardrailLayer, ResponseFuture};
pub use pii::{PiiMode, PiiRedactor};
