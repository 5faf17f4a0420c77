//! The Redis store against a real redis-server (`TOLLGATE_TEST_REDIS_URL`, set by
//! `.ci/run`): a fleet of stacks sharing one limit, and Redis failing mid-test.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body_util::BodyExt;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tollgate::outcome::Outcome;
use tollgate::ratelimit::{FailMode, Limits, RateLimitLayer, RedisStore};
use tollgate::request::LlmRequest;
use tollgate::{Body, Endpoint};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

use crate::{chat, header, json, HELLO};

fn redis_url() -> Option<String> {
    match std::env::var("TOLLGATE_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            // Straight to stderr: the test harness does not capture it, so the skip shows.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "skipped: TOLLGATE_TEST_REDIS_URL is unset (`.ci/run` starts redis-server and \
                 sets it; locally: TOLLGATE_TEST_REDIS_URL=redis://127.0.0.1:6379)"
            );
            None
        }
    }
}

/// A key prefix no other run shares (the server outlives test runs).
fn prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("tollgate-test:{test}:{}:{nanos}", std::process::id())
}

type Stack = tower::util::BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

fn ok_service(
) -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send>
       + Clone
       + Send
       + Sync
       + 'static {
    tower::service_fn(|_req: Request<Body>| async {
        let mut res = Response::new(Body::from("{}"));
        res.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        Ok::<_, Infallible>(res)
    })
}

