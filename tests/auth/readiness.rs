//! tower-test: the layer never calls a clone that was not made ready.

use http::{Request, Response};
use tokio_test::{assert_pending, assert_ready_ok};
use tollgate::auth::{AuthLayer, KeyAuthenticator, KeySecret};
use tollgate::Body;
use tower_test::mock;

use super::chat;

#[tokio::test(flavor = "current_thread")]
async fn calls_only_the_service_it_made_ready() {
    let master = KeySecret::from_plaintext("sk-master-readiness-test");
    let layer = AuthLayer::new(KeyAuthenticator::master_only(&master));
    let (mut svc, mut handle) = mock::spawn_layer::<Request<Body>, Response<Body>, _>(layer);

    handle.allow(0);
    assert_pending!(svc.poll_ready::<Request<Body>>());
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready::<Request<Body>>());
    let fut = tokio::spawn(svc.call(chat(
        "/v1/chat/completions",
        "m",
        &[("authorization", "Bearer sk-master-readiness-test")],
    )));
    // The mock panics if the future calls a clone that was never made ready.
    let (req, send) = handle.next_request().await.unwrap();
    assert!(req
        .extensions()
        .get::<tollgate::auth::Principal>()
        .is_some());
    send.send_response(Response::new(Body::from("ok")));
    assert_eq!(fut.await.unwrap().unwrap().status(), 200);

    // A refusal answers without calling the inner service (nor needing a permit).
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready::<Request<Body>>());
    let res = svc
        .call(chat(
            "/v1/chat/completions",
            "m",
            &[("authorization", "Bearer wrong-key-x")],
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}
