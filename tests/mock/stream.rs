//! Streamed chat completions: chunking, usage, tool calls, holds, delays, drops.

use std::time::Duration;

use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::time::Instant;
use tollgate::testing::MockProvider;

use super::{call, chat, chunks, decode, events, post};

fn stream(text: &str) -> Value {
    let mut body = chat(text);
    body["stream"] = json!(true);
    body
}

/// The concatenated `delta.content` of the chunks.
fn content(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

#[tokio::test]
async fn streams_eight_chunks_then_done() {
    let mock = MockProvider::new();
    let res = call(
        &mock,
        post("chat/completions", &stream("tell me a story"), &[]),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let chunks = chunks(&events(res).await);
    // Role, 8 content chunks, finish; no usage chunk.
    assert_eq!(chunks.len(), 10);
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({ "role": "assistant", "content": "" })
    );
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "mock/echo");
        assert!(chunk.get("usage").is_none(), "{chunk}");
    }
    for chunk in &chunks[1..9] {
        assert!(chunk["choices"][0]["finish_reason"].is_null());
        assert!(!chunk["choices"][0]["delta"]["content"]
            .as_str()
            .unwrap()
            .is_empty());
    }
    assert_eq!(content(&chunks), "Mock answer to: tell me a story");
    assert_eq!(chunks[9]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[9]["choices"][0]["finish_reason"], "stop");
    assert_eq!(mock.streams_completed(), 1);
    assert_eq!(mock.streams_cancelled(), 0);
}

#[tokio::test]
async fn include_usage_adds_a_usage_chunk() {
    let mock = MockProvider::new();
    let mut body = stream("two words");
    body["stream_options"] = json!({ "include_usage": true });
    let req = post("chat/completions", &body, &[("x-mock-cached-tokens", "1")]);
    let chunks = chunks(&events(call(&mock, req).await).await);
    assert_eq!(chunks.len(), 11);
    for chunk in &chunks[..10] {
        assert!(
            chunk["usage"].is_null() && chunk.get("usage").is_some(),
            "{chunk}"
        );
    }
    let last = &chunks[10];
    assert_eq!(last["choices"], json!([]));
    assert_eq!(
        last["usage"],
        json!({
            "prompt_tokens": 2,
            "completion_tokens": 5,
            "total_tokens": 7,
            "prompt_tokens_details": { "cached_tokens": 1 }
        })
    );
}

#[tokio::test]
async fn chunk_count_is_scripted_even_past_the_text_length() {
    let mock = MockProvider::new();
    for n in [1usize, 3, 100] {
        let n_header = n.to_string();
        let req = post(
            "chat/completions",
            &stream("hi"),
            &[("x-mock-chunks", &n_header)],
        );
        let chunks = chunks(&events(call(&mock, req).await).await);
        assert_eq!(chunks.len(), n + 2, "x-mock-chunks: {n}");
        assert_eq!(content(&chunks), "Mock answer to: hi");
    }
}

