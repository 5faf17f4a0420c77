//! The OpenAI chat completions dialect, shared by every OpenAI-compatible provider
//! (OpenAI, DeepSeek, GLM, Qwen, vLLM, Ollama, ...).
//!
//! - Requests: `messages` with system/developer, user (text and `image_url` parts,
//!   `data:` URLs become base64 images), assistant (`tool_calls`) and `tool` messages;
//!   `tools`, `tool_choice`, `parallel_tool_calls`, sampling, `stop`,
//!   `response_format`. Consecutive `tool` messages become one user turn of tool
//!   results.
//! - Streams: `chat.completion.chunk` events ending with `data: [DONE]`; usage from
//!   the `choices: []` chunk (asked for with `stream_options.include_usage`).
//! - Usage: `prompt_tokens` (cached included), `completion_tokens`,
//!   `prompt_tokens_details.cached_tokens` (DeepSeek: `prompt_cache_hit_tokens`).

mod request;
mod response;
mod stream;

pub use request::{decode_request, encode_request};
pub use response::{decode_error, decode_response, encode_response};
pub use stream::{StreamDecoder, StreamEncoder};
