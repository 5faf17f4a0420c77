//! Translation cost: one request decoded and encoded for each dialect pair, and one
//! stream chunk decoded and re-encoded for each pair. Run: `cargo bench --bench providers`.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use tollgate::providers::{decode_request, encode_request, StreamDecoder, StreamEncoder};
use tollgate::sse::{Decoder, Event};
use tollgate::Dialect;

const DIALECTS: [(Dialect, &str); 3] = [
    (Dialect::OpenAi, "openai"),
    (Dialect::Anthropic, "anthropic"),
    (Dialect::Gemini, "gemini"),
];

/// One text-delta chunk of each dialect, as its provider sends it.
fn chunk(dialect: Dialect) -> Event {
    let text = match dialect {
        Dialect::OpenAi => "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" the quick brown fox\"},\"finish_reason\":null}]}\n\n",
        Dialect::Anthropic => "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" the quick brown fox\"}}\n\n",
        _ => "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\" the quick brown fox\"}]},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":20,\"candidatesTokenCount\":4},\"modelVersion\":\"gemini-x\",\"responseId\":\"r\"}\n\n",
    };
    let mut decoder = Decoder::new();
    decoder.push(text.as_bytes());
    decoder.next_event().expect("one complete event")
}

fn requests(c: &mut Criterion) {
    let openai = json!({"model": "m", "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ], "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
       "max_tokens": 64, "stream": true});
    let canonical = decode_request(Dialect::OpenAi, &openai).unwrap();
    let anthropic = encode_request(Dialect::Anthropic, &canonical).unwrap();
    let mut group = c.benchmark_group("request");
    for (from, from_name, body) in [
        (Dialect::OpenAi, "openai", &openai),
        (Dialect::Anthropic, "anthropic", &anthropic),
    ] {
        for (to, to_name) in DIALECTS {
            group.bench_function(format!("{from_name}->{to_name}"), |b| {
                b.iter(|| {
                    let req = decode_request(from, black_box(body)).unwrap();
                    black_box(encode_request(to, &req).unwrap())
                })
            });
        }
    }
    group.finish();
}

fn chunks(c: &mut Criterion) {
    let mut group = c.benchmark_group("stream_chunk");
    for (from, from_name) in DIALECTS {
        let event = chunk(from);
        for (to, to_name) in DIALECTS {
            let mut decoder = StreamDecoder::new(from);
            let mut encoder = StreamEncoder::new(to, false);
            let mut out = BytesMut::with_capacity(4096);
            // Past the start: the steady state is one delta in, one delta out.
            decoder.decode(&event, &mut |e| encoder.encode(&e, &mut out));
            group.bench_function(format!("{from_name}->{to_name}"), |b| {
                b.iter(|| {
                    out.clear();
                    decoder.decode(black_box(&event), &mut |e| encoder.encode(&e, &mut out));
                    black_box(out.len())
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, requests, chunks);
criterion_main!(benches);
