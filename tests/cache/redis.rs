//! The Redis store against a real server (`TOLLGATE_TEST_REDIS_URL`, set by `.ci/run`);
//! skipped with a printed reason when the variable is unset.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tollgate::cache::{CacheLayer, RedisStore};

use crate::{chat, send, setup_with, DET};

fn redis_url() -> Option<String> {
    let url = std::env::var("TOLLGATE_TEST_REDIS_URL").ok();
    if url.is_none() {
        eprintln!("skipped: TOLLGATE_TEST_REDIS_URL is not set (.ci/run starts a redis-server and sets it)");
    }
    url
}

/// A prefix of its own per test run, so runs never see each other's entries.
fn prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("tollgate:test:cache:{test}:{}:{nanos}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_entries() {
    let Some(url) = redis_url() else { return };
    let prefix = prefix("share");
    let store_a = RedisStore::builder(&url)
        .prefix(&prefix)
        .connect()
        .await
        .unwrap();
    let store_b = RedisStore::builder(&url)
        .prefix(&prefix)
        .connect()
        .await
        .unwrap();
    let (replica_a, mock_a) = setup_with(CacheLayer::new().store(store_a.clone()));
    let (replica_b, mock_b) = setup_with(CacheLayer::new().store(store_b.clone()));

    let (status, _, first) = send(&replica_a, chat(DET)).await;
    assert_eq!(status, "miss");
    // The write is queued off the request path: wait (bounded) for it to land.
    let mut hit = None;
    for _ in 0..100 {
        let (status, _, body) = send(&replica_b, chat(DET)).await;
        if status == "hit" {
            hit = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(hit.expect("replica B sees replica A's entry"), first);
    assert_eq!(mock_a.request_count(), 1);
    assert!(mock_b.request_count() <= 100);
    assert_eq!(store_a.failures() + store_b.failures(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_over_the_cap_are_not_written() {
    let Some(url) = redis_url() else { return };
    let store = RedisStore::builder(&url)
        .prefix(prefix("cap"))
        .max_entry_bytes(16)
        .connect()
        .await
        .unwrap();
    let (svc, mock) = setup_with(CacheLayer::new().store(store).single_flight(false));
    send(&svc, chat(DET)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(send(&svc, chat(DET)).await.0, "miss");
    assert_eq!(mock.request_count(), 2);
}

/// A redis-server of this test's own on a free port, killed (by its pid) on drop.
struct OwnRedis(Child);

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_means_uncached_never_failed() {
    if redis_url().is_none() {
        return;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed where TOLLGATE_TEST_REDIS_URL is set");
    let mut server = Some(OwnRedis(child));
    let url = format!("redis://127.0.0.1:{port}");
    let mut store = None;
    for _ in 0..100 {
        if let Ok(s) = RedisStore::connect(&url).await {
            store = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let store = store.expect("own redis-server started");
    let (svc, mock) = setup_with(CacheLayer::new().store(store.clone()));
    assert_eq!(send(&svc, chat(DET)).await.0, "miss");

    drop(server.take()); // Redis goes away
    let started = std::time::Instant::now();
    for i in 0..3 {
        let (status, code, _) = send(&svc, chat(&DET.replace("hello", &format!("down {i}")))).await;
        assert_eq!((status.as_str(), code), ("miss", 200));
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no request waits on a dead Redis"
    );
    assert_eq!(mock.request_count(), 4);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(store.failures() > 0);
}
