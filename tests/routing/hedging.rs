//! Hedging with paused time: a slow first attempt gets a second one on the next
//! candidate; the first to answer wins and the other is cancelled.

use std::time::Duration;

use tokio::time::Instant;
use tollgate::failover::FailoverLayer;
use tollgate::routing::{Channel, Priority, Router, RoutingLayer};
use tollgate::testing::MockProvider;
use tower::{ServiceBuilder, ServiceExt};

use super::{bytes, chat, dispatch, header, target, Svc};

fn stack(a: &MockProvider, b: &MockProvider, failover: FailoverLayer) -> (Router, Svc) {
    let router = Router::builder()
        .channel(Channel::builder("a", target("a")).model("m").priority(0))
        .channel(Channel::builder("b", target("b")).model("m").priority(1))
        .strategy(Priority::with_seed(1))
        .build()
        .unwrap();
    let svc = tower::util::BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(RoutingLayer::new(router.clone()))
            .layer(failover)
            .service(dispatch(&[("a", a), ("b", b)])),
    );
    (router, svc)
}

#[tokio::test(start_paused = true)]
async fn the_hedge_wins_and_the_slow_attempt_is_cancelled() {
    let (a, b) = (MockProvider::new(), MockProvider::new());
    a.set_script([("x-mock-latency-ms", "5000")]);
    b.set_script([("x-mock-latency-ms", "50")]);
    let (router, svc) = stack(
        &a,
        &b,
        FailoverLayer::new().hedge_after(Duration::from_millis(200)),
    );

    for stream in [false, true] {
        let started = Instant::now();
        let res = svc.clone().oneshot(chat("m", stream)).await.unwrap();
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(250),
            "hedge after 200 ms + 50 ms"
        );
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "x-tollgate-target"), "b");
        assert_eq!(header(&res, "x-tollgate-attempts"), "2");
        let body = String::from_utf8(bytes(res).await.to_vec()).unwrap();
        if stream {
            assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
            assert_eq!(b.streams_completed(), 1);
        }
    }
    // The slow attempts were dropped while the mock waited: cancelled, not counted.
    assert_eq!(a.requests_cancelled(), 2);
    assert_eq!(b.requests_cancelled(), 0);
    let stats = router.channel("a").unwrap().stats();
    assert_eq!((stats.in_flight, stats.failures), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn the_first_attempt_can_still_win() {
    let (a, b) = (MockProvider::new(), MockProvider::new());
    a.set_script([("x-mock-latency-ms", "300")]);
    b.set_script([("x-mock-latency-ms", "1000")]);
    let (_, svc) = stack(
        &a,
        &b,
        FailoverLayer::new().hedge_after(Duration::from_millis(200)),
    );
    let started = Instant::now();
    let res = svc.clone().oneshot(chat("m", false)).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    assert_eq!(header(&res, "x-tollgate-target"), "a");
    assert_eq!(header(&res, "x-tollgate-attempts"), "2");
    assert_eq!(b.request_count(), 1);
    assert_eq!(b.requests_cancelled(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_fast_first_attempt_is_not_hedged_and_failures_fall_through() {
    let (a, b) = (MockProvider::new(), MockProvider::new());
    let (_, svc) = stack(
        &a,
        &b,
        FailoverLayer::new().hedge_after(Duration::from_millis(200)),
    );
    let res = svc.clone().oneshot(chat("m", false)).await.unwrap();
    assert_eq!(header(&res, "x-tollgate-attempts"), "1");
    assert_eq!(b.request_count(), 0);

    // Both hedged attempts fail: the next attempt (a third) goes on, then 502.
    a.set_script([("x-mock-latency-ms", "300"), ("x-mock-status", "500")]);
    b.set_script([("x-mock-status", "503")]);
    let res = svc.clone().oneshot(chat("m", false)).await.unwrap();
    assert_eq!(res.status(), 502);
    assert_eq!(header(&res, "x-tollgate-attempts"), "3");
}

#[tokio::test(start_paused = true)]
async fn the_hedge_delay_can_follow_the_channel_latency() {
    let (a, b) = (MockProvider::new(), MockProvider::new());
    a.set_script([("x-mock-latency-ms", "100")]);
    b.set_script([("x-mock-latency-ms", "10")]);
    let failover = FailoverLayer::new().hedge_after_latency(2.0, Duration::from_millis(150));
    let (_, svc) = stack(&a, &b, failover);
    // Usual latency 100 ms: answers within twice that are not hedged.
    for _ in 0..3 {
        let res = svc.clone().oneshot(chat("m", false)).await.unwrap();
        assert_eq!(header(&res, "x-tollgate-attempts"), "1");
    }
    assert_eq!(b.request_count(), 0);
    // Much slower now: hedged after 2 × 100 ms.
    a.set_script([("x-mock-latency-ms", "5000")]);
    let started = Instant::now();
    let res = svc.clone().oneshot(chat("m", false)).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(210));
    assert_eq!(header(&res, "x-tollgate-target"), "b");
}

#[tokio::test(start_paused = true)]
async fn the_hedge_delay_can_be_a_percentile_of_recent_first_bytes() {
    let (a, b) = (MockProvider::new(), MockProvider::new());
    b.set_script([("x-mock-latency-ms", "10")]);
    let failover = FailoverLayer::new().hedge_after_percentile(0.9, Duration::from_millis(20));
    let (_, svc) = stack(&a, &b, failover);
    // 16 samples (the minimum before the percentile counts): 14 of 100 ms, 2 of 400 ms.
    // Until then the delay is `min` (20 ms), so these are hedged too; a slow second
    // channel lets the first attempt win each race and give its sample.
    b.set_script([("x-mock-latency-ms", "5000")]);
    for i in 0..16 {
        let ms = if i % 8 == 0 { "400" } else { "100" };
        a.set_script([("x-mock-latency-ms", ms)]);
        let res = svc.clone().oneshot(chat("m", false)).await.unwrap();
        assert_eq!(header(&res, "x-tollgate-target"), "a");
    }
    // The 90th percentile of those is 400 ms (rank round(15 × 0.9) = 14 of 0..=15): a
    // slower attempt is hedged at 400 ms, not at `min`.
    a.set_script([("x-mock-latency-ms", "5000")]);
    b.set_script([("x-mock-latency-ms", "10")]);
    let started = Instant::now();
    let res = svc.clone().oneshot(chat("m", false)).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(410));
    assert_eq!(header(&res, "x-tollgate-target"), "b");
}

/// "Usage of both is metered": the winner's record is exact; the cancelled attempt gets
/// an estimated record (its input, which the provider may bill), and a prepaid balance
/// pays for both.
#[tokio::test(start_paused = true)]
async fn the_cancelled_attempt_is_metered_too() {
    use tollgate::metering::{
        Account, Accounts, MemoryLedger, MeteringLayer, Money, Payer, Price, PriceTable,
    };
    use tollgate::outcome::End;

    let (a, b) = (MockProvider::new(), MockProvider::new());
    a.set_script([("x-mock-latency-ms", "5000")]);
    b.set_script([("x-mock-latency-ms", "50")]);
    let (_, routed) = stack(
        &a,
        &b,
        FailoverLayer::new().hedge_after(Duration::from_millis(200)),
    );
    let ledger = MemoryLedger::new();
    let accounts = Accounts::new();
    let key = Account::Key("k1".into());
    accounts.credit(key.clone(), Money::from_nanos(1_000_000));
    // $1 per million input tokens, $2 per million output tokens.
    let mut prices = PriceTable::empty();
    prices.insert("m", Price::new("1".parse().unwrap(), "2".parse().unwrap()));
    let svc = ServiceBuilder::new()
        .layer(
            MeteringLayer::new(ledger.clone())
                .prices(prices)
                .accounts(accounts.clone()),
        )
        .service(routed);
    let mut req = chat("m", false);
    req.extensions_mut()
        .insert(Payer::new(Some("k1".into()), None));
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(header(&res, "x-tollgate-target"), "b");
    bytes(res).await;
    tokio::task::yield_now().await;

    let records = ledger.records();
    assert_eq!(records.len(), 2, "{records:#?}");
    let winner = records
        .iter()
        .find(|r| r.provider.as_deref() == Some("b"))
        .unwrap();
    let loser = records
        .iter()
        .find(|r| r.provider.as_deref() == Some("a"))
        .unwrap();
    assert!(winner.exact && winner.status == 200 && winner.attempts == 2);
    assert!(loser.id.starts_with(&winner.id) && loser.id.ends_with("-cancelled-1"));
    assert_eq!(
        (loser.status, loser.end, loser.exact),
        (499, End::ClientGone, false)
    );
    assert!(loser.prompt_tokens > 0 && loser.completion_tokens == 0);
    assert_eq!(loser.cost.nanos(), loser.prompt_tokens as i64 * 1_000);
    assert!(winner.cost.nanos() > 0);
    let spent = winner.cost.nanos() + loser.cost.nanos();
    assert_eq!(
        accounts.balance(&key).unwrap().nanos(),
        1_000_000 - spent,
        "the balance pays for both attempts"
    );
}
