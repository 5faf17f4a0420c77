//! Anthropic's Messages API (`POST /v1/messages`), native.
//!
//! - Requests: `system` (string or text blocks), `messages` of text, image (base64 or
//!   URL), `tool_use` and `tool_result` blocks, custom `tools` with `input_schema`,
//!   `tool_choice` (`auto`/`any`/`tool`/`none`, `disable_parallel_tool_use`),
//!   `max_tokens` (required by Anthropic: [`DEFAULT_MAX_TOKENS`] when the client set
//!   none), `stop_sequences`, `temperature`, `top_p`, `top_k`, `metadata.user_id`,
//!   `thinking` (`enabled` with `budget_tokens`, or `disabled`; see
//!   [`Thinking`](crate::providers::Thinking) for the other dialects' settings and how
//!   a budget fits under `max_tokens`). Server tools and documents are refused when
//!   translating.
//! - Reasoning: `thinking` blocks (text and `signature`) and `redacted_thinking`
//!   blocks (opaque `data`) are reasoning parts, in answers and in earlier assistant
//!   turns alike. Anthropic needs the signed blocks of the current tool loop back, so
//!   they are sent back as they came; reasoning without a signature (from another
//!   provider) is left out, since Anthropic refuses a block it cannot check.
//! - Streams: `message_start` / `content_block_start` / `content_block_delta` /
//!   `content_block_stop` / `message_delta` / `message_stop` / `ping` / `error`, each
//!   with its `event:` line; thinking streams as `thinking_delta`s closed by a
//!   `signature_delta`.
//! - Usage: `input_tokens` excludes `cache_read_input_tokens` and
//!   `cache_creation_input_tokens`; the canonical prompt count is their sum.
//!   `output_tokens` includes the thinking tokens (Anthropic does not count them
//!   apart, so `reasoning_tokens` stays 0).
//! - Headers: `x-api-key` and `anthropic-version` (see [`API_VERSION`]).

mod request;
mod response;
mod stream;

pub use request::{decode_request, encode_request, DEFAULT_MAX_TOKENS, MIN_THINKING_BUDGET};
pub use response::{decode_error, decode_response, encode_response};
pub use stream::{StreamDecoder, StreamEncoder};

/// The `anthropic-version` sent when the client did not send one.
pub const API_VERSION: &str = "2023-06-01";
