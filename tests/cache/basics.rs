//! Hits and misses, keys and tenants, policy, per-request controls, what is never stored.

use std::time::Duration;

use http::Request;
use tollgate::cache::{CacheLayer, CachePolicy, CacheScope};
use tollgate::Body;
use tower::ServiceExt;

use crate::{cache_status, chat, send, setup, setup_with, with_header, DET};

#[tokio::test]
async fn miss_then_hit_with_the_same_bytes() {
    let (svc, mock) = setup();
    let (status, code, first) = send(&svc, chat(DET)).await;
    assert_eq!((status.as_str(), code), ("miss", 200));
    let res = svc.clone().oneshot(chat(DET)).await.unwrap();
    assert_eq!(cache_status(&res), "hit");
    assert_eq!(res.headers()["age"], "0");
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(crate::bytes(res).await, first);
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test]
async fn whitespace_and_key_order_hit_a_changed_message_or_temperature_misses() {
    let (svc, mock) = setup();
    send(&svc, chat(DET)).await;
    let reordered = r#"{ "messages": [ { "content": "hello there", "role": "user" } ],
        "temperature": 0.0, "model": "mock/echo" }"#;
    assert_eq!(send(&svc, chat(reordered)).await.0, "hit");
    assert_eq!(mock.request_count(), 1);

    let other_message = DET.replace("hello there", "hello you");
    assert_eq!(send(&svc, chat(&other_message)).await.0, "miss");
    let seeded = DET.replace("\"temperature\":0", "\"temperature\":0.5,\"seed\":1");
    assert_eq!(send(&svc, chat(&seeded)).await.0, "miss");
    assert_eq!(mock.request_count(), 3);
}

#[tokio::test]
async fn tenants_never_share_an_entry() {
    let (svc, mock) = setup();
    let as_key = |key: &str| with_header(chat(DET), "authorization", &format!("Bearer {key}"));
    assert_eq!(send(&svc, as_key("sk-a")).await.0, "miss");
    assert_eq!(send(&svc, as_key("sk-b")).await.0, "miss");
    assert_eq!(send(&svc, chat(DET)).await.0, "miss"); // no credential: `public`
    assert_eq!(send(&svc, as_key("sk-a")).await.0, "hit");
    assert_eq!(send(&svc, as_key("sk-b")).await.0, "hit");
    assert_eq!(mock.request_count(), 3);

    // An explicit scope (what auth will set) decides, whatever the header.
    let scoped = |team: &str, key: &str| {
        let mut req = as_key(key);
        req.extensions_mut().insert(CacheScope::new(team));
        req
    };
    assert_eq!(send(&svc, scoped("team-1", "sk-x")).await.0, "miss");
    assert_eq!(send(&svc, scoped("team-1", "sk-y")).await.0, "hit");
    assert_eq!(send(&svc, scoped("team-2", "sk-x")).await.0, "miss");
}

#[tokio::test]
async fn policy_deterministic_always_never() {
    let sampled = DET.replace("\"temperature\":0", "\"temperature\":0.7");
    let (svc, mock) = setup();
    assert_eq!(send(&svc, chat(&sampled)).await.0, "bypass");
    assert_eq!(send(&svc, chat(&sampled)).await.0, "bypass");
    assert_eq!(mock.request_count(), 2);

    let (svc, mock) = setup_with(CacheLayer::new().policy(CachePolicy::Always));
    send(&svc, chat(&sampled)).await;
    assert_eq!(send(&svc, chat(&sampled)).await.0, "hit");
    assert_eq!(mock.request_count(), 1);

    let (svc, mock) = setup_with(CacheLayer::new().policy(CachePolicy::Never));
    send(&svc, chat(DET)).await;
    assert_eq!(send(&svc, chat(DET)).await.0, "bypass");
    assert_eq!(mock.request_count(), 2);

    // A key maker that returns None bypasses (a policy per key or route).
    let layer = CacheLayer::new().make_key_with(|_: &Request<Body>, _: &_| None);
    let mock = tollgate::testing::MockProvider::new();
    let svc = tower::Layer::layer(&layer, mock.clone());
    let res = svc.oneshot(chat(DET)).await.unwrap();
    assert_eq!(cache_status(&res), "bypass");
}

