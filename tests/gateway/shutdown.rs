//! Graceful shutdown: a stream in flight when SIGTERM arrives finishes, the ledger
//! has its record, and the gateway exits 0.

use http::Method;
use http_body_util::BodyExt;
use tollgate::metering::SqliteLedger;
use tollgate::outcome::End;

use crate::harness::{guard, Gateway, Http, TempDir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_stream_finish_and_flushes_the_ledger() {
    let dir = TempDir::new("shutdown");
    let db = dir.path("t.db");
    let gateway = Gateway::start(&[("TOLLGATE_DB", &db)]);
    let http = Http::new(&gateway.url);
    let body = serde_json::json!({"model": "mock/echo", "stream": true,
        "messages": [{"role": "user", "content": "a long story"}]})
    .to_string();
    let req = http.request(
        Method::POST,
        "/v1/chat/completions",
        &[("x-mock-chunks", "20"), ("x-mock-chunk-delay-ms", "50")],
        &body,
    );
    let res = http.open(req).await;
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    let first = guard(body.frame()).await.unwrap().unwrap();
    assert!(first.data_ref().is_some());

    // A second connection, opened before the signal, asks for readiness after it.
    let other = Http::new(&gateway.url);
    assert_eq!(other.get("/ready", &[]).await.status, 200);
    gateway.signal("TERM");
    gateway.wait_for_log("shutting down").await;
    let rest = guard(body.collect())
        .await
        .expect("the stream finishes")
        .to_bytes();
    let text = String::from_utf8_lossy(&rest);
    assert!(text.contains("data: [DONE]"), "complete stream: {text}");
    assert!(gateway.wait(), "exits 0");

    let ledger = SqliteLedger::open(&db).await.unwrap();
    let records = ledger.records().await.unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].status, 200);
    assert_eq!(records[0].end, End::Complete);
    assert!(records[0].completion_tokens > 0);
}

/// A stream still open at the shutdown deadline is cut, and its usage record (the
/// client gone, with the usage streamed so far) is in the ledger before the gateway
/// exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_at_the_deadline_still_leaves_its_record() {
    let dir = TempDir::new("shutdown-cut");
    let db = dir.path("t.db");
    dir.write("gateway.toml", "shutdown_grace_seconds = 1\n");
    let gateway = Gateway::start(&[
        ("TOLLGATE_CONFIG", &dir.path("gateway.toml")),
        ("TOLLGATE_DB", &db),
    ]);
    let http = Http::new(&gateway.url);
    let body = serde_json::json!({"model": "mock/echo", "stream": true,
        "messages": [{"role": "user", "content": "a story that takes far longer than the grace"}]})
    .to_string();
    // 400 chunks 100 ms apart: 40 s, far past the 1 s grace.
    let req = http.request(
        Method::POST,
        "/v1/chat/completions",
        &[("x-mock-chunks", "400"), ("x-mock-chunk-delay-ms", "100")],
        &body,
    );
    let res = http.open(req).await;
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    // A few content chunks in, so there is usage to record.
    let mut seen = String::new();
    while seen.matches("\"content\"").count() < 4 {
        let frame = guard(body.frame()).await.unwrap().unwrap();
        if let Some(data) = frame.data_ref() {
            seen.push_str(&String::from_utf8_lossy(data));
        }
    }
    gateway.signal("TERM");
    let rest = guard(body.collect()).await;
    assert!(
        rest.is_err() || !String::from_utf8_lossy(&rest.unwrap().to_bytes()).contains("[DONE]"),
        "the stream is cut before its end"
    );
    gateway.wait_for_log("shutdown deadline passed").await;
    let log = gateway.log();
    assert!(gateway.wait(), "exits 0");
    assert!(!log.contains("may be missing"), "{log}");

    let ledger = SqliteLedger::open(&db).await.unwrap();
    let records = ledger.records().await.unwrap();
    assert_eq!(records.len(), 1, "the cut stream is recorded: {records:?}");
    assert_eq!(records[0].status, 200);
    assert_eq!(records[0].end, End::ClientGone);
    assert!(records[0].completion_tokens > 0, "{:?}", records[0]);
    assert!(!records[0].exact);
}
