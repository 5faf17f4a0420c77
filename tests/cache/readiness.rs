//! tower-test: readiness is delegated and only the service made ready is called.

use http::{Request, Response};
use tokio_test::{assert_pending, assert_ready_ok};
use tollgate::cache::CacheLayer;
use tollgate::Body;
use tower_test::mock;

use crate::{bytes, cache_status, chat, DET};

#[tokio::test]
async fn delegates_readiness_and_calls_the_ready_service() {
    let (mut svc, mut handle) =
        mock::spawn_layer::<Request<Body>, Response<Body>, _>(CacheLayer::new());
    handle.allow(0);
    assert_pending!(svc.poll_ready::<Request<Body>>());
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready::<Request<Body>>());
    // The body is read inside the future: the readied service travels with it (the
    // mock panics when a clone that was never made ready is called).
    let fut = tokio::spawn(svc.call(chat(DET)));
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req.uri().path(), "/v1/chat/completions");
    let mut res = Response::new(Body::from(r#"{"id":"x","choices":[]}"#));
    res.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    send.send_response(res);
    let res = fut.await.unwrap().unwrap();
    assert_eq!(cache_status(&res), "miss");
    bytes(res).await;

    // A hit is answered without calling the inner service.
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready::<Request<Body>>());
    let res = svc.call(chat(DET)).await.unwrap();
    assert_eq!(cache_status(&res), "hit");
    assert_eq!(bytes(res).await.as_ref(), br#"{"id":"x","choices":[]}"#);
}
