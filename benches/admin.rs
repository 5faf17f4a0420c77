//! What the dashboard's queries cost on a SQLite ledger holding 1,000,000 usage records
//! (30 days, 1,000 keys, 20 teams, 5 models): the overview (totals, per hour, per day),
//! spend per team and per key, and a page of recent requests, first and deep.
//!
//! `cargo bench --features full --bench admin` (seeding takes a few seconds).

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate::metering::{GroupBy, RecentQuery, SqliteLedger, UsageQuery};

const RECORDS: i64 = 1_000_000;
const DAY_MS: i64 = 86_400_000;

fn seed(rt: &tokio::runtime::Runtime) -> (SqliteLedger, i64) {
    let dir = std::env::temp_dir().join(format!("tollgate-bench-admin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ledger.db");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    rt.block_on(async {
        let ledger = SqliteLedger::open(&path).await.unwrap();
        // One statement seeds them all: far faster than a million inserts.
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let step = 30 * DAY_MS / RECORDS;
        sqlx::query(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {last})
             INSERT INTO usage_records (id, time_ms, key_id, team, requested_model, provider,
               model, attempts, prompt_tokens, completion_tokens, cached_tokens,
               cache_write_tokens, cost_nanos, priced, latency_us, ttfb_us, status, end_kind,
               cache_hit, exact)
             SELECT 'r-' || i, {start} + i * {step}, 'key-' || (i % 1000), 'team-' || (i % 20),
               'model-' || (i % 5), 'mock', 'model-' || (i % 5), 1, 100 + i % 50, 20 + i % 30,
               0, 0, 1000 + i % 997, 1, 900, 300,
               CASE WHEN i % 50 = 0 THEN 502 ELSE 200 END, 'complete', i % 10 = 0, 1
             FROM n",
            last = RECORDS - 1,
            start = now - 30 * DAY_MS,
        ))
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
        (ledger, now)
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let (ledger, now) = seed(&rt);
    eprintln!("seeded {RECORDS} records in {:.1?}", started.elapsed());
    let last_30d = UsageQuery::new().between(Some(now - 30 * DAY_MS), None);
    let last_24h = UsageQuery::new().between(Some(now - DAY_MS), None);
    let middle = now - 15 * DAY_MS;

    let mut group = c.benchmark_group("admin_1m_records");
    group.sample_size(10);
    for (name, query) in [
        ("totals_30d", last_30d.clone()),
        ("per_day_30d", last_30d.clone().group_by(GroupBy::Day)),
        ("per_hour_24h", last_24h.group_by(GroupBy::Hour)),
        ("per_team_30d", last_30d.clone().group_by(GroupBy::Team)),
        ("per_key_30d", last_30d.clone().group_by(GroupBy::Key)),
        (
            "one_key_30d",
            last_30d.key_id("key-7").group_by(GroupBy::Day),
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| rt.block_on(ledger.usage(&query)).unwrap())
        });
    }
    let first = RecentQuery::new(UsageQuery::new(), 50);
    let deep = RecentQuery::new(UsageQuery::new(), 50).before(middle, "r-500000");
    for (name, query) in [("recent_first_page", first), ("recent_deep_page", deep)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let page = rt.block_on(ledger.recent(&query)).unwrap();
                assert_eq!(page.len(), 50);
                page
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
