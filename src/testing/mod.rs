//! A mock LLM provider for tests and demos: an in-process [`MockProvider`] service and a
//! loopback [`MockServer`].
//!
//! The mock speaks the OpenAI, Anthropic and Gemini dialects (by route), answers
//! deterministically, and is scripted per
//! request by `x-mock-*` headers, so every behaviour a test needs (latency, chunking,
//! status codes, resets mid-stream, malformed bodies, tool calls, held streams) is
//! reachable in-process as a `tower::Service` and from a plain HTTP client alike.
//!
//! ```
//! use http_body_util::BodyExt;
//! use tollgate::testing::MockProvider;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tollgate::BoxError> {
//! let mock = MockProvider::new();
//! let req = http::Request::post("/v1/chat/completions")
//!     .header("x-mock-cached-tokens", "1")
//!     .body(tollgate::Body::from(
//!         r#"{"model": "mock/echo", "messages": [{"role": "user", "content": "hello there"}]}"#,
//!     ))?;
//! let res = mock.clone().oneshot(req).await?;
//! assert_eq!(res.status(), 200);
//!
//! let body = res.into_body().collect().await?.to_bytes();
//! let json: serde_json::Value = serde_json::from_slice(&body)?;
//! assert_eq!(json["model"], "mock/echo");
//! assert_eq!(json["choices"][0]["message"]["content"], "Mock answer to: hello there");
//! assert_eq!(json["usage"]["prompt_tokens"], 2); // "hello there"
//! assert_eq!(json["usage"]["completion_tokens"], 5); // "Mock answer to: hello there"
//! assert_eq!(json["usage"]["prompt_tokens_details"]["cached_tokens"], 1);
//! assert_eq!(mock.request_count(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! Over HTTP, [`MockServer::start`] serves a provider on a free loopback port; point
//! any OpenAI client at [`MockServer::base_url`]. `cargo run --example mock_server
//! --features testing` runs one on `MOCK_LISTEN` (default `127.0.0.1:9090`).
//!
//! # Routes
//!
//! Paths are matched by their end, so `/v1`, `/openai/v1` or any other prefix works.
//!
//! | route | answer |
//! |---|---|
//! | `POST .../chat/completions` | a `chat.completion`, or with `"stream": true` a `text/event-stream` of `chat.completion.chunk`s ending with `data: [DONE]` |
//! | `POST .../embeddings` | deterministic vectors (see below), as float arrays or, with `"encoding_format": "base64"`, little-endian `f32` bytes in base64 |
//! | `POST .../messages` | Anthropic: a `message`, or with `"stream": true` the Anthropic event stream (`message_start`, `content_block_start`, `ping`, `content_block_delta`s, `content_block_stop`, `message_delta`, `message_stop`), every event with its `event:` line; requires the `anthropic-version` header and `max_tokens`, as Anthropic does |
//! | `POST .../models/{model}:generateContent` | Gemini: a `GenerateContentResponse` (`responseId` `mock-<n>`) |
//! | `POST .../models/{model}:streamGenerateContent?alt=sse` | Gemini: `x-mock-chunks` chunks with cumulative `usageMetadata`, the last with `finishReason: STOP`; a function call comes whole in one chunk, as Gemini sends it |
//! | `GET .../models` | `mock/echo`, `mock/chat`, `mock/embed` |
//! | anything else | 404 `Invalid URL (METHOD /path)` |
//!
//! Errors use the route's dialect: OpenAI's `{"error": {"message", "type", "param",
//! "code"}}`, Anthropic's `{"type": "error", "error": {"type", "message"}}`, Gemini's
//! `{"error": {"code", "message", "status"}}`; a body that is not JSON, or lacks a
//! required field, is a 400 naming it.
//!
//! The three dialects answer the same conversation identically: the same text, tool
//! call (Anthropic id `toolu_mock_<n>`, Gemini none) and token counts. Anthropic reports
//! `input_tokens` without the `x-mock-cached-tokens` (as `cache_read_input_tokens`),
//! Gemini reports them as `cachedContentTokenCount`; tool results count by their text
//! (a Gemini `functionResponse` by its `result` string, or its JSON).
//!
//! # Answers
//!
//! - **Text.** The answer is `Mock answer to: <text>`, where `<text>` is the last user
//!   message's content (a string, or the `text` parts of a content array joined by
//!   spaces). `model` is the request's, verbatim; `finish_reason` is `stop`.
//! - **Tool calls.** When the request has a non-empty `tools` array (and `tool_choice`
//!   is not `"none"`) and the last message is a user message, the answer calls the
//!   first tool: one tool call with id `call_mock_<n>` (`n` the request number),
//!   arguments `{"echo":"<last user text>"}`, content `null`, `finish_reason`
//!   `tool_calls`.
//! - **Tool results.** When the last message is a `tool` message, the answer is
//!   `Tool said: <its content>`.
//! - **Thinking** (Anthropic dialect only). With `"thinking": {"type": "enabled", ...}`
//!   the answer starts with a `thinking` block `Thinking about: <last user text>` signed
//!   `mock-signature-<n>` (streamed as one `thinking_delta` and a `signature_delta`
//!   before the answer's block, which is then index 1); its words count in
//!   `output_tokens`, as Anthropic counts thinking.
//! - **Usage.** A token is a whitespace-separated word: `prompt_tokens` counts the words
//!   of every message's text, `completion_tokens` those of the answer (of the
//!   arguments for a tool call), each at least 1; `prompt_tokens_details.cached_tokens`
//!   is `x-mock-cached-tokens` (default 0), verbatim.
//! - **Streams.** A first chunk with delta `{"role": "assistant", "content": ""}` (for
//!   a tool call: the call's id, type, name and empty arguments), then
//!   `x-mock-chunks` content chunks (the answer, or the arguments, split into that many
//!   near-equal pieces that concatenate to the whole; some are empty when the text is
//!   shorter), a chunk with an empty delta and the `finish_reason`, and `data: [DONE]`.
//!   With `"stream_options": {"include_usage": true}`, every chunk carries
//!   `"usage": null` and a last chunk with `"choices": []` and the usage comes before
//!   `[DONE]`, as OpenAI does.
//! - **Embeddings.** Each lowercase word (a run of letters and digits) is hashed
//!   (FNV-1a) into one of `dimensions` buckets (the request's `dimensions`, default
//!   64), then the vector is L2-normalised: the same text always gets the same vector
//!   and texts that share words are close. `input` may be a string, strings, token ids
//!   or arrays of token ids; usage counts words.
//!
//! # Scripting headers
//!
//! Invalid values are answered with a 400 naming the header. The script applies after
//! routing (a 404 is always a 404) and in this order: latency, status, then the answer.
//!
//! | header | effect | default |
//! |---|---|---|
//! | `x-mock-latency-ms: N` | wait N ms before the response head | 0 |
//! | `x-mock-chunk-delay-ms: N` | stream: wait N ms before every event after the first | 0 |
//! | `x-mock-chunks: N` | stream: number of content chunks, 1 to 10000 | 8 |
//! | `x-mock-status: CODE` | answer with this status (400 to 599) and OpenAI's error body for it: 401 `invalid_api_key` whose message echoes the fake key `sk-mock-1234567890abcdef` (to test redaction), 403 `permission_denied`, 404 `model_not_found`, 429 `rate_limit_exceeded` with `retry-after: 1`, 503 `overloaded`, other 5xx `server_error`, other 4xx `invalid_request_error` | none |
//! | `x-mock-reset-after: K` | stream: after K content chunks (at most all of them) the body yields an error, and over HTTP the server aborts the connection mid-body; non-stream: the body fails before its first byte | none |
//! | `x-mock-malformed: true` | non-stream: 200 `application/json` with truncated JSON (`{"id":"chatcmpl-broken","choices":[`); stream: one event `data: {this is not json`, then the end, without `[DONE]` | false |
//! | `x-mock-hold-last: true` | stream: wait before the last content chunk until [`MockProvider::release_held`] grants a permit; the earlier events are already sent | false |
//! | `x-mock-cached-tokens: N` | `usage.prompt_tokens_details.cached_tokens` | 0 |
//!
//! Booleans accept `true`/`false`, `1`/`0` and `yes`/`no`.
//!
//! # Per-instance scripts
//!
//! Headers script one request wherever it goes; to make one mock fail while another
//! answers the same request (fail-over), script the instance:
//! [`MockProvider::set_script`] applies `x-mock-*` headers to every request it
//! receives, [`MockProvider::queue_script`] to the next ones (one set per request,
//! before the default), and [`MockProvider::clear_script`] removes both. A header the
//! request sends itself wins over the instance's.
//!
//! ```
//! # use tollgate::testing::MockProvider;
//! # use tower::ServiceExt;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tollgate::BoxError> {
//! let mock = MockProvider::new();
//! mock.set_script([("x-mock-status", "503")]);
//! mock.queue_script([("x-mock-status", "429")]);
//! let ask = || http::Request::post("/v1/chat/completions")
//!     .body(tollgate::Body::from(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#))
//!     .unwrap();
//! assert_eq!(mock.clone().oneshot(ask()).await?.status(), 429); // queued
//! assert_eq!(mock.clone().oneshot(ask()).await?.status(), 503); // default
//! mock.clear_script();
//! assert_eq!(mock.clone().oneshot(ask()).await?.status(), 200);
//! # Ok(()) }
//! ```
//!
//! # Observing the mock
//!
//! [`MockProvider::requests`] returns the last 64 requests (method, URI, headers, body)
//! and [`MockProvider::request_count`] counts them all. A stream body that sent its
//! `[DONE]` counts in [`MockProvider::streams_completed`]; one dropped before it
//! finished (the client or its connection went away) counts in
//! [`MockProvider::streams_cancelled`], and [`MockProvider::wait_for_cancelled`] waits
//! for that count without polling. A stream ended by a scripted reset or a malformed
//! stream counts in neither. A request dropped before its response head (a caller that
//! gave up during `x-mock-latency-ms`) counts in [`MockProvider::requests_cancelled`].

mod anthropic;
mod body;
mod embeddings;
mod gemini;
mod openai;
mod provider;
mod script;
mod server;

pub use provider::{MockProvider, RecordedRequest, ResponseFuture};
pub use server::MockServer;
