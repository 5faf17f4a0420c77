//! `poll_ready` discipline with tower-test's mock, whose clones start not ready: a layer
//! calling a clone it did not make ready panics here.

use http::{Request, Response, StatusCode};
use tollgate::failover::FailoverLayer;
use tollgate::routing::{Channel, Priority, Router, RoutingLayer};
use tollgate::upstream::Target;
use tollgate::Body;
use tower::ServiceBuilder;
use tower_test::mock;

use super::{chat, target};

#[tokio::test]
async fn routing_and_failover_call_only_ready_services() {
    let router = Router::builder()
        .channel(Channel::builder("a", target("a")).model("m").priority(0))
        .channel(Channel::builder("b", target("b")).model("m").priority(1))
        .strategy(Priority::with_seed(1))
        .build()
        .unwrap();
    let layer = ServiceBuilder::new()
        .layer(RoutingLayer::new(router))
        .layer(FailoverLayer::new())
        .into_inner();
    let (mut svc, mut handle) = mock::spawn_layer::<Request<Body>, Response<Body>, _>(layer);

    tokio_test::assert_ready_ok!(svc.poll_ready::<Request<Body>>());
    let call = tokio::spawn(svc.call(chat("m", false)));

    // First attempt: `a`, answered 503; the retry goes to `b` on a service made ready.
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req.extensions().get::<Target>().unwrap().name(), "a");
    let mut failed = Response::new(Body::empty());
    *failed.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    send.send_response(failed);
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req.extensions().get::<Target>().unwrap().name(), "b");
    send.send_response(Response::new(Body::from("{}")));

    let res = call.await.unwrap().unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-tollgate-attempts"], "2");
}

#[tokio::test]
async fn backpressure_is_passed_through() {
    let router = Router::builder()
        .channel(Channel::builder("a", target("a")).model("m"))
        .build()
        .unwrap();
    let layer = ServiceBuilder::new()
        .layer(RoutingLayer::new(router))
        .layer(FailoverLayer::new())
        .into_inner();
    let (mut svc, mut handle) = mock::spawn_layer::<Request<Body>, Response<Body>, _>(layer);
    handle.allow(0);
    tokio_test::assert_pending!(svc.poll_ready::<Request<Body>>());
    handle.allow(1);
    assert!(svc.is_woken());
    tokio_test::assert_ready_ok!(svc.poll_ready::<Request<Body>>());
    // The readied service is the one called (a clone left behind is not ready).
    let call = tokio::spawn(svc.call(chat("m", false)));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(Response::new(Body::from("{}")));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
}
