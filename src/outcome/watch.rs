//! Reading usage off a response as it streams by, per dialect.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{answer, Usage};
use crate::providers::openai::WireUsage;
use crate::providers::wire::{chars, Few, Str};
use crate::providers::{self, FinishReason, Part, StreamDecoder, StreamEvent};
use crate::sse::{Decoder, Event};
use crate::Dialect;

/// JSON bodies larger than this are forwarded without reading their usage.
const JSON_CAPTURE_LIMIT: usize = 16 * 1024 * 1024;

/// What has been learnt from the body so far.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(super) usage: Option<Usage>,
    pub(super) output_chars: u64,
    pub(super) finish_reason: Option<String>,
    /// The stream's terminal event went through.
    pub(super) terminal: bool,
}

/// How the body is read.
pub(super) enum Watch {
    /// An event stream, decoded incrementally.
    Sse {
        decoder: Decoder,
        dialect: Dialect,
        hide_usage_chunk: bool,
        /// Reads Anthropic and Gemini streams (OpenAI's are read here directly).
        native: Option<Box<StreamDecoder>>,
    },
    /// A JSON body: `Bytes` clones kept (under a cap) and parsed at the end.
    Json {
        parts: Vec<Bytes>,
        len: usize,
        dialect: Dialect,
    },
    /// Anything else: only bytes are counted.
    Opaque,
}

impl Watch {
    /// Reads one data frame. Returns the bytes to forward instead of the frame, when
    /// events were dropped (only with `hide_usage_chunk`).
    pub(super) fn on_data(&mut self, data: &Bytes, seen: &mut Seen) -> Option<Bytes> {
        match self {
            Watch::Sse {
                decoder,
                dialect,
                hide_usage_chunk,
                native,
            } => {
                decoder.push(data);
                if !*hide_usage_chunk {
                    while let Some(event) = decoder.next_event() {
                        on_event(*dialect, native, &event, seen);
                    }
                    return None;
                }
                // Hiding: forward complete events only, minus the usage-only chunk.
                let mut out = BytesMut::new();
                while let Some(event) = decoder.next_event() {
                    if !on_event(*dialect, native, &event, seen) {
                        out.extend_from_slice(event.raw());
                    }
                }
                Some(out.freeze())
            }
            Watch::Json { parts, len, .. } => {
                if *len <= JSON_CAPTURE_LIMIT {
                    *len += data.len();
                    parts.push(data.clone());
                }
                None
            }
            Watch::Opaque => None,
        }
    }

    /// The body ended: reads what is left. Returns bytes still to forward (events that
    /// were held back while hiding).
    pub(super) fn on_end(&mut self, seen: &mut Seen) -> Option<Bytes> {
        match self {
            Watch::Sse {
                decoder,
                dialect,
                hide_usage_chunk,
                native,
            } => {
                let mut out = BytesMut::new();
                while let Some(event) = decoder.finish() {
                    if !on_event(*dialect, native, &event, seen) && *hide_usage_chunk {
                        out.extend_from_slice(event.raw());
                    }
                }
                (!out.is_empty()).then(|| out.freeze())
            }
            Watch::Json {
                parts,
                len,
                dialect,
            } => {
                if *len <= JSON_CAPTURE_LIMIT {
                    let body: Cow<'_, [u8]> = match parts.as_slice() {
                        [one] => Cow::Borrowed(one),
                        many => Cow::Owned(many.concat()),
                    };
                    match dialect {
                        Dialect::OpenAi => on_json_body(&body, seen),
                        other => on_native_json(*other, &body, seen),
                    }
                }
                None
            }
            Watch::Opaque => None,
        }
    }

    /// Whether a body that ends now ended early (a stream without its terminal event).
    pub(super) fn ended_early(&self, seen: &Seen) -> bool {
        matches!(self, Watch::Sse { .. }) && !seen.terminal
    }
}

/// Reads one event. Returns true when it is the usage-only chunk that the gateway asked
/// for on the client's behalf (to be hidden from a client that did not ask for it).
fn on_event(
    dialect: Dialect,
    native: &mut Option<Box<StreamDecoder>>,
    event: &Event,
    seen: &mut Seen,
) -> bool {
    let Some(data) = event.data() else {
        return false;
    };
    match (dialect, native) {
        (Dialect::OpenAi, _) => on_openai_chunk(data, seen),
        (_, Some(decoder)) => {
            decoder.decode(event, &mut |e| on_canonical(&e, seen));
            false
        }
        (_, None) => false,
    }
}

