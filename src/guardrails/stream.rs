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
    /// One window per tool call being streamed (OpenAI `tool_calls[].index`, Anthropic
    /// content block index): its arguments are JSON text, checked like the answer.
    args: Vec<(u64, String)>,
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
                args: Vec::new(),
                template: None,
                cut: false,
            },
            finished: false,
        }
    }
}

/// Appends `text` to the window `carry` and returns the text that may go out now (all
/// of it with `flush`), or the reason to block. `json` says the window holds JSON text
/// (tool-call arguments): replacements are then kept clear of escape sequences, so a
/// match inside a JSON string leaves a valid string.
fn pass(
    check: &dyn ContentCheck,
    carry: &mut String,
    text: &str,
    flush: bool,
    json: bool,
) -> Result<String, String> {
    carry.push_str(text);
    let mut findings = check.scan(carry, Side::Response);
    if let Some(reason) = blocked(&findings) {
        return Err(reason.to_owned());
    }
    if json {
        json_safe(carry, &mut findings);
    }
    let window = check.window();
    let mut cut = if flush || window == 0 {
        carry.len()
    } else {
        carry
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
    let out = apply(&carry[..cut], &settled);
    carry.drain(..cut);
    Ok(out)
}

/// Keeps each match in JSON text clear of escape sequences: one that starts right
/// after the `\` of an escape takes the `\` along (else `\[EMAIL]` would be left), and
/// one that ends on a lone `\` leaves it out (else the next character would lose its
/// escape).
pub(super) fn json_safe(text: &str, findings: &mut [Finding]) {
    let escapes = |end: usize| {
        text.as_bytes()[..end]
            .iter()
            .rev()
            .take_while(|b| **b == b'\\')
            .count()
            % 2
            == 1
    };
    for finding in findings {
        if finding.range.start > 0 && escapes(finding.range.start) {
            finding.range.start -= 1;
        }
        if finding.range.end > finding.range.start && escapes(finding.range.end) {
            finding.range.end -= 1;
        }
    }
}

impl State {
    /// [`pass`] over the answer's text.
    fn pass(&mut self, text: &str, flush: bool) -> Result<String, String> {
        pass(&*self.check, &mut self.carry, text, flush, false)
    }

    /// [`pass`] over the arguments of tool call `index`.
    fn pass_args(&mut self, index: u64, text: &str, flush: bool) -> Result<String, String> {
        let at = match self.args.iter().position(|(i, _)| *i == index) {
            Some(at) => at,
            None => {
                self.args.push((index, String::new()));
                self.args.len() - 1
            }
        };
        pass(&*self.check, &mut self.args[at].1, text, flush, true)
    }

    /// What every tool call's window still holds, checked: `(index, text)`.
    fn flush_args(&mut self) -> Result<Vec<(u64, String)>, String> {
        let mut out = Vec::new();
        for (index, mut carry) in std::mem::take(&mut self.args) {
            if !carry.is_empty() {
                out.push((index, pass(&*self.check, &mut carry, "", true, true)?));
            }
        }
        Ok(out)
    }

    /// OpenAI chunks carrying the rest of each tool call's arguments.
    fn openai_args_flush(&mut self) -> Result<BytesMut, String> {
        let mut out = BytesMut::new();
        for (index, rest) in self.flush_args()? {
            let mut chunk = self.template.clone().unwrap_or_else(|| json!({}));
            chunk["object"] = json!("chat.completion.chunk");
            chunk["choices"] = json!([{"index": 0, "delta": {"tool_calls": [
                {"index": index, "function": {"arguments": rest}}]}, "finish_reason": null}]);
            out.extend_from_slice(&encode_json(None, &chunk));
        }
        Ok(out)
    }

    /// Anthropic `input_json_delta` events carrying the rest of each tool call's input.
    fn anthropic_args_flush(&mut self, only: Option<u64>) -> Result<BytesMut, String> {
        let mut out = BytesMut::new();
        let (flushed, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.args)
            .into_iter()
            .partition(|(i, _)| only.is_none_or(|o| o == *i));
        self.args = kept;
        for (index, mut carry) in flushed {
            if carry.is_empty() {
                continue;
            }
            let rest = pass(&*self.check, &mut carry, "", true, true)?;
            let flush = json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "input_json_delta", "partial_json": rest}});
            out.extend_from_slice(&encode_json(Some("content_block_delta"), &flush));
        }
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
            let mut out = self.openai_args_flush()?;
            if !self.carry.is_empty() {
                let rest = self.pass("", true)?;
                let mut chunk = self.template.clone().unwrap_or_else(|| json!({}));
                chunk["object"] = json!("chat.completion.chunk");
                chunk["choices"] =
                    json!([{"index": 0, "delta": {"content": rest}, "finish_reason": null}]);
                out.extend_from_slice(&encode_json(None, &chunk));
            }
            if out.is_empty() {
                return Ok(None);
            }
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
        let calls = chunk
            .pointer("/choices/0/delta/tool_calls")
            .is_some_and(Value::is_array);
        // Nothing to check, and nothing held back to flush with the finish reason.
        let flushes = finished && (!self.carry.is_empty() || !self.args.is_empty());
        if content.is_none() && !calls && !flushes {
            return Ok(None);
        }
        self.template = Some(json!({
            "id": chunk.get("id").cloned().unwrap_or(Value::Null),
            "created": chunk.get("created").cloned().unwrap_or(Value::Null),
            "model": chunk.get("model").cloned().unwrap_or(Value::Null),
        }));
        if let Some(calls) = chunk
            .pointer_mut("/choices/0/delta/tool_calls")
            .and_then(Value::as_array_mut)
        {
            for (position, call) in calls.iter_mut().enumerate() {
                let index = call
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(position as u64);
                if let Some(Value::String(fragment)) = call.pointer_mut("/function/arguments") {
                    let fragment_in = std::mem::take(fragment);
                    *fragment = self.pass_args(index, &fragment_in, false)?;
                }
            }
        }
        // The rest of the arguments goes out before the chunk that finishes.
        let mut out = if finished {
            self.openai_args_flush()?
        } else {
            BytesMut::new()
        };
        if content.is_some() || (finished && !self.carry.is_empty()) {
            let text = self.pass(content.as_deref().unwrap_or(""), finished)?;
            chunk["choices"][0]["delta"]["content"] = json!(text);
        }
        out.extend_from_slice(&encode_json(None, &chunk));
        Ok(Some(out.freeze()))
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
                match delta.pointer("/delta/type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let text = delta
                            .pointer("/delta/text")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned();
                        let out = self.pass(&text, false)?;
                        delta["delta"]["text"] = json!(out);
                    }
                    Some("input_json_delta") => {
                        let index = delta.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let partial = delta
                            .pointer("/delta/partial_json")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned();
                        let out = self.pass_args(index, &partial, false)?;
                        delta["delta"]["partial_json"] = json!(out);
                    }
                    _ => return Ok(None),
                }
                Ok(Some(encode_json(name, &delta)))
            }
            Some("content_block_stop") => {
                let index = serde_json::from_str::<Value>(data)
                    .ok()
                    .and_then(|v| v.get("index").and_then(Value::as_u64))
                    .unwrap_or(0);
                let mut out = self.anthropic_args_flush(Some(index))?;
                if !self.carry.is_empty() {
                    let rest = self.pass("", true)?;
                    let flush = json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "text_delta", "text": rest}});
                    out.extend_from_slice(&encode_json(Some("content_block_delta"), &flush));
                }
                if out.is_empty() {
                    return Ok(None);
                }
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
                    if !state.cut {
                        let args = match state.dialect {
                            Dialect::Anthropic => state.anthropic_args_flush(None),
                            _ => state.openai_args_flush(),
                        };
                        match args {
                            Ok(args) => out.extend_from_slice(&args),
                            Err(reason) => out.extend_from_slice(&state.block(&reason)),
                        }
                    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guardrails::Action;

    fn replace(range: std::ops::Range<usize>) -> Finding {
        Finding {
            range,
            action: Action::Replace("[X]".into()),
        }
    }

    #[test]
    fn replacements_in_json_text_keep_clear_of_escapes() {
        let valid = |text: &str| serde_json::from_str::<serde_json::Value>(text).is_ok();
        // A match starting on an escaped character takes its backslash along.
        let text = r#"{"a":"x\u0062ob"}"#;
        let start = text.find("u0062").unwrap();
        let mut findings = vec![replace(start..start + 7)];
        json_safe(text, &mut findings);
        let out = apply(text, &findings);
        assert_eq!(out, r#"{"a":"x[X]"}"#);
        assert!(valid(&out));
        // One ending on a lone backslash leaves it, so the quote it escapes stays escaped.
        let text = r#"{"a":"bob\"x"}"#;
        let end = text.find('\\').unwrap() + 1;
        let mut findings = vec![replace(6..end)];
        json_safe(text, &mut findings);
        let out = apply(text, &findings);
        assert_eq!(out, r#"{"a":"[X]\"x"}"#);
        assert!(valid(&out));
        // An escaped backslash before the match is a character of its own: left alone.
        let text = r#"{"a":"\\bob"}"#;
        let start = text.find("bob").unwrap();
        let mut findings = vec![replace(start..start + 3)];
        json_safe(text, &mut findings);
        assert_eq!(findings[0].range, start..start + 3);
        assert!(valid(&apply(text, &findings)));
    }
}