fn stack(store: RedisStore, limits: Limits) -> Stack {
    let svc = ServiceBuilder::new()
        .layer(RateLimitLayer::new().store(store).global(limits))
        .service(ok_service());
    tower::util::BoxCloneSyncService::new(svc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_three_stacks_admits_the_limit_exactly() -> Result<(), BoxError> {
    let Some(url) = redis_url() else {
        return Ok(());
    };
    const LIMIT: u64 = 1_000;
    // A day's window: refill during the test is ~0.01 request, so the count is exact.
    let limits = Limits::new().requests_per_day(LIMIT);
    let prefix = prefix("fleet");
    let mut stacks = Vec::new();
    for _ in 0..3 {
        // Each stack has its own store and connection, as three replicas would. The
        // timeout is generous here: this test is about exactness, not outages.
        let store = RedisStore::builder(&url)
            .prefix(&prefix)
            .timeout(Duration::from_secs(5))
            .fail_mode(FailMode::Closed)
            .connect()
            .await?;
        stacks.push(stack(store, limits));
    }
    let mut tasks = JoinSet::new();
    for worker in 0..48 {
        let svc = stacks[worker % 3].clone();
        tasks.spawn(async move {
            let (mut admitted, mut refused) = (0u64, 0u64);
            for _ in 0..50 {
                let res = svc.clone().oneshot(chat(HELLO)).await.unwrap();
                match res.status().as_u16() {
                    200 => admitted += 1,
                    429 => refused += 1,
                    other => panic!("unexpected {other}"),
                }
            }
            (admitted, refused)
        });
    }
    let (mut admitted, mut refused) = (0, 0);
    while let Some(counts) = tasks.join_next().await {
        let (a, r) = counts?;
        admitted += a;
        refused += r;
    }
    assert_eq!(admitted + refused, 2_400);
    let tolerance = LIMIT / 100;
    assert!(
        admitted.abs_diff(LIMIT) <= tolerance,
        "admitted {admitted}, limit {LIMIT} ± {tolerance}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_and_tokens_hold_across_stacks() -> Result<(), BoxError> {
    let Some(url) = redis_url() else {
        return Ok(());
    };
    let prefix = prefix("parallel");
    let connect = || {
        RedisStore::builder(&url)
            .prefix(&prefix)
            .timeout(Duration::from_secs(2))
            .connect()
    };
    let mock = tollgate::testing::MockProvider::new();
    let layer = |store: RedisStore| {
        RateLimitLayer::new().store(store).output_reserve(10).model(
            "mock/echo",
            Limits::new().max_parallel(1).tokens_per_day(1_000),
        )
    };
    let a = ServiceBuilder::new()
        .layer(layer(connect().await?))
        .service(mock.clone());
    let b = ServiceBuilder::new()
        .layer(layer(connect().await?))
        .service(mock.clone());

    let held_body = r#"{"model":"mock/echo","stream":true,"max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut held = chat(held_body);
    held.headers_mut()
        .insert("x-mock-hold-last", "true".parse().unwrap());
    let res = a.clone().oneshot(held).await?;
    assert_eq!(res.status(), 200);
    let reserved = |body: &str| estimate(body) + 10;
    assert_eq!(
        header(&res, "x-ratelimit-remaining-tokens"),
        (1_000 - reserved(held_body)).to_string()
    );
    let outcome = res.extensions().get::<Outcome>().cloned().unwrap();
    let refused = b.clone().oneshot(chat(HELLO)).await?;
    assert_eq!(
        refused.status(),
        429,
        "the other replica sees the slot taken"
    );
    assert_eq!(
        json(refused).await["error"]["code"],
        "rate_limit_exceeded_concurrency"
    );

    mock.release_held(1);
    res.into_body().collect().await?;
    // Settlement is queued off the request path: it lands within moments.
    let deadline = Instant::now() + Duration::from_secs(2);
    let res = loop {
        let res = b.clone().oneshot(chat(HELLO)).await?;
        if res.status() == 200 || Instant::now() > deadline {
            break res;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        res.status(),
        200,
        "released on the outcome, seen by the other replica"
    );
    // The first reservation was settled down to what it used (no usage in this
    // stream: the input estimate plus the output seen).
    let used = estimate(held_body) + outcome.resolved().await.completion_tokens();
    assert_eq!(
        header(&res, "x-ratelimit-remaining-tokens"),
        (1_000 - used - reserved(HELLO)).to_string()
    );
    Ok(())
}

fn estimate(body: &str) -> u64 {
    LlmRequest::parse(Endpoint::ChatCompletions, body.to_owned().into())
        .unwrap()
        .estimated_input_tokens()
}

const FORWARD: u8 = 0;
const BLACKHOLE: u8 = 1;

/// A TCP proxy in front of Redis that can swallow traffic or die.
struct Proxy {
    url: String,
    mode: Arc<AtomicU8>,
    tasks: JoinSet<()>,
}

impl Proxy {
    async fn start(target: &str) -> Proxy {
        let target = target
            .trim_start_matches("redis://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let mode = Arc::new(AtomicU8::new(FORWARD));
        let mut tasks = JoinSet::new();
        let m = mode.clone();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let target = target.clone();
                let m = m.clone();
                conns.spawn(async move {
                    let Ok(server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let m2 = m.clone();
                    let up = pump(&mut cr, &mut sw, &m);
                    let down = pump(&mut sr, &mut cw, &m2);
                    tokio::join!(up, down);
                });
            }
        });
        Proxy { url, mode, tasks }
    }

    fn blackhole(&self) {
        self.mode.store(BLACKHOLE, Ordering::SeqCst);
    }

    /// Closes every connection and the listener: Redis is gone.
    fn kill(&mut self) {
        self.tasks.abort_all();
    }
}

async fn pump(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    mode: &AtomicU8,
) {
    use tokio::io::AsyncWriteExt;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if mode.load(Ordering::SeqCst) == FORWARD && to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_failing_mid_test_follows_the_policy_within_the_timeout() -> Result<(), BoxError> {
    let Some(url) = redis_url() else {
        return Ok(());
    };
    let mut proxy = Proxy::start(&url).await;
    let prefix = prefix("outage");
    let limits = Limits::new().requests_per_minute(100);
    let open_store = RedisStore::builder(&proxy.url)
        .prefix(&prefix)
        .fail_mode(FailMode::Open)
        .connect()
        .await?;
    let closed_store = RedisStore::builder(&proxy.url)
        .prefix(&prefix)
        .fail_mode(FailMode::Closed)
        .connect()
        .await?;
    let open = stack(open_store.clone(), limits);
    let closed = stack(closed_store.clone(), limits);

    // Healthy: both count in Redis (the second sees the first's request).
    let res = open.clone().oneshot(chat(HELLO)).await?;
    assert_eq!(header(&res, "x-ratelimit-remaining-requests"), "99");
    let res = closed.clone().oneshot(chat(HELLO)).await?;
    assert_eq!(header(&res, "x-ratelimit-remaining-requests"), "98");

    let budget = Duration::from_millis(50 + 150); // the timeout plus scheduling slack
    for phase in ["slow", "dead"] {
        match phase {
            "slow" => proxy.blackhole(),
            _ => proxy.kill(),
        }
        for round in 0..3 {
            let started = Instant::now();
            let res = open.clone().oneshot(chat(HELLO)).await?;
            assert!(
                started.elapsed() < budget,
                "{phase} {round}: open took {:?}",
                started.elapsed()
            );
            assert_eq!(res.status(), 200, "{phase}: fail-open admits");
            assert!(res
                .headers()
                .get("x-ratelimit-remaining-requests")
                .is_none());

            let started = Instant::now();
            let res = closed.clone().oneshot(chat(HELLO)).await?;
            assert!(
                started.elapsed() < budget,
                "{phase} {round}: closed took {:?}",
                started.elapsed()
            );
            assert_eq!(res.status(), 503, "{phase}: fail-closed refuses");
            assert_eq!(header(&res, "retry-after"), "1");
            let body = json(res).await;
            assert_eq!(body["error"]["code"], "rate_limit_store_unavailable");

            let started = Instant::now();
            let anthropic = Request::post("/v1/messages")
                .body(Body::from(r#"{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#))?;
            let res = closed.clone().oneshot(anthropic).await?;
            assert!(started.elapsed() < budget);
            assert_eq!(res.status(), 503);
            assert_eq!(json(res).await["type"], "error", "Anthropic's shape");
        }
    }
    assert!(
        open_store.failures() >= 6,
        "counted: {}",
        open_store.failures()
    );
    assert!(
        closed_store.failures() >= 12,
        "counted: {}",
        closed_store.failures()
    );
    Ok(())
}
