//! The canonical in-memory form every dialect converts to and from.

use std::borrow::Cow;

use crate::error::GatewayError;
use crate::outcome::Usage;

/// A chat request in the canonical form.
///
/// Fields a source dialect sends that have no canonical form are listed in
/// [`unsupported`](ChatRequest::unsupported): encoding to another dialect refuses them
/// with a 400 naming the field, so nothing the client asked for is dropped silently.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ChatRequest {
    /// The model name to send.
    pub model: String,
    /// The system prompt (OpenAI system/developer messages joined by blank lines).
    pub system: Option<String>,
    /// The conversation, oldest first. Tool results travel in user messages.
    pub messages: Vec<Message>,
    /// Function tools the model may call.
    pub tools: Vec<Tool>,
    /// How the model may use the tools.
    pub tool_choice: Option<ToolChoice>,
    /// Whether the model may call several tools in one turn.
    pub parallel_tool_calls: Option<bool>,
    /// The most output tokens.
    pub max_tokens: Option<u64>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    pub top_p: Option<f64>,
    /// Top-k sampling (Anthropic, Gemini).
    pub top_k: Option<u64>,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Sampling seed (OpenAI, Gemini).
    pub seed: Option<i64>,
    /// Number of choices (only 1 translates).
    pub n: Option<u64>,
    /// Presence penalty (OpenAI, Gemini).
    pub presence_penalty: Option<f64>,
    /// Frequency penalty (OpenAI, Gemini).
    pub frequency_penalty: Option<f64>,
    /// Structured output.
    pub response_format: Option<ResponseFormat>,
    /// Whether the answer is streamed.
    pub stream: bool,
    /// Whether the client asked for usage in the stream (OpenAI `stream_options`).
    pub include_usage: bool,
    /// An end-user id for abuse monitoring.
    pub user: Option<String>,
    /// Fields of the source request without a canonical form, named as the client
    /// sent them (`logprobs`, `thinking`, `messages[2].content[0]`, ...).
    pub unsupported: Vec<String>,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The user, or tool results sent back by the client.
    User,
    /// The model.
    Assistant,
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Message {
    /// The author.
    pub role: Role,
    /// The content, in order.
    pub content: Vec<Part>,
}

impl Message {
    /// A message of these parts.
    pub fn new(role: Role, content: Vec<Part>) -> Self {
        Message { role, content }
    }

    /// A message of one text part.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Message::new(role, vec![Part::Text(text.into())])
    }
}

/// A piece of message content.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Part {
    /// Text.
    Text(String),
    /// An image (user messages).
    Image(Image),
    /// A tool call (assistant messages).
    ToolCall(ToolCall),
    /// The result of a tool call (user messages).
    ToolResult(ToolResult),
}

/// An image in a user message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Image {
    /// An image by URL (`https://...`).
    Url(String),
    /// Inline image bytes, base64-encoded.
    Base64 {
        /// `image/png`, `image/jpeg`, ...
        media_type: String,
        /// The base64 text (no `data:` prefix).
        data: String,
    },
}

/// A tool call made by the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// The call id (generated for Gemini, which has none).
    pub id: String,
    /// The function name.
    pub name: String,
    /// The arguments as JSON text.
    pub arguments: String,
}

/// A tool result sent back by the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolResult {
    /// The id of the call this answers.
    pub call_id: String,
    /// The result text.
    pub content: String,
    /// Whether the tool failed (Anthropic `is_error`).
    pub is_error: bool,
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    /// The function name.
    pub name: String,
    /// What it does.
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    pub parameters: serde_json::Value,
}

/// How the model may use tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// No tool calls.
    None,
    /// At least one tool call.
    Required,
    /// This function must be called.
    Function(String),
}

/// Structured output requested by the client.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    /// Plain text (the default).
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching a schema.
    JsonSchema {
        /// The schema's name.
        name: String,
        /// The JSON Schema.
        schema: serde_json::Value,
    },
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// A natural end or a stop sequence.
    Stop,
    /// The token limit.
    Length,
    /// The model called tools.
    ToolCalls,
    /// A safety filter or a refusal.
    ContentFilter,
    /// Anything else, as the provider named it.
    Other(String),
}

/// A complete (non-stream) answer in the canonical form.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ChatResponse {
    /// The provider's answer id.
    pub id: String,
    /// The model that answered.
    pub model: String,
    /// Text and tool calls, in order.
    pub content: Vec<Part>,
    /// Why the model stopped.
    pub finish: Option<FinishReason>,
    /// Token usage (input includes cached tokens).
    pub usage: Option<Usage>,
}

impl ChatResponse {
    /// An answer with this id and model and nothing else yet.
    pub fn new(id: impl Into<String>, model: impl Into<String>) -> Self {
        ChatResponse {
            id: id.into(),
            model: model.into(),
            content: Vec::new(),
            finish: None,
            usage: None,
        }
    }
}

/// One step of a streamed answer in the canonical form. Borrowed from the provider's
/// event where possible, so converting a chunk copies only what it must.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StreamEvent<'a> {
    /// The answer starts.
    Start {
        /// The provider's answer id.
        id: Cow<'a, str>,
        /// The model that answers.
        model: Cow<'a, str>,
    },
    /// A piece of text.
    Text(Cow<'a, str>),
    /// A tool call starts (`index` counts tool calls from 0).
    ToolCallStart {
        /// Index of the call among this answer's tool calls.
        index: u32,
        /// The call id.
        id: Cow<'a, str>,
        /// The function name.
        name: Cow<'a, str>,
    },
    /// A piece of a tool call's JSON arguments.
    ToolCallArgs {
        /// Index of the call among this answer's tool calls.
        index: u32,
        /// The next piece of the arguments.
        arguments: Cow<'a, str>,
    },
    /// Usage so far: the latest totals, which replace earlier ones (never add them).
    Usage(Usage),
    /// Why the model stopped.
    Finish(FinishReason),
    /// The provider reported an error mid-stream; nothing follows.
    Error(GatewayError),
    /// The stream is complete.
    Done,
}