#[tokio::test]
async fn no_store_no_cache_and_ttl_headers() {
    let (svc, mock) = setup();
    let no_store = || with_header(chat(DET), "cache-control", "no-store");
    assert_eq!(send(&svc, no_store()).await.0, "bypass");
    assert_eq!(send(&svc, chat(DET)).await.0, "miss"); // nothing was stored
    assert_eq!(send(&svc, no_store()).await.0, "bypass"); // and nothing is read
    assert_eq!(send(&svc, chat(DET)).await.0, "hit");
    assert_eq!(mock.request_count(), 3);

    // no-cache: goes upstream, and refreshes the entry.
    let no_cache = with_header(chat(DET), "cache-control", "no-cache");
    assert_eq!(send(&svc, no_cache).await.0, "miss");
    assert_eq!(mock.request_count(), 4);
    assert_eq!(send(&svc, chat(DET)).await.0, "hit");

    // ttl 0: served, not stored.
    let other = DET.replace("hello there", "ttl zero");
    let zero = with_header(chat(&other), "x-tollgate-cache-ttl", "0");
    assert_eq!(send(&svc, zero).await.0, "miss");
    assert_eq!(send(&svc, chat(&other)).await.0, "miss");

    // A short ttl expires.
    let short = DET.replace("hello there", "short ttl");
    let (svc, _mock) = setup_with(CacheLayer::new().ttl(Duration::from_millis(50)));
    send(&svc, chat(&short)).await;
    assert_eq!(send(&svc, chat(&short)).await.0, "hit");
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(send(&svc, chat(&short)).await.0, "miss");

    // A bad value is a 400 naming the header, in the client's dialect.
    let (svc, mock) = setup();
    let bad = with_header(chat(DET), "x-tollgate-cache-ttl", "soon");
    let (_, code, body) = send(&svc, bad).await;
    assert_eq!(code, 400);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"]["param"], "x-tollgate-cache-ttl");
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test]
async fn errors_429s_and_malformed_answers_are_never_stored() {
    let (svc, mock) = setup();
    for (header, value) in [
        ("x-mock-status", "429"),
        ("x-mock-status", "500"),
        ("x-mock-status", "400"),
        ("x-mock-malformed", "true"),
    ] {
        let (status, code, _) = send(&svc, with_header(chat(DET), header, value)).await;
        assert_eq!(status, "miss", "{header}: {value}");
        assert!(code >= 400 || header == "x-mock-malformed");
    }
    // None of them was stored: the next one goes upstream.
    let before = mock.request_count();
    assert_eq!(send(&svc, chat(DET)).await.0, "miss");
    assert_eq!(mock.request_count(), before + 1);
}

#[tokio::test]
async fn a_body_that_fails_is_not_stored() {
    let (svc, mock) = setup();
    let res = svc
        .clone()
        .oneshot(with_header(chat(DET), "x-mock-reset-after", "0"))
        .await
        .unwrap();
    assert!(http_body_util::BodyExt::collect(res.into_body())
        .await
        .is_err());
    assert_eq!(send(&svc, chat(DET)).await.0, "miss");
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test]
async fn embeddings_are_cached_other_routes_pass_through() {
    let (svc, mock) = setup();
    let embed = || {
        Request::post("/v1/embeddings")
            .body(Body::from(r#"{"model":"mock/embed","input":"the cat"}"#))
            .unwrap()
    };
    assert_eq!(send(&svc, embed()).await.0, "miss");
    assert_eq!(send(&svc, embed()).await.0, "hit");
    assert_eq!(mock.request_count(), 1);

    let models = Request::get("/v1/models").body(Body::empty()).unwrap();
    let res = svc.clone().oneshot(models).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("x-tollgate-cache").is_none());
}

#[cfg(feature = "metering")]
#[tokio::test]
async fn a_hit_is_metered_as_a_cache_hit_at_zero_cost() {
    use tollgate::metering::{MemoryLedger, MeteringLayer, Money};
    let ledger = MemoryLedger::new();
    let mock = tollgate::testing::MockProvider::new();
    let svc = tower::ServiceBuilder::new()
        .layer(MeteringLayer::new(ledger.clone()))
        .layer(CacheLayer::new())
        .service(mock.clone());
    let det = DET.replace("mock/echo", "gpt-4o-mini");
    for _ in 0..2 {
        let res = svc.clone().oneshot(chat(&det)).await.unwrap();
        crate::bytes(res).await;
    }
    tokio::task::yield_now().await;
    let records = ledger.records();
    assert_eq!(records.len(), 2);
    assert!(
        !records[0].cache_hit && records[0].cost > Money::ZERO,
        "{:?}",
        records[0]
    );
    assert!(records[1].cache_hit, "{:?}", records[1]);
    assert_eq!(records[1].cost, Money::ZERO);
    assert_eq!(records[1].completion_tokens, records[0].completion_tokens);
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test]
async fn the_byte_cap_holds_with_and_without_single_flight() {
    // With single-flight the stored copy is read from the flight's chunks; without it,
    // the fill keeps its own. Either way an answer over the cap is forwarded whole and
    // never stored, and one under it is.
    for single_flight in [true, false] {
        let (svc, mock) = setup_with(
            CacheLayer::new()
                .single_flight(single_flight)
                .max_entry_bytes(64),
        );
        let (status, code, body) = send(&svc, chat(DET)).await;
        assert_eq!((status.as_str(), code), ("miss", 200));
        assert!(body.len() > 64, "{}", body.len());
        assert_eq!(send(&svc, chat(DET)).await.0, "miss", "{single_flight}");
        assert_eq!(mock.request_count(), 2);

        let (svc, mock) = setup_with(CacheLayer::new().single_flight(single_flight));
        let (_, _, first) = send(&svc, chat(DET)).await;
        let (status, _, again) = send(&svc, chat(DET)).await;
        assert_eq!((status.as_str(), again), ("hit", first), "{single_flight}");
        assert_eq!(mock.request_count(), 1);
    }
}
