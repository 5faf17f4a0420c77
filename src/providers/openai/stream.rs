//! OpenAI `chat.completion.chunk` streams to and from canonical events.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::response::{decode_finish, encode_finish};
use crate::error::GatewayError;
use crate::outcome::Usage;
use crate::providers::canonical::StreamEvent;
use crate::providers::wire::{text, Few, First, Str};
use crate::providers::{malformed_event, write_event};
use crate::sse::Event;
use crate::Dialect;

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// ===== decoding =====

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(default, borrow)]
    id: Option<Str<'a>>,
    #[serde(default, borrow)]
    model: Option<Str<'a>>,
    /// A translated stream has one choice (`n > 1` is refused for other dialects).
    #[serde(default, borrow)]
    choices: First<Choice<'a>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Option<&'a RawValue>,
    #[serde(default, borrow)]
    reasoning_content: Option<&'a RawValue>,
    #[serde(default, borrow)]
    reasoning: Option<&'a RawValue>,
    #[serde(default, borrow)]
    thinking_blocks: Option<Few<ThinkingBlock<'a>>>,
    #[serde(default, borrow)]
    tool_calls: Option<Few<CallDelta<'a>>>,
}

/// LiteLLM's `thinking_blocks` in a delta: how a signature (or a redacted block) of
/// Anthropic's travels in an OpenAI stream.
#[derive(Deserialize)]
struct ThinkingBlock<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    thinking: Option<&'a RawValue>,
    #[serde(default, borrow)]
    signature: Option<Str<'a>>,
    #[serde(default, borrow)]
    data: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct CallDelta<'a> {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default, borrow)]
    id: Option<Str<'a>>,
    #[serde(default, borrow)]
    function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
struct FunctionDelta<'a> {
    #[serde(default, borrow)]
    name: Option<Str<'a>>,
    #[serde(default, borrow)]
    arguments: Option<&'a RawValue>,
}

/// OpenAI `usage`, read without a `Value` (some servers send it with every chunk). The
/// outcome observer reads a whole answer's usage by hand (`outcome::answer`), with the
/// same rules; its tests keep this struct as the reference.
#[derive(Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<Details>,
    /// DeepSeek's name for cached input tokens.
    #[serde(default)]
    prompt_cache_hit_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens_details: Option<Details>,
}

#[derive(Deserialize)]
struct Details {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Usage {
        let cached = u.prompt_tokens_details.and_then(|d| d.cached_tokens);
        let reasoning = u.completion_tokens_details.and_then(|d| d.reasoning_tokens);
        Usage::new(u.prompt_tokens, u.completion_tokens)
            .with_cached(cached.or(u.prompt_cache_hit_tokens).unwrap_or(0))
            .with_reasoning(reasoning.unwrap_or(0))
    }
}

/// Reads an OpenAI stream into canonical events.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    started: bool,
    /// Unescaped text of the current chunk's strings (see `providers::wire`).
    scratch: String,
}

