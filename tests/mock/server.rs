//! The mock over real loopback HTTP, through hyper's client.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tollgate::testing::{MockProvider, MockServer};

use super::{chunks, decode};

/// Generous: only a guard against hanging, never a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(20);

async fn guard<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(HANG_GUARD, future)
        .await
        .expect("hung past the guard")
}

fn client(http2: bool) -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(http2)
        .build_http()
}

fn request(
    server: &MockServer,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> Request<Full<Bytes>> {
    let mut req = Request::post(format!("{}/{path}", server.base_url()))
        .header("content-type", "application/json");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

fn stream_body(text: &str) -> Value {
    json!({ "model": "mock/echo", "stream": true, "messages": [{ "role": "user", "content": text }] })
}

async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Response<Incoming> {
    guard(client.request(req)).await.unwrap()
}

/// Reads frames until `n` complete events arrived; returns the bytes read.
async fn read_events(body: &mut Incoming, n: usize) -> Vec<u8> {
    let mut data = Vec::new();
    while decode(&data).len() < n {
        let frame = guard(body.frame())
            .await
            .expect("body ended early")
            .unwrap();
        data.extend_from_slice(&frame.into_data().unwrap());
    }
    data
}

#[tokio::test]
async fn serves_http1_and_http2() {
    let server = MockServer::start().await.unwrap();
    let addr = server.addr();
    assert!(addr.ip().is_loopback());
    assert_eq!(
        server.base_url(),
        format!("http://127.0.0.1:{}/v1", addr.port())
    );

    for http2 in [false, true] {
        let client = client(http2);
        let body =
            json!({ "model": "m", "messages": [{ "role": "user", "content": "over the wire" }] });
        let res = send(&client, request(&server, "chat/completions", &body, &[])).await;
        assert_eq!(res.status(), 200);
        let expected = if http2 {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        assert_eq!(res.version(), expected);
        let bytes = guard(res.into_body().collect()).await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "Mock answer to: over the wire"
        );

        let res = send(
            &client,
            request(&server, "chat/completions", &stream_body("s"), &[]),
        )
        .await;
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        let bytes = guard(res.into_body().collect()).await.unwrap().to_bytes();
        assert_eq!(chunks(&decode(&bytes)).len(), 10);
    }
    let provider = server.provider();
    assert_eq!(provider.request_count(), 4);
    assert_eq!(provider.requests()[0].uri.path(), "/v1/chat/completions");
    assert_eq!(provider.streams_completed(), 2);
}

#[tokio::test]
async fn reset_after_breaks_the_connection_mid_body() {
    let server = MockServer::start().await.unwrap();
    for http2 in [false, true] {
        let headers = [("x-mock-reset-after", "2")];
        let req = request(&server, "chat/completions", &stream_body("x"), &headers);
        let res = send(&client(http2), req).await;
        assert_eq!(res.status(), 200);
        let mut body = res.into_body();
        let mut data = Vec::new();
        let failed = loop {
            match guard(body.frame()).await {
                Some(Ok(frame)) => data.extend_from_slice(&frame.into_data().unwrap()),
                Some(Err(_)) => break true,
                None => break false,
            }
        };
        assert!(
            failed,
            "http2: {http2}: the client saw a clean end instead of an error"
        );
        // The role chunk and two content chunks arrived before the reset.
        assert_eq!(decode(&data).len(), 3, "http2: {http2}");
    }
}

#[tokio::test]
async fn held_stream_has_flushed_the_earlier_chunks() {
    let server = MockServer::start().await.unwrap();
    let headers = [("x-mock-hold-last", "true"), ("x-mock-chunks", "4")];
    let res = send(
        &client(false),
        request(&server, "chat/completions", &stream_body("held"), &headers),
    )
    .await;
    let mut body = res.into_body();
    // Role chunk and 3 of the 4 content chunks reach the client while the last is held.
    let mut data = read_events(&mut body, 4).await;
    assert_eq!(decode(&data).len(), 4);
    server.provider().release_held(1);
    data.extend_from_slice(&guard(body.collect()).await.unwrap().to_bytes());
    let chunks = chunks(&decode(&data));
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Mock answer to: held");
    assert_eq!(server.provider().streams_completed(), 1);
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_the_stream() {
    let provider = MockProvider::new();
    let server = MockServer::start_with(provider.clone()).await.unwrap();
    for (i, http2) in [false, true].into_iter().enumerate() {
        let headers = [("x-mock-hold-last", "true")];
        let req = request(&server, "chat/completions", &stream_body("bye"), &headers);
        let res = send(&client(http2), req).await;
        let mut body = res.into_body();
        read_events(&mut body, 1).await;
        drop(body);
        guard(provider.wait_for_cancelled(i as u64 + 1)).await;
    }
    assert_eq!(provider.streams_cancelled(), 2);
    assert_eq!(provider.streams_completed(), 0);
}

#[tokio::test]
async fn dropping_the_server_closes_open_connections() {
    let server = MockServer::start().await.unwrap();
    let provider = server.provider().clone();
    let headers = [("x-mock-hold-last", "true")];
    let res = send(
        &client(false),
        request(&server, "chat/completions", &stream_body("x"), &headers),
    )
    .await;
    let mut body = res.into_body();
    read_events(&mut body, 1).await;
    let addr = server.addr();
    drop(server);
    let rest = guard(body.collect()).await;
    assert!(rest.is_err(), "the open stream outlived the server");
    guard(provider.wait_for_cancelled(1)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
