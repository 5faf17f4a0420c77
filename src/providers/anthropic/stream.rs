//! Anthropic message streams to and from canonical events.
//!
//! Decoding combines Anthropic's split usage: input and cache tokens arrive in
//! `message_start`, output tokens (and sometimes updated input counts) in
//! `message_delta`; each [`StreamEvent::Usage`] carries the combined totals.

use std::borrow::Cow;

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::response::{
    decode_error, decode_stop, decode_usage, encode_stop, encode_usage, WireUsage,
};
use crate::error::GatewayError;
use crate::outcome::Usage;
use crate::providers::canonical::{FinishReason, StreamEvent};
use crate::providers::wire::{text, Str};
use crate::providers::{malformed_event, write_event};
use crate::sse::Event;
use crate::Dialect;

// ===== decoding =====

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    message: Option<MessageStart<'a>>,
    #[serde(default)]
    index: Option<u32>,
    #[serde(default, borrow)]
    content_block: Option<Block<'a>>,
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct MessageStart<'a> {
    #[serde(default, borrow)]
    id: Cow<'a, str>,
    #[serde(default, borrow)]
    model: Cow<'a, str>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Block<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    text: Option<&'a RawValue>,
    #[serde(default, borrow)]
    id: Option<Str<'a>>,
    #[serde(default, borrow)]
    name: Option<Str<'a>>,
    #[serde(default, borrow)]
    thinking: Option<&'a RawValue>,
    #[serde(default, borrow)]
    signature: Option<Str<'a>>,
    #[serde(default, borrow)]
    data: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow)]
    text: Option<&'a RawValue>,
    #[serde(default, borrow)]
    partial_json: Option<&'a RawValue>,
    #[serde(default, borrow)]
    thinking: Option<&'a RawValue>,
    #[serde(default, borrow)]
    signature: Option<Str<'a>>,
    #[serde(default, borrow)]
    stop_reason: Option<Str<'a>>,
}

/// Reads an Anthropic stream into canonical events. Unknown event types (and
/// `ping`) are skipped, as Anthropic's versioning policy asks.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    usage: Option<Usage>,
    /// Content block index → tool call index.
    tools: Vec<(u32, u32)>,
    next_tool: u32,
    /// Unescaped text of the current event's strings (see `providers::wire`).
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
        let scratch = &mut self.scratch;
        let wire: Wire<'_> = match serde_json::from_str(data) {
            Ok(wire) => wire,
            Err(_) => return emit(StreamEvent::Error(malformed_event())),
        };
        match &*wire.kind {
            "message_start" => {
                let Some(message) = wire.message else {
                    return emit(StreamEvent::Error(malformed_event()));
                };
                emit(StreamEvent::Start {
                    id: message.id,
                    model: message.model,
                });
                if let Some(usage) = message.usage {
                    let usage = decode_usage(usage, self.usage);
                    self.usage = Some(usage);
                    emit(StreamEvent::Usage(usage));
                }
            }
            "content_block_start" => {
                let (Some(index), Some(block)) = (wire.index, wire.content_block) else {
                    return emit(StreamEvent::Error(malformed_event()));
                };
                match &*block.kind {
                    "text" => {
                        if let Some(text) = text(block.text, scratch).filter(|t| !t.is_empty()) {
                            emit(StreamEvent::Text(text.into()));
                        }
                    }
                    "tool_use" => {
                        let tool = self.next_tool;
                        self.next_tool += 1;
                        self.tools.push((index, tool));
                        emit(StreamEvent::ToolCallStart {
                            index: tool,
                            id: block.id.unwrap_or_default().0,
                            name: block.name.unwrap_or_default().0,
                        });
                    }
                    "thinking" => {
                        if let Some(text) = text(block.thinking, scratch).filter(|t| !t.is_empty())
                        {
                            emit(StreamEvent::Reasoning(text.into()));
                        }
                        if let Some(signature) = block.signature.filter(|s| !s.is_empty()) {
                            emit(StreamEvent::ReasoningSignature(signature.0));
                        }
                    }
                    "redacted_thinking" => {
                        emit(StreamEvent::RedactedReasoning(
                            block.data.unwrap_or_default().0,
                        ));
                    }
                    _ => {} // server-tool blocks have no canonical form
                }
            }
            "content_block_delta" => {
                let Some(delta) = wire.delta else {
                    return emit(StreamEvent::Error(malformed_event()));
                };
                if let Some(text) = text(delta.text, scratch).filter(|t| !t.is_empty()) {
                    emit(StreamEvent::Text(text.into()));
                } else if let Some(text) = text(delta.thinking, scratch).filter(|t| !t.is_empty()) {
                    emit(StreamEvent::Reasoning(text.into()));
                } else if let Some(signature) = delta.signature.filter(|s| !s.is_empty()) {
                    emit(StreamEvent::ReasoningSignature(signature.0));
                } else if let Some(json) =
                    text(delta.partial_json, scratch).filter(|j| !j.is_empty())
                {
                    let block = wire.index.unwrap_or(0);
                    if let Some(&(_, index)) = self.tools.iter().find(|(b, _)| *b == block) {
                        emit(StreamEvent::ToolCallArgs {
                            index,
                            arguments: json.into(),
                        });
                    }
                }
            }
            "message_delta" => {
                if let Some(usage) = wire.usage {
                    let usage = decode_usage(usage, self.usage);
                    self.usage = Some(usage);
                    emit(StreamEvent::Usage(usage));
                }
                if let Some(reason) = wire.delta.and_then(|d| d.stop_reason) {
                    emit(StreamEvent::Finish(decode_stop(&reason)));
                }
            }
            "message_stop" => emit(StreamEvent::Done),
            "error" => {
                let message = decode_error(data.as_bytes())
                    .map(|e| e.message)
                    .unwrap_or_else(|| "The provider reported an error mid-stream.".into());
                emit(StreamEvent::Error(GatewayError::upstream(message)));
            }
            _ => {} // ping, content_block_stop, and event types added later
        }
    }
}

