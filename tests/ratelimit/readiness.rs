//! tower-test: readiness is delegated and only the service made ready is called.

use http::{Request, Response};
use tokio_test::{assert_pending, assert_ready_ok};
use tollgate::ratelimit::{Limits, RateLimitLayer};
use tollgate::request::LlmRequest;
use tollgate::Body;
use tower_test::mock;

use crate::{chat, header, HELLO};

#[tokio::test]
async fn decided_in_call_on_the_ready_service() {
    let layer = RateLimitLayer::new().global(Limits::new().requests_per_minute(1));
    let (mut svc, mut handle) = mock::spawn_layer::<Request<Body>, Response<Body>, _>(layer);
    handle.allow(0);
    assert_pending!(svc.poll_ready::<Request<Body>>());
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready::<Request<Body>>());
    let fut = tokio::spawn(svc.call(chat(HELLO)));
    let (_req, send) = handle.next_request().await.unwrap();
    send.send_response(Response::new(Body::from("ok")));
    let res = fut.await.unwrap().unwrap();
    assert_eq!(header(&res, "x-ratelimit-remaining-requests"), "0");

    // A refusal is a response from `call`, not a `Pending` readiness.
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready::<Request<Body>>());
    let res = svc.call(chat(HELLO)).await.unwrap();
    assert_eq!(res.status(), 429);
}

#[tokio::test]
async fn reading_the_body_moves_the_ready_service_into_the_future() {
    // A model limit with no parsed request: the body is read inside the future, so
    // the readied service must travel with it (the mock panics on a clone that was
    // never made ready).
    let layer = RateLimitLayer::new().model("mock/echo", Limits::new().tokens_per_minute(10_000));
    let (mut svc, mut handle) = mock::spawn_layer::<Request<Body>, Response<Body>, _>(layer);
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready::<Request<Body>>());
    let fut = tokio::spawn(svc.call(chat(HELLO)));
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(
        req.extensions().get::<LlmRequest>().unwrap().model(),
        "mock/echo",
        "parsed once and passed on"
    );
    send.send_response(Response::new(Body::from("ok")));
    let res = fut.await.unwrap().unwrap();
    assert_eq!(header(&res, "x-ratelimit-limit-tokens"), "10000");
}
