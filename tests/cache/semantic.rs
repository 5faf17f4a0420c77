//! `SemanticCacheLayer` over `CacheLayer`, with the mock provider's bag-of-words
//! embeddings: a paraphrase above the threshold hits, below it misses; scopes and
//! tenants stay apart; a lost exact entry or a failed embedding is a plain miss.

use std::time::Duration;

use http::Request;
use serde_json::{json, Value};
use tollgate::cache::{
    CacheLayer, CachePolicy, EmbeddingClient, SemanticCacheLayer, SIMILARITY_HEADER,
};
use tollgate::testing::MockProvider;
use tollgate::Body;
use tower::{Service, ServiceBuilder, ServiceExt};

use super::{bytes, cache_status};

fn ask(question: &str, key: &str, temperature: f64) -> Request<Body> {
    let body = json!({"model": "mock/echo", "temperature": temperature,
        "messages": [{"role": "user", "content": question}]});
    Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// The stack and the two mocks: one answers chats, the other embeds.
fn stack(
    threshold: f32,
    exact: CacheLayer,
) -> (
    impl Service<Request<Body>, Response = http::Response<Body>, Error = tollgate::BoxError> + Clone,
    MockProvider,
    MockProvider,
) {
    stack_with(threshold, CachePolicy::Deterministic, exact)
}

fn stack_with(
    threshold: f32,
    policy: CachePolicy,
    exact: CacheLayer,
) -> (
    impl Service<Request<Body>, Response = http::Response<Body>, Error = tollgate::BoxError> + Clone,
    MockProvider,
    MockProvider,
) {
    let chats = MockProvider::new();
    let embedder = MockProvider::new();
    let svc = ServiceBuilder::new()
        .map_err(Into::<tollgate::BoxError>::into)
        .layer(
            SemanticCacheLayer::new(EmbeddingClient::new(embedder.clone(), "mock/embed"))
                .threshold(threshold)
                .policy(policy),
        )
        .layer(exact)
        .service(chats.clone());
    (svc, chats, embedder)
}

async fn send(
    svc: &(impl Service<Request<Body>, Response = http::Response<Body>, Error = tollgate::BoxError>
          + Clone),
    req: Request<Body>,
) -> (String, Option<f32>, String) {
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let status = cache_status(&res).to_owned();
    let similarity = res
        .headers()
        .get(SIMILARITY_HEADER)
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let json: Value = serde_json::from_slice(&bytes(res).await).unwrap();
    let text = json["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    (status, similarity, text)
}

#[tokio::test]
async fn a_paraphrase_above_the_threshold_hits_and_below_misses() {
    let (svc, chats, embedder) = stack(0.9, CacheLayer::new());
    let (status, _, first) = send(&svc, ask("what is the capital of france", "sk-a", 0.0)).await;
    assert_eq!(status, "miss");
    assert_eq!(chats.request_count(), 1);

    // One word more: cosine 6/sqrt(42) = 0.93 with the mock's bag-of-words vectors.
    let (status, similarity, text) =
        send(&svc, ask("what is the capital city of france", "sk-a", 0.0)).await;
    assert_eq!(status, "hit");
    let similarity = similarity.expect("the similarity header");
    assert!((0.9..1.0).contains(&similarity), "{similarity}");
    assert_eq!(text, first, "the earlier question's answer");
    assert_eq!(chats.request_count(), 1, "no provider call");

    // One word changed: 5/6 = 0.83, below the threshold.
    let (status, _, text) = send(&svc, ask("what is the capital of spain", "sk-a", 0.0)).await;
    assert_eq!(status, "miss");
    assert!(text.contains("spain"), "{text}");
    assert_eq!(chats.request_count(), 2);
    assert_eq!(embedder.request_count(), 3, "one embedding per request");
}

#[tokio::test]
async fn a_higher_threshold_turns_the_same_paraphrase_into_a_miss() {
    let (svc, chats, _) = stack(0.99, CacheLayer::new());
    send(&svc, ask("what is the capital of france", "sk-a", 0.0)).await;
    let (status, _, _) = send(&svc, ask("what is the capital city of france", "sk-a", 0.0)).await;
    assert_eq!(status, "miss");
    assert_eq!(chats.request_count(), 2);
}

#[tokio::test]
async fn tenants_and_answer_changing_fields_are_never_crossed() {
    let (svc, chats, _) = stack_with(
        0.9,
        CachePolicy::Always,
        CacheLayer::new().policy(CachePolicy::Always),
    );
    send(&svc, ask("what is the capital of france", "sk-a", 0.0)).await;
    let (status, _, _) = send(&svc, ask("what is the capital city of france", "sk-b", 0.0)).await;
    assert_eq!(status, "miss", "another tenant's answer is never served");
    let (status, _, _) = send(&svc, ask("what is the capital city of france", "sk-a", 0.7)).await;
    assert_eq!(status, "miss", "another temperature is another scope");
    assert_eq!(chats.request_count(), 3);
}

#[tokio::test]
async fn a_lost_exact_entry_falls_back_to_the_request_itself() {
    // The exact cache stores nothing (TTL 0): the semantic match finds no entry.
    let (svc, chats, _) = stack(0.9, CacheLayer::new());
    let first = ask("what is the capital of france", "sk-a", 0.0);
    let first = {
        let mut req = first;
        req.headers_mut()
            .insert("x-tollgate-cache-ttl", "0".parse().unwrap());
        req
    };
    send(&svc, first).await;
    let (status, similarity, text) =
        send(&svc, ask("what is the capital city of france", "sk-a", 0.0)).await;
    assert_eq!((status.as_str(), similarity), ("miss", None));
    assert!(
        text.contains("capital city of france"),
        "answered as itself: {text}"
    );
    assert_eq!(chats.request_count(), 2);
}

#[tokio::test]
async fn a_failing_or_silent_embedder_is_a_plain_miss() {
    let chats = MockProvider::new();
    let failing = tower::service_fn(|_req: Request<Body>| async {
        let res = http::Response::builder()
            .status(500)
            .body(Body::from("boom"));
        Ok::<_, std::convert::Infallible>(res.unwrap())
    });
    let silent = tower::service_fn(|_req: Request<Body>| async {
        std::future::pending::<()>().await;
        Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
    });
    let failing = ServiceBuilder::new()
        .map_err(Into::<tollgate::BoxError>::into)
        .layer(SemanticCacheLayer::new(EmbeddingClient::new(failing, "m")).threshold(0.1))
        .layer(CacheLayer::new())
        .service(chats.clone());
    let silent = ServiceBuilder::new()
        .map_err(Into::<tollgate::BoxError>::into)
        .layer(
            SemanticCacheLayer::new(EmbeddingClient::new(silent, "m"))
                .threshold(0.1)
                .embed_timeout(Duration::from_millis(20)),
        )
        .layer(CacheLayer::new())
        .service(chats.clone());
    for svc in [&failing, &silent] {
        let (status, _, text) = send(svc, ask("hello there", "sk-a", 0.0)).await;
        assert_eq!(status, "miss", "answered, just not matched by meaning");
        assert!(text.contains("hello there"));
        let (status, _, _) = send(svc, ask("hello there friend", "sk-b", 0.0)).await;
        assert_eq!(status, "miss");
    }
    assert_eq!(chats.request_count(), 4);
}

#[tokio::test]
async fn only_if_cached_answers_504_without_calling_the_provider() {
    let (svc, chats) = super::setup();
    let req = super::with_header(super::chat(super::DET), "cache-control", "only-if-cached");
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 504);
    let body: Value = serde_json::from_slice(&bytes(res).await).unwrap();
    assert_eq!(body["error"]["code"], "not_cached");
    assert_eq!(chats.request_count(), 0);
    let (status, ..) = super::send(&svc, super::chat(super::DET)).await;
    assert_eq!(status, "miss");
    let req = super::with_header(super::chat(super::DET), "cache-control", "only-if-cached");
    let (status, code, _) = super::send(&svc, req).await;
    assert_eq!((status.as_str(), code), ("hit", 200));
    assert_eq!(chats.request_count(), 1);
}
