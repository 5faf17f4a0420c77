//! The layer: credentials, dialects, model globs, IP allowlists, bad input.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::{Request, Response};
use tollgate::auth::{
    AuthLayer, IpNet, KeyAuthenticator, KeySecret, KeySpec, Keys, MemoryKeyStore, ModelPattern,
    Principal, Rejection,
};
use tollgate::extension::ClientAddr;
use tollgate::testing::MockProvider;
use tollgate::Body;
use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};

use super::{chat, json};

async fn keys_with(spec: KeySpec) -> (Keys, String) {
    let keys = Keys::new(MemoryKeyStore::new());
    let created = keys.create(spec).await.unwrap();
    (keys, created.secret.expose().to_owned())
}

/// A service that answers 200 with the principal's key id, counting calls.
fn echo_principal(
    calls: Arc<AtomicUsize>,
) -> impl tower::Service<
    Request<Body>,
    Response = Response<Body>,
    Error = BoxError,
    Future = impl Send,
> + Clone {
    service_fn(move |req: Request<Body>| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let who = req
                .extensions()
                .get::<Principal>()
                .map(|p| p.key_id.to_string());
            Ok::<_, BoxError>(Response::new(Body::from(who.unwrap_or_default())))
        }
    })
}

#[tokio::test]
async fn bearer_and_x_api_key_authenticate_and_write_the_principal() {
    let mut spec = KeySpec::default();
    spec.team = Some("search".into());
    let (keys, key) = keys_with(spec).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(AuthLayer::keys(keys.clone()))
        .service(echo_principal(calls.clone()));

    for header in [
        ("authorization", format!("Bearer {key}")),
        ("authorization", format!("bearer   {key}  ")),
        ("x-api-key", key.clone()),
    ] {
        let res = svc
            .clone()
            .oneshot(chat("/v1/chat/completions", "m", &[(header.0, &header.1)]))
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{}", header.0);
        let id = res.into_body();
        let id = http_body_util::BodyExt::collect(id)
            .await
            .unwrap()
            .to_bytes();
        assert!(std::str::from_utf8(&id).unwrap().starts_with("key_"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn bad_credentials_are_401_in_the_clients_dialect_and_never_reach_the_inner_service() {
    let (keys, key) = keys_with(KeySpec::default()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(AuthLayer::keys(keys))
        .service(echo_principal(calls.clone()));
    let huge = format!("Bearer tg-{}", "a".repeat(64 * 1024));
    let wrong = format!("Bearer {}x", key);
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("authorization", "Bearer")],
        vec![("authorization", "Bearer ")],
        vec![("authorization", "Basic dXNlcjpwYXNz")],
        vec![("authorization", &wrong)],
        vec![("authorization", "Bearer tg-unknown")],
        vec![("authorization", "Bearer ' OR 1=1; --")],
        vec![("authorization", "Bearer tg-x'); DROP TABLE auth_keys; --")],
        vec![("authorization", &huge)],
        vec![("x-api-key", "")],
        vec![("x-api-key", "tg-\u{0}")],
    ];
    for headers in &cases {
        for (path, dialect) in [
            ("/v1/chat/completions", "openai"),
            ("/v1/messages", "anthropic"),
        ] {
            let req = match Request::post(path).body(Body::from("{}")) {
                Ok(mut req) => {
                    for (name, value) in headers {
                        match http::HeaderValue::from_str(value) {
                            Ok(v) => {
                                req.headers_mut().insert(*name, v);
                            }
                            Err(_) => continue,
                        }
                    }
                    req
                }
                Err(e) => panic!("{e}"),
            };
            let res = svc.clone().oneshot(req).await.unwrap();
            assert_eq!(res.status(), 401, "{headers:?} on {path}");
            let body = json(res).await;
            let text = body.to_string();
            assert!(
                !text.contains("DROP TABLE") && !text.contains(&key),
                "{text}"
            );
            if dialect == "openai" {
                assert_eq!(body["error"]["code"], "invalid_api_key", "{body}");
            } else {
                assert_eq!(body["type"], "error");
                assert_eq!(body["error"]["type"], "authentication_error", "{body}");
            }
        }
    }
    // Non-ASCII (opaque bytes) header values.
    let mut req = chat("/v1/chat/completions", "m", &[]);
    req.headers_mut().insert(
        "authorization",
        http::HeaderValue::from_bytes("Bearer tg-é".as_bytes()).unwrap(),
    );
    assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), 401);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "a refused request reached the service"
    );
}

/// A body that panics if read: proves the layer refused from the headers alone.
struct Untouchable;

impl http_body::Body for Untouchable {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        panic!("the body of an unauthenticated request was read")
    }
}