#[tokio::test]
async fn streams_a_tool_call() {
    let mock = MockProvider::new();
    let mut body = stream("find \"it\"");
    body["tools"] = json!([{ "type": "function", "function": { "name": "search" } }]);
    body["stream_options"] = json!({ "include_usage": false });
    let req = post("chat/completions", &body, &[("x-mock-chunks", "4")]);
    let chunks = chunks(&events(call(&mock, req).await).await);
    assert_eq!(chunks.len(), 6);
    let head = &chunks[0]["choices"][0]["delta"];
    assert_eq!(head["role"], "assistant");
    let call = &head["tool_calls"][0];
    assert_eq!(call["index"], 0);
    assert_eq!(call["id"], "call_mock_1");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "search");
    assert_eq!(call["function"]["arguments"], "");
    let arguments: String = chunks[1..5]
        .iter()
        .map(|c| {
            let call = &c["choices"][0]["delta"]["tool_calls"][0];
            assert_eq!(call["index"], 0);
            call["function"]["arguments"].as_str().unwrap().to_owned()
        })
        .collect();
    let arguments: Value = serde_json::from_str(&arguments).unwrap();
    assert_eq!(arguments, json!({ "echo": "find \"it\"" }));
    assert_eq!(chunks[5]["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn dropping_the_body_early_counts_a_cancellation() {
    let mock = MockProvider::new();
    let res = call(&mock, post("chat/completions", &stream("x"), &[])).await;
    let mut body = res.into_body();
    body.frame().await.unwrap().unwrap();
    assert_eq!(mock.streams_cancelled(), 0);
    drop(body);
    assert_eq!(mock.streams_cancelled(), 1);
    mock.wait_for_cancelled(1).await;
    assert_eq!(mock.streams_completed(), 0);
}

#[tokio::test]
async fn wait_for_cancelled_wakes_on_a_later_drop() {
    let mock = MockProvider::new();
    let res = call(&mock, post("chat/completions", &stream("x"), &[])).await;
    let waiter = tokio::spawn({
        let mock = mock.clone();
        async move { mock.wait_for_cancelled(1).await }
    });
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    drop(res);
    waiter.await.unwrap();
}

#[tokio::test]
async fn a_body_dropped_right_after_done_is_complete() {
    let mock = MockProvider::new();
    let res = call(
        &mock,
        post("chat/completions", &stream("x"), &[("x-mock-chunks", "1")]),
    )
    .await;
    let mut body = res.into_body();
    let mut seen = Vec::new();
    while !http_body::Body::is_end_stream(&body) {
        seen.extend_from_slice(&body.frame().await.unwrap().unwrap().into_data().unwrap());
    }
    assert!(decode(&seen).ends_with(&["[DONE]".to_owned()]));
    drop(body);
    assert_eq!((mock.streams_completed(), mock.streams_cancelled()), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn hold_last_waits_for_release() {
    let mock = MockProvider::new();
    let headers = [("x-mock-hold-last", "true"), ("x-mock-chunks", "3")];
    let res = call(
        &mock,
        post("chat/completions", &stream("hold on"), &headers),
    )
    .await;
    let mut body = res.into_body();
    let mut data = Vec::new();
    for _ in 0..3 {
        // The role chunk and the first two content chunks.
        data.extend_from_slice(&body.frame().await.unwrap().unwrap().into_data().unwrap());
    }
    assert_eq!(decode(&data).len(), 3);
    // The clock is paused: the timeout fires only because nothing else can progress.
    let held = tokio::time::timeout(Duration::from_secs(3600), body.frame()).await;
    assert!(held.is_err(), "the last chunk was not held");
    mock.release_held(1);
    let rest = body.collect().await.unwrap().to_bytes();
    data.extend_from_slice(&rest);
    let chunks = chunks(&decode(&data));
    assert_eq!(content(&chunks), "Mock answer to: hold on");
    assert_eq!(mock.streams_completed(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_permit_released_early_is_kept() {
    let mock = MockProvider::new();
    mock.release_held(1);
    let req = post(
        "chat/completions",
        &stream("x"),
        &[("x-mock-hold-last", "yes")],
    );
    let res = call(&mock, req).await;
    let done = tokio::time::timeout(Duration::from_secs(3600), events(res)).await;
    assert_eq!(done.unwrap().last().unwrap(), "[DONE]");
}

#[tokio::test(start_paused = true)]
async fn chunk_delay_spaces_the_events() {
    let mock = MockProvider::new();
    let headers = [("x-mock-chunk-delay-ms", "100"), ("x-mock-chunks", "2")];
    let res = call(&mock, post("chat/completions", &stream("x"), &headers)).await;
    let mut body = res.into_body();
    let start = Instant::now();
    let mut at = Vec::new();
    while let Some(frame) = body.frame().await {
        frame.unwrap();
        at.push(start.elapsed());
    }
    // Role, 2 content, finish, [DONE]: the first at once, then one every 100 ms.
    let expected: Vec<Duration> = (0..5).map(|i| Duration::from_millis(100 * i)).collect();
    assert_eq!(at, expected);
}

#[tokio::test]
async fn reset_after_fails_the_body_mid_stream() {
    let mock = MockProvider::new();
    let req = post(
        "chat/completions",
        &stream("x"),
        &[("x-mock-reset-after", "2")],
    );
    let mut body = call(&mock, req).await.into_body();
    let mut data = Vec::new();
    let err = loop {
        match body.frame().await {
            Some(Ok(frame)) => data.extend_from_slice(&frame.into_data().unwrap()),
            Some(Err(err)) => break err,
            None => panic!("the stream ended without the scripted error"),
        }
    };
    assert!(err.to_string().contains("x-mock-reset-after"), "{err}");
    // The role chunk and two content chunks came first.
    assert_eq!(decode(&data).len(), 3);
    assert!(body.frame().await.is_none());
    drop(body);
    assert_eq!((mock.streams_completed(), mock.streams_cancelled()), (0, 0));
}

#[tokio::test]
async fn malformed_stream_is_garbage_without_done() {
    let mock = MockProvider::new();
    let req = post(
        "chat/completions",
        &stream("x"),
        &[("x-mock-malformed", "true")],
    );
    let res = call(&mock, req).await;
    assert_eq!(res.status(), 200);
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&bytes[..], b"data: {this is not json\n\n");
    assert_eq!((mock.streams_completed(), mock.streams_cancelled()), (0, 0));
}
