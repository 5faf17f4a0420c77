use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::Response;
use http_body::{Body as _, Frame};
use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;

use super::*;
use crate::{Body, BoxError, Endpoint};

/// A body fed by the test, frame by frame.
struct ChanBody(mpsc::UnboundedReceiver<Result<Frame<Bytes>, BoxError>>);

impl http_body::Body for ChanBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx)
    }
}

type Tx = mpsc::UnboundedSender<Result<Frame<Bytes>, BoxError>>;

fn sse_response(hide: bool) -> (Tx, Response<Body>, Outcome) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut res = Response::new(ChanBody(rx));
    res.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    let options = ObserveOptions::new(Instant::now())
        .endpoint(Some(Endpoint::ChatCompletions))
        .hide_usage_chunk(hide);
    let res = observe(res, options);
    let outcome = res.extensions().get::<Outcome>().cloned().unwrap();
    (tx, res, outcome)
}

fn send(tx: &Tx, s: &str) {
    tx.send(Ok(Frame::data(Bytes::copy_from_slice(s.as_bytes()))))
        .unwrap();
}

const CHUNK: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"abcd\"}}],\"usage\":null}\n\n";
const FINISH: &str =
    "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n";
const USAGE: &str = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":7,\"prompt_tokens_details\":{\"cached_tokens\":3}}}\n\n";
const DONE: &str = "data: [DONE]\n\n";

async fn next_data(body: &mut Body) -> Bytes {
    body.frame().await.unwrap().unwrap().into_data().unwrap()
}

#[tokio::test]
async fn stream_complete_on_done_even_if_client_closes_before_the_end() {
    let (tx, res, outcome) = sse_response(false);
    let mut body = res.into_body();
    send(&tx, CHUNK);
    assert_eq!(next_data(&mut body).await, CHUNK.as_bytes());
    assert!(outcome.report().is_none(), "not resolved mid-stream");
    send(&tx, &format!("{FINISH}{USAGE}{DONE}"));
    next_data(&mut body).await;
    // Resolved on the terminal event, before the body's end.
    let report = outcome.report().expect("resolved at [DONE]");
    drop(body);
    assert_eq!(report.end, End::Complete);
    assert_eq!(report.usage, Some(Usage::new(11, 7).with_cached(3)));
    assert_eq!(report.output_chars, 4);
    assert_eq!(report.finish_reason.as_deref(), Some("stop"));
    assert!(report.stream && report.ttfb.is_some());
    assert_eq!(
        report.bytes as usize,
        CHUNK.len() + FINISH.len() + USAGE.len() + DONE.len()
    );
}

#[tokio::test]
async fn client_gone_mid_stream_keeps_usage_seen_so_far() {
    let (tx, res, outcome) = sse_response(false);
    let mut body = res.into_body();
    send(&tx, CHUNK);
    send(&tx, CHUNK);
    next_data(&mut body).await;
    next_data(&mut body).await;
    drop(body);
    let report = outcome.resolved().await;
    assert_eq!(report.end, End::ClientGone);
    assert_eq!(report.usage, None);
    assert_eq!(report.output_chars, 8);
    assert_eq!(report.completion_tokens(), 2, "estimated from 8 chars");
    assert!(!report.usage_is_exact());
    drop(tx);
}

#[tokio::test]
async fn upstream_error_mid_stream() {
    let (tx, res, outcome) = sse_response(false);
    let mut body = res.into_body();
    send(&tx, CHUNK);
    tx.send(Err("connection reset".into())).unwrap();
    next_data(&mut body).await;
    assert!(body.frame().await.unwrap().is_err());
    let report = outcome.report().expect("resolved on the error");
    assert_eq!(report.end, End::UpstreamError);
    assert_eq!(report.output_chars, 4);
}

#[tokio::test]
async fn stream_that_ends_without_done_is_an_upstream_error() {
    let (tx, res, outcome) = sse_response(false);
    send(&tx, CHUNK);
    drop(tx);
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(bytes, CHUNK.as_bytes());
    assert_eq!(outcome.report().unwrap().end, End::UpstreamError);
}