#[tokio::test]
async fn unauthenticated_requests_never_read_the_body() {
    let (keys, _) = keys_with(KeySpec::default()).await;
    let svc = ServiceBuilder::new()
        .layer(AuthLayer::keys(keys))
        .service(MockProvider::new());
    let req = Request::post("/v1/chat/completions")
        .header("authorization", "Bearer tg-nope")
        .body(Untouchable)
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn model_globs_are_checked_after_parsing_in_the_clients_dialect() {
    let mut spec = KeySpec::default();
    spec.models = vec![
        ModelPattern::new("mock/*").unwrap(),
        ModelPattern::new("gpt-4o*").unwrap(),
    ];
    let (keys, key) = keys_with(spec).await;
    let svc = ServiceBuilder::new()
        .layer(AuthLayer::keys(keys))
        .service(MockProvider::new());
    let auth = format!("Bearer {key}");
    for (model, status) in [
        ("mock/echo", 200),
        ("gpt-4o-mini", 200),
        ("mock-anthropic/echo", 403),
        ("claude-3-haiku", 403),
    ] {
        let res = svc
            .clone()
            .oneshot(chat(
                "/v1/chat/completions",
                model,
                &[("authorization", &auth)],
            ))
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{model}");
        if status == 403 {
            let body = json(res).await;
            assert_eq!(body["error"]["code"], "permission_denied");
            assert_eq!(body["error"]["param"], "model");
            assert!(body["error"]["message"].as_str().unwrap().contains(model));
        }
    }
    let res = svc
        .clone()
        .oneshot(chat(
            "/v1/messages",
            "claude-3-haiku",
            &[("x-api-key", &key)],
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(json(res).await["error"]["type"], "permission_error");
    // A restricted key with a malformed body gets the parse error, not a pass.
    let req = Request::post("/v1/chat/completions")
        .header("authorization", &auth)
        .body(Body::from("{nope"))
        .unwrap();
    assert_eq!(svc.oneshot(req).await.unwrap().status(), 400);
}

fn from(addr: &str, mut req: Request<Body>) -> Request<Body> {
    let addr: SocketAddr = addr.parse().unwrap();
    req.extensions_mut().insert(ClientAddr(addr));
    req
}

#[tokio::test]
async fn ip_allowlists_use_the_peer_and_trust_forwarded_for_only_when_configured() {
    let mut spec = KeySpec::default();
    spec.ip_allow = vec![
        "10.1.0.0/16".parse().unwrap(),
        "2001:db8::/32".parse().unwrap(),
    ];
    let (keys, key) = keys_with(spec).await;
    let auth = format!("Bearer {key}");
    let req = |xff: Option<&str>| {
        let mut headers = vec![("authorization", auth.as_str())];
        if let Some(xff) = xff {
            headers.push(("x-forwarded-for", xff));
        }
        chat("/v1/chat/completions", "mock/echo", &headers)
    };
    let plain = ServiceBuilder::new()
        .layer(AuthLayer::keys(keys.clone()))
        .service(MockProvider::new());
    let status = |svc: &_, r| {
        let svc: &tollgate::auth::Auth<MockProvider, KeyAuthenticator> = svc;
        let svc = svc.clone();
        async move { svc.oneshot(r).await.unwrap().status().as_u16() }
    };
    assert_eq!(status(&plain, from("10.1.2.3:1", req(None))).await, 200);
    assert_eq!(
        status(&plain, from("[2001:db8::7]:1", req(None))).await,
        200
    );
    assert_eq!(
        status(&plain, from("[::ffff:10.1.9.9]:1", req(None))).await,
        200
    );
    assert_eq!(status(&plain, from("10.2.0.1:1", req(None))).await, 403);
    // Unknown address: refused.
    assert_eq!(status(&plain, req(None)).await, 403);
    // Without trusted proxies the header is ignored, both ways.
    assert_eq!(
        status(&plain, from("10.2.0.1:1", req(Some("10.1.0.5")))).await,
        403
    );
    assert_eq!(
        status(&plain, from("10.1.0.5:1", req(Some("8.8.8.8")))).await,
        200
    );

    let proxied = ServiceBuilder::new()
        .layer(
            AuthLayer::keys(keys).trust_forwarded_for(["192.168.0.0/24".parse::<IpNet>().unwrap()]),
        )
        .service(MockProvider::new());
    let res = proxied
        .clone()
        .oneshot(from("192.168.0.2:1", req(Some("10.1.0.5"))))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The right-most untrusted entry counts: a client cannot prepend an allowed one.
    let res = proxied
        .clone()
        .oneshot(from(
            "192.168.0.2:1",
            req(Some("10.1.0.5, 8.8.8.8, 192.168.0.9")),
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let body = json(res).await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("8.8.8.8"));
    // An untrusted peer's header is ignored.
    let res = proxied
        .clone()
        .oneshot(from("8.8.4.4:1", req(Some("10.1.0.5"))))
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // Garbage in the header from a trusted proxy: refused, no panic.
    let res = proxied
        .oneshot(from("192.168.0.2:1", req(Some("not-an-ip"))))
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn master_key_and_closures() {
    let master = KeySecret::from_plaintext("sk-master-0123456789");
    let auth = KeyAuthenticator::new(Keys::new(MemoryKeyStore::new())).master_key(&master);
    assert!(!format!("{auth:?}").contains("sk-master"));
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(AuthLayer::new(auth))
        .service(echo_principal(calls));
    let res = svc
        .clone()
        .oneshot(chat(
            "/v1/chat/completions",
            "m",
            &[("authorization", "Bearer sk-master-0123456789")],
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = svc
        .oneshot(chat(
            "/v1/chat/completions",
            "m",
            &[("authorization", "Bearer sk-master-012345678")],
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // A closure policy: a fixed token, copied out of the request.
    let policy = |req: &Request<Body>| {
        let ok = req
            .headers()
            .get("x-api-key")
            .is_some_and(|v| v == "let-me-in");
        async move {
            if ok {
                Ok(Principal::new("closure").with_team("t"))
            } else {
                Err(Rejection::forbidden("go away"))
            }
        }
    };
    let svc = ServiceBuilder::new()
        .layer(AuthLayer::new(policy))
        .service(echo_principal(Arc::new(AtomicUsize::new(0))));
    let res = svc
        .clone()
        .oneshot(chat("/v1/messages", "m", &[("x-api-key", "let-me-in")]))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = svc.oneshot(chat("/v1/messages", "m", &[])).await.unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(json(res).await["error"]["message"], "go away");
}
