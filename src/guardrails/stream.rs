//! The streamed answer checked over a sliding window: [`GuardedBody`].

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::Frame;
use pin_project::pin_project;
use serde_json::{json, Value};

use super::check::{apply, blocked, ContentCheck, Finding, Side};
use crate::error::GatewayError;
use crate::sse::{encode, encode_json, Decoder, Event};
use crate::{BoxError, Dialect};

/// Rewrites a stream's text deltas: each delta's text is appended to a held-back tail,
/// the check runs over that window, and only the text older than the window (and not
/// inside a match that reaches into it) is sent, redacted. The tail is sent when the
/// message ends. A `Block` ends the stream with an error event in the client's dialect.
#[pin_project]
pub(super) struct GuardedBody<B> {
    #[pin]
    inner: B,
    state: State,
    /// Set once the stream ended (or was cut): the inner body is not polled again.
    finished: bool,
}

struct State {
    check: Arc<dyn ContentCheck>,
    dialect: Dialect,
    decoder: Decoder,
    carry: String,
    /// The last OpenAI chunk's `id`, `created` and `model`, for the chunk that flushes.
    template: Option<Value>,
    cut: bool,
}

impl<B> GuardedBody<B> {
    pub(super) fn new(inner: B, check: Arc<dyn ContentCheck>, dialect: Dialect) -> Self {
        GuardedBody {
            inner,
            state: State {
                check,
                dialect,
                decoder: Decoder::new(),
                carry: String::new(),
                template: None,
                cut: false,
            },
            finished: false,
        }
    }
}

impl State {
    /// Appends `text` to the window and returns the text that may go out now (all of
    /// it with `flush`), or the reason to block.
    fn pass(&mut self, text: &str, flush: bool) -> Result<String, String> {
        self.carry.push_str(text);
        let findings = self.check.scan(&self.carry, Side::Response);
        if let Some(reason) = blocked(&findings) {
            return Err(reason.to_owned());
        }
        let window = self.check.window();
        let mut cut = if flush || window == 0 {
            self.carry.len()
        } else {
            self.carry
                .char_indices()
                .rev()
                .nth(window - 1)
                .map_or(0, |(i, _)| i)
        };
        if let Some(straddling) = findings
            .iter()
            .find(|f| f.range.start < cut && f.range.end > cut)
        {
            cut = straddling.range.start;
        }
        let settled: Vec<Finding> = findings
            .into_iter()
            .filter(|f| f.range.end <= cut)
            .collect();
        let out = apply(&self.carry[..cut], &settled);
        self.carry.drain(..cut);
        Ok(out)
    }

    /// The error event that ends a blocked stream.
    fn block(&mut self, reason: &str) -> Bytes {
        self.cut = true;
        let err = GatewayError::invalid_request(reason.to_owned())
            .with_code("content_policy_violation")
            .to_json(self.dialect);
        match self.dialect {
            Dialect::Anthropic => encode_json(Some("error"), &err),
            _ => encode_json(None, &err),
        }
    }

    /// One event, rewritten.
    fn event(&mut self, event: Event, out: &mut BytesMut) {
        let rewritten = match self.dialect {
            Dialect::Anthropic => self.anthropic(&event),
            _ => self.openai(&event),
        };
        match rewritten {
            Ok(Some(bytes)) => out.extend_from_slice(&bytes),
            Ok(None) => out.extend_from_slice(event.raw()),
            Err(reason) => out.extend_from_slice(&self.block(&reason)),
        }
    }

