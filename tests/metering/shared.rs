//! Prepaid balances and budgets shared by a fleet in Redis (`RedisAccounts`), against a
//! real redis-server (`TOLLGATE_TEST_REDIS_URL`, set by `.ci/run`). Two `Accounts` sets
//! stand for two replicas: they share nothing but the Redis store.

use std::time::Duration;

use serde_json::Value;
use tollgate::metering::{
    Account, Accounts, Budget, BudgetEvent, MemoryLedger, MeteringLayer, Money, Period,
    RedisAccounts, Refusal,
};
use tollgate::testing::MockProvider;
use tower::{ServiceBuilder, ServiceExt};

use crate::{drain, paid_chat};

fn redis_url(test: &str) -> Option<String> {
    match std::env::var("TOLLGATE_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "{test} skipped: TOLLGATE_TEST_REDIS_URL is unset (`.ci/run` starts \
                 redis-server and sets it; locally: TOLLGATE_TEST_REDIS_URL=redis://127.0.0.1:6379)"
            );
            None
        }
    }
}

/// A key prefix of this run's own, so runs never see each other's balances.
fn prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("tollgate-test:{test}:{}:{nanos}", std::process::id())
}

async fn replica(url: &str, prefix: &str) -> Accounts {
    let store = RedisAccounts::builder(url)
        .prefix(prefix)
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect("connect to the test Redis");
    Accounts::new().shared(store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_cannot_overdraw_a_shared_balance() {
    let test = "two_replicas_cannot_overdraw_a_shared_balance";
    let Some(url) = redis_url(test) else { return };
    let prefix = prefix(test);
    let (a, b) = (replica(&url, &prefix).await, replica(&url, &prefix).await);
    let key = Account::Key("k1".into());
    let credit = Money::from_nanos(500_000);
    a.add_credit(key.clone(), credit).await.unwrap();
    assert_eq!(
        b.current_balance(&key).await.unwrap(),
        Some(credit),
        "one balance for the fleet"
    );

    let ledger = MemoryLedger::new();
    let stack = |accounts: &Accounts| {
        ServiceBuilder::new()
            .layer(MeteringLayer::new(ledger.clone()).accounts(accounts.clone()))
            .service(MockProvider::new())
    };
    let (svc_a, svc_b) = (stack(&a), stack(&b));
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let svc = if i % 2 == 0 {
                svc_a.clone()
            } else {
                svc_b.clone()
            };
            tokio::spawn(async move {
                let res = svc.oneshot(paid_chat("k1", None)).await.unwrap();
                (res.status().as_u16(), drain(res).await)
            })
        })
        .collect();
    let (mut admitted, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            (200, _) => admitted += 1,
            (429, body) => {
                refused += 1;
                let err: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(err["error"]["code"], "insufficient_quota", "{body}");
            }
            (status, body) => panic!("unexpected {status}: {body}"),
        }
    }
    assert!(
        admitted > 0 && refused > 0,
        "admitted {admitted}, refused {refused}"
    );

    // Settlements run off the request path: wait until the fleet's balance has them all.
    let records = ledger.records();
    assert_eq!(records.len(), admitted);
    let spent: i64 = records.iter().map(|r| r.cost.nanos()).sum();
    let expected = Money::from_nanos(credit.nanos() - spent);
    let mut balance = None;
    for _ in 0..200 {
        balance = b.current_balance(&key).await.unwrap();
        if balance == Some(expected) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        balance,
        Some(expected),
        "records sum to the balance change exactly"
    );
    // Worst case of one request: its input estimate plus max_tokens (16) at the mock's
    // price; the balance never goes below minus one of them.
    let worst = records[0].cost.nanos().max(16 * 2_000 + 10 * 1_000);
    assert!(
        expected.nanos() >= -worst,
        "overdrawn by at most one worst case: {expected}"
    );
    // Nothing stays reserved: a fresh credit on one replica admits on the other.
    a.add_credit(key.clone(), Money::from_nanos(1_000_000))
        .await
        .unwrap();
    let res = svc_b.oneshot(paid_chat("k1", None)).await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_budget_spent_on_one_replica_refuses_on_the_other_and_warns_once() {
    let test = "a_budget_spent_on_one_replica_refuses_on_the_other_and_warns_once";
    let Some(url) = redis_url(test) else { return };
    let prefix = prefix(test);
    let (a, b) = (replica(&url, &prefix).await, replica(&url, &prefix).await);
    let team = Account::Team("red".into());
    let budget = Budget::new(Money::from_nanos(1_000), Period::Daily);
    a.set_budget(team.clone(), budget);
    b.set_budget(team.clone(), budget);
    let (mut events_a, mut events_b) = (a.subscribe(), b.subscribe());

    // 700 on replica A, then 200 on B: B's request crosses the 80% threshold.
    let hold = a
        .acquire(std::slice::from_ref(&team), Money::ZERO)
        .await
        .unwrap();
    hold.settle(Money::from_nanos(700));
    // Settlements run off the request path; let A's land first.
    let store = a.shared_store().unwrap();
    let period = Period::Daily.start(a.now_ms());
    for _ in 0..200 {
        if store.spent(&team, period).await.unwrap() == Money::from_nanos(700) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let hold = b
        .acquire(std::slice::from_ref(&team), Money::ZERO)
        .await
        .unwrap();
    hold.settle(Money::from_nanos(200));
    let event = tokio::time::timeout(Duration::from_secs(5), events_b.recv())
        .await
        .expect("a soft-threshold event")
        .unwrap();
    assert!(
        matches!(event, BudgetEvent::SoftThreshold { ref account, spent, .. } if *account == team && spent == Money::from_nanos(900)),
        "{event:?}"
    );
    assert!(
        events_a.try_recv().is_err(),
        "sent once, by the replica that crossed it"
    );

    let hold = a
        .acquire(std::slice::from_ref(&team), Money::ZERO)
        .await
        .unwrap();
    hold.settle(Money::from_nanos(100));
    let event = tokio::time::timeout(Duration::from_secs(5), events_a.recv())
        .await
        .expect("an exhausted event")
        .unwrap();
    assert!(matches!(event, BudgetEvent::Exhausted { .. }), "{event:?}");
    for replica in [&a, &b] {
        match replica
            .acquire(std::slice::from_ref(&team), Money::ZERO)
            .await
        {
            Err(Refusal::Budget { account, resets_ms }) => {
                assert_eq!(account, team);
                assert_eq!(resets_ms, Period::Daily.start(a.now_ms()) + 86_400_000);
            }
            other => panic!("refused on every replica, got {other:?}"),
        }
    }
    // Every replica reports the fleet's spend (what `GET /admin/budgets` shows).
    for replica in [&a, &b] {
        let budgets = replica.budgets().await.unwrap();
        assert_eq!(budgets.len(), 1);
        assert_eq!(budgets[0].spent, Money::from_nanos(1_000));
        assert_eq!(budgets[0].remaining(), Money::ZERO);
        assert_eq!(
            budgets[0].resets_ms,
            Some(Period::Daily.start(a.now_ms()) + 86_400_000)
        );
    }
}

#[tokio::test]
async fn holds_of_a_replica_that_died_expire() {
    let test = "holds_of_a_replica_that_died_expire";
    let Some(url) = redis_url(test) else { return };
    let prefix = prefix(test);
    let store = RedisAccounts::builder(&url)
        .prefix(&prefix)
        .timeout(Duration::from_secs(2))
        .hold_ttl(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let accounts = Accounts::new().shared(store);
    let key = Account::Key("k9".into());
    accounts
        .add_credit(key.clone(), Money::from_nanos(100))
        .await
        .unwrap();
    let hold = accounts
        .acquire(std::slice::from_ref(&key), Money::from_nanos(100))
        .await
        .unwrap();
    // The replica dies holding it: never settled, never released.
    std::mem::forget(hold);
    assert_eq!(
        accounts
            .acquire(std::slice::from_ref(&key), Money::from_nanos(1))
            .await
            .unwrap_err(),
        Refusal::Balance(key.clone())
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let hold = accounts
        .acquire(std::slice::from_ref(&key), Money::from_nanos(1))
        .await
        .expect("the expired hold is released");
    drop(hold); // released without cost
}

/// Makes the test Redis hold every write for `ms` (a Redis that is slow to answer).
async fn pause_writes(url: &str, ms: u64) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(ms)
        .arg("WRITE")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unanswering_store_fails_open_or_closed_as_configured() {
    let test = "an_unanswering_store_fails_open_or_closed_as_configured";
    let Some(url) = redis_url(test) else { return };
    let prefix = prefix(test);
    let key = Account::Key("k2".into());
    let connect = |closed: bool| {
        RedisAccounts::builder(&url)
            .prefix(&prefix)
            .timeout(Duration::from_millis(50))
            .fail_closed(closed)
            .connect()
    };
    for closed in [false, true] {
        let store = connect(closed).await.unwrap();
        let accounts = Accounts::new().shared(store.clone());
        pause_writes(&url, 300).await;
        let result = accounts
            .acquire(std::slice::from_ref(&key), Money::from_nanos(5))
            .await;
        if closed {
            assert_eq!(result.unwrap_err(), Refusal::Unavailable);
        } else {
            assert!(
                result.is_ok(),
                "fail open admits on the replica's own accounts"
            );
        }
        assert_eq!(store.failures(), 1, "counted");
    }

    // Through the layer, fail closed is a 503 in the client's dialect.
    let store = connect(true).await.unwrap();
    let svc = ServiceBuilder::new()
        .layer(MeteringLayer::new(MemoryLedger::new()).accounts(Accounts::new().shared(store)))
        .service(MockProvider::new());
    pause_writes(&url, 300).await;
    let res = svc.oneshot(paid_chat("k2", None)).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    let body: Value = serde_json::from_str(&drain(res).await).unwrap();
    assert_eq!(body["error"]["code"], "balance_store_unavailable");
}

/// Waits for the shared balance of `account` to reach `expected` (settlements run off
/// the request path).
async fn settled(accounts: &Accounts, account: &Account, expected: Money) {
    for _ in 0..500 {
        if accounts.current_balance(account).await.unwrap() == Some(expected) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the balance of {account} never reached {expected}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_balance_is_reported_once_per_fleet_and_again_after_a_credit() {
    let test = "a_low_balance_is_reported_once_per_fleet_and_again_after_a_credit";
    let Some(url) = redis_url(test) else { return };
    let prefix = prefix(test);
    let (a, b) = (replica(&url, &prefix).await, replica(&url, &prefix).await);
    let key = Account::Key("k1".into());
    for replica in [&a, &b] {
        replica.set_low_balance_threshold(key.clone(), Money::from_nanos(500));
    }
    let (mut events_a, mut events_b) = (a.subscribe(), b.subscribe());
    a.add_credit(key.clone(), Money::from_nanos(1_000))
        .await
        .unwrap();
    let spend = |replica: &Accounts, cost: i64| {
        let replica = replica.clone();
        let key = key.clone();
        async move {
            replica
                .acquire(std::slice::from_ref(&key), Money::from_nanos(10))
                .await
                .unwrap()
                .settle(Money::from_nanos(cost));
        }
    };
    spend(&a, 300).await;
    settled(&a, &key, Money::from_nanos(700)).await;
    // B's request takes the fleet's balance below 500: B reports it, A does not.
    spend(&b, 300).await;
    let event = tokio::time::timeout(Duration::from_secs(5), events_b.recv())
        .await
        .expect("a low-balance event")
        .unwrap();
    assert_eq!(
        event,
        BudgetEvent::BalanceLow {
            account: key.clone(),
            balance: Money::from_nanos(400),
            threshold: Money::from_nanos(500),
        }
    );
    // Still low after more spend on either replica: no second event.
    spend(&a, 50).await;
    settled(&a, &key, Money::from_nanos(350)).await;
    assert!(events_a.try_recv().is_err() && events_b.try_recv().is_err());
    // A credit back above re-arms it; the next crossing is reported again (here by A).
    a.add_credit(key.clone(), Money::from_nanos(250))
        .await
        .unwrap();
    spend(&a, 101).await;
    let event = tokio::time::timeout(Duration::from_secs(5), events_a.recv())
        .await
        .expect("a second low-balance event")
        .unwrap();
    assert!(
        matches!(event, BudgetEvent::BalanceLow { balance, .. } if balance == Money::from_nanos(499)),
        "{event:?}"
    );
    // A debit through the store crosses too, reported by the replica that made it.
    b.add_credit(key.clone(), Money::from_nanos(101))
        .await
        .unwrap();
    b.add_credit(key.clone(), Money::from_nanos(-200))
        .await
        .unwrap();
    assert!(matches!(
        events_b.try_recv().unwrap(),
        BudgetEvent::BalanceLow { balance, .. } if balance == Money::from_nanos(400)
    ));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(events_a.try_recv().is_err() && events_b.try_recv().is_err());
}
