//! `ParseLayer` and `ObserveLayer` as tower services: readiness, forwarding, errors.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio_test::{assert_pending, assert_ready_ok};
use tollgate::outcome::{End, ObserveLayer, Outcome};
use tollgate::request::{LlmRequest, ParseLayer};
use tollgate::Body;
use tower::ServiceExt;
use tower_test::mock;

const CHAT: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"extra":1}"#;

fn chat(body: &'static str) -> Request<Body> {
    Request::post("/v1/chat/completions")
        .body(Body::from(body))
        .unwrap()
}

async fn json(res: Response<Body>) -> Value {
    serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

#[tokio::test]
async fn parse_delegates_readiness_and_calls_the_ready_service() {
    let (mut svc, mut handle) =
        mock::spawn_layer::<Request<Body>, Response<Body>, _>(ParseLayer::new());
    handle.allow(0);
    assert_pending!(svc.poll_ready::<Request<Body>>());
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready::<Request<Body>>());
    // The future runs on its own task; the mock panics if a clone that was never made
    // ready is called (anti-pattern A1).
    let fut = tokio::spawn(svc.call(chat(CHAT)));
    let (req, send) = handle.next_request().await.unwrap();
    let parsed = req
        .extensions()
        .get::<LlmRequest>()
        .expect("parsed once, stored");
    assert_eq!(parsed.model(), "m");
    let body = req.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        body,
        Bytes::from_static(CHAT.as_bytes()),
        "the same bytes go on"
    );
    send.send_response(Response::new(Body::from("ok")));
    let res = fut.await.unwrap().unwrap();
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ok");
}

#[tokio::test]
async fn parse_answers_bad_input_without_calling_inner() {
    let (mut svc, mut handle) =
        mock::spawn_layer::<Request<Body>, Response<Body>, _>(ParseLayer::new().limit(64));
    let cases: [(&str, &'static str, u16); 4] = [
        ("/v1/chat/completions", "{oops", 400),
        (
            "/v1/chat/completions",
            r#"{"model":"m","messages":{}}"#,
            400,
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"m","messages":[],"pad":"0123456789012345678901234567890123456789"}"#,
            413,
        ),
        ("/v1/messages", "[]", 400),
    ];
    for (path, body, status) in cases {
        handle.allow(1);
        assert_ready_ok!(svc.poll_ready::<Request<Body>>());
        let req = Request::post(path).body(Body::from(body)).unwrap();
        let res = svc.call(req).await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{body}");
        let v = json(res).await;
        if path.ends_with("/messages") {
            assert_eq!(v["type"], "error", "Anthropic shape for /v1/messages");
        } else {
            assert!(v["error"]["message"].is_string(), "OpenAI shape");
        }
    }
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(1), handle.next_request())
            .await
            .is_err(),
        "inner never called"
    );
}

#[tokio::test]
async fn observe_delegates_readiness_and_attaches_an_outcome() {
    let (mut svc, mut handle) =
        mock::spawn_layer::<Request<Body>, Response<Body>, _>(ObserveLayer::new());
    handle.allow(0);
    assert_pending!(svc.poll_ready::<Request<Body>>());
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready::<Request<Body>>());
    let fut = tokio::spawn(svc.call(chat(CHAT)));
    let (_req, send) = handle.next_request().await.unwrap();
    let mut res = Response::new(Body::from(
        r#"{"usage":{"prompt_tokens":4,"completion_tokens":2}}"#,
    ));
    res.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    send.send_response(res);
    let res = fut.await.unwrap().unwrap();
    let outcome = res.extensions().get::<Outcome>().cloned().unwrap();
    res.into_body().collect().await.unwrap();
    let report = outcome.resolved().await;
    assert_eq!(report.end, End::Complete);
    assert_eq!(report.usage.unwrap().prompt_tokens, 4);
}

#[tokio::test]
async fn layers_compose_in_either_order() {
    let answer = || async {
        let mut res = Response::new(Body::from(
            r#"{"usage":{"prompt_tokens":1,"completion_tokens":1}}"#,
        ));
        res.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        Ok::<_, std::convert::Infallible>(res)
    };
    let a = tower::ServiceBuilder::new()
        .layer(ParseLayer::new())
        .layer(ObserveLayer::new())
        .service_fn(move |_: Request<Body>| answer());
    let b = tower::ServiceBuilder::new()
        .layer(ObserveLayer::new())
        .layer(ParseLayer::new())
        .service_fn(move |_: Request<Body>| answer());
    for res in [
        a.oneshot(chat(CHAT)).await.unwrap(),
        b.oneshot(chat(CHAT)).await.unwrap(),
    ] {
        let outcome = res
            .extensions()
            .get::<Outcome>()
            .cloned()
            .expect("observed in any order");
        res.into_body().collect().await.unwrap();
        assert_eq!(outcome.resolved().await.usage.unwrap().completion_tokens, 1);
    }
}