impl StreamDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one SSE event.
    pub fn decode(&mut self, event: &Event, emit: &mut dyn FnMut(StreamEvent<'_>)) {
        let Some(data) = event.data() else { return };
        if data.trim() == "[DONE]" {
            return emit(StreamEvent::Done);
        }
        let chunk: Chunk<'_> = match serde_json::from_str(data) {
            Ok(chunk) => chunk,
            Err(_) => return emit(StreamEvent::Error(malformed_event())),
        };
        if chunk.error.is_some() {
            let message = super::decode_error(data.as_bytes())
                .map(|e| e.message)
                .unwrap_or_else(|| "The provider reported an error mid-stream.".into());
            return emit(StreamEvent::Error(GatewayError::upstream(message)));
        }
        if !self.started {
            self.started = true;
            emit(StreamEvent::Start {
                id: chunk.id.unwrap_or_default().0,
                model: chunk.model.unwrap_or_default().0,
            });
        }
        let mut finish = None;
        let scratch = &mut self.scratch;
        if let Some(choice) = chunk.choices.0 {
            if let Some(delta) = choice.delta {
                let reasoning = match delta.reasoning_content {
                    Some(raw) if raw.get() != "null" => Some(raw),
                    _ => delta.reasoning,
                };
                let mut has_reasoning = false;
                if let Some(text) = text(reasoning, scratch).filter(|t| !t.is_empty()) {
                    has_reasoning = true;
                    emit(StreamEvent::Reasoning(text.into()));
                }
                for block in delta.thinking_blocks.into_iter().flatten() {
                    if block.kind == "redacted_thinking" {
                        if let Some(data) = block.data {
                            emit(StreamEvent::RedactedReasoning(data.0));
                        }
                        continue;
                    }
                    // The text of a block that repeats `reasoning_content` is not sent twice.
                    match text(block.thinking, scratch).filter(|t| !t.is_empty()) {
                        Some(text) if !has_reasoning => emit(StreamEvent::Reasoning(text.into())),
                        _ => {}
                    }
                    if let Some(signature) = block.signature.filter(|s| !s.is_empty()) {
                        emit(StreamEvent::ReasoningSignature(signature.0));
                    }
                }
                if let Some(text) = text(delta.content, scratch).filter(|t| !t.is_empty()) {
                    emit(StreamEvent::Text(text.into()));
                }
                for call in delta.tool_calls.into_iter().flatten() {
                    let index = call.index.unwrap_or(0);
                    let (name, arguments) = match call.function {
                        Some(f) => (f.name, f.arguments),
                        None => (None, None),
                    };
                    if call.id.is_some() || name.is_some() {
                        let id = call
                            .id
                            .map_or_else(|| format!("call_{index}").into(), Cow::from);
                        emit(StreamEvent::ToolCallStart {
                            index,
                            id,
                            name: name.unwrap_or_default().0,
                        });
                    }
                    if let Some(arguments) = text(arguments, scratch).filter(|a| !a.is_empty()) {
                        emit(StreamEvent::ToolCallArgs {
                            index,
                            arguments: arguments.into(),
                        });
                    }
                }
            }
            if let Some(reason) = choice.finish_reason {
                finish = Some(decode_finish(&reason));
            }
        }
        // Usage first: a client dialect that reports it with the finish (Anthropic's
        // message_delta) then has it.
        if let Some(usage) = chunk.usage {
            emit(StreamEvent::Usage(usage.into()));
        }
        if let Some(finish) = finish {
            emit(StreamEvent::Finish(finish));
        }
    }
}

// ===== encoding =====

#[derive(Serialize)]
struct OutChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [OutChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<OutUsage>,
}

#[derive(Serialize)]
struct OutChoice<'a> {
    index: u32,
    delta: OutDelta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize, Default)]
struct OutDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking_blocks: Option<[OutThinking<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[OutCall<'a>; 1]>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutThinking<'a> {
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    RedactedThinking {
        data: &'a str,
    },
}

#[derive(Serialize)]
struct OutCall<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: OutFunction<'a>,
}

#[derive(Serialize)]
struct OutFunction<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

#[derive(Serialize)]
struct OutUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: CachedTokens,
    #[serde(skip_serializing_if = "Option::is_none")]
    completion_tokens_details: Option<ReasoningTokens>,
}

#[derive(Serialize)]
struct ReasoningTokens {
    reasoning_tokens: u64,
}

#[derive(Serialize)]
struct CachedTokens {
    cached_tokens: u64,
}

impl From<&Usage> for OutUsage {
    fn from(u: &Usage) -> Self {
        OutUsage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.prompt_tokens + u.completion_tokens,
            prompt_tokens_details: CachedTokens {
                cached_tokens: u.cached_tokens,
            },
            completion_tokens_details: (u.reasoning_tokens > 0).then_some(ReasoningTokens {
                reasoning_tokens: u.reasoning_tokens,
            }),
        }
    }
}

