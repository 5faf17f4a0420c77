//! Gemini `streamGenerateContent?alt=sse` streams to and from canonical events.
//!
//! Every chunk is a `GenerateContentResponse`. Its `usageMetadata` is cumulative, so
//! each one replaces the last ([`StreamEvent::Usage`] carries totals): usage is
//! counted once. The chunk with a `finishReason` ends the stream.

use std::borrow::Cow;

use bytes::BytesMut;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::response::{decode_error, decode_finish, encode_finish};
use crate::error::GatewayError;
use crate::outcome::Usage;
use crate::providers::canonical::{FinishReason, StreamEvent};
use crate::providers::wire::{text, Few, First, Str};
use crate::providers::{malformed_event, write_event};
use crate::sse::Event;

// ===== decoding =====

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Chunk<'a> {
    /// A translated stream has one candidate (`n > 1` is refused for Gemini).
    #[serde(default, borrow)]
    candidates: First<Candidate<'a>>,
    #[serde(default)]
    usage_metadata: Option<WireUsage>,
    #[serde(default, borrow)]
    model_version: Option<Str<'a>>,
    #[serde(default, borrow)]
    response_id: Option<Str<'a>>,
    #[serde(default)]
    prompt_feedback: Option<Feedback>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate<'a> {
    #[serde(default, borrow)]
    content: Option<Content<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct Content<'a> {
    #[serde(default, borrow)]
    parts: Few<WirePart<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePart<'a> {
    #[serde(default, borrow)]
    text: Option<&'a RawValue>,
    #[serde(default)]
    thought: Option<bool>,
    #[serde(default, borrow)]
    function_call: Option<FunctionCall<'a>>,
}

#[derive(Deserialize)]
struct FunctionCall<'a> {
    #[serde(default, borrow)]
    id: Option<Str<'a>>,
    #[serde(default, borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow)]
    args: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Feedback {
    #[serde(default)]
    block_reason: Option<IgnoredAny>,
}

/// Gemini `usageMetadata`, read without a `Value` (it comes with every chunk).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
}

impl From<&WireUsage> for Usage {
    /// As [`decode_usage`](super::response::decode_usage): thoughts are billed output.
    fn from(u: &WireUsage) -> Usage {
        Usage::new(
            u.prompt_token_count,
            u.candidates_token_count + u.thoughts_token_count,
        )
        .with_cached(u.cached_content_token_count)
        .with_reasoning(u.thoughts_token_count)
    }
}

/// Reads a Gemini stream into canonical events.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    started: bool,
    response_id: String,
    calls: u32,
    done: bool,
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
        if self.done {
            return;
        }
        let chunk: Chunk<'_> = match serde_json::from_str(data) {
            Ok(chunk) => chunk,
            Err(_) => return emit(StreamEvent::Error(malformed_event())),
        };
        if chunk.error.is_some() {
            self.done = true;
            let message = decode_error(data.as_bytes())
                .map(|e| e.message)
                .unwrap_or_else(|| "The provider reported an error mid-stream.".into());
            return emit(StreamEvent::Error(GatewayError::upstream(message)));
        }
        if !self.started {
            self.started = true;
            let id = chunk.response_id.unwrap_or_default().0;
            self.response_id = id.to_string();
            emit(StreamEvent::Start {
                id,
                model: chunk.model_version.unwrap_or_default().0,
            });
        }
        // Usage first (cumulative totals, this chunk included): a client dialect that
        // reports input tokens at the start of its stream then has them.
        if let Some(usage) = &chunk.usage_metadata {
            emit(StreamEvent::Usage(usage.into()));
        }
        let mut finish = None;
        if let Some(candidate) = chunk.candidates.0 {
            for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
                let text = text(part.text, &mut self.scratch).filter(|t| !t.is_empty());
                if part.thought == Some(true) {
                    if let Some(text) = text {
                        emit(StreamEvent::Reasoning(text.into()));
                    }
                } else if let Some(text) = text {
                    emit(StreamEvent::Text(text.into()));
                } else if let Some(call) = part.function_call {
                    let index = self.calls;
                    self.calls += 1;
                    let id = match call.id {
                        Some(id) => id.0,
                        None if self.response_id.is_empty() => format!("call_{index}").into(),
                        None => format!("call_{}_{index}", self.response_id).into(),
                    };
                    emit(StreamEvent::ToolCallStart {
                        index,
                        id,
                        name: call.name,
                    });
                    // Gemini sends the arguments whole, as a JSON object: its text is
                    // passed on as the provider wrote it.
                    let args = call.args.map_or("{}", RawValue::get);
                    emit(StreamEvent::ToolCallArgs {
                        index,
                        arguments: args.into(),
                    });
                }
            }
            finish = candidate.finish_reason;
        }
        let blocked = chunk
            .prompt_feedback
            .is_some_and(|f| f.block_reason.is_some());
        if let Some(reason) = finish {
            emit(StreamEvent::Finish(decode_finish(&reason, self.calls > 0)));
        } else if blocked {
            emit(StreamEvent::Finish(FinishReason::ContentFilter));
        } else {
            return;
        }
        self.done = true;
        emit(StreamEvent::Done);
    }
}