/// Reads a canonical event of an Anthropic or Gemini stream.
fn on_canonical(event: &StreamEvent<'_>, seen: &mut Seen) {
    let chars = |s: &str| s.chars().count() as u64;
    match event {
        StreamEvent::Text(text) | StreamEvent::Reasoning(text) => seen.output_chars += chars(text),
        StreamEvent::ToolCallStart { name, .. } => seen.output_chars += chars(name),
        StreamEvent::ToolCallArgs { arguments, .. } => seen.output_chars += chars(arguments),
        // Totals: Anthropic's combined, Gemini's cumulative; the last one wins.
        StreamEvent::Usage(usage) => seen.usage = Some(*usage),
        StreamEvent::Finish(reason) => seen.finish_reason = Some(finish_name(reason).to_owned()),
        StreamEvent::Done => seen.terminal = true,
        _ => {}
    }
}

/// Finish reasons are reported with OpenAI's names whatever the dialect.
fn finish_name(reason: &FinishReason) -> &str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::Other(other) => other,
    }
}

/// Reads a complete Anthropic or Gemini answer.
fn on_native_json(dialect: Dialect, body: &[u8], seen: &mut Seen) {
    if let Ok(res) = providers::decode_response(dialect, body) {
        *seen = Seen::of_answer(&res);
    }
}

impl Seen {
    /// What a whole answer in canonical form says (read by whoever decoded it, so the
    /// observer does not parse it again).
    pub(crate) fn of_answer(res: &providers::ChatResponse) -> Seen {
        let output_chars = res
            .content
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.chars().count() as u64,
                Part::Reasoning(r) => r.text.chars().count() as u64,
                Part::ToolCall(call) => {
                    (call.name.chars().count() + call.arguments.chars().count()) as u64
                }
                _ => 0,
            })
            .sum();
        Seen {
            usage: res.usage,
            output_chars,
            finish_reason: res.finish.as_ref().map(|r| finish_name(r).to_owned()),
            terminal: false,
        }
    }

    /// What a whole OpenAI answer says, or `None` when it is not one (malformed JSON,
    /// or fields of unexpected types, which the observer would skip as well). Read by a
    /// scanner that accepts what serde_json did (see `outcome::answer`).
    pub(crate) fn of_openai_json(body: &[u8]) -> Option<Seen> {
        let answer = answer::read(body)?;
        Some(Seen {
            usage: answer.usage,
            output_chars: answer.output_chars,
            finish_reason: answer.finish_reason,
            terminal: false,
        })
    }
}

/// An OpenAI chunk, read without allocating: strings borrowed raw (their characters
/// are counted, not copied), choices and tool calls kept inline.
#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(default, borrow)]
    choices: Few<ChunkChoice<'a>>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct ChunkChoice<'a> {
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
    tool_calls: Option<Few<ToolCallDelta<'a>>>,
}

#[derive(Deserialize)]
struct ToolCallDelta<'a> {
    #[serde(default, borrow)]
    function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
struct FunctionDelta<'a> {
    #[serde(default, borrow)]
    name: Option<&'a RawValue>,
    #[serde(default, borrow)]
    arguments: Option<&'a RawValue>,
}

fn on_openai_chunk(data: &str, seen: &mut Seen) -> bool {
    if data.trim() == "[DONE]" {
        seen.terminal = true;
        return false;
    }
    let Ok(chunk) = serde_json::from_str::<Chunk<'_>>(data) else {
        return false; // not ours to judge: forwarded as is
    };
    let mut choices = false;
    for choice in chunk.choices {
        choices = true;
        if let Some(delta) = choice.delta {
            seen.output_chars += chars(delta.content) + chars(delta.reasoning_content);
            for call in delta.tool_calls.into_iter().flatten() {
                if let Some(f) = call.function {
                    seen.output_chars += chars(f.name) + chars(f.arguments);
                }
            }
        }
        if let Some(reason) = choice.finish_reason {
            seen.finish_reason = Some(reason.0.into_owned());
        }
    }
    match chunk.usage {
        Some(usage) => {
            seen.usage = Some(usage.into());
            !choices
        }
        None => false,
    }
}

