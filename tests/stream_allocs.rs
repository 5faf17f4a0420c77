//! Allocations per stream chunk, counted: translating a steady stream of text deltas
//! allocates nothing per chunk but the bytes sent to the client.
//!
//! The global allocator of this test binary (`allocation-counter`) counts the
//! allocations of the current thread, reallocations included. For every pair of
//! dialects, after the first events of a stream (the start, the first delta: the
//! converters keep the id and model, open blocks), `N` text deltas go through
//!
//! 1. the converter pair alone (`StreamDecoder` then `StreamEncoder`, SSE events parsed
//!    beforehand, the output buffer cleared and reused): **0** allocations in `N` chunks;
//! 2. the whole `TranslateStream` body (SSE parsing, conversion, the output frame), one
//!    provider frame per chunk: at most **1** allocation per chunk, the room for the
//!    output frame's bytes. (Measured: 0 in `N` chunks, since each frame is a
//!    `split().freeze()` of a buffer that is reclaimed in place once the frames before it
//!    are dropped, as here; a client that holds frames makes it allocate anew.)
//!
//! Two texts: plain, and one with escapes (`\n`, quotes, non-ASCII), which JSON parsers
//! usually unescape into a new `String`.
//!
//! The same holds for the `Outcome` observing a stream in each dialect (usage, output
//! characters, the end): **0** allocations in `N` chunks.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use tollgate::providers::{StreamDecoder, StreamEncoder, TranslateStream};
use tollgate::sse::{Decoder, Event};
use tollgate::Dialect;

const N: u64 = 1000;

const DIALECTS: [Dialect; 3] = [Dialect::OpenAi, Dialect::Anthropic, Dialect::Gemini];

/// The start of a stream of `dialect`, up to and including its first text delta.
fn head(dialect: Dialect) -> String {
    match dialect {
        Dialect::OpenAi => format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-x\",\"choices\":[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\"}},\"finish_reason\":null}}]}}\n\n{}",
            delta(dialect, "Hi")
        ),
        Dialect::Anthropic => format!(
            "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"usage\":{{\"input_tokens\":20,\"output_tokens\":1}}}}}}\n\n\
             event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{{\"type\":\"text\",\"text\":\"\"}}}}\n\n{}",
            delta(dialect, "Hi")
        ),
        _ => delta(dialect, "Hi"),
    }
}

/// One text delta of `dialect` as its provider sends it (`text` is JSON-escaped already).
/// Gemini repeats its cumulative usage in every chunk.
fn delta(dialect: Dialect, text: &str) -> String {
    match dialect {
        Dialect::OpenAi => format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-x\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
        ),
        Dialect::Anthropic => format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{text}\"}}}}\n\n"
        ),
        _ => format!(
            "data: {{\"candidates\":[{{\"content\":{{\"role\":\"model\",\"parts\":[{{\"text\":\"{text}\"}}]}},\"index\":0}}],\"usageMetadata\":{{\"promptTokenCount\":20,\"candidatesTokenCount\":4,\"totalTokenCount\":24}},\"modelVersion\":\"gemini-x\",\"responseId\":\"r1\"}}\n\n"
        ),
    }
}

const TEXTS: [(&str, &str); 2] = [
    ("plain", " the quick brown fox"),
    ("escaped", "\\n\\\"quoted\\\" caf\\u00e9 \u{e9}t\u{e9}\\t"),
];

fn events(text: &str) -> Vec<Event> {
    let mut sse = Decoder::new();
    sse.push(text.as_bytes());
    std::iter::from_fn(|| sse.next_event()).collect()
}

/// Allocations over `N` chunks of the converter pair alone.
fn converters(from: Dialect, to: Dialect, text: &str) -> u64 {
    let mut decoder = StreamDecoder::new(from);
    let mut encoder = StreamEncoder::new(to, true);
    let mut out = BytesMut::with_capacity(4096);
    for event in events(&head(from)) {
        decoder.decode(&event, &mut |e| encoder.encode(&e, &mut out));
    }
    let chunk = events(&delta(from, text)).pop().expect("one event");
    // Once, for the buffers to reach their size (the decoder's unescaping scratch).
    decoder.decode(&chunk, &mut |e| encoder.encode(&e, &mut out));
    let info = allocation_counter::measure(|| {
        for _ in 0..N {
            out.clear();
            decoder.decode(&chunk, &mut |e| encoder.encode(&e, &mut out));
        }
    });
    assert!(!out.is_empty(), "{from:?} → {to:?} wrote nothing");
    info.count_total
}

