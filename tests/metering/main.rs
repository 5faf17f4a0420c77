//! `MeteringLayer` against the mock provider: one exact record per response, streams,
//! disconnects, errors, prices, the SQLite ledger, readiness.
#![cfg(all(
    feature = "metering",
    feature = "testing",
    feature = "upstream",
    feature = "sqlite"
))]

use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio_test::{assert_pending, assert_ready_ok};
use tollgate::metering::{
    Account, Accounts, Budget, GroupBy, MemoryLedger, MeteringLayer, Money, Payer, Period,
    PriceTable, SqliteLedger, UnknownPrice, UsageQuery,
};
use tollgate::outcome::End;
use tollgate::testing::{MockProvider, MockServer};
use tollgate::upstream::{Target, Upstream};
use tollgate::Body;
use tower::{ServiceBuilder, ServiceExt};

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod shared;

const HANG_GUARD: Duration = Duration::from_secs(20);

fn chat(model: &str, stream: bool, headers: &[(&str, &str)]) -> Request<Body> {
    let body = json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "one two three four"}]});
    let mut req =
        Request::post("/v1/chat/completions").header("x-request-id", format!("req-{}", rand_id()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Body::from(body.to_string())).unwrap()
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

async fn drain(res: Response<Body>) -> String {
    let bytes = tokio::time::timeout(HANG_GUARD, res.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The mock's nominal price: $1 per million input tokens, $2 per million output tokens.
fn mock_cost(prompt: u64, completion: u64) -> Money {
    Money::from_nanos((prompt * 1_000 + completion * 2_000) as i64)
}

#[tokio::test]
async fn non_stream_answer_is_recorded_exactly() {
    let ledger = MemoryLedger::new();
    let svc = ServiceBuilder::new()
        .layer(MeteringLayer::new(ledger.clone()))
        .service(MockProvider::new());
    let res = svc.oneshot(chat("mock/echo", false, &[])).await.unwrap();
    let body: Value = serde_json::from_str(&drain(res).await).unwrap();
    let records = ledger.records();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    let prompt = body["usage"]["prompt_tokens"].as_u64().unwrap();
    let completion = body["usage"]["completion_tokens"].as_u64().unwrap();
    assert_eq!((r.prompt_tokens, r.completion_tokens), (prompt, completion));
    assert_eq!(r.cost, mock_cost(prompt, completion));
    assert!(r.exact && r.priced && !r.cache_hit);
    assert_eq!(
        (r.status, r.end, r.requested_model.as_str()),
        (200, End::Complete, "mock/echo")
    );
    assert!(
        r.id.starts_with("req-"),
        "the x-request-id is the record id"
    );
}

#[tokio::test]
async fn streamed_answer_through_the_upstream_is_recorded_from_the_hidden_usage() {
    let mock = MockServer::start().await.unwrap();
    let ledger = MemoryLedger::new();
    let target = Target::openai_compatible("mock", &mock.base_url()).unwrap();
    let svc = ServiceBuilder::new()
        .layer(MeteringLayer::new(ledger.clone()))
        .service(Upstream::new(target));
    let res = svc
        .oneshot(chat("mock/echo", true, &[("x-mock-cached-tokens", "2")]))
        .await
        .unwrap();
    let text = drain(res).await;
    assert!(
        !text.contains("prompt_tokens"),
        "usage hidden from the client"
    );
    let r = &ledger.records()[0];
    assert!(r.exact, "{r:?}");
    assert_eq!(r.cached_tokens, 2);
    assert_eq!(r.provider.as_deref(), Some("mock"));
    assert_eq!(r.end, End::Complete);
    // Cached input tokens at $0.50/M instead of $1/M.
    assert_eq!(
        r.cost.nanos(),
        (r.prompt_tokens as i64 - 2) * 1_000 + 2 * 500 + r.completion_tokens as i64 * 2_000
    );
    assert!(r.ttfb_us.is_some() && r.latency_us >= r.ttfb_us.unwrap());
}

#[tokio::test]
async fn client_gone_mid_stream_is_recorded_with_the_usage_seen_so_far() {
    let mock = MockServer::start().await.unwrap();
    let ledger = MemoryLedger::new();
    let target = Target::openai_compatible("mock", &mock.base_url()).unwrap();
    let svc = ServiceBuilder::new()
        .layer(MeteringLayer::new(ledger.clone()))
        .service(Upstream::new(target));
    let res = svc
        .oneshot(chat(
            "mock/echo",
            true,
            &[("x-mock-hold-last", "true"), ("x-mock-chunks", "4")],
        ))
        .await
        .unwrap();
    let mut body = res.into_body();
    let mut seen = String::new();
    while seen.matches("data: ").count() < 3 {
        let frame = tokio::time::timeout(HANG_GUARD, body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push_str(std::str::from_utf8(frame.data_ref().unwrap()).unwrap());
    }
    drop(body);
    let records = ledger.records();
    assert_eq!(records.len(), 1, "written when the client left");
    let r = &records[0];
    assert_eq!(r.end, End::ClientGone);
    assert!(!r.exact, "no final usage: estimated");
    assert!(
        r.completion_tokens > 0,
        "estimated from the streamed text: {r:?}"
    );
    assert!(r.cost.nanos() > 0);
    tokio::time::timeout(HANG_GUARD, mock.provider().wait_for_cancelled(1))
        .await
        .unwrap();
}

#[tokio::test]
async fn errors_and_refusals_are_recorded_and_non_llm_routes_are_not() {
    let ledger = MemoryLedger::new();
    let svc = ServiceBuilder::new()
        .layer(MeteringLayer::new(ledger.clone()))
        .service(MockProvider::new());
    let res = svc
        .clone()
        .oneshot(chat("mock/echo", false, &[("x-mock-status", "500")]))
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    drain(res).await;
    let bad = Request::post("/v1/chat/completions")
        .body(Body::from("{nope"))
        .unwrap();
    let res = svc.clone().oneshot(bad).await.unwrap();
    assert_eq!(
        res.status(),
        400,
        "malformed JSON answered before any provider call"
    );
    let models = Request::get("/v1/models").body(Body::empty()).unwrap();
    drain(svc.oneshot(models).await.unwrap()).await;
    let records = ledger.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].status, 500);
    assert_eq!(records[0].cost, Money::ZERO, "no usage, no cost");
}

#[tokio::test]
async fn unknown_price_policy() {
    let ledger = MemoryLedger::new();
    let lenient = ServiceBuilder::new()
        .layer(MeteringLayer::new(ledger.clone()).prices(PriceTable::empty()))
        .service(MockProvider::new());
    drain(
        lenient
            .oneshot(chat("mock/echo", false, &[]))
            .await
            .unwrap(),
    )
    .await;
    let r = &ledger.records()[0];
    assert!(!r.priced && r.cost == Money::ZERO && r.exact);

    let strict = ServiceBuilder::new()
        .layer(
            MeteringLayer::new(ledger.clone())
                .prices(PriceTable::empty())
                .unknown_price(UnknownPrice::Reject),
        )
        .service(MockProvider::new());
    let res = strict.oneshot(chat("mock/echo", false, &[])).await.unwrap();
    assert_eq!(res.status(), 400);
    let err: Value = serde_json::from_str(&drain(res).await).unwrap();
    assert_eq!(err["error"]["param"], "model");
    assert_eq!(
        ledger.records().len(),
        1,
        "a refused request never reached the provider"
    );
}

/// A SQLite ledger in a fresh directory, removed when the guard drops.
async fn sqlite_ledger(name: &str) -> (SqliteLedger, TempDir) {
    let dir = std::env::temp_dir().join(format!("tollgate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ledger = SqliteLedger::open(dir.join("ledger.db")).await.unwrap();
    (ledger, TempDir(dir))
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn concurrent_requests_to_sqlite_sum_exactly() {
    let (ledger, _dir) = sqlite_ledger("metering").await;
    let svc = ServiceBuilder::new()
        .layer(MeteringLayer::new(ledger.clone()))
        .service(MockProvider::new());
    let mut tasks = Vec::new();
    for i in 0..100 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            let res = svc
                .oneshot(chat("mock/echo", i % 2 == 0, &[]))
                .await
                .unwrap();
            drain(res).await
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    ledger.flush().await;
    let records = ledger.records().await.unwrap();
    assert_eq!(records.len(), 100);
    let sum: i64 = records.iter().map(|r| r.cost.nanos()).sum();
    let total = ledger.usage(&UsageQuery::default()).await.unwrap();
    assert_eq!(total[0].requests, 100);
    assert_eq!(total[0].cost.nanos(), sum);
    let by_model = ledger
        .usage(&UsageQuery::new().group_by(GroupBy::Model))
        .await
        .unwrap();
    assert_eq!(by_model[0].group, "mock/echo");
    assert_eq!(ledger.stats().written, 100);
}

#[tokio::test]
async fn readiness_is_delegated_and_the_ready_service_is_called() {
    let layer = MeteringLayer::new(MemoryLedger::new());
    let (mut svc, mut handle) =
        tower_test::mock::spawn_layer::<Request<Body>, Response<Body>, _>(layer);
    handle.allow(0);
    assert_pending!(svc.poll_ready::<Request<Body>>());
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready::<Request<Body>>());
    let fut = tokio::spawn(svc.call(chat("mock/echo", false, &[])));
    let (_req, send) = handle.next_request().await.unwrap();
    send.send_response(Response::new(Body::from("{}")));
    assert_eq!(fut.await.unwrap().unwrap().status(), 200);
}

fn paid_chat(key: &str, team: Option<&str>) -> Request<Body> {
    let body = json!({"model": "mock/echo", "max_tokens": 16, "messages": [{"role": "user", "content": "one two three four"}]});
    let mut req = Request::post("/v1/chat/completions")
        .body(Body::from(body.to_string()))
        .unwrap();
    req.extensions_mut()
        .insert(Payer::new(Some(key.into()), team.map(Into::into)));
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_cannot_overdraw_a_prepaid_balance() {
    let ledger = MemoryLedger::new();
    let accounts = Accounts::new();
    let key = Account::Key("k1".into());
    let credit = Money::from_nanos(500_000);
    accounts.credit(key.clone(), credit);
    let svc = ServiceBuilder::new()
        .layer(MeteringLayer::new(ledger.clone()).accounts(accounts.clone()))
        .service(MockProvider::new());
    // The worst case of one request: its input estimate plus max_tokens at the mock's
    // price ($1/M in, $2/M out).
    let worst = {
        let req = paid_chat("k1", None);
        let mut req = req;
        let llm = tollgate::request::LlmRequest::extract(&mut req)
            .await
            .unwrap();
        Money::from_nanos((llm.estimated_input_tokens() * 1_000 + 16 * 2_000) as i64)
    };
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move {
                let res = svc.oneshot(paid_chat("k1", Some("team-a"))).await.unwrap();
                let status = res.status();
                let body = drain(res).await;
                (status, body)
            })
        })
        .collect();
    let mut admitted = 0;
    let mut refused = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status.as_u16() {
            200 => admitted += 1,
            429 => {
                refused += 1;
                let err: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(err["error"]["code"], "insufficient_quota", "{body}");
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert!(
        admitted > 0 && refused > 0,
        "admitted {admitted}, refused {refused}"
    );
    let records = ledger.records();
    assert_eq!(
        records.len(),
        admitted,
        "one record per admitted request, none for refusals"
    );
    let spent: i64 = records.iter().map(|r| r.cost.nanos()).sum();
    let balance = accounts.balance(&key).unwrap();
    assert_eq!(
        credit.nanos() - balance.nanos(),
        spent,
        "records sum to the balance change exactly"
    );
    assert!(
        balance.nanos() >= -worst.nanos(),
        "overdrawn by at most one worst case: {balance} vs {worst}"
    );
    assert!(records
        .iter()
        .all(|r| r.key_id.as_deref() == Some("k1") && r.team.as_deref() == Some("team-a")));
    // Nothing left reserved: a fresh credit makes the key usable again.
    accounts.credit(key.clone(), Money::from_nanos(1_000_000));
    assert_eq!(
        svc.oneshot(paid_chat("k1", None)).await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn an_exhausted_budget_refuses_with_retry_after() {
    let accounts = Accounts::new();
    accounts.set_budget(
        Account::Team("red".into()),
        Budget::new(Money::from_nanos(1), Period::Daily),
    );
    let ledger = MemoryLedger::new();
    let svc = ServiceBuilder::new()
        .layer(MeteringLayer::new(ledger.clone()).accounts(accounts.clone()))
        .service(MockProvider::new());
    let first = svc
        .clone()
        .oneshot(paid_chat("k2", Some("red")))
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    drain(first).await;
    let second = svc.oneshot(paid_chat("k2", Some("red"))).await.unwrap();
    assert_eq!(second.status(), 429);
    let wait: u64 = second.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait > 0 && wait <= 86_400);
    let err: Value = serde_json::from_str(&drain(second).await).unwrap();
    assert_eq!(err["error"]["type"], "insufficient_quota");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("team `red`"));
    assert_eq!(
        accounts.spent(&Account::Team("red".into())),
        Some(ledger.records()[0].cost)
    );
}

/// A client that sends its own `x-request-id` again (a retry) is metered again: the
/// ledger is unique on (start time, id), not on the id alone. A replay of the same
/// record (same start, same id) is still written once.
#[tokio::test]
async fn a_reused_request_id_is_a_new_record_and_a_replay_is_not() {
    use tollgate::metering::Ledger;
    let (ledger, _dir) = sqlite_ledger("reuse").await;
    let svc = ServiceBuilder::new()
        .layer(MeteringLayer::new(ledger.clone()))
        .service(MockProvider::new());
    for _ in 0..2 {
        let mut req = chat("mock/echo", false, &[]);
        req.headers_mut()
            .insert("x-request-id", "client-retry-1".parse().unwrap());
        drain(svc.clone().oneshot(req).await.unwrap()).await;
        tokio::time::sleep(Duration::from_millis(3)).await; // the next one starts later
    }
    ledger.flush().await;
    let records = ledger.records().await.unwrap();
    assert_eq!(records.len(), 2, "both requests are metered");
    assert!(records.iter().all(|r| r.id == "client-retry-1"));
    ledger.record(records[0].clone()); // a spool replay
    ledger.flush().await;
    assert_eq!(
        ledger.records().await.unwrap().len(),
        2,
        "a replay is a no-op"
    );
}
