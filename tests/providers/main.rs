//! Golden tests per dialect pair (requests, responses, streams, errors) from fixtures
//! written after the providers' published formats, and round trips through the
//! canonical form.

mod reasoning;
mod requests;
mod responses;
mod roundtrip;
mod streams;

use bytes::BytesMut;
use serde_json::Value;
use tollgate::providers::{StreamDecoder, StreamEncoder};
use tollgate::sse::Decoder;
use tollgate::Dialect;

/// Translates a whole SSE text from one dialect to another, fed in pieces of `split`
/// bytes, and returns each output event as (event name, JSON data or the raw data).
pub fn translate_stream(
    input: &str,
    from: Dialect,
    to: Dialect,
    include_usage: bool,
    split: usize,
) -> Vec<(Option<String>, Value)> {
    let mut sse = Decoder::new();
    let mut decoder = StreamDecoder::new(from);
    let mut encoder = StreamEncoder::new(to, include_usage);
    let mut out = BytesMut::new();
    for piece in input.as_bytes().chunks(split) {
        sse.push(piece);
        while let Some(event) = sse.next_event() {
            decoder.decode(&event, &mut |e| encoder.encode(&e, &mut out));
        }
    }
    while let Some(event) = sse.finish() {
        decoder.decode(&event, &mut |e| encoder.encode(&e, &mut out));
    }
    parse_sse(std::str::from_utf8(&out).unwrap())
}

/// The events of an SSE text: (event name, JSON data, or a JSON string for non-JSON).
pub fn parse_sse(text: &str) -> Vec<(Option<String>, Value)> {
    let mut sse = Decoder::new();
    sse.push(text.as_bytes());
    let mut out = Vec::new();
    while let Some(event) = sse.finish() {
        if let Some(data) = event.data() {
            let value = serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.into()));
            out.push((event.event().map(str::to_owned), value));
        }
    }
    out
}

/// Builds an SSE text from (event name, JSON) pairs.
pub fn sse(events: &[(Option<&str>, Value)]) -> String {
    events
        .iter()
        .map(|(name, data)| {
            let head = name.map(|n| format!("event: {n}\n")).unwrap_or_default();
            format!("{head}data: {data}\n\n")
        })
        .collect()
}