/// Writes canonical events as an OpenAI stream: the first chunk carries
/// `role: assistant`, reasoning streams as `reasoning_content` deltas (with a
/// signature or a redacted block as a LiteLLM `thinking_blocks` delta), tool calls
/// stream as `tool_calls` deltas, the usage chunk
/// (`choices: []`) comes only when the client asked for it, and the stream ends with
/// `data: [DONE]`.
#[derive(Debug)]
pub struct StreamEncoder {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    role_sent: bool,
    usage: Option<Usage>,
    done: bool,
}

impl StreamEncoder {
    /// An encoder; `include_usage` is the client's `stream_options.include_usage`.
    pub fn new(include_usage: bool) -> Self {
        StreamEncoder {
            id: String::new(),
            model: String::new(),
            created: now(),
            include_usage,
            role_sent: false,
            usage: None,
            done: false,
        }
    }

    fn chunk(&mut self, out: &mut BytesMut, mut delta: OutDelta<'_>, finish: Option<&str>) {
        if !self.role_sent {
            self.role_sent = true;
            delta.role = Some("assistant");
        }
        let choice = OutChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason: finish,
        };
        let chunk = OutChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: std::slice::from_ref(&choice),
            usage: None,
        };
        write_event(out, None, &chunk);
    }

    /// Encodes one event into `out`.
    pub fn encode(&mut self, event: &StreamEvent<'_>, out: &mut BytesMut) {
        if self.done {
            return;
        }
        match event {
            StreamEvent::Start { id, model } => {
                self.id = id.to_string();
                self.model = model.to_string();
            }
            StreamEvent::Text(text) => {
                let delta = OutDelta {
                    content: Some(text),
                    ..OutDelta::default()
                };
                self.chunk(out, delta, None);
            }
            StreamEvent::Reasoning(text) => {
                let delta = OutDelta {
                    reasoning_content: Some(text),
                    ..OutDelta::default()
                };
                self.chunk(out, delta, None);
            }
            StreamEvent::ReasoningSignature(signature) => {
                let block = OutThinking::Thinking {
                    thinking: "",
                    signature,
                };
                let delta = OutDelta {
                    thinking_blocks: Some([block]),
                    ..OutDelta::default()
                };
                self.chunk(out, delta, None);
            }
            StreamEvent::RedactedReasoning(data) => {
                let delta = OutDelta {
                    thinking_blocks: Some([OutThinking::RedactedThinking { data }]),
                    ..OutDelta::default()
                };
                self.chunk(out, delta, None);
            }
            StreamEvent::ToolCallStart { index, id, name } => {
                let call = OutCall {
                    index: *index,
                    id: Some(id),
                    kind: Some("function"),
                    function: OutFunction {
                        name: Some(name),
                        arguments: "",
                    },
                };
                let delta = OutDelta {
                    tool_calls: Some([call]),
                    ..OutDelta::default()
                };
                self.chunk(out, delta, None);
            }
            StreamEvent::ToolCallArgs { index, arguments } => {
                let call = OutCall {
                    index: *index,
                    id: None,
                    kind: None,
                    function: OutFunction {
                        name: None,
                        arguments,
                    },
                };
                let delta = OutDelta {
                    tool_calls: Some([call]),
                    ..OutDelta::default()
                };
                self.chunk(out, delta, None);
            }
            StreamEvent::Usage(usage) => self.usage = Some(*usage),
            StreamEvent::Finish(reason) => {
                self.chunk(out, OutDelta::default(), Some(encode_finish(reason)));
            }
            StreamEvent::Error(err) => {
                self.done = true;
                write_event(out, None, &err.to_json(Dialect::OpenAi));
            }
            StreamEvent::Done => {
                self.done = true;
                if let (true, Some(usage)) = (self.include_usage, &self.usage) {
                    let chunk = OutChunk {
                        id: &self.id,
                        object: "chat.completion.chunk",
                        created: self.created,
                        model: &self.model,
                        choices: &[],
                        usage: Some(usage.into()),
                    };
                    write_event(out, None, &chunk);
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
        }
    }

    /// Whether the terminal `[DONE]` (or an error) was written.
    pub fn is_done(&self) -> bool {
        self.done
    }
}
