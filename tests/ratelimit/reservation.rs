//! The `Reservation` extension seen by the service after the layer.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use tollgate::ratelimit::{Limits, RateLimitLayer, Reservation, Scope};
use tollgate::request::LlmRequest;
use tollgate::{Body, Endpoint};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

use crate::{chat, from_ip};

const BODY: &str =
    r#"{"model":"mock/echo","messages":[{"role":"user","content":"count me"}],"max_tokens":64}"#;
const ANSWER: &str = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1}}"#;

/// A stack whose inner service records the `Reservation` it was called with.
fn stack(
    layer: RateLimitLayer,
) -> (
    impl Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    Arc<Mutex<Vec<Option<Reservation>>>>,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(move |req: Request<Body>| {
            record
                .lock()
                .unwrap()
                .push(req.extensions().get::<Reservation>().cloned());
            async move {
                let mut res = Response::new(Body::from(ANSWER));
                res.headers_mut()
                    .insert("content-type", "application/json".parse().unwrap());
                Ok::<_, Infallible>(res)
            }
        }));
    (svc, seen)
}

async fn send<S>(svc: &mut S, req: Request<Body>) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    Response::from_parts(parts, Body::from(bytes))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn admitted_requests_carry_what_was_reserved() {
    let input = LlmRequest::parse(
        Endpoint::ChatCompletions,
        Bytes::from_static(BODY.as_bytes()),
    )
    .unwrap()
    .estimated_input_tokens();
    let (mut svc, seen) = stack(
        RateLimitLayer::new()
            .per_client_ip(Limits::new().requests_per_minute(10).max_parallel(2))
            .model("mock/echo", Limits::new().tokens_per_minute(10_000))
            .global(Limits::new().requests_per_minute(100))
            .output_reserve(1000),
    );
    let res = send(&mut svc, from_ip(chat(BODY), 7)).await;
    assert_eq!(res.status(), 200);
    let r = seen.lock().unwrap()[0].clone().expect("a reservation");
    assert_eq!(
        r.scopes(),
        [
            Scope::client_ip([10, 0, 0, 7].into()),
            Scope::Model("mock/echo".into()),
            Scope::Global,
        ]
    );
    assert_eq!(r.input_tokens(), input);
    assert_eq!(r.tokens(), input + 64, "input estimate + max_tokens");
    assert!(r.concurrency(), "the client scope has max_parallel");
    assert!(r.counted());

    // No token limit: nothing reserved for tokens, no concurrency slot.
    let (mut svc, seen) =
        stack(RateLimitLayer::new().global(Limits::new().requests_per_minute(100)));
    send(&mut svc, chat(BODY)).await;
    let r = seen.lock().unwrap()[0].clone().expect("a reservation");
    assert_eq!(r.scopes(), [Scope::Global]);
    assert_eq!((r.tokens(), r.input_tokens()), (0, 0));
    assert!(!r.concurrency());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn unlimited_requests_carry_none_and_refused_ones_are_not_called() {
    let (mut svc, seen) = stack(RateLimitLayer::new());
    send(&mut svc, from_ip(chat(BODY), 1)).await;
    assert_eq!(*seen.lock().unwrap(), [None]);

    let (mut svc, seen) =
        stack(RateLimitLayer::new().per_client_ip(Limits::new().requests_per_minute(1)));
    assert_eq!(send(&mut svc, from_ip(chat(BODY), 1)).await.status(), 200);
    assert_eq!(send(&mut svc, from_ip(chat(BODY), 1)).await.status(), 429);
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the refused request never reached it"
    );
}
