//! `WebhookNotifier` against loopback receivers: alerts arrive in order as JSON, failed
//! posts are retried, budget events are forwarded, and a receiver that is down or hangs
//! never blocks the caller.
#![cfg(feature = "alerts")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use http::StatusCode;
use serde_json::Value;
use tollgate::alerts::{Alert, WebhookNotifier};
use tollgate::metering::{Account, Accounts, Budget, Money};

/// Only a guard against hanging, never a timing assertion.
async fn guard<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), future)
        .await
        .expect("hung past the guard")
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Value>>>,
    /// Answer 500 to this many posts first.
    fail_first: Arc<Mutex<u32>>,
}

async fn receive(State(r): State<Receiver>, body: axum::body::Bytes) -> StatusCode {
    {
        let mut fail = r.fail_first.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    r.got
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap());
    StatusCode::NO_CONTENT
}

/// A webhook receiver on 127.0.0.1; returns its URL.
async fn receiver(r: Receiver) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/hook", post(receive)).with_state(r);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/hook?token=secret")
}

async fn wait_for(r: &Receiver, n: usize) -> Vec<Value> {
    guard(async {
        loop {
            let got = r.got.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test]
async fn alerts_arrive_in_order_and_failures_are_retried() {
    let r = Receiver::default();
    *r.fail_first.lock().unwrap() = 2;
    let url = receiver(r.clone()).await;
    let alerts = WebhookNotifier::builder(url)
        .backoff(Duration::from_millis(10), Duration::from_millis(40))
        .build()
        .unwrap();
    alerts.notify(Alert::ChannelDown {
        channel: "openai-eu".into(),
        reason: "5 failures in 30 s".into(),
    });
    alerts.notify(Alert::CircuitOpened {
        channel: "openai-eu".into(),
        failures: 5,
    });
    alerts.notify(Alert::ChannelRecovered {
        channel: "openai-eu".into(),
    });
    let got = wait_for(&r, 3).await;
    assert_eq!(got[0]["source"], "tollgate");
    assert!(got[0]["at"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(got[0]["alert"]["kind"], "channel_down");
    assert_eq!(got[0]["alert"]["channel"], "openai-eu");
    assert_eq!(got[0]["alert"]["reason"], "5 failures in 30 s");
    assert_eq!(got[1]["alert"]["kind"], "circuit_opened");
    assert_eq!(got[1]["alert"]["failures"], 5);
    assert_eq!(got[2]["alert"]["kind"], "channel_recovered");
    let stats = alerts.stats();
    assert_eq!(
        (stats.sent, stats.failed_attempts, stats.dropped),
        (3, 2, 0)
    );
}

#[tokio::test]
async fn budget_events_become_alerts() {
    let r = Receiver::default();
    let url = receiver(r.clone()).await;
    let alerts = WebhookNotifier::builder(url).build().unwrap();
    let accounts = Accounts::new();
    alerts.forward_budget_events(&accounts);
    let key = Account::Key("key_1".into());
    accounts.set_budget(
        key.clone(),
        Budget::new("1.00".parse().unwrap(), tollgate::metering::Period::Monthly),
    );
    let dollars = |s: &str| -> Money { s.parse().unwrap() };
    accounts
        .reserve(std::slice::from_ref(&key), dollars("0.10"))
        .unwrap()
        .settle(dollars("0.85"));
    accounts
        .reserve(std::slice::from_ref(&key), dollars("0.10"))
        .unwrap()
        .settle(dollars("0.20"));
    let got = wait_for(&r, 2).await;
    assert_eq!(got[0]["alert"]["kind"], "budget_threshold");
    assert_eq!(got[0]["alert"]["account"], "key:key_1");
    assert_eq!(got[0]["alert"]["spent"], "0.850000");
    assert_eq!(got[0]["alert"]["limit"], "1.000000");
    assert_eq!(got[1]["alert"]["kind"], "budget_exhausted");
    assert_eq!(got[1]["alert"]["spent"], "1.050000");
}

#[tokio::test]
async fn a_low_balance_becomes_one_alert_per_crossing() {
    let r = Receiver::default();
    let url = receiver(r.clone()).await;
    let alerts = WebhookNotifier::builder(url).build().unwrap();
    let accounts = Accounts::new();
    alerts.forward_budget_events(&accounts);
    let dollars = |s: &str| -> Money { s.parse().unwrap() };
    let team = Account::Team("search".into());
    accounts.set_default_low_balance_threshold(Some(dollars("5.00")));
    accounts.credit(team.clone(), dollars("6.00"));
    for _ in 0..3 {
        accounts
            .reserve(std::slice::from_ref(&team), dollars("0.10"))
            .unwrap()
            .settle(dollars("0.75"));
    }
    // A credit back above the threshold, then a debit under it again.
    accounts.credit(team.clone(), dollars("2.00"));
    accounts.credit(team.clone(), dollars("-2.00"));
    let got = wait_for(&r, 2).await;
    assert_eq!(got[0]["alert"]["kind"], "balance_low");
    assert_eq!(got[0]["alert"]["account"], "team:search");
    assert_eq!(got[0]["alert"]["balance"], "4.500000");
    assert_eq!(got[0]["alert"]["threshold"], "5.000000");
    assert_eq!(got[1]["alert"]["balance"], "3.750000");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(r.got.lock().unwrap().len(), 2, "once per crossing");
}

#[tokio::test]
async fn a_receiver_that_is_down_or_hangs_never_blocks_the_caller() {
    // Down: a port nobody listens on. Every alert is tried, then dropped and counted.
    let closed = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let alerts = WebhookNotifier::builder(format!("http://{closed}/hook"))
        .queue(4)
        .attempts(2)
        .backoff(Duration::from_millis(5), Duration::from_millis(5))
        .build()
        .unwrap();
    for i in 0..50 {
        alerts.notify(Alert::ChannelRecovered {
            channel: format!("c{i}"),
        });
    }
    // notify returned 50 times without waiting: beyond the queue, alerts were dropped.
    assert!(alerts.stats().dropped >= 40, "{:?}", alerts.stats());
    guard(async {
        while alerts.stats().dropped < 50 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(alerts.stats().sent, 0);

    // Hangs: accepts connections and never answers. Budget events keep flowing from
    // requests settling, and every settle returns at once.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = hang.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hang.accept().await {
            held.push(socket);
        }
    });
    let alerts = WebhookNotifier::builder(format!("http://{addr}/hook"))
        .queue(2)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let accounts = Accounts::new();
    alerts.forward_budget_events(&accounts);
    let dollars = |s: &str| -> Money { s.parse().unwrap() };
    guard(async {
        for i in 0..200 {
            let key = Account::Key(format!("key_{i}"));
            accounts.set_budget(
                key.clone(),
                Budget::new(dollars("1.00"), tollgate::metering::Period::Daily),
            );
            let hold = accounts
                .reserve(std::slice::from_ref(&key), dollars("0.01"))
                .unwrap();
            hold.settle(dollars("2.00"));
            tokio::task::yield_now().await;
        }
    })
    .await;
    guard(async {
        while alerts.stats().dropped == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(alerts.stats().sent, 0);
}

#[test]
fn a_bad_url_is_refused() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for bad in ["", "hooks.example.com/x", "ftp://x/y"] {
            assert!(WebhookNotifier::builder(bad).build().is_err(), "{bad}");
        }
    });
}

/// Channel transitions become alerts: the circuit opens after a failure, then the channel
/// recovers once a trial request succeeds.
#[cfg(all(feature = "routing", feature = "failover", feature = "testing"))]
#[tokio::test]
async fn channel_transitions_become_alerts() {
    use tollgate::failover::FailoverLayer;
    use tollgate::routing::{Channel, HealthPolicy, Router as Routes, RoutingLayer};
    use tollgate::testing::MockProvider;
    use tollgate::upstream::Target;
    use tower::{ServiceBuilder, ServiceExt};

    let r = Receiver::default();
    let alerts = WebhookNotifier::builder(receiver(r.clone()).await)
        .build()
        .unwrap();
    let mock = MockProvider::new();
    let routes = Routes::builder()
        .channel(
            Channel::builder(
                "flaky",
                Target::openai_compatible("flaky", "http://127.0.0.1:9/v1").unwrap(),
            )
            .model("m")
            .health(
                HealthPolicy::new()
                    .failure_threshold(1)
                    .open_for(Duration::from_millis(200)),
            ),
        )
        .build()
        .unwrap();
    let watch = {
        let routes = routes.clone();
        alerts.watch_channels(move || routes.clone(), Duration::from_millis(20))
    };
    let svc = ServiceBuilder::new()
        .layer(RoutingLayer::new(routes.clone()))
        .layer(FailoverLayer::new())
        .service(mock.clone());
    let chat = || {
        http::Request::post("/v1/chat/completions")
            .body(tollgate::Body::from(
                r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            ))
            .unwrap()
    };
    // Let the watch see the channel healthy first.
    tokio::time::sleep(Duration::from_millis(60)).await;
    mock.set_script([("x-mock-status", "500")]);
    let res = svc.clone().oneshot(chat()).await.unwrap();
    assert!(res.status().is_server_error());
    let got = wait_for(&r, 1).await;
    assert_eq!(got[0]["alert"]["kind"], "circuit_opened", "{got:?}");
    assert_eq!(got[0]["alert"]["channel"], "flaky");

    // Half-open after 200 ms: a successful trial closes the circuit.
    mock.clear_script();
    let res = guard(async {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let res = svc.clone().oneshot(chat()).await.unwrap();
            if res.status() == 200 {
                return res;
            }
        }
    })
    .await;
    assert_eq!(res.status(), 200);
    let got = wait_for(&r, 2).await;
    assert_eq!(got[1]["alert"]["kind"], "channel_recovered", "{got:?}");
    drop(watch);
}
