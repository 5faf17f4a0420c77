//! The PostgreSQL ledger against a real server (`TOLLGATE_TEST_DATABASE_URL`), reached
//! through a TCP proxy the test cuts and restores, like a database going down and up.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use tollgate::metering::{
    Account, GroupBy, Ledger, Money, PostgresLedger, RecentQuery, UsageQuery, UsageRecord,
};

/// The database URL, or `None` (and a printed reason) when the test must skip.
fn database_url(test: &str) -> Option<String> {
    match std::env::var("TOLLGATE_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("SKIPPED {test}: TOLLGATE_TEST_DATABASE_URL is not set (.ci/run starts PostgreSQL and sets it)");
            None
        }
    }
}

/// Forwards connections to the database while up; while down, cuts every open
/// connection and refuses new ones.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (u, c) = (up.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !u.load(Ordering::SeqCst) {
                    continue; // dropped: connection refused, in effect
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                c.lock().unwrap().push(task.abort_handle());
            }
        });
        Proxy { addr, up, conns }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// `postgres://user@host:port/db` → (`host:port`, the URL through `proxy`).
fn through(url: &str, proxy: SocketAddr) -> (SocketAddr, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (auth, rest) = rest.rsplit_once('@').map_or(("", rest), |(a, r)| (a, r));
    let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
    let hostport = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:5432")
    };
    let target = std::net::ToSocketAddrs::to_socket_addrs(&hostport)
        .unwrap()
        .next()
        .unwrap();
    let at = if auth.is_empty() {
        String::new()
    } else {
        format!("{auth}@")
    };
    (target, format!("{scheme}://{at}{proxy}/{path}"))
}

fn record(run: &str, i: usize) -> UsageRecord {
    let json = format!(
        r#"{{"id":"{run}-{i}","time_ms":{},"key_id":"key-{}","team":null,"requested_model":"mock/echo",
            "provider":"mock","model":"mock/echo","attempts":1,"prompt_tokens":10,"completion_tokens":5,
            "cached_tokens":0,"cache_write_tokens":0,"cost":"0.000020","priced":true,"latency_us":900,
            "ttfb_us":300,"status":200,"end":"complete","cache_hit":false,"exact":true}}"#,
        1_795_435_200_000i64 + i as i64,
        i % 3
    );
    serde_json::from_str(&json).unwrap()
}

#[tokio::test]
async fn postgres_down_mid_load_then_back_keeps_exactly_one_record_per_request() {
    let Some(url) =
        database_url("postgres_down_mid_load_then_back_keeps_exactly_one_record_per_request")
    else {
        return;
    };
    let placeholder: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let (target, _) = through(&url, placeholder);
    let proxy = Proxy::start(target).await;
    let (_, proxied) = through(&url, proxy.addr);
    let run = format!(
        "pgtest-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let spool = std::env::temp_dir().join(format!("{run}.spool"));
    let ledger = PostgresLedger::connect(&proxied, &spool).await.unwrap();

    for i in 0..100 {
        ledger.record(record(&run, i));
    }
    ledger.flush().await;
    proxy.down();
    for i in 100..200 {
        ledger.record(record(&run, i));
    }
    ledger.flush().await;
    assert!(
        ledger.stats().spooled >= 100,
        "written while down: {:?}",
        ledger.stats()
    );
    proxy.up();
    for i in 200..300 {
        ledger.record(record(&run, i));
    }
    ledger.flush().await;
    let stats = ledger.stats();
    assert_eq!(stats.replayed, stats.spooled, "{stats:?}");

    let ours: Vec<_> = ledger
        .records()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.id.starts_with(&run))
        .collect();
    assert_eq!(ours.len(), 300, "exactly one record per request");
    let mut ids: Vec<_> = ours.iter().map(|r| r.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 300);
    assert_eq!(ours[0], record(&run, 0), "round trip through PostgreSQL");

    let by_key = ledger
        .usage(
            &UsageQuery::new()
                .group_by(GroupBy::Key)
                .between(Some(1_795_435_200_000), Some(1_795_435_200_300)),
        )
        .await
        .unwrap();
    let per_key: Vec<_> = by_key
        .iter()
        .filter(|r| r.group.starts_with("key-"))
        .map(|r| r.requests)
        .collect();
    assert!(per_key.iter().sum::<u64>() >= 300);
    let by_day = ledger
        .usage(
            &UsageQuery::new()
                .group_by(GroupBy::Day)
                .between(Some(1_795_435_200_000), Some(1_795_435_200_300)),
        )
        .await
        .unwrap();
    assert_eq!(by_day[0].group, "2026-11-23");

    // Hourly buckets with error and cache-hit counts, and keyset pages, in PostgreSQL.
    let key = format!("{run}-recent");
    for i in 0..3 {
        let mut r = record(&run, 2_000 + i);
        r.key_id = Some(key.clone());
        r.status = if i == 1 { 503 } else { 200 };
        r.cache_hit = i == 2;
        ledger.record(r);
    }
    ledger.flush().await;
    let by_hour = ledger
        .usage(
            &UsageQuery::new()
                .key_id(key.clone())
                .group_by(GroupBy::Hour),
        )
        .await
        .unwrap();
    assert_eq!(by_hour.len(), 1, "{by_hour:?}");
    assert_eq!(by_hour[0].group, "2026-11-23T12:00");
    assert_eq!((by_hour[0].errors, by_hour[0].cache_hits), (1, 1));
    let first = ledger
        .recent(&RecentQuery::new(UsageQuery::new().key_id(key.clone()), 2))
        .await
        .unwrap();
    let ids: Vec<_> = first.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids, [format!("{run}-2002"), format!("{run}-2001")]);
    let last = &first[1];
    let rest = ledger
        .recent(
            &RecentQuery::new(UsageQuery::new().key_id(key.clone()), 2)
                .before(last.time_ms, last.id.clone()),
        )
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].id, format!("{run}-2000"));

    // Prepaid balances in PostgreSQL: credits, then what the account spent since.
    let team = Account::Team(format!("{run}-team"));
    ledger
        .save_credit(&team, "3".parse().unwrap())
        .await
        .unwrap();
    let mut spent = record(&run, 1_000);
    spent.team = Some(format!("{run}-team"));
    spent.time_ms = i64::MAX / 2; // after the credit
    ledger.record(spent);
    ledger.flush().await;
    let balances = ledger.balances().await.unwrap();
    let balance = balances.iter().find(|(a, _)| *a == team).map(|(_, m)| *m);
    assert_eq!(balance, Some(Money::from_nanos(3_000_000_000 - 20_000)));
    let _ = std::fs::remove_file(&spool);
}
