//! Gemini `streamGenerateContent?alt=sse` streams to and from canonical events.
//!
//! Every chunk is a `GenerateContentResponse`. Its `usageMetadata` is cumulative, so
//! each one replaces the last ([`StreamEvent::Usage`] carries totals): usage is
//! counted once. The chunk with a `finishReason` ends the stream.

use std::borrow::Cow;

use bytes::BytesMut;
use serde::Deserialize;
use serde_json::{json, Value};

use super::response::{
    call_id, decode_error, decode_finish, decode_usage, encode_finish, encode_usage,
};
use crate::error::GatewayError;
use crate::outcome::Usage;
use crate::providers::canonical::{FinishReason, StreamEvent};
use crate::providers::{malformed_event, write_event};
use crate::sse::Event;

// ===== decoding =====

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Chunk<'a> {
    #[serde(default, borrow)]
    candidates: Vec<Candidate<'a>>,
    #[serde(default)]
    usage_metadata: Option<Value>,
    #[serde(default, borrow)]
    model_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    response_id: Option<Cow<'a, str>>,
    #[serde(default)]
    prompt_feedback: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate<'a> {
    #[serde(default, borrow)]
    content: Option<Content<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Content<'a> {
    #[serde(default, borrow)]
    parts: Vec<WirePart<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePart<'a> {
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default)]
    thought: Option<bool>,
    #[serde(default)]
    function_call: Option<Value>,
}

/// Reads a Gemini stream into canonical events.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    started: bool,
    response_id: String,
    calls: u32,
    done: bool,
}

impl StreamDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one SSE event.
    pub fn decode<'e>(&mut self, event: &'e Event, emit: &mut dyn FnMut(StreamEvent<'e>)) {
        let Some(data) = event.data() else { return };
        if self.done {
            return;
        }
        let chunk: Chunk<'e> = match serde_json::from_str(data) {
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
            let id = chunk.response_id.unwrap_or_default();
            self.response_id = id.to_string();
            emit(StreamEvent::Start {
                id,
                model: chunk.model_version.unwrap_or_default(),
            });
        }
        // Usage first (cumulative totals, this chunk included): a client dialect that
        // reports input tokens at the start of its stream then has them.
        if let Some(usage) = &chunk.usage_metadata {
            emit(StreamEvent::Usage(decode_usage(usage)));
        }
        let mut finish = None;
        for candidate in chunk.candidates.into_iter().take(1) {
            for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
                if part.thought == Some(true) {
                    if let Some(text) = part.text.filter(|t| !t.is_empty()) {
                        emit(StreamEvent::Reasoning(text));
                    }
                } else if let Some(text) = part.text.filter(|t| !t.is_empty()) {
                    emit(StreamEvent::Text(text));
                } else if let Some(call) = part.function_call {
                    let index = self.calls;
                    self.calls += 1;
                    let name = call.get("name").and_then(Value::as_str).unwrap_or_default();
                    emit(StreamEvent::ToolCallStart {
                        index,
                        id: call_id(&call, &self.response_id, index).into(),
                        name: name.to_owned().into(),
                    });
                    let args = call
                        .get("args")
                        .map_or_else(|| "{}".into(), Value::to_string);
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
            .as_ref()
            .is_some_and(|f| f.get("blockReason").is_some());
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

    fn chunk(&self, out: &mut BytesMut, parts: Vec<Value>, finish: Option<&FinishReason>) {
        let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if let Some(finish) = finish {
            candidate["finishReason"] = json!(encode_finish(finish));
        }
        let mut chunk = json!({
            "candidates": [candidate],
            "modelVersion": self.model,
            "responseId": self.id,
        });
        if let Some(usage) = &self.usage {
            chunk["usageMetadata"] = encode_usage(usage);
        }
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
            StreamEvent::Text(text) => self.chunk(out, vec![json!({"text": text})], None),
            StreamEvent::Reasoning(text) => {
                self.chunk(out, vec![json!({"text": text, "thought": true})], None)
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
        let parts = std::mem::take(&mut self.calls)
            .into_iter()
            .map(|(name, args)| {
                let args = serde_json::from_str::<Value>(&args).unwrap_or_else(|_| json!({}));
                json!({"functionCall": {"name": name, "args": args}})
            })
            .collect();
        self.chunk(out, parts, Some(reason));
    }

    /// Whether the last chunk (or an error) was written.
    pub fn is_done(&self) -> bool {
        self.done
    }
}
