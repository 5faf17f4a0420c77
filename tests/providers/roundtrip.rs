//! canonical → dialect → canonical keeps what the dialect can express.

use serde_json::json;
use tollgate::outcome::Usage;
use tollgate::providers::*;
use tollgate::Dialect;

fn request() -> ChatRequest {
    let body = json!({
        "model": "m",
        "messages": [
            {"role": "system", "content": "Sys."},
            {"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}},
            ]},
            {"role": "assistant", "content": "ok", "tool_calls": [
                {"id": "call_0", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
                {"id": "call_1", "type": "function", "function": {"name": "g", "arguments": "{}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_0", "content": "one"},
            {"role": "tool", "tool_call_id": "call_1", "content": "two"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "description": "F", "parameters": {"type": "object"}}},
                  {"type": "function", "function": {"name": "g", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "max_tokens": 10,
        "temperature": 0.2,
        "top_p": 0.5,
        "stop": ["x", "y"],
        "stream": true,
    });
    decode_request(Dialect::OpenAi, &body).unwrap()
}

#[test]
fn requests_round_trip_through_every_dialect() {
    let original = request();
    for dialect in [Dialect::OpenAi, Dialect::Anthropic] {
        let wire = encode_request(dialect, &original).unwrap();
        let mut back = decode_request(dialect, &wire).unwrap();
        back.include_usage = original.include_usage;
        assert_eq!(back, original, "{dialect:?}: {wire}");
    }
    // Gemini carries the model and `stream` in the URL, and names tool results by
    // function (the ids come back as call_<k>, which these happen to be).
    let wire = encode_request(Dialect::Gemini, &original).unwrap();
    let mut back = gemini::decode_request(&wire, "m", true).unwrap();
    back.include_usage = original.include_usage;
    assert_eq!(back, original, "Gemini: {wire}");
}

#[test]
fn responses_round_trip_through_every_dialect() {
    let mut original = ChatResponse::new("id-1", "model-1");
    original.content = vec![
        Part::Text("Hello".into()),
        Part::ToolCall(ToolCall {
            id: "call_id-1_0".into(),
            name: "f".into(),
            arguments: "{\"a\":[1,2]}".into(),
        }),
    ];
    original.finish = Some(FinishReason::ToolCalls);
    original.usage = Some(Usage::new(30, 4).with_cached(20));
    for dialect in [Dialect::OpenAi, Dialect::Anthropic, Dialect::Gemini] {
        let wire = encode_response(dialect, &original);
        let back = decode_response(dialect, wire.to_string().as_bytes()).unwrap();
        assert_eq!(back, original, "{dialect:?}: {wire}");
    }
}

#[test]
fn streams_round_trip_through_every_dialect() {
    use bytes::BytesMut;
    let events = vec![
        StreamEvent::Start {
            id: "id-1".into(),
            model: "m".into(),
        },
        StreamEvent::Usage(Usage::new(12, 0).with_cached(2)),
        StreamEvent::Text("Hel".into()),
        StreamEvent::Text("lo".into()),
        StreamEvent::ToolCallStart {
            index: 0,
            id: "call_id-1_0".into(),
            name: "f".into(),
        },
        StreamEvent::ToolCallArgs {
            index: 0,
            arguments: "{\"a\":1}".into(),
        },
        StreamEvent::Usage(Usage::new(12, 7).with_cached(2)),
        StreamEvent::Finish(FinishReason::ToolCalls),
        StreamEvent::Done,
    ];
    for dialect in [Dialect::OpenAi, Dialect::Anthropic, Dialect::Gemini] {
        let mut encoder = StreamEncoder::new(dialect, true);
        let mut out = BytesMut::new();
        for e in &events {
            encoder.encode(e, &mut out);
        }
        let mut sse = tollgate::sse::Decoder::new();
        sse.push(&out);
        let mut decoder = StreamDecoder::new(dialect);
        let mut back: Vec<StreamEvent<'static>> = Vec::new();
        let mut text = String::new();
        let mut args = String::new();
        let mut usage = None;
        while let Some(event) = sse.finish() {
            decoder.decode(&event, &mut |e| match e {
                StreamEvent::Text(t) => text.push_str(&t),
                StreamEvent::ToolCallArgs { arguments, .. } => args.push_str(&arguments),
                StreamEvent::Usage(u) => usage = Some(u),
                StreamEvent::ToolCallStart { index, id, name } => {
                    back.push(StreamEvent::ToolCallStart {
                        index,
                        id: id.into_owned().into(),
                        name: name.into_owned().into(),
                    })
                }
                StreamEvent::Finish(f) => back.push(StreamEvent::Finish(f)),
                StreamEvent::Done => back.push(StreamEvent::Done),
                _ => {}
            });
        }
        assert_eq!(text, "Hello", "{dialect:?}");
        assert_eq!(args, "{\"a\":1}", "{dialect:?}");
        assert_eq!(usage, Some(Usage::new(12, 7).with_cached(2)), "{dialect:?}");
        assert_eq!(
            back,
            vec![
                StreamEvent::ToolCallStart {
                    index: 0,
                    id: "call_id-1_0".into(),
                    name: "f".into()
                },
                StreamEvent::Finish(FinishReason::ToolCalls),
                StreamEvent::Done,
            ],
            "{dialect:?}"
        );
    }
}
