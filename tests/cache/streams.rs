//! Streams: filled on a miss while streaming, replayed well-formed on a hit.

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use tollgate::sse::Decoder;
use tollgate::Body;
use tower::ServiceExt;

use crate::{cache_status, chat, send, setup, with_header, DET, DET_STREAM};

/// The events of a complete stream body.
fn events(body: &Bytes) -> Vec<tollgate::sse::Event> {
    let mut decoder = Decoder::new();
    decoder.push(body);
    let mut out = Vec::new();
    while let Some(event) = decoder.next_event() {
        out.push(event);
    }
    assert!(decoder.finish().is_none(), "a partial event is left over");
    out
}

/// The text of an OpenAI stream, and whether it carried a usage chunk.
fn openai_text(body: &Bytes) -> (String, bool) {
    let events = events(body);
    assert_eq!(events.last().unwrap().data(), Some("[DONE]"));
    let mut text = String::new();
    let mut usage = false;
    for event in &events[..events.len() - 1] {
        let chunk: serde_json::Value = serde_json::from_str(event.data().unwrap()).unwrap();
        usage |= chunk["usage"].is_object();
        if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
            text.push_str(piece);
        }
    }
    (text, usage)
}

#[tokio::test]
async fn a_stream_is_forwarded_as_it_arrives_and_replayed_well_formed() {
    let (svc, mock) = setup();
    let held = with_header(chat(DET_STREAM), "x-mock-hold-last", "true");
    let res = svc.clone().oneshot(held).await.unwrap();
    assert_eq!(cache_status(&res), "miss");
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.into_body();
    // The first events arrive while the upstream still holds the last one.
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(first.starts_with(b"data: "));
    mock.release_held(1);
    let rest = body.collect().await.unwrap().to_bytes();
    let original = Bytes::from([first, rest].concat());

    let (status, code, replay) = send(&svc, chat(DET_STREAM)).await;
    assert_eq!((status.as_str(), code), ("hit", 200));
    assert_eq!(replay, original);
    let (text, usage) = openai_text(&replay);
    assert_eq!(text, "Mock answer to: hello there");
    assert!(!usage, "the client did not ask for usage");
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test]
async fn usage_in_the_replay_exactly_when_asked() {
    let (svc, mock) = setup();
    let with_usage = DET_STREAM.replace(
        "\"stream\":true",
        "\"stream\":true,\"stream_options\":{\"include_usage\":true}",
    );
    send(&svc, chat(DET_STREAM)).await;
    assert_eq!(send(&svc, chat(&with_usage)).await.0, "miss");
    let (status, _, replay) = send(&svc, chat(&with_usage)).await;
    assert_eq!(status, "hit");
    assert!(
        openai_text(&replay).1,
        "asked for usage: the usage chunk is replayed"
    );
    let (_, _, replay) = send(&svc, chat(DET_STREAM)).await;
    assert!(!openai_text(&replay).1);
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test]
async fn stream_and_non_stream_are_separate_entries() {
    let (svc, mock) = setup();
    send(&svc, chat(DET)).await;
    let (status, _, body) = send(&svc, chat(DET_STREAM)).await;
    assert_eq!(
        status, "miss",
        "a JSON answer never serves a stream request"
    );
    assert!(body.starts_with(b"data: "));
    assert_eq!(send(&svc, chat(DET)).await.0, "hit");
    assert_eq!(send(&svc, chat(DET_STREAM)).await.0, "hit");
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test]
async fn anthropic_streams_replay_with_their_event_names() {
    let (svc, mock) = setup();
    let request = || {
        Request::post("/v1/messages")
            .header("anthropic-version", "2023-06-01")
            .body(Body::from(
                r#"{"model":"claude-x","max_tokens":64,"temperature":0,"stream":true,"messages":[{"role":"user","content":"hello there"}]}"#,
            ))
            .unwrap()
    };
    let (status, _, first) = send(&svc, request()).await;
    assert_eq!(status, "miss");
    let (status, _, replay) = send(&svc, request()).await;
    assert_eq!(status, "hit");
    assert_eq!(replay, first);
    let events = events(&replay);
    assert!(
        events.iter().all(|e| e.event().is_some()),
        "every event keeps its name"
    );
    assert_eq!(events.first().unwrap().event(), Some("message_start"));
    assert_eq!(events.last().unwrap().event(), Some("message_stop"));
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test]
async fn cut_and_malformed_streams_are_never_stored() {
    let (svc, mock) = setup();
    let cut = with_header(chat(DET_STREAM), "x-mock-reset-after", "2");
    let res = svc.clone().oneshot(cut).await.unwrap();
    assert!(res.into_body().collect().await.is_err());
    let malformed = with_header(chat(DET_STREAM), "x-mock-malformed", "true");
    let (status, code, _) = send(&svc, malformed).await;
    assert_eq!((status.as_str(), code), ("miss", 200));
    assert_eq!(send(&svc, chat(DET_STREAM)).await.0, "miss");
    assert_eq!(mock.request_count(), 3);
}

#[tokio::test]
async fn a_client_gone_before_the_end_stores_nothing() {
    let (svc, mock) = setup();
    let held = with_header(chat(DET_STREAM), "x-mock-hold-last", "true");
    let res = svc.clone().oneshot(held).await.unwrap();
    let mut body = res.into_body();
    body.frame().await.unwrap().unwrap();
    drop(body);
    mock.wait_for_cancelled(1).await;
    assert_eq!(send(&svc, chat(DET_STREAM)).await.0, "miss");
}

#[tokio::test]
async fn a_client_gone_after_the_terminal_event_still_stores() {
    // The openai SDK closes the connection as soon as it reads `[DONE]`.
    let (svc, _mock) = setup();
    let res = svc.clone().oneshot(chat(DET_STREAM)).await.unwrap();
    let mut body = res.into_body();
    let mut seen = Vec::new();
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        seen.extend_from_slice(&data);
        if seen.ends_with(b"data: [DONE]\n\n") {
            break;
        }
    }
    drop(body);
    assert_eq!(send(&svc, chat(DET_STREAM)).await.0, "hit");
}
