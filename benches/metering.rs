//! Metering cost: the layer on the request path (instant inner service, a ledger that
//! only counts), and SQLite ledger throughput in batches.
//! Run: `cargo bench --features full --bench metering`.

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::{Request, Response};
use http_body_util::BodyExt;
use tollgate::metering::{Ledger, MeteringLayer, SqliteLedger, UsageRecord};
use tollgate::outcome::ObserveLayer;
use tollgate::Body;
use tower::{Service, ServiceBuilder, ServiceExt};

const REQUEST: &str = r#"{"model":"mock/echo","messages":[{"role":"user","content":"Say hello to the benchmark."}],"temperature":0}"#;
const ANSWER: &str = r#"{"id":"c","object":"chat.completion","model":"mock/echo","choices":[{"index":0,"message":{"role":"assistant","content":"Hello."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14}}"#;

/// Counts records: the write itself is off the request path in real ledgers.
#[derive(Clone, Default)]
struct CountingLedger(Arc<AtomicU64>);

impl Ledger for CountingLedger {
    fn record(&self, record: UsageRecord) {
        black_box(record);
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

async fn drive<S>(svc: &mut S)
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    let req = Request::post("/v1/chat/completions")
        .body(Body::from(REQUEST))
        .unwrap();
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    black_box(res.into_body().collect().await.unwrap());
}

fn answer(_req: Request<Body>) -> std::future::Ready<Result<Response<Body>, Infallible>> {
    let mut res = Response::new(Body::from(Bytes::from_static(ANSWER.as_bytes())));
    res.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    std::future::ready(Ok(res))
}

fn layer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("metering");
    // The baseline parses nothing; put the same observe-and-parse work in it so the
    // difference is metering's own cost.
    let mut observed = ServiceBuilder::new()
        .layer(ObserveLayer::new())
        .service_fn(answer);
    group.bench_function("observe_only", |b| {
        b.iter(|| rt.block_on(drive(&mut observed)))
    });
    let mut metered = ServiceBuilder::new()
        .layer(MeteringLayer::new(CountingLedger::default()))
        .service_fn(answer);
    group.bench_function("metering_layer", |b| {
        b.iter(|| rt.block_on(drive(&mut metered)))
    });
    group.finish();
}

fn record(i: u64) -> UsageRecord {
    let mut value: serde_json::Value = serde_json::from_str(
        r#"{"id":"","time_ms":0,"key_id":"key-1","team":"team-a","requested_model":"gpt-4o","provider":"openai",
            "model":"gpt-4o","attempts":1,"prompt_tokens":120,"completion_tokens":48,"cached_tokens":0,
            "cache_write_tokens":0,"cost":"0.000780","priced":true,"latency_us":812000,"ttfb_us":230000,
            "status":200,"end":"complete","cache_hit":false,"exact":true}"#,
    )
    .unwrap();
    value["id"] = format!("bench-{i}").into();
    value["time_ms"] = (i as i64).into();
    serde_json::from_value(value).unwrap()
}

fn sqlite_throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("tollgate-bench-ledger-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ledger = rt
        .block_on(SqliteLedger::open(dir.join("ledger.db")))
        .unwrap();
    const BATCH: u64 = 20_000;
    let mut next = 0u64;
    let mut group = c.benchmark_group("sqlite_ledger");
    group.throughput(Throughput::Elements(BATCH));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("records_written", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let records: Vec<_> = (next..next + BATCH).map(record).collect();
                next += BATCH;
                let started = Instant::now();
                rt.block_on(async {
                    for r in records {
                        ledger.record(r);
                    }
                    ledger.flush().await;
                });
                total += started.elapsed();
            }
            total
        })
    });
    group.finish();
    assert_eq!(
        ledger.stats().spooled,
        0,
        "the bench measured the database, not the spool"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, layer, sqlite_throughput);
criterion_main!(benches);