// ===== encoding =====

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutChunk<'a> {
    candidates: [OutCandidate<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage_metadata: Option<OutUsage>,
    model_version: &'a str,
    response_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutCandidate<'a> {
    content: OutContent<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_reason: Option<&'a str>,
    index: u32,
}

#[derive(Serialize)]
struct OutContent<'a> {
    role: &'static str,
    parts: &'a [OutPart<'a>],
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct OutPart<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thought: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    function_call: Option<OutCall<'a>>,
}

#[derive(Serialize)]
struct OutCall<'a> {
    name: &'a str,
    args: Args<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Args<'a> {
    /// The arguments' JSON object as it streamed in.
    Raw(&'a RawValue),
    /// `{}`.
    Empty {},
}

/// As [`encode_usage`](super::response::encode_usage).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutUsage {
    prompt_token_count: u64,
    candidates_token_count: u64,
    total_token_count: u64,
    cached_content_token_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    thoughts_token_count: Option<u64>,
}

impl From<&Usage> for OutUsage {
    fn from(u: &Usage) -> OutUsage {
        let thoughts = u.reasoning_tokens.min(u.completion_tokens);
        OutUsage {
            prompt_token_count: u.prompt_tokens,
            candidates_token_count: u.completion_tokens - thoughts,
            total_token_count: u.prompt_tokens + u.completion_tokens,
            cached_content_token_count: u.cached_tokens,
            thoughts_token_count: (thoughts > 0).then_some(thoughts),
        }
    }
}

/// Writes canonical events as a Gemini stream: one chunk per text piece; tool calls
/// (which Gemini sends whole) and the `finishReason` with the usage in the last chunk.
#[derive(Debug, Default)]
pub struct StreamEncoder {
    id: String,
    model: String,
    calls: Vec<(String, String)>,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
    done: bool,
}

impl StreamEncoder {
    /// An encoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    fn chunk(&self, out: &mut BytesMut, parts: &[OutPart<'_>], finish: Option<&FinishReason>) {
        let chunk = OutChunk {
            candidates: [OutCandidate {
                content: OutContent {
                    role: "model",
                    parts,
                },
                finish_reason: finish.map(encode_finish),
                index: 0,
            }],
            usage_metadata: self.usage.as_ref().map(OutUsage::from),
            model_version: &self.model,
            response_id: &self.id,
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
                let part = OutPart {
                    text: Some(text),
                    ..OutPart::default()
                };
                self.chunk(out, &[part], None);
            }
            StreamEvent::Reasoning(text) => {
                let part = OutPart {
                    text: Some(text),
                    thought: Some(true),
                    ..OutPart::default()
                };
                self.chunk(out, &[part], None);
            }
            // Anthropic's signatures and redacted blocks have no Gemini form.
            StreamEvent::ReasoningSignature(_) | StreamEvent::RedactedReasoning(_) => {}
            StreamEvent::ToolCallStart { name, .. } => {
                self.calls.push((name.to_string(), String::new()));
            }
            StreamEvent::ToolCallArgs { index, arguments } => {
                if let Some(call) = self.calls.get_mut(*index as usize) {
                    call.1.push_str(arguments);
                }
            }
            StreamEvent::Usage(usage) => self.usage = Some(*usage),
            // The last chunk waits for the end: OpenAI sends its usage after the finish.
            StreamEvent::Finish(reason) => self.finish = Some(reason.clone()),
            StreamEvent::Done => {
                let reason = self.finish.take().unwrap_or(FinishReason::Stop);
                self.finish(out, &reason);
            }
            StreamEvent::Error(err) => {
                self.done = true;
                write_event(out, None, &err.to_json(crate::Dialect::Gemini));
            }
        }
    }

    fn finish(&mut self, out: &mut BytesMut, reason: &FinishReason) {
        self.done = true;
        let parts: Vec<OutPart<'_>> = self
            .calls
            .iter()
            .map(|(name, args)| {
                // Arguments that are not JSON (a cut stream) become `{}`.
                let args = match serde_json::from_str::<&RawValue>(args) {
                    Ok(raw) if raw.get().starts_with('{') => Args::Raw(raw),
                    _ => Args::Empty {},
                };
                OutPart {
                    function_call: Some(OutCall { name, args }),
                    ..OutPart::default()
                }
            })
            .collect();
        self.chunk(out, &parts, Some(reason));
    }

    /// Whether the last chunk (or an error) was written.
    pub fn is_done(&self) -> bool {
        self.done
    }
}