// ===== encoding =====

#[derive(Serialize)]
struct OutDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    delta: OutDeltaBody<'a>,
}

// The variant names are Anthropic's `type` tags.
#[allow(clippy::enum_variant_names)]
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutDeltaBody<'a> {
    TextDelta { text: &'a str },
    InputJsonDelta { partial_json: &'a str },
    ThinkingDelta { thinking: &'a str },
    SignatureDelta { signature: &'a str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text(u32),
    Tool(u32),
    Thinking(u32),
}

/// Writes canonical events as an Anthropic stream: `message_start`, one
/// `content_block_start` / `content_block_delta`... / `content_block_stop` per thinking
/// (`thinking_delta`s, then a `signature_delta` when the reasoning is signed), text or
/// tool_use block, `redacted_thinking` blocks whole, `message_delta` with the stop reason and the complete usage, and
/// `message_stop`. Every event carries its `event:` line.
#[derive(Debug, Default)]
pub struct StreamEncoder {
    id: String,
    model: String,
    started: bool,
    open: Option<Open>,
    next_block: u32,
    /// Tool call index → content block index.
    tools: Vec<(u32, u32)>,
    usage: Usage,
    finish: Option<FinishReason>,
    done: bool,
}

impl StreamEncoder {
    /// An encoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    fn start(&mut self, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        let start = json!({
            "type": "message_start",
            "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": encode_usage(&self.usage),
            },
        });
        write_event(out, Some("message_start"), &start);
    }

    fn close(&mut self, out: &mut BytesMut) {
        if let Some(Open::Text(index) | Open::Tool(index) | Open::Thinking(index)) =
            self.open.take()
        {
            let stop = json!({"type": "content_block_stop", "index": index});
            write_event(out, Some("content_block_stop"), &stop);
        }
    }

    fn open(&mut self, out: &mut BytesMut, block: Value) -> u32 {
        self.close(out);
        let index = self.next_block;
        self.next_block += 1;
        let start = json!({"type": "content_block_start", "index": index, "content_block": block});
        write_event(out, Some("content_block_start"), &start);
        index
    }

    /// The open thinking block, opened after the message start if need be.
    fn thinking_block(&mut self, out: &mut BytesMut) -> u32 {
        self.start(out);
        match self.open {
            Some(Open::Thinking(index)) => index,
            _ => {
                let block = json!({"type": "thinking", "thinking": "", "signature": ""});
                let index = self.open(out, block);
                self.open = Some(Open::Thinking(index));
                index
            }
        }
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
            StreamEvent::Usage(usage) => self.usage = *usage,
            StreamEvent::Text(text) => {
                self.start(out);
                let index = match self.open {
                    Some(Open::Text(index)) => index,
                    _ => {
                        let index = self.open(out, json!({"type": "text", "text": ""}));
                        self.open = Some(Open::Text(index));
                        index
                    }
                };
                let delta = OutDelta {
                    kind: "content_block_delta",
                    index,
                    delta: OutDeltaBody::TextDelta { text },
                };
                write_event(out, Some("content_block_delta"), &delta);
            }
            StreamEvent::Reasoning(text) => {
                let index = self.thinking_block(out);
                let delta = OutDelta {
                    kind: "content_block_delta",
                    index,
                    delta: OutDeltaBody::ThinkingDelta { thinking: text },
                };
                write_event(out, Some("content_block_delta"), &delta);
            }
            StreamEvent::ReasoningSignature(signature) => {
                let index = self.thinking_block(out);
                let delta = OutDelta {
                    kind: "content_block_delta",
                    index,
                    delta: OutDeltaBody::SignatureDelta { signature },
                };
                write_event(out, Some("content_block_delta"), &delta);
                // The signature is the last thing of a thinking block.
                self.close(out);
            }
            StreamEvent::RedactedReasoning(data) => {
                self.start(out);
                let block = json!({"type": "redacted_thinking", "data": data});
                let index = self.open(out, block);
                self.open = Some(Open::Thinking(index));
                self.close(out);
            }
            StreamEvent::ToolCallStart { index, id, name } => {
                self.start(out);
                let block = json!({"type": "tool_use", "id": id, "name": name, "input": {}});
                let block = self.open(out, block);
                self.open = Some(Open::Tool(block));
                self.tools.push((*index, block));
            }
            StreamEvent::ToolCallArgs { index, arguments } => {
                let Some(&(_, block)) = self.tools.iter().find(|(t, _)| t == index) else {
                    return;
                };
                let delta = OutDelta {
                    kind: "content_block_delta",
                    index: block,
                    delta: OutDeltaBody::InputJsonDelta {
                        partial_json: arguments,
                    },
                };
                write_event(out, Some("content_block_delta"), &delta);
            }
            StreamEvent::Finish(reason) => {
                self.start(out);
                self.close(out);
                self.finish = Some(reason.clone());
            }
            StreamEvent::Error(err) => {
                self.done = true;
                write_event(out, Some("error"), &err.to_json(Dialect::Anthropic));
            }
            StreamEvent::Done => {
                self.start(out);
                self.close(out);
                self.done = true;
                let stop = self.finish.as_ref().map_or("end_turn", encode_stop);
                let delta = json!({
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": null},
                    "usage": encode_usage(&self.usage),
                });
                write_event(out, Some("message_delta"), &delta);
                out.extend_from_slice(
                    b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
                );
            }
        }
    }

    /// Whether `message_stop` (or an error) was written.
    pub fn is_done(&self) -> bool {
        self.done
    }
}