fn on_json_body(body: &[u8], seen: &mut Seen) {
    if let Some(read) = Seen::of_openai_json(body) {
        *seen = read;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_answer_is_read_in_one_pass() {
        let answer = br#"{"choices":[{"finish_reason":"stop","index":0,"logprobs":null,"message":{"content":"caf\u00e9 \"q\"","refusal":null,"role":"assistant"}},{"finish_reason":"length","message":{"content":"ab"}},{"message":null},{"message":{"content":null},"finish_reason":null}],"created":1,"id":"x","usage":{"completion_tokens":5,"prompt_tokens":2,"prompt_tokens_details":{"cached_tokens":1},"total_tokens":7}}"#;
        let seen = Seen::of_openai_json(answer).unwrap();
        // `café "q"` is 8 characters once unescaped, `ab` 2.
        assert_eq!(seen.output_chars, 10);
        assert_eq!(seen.finish_reason.as_deref(), Some("length"));
        assert_eq!(seen.usage, Some(Usage::new(2, 5).with_cached(1)));
        let empty = Seen::of_openai_json(b"{}").unwrap();
        assert_eq!((empty.usage, empty.output_chars), (None, 0));
    }

    #[test]
    fn deepseek_and_reasoning_usage_is_read() {
        // DeepSeek's cache hits, and reasoning tokens; `cached_tokens` wins when both.
        let answer = br#"{"choices":[{"message":{"content":"\u4f60\u597d","reasoning_content":"..."},"finish_reason":"st\u006fp"}],"usage":{"prompt_tokens":64,"completion_tokens":70,"prompt_cache_hit_tokens":60,"prompt_cache_miss_tokens":4,"completion_tokens_details":{"reasoning_tokens":50}}}"#;
        let seen = Seen::of_openai_json(answer).unwrap();
        assert_eq!(seen.output_chars, 2);
        assert_eq!(seen.finish_reason.as_deref(), Some("stop"));
        let usage = Usage::new(64, 70).with_cached(60).with_reasoning(50);
        assert_eq!(seen.usage, Some(usage));
        let both = br#"{"usage":{"prompt_cache_hit_tokens":60,"prompt_tokens_details":{"cached_tokens":3}}}"#;
        let seen = Seen::of_openai_json(both).unwrap();
        assert_eq!(seen.usage, Some(Usage::new(0, 0).with_cached(3)));
    }

    #[test]
    fn pretty_printed_answers_are_read() {
        let answer = b"{\n  \"choices\": [\n    {\n      \"message\": {\n        \"content\": \"hi\"\n      },\n      \"finish_reason\": \"length\"\n    }\n  ],\r\n\t\"usage\": {\"prompt_tokens\": 3, \"completion_tokens\": 1}\n}\n";
        let seen = Seen::of_openai_json(answer).unwrap();
        assert_eq!(seen.output_chars, 2);
        assert_eq!(seen.finish_reason.as_deref(), Some("length"));
        assert_eq!(seen.usage, Some(Usage::new(3, 1)));
    }

    #[test]
    fn what_is_not_an_openai_answer_is_not_read() {
        let bodies: [&[u8]; 12] = [
            br#"{"choices":[{"message":{"content":"cut"#,
            br#"{"choices":[],"usage":{"prompt_tokens":1}} trailing"#,
            br#"{"choices":null}"#,
            br#"{"choices":[{"message":{"content":5}}]}"#,
            br#"{"choices":[],"choices":[]}"#,
            b"{\"choices\":[{\"message\":{\"content\":\"\xff\"}}]}",
            b"[1]",
            br#"{"usage":{"prompt_tokens":-1}}"#,
            br#"{"usage":{"prompt_tokens":1.0}}"#,
            br#"{"choices":[{"finish_reason":"\ud800"}]}"#,
            br#"{"id":"\x"}"#,
            br#"{"usage":null,"usage":null}"#,
        ];
        for body in bodies {
            assert!(
                Seen::of_openai_json(body).is_none(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn invalid_utf8_in_a_skipped_string_is_read_as_before() {
        // serde_json does not check the UTF-8 of strings it skips: such a body is read
        // byte by byte, as before the whole-body UTF-8 check.
        let mut body = br#"{"id":""#.to_vec();
        body.push(0xff);
        body.extend_from_slice(br#"","choices":[{"message":{"content":"hi"}}]}"#);
        assert_eq!(Seen::of_openai_json(&body).unwrap().output_chars, 2);
    }
}
