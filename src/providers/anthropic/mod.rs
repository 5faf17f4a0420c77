//! Anthropic's Messages API (`POST /v1/messages`), native.
//!
//! - Requests: `system` (string or text blocks), `messages` of text, image (base64 or
//!   URL), `tool_use` and `tool_result` blocks, custom `tools` with `input_schema`,
//!   `tool_choice` (`auto`/`any`/`tool`/`none`, `disable_parallel_tool_use`),
//!   `max_tokens` (required by Anthropic: [`DEFAULT_MAX_TOKENS`] when the client set
//!   none), `stop_sequences`, `temperature`, `top_p`, `top_k`, `metadata.user_id`.
//!   Thinking blocks of earlier turns are dropped (Anthropic ignores them too);
//!   server tools, documents and `thinking` are refused when translating.
//! - Streams: `message_start` / `content_block_start` / `content_block_delta` /
//!   `content_block_stop` / `message_delta` / `message_stop` / `ping` / `error`, each
//!   with its `event:` line.
//! - Usage: `input_tokens` excludes `cache_read_input_tokens` and
//!   `cache_creation_input_tokens`; the canonical prompt count is their sum.
//! - Headers: `x-api-key` and `anthropic-version` (see [`API_VERSION`]).

mod request;
mod response;
mod stream;

pub use request::{decode_request, encode_request, DEFAULT_MAX_TOKENS};
pub use response::{decode_error, decode_response, encode_response};
pub use stream::{StreamDecoder, StreamEncoder};

/// The `anthropic-version` sent when the client did not send one.
pub const API_VERSION: &str = "2023-06-01";