#[tokio::test]
async fn json_body_resolves_on_is_end_stream_without_a_final_poll() {
    let json = r#"{"choices":[{"message":{"content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":1}}"#;
    let mut res = Response::new(Full::new(Bytes::from(json)));
    res.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    let res = observe(res, ObserveOptions::new(Instant::now()));
    let outcome = res.extensions().get::<Outcome>().cloned().unwrap();
    let mut body = res.into_body();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), json.as_bytes());
    // Full reports is_end_stream() after its only frame: hyper stops polling there.
    assert!(body.is_end_stream());
    let report = outcome.report().expect("resolved without polling None");
    drop(body);
    assert_eq!(report.end, End::Complete);
    assert_eq!(report.usage, Some(Usage::new(2, 1)));
    assert_eq!(report.output_chars, 5);
    assert!(!report.stream);
}

#[tokio::test]
async fn empty_body_resolves_at_once() {
    let res = observe(
        Response::new(Body::empty()),
        ObserveOptions::new(Instant::now()),
    );
    let outcome = res.extensions().get::<Outcome>().cloned().unwrap();
    drop(res);
    assert_eq!(outcome.report().unwrap().end, End::Complete);
}

#[tokio::test]
async fn hidden_usage_chunk_is_recorded_but_not_forwarded_even_when_split() {
    let (tx, res, outcome) = sse_response(true);
    let stream = format!("{CHUNK}{FINISH}{USAGE}{DONE}");
    // Split at awkward places: inside the usage event and between CR and LF-free ends.
    for piece in [
        &stream[..10],
        &stream[10..CHUNK.len() + FINISH.len() + 20],
        &stream[CHUNK.len() + FINISH.len() + 20..],
    ] {
        send(&tx, piece);
    }
    drop(tx);
    let forwarded = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(forwarded, format!("{CHUNK}{FINISH}{DONE}").as_bytes());
    let report = outcome.report().unwrap();
    assert_eq!(report.end, End::Complete);
    assert_eq!(report.usage, Some(Usage::new(11, 7).with_cached(3)));
    assert_eq!(report.bytes as usize, forwarded.len());
}

#[tokio::test]
async fn held_back_tail_is_flushed_at_the_end() {
    let (tx, res, outcome) = sse_response(true);
    send(&tx, CHUNK);
    send(&tx, "data: [DONE]"); // no blank line: only complete at EOF
    drop(tx);
    let forwarded = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(forwarded, format!("{CHUNK}data: [DONE]").as_bytes());
    assert_eq!(outcome.report().unwrap().end, End::Complete);
}

#[tokio::test]
async fn resolves_exactly_once_and_late_subscribers_still_hear() {
    let (tx, res, outcome) = sse_response(false);
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    outcome.on_resolve(move |_| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    let mut body = res.into_body();
    send(&tx, DONE);
    next_data(&mut body).await; // resolves (terminal event)
    tx.send(Err("late error".into())).unwrap();
    let _ = body.frame().await; // would resolve again
    drop(body); // and again
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let c = calls.clone();
    outcome.on_resolve(move |r| {
        assert_eq!(r.end, End::Complete);
        c.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "runs at once when already resolved"
    );
}

#[tokio::test]
async fn observing_twice_shares_one_outcome() {
    let (_tx, res, outcome) = sse_response(false);
    let res = observe(res, ObserveOptions::new(Instant::now()));
    let again = res.extensions().get::<Outcome>().unwrap();
    assert!(Arc::ptr_eq(&again.shared, &outcome.shared));
}

/// Waiters that started before the resolution wake up, callbacks run once each in the
/// order they were given (the first one kept inline, the others in a list), and a
/// callback given after the resolution runs at once.
#[tokio::test]
async fn waiters_wake_and_callbacks_run_in_order() {
    let (tx, res, outcome) = sse_response(false);
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    for i in 0..3 {
        let order = order.clone();
        outcome.on_resolve(move |_| order.lock().unwrap().push(i));
    }
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let outcome = outcome.clone();
            tokio::spawn(async move { outcome.resolved().await.end })
        })
        .collect();
    tokio::task::yield_now().await; // the waiters are parked
    assert!(outcome.report().is_none());
    drop(res.into_body());
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap(), End::ClientGone);
    }
    let late = order.clone();
    outcome.on_resolve(move |_| late.lock().unwrap().push(3));
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3]);
    drop(tx);
}
