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
    /// How much the model may reason before it answers (`None`: the provider's default).
    pub thinking: Option<Thinking>,
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
    /// The model's reasoning before it answered (assistant messages, first).
    Reasoning(Reasoning),
}

/// Reasoning ("thinking") the model did before it answered.
///
/// A signature is Anthropic's: it proves the text came from the model, and Anthropic
/// refuses earlier thinking blocks without one. Gemini's thought signatures are not
/// kept (they only matter when a Gemini answer goes back to Gemini, which is a byte
/// pass-through), so a signature here is always one Anthropic can check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reasoning {
    /// The reasoning text (empty when redacted).
    pub text: String,
    /// Anthropic's `signature` of the thinking block, if it had one.
    pub signature: Option<String>,
    /// Anthropic's `redacted_thinking` data: reasoning the provider encrypted, opaque.
    pub redacted: Option<String>,
}

impl Reasoning {
    /// Reasoning text without a signature.
    pub fn text(text: impl Into<String>) -> Self {
        Reasoning {
            text: text.into(),
            ..Reasoning::default()
        }
    }

    /// Reasoning text with Anthropic's signature.
    pub fn signed(text: impl Into<String>, signature: impl Into<String>) -> Self {
        Reasoning {
            text: text.into(),
            signature: Some(signature.into()),
            redacted: None,
        }
    }

    /// Redacted reasoning: only the opaque data travels.
    pub fn redacted(data: impl Into<String>) -> Self {
        Reasoning {
            redacted: Some(data.into()),
            ..Reasoning::default()
        }
    }
}

/// How much the model may reason before it answers: OpenAI `reasoning_effort`,
/// Anthropic `thinking`, Gemini `generationConfig.thinkingConfig`.
///
/// | canonical | OpenAI | Anthropic | Gemini |
/// |---|---|---|---|
/// | `Off` | (omitted) | `{"type": "disabled"}` | `thinkingBudget: 0` |
/// | `Effort(e)` | `reasoning_effort: e` | `budget_tokens:` [`Effort::budget`] | `thinkingBudget:` [`Effort::budget`] |
/// | `Budget(n)` | [`Effort::from_budget`] | `budget_tokens: n` (at least 1024) | `thinkingBudget: n` |
/// | `Dynamic` | `medium` | `budget_tokens: 8192` | `thinkingBudget: -1` |
///
/// Gemini is always asked for its thoughts (`includeThoughts: true`) when reasoning is
/// on, since the other dialects show the reasoning they do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thinking {
    /// No reasoning (OpenAI `none`, Anthropic `disabled`, Gemini budget 0).
    Off,
    /// An effort level (OpenAI `reasoning_effort`, Gemini 3 `thinkingLevel`).
    Effort(Effort),
    /// A budget of reasoning tokens (Anthropic `budget_tokens`, Gemini `thinkingBudget`).
    Budget(u64),
    /// The model decides (Gemini `thinkingBudget: -1`).
    Dynamic,
}

/// An OpenAI `reasoning_effort` level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effort {
    /// `minimal`.
    Minimal,
    /// `low`.
    Low,
    /// `medium`.
    Medium,
    /// `high`.
    High,
    /// `xhigh`.
    XHigh,
}

impl Effort {
    /// The level of an OpenAI `reasoning_effort` (or Gemini `thinkingLevel`) name.
    pub fn parse(name: &str) -> Option<Effort> {
        Some(match name.to_ascii_lowercase().as_str() {
            "minimal" => Effort::Minimal,
            "low" => Effort::Low,
            "medium" => Effort::Medium,
            "high" => Effort::High,
            "xhigh" => Effort::XHigh,
            _ => return None,
        })
    }

    /// OpenAI's name for the level.
    pub fn as_str(self) -> &'static str {
        match self {
            Effort::Minimal => "minimal",
            Effort::Low => "low",
            Effort::Medium => "medium",
            Effort::High => "high",
            Effort::XHigh => "xhigh",
        }
    }

    /// The token budget a level stands for with Anthropic and Gemini: Google's own
    /// mapping for its OpenAI-compatible endpoint (low 1024, medium 8192, high 24576),
    /// with `minimal` at Anthropic's smallest budget and `xhigh` at 32768.
    pub fn budget(self) -> u64 {
        match self {
            Effort::Minimal | Effort::Low => 1024,
            Effort::Medium => 8192,
            Effort::High => 24576,
            Effort::XHigh => 32768,
        }
    }

    /// The level nearest a token budget, for OpenAI: up to 4095 tokens `low`, up to
    /// 16383 `medium`, up to 28671 `high`, above that `xhigh` (the midpoints between the
    /// budgets of [`budget`](Effort::budget)).
    pub fn from_budget(budget: u64) -> Effort {
        match budget {
            0..=4095 => Effort::Low,
            4096..=16383 => Effort::Medium,
            16384..=28671 => Effort::High,
            _ => Effort::XHigh,
        }
    }
}

impl Thinking {
    /// The token budget for Anthropic and Gemini (`None` when reasoning is off or
    /// dynamic).
    pub fn budget(self) -> Option<u64> {
        match self {
            Thinking::Off | Thinking::Dynamic => None,
            Thinking::Effort(effort) => Some(effort.budget()),
            Thinking::Budget(n) => Some(n),
        }
    }
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
    /// Reasoning, text and tool calls, in order.
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
    /// A piece of reasoning text (Anthropic `thinking_delta`, OpenAI-compatible
    /// `reasoning_content`, a Gemini part with `thought: true`).
    Reasoning(Cow<'a, str>),
    /// The signature of the reasoning streamed so far (Anthropic `signature_delta`); it
    /// ends that reasoning block.
    ReasoningSignature(Cow<'a, str>),
    /// A whole block of redacted reasoning (Anthropic `redacted_thinking`), opaque.
    RedactedReasoning(Cow<'a, str>),
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