/// A body of ready frames.
struct Frames(VecDeque<Bytes>);

impl Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

/// A provider stream of `dialect`: its head, then `N` copies of one text delta.
fn provider_stream(dialect: Dialect, text: &str) -> Frames {
    let chunk = Bytes::from(delta(dialect, text));
    let mut frames = VecDeque::with_capacity(N as usize + 1);
    frames.push_back(Bytes::from(head(dialect)));
    frames.extend((0..N).map(|_| chunk.clone()));
    Frames(frames)
}

/// Allocations while `body` yields its last `N - 3` frames, after the head and a few
/// deltas have brought its buffers to their size. `what` names the case in a panic.
fn steady_allocations<B>(mut body: B, what: &str) -> u64
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    let mut poll = |body: &mut B| match Pin::new(body).poll_frame(&mut cx) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().map(|d| d.len()).unwrap_or(0),
        other => panic!("{what}: {other:?}"),
    };
    for _ in 0..4 {
        poll(&mut body);
    }
    let mut rest = N - 3;
    let mut bytes = 0;
    let info = allocation_counter::measure(|| {
        while rest > 0 {
            bytes += poll(&mut body);
            rest -= 1;
        }
    });
    assert!(bytes > 0, "{what}: no bytes");
    info.count_total
}

/// Allocations over `N` chunks of the whole `TranslateStream` body.
fn body(from: Dialect, to: Dialect, text: &str) -> u64 {
    let body = TranslateStream::new(
        provider_stream(from, text),
        from,
        StreamEncoder::new(to, true),
    );
    steady_allocations(body, &format!("{from:?} → {to:?}"))
}

#[test]
fn a_text_delta_allocates_only_its_output_bytes() {
    let mut report = String::new();
    let mut failures = Vec::new();
    for (kind, text) in TEXTS {
        for from in DIALECTS {
            for to in DIALECTS {
                let pair = converters(from, to, text);
                let whole = body(from, to, text);
                report.push_str(&format!(
                    "{kind:8} {from:?} → {to:?}: converters {pair}, TranslateStream {whole} allocations in {N} chunks\n"
                ));
                if pair > 0 || whole > N {
                    failures.push(format!("{kind} {from:?} → {to:?}"));
                }
            }
        }
    }
    println!("{report}");
    assert!(failures.is_empty(), "over budget: {failures:?}\n{report}");
}

/// Allocations over `N` chunks of a stream observed by the `Outcome` (usage, output
/// characters, the end): what every metered stream pays, translated or not.
fn observed(dialect: Dialect, text: &str) -> u64 {
    use tollgate::outcome::{observe, ObserveOptions};
    let res = http::Response::builder()
        .header("content-type", "text/event-stream")
        .body(provider_stream(dialect, text))
        .unwrap();
    let options = ObserveOptions::new(std::time::Instant::now()).dialect(dialect);
    steady_allocations(observe(res, options).into_body(), &format!("{dialect:?}"))
}

/// The observer reads each chunk (usage, output characters) without allocating.
#[test]
fn observing_a_stream_allocates_nothing_per_chunk() {
    let mut report = String::new();
    let mut failures = Vec::new();
    for (kind, text) in TEXTS {
        for dialect in DIALECTS {
            let n = observed(dialect, text);
            report.push_str(&format!(
                "{kind:8} {dialect:?}: {n} allocations in {N} chunks\n"
            ));
            if n > 0 {
                failures.push(format!("{kind} {dialect:?}"));
            }
        }
    }
    println!("{report}");
    assert!(
        failures.is_empty(),
        "allocations per chunk: {failures:?}\n{report}"
    );
}
