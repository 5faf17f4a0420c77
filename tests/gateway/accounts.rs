//! Balances and budgets through the running gateway: a low balance reaches the
//! configured webhook, and the admin API shows each budget's spend.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use serde_json::Value;

use crate::harness::{chat, guard, Gateway, Http, TempDir};

const MASTER: &str = "sk-test-master-key-000000000000";

/// A webhook receiver on 127.0.0.1: the alerts it got, and its URL.
async fn receiver() -> (Arc<Mutex<Vec<Value>>>, String) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let store = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |body: axum::body::Bytes| {
            let store = store.clone();
            async move {
                store
                    .lock()
                    .unwrap()
                    .push(serde_json::from_slice::<Value>(&body).unwrap());
                http::StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (got, format!("http://{addr}/hook"))
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// Creates a key through the admin API; returns its id and secret.
async fn create_key(http: &Http, spec: Value) -> (String, String) {
    let created = http
        .post(
            "/admin/keys",
            &[("authorization", &bearer(MASTER))],
            &spec.to_string(),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let json = created.json();
    (
        json["id"].as_str().unwrap().to_owned(),
        json["key"].as_str().unwrap().to_owned(),
    )
}

/// `[alerts] balance_low`: the request that takes a prepaid balance below the threshold
/// sends one `balance_low` alert to the webhook; the next one, still below, sends none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_balance_alert_reaches_the_webhook() {
    let (got, hook) = receiver().await;
    let dir = TempDir::new("balance-low");
    dir.write(
        "gateway.toml",
        &format!(
            "[auth]\nmaster_key = \"{MASTER}\"\n[alerts]\nwebhook_url = \"{hook}\"\nbalance_low = \"0.000990\"\n"
        ),
    );
    let gateway = Gateway::start(&[
        ("TOLLGATE_CONFIG", &dir.path("gateway.toml")),
        ("TOLLGATE_DB", &dir.path("t.db")),
    ]);
    let http = Http::new(&gateway.url);
    let (id, key) = create_key(&http, serde_json::json!({"name": "prepaid"})).await;
    let credit = http
        .post(
            &format!("/admin/balances/{id}"),
            &[("authorization", &bearer(MASTER))],
            r#"{"amount": "0.001000"}"#,
        )
        .await;
    assert_eq!(credit.status, 200, "{}", credit.text());
    for _ in 0..2 {
        let res = http
            .post(
                "/v1/chat/completions",
                &[("authorization", &bearer(&key))],
                &chat("mock/echo"),
            )
            .await;
        assert_eq!(res.status, 200, "{}", res.text());
    }
    let alerts = guard(async {
        loop {
            let alerts = got.lock().unwrap().clone();
            if !alerts.is_empty() {
                return alerts;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let alert = &alerts[0]["alert"];
    assert_eq!(alert["kind"], "balance_low", "{alerts:?}");
    assert_eq!(alert["account"], format!("key:{id}"));
    assert_eq!(alert["threshold"], "0.000990");
    let balance: f64 = alert["balance"].as_str().unwrap().parse().unwrap();
    assert!(balance < 0.00099 && balance > 0.0009, "{alert}");
    // The second request left the balance low: no second alert.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(got.lock().unwrap().len(), 1, "{:?}", got.lock().unwrap());
    assert!(gateway.stop());
}