    fn openai(&mut self, event: &Event) -> Result<Option<Bytes>, String> {
        let Some(data) = event.data() else {
            return Ok(None);
        };
        if data.trim() == "[DONE]" {
            if self.carry.is_empty() {
                return Ok(None);
            }
            let rest = self.pass("", true)?;
            let mut chunk = self.template.clone().unwrap_or_else(|| json!({}));
            chunk["object"] = json!("chat.completion.chunk");
            chunk["choices"] =
                json!([{"index": 0, "delta": {"content": rest}, "finish_reason": null}]);
            let mut out = BytesMut::from(&encode_json(None, &chunk)[..]);
            out.extend_from_slice(event.raw());
            return Ok(Some(out.freeze()));
        }
        let Ok(mut chunk) = serde_json::from_str::<Value>(data) else {
            return Ok(None);
        };
        // One window per stream: a second choice (n > 1) cannot share it, and passing it
        // unchecked would leak, so such a stream is ended (fail closed).
        if chunk
            .pointer("/choices/0/index")
            .and_then(Value::as_u64)
            .is_some_and(|i| i != 0)
        {
            return Err(
                "Streams with several choices (n > 1) cannot be checked by this gateway's guardrail; ask for one choice."
                    .to_owned(),
            );
        }
        let content = chunk
            .pointer("/choices/0/delta/content")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let finished = chunk
            .pointer("/choices/0/finish_reason")
            .is_some_and(|r| !r.is_null());
        // Nothing to check, and nothing held back to flush with the finish reason.
        let flushes = finished && !self.carry.is_empty();
        if content.is_none() && !flushes {
            return Ok(None);
        }
        self.template = Some(json!({
            "id": chunk.get("id").cloned().unwrap_or(Value::Null),
            "created": chunk.get("created").cloned().unwrap_or(Value::Null),
            "model": chunk.get("model").cloned().unwrap_or(Value::Null),
        }));
        let text = self.pass(content.as_deref().unwrap_or(""), finished)?;
        chunk["choices"][0]["delta"]["content"] = json!(text);
        Ok(Some(encode_json(None, &chunk)))
    }

    fn anthropic(&mut self, event: &Event) -> Result<Option<Bytes>, String> {
        let name = event.event();
        let Some(data) = event.data() else {
            return Ok(None);
        };
        match name {
            Some("content_block_delta") => {
                let Ok(mut delta) = serde_json::from_str::<Value>(data) else {
                    return Ok(None);
                };
                if delta.pointer("/delta/type").and_then(Value::as_str) != Some("text_delta") {
                    return Ok(None);
                }
                let text = delta
                    .pointer("/delta/text")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                let out = self.pass(&text, false)?;
                delta["delta"]["text"] = json!(out);
                Ok(Some(encode_json(name, &delta)))
            }
            Some("content_block_stop") if !self.carry.is_empty() => {
                let index = serde_json::from_str::<Value>(data)
                    .ok()
                    .and_then(|v| v.get("index").cloned())
                    .unwrap_or(json!(0));
                let rest = self.pass("", true)?;
                let flush = json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "text_delta", "text": rest}});
                let mut out = BytesMut::from(&encode_json(Some("content_block_delta"), &flush)[..]);
                out.extend_from_slice(event.raw());
                Ok(Some(out.freeze()))
            }
            _ => Ok(None),
        }
    }
}

impl<B> http_body::Body for GuardedBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            if *this.finished {
                return Poll::Ready(None);
            }
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let data = match frame.into_data() {
                        Ok(data) => data,
                        Err(frame) => return Poll::Ready(Some(Ok(frame))),
                    };
                    let state = &mut *this.state;
                    state.decoder.push(&data);
                    let mut out = BytesMut::new();
                    while let Some(event) = state.decoder.next_event() {
                        state.event(event, &mut out);
                        if state.cut {
                            *this.finished = true;
                            break;
                        }
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
                    }
                }
                Some(Err(err)) => return Poll::Ready(Some(Err(err.into()))),
                None => {
                    *this.finished = true;
                    let state = &mut *this.state;
                    let mut out = BytesMut::new();
                    if let Some(event) = state.decoder.finish() {
                        state.event(event, &mut out);
                    }
                    // A stream cut before its end: what is held back is still checked.
                    if !state.cut && !state.carry.is_empty() {
                        match state.pass("", true) {
                            Ok(rest) if state.dialect == Dialect::Anthropic => {
                                let flush = json!({"type": "content_block_delta", "index": 0,
                                    "delta": {"type": "text_delta", "text": rest}});
                                out.extend_from_slice(&encode_json(
                                    Some("content_block_delta"),
                                    &flush,
                                ));
                            }
                            Ok(rest) => {
                                let chunk = json!({"object": "chat.completion.chunk",
                                    "choices": [{"index": 0, "delta": {"content": rest},
                                    "finish_reason": null}]});
                                out.extend_from_slice(&encode(None, &chunk.to_string()));
                            }
                            Err(reason) => out.extend_from_slice(&state.block(&reason)),
                        }
                    }
                    if out.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }
}
