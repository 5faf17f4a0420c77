//! The OpenAI chat completions dialect, shared by every OpenAI-compatible provider
//! (OpenAI, DeepSeek, GLM, Qwen, vLLM, Ollama, ...).
//!
//! - Requests: `messages` with system/developer, user (text and `image_url` parts,
//!   `data:` URLs become base64 images), assistant (`tool_calls`) and `tool` messages;
//!   `tools`, `tool_choice`, `parallel_tool_calls`, sampling, `stop`,
//!   `response_format`, `reasoning_effort` (`none` is reasoning off). Consecutive `tool`
//!   messages become one user turn of tool results.
//! - Reasoning: the `reasoning_content` of DeepSeek, vLLM and Qwen (also read as
//!   `reasoning`) on answers and on stream deltas. Anthropic's signed and redacted
//!   thinking rides along in LiteLLM's `thinking_blocks`
//!   (`[{"type": "thinking", "thinking", "signature"}]`, `{"type": "redacted_thinking",
//!   "data"}`), read back from assistant messages, so an OpenAI client can run a tool
//!   loop with thinking against an Anthropic model. Earlier reasoning is never sent to
//!   an OpenAI-dialect provider: OpenAI's models do not take it and refuse unknown
//!   message fields, and DeepSeek's reasoner refuses `reasoning_content` in its input.
//! - Streams: `chat.completion.chunk` events ending with `data: [DONE]`; usage from
//!   the `choices: []` chunk (asked for with `stream_options.include_usage`).
//! - Usage: `prompt_tokens` (cached included), `completion_tokens` (reasoning
//!   included), `prompt_tokens_details.cached_tokens` (DeepSeek:
//!   `prompt_cache_hit_tokens`), `completion_tokens_details.reasoning_tokens`.

mod request;
mod response;
mod stream;

pub use request::{decode_request, encode_request};
pub use response::{decode_error, decode_response, encode_response};
pub(crate) use stream::WireUsage;
pub use stream::{StreamDecoder, StreamEncoder};
